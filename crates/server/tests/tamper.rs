//! The tamper matrix (issue 5): each store tampered with as someone holding its files would,
//! on a populated service (the real server on 127.0.0.1:0, development set-up, embedded
//! stores), then one full cross-check through `POST /v1/verification/runs`. Each test checks
//! the discrepancy (class, kind, seq, store, hashes), the action, the stored report, the
//! metrics, the signed webhook alert (one POST naming the discrepancies), and what follows: a
//! clean run after an automatic repair, an auditor's signed verdict on a proposed one,
//! `POST /v1/admin/resume` after a critical finding.
//!
//! | tamper | class | kind | action | follow-up |
//! |---|---|---|---|---|
//! | projection: a column updated | minor | differs | replace rows, automatic, applied | next run clean |
//! | projection: a row deleted | minor | gap | replace (restore) rows, automatic, applied | next run clean |
//! | projection: a row the ledger lacks | major | extra | remove rows, proposed | approved: removed; clean after |
//! | stream: an event deleted | major | gap | rebuild stream, proposed | rejected: found again |
//! | stream: an event's data altered | major | differs | rebuild stream, proposed | approved: rebuilt from the ledger, checked against the signed checkpoint, swapped in; clean |
//! | stream: a forged event | major | extra | rebuild stream, proposed | rejected: found again (as differs) |
//! | ledger: a byte of an entry bundle | critical | ledger_files, leaf_mismatch, root_mismatch | none; writes frozen | resumed; restored: clean |
//! | ledger: a byte of a hash tile | critical | ledger_files | none; writes frozen | resumed; restored: clean |
//! | ledger: the checkpoint rewritten | critical | ledger_files | none; writes frozen | resumed; stopped: refuses to open, offline run critical; restored: clean |

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use common::verdict_body;
use hmac::Mac as _;
use serde_json::{json, Value};
use triplicate_core::digest::leaf_hash;
use triplicate_core::{Hash, Timestamp};
use triplicate_server::setup::{dev_setup, DevPaths, ProjectionChoice, DEV_ORIGIN};
use triplicate_server::{Running, ServeConfig, ServiceOptions, StartFailure};
use triplicate_verifier::review::Verdict;
use uuid::Uuid;

/// Records a service holds before its stream or projection is tampered with.
const RECORDS: usize = 60;

/// Records a service holds before its ledger is tampered with: past one full entry bundle and
/// one full hash tile (256 entries), so `tile/entries/000` and `tile/0/000` exist. (Those files
/// are permanent; partial ones are rewritten at the next flush.)
const LEDGER_RECORDS: usize = 260;

/// The seq tampered with downstream: well inside the stores, below their highest seq.
const SEQ: u64 = 42;

/// A local webhook receiver (`common::receiver`) and the secret its alerts are signed with.
struct Receiver {
    url: String,
    posts: common::Posts,
    secret: String,
}

async fn receiver(secret: &str) -> Receiver {
    let (url, posts) = common::receiver().await;
    Receiver {
        url,
        posts,
        secret: secret.to_owned(),
    }
}

/// `verification.toml` for these tests: no grace (a record missing downstream is past it at
/// once), the default `[repair] automatic = ["minor"]`, schedules pinned to a past year so the
/// service's own loop never runs during a test (only the runs a test asks for happen), and one
/// webhook listing every class, signed with the secret in `var`.
fn verification_toml(url: &str, var: &str) -> String {
    format!(
        "grace_period = \"0s\"\n\
         [schedule]\n\
         incremental = \"0 0 0 1 1 * 2000\"\n\
         full = \"0 0 0 1 1 * 2000\"\n\n\
         [[webhook]]\n\
         url = \"{url}\"\n\
         secret_env = \"{var}\"\n\
         classes = [\"lag\", \"minor\", \"major\", \"critical\"]\n"
    )
}

struct H {
    r: Running,
    http: reqwest::Client,
    base: String,
    dir: PathBuf,
    hook: Receiver,
}

/// Starts the development set-up under `dir` with the webhook secret in the environment
/// variable `var` (unique to the test).
async fn start(dir: &Path, var: &str) -> H {
    let secret = format!("secret-of-{var}");
    std::env::set_var(var, &secret);
    let hook = receiver(&secret).await;
    let r = launch(dir, &hook.url, var).await.unwrap();
    let base = format!("http://{}", r.addr);
    H {
        r,
        http: reqwest::Client::new(),
        base,
        dir: dir.to_owned(),
        hook,
    }
}

async fn launch(dir: &Path, url: &str, var: &str) -> Result<Running, StartFailure> {
    dev_setup(dir).unwrap();
    std::fs::write(
        DevPaths::new(dir).policies.join("verification.toml"),
        verification_toml(url, var),
    )
    .unwrap();
    triplicate_server::start(ServeConfig {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        projection: ProjectionChoice::Sqlite,
        stream: Default::default(),
        origin: DEV_ORIGIN.into(),
        options: ServiceOptions::default(),
    })
    .await
}

