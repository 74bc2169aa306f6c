//! The embedded ledger: C2SP tiles on the local file system, a WAL for group commit.
//!
//! Files under the ledger directory (see [`crate::layout`]):
//! - `checkpoint`: the signed checkpoint of the last flush (replaced atomically).
//! - `tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`: hash tiles and entry bundles.
//! - `hashes`: the stored-hash index proofs are read from ([`crate::hashes`]).
//! - `wal`: batches appended since the tiles were last made durable ([`crate::wal`]).
//! - `notary.vkey`: the notary's note verifier key, pinned at creation.
//! - `LOCK`: held (flock) by the one writer.
//!
//! Life of a batch: encode → append to the WAL and `fdatasync` (the commit point) → derive
//! stored hashes, write them and any tiles and bundles the batch completed (page cache only) →
//! sign a checkpoint → publish it, with the partial bundle, to readers → return.
//!
//! Flush (every `flush_bytes` of WAL or `flush_interval`, on [`EmbeddedLedger::flush`], and on
//! drop): write the partial bundle and partial tiles for the current size, sync everything
//! written since the last flush, write the checkpoint durably, remove partial tiles that full
//! ones replaced, restart the WAL at the current size. So the C2SP tree on disk is always a
//! complete, consistent tree as of the last flush, which can be served or mirrored as static
//! files, and partial tiles are created once per flush, not once per batch (creating ~12 files
//! per batch cost a third of the append time here, most of it in ext4's inode allocator).
//!
//! Opening re-checks the files against the checkpoint: the partial bundle at the WAL's base is
//! re-hashed against the index, the right-edge tiles are compared with the index, WAL batches
//! are replayed, and the root recomputed from the index must equal the checkpoint's. Anything
//! else refuses to open with the file named. The full, every-byte check is [`crate::fsck`].

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use tlog_tiles::tlog::{self, stored_hash_count, stored_hash_index};
use tlog_tiles::Tile;
use triplicate_core::Hash;
use triplicate_keys::Signer;

use crate::bundle;
use crate::checkpoint::SignedCheckpoint;
use crate::fsutil;
use crate::hashes::{HashFile, Reader};
use crate::layout::{self, TILE_HEIGHT, TILE_WIDTH};
use crate::wal::{self, Wal};
use crate::{b64, AppendOutcome, Ledger, LedgerError};

/// How an embedded ledger is opened.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// The ledger directory (`<data-dir>/ledger`).
    pub dir: PathBuf,
    /// The checkpoint origin line: a unique, schema-less name for this log.
    pub origin: String,
    /// WAL size after which tiles are made durable and the WAL restarted.
    pub flush_bytes: u64,
    /// Longest time appends go without a flush (checked when appending).
    pub flush_interval: std::time::Duration,
}

impl LedgerConfig {
    /// Defaults for a ledger directory.
    pub fn new(dir: impl Into<PathBuf>, origin: impl Into<String>) -> Self {
        LedgerConfig {
            dir: dir.into(),
            origin: origin.into(),
            flush_bytes: 64 << 20,
            flush_interval: std::time::Duration::from_secs(1),
        }
    }
}

/// The state readers see: the checkpoint of the current size, and the entries of the partial
/// bundle at its right edge (which reach the disk only at the next flush).
#[derive(Debug, Clone)]
struct Snapshot {
    checkpoint: SignedCheckpoint,
    partial: Option<Arc<Vec<u8>>>,
}

/// Writer-only state.
#[derive(Debug)]
struct Writer {
    wal: Wal,
    size: u64,
    /// Encoded entries of the bundle that holds index `size` (fewer than 256 of them).
    partial_bundle: Vec<u8>,
    /// Full tiles written since the last flush, as (level, tile index); level `u8::MAX`
    /// stands for entry bundles. The flush that makes them durable removes the partial
    /// tiles they replace.
    completed: BTreeSet<(u8, u64)>,
    last_flush: std::time::Instant,
    poisoned: Option<String>,
    _lock: File,
}

/// The embedded verified ledger. See the module docs for its files and life cycle.
pub struct EmbeddedLedger {
    dir: PathBuf,
    origin: String,
    flush_bytes: u64,
    flush_interval: std::time::Duration,
    signer: Option<Arc<dyn Signer>>,
    hashes: HashFile,
    snapshot: RwLock<Snapshot>,
    writer: Option<Mutex<Writer>>,
    /// Held for a whole flush, so flushes run one at a time; appends need only `writer`,
    /// which a flush holds for two short steps (see [`EmbeddedLedger::flush`]).
    flushing: Mutex<()>,
}

/// What the first step of a flush leaves for the rest.
#[derive(Debug)]
struct FlushPlan {
    /// The tree size whose files the flush makes durable.
    size: u64,
    /// The checkpoint of that size.
    checkpoint: SignedCheckpoint,
    /// The entries of the partial bundle at that size.
    partial_bundle: Vec<u8>,
    /// The WAL's length at that size: batches past it stay in the restarted WAL.
    wal_mark: u64,
    /// Full tiles written since the previous flush (see [`Writer::completed`]).
    completed: BTreeSet<(u8, u64)>,
}

