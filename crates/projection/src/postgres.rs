//! The PostgreSQL backend, on sqlx. Schema, roles, triggers and the repair function:
//! `migrations/postgres/` (applied by [`PgProjection::migrate`]).
//!
//! An apply is one transaction: take the projection's advisory lock (one writer at a time, so
//! two catch-up workers retrying the same batch cannot both decide it is new); then, chunk by
//! chunk while a blocking task validates the next chunk, look up which of the chunk's seqs and
//! decision ids are stored, re-derive those, and write the new rows with one binary
//! `COPY … FROM STDIN` per table (see `pgcopy.rs` for why `COPY` rather than `INSERT`).
//!
//! Reads (range reads, queries) run in a `REPEATABLE READ READ ONLY` transaction so the three
//! tables are read from one snapshot, and fetch rows with binary `COPY (SELECT …) TO STDOUT`.
//! Range reads re-derive one slice on the blocking pool while the next is fetched.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{
    PgArgumentBuffer, PgConnectOptions, PgHasArrayType, PgPool, PgPoolOptions, PgTypeInfo,
    PgValueRef,
};
use sqlx::{Decode, Encode, Postgres, Type};
use triplicate_core::digest::leaf_hash;
use triplicate_core::Record;
use uuid::Uuid;

use crate::pgcopy::{CopyReader, CopyWriter};
use crate::plan::{plan_apply, Stored};
use crate::query::QueryPlan;
use crate::rows::{
    assemble, prepare_part, rebuild_all, rebuild_threads, validation_threads, ApprovalRow,
    AttachmentRow, BatchChecker, DecisionRow, RecordRows, CHUNK,
};
use crate::{
    check_batch, check_range, ApplyOutcome, DecisionQuery, Page, Projection, ProjectionError,
    RederivedRecord, RepairOutcome, RepairRequest,
};

/// The role the write path and the reconciler use: SELECT, INSERT, EXECUTE `triplicate_repair`.
pub const PG_WRITER_ROLE: &str = "triplicate_writer";
/// The role read endpoints use: SELECT only.
pub const PG_READER_ROLE: &str = "triplicate_reader";

/// Every migration under `migrations/postgres/`, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

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
struct PgMicros(i64);

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
fn split_time(unix_nanos: i128) -> Result<(PgMicros, i16), String> {
    let micros = unix_nanos.div_euclid(1000) - PG_EPOCH_UNIX_MICROS;
    let extra = unix_nanos.rem_euclid(1000) as i16;
    let micros = i64::try_from(micros).map_err(|_| format!("{unix_nanos} ns is out of range"))?;
    Ok((PgMicros(micros), extra))
}

fn join_time(micros_since_2000: i64, extra_ns: i16) -> i128 {
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
    let mut data = Vec::new();
    while let Some(chunk) = stream.next().await {
        data.extend_from_slice(&chunk.map_err(pg_err(what))?);
    }
    Ok(data)
}

fn decode_err(what: &'static str) -> impl Fn(String) -> ProjectionError {
    move |reason| ProjectionError::Storage { what, reason }
}

fn decode_decisions(data: &[u8]) -> Result<Vec<DecisionRow>, String> {
    let mut r = CopyReader::new(data)?;
    let mut out = Vec::new();
    while r.row(15)?.is_some() {
        out.push(DecisionRow {
            seq: r.i64("seq")?,
            id: r.uuid("id")?.hyphenated().to_string(),
            version: i64::from(r.i32("version")?),
            kind: r.text("kind")?,
            title: r.text("title")?,
            body: r.text("body")?,
            payload: r.text("payload")?,
            proposed_at: join_time(r.timestamp("proposed_at")?, r.i16("proposed_at_extra_ns")?),
            recorded_at: join_time(r.timestamp("recorded_at")?, r.i16("recorded_at_extra_ns")?),
            supersedes: r
                .opt_uuid("supersedes")?
                .map(|u| u.hyphenated().to_string()),
            notary_key_id: r.text("notary_key_id")?,
            notary_alg: r.text("notary_alg")?,
            notary_signature: r.bytes("notary_signature")?,
        });
    }
    Ok(out)
}

