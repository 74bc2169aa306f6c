//! `triplicate crosscheck run|reports|show|approve|reject`: cross-checks of the three stores and
//! their reports.
//!
//! - `run`: one run, on a stopped service's data directory or through a running service
//!   (`POST /v1/verification/runs`, stored and audited there).
//! - `reports`: the stored reports, newest first (`GET /v1/verification/reports`).
//! - `show ID`: one stored report, with each proposed repair's status and reviews, and whether
//!   the ledger's audit record carries the report's digest.
//! - `approve ID` / `reject ID`: an auditor's verdict on a proposed repair, signed with the
//!   auditor's key (`--key FILE`) over the repair, its report's digest, the verdict, the reason
//!   and the time (`triplicate_verifier::review`), sent with an auditor token.
//!
//! Exit codes: `run`, `show`: 0 clean (lag at most), 1 discrepancies of class minor or worse;
//! `reports`: 0; `approve`, `reject`: 0 recorded (and the repair applied, unchanged, or
//! deferred to the operator), 1 recorded but the repair failed; every command: 2 could not run
//! (unreachable, refused, not found).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// `triplicate crosscheck …`.
#[derive(Debug, Subcommand)]
pub enum CrosscheckCmd {
    /// Run one cross-check now and print what it found.
    Run(RunArgs),
    /// List the stored reports, newest first.
    Reports(ReportsArgs),
    /// Show one stored report: discrepancies, proposed repairs, reviews, audit record.
    Show(ShowArgs),
    /// Approve a proposed repair (auditors): signs the verdict and, where the service can,
    /// runs the repair.
    Approve(VerdictArgs),
    /// Reject a proposed repair (auditors): signs the verdict; nothing is run.
    Reject(VerdictArgs),
}

/// Where the service is.
#[derive(Debug, Args)]
pub struct Remote {
    /// The service's base URL.
    #[arg(long)]
    pub url: String,
    /// An auditor (or, to read and run, admin) bearer token.
    #[arg(long, env = "TRIPLICATE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportsArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// How many (1 to 1000).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Reports older than this run id (the `next` of an earlier page).
    #[arg(long)]
    pub before: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run id.
    pub id: String,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, Args)]
pub struct VerdictArgs {
    /// The proposed repair's id (from `show`).
    pub id: String,
    /// The auditor's key file (PKCS#8 PEM); its key must be in keys.toml, group `auditors`.
    #[arg(long)]
    pub key: PathBuf,
    /// Why, recorded and signed with the verdict.
    #[arg(long, default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub remote: Remote,
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
        CrosscheckCmd::Reports(a) => Ok(with_runtime(a.remote.json, reports(&a))),
        CrosscheckCmd::Show(a) => Ok(with_runtime(a.remote.json, show(&a))),
        CrosscheckCmd::Approve(a) => Ok(with_runtime(
            a.remote.json,
            verdict(&a, triplicate_verifier::review::Verdict::Approved),
        )),
        CrosscheckCmd::Reject(a) => Ok(with_runtime(
            a.remote.json,
            verdict(&a, triplicate_verifier::review::Verdict::Rejected),
        )),
    }
}

pub(crate) fn with_runtime(
    json_out: bool,
    f: impl std::future::Future<Output = Result<ExitCode, String>>,
) -> ExitCode {
    let rt = match crate::client::runtime() {
        Ok(rt) => rt,
        Err(e) => return could_not_run(&format!("{e:#}"), json_out),
    };
    match rt.block_on(f) {
        Ok(code) => code,
        Err(msg) => could_not_run(&msg, json_out),
    }
}

/// One request to the service; a problem answer becomes `Err` with the problem described.
pub(crate) async fn call(
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<&Value>,
    expect: &[u16],
) -> Result<Value, String> {
    let mut req = reqwest::Client::new()
        .request(method.clone(), url)
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = resp.status().as_u16();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| format!("{method} {url}: the answer is not JSON: {e}"))?;
    if expect.contains(&status) {
        Ok(body)
    } else {
        Err(format!(
            "{method} {url}: {}",
            crate::client::describe_problem(status, &body)
        ))
    }
}