impl std::fmt::Debug for EmbeddedLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLedger")
            .field("dir", &self.dir)
            .field("origin", &self.origin)
            .field("size", &self.tree_size())
            .field("writable", &self.writer.is_some())
            .finish()
    }
}

/// Leaves per read of the hash index in `leaf_hashes` (a read of ~4 MiB).
const LEAF_READ_CHUNK: u64 = 1 << 16;

const ENTRIES_LEVEL: u8 = u8::MAX;

fn tlog_err(e: tlog::Error) -> LedgerError {
    LedgerError::Proof(e.to_string())
}

fn read_vkey(dir: &Path) -> Result<Option<String>, LedgerError> {
    let path = dir.join(layout::NOTARY_VKEY);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LedgerError::Io {
            what: "read notary key",
            path,
            source,
        }),
    }
}

fn read_checkpoint(dir: &Path, vkey: &str) -> Result<Option<SignedCheckpoint>, LedgerError> {
    let path = dir.join(layout::CHECKPOINT);
    let text = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LedgerError::Io {
                what: "read checkpoint",
                path,
                source,
            })
        }
    };
    SignedCheckpoint::verify(&text, vkey)
        .map(Some)
        .map_err(|e| LedgerError::Corrupt {
            file: path,
            reason: e.to_string(),
        })
}

fn lock(dir: &Path) -> Result<File, LedgerError> {
    let path = dir.join(layout::LOCK);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| LedgerError::Io {
            what: "open lock file",
            path: path.clone(),
            source,
        })?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            return Err(LedgerError::Locked {
                path: dir.to_path_buf(),
                holder: if holder.is_empty() {
                    "another process".into()
                } else {
                    format!("pid {holder}")
                },
            });
        }
        Err(std::fs::TryLockError::Error(source)) => {
            return Err(LedgerError::Io {
                what: "lock",
                path,
                source,
            })
        }
    }
    // Best effort: say who holds the lock, for the error a second process prints.
    let _ = f.set_len(0);
    let _ = writeln!(f, "{}", std::process::id());
    Ok(f)
}

