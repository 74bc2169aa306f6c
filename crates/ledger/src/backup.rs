//! Backups of the embedded ledger: a copy of the C2SP files of one signed checkpoint's tree,
//! checked against that checkpoint, and the way back.
//!
//! A snapshot directory holds exactly what a ledger directory holds for a tree of `size`
//! entries, minus the write-ahead log and the lock: every full entry bundle and hash tile, the
//! partial ones at the right edge, the stored-hash index cut at the tree's size, the signed
//! `checkpoint` and the pinned `notary.vkey`. Full bundles and tiles never change once written
//! (C2SP), so backing up into a directory that holds an older snapshot copies only what is new.
//!
//! Nothing here trusts the snapshot's own `notary.vkey`: every check takes the verifier key
//! from the caller (the service's notary, or a key the operator pins).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tlog_tiles::tlog::stored_hash_count;
use triplicate_core::Hash;

use crate::checkpoint::SignedCheckpoint;
use crate::fsck::{FsckError, FsckReport};
use crate::layout::{self, TILE_WIDTH};
use crate::{bundle, fsutil, LedgerError};

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Path relative to the snapshot (and ledger) directory, `/`-separated.
    pub path: String,
    pub sha256: Hash,
    pub len: u64,
    /// Whether this backup wrote the file (false: an identical immutable file was already
    /// there from an earlier backup).
    pub copied: bool,
}

/// What [`copy_snapshot`] wrote and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// The signed checkpoint note the snapshot is checked against.
    pub checkpoint: String,
    /// Every file, in path order.
    pub files: Vec<SnapshotFile>,
}

impl Snapshot {
    /// Files this backup wrote.
    pub fn copied(&self) -> usize {
        self.files.iter().filter(|f| f.copied).count()
    }
}

/// The bundle and tile paths that hold a tree of `size` entries (C2SP `tlog-tiles`), full
/// ones first within each level, in a stable order.
pub fn tree_files(size: u64) -> Vec<String> {
    let mut out = Vec::new();
    let bundles = size.div_ceil(TILE_WIDTH);
    for n in 0..bundles {
        out.push(layout::bundle_path(
            n,
            (size - n * TILE_WIDTH).min(TILE_WIDTH),
        ));
    }
    let mut level: u8 = 0;
    loop {
        let count = size >> (u32::from(level) * u32::from(layout::TILE_HEIGHT));
        if count == 0 {
            break;
        }
        for n in 0..count.div_ceil(TILE_WIDTH) {
            out.push(layout::tile_path(
                level,
                n,
                (count - n * TILE_WIDTH).min(TILE_WIDTH),
            ));
        }
        level += 1;
    }
    out
}

fn is_partial(rel: &str) -> bool {
    rel.contains(".p/")
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LedgerError {
    let path = path.to_path_buf();
    move |source| LedgerError::Io { what, path, source }
}

/// The full file a partial one is a prefix of, and the partial's width.
fn full_of(rel: &str) -> Option<(String, u64)> {
    let (base, width) = rel.split_once(".p/")?;
    Some((base.to_owned(), width.parse().ok()?))
}

/// Reads `rel` from the live ledger `src`. A partial tile or bundle that a later flush replaced
/// with its full file (the service may flush while a backup runs) is cut from that full file.
fn read_live(src: &Path, rel: &str) -> Result<Vec<u8>, LedgerError> {
    let p = src.join(rel);
    match fs::read(&p) {
        Ok(d) => Ok(d),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let Some((full, width)) = full_of(rel) else {
                return Err(LedgerError::Missing { file: p });
            };
            let fp = src.join(&full);
            let data = fs::read(&fp).map_err(|_| LedgerError::Missing { file: p.clone() })?;
            let w = usize::try_from(width).unwrap_or(usize::MAX);
            if full.starts_with("tile/entries/") {
                let entries = bundle::parse(&data).map_err(|reason| LedgerError::Corrupt {
                    file: fp.clone(),
                    reason,
                })?;
                let mut out = Vec::new();
                for e in entries.iter().take(w) {
                    bundle::push(&mut out, e)?;
                }
                Ok(out)
            } else {
                data.get(..w * 32)
                    .map(<[u8]>::to_vec)
                    .ok_or(LedgerError::Corrupt {
                        file: fp,
                        reason: format!("shorter than the {width} hashes a partial tile needs"),
                    })
            }
        }
        Err(e) => Err(LedgerError::Io {
            what: "read ledger file",
            path: p,
            source: e,
        }),
    }
}

