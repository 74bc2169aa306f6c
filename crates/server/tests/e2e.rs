//! End to end: the real server on 127.0.0.1:0 with embedded stores, driven over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{approve, body, decision};
use std::time::Duration;

use serde_json::{json, Value};
use sha2::Digest;
use triplicate_core::{Decision, Receipt};
use triplicate_keys::SoftwareSigner;
use triplicate_ledger::receipt::verify_receipt;
use triplicate_projection::Projection;
use triplicate_server::setup::{ProjectionChoice, DEV_ORIGIN};
use triplicate_server::{Running, ServeConfig, ServiceOptions};
use triplicate_stream::{EventStream, StreamId};
use uuid::Uuid;

async fn start(dir: &std::path::Path) -> Running {
    triplicate_server::start(ServeConfig {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        projection: ProjectionChoice::Sqlite,
        stream: Default::default(),
        origin: DEV_ORIGIN.into(),
        options: ServiceOptions::on_demand_crosscheck(),
    })
    .await
    .unwrap()
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(r: &Running) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: format!("http://{}", r.addr),
            token: r.admin_token.clone(),
        }
    }
    async fn submit(&self, b: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/v1/decisions", self.base))
            .bearer_auth(&self.token)
            .json(b)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }
}

async fn wait_for_stores(r: &Running, size: u64) {
    for _ in 0..800 {
        let h = r.service.health();
        if h.stream.size >= size && h.projection.size >= size {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("stores did not catch up: {:?}", r.service.health());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_verify_and_all_three_stores_agree() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path()).await;
    let c = Client::new(&r);
    let vkey = triplicate_keys::note::note_verifier_key(
        r.service.notary().name(),
        &r.service.notary().public_key(),
    )
    .unwrap();

    let mut ids = Vec::new();
    for i in 0..5 {
        let d = decision("motion", &format!("Adopt motion {i}"));
        // Submitted out of key order: the service records them sorted.
        let b = body(
            &d,
            &[approve(&d, &r.approvers[2]), approve(&d, &r.approvers[1])],
        );
        let (status, out) = c.submit(&b).await;
        assert_eq!(status, 201, "{out}");
        assert_eq!(out["stores"]["ledger"], "written");
        let receipt = Receipt::from_json(out["receipt"].to_string().as_bytes()).unwrap();
        assert_eq!(receipt.seq, i);
        verify_receipt(&receipt, &vkey).expect("the receipt verifies offline");
        ids.push((d.id, receipt));
    }
    wait_for_stores(&r, 5).await;

    // The three stores hold the same record bytes.
    let ledger_bytes = r.service.ledger().entries(0, 5).unwrap();
    let projected = r.service.projection().record_bytes(0, 5).await.unwrap();
    for (seq, bytes) in ledger_bytes.iter().enumerate() {
        assert_eq!(
            projected[seq].bytes(),
            Some(bytes.as_slice()),
            "projection seq {seq}"
        );
        let id = ids[seq].0;
        let events = r
            .service
            .stream()
            .read_stream(&StreamId::for_decision(id))
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(&events[0].event.record_bytes, bytes, "stream seq {seq}");
    }

    // GET by id: the record with a fresh proof that verifies, and per-store status.
    let got: Value = c
        .get(&format!("/v1/decisions/{}", ids[1].0))
        .await
        .json()
        .await
        .unwrap();
    let receipt = Receipt::from_json(got["receipt"].to_string().as_bytes()).unwrap();
    assert_eq!(receipt.record, ids[1].1.record);
    verify_receipt(&receipt, &vkey).unwrap();
    assert_eq!(got["stores"]["projection"], "written");
    assert_eq!(
        c.get(&format!("/v1/decisions/{}", Uuid::now_v7()))
            .await
            .status(),
        404
    );

    // The list comes from the projection, newest first.
    let list: Value = c
        .get("/v1/decisions?kind=motion")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["decisions"].as_array().unwrap().len(), 5);
    assert_eq!(list["decisions"][0]["seq"], 4);

    // The ledger's public endpoints.
    let cp = c.get("/v1/ledger/checkpoint").await;
    assert!(cp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let note = cp.text().await.unwrap();
    triplicate_ledger::SignedCheckpoint::verify(&note, &vkey).unwrap();
    let key: Value = c.get("/v1/keys/notary").await.json().await.unwrap();
    assert_eq!(key["note_verifier_key"], vkey);
    let proof: Value = c
        .get("/v1/ledger/proof/consistency?from=2&to=5")
        .await
        .json()
        .await
        .unwrap();
    assert!(!proof["proof"].as_array().unwrap().is_empty());
    let metrics = c.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("triplicate_submissions_total{outcome=\"created\"} 5"),
        "{metrics}"
    );
    // The five were judged one at a time (the client waits for each receipt).
    assert!(
        metrics.contains("triplicate_judge_batch_submissions_sum 5.0")
            && metrics.contains("triplicate_judge_batch_submissions_count 5"),
        "{metrics}"
    );
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_write_nothing_and_retries_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path()).await;
    let c = Client::new(&r);
    let d = decision("motion", "Adopt the budget");
    let good = body(
        &d,
        &[approve(&d, &r.approvers[0]), approve(&d, &r.approvers[1])],
    );

    // Too few approvals: the unmet requirement is named.
    let (status, p) = c.submit(&body(&d, &[approve(&d, &r.approvers[0])])).await;
    assert_eq!(status, 422, "{p}");
    assert_eq!(
        p["type"],
        "https://triplicate.dev/problems/approvals-refused"
    );
    assert_eq!(p["unmet"][0]["group"], "board");
    assert_eq!(p["unmet"][0]["needed"], 2);

    // A bad signature and a duplicate approver: each failing approval is listed.
    let mut forged = approve(&d, &r.approvers[1]);
    forged.signature[0] ^= 1;
    let dup = approve(&d, &r.approvers[0]);
    let (status, p) = c
        .submit(&body(&d, &[approve(&d, &r.approvers[0]), forged, dup]))
        .await;
    assert_eq!(status, 422, "{p}");
    let reasons: Vec<(u64, String)> = p["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["index"].as_u64().unwrap(),
                a["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        reasons.contains(&(1, "bad_signature".into())),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(2, "duplicate_key".into())),
        "{reasons:?}"
    );

    // An unknown key.
    let stranger = SoftwareSigner::generate("stranger");
    let (status, p) = c
        .submit(&body(
            &d,
            &[approve(&d, &r.approvers[0]), approve(&d, &stranger)],
        ))
        .await;
    assert_eq!(status, 422);
    assert_eq!(p["approvals"][0]["reason"], "unknown_key");

    // Malformed: the field is named.
    let mut bad = good.clone();
    bad["decision"]["kind"] = json!("Not A Kind");
    let (status, p) = c.submit(&bad).await;
    assert_eq!(status, 422);
    assert_eq!(
        p["type"],
        "https://triplicate.dev/problems/invalid-submission"
    );
    assert_eq!(p["problems"][0]["field"], "decision.kind");

    // No token; a body over 1 MiB.
    let resp = c
        .http
        .post(format!("{}/v1/decisions", c.base))
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c
        .http
        .post(format!("{}/v1/decisions", c.base))
        .bearer_auth(&c.token)
        .body(vec![b' '; 1 << 21])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    // Every field within its limit, the whole record over 60 KiB: refused before the ledger.
    let mut big = decision("motion", "A large record");
    big.body = "x".repeat(32 * 1024);
    big.payload = serde_json::from_value(json!({ "notes": "y".repeat(16 * 1024 - 20) })).unwrap();
    big.attachments = (0..64u32)
        .map(|i| triplicate_core::Attachment {
            sha256: hex::encode(sha2::Sha256::digest(i.to_be_bytes())),
            media_type: "application/pdf".into(),
            size: 1000,
            name: Some(format!("annex-{i:02}-{}.pdf", "z".repeat(60))),
        })
        .collect();
    big.validate("").unwrap();
    let (status, p) = c
        .submit(&body(
            &big,
            &[
                approve(&big, &r.approvers[0]),
                approve(&big, &r.approvers[1]),
            ],
        ))
        .await;
    assert_eq!(status, 422, "{p}");
    assert_eq!(p["problems"][0]["field"], "(record)", "{p}");

    assert_eq!(r.service.ledger().tree_size(), 0, "nothing was written");

    // Accepted once; the same again is 200 with the original receipt; other content is 409.
    let (status, first) = c.submit(&good).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = c.submit(&good).await;
    assert_eq!(status, 200);
    assert_eq!(again["receipt"]["record"], first["receipt"]["record"]);
    let mut other = d.clone();
    other.title = "Adopt a different budget".into();
    let (status, p) = c
        .submit(&body(
            &other,
            &[
                approve(&other, &r.approvers[0]),
                approve(&other, &r.approvers[1]),
            ],
        ))
        .await;
    assert_eq!(status, 409, "{p}");
    assert_eq!(p["seq"], 0);
    assert_eq!(r.service.ledger().tree_size(), 1);

    // Concurrent submissions share commits and all land, each exactly once.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let d = decision("motion", &format!("Concurrent {i}"));
        let b = body(
            &d,
            &[approve(&d, &r.approvers[0]), approve(&d, &r.approvers[2])],
        );
        let client = Client::new(&r);
        tasks.push(tokio::spawn(async move { client.submit(&b).await.0 }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    assert_eq!(r.service.ledger().tree_size(), 51);
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reload_keeps_the_old_policy_when_the_new_one_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path()).await;
    let c = Client::new(&r);
    let reload = |token: Option<&str>| {
        let mut req = c.http.post(format!("{}/v1/admin/policies/reload", c.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(reload(None).await.unwrap().status(), 401);
    assert_eq!(reload(Some("wrong")).await.unwrap().status(), 401);
    let gov = dir.path().join("policies/governance.toml");
    let good = std::fs::read_to_string(&gov).unwrap();
    std::fs::write(&gov, good.replace("threshold = 2 }]", "threshold = 9 }]")).unwrap();
    let resp = reload(Some(&c.token)).await.unwrap();
    assert_eq!(resp.status(), 422);
    let p: Value = resp.json().await.unwrap();
    assert!(
        p["problems"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("threshold"),
        "{p}"
    );
    // The old policy (2 of board) is still in force.
    let d = decision("motion", "Still two of the board");
    let (status, _) = c
        .submit(&body(
            &d,
            &[approve(&d, &r.approvers[0]), approve(&d, &r.approvers[1])],
        ))
        .await;
    assert_eq!(status, 201);
    // A valid new policy (3 of board) takes effect.
    std::fs::write(&gov, good.replace("threshold = 2 }]", "threshold = 3 }]")).unwrap();
    assert_eq!(reload(Some(&c.token)).await.unwrap().status(), 200);
    let d = decision("motion", "Now three");
    let (status, p) = c
        .submit(&body(
            &d,
            &[approve(&d, &r.approvers[0]), approve(&d, &r.approvers[1])],
        ))
        .await;
    assert_eq!(status, 422);
    assert_eq!(p["unmet"][0]["needed"], 3);
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_rebuilds_the_index_and_catches_up_a_store_that_fell_behind() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path()).await;
    let c = Client::new(&r);
    let d = decision("motion", "Before the restart");
    let b = body(
        &d,
        &[approve(&d, &r.approvers[0]), approve(&d, &r.approvers[1])],
    );
    assert_eq!(c.submit(&b).await.0, 201);
    r.stop().await.unwrap();

    // The projection is lost while the service is down.
    std::fs::remove_file(dir.path().join("projection.db")).unwrap();
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("projection.db{ext}")));
    }
    let r = start(dir.path()).await;
    let c = Client::new(&r);
    // The index came back from the ledger: the retry is recognised.
    assert_eq!(c.submit(&b).await.0, 200);
    wait_for_stores(&r, 1).await;
    let list: Value = c.get("/v1/decisions").await.json().await.unwrap();
    assert_eq!(list["decisions"][0]["decision"]["id"], d.id.to_string());
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_outlives_a_restart_until_an_admin_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path()).await;
    r.service.freeze_writes("critical: test freeze".into());
    let c = Client::new(&r);
    let d = decision("motion", "While frozen");
    let b = body(
        &d,
        &[approve(&d, &r.approvers[0]), approve(&d, &r.approvers[1])],
    );
    let (status, p) = c.submit(&b).await;
    assert_eq!(status, 503);
    assert_eq!(p["type"], "https://triplicate.dev/problems/writes-frozen");
    r.stop().await.unwrap();

    // A restart does not clear it.
    let r = start(dir.path()).await;
    let c = Client::new(&r);
    let (status, p) = c.submit(&b).await;
    assert_eq!(status, 503, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("test freeze"), "{p}");
    let resp = c
        .http
        .post(format!("{}/v1/admin/resume", c.base))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(c.submit(&b).await.0, 201);
    r.stop().await.unwrap();

    // Resumed stays resumed.
    let r = start(dir.path()).await;
    assert!(r.service.writes_frozen().is_none());
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_submission_sent_concurrently_is_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path()).await;
    let d = decision("motion", "Sent ten times at once");
    let b = body(
        &d,
        &[approve(&d, &r.approvers[0]), approve(&d, &r.approvers[1])],
    );
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (client, b) = (Client::new(&r), b.clone());
        tasks.push(tokio::spawn(async move { client.submit(&b).await }));
    }
    let mut created = 0;
    let mut records = Vec::new();
    for t in tasks {
        let (status, out) = t.await.unwrap();
        assert!(status == 201 || status == 200, "{status} {out}");
        created += usize::from(status == 201);
        records.push(out["receipt"]["record"].clone());
    }
    assert_eq!(created, 1, "exactly one submission records the decision");
    assert!(
        records.iter().all(|rec| *rec == records[0]),
        "all answers carry the one record"
    );
    assert_eq!(r.service.ledger().tree_size(), 1);
    r.stop().await.unwrap();
}

