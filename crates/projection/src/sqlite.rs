//! The embedded backend: one SQLite file, `<data-dir>/projection.db`, in WAL mode with
//! `synchronous=FULL` (a commit is on disk when it returns). Schema:
//! `migrations/sqlite/projection/`, applied by a small runner that records the version in
//! `PRAGMA user_version`.
//!
//! rusqlite is synchronous; every call runs on tokio's blocking pool behind one connection
//! mutex, which also serialises writers (SQLite allows one anyway). An apply is one
//! `BEGIN IMMEDIATE` transaction: a helper thread validates the batch chunk by chunk while this
//! one, per chunk, looks up which of its seqs and decision ids are stored, re-derives those,
//! and writes the new rows with multi-row `INSERT`s; then one commit. Range reads re-derive
//! one slice on helper threads while the next is read.
//!
//! SQLite has no roles. The writer handle ([`SqliteProjection::open`]) owns the file; readers
//! open it with `SQLITE_OPEN_READ_ONLY` ([`SqliteProjection::open_read_only`]) and cannot
//! write at all. Triggers refuse UPDATE always and DELETE unless the SQL function
//! `triplicate_repair_active()` returns 1, which only the writer connection defines and only
//! while [`Projection::repair`] deletes the rows it replaces.
//!
//! The verifier's reports ([`crate::ReportStore`]) live in `sqlite/reports.rs`, on the same
//! connection; their tables' triggers refuse UPDATE and DELETE with no exception, and the
//! writer connection turns on `PRAGMA foreign_keys` for them. Recovery drills' reports
//! ([`crate::DrillStore`]) live in `sqlite/drills.rs`, on the same connection, behind triggers
//! of the same kind.

mod drills;
mod rederive;
mod reports;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::functions::FunctionFlags;
use rusqlite::types::ToSql;
use rusqlite::{params_from_iter, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use triplicate_core::digest::leaf_hash;
use triplicate_core::{CanonicalProof, Record, Timestamp};
use uuid::Uuid;

use crate::plan::{plan_apply, Stored};
use crate::rows::{
    assemble, prepare_part, proofs_for, validation_threads, ApprovalRow, AttachmentRow,
    BatchChecker, DecisionRow, RecordRows, CHUNK,
};
use crate::{
    check_batch, check_range, hex_hash, ApplyOutcome, DecisionQuery, Page, Projection,
    ProjectionError, RederivedRecord, RemovalOutcome, RemovalRequest, RepairOutcome, RepairRequest,
    MAX_REMOVAL,
};

/// The migrations, in order: (version, SQL).
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/sqlite/projection/0001_projection.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/sqlite/projection/0002_verification.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/sqlite/projection/0003_removals.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/sqlite/projection/0004_drills.sql"),
    ),
];

/// The name of the guard function the triggers call.
const GUARD_FUNCTION: &str = "triplicate_repair_active";

/// Rows per multi-row INSERT (15 parameters per decision: 1,500, well under SQLite's 32,766).
const ROWS_PER_INSERT: usize = 100;

/// Records applied after which the projection copies its WAL into the database file, on the
/// blocking pool once the apply that crossed it has returned (see [`checkpoint_soon`]).
const CHECKPOINT_RECORDS: u64 = 512;

/// SQLite's own checkpoint at the end of a commit (pages of WAL): only a backstop, for when the
/// checkpoints above cannot finish (a reader holding an old snapshot). At SQLite's default of
/// 1,000 pages it ran inside a commit every ~120 records (a record writes ~8 pages of WAL),
/// copying and syncing ~4 MB while that batch's callers waited for their receipts.
const AUTOCHECKPOINT_PAGES: i64 = 16_384;

/// The embedded SQLite projection.
#[derive(Clone)]
pub struct SqliteProjection {
    path: PathBuf,
    conn: Arc<Mutex<Option<Connection>>>,
    /// Records applied since the last checkpoint was started.
    unchecked: Arc<AtomicU64>,
    /// True only while the repair path deletes the rows it replaces (read by the guard
    /// function). The connection mutex is held throughout, so no other statement sees it set.
    repairing: Arc<AtomicBool>,
    read_only: bool,
    /// Read-only connections kept for range reads (see `read_range`), emptied by `close`.
    readers: Arc<Mutex<Vec<Connection>>>,
}

impl std::fmt::Debug for SqliteProjection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteProjection")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish()
    }
}

fn storage(what: &'static str) -> impl Fn(rusqlite::Error) -> ProjectionError {
    move |e| match e {
        rusqlite::Error::SqliteFailure(code, _)
            if matches!(
                code.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            ProjectionError::Unavailable(format!("{what}: {e}"))
        }
        rusqlite::Error::SqliteFailure(code, _) if code.code == rusqlite::ErrorCode::ReadOnly => {
            ProjectionError::ReadOnly(what)
        }
        other => ProjectionError::Storage {
            what,
            reason: other.to_string(),
        },
    }
}

fn to_i64(v: u64, what: &'static str) -> Result<i64, ProjectionError> {
    i64::try_from(v).map_err(|_| ProjectionError::InvalidQuery(format!("{what} {v} is too large")))
}

/// Unix nanoseconds as (seconds, nanoseconds 0..1e9).
fn split_time(nanos: i128) -> (i64, i64) {
    (
        nanos.div_euclid(1_000_000_000) as i64,
        nanos.rem_euclid(1_000_000_000) as i64,
    )
}

fn join_time(s: i64, ns: i64) -> i128 {
    i128::from(s) * 1_000_000_000 + i128::from(ns)
}