fn write_new(path: &Path, data: &[u8]) -> Result<(), LedgerError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io("create directory", parent))?;
    }
    fsutil::write_file(path, data, true)
}

/// SHA-256 and length of a file, streamed.
pub fn file_digest(path: &Path) -> Result<(Hash, u64), LedgerError> {
    let mut f = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            LedgerError::Missing {
                file: path.to_path_buf(),
            }
        } else {
            LedgerError::Io {
                what: "open file",
                path: path.to_path_buf(),
                source: e,
            }
        }
    })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io("read file", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((h.finalize().into(), len))
}

/// Copies the stored-hash index's first `need` bytes into `dst`, appending to what an earlier
/// backup left there when that is a prefix (it always is for the same ledger: hashes are only
/// ever added; [`verify_snapshot`] checks the result). Returns whether anything was written.
fn copy_hashes(src: &Path, dst: &Path, need: u64) -> Result<bool, LedgerError> {
    let have = match fs::metadata(dst) {
        Ok(m) if m.len() <= need => m.len(),
        Ok(_) => {
            fs::remove_file(dst).map_err(io("remove stale hash index", dst))?;
            0
        }
        Err(_) => 0,
    };
    if have == need {
        if !dst.exists() {
            // An empty tree has an empty index, which must still be there.
            File::create(dst).map_err(io("create backup hash index", dst))?;
            return Ok(true);
        }
        return Ok(false);
    }
    let mut from = File::open(src).map_err(io("open hash index", src))?;
    from.seek(SeekFrom::Start(have))
        .map_err(io("seek hash index", src))?;
    let mut to = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dst)
        .map_err(io("open backup hash index", dst))?;
    let copied = std::io::copy(&mut (&mut from).take(need - have), &mut to)
        .map_err(io("copy hash index", dst))?;
    if copied != need - have {
        return Err(LedgerError::Corrupt {
            file: src.to_path_buf(),
            reason: format!("holds fewer than the {} bytes the checkpoint needs", need),
        });
    }
    to.flush().map_err(io("write backup hash index", dst))?;
    Ok(true)
}

/// Removes partial tiles and bundles under `dir` that are not in `keep` (left by an older
/// snapshot in the same directory).
fn remove_stale_partials(dir: &Path, keep: &BTreeSet<&str>) -> Result<(), LedgerError> {
    let tile = dir.join("tile");
    if !tile.exists() {
        return Ok(());
    }
    let mut stack = vec![tile];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(io("list directory", &d))? {
            let entry = entry.map_err(io("list directory", &d))?;
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p
                .strip_prefix(dir)
                .map(|r| r.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            if is_partial(&rel) && !keep.contains(rel.as_str()) {
                fs::remove_file(&p).map_err(io("remove stale partial", &p))?;
            }
        }
    }
    Ok(())
}

