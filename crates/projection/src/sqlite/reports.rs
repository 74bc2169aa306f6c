//! [`ReportStore`] on the embedded SQLite projection: the tables of
//! `migrations/sqlite/projection/0002_verification.sql`.
//!
//! A report is checked (its body parsed as JSON, every name measured) on the blocking pool
//! before the connection is taken, then written in one `BEGIN IMMEDIATE` transaction with
//! multi-row `INSERT`s. Reads run in one read transaction, one query per table.

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension, TransactionBehavior};
use triplicate_core::Timestamp;
use uuid::Uuid;

use super::{in_read_tx, join_time, split_time, storage, SqliteProjection};
use crate::reports::{
    check_limit, check_report, check_review, damaged, hash_from, time_from, u64_from,
};
use crate::{
    hex_hash, ActionRecord, ActionRow, DiscrepancyRow, FullReport, ProjectionError, ReportCounts,
    ReportStore, ReportSummary, ReviewRow, StoredReport,
};

/// Rows per multi-row `INSERT`: 12 parameters per action, 11 per discrepancy, so at most 6,000
/// parameters a statement, well under SQLite's 32,766.
const ROWS_PER_INSERT: usize = 500;

/// The count of a report's pending actions (see [`crate::reports::is_pending`]), for a report
/// aliased `r`. GLOB, not LIKE: SQLite's LIKE ignores ASCII case.
const PENDING: &str = "(SELECT count(*) FROM verification_actions a \
     WHERE a.run_id = r.run_id AND a.authority = 'auditor' AND a.status = 'proposed' \
     AND NOT EXISTS (SELECT 1 FROM verification_reviews v WHERE v.action_id = a.action_id \
     AND (v.verdict = 'rejected' OR v.outcome GLOB 'applied*' OR v.outcome GLOB 'unchanged*' \
     OR v.outcome GLOB 'deferred*')))";

const SUMMARY_COLUMNS: &str = "r.run_id, r.mode, r.started_at_s, r.started_at_ns, \
     r.finished_at_s, r.finished_at_ns, r.worst_class, r.lag, r.minor, r.major, r.critical, \
     r.records_compared, r.checkpoint_size, r.digest, r.audit_seq";

const ACTION_COLUMNS: &str = "action_id, seq, seqs, store, class, kind, operation, authority, \
     status, restores, detail";

const REVIEW_COLUMNS: &str = "v.action_id, v.verdict, v.key_id, v.alg, v.signature, \
     v.signed_at_s, v.signed_at_ns, v.reason, v.outcome, v.recorded_at_s, v.recorded_at_ns";

pub(super) fn uuid_text(u: &Uuid) -> String {
    u.hyphenated().to_string()
}

pub(super) fn parse_uuid(what: &str, s: &str) -> Result<Uuid, String> {
    Uuid::try_parse(s).map_err(|e| format!("{what} {s:?}: {e}"))
}