/// Applies the migrations this build knows and the file lacks, each in one transaction.
fn migrate(conn: &mut Connection) -> Result<(), ProjectionError> {
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(storage("begin migration"))?;
    let current: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(storage("read the schema version"))?;
    if current > latest {
        return Err(ProjectionError::Schema(format!(
            "projection.db has schema version {current}; this build knows up to {latest}"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.execute_batch(sql)
            .map_err(|e| ProjectionError::Schema(format!("apply migration {version}: {e}")))?;
        tx.pragma_update(None, "user_version", version)
            .map_err(storage("record the schema version"))?;
        tracing::info!(version, "applied projection.db migration");
    }
    tx.commit().map_err(storage("commit migration"))?;
    Ok(())
}

impl SqliteProjection {
    /// Opens (creating and migrating) `<data_dir>/projection.db` as its one writer.
    pub async fn open(data_dir: &Path) -> Result<SqliteProjection, ProjectionError> {
        let path = data_dir.join("projection.db");
        let repairing = Arc::new(AtomicBool::new(false));
        let (p, flag) = (path.clone(), repairing.clone());
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, ProjectionError> {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).map_err(|e| ProjectionError::Storage {
                    what: "create the data directory",
                    reason: e.to_string(),
                })?;
            }
            let mut conn = Connection::open_with_flags(
                &p,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(storage("open projection.db"))?;
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .map_err(storage("set the busy timeout"))?;
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(storage("set WAL mode"))?;
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(storage("set synchronous=FULL"))?;
            conn.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES)
                .map_err(storage("set the automatic checkpoint"))?;
            // The verification tables declare foreign keys (a review must name a stored
            // action); SQLite enforces them only on connections that ask. The governance
            // tables declare none.
            conn.pragma_update(None, "foreign_keys", "ON")
                .map_err(storage("enforce foreign keys"))?;
            // Not DETERMINISTIC (its answer changes), and INNOCUOUS so the schema's triggers may
            // call it even where `trusted_schema` is off.
            conn.create_scalar_function(
                GUARD_FUNCTION,
                0,
                FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_INNOCUOUS,
                move |_| Ok(i64::from(flag.load(Ordering::SeqCst))),
            )
            .map_err(storage("define the repair guard"))?;
            migrate(&mut conn)?;
            Ok(conn)
        })
        .await
        .map_err(|e| ProjectionError::Unavailable(format!("open task failed: {e}")))??;
        tracing::info!(path = %path.display(), "opened the SQLite projection");
        Ok(SqliteProjection {
            path,
            conn: Arc::new(Mutex::new(Some(conn))),
            unchecked: Arc::new(AtomicU64::new(0)),
            repairing,
            read_only: false,
            readers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Opens an existing `<data_dir>/projection.db` for reading only (`SQLITE_OPEN_READ_ONLY`):
    /// what read endpoints use. Writes through this handle fail with
    /// [`ProjectionError::ReadOnly`]; SQLite itself refuses them too.
    pub async fn open_read_only(data_dir: &Path) -> Result<SqliteProjection, ProjectionError> {
        let path = data_dir.join("projection.db");
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, ProjectionError> {
            let conn = Connection::open_with_flags(
                &p,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| ProjectionError::Unavailable(format!("open {} read-only: {e}", p.display())))?;
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .map_err(storage("set the busy timeout"))?;
            let version: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(storage("read the schema version"))?;
            let latest = MIGRATIONS.last().map_or(0, |m| m.0);
            if version != latest {
                return Err(ProjectionError::Schema(format!(
                    "projection.db has schema version {version}; this build reads {latest} (open it as the writer first)"
                )));
            }
            Ok(conn)
        })
        .await
        .map_err(|e| ProjectionError::Unavailable(format!("open task failed: {e}")))??;
        Ok(SqliteProjection {
            path,
            conn: Arc::new(Mutex::new(Some(conn))),
            unchecked: Arc::new(AtomicU64::new(0)),
            repairing: Arc::new(AtomicBool::new(false)),
            read_only: true,
            readers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the database; later calls fail with [`ProjectionError::Unavailable`].
    pub fn close(&self) {
        let mut g = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        *g = None;
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, ProjectionError> + Send + 'static,
    ) -> Result<T, ProjectionError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = conn.lock().unwrap_or_else(|p| p.into_inner());
            match g.as_mut() {
                Some(c) => f(c),
                None => Err(ProjectionError::Unavailable(
                    "the projection database is closed".into(),
                )),
            }
        })
        .await
        .map_err(|e| ProjectionError::Unavailable(format!("database task failed: {e}")))?
    }
}

/// Copies the WAL into the database file (`PRAGMA wal_checkpoint(PASSIVE)`) on the blocking
/// pool, not awaited: the records of the apply that asked are committed (the WAL is synced at
/// every commit) and its callers go on, while the next statement on the connection waits for
/// the checkpoint. Between two commits the checkpoint usually copies the whole WAL, so the
/// next commit starts it over and it stays a few MB. Holds the connection only weakly until
/// it runs: a projection dropped meanwhile is not kept open by it.
fn checkpoint_soon(conn: std::sync::Weak<Mutex<Option<Connection>>>) {
    drop(tokio::task::spawn_blocking(move || {
        let Some(conn) = conn.upgrade() else {
            return;
        };
        let g = conn.lock().unwrap_or_else(|p| p.into_inner());
        let Some(c) = g.as_ref() else {
            return;
        };
        let started = std::time::Instant::now();
        match c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        }) {
            Ok((busy, pages, copied)) => tracing::debug!(
                busy,
                pages,
                copied,
                ms = started.elapsed().as_secs_f64() * 1e3,
                "checkpointed projection.db"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint of projection.db failed; a later one tries again");
            }
        }
    }));
}

/// Which records to load.
enum Select {
    /// Seqs `a..b` (the verifier's range reads take the fast path of `rederive.rs`; tests
    /// compare it with this one).
    #[cfg_attr(not(test), allow(dead_code))]
    Range(i64, i64),
    /// A JSON array of seqs (bound as one parameter, expanded by `json_each`).
    Seqs(String),
}

