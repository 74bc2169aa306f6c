//! [`DrillStore`] on the embedded SQLite projection: the table of
//! `migrations/sqlite/projection/0004_drills.sql`.
//!
//! A drill is checked (its body parsed as JSON, every name measured) before the connection is
//! taken, then written in one `BEGIN IMMEDIATE` transaction that first looks up the id (the
//! same digest again is a no-op, another is a conflict). Reads run in one read transaction;
//! [`DrillStore::drill_status`] is two queries (each scenario's newest drill, and its newest
//! passed one, through the partial index) merged in Rust.

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension, TransactionBehavior};
use triplicate_core::Timestamp;
use uuid::Uuid;

use super::reports::{parse_uuid, uuid_text};
use super::{in_read_tx, join_time, split_time, storage, SqliteProjection};
use crate::drills::{check_drill, check_scenario_filter, statuses, whole};
use crate::reports::{check_limit, damaged, hash_from, time_from, u64_from};
use crate::{hex_hash, DrillStatus, DrillStore, DrillSummary, ProjectionError, StoredDrill};

/// 15 columns; [`raw_summary`] reads them.
const SUMMARY_COLUMNS: &str = "drill_id, scenario, started_at_s, started_at_ns, finished_at_s, \
     finished_at_ns, passed, in_place, records_before, records_after, detect_ms, recover_ms, \
     discrepancies_left, digest, audit_seq";

/// A `u64` checked by `check_drill` to fit a signed 64-bit column.
fn int(v: u64) -> Value {
    Value::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

fn opt_int(v: Option<u64>) -> Value {
    v.map_or(Value::Null, int)
}

fn store_blocking(conn: &mut Connection, d: StoredDrill) -> Result<bool, ProjectionError> {
    let id = uuid_text(&d.drill_id);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(storage("begin storing a drill"))?;
    let stored: Option<Vec<u8>> = tx
        .query_row(
            "SELECT digest FROM drill_reports WHERE drill_id = ?1",
            [&id],
            |row| row.get(0),
        )
        .optional()
        .map_err(storage("look up the drill"))?;
    if let Some(stored) = stored {
        if stored == d.digest {
            return Ok(false);
        }
        return Err(ProjectionError::DrillConflict {
            drill_id: d.drill_id,
            stored: hex::encode(stored),
            offered: hex_hash(&d.digest),
        });
    }
    let (ss, sn) = split_time(d.started_at.unix_nanos());
    let (fs, fn_) = split_time(d.finished_at.unix_nanos());
    // The body is valid JSON, hence UTF-8 (checked); stored as TEXT byte for byte.
    let body = String::from_utf8(d.body).map_err(|e| ProjectionError::InvalidDrill {
        drill_id: d.drill_id,
        reason: format!("body is not UTF-8: {e}"),
    })?;
    let row = vec![
        Value::Text(id),
        Value::Text(d.scenario),
        Value::Integer(ss),
        Value::Integer(sn),
        Value::Integer(fs),
        Value::Integer(fn_),
        Value::Integer(i64::from(d.passed)),
        Value::Integer(i64::from(d.in_place)),
        int(d.records_before),
        int(d.records_after),
        opt_int(d.detect_ms),
        int(d.recover_ms),
        int(d.discrepancies_left),
        Value::Blob(d.digest.to_vec()),
        Value::Text(d.key_id),
        Value::Text(d.alg),
        Value::Blob(d.signature),
        Value::Text(body),
        opt_int(d.audit_seq),
        Value::Text(Timestamp::now().to_string()),
    ];
    tx.execute(
        "INSERT INTO drill_reports (drill_id, scenario, started_at_s, started_at_ns, \
         finished_at_s, finished_at_ns, passed, in_place, records_before, records_after, \
         detect_ms, recover_ms, discrepancies_left, digest, key_id, alg, signature, body, \
         audit_seq, stored_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
         ?18, ?19, ?20)",
        params_from_iter(row),
    )
    .map_err(storage("insert the drill"))?;
    tx.commit().map_err(storage("commit the drill"))?;
    Ok(true)
}

/// A row's summary columns ([`SUMMARY_COLUMNS`]) as read.
struct RawSummary {
    drill_id: String,
    scenario: String,
    /// started s, ns, finished s, ns.
    times: [i64; 4],
    /// passed, in_place.
    flags: [i64; 2],
    /// records_before, records_after, recover_ms, discrepancies_left.
    counts: [i64; 4],
    detect_ms: Option<i64>,
    digest: Vec<u8>,
    audit_seq: Option<i64>,
}

fn raw_summary(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawSummary> {
    Ok(RawSummary {
        drill_id: row.get(0)?,
        scenario: row.get(1)?,
        times: [row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?],
        flags: [row.get(6)?, row.get(7)?],
        counts: [row.get(8)?, row.get(9)?, row.get(11)?, row.get(12)?],
        detect_ms: row.get(10)?,
        digest: row.get(13)?,
        audit_seq: row.get(14)?,
    })
}

fn flag(what: &str, v: i64) -> Result<bool, String> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(format!("{what} is {v}, neither 0 nor 1")),
    }
}