impl H {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        common::call(&self.http, &self.base, method, path, token, body).await
    }

    fn auditor(&self) -> &str {
        &self.r.auditor_token
    }

    /// Submits one decision approved by approvers 1 and 2, with the admin token.
    async fn submit(&self, title: &str) -> (u16, Value) {
        let d = common::decision("motion", title);
        let b = common::body(
            &d,
            &[
                common::approve(&d, &self.r.approvers[0]),
                common::approve(&d, &self.r.approvers[1]),
            ],
        );
        self.call("POST", "/v1/decisions", Some(&self.r.admin_token), Some(&b))
            .await
    }

    /// Submits `n` decisions and waits for both copies to hold them.
    async fn populate(&self, n: usize) {
        common::populate(&self.r, &self.http, n).await;
    }

    /// Waits until the stream and the projection hold everything the ledger does.
    async fn settle(&self) {
        common::settle(&self.r.service).await;
    }

    fn ledger_dir(&self) -> PathBuf {
        self.dir.join("ledger")
    }

    /// Waits until the flusher has written the tiles and a checkpoint of the ledger's current
    /// size to disk and has nothing left to write, so the files edited next are ones the
    /// running service will not rewrite. The flusher wakes once a second and flushes when the
    /// ledger grew since its last flush, which it may have counted from before the last
    /// append: a checkpoint of the right size left alone for two seconds is its last.
    async fn flushed(&self) {
        let size = self.r.service.ledger().tree_size();
        let checkpoint = self
            .ledger_dir()
            .join(triplicate_ledger::layout::CHECKPOINT);
        for _ in 0..400 {
            let on_disk = std::fs::read_to_string(&checkpoint)
                .ok()
                .and_then(|t| t.lines().nth(1).and_then(|l| l.parse::<u64>().ok()));
            let age = std::fs::metadata(&checkpoint)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .unwrap_or_default();
            if on_disk == Some(size) && age >= Duration::from_secs(2) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the flusher did not settle on a checkpoint of size {size}");
    }

    /// A full run, answered with the stored report (201).
    async fn run(&self) -> Value {
        common::full_run(&self.r, &self.http, self.auditor()).await
    }

    /// The stored report of the run, as `GET /v1/verification/reports/{id}` serves it.
    async fn stored(&self, run: &Value) -> Value {
        let id = run["run_id"].as_str().unwrap();
        let (status, body) = self
            .call(
                "GET",
                &format!("/v1/verification/reports/{id}"),
                Some(self.auditor()),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Asserts that each line is in `/metrics` exactly.
    async fn assert_metrics(&self, lines: &[String]) {
        let text = self.metrics().await;
        for line in lines {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    /// The metrics a single full run with `counts` (lag, minor, major, critical) leaves.
    async fn assert_run_metrics(&self, counts: (u64, u64, u64, u64), findings_runs: u64) {
        let (lag, minor, major, critical) = counts;
        let mut lines = vec![format!(
            "triplicate_crosscheck_runs_total{{mode=\"full\",result=\"findings\"}} {findings_runs}"
        )];
        for (class, n) in [
            ("lag", lag),
            ("minor", minor),
            ("major", major),
            ("critical", critical),
        ] {
            lines.push(format!(
                "triplicate_crosscheck_last_run_discrepancies{{class=\"{class}\"}} {n}"
            ));
        }
        self.assert_metrics(&lines).await;
    }

    /// Waits for the webhook's `n`-th POST, checks that no other arrives meanwhile, checks its
    /// HMAC-SHA256 signature, and returns its body.
    async fn alert(&self, n: usize) -> Value {
        for _ in 0..400 {
            if self.hook.posts.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        // A second POST for the same run would come at once (one per target and run).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let posts = self.hook.posts.lock().unwrap().clone();
        assert_eq!(posts.len(), n, "exactly {n} alert(s) by now");
        let (headers, body) = &posts[n - 1];
        let ts = headers["x-triplicate-timestamp"].to_str().unwrap();
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(self.hook.secret.as_bytes()).unwrap();
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            headers["x-triplicate-signature"].to_str().unwrap(),
            expected,
            "the alert is signed with the test's secret"
        );
        serde_json::from_slice(body).unwrap()
    }

    /// The development auditor's signed verdict on the proposed repair `action`, posted to
    /// `approve` or `reject`: the status and the answer.
    async fn verdict(&self, action: &str, verdict: Verdict, reason: &str) -> (u16, Value) {
        let path = format!("/v1/verification/repairs/{action}");
        let (status, repair) = self.call("GET", &path, Some(self.auditor()), None).await;
        assert_eq!(status, 200, "{repair}");
        let key = self.r.auditor.as_ref().unwrap();
        let body = verdict_body(key, &repair, verdict, reason);
        let which = match verdict {
            Verdict::Approved => "approve",
            Verdict::Rejected => "reject",
        };
        self.call(
            "POST",
            &format!("{path}/{which}"),
            Some(self.auditor()),
            Some(&body),
        )
        .await
    }

    /// The ledger's entry at `seq`, its leaf hash, and its decision's id and title.
    fn ledger_record(&self, seq: u64) -> (Vec<u8>, Hash, String, String) {
        let ledger = self.r.service.ledger();
        let bytes = ledger.entry(seq).unwrap();
        let leaf = ledger.leaf_hashes(seq, seq + 1).unwrap()[0];
        assert_eq!(leaf, leaf_hash(&bytes));
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let id = v["decision"]["id"].as_str().unwrap().to_owned();
        let title = v["decision"]["title"].as_str().unwrap().to_owned();
        (bytes, leaf, id, title)
    }

    /// Stops the service and waits for it to let go of its files: the ledger's lock is
    /// released when the committer, which ends once the last handle is dropped, drops it.
    async fn stop(self) -> (PathBuf, Receiver) {
        self.r.stop().await.unwrap();
        let lock = self
            .dir
            .join("ledger")
            .join(triplicate_ledger::layout::LOCK);
        for _ in 0..400 {
            let f = std::fs::File::open(&lock).unwrap();
            if f.try_lock().is_ok() {
                f.unlock().unwrap();
                return (self.dir, self.hook);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the stopped service still holds {}", lock.display());
    }
}

/// The signed verdict body for the repair as `GET /v1/verification/repairs/{id}` serves it.
fn b64(h: &Hash) -> String {
    base64::engine::general_purpose::STANDARD.encode(h)
}

/// Replaces the one occurrence of `from` in a record's canonical JSON with `to`. For the
/// ASCII strings and integers used here the result is still canonical (RFC 8785 orders keys
/// by name, and no escaping changes), so it is exactly what a store holding the altered record
/// re-derives.
fn replace_once(record: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = std::str::from_utf8(record).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{from} in {text}");
    text.replacen(from, to, 1).into_bytes()
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

/// A discrepancy's seq, store, class and kind.
fn finding(d: &Value) -> Value {
    json!([d["seq"], d["store"], d["class"], d["kind"]])
}

/// An action's seq, operation, authority and status.
fn action(a: &Value) -> Value {
    json!([a["seq"], a["operation"], a["authority"], a["status"]])
}

/// The one discrepancy of a report.
fn only(report: &Value) -> &Value {
    let all = report["discrepancies"].as_array().unwrap();
    assert_eq!(all.len(), 1, "{report}");
    &all[0]
}

/// A raw connection to one of the data directory's SQLite files, as its owner would open it.
fn raw(dir: &Path, file: &str) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(dir.join(file)).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

/// What every tamper test checks of a run and its stored copy: the counts, the audit record
/// (appended at `audit_seq` and carrying the stored digest; none while writes are frozen), and
/// that `GET /v1/verification/reports/{id}` serves what the run answered.
async fn check_stored(h: &H, run: &Value, expected: (u64, u64, u64, u64), audit_seq: Value) {
    assert_eq!(counts(&run["report"]), expected, "{run}");
    assert_eq!(run["audit_seq"], audit_seq, "{run}");
    let matches = if audit_seq.is_null() {
        Value::Null
    } else {
        json!(true)
    };
    assert_eq!(run["audit_record_matches"], matches, "{run}");
    let stored = h.stored(run).await;
    assert_eq!(&stored, run, "the stored report is what the run answered");
}

/// Checks a run's alert: its run, digest, counts, worst class, and the discrepancies, as the
/// report has them (the target lists every class, so none is left out).
fn check_alert(alert: &Value, run: &Value) {
    assert_eq!(alert["type"], "triplicate.verification.alert");
    let worst = ["critical", "major", "minor", "lag"]
        .into_iter()
        .find(|c| run["report"]["counts"][*c].as_u64() > Some(0));
    assert_eq!(alert["worst_class"], json!(worst));
    assert_eq!(alert["run_id"], run["run_id"]);
    assert_eq!(alert["report_digest"], run["digest"]);
    assert_eq!(alert["counts"], run["report"]["counts"]);
    // The alert writes `null` for a file or decision id where the report leaves the field out.
    let mut listed = alert["discrepancies"].clone();
    for d in listed.as_array_mut().unwrap() {
        let d = d.as_object_mut().unwrap();
        for field in ["file", "decision_id"] {
            if d.get(field) == Some(&Value::Null) {
                d.remove(field);
            }
        }
    }
    assert_eq!(
        listed, run["report"]["discrepancies"],
        "the alert names every discrepancy of the run"
    );
    assert_eq!(alert["discrepancies_omitted"], 0);
}

// ---------------------------------------------------------------------------------------
// The projection

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_column_updated_is_minor_and_repaired_then_clean() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(
        dir.path(),
        "TRIPLICATE_TEST_TAMPER_SECRET_PROJECTION_UPDATE",
    )
    .await;
    h.populate(RECORDS).await;
    let n = h.r.service.ledger().tree_size();
    let (bytes, leaf, id, title) = h.ledger_record(SEQ);
    // As a superuser would: drop the guard, then update.
    let forged_title = "Adopt a motion nobody approved";
    raw(dir.path(), "projection.db")
        .execute_batch(&format!(
            "DROP TRIGGER decisions_no_update;
             UPDATE decisions SET title = '{forged_title}' WHERE seq = {SEQ};"
        ))
        .unwrap();
    let rows_now = replace_once(
        &bytes,
        &format!("\"title\":\"{title}\""),
        &format!("\"title\":\"{forged_title}\""),
    );

    let run = h.run().await;
    check_stored(&h, &run, (0, 1, 0, 0), json!(n)).await;
    let d = only(&run["report"]);
    assert_eq!(
        finding(d),
        json!([SEQ, "projection", "minor", "differs"]),
        "{d}"
    );
    assert_eq!(d["decision_id"], id.as_str());
    assert_eq!(d["expected_hash"], b64(&leaf), "the ledger's leaf hash");
    assert_eq!(
        d["actual_hash"],
        b64(&leaf_hash(&rows_now)),
        "what the altered rows re-derive to"
    );
    // Repaired at once, from the ledger, and logged with the run id.
    let a = &run["report"]["actions"][0];
    assert_eq!(run["report"]["actions"].as_array().unwrap().len(), 1);
    assert_eq!(
        action(a),
        json!([SEQ, "replace_projection_rows", "automatic", "applied"]),
        "{a}"
    );
    assert_eq!(a["restores"], b64(&leaf));
    assert_eq!(run["actions"][0]["status"], "applied");
    assert_eq!(run["actions"][0]["pending"], false);
    let logged: String = raw(dir.path(), "projection.db")
        .query_row(
            &format!("SELECT run_id FROM repairs WHERE seq = {SEQ}"),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(logged, run["run_id"].as_str().unwrap());
    assert!(h.r.service.writes_frozen().is_none());

    h.assert_run_metrics((0, 1, 0, 0), 1).await;
    check_alert(&h.alert(1).await, &run);

    // The projection holds the ledger's record again: the next run is clean, and posts nothing.
    h.settle().await;
    let next = h.run().await;
    assert_eq!(next["report"]["discrepancies"], json!([]), "{next}");
    h.assert_metrics(&[
        "triplicate_crosscheck_runs_total{mode=\"full\",result=\"clean\"} 1".into(),
        "triplicate_crosscheck_last_run_discrepancies{class=\"minor\"} 0".into(),
    ])
    .await;
    assert_eq!(h.hook.posts.lock().unwrap().len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_row_deleted_is_a_minor_gap_and_restored_then_clean() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(
        dir.path(),
        "TRIPLICATE_TEST_TAMPER_SECRET_PROJECTION_DELETE",
    )
    .await;
    h.populate(RECORDS).await;
    let n = h.r.service.ledger().tree_size();
    let (_, leaf, id, _) = h.ledger_record(SEQ);
    // The decision's row only; its approval rows are left behind, describing nothing.
    raw(dir.path(), "projection.db")
        .execute_batch(&format!(
            "DROP TRIGGER decisions_no_delete; DELETE FROM decisions WHERE seq = {SEQ};"
        ))
        .unwrap();

    let run = h.run().await;
    check_stored(&h, &run, (0, 1, 0, 0), json!(n)).await;
    let d = only(&run["report"]);
    // A hole below the projection's highest seq: minor whatever the grace period (stores fill
    // in seq order, so it was removed, not lagging).
    assert_eq!(
        finding(d),
        json!([SEQ, "projection", "minor", "gap"]),
        "{d}"
    );
    assert_eq!(d["decision_id"], id.as_str());
    assert_eq!(d["expected_hash"], b64(&leaf));
    assert_eq!(d["actual_hash"], Value::Null, "nothing there to re-derive");
    let a = &run["report"]["actions"][0];
    assert_eq!(run["report"]["actions"].as_array().unwrap().len(), 1);
    assert_eq!(
        action(a),
        json!([SEQ, "replace_projection_rows", "automatic", "applied"]),
        "{a}"
    );
    assert_eq!(run["actions"][0]["status"], "applied");

    h.assert_run_metrics((0, 1, 0, 0), 1).await;
    check_alert(&h.alert(1).await, &run);

    // Restored: readers see the decision again, and the next run is clean.
    let (status, got) = h
        .call("GET", &format!("/v1/decisions/{id}"), None, None)
        .await;
    assert_eq!(status, 200, "{got}");
    h.settle().await;
    let next = h.run().await;
    assert_eq!(next["report"]["discrepancies"], json!([]), "{next}");
    h.assert_metrics(&[
        "triplicate_crosscheck_runs_total{mode=\"full\",result=\"clean\"} 1".into(),
    ])
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_row_the_ledger_lacks_is_major_and_removed_on_approval() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(
        dir.path(),
        "TRIPLICATE_TEST_TAMPER_SECRET_PROJECTION_INSERT",
    )
    .await;
    h.populate(RECORDS).await;
    let n = h.r.service.ledger().tree_size();
    // A decision the ledger never had, written into the projection one past the ledger's next
    // seq (the run's own audit record takes seq n): seq 5's rows copied under a new id, seq and
    // title. Inserts are not guarded by triggers.
    let forged = n + 1;
    let forged_id = Uuid::now_v7().to_string();
    let forged_title = "Adopt a motion the ledger never saw";
    let (bytes, _, id5, title5) = h.ledger_record(5);
    raw(dir.path(), "projection.db")
        .execute_batch(&format!(
            "INSERT INTO decisions SELECT {forged}, '{forged_id}', version, kind, \
             '{forged_title}', body, payload, proposed_at_s, proposed_at_ns, recorded_at_s, \
             recorded_at_ns, supersedes, notary_key_id, notary_alg, notary_signature \
             FROM decisions WHERE seq = 5;
             INSERT INTO approvals SELECT {forged}, position, key_id, alg, signature, \
             signed_at_s, signed_at_ns FROM approvals WHERE seq = 5;"
        ))
        .unwrap();
    let forged_bytes = replace_once(
        &replace_once(
            &replace_once(
                &bytes,
                &format!("\"id\":\"{id5}\""),
                &format!("\"id\":\"{forged_id}\""),
            ),
            &format!("\"title\":\"{title5}\""),
            &format!("\"title\":\"{forged_title}\""),
        ),
        "\"seq\":5,",
        &format!("\"seq\":{forged},"),
    );

    let run = h.run().await;
    check_stored(&h, &run, (0, 0, 1, 0), json!(n)).await;
    let d = only(&run["report"]);
    assert_eq!(
        finding(d),
        json!([forged, "projection", "major", "extra"]),
        "{d}"
    );
    assert_eq!(d["decision_id"], forged_id.as_str());
    assert_eq!(
        d["expected_hash"],
        Value::Null,
        "the ledger has nothing there"
    );
    assert_eq!(d["actual_hash"], b64(&leaf_hash(&forged_bytes)));
    // Proposed only: removing rows waits for an auditor.
    let a = &run["report"]["actions"][0];
    assert_eq!(run["report"]["actions"].as_array().unwrap().len(), 1);
    assert_eq!(
        action(a),
        json!([forged, "remove_projection_rows", "auditor", "proposed"]),
        "{a}"
    );
    assert_eq!(run["actions"][0]["pending"], true);
    assert!(h.r.service.writes_frozen().is_none());

    h.assert_run_metrics((0, 0, 1, 0), 1).await;
    h.assert_metrics(&["triplicate_crosscheck_pending_repairs 1".into()])
        .await;
    check_alert(&h.alert(1).await, &run);

    // The auditor approves: the row is removed, and logged.
    let action_id = a["id"].as_str().unwrap();
    let (status, out) = h
        .verdict(action_id, Verdict::Approved, "forged row, remove it")
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["status"], "applied", "{out}");
    assert!(
        out["outcome"]
            .as_str()
            .unwrap()
            .contains(&format!("removed the projection rows of seqs [{forged}]")),
        "{out}"
    );
    assert_eq!(out["review"]["verdict"], "approved");
    let removed: i64 = raw(dir.path(), "projection.db")
        .query_row(
            &format!("SELECT count(*) FROM removals WHERE seq = {forged}"),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(removed, 1);
    let stored = h.stored(&run).await;
    assert_eq!(stored["actions"][0]["status"], "applied", "{stored}");
    assert_eq!(stored["actions"][0]["pending"], false);
    assert_eq!(stored["actions"][0]["reviews"][0]["verdict"], "approved");
    h.assert_metrics(&["triplicate_crosscheck_pending_repairs 0".into()])
        .await;

    // While the forged row stood, the projection refused the first run's audit record at seq
    // n (its highest seq was the forged n + 1, so n was not the next seq it takes), and the
    // catch-up worker, seeing the projection's highest seq past the ledger's end, took it for
    // caught up. The next run finds the projection without seq n, minor, and applies it from
    // the ledger (unless the catch-up worker's periodic probe got there first); nothing major
    // is left, and the run after is clean.
    let next = h.run().await;
    let (_, minor, major, critical) = counts(&next["report"]);
    assert_eq!((major, critical), (0, 0), "{next}");
    for d in next["report"]["discrepancies"].as_array().unwrap() {
        assert_eq!(
            finding(d),
            json!([n, "projection", "minor", "missing"]),
            "{d}"
        );
    }
    assert!(minor <= 1, "{next}");
    h.settle().await;
    let clean = h.run().await;
    assert_eq!(clean["report"]["discrepancies"], json!([]), "{clean}");
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// The stream

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_event_deleted_is_a_major_gap_and_its_rebuild_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), "TRIPLICATE_TEST_TAMPER_SECRET_STREAM_DELETE").await;
    h.populate(RECORDS).await;
    let n = h.r.service.ledger().tree_size();
    let (_, leaf, id, _) = h.ledger_record(SEQ);
    raw(dir.path(), "stream.db")
        .execute_batch(&format!(
            "DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq = {SEQ};"
        ))
        .unwrap();

    let run = h.run().await;
    check_stored(&h, &run, (0, 0, 1, 0), json!(n)).await;
    let d = only(&run["report"]);
    // A hole in an append-only stream: an event was removed, and no append can put it back.
    assert_eq!(finding(d), json!([SEQ, "stream", "major", "gap"]), "{d}");
    assert_eq!(d["decision_id"], id.as_str());
    assert_eq!(d["expected_hash"], b64(&leaf));
    assert_eq!(d["actual_hash"], Value::Null);
    let a = &run["report"]["actions"][0];
    assert_eq!(run["report"]["actions"].as_array().unwrap().len(), 1);
    assert_eq!(
        action(a),
        json!([null, "rebuild_stream", "auditor", "proposed"]),
        "{a}"
    );
    assert_eq!(
        json!([a["class"], a["kind"], a["seqs"]]),
        json!(["major", "gap", [SEQ]]),
        "{a}"
    );
    assert_eq!(run["actions"][0]["pending"], true);
    assert!(h.r.service.writes_frozen().is_none());

    h.assert_run_metrics((0, 0, 1, 0), 1).await;
    h.assert_metrics(&["triplicate_crosscheck_pending_repairs 1".into()])
        .await;
    check_alert(&h.alert(1).await, &run);

    // The auditor rejects the rebuild: nothing runs, and the finding stays.
    let action_id = a["id"].as_str().unwrap().to_owned();
    let (status, out) = h
        .verdict(
            &action_id,
            Verdict::Rejected,
            "investigate who removed it first",
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["status"], "rejected", "{out}");
    assert_eq!(out["outcome"], "rejected: nothing was run");
    let stored = h.stored(&run).await;
    assert_eq!(stored["actions"][0]["status"], "rejected");
    assert_eq!(stored["actions"][0]["pending"], false);
    assert_eq!(stored["actions"][0]["reviews"][0]["verdict"], "rejected");
    h.assert_metrics(&["triplicate_crosscheck_pending_repairs 0".into()])
        .await;
    // A second verdict is refused.
    let (status, _) = h
        .verdict(&action_id, Verdict::Approved, "changed my mind")
        .await;
    assert_eq!(status, 409);

    h.settle().await;
    let next = h.run().await;
    assert_eq!(counts(&next["report"]), (0, 0, 1, 0), "{next}");
    assert_eq!(only(&next["report"])["kind"], "gap");
    assert_ne!(
        next["report"]["actions"][0]["id"].as_str(),
        Some(&*action_id)
    );
    assert_eq!(next["report"]["actions"][0]["status"], "proposed");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_last_event_deleted_is_a_major_gap_not_lag_and_nothing_is_appended_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), "TRIPLICATE_TEST_TAMPER_SECRET_STREAM_LAST").await;
    h.populate(RECORDS).await;
    let n = h.r.service.ledger().tree_size();
    let last = n - 1;
    // The newest event goes: the stream looks merely behind, unless one remembers it had it.
    raw(dir.path(), "stream.db")
        .execute_batch(&format!(
            "DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq = {last};"
        ))
        .unwrap();

    let run = h.run().await;
    let d = run["report"]["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["seq"] == last && d["store"] == "stream")
        .cloned()
        .expect("the removed event is found");
    assert_eq!(finding(&d), json!([last, "stream", "major", "gap"]), "{d}");
    assert!(
        d["detail"].as_str().unwrap().contains("acknowledged"),
        "{d}"
    );
    let a = &run["report"]["actions"][0];
    assert_eq!(a["operation"], "rebuild_stream", "{a}");
    assert_eq!(a["status"], "proposed", "{a}");
    check_alert(&h.alert(1).await, &run);

    // Nothing is appended over the removal: new records commit to the ledger, the stream
    // stays pending (not silently refilled by the catch-up worker), and readiness says so.
    let (status, out) = h.submit("After the removal").await;
    assert_eq!(status, 201, "{out}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let health = h.r.service.health();
    assert!(!health.stream.healthy, "{health:?}");
    assert_eq!(
        health.stream.size, n,
        "the acknowledged size is kept: {health:?}"
    );
    let held: i64 = raw(dir.path(), "stream.db")
        .query_row("SELECT max(seq) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(held as u64, last - 1, "no event was appended");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_event_altered_is_major_and_its_approved_rebuild_is_run() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), "TRIPLICATE_TEST_TAMPER_SECRET_STREAM_ALTER").await;
    h.populate(RECORDS).await;
    let n = h.r.service.ledger().tree_size();
    let (bytes, leaf, id, title) = h.ledger_record(SEQ);
    // The event's data rewritten to a well-formed record with another title; its metadata
    // (the leaf hash the stream stored beside it) left as it was.
    let altered = replace_once(
        &bytes,
        &format!("\"title\":\"{title}\""),
        "\"title\":\"Adopt a motion nobody approved\"",
    );
    alter_stream_event(dir.path(), SEQ, &altered);

    let run = h.run().await;
    check_stored(&h, &run, (0, 0, 1, 0), json!(n)).await;
    let d = only(&run["report"]);
    assert_eq!(
        finding(d),
        json!([SEQ, "stream", "major", "differs"]),
        "{d}"
    );
    assert_eq!(d["decision_id"], id.as_str());
    assert_eq!(d["expected_hash"], b64(&leaf));
    assert_eq!(
        d["actual_hash"],
        b64(&leaf_hash(&altered)),
        "re-derived from the event's data, not its metadata"
    );
    let a = &run["report"]["actions"][0];
    assert_eq!(run["report"]["actions"].as_array().unwrap().len(), 1);
    assert_eq!(
        action(a),
        json!([null, "rebuild_stream", "auditor", "proposed"]),
        "{a}"
    );
    assert_eq!(
        json!([a["class"], a["kind"], a["seqs"]]),
        json!(["major", "differs", [SEQ]]),
        "{a}"
    );

    h.assert_run_metrics((0, 0, 1, 0), 1).await;
    h.assert_metrics(&["triplicate_crosscheck_pending_repairs 1".into()])
        .await;
    check_alert(&h.alert(1).await, &run);

    // The auditor approves the rebuild: the service rebuilds the stream from the ledger,
    // checks it against the signed checkpoint, and puts it in place.
    let action_id = a["id"].as_str().unwrap();
    let (status, out) = h
        .verdict(action_id, Verdict::Approved, "rebuild it from the ledger")
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["status"], "applied", "{out}");
    let outcome = out["outcome"].as_str().unwrap();
    assert!(
        outcome.starts_with("applied: the stream was rebuilt from the ledger's"),
        "{outcome}"
    );
    let kept = dir.path().join(format!("stream.db.replaced-{action_id}"));
    assert!(outcome.contains(&kept.display().to_string()), "{outcome}");
    let stored = h.stored(&run).await;
    assert_eq!(stored["actions"][0]["status"], "applied");
    assert_eq!(stored["actions"][0]["pending"], false);
    assert_eq!(stored["actions"][0]["reviews"][0]["verdict"], "approved");
    assert_eq!(stored["actions"][0]["reviews"][0]["outcome"], outcome);
    h.assert_metrics(&["triplicate_crosscheck_pending_repairs 0".into()])
        .await;
    // A second approval is refused: the action is closed.
    let (status, out) = h.verdict(action_id, Verdict::Approved, "once more").await;
    assert_eq!(status, 409, "{out}");

    // The damaged file is kept as evidence; the live stream holds the ledger's record.
    let evidence: Vec<u8> = raw(dir.path(), &format!("stream.db.replaced-{action_id}"))
        .query_row(
            &format!("SELECT data FROM events WHERE seq = {SEQ}"),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(evidence, altered);
    let live: Vec<u8> = raw(dir.path(), "stream.db")
        .query_row(
            &format!("SELECT data FROM events WHERE seq = {SEQ}"),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(live, bytes);
    assert!(!dir.path().join("stream-rebuild").exists());

    // Submissions go on into the rebuilt stream, and the next run is clean.
    for i in 0..3 {
        let (status, out) = h.submit(&format!("After the rebuild {i}")).await;
        assert_eq!(status, 201, "{out}");
    }
    h.settle().await;
    let next = h.run().await;
    assert_eq!(counts(&next["report"]), (0, 0, 0, 0), "{next}");
    h.settle().await;
    let held: i64 = raw(dir.path(), "stream.db")
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(held as u64, h.r.service.ledger().tree_size());
    h.stop().await;
}

/// Alters the stream's event at `seq` (its data, not its metadata) past the append-only guard.
fn alter_stream_event(dir: &Path, seq: u64, data: &[u8]) {
    let c = raw(dir, "stream.db");
    c.execute_batch("DROP TRIGGER events_no_update;").unwrap();
    c.execute(
        &format!("UPDATE events SET data = ?1 WHERE seq = {seq}"),
        [data],
    )
    .unwrap();
}

/// The stream's data at `seq`.
fn stream_data(dir: &Path, file: &str, seq: u64) -> Vec<u8> {
    raw(dir, file)
        .query_row(
            &format!("SELECT data FROM events WHERE seq = {seq}"),
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_rebuild_runs_beside_submissions_and_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(
        dir.path(),
        "TRIPLICATE_TEST_TAMPER_SECRET_STREAM_REBUILD_LIVE",
    )
    .await;
    h.populate(RECORDS).await;
    raw(dir.path(), "stream.db")
        .execute_batch(&format!(
            "DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq = {SEQ};"
        ))
        .unwrap();
    let run = h.run().await;
    assert_eq!(counts(&run["report"]), (0, 0, 1, 0), "{run}");
    let action_id = run["report"]["actions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // While writes are frozen (a later run found the ledger at fault), nothing is copied from
    // the ledger: the approval fails and the repair waits for another.
    h.r.service.freeze_writes("a test froze writes".into());
    let (status, out) = h
        .verdict(&action_id, Verdict::Approved, "rebuild it from the ledger")
        .await;
    assert_eq!(status, 200, "{out}");
    let outcome = out["outcome"].as_str().unwrap();
    assert!(
        outcome.starts_with("failed: writes are frozen (a test froze writes)"),
        "{outcome}"
    );
    assert_eq!(h.stored(&run).await["actions"][0]["pending"], true);
    assert!(!dir
        .path()
        .join(format!("stream.db.replaced-{action_id}"))
        .exists());
    h.r.service.resume_writes();

    // A secretary keeps submitting while the auditor's approval rebuilds the stream.
    let submitting = async {
        let mut seqs = Vec::new();
        for i in 0..40 {
            let (status, out) = h.submit(&format!("During the rebuild {i}")).await;
            assert_eq!(status, 201, "{out}");
            seqs.push(out["receipt"]["seq"].as_u64().unwrap());
        }
        seqs
    };
    let ((status, out), seqs) = tokio::join!(
        h.verdict(&action_id, Verdict::Approved, "rebuild it from the ledger"),
        submitting
    );
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["status"], "applied", "{out}");
    assert_eq!(seqs.len(), 40);

    // Every acknowledged record is in the rebuilt stream, as the ledger holds it.
    h.settle().await;
    let ledger = h.r.service.ledger();
    let n = ledger.tree_size();
    let c = raw(dir.path(), "stream.db");
    let mut q = c
        .prepare("SELECT seq, data FROM events ORDER BY position")
        .unwrap();
    let rows: Vec<(i64, Vec<u8>)> = q
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len() as u64, n);
    for (i, (seq, data)) in rows.iter().enumerate() {
        assert_eq!(*seq as u64, i as u64, "in seq order");
        assert_eq!(data, &ledger.entry(i as u64).unwrap());
    }
    assert!(seqs.iter().all(|s| *s < n));
    let next = h.run().await;
    assert_eq!(counts(&next["report"]), (0, 0, 0, 0), "{next}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_rebuild_that_does_not_match_the_signed_checkpoint_is_not_put_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(
        dir.path(),
        "TRIPLICATE_TEST_TAMPER_SECRET_STREAM_REBUILD_CHECK",
    )
    .await;
    h.populate(LEDGER_RECORDS).await;
    let (bytes, altered, _, action_id) = altered_and_proposed(&h, dir.path()).await;

    // After the run, someone also edits the ledger's copy of entry 0 (one letter of its title
    // in the entry bundle on disk, so the record still parses). A rebuild would copy it.
    h.flushed().await;
    let (entry0, _, _, title0) = h.ledger_record(0);
    let at = find(&entry0, format!("\"title\":\"{title0}\"").as_bytes()) + 9;
    let k = at
        + entry0[at..]
            .iter()
            .position(u8::is_ascii_alphabetic)
            .unwrap();
    let bundle = h
        .ledger_dir()
        .join(triplicate_ledger::layout::bundle_path(0, 256));
    let original = std::fs::read(&bundle).unwrap();
    let offset = find(&original, &entry0) + k;
    let mut edited = original.clone();
    edited[offset] ^= 0x20;
    std::fs::write(&bundle, &edited).unwrap();

    let (status, out) = h
        .verdict(&action_id, Verdict::Approved, "rebuild it from the ledger")
        .await;
    assert_eq!(status, 200, "{out}");
    let outcome = out["outcome"].as_str().unwrap();
    assert!(
        outcome.starts_with("failed: the new stream's")
            && outcome.contains("do not hash to the root of the ledger's signed checkpoint"),
        "{outcome}"
    );
    // Nothing was put in place: the live stream is as it was, no file is kept.
    assert_eq!(stream_data(dir.path(), "stream.db", SEQ), altered);
    assert_eq!(stream_data(dir.path(), "stream.db", 0), entry0);
    assert!(!dir
        .path()
        .join(format!("stream.db.replaced-{action_id}"))
        .exists());
    // Submissions still reach the stream once the catch-up worker has probed it again.
    let (status, out) = h.submit("After the failed rebuild").await;
    assert_eq!(status, 201, "{out}");
    h.settle().await;

    // With the bundle restored, approving again runs the rebuild.
    std::fs::write(&bundle, &original).unwrap();
    let (status, out) = h
        .verdict(
            &action_id,
            Verdict::Approved,
            "the ledger is restored; rebuild",
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["status"], "applied", "{out}");
    assert_eq!(stream_data(dir.path(), "stream.db", SEQ), bytes);
    assert_eq!(
        stream_data(dir.path(), &format!("stream.db.replaced-{action_id}"), SEQ),
        altered
    );
    h.settle().await;
    let next = h.run().await;
    assert_eq!(counts(&next["report"]), (0, 0, 0, 0), "{next}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_whose_caller_hangs_up_still_runs_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(
        dir.path(),
        "TRIPLICATE_TEST_TAMPER_SECRET_STREAM_REBUILD_HANGUP",
    )
    .await;
    h.populate(LEDGER_RECORDS).await;
    let (bytes, _, run, action_id) = altered_and_proposed(&h, dir.path()).await;

    // The whole request is sent, then, once the server has had a moment to take it up, the
    // connection is closed before any answer, as a client that timed out during a long rebuild
    // would. (A connection closed at once may be dropped before its request is read at all.)
    let path = format!("/v1/verification/repairs/{action_id}");
    let (status, repair) = h.call("GET", &path, Some(h.auditor()), None).await;
    assert_eq!(status, 200, "{repair}");
    let body = verdict_body(
        h.r.auditor.as_ref().unwrap(),
        &repair,
        Verdict::Approved,
        "rebuild it from the ledger",
    )
    .to_string();
    common::post_and_hang_up(h.r.addr, &format!("{path}/approve"), h.auditor(), &body).await;

    // The rebuild ran to the end and its verdict was recorded.
    let mut stored = Value::Null;
    for _ in 0..300 {
        stored = h.stored(&run).await;
        if stored["actions"][0]["status"] == "applied" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored["actions"][0]["status"], "applied", "{stored}");
    assert_eq!(stored["actions"][0]["reviews"][0]["verdict"], "approved");
    assert_eq!(stream_data(dir.path(), "stream.db", SEQ), bytes);
    h.settle().await;
    let next = h.run().await;
    assert_eq!(counts(&next["report"]), (0, 0, 0, 0), "{next}");
    h.stop().await;
}

/// Changes the title of the stream's event at `SEQ` (its data only) and runs: the run finds
/// it (major) and proposes a rebuild. The ledger's bytes, the altered bytes, the run and the
/// proposed action's id.
async fn altered_and_proposed(h: &H, dir: &Path) -> (Vec<u8>, Vec<u8>, Value, String) {
    let (bytes, _, _, title) = h.ledger_record(SEQ);
    let altered = replace_once(
        &bytes,
        &format!("\"title\":\"{title}\""),
        "\"title\":\"Adopt a motion nobody approved\"",
    );
    alter_stream_event(dir, SEQ, &altered);
    let run = h.run().await;
    assert_eq!(counts(&run["report"]), (0, 0, 1, 0), "{run}");
    let action_id = run["report"]["actions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (bytes, altered, run, action_id)
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_event_forged_is_major_extra_and_its_rebuild_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), "TRIPLICATE_TEST_TAMPER_SECRET_STREAM_FORGE").await;
    h.populate(RECORDS).await;
    let n = h.r.service.ledger().tree_size();
    // A decision the ledger never had, appended to the stream at the ledger's next seq: seq
    // 5's record under a new id, seq and title, with metadata that agrees with its data.
    let (bytes, _, id5, title5) = h.ledger_record(5);
    let forged_id = Uuid::now_v7();
    let forged = replace_once(
        &replace_once(
            &replace_once(
                &bytes,
                &format!("\"id\":\"{id5}\""),
                &format!("\"id\":\"{forged_id}\""),
            ),
            &format!("\"title\":\"{title5}\""),
            "\"title\":\"Adopt a motion the ledger never saw\"",
        ),
        "\"seq\":5,",
        &format!("\"seq\":{n},"),
    );
    let forged_leaf = leaf_hash(&forged);
    let metadata = triplicate_stream::EventMetadata {
        seq: n,
        leaf_hash: forged_leaf,
    }
    .to_json();
    raw(dir.path(), "stream.db")
        .execute(
            "INSERT INTO events (stream_id, revision, seq, event_type, data, metadata, \
             recorded_at) VALUES (?1, 0, ?2, 'DecisionRecorded', ?3, ?4, ?5)",
            rusqlite::params![
                format!("decision-{forged_id}"),
                n as i64,
                forged,
                metadata,
                Timestamp::now().to_string()
            ],
        )
        .unwrap();

    let run = h.run().await;
    check_stored(&h, &run, (0, 0, 1, 0), json!(n)).await;
    let d = only(&run["report"]);
    assert_eq!(finding(d), json!([n, "stream", "major", "extra"]), "{d}");
    assert_eq!(d["decision_id"], forged_id.to_string());
    assert_eq!(d["expected_hash"], Value::Null);
    assert_eq!(d["actual_hash"], b64(&forged_leaf));
    let a = &run["report"]["actions"][0];
    assert_eq!(run["report"]["actions"].as_array().unwrap().len(), 1);
    assert_eq!(
        action(a),
        json!([null, "rebuild_stream", "auditor", "proposed"]),
        "{a}"
    );
    assert_eq!(
        json!([a["class"], a["kind"], a["seqs"]]),
        json!(["major", "extra", [n]]),
        "{a}"
    );

    h.assert_run_metrics((0, 0, 1, 0), 1).await;
    check_alert(&h.alert(1).await, &run);

    let action_id = a["id"].as_str().unwrap();
    let (status, out) = h
        .verdict(
            action_id,
            Verdict::Rejected,
            "keep the evidence until we know who",
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["status"], "rejected", "{out}");
    assert_eq!(out["outcome"], "rejected: nothing was run");
    let stored = h.stored(&run).await;
    assert_eq!(stored["actions"][0]["status"], "rejected");
    assert_eq!(stored["actions"][0]["pending"], false);

    // The run's own audit record took seq n in the ledger; the stream, holding the forged
    // event there, refused it. The next run finds the forged event again, now as an event
    // that differs from the ledger's record at n.
    let (audit_bytes, audit_leaf, _, _) = h.ledger_record(n);
    assert_ne!(audit_bytes, forged);
    h.settle().await;
    let next = h.run().await;
    assert_eq!(counts(&next["report"]), (0, 0, 1, 0), "{next}");
    let d = only(&next["report"]);
    assert_eq!(finding(d), json!([n, "stream", "major", "differs"]), "{d}");
    assert_eq!(d["expected_hash"], b64(&audit_leaf));
    assert_eq!(d["actual_hash"], b64(&forged_leaf));
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// The ledger

/// Flips one bit of `file` at `offset`; returns the original bytes.
fn flip(file: &Path, offset: usize) -> Vec<u8> {
    let original = std::fs::read(file).unwrap();
    let mut bytes = original.clone();
    bytes[offset] ^= 0x01;
    std::fs::write(file, &bytes).unwrap();
    original
}

/// What a critical run leaves: writes refused with 503 `writes-frozen` naming the run, and
/// `triplicate_writes_frozen 1`; then an admin's resume (an auditor may not) lets writes in.
async fn frozen_until_resumed(h: &H, run: &Value) {
    let (status, problem) = h.submit("While frozen").await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(
        problem["type"],
        "https://triplicate.dev/problems/writes-frozen"
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(run["run_id"].as_str().unwrap()), "{detail}");
    h.assert_metrics(&["triplicate_writes_frozen 1".into()])
        .await;
    let (status, _) = h
        .call("POST", "/v1/admin/resume", Some(h.auditor()), None)
        .await;
    assert_eq!(status, 403);
    let (status, out) = h
        .call("POST", "/v1/admin/resume", Some(&h.r.admin_token), None)
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["accepting_writes"], true);
    assert!(
        out["was_frozen"].as_str().unwrap().contains("ledger"),
        "{out}"
    );
    h.assert_metrics(&["triplicate_writes_frozen 0".into()])
        .await;
}

/// What every critical run answers: nothing planned (the ledger is not repaired from its
/// copies, and nothing is copied from a ledger at fault), and every finding about the ledger.
fn check_critical(run: &Value) {
    assert_eq!(
        run["report"]["actions"],
        json!([]),
        "nothing repairs a ledger"
    );
    for d in run["report"]["discrepancies"].as_array().unwrap() {
        assert_eq!(
            (&d["store"], &d["class"]),
            (&json!("ledger"), &json!("critical")),
            "{d}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_bundle_byte_flipped_is_critical_and_freezes_writes_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), "TRIPLICATE_TEST_TAMPER_SECRET_LEDGER_BUNDLE").await;
    h.populate(LEDGER_RECORDS).await;
    h.flushed().await;
    let n = h.r.service.ledger().tree_size();
    let (entry0, leaf0, id0, _) = h.ledger_record(0);
    let bundle = h
        .ledger_dir()
        .join(triplicate_ledger::layout::bundle_path(0, 256));
    // Inside entry 0's bytes (past its 2-byte length), so the bundle still parses.
    let original = flip(&bundle, 200);
    let mut tampered = entry0.clone();
    tampered[198] ^= 0x01;

    let run = h.run().await;
    let name = bundle.display().to_string();
    check_stored(&h, &run, (0, 0, 0, 3), Value::Null).await;
    check_critical(&run);
    let ds = run["report"]["discrepancies"].as_array().unwrap();
    let kinds: Vec<&str> = ds.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["ledger_files", "leaf_mismatch", "root_mismatch"],
        "{run}"
    );
    // fsck names the bundle.
    assert_eq!(ds[0]["file"], name.as_str());
    assert!(
        ds[0]["detail"].as_str().unwrap().starts_with("fsck: "),
        "{}",
        ds[0]
    );
    // The entry re-hashes to something other than the leaf hash the ledger stored for it.
    let leaf = &ds[1];
    assert_eq!(
        (&leaf["seq"], &leaf["file"], &leaf["decision_id"]),
        (&json!(0), &json!(name), &json!(id0)),
        "{leaf}"
    );
    assert_eq!(leaf["expected_hash"], b64(&leaf0));
    assert_eq!(leaf["actual_hash"], b64(&leaf_hash(&tampered)));
    // And the re-hashed leaves do not fold into the signed root.
    let root = h.r.service.ledger().checkpoint().root;
    assert_eq!(ds[2]["expected_hash"], b64(&root));
    assert_ne!(ds[2]["actual_hash"], b64(&root));
    assert_eq!(
        h.r.service.ledger().tree_size(),
        n,
        "no audit record while frozen"
    );

    h.assert_run_metrics((0, 0, 0, 3), 1).await;
    check_alert(&h.alert(1).await, &run);

    frozen_until_resumed(&h, &run).await;
    // The operator puts the bundle back; writes and runs are clean again.
    std::fs::write(&bundle, original).unwrap();
    let (status, got) = h.submit("After the repair").await;
    assert_eq!(status, 201, "{got}");
    h.settle().await;
    let next = h.run().await;
    assert_eq!(next["report"]["discrepancies"], json!([]), "{next}");
    assert_eq!(next["audit_record_matches"], true);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_hash_tile_byte_flipped_is_critical_and_freezes_writes_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), "TRIPLICATE_TEST_TAMPER_SECRET_LEDGER_TILE").await;
    h.populate(LEDGER_RECORDS).await;
    h.flushed().await;
    let n = h.r.service.ledger().tree_size();
    // The first hash of the first full level-0 tile: entry 0's leaf hash as the tile serves
    // it. Proofs and the comparison read the stored-hash index, not the tiles; fsck reads both.
    let tile = h
        .ledger_dir()
        .join(triplicate_ledger::layout::tile_path(0, 0, 256));
    let original = flip(&tile, 0);

    let run = h.run().await;
    check_stored(&h, &run, (0, 0, 0, 1), Value::Null).await;
    check_critical(&run);
    let d = only(&run["report"]);
    assert_eq!(d["kind"], "ledger_files", "{d}");
    assert_eq!(d["file"], tile.display().to_string());
    assert_eq!(d["seq"], Value::Null);
    assert!(d["detail"].as_str().unwrap().starts_with("fsck: "), "{d}");
    assert_eq!(h.r.service.ledger().tree_size(), n);

    h.assert_run_metrics((0, 0, 0, 1), 1).await;
    check_alert(&h.alert(1).await, &run);

    frozen_until_resumed(&h, &run).await;
    std::fs::write(&tile, original).unwrap();
    h.settle().await;
    let next = h.run().await;
    assert_eq!(next["report"]["discrepancies"], json!([]), "{next}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_checkpoint_rewritten_is_critical_running_and_refuses_to_open_stopped() {
    const VAR: &str = "TRIPLICATE_TEST_TAMPER_SECRET_LEDGER_CHECKPOINT";
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), VAR).await;
    h.populate(LEDGER_RECORDS).await;
    h.flushed().await;
    let n = h.r.service.ledger().tree_size();
    // Claim a smaller tree, keeping the notary's signature line: it no longer verifies.
    let checkpoint = h.ledger_dir().join(triplicate_ledger::layout::CHECKPOINT);
    let original = std::fs::read_to_string(&checkpoint).unwrap();
    let rewritten = replace_once(
        original.as_bytes(),
        &format!("\n{n}\n"),
        &format!("\n{}\n", n - 1),
    );
    std::fs::write(&checkpoint, &rewritten).unwrap();
    let name = checkpoint.display().to_string();

    // Running: the service keeps its checkpoint in memory; the full run's fsck reads the file.
    let run = h.run().await;
    check_stored(&h, &run, (0, 0, 0, 1), Value::Null).await;
    check_critical(&run);
    let d = only(&run["report"]);
    assert_eq!(d["kind"], "ledger_files", "{d}");
    assert_eq!(d["file"], name.as_str());
    assert!(d["detail"].as_str().unwrap().starts_with("fsck: "), "{d}");

    h.assert_run_metrics((0, 0, 0, 1), 1).await;
    check_alert(&h.alert(1).await, &run);
    frozen_until_resumed(&h, &run).await;

    // Stopped: the ledger refuses to open, so the service does not start (an error naming
    // the checkpoint, not a crash), and the offline cross-check reports it as critical.
    let (_, hook) = h.stop().await;
    assert_eq!(
        std::fs::read(&checkpoint).unwrap(),
        rewritten,
        "stopping did not rewrite the checkpoint"
    );
    let refused = launch(dir.path(), &hook.url, VAR)
        .await
        .expect_err("a ledger whose checkpoint does not verify refuses to open");
    assert!(matches!(refused, StartFailure::Setup(_)), "{refused:?}");
    assert!(refused.to_string().contains("checkpoint"), "{refused}");

    let report = triplicate_server::crosscheck::run_on_data_dir(dir.path(), DEV_ORIGIN, true)
        .await
        .unwrap();
    // Two findings: the refusal to open, and fsck's (both naming the checkpoint).
    assert_eq!(report.counts.critical, 2, "{report:?}");
    assert_eq!(report.counts.total(), 2);
    assert!(report.actions.is_empty());
    assert!(report.checkpoint_new.is_none());
    for (d, prefix) in report
        .discrepancies
        .iter()
        .zip(["open the ledger: ", "fsck: "])
    {
        assert_eq!(d.kind, triplicate_verifier::Kind::LedgerFiles);
        assert_eq!(d.file.as_deref(), Some(name.as_str()), "{d:?}");
        assert!(d.detail.starts_with(prefix), "{d:?}");
    }
    // The offline run over an unopenable ledger has no store to keep its report in, but it
    // alerts: a second signed POST, naming the same two critical findings.
    assert_eq!(
        hook.posts.lock().unwrap().len(),
        2,
        "the offline run alerts"
    );
    let (_, body) = hook.posts.lock().unwrap()[1].clone();
    let alert: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(alert["run_id"], report.run_id.to_string());
    assert_eq!(alert["counts"]["critical"], 2, "{alert}");
    assert_eq!(alert["worst_class"], "critical");

    // The operator restores the checkpoint: the service starts, and a full run is clean.
    std::fs::write(&checkpoint, original).unwrap();
    let h = start(dir.path(), VAR).await;
    h.settle().await;
    let next = h.run().await;
    assert_eq!(next["report"]["discrepancies"], json!([]), "{next}");
    h.stop().await;
}