/// A `u64` checked by `check_report` to fit a signed 64-bit column.
fn int(v: u64) -> Value {
    Value::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    v.map_or(Value::Null, f)
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn blob(b: &[u8]) -> Value {
    Value::Blob(b.to_vec())
}

/// Runs `INSERT INTO {head} VALUES (…), (…), …` for `rows`, `ROWS_PER_INSERT` at a time.
fn insert_rows(
    conn: &Connection,
    head: &str,
    width: usize,
    rows: impl ExactSizeIterator<Item = Vec<Value>>,
    what: &'static str,
) -> Result<(), ProjectionError> {
    let tuple = format!("({})", vec!["?"; width].join(","));
    let mut params: Vec<Value> = Vec::with_capacity(ROWS_PER_INSERT * width);
    let mut pending = 0;
    let flush = |params: &mut Vec<Value>, n: usize| -> Result<(), ProjectionError> {
        let sql = format!(
            "INSERT INTO {head} VALUES {}",
            vec![tuple.as_str(); n].join(",")
        );
        conn.prepare_cached(&sql)
            .map_err(storage("prepare insert"))?
            .execute(params_from_iter(params.drain(..)))
            .map_err(storage(what))?;
        Ok(())
    };
    for row in rows {
        params.extend(row);
        pending += 1;
        if pending == ROWS_PER_INSERT {
            flush(&mut params, pending)?;
            pending = 0;
        }
    }
    if pending > 0 {
        flush(&mut params, pending)?;
    }
    Ok(())
}

fn store_blocking(conn: &mut Connection, r: StoredReport) -> Result<bool, ProjectionError> {
    let run_id = uuid_text(&r.run_id);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(storage("begin storing a report"))?;
    let stored: Option<Vec<u8>> = tx
        .query_row(
            "SELECT digest FROM verification_reports WHERE run_id = ?1",
            [&run_id],
            |row| row.get(0),
        )
        .optional()
        .map_err(storage("look up the report"))?;
    if let Some(stored) = stored {
        if stored == r.digest {
            return Ok(false);
        }
        return Err(ProjectionError::ReportConflict {
            run_id: r.run_id,
            stored: hex::encode(stored),
            offered: hex_hash(&r.digest),
        });
    }
    if !r.actions.is_empty() {
        let ids = serde_json::to_string(
            &r.actions
                .iter()
                .map(|a| uuid_text(&a.id))
                .collect::<Vec<_>>(),
        )
        .map_err(|e| ProjectionError::Storage {
            what: "encode action ids",
            reason: e.to_string(),
        })?;
        let taken: Option<(String, String)> = tx
            .query_row(
                "SELECT action_id, run_id FROM verification_actions \
                 WHERE action_id IN (SELECT value FROM json_each(?1)) LIMIT 1",
                [&ids],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(storage("look up the report's action ids"))?;
        if let Some((action, other)) = taken {
            return Err(ProjectionError::InvalidReport {
                run_id: r.run_id,
                reason: format!("action {action} is already stored, in run {other}"),
            });
        }
    }
    let (ss, sn) = split_time(r.started_at.unix_nanos());
    let (fs, fn_) = split_time(r.finished_at.unix_nanos());
    let report_row = vec![
        Value::Text(run_id.clone()),
        text(&r.mode),
        Value::Integer(ss),
        Value::Integer(sn),
        Value::Integer(fs),
        Value::Integer(fn_),
        opt(r.worst_class.as_deref(), text),
        int(r.counts.lag),
        int(r.counts.minor),
        int(r.counts.major),
        int(r.counts.critical),
        int(r.records_compared),
        opt(r.checkpoint_size, int),
        opt(r.checkpoint_root.as_ref(), |h| blob(h)),
        blob(&r.digest),
        // The body is valid JSON, hence UTF-8 (checked); stored as TEXT byte for byte.
        Value::Text(
            String::from_utf8(r.body).map_err(|e| ProjectionError::InvalidReport {
                run_id: r.run_id,
                reason: format!("body is not UTF-8: {e}"),
            })?,
        ),
        opt(r.audit_seq, int),
        Value::Text(Timestamp::now().to_string()),
    ];
    tx.execute(
        "INSERT INTO verification_reports (run_id, mode, started_at_s, started_at_ns, \
         finished_at_s, finished_at_ns, worst_class, lag, minor, major, critical, \
         records_compared, checkpoint_size, checkpoint_root, digest, body, audit_seq, stored_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        params_from_iter(report_row),
    )
    .map_err(storage("insert the report"))?;
    insert_rows(
        &tx,
        "verification_discrepancies (run_id, position, seq, decision_id, store, class, kind, \
         expected_hash, actual_hash, file, detail)",
        11,
        r.discrepancies.iter().enumerate().map(|(i, d)| {
            vec![
                Value::Text(run_id.clone()),
                Value::Integer(i as i64),
                opt(d.seq, int),
                opt(d.decision_id.as_ref(), |u| Value::Text(uuid_text(u))),
                text(&d.store),
                text(&d.class),
                text(&d.kind),
                opt(d.expected_hash.as_ref(), |h| blob(h)),
                opt(d.actual_hash.as_ref(), |h| blob(h)),
                opt(d.file.as_deref(), text),
                text(&d.detail),
            ]
        }),
        "insert discrepancies",
    )?;
    insert_rows(
        &tx,
        "verification_actions (action_id, run_id, position, seq, seqs, store, class, kind, \
         operation, authority, status, restores, detail)",
        13,
        r.actions.iter().enumerate().map(|(i, a)| {
            let seqs = format!(
                "[{}]",
                a.seqs
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            );
            vec![
                Value::Text(uuid_text(&a.id)),
                Value::Text(run_id.clone()),
                Value::Integer(i as i64),
                opt(a.seq, int),
                Value::Text(seqs),
                text(&a.store),
                text(&a.class),
                text(&a.kind),
                text(&a.operation),
                text(&a.authority),
                text(&a.status),
                opt(a.restores.as_ref(), |h| blob(h)),
                text(&a.detail),
            ]
        }),
        "insert actions",
    )?;
    tx.commit().map_err(storage("commit the report"))?;
    Ok(true)
}

/// A `verification_reports` row's summary columns (see [`SUMMARY_COLUMNS`]) as read.
type RawSummary = (
    String,
    String,
    [i64; 4],
    Option<String>,
    [i64; 5],
    Option<i64>,
    Vec<u8>,
    Option<i64>,
);

fn raw_summary(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawSummary> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        [row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?],
        row.get(6)?,
        [
            row.get(7)?,
            row.get(8)?,
            row.get(9)?,
            row.get(10)?,
            row.get(11)?,
        ],
        row.get(12)?,
        row.get(13)?,
        row.get(14)?,
    ))
}