fn summary(raw: RawSummary) -> Result<DrillSummary, String> {
    let RawSummary {
        drill_id,
        scenario,
        times: t,
        flags,
        counts: n,
        detect_ms,
        digest,
        audit_seq,
    } = raw;
    Ok(DrillSummary {
        drill_id: parse_uuid("drill_id", &drill_id)?,
        scenario,
        started_at: time_from("started_at", join_time(t[0], t[1]))?,
        finished_at: time_from("finished_at", join_time(t[2], t[3]))?,
        passed: flag("passed", flags[0])?,
        in_place: flag("in_place", flags[1])?,
        records_before: u64_from("records_before", n[0])?,
        records_after: u64_from("records_after", n[1])?,
        detect_ms: detect_ms.map(|v| u64_from("detect_ms", v)).transpose()?,
        recover_ms: u64_from("recover_ms", n[2])?,
        discrepancies_left: u64_from("discrepancies_left", n[3])?,
        digest: hash_from("digest", &digest)?,
        audit_seq: audit_seq.map(|v| u64_from("audit_seq", v)).transpose()?,
    })
}

/// Runs a query of [`SUMMARY_COLUMNS`] and reads every row.
fn read_summaries(
    conn: &Connection,
    sql: &str,
    params: Vec<Value>,
    what: &'static str,
) -> Result<Vec<DrillSummary>, ProjectionError> {
    let mut q = conn.prepare_cached(sql).map_err(storage("prepare"))?;
    let raw = q
        .query_map(params_from_iter(params), raw_summary)
        .map_err(storage(what))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(storage(what))?;
    raw.into_iter()
        .map(summary)
        .collect::<Result<_, _>>()
        .map_err(damaged(what))
}

fn summaries(
    conn: &Connection,
    before: Option<Uuid>,
    limit: u32,
    scenario: Option<String>,
) -> Result<Vec<DrillSummary>, ProjectionError> {
    // One statement per combination of filters rather than `?1 IS NULL OR …`, so each walks
    // an index backwards: the primary key's, or (scenario, drill_id).
    let mut conds = Vec::new();
    let mut params = Vec::new();
    if let Some(s) = scenario {
        params.push(Value::Text(s));
        conds.push(format!("scenario = ?{}", params.len()));
    }
    if let Some(b) = before {
        params.push(Value::Text(uuid_text(&b)));
        conds.push(format!("drill_id < ?{}", params.len()));
    }
    params.push(Value::Integer(limit.into()));
    let where_ = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM drill_reports {where_} ORDER BY drill_id DESC LIMIT ?{}",
        params.len()
    );
    read_summaries(conn, &sql, params, "read drills")
}

fn drill_blocking(conn: &Connection, id: Uuid) -> Result<Option<StoredDrill>, ProjectionError> {
    let found = conn
        .query_row(
            &format!(
                "SELECT {SUMMARY_COLUMNS}, key_id, alg, signature, body FROM drill_reports \
                 WHERE drill_id = ?1"
            ),
            [uuid_text(&id)],
            |row| {
                Ok((
                    raw_summary(row)?,
                    row.get::<_, String>(15)?,
                    row.get::<_, String>(16)?,
                    row.get::<_, Vec<u8>>(17)?,
                    row.get::<_, String>(18)?,
                ))
            },
        )
        .optional()
        .map_err(storage("read the drill"))?;
    let Some((raw, key_id, alg, signature, body)) = found else {
        return Ok(None);
    };
    let s = summary(raw).map_err(damaged("read the drill"))?;
    Ok(Some(whole(s, key_id, alg, signature, body.into_bytes())))
}

fn status_blocking(conn: &Connection) -> Result<Vec<DrillStatus>, ProjectionError> {
    // Drill ids are unique across scenarios, so each scenario's greatest id names its row.
    let last = read_summaries(
        conn,
        &format!(
            "SELECT {SUMMARY_COLUMNS} FROM drill_reports WHERE drill_id IN \
             (SELECT max(drill_id) FROM drill_reports GROUP BY scenario)"
        ),
        Vec::new(),
        "read drill status",
    )?;
    let passed = read_summaries(
        conn,
        &format!(
            "SELECT {SUMMARY_COLUMNS} FROM drill_reports WHERE drill_id IN \
             (SELECT max(drill_id) FROM drill_reports WHERE passed = 1 GROUP BY scenario)"
        ),
        Vec::new(),
        "read drill status",
    )?;
    statuses(last, passed)
}

impl DrillStore for SqliteProjection {
    #[tracing::instrument(skip_all, fields(drill_id = %drill.drill_id))]
    async fn store_drill(&self, drill: StoredDrill) -> Result<bool, ProjectionError> {
        if self.read_only {
            return Err(ProjectionError::ReadOnly("store a drill"));
        }
        check_drill(&drill)?;
        let scenario = drill.scenario.clone();
        let written = self.with_conn(move |c| store_blocking(c, drill)).await?;
        if written {
            tracing::info!(%scenario, "stored a drill report");
        } else {
            tracing::debug!(%scenario, "drill report already stored");
        }
        Ok(written)
    }

    async fn drills(
        &self,
        before: Option<Uuid>,
        limit: u32,
        scenario: Option<String>,
    ) -> Result<Vec<DrillSummary>, ProjectionError> {
        check_limit(limit)?;
        check_scenario_filter(scenario.as_deref())?;
        self.with_conn(move |c| in_read_tx(c, |tx| summaries(tx, before, limit, scenario)))
            .await
    }

    async fn drill(&self, id: Uuid) -> Result<Option<StoredDrill>, ProjectionError> {
        self.with_conn(move |c| in_read_tx(c, |tx| drill_blocking(tx, id)))
            .await
    }

    async fn drill_status(&self) -> Result<Vec<DrillStatus>, ProjectionError> {
        self.with_conn(|c| in_read_tx(c, status_blocking)).await
    }
}
