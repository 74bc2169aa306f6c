//! `cargo bench -p triplicate-projection --bench sqlite`: 100,000 realistic records (~1.2 KB:
//! `fixtures::bench_record`, real core types, pseudo-random 64-byte signatures) applied in
//! batches of 1,000 to a fresh `projection.db` (WAL, `synchronous=FULL`), then read back
//! re-derived in ranges. Next to each, baselines measured in the same run with the same
//! durability settings:
//! - the same rows with multi-row `INSERT`s into bare copies of the three tables (no keys,
//!   indexes, constraints, triggers or full-text index; no validation, no lookups), one
//!   transaction per batch;
//! - each record's bytes into a bare `(seq, bytes)` table, the cheapest way to land the same
//!   data;
//! - reading those stored bytes back.
//!
//! `BENCH_RECORDS` changes the count.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use rusqlite::{params_from_iter, Connection};
use triplicate_core::Record;
use triplicate_projection::fixtures::{bench_record, bytes};
use triplicate_projection::{Projection, SqliteProjection};

/// The shipped `triplicate` binary's allocator (`crates/cli/src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BARE: &str = "
CREATE TABLE bare_decisions (seq, id, version, kind, title, body, payload, proposed_at_s,
    proposed_at_ns, recorded_at_s, recorded_at_ns, supersedes, notary_key_id, notary_alg,
    notary_signature);
CREATE TABLE bare_approvals (seq, position, key_id, alg, signature, signed_at_s, signed_at_ns);
CREATE TABLE bare_attachments (seq, position, sha256, media_type, size, name);
CREATE TABLE bare_bytes (seq, bytes);
";

fn split(t: &triplicate_core::Timestamp) -> (i64, i64) {
    let n = t.unix_nanos();
    (
        n.div_euclid(1_000_000_000) as i64,
        n.rem_euclid(1_000_000_000) as i64,
    )
}

