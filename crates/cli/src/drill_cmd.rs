//! `triplicate drill run|reports|show`: recovery drills.
//!
//! Exit codes of `run`: 0 the drill passed, 1 it failed (its report says why), 2 it could not
//! run. `show` exits 1 when the stored report's signature or its ledger audit record does not
//! check out.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use triplicate_server::drill::{DrillOptions, Scenario};

use crate::crosscheck_cmd::{base, call, could_not_run, with_runtime, Remote};
use crate::recovery_cmd::PgArg;

#[derive(Debug, Subcommand)]
pub enum DrillCmd {
    /// Run one drill on a scratch copy: back up, restore to scratch, damage as the scenario
    /// says, detect, recover, cross-check everything; the signed report is stored and its
    /// digest appended to the ledger.
    Run(RunArgs),
    /// Stored drill reports, newest first.
    Reports(ReportsArgs),
    /// One stored drill report, with its signature and audit record checked.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// lose-projection, lose-stream, corrupt-ledger, restore-all or store-outage.
    #[arg(long)]
    pub scenario: Scenario,
    /// A stopped service's development data directory.
    #[arg(long, conflicts_with_all = ["config", "url"])]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub pg: PgArg,
    /// A stopped service's configuration file.
    #[arg(long, conflicts_with = "url")]
    pub config: Option<PathBuf>,
    /// A running service's base URL: the drill runs there (admin token).
    #[arg(long, requires = "token")]
    pub url: Option<String>,
    /// An admin bearer token, with --url.
    #[arg(long, env = "TRIPLICATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where the scratch copy goes (default: the system's temporary directory), with
    /// --data-dir or --config.
    #[arg(long, conflicts_with = "url")]
    pub scratch_dir: Option<PathBuf>,
    /// An empty PostgreSQL database (owner URL) for the scratch copy's projection; an embedded
    /// SQLite projection otherwise.
    #[arg(long, conflicts_with = "url")]
    pub scratch_postgres_url: Option<String>,
    /// Keep the scratch copy afterwards (its path is printed).
    #[arg(long, conflicts_with = "url")]
    pub keep_scratch: bool,
    /// Damage and recover the deployment's own stores instead of a scratch copy: only on a
    /// stopped deployment with the embedded projection. A backup is taken first and every
    /// damaged store is moved aside, never deleted, into `<data-dir>/drills/<id>/`.
    #[arg(long, conflicts_with_all = ["url", "scratch_dir", "scratch_postgres_url", "keep_scratch"])]
    pub in_place: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportsArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// Only this scenario.
    #[arg(long)]
    pub scenario: Option<Scenario>,
    /// How many (1 to 1000).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The drill's id.
    pub id: String,
    #[command(flatten)]
    pub remote: Remote,
}

pub fn run(cmd: DrillCmd) -> anyhow::Result<ExitCode> {
    Ok(match cmd {
        DrillCmd::Run(a) => run_drill(&a),
        DrillCmd::Reports(a) => with_runtime(a.remote.json, reports(&a)),
        DrillCmd::Show(a) => with_runtime(a.remote.json, show(&a)),
    })
}

