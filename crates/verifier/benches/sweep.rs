//! `cargo bench -p triplicate-verifier`: a full hash-only sweep of the three embedded stores,
//! against a baseline that reads the same data from the three stores without comparing it;
//! a full sweep that also checks the ledger's files (fsck); an incremental run after 1,000
//! new records; and a sweep re-verifying every signature.
//!
//! `BENCH_RECORDS` (default 100,000) records of ~1.2 KB (the stream crate's realistic samples,
//! unsigned) for the hash-only runs; `BENCH_SIGNED_RECORDS` (default 20,000) records signed by
//! two approvers and the notary for the signature run. The bench allocates with mimalloc, as
//! the `triplicate` binary that runs the verifier does.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "util/mod.rs"]
mod util;

use std::time::Instant;

use triplicate_ledger::Ledger;
use triplicate_projection::Projection;
use triplicate_stream::EventStream;
use triplicate_verifier::{run, RunRequest, VerificationPolicy, DEFAULT_BATCH};
use util::{env_u64, rate, Clock};

/// The shipped binary's allocator (`crates/cli/src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Appends the stream crate's sample records `from..to` to all three stores.
async fn fill(env: &common::Env, from: u64, to: u64) {
    let mut s = from;
    while s < to {
        let e = (s + 10_000).min(to);
        let records: Vec<Vec<u8>> = (s..e)
            .map(|i| triplicate_stream::fixtures::event(i).record_bytes)
            .collect();
        for (k, part) in records.chunks(4_096).enumerate() {
            env.ledger.append(s + k as u64 * 4_096, part).unwrap();
        }
        env.copy_downstream(&records).await;
        s = e;
    }
}

/// Reads what a sweep reads (ledger entries and stored leaf hashes, every stream event, the
/// projection's re-derived bytes), in the same batches, without hashing or comparing.
async fn baseline(env: &common::Env, n: u64) -> usize {
    let mut bytes = 0usize;
    let mut after = None;
    loop {
        let page = env.stream.read_all(after, 10_000).await.unwrap();
        after = page.next_after(after);
        bytes += page
            .events
            .iter()
            .map(|e| e.event.record_bytes.len())
            .sum::<usize>();
        if page.end || page.events.is_empty() {
            break;
        }
    }
    let mut lo = 0;
    while lo < n {
        let hi = (lo + DEFAULT_BATCH).min(n);
        let (p, l) = tokio::join!(env.projection.record_bytes(lo, hi), async {
            (
                env.ledger.entries(lo, hi).unwrap(),
                env.ledger.leaf_hashes(lo, hi).unwrap(),
            )
        });
        bytes += p
            .unwrap()
            .iter()
            .filter_map(|r| r.bytes())
            .map(<[u8]>::len)
            .sum::<usize>();
        bytes += l.0.iter().map(Vec::len).sum::<usize>() + l.1.len() * 32;
        lo = hi;
    }
    bytes
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let n = env_u64("BENCH_RECORDS", 100_000);
        let signed = env_u64("BENCH_SIGNED_RECORDS", 20_000);
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        println!("triplicate-verifier sweep bench: {n} records, {cores} cores");

        let env = common::Env::new().await;
        let t = Instant::now();
        fill(&env, 0, n).await;
        env.ledger.flush().unwrap();
        println!("  build the three stores       {}", rate(n, t.elapsed()));

        let policy = VerificationPolicy::from_toml("").unwrap();
        // Warm the page cache and SQLite's caches the same way for both.
        baseline(&env, n).await;

        // Each store alone, to see which one bounds the sweep.
        let t = Clock::start();
        let mut after = None;
        loop {
            let page = env.stream.read_all(after, 10_000).await.unwrap();
            after = page.next_after(after);
            if page.end || page.events.is_empty() {
                break;
            }
        }
        println!("    stream read_all alone      {}", t.rate(n));
        let t = Clock::start();
        let mut lo = 0;
        while lo < n {
            let hi = (lo + DEFAULT_BATCH).min(n);
            env.projection.record_bytes(lo, hi).await.unwrap();
            lo = hi;
        }
        println!("    projection re-derive alone {}", t.rate(n));
        let t = Clock::start();
        let mut lo = 0;
        while lo < n {
            let hi = (lo + DEFAULT_BATCH).min(n);
            env.ledger.entries(lo, hi).unwrap();
            env.ledger.leaf_hashes(lo, hi).unwrap();
            lo = hi;
        }
        println!("    ledger entries+hashes alone {}", t.rate(n));

        let t = Clock::start();
        let bytes = baseline(&env, n).await;
        let base = t.elapsed();
        println!(
            "  baseline: read 3 stores      {}  ({} MB)",
            t.rate(n),
            bytes / 1_000_000
        );

        let t = Clock::start();
        let report = run(env.stores(), &policy, &env.trust, &RunRequest::full())
            .await
            .unwrap();
        let sweep = t.elapsed();
        assert!(report.is_clean(), "{:?}", report.counts);
        assert_eq!(report.records_compared, n);
        println!(
            "  full sweep, hash-only        {}  = {:.2}x the baseline's time",
            t.rate(n),
            sweep.as_secs_f64() / base.as_secs_f64()
        );

        let t = Clock::start();
        let with_fsck = run(env.stores(), &policy, &env.trust, &env.full())
            .await
            .unwrap();
        assert!(with_fsck.is_clean());
        println!("  full sweep + ledger fsck     {}", t.rate(n));

        fill(&env, n, n + 1_000).await;
        let t = Instant::now();
        let inc = run(
            env.stores(),
            &policy,
            &env.trust,
            &RunRequest::incremental_after(&report),
        )
        .await
        .unwrap();
        assert!(inc.is_clean());
        println!(
            "  incremental after 1,000 new  {:.1} ms ({} records compared, window {})",
            t.elapsed().as_secs_f64() * 1e3,
            inc.records_compared,
            policy.rolling_window
        );
        drop(env);

        let env = common::Env::new().await;
        let t = Instant::now();
        env.append(signed, signed).await;
        println!(
            "  build {signed} signed records {}",
            rate(signed, t.elapsed())
        );
        let policy = VerificationPolicy::from_toml("reverify_signatures = true").unwrap();
        let t = Instant::now();
        let report = run(env.stores(), &policy, &env.trust, &RunRequest::full())
            .await
            .unwrap();
        assert!(report.is_clean(), "{:?}", report.counts);
        println!(
            "  full sweep + signatures      {}  ({} signatures)",
            rate(signed, t.elapsed()),
            report.signatures_checked
        );
    });
}
