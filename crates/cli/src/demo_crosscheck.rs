//! The cross-check part of `triplicate demo`: each store tampered with as someone holding its
//! files would, the run that finds it, what the service does about it, and a clean run at the
//! end.
//!
//! 1. a clean run (its report stored, its digest appended to the ledger as an audit record);
//! 2. projection drift (a title changed under the triggers): minor, repaired automatically;
//! 3. projection rows forged past the ledger's end: major, a removal proposed, approved by the
//!    development auditor with a signed verdict, and run;
//! 4. a stream event's data altered: major, a stream rebuild proposed and approved, which the
//!    service runs: a new stream filled from the ledger, checked against its signed checkpoint
//!    and put in place, the damaged file kept beside it;
//! 5. a byte flipped in a ledger entry bundle: critical, writes frozen (a submission gets 503);
//!    the byte is put back, as restoring the ledger's files from a backup would, and an admin
//!    resumes writes;
//! 6. a clean run.
//!
//! Tampering bypasses the stores' append-only triggers the way a superuser would: the trigger
//! is dropped, the row changed and the trigger re-created from its own stored SQL, in one
//! transaction, so the data directory keeps its guards afterwards.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use serde_json::{json, Value};
use triplicate_core::{Record, Timestamp};
use triplicate_keys::Signer as _;
use triplicate_server::Running;
use triplicate_verifier::review::{ReviewStatement, Verdict};

use crate::demo::Tour;

/// One run as the summary lists it.
fn run_summary(stage: &str, stored: &Value) -> Value {
    json!({
        "stage": stage,
        "run_id": stored["run_id"],
        "digest": stored["digest"],
        "audit_seq": stored["audit_seq"],
        "counts": stored["report"]["counts"],
        "actions": stored["report"]["actions"].as_array().map(|a| a.iter().map(|a| json!({
            "operation": a["operation"], "seq": a["seq"], "status": a["status"],
        })).collect::<Vec<_>>()),
    })
}

struct Http<'a> {
    http: reqwest::Client,
    base: String,
    running: &'a Running,
}

impl Http<'_> {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// A full run through `POST /v1/verification/runs`, then the stores given time to catch up.
    async fn run(&self) -> anyhow::Result<Value> {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/v1/verification/runs",
                &self.running.auditor_token,
                Some(&json!({ "full": true })),
            )
            .await?;
        anyhow::ensure!(
            status == 201,
            "the cross-check did not run: {}",
            crate::client::describe_problem(status, &body)
        );
        self.settle().await;
        Ok(body)
    }

    async fn settle(&self) {
        let service = &self.running.service;
        for _ in 0..400 {
            let h = service.health();
            let size = h.ledger_size;
            if !h.accepting_writes || (h.stream.size >= size && h.projection.size >= size) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The development auditor's signed verdict on the repair `id`.
    async fn verdict(&self, id: &str, verdict: Verdict, reason: &str) -> anyhow::Result<Value> {
        let auditor = self
            .running
            .auditor
            .as_ref()
            .context("the development set-up has no auditor key")?;
        let path = format!("/v1/verification/repairs/{id}");
        let token = &self.running.auditor_token;
        let (status, repair) = self.call(reqwest::Method::GET, &path, token, None).await?;
        anyhow::ensure!(status == 200, "GET {path}: {status}");
        let digest = repair["report_digest"]
            .as_str()
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
            .and_then(|d| triplicate_core::Hash::try_from(d).ok())
            .context("the repair's report digest")?;
        let statement = ReviewStatement {
            action_id: id.parse().context("repair id")?,
            run_id: repair["run_id"]
                .as_str()
                .and_then(|r| r.parse().ok())
                .context("the repair's run id")?,
            report_digest: digest,
            verdict,
            key_id: auditor.key_id(),
            alg: auditor.algorithm(),
            signed_at: Timestamp::now(),
            reason: reason.to_owned(),
        };
        let signature = auditor.sign(&statement.message()?)?;
        let which = match verdict {
            Verdict::Approved => "approve",
            Verdict::Rejected => "reject",
        };
        let (status, out) = self
            .call(
                reqwest::Method::POST,
                &format!("{path}/{which}"),
                token,
                Some(&json!({
                    "key_id": statement.key_id,
                    "alg": statement.alg,
                    "signature": base64::engine::general_purpose::STANDARD.encode(signature),
                    "signed_at": statement.signed_at,
                    "reason": reason,
                })),
            )
            .await?;
        anyhow::ensure!(
            status == 200,
            "the verdict was refused: {}",
            crate::client::describe_problem(status, &out)
        );
        Ok(out)
    }
}

fn counts(stored: &Value) -> String {
    let c = &stored["report"]["counts"];
    format!(
        "lag {} minor {} major {} critical {}",
        c["lag"], c["minor"], c["major"], c["critical"]
    )
}

/// Runs `sql` with the trigger `trigger` of `db` out of the way, in one transaction, and puts
/// the trigger back from its own stored definition.
fn under_trigger(
    db: &Path,
    trigger: &str,
    change: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<usize>,
) -> anyhow::Result<()> {
    let mut c = rusqlite::Connection::open(db).with_context(|| format!("open {}", db.display()))?;
    c.busy_timeout(Duration::from_secs(10))?;
    let tx = c.transaction()?;
    let sql: String = tx
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'trigger' AND name = ?1",
            [trigger],
            |r| r.get(0),
        )
        .with_context(|| format!("trigger {trigger} in {}", db.display()))?;
    tx.execute_batch(&format!("DROP TRIGGER {trigger};"))?;
    let changed = change(&tx)?;
    anyhow::ensure!(
        changed > 0,
        "the tamper changed nothing in {}",
        db.display()
    );
    tx.execute_batch(&format!("{sql};"))?;
    tx.commit()?;
    Ok(())
}