fn decode_approvals(data: &[u8]) -> Result<Vec<ApprovalRow>, String> {
    let mut r = CopyReader::new(data)?;
    let mut out = Vec::new();
    while r.row(7)?.is_some() {
        out.push(ApprovalRow {
            seq: r.i64("seq")?,
            position: i64::from(r.i16("position")?),
            key_id: r.text("key_id")?,
            alg: r.text("alg")?,
            signature: r.bytes("signature")?,
            signed_at: join_time(r.timestamp("signed_at")?, r.i16("signed_at_extra_ns")?),
        });
    }
    Ok(out)
}

fn decode_attachments(data: &[u8]) -> Result<Vec<AttachmentRow>, String> {
    let mut r = CopyReader::new(data)?;
    let mut out = Vec::new();
    while r.row(6)?.is_some() {
        out.push(AttachmentRow {
            seq: r.i64("seq")?,
            position: i64::from(r.i16("position")?),
            sha256: r.bytes("sha256")?,
            media_type: r.text("media_type")?,
            size: r.i64("size")?,
            name: r.opt_text("name")?,
        });
    }
    Ok(out)
}

/// Loads every row of the selected records, in seq order, on one connection (the caller's
/// transaction decides the snapshot).
async fn load(
    conn: &mut sqlx::PgConnection,
    sel: Select<'_>,
) -> Result<Vec<RecordRows>, ProjectionError> {
    let where_ = sel.clause();
    let data = copy_out(
        conn,
        &format!(
            "SELECT seq, id, version, kind, title, body, payload, proposed_at, \
             proposed_at_extra_ns, recorded_at, recorded_at_extra_ns, supersedes, notary_key_id, \
             notary_alg, notary_signature FROM decisions WHERE {where_} ORDER BY seq"
        ),
        "read decisions",
    )
    .await?;
    let decisions = decode_decisions(&data).map_err(decode_err("decode decisions"))?;
    if decisions.is_empty() {
        return Ok(Vec::new());
    }
    let data = copy_out(
        conn,
        &format!(
            "SELECT seq, position, key_id, alg, signature, signed_at, signed_at_extra_ns \
             FROM approvals WHERE {where_} ORDER BY seq, position"
        ),
        "read approvals",
    )
    .await?;
    let approvals = decode_approvals(&data).map_err(decode_err("decode approvals"))?;
    let data = copy_out(
        conn,
        &format!(
            "SELECT seq, position, sha256, media_type, size, name \
             FROM attachments WHERE {where_} ORDER BY seq, position"
        ),
        "read attachments",
    )
    .await?;
    let attachments = decode_attachments(&data).map_err(decode_err("decode attachments"))?;
    Ok(assemble(decisions, approvals, attachments))
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

fn small(v: i64, what: &str) -> Result<i16, String> {
    i16::try_from(v).map_err(|_| format!("{what} {v} does not fit"))
}

fn parse_uuid(s: &str) -> Result<Uuid, String> {
    Uuid::try_parse(s).map_err(|e| format!("{s:?}: {e}"))
}

/// The `COPY` data of new records' rows, one buffer per table.
struct CopyData {
    decisions: Vec<u8>,
    approvals: Vec<u8>,
    attachments: Option<Vec<u8>>,
}

impl CopyData {
    fn encode(records: &[RecordRows]) -> Result<CopyData, (usize, String)> {
        let size: usize = records
            .iter()
            .map(|r| r.decision.body.len() + r.decision.payload.len() + 400)
            .sum();
        let mut d = CopyWriter::with_capacity(size);
        let mut a = CopyWriter::with_capacity(records.len() * 2 * 140);
        let mut t = CopyWriter::with_capacity(0);
        let mut any_attachment = false;
        for (k, r) in records.iter().enumerate() {
            let err = |e: String| (k, e);
            let x = &r.decision;
            let (pa, pn) = split_time(x.proposed_at).map_err(err)?;
            let (ra, rn) = split_time(x.recorded_at).map_err(err)?;
            d.row(15);
            d.i64(x.seq);
            d.uuid(&parse_uuid(&x.id).map_err(err)?);
            d.i32(i32::try_from(x.version).map_err(|_| err("version does not fit".into()))?);
            d.text(&x.kind);
            d.text(&x.title);
            d.text(&x.body);
            d.text(&x.payload);
            d.timestamp(pa.0);
            d.i16(pn);
            d.timestamp(ra.0);
            d.i16(rn);
            match &x.supersedes {
                Some(s) => d.uuid(&parse_uuid(s).map_err(err)?),
                None => d.null(),
            }
            d.text(&x.notary_key_id);
            d.text(&x.notary_alg);
            d.bytes(&x.notary_signature);
            for p in &r.approvals {
                let (sa, sn) = split_time(p.signed_at).map_err(err)?;
                a.row(7);
                a.i64(p.seq);
                a.i16(small(p.position, "approval position").map_err(err)?);
                a.text(&p.key_id);
                a.text(&p.alg);
                a.bytes(&p.signature);
                a.timestamp(sa.0);
                a.i16(sn);
            }
            for m in &r.attachments {
                any_attachment = true;
                t.row(6);
                t.i64(m.seq);
                t.i16(small(m.position, "attachment position").map_err(err)?);
                t.bytes(&m.sha256);
                t.text(&m.media_type);
                t.i64(m.size);
                match &m.name {
                    Some(n) => t.text(n),
                    None => t.null(),
                }
            }
        }
        Ok(CopyData {
            decisions: d.finish(),
            approvals: a.finish(),
            attachments: any_attachment.then(|| t.finish()),
        })
    }

    async fn insert(self, conn: &mut sqlx::PgConnection) -> Result<(), ProjectionError> {
        copy_in(
            conn,
            "COPY decisions (seq, id, version, kind, title, body, payload, proposed_at, \
             proposed_at_extra_ns, recorded_at, recorded_at_extra_ns, supersedes, notary_key_id, \
             notary_alg, notary_signature) FROM STDIN (FORMAT binary)",
            self.decisions,
            "insert decisions",
        )
        .await?;
        copy_in(
            conn,
            "COPY approvals (seq, position, key_id, alg, signature, signed_at, \
             signed_at_extra_ns) FROM STDIN (FORMAT binary)",
            self.approvals,
            "insert approvals",
        )
        .await?;
        if let Some(t) = self.attachments {
            copy_in(
                conn,
                "COPY attachments (seq, position, sha256, media_type, size, name) \
                 FROM STDIN (FORMAT binary)",
                t,
                "insert attachments",
            )
            .await?;
        }
        Ok(())
    }
}

/// Runs `COPY … FROM STDIN` with prepared data. The data is complete before the copy starts,
/// so nothing can fail between starting and finishing it but the server or the network.
async fn copy_in(
    conn: &mut sqlx::PgConnection,
    statement: &str,
    data: Vec<u8>,
    what: &'static str,
) -> Result<(), ProjectionError> {
    let mut copy = conn.copy_in_raw(statement).await.map_err(pg_err(what))?;
    if let Err(e) = copy.send(data).await {
        let _ = copy.abort(what).await;
        return Err(pg_err(what)(e));
    }
    copy.finish().await.map_err(pg_err(what))?;
    Ok(())
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

/// The stored records that share a seq or a decision id with `rows` (consecutive records),
/// re-derived, for [`plan_apply`].
async fn stored_overlapping(
    conn: &mut sqlx::PgConnection,
    rows: &[RecordRows],
) -> Result<Vec<Stored>, ProjectionError> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(Vec::new());
    };
    let ids: Vec<Uuid> = rows
        .iter()
        .map(|r| parse_uuid(&r.decision.id))
        .collect::<Result<_, _>>()
        .map_err(|reason| ProjectionError::InvalidRecord { index: 0, reason })?;
    let overlapping: Vec<i64> = sqlx::query_scalar(
        "SELECT seq FROM decisions WHERE (seq >= $1 AND seq <= $2) OR id = ANY($3) ORDER BY seq",
    )
    .bind(first.decision.seq)
    .bind(last.decision.seq)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(pg_err("look up stored seqs and decisions"))?;
    if overlapping.is_empty() {
        return Ok(Vec::new());
    }
    Ok(load(conn, Select::Seqs(&overlapping))
        .await?
        .into_iter()
        .map(|r| Stored {
            seq: r.decision.seq as u64,
            id: r.decision.id.clone(),
            content: r.into_bytes(),
        })
        .collect())
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
        let pool = PgPoolOptions::new()
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
            .connect_with(opts)
            .await
            .map_err(pg_err("connect to PostgreSQL"))?;
        tracing::info!(role = ?options.role, "connected the PostgreSQL projection");
        Ok(PgProjection { pool })
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
        let mut tx = self.pool.begin().await.map_err(pg_err("begin read"))?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(pg_err("begin read"))?;
        Ok(tx)
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
    async fn apply_inner(&self, batch: Vec<Vec<u8>>) -> Result<ApplyOutcome, ProjectionError> {
        check_batch(&batch)?;
        if batch.is_empty() {
            return Ok(ApplyOutcome {
                applied: 0,
                already_present: 0,
            });
        }
        // Validation (CPU, here) and writing (the server's work) overlap: a blocking task
        // validates chunk after chunk into a short queue while this task writes the ones
        // before. A refusal anywhere rolls the whole transaction back.
        let batch = Arc::new(batch);
        let (sender, mut chunks) = tokio::sync::mpsc::channel(2);
        let producer = {
            let batch = batch.clone();
            tokio::task::spawn_blocking(move || {
                let threads = validation_threads();
                for (i, part) in batch.chunks(CHUNK).enumerate() {
                    let r = prepare_part(i * CHUNK, part, threads).map(|rows| (i * CHUNK, rows));
                    let failed = r.is_err();
                    if sender.blocking_send(r).is_err() || failed {
                        break;
                    }
                }
            })
        };
        // The first chunk is validated before the writer lock is taken.
        let mut next = chunks.recv().await;
        let mut tx = self.write_tx().await?;
        let mut highest: Option<u64> =
            sqlx::query_scalar::<_, Option<i64>>("SELECT max(seq) FROM decisions")
                .fetch_one(&mut *tx)
                .await
                .map_err(pg_err("read the highest seq"))?
                .map(|h| u64::try_from(h).unwrap_or(0));
        let mut checker = BatchChecker::default();
        let (mut applied, mut already, mut seen) = (0u64, 0u64, 0usize);
        while let Some(item) = next {
            let (offset, rows) = item?;
            seen += rows.len();
            checker.check(offset, &rows)?;
            let bytes = &batch[offset..offset + rows.len()];
            let stored = stored_overlapping(&mut tx, &rows).await?;
            let plan = plan_apply(&rows, bytes, stored, highest)?;
            already += plan.already;
            let fresh = &rows[plan.fresh_from..];
            if let Some(last) = fresh.last() {
                CopyData::encode(fresh)
                    .map_err(|(k, reason)| ProjectionError::InvalidRecord {
                        index: offset + plan.fresh_from + k,
                        reason,
                    })?
                    .insert(&mut tx)
                    .await?;
                highest = Some(last.decision.seq as u64);
                applied += fresh.len() as u64;
            }
            next = chunks.recv().await;
        }
        producer
            .await
            .map_err(|e| ProjectionError::Unavailable(format!("validation task failed: {e}")))?;
        if seen != batch.len() {
            return Err(ProjectionError::Storage {
                what: "validate records",
                reason: format!("validation stopped after {seen} of {} records", batch.len()),
            });
        }
        tx.commit().await.map_err(pg_err("commit"))?;
        tracing::debug!(applied, already, "applied");
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
}

impl Projection for PgProjection {
    async fn apply(&self, batch: Vec<Vec<u8>>) -> Result<ApplyOutcome, ProjectionError> {
        self.apply_inner(batch).await
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
        // Fetching (the server's work, then decoding here) and re-deriving (CPU) overlap: the
        // range is read in slices, and slice k is rebuilt on the blocking pool while slice k+1
        // is fetched, all in one snapshot.
        let mut tx = self.read_tx().await?;
        let mut out = Vec::with_capacity((b - a) as usize);
        let mut pending: Option<tokio::task::JoinHandle<Vec<RederivedRecord>>> = None;
        let mut from = a;
        while from < b {
            let to = (from + READ_SLICE).min(b);
            let rows = load(&mut tx, Select::Range(from, to)).await?;
            let rebuild = tokio::task::spawn_blocking(move || rebuild_all(rows, rebuild_threads()));
            if let Some(done) = pending.replace(rebuild) {
                out.extend(done.await.map_err(|e| {
                    ProjectionError::Unavailable(format!("rebuild task failed: {e}"))
                })?);
            }
            from = to;
        }
        tx.commit().await.map_err(pg_err("end read"))?;
        if let Some(done) = pending {
            out.extend(
                done.await.map_err(|e| {
                    ProjectionError::Unavailable(format!("rebuild task failed: {e}"))
                })?,
            );
        }
        Ok(out)
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
}
