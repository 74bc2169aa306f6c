//! [`ReportStore`] on PostgreSQL: the tables of `migrations/postgres/0002_verification.sql`.
//!
//! A report is checked and its rows encoded into binary `COPY` tuples on the blocking pool,
//! then written in one transaction: the report's row with `INSERT … ON CONFLICT DO NOTHING`
//! (a concurrent store of the same run waits for the other to commit, then sees its digest),
//! and one `COPY … FROM STDIN` each for the discrepancies and the actions, however many.
//! Reads run in one `REPEATABLE READ READ ONLY` transaction and fetch each table's rows with
//! one binary `COPY (SELECT …) TO STDOUT`, so a report of 100,000 discrepancies is one query
//! per table with no per-row driver work. No writer lock: reports do not touch the records'
//! tables, and the primary keys keep two writers of one run apart.

use triplicate_core::{Hash, Timestamp};
use uuid::Uuid;

use super::{copy_out, copy_pieces, join_time, pg_err, split_time, PgMicros, PgProjection};
use crate::pgcopy::{CopyReader, CopyWriter};
use crate::reports::{check_limit, check_report, check_review, damaged, time_from, u64_from};
use crate::{
    hex_hash, ActionRecord, ActionRow, DiscrepancyRow, FullReport, ProjectionError, ReportCounts,
    ReportStore, ReportSummary, ReviewRow, StoredReport,
};

/// Bytes of `COPY` tuples per piece sent (the data of a large report goes in pieces, not one
/// message of tens of megabytes).
const PIECE: usize = 1 << 20;

const COPY_DISCREPANCIES: &str = "COPY verification_discrepancies (run_id, position, seq, \
     decision_id, store, class, kind, expected_hash, actual_hash, file, detail) \
     FROM STDIN (FORMAT binary)";

const COPY_ACTIONS: &str = "COPY verification_actions (action_id, run_id, position, seq, seqs, \
     store, class, kind, operation, authority, status, restores, detail) \
     FROM STDIN (FORMAT binary)";

/// The count of a report's pending actions (see [`crate::reports::is_pending`]), for a report
/// aliased `r`.
const PENDING: &str = "(SELECT count(*) FROM verification_actions a \
     WHERE a.run_id = r.run_id AND a.authority = 'auditor' AND a.status = 'proposed' \
     AND NOT EXISTS (SELECT 1 FROM verification_reviews v WHERE v.action_id = a.action_id \
     AND (v.verdict = 'rejected' OR starts_with(v.outcome, 'applied') \
     OR starts_with(v.outcome, 'unchanged') OR starts_with(v.outcome, 'deferred'))))";

/// 16 fields; [`read_summary`] decodes them.
const SUMMARY_COLUMNS: &str = "r.run_id, r.mode, r.started_at, r.started_at_extra_ns, \
     r.finished_at, r.finished_at_extra_ns, r.worst_class, r.lag, r.minor, r.major, \
     r.critical, r.records_compared, r.checkpoint_size, r.digest, r.audit_seq";

/// 11 fields; [`read_action`] decodes them.
const ACTION_COLUMNS: &str = "a.action_id, a.seq, a.seqs, a.store, a.class, a.kind, \
     a.operation, a.authority, a.status, a.restores, a.detail";

/// 11 fields; [`read_review`] decodes them.
const REVIEW_COLUMNS: &str = "v.action_id, v.verdict, v.key_id, v.alg, v.signature, \
     v.signed_at, v.signed_at_extra_ns, v.reason, v.outcome, v.recorded_at, \
     v.recorded_at_extra_ns";

/// A `u64` checked by `check_report` to fit a signed 64-bit column.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn pg_time(t: &Timestamp) -> Result<(PgMicros, i16), ProjectionError> {
    split_time(t.unix_nanos()).map_err(|reason| ProjectionError::Storage {
        what: "convert a time",
        reason,
    })
}

/// Pieces of `COPY` tuples, cut at tuple boundaries.
struct Pieces {
    done: Vec<Vec<u8>>,
    current: CopyWriter,
}

impl Pieces {
    fn new() -> Pieces {
        Pieces {
            done: Vec::new(),
            current: CopyWriter::tuples(PIECE + 4096),
        }
    }

    /// The writer for the next tuple.
    fn next(&mut self) -> &mut CopyWriter {
        if self.current.len() >= PIECE {
            let full = std::mem::replace(&mut self.current, CopyWriter::tuples(PIECE + 4096));
            self.done.push(full.into_tuples());
        }
        &mut self.current
    }

    fn finish(mut self) -> Vec<Vec<u8>> {
        if self.current.len() > 0 {
            self.done.push(self.current.into_tuples());
        }
        self.done
    }
}

