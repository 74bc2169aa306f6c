//! The stored-hash index: every node hash the tree has, in Go sumdb's stored-hash order
//! (Crosby and Wallach, "Efficient Data Structures for Tamper-Evident Logging", §3.3).
//!
//! Why it exists beside the tiles: tiles keep only every eighth level of the tree, so a proof
//! read from tiles alone re-hashes up to 255 nodes per tile level (~250 SHA-256 calls per
//! level). This index keeps every node, so a proof is `O(log n)` reads of 32 bytes from the
//! page cache, and memory stays flat whatever the tree size. It costs ~64 bytes per entry and
//! is derived data: `fsck` re-derives it from the entry bundles and compares.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tlog_tiles::tlog::{self, HashReader};
use triplicate_core::Hash;

use crate::LedgerError;

/// The open index file.
#[derive(Debug)]
pub struct HashFile {
    path: PathBuf,
    file: File,
}

impl HashFile {
    /// Opens (creating if asked) the index.
    pub fn open(path: &Path, create: bool) -> Result<HashFile, LedgerError> {
        let file = OpenOptions::new()
            .read(true)
            .write(create)
            .create(create)
            .truncate(false)
            .open(path)
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    LedgerError::Missing {
                        file: path.to_path_buf(),
                    }
                } else {
                    LedgerError::Io {
                        what: "open hash index",
                        path: path.to_path_buf(),
                        source,
                    }
                }
            })?;
        Ok(HashFile {
            path: path.to_path_buf(),
            file,
        })
    }

    fn io(&self, what: &'static str) -> impl FnOnce(std::io::Error) -> LedgerError + '_ {
        move |source| LedgerError::Io {
            what,
            path: self.path.clone(),
            source,
        }
    }

    /// Number of hashes the file holds.
    pub fn count(&self) -> Result<u64, LedgerError> {
        Ok(self
            .file
            .metadata()
            .map_err(self.io("stat hash index"))?
            .len()
            / 32)
    }

    /// Reads one hash.
    pub fn read(&self, index: u64) -> Result<Hash, LedgerError> {
        let mut h = [0u8; 32];
        self.read_into(index, &mut h)?;
        Ok(h)
    }

    /// Reads consecutive hashes starting at `index` into `buf` (a multiple of 32 bytes).
    pub fn read_into(&self, index: u64, buf: &mut [u8]) -> Result<(), LedgerError> {
        self.file.read_exact_at(buf, index * 32).map_err(|source| {
            if source.kind() == std::io::ErrorKind::UnexpectedEof {
                LedgerError::Corrupt {
                    file: self.path.clone(),
                    reason: format!("stored hashes from {index} are missing (file too short)"),
                }
            } else {
                LedgerError::Io {
                    what: "read hash index",
                    path: self.path.clone(),
                    source,
                }
            }
        })
    }

    /// Writes hashes starting at stored index `index` (not durable until [`HashFile::sync`]).
    pub fn write_at(&self, index: u64, hashes: &[Hash]) -> Result<(), LedgerError> {
        let mut buf = Vec::with_capacity(hashes.len() * 32);
        for h in hashes {
            buf.extend_from_slice(h);
        }
        self.file
            .write_all_at(&buf, index * 32)
            .map_err(self.io("write hash index"))
    }

    /// Makes the file durable.
    pub fn sync(&self) -> Result<(), LedgerError> {
        self.file.sync_data().map_err(self.io("sync hash index"))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A [`HashReader`] over the index file up to `limit` stored hashes, plus hashes computed in
/// memory for the batch being appended (stored indexes `pending_start..`).
pub struct Reader<'a> {
    pub file: &'a HashFile,
    pub limit: u64,
    pub pending_start: u64,
    pub pending: &'a [Hash],
}

impl std::fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("limit", &self.limit)
            .field("pending_start", &self.pending_start)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl<'a> Reader<'a> {
    /// A reader over the file alone.
    pub fn file(file: &'a HashFile, limit: u64) -> Self {
        Reader {
            file,
            limit,
            pending_start: limit,
            pending: &[],
        }
    }
}

/// Reads within this many hashes of each other are served by one `pread`: a proof's low-level
/// siblings and a tile's hashes sit close together in stored-hash order, so this turns ~40
/// small reads per proof into ~12.
const COALESCE: u64 = 128;

impl HashReader for Reader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog::Hash>, tlog::Error> {
        let mut out = vec![tlog::Hash([0u8; 32]); indexes.len()];
        // Positions of indexes to read from the file, sorted by index.
        let mut from_file: Vec<(u64, usize)> = Vec::with_capacity(indexes.len());
        for (pos, &i) in indexes.iter().enumerate() {
            if i >= self.pending_start {
                let k = usize::try_from(i - self.pending_start)
                    .map_err(|_| tlog::Error::IndexesNotInTree)?;
                let h = self.pending.get(k).ok_or(tlog::Error::IndexesNotInTree)?;
                out[pos] = tlog::Hash(*h);
            } else if i < self.limit {
                from_file.push((i, pos));
            } else {
                return Err(tlog::Error::IndexesNotInTree);
            }
        }
        from_file.sort_unstable();
        let mut buf = Vec::new();
        let mut g = 0;
        while g < from_file.len() {
            let first = from_file[g].0;
            let mut end = g + 1;
            while end < from_file.len() && from_file[end].0 - first < COALESCE {
                end += 1;
            }
            let last = from_file[end - 1].0;
            let count = usize::try_from(last - first + 1).map_err(|_| tlog::Error::BadMath)?;
            buf.resize(count * 32, 0);
            self.file.read_into(first, &mut buf).map_err(|e| {
                tracing::error!(error = %e, "read stored hashes");
                tlog::Error::IndexesNotInTree
            })?;
            for &(i, pos) in &from_file[g..end] {
                let off = usize::try_from(i - first).map_err(|_| tlog::Error::BadMath)? * 32;
                let mut h = [0u8; 32];
                h.copy_from_slice(&buf[off..off + 32]);
                out[pos] = tlog::Hash(h);
            }
            g = end;
        }
        Ok(out)
    }
}
