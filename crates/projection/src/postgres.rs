//! The PostgreSQL backend, on sqlx. Schema, roles, triggers and the repair function:
//! `migrations/postgres/` (applied by [`PgProjection::migrate`]).
//!
//! An apply is one transaction: take the projection's advisory lock (one writer at a time, so
//! two catch-up workers retrying the same batch cannot both decide it is new) and read the
//! highest seq while the first chunk is validated; then, chunk by chunk while a blocking task
//! validates and encodes the next chunk (`pgrows.rs`), re-derive the stored records at the
//! chunk's seqs, if any (a retry), and write the new rows with one binary `COPY … FROM STDIN`
//! per table (see `pgcopy.rs` for why `COPY` rather than `INSERT`). A decision id stored at
//! another seq is left to the unique index on `decisions.id`: the `COPY` fails, the
//! transaction rolls back, and a careful attempt that looks up every id reports the conflict
//! with both hashes (as it reports every conflict and gap), so the common case costs one
//! query per batch rather than two index probes per record.
//!
//! Reads (range reads, queries) run in a `REPEATABLE READ READ ONLY` transaction so the three
//! tables are read from one snapshot, and fetch rows with binary `COPY (SELECT …) TO STDOUT`.
//! Range reads receive one slice here while the previous one is decoded and re-derived on the
//! blocking pool, on every core.
//!
//! The verifier's reports ([`crate::ReportStore`]) live in `postgres/reports.rs`: written with
//! `COPY` as well, without the writer lock (they share no table with the records). Recovery
//! drills' reports ([`crate::DrillStore`]) live in `postgres/drills.rs`: one row each, one
//! `INSERT`, no writer lock either.

mod drills;
mod reports;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{
    PgArgumentBuffer, PgConnectOptions, PgHasArrayType, PgPool, PgPoolOptions, PgTypeInfo,
    PgValueRef,
};
use sqlx::{Decode, Encode, Postgres, Type};
use triplicate_core::digest::leaf_hash;
use triplicate_core::{CanonicalProof, Hash, Record};
use uuid::Uuid;

use crate::pgcopy::{HEADER, TRAILER};
use crate::pgrows::{prepare_chunk, EncodedChunk, Fetched, RecordKey, Table};
use crate::plan::{plan_apply, Stored};
use crate::query::QueryPlan;
use crate::rows::{
    proofs_for, rebuild_threads, validation_threads, BatchChecker, RecordRows, CHUNK,
};
use crate::{
    check_batch, check_range, ApplyOutcome, DecisionQuery, Page, Projection, ProjectionError,
    RederivedRecord, RemovalOutcome, RemovalRequest, RepairOutcome, RepairRequest, MAX_REMOVAL,
};

/// The role the write path and the reconciler use: SELECT, INSERT, EXECUTE `triplicate_repair`.
pub const PG_WRITER_ROLE: &str = "triplicate_writer";
/// The role read endpoints use: SELECT only.
pub const PG_READER_ROLE: &str = "triplicate_reader";

/// Every migration under `migrations/postgres/`, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Records in the first chunk of an apply (later ones hold [`CHUNK`]): validating it is the
/// one stretch of an apply in which the database has nothing to write.
const FIRST_CHUNK: usize = 128;

/// Seqs per slice of a range read (see `record_bytes`).
const READ_SLICE: i64 = 2_000;

/// Key of the transaction-scoped advisory lock that serialises writers ("triplica").
const WRITER_LOCK: i64 = 0x7472_6970_6c69_6361;

/// Unix time of PostgreSQL's epoch (2000-01-01T00:00:00Z), in microseconds.
const PG_EPOCH_UNIX_MICROS: i128 = 946_684_800_000_000;

/// How to connect.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `SET ROLE` to this role on every new connection (e.g. [`PG_WRITER_ROLE`]) when the login
    /// user is a member of it rather than the role itself. `None` uses the login user's own
    /// privileges.
    pub role: Option<String>,
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long a call waits for a connection before failing as unavailable.
    pub acquire_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            role: None,
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

impl PgOptions {
    /// Default options acting as `role`.
    pub fn with_role(role: &str) -> PgOptions {
        PgOptions {
            role: Some(role.to_owned()),
            ..PgOptions::default()
        }
    }
}

/// The PostgreSQL projection. Cheap to clone (it is a connection pool).
#[derive(Debug, Clone)]
pub struct PgProjection {
    pool: PgPool,
}

/// Maps a sqlx error to a projection error: unreachable or closed pools and server shutdowns
/// are retryable; missing privileges are named as such.
pub(crate) fn pg_err(what: &'static str) -> impl Fn(sqlx::Error) -> ProjectionError {
    move |e| match &e {
        sqlx::Error::PoolClosed => {
            ProjectionError::Unavailable(format!("{what}: the connection pool is closed"))
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            ProjectionError::Unavailable(format!("{what}: {e}"))
        }
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                // insufficient_privilege (also what the append-only triggers raise)
                "42501" => ProjectionError::PermissionDenied {
                    what,
                    reason: db.message().to_owned(),
                },
                // serialization failure, deadlock, shutdowns, too many connections
                "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300" => {
                    ProjectionError::Unavailable(format!("{what}: {}", db.message()))
                }
                _ => ProjectionError::Storage {
                    what,
                    reason: format!("{} (SQLSTATE {code})", db.message()),
                },
            }
        }
        _ => ProjectionError::Storage {
            what,
            reason: e.to_string(),
        },
    }
}

fn to_i64(v: u64, what: &'static str) -> Result<i64, ProjectionError> {
    i64::try_from(v).map_err(|_| ProjectionError::InvalidQuery(format!("{what} {v} is too large")))
}

/// A `timestamptz` as PostgreSQL sends it: microseconds since 2000-01-01 UTC. Decoding it
/// ourselves (rather than through `time`) means a row altered to an out-of-range instant or
/// `infinity` becomes a damaged row, not a panic in date arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PgMicros(pub i64);