/// Many submissions at once: the group commits queue up behind the store writers, which take
/// several batches per write. Every caller is answered only once both stores hold its record
/// (its own answer says "written" for each store), seqs have no gap or repeat, and the three
/// stores hold the same bytes for every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_are_answered_after_every_store_holds_them() {
    const N: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path()).await;
    let mut tasks = Vec::new();
    for i in 0..N {
        let d = decision("motion", &format!("Concurrent motion {i}"));
        let b = body(
            &d,
            &[approve(&d, &r.approvers[0]), approve(&d, &r.approvers[1])],
        );
        let client = Client::new(&r);
        tasks.push(tokio::spawn(async move { (d.id, client.submit(&b).await) }));
    }
    let mut seqs = Vec::new();
    let mut ids = std::collections::HashMap::new();
    for t in tasks {
        let (id, (status, out)) = t.await.unwrap();
        assert_eq!(status, 201, "{out}");
        for store in ["ledger", "stream", "projection"] {
            assert_eq!(out["stores"][store], "written", "{store}: {out}");
        }
        let seq = out["receipt"]["seq"].as_u64().unwrap();
        seqs.push(seq);
        ids.insert(seq, id);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..N as u64).collect::<Vec<_>>());

    let ledger_bytes = r.service.ledger().entries(0, N as u64).unwrap();
    let projected = r
        .service
        .projection()
        .record_bytes(0, N as u64)
        .await
        .unwrap();
    assert_eq!(projected.len(), N);
    for (seq, bytes) in ledger_bytes.iter().enumerate() {
        assert_eq!(projected[seq].bytes(), Some(bytes.as_slice()), "seq {seq}");
        let events = r
            .service
            .stream()
            .read_stream(&StreamId::for_decision(ids[&(seq as u64)]))
            .await
            .unwrap();
        assert_eq!(events.len(), 1, "seq {seq}");
        assert_eq!(&events[0].event.record_bytes, bytes, "stream seq {seq}");
        assert_eq!(events[0].event.seq, seq as u64);
    }
    r.stop().await.unwrap();
}

