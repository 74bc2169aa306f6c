//! `cargo bench -p triplicate-projection --bench postgres`: 100,000 realistic records (~1.3 KB:
//! `fixtures::bench_record`, real core types, pseudo-random 64-byte signatures) applied in
//! batches of 1,000 to a fresh, migrated PostgreSQL database as `triplicate_writer`, then read
//! back re-derived in ranges. Next to each, baselines measured in the same run on the same
//! server, each into a fresh database of its own:
//! - apply: the same rows, encoded beforehand, written with the apply's own binary `COPY`
//!   statements into the real tables (keys, indexes, constraints; no validation, lookups or
//!   lock): the database's share of an apply, which no client work can beat; the same `COPY`
//!   into bare tables (no keys, indexes or constraints); the earlier `INSERT … SELECT FROM
//!   UNNEST` into bare tables; `COPY` of each record's bytes into a bare `(seq, bytes)` table;
//! - reads: the same read transaction, slices and `COPY` queries with the data only received,
//!   and received and decoded into rows (no record rebuilt); re-deriving the fetched data alone,
//!   in memory; and reading stored bytes back with binary `COPY` (what a store that kept a copy
//!   of the bytes, which this one must not, could do).
//!
//! Where the server runs on this machine (Linux), CPU per record is reported too: this process
//! and every `postgres` process, from `/proc`. Wall-clock rates move with whatever else the
//! machine runs; the CPU figures and the ratios to the same-run baselines move much less.
//!
//! `BENCH_INDEX_COSTS=1` adds what each index (and foreign keys, were they declared) costs the
//! database: the same pre-encoded `COPY` into fresh databases each missing one index, in turn,
//! `BENCH_REPEAT` times (default 2).
//!
//! Needs a server: `TRIPLICATE_TEST_PG_URL` (default postgres://postgres@127.0.0.1:5432/postgres).
//! `BENCH_RECORDS` changes the count.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use futures::TryStreamExt;
use sqlx::PgPool;
use triplicate_core::Record;
use triplicate_projection::fixtures::{bench_record, bytes};
use triplicate_projection::testkit::{PgCopyRows, PgTestDb};
use triplicate_projection::{Projection, PG_READER_ROLE, PG_WRITER_ROLE};

/// The shipped `triplicate` binary's allocator (`crates/cli/src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The three tables without keys, indexes, constraints or triggers, under their real names (in
/// a database of their own), for the apply's `COPY` statements.
const BARE_REAL_NAMES: &str = "
DROP TABLE decisions, approvals, attachments;
CREATE TABLE decisions (seq bigint, id uuid, version int, kind text, title text, body text,
    payload json, proposed_at timestamptz, proposed_at_extra_ns smallint, recorded_at timestamptz,
    recorded_at_extra_ns smallint, supersedes uuid, notary_key_id text, notary_alg text,
    notary_signature bytea);
CREATE TABLE approvals (seq bigint, position smallint, key_id text, alg text, signature bytea,
    signed_at timestamptz, signed_at_extra_ns smallint);
CREATE TABLE attachments (seq bigint, position smallint, sha256 bytea, media_type text,
    size bigint, name text);
";

const BARE: &str = "
CREATE TABLE bare_decisions (seq bigint, id uuid, version int, kind text, title text, body text,
    payload json, proposed_at timestamptz, proposed_at_extra_ns smallint, recorded_at timestamptz,
    recorded_at_extra_ns smallint, supersedes uuid, notary_key_id text, notary_alg text,
    notary_signature bytea);
CREATE TABLE bare_approvals (seq bigint, position smallint, key_id text, alg text, signature bytea,
    signed_at timestamptz, signed_at_extra_ns smallint);
CREATE TABLE bare_attachments (seq bigint, position smallint, sha256 bytea, media_type text,
    size bigint, name text);
CREATE TABLE bare_bytes (seq bigint, bytes bytea);
";

fn ts(t: &triplicate_core::Timestamp) -> (time::OffsetDateTime, i16) {
    let n = t.unix_nanos();
    (
        time::OffsetDateTime::from_unix_timestamp_nanos(n.div_euclid(1000) * 1000).unwrap(),
        n.rem_euclid(1000) as i16,
    )
}

