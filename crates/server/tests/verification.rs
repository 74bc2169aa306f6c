//! Stored verification reports and auditors' signed verdicts, through the real server on
//! 127.0.0.1:0 with the development set-up (its auditor key and token) and embedded stores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{drift, receiver, verdict_body};
use serde_json::{json, Value};
use triplicate_keys::Signer as _;
use triplicate_server::setup::{dev_setup, DevPaths, ProjectionChoice, DEV_ORIGIN};
use triplicate_server::{Running, ServeConfig, ServiceOptions};
use triplicate_verifier::review::Verdict;
use uuid::Uuid;

struct H {
    r: Running,
    http: reqwest::Client,
    base: String,
}

/// The development set-up with `verification` as its `verification.toml`.
async fn start(dir: &std::path::Path, verification: &str) -> H {
    dev_setup(dir).unwrap();
    std::fs::write(
        DevPaths::new(dir).policies.join("verification.toml"),
        verification,
    )
    .unwrap();
    let r = triplicate_server::start(ServeConfig {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        projection: ProjectionChoice::Sqlite,
        stream: Default::default(),
        origin: DEV_ORIGIN.into(),
        options: ServiceOptions::on_demand_crosscheck(),
    })
    .await
    .unwrap();
    let base = format!("http://{}", r.addr);
    H {
        r,
        http: reqwest::Client::new(),
        base,
    }
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

    /// POSTs a verdict (`approve` or `reject`) on the repair at `path` with the auditor token.
    async fn verdict(&self, path: &str, which: &str, body: &Value) -> (u16, Value) {
        self.call(
            "POST",
            &format!("{path}/{which}"),
            Some(self.auditor()),
            Some(body),
        )
        .await
    }

    async fn submit(&self, n: usize) {
        common::populate(&self.r, &self.http, n).await;
    }

    async fn settle(&self) {
        common::settle(&self.r.service).await;
    }

    async fn run(&self) -> Value {
        let body = self.run_only().await;
        self.settle().await;
        body
    }

    /// A full run, without waiting for the stores to catch up afterwards.
    async fn run_only(&self) -> Value {
        common::full_run(&self.r, &self.http, self.auditor()).await
    }

    async fn metric(&self, name: &str) -> String {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_owned()
    }
}