/// A report's rows as binary `COPY` tuples.
struct Encoded {
    discrepancies: Vec<Vec<u8>>,
    actions: Vec<Vec<u8>>,
}

fn opt_hash(w: &mut CopyWriter, h: Option<&Hash>) {
    match h {
        Some(h) => w.bytes(h),
        None => w.null(),
    }
}

fn opt_i64(w: &mut CopyWriter, v: Option<u64>) {
    match v {
        Some(v) => w.i64(int(v)),
        None => w.null(),
    }
}

fn encode(r: &StoredReport) -> Encoded {
    let mut d = Pieces::new();
    for (i, x) in r.discrepancies.iter().enumerate() {
        let w = d.next();
        w.row(11);
        w.uuid(&r.run_id);
        // Positions fit i32: check_report counted the rows.
        w.i32(i as i32);
        opt_i64(w, x.seq);
        match &x.decision_id {
            Some(u) => w.uuid(u),
            None => w.null(),
        }
        w.text(&x.store);
        w.text(&x.class);
        w.text(&x.kind);
        opt_hash(w, x.expected_hash.as_ref());
        opt_hash(w, x.actual_hash.as_ref());
        match &x.file {
            Some(f) => w.text(f),
            None => w.null(),
        }
        w.text(&x.detail);
    }
    let mut a = Pieces::new();
    for (i, x) in r.actions.iter().enumerate() {
        let w = a.next();
        w.row(13);
        w.uuid(&x.id);
        w.uuid(&r.run_id);
        w.i32(i as i32);
        opt_i64(w, x.seq);
        w.i64_array(&x.seqs.iter().map(|s| int(*s)).collect::<Vec<_>>());
        for s in [
            &x.store,
            &x.class,
            &x.kind,
            &x.operation,
            &x.authority,
            &x.status,
        ] {
            w.text(s);
        }
        opt_hash(w, x.restores.as_ref());
        w.text(&x.detail);
    }
    Encoded {
        discrepancies: d.finish(),
        actions: a.finish(),
    }
}