impl Type<Postgres> for PgMicros {
    fn type_info() -> PgTypeInfo {
        <time::OffsetDateTime as Type<Postgres>>::type_info()
    }
}

impl PgHasArrayType for PgMicros {
    fn array_type_info() -> PgTypeInfo {
        <time::OffsetDateTime as PgHasArrayType>::array_type_info()
    }
}

impl Encode<'_, Postgres> for PgMicros {
    fn encode_by_ref(
        &self,
        buf: &mut PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <i64 as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for PgMicros {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(PgMicros(<i64 as Decode<Postgres>>::decode(value)?))
    }
}

/// Splits Unix nanoseconds into the `timestamptz` (floored to the microsecond) and the
/// nanoseconds within that microsecond.
pub(crate) fn split_time(unix_nanos: i128) -> Result<(PgMicros, i16), String> {
    let micros = unix_nanos.div_euclid(1000) - PG_EPOCH_UNIX_MICROS;
    let extra = unix_nanos.rem_euclid(1000) as i16;
    let micros = i64::try_from(micros).map_err(|_| format!("{unix_nanos} ns is out of range"))?;
    Ok((PgMicros(micros), extra))
}

pub(crate) fn join_time(micros_since_2000: i64, extra_ns: i16) -> i128 {
    (i128::from(micros_since_2000) + PG_EPOCH_UNIX_MICROS) * 1000 + i128::from(extra_ns)
}

/// Which records to load.
enum Select<'a> {
    Range(i64, i64),
    Seqs(&'a [i64]),
}

impl Select<'_> {
    /// The WHERE clause, with the values inline: `COPY` takes no parameters, and these are
    /// integers formatted here, never text from a caller.
    fn clause(&self) -> String {
        match self {
            Select::Range(a, b) => format!("seq >= {a} AND seq < {b}"),
            Select::Seqs(s) => format!(
                "seq = ANY('{{{}}}'::int8[])",
                s.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
            ),
        }
    }
}

/// Runs `COPY (query) TO STDOUT (FORMAT binary)` and returns the data.
async fn copy_out(
    conn: &mut sqlx::PgConnection,
    query: &str,
    what: &'static str,
) -> Result<Vec<u8>, ProjectionError> {
    use futures::StreamExt;
    let mut stream = conn
        .copy_out_raw(&format!("COPY ({query}) TO STDOUT (FORMAT binary)"))
        .await
        .map_err(pg_err(what))?;
    let mut data = Vec::with_capacity(64 * 1024);
    while let Some(chunk) = stream.next().await {
        data.extend_from_slice(&chunk.map_err(pg_err(what))?);
    }
    Ok(data)
}

/// The statements that fetch the rows of the selected records, in seq (and position) order.
fn fetch_queries(sel: &Select<'_>) -> [(String, &'static str); 3] {
    let where_ = sel.clause();
    [
        (
            format!(
                "SELECT seq, id, version, kind, title, body, payload, proposed_at, \
                 proposed_at_extra_ns, recorded_at, recorded_at_extra_ns, supersedes, \
                 notary_key_id, notary_alg, notary_signature FROM decisions WHERE {where_} \
                 ORDER BY seq"
            ),
            "read decisions",
        ),
        (
            format!(
                "SELECT seq, position, key_id, alg, signature, signed_at, signed_at_extra_ns \
                 FROM approvals WHERE {where_} ORDER BY seq, position"
            ),
            "read approvals",
        ),
        (
            format!(
                "SELECT seq, position, sha256, media_type, size, name \
                 FROM attachments WHERE {where_} ORDER BY seq, position"
            ),
            "read attachments",
        ),
    ]
}

/// Fetches every row of the selected records as binary `COPY` data, not yet decoded, on one
/// connection (the caller's transaction decides the snapshot).
async fn fetch(conn: &mut sqlx::PgConnection, sel: Select<'_>) -> Result<Fetched, ProjectionError> {
    let [d, a, t] = fetch_queries(&sel);
    let decisions = copy_out(conn, &d.0, d.1).await?;
    if decisions.len() <= HEADER.len() + TRAILER.len() {
        // No decision rows: nothing else can form a record.
        return Ok(Fetched::default());
    }
    Ok(Fetched {
        decisions,
        approvals: copy_out(conn, &a.0, a.1).await?,
        attachments: copy_out(conn, &t.0, t.1).await?,
    })
}

/// Loads every row of the selected records, in seq order (see [`fetch`]).
async fn load(
    conn: &mut sqlx::PgConnection,
    sel: Select<'_>,
) -> Result<Vec<RecordRows>, ProjectionError> {
    fetch(conn, sel)
        .await?
        .rows()
        .map_err(|reason| ProjectionError::Storage {
            what: "decode rows",
            reason,
        })
}