const PROPOSE_ONLY: &str = "grace_period = \"5m\"\n[repair]\nautomatic = []\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_stored_audited_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), "grace_period = \"5m\"\n").await;
    h.submit(4).await;
    let first = h.run().await;
    let second = h.run().await;
    for (stored, audit_seq) in [(&first, 4), (&second, 5)] {
        assert_eq!(stored["audit_seq"], audit_seq, "{stored}");
        assert_eq!(stored["audit_record_matches"], true, "{stored}");
        // The digest served is the report's, recomputed here.
        let report: triplicate_verifier::Report =
            serde_json::from_value(stored["report"].clone()).unwrap();
        let digest = base64::engine::general_purpose::STANDARD.encode(report.digest().unwrap());
        assert_eq!(stored["digest"], digest.as_str());
    }
    // The second run covered the first run's audit record.
    assert_eq!(second["report"]["records_compared"], 5, "{second}");

    let (status, page) = h
        .call(
            "GET",
            "/v1/verification/reports?limit=1",
            Some(h.auditor()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["reports"][0]["run_id"], second["run_id"]);
    assert_eq!(page["reports"][0]["pending_actions"], 0);
    assert_eq!(page["reports"][0]["worst_class"], Value::Null);
    let next = page["next"].as_str().unwrap().to_owned();
    let (_, older) = h
        .call(
            "GET",
            &format!("/v1/verification/reports?before={next}"),
            Some(&h.r.admin_token),
            None,
        )
        .await;
    assert_eq!(older["reports"].as_array().unwrap().len(), 1, "{older}");
    assert_eq!(older["reports"][0]["run_id"], first["run_id"]);
    assert_eq!(older["next"], Value::Null);

    // The stored copy is what GET serves.
    let id = first["run_id"].as_str().unwrap();
    let (status, got) = h
        .call(
            "GET",
            &format!("/v1/verification/reports/{id}"),
            Some(h.auditor()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, first);

    // Bad input changes nothing and says why; readers and submitters may not look.
    for (path, status) in [
        ("/v1/verification/reports?limit=0", 400),
        ("/v1/verification/reports?before=nope", 400),
        ("/v1/verification/reports?colour=red", 400),
        (&format!("/v1/verification/reports/{}", Uuid::now_v7()), 404),
        ("/v1/verification/reports/not-a-uuid", 400),
        (&format!("/v1/verification/repairs/{}", Uuid::now_v7()), 404),
    ] {
        let (got, body) = h.call("GET", path, Some(h.auditor()), None).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body["type"]
            .as_str()
            .unwrap()
            .starts_with("https://triplicate.dev/problems/"));
    }
    let (status, _) = h.call("GET", "/v1/verification/reports", None, None).await;
    assert_eq!(status, 401);
    h.r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_approves_a_proposed_repair_with_a_signed_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), PROPOSE_ONLY).await;
    let auditor = h.r.auditor.as_ref().unwrap();
    h.submit(5).await;
    drift(dir.path(), 2, "Adopt a motion nobody approved");

    let run = h.run().await;
    assert_eq!(run["report"]["counts"]["minor"], 1, "{run}");
    assert_eq!(run["actions"][0]["pending"], true, "{run}");
    assert_eq!(run["actions"][0]["status"], "proposed");
    assert_eq!(
        h.metric("triplicate_crosscheck_pending_repairs").await,
        "triplicate_crosscheck_pending_repairs 1"
    );
    let action = run["report"]["actions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/verification/repairs/{action}");
    let (status, repair) = h.call("GET", &path, Some(h.auditor()), None).await;
    assert_eq!(status, 200, "{repair}");
    assert_eq!(repair["run_id"], run["run_id"]);
    assert_eq!(repair["report_digest"], run["digest"]);
    assert_eq!(repair["action"]["operation"], "replace_projection_rows");

    // Refused, and nothing recorded: an approver's key (not an auditor's); a signature over
    // a rejection sent as an approval; an admin's token; a malformed body.
    let approver = &h.r.approvers[0];
    let body = verdict_body(approver, &repair, Verdict::Approved, "looks fine");
    let (status, out) = h.verdict(&path, "approve", &body).await;
    assert_eq!(status, 422, "{out}");
    assert_eq!(
        out["type"],
        "https://triplicate.dev/problems/review-refused"
    );
    assert!(
        out["detail"].as_str().unwrap().contains("auditors"),
        "{out}"
    );
    let body = verdict_body(auditor, &repair, Verdict::Rejected, "no");
    let (status, out) = h.verdict(&path, "approve", &body).await;
    assert_eq!(status, 422, "{out}");
    assert!(
        out["detail"].as_str().unwrap().contains("signature"),
        "{out}"
    );
    let body = verdict_body(auditor, &repair, Verdict::Approved, "restore it");
    let (status, out) = h
        .call(
            "POST",
            &format!("{path}/approve"),
            Some(&h.r.admin_token),
            Some(&body),
        )
        .await;
    assert_eq!(status, 403, "{out}");
    let (status, _) = h
        .call(
            "POST",
            &format!("{path}/approve"),
            Some(h.auditor()),
            Some(&json!({ "key_id": "x" })),
        )
        .await;
    assert_eq!(status, 400);
    let (_, still) = h.call("GET", &path, Some(h.auditor()), None).await;
    assert_eq!(still["reviews"], json!([]), "{still}");

    // The auditor's approval runs the repair and is recorded with its signature.
    let (status, out) = h.verdict(&path, "approve", &body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["status"], "applied", "{out}");
    assert!(
        out["outcome"].as_str().unwrap().starts_with("applied"),
        "{out}"
    );
    assert_eq!(out["review"]["key_id"], auditor.key_id().to_string());
    assert_eq!(out["review"]["reason"], "restore it");
    // Once is enough.
    let (status, again) = h.verdict(&path, "approve", &body).await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(
        again["type"],
        "https://triplicate.dev/problems/review-closed"
    );

    let (_, report) = h
        .call(
            "GET",
            &format!(
                "/v1/verification/reports/{}",
                run["run_id"].as_str().unwrap()
            ),
            Some(h.auditor()),
            None,
        )
        .await;
    assert_eq!(report["actions"][0]["status"], "applied", "{report}");
    assert_eq!(report["actions"][0]["pending"], false);
    assert_eq!(report["actions"][0]["reviews"][0]["verdict"], "approved");
    assert_eq!(
        h.metric("triplicate_crosscheck_pending_repairs").await,
        "triplicate_crosscheck_pending_repairs 0"
    );
    // The projection holds the ledger's record again: the next run is clean.
    let clean = h.run().await;
    assert_eq!(clean["report"]["counts"]["minor"], 0, "{clean}");
    assert_eq!(clean["report"]["discrepancies"], json!([]), "{clean}");
    h.r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_repair_runs_nothing_and_the_finding_stays() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), PROPOSE_ONLY).await;
    let auditor = h.r.auditor.as_ref().unwrap();
    h.submit(3).await;
    drift(dir.path(), 1, "Something else");
    let run = h.run().await;
    let action = run["report"]["actions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/verification/repairs/{action}");
    let (_, repair) = h.call("GET", &path, Some(h.auditor()), None).await;
    let body = verdict_body(auditor, &repair, Verdict::Rejected, "investigate first");
    let (status, out) = h.verdict(&path, "reject", &body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["status"], "rejected");
    // An approval after the rejection is refused.
    let body = verdict_body(auditor, &repair, Verdict::Approved, "changed my mind");
    let (status, _) = h.verdict(&path, "approve", &body).await;
    assert_eq!(status, 409);
    // Nothing was repaired: the next run finds the drift again and proposes anew.
    let next = h.run().await;
    assert_eq!(next["report"]["counts"]["minor"], 1, "{next}");
    assert_ne!(
        next["report"]["actions"][0]["id"].as_str(),
        Some(action.as_str())
    );
    h.r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_are_posted_to_the_webhook_signed_and_counted() {
    use hmac::Mac as _;
    const VAR: &str = "TRIPLICATE_TEST_WEBHOOK_SECRET_SERVER";
    std::env::set_var(VAR, "s3cret-for-tests");
    let (url, seen) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = format!(
        "grace_period = \"5m\"\n[repair]\nautomatic = []\n\n[[webhook]]\nurl = \"{url}\"\n\
         secret_env = \"{VAR}\"\nclasses = [\"minor\", \"major\", \"critical\"]\n"
    );
    let h = start(dir.path(), &policy).await;
    h.submit(3).await;
    // A clean run posts nothing.
    h.run().await;
    drift(dir.path(), 1, "Not what was approved");
    let run = h.run().await;
    for _ in 0..200 {
        if !seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let posts = seen.lock().unwrap().clone();
    assert_eq!(posts.len(), 1, "one alert, for the run with a finding");
    let (headers, body) = &posts[0];
    let alert: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(alert["type"], "triplicate.verification.alert");
    assert_eq!(alert["run_id"], run["run_id"]);
    assert_eq!(alert["report_digest"], run["digest"]);
    assert_eq!(alert["discrepancies"][0]["class"], "minor");
    assert_eq!(alert["discrepancies"][0]["seq"], 1);
    // The signature is HMAC-SHA256(secret, timestamp "." body).
    let ts = headers["x-triplicate-timestamp"].to_str().unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret-for-tests").unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        headers["x-triplicate-signature"].to_str().unwrap(),
        expected
    );
    for _ in 0..200 {
        if h.metric("triplicate_crosscheck_webhook_deliveries_total{result=\"delivered\"}")
            .await
            .ends_with(" 1")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        h.metric("triplicate_crosscheck_webhook_deliveries_total{result=\"delivered\"}")
            .await,
        "triplicate_crosscheck_webhook_deliveries_total{result=\"delivered\"} 1"
    );
    h.r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_removal_takes_out_projection_rows_the_ledger_lacks() {
    use triplicate_projection::Projection as _;
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), "grace_period = \"5m\"\n").await;
    let auditor = h.r.auditor.as_ref().unwrap();
    h.submit(3).await;
    // Someone with the file adds four records the ledger never had, after its end.
    let n = h.r.service.ledger().tree_size();
    {
        let forger = triplicate_projection::SqliteProjection::open(dir.path())
            .await
            .unwrap();
        let forged = (n..n + 4)
            .map(|s| {
                triplicate_projection::fixtures::bytes(
                    &triplicate_projection::fixtures::sample_record(s, 0),
                )
            })
            .collect();
        forger.apply(forged).await.unwrap();
    }
    let run = h.run_only().await;
    assert_eq!(run["report"]["counts"]["major"], 4, "{run}");
    let actions = run["report"]["actions"].as_array().unwrap().clone();
    assert!(actions
        .iter()
        .all(|a| a["operation"] == "remove_projection_rows" && a["authority"] == "auditor"));
    // The run's audit record took seq n in the ledger: the forged row there is now a row that
    // differs from the ledger's record, and the rest still lie past the ledger's end.
    let second = actions.iter().find(|a| a["seq"] == n + 1).unwrap();
    let path = format!(
        "/v1/verification/repairs/{}",
        second["id"].as_str().unwrap()
    );
    let (_, repair) = h.call("GET", &path, Some(h.auditor()), None).await;
    let body = verdict_body(auditor, &repair, Verdict::Approved, "forged rows");
    let (status, out) = h.verdict(&path, "approve", &body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["status"], "applied", "{out}");
    assert!(
        out["outcome"]
            .as_str()
            .unwrap()
            .contains(&format!("{:?}", [n + 1, n + 2, n + 3])),
        "{out}"
    );
    // The removal is logged with the rows as they were.
    let logged: i64 = rusqlite::Connection::open(dir.path().join("projection.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM removals", [], |r| r.get(0))
        .unwrap();
    assert_eq!(logged, 3);
    // The proposal for seq n: nothing lies past the ledger's end any more.
    let first = actions.iter().find(|a| a["seq"] == n).unwrap();
    let path = format!("/v1/verification/repairs/{}", first["id"].as_str().unwrap());
    let (_, repair) = h.call("GET", &path, Some(h.auditor()), None).await;
    let body = verdict_body(auditor, &repair, Verdict::Approved, "forged rows");
    let (status, out) = h.verdict(&path, "approve", &body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["status"], "unchanged", "{out}");
    // The forged row at seq n differs from the ledger's record there: minor, repaired on the
    // next run; the projection then catches up and a run is clean.
    let next = h.run_only().await;
    assert_eq!(next["report"]["counts"]["major"], 0, "{next}");
    h.settle().await;
    let clean = h.run().await;
    assert_eq!(clean["report"]["discrepancies"], json!([]), "{clean}");
    h.r.stop().await.unwrap();
}
