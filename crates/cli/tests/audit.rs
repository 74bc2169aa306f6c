//! `triplicate audit` (the binary) against a real service started in this process: a healthy
//! log and its growth, a rewritten log, a wrong notary key, an unreachable service, a tampered
//! entry bundle, and the metrics of a running auditor.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use triplicate_keys::{Signer, SoftwareSigner};
use triplicate_server::setup::{ProjectionChoice, DEV_ORIGIN};
use triplicate_server::{Running, ServeConfig, ServiceOptions};

const BIN: &str = env!("CARGO_BIN_EXE_triplicate");
const SECRET_VAR: &str = "AUDIT_HOOK_SECRET";
const SECRET: &str = "audit hook secret";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The service on a development set-up under `dir` whose cross-verifier stays quiet (no
/// scheduled run appends an audit record while a test counts entries).
async fn start(dir: &Path, listen: SocketAddr) -> Running {
    let dev = triplicate_server::setup::dev_setup(dir).unwrap();
    std::fs::write(
        dev.policy_dir.join("verification.toml"),
        "[schedule]\nincremental = \"0 0 1 1 *\"\nfull = \"0 0 1 1 *\"\n",
    )
    .unwrap();
    triplicate_server::start(ServeConfig {
        data_dir: dir.to_owned(),
        listen,
        projection: ProjectionChoice::Sqlite,
        stream: Default::default(),
        origin: DEV_ORIGIN.into(),
        options: ServiceOptions::on_demand_crosscheck(),
    })
    .await
    .unwrap()
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Submits `n` decisions approved by two development approvers, then waits until the ledger's
/// files on disk (which `/v1/ledger/tile/...` serves) hold them.
async fn populate(r: &Running, dir: &Path, n: usize, title: &str) {
    common::submit(r, n, title).await;
    let size = r.service.ledger().tree_size();
    let deadline = Instant::now() + Duration::from_secs(20);
    while flushed_size(dir) != Some(size) {
        assert!(Instant::now() < deadline, "the ledger was not flushed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The tree size of the checkpoint file (the last flush).
fn flushed_size(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("ledger/checkpoint")).ok()?;
    text.lines().nth(1)?.parse().ok()
}

fn notary_key(dir: &Path) -> String {
    s(&dir.join("ledger/notary.vkey")).to_owned()
}

/// `triplicate audit --once --url URL <args>`, with a hermetic client state directory, off the
/// async runtime.
async fn audit(
    client_state: &Path,
    url: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["audit", "--once", "--url", url])
        .args(args)
        .env("RUST_LOG", "warn")
        .env("TRIPLICATE_CLIENT_STATE_DIR", client_state)
        .env_remove("TRIPLICATE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn state_file(dir: &Path, addr: SocketAddr) -> PathBuf {
    dir.join(format!("audit-http_{}_{}.json", addr.ip(), addr.port()))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// What a receiver was sent: each request's headers and body.
type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A webhook receiver on 127.0.0.1:0 that records every POST and answers 200.
struct Receiver {
    url: String,
    received: Received,
}

impl Receiver {
    async fn start() -> Receiver {
        let received: Received = Arc::default();
        let app = axum::Router::new()
            .route(
                "/hook",
                post(
                    |State(r): State<Received>, headers: HeaderMap, body: Bytes| async move {
                        r.lock().unwrap().push((headers, body));
                        "ok"
                    },
                ),
            )
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, received }
    }

    fn received(&self) -> Vec<(HeaderMap, Bytes)> {
        self.received.lock().unwrap().clone()
    }
}

/// Checks a received alert's HMAC signature and returns its body.
fn verified_alert(headers: &HeaderMap, body: &[u8]) -> Value {
    let ts = headers["x-triplicate-timestamp"].to_str().unwrap();
    let sig = headers["x-triplicate-signature"].to_str().unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(sig, expected, "the alert's signature");
    serde_json::from_slice(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_verifies_a_healthy_log_then_its_growth() {
    let t = tempfile::tempdir().unwrap();
    let (data, state, clients) = (t.path().join("a"), t.path().join("st"), t.path().join("cl"));
    let r = start(&data, any_port()).await;
    populate(&r, &data, 3, "Adopt motion").await;
    let url = format!("http://{}", r.addr);
    let key = notary_key(&data);
    let args = ["--notary-key", &key, "--state-dir", s(&state), "--json"];

    let (code, out, err) = audit(&clients, &url, &args, &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["result"], "ok", "{v}");
    assert_eq!(v["checkpoint"]["size"], 3, "{v}");
    assert_eq!(v["previous_size"], Value::Null, "{v}");
    assert_eq!(v["sampled"], json!([0, 1, 2]), "{v}");
    let file = state_file(&state, r.addr);
    let saved = read_json(&file);
    assert_eq!(saved["size"], 3, "{saved}");
    assert_eq!(saved["url"], url.as_str());
    assert!(
        !err.contains("no --notary-key"),
        "a given key is trusted without a warning: {err}"
    );

    // More decisions: the new tree must be proved to extend the one remembered.
    populate(&r, &data, 2, "Another motion").await;
    let (code, out, err) = audit(&clients, &url, &args, &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["checkpoint"]["size"], 5, "{v}");
    assert_eq!(v["previous_size"], 3, "{v}");
    assert_eq!(v["sampled"].as_array().unwrap().len(), 5, "{v}");
    assert_eq!(read_json(&file)["size"], 5);

    // The human form, on the same tree, sampling fewer entries.
    let (code, out, err) = audit(
        &clients,
        &url,
        &[
            "--notary-key",
            &key,
            "--state-dir",
            s(&state),
            "--samples",
            "2",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("OK: "), "{out}");
    assert!(
        out.contains("the same tree as verified before (5 entries)"),
        "{out}"
    );
    assert!(out.contains("2 entries spot-checked"), "{out}");

    // Without --notary-key: the key pinned in the client state (trust on first use), with a
    // warning; the auditor's state then lives in the client state directory.
    let (code, out, err) = audit(&clients, &url, &[], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("no --notary-key"), "{err}");
    assert!(
        clients
            .join(format!("http_127.0.0.1_{}.json", r.addr.port()))
            .exists(),
        "the key is pinned in the client state"
    );
    assert_eq!(read_json(&state_file(&clients, r.addr))["size"], 5);
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_log_fails_alerts_and_keeps_the_old_checkpoint() {
    let t = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (t.path().join("a"), t.path().join("b"));
    let (state, clients) = (t.path().join("st"), t.path().join("cl"));
    let a = start(&data_a, any_port()).await;
    populate(&a, &data_a, 3, "Adopt motion").await;
    let addr = a.addr;
    let url = format!("http://{addr}");
    let key = notary_key(&data_a);
    let (code, out, err) = audit(
        &clients,
        &url,
        &["--notary-key", &key, "--state-dir", s(&state)],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let file = state_file(&state, addr);
    let remembered = std::fs::read(&file).unwrap();
    a.stop().await.unwrap();

    // The same notary key, a different history under the same URL: a fresh ledger, grown past
    // the size the auditor verified with other records.
    std::fs::create_dir_all(data_b.join("keys")).unwrap();
    for e in std::fs::read_dir(data_a.join("keys")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), data_b.join("keys").join(e.file_name())).unwrap();
    }
    let b = start(&data_b, addr).await;
    assert_eq!(b.addr, addr);
    populate(&b, &data_b, 5, "A different motion").await;
    assert_eq!(
        std::fs::read_to_string(data_b.join("ledger/notary.vkey")).unwrap(),
        std::fs::read_to_string(data_a.join("ledger/notary.vkey")).unwrap(),
        "the rewritten log is signed by the same notary"
    );

    let hook = Receiver::start().await;
    let args = [
        "--notary-key",
        &key,
        "--state-dir",
        s(&state),
        "--webhook",
        &hook.url,
        "--webhook-secret-env",
        SECRET_VAR,
    ];
    let (code, out, err) = audit(&clients, &url, &args, &[(SECRET_VAR, SECRET)]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("FAILED: the log was rewritten"), "{out}");
    assert!(
        out.contains("does not extend the tree of 3 entries"),
        "{out}"
    );
    let got = hook.received();
    assert_eq!(got.len(), 1, "one alert");
    let alert = verified_alert(&got[0].0, &got[0].1);
    assert_eq!(alert["type"], "triplicate.audit.alert", "{alert}");
    assert_eq!(alert["version"], 1, "{alert}");
    assert_eq!(alert["kind"], "failed", "{alert}");
    assert_eq!(alert["url"], url.as_str(), "{alert}");
    assert_eq!(alert["checkpoint"]["size"], 5, "{alert}");
    assert_eq!(alert["last_verified"]["size"], 3, "{alert}");
    assert!(
        alert["failure"]
            .as_str()
            .unwrap()
            .starts_with("the log was rewritten"),
        "{alert}"
    );
    assert!(alert["checked_at"].as_str().is_some(), "{alert}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        remembered,
        "the old checkpoint is kept"
    );

    // It keeps failing (and alerting): the new history is never adopted.
    let (code, out, err) = audit(&clients, &url, &args, &[(SECRET_VAR, SECRET)]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(hook.received().len(), 2, "a second alert");
    assert_eq!(std::fs::read(&file).unwrap(), remembered);
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_notary_key_fails_and_names_the_key() {
    let t = tempfile::tempdir().unwrap();
    let (data, state, clients) = (t.path().join("a"), t.path().join("st"), t.path().join("cl"));
    let r = start(&data, any_port()).await;
    populate(&r, &data, 1, "Adopt motion").await;
    let other = SoftwareSigner::generate("someone-else");
    let wrong =
        triplicate_keys::note::note_verifier_key("someone-else", &other.public_key()).unwrap();
    let url = format!("http://{}", r.addr);
    let (code, out, err) = audit(
        &clients,
        &url,
        &["--notary-key", &wrong, "--state-dir", s(&state)],
        &[],
    )
    .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("FAILED: "), "{out}");
    assert!(
        out.contains("not signed by the trusted notary key"),
        "{out}"
    );
    assert!(out.contains(&wrong), "the message names the key: {out}");
    assert!(
        !state_file(&state, r.addr).exists(),
        "nothing is remembered"
    );
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_service_exits_2_and_alerts_only_after_n_checks() {
    let t = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}");
    let hook = Receiver::start().await;
    // Any key will do: the service is never reached.
    let key =
        triplicate_keys::note::note_verifier_key("n", &SoftwareSigner::generate("n").public_key())
            .unwrap();
    let base = [
        "--notary-key",
        &key,
        "--state-dir",
        s(t.path()),
        "--webhook",
        &hook.url,
    ];
    let (code, out, err) = audit(t.path(), &url, &base, &[]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.starts_with("UNREACHABLE: "), "{out}");
    assert!(
        hook.received().is_empty(),
        "one unreachable check is no alert"
    );

    let mut args = base.to_vec();
    args.extend(["--unreachable-after", "1", "--json"]);
    let (code, out, err) = audit(t.path(), &url, &args, &[]).await;
    assert_eq!(code, 2, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["result"], "unreachable", "{v}");
    let got = hook.received();
    assert_eq!(got.len(), 1, "alerted at the first unreachable check");
    let alert: Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!(alert["kind"], "unreachable", "{alert}");
    assert_eq!(alert["checkpoint"], Value::Null, "{alert}");
    assert!(
        got[0].0.get("x-triplicate-signature").is_none(),
        "no secret, no signature"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_entry_bundle_is_caught_by_the_spot_check() {
    let t = tempfile::tempdir().unwrap();
    let (data, state, clients) = (t.path().join("a"), t.path().join("st"), t.path().join("cl"));
    let r = start(&data, any_port()).await;
    populate(&r, &data, 3, "Adopt motion").await;
    let url = format!("http://{}", r.addr);
    let key = notary_key(&data);
    let args = ["--notary-key", &key, "--state-dir", s(&state)];
    let (code, out, err) = audit(&clients, &url, &args, &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    let file = state_file(&state, r.addr);
    let remembered = std::fs::read(&file).unwrap();

    // One byte of entry 1 flipped in the bundle file the service serves, while it runs. The
    // checkpoint and the proofs (from the service's hash index) are untouched.
    let rel = triplicate_ledger::layout::bundle_path(0, 3);
    let bundle = data.join("ledger").join(&rel);
    let mut bytes = std::fs::read(&bundle).unwrap();
    let first_len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
    let at = 2 + first_len + 2 + 20; // inside entry 1's bytes
    bytes[at] ^= 0x01;
    std::fs::write(&bundle, &bytes).unwrap();

    let (code, out, err) = audit(&clients, &url, &args, &[]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.starts_with("FAILED: 1 of 3 spot-checked entries"),
        "{out}"
    );
    assert!(
        out.contains("entry 1: its bytes in tile/entries/000.p/3"),
        "{out}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), remembered);
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_auditor_serves_its_metrics_and_stops_on_sigterm() {
    let t = tempfile::tempdir().unwrap();
    let (data, state) = (t.path().join("a"), t.path().join("st"));
    let r = start(&data, any_port()).await;
    populate(&r, &data, 2, "Adopt motion").await;
    let url = format!("http://{}", r.addr);
    let key = notary_key(&data);
    let log = std::fs::File::create(t.path().join("audit.log")).unwrap();
    let child = Command::new(BIN)
        .args([
            "audit",
            "--url",
            &url,
            "--interval",
            "1s",
            "--listen",
            "127.0.0.1:0",
            "--notary-key",
            &key,
            "--state-dir",
            s(&state),
        ])
        .env("RUST_LOG", "info")
        .env("TRIPLICATE_CLIENT_STATE_DIR", t.path().join("cl"))
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut child = common::KillOnDrop(child);
    let first = common::first_line(&mut child.0, "audit");
    let metrics_url = first
        .split_whitespace()
        .map(|w| w.trim_end_matches(['.', ';']))
        .find(|w| w.starts_with("http://") && w.ends_with("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address in {first:?}"))
        .to_owned();

    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = match http.get(&metrics_url).send().await {
            Ok(resp) => resp.text().await.unwrap(),
            Err(_) => String::new(),
        };
        if metric(&text, "triplicate_audit_checks_total{result=\"ok\"}").unwrap_or(0.0) >= 2.0 {
            break text;
        }
        assert!(Instant::now() < deadline, "no two passing checks:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        metric(&text, "triplicate_audit_checks_total{result=\"failed\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "triplicate_audit_tree_size"),
        Some(2.0),
        "{text}"
    );
    let last = metric(&text, "triplicate_audit_last_success_timestamp_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - last).abs() < 60.0, "last success {last}, now {now}");
    assert!(
        metric(&text, "triplicate_audit_entries_checked_total").unwrap() >= 4.0,
        "{text}"
    );
    let health = http
        .get(metrics_url.replace("/metrics", "/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);

    assert!(Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the auditor did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    assert_eq!(read_json(&state_file(&state, r.addr))["size"], 2);
    r.stop().await.unwrap();
}

/// The value of the sample `name` (with its labels, as exposed) in a text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
