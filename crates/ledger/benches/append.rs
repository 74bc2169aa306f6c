//! `cargo bench -p triplicate-ledger`: appends synthetic 1.2 KB entries in batches of 1,000 and
//! reports the rate beside the machine bound measured in the same run (SHA-256 of the same
//! bytes + a sequential write of the same volume with one fdatasync per batch), then the rate of
//! inclusion proofs. `triplicate ledger bench` does the same with real, signed records.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Instant;

use triplicate_keys::SoftwareSigner;
use triplicate_ledger::{EmbeddedLedger, Ledger, LedgerConfig};

fn main() {
    let n: u64 = std::env::var("BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let batch = 1000usize;
    let entry_bytes: usize = std::env::var("BENCH_ENTRY_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1200);
    let make = |i: u64| {
        let mut e = format!("{{\"seq\":{i},").into_bytes();
        e.resize(entry_bytes, b'a' + (i % 26) as u8);
        e
    };
    // With BENCH_FLAT_MEMORY=1 entries are generated batch by batch and nothing else runs, so
    // the peak resident memory reported is the ledger's own.
    if std::env::var("BENCH_FLAT_MEMORY").is_ok() {
        let dir = tempfile::tempdir().expect("tempdir");
        let signer = Arc::new(SoftwareSigner::generate("bench-notary"));
        let l = EmbeddedLedger::open(LedgerConfig::new(dir.path().join("l"), "bench"), signer)
            .expect("open");
        let t = Instant::now();
        let mut s = 0u64;
        while s < n {
            let k = (batch as u64).min(n - s);
            let e: Vec<Vec<u8>> = (s..s + k).map(make).collect();
            l.append(s, &e).expect("append");
            s += k;
        }
        l.flush().expect("flush");
        let secs = t.elapsed().as_secs_f64();
        for i in [0, n / 2, n - 1] {
            l.inclusion_proof(i, n).expect("proof");
        }
        println!(
            "flat-memory run: {n} entries of {entry_bytes} bytes in {secs:.1} s; peak RSS {} KiB",
            peak_rss_kib()
        );
        return;
    }
    let entries: Vec<Vec<u8>> = (0..n).map(make).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = Arc::new(SoftwareSigner::generate("bench-notary"));

    let t = Instant::now();
    {
        let l = EmbeddedLedger::open(LedgerConfig::new(dir.path().join("l"), "bench"), signer)
            .expect("open");
        let mut s = 0u64;
        for c in entries.chunks(batch) {
            l.append(s, c).expect("append");
            s += c.len() as u64;
        }
        l.flush().expect("flush");
    }
    let ledger = t.elapsed().as_secs_f64();

    let bound = triplicate_ledger::bound::measure(&entries, batch, dir.path()).expect("bound");
    let (sha, write) = (bound.sha256_seconds, bound.write_seconds);

    let ro = EmbeddedLedger::open_read_only(&dir.path().join("l"), None).expect("open ro");
    let proofs: u64 = std::env::var("BENCH_PROOFS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let t = Instant::now();
    let mut x = 88172645463325252u64;
    for _ in 0..proofs {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ro.inclusion_proof(x % n, n).expect("proof");
    }
    let proof = t.elapsed().as_secs_f64();

    println!("entries {n}, batch {batch}, {entry_bytes} bytes each");
    println!(
        "ledger append:   {:>10.0} entries/s ({ledger:.3} s)",
        n as f64 / ledger
    );
    println!(
        "machine bound:   {:>10.0} entries/s (sha256 {sha:.3} s + write/fdatasync {write:.3} s)",
        n as f64 / (sha + write)
    );
    println!("ratio ledger/bound: {:.2}", (sha + write) / ledger);
    println!("inclusion proofs: {:>9.0}/s", proofs as f64 / proof);
}

/// Peak resident set size of this process (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
