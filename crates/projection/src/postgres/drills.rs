//! [`DrillStore`] on PostgreSQL: the table of `migrations/postgres/0004_drills.sql`.
//!
//! A drill is one row, so it is one statement: `INSERT … ON CONFLICT (drill_id) DO NOTHING`
//! (a concurrent store of the same drill waits for the other to commit, then does nothing),
//! and only when nothing was inserted a look at the stored digest to tell a retry from a
//! conflict (rows are never changed, so that answer cannot go stale). Reads run in one
//! `REPEATABLE READ READ ONLY` transaction with ordinary bound parameters (the scenario is the
//! caller's text, so no `COPY` with values written inline); [`DrillStore::drill_status`] is two
//! `DISTINCT ON (scenario)` queries (each scenario's newest drill, and its newest passed one,
//! through the partial index) merged in Rust. No writer lock: drills share no table with the
//! records.

use sqlx::postgres::PgRow;
use sqlx::{Decode, Postgres, Row, Type};
use triplicate_core::Timestamp;
use uuid::Uuid;

use super::{join_time, pg_err, split_time, PgMicros, PgProjection};
use crate::drills::{check_drill, check_scenario_filter, statuses, whole};
use crate::reports::{check_limit, damaged, hash_from, time_from, u64_from};
use crate::{hex_hash, DrillStatus, DrillStore, DrillSummary, ProjectionError, StoredDrill};

/// 15 columns; [`read_summary`] decodes them.
const SUMMARY_COLUMNS: &str = "drill_id, scenario, started_at, started_at_extra_ns, \
     finished_at, finished_at_extra_ns, passed, in_place, records_before, records_after, \
     detect_ms, recover_ms, discrepancies_left, digest, audit_seq";

/// A `u64` checked by `check_drill` to fit a signed 64-bit column.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn pg_time(t: &Timestamp) -> Result<(PgMicros, i16), ProjectionError> {
    split_time(t.unix_nanos()).map_err(|reason| ProjectionError::Storage {
        what: "convert a time",
        reason,
    })
}

/// Column `i` of a row, decoded; a value that does not decode is damage.
fn col<'r, T: Decode<'r, Postgres> + Type<Postgres>>(
    row: &'r PgRow,
    i: usize,
    what: &str,
) -> Result<T, String> {
    row.try_get(i).map_err(|e| format!("{what}: {e}"))
}

fn time(row: &PgRow, i: usize, what: &str) -> Result<Timestamp, String> {
    let micros: PgMicros = col(row, i, what)?;
    let ns: i16 = col(row, i + 1, what)?;
    time_from(what, join_time(micros.0, ns))
}

fn u64_col(row: &PgRow, i: usize, what: &str) -> Result<u64, String> {
    u64_from(what, col(row, i, what)?)
}

fn opt_u64_col(row: &PgRow, i: usize, what: &str) -> Result<Option<u64>, String> {
    col::<Option<i64>>(row, i, what)?
        .map(|v| u64_from(what, v))
        .transpose()
}

/// The first 15 columns of a row ([`SUMMARY_COLUMNS`]).
fn read_summary(row: &PgRow) -> Result<DrillSummary, String> {
    Ok(DrillSummary {
        drill_id: col(row, 0, "drill_id")?,
        scenario: col(row, 1, "scenario")?,
        started_at: time(row, 2, "started_at")?,
        finished_at: time(row, 4, "finished_at")?,
        passed: col(row, 6, "passed")?,
        in_place: col(row, 7, "in_place")?,
        records_before: u64_col(row, 8, "records_before")?,
        records_after: u64_col(row, 9, "records_after")?,
        detect_ms: opt_u64_col(row, 10, "detect_ms")?,
        recover_ms: u64_col(row, 11, "recover_ms")?,
        discrepancies_left: u64_col(row, 12, "discrepancies_left")?,
        digest: hash_from("digest", &col::<Vec<u8>>(row, 13, "digest")?)?,
        audit_seq: opt_u64_col(row, 14, "audit_seq")?,
    })
}

fn read_summaries(
    rows: &[PgRow],
    what: &'static str,
) -> Result<Vec<DrillSummary>, ProjectionError> {
    rows.iter()
        .map(read_summary)
        .collect::<Result<_, _>>()
        .map_err(damaged(what))
}