impl Select {
    fn seqs(seqs: &[i64]) -> Select {
        Select::Seqs(format!(
            "[{}]",
            seqs.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ))
    }

    fn clause(&self) -> &'static str {
        match self {
            Select::Range(..) => "seq >= ?1 AND seq < ?2",
            Select::Seqs(_) => "seq IN (SELECT value FROM json_each(?1))",
        }
    }

    /// How many records it can select at most, where that is known and small: what the row
    /// vectors are sized for, so a range read does
    /// not grow and copy them as it goes. Capped, so a wide range over few rows does not
    /// reserve much.
    fn width(&self) -> usize {
        match self {
            Select::Range(a, b) => usize::try_from(b.saturating_sub(*a))
                .unwrap_or(0)
                .min(4_096),
            Select::Seqs(_) => 0,
        }
    }

    fn params(&self) -> Vec<&dyn ToSql> {
        match self {
            Select::Range(a, b) => vec![a as &dyn ToSql, b],
            Select::Seqs(s) => vec![s as &dyn ToSql],
        }
    }
}

fn load(conn: &Connection, sel: &Select) -> Result<Vec<RecordRows>, ProjectionError> {
    let where_ = sel.clause();
    let mut q = conn
        .prepare_cached(&format!(
            "SELECT seq, id, version, kind, title, body, payload, proposed_at_s, proposed_at_ns, \
             recorded_at_s, recorded_at_ns, supersedes, notary_key_id, notary_alg, \
             notary_signature FROM decisions WHERE {where_} ORDER BY seq"
        ))
        .map_err(storage("prepare"))?;
    let decisions = q
        .query_map(params_from_iter(sel.params()), |r| {
            Ok(DecisionRow {
                seq: r.get(0)?,
                id: r.get(1)?,
                version: r.get(2)?,
                kind: r.get(3)?,
                title: r.get(4)?,
                body: r.get(5)?,
                payload: r.get(6)?,
                proposed_at: join_time(r.get(7)?, r.get(8)?),
                recorded_at: join_time(r.get(9)?, r.get(10)?),
                supersedes: r.get(11)?,
                notary_key_id: r.get(12)?,
                notary_alg: r.get(13)?,
                notary_signature: r.get(14)?,
            })
        })
        .map_err(storage("read decisions"))?;
    let decisions = collect_rows(decisions, sel.width()).map_err(storage("read decisions"))?;
    if decisions.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = conn
        .prepare_cached(&format!(
            "SELECT seq, position, key_id, alg, signature, signed_at_s, signed_at_ns \
             FROM approvals WHERE {where_} ORDER BY seq, position"
        ))
        .map_err(storage("prepare"))?;
    let approvals = q
        .query_map(params_from_iter(sel.params()), |r| {
            Ok(ApprovalRow {
                seq: r.get(0)?,
                position: r.get(1)?,
                key_id: r.get(2)?,
                alg: r.get(3)?,
                signature: r.get(4)?,
                signed_at: join_time(r.get(5)?, r.get(6)?),
            })
        })
        .map_err(storage("read approvals"))?;
    let approvals = collect_rows(approvals, 2 * sel.width()).map_err(storage("read approvals"))?;
    let mut q = conn
        .prepare_cached(&format!(
            "SELECT seq, position, sha256, media_type, size, name \
             FROM attachments WHERE {where_} ORDER BY seq, position"
        ))
        .map_err(storage("prepare"))?;
    let attachments = q
        .query_map(params_from_iter(sel.params()), |r| {
            Ok(AttachmentRow {
                seq: r.get(0)?,
                position: r.get(1)?,
                sha256: r.get(2)?,
                media_type: r.get(3)?,
                size: r.get(4)?,
                name: r.get(5)?,
            })
        })
        .map_err(storage("read attachments"))?;
    let attachments = collect_rows(attachments, 0).map_err(storage("read attachments"))?;
    Ok(assemble(decisions, approvals, attachments))
}

/// The rows of a query, into a vector sized for `capacity` of them up front.
fn collect_rows<T>(
    rows: impl Iterator<Item = rusqlite::Result<T>>,
    capacity: usize,
) -> rusqlite::Result<Vec<T>> {
    let mut out = Vec::with_capacity(capacity);
    for r in rows {
        out.push(r?);
    }
    Ok(out)
}