fn summary(raw: RawSummary, pending: i64) -> Result<ReportSummary, String> {
    let (run_id, mode, t, worst_class, n, checkpoint_size, digest, audit_seq) = raw;
    Ok(ReportSummary {
        run_id: parse_uuid("run_id", &run_id)?,
        mode,
        started_at: time_from("started_at", join_time(t[0], t[1]))?,
        finished_at: time_from("finished_at", join_time(t[2], t[3]))?,
        worst_class,
        counts: ReportCounts {
            lag: u64_from("lag", n[0])?,
            minor: u64_from("minor", n[1])?,
            major: u64_from("major", n[2])?,
            critical: u64_from("critical", n[3])?,
        },
        records_compared: u64_from("records_compared", n[4])?,
        checkpoint_size: checkpoint_size
            .map(|v| u64_from("checkpoint_size", v))
            .transpose()?,
        digest: hash_from("digest", &digest)?,
        audit_seq: audit_seq.map(|v| u64_from("audit_seq", v)).transpose()?,
        pending_actions: u64_from("pending actions", pending)?,
    })
}

fn summaries(
    conn: &Connection,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<ReportSummary>, ProjectionError> {
    // Two statements rather than `?1 IS NULL OR …`, so each walks the key's index backwards.
    let (filter, params) = match before {
        Some(b) => (
            "WHERE r.run_id < ?1 ORDER BY r.run_id DESC LIMIT ?2",
            vec![Value::Text(uuid_text(&b)), Value::Integer(limit.into())],
        ),
        None => (
            "ORDER BY r.run_id DESC LIMIT ?1",
            vec![Value::Integer(limit.into())],
        ),
    };
    let mut q = conn
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS}, {PENDING} FROM verification_reports r {filter}"
        ))
        .map_err(storage("prepare"))?;
    let raw = q
        .query_map(params_from_iter(params), |row| {
            Ok((raw_summary(row)?, row.get::<_, i64>(15)?))
        })
        .map_err(storage("read reports"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(storage("read reports"))?;
    raw.into_iter()
        .map(|(r, pending)| summary(r, pending))
        .collect::<Result<_, _>>()
        .map_err(damaged("read reports"))
}

type RawAction = (
    String,
    Option<i64>,
    String,
    [String; 6],
    Option<Vec<u8>>,
    String,
);

fn raw_action(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<RawAction> {
    Ok((
        row.get(at)?,
        row.get(at + 1)?,
        row.get(at + 2)?,
        [
            row.get(at + 3)?,
            row.get(at + 4)?,
            row.get(at + 5)?,
            row.get(at + 6)?,
            row.get(at + 7)?,
            row.get(at + 8)?,
        ],
        row.get(at + 9)?,
        row.get(at + 10)?,
    ))
}

fn action(raw: RawAction) -> Result<ActionRow, String> {
    let (id, seq, seqs, names, restores, detail) = raw;
    let [store, class, kind, operation, authority, status] = names;
    let seqs: Vec<i64> = serde_json::from_str(&seqs)
        .map_err(|e| format!("action {id}: seqs {seqs:?} is not a JSON array of integers: {e}"))?;
    Ok(ActionRow {
        id: parse_uuid("action_id", &id)?,
        seq: seq.map(|v| u64_from("seq", v)).transpose()?,
        seqs: seqs
            .into_iter()
            .map(|v| u64_from("seqs", v))
            .collect::<Result<_, _>>()?,
        store,
        class,
        kind,
        operation,
        authority,
        status,
        restores: restores.map(|h| hash_from("restores", &h)).transpose()?,
        detail,
    })
}

type RawReview = (
    String,
    String,
    String,
    String,
    Vec<u8>,
    [i64; 2],
    String,
    Option<String>,
    [i64; 2],
);

fn raw_review(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawReview> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        [row.get(5)?, row.get(6)?],
        row.get(7)?,
        row.get(8)?,
        [row.get(9)?, row.get(10)?],
    ))
}