impl PgProjection {
    #[tracing::instrument(skip_all, fields(drill_id = %drill.drill_id))]
    async fn store_drill_inner(&self, drill: StoredDrill) -> Result<bool, ProjectionError> {
        check_drill(&drill)?;
        let started = pg_time(&drill.started_at)?;
        let finished = pg_time(&drill.finished_at)?;
        // The body is valid JSON, hence UTF-8 (checked).
        let body = std::str::from_utf8(&drill.body).map_err(|e| ProjectionError::InvalidDrill {
            drill_id: drill.drill_id,
            reason: format!("body is not UTF-8: {e}"),
        })?;
        let inserted: Option<i32> = sqlx::query_scalar(
            "INSERT INTO drill_reports (drill_id, scenario, started_at, started_at_extra_ns, \
             finished_at, finished_at_extra_ns, passed, in_place, records_before, \
             records_after, detect_ms, recover_ms, discrepancies_left, digest, key_id, alg, \
             signature, body, audit_seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19) \
             ON CONFLICT (drill_id) DO NOTHING RETURNING 1",
        )
        .bind(drill.drill_id)
        .bind(&drill.scenario)
        .bind(started.0)
        .bind(started.1)
        .bind(finished.0)
        .bind(finished.1)
        .bind(drill.passed)
        .bind(drill.in_place)
        .bind(int(drill.records_before))
        .bind(int(drill.records_after))
        .bind(drill.detect_ms.map(int))
        .bind(int(drill.recover_ms))
        .bind(int(drill.discrepancies_left))
        .bind(drill.digest.to_vec())
        .bind(&drill.key_id)
        .bind(&drill.alg)
        .bind(&drill.signature)
        .bind(body)
        .bind(drill.audit_seq.map(int))
        .fetch_optional(&self.pool)
        .await
        .map_err(pg_err("insert the drill"))?;
        if inserted.is_some() {
            tracing::info!(scenario = %drill.scenario, "stored a drill report");
            return Ok(true);
        }
        let stored: Vec<u8> =
            sqlx::query_scalar("SELECT digest FROM drill_reports WHERE drill_id = $1")
                .bind(drill.drill_id)
                .fetch_one(&self.pool)
                .await
                .map_err(pg_err("look up the drill"))?;
        if stored == drill.digest {
            tracing::debug!("drill report already stored");
            return Ok(false);
        }
        Err(ProjectionError::DrillConflict {
            drill_id: drill.drill_id,
            stored: hex::encode(stored),
            offered: hex_hash(&drill.digest),
        })
    }

    async fn drills_inner(
        &self,
        before: Option<Uuid>,
        limit: u32,
        scenario: Option<String>,
    ) -> Result<Vec<DrillSummary>, ProjectionError> {
        check_limit(limit)?;
        check_scenario_filter(scenario.as_deref())?;
        // One statement per combination of filters rather than `$1 IS NULL OR …`, so each
        // walks an index backwards: the primary key's, or (scenario, drill_id).
        let mut conds = Vec::new();
        let mut n = 0;
        if scenario.is_some() {
            n += 1;
            conds.push(format!("scenario = ${n}"));
        }
        if before.is_some() {
            n += 1;
            conds.push(format!("drill_id < ${n}"));
        }
        let where_ = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM drill_reports {where_} \
             ORDER BY drill_id DESC LIMIT ${}",
            n + 1
        );
        let mut q = sqlx::query(&sql);
        if let Some(s) = &scenario {
            q = q.bind(s);
        }
        if let Some(b) = before {
            q = q.bind(b);
        }
        let mut tx = self.read_tx().await?;
        let rows = q
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(pg_err("read drills"))?;
        tx.commit().await.map_err(pg_err("end read"))?;
        read_summaries(&rows, "read drills")
    }

    async fn drill_inner(&self, id: Uuid) -> Result<Option<StoredDrill>, ProjectionError> {
        let mut tx = self.read_tx().await?;
        let row = sqlx::query(&format!(
            "SELECT {SUMMARY_COLUMNS}, key_id, alg, signature, body FROM drill_reports \
             WHERE drill_id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg_err("read the drill"))?;
        tx.commit().await.map_err(pg_err("end read"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let read = |row: &PgRow| -> Result<StoredDrill, String> {
            Ok(whole(
                read_summary(row)?,
                col(row, 15, "key_id")?,
                col(row, 16, "alg")?,
                col(row, 17, "signature")?,
                col::<String>(row, 18, "body")?.into_bytes(),
            ))
        };
        read(&row).map(Some).map_err(damaged("read the drill"))
    }

    async fn drill_status_inner(&self) -> Result<Vec<DrillStatus>, ProjectionError> {
        // No max(uuid) in PostgreSQL: DISTINCT ON keeps each scenario's first row in
        // (scenario, drill_id DESC) order, which the indexes give.
        let mut tx = self.read_tx().await?;
        let last = sqlx::query(&format!(
            "SELECT DISTINCT ON (scenario) {SUMMARY_COLUMNS} FROM drill_reports \
             ORDER BY scenario, drill_id DESC"
        ))
        .fetch_all(&mut *tx)
        .await
        .map_err(pg_err("read drill status"))?;
        let passed = sqlx::query(&format!(
            "SELECT DISTINCT ON (scenario) {SUMMARY_COLUMNS} FROM drill_reports WHERE passed \
             ORDER BY scenario, drill_id DESC"
        ))
        .fetch_all(&mut *tx)
        .await
        .map_err(pg_err("read drill status"))?;
        tx.commit().await.map_err(pg_err("end read"))?;
        statuses(
            read_summaries(&last, "read drill status")?,
            read_summaries(&passed, "read drill status")?,
        )
    }
}

impl DrillStore for PgProjection {
    async fn store_drill(&self, drill: StoredDrill) -> Result<bool, ProjectionError> {
        self.store_drill_inner(drill).await
    }

    async fn drills(
        &self,
        before: Option<Uuid>,
        limit: u32,
        scenario: Option<String>,
    ) -> Result<Vec<DrillSummary>, ProjectionError> {
        self.drills_inner(before, limit, scenario).await
    }

    async fn drill(&self, id: Uuid) -> Result<Option<StoredDrill>, ProjectionError> {
        self.drill_inner(id).await
    }

    async fn drill_status(&self) -> Result<Vec<DrillStatus>, ProjectionError> {
        self.drill_status_inner().await
    }
}