/// The baseline's plain inserts: the same columns, computed without validation.
async fn bare_insert(pool: &PgPool, records: &[Record]) {
    let mut tx = pool.begin().await.unwrap();
    let (mut seq, mut id, mut version, mut kind, mut title, mut body, mut payload) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut pa, mut pn, mut ra, mut rn, mut sup, mut nk, mut na, mut ns) = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    let (mut a_seq, mut a_pos, mut a_key, mut a_alg, mut a_sig, mut a_at, mut a_ns) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut t_seq, mut t_pos, mut t_sha, mut t_mt, mut t_size, mut t_name) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for r in records {
        let d = &r.decision;
        seq.push(r.seq as i64);
        id.push(d.id);
        version.push(r.version as i32);
        kind.push(d.kind.clone());
        title.push(d.title.clone());
        body.push(d.body.clone());
        payload.push(
            String::from_utf8(triplicate_core::canonical::to_jcs(&d.payload).unwrap()).unwrap(),
        );
        let (t, n) = ts(&d.proposed_at);
        pa.push(t);
        pn.push(n);
        let (t, n) = ts(&r.recorded_at);
        ra.push(t);
        rn.push(n);
        sup.push(d.supersedes);
        nk.push(r.notary.key_id.to_string());
        na.push(r.notary.alg.to_string());
        ns.push(r.notary.signature.clone());
        for (i, a) in r.approvals.iter().enumerate() {
            let (t, n) = ts(&a.signed_at);
            a_seq.push(r.seq as i64);
            a_pos.push(i as i16);
            a_key.push(a.key_id.to_string());
            a_alg.push(a.alg.to_string());
            a_sig.push(a.signature.clone());
            a_at.push(t);
            a_ns.push(n);
        }
        for (i, a) in d.attachments.iter().enumerate() {
            t_seq.push(r.seq as i64);
            t_pos.push(i as i16);
            t_sha.push(hex::decode(&a.sha256).unwrap());
            t_mt.push(a.media_type.clone());
            t_size.push(a.size as i64);
            t_name.push(a.name.clone());
        }
    }
    sqlx::query(
        "INSERT INTO bare_decisions SELECT s, i, v, k, t, b, p::json, pa, pn, ra, rn, su, nk, na, ns \
         FROM UNNEST($1::int8[], $2::uuid[], $3::int4[], $4::text[], $5::text[], $6::text[], \
         $7::text[], $8::timestamptz[], $9::int2[], $10::timestamptz[], $11::int2[], $12::uuid[], \
         $13::text[], $14::text[], $15::bytea[]) AS u(s, i, v, k, t, b, p, pa, pn, ra, rn, su, nk, na, ns)",
    )
    .bind(&seq).bind(&id).bind(&version).bind(&kind).bind(&title).bind(&body).bind(&payload)
    .bind(&pa).bind(&pn).bind(&ra).bind(&rn).bind(&sup).bind(&nk).bind(&na).bind(&ns)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO bare_approvals SELECT * FROM UNNEST($1::int8[], $2::int2[], $3::text[], \
         $4::text[], $5::bytea[], $6::timestamptz[], $7::int2[])",
    )
    .bind(&a_seq)
    .bind(&a_pos)
    .bind(&a_key)
    .bind(&a_alg)
    .bind(&a_sig)
    .bind(&a_at)
    .bind(&a_ns)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO bare_attachments SELECT * FROM UNNEST($1::int8[], $2::int2[], $3::bytea[], \
         $4::text[], $5::int8[], $6::text[])",
    )
    .bind(&t_seq)
    .bind(&t_pos)
    .bind(&t_sha)
    .bind(&t_mt)
    .bind(&t_size)
    .bind(&t_name)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// COPY of `(seq, bytes)` in binary format.
