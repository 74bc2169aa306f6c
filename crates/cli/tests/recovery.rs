//! `triplicate backup` and `triplicate restore` as operators run them: exit codes, what they
//! print, and a target left untouched when a backup is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use serde_json::Value;
use triplicate_server::setup::{ProjectionChoice, DEV_ORIGIN};
use triplicate_server::{ServeConfig, ServiceOptions};

use common::cli;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_owned();
        if p.is_dir() {
            copy_dir(&p, &to.join(name));
        } else {
            std::fs::copy(&p, to.join(name)).unwrap();
        }
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A development service's data directory `dir` holding `n` decisions, the service stopped.
fn populated(rt: &tokio::runtime::Runtime, dir: &Path, n: usize) {
    rt.block_on(async {
        let r = start(dir).await.unwrap();
        common::submit(&r, n, "Adopt motion").await;
        r.stop().await.unwrap();
    });
}

async fn start(dir: &Path) -> Result<triplicate_server::Running, triplicate_server::StartFailure> {
    triplicate_server::start(ServeConfig {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        projection: ProjectionChoice::Sqlite,
        stream: Default::default(),
        origin: DEV_ORIGIN.into(),
        options: ServiceOptions::on_demand_crosscheck(),
    })
    .await
}

#[test]
fn backup_then_restore_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let rt = tokio::runtime::Runtime::new().unwrap();
    populated(&rt, &a, 12);
    let a_s = a.to_str().unwrap();
    let out = tmp.path().join("backup");
    let out_s = out.to_str().unwrap();

    let (code, stdout, stderr) = cli(&["backup", "--data-dir", a_s, "--out", out_s, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["tree_size"], 12);
    assert_eq!(v["stream_events"], 12);
    assert_eq!(v["projection_records"], 12);
    // Again: nothing new in the ledger, so no full tile or bundle is copied again.
    let (code, stdout, stderr) = cli(&["backup", "--data-dir", a_s, "--out", out_s]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("Backup of 12 records"), "{stdout}");

    // Into a fresh data directory holding the deployment's keys.
    let b = tmp.path().join("b");
    copy_dir(&a.join("keys"), &b.join("keys"));
    let b_s = b.to_str().unwrap();
    let (code, stdout, stderr) = cli(&["restore", "--from", out_s, "--data-dir", b_s, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["tree_size"], 12);
    assert_eq!(v["projection"]["written"], 12);
    assert_eq!(v["stream"]["export_agreeing"], 12);
    // Not empty any more: refused (2) unless forced.
    let (code, _, stderr) = cli(&["restore", "--from", out_s, "--data-dir", b_s]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("not empty") && stderr.contains("--force"),
        "{stderr}"
    );
    let (code, stdout, stderr) = cli(&["restore", "--from", out_s, "--data-dir", b_s, "--force"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("moved to"), "{stdout}");
    let (code, stdout, stderr) = cli(&["ledger", "fsck", "--data-dir", b_s]);
    assert_eq!(code, 0, "{stdout}{stderr}");

    // A damaged backup: exit 1, naming the file, the target untouched.
    let c = tmp.path().join("c");
    copy_dir(&a.join("keys"), &c.join("keys"));
    let before = listing(&c);
    let bundle = out.join("ledger/tile/entries/000.p/12");
    let mut d = std::fs::read(&bundle).unwrap();
    d[5] ^= 1;
    std::fs::write(&bundle, d).unwrap();
    let c_s = c.to_str().unwrap();
    let (code, stdout, stderr) = cli(&["restore", "--from", out_s, "--data-dir", c_s, "--json"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("tile/entries/000.p/12"), "{stderr}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert_eq!(listing(&c), before);

    // Another deployment's notary: the manifest's signature is refused.
    let d_dir = tmp.path().join("d");
    triplicate_server::setup::dev_setup(&d_dir).unwrap();
    let before = listing(&d_dir);
    let (code, _, stderr) = cli(&[
        "restore",
        "--from",
        out_s,
        "--data-dir",
        d_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("manifest.json") && stderr.contains("trusted notary key"),
        "{stderr}"
    );
    assert_eq!(listing(&d_dir), before);
}

#[test]
fn drills_through_the_cli_on_a_stopped_deployment_and_a_running_service() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    populated(&rt, &a, 6);
    let (a_s, scratch_s) = (a.to_str().unwrap(), scratch.to_str().unwrap());
    let (code, stdout, stderr) = cli(&[
        "drill",
        "run",
        "--scenario",
        "corrupt-ledger",
        "--data-dir",
        a_s,
        "--scratch-dir",
        scratch_s,
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["passed"], true, "{v}");
    assert_eq!(v["scenario"], "corrupt-ledger");
    assert_eq!(v["records_before"], 6);
    assert!(v["detected_by"].as_str().unwrap().contains("fsck"), "{v}");
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "scratch left behind"
    );
    let (code, _, stderr) = cli(&[
        "drill",
        "run",
        "--scenario",
        "lose-it-all",
        "--data-dir",
        a_s,
    ]);
    assert_eq!(code, 2, "{stderr}");
    // In place, on the stopped deployment itself: its originals kept under drills/.
    let (code, stdout, stderr) = cli(&[
        "drill",
        "run",
        "--scenario",
        "lose-stream",
        "--in-place",
        "--data-dir",
        a_s,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("PASSED") && stdout.contains("moved aside"),
        "{stdout}"
    );
    assert_eq!(std::fs::read_dir(a.join("drills")).unwrap().count(), 1);
    let (code, _, stderr) = cli(&[
        "drill",
        "run",
        "--scenario",
        "lose-stream",
        "--in-place",
        "--url",
        "http://127.0.0.1:9",
        "--token",
        "t",
    ]);
    assert_eq!(code, 2, "{stderr}");

    // A running service holds the ledger: --data-dir is refused, --url runs it there.
    rt.block_on(async {
        let r = start(&a).await.unwrap();
        let (code, _, stderr) = tokio::task::spawn_blocking({
            let a_s = a_s.to_owned();
            move || {
                cli(&[
                    "drill",
                    "run",
                    "--scenario",
                    "lose-stream",
                    "--data-dir",
                    &a_s,
                ])
            }
        })
        .await
        .unwrap();
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("--url"), "{stderr}");
        let url = format!("http://{}", r.addr);
        let token = r.admin_token.clone();
        let (code, stdout, stderr) = tokio::task::spawn_blocking({
            let (url, token) = (url.clone(), token.clone());
            move || {
                cli(&[
                    "drill",
                    "run",
                    "--scenario",
                    "lose-stream",
                    "--url",
                    &url,
                    "--token",
                    &token,
                ])
            }
        })
        .await
        .unwrap();
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(stdout.contains("PASSED"), "{stdout}");
        let (code, stdout, stderr) = tokio::task::spawn_blocking({
            let (url, token) = (url.clone(), token.clone());
            move || cli(&["drill", "reports", "--url", &url, "--token", &token])
        })
        .await
        .unwrap();
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains("lose-stream") && stdout.contains("corrupt-ledger"),
            "{stdout}"
        );
        assert_eq!(stdout.lines().count(), 3, "{stdout}");
        let id = stdout.split_whitespace().next().unwrap().to_owned();
        let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
            cli(&["drill", "show", &id, "--url", &url, "--token", &token])
        })
        .await
        .unwrap();
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains("notary signature") && stdout.contains("valid"),
            "{stdout}"
        );
        assert!(stdout.contains("carries this digest"), "{stdout}");
        r.stop().await.unwrap();
    });
}