/// Inserts the rows of `records` with multi-row statements.
fn insert(conn: &Connection, records: &[RecordRows]) -> Result<(), ProjectionError> {
    for chunk in records.chunks(ROWS_PER_INSERT) {
        let times: Vec<[i64; 4]> = chunk
            .iter()
            .map(|r| {
                let (ps, pn) = split_time(r.decision.proposed_at);
                let (rs, rn) = split_time(r.decision.recorded_at);
                [ps, pn, rs, rn]
            })
            .collect();
        let mut params: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 15);
        for (r, t) in chunk.iter().zip(&times) {
            let d = &r.decision;
            params.extend([
                &d.seq as &dyn ToSql,
                &d.id,
                &d.version,
                &d.kind,
                &d.title,
                &d.body,
                &d.payload,
                &t[0],
                &t[1],
                &t[2],
                &t[3],
                &d.supersedes,
                &d.notary_key_id,
                &d.notary_alg,
                &d.notary_signature,
            ]);
        }
        let sql = format!(
            "INSERT INTO decisions (seq, id, version, kind, title, body, payload, proposed_at_s, \
             proposed_at_ns, recorded_at_s, recorded_at_ns, supersedes, notary_key_id, \
             notary_alg, notary_signature) VALUES {}",
            vec!["(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"; chunk.len()].join(",")
        );
        conn.prepare_cached(&sql)
            .map_err(storage("prepare insert"))?
            .execute(params_from_iter(params))
            .map_err(storage("insert decisions"))?;
    }
    let approvals: Vec<(&ApprovalRow, (i64, i64))> = records
        .iter()
        .flat_map(|r| r.approvals.iter())
        .map(|a| (a, split_time(a.signed_at)))
        .collect();
    for chunk in approvals.chunks(ROWS_PER_INSERT * 2) {
        let mut params: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 7);
        for (a, t) in chunk {
            params.extend([
                &a.seq as &dyn ToSql,
                &a.position,
                &a.key_id,
                &a.alg,
                &a.signature,
                &t.0,
                &t.1,
            ]);
        }
        let sql = format!(
            "INSERT INTO approvals (seq, position, key_id, alg, signature, signed_at_s, \
             signed_at_ns) VALUES {}",
            vec!["(?,?,?,?,?,?,?)"; chunk.len()].join(",")
        );
        conn.prepare_cached(&sql)
            .map_err(storage("prepare insert"))?
            .execute(params_from_iter(params))
            .map_err(storage("insert approvals"))?;
    }
    let attachments: Vec<&AttachmentRow> =
        records.iter().flat_map(|r| r.attachments.iter()).collect();
    for chunk in attachments.chunks(ROWS_PER_INSERT * 2) {
        let mut params: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 6);
        for a in chunk {
            params.extend([
                &a.seq as &dyn ToSql,
                &a.position,
                &a.sha256,
                &a.media_type,
                &a.size,
                &a.name,
            ]);
        }
        let sql = format!(
            "INSERT INTO attachments (seq, position, sha256, media_type, size, name) VALUES {}",
            vec!["(?,?,?,?,?,?)"; chunk.len()].join(",")
        );
        conn.prepare_cached(&sql)
            .map_err(storage("prepare insert"))?
            .execute(params_from_iter(params))
            .map_err(storage("insert attachments"))?;
    }
    Ok(())
}

fn highest(conn: &Connection) -> Result<Option<u64>, ProjectionError> {
    let v: Option<i64> = conn
        .query_row("SELECT max(seq) FROM decisions", [], |r| r.get(0))
        .map_err(storage("read the highest seq"))?;
    Ok(v.and_then(|v| u64::try_from(v).ok()))
}

fn apply_blocking(
    conn: &mut Connection,
    batch: Vec<Vec<u8>>,
    proofs: Vec<Option<CanonicalProof>>,
) -> Result<ApplyOutcome, ProjectionError> {
    if batch.is_empty() {
        return Ok(ApplyOutcome {
            applied: 0,
            already_present: 0,
        });
    }
    // Validation (CPU) and writing overlap: a thread validates chunk after chunk into a short
    // queue while this one writes the ones before. A refusal anywhere rolls the whole
    // transaction back.
    let (batch, proofs) = (&batch, &proofs);
    std::thread::scope(|sc| {
        let (sender, chunks) = std::sync::mpsc::sync_channel(2);
        sc.spawn(move || {
            let threads = validation_threads();
            for (i, part) in batch.chunks(CHUNK).enumerate() {
                let proofs = proofs_for(proofs, i * CHUNK, part.len());
                let r =
                    prepare_part(i * CHUNK, part, proofs, threads).map(|rows| (i * CHUNK, rows));
                let failed = r.is_err();
                if sender.send(r).is_err() || failed {
                    break;
                }
            }
        });
        // Returning drops `chunks`, which stops the producer at its next send.
        write_chunks(conn, batch, chunks)
    })
}

/// The writing half of [`apply_blocking`].
fn write_chunks(
    conn: &mut Connection,
    batch: &[Vec<u8>],
    chunks: std::sync::mpsc::Receiver<Result<(usize, Vec<RecordRows>), ProjectionError>>,
) -> Result<ApplyOutcome, ProjectionError> {
    let no_chunk = || ProjectionError::Storage {
        what: "validate records",
        reason: "the validation thread stopped early".into(),
    };
    // The first chunk is validated before the write lock is taken.
    let first = chunks.recv().map_err(|_| no_chunk())?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(storage("begin transaction"))?;
    let mut highest = highest(&tx)?;
    let mut checker = BatchChecker::default();
    let (mut applied, mut already) = (0u64, 0u64);
    let mut next = Some(first);
    while let Some(item) = next {
        let (offset, rows) = item?;
        checker.check(offset, &rows)?;
        let stored = stored_overlapping(&tx, &rows)?;
        let plan = plan_apply(&rows, &batch[offset..offset + rows.len()], stored, highest)?;
        already += plan.already;
        let fresh = &rows[plan.fresh_from..];
        if let Some(last) = fresh.last() {
            insert(&tx, fresh)?;
            highest = Some(last.decision.seq as u64);
            applied += fresh.len() as u64;
        }
        next = if offset + rows.len() < batch.len() {
            Some(chunks.recv().map_err(|_| no_chunk())?)
        } else {
            None
        };
    }
    tx.commit().map_err(storage("commit"))?;
    Ok(ApplyOutcome {
        applied,
        already_present: already,
    })
}

