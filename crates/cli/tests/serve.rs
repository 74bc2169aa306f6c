//! `triplicate serve` as operators run it: from a configuration file (its tokens, its policy,
//! restricted reads), reloading policies on SIGHUP, stopping on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;

mod common;
use common::KillOnDrop;

const BIN: &str = env!("CARGO_BIN_EXE_triplicate");

/// Starts `triplicate <args>` and returns the child (killed if a failed assertion leaves it
/// running) and the URL it printed.
fn spawn(args: &[&str], log: &Path) -> (KillOnDrop, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let first = common::first_line(&mut child, "serve");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    (KillOnDrop(child), url)
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("serve did not stop");
}

fn sha256_hex(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_server_uses_its_tokens_restricts_reads_and_reloads_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("dev");
    // A development set-up provides a notary key and a policy to point the config at.
    let (mut child, _) = spawn(
        &[
            "serve",
            "--data-dir",
            dev.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &dir.path().join("dev.log"),
    );
    signal(&child.0, "-TERM");
    assert!(
        wait_exit(&mut child.0).success(),
        "SIGTERM stops serve cleanly"
    );

    let config = dir.path().join("triplicate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "prod"
listen = "127.0.0.1:0"
origin = "example.org/governance"
policy_dir = "dev/policies"
restrict_reads = true
[notary]
key = "dev/keys/notary.pem"
[[tokens]]
name = "secretary"
role = "submitter"
sha256 = "{}"
[[tokens]]
name = "board-portal"
role = "reader"
sha256 = "{}"
"#,
            sha256_hex("secretary-token"),
            sha256_hex("reader-token")
        ),
    )
    .unwrap();
    let log = dir.path().join("prod.log");
    let (mut child, url) = spawn(&["serve", "--config", config.to_str().unwrap()], &log);
    assert!(
        dir.path().join("prod/ledger").is_dir(),
        "relative paths follow the config file"
    );
    assert!(
        !dir.path().join("prod/dev-admin-token").exists(),
        "nothing is generated"
    );

    let http = reqwest::Client::new();
    let get = |token: Option<&str>| {
        let mut req = http.get(format!("{url}/v1/decisions"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(
        get(None).await.unwrap().status(),
        401,
        "reads are restricted"
    );
    assert_eq!(get(Some("reader-token")).await.unwrap().status(), 200);
    let dev_token = std::fs::read_to_string(dev.join("dev-admin-token")).unwrap();
    assert_eq!(
        get(Some(dev_token.trim())).await.unwrap().status(),
        401,
        "only configured tokens"
    );
    let post = |token: &str| {
        http.post(format!("{url}/v1/decisions"))
            .bearer_auth(token)
            .body("{}")
            .send()
    };
    assert_eq!(post("reader-token").await.unwrap().status(), 403);
    assert_eq!(
        post("secretary-token").await.unwrap().status(),
        422,
        "authorised, malformed"
    );

    // SIGHUP: an invalid policy is refused and logged; the server keeps serving.
    let gov = dev.join("policies/governance.toml");
    let good = std::fs::read_to_string(&gov).unwrap();
    std::fs::write(&gov, good.replace("threshold = 2 }]", "threshold = 0 }]")).unwrap();
    signal(&child.0, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("policy refused on SIGHUP") {
            assert!(
                text.contains("governance.toml"),
                "the log names the file: {text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no refusal logged: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&gov, &good).unwrap();
    signal(&child.0, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("policy reloaded on SIGHUP")
    {
        assert!(Instant::now() < deadline, "no reload logged");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(Some("reader-token")).await.unwrap().status(), 200);
    signal(&child.0, "-TERM");
    assert!(wait_exit(&mut child.0).success());
}

#[test]
fn a_bad_configuration_refuses_to_start_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "data_dir = \"d\"\norigin = \"o\"\npolicy_dir = \"p\"\n[notary]\nkey = \"k.pem\"\n[projection]\nurl = \"mysql://x\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("projection.url"),
        "{err}"
    );
}
