//! `fsck`: re-derive the whole tree from the entry bundles and check every tile, the stored-hash
//! index, and the checkpoint's signature and root against it.
//!
//! It streams: one bundle at a time, a frontier of `O(log n)` hashes, and one partly filled
//! tile per level, so memory stays flat however large the ledger is. It never writes.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tlog_tiles::tlog::{self, split_stored_hash_index, stored_hash_count, HashReader};
use triplicate_core::Hash;

use crate::checkpoint::SignedCheckpoint;
use crate::layout::{self, TILE_WIDTH};
use crate::{b64, bundle, wal};

/// What a clean check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsckReport {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub bundles_checked: u64,
    pub tiles_checked: u64,
    pub hashes_checked: u64,
    /// Entries in the WAL past the checkpoint: acknowledged, replayed on the next writable open.
    pub wal_pending: u64,
}

/// Why the check failed. [`FsckError::exit_code`] gives the CLI's exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FsckError {
    /// A file is missing or cannot be read (exit 2).
    #[error("{}: {reason}", file.display())]
    Unreadable { file: PathBuf, reason: String },
    /// Files disagree with each other or with the signed checkpoint (exit 1).
    #[error("{}: {reason}", file.display())]
    Inconsistent { file: PathBuf, reason: String },
}

impl FsckError {
    /// 1 for tampered or inconsistent, 2 for unreadable or missing.
    pub fn exit_code(&self) -> u8 {
        match self {
            FsckError::Inconsistent { .. } => 1,
            FsckError::Unreadable { .. } => 2,
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, FsckError> {
    std::fs::read(path).map_err(|e| FsckError::Unreadable {
        file: path.to_path_buf(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "missing".into()
        } else {
            e.to_string()
        },
    })
}

/// Reads a tile or bundle as of `width`, falling back to the full file's prefix when the partial
/// one was superseded. Returns the path read and the data.
fn read_versioned(
    dir: &Path,
    rel_partial: &str,
    rel_full: &str,
) -> Result<(PathBuf, Vec<u8>), FsckError> {
    let p = dir.join(rel_partial);
    match std::fs::read(&p) {
        Ok(d) => Ok((p, d)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && rel_partial != rel_full => {
            let f = dir.join(rel_full);
            let d = read(&f).map_err(|_| FsckError::Unreadable {
                file: p.clone(),
                reason: "missing (and no full tile replaces it)".into(),
            })?;
            Ok((f, d))
        }
        Err(_) => read(&p).map(|d| (p, d)),
    }
}

/// The latest completed node at each level, which is all `tlog::stored_hashes` asks for when
/// records are added in order.
struct Frontier {
    latest: Vec<Option<(u64, tlog::Hash)>>,
}

impl HashReader for Frontier {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog::Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|&i| {
                let (level, n) = split_stored_hash_index(i);
                match self.latest.get(usize::from(level)) {
                    Some(Some((k, h))) if *k == n => Ok(*h),
                    _ => Err(tlog::Error::IndexesNotInTree),
                }
            })
            .collect()
    }
}

fn node(l: &Hash, r: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

/// Root of a perfect subtree given its leaves at some level (`hashes.len()` a power of two).
fn perfect_root(hashes: &[Hash]) -> Hash {
    let mut level: Vec<Hash> = hashes.to_vec();
    while level.len() > 1 {
        level = level.chunks(2).map(|c| node(&c[0], &c[1])).collect();
    }
    level[0]
}

/// Runs the check. `verifier_key` defaults to the key pinned in `notary.vkey`; pass the key you
/// trust from elsewhere to check the checkpoint against it instead.
pub fn fsck(dir: &Path, verifier_key: Option<&str>) -> Result<FsckReport, FsckError> {
    check(dir, verifier_key, true)
}

/// The check; a backup snapshot has no WAL (`with_wal` false).
pub(crate) fn check(
    dir: &Path,
    verifier_key: Option<&str>,
    with_wal: bool,
) -> Result<FsckReport, FsckError> {
    let vkey = match verifier_key {
        Some(v) => v.trim().to_owned(),
        None => {
            let p = dir.join(layout::NOTARY_VKEY);
            String::from_utf8_lossy(&read(&p)?).trim().to_owned()
        }
    };
    let cp_path = dir.join(layout::CHECKPOINT);
    let cp_text = String::from_utf8(read(&cp_path)?).map_err(|_| FsckError::Inconsistent {
        file: cp_path.clone(),
        reason: "not UTF-8 text".into(),
    })?;
    let cp = SignedCheckpoint::verify(&cp_text, &vkey).map_err(|e| FsckError::Inconsistent {
        file: cp_path.clone(),
        reason: e.to_string(),
    })?;
    let size = cp.size;

    let hashes_path = dir.join(layout::HASHES);
    let mut hashes_file = std::io::BufReader::with_capacity(
        1 << 20,
        std::fs::File::open(&hashes_path).map_err(|e| FsckError::Unreadable {
            file: hashes_path.clone(),
            reason: e.to_string(),
        })?,
    );

    let mut frontier = Frontier { latest: Vec::new() };
    // Compact range of perfect subtrees for the root: (height, hash), heights decreasing.
    let mut range: Vec<(u32, Hash)> = Vec::new();
    // One partly filled tile per level.
    let mut levels: Vec<Vec<Hash>> = vec![Vec::new()];
    let mut tiles_checked = 0u64;
    let mut hashes_checked = 0u64;
    let mut bundles_checked = 0u64;

    let bundles = size.div_ceil(TILE_WIDTH);
    for n in 0..bundles {
        let width = (size - n * TILE_WIDTH).min(TILE_WIDTH);
        let (bpath, data) = read_versioned(
            dir,
            &layout::bundle_path(n, width),
            &layout::bundle_path(n, TILE_WIDTH),
        )?;
        let entries = bundle::parse(&data).map_err(|reason| FsckError::Inconsistent {
            file: bpath.clone(),
            reason,
        })?;
        let w = usize::try_from(width).unwrap_or(usize::MAX);
        if entries.len() < w
            || (entries.len() != w && bpath.ends_with(layout::bundle_path(n, width)))
        {
            return Err(FsckError::Inconsistent {
                file: bpath,
                reason: format!("holds {} entries, expected {width}", entries.len()),
            });
        }
        bundles_checked += 1;
        let (tpath, tile) = read_versioned(
            dir,
            &layout::tile_path(0, n, width),
            &layout::tile_path(0, n, TILE_WIDTH),
        )?;
        if tile.len() < w * 32 {
            return Err(FsckError::Inconsistent {
                file: tpath,
                reason: format!("holds {} bytes, expected {}", tile.len(), w * 32),
            });
        }
        for (k, e) in entries.iter().take(w).enumerate() {
            let index = n * TILE_WIDTH + k as u64;
            let leaf = tlog::record_hash(e);
            let new =
                tlog::stored_hashes_for_record_hash(index, leaf, &frontier).map_err(|err| {
                    FsckError::Inconsistent {
                        file: bpath.clone(),
                        reason: format!("entry {index}: {err}"),
                    }
                })?;
            // Compare with the stored-hash index, which is laid out in exactly this order.
            let mut stored = Vec::with_capacity(new.len());
            for _ in 0..new.len() {
                let mut buf = [0u8; 32];
                hashes_file
                    .read_exact(&mut buf)
                    .map_err(|e| FsckError::Inconsistent {
                        file: hashes_path.clone(),
                        reason: format!("ends early at entry {index}: {e}"),
                    })?;
                hashes_checked += 1;
                stored.push(buf);
            }
            let stored_leaf = stored[0];
            let tile_leaf: Hash = tile[k * 32..k * 32 + 32].try_into().unwrap_or([0; 32]);
            if tile_leaf != leaf.0 || stored_leaf != leaf.0 {
                // Each leaf hash exists three times (entry, tile, index); two usually agree,
                // so blame the odd one.
                let (file, reason) = if tile_leaf == stored_leaf {
                    (
                        bpath.clone(),
                        format!(
                            "entry {index} hashes to {} but its tile and the index hold {}",
                            b64(&leaf.0),
                            b64(&tile_leaf)
                        ),
                    )
                } else if stored_leaf == leaf.0 {
                    (
                        tpath.clone(),
                        format!(
                            "leaf hash {k} (entry {index}) is {} but the entry re-derives to {}",
                            b64(&tile_leaf),
                            b64(&leaf.0)
                        ),
                    )
                } else {
                    (
                        hashes_path.clone(),
                        format!("leaf hash of entry {index} disagrees with its entry and its tile"),
                    )
                };
                return Err(FsckError::Inconsistent { file, reason });
            }
            for (j, (h, s)) in new.iter().zip(&stored).enumerate().skip(1) {
                if s != &h.0 {
                    return Err(FsckError::Inconsistent {
                        file: hashes_path.clone(),
                        reason: format!(
                            "stored hash for entry {index}, level {j}, is {} but re-derives to {}",
                            b64(s),
                            b64(&h.0)
                        ),
                    });
                }
            }
            for (j, h) in new.iter().enumerate() {
                if frontier.latest.len() <= j {
                    frontier.latest.resize(j + 1, None);
                }
                frontier.latest[j] = Some((index >> j, *h));
            }
            // Root accumulator.
            let mut cur = (0u32, leaf.0);
            while let Some(&(hgt, left)) = range.last() {
                if hgt != cur.0 {
                    break;
                }
                range.pop();
                cur = (hgt + 1, node(&left, &cur.1));
            }
            range.push(cur);
        }
        // Level 0 tile done: feed the tile levels above.
        tiles_checked += 1;
        levels[0] = tile[..w * 32]
            .chunks(32)
            .map(|c| c.try_into().unwrap_or([0; 32]))
            .collect();
        let mut l = 0usize;
        while levels[l].len() == TILE_WIDTH as usize {
            let root = perfect_root(&levels[l]);
            levels[l].clear();
            if levels.len() <= l + 1 {
                levels.push(Vec::new());
            }
            levels[l + 1].push(root);
            l += 1;
            if levels[l].len() == TILE_WIDTH as usize {
                check_tile(dir, l as u8, n >> (8 * l as u32), TILE_WIDTH, &levels[l])?;
                tiles_checked += 1;
            }
        }
    }
    // Partial tiles at the right edge of each level above 0.
    for (l, hs) in levels.iter().enumerate().skip(1) {
        if !hs.is_empty() {
            let count = size >> (8 * l as u32);
            let tn = count / TILE_WIDTH;
            check_tile(dir, l as u8, tn, hs.len() as u64, hs)?;
            tiles_checked += 1;
        }
    }

    let root = match range.split_last() {
        None => tlog::EMPTY_HASH.0,
        Some((last, rest)) => rest
            .iter()
            .rev()
            .fold(last.1, |acc, (_, left)| node(left, &acc)),
    };
    if root != cp.root {
        return Err(FsckError::Inconsistent {
            file: cp_path,
            reason: format!(
                "the entries' root is {} but the signed checkpoint says {}",
                b64(&root),
                b64(&cp.root)
            ),
        });
    }
    debug_assert_eq!(hashes_checked, stored_hash_count(size));

    let wal_path = dir.join(layout::WAL);
    if !with_wal {
        return Ok(FsckReport {
            origin: cp.origin,
            size,
            root,
            bundles_checked,
            tiles_checked,
            hashes_checked,
            wal_pending: 0,
        });
    }
    let wal_pending = match wal::Wal::read(&wal_path) {
        Ok(c) => {
            let end = c.base_size
                + c.batches
                    .iter()
                    .map(|b| b.entries.len() as u64)
                    .sum::<u64>();
            end.saturating_sub(size)
        }
        Err(crate::LedgerError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Err(FsckError::Unreadable {
                file: wal_path,
                reason: "missing".into(),
            })
        }
        Err(e) => {
            return Err(FsckError::Inconsistent {
                file: wal_path,
                reason: e.to_string(),
            })
        }
    };
    Ok(FsckReport {
        origin: cp.origin,
        size,
        root,
        bundles_checked,
        tiles_checked,
        hashes_checked,
        wal_pending,
    })
}

fn check_tile(
    dir: &Path,
    level: u8,
    n: u64,
    width: u64,
    expected: &[Hash],
) -> Result<(), FsckError> {
    let (path, data) = read_versioned(
        dir,
        &layout::tile_path(level, n, width),
        &layout::tile_path(level, n, TILE_WIDTH),
    )?;
    let w = expected.len();
    if data.len() < w * 32
        || (data.len() != w * 32 && path.ends_with(layout::tile_path(level, n, width)))
    {
        return Err(FsckError::Inconsistent {
            file: path,
            reason: format!("holds {} bytes, expected {}", data.len(), w * 32),
        });
    }
    for (k, h) in expected.iter().enumerate() {
        if &data[k * 32..k * 32 + 32] != h {
            return Err(FsckError::Inconsistent {
                file: path,
                reason: format!("hash {k} does not match the tiles below it"),
            });
        }
    }
    Ok(())
}