/// Records for a query result, newest first; damaged rows fail the query.
fn records_newest_first(rows: Vec<RecordRows>) -> Result<Vec<Record>, ProjectionError> {
    let mut out = rows
        .into_iter()
        .map(|r| {
            let seq = r.decision.seq as u64;
            r.into_record()
                .map_err(|reason| ProjectionError::Damaged { seq, reason })
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|r| std::cmp::Reverse(r.seq));
    Ok(out)
}

fn parse_uuid(s: &str) -> Result<Uuid, String> {
    Uuid::try_parse(s).map_err(|e| format!("{s:?}: {e}"))
}

/// The `COPY` statements of the apply path, one per table (in [`Table`] order).
const COPY_IN: [(&str, &str); 3] = [
    (
        "COPY decisions (seq, id, version, kind, title, body, payload, proposed_at, \
         proposed_at_extra_ns, recorded_at, recorded_at_extra_ns, supersedes, notary_key_id, \
         notary_alg, notary_signature) FROM STDIN (FORMAT binary)",
        "insert decisions",
    ),
    (
        "COPY approvals (seq, position, key_id, alg, signature, signed_at, signed_at_extra_ns) \
         FROM STDIN (FORMAT binary)",
        "insert approvals",
    ),
    (
        "COPY attachments (seq, position, sha256, media_type, size, name) \
         FROM STDIN (FORMAT binary)",
        "insert attachments",
    ),
];

/// Writes the rows of a chunk's records from its `from`th on: one binary `COPY … FROM STDIN`
/// per table (none for a table without rows). The data is complete before a copy starts, so
/// nothing can fail between starting and finishing one but the server or the network.
pub(crate) async fn write_chunk(
    conn: &mut sqlx::PgConnection,
    chunk: &EncodedChunk,
    from: usize,
) -> Result<(), (sqlx::Error, &'static str)> {
    for (table, (statement, what)) in [Table::Decisions, Table::Approvals, Table::Attachments]
        .into_iter()
        .zip(COPY_IN)
    {
        let pieces = chunk.tuples_from(from, table);
        if pieces.is_empty() {
            continue;
        }
        copy_pieces(conn, statement, &pieces)
            .await
            .map_err(|e| (e, what))?;
    }
    Ok(())
}

/// Runs `COPY … FROM STDIN (FORMAT binary)` with the header, the pieces of tuples in order,
/// and the trailer.
async fn copy_pieces(
    conn: &mut sqlx::PgConnection,
    statement: &str,
    pieces: &[&[u8]],
) -> Result<(), sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    let mut sent = copy.send(HEADER.as_slice()).await.map(|_| ());
    for p in pieces {
        if sent.is_err() {
            break;
        }
        sent = copy.send(*p).await.map(|_| ());
    }
    if sent.is_ok() {
        sent = copy.send(TRAILER.as_slice()).await.map(|_| ());
    }
    if let Err(e) = sent {
        let _ = copy.abort("triplicate: sending COPY data failed").await;
        return Err(e);
    }
    copy.finish().await?;
    Ok(())
}

/// A unique index refused a row: on the apply path, a decision id stored at another seq.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// How an apply attempt ended without an outcome.
enum Attempt {
    /// Report this.
    Failed(ProjectionError),
    /// The optimistic attempt met a conflict or a gap, which only the careful attempt can
    /// describe exactly (both hashes, the earliest problem); it rolled back, having written
    /// nothing.
    Recheck,
}

impl From<ProjectionError> for Attempt {
    fn from(e: ProjectionError) -> Attempt {
        Attempt::Failed(e)
    }
}

/// Where a batch is cut into chunks: a small first chunk, so the database starts writing soon
/// after the call, then chunks of [`CHUNK`].
fn chunk_bounds(len: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < len {
        let size = if start == 0 { FIRST_CHUNK } else { CHUNK };
        let end = (start + size).min(len);
        out.push(start..end);
        start = end;
    }
    out
}

/// The repair function's arguments for one record, converted to PostgreSQL's types.
struct RepairArgs {
    id: Uuid,
    version: i32,
    proposed_at: (PgMicros, i16),
    recorded_at: (PgMicros, i16),
    supersedes: Option<Uuid>,
    signed_at: Vec<(PgMicros, i16)>,
    rows: RecordRows,
}

impl RepairArgs {
    fn from_rows(rows: RecordRows) -> Result<RepairArgs, String> {
        let d = &rows.decision;
        Ok(RepairArgs {
            id: parse_uuid(&d.id)?,
            version: i32::try_from(d.version).map_err(|_| "version does not fit".to_owned())?,
            proposed_at: split_time(d.proposed_at)?,
            recorded_at: split_time(d.recorded_at)?,
            supersedes: d.supersedes.as_deref().map(parse_uuid).transpose()?,
            signed_at: rows
                .approvals
                .iter()
                .map(|a| split_time(a.signed_at))
                .collect::<Result<_, _>>()?,
            rows,
        })
    }
}

/// A bound query parameter of a dynamically built query.
enum Param {
    I64(i64),
    I16(i16),
    Text(String),
    Uuid(Uuid),
    Time(PgMicros),
}

/// The stored records that share a seq or a decision id with `keys` (consecutive records),
/// re-derived, for [`plan_apply`]: what the careful attempt looks up.
async fn stored_overlapping(
    conn: &mut sqlx::PgConnection,
    keys: &[RecordKey],
) -> Result<Vec<Stored>, ProjectionError> {
    let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
        return Ok(Vec::new());
    };
    let ids: Vec<Uuid> = keys
        .iter()
        .map(|r| parse_uuid(&r.id))
        .collect::<Result<_, _>>()
        .map_err(|reason| ProjectionError::InvalidRecord { index: 0, reason })?;
    let overlapping: Vec<i64> = sqlx::query_scalar(
        "SELECT seq FROM decisions WHERE (seq >= $1 AND seq <= $2) OR id = ANY($3) ORDER BY seq",
    )
    .bind(first.seq)
    .bind(last.seq)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(pg_err("look up stored seqs and decisions"))?;
    if overlapping.is_empty() {
        return Ok(Vec::new());
    }
    Ok(stored(load(conn, Select::Seqs(&overlapping)).await?))
}

/// The stored records at `keys`' seqs (consecutive records), re-derived: what the optimistic
/// attempt looks up. Decision ids stored at other seqs are left to the unique index on
/// `decisions.id`, which refuses the `COPY`.
async fn stored_at_seqs(
    conn: &mut sqlx::PgConnection,
    keys: &[RecordKey],
    highest: Option<u64>,
) -> Result<Vec<Stored>, ProjectionError> {
    let (Some(first), Some(last), Some(highest)) = (keys.first(), keys.last(), highest) else {
        return Ok(Vec::new());
    };
    let highest = i64::try_from(highest).unwrap_or(i64::MAX);
    if first.seq > highest {
        return Ok(Vec::new());
    }
    let end = last.seq.min(highest).saturating_add(1);
    Ok(stored(load(conn, Select::Range(first.seq, end)).await?))
}