async fn copy_bytes(pool: &PgPool, first: u64, records: &[Vec<u8>]) {
    let mut conn = pool.acquire().await.unwrap();
    let mut buf = Vec::with_capacity(records.iter().map(|r| r.len() + 30).sum::<usize>() + 32);
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0i32.to_be_bytes());
    buf.extend_from_slice(&0i32.to_be_bytes());
    for (k, r) in records.iter().enumerate() {
        buf.extend_from_slice(&2i16.to_be_bytes());
        buf.extend_from_slice(&8i32.to_be_bytes());
        buf.extend_from_slice(&((first + k as u64) as i64).to_be_bytes());
        buf.extend_from_slice(&(r.len() as i32).to_be_bytes());
        buf.extend_from_slice(r);
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    let mut copy = conn
        .copy_in_raw("COPY bare_bytes (seq, bytes) FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    copy.send(buf).await.unwrap();
    copy.finish().await.unwrap();
}

fn rate(n: u64, secs: f64) -> String {
    format!("{:>9.0} records/s ({secs:.2} s)", n as f64 / secs)
}

/// CPU seconds used so far by this process and by every `postgres` process on this machine,
/// when `/proc` tells (Linux, local server).
fn cpu() -> Option<(f64, f64)> {
    fn ticks(stat: &str) -> Option<f64> {
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
    }
    let me = ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let mut pg = 0.0;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let path = e.path();
        if std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.trim() == "postgres") {
            pg += std::fs::read_to_string(path.join("stat"))
                .ok()
                .and_then(|s| ticks(&s))
                .unwrap_or(0.0);
        }
    }
    (pg > 0.0).then_some((me, pg))
}

/// Times `f`, with CPU per record when known.
struct Timed {
    secs: f64,
    cpu: Option<(f64, f64)>,
}

async fn timed<F: std::future::Future<Output = ()>>(n: u64, f: F) -> Timed {
    let c0 = cpu();
    let t = Instant::now();
    f.await;
    let secs = t.elapsed().as_secs_f64();
    let cpu = match (c0, cpu()) {
        (Some((a0, b0)), Some((a1, b1))) => {
            Some(((a1 - a0) * 1e6 / n as f64, (b1 - b0) * 1e6 / n as f64))
        }
        _ => None,
    };
    Timed { secs, cpu }
}

impl Timed {
    fn line(&self, n: u64, what: &str) {
        let cpu = self.cpu.map_or(String::new(), |(me, pg)| {
            format!("   CPU/record: client {me:>5.1} µs, PostgreSQL {pg:>5.1} µs")
        });
        println!("{what:<66}{}{cpu}", rate(n, self.secs));
    }
}

/// Schema variants for `BENCH_INDEX_COSTS`: the migrated schema changed by a statement.
const VARIANTS: &[(&str, &str)] = &[
    ("as migrated", ""),
    (
        "without the GIN on title words",
        "DROP INDEX decisions_title_words",
    ),
    ("without approvals_key", "DROP INDEX approvals_key"),
    ("without decisions_kind", "DROP INDEX decisions_kind"),
    (
        "without decisions_recorded",
        "DROP INDEX decisions_recorded",
    ),
    (
        "without decisions_proposed",
        "DROP INDEX decisions_proposed",
    ),
    (
        "without decisions_supersedes",
        "DROP INDEX decisions_supersedes",
    ),
    (
        "without decisions.id unique",
        "ALTER TABLE decisions DROP CONSTRAINT decisions_id_key",
    ),
    (
        "without any secondary index",
        "DROP INDEX decisions_title_words, approvals_key, decisions_kind, decisions_recorded, \
         decisions_proposed, decisions_supersedes",
    ),
    (
        "with foreign keys to decisions",
        "ALTER TABLE approvals ADD FOREIGN KEY (seq) REFERENCES decisions (seq); \
         ALTER TABLE attachments ADD FOREIGN KEY (seq) REFERENCES decisions (seq)",
    ),
    ("bare tables", BARE_REAL_NAMES),
];