fn exit_for(report: &Value) -> ExitCode {
    if report["passed"].as_bool() == Some(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run_drill(a: &RunArgs) -> ExitCode {
    if let Some(url) = &a.url {
        let url = format!("{}/v1/drills/runs", base(url));
        let token = a.token.clone().unwrap_or_default();
        let body = json!({ "scenario": a.scenario.name() });
        return with_runtime(a.json, async move {
            let out = call(reqwest::Method::POST, &url, &token, Some(&body), &[201]).await?;
            print_report(&out["report"], a.json);
            Ok(exit_for(&out["report"]))
        });
    }
    let target = crate::recovery_cmd::Target {
        data_dir: a.data_dir.clone(),
        config: a.config.clone(),
    };
    let dep = match target.deployment(&a.pg) {
        Ok(d) => d,
        Err(e) => {
            return could_not_run(
                &format!("{e}; or --url URL --token T for a running service"),
                a.json,
            )
        }
    };
    let rt = match crate::client::runtime() {
        Ok(rt) => rt,
        Err(e) => return could_not_run(&format!("{e:#}"), a.json),
    };
    let options = DrillOptions {
        scratch_dir: a.scratch_dir.clone(),
        scratch_postgres_url: a.scratch_postgres_url.clone(),
        keep_scratch: a.keep_scratch,
        ..DrillOptions::new(a.scenario)
    };
    let run = if a.in_place {
        rt.block_on(triplicate_server::drill::run_in_place(&dep, options))
    } else {
        rt.block_on(triplicate_server::drill::run_on_deployment(&dep, options))
    };
    match run {
        Ok(out) => {
            let report = serde_json::to_value(&out.report).unwrap_or(Value::Null);
            print_report(&report, a.json);
            if !a.json {
                match out.audit_seq {
                    Some(seq) => println!("audit record: seq {seq} in the ledger"),
                    None => println!("audit record: NOT appended (see the log)"),
                }
                if let Some(dir) = &out.scratch {
                    if a.in_place {
                        println!(
                            "the backup taken first and the stores moved aside are in {} \
                             (remove it once you are satisfied)",
                            dir.display()
                        );
                    } else {
                        println!("scratch copy kept in {}", dir.display());
                    }
                }
            }
            exit_for(&report)
        }
        Err(e) => could_not_run(&e.to_string(), a.json),
    }
}

async fn reports(a: &ReportsArgs) -> Result<ExitCode, String> {
    let mut url = format!("{}/v1/drills?limit={}", base(&a.remote.url), a.limit);
    if let Some(s) = a.scenario {
        url.push_str(&format!("&scenario={}", s.name()));
    }
    let page = call(reqwest::Method::GET, &url, &a.remote.token, None, &[200]).await?;
    if a.remote.json {
        println!("{page}");
        return Ok(ExitCode::SUCCESS);
    }
    let drills = page["drills"].as_array().cloned().unwrap_or_default();
    if drills.is_empty() {
        println!("no drills stored");
    }
    for d in drills {
        println!(
            "{}  {:<16} {:<6} {}/{} records  detect {}  recover {} ms  finished {}",
            d["drill_id"].as_str().unwrap_or("-"),
            d["scenario"].as_str().unwrap_or("-"),
            if d["passed"].as_bool() == Some(true) {
                "PASS"
            } else {
                "FAIL"
            },
            d["records_after"],
            d["records_before"],
            d["detect_ms"]
                .as_u64()
                .map_or_else(|| "-".into(), |m| format!("{m} ms")),
            d["recover_ms"],
            d["finished_at"].as_str().unwrap_or("-"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(a: &ShowArgs) -> Result<ExitCode, String> {
    let url = format!("{}/v1/drills/{}", base(&a.remote.url), a.id);
    let got = call(reqwest::Method::GET, &url, &a.remote.token, None, &[200]).await?;
    let signed = got["signature"]["valid"].as_bool() == Some(true);
    let audited = got["audit_record_matches"].as_bool() != Some(false);
    if a.remote.json {
        println!("{got}");
    } else {
        print_report(&got["report"], false);
        println!("digest: {}", got["digest"].as_str().unwrap_or("-"));
        println!(
            "notary signature ({}): {}",
            got["signature"]["key_id"].as_str().unwrap_or("-"),
            if signed {
                "valid".to_owned()
            } else {
                format!(
                    "INVALID: {}",
                    got["signature"]["problem"].as_str().unwrap_or("?")
                )
            }
        );
        match (
            got["audit_seq"].as_u64(),
            got["audit_record_matches"].as_bool(),
        ) {
            (Some(seq), Some(true)) => println!("audit record: seq {seq}, carries this digest"),
            (Some(seq), _) => println!("audit record: seq {seq} does NOT carry this digest"),
            _ => println!("audit record: none"),
        }
    }
    Ok(if signed && audited {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_report(r: &Value, json_out: bool) {
    if json_out {
        println!("{r}");
        return;
    }
    let s = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    };
    let secs = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "-".to_owned(), |x| format!("{x:.3} s"))
    };
    println!(
        "drill {} ({}): {}",
        s(&r["drill_id"]),
        s(&r["scenario"]),
        if r["passed"].as_bool() == Some(true) {
            "PASSED".to_owned()
        } else {
            format!("FAILED: {}", s(&r["failure"]))
        }
    );
    println!(
        "records: {} before, {} after, {} lost; checkpoint {} -> {}",
        r["records_before"],
        r["records_after"],
        r["records_lost"],
        r["checkpoint_before"]["size"],
        r["checkpoint_after"]["size"]
    );
    println!(
        "time to detect: {}{}; time to recover: {}",
        secs(&r["detect_seconds"]),
        r["detected_by"]
            .as_str()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default(),
        secs(&r["recover_seconds"])
    );
    for st in r["steps"].as_array().into_iter().flatten() {
        println!(
            "  [{}] {:<48} {:>9}  {}",
            if st["ok"].as_bool() == Some(true) {
                "ok"
            } else {
                "!!"
            },
            s(&st["name"]),
            secs(&st["seconds"]),
            s(&st["detail"])
        );
    }
    println!("discrepancies left: {}", r["discrepancies_left"]);
}