/// The stored records that share a seq or a decision id with `rows` (consecutive records),
/// re-derived, for [`plan_apply`].
fn stored_overlapping(
    conn: &Connection,
    rows: &[RecordRows],
) -> Result<Vec<Stored>, ProjectionError> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(Vec::new());
    };
    let ids = serde_json::to_string(
        &rows
            .iter()
            .map(|r| r.decision.id.as_str())
            .collect::<Vec<_>>(),
    )
    .map_err(|e| ProjectionError::Storage {
        what: "encode decision ids",
        reason: e.to_string(),
    })?;
    let overlapping: Vec<i64> = {
        let mut q = conn
            .prepare_cached(
                "SELECT seq FROM decisions WHERE seq BETWEEN ?1 AND ?2 \
                 UNION SELECT seq FROM decisions WHERE id IN (SELECT value FROM json_each(?3)) \
                 ORDER BY seq",
            )
            .map_err(storage("prepare"))?;
        let found = q
            .query_map(
                rusqlite::params![first.decision.seq, last.decision.seq, ids],
                |r| r.get(0),
            )
            .map_err(storage("look up stored seqs and decisions"))?;
        found
            .collect::<Result<_, _>>()
            .map_err(storage("look up stored seqs and decisions"))?
    };
    if overlapping.is_empty() {
        return Ok(Vec::new());
    }
    Ok(load(conn, &Select::seqs(&overlapping))?
        .into_iter()
        .map(|r| Stored {
            seq: r.decision.seq as u64,
            id: r.decision.id.clone(),
            content: r.into_bytes(),
        })
        .collect())
}

/// The `repairs.old_rows` document: the rows being replaced, as they are.
const OLD_ROWS_SQL: &str = "SELECT json_object(
    'decision', (SELECT json_object('seq', seq, 'id', id, 'version', version, 'kind', kind,
        'title', title, 'body', body, 'payload', payload, 'proposed_at_s', proposed_at_s,
        'proposed_at_ns', proposed_at_ns, 'recorded_at_s', recorded_at_s,
        'recorded_at_ns', recorded_at_ns, 'supersedes', supersedes,
        'notary_key_id', notary_key_id, 'notary_alg', notary_alg,
        'notary_signature', hex(notary_signature)) FROM decisions WHERE seq = ?1),
    'approvals', (SELECT json_group_array(json_object('position', position, 'key_id', key_id,
        'alg', alg, 'signature', hex(signature), 'signed_at_s', signed_at_s,
        'signed_at_ns', signed_at_ns))
        FROM (SELECT * FROM approvals WHERE seq = ?1 ORDER BY position)),
    'attachments', (SELECT json_group_array(json_object('position', position,
        'sha256', hex(sha256), 'media_type', media_type, 'size', size, 'name', name))
        FROM (SELECT * FROM attachments WHERE seq = ?1 ORDER BY position)))";

/// Resets the repair flag however the repair ends.
struct RepairFlag<'a>(&'a AtomicBool);

impl<'a> RepairFlag<'a> {
    fn raise(flag: &'a AtomicBool) -> RepairFlag<'a> {
        flag.store(true, Ordering::SeqCst);
        RepairFlag(flag)
    }
}

impl Drop for RepairFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

fn remove_blocking(
    conn: &mut Connection,
    repairing: &AtomicBool,
    request: &RemovalRequest,
) -> Result<RemovalOutcome, ProjectionError> {
    let from = to_i64(request.from_seq, "seq")?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(storage("begin removal"))?;
    let seqs: Vec<i64> = {
        let mut stmt = tx
            .prepare("SELECT seq FROM decisions WHERE seq >= ?1 ORDER BY seq")
            .map_err(storage("list the seqs to remove"))?;
        let rows = stmt
            .query_map([from], |r| r.get(0))
            .map_err(storage("list the seqs to remove"))?;
        rows.collect::<Result<_, _>>()
            .map_err(storage("list the seqs to remove"))?
    };
    if seqs.len() > MAX_REMOVAL {
        return Err(ProjectionError::InvalidRepair {
            seq: request.from_seq,
            reason: format!(
                "{} seqs are stored from {} up; at most {MAX_REMOVAL} are removed at once",
                seqs.len(),
                request.from_seq
            ),
        });
    }
    if seqs.is_empty() {
        return Ok(RemovalOutcome {
            removed: Vec::new(),
        });
    }
    let mut removed = Vec::with_capacity(seqs.len());
    let now = Timestamp::now().to_string();
    for rows in load(&tx, &Select::seqs(&seqs))? {
        let seq_i = rows.decision.seq;
        let old_rows: String = tx
            .query_row(OLD_ROWS_SQL, [seq_i], |r| r.get(0))
            .map_err(storage("capture the old rows"))?;
        let old_leaf = rows.into_bytes().ok().map(|b| leaf_hash(&b));
        let seq = seq_i as u64;
        tx.execute(
            "INSERT INTO removals (seq, old_leaf_hash, reason, run_id, old_rows, removed_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                seq_i,
                old_leaf.map(|h| h.to_vec()),
                request.reason,
                request.run_id,
                old_rows,
                now,
            ],
        )
        .map_err(storage("log the removal"))?;
        removed.push((seq, old_leaf));
    }
    {
        let _flag = RepairFlag::raise(repairing);
        for table in ["attachments", "approvals", "decisions"] {
            tx.execute(&format!("DELETE FROM {table} WHERE seq >= ?1"), [from])
                .map_err(storage("delete the rows being removed"))?;
        }
    }
    tx.commit().map_err(storage("commit the removal"))?;
    Ok(RemovalOutcome { removed })
}

