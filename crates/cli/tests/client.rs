//! The client commands end to end: the real binary against `triplicate serve` started as a
//! child process on 127.0.0.1 (`sign`, `submit`, `get`, `list`, `verify --url`), the per-server
//! trust state (a server whose ledger was replaced, or whose notary key changed, is refused
//! with exit 1 and the state is left alone), the HTTP demo's summary and `bench submit`.
//!
//! Every test has its own data and client-state directories (`TRIPLICATE_CLIENT_STATE_DIR`),
//! so nothing touches the user's config directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_triplicate");

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json_out(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// The decisions of a `list --json`, without the cross-verifier's own `verification` audit
/// records (the demo's runs leave some; and should a scheduled run ever land between two
/// lists of a test, its record is not counted).
fn listed(o: &Output) -> Vec<Value> {
    let v = json_out(o);
    v["decisions"]
        .as_array()
        .unwrap_or_else(|| panic!("no decisions in {v}"))
        .iter()
        .filter(|r| r["decision"]["kind"] != "verification")
        .cloned()
        .collect()
}

/// The binary with a hermetic client state directory.
fn triplicate(state: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .env("TRIPLICATE_CLIENT_STATE_DIR", state)
        .env_remove("TRIPLICATE_TOKEN")
        .env_remove("TRIPLICATE_URL")
        .output()
        .unwrap()
}

/// `triplicate serve` as a child process; stopped with SIGINT when dropped.
struct Server {
    child: Child,
    url: String,
    data: PathBuf,
}

impl Server {
    fn start(data: &Path, listen: &str) -> Server {
        // No scheduled cross-check (the development default runs one every five minutes,
        // adding its audit record): these tests count records. `serve` keeps a policy file
        // that is already there when it creates the development set-up.
        let policies = data.join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        let verification = policies.join("verification.toml");
        if !verification.exists() {
            std::fs::write(
                &verification,
                "[schedule]\nincremental = \"0 0 0 1 1 * 2000\"\nfull = \"0 0 0 1 1 * 2000\"\n",
            )
            .unwrap();
        }
        let log = std::fs::File::create(data.with_extension("serve.log")).unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--data-dir", s(data), "--listen", listen])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let first =
            common::first_line(&mut child, "serve (see the .serve.log beside the data dir)");
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_owned();
        Server {
            child,
            url,
            data: data.to_owned(),
        }
    }

    fn listen_addr(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    fn token_file(&self) -> PathBuf {
        self.data.join("dev-admin-token")
    }

    fn approver(&self, n: usize) -> PathBuf {
        self.data.join(format!("keys/approver-{n}.pem"))
    }

    fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Writes a decision file of `kind` with a fresh UUIDv7 and returns its path and id.
fn decision_file(dir: &Path, name: &str, kind: &str, title: &str) -> (PathBuf, String) {
    let id = uuid::Uuid::now_v7().to_string();
    let path = dir.join(name);
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&json!({
            "id": id,
            "kind": kind,
            "title": title,
            "body": "Moved, seconded and carried.",
            "payload": {"year": 2026, "amount": {"currency": "EUR", "minor_units": 125000}},
            "proposed_at": "2026-03-01T09:30:00Z",
        }))
        .unwrap(),
    )
    .unwrap();
    (path, id)
}

/// Signs `file` in place with each key.
fn sign_all(state: &Path, file: &Path, keys: &[PathBuf]) {
    for k in keys {
        let o = triplicate(state, &["sign", "--key", s(k), s(file), "--out", s(file)]);
        assert_eq!(code(&o), 0, "{}", text(&o));
    }
}

fn state_files(state: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(state)
        .map(|rd| {
            rd.map(|e| {
                let p = e.unwrap().path();
                let b = std::fs::read(&p).unwrap();
                (p, b)
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn sign_submit_get_list_roundtrip() {
    let t = tempfile::tempdir().unwrap();
    let (state, work) = (t.path().join("state"), t.path().join("work"));
    std::fs::create_dir_all(&work).unwrap();
    let server = Server::start(&t.path().join("data"), "127.0.0.1:0");
    let url = server.url.clone();

    // Two approvers sign, one after the other; the second reads the first's submission.
    let (file, id) = decision_file(&work, "motion.json", "motion", "Adopt the annual report");
    let o = triplicate(&state, &["sign", "--key", s(&server.approver(1)), s(&file)]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let sub: Value = json_out(&o);
    assert_eq!(sub["approvals"].as_array().unwrap().len(), 1);
    let sub_file = work.join("submission.json");
    std::fs::write(&sub_file, &o.stdout).unwrap();
    let o = triplicate(
        &state,
        &[
            "sign",
            "--key",
            s(&server.approver(2)),
            s(&sub_file),
            "--out",
            s(&sub_file),
            "--json",
        ],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(json_out(&o)["approvals"], 2);
    let o = triplicate(
        &state,
        &["sign", "--key", s(&server.approver(2)), s(&sub_file)],
    );
    assert_eq!(code(&o), 1, "an approver signs once: {}", text(&o));

    // Submit: the receipt is verified, saved, and the server's checkpoint remembered.
    let receipt = work.join("receipt.json");
    let o = triplicate(
        &state,
        &[
            "submit",
            "--url",
            &url,
            "--token-file",
            s(&server.token_file()),
            s(&sub_file),
            "--receipt-out",
            s(&receipt),
        ],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("RECORDED (201): seq 0"), "{out}");
    assert!(out.contains("verified offline"), "{out}");
    assert!(out.contains("first contact: pinned notary key"), "{out}");
    let o = triplicate(
        &state,
        &[
            "verify",
            "receipt",
            s(&receipt),
            "--notary-key",
            s(&server.data.join("keys/notary.pem")),
        ],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(state_files(&state).len(), 1, "one state file per server");

    // The same submission again: 200 and the original receipt.
    let o = triplicate(
        &state,
        &[
            "submit",
            "--url",
            &url,
            "--token",
            std::fs::read_to_string(server.token_file()).unwrap().trim(),
            s(&sub_file),
            "--json",
        ],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v = json_out(&o);
    assert_eq!(v["status"], 200);
    assert_eq!(v["outcome"], "already_recorded");
    assert_eq!(v["seq"], 0);
    assert_eq!(v["stores"]["ledger"], "written");
    assert_eq!(v["server"]["first_contact"], false);

    // A second decision, the token from the environment.
    let (file2, id2) = decision_file(
        &work,
        "budget.json",
        "budget.approval",
        "Approve the budget",
    );
    sign_all(&state, &file2, &[server.approver(1), server.approver(3)]);
    let o = Command::new(BIN)
        .args(["submit", "--url", &url, s(&file2), "--json"])
        .env("RUST_LOG", "warn")
        .env("TRIPLICATE_CLIENT_STATE_DIR", &state)
        .env(
            "TRIPLICATE_TOKEN",
            std::fs::read_to_string(server.token_file()).unwrap().trim(),
        )
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(json_out(&o)["seq"], 1);

    // Get: the record with a fresh receipt, verified.
    let o = triplicate(&state, &["get", "--url", &url, &id]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("Adopt the annual report"), "{out}");
    assert!(out.contains("consistent"), "{out}");
    let o = triplicate(&state, &["get", "--url", &url, &id2, "--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v = json_out(&o);
    assert_eq!(v["receipt"]["record"]["decision"]["id"], id2.as_str());
    assert_eq!(
        v["receipt"]["record"]["approvals"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let o = triplicate(
        &state,
        &["get", "--url", &url, &uuid::Uuid::now_v7().to_string()],
    );
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("404 not-found"), "{}", text(&o));

    // List: from the projection, newest first, filtered.
    let o = triplicate(&state, &["list", "--url", &url, "--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let listed = listed(&o);
    let ids: Vec<&str> = listed
        .iter()
        .map(|r| r["decision"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id2.as_str(), id.as_str()]);
    let o = triplicate(&state, &["list", "--url", &url, "--kind", "motion"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains(&id) && !out.contains(&id2), "{out}");
    let o = triplicate(
        &state,
        &[
            "list", "--url", &url, "--q", "budget", "--limit", "1", "--json",
        ],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(json_out(&o)["decisions"][0]["decision"]["id"], id2.as_str());
    let o = triplicate(&state, &["list", "--url", &url, "--from", "yesterday"]);
    assert_eq!(code(&o), 1, "{}", text(&o));

    // verify --url: the pinned key, and the receipt checked against the server's history.
    let o = triplicate(&state, &["verify", "receipt", s(&receipt), "--url", &url]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).starts_with("VALID"), "{}", text(&o));
    let state_json: Value = serde_json::from_slice(&state_files(&state)[0].1).unwrap();
    assert!(state_json["size"].as_u64().unwrap() >= 2, "{state_json}");
    server.stop();
}

#[test]
fn refusals_exit_1_and_name_every_reason() {
    let t = tempfile::tempdir().unwrap();
    let (state, work) = (t.path().join("state"), t.path().join("work"));
    std::fs::create_dir_all(&work).unwrap();
    let server = Server::start(&t.path().join("data"), "127.0.0.1:0");
    let url = server.url.clone();
    let token = server.token_file();

    // A budget approval needs 1 of `treasury` (approver 1); an unknown key does not count.
    let stranger = work.join("stranger.pem");
    let o = triplicate(
        &state,
        &[
            "keys",
            "generate",
            "--out",
            s(&stranger),
            "--name",
            "stranger",
        ],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    let (file, _) = decision_file(&work, "budget.json", "budget.approval", "Buy a boat");
    sign_all(&state, &file, &[stranger.clone(), server.approver(2)]);
    let o = triplicate(
        &state,
        &["submit", "--url", &url, "--token-file", s(&token), s(&file)],
    );
    assert_eq!(code(&o), 1, "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("422 approvals-refused"), "{out}");
    assert!(out.contains("approval 0 (key "), "{out}");
    assert!(out.contains("unknown_key"), "{out}");
    assert!(out.contains("unmet: group `board` needs 2"), "{out}");
    assert!(out.contains("unmet: group `treasury` needs 1"), "{out}");

    let o = triplicate(
        &state,
        &[
            "submit",
            "--url",
            &url,
            "--token-file",
            s(&token),
            s(&file),
            "--json",
        ],
    );
    assert_eq!(code(&o), 1, "{}", text(&o));
    let v = json_out(&o);
    assert_eq!(v["status"], 422);
    assert_eq!(v["problem"]["approvals"][0]["reason"], "unknown_key");

    // No token: 401.
    let o = triplicate(&state, &["submit", "--url", &url, s(&file)]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("401 unauthorized"), "{}", text(&o));

    // Nothing was written.
    let o = triplicate(&state, &["list", "--url", &url, "--json"]);
    assert_eq!(listed(&o), Vec::<Value>::new());

    // An invalid decision is never signed: every problem is printed.
    let bad = work.join("bad.json");
    std::fs::write(
        &bad,
        json!({"id": "not-a-uuid", "kind": "Not A Kind", "title": " ", "body": "b",
               "payload": {"n": 1e300}, "proposed_at": "2026-03-01T09:30:00+01:00"})
        .to_string(),
    )
    .unwrap();
    let o = triplicate(&state, &["sign", "--key", s(&server.approver(1)), s(&bad)]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let out = text(&o);
    for field in ["id:", "kind:", "title:", "payload.n:", "proposed_at:"] {
        assert!(out.contains(field), "{field} in {out}");
    }

    // Unreachable server and unreadable input: exit 2.
    let o = triplicate(
        &state,
        &[
            "submit",
            "--url",
            "http://127.0.0.1:9",
            "--token-file",
            s(&token),
            s(&file),
        ],
    );
    assert_eq!(code(&o), 2, "{}", text(&o));
    let o = triplicate(
        &state,
        &["submit", "--url", &url, s(&work.join("missing.json"))],
    );
    assert_eq!(code(&o), 2, "{}", text(&o));
    server.stop();
}

#[test]
fn a_server_that_cannot_prove_consistency_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (state, work) = (t.path().join("state"), t.path().join("work"));
    std::fs::create_dir_all(&work).unwrap();
    let data_a = t.path().join("a");
    let a = Server::start(&data_a, "127.0.0.1:0");
    let (url, listen) = (a.url.clone(), a.listen_addr());

    let (file, id) = decision_file(&work, "one.json", "motion", "The first motion");
    sign_all(&state, &file, &[a.approver(1), a.approver(2)]);
    let o = triplicate(
        &state,
        &[
            "submit",
            "--url",
            &url,
            "--token-file",
            s(&a.token_file()),
            s(&file),
        ],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    a.stop();
    let remembered = state_files(&state);
    assert_eq!(remembered.len(), 1);

    // The same notary key, but the ledger is gone: a fresh one under the same URL, grown with
    // other records, cannot prove it extends the tree this client saw.
    let data_b = t.path().join("b");
    std::fs::create_dir_all(&data_b).unwrap();
    for part in ["keys", "policies"] {
        std::fs::create_dir_all(data_b.join(part)).unwrap();
        for e in std::fs::read_dir(data_a.join(part)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), data_b.join(part).join(e.file_name())).unwrap();
        }
    }
    std::fs::copy(
        data_a.join("dev-admin-token"),
        data_b.join("dev-admin-token"),
    )
    .unwrap();
    let b = Server::start(&data_b, &listen);
    assert_eq!(b.url, url);
    let o = triplicate(&state, &["get", "--url", &url, &id]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("UNTRUSTED"), "{}", text(&o));
    assert!(text(&o).contains("cannot prove"), "{}", text(&o));
    // Someone else (another client) records two other decisions on B.
    let other_state = t.path().join("other-state");
    for i in 0..2 {
        let (f, _) = decision_file(&work, &format!("b{i}.json"), "motion", "Another motion");
        sign_all(&other_state, &f, &[b.approver(1), b.approver(2)]);
        let o = triplicate(
            &other_state,
            &[
                "submit",
                "--url",
                &url,
                "--token-file",
                s(&b.token_file()),
                s(&f),
            ],
        );
        assert_eq!(code(&o), 0, "{}", text(&o));
    }
    let (f, _) = decision_file(&work, "mine.json", "motion", "Not sent");
    sign_all(&state, &f, &[b.approver(1), b.approver(2)]);
    let o = triplicate(
        &state,
        &[
            "submit",
            "--url",
            &url,
            "--token-file",
            s(&b.token_file()),
            s(&f),
            "--json",
        ],
    );
    assert_eq!(code(&o), 1, "{}", text(&o));
    let v = json_out(&o);
    assert_eq!(v["kind"], "untrusted", "{v}");
    let o = triplicate(&other_state, &["list", "--url", &url, "--json"]);
    assert_eq!(listed(&o).len(), 2, "the refused client sent nothing");
    assert_eq!(state_files(&state), remembered, "the state is not updated");
    b.stop();

    // A different notary key under the same URL.
    let c = Server::start(&t.path().join("c"), &listen);
    let o = triplicate(&state, &["get", "--url", &url, &id]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("changed its notary key"), "{}", text(&o));
    assert_eq!(state_files(&state), remembered, "the state is not updated");
    c.stop();

    // The original server again: still consistent with what was remembered.
    let a = Server::start(&data_a, &listen);
    let o = triplicate(&state, &["get", "--url", &url, &id]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    a.stop();
}

#[test]
fn demo_json_prints_the_counts() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let d = t.path().join("data");
    let o = triplicate(
        &state,
        &["demo", "--data-dir", s(&d), "--records", "4", "--json"],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v = json_out(&o);
    assert_eq!(v["records_submitted"], 4);
    assert_eq!(v["receipts_verified"], 4);
    assert_eq!(
        v["stores"],
        json!({"ledger": 4, "stream": 4, "projection": 4})
    );
    // The tamper tour: each store tampered with, found, handled, and clean at the end.
    let runs = v["runs"].as_array().unwrap();
    let stages: Vec<&str> = runs.iter().map(|r| r["stage"].as_str().unwrap()).collect();
    assert_eq!(
        stages,
        [
            "clean",
            "projection drift",
            "forged projection rows",
            "after the removal",
            "stream event altered",
            "ledger bundle flipped",
            "clean at the end"
        ]
    );
    let count = |i: usize, class: &str| runs[i]["counts"][class].as_u64().unwrap();
    assert_eq!(
        count(0, "minor") + count(0, "major") + count(0, "critical"),
        0
    );
    assert_eq!(count(1, "minor"), 1);
    assert_eq!(runs[1]["actions"][0]["status"], "applied");
    assert_eq!(count(2, "major"), 2);
    assert_eq!(runs[2]["actions"][0]["operation"], "remove_projection_rows");
    assert_eq!(count(4, "major"), 1);
    assert_eq!(runs[4]["actions"][0]["operation"], "rebuild_stream");
    assert!(count(5, "critical") >= 1);
    assert_eq!(
        runs[5]["audit_seq"],
        Value::Null,
        "no audit record while frozen"
    );
    for class in ["lag", "minor", "major", "critical"] {
        assert_eq!(count(6, class), 0, "the last run is clean");
    }
    // Every run but the critical one appended its audit record: 4 decisions + 6 audit records,
    // then the closing lose-projection drill. (A scheduled incremental run, every 5 minutes,
    // may add its own audit record while the tour runs: at least 10.)
    let drill = &v["drill"];
    assert_eq!(drill["scenario"], "lose-projection", "{drill}");
    assert_eq!(drill["passed"], true, "{drill}");
    assert!(drill["records_before"].as_u64().unwrap() >= 10, "{drill}");
    assert_eq!(drill["records_after"], drill["records_before"]);
    assert_eq!(drill["discrepancies_left"], 0);
    assert!(
        !d.join("drills").read_dir().unwrap().any(|_| true),
        "the scratch copy is removed"
    );

    // Again on the same data: it continues, and the stores still agree.
    let o = triplicate(&state, &["demo", "--data-dir", s(&d), "--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v = json_out(&o);
    assert_eq!(v["records_submitted"], 3);
    // 11 records (or more, with scheduled runs) from the first tour, then 3 decisions.
    let size = v["stores"]["ledger"].as_u64().unwrap();
    assert!(size >= 14, "{v}");
    assert_eq!(
        v["stores"],
        json!({"ledger": size, "stream": size, "projection": size})
    );
    // The receipts of both tours' decisions: 4 and 3.
    assert_eq!(d.join("receipts").read_dir().unwrap().count(), 7);

    // The data is kept for `serve`, its guards intact after the tamper tour.
    let server = Server::start(&d, "127.0.0.1:0");
    let o = triplicate(
        &state,
        &[
            "list",
            "--url",
            &server.url,
            "--kind",
            "budget.approval",
            "--json",
        ],
    );
    assert!(!json_out(&o)["decisions"].as_array().unwrap().is_empty());
    let o = triplicate(
        &state,
        &[
            "list",
            "--url",
            &server.url,
            "--kind",
            "verification",
            "--json",
        ],
    );
    assert!(json_out(&o)["decisions"].as_array().unwrap().len() >= 12);
    server.stop();
    let triggers: i64 = rusqlite::Connection::open(d.join("projection.db"))
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND name = 'decisions_no_update'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(triggers, 1, "the demo put the trigger back");

    // Without --data-dir: a scratch directory; the human tour.
    let o = triplicate(&state, &["demo", "--records", "1"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("The three stores agree"), "{out}");
    assert!(out.contains("scratch"), "{out}");
}

#[test]
fn bench_submit_embedded_and_against_a_server() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let o = triplicate(
        &state,
        &[
            "bench",
            "submit",
            "--records",
            "30",
            "--concurrency",
            "4",
            "--json",
        ],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v = json_out(&o);
    assert_eq!(v["accepted"], 30);
    assert_eq!(v["embedded"], true);
    assert!(v["decisions_per_second"].as_f64().unwrap() > 0.0);
    assert!(v["latency_ms"]["p99"].as_f64().unwrap() >= v["latency_ms"]["p50"].as_f64().unwrap());
    assert!(v["receipts_verified"].as_u64().unwrap() > 0);

    // Against a running server: its data dir's development approvers and token.
    let server = Server::start(&t.path().join("data"), "127.0.0.1:0");
    let o = triplicate(
        &state,
        &[
            "bench",
            "submit",
            "--url",
            &server.url,
            "--data-dir",
            s(&server.data),
            "--records",
            "20",
            "--concurrency",
            "3",
        ],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("20 accepted"), "{}", text(&o));
    // Keys the policy does not know: every submission refused, exit 1.
    let k = t.path().join("k.pem");
    triplicate(&state, &["keys", "generate", "--out", s(&k)]);
    let o = triplicate(
        &state,
        &[
            "bench",
            "submit",
            "--url",
            &server.url,
            "--data-dir",
            s(&server.data),
            "--key",
            s(&k),
            "--records",
            "5",
            "--json",
        ],
    );
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert_eq!(json_out(&o)["refused"], 5);
    server.stop();
}

/// The demo with its event stream in NATS JetStream (a stream of its own on the test server):
/// the stores agree, the cross-check tour runs (without the stream-edit step, which JetStream
/// refuses by design) and the closing drill passes.
#[test]
fn demo_runs_with_the_stream_on_jetstream() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let d = t.path().join("data");
    let nats = std::env::var("TRIPLICATE_TEST_NATS_URL")
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let id = uuid::Uuid::now_v7().simple().to_string();
    let url = format!("{nats}?stream=DEMO{id}&subject_prefix=demo{id}");
    let o = triplicate(
        &state,
        &[
            "demo",
            "--data-dir",
            s(&d),
            "--records",
            "4",
            "--json",
            "--stream-url",
            &url,
        ],
    );
    // The stream is deleted whatever happened (a plain NATS client, no Triplicate code).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if let Ok(c) = async_nats::connect(&nats).await {
            let _ = async_nats::jetstream::new(c)
                .delete_stream(format!("DEMO{id}"))
                .await;
        }
    });
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v = json_out(&o);
    assert_eq!(
        v["stores"],
        json!({"ledger": 4, "stream": 4, "projection": 4})
    );
    assert!(!d.join("stream.db").exists(), "the stream was not embedded");
    let stages: Vec<&str> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        [
            "clean",
            "projection drift",
            "forged projection rows",
            "after the removal",
            "ledger bundle flipped",
            "clean at the end"
        ]
    );
    assert_eq!(v["drill"]["passed"], true, "{}", v["drill"]);
    assert_eq!(v["drill"]["discrepancies_left"], 0);
}
