//! `cargo bench -p triplicate-verifier --bench locate`: locating one altered projection row
//! among `BENCH_LOCATE_RECORDS` (default 1,000,000) in a PostgreSQL projection by row digests
//! ([`triplicate_verifier::sweep::locate`]), against a baseline measured in the same run that
//! reads and re-derives the whole projection, as a full sweep does.
//!
//! Needs PostgreSQL (the tests' server: `TRIPLICATE_TEST_PG_URL` or 127.0.0.1:5432); it builds
//! a fresh database and drops it afterwards. Records are the stream crate's realistic samples
//! (~1.2 KB, unsigned: signatures play no part in locating).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "util/mod.rs"]
mod util;

use std::time::Instant;

use triplicate_ledger::Ledger;
use triplicate_projection::{Projection, MAX_BATCH, MAX_RANGE, PG_WRITER_ROLE};
use triplicate_verifier::sweep::{locate, LedgerLeaves, ProjectionLeaves, RowDigestSource};
use util::{env_u64, rate};

/// The shipped `triplicate` binary's allocator (`crates/cli/src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::ConnectOptions;
        let n = env_u64("BENCH_LOCATE_RECORDS", 1_000_000);
        let leaf_range = env_u64("BENCH_LEAF_RANGE", 256);
        let fanout = u32::try_from(env_u64("BENCH_FANOUT", 64)).unwrap();
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        println!(
            "triplicate-verifier locate bench: {n} records, PostgreSQL projection, \
             leaf range {leaf_range}, fanout {fanout}, {cores} cores"
        );

        let env = common::Env::new().await;
        let db = triplicate_projection::testkit::PgTestDb::create().await;
        let pg = db.projection(Some(PG_WRITER_ROLE)).await;
        let t = Instant::now();
        let mut s = 0;
        while s < n {
            let e = (s + MAX_BATCH as u64).min(n);
            let records: Vec<Vec<u8>> = (s..e)
                .map(|i| triplicate_stream::fixtures::event(i).record_bytes)
                .collect();
            env.ledger.append(s, &records).unwrap();
            pg.apply(records).await.unwrap();
            s = e;
        }
        env.ledger.flush().unwrap();
        println!("  build ledger + projection    {}", rate(n, t.elapsed()));
        let mut c = db.connect_options().connect().await.unwrap();
        sqlx::raw_sql("VACUUM ANALYZE").execute(&mut c).await.unwrap();

        // Baseline: what a full sweep reads from the projection (every row, re-derived).
        let t = Instant::now();
        let mut lo = 0;
        let mut rows = 0usize;
        while lo < n {
            let hi = (lo + MAX_RANGE).min(n);
            rows += pg.record_bytes(lo, hi).await.unwrap().len();
            lo = hi;
        }
        let base = t.elapsed();
        assert_eq!(rows as u64, n);
        println!("  baseline: re-derive all rows {}", rate(n, base));

        // Each side's digests of the whole range alone.
        let t = Instant::now();
        let ledger_top = LedgerLeaves(&env.ledger).row_digests(0..n, fanout).await.unwrap();
        println!("    ledger row digests alone   {}", rate(n, t.elapsed()));
        let t = Instant::now();
        let pg_top = ProjectionLeaves(&pg).row_digests(0..n, fanout).await.unwrap();
        println!("    PostgreSQL row digests     {}", rate(n, t.elapsed()));
        assert_eq!(ledger_top, pg_top, "the stores agree before the change");

        let altered = n * 7 / 10 + 3;
        sqlx::raw_sql(&format!(
            "SET session_replication_role = replica;
             UPDATE decisions SET title = title || '!' WHERE seq = {altered};"
        ))
        .execute(&mut c)
        .await
        .unwrap();
        let t = Instant::now();
        let found = locate(
            &LedgerLeaves(&env.ledger),
            &ProjectionLeaves(&pg),
            0..n,
            leaf_range,
            fanout,
        )
        .await
        .unwrap();
        let took = t.elapsed();
        assert_eq!(
            found.differences.iter().map(|d| d.seq).collect::<Vec<_>>(),
            vec![altered]
        );
        println!(
            "  locate one altered row       {:.3} s = {:.2}x the baseline's time",
            took.as_secs_f64(),
            took.as_secs_f64() / base.as_secs_f64()
        );
        println!(
            "    rows read and re-derived   {} of {n} = {:.4} % ({} part digests compared, {} leaf range)",
            found.leaves_read,
            found.leaves_read as f64 * 100.0 / n as f64,
            found.digests_compared,
            found.leaf_ranges_read
        );
        drop(pg);
        drop(db);
    });
}
