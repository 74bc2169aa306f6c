//! `triplicate crosscheck run`: one cross-check of the three stores, on a stopped service's
//! data directory or through a running service (`POST /v1/admin/crosscheck`).
//!
//! Exit codes: 0 clean (lag at most), 1 discrepancies of class minor or worse, 2 could not run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// `triplicate crosscheck …`.
#[derive(Debug, Subcommand)]
pub enum CrosscheckCmd {
    /// Run one cross-check now and print what it found.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A full sweep (every seq, and the ledger's files checked); otherwise incremental.
    #[arg(long)]
    pub full: bool,
    /// A stopped service's data directory (the development layout); the stores are opened as
    /// the service opens them, and minor findings repaired as `verification.toml` allows.
    #[arg(long, conflicts_with = "url")]
    pub data_dir: Option<PathBuf>,
    /// The ledger's origin, with --data-dir.
    #[arg(long, default_value = triplicate_server::setup::DEV_ORIGIN, requires = "data_dir")]
    pub origin: String,
    /// A running service's base URL; the run happens there.
    #[arg(long, requires = "token")]
    pub url: Option<String>,
    /// An auditor or admin bearer token, with --url.
    #[arg(long, env = "TRIPLICATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: CrosscheckCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        CrosscheckCmd::Run(a) => Ok(run_once(&a)),
    }
}

fn could_not_run(msg: &str, json_out: bool) -> ExitCode {
    eprintln!("error: {msg}");
    if json_out {
        println!("{}", json!({ "error": msg, "exit": 2 }));
    }
    ExitCode::from(2)
}

fn run_once(a: &RunArgs) -> ExitCode {
    let rt = match crate::client::runtime() {
        Ok(rt) => rt,
        Err(e) => return could_not_run(&format!("{e:#}"), a.json),
    };
    let report = match (&a.data_dir, &a.url) {
        (Some(dir), _) => rt
            .block_on(triplicate_server::crosscheck::run_on_data_dir(
                dir, &a.origin, a.full,
            ))
            .map_err(|e| e.to_string())
            .and_then(|r| serde_json::to_value(r).map_err(|e| e.to_string())),
        (None, Some(url)) => rt.block_on(remote(url, a.token.as_deref().unwrap_or(""), a.full)),
        (None, None) => Err("say where: --data-dir DIR, or --url URL --token T".into()),
    };
    match report {
        Ok(report) => {
            print_report(&report, a.json);
            exit_for(&report)
        }
        Err(msg) => could_not_run(&msg, a.json),
    }
}

/// `POST /v1/admin/crosscheck` on a running service.
async fn remote(url: &str, token: &str, full: bool) -> Result<Value, String> {
    let url = format!("{}/v1/admin/crosscheck", url.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .json(&json!({ "full": full }))
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status().as_u16();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| format!("POST {url}: the answer is not JSON: {e}"))?;
    if status == 200 {
        Ok(body)
    } else {
        Err(format!(
            "POST {url}: {}",
            crate::client::describe_problem(status, &body)
        ))
    }
}

fn count(report: &Value, class: &str) -> u64 {
    report["counts"][class].as_u64().unwrap_or(0)
}

/// 0 when nothing worse than lag was found, 1 otherwise.
pub fn exit_for(report: &Value) -> ExitCode {
    if ["minor", "major", "critical"]
        .iter()
        .any(|c| count(report, c) > 0)
    {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_report(report: &Value, json_out: bool) {
    if json_out {
        println!("{report}");
        return;
    }
    let s = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    };
    println!(
        "run {} ({}): {} records compared, {} signatures checked",
        s(&report["run_id"]),
        s(&report["mode"]),
        report["records_compared"].as_u64().unwrap_or(0),
        report["signatures_checked"].as_u64().unwrap_or(0),
    );
    if let Some(c) = report["checkpoint_new"].as_object() {
        println!(
            "checkpoint verified: size {}, root {}",
            c.get("size").map(s).unwrap_or_default(),
            c.get("root").map(s).unwrap_or_default()
        );
    } else {
        println!("checkpoint: NOT verified");
    }
    println!(
        "lag {}  minor {}  major {}  critical {}",
        count(report, "lag"),
        count(report, "minor"),
        count(report, "major"),
        count(report, "critical")
    );
    for d in report["discrepancies"].as_array().into_iter().flatten() {
        let seq = d["seq"]
            .as_u64()
            .map_or_else(|| "-".into(), |q| q.to_string());
        println!(
            "  {:<8} seq {:<8} {:<10} {:<18} {}{}",
            s(&d["class"]),
            seq,
            s(&d["store"]),
            s(&d["kind"]),
            s(&d["detail"]),
            d["file"]
                .as_str()
                .map(|f| format!(" [{f}]"))
                .unwrap_or_default()
        );
        if d["expected_hash"].is_string() || d["actual_hash"].is_string() {
            println!(
                "           expected {}  actual {}",
                d["expected_hash"].as_str().unwrap_or("-"),
                d["actual_hash"].as_str().unwrap_or("-")
            );
        }
    }
    for act in report["actions"].as_array().into_iter().flatten() {
        println!(
            "  action: {} ({})",
            act.get("operation").map(s).unwrap_or_default(),
            act.get("status").map(s).unwrap_or_default()
        );
    }
    if report["discrepancies"]
        .as_array()
        .is_none_or(|d| d.is_empty())
    {
        println!("clean");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_alone_exits_0_and_minor_or_worse_exits_1() {
        let r = |lag: u64, minor: u64, major: u64, critical: u64| json!({ "counts": { "lag": lag, "minor": minor, "major": major, "critical": critical } });
        assert_eq!(exit_for(&r(0, 0, 0, 0)), ExitCode::SUCCESS);
        assert_eq!(exit_for(&r(3, 0, 0, 0)), ExitCode::SUCCESS);
        assert_eq!(exit_for(&r(0, 1, 0, 0)), ExitCode::from(1));
        assert_eq!(exit_for(&r(0, 0, 1, 0)), ExitCode::from(1));
        assert_eq!(exit_for(&r(0, 0, 0, 2)), ExitCode::from(1));
    }
}
