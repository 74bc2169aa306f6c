//! The PostgreSQL backend, on sqlx. Schema, roles, triggers and the repair function:
//! `migrations/postgres/` (applied by [`PgProjection::migrate`]).
//!
//! An apply is one transaction: take the projection's advisory lock (one writer at a time, so
//! two catch-up workers retrying the same batch cannot both decide it is new), look up which of
//! the batch's seqs and decision ids are stored and re-derive those, then one `INSERT … SELECT
//! FROM UNNEST(…)` per table with a column array per field, so a batch of 1,000 records is three
//! round trips whatever its size.
//!
//! Reads (range reads, queries) run in a `REPEATABLE READ READ ONLY` transaction so the three
//! tables are read from one snapshot.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{
    PgArgumentBuffer, PgConnectOptions, PgHasArrayType, PgPool, PgPoolOptions, PgRow, PgTypeInfo,
    PgValueRef,
};
use sqlx::{Decode, Encode, Postgres, Row, Type};
use triplicate_core::digest::leaf_hash;
use triplicate_core::Record;
use uuid::Uuid;

use crate::plan::{plan_apply, Stored};
use crate::query::QueryPlan;
use crate::rows::{
    assemble, prepare, rebuild_all, ApprovalRow, AttachmentRow, DecisionRow, RecordRows,
};
use crate::{
    check_range, ApplyOutcome, DecisionQuery, Page, Projection, ProjectionError, RederivedRecord,
    RepairOutcome, RepairRequest,
};

/// The role the write path and the reconciler use: SELECT, INSERT, EXECUTE `triplicate_repair`.
pub const PG_WRITER_ROLE: &str = "triplicate_writer";
/// The role read endpoints use: SELECT only.
pub const PG_READER_ROLE: &str = "triplicate_reader";

/// Every migration under `migrations/postgres/`, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

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

fn join_time(ts: PgMicros, extra_ns: i16) -> i128 {
    (i128::from(ts.0) + PG_EPOCH_UNIX_MICROS) * 1000 + i128::from(extra_ns)
}

/// Which records to load.
enum Select<'a> {
    Range(i64, i64),
    Seqs(&'a [i64]),
}

impl Select<'_> {
    fn clause(&self) -> &'static str {
        match self {
            Select::Range(..) => "seq >= $1 AND seq < $2",
            Select::Seqs(_) => "seq = ANY($1)",
        }
    }

    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        match self {
            Select::Range(a, b) => q.bind(*a).bind(*b),
            Select::Seqs(s) => q.bind(*s),
        }
    }
}

fn decision_row(r: &PgRow) -> Result<DecisionRow, sqlx::Error> {
    Ok(DecisionRow {
        seq: r.try_get(0)?,
        id: r.try_get::<Uuid, _>(1)?.hyphenated().to_string(),
        version: i64::from(r.try_get::<i32, _>(2)?),
        kind: r.try_get(3)?,
        title: r.try_get(4)?,
        body: r.try_get(5)?,
        payload: r.try_get(6)?,
        proposed_at: join_time(r.try_get(7)?, r.try_get(8)?),
        recorded_at: join_time(r.try_get(9)?, r.try_get(10)?),
        supersedes: r
            .try_get::<Option<Uuid>, _>(11)?
            .map(|u| u.hyphenated().to_string()),
        notary_key_id: r.try_get(12)?,
        notary_alg: r.try_get(13)?,
        notary_signature: r.try_get(14)?,
    })
}

fn approval_row(r: &PgRow) -> Result<ApprovalRow, sqlx::Error> {
    Ok(ApprovalRow {
        seq: r.try_get(0)?,
        position: i64::from(r.try_get::<i16, _>(1)?),
        key_id: r.try_get(2)?,
        alg: r.try_get(3)?,
        signature: r.try_get(4)?,
        signed_at: join_time(r.try_get(5)?, r.try_get(6)?),
    })
}

fn attachment_row(r: &PgRow) -> Result<AttachmentRow, sqlx::Error> {
    Ok(AttachmentRow {
        seq: r.try_get(0)?,
        position: i64::from(r.try_get::<i16, _>(1)?),
        sha256: r.try_get(2)?,
        media_type: r.try_get(3)?,
        size: r.try_get(4)?,
        name: r.try_get(5)?,
    })
}

