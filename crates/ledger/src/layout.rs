//! File layout of the embedded ledger: C2SP `tlog-tiles` paths plus our local files.
//!
//! Implements the path scheme of <https://c2sp.org/tlog-tiles> ("Merkle Tree" and "Log
//! Entries"): hash tiles at `tile/<L>/<N>[.p/<W>]` and entry bundles at
//! `tile/entries/<N>[.p/<W>]`, where `<N>` is written in groups of three decimal digits, all but
//! the last prefixed with `x` (index 1234067 is `x001/x234/067`). `tlog_tiles` 0.2 still uses the
//! older Go sumdb scheme (`tile/8/<L>/…`, `tile/8/data/…`); we use its math and our own paths.

use std::path::{Path, PathBuf};

/// Tile height: each tile holds up to 2^8 = 256 hashes (C2SP fixes this).
pub const TILE_HEIGHT: u8 = 8;
/// Hashes per full tile and entries per full bundle.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

/// The signed checkpoint (C2SP `tlog-checkpoint` signed note).
pub const CHECKPOINT: &str = "checkpoint";
/// Local index of every stored hash (Go sumdb stored-hash order), so proofs read `O(log n)`
/// hashes instead of re-hashing tile contents. Derived data: `fsck` re-derives and compares it.
pub const HASHES: &str = "hashes";
/// Write-ahead log of batches appended since the tiles were last made durable.
pub const WAL: &str = "wal";
/// Single-writer lock.
pub const LOCK: &str = "LOCK";
/// The notary's note verifier key, pinned when the ledger was created.
pub const NOTARY_VKEY: &str = "notary.vkey";

/// `<N>` as C2SP writes it: `x001/x234/067`.
pub fn encode_index(n: u64) -> String {
    let mut parts = vec![format!("{:03}", n % 1000)];
    let mut rest = n / 1000;
    while rest > 0 {
        parts.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    parts.reverse();
    parts.join("/")
}

fn with_width(base: String, width: u64) -> String {
    if width == TILE_WIDTH {
        base
    } else {
        format!("{base}.p/{width}")
    }
}

/// Relative path of hash tile `(level, n)` of `width` hashes (256 for a full tile).
pub fn tile_path(level: u8, n: u64, width: u64) -> String {
    with_width(format!("tile/{level}/{}", encode_index(n)), width)
}

/// Relative path of entry bundle `n` holding `width` entries (256 for a full bundle).
pub fn bundle_path(n: u64, width: u64) -> String {
    with_width(format!("tile/entries/{}", encode_index(n)), width)
}

/// The bundle (index, width) holding entry `index` in a tree of `size` entries.
pub fn bundle_for(index: u64, size: u64) -> (u64, u64) {
    let n = index / TILE_WIDTH;
    let width = (size - n * TILE_WIDTH).min(TILE_WIDTH);
    (n, width)
}

/// Joins a relative layout path onto the ledger directory.
pub fn join(dir: &Path, rel: &str) -> PathBuf {
    dir.join(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c2sp_index_encoding() {
        assert_eq!(encode_index(0), "000");
        assert_eq!(encode_index(67), "067");
        assert_eq!(encode_index(1000), "x001/000");
        assert_eq!(encode_index(1_234_067), "x001/x234/067");
    }

    #[test]
    fn c2sp_paths() {
        assert_eq!(tile_path(0, 1_234_067, 256), "tile/0/x001/x234/067");
        assert_eq!(tile_path(1, 5, 7), "tile/1/005.p/7");
        assert_eq!(bundle_path(1_234_067, 256), "tile/entries/x001/x234/067");
        assert_eq!(bundle_path(0, 1), "tile/entries/000.p/1");
    }

    #[test]
    fn bundle_of_an_entry() {
        assert_eq!(bundle_for(0, 1), (0, 1));
        assert_eq!(bundle_for(255, 300), (0, 256));
        assert_eq!(bundle_for(256, 300), (1, 44));
    }
}
