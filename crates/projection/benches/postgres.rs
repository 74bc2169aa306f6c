//! `cargo bench -p triplicate-projection --bench postgres`: 100,000 realistic records (~1.2 KB:
//! `fixtures::bench_record`, real core types, pseudo-random 64-byte signatures) applied in
//! batches of 1,000 to a fresh, migrated PostgreSQL database as `triplicate_writer`, then read
//! back re-derived in ranges. Next to each, baselines measured in the same run on the same
//! server:
//! - the same rows with the same `INSERT … SELECT FROM UNNEST` statements into bare copies of
//!   the three tables (no keys, indexes, constraints or triggers; no validation, no lookups);
//! - `COPY` of each record's bytes into a bare `(seq, bytes)` table, the cheapest way to land
//!   the same data;
//! - reading the same rows without rebuilding records, and reading the stored bytes back with
//!   binary `COPY` (what a store that kept a copy of the bytes, which this one must not, could
//!   do at best).
//!
//! Needs a server: `TRIPLICATE_TEST_PG_URL` (default postgres://postgres@127.0.0.1:5432/postgres).
//! `BENCH_RECORDS` changes the count.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use futures::TryStreamExt;
use sqlx::{PgPool, Row};
use triplicate_core::Record;
use triplicate_projection::fixtures::{bench_record, bytes};
use triplicate_projection::testkit::PgTestDb;
use triplicate_projection::{Projection, PG_WRITER_ROLE};

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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u64 = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let batch = 1000usize;
    let records: Vec<Record> = (0..n).map(bench_record).collect();
    let encoded: Vec<Vec<u8>> = records.iter().map(bytes).collect();
    let total: usize = encoded.iter().map(Vec::len).sum();

    // CPU only, single thread: what validating and canonicalising cost on their own.
    let t = Instant::now();
    for b in &encoded {
        std::hint::black_box(Record::from_canonical_bytes(b).unwrap());
    }
    let validation = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for r in &records {
        std::hint::black_box(r.to_bytes().unwrap());
    }
    let canonicalise = t.elapsed().as_secs_f64();

    let db = PgTestDb::create().await;
    let p = db.projection(Some(PG_WRITER_ROLE)).await;
    let owner = db.owner_pool();
    sqlx::raw_sql(BARE).execute(owner).await.unwrap();

    let t = Instant::now();
    for chunk in encoded.chunks(batch) {
        p.apply(chunk.to_vec()).await.unwrap();
    }
    let apply = t.elapsed().as_secs_f64();

    let t = Instant::now();
    for chunk in records.chunks(batch) {
        bare_insert(owner, chunk).await;
    }
    let bare = t.elapsed().as_secs_f64();

    let t = Instant::now();
    for (i, chunk) in encoded.chunks(batch).enumerate() {
        copy_bytes(owner, (i * batch) as u64, chunk).await;
    }
    let copy = t.elapsed().as_secs_f64();

    sqlx::raw_sql("VACUUM ANALYZE decisions, approvals, attachments, bare_decisions, bare_approvals, bare_attachments, bare_bytes")
        .execute(owner)
        .await
        .unwrap();

    let mut reads = Vec::new();
    for range in [1_000u64, 10_000] {
        let t = Instant::now();
        let mut got = 0u64;
        let mut start = 0;
        while start < n {
            let end = (start + range).min(n);
            let rs = p.record_bytes(start, end).await.unwrap();
            got += rs.len() as u64;
            debug_assert!(rs.iter().all(|r| r.bytes().is_some()));
            start = end;
        }
        assert_eq!(got, n);
        reads.push((range, t.elapsed().as_secs_f64()));
    }
    // Spot check: what was read is what was applied.
    let check = p.record_bytes(n / 2, n / 2 + 10).await.unwrap();
    for r in check {
        assert_eq!(r.bytes(), Some(encoded[r.seq as usize].as_slice()));
    }

    // Baseline reads: the same three queries per range, rows decoded, no records rebuilt.
    let t = Instant::now();
    let mut start = 0i64;
    let mut rows = 0u64;
    while start < n as i64 {
        let end = start + 10_000;
        let mut tx = owner.begin().await.unwrap();
        for sql in [
            "SELECT seq, id, version, kind, title, body, payload::text, proposed_at, proposed_at_extra_ns, recorded_at, recorded_at_extra_ns, supersedes, notary_key_id, notary_alg, notary_signature FROM decisions WHERE seq >= $1 AND seq < $2 ORDER BY seq",
            "SELECT seq, position, key_id, alg, signature, signed_at, signed_at_extra_ns FROM approvals WHERE seq >= $1 AND seq < $2 ORDER BY seq, position",
            "SELECT seq, position, sha256, media_type, size, name FROM attachments WHERE seq >= $1 AND seq < $2 ORDER BY seq, position",
        ] {
            let mut s = sqlx::query(sql).bind(start).bind(end).fetch(&mut *tx);
            while let Some(row) = s.try_next().await.unwrap() {
                std::hint::black_box(row.len());
                rows += 1;
            }
        }
        tx.commit().await.unwrap();
        start = end;
    }
    let fetch_only = t.elapsed().as_secs_f64();
    sqlx::raw_sql("CREATE INDEX ON bare_bytes (seq)")
        .execute(owner)
        .await
        .unwrap();
    sqlx::raw_sql("VACUUM ANALYZE bare_bytes")
        .execute(owner)
        .await
        .unwrap();
    let t = Instant::now();
    let mut start = 0i64;
    let mut got = 0usize;
    let mut conn = owner.acquire().await.unwrap();
    while start < n as i64 {
        let end = start + 10_000;
        let mut s = conn
            .copy_out_raw(&format!(
                "COPY (SELECT bytes FROM bare_bytes WHERE seq >= {start} AND seq < {end} ORDER BY seq) TO STDOUT (FORMAT binary)"
            ))
            .await
            .unwrap();
        while let Some(chunk) = s.try_next().await.unwrap() {
            got += chunk.len();
        }
        start = end;
    }
    let stored_bytes = t.elapsed().as_secs_f64();
    assert!(got >= total, "the stored bytes came back");
    drop(conn);

    println!(
        "PostgreSQL projection: {n} records ({} bytes each on average), batches of {batch}",
        total / n as usize
    );
    println!(
        "apply as triplicate_writer (validated, idempotent, indexed):   {}",
        rate(n, apply)
    );
    println!(
        "baseline: same UNNEST inserts into bare tables:                 {}",
        rate(n, bare)
    );
    println!(
        "baseline: COPY (binary) of the record bytes into a bare table:  {}",
        rate(n, copy)
    );
    println!(
        "  apply / bare UNNEST: {:.2}   apply / COPY: {:.2}",
        bare / apply,
        copy / apply
    );
    for (range, secs) in &reads {
        println!(
            "record_bytes re-derived, ranges of {range:>6}:                   {}",
            rate(n, *secs)
        );
    }
    println!(
        "baseline: the same rows fetched, not rebuilt (ranges of 10000): {} ({rows} rows)",
        rate(n, fetch_only)
    );
    println!(
        "baseline: stored bytes read back by COPY (ranges of 10000):     {}",
        rate(n, stored_bytes)
    );
    println!(
        "CPU alone, one thread: validate (from_canonical_bytes)          {}",
        rate(n, validation)
    );
    println!(
        "CPU alone, one thread: canonicalise (Record::to_bytes)          {}",
        rate(n, canonicalise)
    );
}