/// Copies the tree of the live ledger `src`'s last durable checkpoint into `dst` (created if
/// missing; an older snapshot of the same ledger there is brought up to date, copying only new
/// files), makes it durable, checks it with [`verify_snapshot`] against `verifier_key`, and
/// returns every file with its SHA-256.
///
/// Safe while the ledger's writer runs: it reads only the files of the checkpoint it started
/// from, which the writer never changes (a partial file a concurrent flush replaced is cut from
/// the full one). The snapshot covers that checkpoint, which lags the newest acknowledged entry
/// by at most the writer's flush interval.
pub fn copy_snapshot(src: &Path, dst: &Path, verifier_key: &str) -> Result<Snapshot, LedgerError> {
    let cp_path = src.join(layout::CHECKPOINT);
    let note =
        String::from_utf8(fsutil::read_file(&cp_path, "read checkpoint")?).map_err(|_| {
            LedgerError::Corrupt {
                file: cp_path.clone(),
                reason: "not UTF-8 text".into(),
            }
        })?;
    let cp = SignedCheckpoint::verify(&note, verifier_key)?;
    fs::create_dir_all(dst).map_err(io("create backup directory", dst))?;
    let files = tree_files(cp.size);
    let keep: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    remove_stale_partials(dst, &keep)?;
    let mut copied = BTreeSet::new();
    for rel in &files {
        let to = dst.join(rel);
        // Full files are immutable; one an earlier backup copied is the same file (checked
        // below with the rest).
        if !is_partial(rel) && to.exists() {
            continue;
        }
        let data = read_live(src, rel)?;
        write_new(&to, &data)?;
        copied.insert(rel.clone());
    }
    let need = stored_hash_count(cp.size) * 32;
    if copy_hashes(&src.join(layout::HASHES), &dst.join(layout::HASHES), need)? {
        copied.insert(layout::HASHES.to_owned());
    }
    fsutil::replace_file(&dst.join(layout::CHECKPOINT), note.as_bytes(), false)?;
    fsutil::replace_file(
        &dst.join(layout::NOTARY_VKEY),
        format!("{}\n", verifier_key.trim()).as_bytes(),
        false,
    )?;
    copied.insert(layout::CHECKPOINT.to_owned());
    copied.insert(layout::NOTARY_VKEY.to_owned());
    fsutil::sync_filesystem(dst)?;

    let report = verify_snapshot(dst, verifier_key).map_err(|e| match e {
        FsckError::Unreadable { file, reason } | FsckError::Inconsistent { file, reason } => {
            LedgerError::Corrupt { file, reason }
        }
    })?;
    if report.size != cp.size || report.root != cp.root {
        return Err(LedgerError::Corrupt {
            file: dst.join(layout::CHECKPOINT),
            reason: "the copy does not re-derive the checkpoint it was taken from".into(),
        });
    }
    let mut out = Vec::new();
    let mut all: Vec<String> = files;
    all.extend([
        layout::HASHES.to_owned(),
        layout::CHECKPOINT.to_owned(),
        layout::NOTARY_VKEY.to_owned(),
    ]);
    all.sort();
    for rel in all {
        let (sha256, len) = file_digest(&dst.join(&rel))?;
        out.push(SnapshotFile {
            copied: copied.contains(&rel),
            path: rel,
            sha256,
            len,
        });
    }
    tracing::info!(
        size = cp.size,
        files = out.len(),
        copied = copied.len(),
        dst = %dst.display(),
        "ledger snapshot copied and checked"
    );
    Ok(Snapshot {
        origin: cp.origin,
        size: cp.size,
        root: cp.root,
        checkpoint: note,
        files: out,
    })
}

/// Checks a snapshot directory as `fsck` checks a ledger: the checkpoint's signature with
/// `verifier_key` (never the snapshot's own `notary.vkey`), then the whole tree re-derived from
/// the entry bundles against every tile, the stored-hash index and the checkpoint's root. A
/// snapshot has no write-ahead log; one that holds a `wal` is refused, since opening it would
/// replay entries no checkpoint covers. Never writes.
pub fn verify_snapshot(dir: &Path, verifier_key: &str) -> Result<FsckReport, FsckError> {
    let wal = dir.join(layout::WAL);
    if wal.exists() {
        return Err(FsckError::Inconsistent {
            file: wal,
            reason: "a snapshot holds no write-ahead log; this one would replay entries no \
                     checkpoint covers"
                .into(),
        });
    }
    crate::fsck::check(dir, Some(verifier_key), false)
}