pub(crate) fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

async fn reports(a: &ReportsArgs) -> Result<ExitCode, String> {
    let mut url = format!(
        "{}/v1/verification/reports?limit={}",
        base(&a.remote.url),
        a.limit
    );
    if let Some(b) = &a.before {
        url.push_str(&format!("&before={b}"));
    }
    let page = call(reqwest::Method::GET, &url, &a.remote.token, None, &[200]).await?;
    if a.remote.json {
        println!("{page}");
        return Ok(ExitCode::SUCCESS);
    }
    let s = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    };
    println!(
        "{:<36}  {:<11}  {:<20}  {:>9}  {:>3} {:>5} {:>5} {:>8}  {:>7}  result",
        "run", "mode", "finished", "records", "lag", "minor", "major", "critical", "pending"
    );
    for r in page["reports"].as_array().into_iter().flatten() {
        let c = &r["counts"];
        let finished = s(&r["finished_at"]);
        println!(
            "{:<36}  {:<11}  {:<20}  {:>9}  {:>3} {:>5} {:>5} {:>8}  {:>7}  {}",
            s(&r["run_id"]),
            s(&r["mode"]),
            finished.get(..19).unwrap_or(&finished),
            r["records_compared"].as_u64().unwrap_or(0),
            c["lag"].as_u64().unwrap_or(0),
            c["minor"].as_u64().unwrap_or(0),
            c["major"].as_u64().unwrap_or(0),
            c["critical"].as_u64().unwrap_or(0),
            r["pending_actions"].as_u64().unwrap_or(0),
            r["worst_class"].as_str().unwrap_or("clean"),
        );
    }
    if let Some(next) = page["next"].as_str() {
        println!("older: --before {next}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(a: &ShowArgs) -> Result<ExitCode, String> {
    let url = format!("{}/v1/verification/reports/{}", base(&a.remote.url), a.id);
    let got = call(reqwest::Method::GET, &url, &a.remote.token, None, &[200]).await?;
    print_stored(&got, a.remote.json);
    Ok(exit_for(&got["report"]))
}

/// A stored report as `GET /v1/verification/reports/{id}` and `POST /v1/verification/runs`
/// answer it.
fn print_stored(got: &Value, json_out: bool) {
    if json_out {
        println!("{got}");
        return;
    }
    print_report(&got["report"], false);
    println!(
        "report digest {}; audit record {}",
        got["digest"].as_str().unwrap_or("-"),
        match (
            got["audit_seq"].as_u64(),
            got["audit_record_matches"].as_bool()
        ) {
            (Some(seq), Some(true)) => format!("at seq {seq}, carries this digest"),
            (Some(seq), _) => format!("at seq {seq} DOES NOT carry this digest"),
            (None, _) => "none (writes were frozen, or the append failed)".into(),
        }
    );
    for act in got["actions"].as_array().into_iter().flatten() {
        if act["pending"].as_bool() == Some(true) {
            println!(
                "  repair {} waits for an auditor: triplicate crosscheck approve|reject {} --key FILE",
                act["id"].as_str().unwrap_or("?"),
                act["id"].as_str().unwrap_or("?")
            );
        }
        for r in act["reviews"].as_array().into_iter().flatten() {
            println!(
                "  repair {}: {} by key {} at {}: {}",
                act["id"].as_str().unwrap_or("?"),
                r["verdict"].as_str().unwrap_or("?"),
                r["key_id"].as_str().unwrap_or("?"),
                r["signed_at"].as_str().unwrap_or("?"),
                r["outcome"].as_str().unwrap_or("")
            );
        }
    }
}

async fn verdict(
    a: &VerdictArgs,
    verdict: triplicate_verifier::review::Verdict,
) -> Result<ExitCode, String> {
    use base64::Engine as _;
    use triplicate_keys::Signer as _;
    let key = triplicate_keys::SoftwareSigner::from_pem_file(&a.key)
        .map_err(|e| format!("read key {}: {e}", a.key.display()))?;
    let action_id =
        uuid::Uuid::parse_str(&a.id).map_err(|e| format!("{:?} is not a repair id: {e}", a.id))?;
    let root = base(&a.remote.url);
    let url = format!("{root}/v1/verification/repairs/{action_id}");
    let repair = call(reqwest::Method::GET, &url, &a.remote.token, None, &[200]).await?;
    let run_id = repair["run_id"]
        .as_str()
        .and_then(|r| uuid::Uuid::parse_str(r).ok())
        .ok_or_else(|| format!("GET {url}: no run id in the answer"))?;
    let digest = repair["report_digest"]
        .as_str()
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .and_then(|d| triplicate_core::Hash::try_from(d).ok())
        .ok_or_else(|| format!("GET {url}: no report digest in the answer"))?;
    let statement = triplicate_verifier::review::ReviewStatement {
        action_id,
        run_id,
        report_digest: digest,
        verdict,
        key_id: key.key_id(),
        alg: key.algorithm(),
        signed_at: triplicate_core::Timestamp::now(),
        reason: a.reason.clone(),
    };
    let msg = statement
        .message()
        .map_err(|e| format!("build the statement: {e}"))?;
    let signature = key.sign(&msg).map_err(|e| format!("sign: {e}"))?;
    let body = json!({
        "key_id": statement.key_id,
        "alg": statement.alg,
        "signature": base64::engine::general_purpose::STANDARD.encode(signature),
        "signed_at": statement.signed_at,
        "reason": statement.reason,
    });
    let path = match verdict {
        triplicate_verifier::review::Verdict::Approved => "approve",
        triplicate_verifier::review::Verdict::Rejected => "reject",
    };
    let url = format!("{url}/{path}");
    let out = call(
        reqwest::Method::POST,
        &url,
        &a.remote.token,
        Some(&body),
        &[200],
    )
    .await?;
    let status = out["status"].as_str().unwrap_or("?").to_owned();
    if a.remote.json {
        println!("{out}");
    } else {
        println!(
            "repair {action_id}: {} by key {}; now {status}: {}",
            verdict.as_str(),
            statement.key_id,
            out["outcome"].as_str().unwrap_or("")
        );
    }
    // A failed repair stays proposed (it may be approved again).
    let failed = verdict == triplicate_verifier::review::Verdict::Approved && status == "proposed";
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub(crate) fn could_not_run(msg: &str, json_out: bool) -> ExitCode {
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
    match (&a.data_dir, &a.url) {
        (Some(dir), _) => {
            let report = rt
                .block_on(triplicate_server::crosscheck::run_on_data_dir(
                    dir, &a.origin, a.full,
                ))
                .map_err(|e| e.to_string())
                .and_then(|r| serde_json::to_value(r).map_err(|e| e.to_string()));
            match report {
                Ok(report) => {
                    print_report(&report, a.json);
                    exit_for(&report)
                }
                Err(msg) => could_not_run(&msg, a.json),
            }
        }
        (None, Some(url)) => {
            match rt.block_on(remote(url, a.token.as_deref().unwrap_or(""), a.full)) {
                Ok(stored) => {
                    // --json prints the report itself, as --data-dir does; the digest and the
                    // audit record are in `crosscheck show ID --json`.
                    if a.json {
                        println!("{}", stored["report"]);
                    } else {
                        print_stored(&stored, false);
                    }
                    exit_for(&stored["report"])
                }
                Err(msg) => could_not_run(&msg, a.json),
            }
        }
        (None, None) => could_not_run("say where: --data-dir DIR, or --url URL --token T", a.json),
    }
}

/// `POST /v1/verification/runs` on a running service: the run is stored and audited there.
async fn remote(url: &str, token: &str, full: bool) -> Result<Value, String> {
    let url = format!("{}/v1/verification/runs", base(url));
    call(
        reqwest::Method::POST,
        &url,
        token,
        Some(&json!({ "full": full })),
        &[201],
    )
    .await
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
