//! `triplicate ledger bench`: append N realistic records to a fresh embedded ledger and compare
//! the rate with what this machine can do at best for the same bytes, measured in the same run:
//! SHA-256 over every entry plus a sequential write of the same volume with one `fdatasync` per
//! batch (the durability the ledger gives). Timings are reported, never asserted.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use rand::Rng;
use triplicate_keys::{note::note_verifier_key, Signer, SoftwareSigner};
use triplicate_ledger::proof::{leaf_hash, verify_inclusion};
use triplicate_ledger::{EmbeddedLedger, Ledger, LedgerConfig};

use crate::sample::Fixture;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Directory for the fresh ledger (`<D>/ledger` must not exist yet).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Records to append.
    #[arg(long, default_value_t = 100_000)]
    pub entries: u64,
    /// Records per append (one durable commit each).
    #[arg(long, default_value_t = 1_000)]
    pub batch: u64,
    /// Inclusion proofs to generate after the appends.
    #[arg(long, default_value_t = 100_000)]
    pub proofs: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn prepare(n: u64, notary: Arc<dyn Signer>) -> anyhow::Result<Vec<Vec<u8>>> {
    let fixture = Arc::new(Fixture::new(notary)?);
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get()) as u64;
    let chunk = n.div_ceil(threads.max(1)).max(1);
    let mut out = Vec::with_capacity(n as usize);
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let fixture = fixture.clone();
                s.spawn(move || -> anyhow::Result<Vec<Vec<u8>>> {
                    let lo = (t * chunk).min(n);
                    let hi = ((t + 1) * chunk).min(n);
                    let mut v = Vec::with_capacity((hi - lo) as usize);
                    for seq in lo..hi {
                        let d = fixture.decision(seq)?;
                        let a = fixture.approvals(&d)?;
                        v.push(fixture.record(seq, d, a)?.to_bytes()?);
                    }
                    Ok(v)
                })
            })
            .collect();
        for h in handles {
            let part = h
                .join()
                .map_err(|_| anyhow::anyhow!("record preparation thread panicked"))??;
            out.extend(part);
        }
        Ok(())
    })?;
    Ok(out)
}

pub fn run(a: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        a.entries > 0 && a.batch > 0,
        "--entries and --batch must be positive"
    );
    let dir = crate::ledger_cmd::ledger_dir(&a.data_dir);
    anyhow::ensure!(
        !dir.exists(),
        "{} exists; the benchmark needs a fresh ledger",
        dir.display()
    );
    let notary: Arc<dyn Signer> = Arc::new(SoftwareSigner::generate("triplicate-bench-notary"));
    let vkey = note_verifier_key(notary.name(), &notary.public_key())?;

    let t = Instant::now();
    let entries = prepare(a.entries, notary.clone())?;
    let prep_secs = t.elapsed().as_secs_f64();
    let bytes: u64 = entries.iter().map(|e| e.len() as u64).sum();

    // The ledger.
    let t = Instant::now();
    let (size, root) = {
        let ledger = EmbeddedLedger::open(
            LedgerConfig::new(&dir, "triplicate.invalid/bench"),
            notary.clone(),
        )?;
        let mut start = 0u64;
        for chunk in entries.chunks(a.batch as usize) {
            ledger.append(start, chunk)?;
            start += chunk.len() as u64;
        }
        // Make the tiles durable too, so the time covers everything a clean shutdown does.
        ledger.flush()?;
        let cp = ledger.checkpoint();
        (cp.size, cp.root)
    };
    let ledger_secs = t.elapsed().as_secs_f64();

    // The bound, in the same run.
    let bound = triplicate_ledger::bound::measure(&entries, a.batch as usize, &a.data_dir)
        .context("measure the machine bound")?;
    let (sha_secs, write_secs, bound_secs) =
        (bound.sha256_seconds, bound.write_seconds, bound.seconds());

    // Proofs.
    let ro = EmbeddedLedger::open_read_only(&dir, None)?;
    let mut rng = rand::thread_rng();
    let t = Instant::now();
    let mut proof_len = 0usize;
    for _ in 0..a.proofs {
        let i = rng.gen_range(0..size);
        proof_len += ro.inclusion_proof(i, size)?.len();
    }
    let proof_secs = t.elapsed().as_secs_f64();
    // Spot-check that what was timed is right.
    for i in [0, size / 2, size - 1] {
        let p = ro.inclusion_proof(i, size)?;
        verify_inclusion(&p, i, size, &root, &leaf_hash(&entries[i as usize]))
            .context("a benchmark proof does not verify")?;
    }

    let rate = a.entries as f64 / ledger_secs;
    let bound_rate = a.entries as f64 / bound_secs;
    let proofs_per_sec = a.proofs as f64 / proof_secs;
    let root_b64 = crate::ledger_cmd::b64(&root);
    let v = serde_json::json!({
        "entries": a.entries,
        "batch": a.batch,
        "bytes": bytes,
        "mean_entry_bytes": bytes / a.entries,
        "prepare_seconds": prep_secs,
        "seconds": ledger_secs,
        "entries_per_second": rate,
        "tree_size": size,
        "root": root_b64,
        "notary_verifier_key": vkey,
        "bound": {
            "sha256_seconds": sha_secs,
            "write_fdatasync_seconds": write_secs,
            "seconds": bound_secs,
            "entries_per_second": bound_rate,
        },
        "fraction_of_bound": bound_secs / ledger_secs,
        "proofs": a.proofs,
        "proof_seconds": proof_secs,
        "proofs_per_second": proofs_per_sec,
        "mean_proof_hashes": proof_len as f64 / a.proofs.max(1) as f64,
    });
    if a.json {
        println!("{v}");
    } else {
        println!(
            "entries:            {} in batches of {} ({} bytes, {} per entry)",
            a.entries,
            a.batch,
            bytes,
            bytes / a.entries
        );
        println!("prepared in:        {prep_secs:.2} s (decisions, 2 approvals and a notary signature each; not timed below)");
        println!("ledger append:      {ledger_secs:.3} s = {rate:.0} entries/s (including the final flush)");
        println!("machine bound:      {bound_secs:.3} s = {bound_rate:.0} entries/s (SHA-256 {sha_secs:.3} s + write/fdatasync {write_secs:.3} s)");
        println!(
            "fraction of bound:  {:.0} %",
            100.0 * bound_secs / ledger_secs
        );
        println!(
            "inclusion proofs:   {} in {proof_secs:.3} s = {proofs_per_sec:.0}/s",
            a.proofs
        );
        println!("tree size:          {size}");
        println!("root:               {root_b64}");
        println!("notary key:         {vkey}");
    }
    Ok(ExitCode::SUCCESS)
}