/// Loads every row of the selected records, in seq order, on one connection (the caller's
/// transaction decides the snapshot).
async fn load(
    conn: &mut sqlx::PgConnection,
    sel: Select<'_>,
) -> Result<Vec<RecordRows>, ProjectionError> {
    let where_ = sel.clause();
    let sql = format!(
        "SELECT seq, id, version, kind, title, body, payload::text, proposed_at, \
         proposed_at_extra_ns, recorded_at, recorded_at_extra_ns, supersedes, notary_key_id, \
         notary_alg, notary_signature FROM decisions WHERE {where_} ORDER BY seq"
    );
    let rows = sel
        .bind(sqlx::query(&sql))
        .fetch_all(&mut *conn)
        .await
        .map_err(pg_err("read decisions"))?;
    let decisions = rows
        .iter()
        .map(decision_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pg_err("decode decisions"))?;
    if decisions.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT seq, position, key_id, alg, signature, signed_at, signed_at_extra_ns \
         FROM approvals WHERE {where_} ORDER BY seq, position"
    );
    let rows = sel
        .bind(sqlx::query(&sql))
        .fetch_all(&mut *conn)
        .await
        .map_err(pg_err("read approvals"))?;
    let approvals = rows
        .iter()
        .map(approval_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pg_err("decode approvals"))?;
    let sql = format!(
        "SELECT seq, position, sha256, media_type, size, name \
         FROM attachments WHERE {where_} ORDER BY seq, position"
    );
    let rows = sel
        .bind(sqlx::query(&sql))
        .fetch_all(&mut *conn)
        .await
        .map_err(pg_err("read attachments"))?;
    let attachments = rows
        .iter()
        .map(attachment_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pg_err("decode attachments"))?;
    Ok(assemble(decisions, approvals, attachments))
}

