//! `cargo bench -p triplicate-recovery --bench rebuild`: the rebuild paths of recovery drills
//! and restores. A ledger of `BENCH_RECORDS` (default 100,000) realistic records
//! (`fixtures::bench_record`, ~1.3 KB), then, each into a fresh store:
//! - `fill_projection` into PostgreSQL (a fresh database, as `triplicate_writer`) and SQLite;
//! - `fill_stream` into the embedded SQLite stream;
//!
//! next to baselines measured in the same run: reading every entry from the ledger in the
//! fill's chunks (what a rebuild cannot avoid), and the projection's own `apply` of the same
//! records already in memory, in the fill's batches (a rebuild's store-side bound). Ratios
//! are to those baselines; wall-clock rates move with the machine.
//!
//! Needs a PostgreSQL server: `TRIPLICATE_TEST_PG_URL` (default
//! postgres://postgres@127.0.0.1:5432/postgres).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use triplicate_keys::{Signer, SoftwareSigner};
use triplicate_ledger::{EmbeddedLedger, Ledger, LedgerConfig};
use triplicate_projection::fixtures::{bench_record, bytes};
use triplicate_projection::testkit::PgTestDb;
use triplicate_projection::{
    PgOptions, PgProjection, Projection, SqliteProjection, PG_WRITER_ROLE,
};
use triplicate_recovery::{fill_projection, fill_stream};
use triplicate_stream::SqliteStream;

/// The shipped `triplicate` binary's allocator (`crates/cli/src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHUNK: u64 = 5_000;

fn rate(n: u64, secs: f64) -> f64 {
    n as f64 / secs
}

fn main() {
    let n: u64 = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let notary: Arc<dyn Signer> = Arc::new(SoftwareSigner::generate("bench-notary"));
    let ledger = EmbeddedLedger::open(
        LedgerConfig::new(tmp.path().join("ledger"), "bench.invalid/log"),
        notary,
    )
    .unwrap();
    let t = Instant::now();
    let mut s = 0;
    while s < n {
        let e = (s + 1_000).min(n);
        let batch: Vec<Vec<u8>> = (s..e).map(|i| bytes(&bench_record(i))).collect();
        ledger.append(s, &batch).unwrap();
        s = e;
    }
    ledger.flush().unwrap();
    println!(
        "ledger of {n} records written in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let ledger: Arc<dyn Ledger> = Arc::new(ledger);

    // Baseline 1: read every entry, in the fill's chunks.
    let t = Instant::now();
    let mut all = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let mut s = 0;
    while s < n {
        let e = (s + CHUNK).min(n);
        all.push(ledger.entries(s, e).unwrap());
        s = e;
    }
    let read = t.elapsed().as_secs_f64();
    println!("\n| path | records/s | ratio |");
    println!("|---|---|---|");
    println!(
        "| baseline: read the ledger in chunks of {CHUNK} | {:.0} | 1.00 (read) |",
        rate(n, read)
    );

    rt.block_on(async {
        // PostgreSQL: the projection's own apply of the records in memory, then the fill.
        let db = PgTestDb::create().await;
        let o = db.connect_options();
        let url = format!(
            "postgres://{}@{}:{}/{}",
            o.get_username(),
            o.get_host(),
            o.get_port(),
            db.name()
        );
        let pg = PgProjection::connect(&url, PgOptions::with_role(PG_WRITER_ROLE))
            .await
            .unwrap();
        let t = Instant::now();
        for chunk in &all {
            pg.apply(chunk.clone()).await.unwrap();
        }
        let apply_pg = t.elapsed().as_secs_f64();
        drop(pg);
        drop(db);
        let db = PgTestDb::create().await;
        let o = db.connect_options();
        let url = format!(
            "postgres://{}@{}:{}/{}",
            o.get_username(),
            o.get_host(),
            o.get_port(),
            db.name()
        );
        let pg = PgProjection::connect(&url, PgOptions::with_role(PG_WRITER_ROLE))
            .await
            .unwrap();
        let f = fill_projection(ledger.clone(), &pg, n).await.unwrap();
        let fill_pg = f.elapsed.as_secs_f64();
        println!(
            "| baseline: PostgreSQL apply of the records in memory, batches of {CHUNK} | {:.0} | 1.00 (apply) |",
            rate(n, apply_pg)
        );
        println!(
            "| **fill_projection, PostgreSQL** | **{:.0}** | {:.2} of apply, {:.2} of read |",
            rate(n, fill_pg),
            apply_pg / fill_pg,
            read / fill_pg
        );

        let dir = tempfile::tempdir().unwrap();
        let sq = SqliteProjection::open(dir.path()).await.unwrap();
        let t = Instant::now();
        for chunk in &all {
            sq.apply(chunk.clone()).await.unwrap();
        }
        let apply_sq = t.elapsed().as_secs_f64();
        let dir = tempfile::tempdir().unwrap();
        let sq = SqliteProjection::open(dir.path()).await.unwrap();
        let f = fill_projection(ledger.clone(), &sq, n).await.unwrap();
        let fill_sq = f.elapsed.as_secs_f64();
        println!(
            "| baseline: SQLite apply of the records in memory | {:.0} | 1.00 (apply) |",
            rate(n, apply_sq)
        );
        println!(
            "| **fill_projection, SQLite** | **{:.0}** | {:.2} of apply, {:.2} of read |",
            rate(n, fill_sq),
            apply_sq / fill_sq,
            read / fill_sq
        );

        let dir = tempfile::tempdir().unwrap();
        let st = SqliteStream::open(dir.path()).await.unwrap();
        let f = fill_stream(ledger.clone(), &st, n).await.unwrap();
        let fill_st = f.elapsed.as_secs_f64();
        println!(
            "| **fill_stream, SQLite** | **{:.0}** | {:.2} of read |",
            rate(n, fill_st),
            read / fill_st
        );
    });
}