fn repair_blocking(
    conn: &mut Connection,
    repairing: &AtomicBool,
    request: RepairRequest,
    rows: RecordRows,
) -> Result<RepairOutcome, ProjectionError> {
    let seq = request.seq;
    let seq_i = to_i64(seq, "seq")?;
    let new_leaf = leaf_hash(&request.record_bytes);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(storage("begin repair"))?;
    if highest(&tx)?.is_none_or(|h| seq > h) {
        return Err(ProjectionError::InvalidRepair {
            seq,
            reason: format!(
                "seq {seq} is past the highest stored seq; new records are applied, not repaired"
            ),
        });
    }
    let old = load(&tx, &Select::seqs(&[seq_i]))?.pop();
    let other: Option<i64> = tx
        .query_row(
            "SELECT seq FROM decisions WHERE id = ?1 AND seq <> ?2",
            rusqlite::params![rows.decision.id, seq_i],
            |r| r.get(0),
        )
        .optional()
        .map_err(storage("look up the decision id"))?;
    if let Some(other) = other {
        let stored = load(&tx, &Select::seqs(&[other]))?
            .pop()
            .map(|r| match r.into_bytes() {
                Ok(b) => hex_hash(&leaf_hash(&b)),
                Err(why) => format!("(rows damaged: {why})"),
            })
            .unwrap_or_default();
        return Err(ProjectionError::DecisionConflict {
            id: Uuid::try_parse(&rows.decision.id).unwrap_or_default(),
            stored_seq: other as u64,
            stored,
            offered_seq: seq,
            offered: hex_hash(&new_leaf),
        });
    }
    let had_rows = old.is_some();
    let (old_bytes, old_damage) = match old.map(RecordRows::into_bytes) {
        None => (None, None),
        Some(Ok(b)) => (Some(b), None),
        Some(Err(why)) => (None, Some(why)),
    };
    let old_leaf_hash = old_bytes.as_deref().map(leaf_hash);
    if old_bytes.as_deref() == Some(request.record_bytes.as_slice()) {
        return Ok(RepairOutcome {
            seq,
            old_leaf_hash,
            old_damage,
            new_leaf_hash: new_leaf,
            changed: false,
            repair_id: None,
        });
    }
    let old_rows: Option<String> = if had_rows {
        tx.query_row(OLD_ROWS_SQL, [seq_i], |r| r.get(0))
            .map_err(storage("capture the old rows"))?
    } else {
        None
    };
    {
        let _flag = RepairFlag::raise(repairing);
        for table in ["attachments", "approvals", "decisions"] {
            tx.execute(&format!("DELETE FROM {table} WHERE seq = ?1"), [seq_i])
                .map_err(storage("delete the rows being replaced"))?;
        }
    }
    insert(&tx, std::slice::from_ref(&rows))?;
    tx.execute(
        "INSERT INTO repairs (seq, old_leaf_hash, new_leaf_hash, reason, run_id, old_rows, \
         repaired_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        rusqlite::params![
            seq_i,
            old_leaf_hash.map(|h| h.to_vec()),
            new_leaf.to_vec(),
            request.reason,
            request.run_id,
            old_rows,
            Timestamp::now().to_string(),
        ],
    )
    .map_err(storage("log the repair"))?;
    let repair_id = tx.last_insert_rowid();
    tx.commit().map_err(storage("commit repair"))?;
    tracing::warn!(
        seq,
        repair_id,
        run_id = %request.run_id,
        old = ?old_leaf_hash.map(|h| hex_hash(&h)),
        new = %hex_hash(&new_leaf),
        reason = %request.reason,
        "repaired projection rows"
    );
    Ok(RepairOutcome {
        seq,
        old_leaf_hash,
        old_damage,
        new_leaf_hash: new_leaf,
        changed: true,
        repair_id: Some(repair_id),
    })
}

fn query_blocking(conn: &Connection, q: &DecisionQuery) -> Result<Page, ProjectionError> {
    let plan = q.plan()?;
    let mut params: Vec<rusqlite::types::Value> = Vec::new();
    let mut p = |v: rusqlite::types::Value| {
        params.push(v);
        format!("?{}", params.len())
    };
    use rusqlite::types::Value;
    let mut conds: Vec<String> = Vec::new();
    let mut with = String::new();
    if let Some(k) = &q.kind {
        conds.push(format!("d.kind = {}", p(Value::Text(k.clone()))));
    }
    for (col, range) in [("recorded_at", &q.recorded), ("proposed_at", &q.proposed)] {
        for (bound, op) in [(range.from, ">="), (range.until, "<")] {
            if let Some(t) = bound {
                let (s, ns) = split_time(t.unix_nanos());
                let a = p(Value::Integer(s));
                let b = p(Value::Integer(ns));
                // The exact test is on the pair; the looser one on the seconds alone is implied
                // by it and lets the planner use the index's range.
                let loose = if op == "<" { "<=" } else { op };
                conds.push(format!(
                    "(d.{col}_s, d.{col}_ns) {op} ({a}, {b}) AND d.{col}_s {loose} {a}"
                ));
            }
        }
    }
    if let Some(key) = &q.approver {
        let k = p(Value::Text(key.as_str().to_owned()));
        conds.push(format!(
            "EXISTS (SELECT 1 FROM approvals a WHERE a.seq = d.seq AND a.key_id = {k})"
        ));
    }
    if let Some(s) = q.supersedes {
        conds.push(format!(
            "d.supersedes = {}",
            p(Value::Text(s.hyphenated().to_string()))
        ));
    }
    if let Some(c) = q.chain_of {
        let c = p(Value::Text(c.hyphenated().to_string()));
        // Up: what it supersedes, transitively. Down: what supersedes it, transitively.
        // UNION (not UNION ALL) ends the recursion if a cycle exists.
        with = format!(
            "WITH RECURSIVE up(id) AS (SELECT {c} UNION \
             SELECT x.supersedes FROM decisions x JOIN up ON x.id = up.id \
             WHERE x.supersedes IS NOT NULL), \
             down(id) AS (SELECT {c} UNION \
             SELECT x.id FROM decisions x JOIN down ON x.supersedes = down.id) "
        );
        conds.push("(d.id IN (SELECT id FROM up) OR d.id IN (SELECT id FROM down))".into());
    }
    if let Some(words) = &plan.words {
        // Each word quoted as an FTS5 string: the words are letters and digits only, and
        // quoting keeps FTS5's query syntax (AND, NEAR, *, column filters) out of reach.
        let m = words
            .iter()
            .map(|w| format!("\"{w}\""))
            .collect::<Vec<_>>()
            .join(" ");
        let m = p(Value::Text(m));
        conds.push(format!(
            "d.seq IN (SELECT rowid FROM decisions_title WHERE decisions_title MATCH {m})"
        ));
    }
    if let Some(before) = plan.before_seq {
        conds.push(format!(
            "d.seq < {}",
            p(Value::Integer(to_i64(before, "cursor")?))
        ));
    }
    let limit = p(Value::Integer((plan.limit + 1) as i64));
    let where_ = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    let sql =
        format!("{with}SELECT d.seq FROM decisions d {where_} ORDER BY d.seq DESC LIMIT {limit}");
    let seqs: Vec<i64> = {
        let mut stmt = conn
            .prepare_cached(&sql)
            .map_err(storage("prepare query"))?;
        let rows = stmt
            .query_map(params_from_iter(params), |r| r.get(0))
            .map_err(storage("query decisions"))?;
        rows.collect::<Result<_, _>>()
            .map_err(storage("query decisions"))?
    };
    let rows = if seqs.is_empty() {
        Vec::new()
    } else {
        load(conn, &Select::seqs(&seqs))?
    };
    let mut records = rows
        .into_iter()
        .map(|r| {
            let seq = r.decision.seq as u64;
            r.into_record()
                .map_err(|reason| ProjectionError::Damaged { seq, reason })
        })
        .collect::<Result<Vec<Record>, _>>()?;
    records.sort_by_key(|r| std::cmp::Reverse(r.seq));
    Ok(plan.page(records))
}

