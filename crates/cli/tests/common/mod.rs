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

/// A child process killed if a failed assertion leaves it running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The first line `child` prints on its (piped) standard output, waited for at most 60 s;
/// the rest is read and discarded, so the child never blocks on a full pipe. A child that
/// prints nothing in time is killed and the test fails saying `what` (rather than wait for
/// ever).
pub fn first_line(child: &mut std::process::Child, what: &str) -> String {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        for _ in lines {}
    });
    match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(Some(Ok(line))) => line,
        Ok(_) => panic!("{what} printed nothing"),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} printed nothing in 60 s")
        }
    }
}