/// A motion `id` titled `title`. With `huge`, every field is within its own limit but the
/// record, once notarised, exceeds the record size limit (~70 KB against 60 KiB); without, it is
/// small.
fn sized_decision(id: Uuid, title: &str, huge: bool) -> Decision {
    Decision::from_json(
        serde_json::json!({
            "id": id.to_string(),
            "kind": "motion",
            "title": title,
            "body": if huge { "b".repeat(30 * 1024) } else { "short".into() },
            "payload": {"text": if huge { "p".repeat(15 * 1024) } else { "p".into() }},
            "proposed_at": triplicate_core::Timestamp::now().to_string(),
            "attachments": (0..if huge { 64 } else { 0 }).map(|i| serde_json::json!({
                "sha256": format!("{i:064x}"),
                "media_type": format!("application/x-{}", "m".repeat(100)),
                "size": i,
                "name": format!("{i}-{}", "n".repeat(150)),
            })).collect::<Vec<_>>(),
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

/// A submission whose record would exceed the record size limit (every field within its own
/// limit) is refused with 422 wherever it lands in a group commit; it takes no seq, so the
/// submissions batched with it are recorded at consecutive seqs, and a second copy of it sent
/// at the same time is refused too. Nothing of it reaches any store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_record_is_refused_and_its_batch_commits_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path()).await;
    let huge = sized_decision(Uuid::now_v7(), "Too large once notarised", true);
    let approved = |d: &Decision| {
        body(
            d,
            &[approve(d, &r.approvers[0]), approve(d, &r.approvers[1])],
        )
    };
    let huge_body = approved(&huge);
    let small: Vec<Value> = (0..24)
        .map(|i| approved(&decision("motion", &format!("Small motion {i}"))))
        .collect();
    // Submitted together, in rounds, so the huge one lands inside batches with others.
    for round in 0..3 {
        let mut bodies: Vec<Value> = small[round * 8..round * 8 + 8].to_vec();
        bodies.insert(3, huge_body.clone());
        bodies.push(huge_body.clone());
        let tasks: Vec<_> = bodies
            .into_iter()
            .map(|b| {
                let client = Client::new(&r);
                tokio::spawn(async move { (client.submit(&b).await, b) })
            })
            .collect();
        for t in tasks {
            let ((status, out), b) = t.await.unwrap();
            if b == huge_body {
                assert_eq!(status, 422, "{out}");
                assert!(
                    out.to_string().contains("bytes canonicalised"),
                    "the problem says why: {out}"
                );
            } else {
                assert_eq!(status, 201, "{out}");
            }
        }
    }
    // 24 records at seqs 0..24, none of them the huge decision.
    let size = r.service.ledger().tree_size();
    assert_eq!(size, 24);
    wait_for_stores(&r, size).await;
    let entries = r.service.ledger().entries(0, size).unwrap();
    let mut titles: Vec<String> = entries
        .iter()
        .enumerate()
        .map(|(seq, e)| {
            let record = triplicate_core::Record::from_canonical_bytes(e).unwrap();
            assert_eq!(record.seq, seq as u64);
            assert_ne!(record.decision.id, huge.id);
            record.decision.title
        })
        .collect();
    titles.sort();
    let mut want: Vec<String> = (0..24).map(|i| format!("Small motion {i}")).collect();
    want.sort();
    assert_eq!(titles, want);
    assert_eq!(
        Client::new(&r)
            .get(&format!("/v1/decisions/{}", huge.id))
            .await
            .status(),
        404
    );
    r.stop().await.unwrap();
}

/// An oversized submission and a corrected (smaller) one under the same decision id, sent at
/// the same time: whatever the batching, the oversized one is refused (422, or 409 once the
/// corrected one is recorded), the corrected one is recorded or answered 503 to be sent again
/// (when it shared a batch with the refused one), and after a retry the decision is recorded
/// once, with the corrected content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrected_submission_is_not_refused_for_its_oversized_twin() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path()).await;
    let approved = |d: &Decision| {
        body(
            d,
            &[approve(d, &r.approvers[0]), approve(d, &r.approvers[1])],
        )
    };
    for round in 0..5 {
        let id = Uuid::now_v7();
        let make = |huge: bool| sized_decision(id, &format!("Twin {round}"), huge);
        let (huge, small) = (approved(&make(true)), approved(&make(false)));
        let (a, b) = (Client::new(&r), Client::new(&r));
        let (hb, sb) = (huge.clone(), small.clone());
        let h = tokio::spawn(async move { a.submit(&hb).await });
        let s = tokio::spawn(async move { b.submit(&sb).await });
        let (hs, hout) = h.await.unwrap();
        let (mut ss, mut sout) = s.await.unwrap();
        assert!(hs == 422 || hs == 409, "round {round}: {hs} {hout}");
        assert!(ss == 201 || ss == 503, "round {round}: {ss} {sout}");
        if ss == 503 {
            (ss, sout) = Client::new(&r).submit(&small).await;
        }
        assert!(ss == 201 || ss == 200, "round {round}: {ss} {sout}");
        assert_eq!(sout["receipt"]["record"]["decision"]["body"], "short");
    }
    assert_eq!(r.service.ledger().tree_size(), 5);
    r.stop().await.unwrap();
}
