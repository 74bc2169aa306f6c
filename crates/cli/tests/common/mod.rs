//! Helpers shared by the cli's integration tests: decisions approved as the development
//! approvers would, submitted to a service started in-process.

// Each test binary uses its own subset.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use triplicate_core::{Approval, Decision, Timestamp};
use triplicate_keys::SoftwareSigner;
use uuid::Uuid;

/// `key`'s approval of `d`, signed now.
pub fn approve(d: &Decision, key: &SoftwareSigner) -> Approval {
    triplicate_keys::approve(d, key, Timestamp::now()).unwrap()
}

/// Submits `n` motions titled `"{title} {i}"`, each approved by the development approvers 1
/// and 2, with the admin token; every one must be recorded (201).
pub async fn submit(r: &triplicate_server::Running, n: usize, title: &str) {
    let http = reqwest::Client::new();
    let base = format!("http://{}", r.addr);
    for i in 0..n {
        let d = Decision::from_json(
            json!({
                "id": Uuid::now_v7().to_string(),
                "kind": "motion",
                "title": format!("{title} {i}"),
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
}

/// Runs the `triplicate` binary with `args` (warnings only in its log, no token or PostgreSQL
/// URL from the environment): exit code, stdout, stderr.
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_triplicate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("TRIPLICATE_TOKEN")
        .env_remove("TRIPLICATE_POSTGRES_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
