//! The ledger's write-ahead log: the one file that is made durable for every batch.
//!
//! Why a WAL in front of the tiles: a batch touches a dozen files (entry bundles, hash tiles at
//! several levels, the stored-hash index, the checkpoint). Making each durable would cost a
//! dozen `fsync`s per batch (measured ~5.5 ms for 13 files here, a third of the time budget
//! for 1,000 entries). Instead a batch is appended to this log with one `fdatasync`; only then
//! is the caller told it is committed. The tiles are written after it to the page cache and
//! made durable together, much later, by [`crate::EmbeddedLedger::flush`]. After a power loss
//! the batches still in the log are replayed onto the tiles on the next open.
//!
//! Format (all integers big-endian):
//! - header (32 bytes): magic `TPLWAL01`, `base_size: u64` (the tree size whose files were
//!   durable when this log was started), 12 reserved zero bytes, CRC-32 of the first 28 bytes.
//! - per batch: magic `BTCH`, `first_index: u64`, `count: u32`, `payload_len: u64`, then the
//!   payload (`count` entries, each `u32` length + bytes), then CRC-32 of header + payload.
//!
//! A torn last batch (short or failing its CRC at the end of the file) was never acknowledged,
//! because acknowledgement follows `fdatasync` of the whole batch; it is cut off on open. A
//! damaged batch followed by more data is corruption and refuses to open.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::LedgerError;

const HEADER_MAGIC: &[u8; 8] = b"TPLWAL01";
const BATCH_MAGIC: &[u8; 4] = b"BTCH";
const HEADER_LEN: usize = 32;
const BATCH_HEADER_LEN: usize = 4 + 8 + 4 + 8;

/// One batch read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalBatch {
    pub first_index: u64,
    pub entries: Vec<Vec<u8>>,
}

/// What the log held when it was opened.
#[derive(Debug)]
pub struct WalContents {
    pub base_size: u64,
    pub batches: Vec<WalBatch>,
}

/// The open log, positioned for appends.
#[derive(Debug)]
pub struct Wal {
    path: PathBuf,
    file: File,
    len: u64,
}

fn header_bytes(base_size: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(HEADER_MAGIC);
    h[8..16].copy_from_slice(&base_size.to_be_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..].copy_from_slice(&crc.to_be_bytes());
    h
}

fn io_err<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> LedgerError + 'a {
    move |source| LedgerError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Encodes one batch in the log format.
pub fn encode_batch(first_index: u64, entries: &[Vec<u8>]) -> Vec<u8> {
    let payload_len: usize = entries.iter().map(|e| 4 + e.len()).sum();
    let mut buf = Vec::with_capacity(BATCH_HEADER_LEN + payload_len + 4);
    buf.extend_from_slice(BATCH_MAGIC);
    buf.extend_from_slice(&first_index.to_be_bytes());
    buf.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    buf.extend_from_slice(&(payload_len as u64).to_be_bytes());
    for e in entries {
        buf.extend_from_slice(&(e.len() as u32).to_be_bytes());
        buf.extend_from_slice(e);
    }
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_be_bytes());
    buf
}

/// Parses the log's bytes. Returns the contents and the length of the valid prefix.
pub fn decode(path: &Path, data: &[u8]) -> Result<(WalContents, u64), LedgerError> {
    let corrupt = |offset: usize, reason: String| LedgerError::Corrupt {
        file: path.to_path_buf(),
        reason: format!("at byte {offset}: {reason}"),
    };
    if data.len() < HEADER_LEN {
        return Err(corrupt(0, "header is truncated".into()));
    }
    let (h, mut rest) = data.split_at(HEADER_LEN);
    if &h[..8] != HEADER_MAGIC {
        return Err(corrupt(0, "not a Triplicate ledger WAL (bad magic)".into()));
    }
    let crc = u32::from_be_bytes([h[28], h[29], h[30], h[31]]);
    if crc != crc32fast::hash(&h[..28]) {
        return Err(corrupt(0, "header checksum mismatch".into()));
    }
    let mut base = [0u8; 8];
    base.copy_from_slice(&h[8..16]);
    let base_size = u64::from_be_bytes(base);

    let mut batches = Vec::new();
    let mut offset = HEADER_LEN;
    let mut expected_index = base_size;
    while !rest.is_empty() {
        match decode_batch(rest) {
            Ok((batch, used)) => {
                if batch.first_index != expected_index {
                    return Err(corrupt(
                        offset,
                        format!(
                            "batch starts at index {} but the log continues at {expected_index}",
                            batch.first_index
                        ),
                    ));
                }
                expected_index += batch.entries.len() as u64;
                batches.push(batch);
                rest = &rest[used..];
                offset += used;
            }
            Err(BatchDecode::Torn) => {
                // A short or unchecked tail: the write that was under way when the process
                // stopped. It was never acknowledged.
                return Ok((WalContents { base_size, batches }, offset as u64));
            }
            Err(BatchDecode::Corrupt(reason)) => return Err(corrupt(offset, reason)),
        }
    }
    Ok((WalContents { base_size, batches }, offset as u64))
}