/// Records below this many are read on one connection.
const PARALLEL_READ_MIN: i64 = 2_048;

/// Connections a range read uses at most (its own and extra read-only ones).
const READERS_MAX: usize = 4;

/// The re-derived records of seqs `a..b`, read on `c` and, for a large range on a machine with
/// more than one core, on extra read-only connections to `path` at once, each over its own part
/// of the range. The re-derivation is CPU work that one connection does on one thread; reading
/// the parts at once is what lets a sweep keep both cores of a small machine busy.
///
/// Each part is read in one read transaction, so each record's rows in the three tables come
/// from one snapshot. The writer's connection is held throughout (the first part is read on
/// it), so this process applies nothing meanwhile; the parts' snapshots are still taken highest
/// part first, so that a lower part's snapshot is never older than a higher one's whatever
/// writes: records are applied in seq order, so a record seen in a higher part has every lower
/// seq applied by the time the lower part looks, and a read shows no gap one snapshot would not.
fn read_range(
    c: &mut Connection,
    path: &Path,
    readers: &Mutex<Vec<Connection>>,
    a: i64,
    b: i64,
) -> Result<Vec<RederivedRecord>, ProjectionError> {
    let parts = i64::try_from(triplicate_core::available_threads().min(READERS_MAX)).unwrap_or(1);
    if parts < 2 || b - a < PARALLEL_READ_MIN {
        return in_read_tx(c, |tx| rederive::rederive_range(tx, a, b));
    }
    let step = (b - a + parts - 1) / parts;
    let bounds: Vec<(i64, i64)> = (0..parts)
        // Saturating: a range may end anywhere up to i64::MAX (no record is above 2^53).
        .map(|k| {
            let at = |k: i64| a.saturating_add(k.saturating_mul(step)).min(b);
            (at(k), at(k + 1))
        })
        .filter(|(lo, hi)| lo < hi)
        .collect();
    // Kept between reads (a fresh connection parses the schema and prepares its statements
    // again); `close` drops them with the writer's. Nothing replaces projection.db under an
    // open projection (a restore writes a new data directory).
    let mut extra: Vec<Connection> = {
        let mut pool = readers.lock().unwrap_or_else(|p| p.into_inner());
        let keep = pool.len().saturating_sub(bounds.len() - 1);
        pool.split_off(keep)
    };
    let give_back = |extra: Vec<Connection>| {
        readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(extra);
    };
    while extra.len() < bounds.len() - 1 {
        match open_reader(path) {
            Ok(conn) => extra.push(conn),
            Err(e) => {
                give_back(extra);
                return Err(e);
            }
        }
    }
    let out = read_parts(c, &mut extra, &bounds);
    give_back(extra);
    out
}

/// `read_range` over `bounds` (ascending), the first on `c`, the others on `extra`.
fn read_parts(
    c: &mut Connection,
    extra: &mut [Connection],
    bounds: &[(i64, i64)],
) -> Result<Vec<RederivedRecord>, ProjectionError> {
    std::thread::scope(|sc| {
        // Started highest part first; each waits until the part above has taken its snapshot.
        let mut above: Option<std::sync::mpsc::Receiver<()>> = None;
        let mut handles = Vec::with_capacity(extra.len());
        for (conn, &(lo, hi)) in extra.iter_mut().zip(&bounds[1..]).rev() {
            let (taken, taken_rx) = std::sync::mpsc::channel::<()>();
            let wait = above.replace(taken_rx);
            handles.push(sc.spawn(move || {
                if let Some(w) = wait {
                    // An error means the part above failed before its snapshot; its error is
                    // the one reported.
                    let _ = w.recv();
                }

                in_read_tx(conn, |tx| {
                    take_snapshot(tx)?;
                    let _ = taken.send(());
                    rederive::rederive_range(tx, lo, hi)
                })
            }));
        }
        let (lo, hi) = bounds[0];
        if let Some(w) = above {
            let _ = w.recv();
        }
        let mut out = in_read_tx(c, |tx| rederive::rederive_range(tx, lo, hi))?;
        // `handles` run from the highest part down.
        for h in handles.into_iter().rev() {
            let part = h.join().map_err(|_| ProjectionError::Storage {
                what: "read the projection",
                reason: "a reading thread panicked".into(),
            })??;
            out.extend(part);
        }
        Ok(out)
    })
}