/// The tour's cross-check part; returns the runs for the summary.
pub async fn tour(running: &Running, data_dir: &Path, tour: &Tour) -> anyhow::Result<Vec<Value>> {
    let h = Http {
        http: reqwest::Client::new(),
        base: format!("http://{}", running.addr),
        running,
    };
    let mut runs = Vec::new();
    let service = &running.service;

    tour.say("6. Cross-checking the three stores (POST /v1/verification/runs, auditor token):");
    let clean = h.run().await?;
    tour.say(format!(
        "   clean run {}: {}; report stored, its digest {} appended to the ledger at seq {}",
        clean["run_id"].as_str().unwrap_or("?"),
        counts(&clean),
        clean["digest"].as_str().unwrap_or("?"),
        clean["audit_seq"]
    ));
    runs.push(run_summary("clean", &clean));

    // Projection drift.
    let projection_db = data_dir.join("projection.db");
    under_trigger(&projection_db, "decisions_no_update", |tx| {
        tx.execute(
            "UPDATE decisions SET title = 'A title nobody approved' WHERE seq = 1",
            [],
        )
    })?;
    tour.say("7. Tampered: the projection's title of seq 1 changed (triggers bypassed)");
    let drift = h.run().await?;
    anyhow::ensure!(
        drift["report"]["counts"]["minor"] == 1,
        "the drift was not found as minor: {}",
        counts(&drift)
    );
    tour.say(format!(
        "   found: {}; minor drift repaired from the ledger automatically ({})",
        counts(&drift),
        drift["report"]["actions"][0]["status"]
            .as_str()
            .unwrap_or("?")
    ));
    runs.push(run_summary("projection drift", &drift));

    // Projection rows the ledger lacks.
    let n = service.ledger().tree_size();
    {
        let last = service
            .ledger()
            .entry(n - 1)
            .context("read the ledger's last entry")?;
        let template = Record::from_canonical_bytes(&last)?;
        let forged: Vec<Vec<u8>> = (n..n + 2)
            .map(|seq| {
                let mut r = template.clone();
                r.seq = seq;
                r.decision.id = uuid::Uuid::now_v7();
                r.decision.title = format!("A forged decision at seq {seq}");
                r.to_bytes()
            })
            .collect::<Result<_, _>>()?;
        let forger = triplicate_projection::SqliteProjection::open(data_dir).await?;
        use triplicate_projection::Projection as _;
        forger.apply(forged).await?;
    }
    tour.say(format!(
        "8. Tampered: two records the ledger never had added to the projection at seqs {n} and {}",
        n + 1
    ));
    let extra = h.run().await?;
    anyhow::ensure!(
        extra["report"]["counts"]["major"] == 2,
        "the forged rows were not found as major: {}",
        counts(&extra)
    );
    tour.say(format!(
        "   found: {}; removals proposed, waiting for an auditor",
        counts(&extra)
    ));
    for a in extra["report"]["actions"].as_array().into_iter().flatten() {
        let id = a["id"].as_str().unwrap_or_default();
        let out = h
            .verdict(id, Verdict::Approved, "forged rows: remove them")
            .await?;
        tour.say(format!(
            "   auditor approved (signed verdict) the removal at seq {}: {}",
            a["seq"],
            out["status"].as_str().unwrap_or("?")
        ));
    }
    runs.push(run_summary("forged projection rows", &extra));
    // The run's own audit record took seq n in the ledger, so the forged row there became a
    // row that differs from the ledger's record: minor, repaired by the next run.
    let after = h.run().await?;
    tour.say(format!(
        "   next run: {} (the forged row at seq {n}, where the ledger now holds the run's audit \
         record, repaired as drift)",
        counts(&after)
    ));
    runs.push(run_summary("after the removal", &after));

    // A stream event altered: on the embedded stream only. A JetStream stream refuses to
    // change or delete a message (deny_delete, deny_purge), so there is nothing to alter in
    // place; a forged message on a decision's subject is read as damaged (see the stream's
    // own tests).
    if running.service.stream().name() == "sqlite" {
        // A stream event altered.
        let stream_db = data_dir.join("stream.db");
        let original: Vec<u8> = rusqlite::Connection::open(&stream_db)?
            .query_row("SELECT data FROM events WHERE seq = 2", [], |r| r.get(0))
            .context("read the stream's event at seq 2")?;
        // One letter of the title: the event still decodes, its record no longer hashes to the
        // ledger's leaf.
        let mut altered = original.clone();
        let title = altered
            .windows(9)
            .position(|w| w == b"\"title\":\"")
            .context("the event's record has a title")?;
        if let Some(b) = altered[title + 9..]
            .iter_mut()
            .find(|b| b.is_ascii_lowercase())
        {
            *b = b.to_ascii_uppercase();
        }
        under_trigger(&stream_db, "events_no_update", |tx| {
            tx.execute("UPDATE events SET data = ?1 WHERE seq = 2", [&altered])
        })?;
        tour.say("9. Tampered: one letter of the stream's event data at seq 2 changed");
        let stream = h.run().await?;
        anyhow::ensure!(
            stream["report"]["counts"]["major"].as_u64() >= Some(1),
            "the altered event was not found as major: {}",
            counts(&stream)
        );
        tour.say(format!(
            "   found: {}; a rebuild of the stream from the ledger proposed",
            counts(&stream)
        ));
        for a in stream["report"]["actions"].as_array().into_iter().flatten() {
            let out = h
                .verdict(
                    a["id"].as_str().unwrap_or_default(),
                    Verdict::Approved,
                    "rebuild the stream",
                )
                .await?;
            tour.say(format!(
                "   auditor approved it: {}: {}",
                out["status"].as_str().unwrap_or("?"),
                out["outcome"].as_str().unwrap_or("?")
            ));
            anyhow::ensure!(
                out["status"] == "applied",
                "the approved stream rebuild did not run: {out}"
            );
        }
        let rebuilt: Vec<u8> = rusqlite::Connection::open(&stream_db)?
            .query_row("SELECT data FROM events WHERE seq = 2", [], |r| r.get(0))
            .context("read the rebuilt stream's event at seq 2")?;
        anyhow::ensure!(
            rebuilt == original,
            "the rebuilt stream does not hold the ledger's record at seq 2"
        );
        tour.say("   the stream holds the ledger's record at seq 2 again");
        runs.push(run_summary("stream event altered", &stream));
    } else {
        tour.say(format!(
            "9. (Skipped: the stream is on {} JetStream, whose messages cannot be edited in place.)",
            "NATS"
        ));
    }

    // A ledger bundle byte flipped.
    tokio::time::sleep(Duration::from_millis(1_200)).await; // the flusher writes the tiles
    let size = service.ledger().tree_size();
    let (index, width) = triplicate_ledger::layout::bundle_for(0, size);
    let bundle = data_dir
        .join("ledger")
        .join(triplicate_ledger::layout::bundle_path(index, width));
    let bytes = std::fs::read(&bundle).with_context(|| format!("read {}", bundle.display()))?;
    let mut flipped = bytes.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x01;
    std::fs::write(&bundle, &flipped)?;
    tour.say(format!(
        "10. Tampered: one bit of the ledger's entry bundle {} flipped",
        bundle.display()
    ));
    let ledger = h.run().await?;
    anyhow::ensure!(
        ledger["report"]["counts"]["critical"].as_u64() >= Some(1),
        "the ledger tamper was not found as critical: {}",
        counts(&ledger)
    );
    let (status, refused) = h
        .call(
            reqwest::Method::POST,
            "/v1/decisions",
            &running.admin_token,
            Some(&json!({})),
        )
        .await?;
    tour.say(format!(
        "   found: {}; writes frozen: a submission now gets {status} {}",
        counts(&ledger),
        refused["type"].as_str().unwrap_or("")
    ));
    std::fs::write(&bundle, &bytes)?;
    let (status, _) = h
        .call(
            reqwest::Method::POST,
            "/v1/admin/resume",
            &running.admin_token,
            None,
        )
        .await?;
    anyhow::ensure!(status == 200, "resume: {status}");
    tour.say(
        "   the byte put back, as restoring the ledger's files from a backup would; an admin \
         resumed writes (POST /v1/admin/resume)",
    );
    runs.push(run_summary("ledger bundle flipped", &ledger));

    let last = h.run().await?;
    anyhow::ensure!(
        last["report"]["discrepancies"]
            .as_array()
            .is_some_and(|d| d.is_empty()),
        "the last run is not clean: {}",
        counts(&last)
    );
    tour.say(format!(
        "11. Clean run {}: {} across {} records",
        last["run_id"].as_str().unwrap_or("?"),
        counts(&last),
        last["report"]["records_compared"]
    ));
    runs.push(run_summary("clean at the end", &last));
    Ok(runs)
}
