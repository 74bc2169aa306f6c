//! `triplicate crosscheck run` and `triplicate admin resume` against a real service's data
//! directory and URL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use triplicate_server::setup::{ProjectionChoice, DEV_ORIGIN};
use triplicate_server::{ServeConfig, ServiceOptions};

use common::cli;

/// Submits `n` decisions approved by two development approvers and waits for the stores.
async fn populate(r: &triplicate_server::Running, n: usize) {
    common::submit(r, n, "Adopt motion").await;
    let size = r.service.ledger().tree_size();
    for _ in 0..400 {
        let h = r.service.health();
        if h.stream.size >= size && h.projection.size >= size {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the stores did not catch up");
}

/// Runs the binary off the async runtime.
async fn cli_async(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_show_approve_and_reject_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let dev = triplicate_server::setup::dev_setup(dir.path()).unwrap();
    // Minor findings wait for an auditor instead of being repaired at once.
    std::fs::write(
        dev.policy_dir.join("verification.toml"),
        "grace_period = \"5m\"\n[repair]\nautomatic = []\n",
    )
    .unwrap();
    let r = triplicate_server::start(ServeConfig {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        projection: ProjectionChoice::Sqlite,
        stream: Default::default(),
        origin: DEV_ORIGIN.into(),
        options: ServiceOptions::on_demand_crosscheck(),
    })
    .await
    .unwrap();
    populate(&r, 4).await;
    {
        let c = rusqlite::Connection::open(dir.path().join("projection.db")).unwrap();
        c.execute_batch(
            "DROP TRIGGER decisions_no_update;
             UPDATE decisions SET title = 'Not what was approved' WHERE seq IN (1, 2);",
        )
        .unwrap();
    }
    let url = format!("http://{}", r.addr);
    let token = r.auditor_token.clone();
    let key = dir.path().join("keys/auditor-1.pem");
    let key = key.to_str().unwrap().to_owned();
    let args = |a: &[&str]| -> Vec<String> {
        a.iter()
            .map(|s| s.to_string())
            .chain(["--url".into(), url.clone(), "--token".into(), token.clone()])
            .collect()
    };

    // The run through the service: two minor findings, both waiting for an auditor.
    let (code, out, err) = cli_async(args(&["crosscheck", "run", "--full"])).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("minor 2"), "{out}");
    assert_eq!(out.matches("waits for an auditor").count(), 2, "{out}");
    assert!(out.contains("carries this digest"), "{out}");

    // The list, human and JSON.
    let (code, out, err) = cli_async(args(&["crosscheck", "reports"])).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("minor"), "{out}");
    let (code, out, _) = cli_async(args(&["crosscheck", "reports", "--json"])).await;
    assert_eq!(code, 0);
    let page: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let run_id = page["reports"][0]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(page["reports"][0]["pending_actions"], 2, "{page}");

    // One report.
    let (code, out, _) = cli_async(args(&["crosscheck", "show", &run_id, "--json"])).await;
    assert_eq!(code, 1, "show exits 1 for a report with discrepancies");
    let shown: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(shown["audit_record_matches"], true);
    let ids: Vec<String> = shown["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{shown}");

    // An approver's key is not an auditor's: refused, exit 2, nothing recorded.
    let approver = dir.path().join("keys/approver-1.pem");
    let (code, _, err) = cli_async(args(&[
        "crosscheck",
        "approve",
        &ids[0],
        "--key",
        approver.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("auditors"), "{err}");

    // The auditor approves one (it is repaired) and rejects the other.
    let (code, out, err) = cli_async(args(&[
        "crosscheck",
        "approve",
        &ids[0],
        "--key",
        &key,
        "--reason",
        "restore the approved title",
    ]))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("approved") && out.contains("now applied"),
        "{out}"
    );
    let (code, out, err) = cli_async(args(&[
        "crosscheck",
        "reject",
        &ids[1],
        "--key",
        &key,
        "--reason",
        "investigate first",
    ]))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("now rejected"), "{out}");
    // A second verdict is refused.
    let (code, _, err) = cli_async(args(&["crosscheck", "approve", &ids[0], "--key", &key])).await;
    assert_eq!(code, 2, "{err}");

    let (code, out, _) = cli_async(args(&["crosscheck", "show", &run_id])).await;
    assert_eq!(code, 1);
    assert!(out.contains("approved by key"), "{out}");
    assert!(out.contains("rejected by key"), "{out}");

    // The rejected drift is still there; the approved one is gone.
    let (code, out, err) = cli_async(args(&["crosscheck", "run", "--json"])).await;
    assert_eq!(code, 1, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["counts"]["minor"], 1, "{report}");
    assert_eq!(report["discrepancies"][0]["seq"], 2, "{report}");
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crosscheck_run_on_a_data_dir_and_through_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let r = triplicate_server::start(ServeConfig {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        projection: ProjectionChoice::Sqlite,
        stream: Default::default(),
        origin: DEV_ORIGIN.into(),
        options: ServiceOptions::on_demand_crosscheck(),
    })
    .await
    .unwrap();
    let base = format!("http://{}", r.addr);
    populate(&r, 5).await;

    // The service holds the ledger: the data directory is refused, and --url suggested.
    let d = data.clone();
    let (code, _, err) =
        tokio::task::spawn_blocking(move || cli(&["crosscheck", "run", "--data-dir", &d]))
            .await
            .unwrap();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("locked") && err.contains("--url"), "{err}");

    // Through the service.
    let (b, t) = (base.clone(), r.admin_token.clone());
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        cli(&[
            "crosscheck",
            "run",
            "--full",
            "--url",
            &b,
            "--token",
            &t,
            "--json",
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["records_compared"], 5);
    let (b, t) = (base.clone(), r.admin_token.clone());
    let (code, out, err) =
        tokio::task::spawn_blocking(move || cli(&["admin", "resume", "--url", &b, "--token", &t]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("not frozen"), "{out}");
    let (code, _, _) = tokio::task::spawn_blocking(move || {
        cli(&["crosscheck", "run", "--url", &base, "--token", "wrong"])
    })
    .await
    .unwrap();
    assert_eq!(code, 2);
    r.stop().await.unwrap();

    // The stopped service's data directory: clean, exit 0.
    let d = data.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        cli(&["crosscheck", "run", "--full", "--data-dir", &d])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("lag 0  minor 0  major 0  critical 0"), "{out}");
    // The five decisions and the audit record of the run through the service.
    assert!(out.contains("6 records compared"), "{out}");
    assert!(out.contains("clean"), "{out}");
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        cli(&["crosscheck", "run", "--data-dir", &data, "--json"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["mode"], "incremental");
    assert_eq!(report["counts"]["minor"], 0);
}