/// A read-only connection to the projection file, for one range read.
fn open_reader(path: &Path) -> Result<Connection, ProjectionError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| ProjectionError::Unavailable(format!("open {} read-only: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(storage("set the busy timeout"))?;
    Ok(conn)
}

/// Makes the read transaction on `tx` take its snapshot now (SQLite takes it at the first read).
fn take_snapshot(tx: &Connection) -> Result<(), ProjectionError> {
    tx.query_row("SELECT count(*) FROM decisions WHERE seq < 0", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(storage("begin a read"))?;
    Ok(())
}

/// Runs `f` inside a read transaction, so the three tables are read from one snapshot.
fn in_read_tx<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> Result<T, ProjectionError>,
) -> Result<T, ProjectionError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Deferred)
        .map_err(storage("begin read"))?;
    let out = f(&tx)?;
    tx.finish().map_err(storage("end read"))?;
    Ok(out)
}

impl Projection for SqliteProjection {
    async fn apply(&self, batch: Vec<Vec<u8>>) -> Result<ApplyOutcome, ProjectionError> {
        self.apply_proven(batch, Vec::new()).await
    }

    #[tracing::instrument(skip_all, fields(records = batch.len()))]
    async fn apply_proven(
        &self,
        batch: Vec<Vec<u8>>,
        proofs: Vec<Option<CanonicalProof>>,
    ) -> Result<ApplyOutcome, ProjectionError> {
        if self.read_only {
            return Err(ProjectionError::ReadOnly("apply"));
        }
        check_batch(&batch)?;
        let n = batch.len();
        let out = self
            .with_conn(move |c| apply_blocking(c, batch, proofs))
            .await?;
        let unchecked = self.unchecked.fetch_add(out.applied, Ordering::Relaxed) + out.applied;
        if unchecked >= CHECKPOINT_RECORDS {
            self.unchecked.store(0, Ordering::Relaxed);
            checkpoint_soon(Arc::downgrade(&self.conn));
        }
        tracing::debug!(
            records = n,
            applied = out.applied,
            already = out.already_present,
            "applied"
        );
        Ok(out)
    }

    async fn decision(&self, id: Uuid) -> Result<Option<Record>, ProjectionError> {
        let id = id.hyphenated().to_string();
        self.with_conn(move |c| {
            in_read_tx(c, |tx| {
                let seq: Option<i64> = tx
                    .query_row("SELECT seq FROM decisions WHERE id = ?1", [&id], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(storage("look up a decision"))?;
                let Some(seq) = seq else {
                    return Ok(None);
                };
                match load(tx, &Select::seqs(&[seq]))?.pop() {
                    None => Ok(None),
                    Some(r) => {
                        r.into_record()
                            .map(Some)
                            .map_err(|reason| ProjectionError::Damaged {
                                seq: seq as u64,
                                reason,
                            })
                    }
                }
            })
        })
        .await
    }

    async fn query(&self, query: &DecisionQuery) -> Result<Page, ProjectionError> {
        let q = query.clone();
        self.with_conn(move |c| in_read_tx(c, |tx| query_blocking(tx, &q)))
            .await
    }

    async fn record_bytes(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<RederivedRecord>, ProjectionError> {
        check_range(start, end)?;
        if start == end {
            return Ok(Vec::new());
        }
        let (a, b) = (to_i64(start, "start")?, to_i64(end, "end")?);
        let (path, readers) = (self.path.clone(), self.readers.clone());
        self.with_conn(move |c| read_range(c, &path, &readers, a, b))
            .await
    }

    async fn highest_seq(&self) -> Result<Option<u64>, ProjectionError> {
        self.with_conn(|c| highest(c)).await
    }

    #[tracing::instrument(skip_all, fields(seq = request.seq, run_id = %request.run_id))]
    async fn repair(&self, request: RepairRequest) -> Result<RepairOutcome, ProjectionError> {
        if self.read_only {
            return Err(ProjectionError::ReadOnly("repair"));
        }
        let seq = request.seq;
        let invalid = |reason: String| ProjectionError::InvalidRepair { seq, reason };
        if request.reason.trim().is_empty() || request.run_id.trim().is_empty() {
            return Err(invalid("a repair needs a reason and a run id".into()));
        }
        let record = Record::from_canonical_bytes(&request.record_bytes)
            .map_err(|e| invalid(e.to_string()))?;
        if record.seq != seq {
            return Err(invalid(format!(
                "the record's seq is {}, not {seq}",
                record.seq
            )));
        }
        let rows = RecordRows::from_record(record).map_err(invalid)?;
        let flag = self.repairing.clone();
        self.with_conn(move |c| repair_blocking(c, &flag, request, rows))
            .await
    }

    async fn remove_from(
        &self,
        request: RemovalRequest,
    ) -> Result<RemovalOutcome, ProjectionError> {
        if self.read_only {
            return Err(ProjectionError::ReadOnly("remove"));
        }
        if request.reason.trim().is_empty() || request.run_id.trim().is_empty() {
            return Err(ProjectionError::InvalidRepair {
                seq: request.from_seq,
                reason: "a removal needs a reason and a run id".into(),
            });
        }
        let flag = self.repairing.clone();
        let out = self
            .with_conn(move |c| remove_blocking(c, &flag, &request))
            .await?;
        if !out.removed.is_empty() {
            tracing::warn!(
                seqs = ?out.removed.iter().map(|r| r.0).collect::<Vec<_>>(),
                "removed projection rows the ledger lacks"
            );
        }
        Ok(out)
    }
}