/// Reads every tuple of `COPY` data with `read`, which decodes one tuple of `fields` fields.
fn read_all<T>(
    data: &[u8],
    fields: i16,
    mut read: impl FnMut(&mut CopyReader<'_>) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let mut r = CopyReader::new(data)?;
    let mut out = Vec::new();
    while r.row(fields)?.is_some() {
        out.push(read(&mut r)?);
    }
    Ok(out)
}

fn time(r: &mut CopyReader<'_>, what: &str) -> Result<Timestamp, String> {
    let micros = r.timestamp(what)?;
    let ns = r.i16(what)?;
    time_from(what, join_time(micros, ns))
}

fn opt_u64(r: &mut CopyReader<'_>, what: &str) -> Result<Option<u64>, String> {
    r.opt_i64(what)?.map(|v| u64_from(what, v)).transpose()
}

/// The first 15 fields of a summary ([`SUMMARY_COLUMNS`]), with `pending_actions` 0.
fn read_summary(r: &mut CopyReader<'_>) -> Result<ReportSummary, String> {
    Ok(ReportSummary {
        run_id: r.uuid("run_id")?,
        mode: r.text("mode")?,
        started_at: time(r, "started_at")?,
        finished_at: time(r, "finished_at")?,
        worst_class: r.opt_text("worst_class")?,
        counts: ReportCounts {
            lag: u64_from("lag", r.i64("lag")?)?,
            minor: u64_from("minor", r.i64("minor")?)?,
            major: u64_from("major", r.i64("major")?)?,
            critical: u64_from("critical", r.i64("critical")?)?,
        },
        records_compared: u64_from("records_compared", r.i64("records_compared")?)?,
        checkpoint_size: opt_u64(r, "checkpoint_size")?,
        digest: r.hash("digest")?,
        audit_seq: opt_u64(r, "audit_seq")?,
        pending_actions: 0,
    })
}

fn read_action(r: &mut CopyReader<'_>) -> Result<ActionRow, String> {
    Ok(ActionRow {
        id: r.uuid("action_id")?,
        seq: opt_u64(r, "seq")?,
        seqs: r
            .i64_array("seqs")?
            .into_iter()
            .map(|s| u64_from("seqs", s))
            .collect::<Result<_, _>>()?,
        store: r.text("store")?,
        class: r.text("class")?,
        kind: r.text("kind")?,
        operation: r.text("operation")?,
        authority: r.text("authority")?,
        status: r.text("status")?,
        restores: r.opt_hash("restores")?,
        detail: r.text("detail")?,
    })
}

fn read_review(r: &mut CopyReader<'_>) -> Result<ReviewRow, String> {
    Ok(ReviewRow {
        action_id: r.uuid("action_id")?,
        verdict: r.text("verdict")?,
        key_id: r.text("key_id")?,
        alg: r.text("alg")?,
        signature: r.bytes("signature")?,
        signed_at: time(r, "signed_at")?,
        reason: r.text("reason")?,
        outcome: r.opt_text("outcome")?,
        recorded_at: time(r, "recorded_at")?,
    })
}

fn read_discrepancy(r: &mut CopyReader<'_>) -> Result<(i32, DiscrepancyRow), String> {
    Ok((
        r.i32("position")?,
        DiscrepancyRow {
            seq: opt_u64(r, "seq")?,
            decision_id: r.opt_uuid("decision_id")?,
            store: r.text("store")?,
            class: r.text("class")?,
            kind: r.text("kind")?,
            expected_hash: r.opt_hash("expected_hash")?,
            actual_hash: r.opt_hash("actual_hash")?,
            file: r.opt_text("file")?,
            detail: r.text("detail")?,
        },
    ))
}

/// Positions must be exactly `0..n`: a row missing or added behind the projection's back is
/// damage, not a shorter report.
fn in_order<T>(what: &str, rows: Vec<(i32, T)>) -> Result<Vec<T>, String> {
    rows.into_iter()
        .enumerate()
        .map(|(i, (p, row))| {
            if i64::from(p) == i as i64 {
                Ok(row)
            } else {
                Err(format!("{what} positions are not 0..n: {p} at index {i}"))
            }
        })
        .collect()
}

impl PgProjection {
    #[tracing::instrument(skip_all, fields(run_id = %report.run_id))]
    async fn store_report_inner(&self, report: StoredReport) -> Result<bool, ProjectionError> {
        // Checking (a large body takes a while to parse) and encoding are CPU work, done
        // before a connection is taken.
        let (report, rows) = tokio::task::spawn_blocking(move || {
            check_report(&report)?;
            let rows = encode(&report);
            Ok::<_, ProjectionError>((report, rows))
        })
        .await
        .map_err(|e| ProjectionError::Unavailable(format!("check task failed: {e}")))??;
        let started = pg_time(&report.started_at)?;
        let finished = pg_time(&report.finished_at)?;
        // The body is valid JSON, hence UTF-8 (checked).
        let body =
            std::str::from_utf8(&report.body).map_err(|e| ProjectionError::InvalidReport {
                run_id: report.run_id,
                reason: format!("body is not UTF-8: {e}"),
            })?;

        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(pg_err("begin storing a report"))?;
        let inserted: Option<i32> = sqlx::query_scalar(
            "INSERT INTO verification_reports (run_id, mode, started_at, started_at_extra_ns, \
             finished_at, finished_at_extra_ns, worst_class, lag, minor, major, critical, \
             records_compared, checkpoint_size, checkpoint_root, digest, body, audit_seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (run_id) DO NOTHING RETURNING 1",
        )
        .bind(report.run_id)
        .bind(&report.mode)
        .bind(started.0)
        .bind(started.1)
        .bind(finished.0)
        .bind(finished.1)
        .bind(report.worst_class.as_deref())
        .bind(int(report.counts.lag))
        .bind(int(report.counts.minor))
        .bind(int(report.counts.major))
        .bind(int(report.counts.critical))
        .bind(int(report.records_compared))
        .bind(report.checkpoint_size.map(int))
        .bind(report.checkpoint_root.map(|h| h.to_vec()))
        .bind(report.digest.to_vec())
        .bind(body)
        .bind(report.audit_seq.map(int))
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg_err("insert the report"))?;
        if inserted.is_none() {
            let stored: Vec<u8> =
                sqlx::query_scalar("SELECT digest FROM verification_reports WHERE run_id = $1")
                    .bind(report.run_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(pg_err("look up the report"))?;
            tx.rollback()
                .await
                .map_err(pg_err("end storing a report"))?;
            if stored == report.digest {
                tracing::debug!("verification report already stored");
                return Ok(false);
            }
            return Err(ProjectionError::ReportConflict {
                run_id: report.run_id,
                stored: hex::encode(stored),
                offered: hex_hash(&report.digest),
            });
        }
        if !report.actions.is_empty() {
            let ids: Vec<Uuid> = report.actions.iter().map(|a| a.id).collect();
            let taken: Option<(Uuid, Uuid)> = sqlx::query_as(
                "SELECT action_id, run_id FROM verification_actions \
                 WHERE action_id = ANY($1) LIMIT 1",
            )
            .bind(&ids)
            .fetch_optional(&mut *tx)
            .await
            .map_err(pg_err("look up the report's action ids"))?;
            if let Some((action, other)) = taken {
                tx.rollback()
                    .await
                    .map_err(pg_err("end storing a report"))?;
                return Err(ProjectionError::InvalidReport {
                    run_id: report.run_id,
                    reason: format!("action {action} is already stored, in run {other}"),
                });
            }
        }
        for (statement, pieces, what) in [
            (
                COPY_DISCREPANCIES,
                &rows.discrepancies,
                "insert discrepancies",
            ),
            (COPY_ACTIONS, &rows.actions, "insert actions"),
        ] {
            if pieces.is_empty() {
                continue;
            }
            let pieces: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            copy_pieces(&mut tx, statement, &pieces)
                .await
                .map_err(pg_err(what))?;
        }
        tx.commit().await.map_err(pg_err("commit the report"))?;
        tracing::info!(
            discrepancies = report.discrepancies.len(),
            actions = report.actions.len(),
            "stored a verification report"
        );
        Ok(true)
    }

    async fn reports_inner(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<ReportSummary>, ProjectionError> {
        check_limit(limit)?;
        // Values inline: `COPY` takes no parameters; a formatted UUID and an integer.
        let filter = match before {
            Some(b) => format!("WHERE r.run_id < '{b}'"),
            None => String::new(),
        };
        let query = format!(
            "SELECT {SUMMARY_COLUMNS}, {PENDING} FROM verification_reports r {filter} \
             ORDER BY r.run_id DESC LIMIT {limit}"
        );
        let mut tx = self.read_tx().await?;
        let data = copy_out(&mut tx, &query, "read reports").await?;
        tx.commit().await.map_err(pg_err("end read"))?;
        read_all(&data, 16, |r| {
            let mut s = read_summary(r)?;
            s.pending_actions = u64_from("pending actions", r.i64("pending actions")?)?;
            Ok(s)
        })
        .map_err(damaged("read reports"))
    }

    async fn report_inner(&self, run_id: Uuid) -> Result<Option<FullReport>, ProjectionError> {
        let mut tx = self.read_tx().await?;
        let head = copy_out(
            &mut tx,
            &format!(
                "SELECT {SUMMARY_COLUMNS}, r.checkpoint_root, r.body \
                 FROM verification_reports r WHERE r.run_id = '{run_id}'"
            ),
            "read the report",
        )
        .await?;
        let mut head = read_all(&head, 17, |r| {
            let s = read_summary(r)?;
            let root = r.opt_hash("checkpoint_root")?;
            let body = r.bytes("body")?;
            Ok((s, root, body))
        })
        .map_err(damaged("read the report"))?;
        let Some((s, checkpoint_root, body)) = head.pop() else {
            tx.commit().await.map_err(pg_err("end read"))?;
            return Ok(None);
        };
        let discrepancies = copy_out(
            &mut tx,
            &format!(
                "SELECT position, seq, decision_id, store, class, kind, expected_hash, \
                 actual_hash, file, detail FROM verification_discrepancies \
                 WHERE run_id = '{run_id}' ORDER BY position"
            ),
            "read discrepancies",
        )
        .await?;
        let actions = copy_out(
            &mut tx,
            &format!(
                "SELECT a.position, {ACTION_COLUMNS} FROM verification_actions a \
                 WHERE a.run_id = '{run_id}' ORDER BY a.position"
            ),
            "read actions",
        )
        .await?;
        let reviews = copy_out(
            &mut tx,
            &format!(
                "SELECT {REVIEW_COLUMNS} FROM verification_reviews v \
                 JOIN verification_actions a ON a.action_id = v.action_id \
                 WHERE a.run_id = '{run_id}' ORDER BY v.review_id"
            ),
            "read reviews",
        )
        .await?;
        tx.commit().await.map_err(pg_err("end read"))?;
        // Decoding 100,000 rows is CPU work: on the blocking pool.
        tokio::task::spawn_blocking(move || {
            let discrepancies = read_all(&discrepancies, 10, read_discrepancy)
                .and_then(|rows| in_order("discrepancy", rows))
                .map_err(damaged("read discrepancies"))?;
            let actions = read_all(&actions, 12, |r| Ok((r.i32("position")?, read_action(r)?)))
                .and_then(|rows| in_order("action", rows))
                .map_err(damaged("read actions"))?;
            let reviews = read_all(&reviews, 11, read_review).map_err(damaged("read reviews"))?;
            Ok(Some(FullReport {
                report: StoredReport {
                    run_id: s.run_id,
                    mode: s.mode,
                    started_at: s.started_at,
                    finished_at: s.finished_at,
                    worst_class: s.worst_class,
                    counts: s.counts,
                    records_compared: s.records_compared,
                    checkpoint_size: s.checkpoint_size,
                    checkpoint_root,
                    digest: s.digest,
                    body,
                    audit_seq: s.audit_seq,
                    discrepancies,
                    actions,
                },
                reviews,
            }))
        })
        .await
        .map_err(|e| ProjectionError::Unavailable(format!("decode task failed: {e}")))?
    }

    async fn action_inner(&self, id: Uuid) -> Result<Option<ActionRecord>, ProjectionError> {
        let mut tx = self.read_tx().await?;
        let action = copy_out(
            &mut tx,
            &format!(
                "SELECT a.run_id, {ACTION_COLUMNS} FROM verification_actions a \
                 WHERE a.action_id = '{id}'"
            ),
            "read the action",
        )
        .await?;
        let mut action = read_all(&action, 12, |r| Ok((r.uuid("run_id")?, read_action(r)?)))
            .map_err(damaged("read the action"))?;
        let Some((run_id, action)) = action.pop() else {
            tx.commit().await.map_err(pg_err("end read"))?;
            return Ok(None);
        };
        let reviews = copy_out(
            &mut tx,
            &format!(
                "SELECT {REVIEW_COLUMNS} FROM verification_reviews v \
                 WHERE v.action_id = '{id}' ORDER BY v.review_id"
            ),
            "read reviews",
        )
        .await?;
        tx.commit().await.map_err(pg_err("end read"))?;
        let reviews = read_all(&reviews, 11, read_review).map_err(damaged("read reviews"))?;
        Ok(Some(ActionRecord {
            run_id,
            action,
            reviews,
        }))
    }

    #[tracing::instrument(skip_all, fields(action_id = %review.action_id))]
    async fn record_review_inner(&self, review: ReviewRow) -> Result<(), ProjectionError> {
        check_review(&review)?;
        let signed = pg_time(&review.signed_at)?;
        let recorded = pg_time(&review.recorded_at)?;
        // Inserted only if the action exists (the foreign key would refuse it too, with a less
        // helpful message). Actions are never deleted, so this cannot race.
        let n = sqlx::query(
            "INSERT INTO verification_reviews (action_id, verdict, key_id, alg, signature, \
             signed_at, signed_at_extra_ns, reason, outcome, recorded_at, recorded_at_extra_ns) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 \
             WHERE EXISTS (SELECT 1 FROM verification_actions WHERE action_id = $1)",
        )
        .bind(review.action_id)
        .bind(&review.verdict)
        .bind(&review.key_id)
        .bind(&review.alg)
        .bind(&review.signature)
        .bind(signed.0)
        .bind(signed.1)
        .bind(&review.reason)
        .bind(review.outcome.as_deref())
        .bind(recorded.0)
        .bind(recorded.1)
        .execute(&self.pool)
        .await
        .map_err(pg_err("insert the review"))?
        .rows_affected();
        if n == 0 {
            return Err(ProjectionError::UnknownAction {
                action_id: review.action_id,
            });
        }
        tracing::info!(verdict = %review.verdict, "recorded a review");
        Ok(())
    }
}

impl ReportStore for PgProjection {
    async fn store_report(&self, report: StoredReport) -> Result<bool, ProjectionError> {
        self.store_report_inner(report).await
    }

    async fn reports(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<ReportSummary>, ProjectionError> {
        self.reports_inner(before, limit).await
    }

    async fn report(&self, run_id: Uuid) -> Result<Option<FullReport>, ProjectionError> {
        self.report_inner(run_id).await
    }

    async fn action(&self, id: Uuid) -> Result<Option<ActionRecord>, ProjectionError> {
        self.action_inner(id).await
    }

    async fn record_review(&self, review: ReviewRow) -> Result<(), ProjectionError> {
        self.record_review_inner(review).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::pgcopy::{HEADER, TRAILER};

    #[test]
    fn pieces_cut_at_tuple_boundaries() {
        let mut p = Pieces::new();
        for i in 0..3000 {
            let w = p.next();
            w.row(1);
            w.text(&"x".repeat(1000 + i % 7));
        }
        let pieces = p.finish();
        assert!(pieces.len() >= 2, "{} pieces", pieces.len());
        let mut data = HEADER.to_vec();
        for piece in &pieces {
            data.extend_from_slice(piece);
        }
        data.extend_from_slice(TRAILER);
        let rows = read_all(&data, 1, |r| r.text("x")).unwrap();
        assert_eq!(rows.len(), 3000);
    }
}