fn stored(rows: Vec<RecordRows>) -> Vec<Stored> {
    rows.into_iter()
        .map(|r| Stored {
            seq: r.decision.seq as u64,
            id: r.decision.id.clone(),
            content: r.into_bytes(),
        })
        .collect()
}

impl PgProjection {
    /// Connects to `url` (a `postgres://` URL).
    pub async fn connect(url: &str, options: PgOptions) -> Result<PgProjection, ProjectionError> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| ProjectionError::Unavailable(format!("parse the PostgreSQL URL: {e}")))?;
        PgProjection::connect_with(opts, options).await
    }

    /// Connects with explicit connection options. Fails fast (as unavailable) when no
    /// connection can be made, so a misconfigured URL is noticed at start.
    pub async fn connect_with(
        opts: PgConnectOptions,
        options: PgOptions,
    ) -> Result<PgProjection, ProjectionError> {
        let role = options.role.clone();
        let pool = Self::pool_options(&options)
            .connect_with(opts)
            .await
            .map_err(pg_err("connect to PostgreSQL"))?;
        tracing::info!(role = ?role, "connected the PostgreSQL projection");
        Ok(PgProjection { pool })
    }

    /// A handle whose connections are made when first needed, not now: for a service that
    /// starts while PostgreSQL is unreachable (every call fails as unavailable until it is
    /// back, and the service keeps the projection pending meanwhile). The URL is still parsed
    /// now, so a malformed one is an error at once.
    pub fn connect_lazy(url: &str, options: PgOptions) -> Result<PgProjection, ProjectionError> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| ProjectionError::Unavailable(format!("parse the PostgreSQL URL: {e}")))?;
        let pool = Self::pool_options(&options).connect_lazy_with(opts);
        tracing::info!(role = ?options.role, "PostgreSQL projection: connections are made when it answers");
        Ok(PgProjection { pool })
    }

    fn pool_options(options: &PgOptions) -> PgPoolOptions {
        let role = options.role.clone();
        PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .after_connect(move |conn, _| {
                let role = role.clone();
                Box::pin(async move {
                    if let Some(role) = role {
                        // Quoted as an identifier: the role name comes from configuration.
                        let sql = format!("SET ROLE \"{}\"", role.replace('"', "\"\""));
                        sqlx::query(&sql).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
    }

    /// Wraps an existing pool (its connections' role decides what this handle may do).
    pub fn from_pool(pool: PgPool) -> PgProjection {
        PgProjection { pool }
    }

    /// The pool, for callers that share it (health checks, metrics).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies every migration under `migrations/postgres/` not yet applied, on a pool
    /// connected as the schema's owner (not the writer or reader). Idempotent; safe to run
    /// from several processes and on a cluster whose roles another database already created.
    pub async fn migrate(owner_pool: &PgPool) -> Result<(), ProjectionError> {
        MIGRATOR
            .run(owner_pool)
            .await
            .map_err(|e| ProjectionError::Schema(format!("apply PostgreSQL migrations: {e}")))?;
        tracing::info!("PostgreSQL projection schema is current");
        Ok(())
    }

    /// Closes the pool; later calls fail with [`ProjectionError::Unavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn read_tx(&self) -> Result<sqlx::Transaction<'static, Postgres>, ProjectionError> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(pg_err("begin read"))
    }

    /// A read transaction for range reads. Their queries select a range of the primary key of
    /// each table and want the rows in that key's order, which the heap is in too (rows are
    /// appended in seq order); the planner still prefers a bitmap scan and a sort for
    /// `approvals`, whose `position` correlates only half with the heap. An index scan returns
    /// them sorted: ~15 % less server time for those rows (measured, ranges of 10,000).
    async fn range_read_tx(&self) -> Result<sqlx::Transaction<'static, Postgres>, ProjectionError> {
        self.pool
            .begin_with(
                "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
                 SET LOCAL enable_bitmapscan = off",
            )
            .await
            .map_err(pg_err("begin read"))
    }

    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, Postgres>, ProjectionError> {
        let mut tx = self.pool.begin().await.map_err(pg_err("begin write"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITER_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(pg_err("take the writer lock"))?;
        Ok(tx)
    }

    #[tracing::instrument(skip_all, fields(records = batch.len()))]
    async fn apply_inner(
        &self,
        batch: Vec<Vec<u8>>,
        proofs: Vec<Option<CanonicalProof>>,
    ) -> Result<ApplyOutcome, ProjectionError> {
        check_batch(&batch)?;
        if batch.is_empty() {
            return Ok(ApplyOutcome {
                applied: 0,
                already_present: 0,
            });
        }
        // Optimistic first: look up only the seqs the batch shares with the store and let the
        // unique index on `decisions.id` catch an id stored at another seq. A conflict or a gap
        // is rare (a retry of the same bytes is not one); then the careful attempt looks up
        // every id too and reports exactly what the trait promises.
        let (batch, proofs) = (Arc::new(batch), Arc::new(proofs));
        let outcome = match self.apply_attempt(&batch, &proofs, false).await {
            Err(Attempt::Recheck) => {
                tracing::debug!("conflict or gap on the optimistic apply; checking every record");
                self.apply_attempt(&batch, &proofs, true).await
            }
            other => other,
        };
        match outcome {
            Ok(o) => {
                tracing::debug!(applied = o.applied, already = o.already_present, "applied");
                Ok(o)
            }
            Err(Attempt::Failed(e)) => Err(e),
            Err(Attempt::Recheck) => Err(ProjectionError::Storage {
                what: "apply",
                reason: "the careful apply asked for a recheck".into(),
            }),
        }
    }

    /// One attempt at an apply, in one transaction. `careful`: look up every record's seq and
    /// decision id before writing it (two index probes per record); otherwise only the seqs the
    /// batch shares with the store, and a conflict or gap ends the attempt with
    /// [`Attempt::Recheck`] after rolling back.
    async fn apply_attempt(
        &self,
        batch: &Arc<Vec<Vec<u8>>>,
        proofs: &Arc<Vec<Option<CanonicalProof>>>,
        careful: bool,
    ) -> Result<ApplyOutcome, Attempt> {
        // Validation (CPU, here) and writing (the server's work) overlap: a blocking task
        // validates and encodes chunk after chunk into a short queue while this task writes the
        // ones before. A refusal anywhere rolls the whole transaction back.
        let (sender, mut chunks) = tokio::sync::mpsc::channel(2);
        let producer = {
            let (batch, proofs) = (batch.clone(), proofs.clone());
            tokio::task::spawn_blocking(move || {
                let threads = validation_threads();
                for range in chunk_bounds(batch.len()) {
                    let proofs = proofs_for(&proofs, range.start, range.len());
                    let r = prepare_chunk(range.start, &batch[range], proofs, threads);
                    let failed = r.is_err();
                    if sender.blocking_send(r).is_err() || failed {
                        break;
                    }
                }
            })
        };
        // The writer lock and the highest seq are taken while the first chunk is validated.
        let mut tx = self.write_tx().await?;
        let mut highest: Option<u64> =
            sqlx::query_scalar::<_, Option<i64>>("SELECT max(seq) FROM decisions")
                .fetch_one(&mut *tx)
                .await
                .map_err(pg_err("read the highest seq"))?
                .map(|h| u64::try_from(h).unwrap_or(0));
        let mut checker = BatchChecker::default();
        let (mut applied, mut already, mut seen) = (0u64, 0u64, 0usize);
        while let Some(item) = chunks.recv().await {
            let chunk = item?;
            let n = chunk.keys.len();
            seen += n;
            checker.check(chunk.offset, &chunk.keys)?;
            let bytes = &batch[chunk.offset..chunk.offset + n];
            let stored = if careful {
                stored_overlapping(&mut tx, &chunk.keys).await?
            } else {
                stored_at_seqs(&mut tx, &chunk.keys, highest).await?
            };
            let plan = match plan_apply(&chunk.keys, bytes, stored, highest) {
                Ok(plan) => plan,
                Err(e) if careful => return Err(e.into()),
                Err(_) => {
                    tx.rollback().await.map_err(pg_err("roll back"))?;
                    return Err(Attempt::Recheck);
                }
            };
            already += plan.already;
            if let Some(last) = chunk.keys[plan.fresh_from..].last() {
                if let Err((e, what)) = write_chunk(&mut tx, &chunk, plan.fresh_from).await {
                    if !careful && is_unique_violation(&e) {
                        tx.rollback().await.map_err(pg_err("roll back"))?;
                        return Err(Attempt::Recheck);
                    }
                    return Err(pg_err(what)(e).into());
                }
                highest = Some(last.seq as u64);
                applied += (n - plan.fresh_from) as u64;
            }
        }
        producer
            .await
            .map_err(|e| ProjectionError::Unavailable(format!("validation task failed: {e}")))?;
        if seen != batch.len() {
            return Err(ProjectionError::Storage {
                what: "validate records",
                reason: format!("validation stopped after {seen} of {} records", batch.len()),
            }
            .into());
        }
        tx.commit().await.map_err(pg_err("commit"))?;
        Ok(ApplyOutcome {
            applied,
            already_present: already,
        })
    }

    async fn query_inner(&self, q: &DecisionQuery) -> Result<Page, ProjectionError> {
        let plan: QueryPlan = q.plan()?;
        let mut params: Vec<Param> = Vec::new();
        let mut p = |v: Param| {
            params.push(v);
            format!("${}", params.len())
        };
        let mut conds: Vec<String> = Vec::new();
        let mut with = String::new();
        if let Some(k) = &q.kind {
            conds.push(format!("d.kind = {}", p(Param::Text(k.clone()))));
        }
        for (col, range) in [("recorded_at", &q.recorded), ("proposed_at", &q.proposed)] {
            for (bound, op) in [(range.from, ">="), (range.until, "<")] {
                if let Some(t) = bound {
                    let (ts, ns) =
                        split_time(t.unix_nanos()).map_err(ProjectionError::InvalidQuery)?;
                    let a = p(Param::Time(ts));
                    let b = p(Param::I16(ns));
                    // The exact test is on the pair; the looser one on the timestamp alone is
                    // implied by it and is what lets the planner estimate the range from the
                    // column's statistics (it cannot for a row comparison) and pick the index.
                    let loose = if op == "<" { "<=" } else { op };
                    conds.push(format!(
                        "(d.{col}, d.{col}_extra_ns) {op} ({a}, {b}) AND d.{col} {loose} {a}"
                    ));
                }
            }
        }
        if let Some(key) = &q.approver {
            let k = p(Param::Text(key.as_str().to_owned()));
            conds.push(format!(
                "EXISTS (SELECT 1 FROM approvals a WHERE a.seq = d.seq AND a.key_id = {k})"
            ));
        }
        if let Some(s) = q.supersedes {
            conds.push(format!("d.supersedes = {}", p(Param::Uuid(s))));
        }
        if let Some(c) = q.chain_of {
            let c = p(Param::Uuid(c));
            // Up: what it supersedes, transitively. Down: what supersedes it, transitively.
            // UNION (not UNION ALL) ends the recursion if a cycle exists.
            with = format!(
                "WITH RECURSIVE up(id) AS (SELECT {c}::uuid UNION \
                 SELECT x.supersedes FROM decisions x JOIN up ON x.id = up.id \
                 WHERE x.supersedes IS NOT NULL), \
                 down(id) AS (SELECT {c}::uuid UNION \
                 SELECT x.id FROM decisions x JOIN down ON x.supersedes = down.id) "
            );
            conds.push("(d.id IN (SELECT id FROM up) OR d.id IN (SELECT id FROM down))".into());
        }
        if let Some(words) = &plan.words {
            let w = p(Param::Text(words.join(" ")));
            conds.push(format!(
                "to_tsvector('simple'::regconfig, d.title) @@ plainto_tsquery('simple'::regconfig, {w})"
            ));
        }
        if let Some(before) = plan.before_seq {
            conds.push(format!(
                "d.seq < {}",
                p(Param::I64(to_i64(before, "cursor")?))
            ));
        }
        let limit = p(Param::I64((plan.limit + 1) as i64));
        let where_ = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        let sql = format!(
            "{with}SELECT d.seq FROM decisions d {where_} ORDER BY d.seq DESC LIMIT {limit}"
        );
        let mut query = sqlx::query_scalar::<_, i64>(&sql);
        for v in params {
            query = match v {
                Param::I64(x) => query.bind(x),
                Param::I16(x) => query.bind(x),
                Param::Text(x) => query.bind(x),
                Param::Uuid(x) => query.bind(x),
                Param::Time(x) => query.bind(x),
            };
        }
        let mut tx = self.read_tx().await?;
        let seqs = query
            .fetch_all(&mut *tx)
            .await
            .map_err(pg_err("query decisions"))?;
        let rows = if seqs.is_empty() {
            Vec::new()
        } else {
            load(&mut tx, Select::Seqs(&seqs)).await?
        };
        tx.commit().await.map_err(pg_err("end read"))?;
        Ok(plan.page(records_newest_first(rows)?))
    }

    #[tracing::instrument(skip_all, fields(seq = request.seq, run_id = %request.run_id))]
    async fn repair_inner(&self, request: RepairRequest) -> Result<RepairOutcome, ProjectionError> {
        let seq = request.seq;
        let invalid = |reason: String| ProjectionError::InvalidRepair { seq, reason };
        if request.reason.trim().is_empty() || request.run_id.trim().is_empty() {
            return Err(invalid("a repair needs a reason and a run id".into()));
        }
        let new_leaf = leaf_hash(&request.record_bytes);
        let record = Record::from_canonical_bytes(&request.record_bytes)
            .map_err(|e| invalid(e.to_string()))?;
        if record.seq != seq {
            return Err(invalid(format!(
                "the record's seq is {}, not {seq}",
                record.seq
            )));
        }
        let new = RepairArgs::from_rows(RecordRows::from_record(record).map_err(invalid)?)
            .map_err(invalid)?;
        let seq_i = to_i64(seq, "seq")?;

        let mut tx = self.write_tx().await?;
        let highest: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM decisions")
            .fetch_one(&mut *tx)
            .await
            .map_err(pg_err("read the highest seq"))?;
        if highest.is_none_or(|h| seq_i > h) {
            return Err(invalid(format!(
                "seq {seq} is past the highest stored seq ({highest:?}); new records are applied, not repaired"
            )));
        }
        let old = load(&mut tx, Select::Seqs(&[seq_i])).await?.pop();
        let other: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM decisions WHERE id = $1 AND seq <> $2")
                .bind(new.id)
                .bind(seq_i)
                .fetch_optional(&mut *tx)
                .await
                .map_err(pg_err("look up the decision id"))?;
        if let Some(other) = other {
            let stored = load(&mut tx, Select::Seqs(&[other]))
                .await?
                .pop()
                .map(|r| match r.into_bytes() {
                    Ok(b) => crate::hex_hash(&leaf_hash(&b)),
                    Err(why) => format!("(rows damaged: {why})"),
                })
                .unwrap_or_default();
            return Err(ProjectionError::DecisionConflict {
                id: new.id,
                stored_seq: other as u64,
                stored,
                offered_seq: seq,
                offered: crate::hex_hash(&new_leaf),
            });
        }
        let (old_bytes, old_damage) = match old.map(RecordRows::into_bytes) {
            None => (None, None),
            Some(Ok(b)) => (Some(b), None),
            Some(Err(why)) => (None, Some(why)),
        };
        let old_leaf_hash = old_bytes.as_deref().map(leaf_hash);
        if old_bytes.as_deref() == Some(request.record_bytes.as_slice()) {
            tx.rollback().await.map_err(pg_err("end repair"))?;
            return Ok(RepairOutcome {
                seq,
                old_leaf_hash,
                old_damage,
                new_leaf_hash: new_leaf,
                changed: false,
                repair_id: None,
            });
        }
        let repair_id: i64 = sqlx::query_scalar(
            "SELECT triplicate_repair($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::json, $12, \
             $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)",
        )
        .bind(seq_i)
        .bind(old_leaf_hash.map(|h| h.to_vec()))
        .bind(new_leaf.to_vec())
        .bind(&request.reason)
        .bind(&request.run_id)
        .bind(new.id)
        .bind(new.version)
        .bind(&new.rows.decision.kind)
        .bind(&new.rows.decision.title)
        .bind(&new.rows.decision.body)
        .bind(&new.rows.decision.payload)
        .bind(new.proposed_at.0)
        .bind(new.proposed_at.1)
        .bind(new.recorded_at.0)
        .bind(new.recorded_at.1)
        .bind(new.supersedes)
        .bind(&new.rows.decision.notary_key_id)
        .bind(&new.rows.decision.notary_alg)
        .bind(&new.rows.decision.notary_signature)
        .bind(
            new.rows
                .approvals
                .iter()
                .map(|a| a.key_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            new.rows
                .approvals
                .iter()
                .map(|a| a.alg.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            new.rows
                .approvals
                .iter()
                .map(|a| a.signature.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(new.signed_at.iter().map(|t| t.0).collect::<Vec<_>>())
        .bind(new.signed_at.iter().map(|t| t.1).collect::<Vec<_>>())
        .bind(
            new.rows
                .attachments
                .iter()
                .map(|t| t.sha256.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(
            new.rows
                .attachments
                .iter()
                .map(|t| t.media_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            new.rows
                .attachments
                .iter()
                .map(|t| t.size)
                .collect::<Vec<_>>(),
        )
        .bind(
            new.rows
                .attachments
                .iter()
                .map(|t| t.name.as_deref())
                .collect::<Vec<_>>(),
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(pg_err("run triplicate_repair"))?;
        tx.commit().await.map_err(pg_err("commit repair"))?;
        tracing::warn!(
            repair_id,
            old = ?old_leaf_hash.map(|h| crate::hex_hash(&h)),
            new = %crate::hex_hash(&new_leaf),
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

    async fn remove_inner(
        &self,
        request: RemovalRequest,
    ) -> Result<RemovalOutcome, ProjectionError> {
        let invalid = |reason: String| ProjectionError::InvalidRepair {
            seq: request.from_seq,
            reason,
        };
        if request.reason.trim().is_empty() || request.run_id.trim().is_empty() {
            return Err(invalid("a removal needs a reason and a run id".into()));
        }
        let from = to_i64(request.from_seq, "seq")?;
        let mut tx = self.write_tx().await?;
        let seqs: Vec<i64> =
            sqlx::query_scalar("SELECT seq FROM decisions WHERE seq >= $1 ORDER BY seq")
                .bind(from)
                .fetch_all(&mut *tx)
                .await
                .map_err(pg_err("list the seqs to remove"))?;
        if seqs.len() > MAX_REMOVAL {
            return Err(invalid(format!(
                "{} seqs are stored from {} up; at most {MAX_REMOVAL} are removed at once",
                seqs.len(),
                request.from_seq
            )));
        }
        if seqs.is_empty() {
            tx.rollback().await.map_err(pg_err("end removal"))?;
            return Ok(RemovalOutcome {
                removed: Vec::new(),
            });
        }
        // The hashes are re-derived here (only Rust can); rows that describe no record have
        // none. Rows are loaded in seq order, one per stored seq.
        let mut removed = Vec::with_capacity(seqs.len());
        for rows in load(&mut tx, Select::Seqs(&seqs)).await? {
            let seq = rows.decision.seq as u64;
            removed.push((seq, rows.into_bytes().ok().map(|b| leaf_hash(&b))));
        }
        let hashes: Vec<Option<Vec<u8>>> =
            removed.iter().map(|(_, h)| h.map(|h| h.to_vec())).collect();
        let n: i64 = sqlx::query_scalar("SELECT triplicate_remove_from($1, $2, $3, $4, $5)")
            .bind(from)
            .bind(&request.reason)
            .bind(&request.run_id)
            .bind(&seqs)
            .bind(&hashes)
            .fetch_one(&mut *tx)
            .await
            .map_err(pg_err("run triplicate_remove_from"))?;
        tx.commit().await.map_err(pg_err("commit removal"))?;
        tracing::warn!(
            removed = n,
            from = request.from_seq,
            reason = %request.reason,
            "removed projection rows the ledger lacks"
        );
        Ok(RemovalOutcome { removed })
    }
}

/// Benchmark baselines (`benches/postgres.rs`): the parts of a range read without the rest.
#[cfg(feature = "testkit")]
impl PgProjection {
    /// What [`Projection::record_bytes`] does without re-deriving: the same read transaction,
    /// slices and `COPY` queries; the data received and, with `decode`, decoded into rows on
    /// the same threads (pipelined the same way). Returns the number of records.
    #[doc(hidden)]
    pub async fn read_without_rederiving(
        &self,
        start: u64,
        end: u64,
        decode: bool,
    ) -> Result<usize, ProjectionError> {
        check_range(start, end)?;
        let (a, b) = (to_i64(start, "start")?, to_i64(end, "end")?);
        let mut tx = self.range_read_tx().await?;
        let mut n = 0;
        let mut pending: Option<tokio::task::JoinHandle<Result<usize, String>>> = None;
        let bad = |e: String| ProjectionError::Storage {
            what: "decode rows",
            reason: e,
        };
        let mut from = a;
        while from < b {
            let to = (from + READ_SLICE).min(b);
            let fetched = fetch(&mut tx, Select::Range(from, to)).await?;
            if decode {
                let job = tokio::task::spawn_blocking(move || {
                    fetched
                        .per_record(rebuild_threads(), |r| r.decision.seq)
                        .map(|v| v.len())
                });
                if let Some(done) = pending.replace(job) {
                    n += done
                        .await
                        .map_err(|e| ProjectionError::Unavailable(e.to_string()))?
                        .map_err(bad)?;
                }
            } else {
                n += fetched.decisions().map_err(bad)?;
            }
            from = to;
        }
        tx.commit().await.map_err(pg_err("end read"))?;
        if let Some(done) = pending {
            n += done
                .await
                .map_err(|e| ProjectionError::Unavailable(e.to_string()))?
                .map_err(bad)?;
        }
        Ok(n)
    }

    /// The data a range read fetches, kept in memory, for timing re-derivation alone.
    #[doc(hidden)]
    pub async fn fetch_for_baseline(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<crate::testkit::FetchedSlice>, ProjectionError> {
        let (a, b) = (to_i64(start, "start")?, to_i64(end, "end")?);
        let mut tx = self.range_read_tx().await?;
        let mut out = Vec::new();
        let mut from = a;
        while from < b {
            let to = (from + READ_SLICE).min(b);
            out.push(crate::testkit::FetchedSlice(
                fetch(&mut tx, Select::Range(from, to)).await?,
            ));
            from = to;
        }
        tx.commit().await.map_err(pg_err("end read"))?;
        Ok(out)
    }
}

impl Projection for PgProjection {
    async fn apply(&self, batch: Vec<Vec<u8>>) -> Result<ApplyOutcome, ProjectionError> {
        self.apply_inner(batch, Vec::new()).await
    }

    async fn apply_proven(
        &self,
        batch: Vec<Vec<u8>>,
        proofs: Vec<Option<CanonicalProof>>,
    ) -> Result<ApplyOutcome, ProjectionError> {
        self.apply_inner(batch, proofs).await
    }

    async fn decision(&self, id: Uuid) -> Result<Option<Record>, ProjectionError> {
        let mut tx = self.read_tx().await?;
        let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM decisions WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(pg_err("look up a decision"))?;
        let Some(seq) = seq else {
            return Ok(None);
        };
        let rows = load(&mut tx, Select::Seqs(&[seq])).await?;
        tx.commit().await.map_err(pg_err("end read"))?;
        Ok(records_newest_first(rows)?.pop())
    }

    async fn query(&self, query: &DecisionQuery) -> Result<Page, ProjectionError> {
        self.query_inner(query).await
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
        // Fetching (the server's work and receiving) and decoding and re-deriving (CPU, on
        // every core) overlap: the range is read in slices, and slice k is decoded and rebuilt
        // on the blocking pool while slice k+1 is fetched, all in one snapshot.
        let mut tx = self.range_read_tx().await?;
        let mut out = Vec::with_capacity((b - a) as usize);
        let mut pending: Option<tokio::task::JoinHandle<Result<Vec<RederivedRecord>, String>>> =
            None;
        let joined = |r: Result<Result<Vec<RederivedRecord>, String>, tokio::task::JoinError>| {
            r.map_err(|e| ProjectionError::Unavailable(format!("rebuild task failed: {e}")))?
                .map_err(|reason| ProjectionError::Storage {
                    what: "decode rows",
                    reason,
                })
        };
        let mut from = a;
        while from < b {
            let to = (from + READ_SLICE).min(b);
            let fetched = fetch(&mut tx, Select::Range(from, to)).await?;
            let rebuild = tokio::task::spawn_blocking(move || fetched.rederive(rebuild_threads()));
            if let Some(done) = pending.replace(rebuild) {
                out.extend(joined(done.await)?);
            }
            from = to;
        }
        tx.commit().await.map_err(pg_err("end read"))?;
        if let Some(done) = pending {
            out.extend(joined(done.await)?);
        }
        Ok(out)
    }

    async fn row_digests(
        &self,
        start: u64,
        end: u64,
        parts: u32,
    ) -> Result<Vec<(u32, Hash)>, ProjectionError> {
        if end < start {
            return Err(ProjectionError::InvalidQuery(format!(
                "range {start}..{end} ends before it starts"
            )));
        }
        if start == end {
            return Ok(Vec::new());
        }
        let width = crate::row_digest::part_width(start, end, parts);
        let (a, b) = (to_i64(start, "start")?, to_i64(end, "end")?);
        let w = to_i64(width, "part width")?;
        let what = "compute row digests";
        let mut tx = self.pool.begin().await.map_err(pg_err(what))?;
        // The sorts are of (part, seq, 32 bytes) per row; keep them in memory.
        sqlx::query("SET LOCAL work_mem = '64MB'")
            .execute(&mut *tx)
            .await
            .map_err(pg_err(what))?;
        let rows: Vec<(i32, i64, Vec<u8>)> =
            sqlx::query_as(crate::row_digest::POSTGRES_RANGE_DIGESTS)
                .bind(a)
                .bind(b)
                .bind(w)
                .fetch_all(&mut *tx)
                .await
                .map_err(pg_err(what))?;
        tx.commit().await.map_err(pg_err(what))?;
        let bad = |reason: String| ProjectionError::Storage { what, reason };
        let empty = crate::row_digest::empty_chain();
        let mut chains: std::collections::BTreeMap<u32, [Hash; 3]> = Default::default();
        for (table, part, digest) in rows {
            let part = u32::try_from(part).map_err(|_| bad(format!("part {part}")))?;
            let table = usize::try_from(table)
                .ok()
                .filter(|t| *t < 3)
                .ok_or_else(|| bad(format!("table {table}")))?;
            let digest = Hash::try_from(digest.as_slice())
                .map_err(|_| bad(format!("a digest of {} bytes", digest.len())))?;
            chains.entry(part).or_insert([empty; 3])[table] = digest;
        }
        Ok(chains
            .into_iter()
            .map(|(part, [d, a, t])| (part, crate::row_digest::part_digest(d, a, t)))
            .collect())
    }

    async fn highest_seq(&self) -> Result<Option<u64>, ProjectionError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM decisions")
            .fetch_one(&self.pool)
            .await
            .map_err(pg_err("read the highest seq"))?;
        Ok(v.and_then(|v| u64::try_from(v).ok()))
    }

    async fn repair(&self, request: RepairRequest) -> Result<RepairOutcome, ProjectionError> {
        self.repair_inner(request).await
    }

    async fn remove_from(
        &self,
        request: RemovalRequest,
    ) -> Result<RemovalOutcome, ProjectionError> {
        self.remove_inner(request).await
    }
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testkit::PgTestDb;

    #[tokio::test]
    async fn reads_run_in_one_repeatable_read_only_snapshot() {
        let db = PgTestDb::create().await;
        let p = db.projection(Some(PG_READER_ROLE)).await;
        for range in [false, true] {
            let mut tx = if range {
                p.range_read_tx().await.unwrap()
            } else {
                p.read_tx().await.unwrap()
            };
            let (iso, ro, bitmap): (String, String, String) = sqlx::query_as(
                "SELECT current_setting('transaction_isolation'), \
                 current_setting('transaction_read_only'), current_setting('enable_bitmapscan')",
            )
            .fetch_one(&mut *tx)
            .await
            .unwrap();
            assert_eq!((iso.as_str(), ro.as_str()), ("repeatable read", "on"));
            assert_eq!(bitmap == "off", range);
            tx.commit().await.unwrap();
        }
        // The setting was local to the transaction.
        let bitmap: String = sqlx::query_scalar("SHOW enable_bitmapscan")
            .fetch_one(p.pool())
            .await
            .unwrap();
        assert_eq!(bitmap, "on");
    }
}
