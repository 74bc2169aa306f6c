//! The baseline the ledger's benchmarks compare with, measured in the same run: the least work
//! any durable log of the same entries must do — hash every entry once (RFC 6962 leaf hash) and
//! write the bytes sequentially with one `fdatasync` per batch.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256};

/// Seconds spent on each half of the bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MachineBound {
    pub sha256_seconds: f64,
    pub write_seconds: f64,
}

impl MachineBound {
    /// Both halves together.
    pub fn seconds(&self) -> f64 {
        self.sha256_seconds + self.write_seconds
    }
}

/// Measures the bound for `entries` in batches of `batch`, writing a scratch file in `dir`
/// (removed afterwards).
pub fn measure(entries: &[Vec<u8>], batch: usize, dir: &Path) -> std::io::Result<MachineBound> {
    let t = Instant::now();
    let mut sink = 0u8;
    for e in entries {
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(e);
        sink ^= h.finalize()[0];
    }
    std::hint::black_box(sink);
    let sha256_seconds = t.elapsed().as_secs_f64();

    let path = dir.join(".bench-bound.tmp");
    let t = Instant::now();
    {
        let mut f = std::fs::File::create(&path)?;
        for chunk in entries.chunks(batch.max(1)) {
            f.write_all(&chunk.concat())?;
            f.sync_data()?;
        }
    }
    let write_seconds = t.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(MachineBound {
        sha256_seconds,
        write_seconds,
    })
}