fn review(raw: RawReview) -> Result<ReviewRow, String> {
    let (action_id, verdict, key_id, alg, signature, signed, reason, outcome, recorded) = raw;
    Ok(ReviewRow {
        action_id: parse_uuid("action_id", &action_id)?,
        verdict,
        key_id,
        alg,
        signature,
        signed_at: time_from("signed_at", join_time(signed[0], signed[1]))?,
        reason,
        outcome,
        recorded_at: time_from("recorded_at", join_time(recorded[0], recorded[1]))?,
    })
}

fn reviews_where(
    conn: &Connection,
    join: &str,
    param: &str,
) -> Result<Vec<ReviewRow>, ProjectionError> {
    let mut q = conn
        .prepare_cached(&format!(
            "SELECT {REVIEW_COLUMNS} FROM verification_reviews v {join} ORDER BY v.review_id"
        ))
        .map_err(storage("prepare"))?;
    let raw = q
        .query_map([param], raw_review)
        .map_err(storage("read reviews"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(storage("read reviews"))?;
    raw.into_iter()
        .map(review)
        .collect::<Result<_, _>>()
        .map_err(damaged("read reviews"))
}

/// Positions must be exactly `0..n`: a row missing or added behind the projection's back is
/// damage, not a shorter report.
fn check_positions(what: &str, positions: impl Iterator<Item = i64>) -> Result<(), String> {
    for (i, p) in positions.enumerate() {
        if p != i as i64 {
            return Err(format!("{what} positions are not 0..n: {p} at index {i}"));
        }
    }
    Ok(())
}

fn report_blocking(conn: &Connection, run_id: Uuid) -> Result<Option<FullReport>, ProjectionError> {
    let id = uuid_text(&run_id);
    let head = conn
        .query_row(
            &format!(
                "SELECT {SUMMARY_COLUMNS}, r.checkpoint_root, r.body \
                 FROM verification_reports r WHERE r.run_id = ?1"
            ),
            [&id],
            |row| {
                Ok((
                    raw_summary(row)?,
                    row.get::<_, Option<Vec<u8>>>(15)?,
                    row.get::<_, String>(16)?,
                ))
            },
        )
        .optional()
        .map_err(storage("read the report"))?;
    let Some((raw, root, body)) = head else {
        return Ok(None);
    };
    let s = summary(raw, 0).map_err(damaged("read the report"))?;
    let checkpoint_root = root
        .map(|h| hash_from("checkpoint_root", &h))
        .transpose()
        .map_err(damaged("read the report"))?;

    let mut q = conn
        .prepare_cached(
            "SELECT position, seq, decision_id, store, class, kind, expected_hash, actual_hash, \
             file, detail FROM verification_discrepancies WHERE run_id = ?1 ORDER BY position",
        )
        .map_err(storage("prepare"))?;
    type RawDiscrepancy = (
        i64,
        Option<i64>,
        Option<String>,
        [String; 3],
        [Option<Vec<u8>>; 2],
        Option<String>,
        String,
    );
    let raw: Vec<RawDiscrepancy> = q
        .query_map([&id], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                [row.get(3)?, row.get(4)?, row.get(5)?],
                [row.get(6)?, row.get(7)?],
                row.get(8)?,
                row.get(9)?,
            ))
        })
        .map_err(storage("read discrepancies"))?
        .collect::<Result<_, _>>()
        .map_err(storage("read discrepancies"))?;
    check_positions("discrepancy", raw.iter().map(|d| d.0))
        .map_err(damaged("read discrepancies"))?;
    let discrepancies = raw
        .into_iter()
        .map(|(_, seq, decision_id, names, hashes, file, detail)| {
            let [store, class, kind] = names;
            let [expected, actual] = hashes;
            Ok(DiscrepancyRow {
                seq: seq.map(|v| u64_from("seq", v)).transpose()?,
                decision_id: decision_id
                    .map(|u| parse_uuid("decision_id", &u))
                    .transpose()?,
                store,
                class,
                kind,
                expected_hash: expected
                    .map(|h| hash_from("expected_hash", &h))
                    .transpose()?,
                actual_hash: actual.map(|h| hash_from("actual_hash", &h)).transpose()?,
                file,
                detail,
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(damaged("read discrepancies"))?;

    let mut q = conn
        .prepare_cached(&format!(
            "SELECT position, {ACTION_COLUMNS} FROM verification_actions WHERE run_id = ?1 \
             ORDER BY position"
        ))
        .map_err(storage("prepare"))?;
    let raw: Vec<(i64, RawAction)> = q
        .query_map([&id], |row| Ok((row.get(0)?, raw_action(row, 1)?)))
        .map_err(storage("read actions"))?
        .collect::<Result<_, _>>()
        .map_err(storage("read actions"))?;
    check_positions("action", raw.iter().map(|a| a.0)).map_err(damaged("read actions"))?;
    let actions = raw
        .into_iter()
        .map(|(_, a)| action(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(damaged("read actions"))?;

    let reviews = reviews_where(
        conn,
        "JOIN verification_actions a ON a.action_id = v.action_id WHERE a.run_id = ?1",
        &id,
    )?;
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
            body: body.into_bytes(),
            audit_seq: s.audit_seq,
            discrepancies,
            actions,
        },
        reviews,
    }))
}

fn action_blocking(conn: &Connection, id: Uuid) -> Result<Option<ActionRecord>, ProjectionError> {
    let id_text = uuid_text(&id);
    let found = conn
        .query_row(
            &format!(
                "SELECT run_id, {ACTION_COLUMNS} FROM verification_actions WHERE action_id = ?1"
            ),
            [&id_text],
            |row| Ok((row.get::<_, String>(0)?, raw_action(row, 1)?)),
        )
        .optional()
        .map_err(storage("read the action"))?;
    let Some((run_id, raw)) = found else {
        return Ok(None);
    };
    let run_id = parse_uuid("run_id", &run_id).map_err(damaged("read the action"))?;
    let action = action(raw).map_err(damaged("read the action"))?;
    let reviews = reviews_where(conn, "WHERE v.action_id = ?1", &id_text)?;
    Ok(Some(ActionRecord {
        run_id,
        action,
        reviews,
    }))
}

fn review_blocking(conn: &Connection, r: ReviewRow) -> Result<(), ProjectionError> {
    let (ss, sn) = split_time(r.signed_at.unix_nanos());
    let (rs, rn) = split_time(r.recorded_at.unix_nanos());
    // The action must exist: the row is inserted only if it does (the foreign key would refuse
    // it too, with a less helpful message). Actions are never deleted, so this cannot race.
    let n = conn
        .execute(
            "INSERT INTO verification_reviews (action_id, verdict, key_id, alg, signature, \
             signed_at_s, signed_at_ns, reason, outcome, recorded_at_s, recorded_at_ns) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11 \
             WHERE EXISTS (SELECT 1 FROM verification_actions WHERE action_id = ?1)",
            rusqlite::params![
                uuid_text(&r.action_id),
                r.verdict,
                r.key_id,
                r.alg,
                r.signature,
                ss,
                sn,
                r.reason,
                r.outcome,
                rs,
                rn,
            ],
        )
        .map_err(storage("insert the review"))?;
    if n == 0 {
        return Err(ProjectionError::UnknownAction {
            action_id: r.action_id,
        });
    }
    Ok(())
}

impl ReportStore for SqliteProjection {
    #[tracing::instrument(skip_all, fields(run_id = %report.run_id))]
    async fn store_report(&self, report: StoredReport) -> Result<bool, ProjectionError> {
        if self.read_only {
            return Err(ProjectionError::ReadOnly("store a report"));
        }
        // Checked before the connection is taken: parsing a large body takes a while.
        let report = tokio::task::spawn_blocking(move || check_report(&report).map(|()| report))
            .await
            .map_err(|e| ProjectionError::Unavailable(format!("check task failed: {e}")))??;
        let (run_id, rows) = (report.run_id, report.discrepancies.len());
        let written = self.with_conn(move |c| store_blocking(c, report)).await?;
        if written {
            tracing::info!(%run_id, discrepancies = rows, "stored a verification report");
        } else {
            tracing::debug!(%run_id, "verification report already stored");
        }
        Ok(written)
    }

    async fn reports(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<ReportSummary>, ProjectionError> {
        check_limit(limit)?;
        self.with_conn(move |c| in_read_tx(c, |tx| summaries(tx, before, limit)))
            .await
    }

    async fn report(&self, run_id: Uuid) -> Result<Option<FullReport>, ProjectionError> {
        self.with_conn(move |c| in_read_tx(c, |tx| report_blocking(tx, run_id)))
            .await
    }

    async fn action(&self, id: Uuid) -> Result<Option<ActionRecord>, ProjectionError> {
        self.with_conn(move |c| in_read_tx(c, |tx| action_blocking(tx, id)))
            .await
    }

    #[tracing::instrument(skip_all, fields(action_id = %review.action_id))]
    async fn record_review(&self, review: ReviewRow) -> Result<(), ProjectionError> {
        if self.read_only {
            return Err(ProjectionError::ReadOnly("record a review"));
        }
        check_review(&review)?;
        let verdict = review.verdict.clone();
        self.with_conn(move |c| review_blocking(c, review)).await?;
        tracing::info!(%verdict, "recorded a review");
        Ok(())
    }
}