/// Installs a snapshot that [`verify_snapshot`] accepted as the ledger directory `target`
/// (which must not exist, or be empty): copies `files` (relative paths, as the snapshot lists
/// them) into a temporary directory beside `target`, adds an empty write-ahead log whose base
/// is the snapshot's size, makes it durable and renames it into place, so `target` either does
/// not change or holds the whole snapshot. The ledger's writer then opens it as usual (and
/// checks it once more).
pub fn install_snapshot(
    snapshot_dir: &Path,
    files: &[String],
    size: u64,
    target: &Path,
) -> Result<(), LedgerError> {
    if target.exists()
        && fs::read_dir(target)
            .map_err(io("list ledger directory", target))?
            .next()
            .is_some()
    {
        return Err(LedgerError::Io {
            what: "install snapshot",
            path: target.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the target ledger directory is not empty",
            ),
        });
    }
    let parent = target.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io("create directory", parent))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ledger".into());
    let tmp: PathBuf = parent.join(format!(".{name}.restoring"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io("remove unfinished restore", &tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io("create directory", &tmp))?;
    for rel in files {
        if rel.split('/').any(|c| c == ".." || c.is_empty()) || rel.starts_with('/') {
            return Err(LedgerError::Corrupt {
                file: snapshot_dir.join(rel),
                reason: "not a relative path inside the snapshot".into(),
            });
        }
        let to = tmp.join(rel);
        if let Some(p) = to.parent() {
            fs::create_dir_all(p).map_err(io("create directory", p))?;
        }
        let from = snapshot_dir.join(rel);
        fs::copy(&from, &to).map_err(io("copy snapshot file", &from))?;
    }
    crate::wal::Wal::create(&tmp.join(layout::WAL), size)?;
    fsutil::sync_filesystem(&tmp)?;
    if target.exists() {
        fs::remove_dir(target).map_err(io("replace empty ledger directory", target))?;
    }
    fs::rename(&tmp, target).map_err(io("install restored ledger", target))?;
    fsutil::sync_dir(parent)?;
    tracing::info!(size, target = %target.display(), "ledger snapshot installed");
    Ok(())
}

/// Replaces each file of a live ledger directory `dir` whose SHA-256 differs from the
/// snapshot's (a damaged tile, bundle or index) with the snapshot's copy, for the files the
/// snapshot lists whose content is fixed once written: full tiles and bundles, partial ones the
/// live ledger still holds at the same width, and the stored-hash index (its prefix). Returns the files replaced. The caller holds no writer open on
/// `dir`, and re-checks it (`fsck`) afterwards.
pub fn repair_from_snapshot(
    dir: &Path,
    snapshot_dir: &Path,
    files: &[SnapshotFile],
) -> Result<Vec<String>, LedgerError> {
    let mut replaced = Vec::new();
    for f in files {
        if f.path == layout::CHECKPOINT || f.path == layout::NOTARY_VKEY {
            continue;
        }
        let live = dir.join(&f.path);
        // A partial tile or bundle of a given width has the same content in every copy of the
        // ledger, but the live ledger may have moved past it (and removed it): only one that
        // is still there is put back.
        if is_partial(&f.path) && !live.exists() {
            continue;
        }
        if f.path == layout::HASHES {
            // The live index may be longer (entries after the snapshot); compare the prefix.
            let mut prefix = Vec::new();
            if let Ok(file) = File::open(&live) {
                file.take(f.len)
                    .read_to_end(&mut prefix)
                    .map_err(io("read hash index", &live))?;
            }
            let ok = prefix.len() as u64 == f.len && {
                let d: Hash = Sha256::digest(&prefix).into();
                d == f.sha256
            };
            if !ok {
                let good = fs::read(snapshot_dir.join(&f.path))
                    .map_err(io("read snapshot hash index", snapshot_dir))?;
                let mut w = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&live)
                    .map_err(io("open hash index", &live))?;
                w.write_all(&good).map_err(io("write hash index", &live))?;
                w.sync_all().map_err(io("sync hash index", &live))?;
                replaced.push(f.path.clone());
            }
            continue;
        }
        let same = matches!(file_digest(&live), Ok((d, len)) if d == f.sha256 && len == f.len);
        if !same {
            let data = fs::read(snapshot_dir.join(&f.path))
                .map_err(io("read snapshot file", snapshot_dir))?;
            let got: Hash = Sha256::digest(&data).into();
            if got != f.sha256 {
                return Err(LedgerError::Corrupt {
                    file: snapshot_dir.join(&f.path),
                    reason: "the snapshot's own copy does not match its manifest".into(),
                });
            }
            write_new(&live, &data)?;
            replaced.push(f.path.clone());
        }
    }
    if !replaced.is_empty() {
        fsutil::sync_filesystem(dir)?;
    }
    tracing::warn!(files = ?replaced, dir = %dir.display(), "ledger files replaced from a snapshot");
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tree_files_cover_levels_and_partials() {
        assert!(tree_files(0).is_empty());
        assert_eq!(
            tree_files(3),
            vec!["tile/entries/000.p/3", "tile/0/000.p/3"]
        );
        let f = tree_files(256 * 256 + 5);
        assert!(f.contains(&"tile/entries/255".to_owned()));
        assert!(f.contains(&"tile/entries/256.p/5".to_owned()));
        assert!(f.contains(&"tile/0/256.p/5".to_owned()));
        assert!(f.contains(&"tile/1/000".to_owned()));
        assert!(f.contains(&"tile/2/000.p/1".to_owned()));
        assert_eq!(f.len(), 257 + 257 + 1 + 1);
    }
}
