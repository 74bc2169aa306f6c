//! The cross-verifier inside the service: the real server on 127.0.0.1:0 with embedded
//! stores, driven over HTTP; stores tampered with as a superuser with the files would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use common::approve;
use std::time::Duration;

use serde_json::{json, Value};
use triplicate_core::Decision;
use triplicate_keys::SoftwareSigner;
use triplicate_server::auth::{hash_token, Role, TokenEntry};
use triplicate_server::config::{Config, NotaryConfig, StoreConfig};
use triplicate_server::setup::{dev_setup, DevPaths, DEV_ORIGIN};
use triplicate_server::{Running, ServiceOptions};

const ADMIN: &str = "tpl_test_admin";
const AUDITOR: &str = "tpl_test_auditor";
const SUBMITTER: &str = "tpl_test_submitter";

struct Harness {
    r: Running,
    approvers: Vec<SoftwareSigner>,
    http: reqwest::Client,
    base: String,
}

async fn start(dir: &std::path::Path) -> Harness {
    start_with(dir, None).await
}

/// Starts the service; `verification` is written as the policy's `verification.toml`. The
/// schedule runs only where a test wrote one: otherwise the default (every five minutes) could
/// add a run, and its audit record, in the middle of a test.
async fn start_with(dir: &std::path::Path, verification: Option<&str>) -> Harness {
    let dev = dev_setup(dir).unwrap();
    if let Some(v) = verification {
        std::fs::write(dev.policy_dir.join("verification.toml"), v).unwrap();
    }
    let scheduled = std::fs::read_to_string(dev.policy_dir.join("verification.toml"))
        .is_ok_and(|t| t.contains("[schedule]"));
    launch(dir, scheduled).await
}

/// Starts the service on the development set-up in `dir`, with the scheduled cross-check on
/// or off.
async fn launch(dir: &std::path::Path, scheduled: bool) -> Harness {
    let dev = dev_setup(dir).unwrap();
    let entry = |name: &str, role: Role, token: &str| TokenEntry {
        name: name.into(),
        role,
        sha256: hash_token(token),
    };
    let config = Config {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        origin: DEV_ORIGIN.into(),
        policy_dir: dev.policy_dir.clone(),
        restrict_reads: false,
        notary: NotaryConfig {
            key: DevPaths::new(dir)
                .keys
                .join("notary.pem")
                .to_string_lossy()
                .into_owned(),
            name: "triplicate-notary".into(),
        },
        projection: StoreConfig::default(),
        stream: Default::default(),
        tokens: vec![
            entry("admin", Role::Admin, ADMIN),
            entry("auditor", Role::Auditor, AUDITOR),
            entry("submitter", Role::Submitter, SUBMITTER),
        ],
    };
    let options = ServiceOptions {
        scheduled_crosscheck: scheduled,
        ..ServiceOptions::default()
    };
    let r = triplicate_server::start_configured(config, options)
        .await
        .unwrap();
    let base = format!("http://{}", r.addr);
    Harness {
        r,
        approvers: dev.approvers,
        http: reqwest::Client::new(),
        base,
    }
}

fn decision(title: &str) -> Decision {
    common::decision("motion", title)
}