enum BatchDecode {
    Torn,
    Corrupt(String),
}

fn decode_batch(data: &[u8]) -> Result<(WalBatch, usize), BatchDecode> {
    if data.len() < BATCH_HEADER_LEN {
        return Err(BatchDecode::Torn);
    }
    if &data[..4] != BATCH_MAGIC {
        // Could be a torn header whose bytes never reached the disk (zeros); anything else
        // after the last good batch is treated the same way only if it is the tail.
        return Err(BatchDecode::Torn);
    }
    let mut b8 = [0u8; 8];
    b8.copy_from_slice(&data[4..12]);
    let first_index = u64::from_be_bytes(b8);
    let count = u32::from_be_bytes([data[12], data[13], data[14], data[15]]) as usize;
    b8.copy_from_slice(&data[16..24]);
    let payload_len = u64::from_be_bytes(b8);
    let Ok(payload_len) = usize::try_from(payload_len) else {
        return Err(BatchDecode::Torn);
    };
    let total = BATCH_HEADER_LEN
        .checked_add(payload_len)
        .and_then(|t| t.checked_add(4))
        .ok_or(BatchDecode::Torn)?;
    if data.len() < total {
        return Err(BatchDecode::Torn);
    }
    let body = &data[..total - 4];
    let crc = u32::from_be_bytes([
        data[total - 4],
        data[total - 3],
        data[total - 2],
        data[total - 1],
    ]);
    if crc != crc32fast::hash(body) {
        // A checksum failure with more data after it cannot be a torn tail.
        return if data.len() == total {
            Err(BatchDecode::Torn)
        } else {
            Err(BatchDecode::Corrupt("batch checksum mismatch".into()))
        };
    }
    let mut entries = Vec::with_capacity(count);
    let mut p = &body[BATCH_HEADER_LEN..];
    for i in 0..count {
        if p.len() < 4 {
            return Err(BatchDecode::Corrupt(format!(
                "entry {i} length is truncated"
            )));
        }
        let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
        if p.len() < 4 + len {
            return Err(BatchDecode::Corrupt(format!("entry {i} is truncated")));
        }
        entries.push(p[4..4 + len].to_vec());
        p = &p[4 + len..];
    }
    if !p.is_empty() {
        return Err(BatchDecode::Corrupt("trailing bytes in batch".into()));
    }
    Ok((
        WalBatch {
            first_index,
            entries,
        },
        total,
    ))
}

