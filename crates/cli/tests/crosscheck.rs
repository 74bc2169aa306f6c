//! `triplicate crosscheck run` and `triplicate admin resume` against a real service's data
//! directory and URL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::json;
use triplicate_core::{Approval, Decision, Timestamp};
use triplicate_keys::{Signer, SoftwareSigner};
use triplicate_server::setup::{ProjectionChoice, DEV_ORIGIN};
use triplicate_server::{ServeConfig, ServiceOptions};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_triplicate");

fn approve(d: &Decision, key: &SoftwareSigner) -> Approval {
    let signed_at = Timestamp::now();
    let msg = triplicate_core::digest::approval_message(
        &d.digest().unwrap(),
        &key.key_id(),
        key.algorithm(),
        &signed_at,
    )
    .unwrap();
    Approval {
        key_id: key.key_id(),
        alg: key.algorithm(),
        signature: key.sign(&msg).unwrap(),
        signed_at,
    }
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("TRIPLICATE_TOKEN")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crosscheck_run_on_a_data_dir_and_through_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let r = triplicate_server::start(ServeConfig {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        projection: ProjectionChoice::Sqlite,
        origin: DEV_ORIGIN.into(),
        options: ServiceOptions::default(),
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{}", r.addr);
    for i in 0..5 {
        let d = Decision::from_json(
            json!({
                "id": Uuid::now_v7().to_string(),
                "kind": "motion",
                "title": format!("Adopt motion {i}"),
                "body": "Moved and carried.",
                "payload": {},
                "proposed_at": Timestamp::now().to_string(),
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let b = json!({ "decision": d, "approvals": [approve(&d, &r.approvers[0]), approve(&d, &r.approvers[1])] });
        let resp = http
            .post(format!("{base}/v1/decisions"))
            .bearer_auth(&r.admin_token)
            .json(&b)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
    }
    for _ in 0..400 {
        let h = r.service.health();
        if h.stream.size >= 5 && h.projection.size >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }

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