/// `BENCH_INDEX_COSTS`: the database's CPU per record for each variant.
async fn index_costs(n: u64, rows: &PgCopyRows) {
    let repeat: usize = std::env::var("BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mut results: Vec<Vec<Timed>> = VARIANTS.iter().map(|_| Vec::new()).collect();
    for _ in 0..repeat {
        for (k, (_, ddl)) in VARIANTS.iter().enumerate() {
            let db = PgTestDb::create().await;
            if !ddl.is_empty() {
                sqlx::raw_sql(ddl).execute(db.owner_pool()).await.unwrap();
            }
            results[k].push(timed(n, rows.copy_into(db.owner_pool())).await);
        }
    }
    println!("COPY of pre-encoded rows by schema (PostgreSQL CPU per record, each run):");
    for ((what, _), runs) in VARIANTS.iter().zip(results) {
        let cpu: Vec<String> = runs
            .iter()
            .map(|t| {
                t.cpu
                    .map_or("n/a".to_owned(), |(_, pg)| format!("{pg:.1} µs"))
            })
            .collect();
        println!("  {what:<40}{}", cpu.join("  "));
    }
}

/// `from_canonical_bytes` over `encoded` on `threads` threads (CPU alone).
fn validate_on(encoded: &[Vec<u8>], threads: usize) -> f64 {
    let t = Instant::now();
    std::thread::scope(|sc| {
        for part in encoded.chunks(encoded.len().div_ceil(threads)) {
            sc.spawn(move || {
                for b in part {
                    std::hint::black_box(Record::from_canonical_bytes(b).unwrap());
                }
            });
        }
    });
    t.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u64 = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let batch = 1000usize;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let records: Vec<Record> = (0..n).map(bench_record).collect();
    let encoded: Vec<Vec<u8>> = records.iter().map(bytes).collect();
    let total: usize = encoded.iter().map(Vec::len).sum();

    // CPU alone: validating (once per applied record) and canonicalising.
    let validation_1 = validate_on(&encoded, 1);
    let validation_all = validate_on(&encoded, cores);
    let t = Instant::now();
    for r in &records {
        std::hint::black_box(r.to_bytes().unwrap());
    }
    let canonicalise = t.elapsed().as_secs_f64();

    let db = PgTestDb::create().await;
    let p = db.projection(Some(PG_WRITER_ROLE)).await;
    let owner = db.owner_pool();
    sqlx::raw_sql(BARE).execute(owner).await.unwrap();
    let (version, tls): (String, Option<bool>) = (
        sqlx::query_scalar("SHOW server_version")
            .fetch_one(owner)
            .await
            .unwrap(),
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_optional(owner)
            .await
            .unwrap(),
    );

    // Apply, then the baselines, each on a fresh database.
    let apply = timed(n, async {
        for chunk in encoded.chunks(batch) {
            p.apply(chunk.to_vec()).await.unwrap();
        }
    })
    .await;
    let rows = PgCopyRows::encode(&records, batch);
    let real = PgTestDb::create().await;
    let copy_real = timed(n, rows.copy_into(real.owner_pool())).await;
    drop(real);
    let bare_db = PgTestDb::create().await;
    sqlx::raw_sql(BARE_REAL_NAMES)
        .execute(bare_db.owner_pool())
        .await
        .unwrap();
    let copy_bare = timed(n, rows.copy_into(bare_db.owner_pool())).await;
    drop(bare_db);
    let unnest = timed(n, async {
        for chunk in records.chunks(batch) {
            bare_insert(owner, chunk).await;
        }
    })
    .await;
    let copy_bytes_t = timed(n, async {
        for (i, chunk) in encoded.chunks(batch).enumerate() {
            copy_bytes(owner, (i * batch) as u64, chunk).await;
        }
    })
    .await;

    sqlx::raw_sql("VACUUM ANALYZE decisions, approvals, attachments, bare_bytes")
        .execute(owner)
        .await
        .unwrap();
    sqlx::raw_sql("CREATE INDEX ON bare_bytes (seq)")
        .execute(owner)
        .await
        .unwrap();
    let reader = db.projection(Some(PG_READER_ROLE)).await;

    // Reads: re-derived, then the baselines in the same shape, twice over in turn (the first
    // round warms the cache), reporting the second.
    let ranges = |step: u64| {
        (0..n.div_ceil(step))
            .map(move |k| (k * step, ((k + 1) * step).min(n)))
            .collect::<Vec<_>>()
    };
    let mut reads = Vec::new();
    let mut received = None;
    let mut decoded = None;
    for round in 0..2 {
        reads.clear();
        for step in [1_000u64, 10_000] {
            let got = std::cell::Cell::new(0usize);
            let t = timed(n, async {
                for (a, b) in ranges(step) {
                    let rs = reader.record_bytes(a, b).await.unwrap();
                    got.set(got.get() + rs.len());
                    debug_assert!(rs.iter().all(|r| r.bytes().is_some()));
                }
            })
            .await;
            assert_eq!(got.get() as u64, n);
            reads.push((step, t));
        }
        for (decode, slot) in [(false, &mut received), (true, &mut decoded)] {
            let got = std::cell::Cell::new(0usize);
            let t = timed(n, async {
                for (a, b) in ranges(10_000) {
                    got.set(
                        got.get() + reader.read_without_rederiving(a, b, decode).await.unwrap(),
                    );
                }
            })
            .await;
            assert_eq!(got.get() as u64, n);
            if round == 1 {
                *slot = Some(t);
            }
        }
    }
    // Spot check: what was read is what was applied.
    for r in reader.record_bytes(n / 2, n / 2 + 10).await.unwrap() {
        assert_eq!(r.bytes(), Some(encoded[r.seq as usize].as_slice()));
    }
    // Re-deriving alone: the fetched data in memory, on one thread and on every core.
    let mut rederive = Vec::new();
    for threads in [1, cores] {
        let mut fetched = Vec::new();
        for (a, b) in ranges(10_000) {
            fetched.extend(reader.fetch_for_baseline(a, b).await.unwrap());
        }
        let t = Instant::now();
        let got: usize = fetched.into_iter().map(|f| f.rederive(threads)).sum();
        rederive.push((threads, t.elapsed().as_secs_f64()));
        assert_eq!(got as u64, n);
    }
    // Stored bytes read back by COPY.
    let got = std::cell::Cell::new(0usize);
    let stored_bytes = timed(n, async {
        let mut conn = owner.acquire().await.unwrap();
        for (a, b) in ranges(10_000) {
            let mut s = conn
                .copy_out_raw(&format!(
                    "COPY (SELECT bytes FROM bare_bytes WHERE seq >= {a} AND seq < {b} ORDER BY seq) TO STDOUT (FORMAT binary)"
                ))
                .await
                .unwrap();
            while let Some(chunk) = s.try_next().await.unwrap() {
                got.set(got.get() + chunk.len());
            }
        }
    })
    .await;
    assert!(got.get() >= total, "the stored bytes came back");

    println!(
        "PostgreSQL projection: {n} records ({} bytes each on average), batches of {batch}; \
         PostgreSQL {version}, TLS {}, {cores} cores",
        total / n as usize,
        match tls {
            Some(true) => "on",
            Some(false) => "off",
            None => "unknown",
        }
    );
    apply.line(
        n,
        "apply as triplicate_writer (validated, idempotent, indexed)",
    );
    copy_real.line(n, "baseline: apply's COPY of pre-encoded rows, real tables");
    copy_bare.line(n, "baseline: apply's COPY of pre-encoded rows, bare tables");
    unnest.line(n, "baseline: INSERT … SELECT FROM UNNEST, bare tables");
    copy_bytes_t.line(n, "baseline: COPY of the record bytes into (seq, bytes)");
    println!(
        "  apply / COPY real tables: {:.2}   apply / COPY bare: {:.2}   apply / UNNEST bare: {:.2}   apply / COPY bytes: {:.2}",
        copy_real.secs / apply.secs,
        copy_bare.secs / apply.secs,
        unnest.secs / apply.secs,
        copy_bytes_t.secs / apply.secs
    );
    for (step, t) in &reads {
        t.line(n, &format!("record_bytes re-derived, ranges of {step}"));
    }
    let (received, decoded) = (received.unwrap(), decoded.unwrap());
    received.line(
        n,
        "baseline: same reads, data received only (ranges of 10000)",
    );
    decoded.line(n, "baseline: same reads, received and decoded, not rebuilt");
    stored_bytes.line(
        n,
        "baseline: stored bytes read back by COPY (ranges of 10000)",
    );
    let r10 = &reads[1].1;
    println!(
        "  re-derived / received only: {:.2}   re-derived / decoded: {:.2}   re-derived / stored bytes: {:.2}",
        received.secs / r10.secs,
        decoded.secs / r10.secs,
        stored_bytes.secs / r10.secs
    );
    println!(
        "{:<66}{}",
        "CPU alone, one thread: validate (from_canonical_bytes)",
        rate(n, validation_1)
    );
    println!(
        "{:<66}{}",
        format!("CPU alone, {cores} threads: validate"),
        rate(n, validation_all)
    );
    for (threads, secs) in &rederive {
        println!(
            "{:<66}{}",
            format!("CPU alone, {threads} thread(s): decode + re-derive fetched rows"),
            rate(n, *secs)
        );
    }
    println!(
        "{:<66}{}",
        "CPU alone, one thread: canonicalise (Record::to_bytes)",
        rate(n, canonicalise)
    );
    if std::env::var("BENCH_INDEX_COSTS").is_ok() {
        index_costs(n, &rows).await;
    }
}