impl Wal {
    /// Reads the log at `path` (cutting off a torn tail) and opens it for appends.
    pub fn open(path: &Path) -> Result<(Wal, WalContents), LedgerError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_err(path, "open WAL"))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(io_err(path, "read WAL"))?;
        let (contents, valid_len) = decode(path, &data)?;
        if valid_len < data.len() as u64 {
            tracing::warn!(
                file = %path.display(),
                cut = data.len() as u64 - valid_len,
                "cutting off a torn, unacknowledged batch at the end of the ledger WAL"
            );
            file.set_len(valid_len)
                .map_err(io_err(path, "truncate WAL"))?;
            file.sync_data().map_err(io_err(path, "sync WAL"))?;
        }
        Ok((
            Wal {
                path: path.to_path_buf(),
                file,
                len: valid_len,
            },
            contents,
        ))
    }

    /// Reads the log without modifying it (for `fsck` and read-only opens).
    pub fn read(path: &Path) -> Result<WalContents, LedgerError> {
        let data = std::fs::read(path).map_err(io_err(path, "read WAL"))?;
        Ok(decode(path, &data)?.0)
    }

    /// Creates a fresh, durable, empty log whose base is `base_size`, atomically replacing
    /// any existing one (write to a temporary file, fsync, rename, fsync the directory).
    pub fn create(path: &Path, base_size: u64) -> Result<Wal, LedgerError> {
        Wal::install(path, &header_bytes(base_size))
    }

    /// Makes `bytes` (a header and whole batches) the log at `path`, durably and atomically:
    /// a temporary file written and synced, renamed over `path`, the directory synced. An
    /// error before the rename leaves the old log in place.
    fn install(path: &Path, bytes: &[u8]) -> Result<Wal, LedgerError> {
        let tmp = path.with_extension("tmp");
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp, "create WAL"))?;
            f.write_all(bytes).map_err(io_err(&tmp, "write WAL"))?;
            f.sync_all().map_err(io_err(&tmp, "sync WAL"))?;
        }
        std::fs::rename(&tmp, path).map_err(io_err(path, "install WAL"))?;
        if let Some(dir) = path.parent() {
            crate::fsutil::sync_dir(dir)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_err(path, "open WAL"))?;
        Ok(Wal {
            path: path.to_path_buf(),
            file,
            len: bytes.len() as u64,
        })
    }

    /// Starts the log over at `base_size`, keeping the batches it holds past byte `from` (the
    /// log's length when the tree had `base_size` entries, so the first kept batch starts at
    /// that index): they are written after a fresh header to a temporary file, which is
    /// synced and renamed over this one, and the directory synced. A flush calls this once
    /// the files of the tree at `base_size` are durable, so the batches appended while it
    /// synced them stay in the log.
    ///
    /// An error before the rename leaves this log as it was; after it, the log on disk is the
    /// new one and this handle may no longer point at it, so the caller must stop appending.
    pub fn restart(&mut self, base_size: u64, from: u64) -> Result<(), LedgerError> {
        use std::os::unix::fs::FileExt;
        if from < HEADER_LEN as u64 || from > self.len {
            return Err(LedgerError::Corrupt {
                file: self.path.clone(),
                reason: format!(
                    "cannot restart the log at byte {from} of {} (header {HEADER_LEN})",
                    self.len
                ),
            });
        }
        let tail_len = usize::try_from(self.len - from).map_err(|_| LedgerError::Corrupt {
            file: self.path.clone(),
            reason: "the log's tail does not fit in memory".into(),
        })?;
        let mut buf = Vec::with_capacity(HEADER_LEN + tail_len);
        buf.extend_from_slice(&header_bytes(base_size));
        buf.resize(HEADER_LEN + tail_len, 0);
        self.file
            .read_exact_at(&mut buf[HEADER_LEN..], from)
            .map_err(io_err(&self.path, "read WAL"))?;
        *self = Wal::install(&self.path, &buf)?;
        Ok(())
    }

    /// Appends one encoded batch and makes it durable. When this returns `Ok` the batch
    /// survives a crash or power loss.
    pub fn append_durable(&mut self, encoded: &[u8]) -> Result<(), LedgerError> {
        use std::os::unix::fs::FileExt;
        self.file
            .write_all_at(encoded, self.len)
            .map_err(io_err(&self.path, "append to WAL"))?;
        self.file
            .sync_data()
            .map_err(io_err(&self.path, "sync WAL"))?;
        self.len += encoded.len() as u64;
        Ok(())
    }

    /// Bytes in the log, header included.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the log holds no batch.
    pub fn is_empty(&self) -> bool {
        self.len <= HEADER_LEN as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_keeps_the_batches_past_its_mark_and_appends_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let mut wal = Wal::create(&path, 0).unwrap();
        wal.append_durable(&encode_batch(0, &[b"a".to_vec(), b"b".to_vec()]))
            .unwrap();
        let mark = wal.len();
        wal.append_durable(&encode_batch(2, &[b"c".to_vec()]))
            .unwrap();
        wal.append_durable(&encode_batch(3, &[b"d".to_vec(), b"e".to_vec()]))
            .unwrap();

        wal.restart(2, mark).unwrap();
        wal.append_durable(&encode_batch(5, &[b"f".to_vec()]))
            .unwrap();
        let c = Wal::read(&path).unwrap();
        assert_eq!(c.base_size, 2);
        let got: Vec<(u64, usize)> = c
            .batches
            .iter()
            .map(|b| (b.first_index, b.entries.len()))
            .collect();
        assert_eq!(got, vec![(2, 1), (3, 2), (5, 1)]);
        assert_eq!(wal.len(), std::fs::metadata(&path).unwrap().len());
        assert!(!path.with_extension("tmp").exists());

        // Restarting at the end keeps nothing; a mark outside the log is refused and changes
        // nothing.
        wal.restart(6, wal.len()).unwrap();
        assert!(wal.is_empty());
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(
            wal.restart(7, wal.len() + 1),
            Err(LedgerError::Corrupt { .. })
        ));
        assert!(matches!(
            wal.restart(7, 3),
            Err(LedgerError::Corrupt { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(Wal::read(&path).unwrap().base_size, 6);
    }

    #[test]
    fn append_read_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let mut wal = Wal::create(&path, 10).unwrap();
        wal.append_durable(&encode_batch(10, &[b"a".to_vec(), b"bc".to_vec()]))
            .unwrap();
        wal.append_durable(&encode_batch(12, &[b"d".to_vec()]))
            .unwrap();
        let full = std::fs::read(&path).unwrap();

        let c = Wal::read(&path).unwrap();
        assert_eq!(c.base_size, 10);
        assert_eq!(c.batches.len(), 2);
        assert_eq!(c.batches[1].first_index, 12);

        // Every cut inside the last batch is a torn tail: the first batch survives.
        let second_start = full.len() - encode_batch(12, &[b"d".to_vec()]).len();
        for cut in second_start..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let (_, c) = Wal::open(&path).unwrap();
            assert_eq!(c.batches.len(), 1, "cut at {cut}");
            assert_eq!(
                std::fs::metadata(&path).unwrap().len() as usize,
                second_start
            );
        }

        // A flipped byte in the first batch with a good batch after it is corruption.
        let mut bad = full.clone();
        bad[HEADER_LEN + BATCH_HEADER_LEN + 2] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(Wal::open(&path), Err(LedgerError::Corrupt { .. })));

        // A batch that does not continue the sequence is corruption.
        let mut gap = full[..second_start].to_vec();
        gap.extend_from_slice(&encode_batch(99, &[b"x".to_vec()]));
        std::fs::write(&path, &gap).unwrap();
        assert!(matches!(Wal::read(&path), Err(LedgerError::Corrupt { .. })));
    }
}
