//! Test helper for `tests/crash.rs`: opens a ledger and appends batches of predictable entries
//! until killed, printing `ack <size>` after each append returns (that is, once it is durable).
//! A second thread flushes every few milliseconds meanwhile, as the server's flusher does, so
//! kills land inside flushes that run beside appends too.
//! Not part of the product; built only with the `testkit` feature.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::sync::Arc;

use triplicate_keys::SoftwareSigner;
use triplicate_ledger::{EmbeddedLedger, Ledger, LedgerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or("usage: ledger-crash-child DIR KEY SEED")?;
    let key = args.next().ok_or("missing KEY")?;
    let seed: u64 = args.next().ok_or("missing SEED")?.parse()?;
    let signer = Arc::new(SoftwareSigner::from_pem_file(std::path::Path::new(&key))?);
    let mut config = LedgerConfig::new(dir, "triplicate.invalid/crash-test");
    // Small, so flushes (and WAL restarts) happen often and get killed too.
    config.flush_bytes = 16 * 1024;
    let ledger = EmbeddedLedger::open(config, signer)?;
    std::thread::scope(|s| {
        s.spawn(|| loop {
            std::thread::sleep(std::time::Duration::from_millis(3));
            if let Err(e) = ledger.flush() {
                eprintln!("flush: {e}");
                std::process::exit(3);
            }
        });
        append_forever(&ledger, seed)
    })
}

fn append_forever(ledger: &EmbeddedLedger, seed: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut out = std::io::stdout().lock();
    let mut x = seed | 1;
    loop {
        // xorshift: batch sizes 1..=40
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = 1 + x % 40;
        let start = ledger.tree_size();
        let entries: Vec<Vec<u8>> = (start..start + n).map(crash_entry).collect();
        ledger.append(start, &entries)?;
        writeln!(out, "ack {}", start + n)?;
        out.flush()?;
    }
}

/// The entry at index `i`; the test checks every one of them after each crash.
fn crash_entry(i: u64) -> Vec<u8> {
    format!("crash-test entry {i} {}", "x".repeat((i % 97) as usize)).into_bytes()
}