#[test]
fn backup_and_restore_a_configured_deployment() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let rt = tokio::runtime::Runtime::new().unwrap();
    populated(&rt, &a, 7);
    // The same stores described by configuration files, as production runs them.
    let config = |name: &str, data: &Path| {
        let path = tmp.path().join(name);
        std::fs::write(
            &path,
            format!(
                "data_dir = {:?}\norigin = {DEV_ORIGIN:?}\npolicy_dir = {:?}\n[notary]\nkey = {:?}\n",
                data.display().to_string(),
                a.join("policies").display().to_string(),
                a.join("keys/notary.pem").display().to_string(),
            ),
        )
        .unwrap();
        path
    };
    let src = config("a.toml", &a);
    let b = tmp.path().join("b");
    let dst = config("b.toml", &b);
    let out = tmp.path().join("backup");
    let (code, stdout, stderr) = cli(&[
        "backup",
        "--config",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["tree_size"], 7);
    let (code, stdout, stderr) = cli(&[
        "restore",
        "--from",
        out.to_str().unwrap(),
        "--config",
        dst.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["projection"]["written"], 7);
    let (code, stdout, stderr) = cli(&["ledger", "fsck", "--data-dir", b.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // Both --data-dir and --config: refused by the argument parser.
    let (code, _, _) = cli(&[
        "backup",
        "--config",
        src.to_str().unwrap(),
        "--data-dir",
        a.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
}