fn bare_insert(c: &mut Connection, records: &[Record]) {
    use rusqlite::types::Value;
    let tx = c.transaction().unwrap();
    for chunk in records.chunks(100) {
        let mut d: Vec<Value> = Vec::new();
        let mut a: Vec<Value> = Vec::new();
        let mut t: Vec<Value> = Vec::new();
        for r in chunk {
            let x = &r.decision;
            let (ps, pn) = split(&x.proposed_at);
            let (rs, rn) = split(&r.recorded_at);
            d.extend([
                Value::Integer(r.seq as i64),
                Value::Text(x.id.to_string()),
                Value::Integer(r.version.into()),
                Value::Text(x.kind.clone()),
                Value::Text(x.title.clone()),
                Value::Text(x.body.clone()),
                Value::Text(
                    String::from_utf8(triplicate_core::canonical::to_jcs(&x.payload).unwrap())
                        .unwrap(),
                ),
                Value::Integer(ps),
                Value::Integer(pn),
                Value::Integer(rs),
                Value::Integer(rn),
                x.supersedes
                    .map_or(Value::Null, |s| Value::Text(s.to_string())),
                Value::Text(r.notary.key_id.to_string()),
                Value::Text(r.notary.alg.to_string()),
                Value::Blob(r.notary.signature.clone()),
            ]);
            for (i, p) in r.approvals.iter().enumerate() {
                let (ss, sn) = split(&p.signed_at);
                a.extend([
                    Value::Integer(r.seq as i64),
                    Value::Integer(i as i64),
                    Value::Text(p.key_id.to_string()),
                    Value::Text(p.alg.to_string()),
                    Value::Blob(p.signature.clone()),
                    Value::Integer(ss),
                    Value::Integer(sn),
                ]);
            }
            for (i, m) in x.attachments.iter().enumerate() {
                t.extend([
                    Value::Integer(r.seq as i64),
                    Value::Integer(i as i64),
                    Value::Blob(hex::decode(&m.sha256).unwrap()),
                    Value::Text(m.media_type.clone()),
                    Value::Integer(m.size as i64),
                    m.name.clone().map_or(Value::Null, Value::Text),
                ]);
            }
        }
        for (table, width, values) in [
            ("bare_decisions", 15, d),
            ("bare_approvals", 7, a),
            ("bare_attachments", 6, t),
        ] {
            if values.is_empty() {
                continue;
            }
            let row = format!("({})", vec!["?"; width].join(","));
            let sql = format!(
                "INSERT INTO {table} VALUES {}",
                vec![row; values.len() / width].join(",")
            );
            tx.prepare_cached(&sql)
                .unwrap()
                .execute(params_from_iter(values))
                .unwrap();
        }
    }
    tx.commit().unwrap();
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

    let dir = tempfile::tempdir().unwrap();
    let p = SqliteProjection::open(dir.path()).await.unwrap();
    let t = Instant::now();
    for chunk in encoded.chunks(batch) {
        p.apply(chunk.to_vec()).await.unwrap();
    }
    let apply = t.elapsed().as_secs_f64();

    let mut base = Connection::open(dir.path().join("baseline.db")).unwrap();
    base.pragma_update(None, "journal_mode", "WAL").unwrap();
    base.pragma_update(None, "synchronous", "FULL").unwrap();
    base.execute_batch(BARE).unwrap();
    let t = Instant::now();
    for chunk in records.chunks(batch) {
        bare_insert(&mut base, chunk);
    }
    let bare = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for (i, chunk) in encoded.chunks(batch).enumerate() {
        let tx = base.transaction().unwrap();
        {
            let mut st = tx
                .prepare_cached("INSERT INTO bare_bytes VALUES (?1, ?2)")
                .unwrap();
            for (k, b) in chunk.iter().enumerate() {
                st.execute(rusqlite::params![(i * batch + k) as i64, b])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let raw = t.elapsed().as_secs_f64();

    let mut reads = Vec::new();
    for range in [1_000u64, 10_000] {
        let t = Instant::now();
        let mut got = 0u64;
        let mut start = 0;
        while start < n {
            let end = (start + range).min(n);
            got += p.record_bytes(start, end).await.unwrap().len() as u64;
            start = end;
        }
        assert_eq!(got, n);
        reads.push((range, t.elapsed().as_secs_f64()));
    }
    for r in p.record_bytes(n / 2, n / 2 + 10).await.unwrap() {
        assert_eq!(r.bytes(), Some(encoded[r.seq as usize].as_slice()));
    }
    let t = Instant::now();
    let mut got = 0u64;
    {
        let mut st = base
            .prepare("SELECT bytes FROM bare_bytes WHERE rowid > ?1 AND rowid <= ?2")
            .unwrap();
        let mut start = 0i64;
        while start < n as i64 {
            let rows = st
                .query_map([start, start + 10_000], |r| r.get::<_, Vec<u8>>(0))
                .unwrap();
            for r in rows {
                std::hint::black_box(r.unwrap());
                got += 1;
            }
            start += 10_000;
        }
    }
    let stored = t.elapsed().as_secs_f64();
    assert_eq!(got, n);

    println!(
        "SQLite projection: {n} records ({} bytes each on average), batches of {batch}",
        total / n as usize
    );
    println!(
        "apply (validated, idempotent, indexed, FTS):                  {}",
        rate(n, apply)
    );
    println!(
        "baseline: same rows, multi-row INSERTs into bare tables:      {}",
        rate(n, bare)
    );
    println!(
        "baseline: record bytes into a bare table:                     {}",
        rate(n, raw)
    );
    println!(
        "  apply / bare rows: {:.2}   apply / bare bytes: {:.2}",
        bare / apply,
        raw / apply
    );
    for (range, secs) in &reads {
        println!(
            "record_bytes re-derived, ranges of {range:>6}:                 {}",
            rate(n, *secs)
        );
    }
    println!(
        "baseline: stored bytes read back (ranges of 10000):           {}",
        rate(n, stored)
    );
}