impl Harness {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        common::call(&self.http, &self.base, method, path, token, body).await
    }

    fn submission(&self, i: usize) -> Value {
        let d = decision(&format!("Adopt motion {i}"));
        let approvals = [
            approve(&d, &self.approvers[0]),
            approve(&d, &self.approvers[1]),
        ];
        json!({ "decision": d, "approvals": approvals })
    }

    async fn submit(&self, i: usize) -> (u16, Value) {
        let b = self.submission(i);
        self.call("POST", "/v1/decisions", Some(SUBMITTER), Some(&b))
            .await
    }

    async fn submit_many(&self, n: usize) {
        for chunk in (0..n).collect::<Vec<_>>().chunks(25) {
            let outs = futures::future::join_all(chunk.iter().map(|&i| self.submit(i))).await;
            for (status, out) in outs {
                assert_eq!(status, 201, "{out}");
            }
        }
        self.wait_for_stores(n as u64).await;
    }

    async fn wait_for_stores(&self, size: u64) {
        for _ in 0..800 {
            let h = self.r.service.health();
            if h.stream.size >= size && h.projection.size >= size {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("stores did not catch up: {:?}", self.r.service.health());
    }

    async fn crosscheck(&self, full: bool) -> Value {
        let (status, report) = self
            .call(
                "POST",
                "/v1/admin/crosscheck",
                Some(AUDITOR),
                Some(&json!({ "full": full })),
            )
            .await;
        assert_eq!(status, 200, "{report}");
        report
    }
}

fn counts(report: &Value) -> (u64, u64, u64, u64) {
    let c = &report["counts"];
    (
        c["lag"].as_u64().unwrap(),
        c["minor"].as_u64().unwrap(),
        c["major"].as_u64().unwrap(),
        c["critical"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_run_finds_nothing_and_roles_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    // Nothing has run yet.
    let (status, _) = h
        .call("GET", "/v1/crosscheck/last", Some(AUDITOR), None)
        .await;
    assert_eq!(status, 404);
    h.submit_many(20).await;

    let report = h.crosscheck(false).await;
    assert_eq!(counts(&report), (0, 0, 0, 0), "{report}");
    assert_eq!(report["records_compared"], 20);
    assert_eq!(report["discrepancies"], json!([]));
    // An admin may run one too, with no body (an incremental run from the last).
    let (status, report2) = h
        .call("POST", "/v1/admin/crosscheck", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200, "{report2}");
    assert_eq!(report2["mode"], "incremental");
    assert_eq!(counts(&report2), (0, 0, 0, 0), "{report2}");
    let (status, last) = h
        .call("GET", "/v1/crosscheck/last", Some(AUDITOR), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(last["run_id"], report2["run_id"]);

    // Roles: no token 401; a submitter 403; resume is the admin's only.
    for (method, path) in [
        ("POST", "/v1/admin/crosscheck"),
        ("GET", "/v1/crosscheck/last"),
        ("POST", "/v1/admin/resume"),
    ] {
        let (status, body) = h.call(method, path, None, None).await;
        assert_eq!(status, 401, "{method} {path}: {body}");
        assert_eq!(body["type"], "https://triplicate.dev/problems/unauthorized");
        let (status, body) = h.call(method, path, Some(SUBMITTER), None).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert_eq!(body["type"], "https://triplicate.dev/problems/forbidden");
    }
    let (status, _) = h
        .call("POST", "/v1/admin/resume", Some(AUDITOR), None)
        .await;
    assert_eq!(status, 403);
    // A malformed body is a 400.
    let (status, _) = h
        .call(
            "POST",
            "/v1/admin/crosscheck",
            Some(AUDITOR),
            Some(&json!({ "fll": true })),
        )
        .await;
    assert_eq!(status, 400);
    h.r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_appends_its_audit_record_and_the_next_run_covers_it() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_with(dir.path(), Some("reverify_signatures = true\n")).await;
    h.submit_many(5).await;
    let report = h.crosscheck(true).await;
    assert_eq!(counts(&report), (0, 0, 0, 0), "{report}");
    assert_eq!(report["records_compared"], 5);
    assert_eq!(report["signatures_checked"], 15, "{report}");

    // The audit record: kind `verification`, id = run id, approved by the notary alone, and
    // committing to the report's digest, recomputed here from the report as served.
    let run_id = report["run_id"].as_str().unwrap().to_owned();
    let parsed: triplicate_verifier::Report = serde_json::from_value(report.clone()).unwrap();
    let digest = base64::engine::general_purpose::STANDARD.encode(parsed.digest().unwrap());
    let (status, got) = h
        .call(
            "GET",
            &format!("/v1/decisions/{run_id}"),
            Some(AUDITOR),
            None,
        )
        .await;
    assert_eq!(status, 200, "{got}");
    let record = &got["receipt"]["record"];
    assert_eq!(record["seq"], 5, "{got}");
    assert_eq!(record["decision"]["kind"], "verification");
    assert_eq!(
        record["decision"]["payload"]["report_digest"],
        digest.as_str()
    );
    assert_eq!(record["decision"]["payload"]["mode"], "full");
    assert_eq!(record["decision"]["payload"]["counts"]["major"], 0);
    let notary = h.r.service.notary().key_id().to_string();
    assert_eq!(record["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(record["approvals"][0]["key_id"], notary.as_str());
    h.wait_for_stores(6).await;

    // The next run compares the audit record across the three stores and re-verifies its
    // approval (the notary's) and notary signature: clean, and it appends its own.
    let next = h.crosscheck(false).await;
    assert_eq!(counts(&next), (0, 0, 0, 0), "{next}");
    assert!(next["records_compared"].as_u64().unwrap() >= 6, "{next}");
    assert_eq!(h.r.service.ledger().tree_size(), 7);

    // Nobody else may submit an audit record.
    let forged = common::decision("verification", "A forged verification run");
    let approvals = [
        approve(&forged, &h.approvers[0]),
        approve(&forged, &h.approvers[1]),
    ];
    let (status, body) = h
        .call(
            "POST",
            "/v1/decisions",
            Some(SUBMITTER),
            Some(&json!({ "decision": forged, "approvals": approvals })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("reserved"), "{body}");
    assert_eq!(h.r.service.ledger().tree_size(), 7);

    // The runs are in the metrics.
    let metrics = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "triplicate_crosscheck_runs_total{mode=\"full\",result=\"clean\"} 1",
        "triplicate_crosscheck_runs_total{mode=\"incremental\",result=\"clean\"} 1",
        "triplicate_crosscheck_last_run_discrepancies{class=\"major\"} 0",
        "triplicate_writes_frozen 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }
    assert!(
        metrics.lines().any(
            |l| l.starts_with("triplicate_crosscheck_records_verified_total ")
                && l != "triplicate_crosscheck_records_verified_total 0"
        ),
        "{metrics}"
    );
    h.r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_drift_is_minor_and_repaired_then_clean() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    h.submit_many(10).await;
    {
        let c = rusqlite::Connection::open(dir.path().join("projection.db")).unwrap();
        c.execute_batch(
            "DROP TRIGGER decisions_no_update;
             UPDATE decisions SET title = 'Motion 3: adopt a different report' WHERE seq = 3;",
        )
        .unwrap();
    }
    let report = h.crosscheck(true).await;
    assert_eq!(counts(&report), (0, 1, 0, 0), "{report}");
    let d = &report["discrepancies"][0];
    assert_eq!(
        (&d["seq"], &d["store"], &d["class"]),
        (&json!(3), &json!("projection"), &json!("minor")),
        "{d}"
    );
    assert_eq!(report["actions"][0]["status"], "applied", "{report}");
    // Writes are not frozen by a minor finding.
    assert!(h.r.service.writes_frozen().is_none());

    let again = h.crosscheck(false).await;
    assert_eq!(counts(&again), (0, 0, 0, 0), "{again}");
    let (status, got) = h.submit(100).await;
    assert_eq!(status, 201, "{got}");
    h.r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_tamper_is_critical_and_freezes_writes_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    h.submit_many(300).await;
    // The flusher writes the tiles within a second of the last append.
    let bundle = dir
        .path()
        .join("ledger")
        .join(triplicate_ledger::layout::bundle_path(0, 256));
    for _ in 0..200 {
        if bundle.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut bytes = std::fs::read(&bundle).unwrap();
    // Inside entry 0's bytes (past its 2-byte length), so the bundle still parses.
    bytes[200] ^= 0x01;
    std::fs::write(&bundle, &bytes).unwrap();

    let report = h.crosscheck(true).await;
    let (_, _, _, critical) = counts(&report);
    assert!(critical > 0, "{report}");
    let name = bundle.display().to_string();
    assert!(
        report["discrepancies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["class"] == "critical" && d["file"] == json!(name)),
        "{report}"
    );

    let (status, problem) = h.submit(1000).await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(
        problem["type"],
        "https://triplicate.dev/problems/writes-frozen"
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("ledger"), "{detail}");
    assert!(
        detail.contains(&report["run_id"].as_str().unwrap()[..8]),
        "{detail}"
    );
    let (status, ready) = h.call("GET", "/readyz", None, None).await;
    assert_eq!((status, &ready["accepting_writes"]), (503, &json!(false)));
    // Only an admin resumes.
    let (status, _) = h
        .call("POST", "/v1/admin/resume", Some(AUDITOR), None)
        .await;
    assert_eq!(status, 403);
    let (status, out) = h.call("POST", "/v1/admin/resume", Some(ADMIN), None).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["accepting_writes"], true);
    assert!(out["was_frozen"].as_str().unwrap().contains("ledger"));
    let (status, got) = h.submit(1001).await;
    assert_eq!(status, 201, "{got}");
    h.r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_runs_on_the_verification_toml_schedule() {
    let dir = tempfile::tempdir().unwrap();
    // Create the development set-up first, then give it a schedule of every second.
    dev_setup(dir.path()).unwrap();
    std::fs::write(
        DevPaths::new(dir.path())
            .policies
            .join("verification.toml"),
        "grace_period = \"5m\"\nreverify_signatures = true\n[repair]\nautomatic = [\"minor\"]\n\
         [schedule]\nincremental = \"* * * * * *\"\nfull = \"0 30 3 * * Sun\"\nrolling_window = 1000\n",
    )
    .unwrap();
    let h = start(dir.path()).await;
    assert_eq!(
        h.r.crosscheck.policy().incremental.expression(),
        "* * * * * *"
    );
    h.submit_many(5).await;
    // Each run appends its audit record, so runs that started before the submissions may have
    // put theirs first: wait for a run covering every seq up to the last submission (the
    // rolling window makes each incremental run start at 0 here).
    let covered = h.r.service.ledger().tree_size();
    assert!(covered >= 5);
    let mut last = Value::Null;
    for _ in 0..200 {
        let (status, body) = h
            .call("GET", "/v1/crosscheck/last", Some(ADMIN), None)
            .await;
        if status == 200 && body["records_compared"].as_u64() >= Some(covered) {
            last = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        last["records_compared"].as_u64() >= Some(covered),
        "no scheduled run covered the records: {last}"
    );
    assert_eq!(last["ranges"][0]["start"], 0, "{last}");
    assert_eq!(counts(&last), (0, 0, 0, 0), "{last}");
    // Signatures were re-verified, as the file asks: two approvals and the notary per record.
    assert!(last["signatures_checked"].as_u64().unwrap() >= 15, "{last}");
    h.r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_schedule_off_nothing_runs_until_asked() {
    let dir = tempfile::tempdir().unwrap();
    dev_setup(dir.path()).unwrap();
    std::fs::write(
        DevPaths::new(dir.path()).policies.join("verification.toml"),
        "[schedule]\nincremental = \"* * * * * *\"\nfull = \"* * * * * *\"\n",
    )
    .unwrap();
    let h = launch(dir.path(), false).await;
    h.submit_many(3).await;
    // Three seconds of a schedule that fires every second: no run, no audit record.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (status, _) = h
        .call("GET", "/v1/crosscheck/last", Some(AUDITOR), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(h.r.service.ledger().tree_size(), 3);
    // On demand it runs as ever.
    let report = h.crosscheck(false).await;
    assert_eq!(report["records_compared"], 3, "{report}");
    h.r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_caller_hangs_up_still_finishes_and_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let h = launch(dir.path(), false).await;
    h.submit_many(300).await;
    // The whole request is sent, then, once the server has had a moment to take it up, the
    // connection is closed before any answer (a client that timed out during a long run).
    common::post_and_hang_up(
        h.r.addr,
        "/v1/verification/runs",
        AUDITOR,
        r#"{"full": true}"#,
    )
    .await;

    // The run finished: its report is stored and its audit record is in the ledger.
    let mut last = (0, Value::Null);
    for _ in 0..300 {
        last = h
            .call("GET", "/v1/crosscheck/last", Some(AUDITOR), None)
            .await;
        if last.0 == 200 && h.r.service.ledger().tree_size() == 301 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, report) = last;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["records_compared"], 300, "{report}");
    assert_eq!(h.r.service.ledger().tree_size(), 301, "its audit record");
    let (status, stored) = h
        .call(
            "GET",
            &format!(
                "/v1/verification/reports/{}",
                report["run_id"].as_str().unwrap()
            ),
            Some(AUDITOR),
            None,
        )
        .await;
    assert_eq!(status, 200, "{stored}");
    h.r.stop().await.unwrap();
}