impl EmbeddedLedger {
    /// Leaf hashes `start..end` from the hash index, `chunk` leaves per read. Leaves are
    /// interleaved with the interior hashes stored after them (the tlog stored-hash order), so
    /// one read of the span between the first and the last leaf of a chunk (about twice the
    /// leaves' bytes) replaces one 32-byte read per leaf: the cross-verifier reads every leaf
    /// hash of a full sweep, and the system call per leaf was ~10 % of its CPU.
    fn read_leaf_hashes(&self, start: u64, end: u64, chunk: u64) -> Result<Vec<Hash>, LedgerError> {
        let mut out = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
        let mut buf = Vec::new();
        let mut from = start;
        while from < end {
            let to = (from + chunk.max(1)).min(end);
            let first = stored_hash_index(0, from);
            let last = stored_hash_index(0, to - 1);
            let span =
                usize::try_from((last - first + 1) * 32).map_err(|_| LedgerError::Corrupt {
                    file: self.hashes.path().to_path_buf(),
                    reason: format!("leaf hashes {from}..{to} span more than memory"),
                })?;
            buf.resize(span, 0);
            self.hashes.read_into(first, &mut buf)?;
            for i in from..to {
                // Within the span read: `first <= stored index <= last`.
                let at = ((stored_hash_index(0, i) - first) * 32) as usize;
                let mut h = [0u8; 32];
                h.copy_from_slice(&buf[at..at + 32]);
                out.push(h);
            }
            from = to;
        }
        Ok(out)
    }
    /// Opens (creating if empty) the ledger as its single writer, recovering from a crash by
    /// replaying the WAL. Refuses to open when the files disagree with the checkpoint.
    #[tracing::instrument(skip_all, fields(dir = %config.dir.display()))]
    pub fn open(
        config: LedgerConfig,
        signer: Arc<dyn Signer>,
    ) -> Result<EmbeddedLedger, LedgerError> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| LedgerError::Io {
            what: "create ledger directory",
            path: dir.clone(),
            source,
        })?;
        let lock_file = lock(&dir)?;
        let vkey = triplicate_keys::note::note_verifier_key(signer.name(), &signer.public_key())
            .map_err(|e| {
                LedgerError::Checkpoint(crate::CheckpointError::VerifierKey(e.to_string()))
            })?;
        match read_vkey(&dir)? {
            Some(pinned) if pinned != vkey => {
                return Err(LedgerError::NotaryKeyMismatch {
                    pinned,
                    offered: vkey,
                })
            }
            Some(_) => {}
            None => {
                if dir.join(layout::CHECKPOINT).exists() {
                    return Err(LedgerError::Missing {
                        file: dir.join(layout::NOTARY_VKEY),
                    });
                }
                fsutil::replace_file(
                    &dir.join(layout::NOTARY_VKEY),
                    format!("{vkey}\n").as_bytes(),
                    true,
                )?;
            }
        }

        let checkpoint = read_checkpoint(&dir, &vkey)?;
        let wal_path = dir.join(layout::WAL);
        let hashes_path = dir.join(layout::HASHES);

        let Some(checkpoint) = checkpoint else {
            // A fresh ledger, unless something was ever acknowledged here. Creation writes
            // `notary.vkey`, `hashes`, `wal` and last `checkpoint`; a crash part way leaves an
            // empty WAL and no tiles, which is still a fresh ledger.
            let wal_has_batches = if wal_path.exists() {
                let c = Wal::read(&wal_path)?;
                c.base_size > 0 || !c.batches.is_empty()
            } else {
                false
            };
            if wal_has_batches || dir.join("tile").exists() {
                return Err(LedgerError::Missing {
                    file: dir.join(layout::CHECKPOINT),
                });
            }
            if hashes_path.exists() {
                std::fs::remove_file(&hashes_path).map_err(|source| LedgerError::Io {
                    what: "reset hash index",
                    path: hashes_path.clone(),
                    source,
                })?;
            }
            let hashes = HashFile::open(&hashes_path, true)?;
            hashes.sync()?;
            let wal = Wal::create(&wal_path, 0)?;
            let cp =
                SignedCheckpoint::sign(&config.origin, 0, tlog::EMPTY_HASH.0, signer.as_ref())?;
            fsutil::replace_file(&dir.join(layout::CHECKPOINT), cp.note.as_bytes(), true)?;
            tracing::info!(origin = %config.origin, "created a new ledger");
            return Ok(EmbeddedLedger {
                dir,
                origin: config.origin,
                flush_bytes: config.flush_bytes,
                flush_interval: config.flush_interval,
                signer: Some(signer),
                hashes,
                snapshot: RwLock::new(Snapshot {
                    checkpoint: cp,
                    partial: Some(Arc::new(Vec::new())),
                }),
                writer: Some(Mutex::new(Writer {
                    wal,
                    size: 0,
                    partial_bundle: Vec::new(),
                    completed: BTreeSet::new(),
                    last_flush: std::time::Instant::now(),
                    poisoned: None,
                    _lock: lock_file,
                })),
                flushing: Mutex::new(()),
            });
        };

        if checkpoint.origin != config.origin {
            return Err(LedgerError::OriginMismatch {
                stored: checkpoint.origin,
                configured: config.origin,
            });
        }
        if !wal_path.exists() {
            return Err(LedgerError::Missing { file: wal_path });
        }
        let (wal, contents) = Wal::open(&wal_path)?;
        let base = contents.base_size;
        let hashes = HashFile::open(&hashes_path, true)?;
        let have = hashes.count()?;
        if have < stored_hash_count(base) {
            return Err(LedgerError::Corrupt {
                file: hashes_path,
                reason: format!(
                    "holds {have} hashes but the durable tree of {base} entries needs {}",
                    stored_hash_count(base)
                ),
            });
        }
        // Hashes past the durable base belong to batches the WAL replays below, which rewrites
        // them with the same values (never truncate: a durable checkpoint may already name
        // them, and a crash during the replay must not leave them missing).
        let partial_bundle = load_partial_bundle(&dir, base)?;
        check_right_edge(&dir, &hashes, base, &partial_bundle)?;

        let mut ledger = EmbeddedLedger {
            dir: dir.clone(),
            origin: config.origin,
            flush_bytes: config.flush_bytes,
            flush_interval: config.flush_interval,
            signer: Some(signer),
            hashes,
            snapshot: RwLock::new(Snapshot {
                checkpoint: checkpoint.clone(),
                partial: Some(Arc::new(partial_bundle.clone())),
            }),
            writer: None,
            flushing: Mutex::new(()),
        };
        let mut writer = Writer {
            wal,
            size: base,
            partial_bundle,
            completed: BTreeSet::new(),
            last_flush: std::time::Instant::now(),
            poisoned: None,
            _lock: lock_file,
        };
        let mut replayed = 0u64;
        for batch in &contents.batches {
            ledger.apply(&mut writer, &batch.entries, true)?;
            replayed += batch.entries.len() as u64;
        }
        if replayed > 0 {
            tracing::info!(replayed, base, "replayed ledger WAL");
        }
        let size = writer.size;
        if checkpoint.size > size {
            return Err(LedgerError::Corrupt {
                file: dir.join(layout::CHECKPOINT),
                reason: format!(
                    "checkpoint covers {} entries but the tiles and WAL hold only {size}",
                    checkpoint.size
                ),
            });
        }
        let root = ledger.root_with(
            &Reader::file(&ledger.hashes, stored_hash_count(size)),
            checkpoint.size,
        )?;
        if root != checkpoint.root {
            return Err(LedgerError::Corrupt {
                file: dir.join(layout::CHECKPOINT),
                reason: format!(
                    "root of the first {} entries is {} but the checkpoint says {}",
                    checkpoint.size,
                    b64(&root),
                    b64(&checkpoint.root)
                ),
            });
        }
        if size > checkpoint.size || replayed > 0 {
            // Entries the WAL held beyond the last flush: they were acknowledged, so they stay.
            // Flush now so the files on disk show them too.
            ledger.publish(&writer)?;
            ledger.flush_locked(&mut writer)?;
        }
        ledger.writer = Some(Mutex::new(writer));
        tracing::info!(size, "opened ledger");
        Ok(ledger)
    }

    /// Opens the ledger for reading only (no lock, no replay): for proofs and inspection
    /// while another process writes, or offline. Readers see the latest checkpoint's tree.
    pub fn open_read_only(
        dir: &Path,
        verifier_key: Option<&str>,
    ) -> Result<EmbeddedLedger, LedgerError> {
        let pinned = read_vkey(dir)?;
        let vkey = match (verifier_key, pinned) {
            (Some(v), _) => v.to_owned(),
            (None, Some(p)) => p,
            (None, None) => {
                return Err(LedgerError::Missing {
                    file: dir.join(layout::NOTARY_VKEY),
                })
            }
        };
        let checkpoint = read_checkpoint(dir, &vkey)?.ok_or_else(|| LedgerError::Missing {
            file: dir.join(layout::CHECKPOINT),
        })?;
        let hashes = HashFile::open(&dir.join(layout::HASHES), false)?;
        let need = stored_hash_count(checkpoint.size);
        if hashes.count()? < need {
            return Err(LedgerError::Corrupt {
                file: dir.join(layout::HASHES),
                reason: format!(
                    "holds fewer hashes than the checkpoint's {} entries need; open the ledger with its writer to replay the WAL",
                    checkpoint.size
                ),
            });
        }
        let ledger = EmbeddedLedger {
            dir: dir.to_path_buf(),
            origin: checkpoint.origin.clone(),
            flush_bytes: u64::MAX,
            flush_interval: std::time::Duration::MAX,
            signer: None,
            hashes,
            snapshot: RwLock::new(Snapshot {
                checkpoint: checkpoint.clone(),
                partial: None,
            }),
            writer: None,
            flushing: Mutex::new(()),
        };
        let root = ledger.root_with(&Reader::file(&ledger.hashes, need), checkpoint.size)?;
        if root != checkpoint.root {
            return Err(LedgerError::Corrupt {
                file: dir.join(layout::HASHES),
                reason: format!(
                    "root of the first {} entries is {} but the checkpoint says {}",
                    checkpoint.size,
                    b64(&root),
                    b64(&checkpoint.root)
                ),
            });
        }
        Ok(ledger)
    }

    /// The ledger directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The checkpoint origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn snapshot(&self) -> Snapshot {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn root_with(&self, reader: &Reader<'_>, size: u64) -> Result<Hash, LedgerError> {
        tlog::tree_hash(size, reader)
            .map(|h| h.0)
            .map_err(|e| LedgerError::Corrupt {
                file: self.hashes.path().to_path_buf(),
                reason: format!("cannot compute the root of {size} entries: {e}"),
            })
    }

    /// Derives and writes stored hashes, bundles and tiles for `entries` appended at
    /// `writer.size`. Not durable: the WAL is.
    ///
    /// `replaying` is true when re-applying WAL batches on open: the files may then already be
    /// named by a durable checkpoint, so they are replaced atomically.
    fn apply(
        &self,
        writer: &mut Writer,
        entries: &[Vec<u8>],
        replaying: bool,
    ) -> Result<(), LedgerError> {
        let start = writer.size;
        let end = start + entries.len() as u64;
        let pending_start = stored_hash_count(start);
        let mut pending: Vec<Hash> = Vec::with_capacity(entries.len() * 2 + 8);
        for (i, e) in entries.iter().enumerate() {
            let n = start + i as u64;
            let reader = Reader {
                file: &self.hashes,
                limit: pending_start,
                pending_start,
                pending: &pending,
            };
            let new = tlog::stored_hashes(n, e, &reader).map_err(tlog_err)?;
            pending.extend(new.into_iter().map(|h| h.0));
        }
        self.hashes.write_at(pending_start, &pending)?;

        // Entry bundles.
        let mut bundle_n = start / TILE_WIDTH;
        let mut in_bundle = start % TILE_WIDTH;
        for e in entries {
            bundle::push(&mut writer.partial_bundle, e)?;
            in_bundle += 1;
            if in_bundle == TILE_WIDTH {
                let path = self.dir.join(layout::bundle_path(bundle_n, TILE_WIDTH));
                fsutil::write_file(&path, &writer.partial_bundle, replaying)?;
                writer.completed.insert((ENTRIES_LEVEL, bundle_n));
                writer.partial_bundle.clear();
                bundle_n += 1;
                in_bundle = 0;
            }
        }

        // Hash tiles completed by this batch (partial ones are written at flush).
        let reader = Reader {
            file: &self.hashes,
            limit: pending_start,
            pending_start,
            pending: &pending,
        };
        for t in Tile::new_tiles(TILE_HEIGHT, start, end) {
            if u64::from(t.width()) != TILE_WIDTH {
                continue;
            }
            let data = t.read_data(&reader).map_err(tlog_err)?;
            let width = u64::from(t.width());
            let path = self
                .dir
                .join(layout::tile_path(t.level(), t.level_index(), width));
            fsutil::write_file(&path, &data, replaying)?;
            writer.completed.insert((t.level(), t.level_index()));
        }
        writer.size = end;
        Ok(())
    }

    /// Signs a checkpoint for the writer's size and makes it, with the partial bundle, what
    /// readers see. Nothing is written: the WAL already holds the batch.
    fn publish(&self, w: &Writer) -> Result<SignedCheckpoint, LedgerError> {
        let signer = self.signer.as_ref().ok_or(LedgerError::ReadOnly)?;
        let size = w.size;
        let root = self.root_with(&Reader::file(&self.hashes, stored_hash_count(size)), size)?;
        let cp = SignedCheckpoint::sign(&self.origin, size, root, signer.as_ref())?;
        let snap = Snapshot {
            checkpoint: cp.clone(),
            partial: Some(Arc::new(w.partial_bundle.clone())),
        };
        match self.snapshot.write() {
            Ok(mut s) => *s = snap,
            Err(p) => *p.into_inner() = snap,
        }
        Ok(cp)
    }

    /// Writes the partial bundle and the partial tile of every level for the tree at `size`
    /// (whose partial bundle holds `partial_bundle`). Safe beside appends: they write only
    /// full tiles and hashes past `size`, and a partial tile's path names its width.
    fn write_partials(&self, size: u64, partial_bundle: &[u8]) -> Result<(), LedgerError> {
        let width = size % TILE_WIDTH;
        if width > 0 {
            let n = size / TILE_WIDTH;
            fsutil::write_file(
                &self.dir.join(layout::bundle_path(n, width)),
                partial_bundle,
                true,
            )?;
        }
        let reader = Reader::file(&self.hashes, stored_hash_count(size));
        let mut level: u8 = 0;
        loop {
            let count = size >> (u32::from(level) * u32::from(TILE_HEIGHT));
            if count == 0 {
                break;
            }
            let (n, width) = (count / TILE_WIDTH, count % TILE_WIDTH);
            if width > 0 {
                let w32 =
                    u32::try_from(width).map_err(|_| LedgerError::Proof("tile width".into()))?;
                let data = Tile::new(TILE_HEIGHT, level, n, w32, false)
                    .read_data(&reader)
                    .map_err(tlog_err)?;
                fsutil::write_file(
                    &self.dir.join(layout::tile_path(level, n, width)),
                    &data,
                    true,
                )?;
            }
            level += 1;
        }
        Ok(())
    }

    /// Makes every file written since the last flush durable, writes a durable checkpoint,
    /// restarts the WAL at the checkpoint's size, and removes partial tiles that full tiles
    /// replaced. Called automatically when the WAL grows past `flush_bytes` or
    /// `flush_interval` has passed (by the append that notices, after it returns its batch's
    /// lock), and on drop; the server calls it once a second.
    ///
    /// Appends go on while it runs: it holds the writer lock only to write the partial tiles
    /// for the current size (page cache) and, at the end, to restart the WAL, carrying over
    /// the batches appended meanwhile. The slow part (one `syncfs` for every file written
    /// since the last flush, then the checkpoint file) runs without it; holding the lock
    /// through it stalled every append behind each flush (a p99 tail in the service).
    pub fn flush(&self) -> Result<(), LedgerError> {
        self.flush_holding(self.flushing.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// [`EmbeddedLedger::flush`], given the guard of `flushing`.
    fn flush_holding(&self, _one: std::sync::MutexGuard<'_, ()>) -> Result<(), LedgerError> {
        let Some(writer) = &self.writer else {
            return Err(LedgerError::ReadOnly);
        };
        let lock = || writer.lock().unwrap_or_else(|p| p.into_inner());
        let started = std::time::Instant::now();
        let (plan, mut locked) = {
            let mut w = lock();
            let t = std::time::Instant::now();
            (self.begin_flush(&mut w)?, t.elapsed())
        };
        let syncing = std::time::Instant::now();
        if let Err(e) = self.make_durable(&plan) {
            // The WAL still holds every batch, but a later flush must not restart it: Linux
            // marks pages whose write-back failed clean and reports the error once, so the
            // next `syncfs` could succeed over tiles that never reached the disk, and its
            // WAL restart would drop their only durable copy. Stop; a reopen replays the WAL.
            tracing::error!(error = %e, "ledger flush could not make its files durable; refusing further writes until reopened");
            lock().poisoned = Some(e.to_string());
            return Err(e);
        }
        let synced = syncing.elapsed();
        {
            let mut w = lock();
            let t = std::time::Instant::now();
            if let Some(reason) = &w.poisoned {
                return Err(LedgerError::Poisoned {
                    reason: reason.clone(),
                });
            }
            if let Err(e) = self.restart_wal(&mut w, &plan) {
                tracing::error!(error = %e, "restarting the ledger WAL failed; refusing further writes until reopened");
                w.poisoned = Some(e.to_string());
                return Err(e);
            }
            locked += t.elapsed();
        }
        self.remove_superseded(&plan.completed);
        // `locked_ms` is how long appends could not run because of this flush.
        tracing::debug!(
            size = plan.size,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            sync_ms = synced.as_secs_f64() * 1e3,
            locked_ms = locked.as_secs_f64() * 1e3,
            "flushed ledger tiles"
        );
        Ok(())
    }

    /// A flush with the writer already held (opening, dropping): the same steps in one go.
    fn flush_locked(&self, w: &mut Writer) -> Result<(), LedgerError> {
        let plan = self.begin_flush(w)?;
        self.make_durable(&plan)?;
        self.restart_wal(w, &plan)?;
        self.remove_superseded(&plan.completed);
        tracing::debug!(size = plan.size, "flushed ledger tiles");
        Ok(())
    }

    /// First step, under the writer lock: what the rest of the flush needs (the current size,
    /// its checkpoint and partial bundle, the WAL's length).
    fn begin_flush(&self, w: &mut Writer) -> Result<FlushPlan, LedgerError> {
        if let Some(reason) = &w.poisoned {
            return Err(LedgerError::Poisoned {
                reason: reason.clone(),
            });
        }
        // Appends publish under the writer lock, so the snapshot is of `w.size`.
        let checkpoint = self.snapshot().checkpoint;
        debug_assert_eq!(checkpoint.size, w.size);
        Ok(FlushPlan {
            size: w.size,
            checkpoint,
            partial_bundle: w.partial_bundle.clone(),
            wal_mark: w.wal.len(),
            completed: std::mem::take(&mut w.completed),
        })
    }

    /// Second step, with no lock: the partial bundle and tiles of the tree at `plan.size`
    /// (page cache), then one barrier for every bundle, tile, directory and the index
    /// written so far (so every file of the tree at `plan.size`); only then may the durable
    /// checkpoint name them. Files appends write meanwhile are synced too, or by the next
    /// flush; none of them is named by this checkpoint.
    fn make_durable(&self, plan: &FlushPlan) -> Result<(), LedgerError> {
        self.write_partials(plan.size, &plan.partial_bundle)?;
        fsutil::sync_filesystem(&self.dir)?;
        fsutil::replace_file(
            &self.dir.join(layout::CHECKPOINT),
            plan.checkpoint.note.as_bytes(),
            true,
        )
    }

    /// Third step, under the writer lock: the WAL starts over at `plan.size`, keeping the
    /// batches appended since the first step. Before this, a reopen replays from the old base
    /// (which it can: the checkpoint on disk is never past what the WAL and tiles hold).
    fn restart_wal(&self, w: &mut Writer, plan: &FlushPlan) -> Result<(), LedgerError> {
        w.wal.restart(plan.size, plan.wal_mark)?;
        w.last_flush = std::time::Instant::now();
        Ok(())
    }

    /// Last step: partial tiles of tiles now full and durable are no longer needed (a client
    /// holding an older checkpoint reads the full tile's prefix). Only after the WAL was
    /// restarted past them: until then a reopen replays from the old base and needs the
    /// partial bundle there.
    fn remove_superseded(&self, completed: &BTreeSet<(u8, u64)>) {
        for &(level, n) in completed {
            let path = self.dir.join(if level == ENTRIES_LEVEL {
                layout::bundle_path(n, TILE_WIDTH)
            } else {
                layout::tile_path(level, n, TILE_WIDTH)
            });
            let mut partial_dir = path.into_os_string();
            partial_dir.push(".p");
            let partial_dir = PathBuf::from(partial_dir);
            if partial_dir.exists() {
                if let Err(e) = std::fs::remove_dir_all(&partial_dir) {
                    tracing::warn!(dir = %partial_dir.display(), error = %e, "could not remove superseded partial tiles");
                }
            }
        }
    }

    fn check_overlap(
        &self,
        first_index: u64,
        entries: &[Vec<u8>],
        size: u64,
    ) -> Result<usize, LedgerError> {
        let overlap = usize::try_from(size.saturating_sub(first_index))
            .unwrap_or(usize::MAX)
            .min(entries.len());
        for (k, e) in entries.iter().take(overlap).enumerate() {
            let index = first_index + k as u64;
            let stored = self.hashes.read(stored_hash_index(0, index))?;
            let offered = tlog::record_hash(e).0;
            if stored != offered {
                return Err(LedgerError::Conflict {
                    index,
                    stored: b64(&stored),
                    offered: b64(&offered),
                });
            }
        }
        Ok(overlap)
    }
}

/// Reads the partial entry bundle for a tree of `size` entries.
fn load_partial_bundle(dir: &Path, size: u64) -> Result<Vec<u8>, LedgerError> {
    let width = size % TILE_WIDTH;
    if width == 0 {
        return Ok(Vec::new());
    }
    let path = dir.join(layout::bundle_path(size / TILE_WIDTH, width));
    let data = fsutil::read_file(&path, "read entry bundle")?;
    let n = bundle::parse(&data)
        .map_err(|reason| LedgerError::Corrupt {
            file: path.clone(),
            reason,
        })?
        .len() as u64;
    if n != width {
        return Err(LedgerError::Corrupt {
            file: path,
            reason: format!("holds {n} entries, expected {width}"),
        });
    }
    Ok(data)
}

/// Cheap open-time check of the files at the durable base: the partial bundle's entries hash to
/// the index's leaf hashes, and each level's right-edge tile equals the index.
fn check_right_edge(
    dir: &Path,
    hashes: &HashFile,
    size: u64,
    partial: &[u8],
) -> Result<(), LedgerError> {
    if size == 0 {
        return Ok(());
    }
    let reader = Reader::file(hashes, stored_hash_count(size));
    let first = size - size % TILE_WIDTH;
    let entries = bundle::parse(partial).map_err(|reason| LedgerError::Corrupt {
        file: dir.join(layout::bundle_path(size / TILE_WIDTH, size % TILE_WIDTH)),
        reason,
    })?;
    for (k, e) in entries.iter().enumerate() {
        let i = first + k as u64;
        if hashes.read(stored_hash_index(0, i))? != tlog::record_hash(e).0 {
            return Err(LedgerError::Corrupt {
                file: dir.join(layout::bundle_path(size / TILE_WIDTH, size % TILE_WIDTH)),
                reason: format!("entry {i} does not hash to the stored leaf hash"),
            });
        }
    }
    // The rightmost tile at each level (full or partial).
    let mut level: u8 = 0;
    loop {
        let count = size >> (u32::from(level) * u32::from(TILE_HEIGHT));
        if count == 0 {
            break;
        }
        let n = (count - 1) / TILE_WIDTH;
        let width = count - n * TILE_WIDTH;
        let rel = layout::tile_path(level, n, width);
        let path = dir.join(&rel);
        let data = fsutil::read_file(&path, "read tile")?;
        let width32 = u32::try_from(width).map_err(|_| LedgerError::Proof("tile width".into()))?;
        let expected = Tile::new(TILE_HEIGHT, level, n, width32, false)
            .read_data(&reader)
            .map_err(tlog_err)?;
        if data != expected {
            return Err(LedgerError::Corrupt {
                file: path,
                reason: "tile does not match the stored hashes".into(),
            });
        }
        level += 1;
    }
    Ok(())
}

impl Ledger for EmbeddedLedger {
    /// [`EmbeddedLedger::flush`]; nothing for a read-only handle (its files are another
    /// writer's).
    fn flush(&self) -> Result<(), LedgerError> {
        if self.writer.is_none() {
            return Ok(());
        }
        EmbeddedLedger::flush(self)
    }

    #[tracing::instrument(skip_all, fields(first_index, count = entries.len()))]
    fn append(&self, first_index: u64, entries: &[Vec<u8>]) -> Result<AppendOutcome, LedgerError> {
        let Some(w) = &self.writer else {
            return Err(LedgerError::ReadOnly);
        };
        if entries.is_empty() {
            return Err(LedgerError::EmptyBatch);
        }
        for e in entries {
            if e.len() > bundle::MAX_ENTRY_BYTES {
                return Err(LedgerError::EntryTooLarge {
                    len: e.len(),
                    max: bundle::MAX_ENTRY_BYTES,
                });
            }
        }
        let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reason) = &w.poisoned {
            return Err(LedgerError::Poisoned {
                reason: reason.clone(),
            });
        }
        let size = w.size;
        if first_index > size {
            return Err(LedgerError::Gap {
                expected: size,
                got: first_index,
            });
        }
        let overlap = self.check_overlap(first_index, entries, size)?;
        let fresh = &entries[overlap..];
        if fresh.is_empty() {
            return Ok(AppendOutcome {
                first_index,
                appended: 0,
                checkpoint: self.snapshot().checkpoint,
            });
        }
        // The commit point.
        w.wal.append_durable(&wal::encode_batch(size, fresh))?;
        let applied = self
            .apply(&mut w, fresh, false)
            .and_then(|()| self.publish(&w));
        let checkpoint = match applied {
            Ok(cp) => cp,
            Err(e) => {
                // The batch is durable in the WAL but the tiles may be half written; only a
                // reopen (which replays the WAL) can bring them back in line.
                tracing::error!(error = %e, "ledger append failed after commit; refusing further writes until reopened");
                w.poisoned = Some(e.to_string());
                return Err(e);
            }
        };
        let due = w.wal.len() >= self.flush_bytes || w.last_flush.elapsed() >= self.flush_interval;
        drop(w);
        // A flush already under way (another thread's) covers this one's reason to flush.
        if due {
            let one = match self.flushing.try_lock() {
                Ok(one) => Some(one),
                Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            };
            if let Some(one) = one {
                // A failure is logged by the flush and refuses later appends; this batch is
                // committed whatever the flush does.
                let _ = self.flush_holding(one);
            }
        }
        Ok(AppendOutcome {
            first_index,
            appended: fresh.len() as u64,
            checkpoint,
        })
    }

    fn tree_size(&self) -> u64 {
        self.snapshot().checkpoint.size
    }

    fn checkpoint(&self) -> SignedCheckpoint {
        self.snapshot().checkpoint
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, LedgerError> {
        let snap = self.snapshot();
        let size = snap.checkpoint.size;
        if end > size || start > end {
            return Err(LedgerError::OutOfRange {
                index: end.max(start),
                size,
            });
        }
        let mut out = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
        let mut i = start;
        while i < end {
            let (n, width) = layout::bundle_for(i, size);
            let on_disk;
            let data: &[u8] = match &snap.partial {
                Some(p) if width < TILE_WIDTH => p.as_slice(),
                _ => {
                    on_disk = read_bundle(&self.dir, n, width)?;
                    &on_disk
                }
            };
            let entries = bundle::parse(data).map_err(|reason| LedgerError::Corrupt {
                file: self.dir.join(layout::bundle_path(n, width)),
                reason,
            })?;
            let base = n * TILE_WIDTH;
            let from = usize::try_from(i - base).unwrap_or(usize::MAX);
            let to = usize::try_from(end.min(base + width) - base).unwrap_or(usize::MAX);
            if entries.len() < to {
                return Err(LedgerError::Corrupt {
                    file: self.dir.join(layout::bundle_path(n, width)),
                    reason: format!("holds {} entries, expected at least {to}", entries.len()),
                });
            }
            out.extend(entries[from..to].iter().map(|e| e.to_vec()));
            i = base + to as u64;
        }
        Ok(out)
    }

    fn leaf_hashes(&self, start: u64, end: u64) -> Result<Vec<Hash>, LedgerError> {
        let size = self.tree_size();
        if end > size || start > end {
            return Err(LedgerError::OutOfRange {
                index: end.max(start),
                size,
            });
        }
        self.read_leaf_hashes(start, end, LEAF_READ_CHUNK)
    }

    fn root_at(&self, size: u64) -> Result<Hash, LedgerError> {
        let current = self.tree_size();
        if size > current {
            return Err(LedgerError::OutOfRange {
                index: size,
                size: current,
            });
        }
        self.root_with(
            &Reader::file(&self.hashes, stored_hash_count(current)),
            size,
        )
    }

    fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, LedgerError> {
        let current = self.tree_size();
        if tree_size > current || index >= tree_size {
            return Err(LedgerError::OutOfRange {
                index,
                size: tree_size.min(current),
            });
        }
        let reader = Reader::file(&self.hashes, stored_hash_count(current));
        tlog::prove_record(tree_size, index, &reader)
            .map(|p| p.into_iter().map(|h| h.0).collect())
            .map_err(tlog_err)
    }

    fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, LedgerError> {
        let current = self.tree_size();
        if new_size > current || old_size > new_size {
            return Err(LedgerError::OutOfRange {
                index: new_size.max(old_size),
                size: current,
            });
        }
        if old_size == 0 || old_size == new_size {
            // RFC 9162 §2.1.4: the proof from the empty tree, or to the same tree, is empty.
            return Ok(Vec::new());
        }
        let reader = Reader::file(&self.hashes, stored_hash_count(current));
        tlog::prove_tree(new_size, old_size, &reader)
            .map(|p| p.into_iter().map(|h| h.0).collect())
            .map_err(tlog_err)
    }
}

/// Reads bundle `n` as of a tree where it holds `width` entries. A partial bundle may have been
/// replaced by the full one (flush removes superseded partials); the full one starts with the
/// same entries.
fn read_bundle(dir: &Path, n: u64, width: u64) -> Result<Vec<u8>, LedgerError> {
    let path = dir.join(layout::bundle_path(n, width));
    match std::fs::read(&path) {
        Ok(d) => Ok(d),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && width < TILE_WIDTH => {
            let full = dir.join(layout::bundle_path(n, TILE_WIDTH));
            std::fs::read(&full).map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    LedgerError::Missing { file: path.clone() }
                } else {
                    LedgerError::Io {
                        what: "read entry bundle",
                        path: full.clone(),
                        source,
                    }
                }
            })
        }
        Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(LedgerError::Missing { file: path })
        }
        Err(source) => Err(LedgerError::Io {
            what: "read entry bundle",
            path,
            source,
        }),
    }
}