/// Records for a query result, newest first; damaged rows fail the query.
fn records_newest_first(rows: Vec<RecordRows>) -> Result<Vec<Record>, ProjectionError> {
    let mut out = rows
        .into_iter()
        .map(|r| {
            r.rebuild().map_err(|reason| ProjectionError::Damaged {
                seq: r.decision.seq as u64,
                reason,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|r| std::cmp::Reverse(r.seq));
    Ok(out)
}

/// The columns of a batch, one array per field, for `UNNEST`.
#[derive(Default)]
struct Columns {
    seq: Vec<i64>,
    id: Vec<Uuid>,
    version: Vec<i32>,
    kind: Vec<String>,
    title: Vec<String>,
    body: Vec<String>,
    payload: Vec<String>,
    proposed_at: Vec<PgMicros>,
    proposed_ns: Vec<i16>,
    recorded_at: Vec<PgMicros>,
    recorded_ns: Vec<i16>,
    supersedes: Vec<Option<Uuid>>,
    notary_key_id: Vec<String>,
    notary_alg: Vec<String>,
    notary_signature: Vec<Vec<u8>>,
    a_seq: Vec<i64>,
    a_position: Vec<i16>,
    a_key_id: Vec<String>,
    a_alg: Vec<String>,
    a_signature: Vec<Vec<u8>>,
    a_signed_at: Vec<PgMicros>,
    a_signed_ns: Vec<i16>,
    t_seq: Vec<i64>,
    t_position: Vec<i16>,
    t_sha256: Vec<Vec<u8>>,
    t_media_type: Vec<String>,
    t_size: Vec<i64>,
    t_name: Vec<Option<String>>,
}

fn small(v: i64, what: &str) -> Result<i16, String> {
    i16::try_from(v).map_err(|_| format!("{what} {v} does not fit"))
}

fn parse_uuid(s: &str) -> Result<Uuid, String> {
    Uuid::try_parse(s).map_err(|e| format!("{s:?}: {e}"))
}

impl Columns {
    fn push(&mut self, r: RecordRows) -> Result<(), String> {
        let d = r.decision;
        let (pa, pn) = split_time(d.proposed_at)?;
        let (ra, rn) = split_time(d.recorded_at)?;
        self.seq.push(d.seq);
        self.id.push(parse_uuid(&d.id)?);
        self.version
            .push(i32::try_from(d.version).map_err(|_| "version does not fit".to_owned())?);
        self.kind.push(d.kind);
        self.title.push(d.title);
        self.body.push(d.body);
        self.payload.push(d.payload);
        self.proposed_at.push(pa);
        self.proposed_ns.push(pn);
        self.recorded_at.push(ra);
        self.recorded_ns.push(rn);
        self.supersedes
            .push(d.supersedes.as_deref().map(parse_uuid).transpose()?);
        self.notary_key_id.push(d.notary_key_id);
        self.notary_alg.push(d.notary_alg);
        self.notary_signature.push(d.notary_signature);
        for a in r.approvals {
            let (t, n) = split_time(a.signed_at)?;
            self.a_seq.push(a.seq);
            self.a_position
                .push(small(a.position, "approval position")?);
            self.a_key_id.push(a.key_id);
            self.a_alg.push(a.alg);
            self.a_signature.push(a.signature);
            self.a_signed_at.push(t);
            self.a_signed_ns.push(n);
        }
        for t in r.attachments {
            self.t_seq.push(t.seq);
            self.t_position
                .push(small(t.position, "attachment position")?);
            self.t_sha256.push(t.sha256);
            self.t_media_type.push(t.media_type);
            self.t_size.push(t.size);
            self.t_name.push(t.name);
        }
        Ok(())
    }

    async fn insert(self, conn: &mut sqlx::PgConnection) -> Result<(), ProjectionError> {
        sqlx::query(
            "INSERT INTO decisions (seq, id, version, kind, title, body, payload, proposed_at, \
             proposed_at_extra_ns, recorded_at, recorded_at_extra_ns, supersedes, notary_key_id, \
             notary_alg, notary_signature) \
             SELECT s, i, v, k, t, b, p::json, pa, pn, ra, rn, su, nk, na, ns \
             FROM UNNEST($1::int8[], $2::uuid[], $3::int4[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::timestamptz[], $9::int2[], $10::timestamptz[], $11::int2[], \
             $12::uuid[], $13::text[], $14::text[], $15::bytea[]) \
             AS u(s, i, v, k, t, b, p, pa, pn, ra, rn, su, nk, na, ns)",
        )
        .bind(&self.seq)
        .bind(&self.id)
        .bind(&self.version)
        .bind(&self.kind)
        .bind(&self.title)
        .bind(&self.body)
        .bind(&self.payload)
        .bind(&self.proposed_at)
        .bind(&self.proposed_ns)
        .bind(&self.recorded_at)
        .bind(&self.recorded_ns)
        .bind(&self.supersedes)
        .bind(&self.notary_key_id)
        .bind(&self.notary_alg)
        .bind(&self.notary_signature)
        .execute(&mut *conn)
        .await
        .map_err(pg_err("insert decisions"))?;
        sqlx::query(
            "INSERT INTO approvals (seq, position, key_id, alg, signature, signed_at, \
             signed_at_extra_ns) \
             SELECT * FROM UNNEST($1::int8[], $2::int2[], $3::text[], $4::text[], $5::bytea[], \
             $6::timestamptz[], $7::int2[])",
        )
        .bind(&self.a_seq)
        .bind(&self.a_position)
        .bind(&self.a_key_id)
        .bind(&self.a_alg)
        .bind(&self.a_signature)
        .bind(&self.a_signed_at)
        .bind(&self.a_signed_ns)
        .execute(&mut *conn)
        .await
        .map_err(pg_err("insert approvals"))?;
        if !self.t_seq.is_empty() {
            sqlx::query(
                "INSERT INTO attachments (seq, position, sha256, media_type, size, name) \
                 SELECT * FROM UNNEST($1::int8[], $2::int2[], $3::bytea[], $4::text[], \
                 $5::int8[], $6::text[])",
            )
            .bind(&self.t_seq)
            .bind(&self.t_position)
            .bind(&self.t_sha256)
            .bind(&self.t_media_type)
            .bind(&self.t_size)
            .bind(&self.t_name)
            .execute(&mut *conn)
            .await
            .map_err(pg_err("insert attachments"))?;
        }
        Ok(())
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
        if batch.is_empty() {
            return Ok(ApplyOutcome {
                applied: 0,
                already_present: 0,
            });
        }
        // Parsing and re-canonicalising is CPU work: keep it off the async workers.
        let (prepared, batch) = tokio::task::spawn_blocking(move || {
            let p = prepare(&batch);
            (p, batch)
        })
        .await
        .map_err(|e| ProjectionError::Unavailable(format!("validation task failed: {e}")))?;
        let prepared = prepared?;
        let first = prepared.first_seq().unwrap_or(0);
        let last = first + prepared.rows.len() as u64 - 1;

        let mut tx = self.write_tx().await?;
        let highest: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM decisions")
            .fetch_one(&mut *tx)
            .await
            .map_err(pg_err("read the highest seq"))?;
        let ids: Vec<Uuid> = prepared
            .rows
            .iter()
            .map(|r| parse_uuid(&r.decision.id))
            .collect::<Result<_, _>>()
            .map_err(|reason| ProjectionError::InvalidRecord { index: 0, reason })?;
        let overlapping: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM decisions WHERE (seq >= $1 AND seq <= $2) OR id = ANY($3) ORDER BY seq",
        )
        .bind(to_i64(first, "seq")?)
        .bind(to_i64(last, "seq")?)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(pg_err("look up stored seqs and decisions"))?;
        let stored = if overlapping.is_empty() {
            Vec::new()
        } else {
            load(&mut tx, Select::Seqs(&overlapping))
                .await?
                .into_iter()
                .map(|r| Stored {
                    seq: r.decision.seq as u64,
                    content: r.rebuild_bytes(),
                    id: r.decision.id,
                })
                .collect()
        };
        let plan = plan_apply(
            &prepared,
            &batch,
            stored,
            highest.map(|h| u64::try_from(h).unwrap_or(0)),
        )?;
        let fresh = prepared.rows.len() - plan.fresh_from;
        if fresh > 0 {
            let mut cols = Columns::default();
            for (k, rows) in prepared.rows.into_iter().enumerate().skip(plan.fresh_from) {
                cols.push(rows)
                    .map_err(|reason| ProjectionError::InvalidRecord { index: k, reason })?;
            }
            cols.insert(&mut tx).await?;
        }
        tx.commit().await.map_err(pg_err("commit"))?;
        tracing::debug!(first, applied = fresh, already = plan.already, "applied");
        Ok(ApplyOutcome {
            applied: fresh as u64,
            already_present: plan.already,
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
                    conds.push(format!("(d.{col}, d.{col}_extra_ns) {op} ({a}, {b})"));
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
        let rows = RecordRows::from_record(record).map_err(invalid)?;
        let mut cols = Columns::default();
        cols.push(rows.clone()).map_err(invalid)?;
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
                .bind(cols.id[0])
                .bind(seq_i)
                .fetch_optional(&mut *tx)
                .await
                .map_err(pg_err("look up the decision id"))?;
        if let Some(other) = other {
            let stored = load(&mut tx, Select::Seqs(&[other]))
                .await?
                .pop()
                .map(|r| match r.rebuild_bytes() {
                    Ok(b) => crate::hex_hash(&leaf_hash(&b)),
                    Err(why) => format!("(rows damaged: {why})"),
                })
                .unwrap_or_default();
            return Err(ProjectionError::DecisionConflict {
                id: cols.id[0],
                stored_seq: other as u64,
                stored,
                offered_seq: seq,
                offered: crate::hex_hash(&new_leaf),
            });
        }
        let (old_bytes, old_damage) = match old.as_ref().map(RecordRows::rebuild_bytes) {
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
        .bind(cols.id[0])
        .bind(cols.version[0])
        .bind(&cols.kind[0])
        .bind(&cols.title[0])
        .bind(&cols.body[0])
        .bind(&cols.payload[0])
        .bind(cols.proposed_at[0])
        .bind(cols.proposed_ns[0])
        .bind(cols.recorded_at[0])
        .bind(cols.recorded_ns[0])
        .bind(cols.supersedes[0])
        .bind(&cols.notary_key_id[0])
        .bind(&cols.notary_alg[0])
        .bind(&cols.notary_signature[0])
        .bind(&cols.a_key_id)
        .bind(&cols.a_alg)
        .bind(&cols.a_signature)
        .bind(&cols.a_signed_at)
        .bind(&cols.a_signed_ns)
        .bind(&cols.t_sha256)
        .bind(&cols.t_media_type)
        .bind(&cols.t_size)
        .bind(&cols.t_name)
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
        let mut tx = self.read_tx().await?;
        let rows = load(&mut tx, Select::Range(a, b)).await?;
        tx.commit().await.map_err(pg_err("end read"))?;
        if rows.len() < 256 {
            return Ok(rebuild_all(rows));
        }
        tokio::task::spawn_blocking(move || rebuild_all(rows))
            .await
            .map_err(|e| ProjectionError::Unavailable(format!("rebuild task failed: {e}")))
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