impl Drop for EmbeddedLedger {
    fn drop(&mut self) {
        if let Some(w) = &self.writer {
            let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
            if w.poisoned.is_none() && !w.wal.is_empty() {
                if let Err(e) = self.flush_locked(&mut w) {
                    tracing::warn!(error = %e, "flush on close failed; the WAL will be replayed on the next open");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Leaf hashes read a span at a time match the entries' hashes for every range and chunk
    /// size, including chunks of one leaf and ranges that end at the tree's edge.
    #[test]
    fn leaf_hashes_read_in_spans_are_the_entries_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let signer: Arc<dyn triplicate_keys::Signer> =
            Arc::new(triplicate_keys::SoftwareSigner::generate("test-notary"));
        let l = EmbeddedLedger::open(
            LedgerConfig::new(dir.path(), "triplicate.invalid/t"),
            signer,
        )
        .unwrap();
        let entry = |i: u64| format!("{{\"entry\":{i}}}").into_bytes();
        let n = 1_000u64;
        let entries: Vec<Vec<u8>> = (0..n).map(entry).collect();
        l.append(0, &entries[..300]).unwrap();
        l.append(300, &entries[300..]).unwrap();
        let want: Vec<Hash> = entries.iter().map(|e| tlog::record_hash(e).0).collect();
        for (a, b) in [(0, n), (0, 1), (255, 257), (511, 1000), (999, 1000), (7, 7)] {
            for chunk in [1, 2, 7, 256, LEAF_READ_CHUNK] {
                assert_eq!(
                    l.read_leaf_hashes(a, b, chunk).unwrap(),
                    want[a as usize..b as usize],
                    "{a}..{b} in chunks of {chunk}"
                );
            }
        }
        assert_eq!(l.leaf_hashes(0, n).unwrap(), want);
        assert!(matches!(
            l.leaf_hashes(0, n + 1),
            Err(LedgerError::OutOfRange { .. })
        ));
    }
}
