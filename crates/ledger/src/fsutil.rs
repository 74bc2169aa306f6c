//! Small durable-file helpers.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::LedgerError;

/// Makes a directory's entries (created, renamed files) durable.
pub fn sync_dir(dir: &Path) -> Result<(), LedgerError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| LedgerError::Io {
            what: "sync directory",
            path: dir.to_path_buf(),
            source,
        })
}

/// Writes a file's full contents, creating parent directories, atomically: the data goes to a
/// hidden temporary file beside it that is then renamed over the target. A reader (or a crash)
/// never sees a half-written tile, even when a tile is rewritten (partial tiles of the same
/// width at two flushes, bundles on WAL replay) while a durable checkpoint names it. Not durable
/// by itself: the caller syncs at the next flush.
///
/// With `atomic == false` the target is written in place: only for files that no durable
/// checkpoint can name yet (a full tile completed by the batch being appended), where a torn
/// write after a crash is simply rewritten by the WAL replay. It saves a rename per file.
pub fn write_file(path: &Path, data: &[u8], atomic: bool) -> Result<(), LedgerError> {
    let io = |what: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| LedgerError::Io {
            what,
            path: p,
            source,
        }
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = if atomic {
        path.with_file_name(format!(".{name}.tmp"))
    } else {
        path.to_path_buf()
    };
    // Create the file first and its directories only when missing: most writes go to a
    // directory that already exists, and this saves a stat and a mkdir per file.
    let mut f = match File::create(&tmp) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io("create directory", parent))?;
            }
            File::create(&tmp).map_err(io("create file", &tmp))?
        }
        Err(e) => return Err(io("create file", &tmp)(e)),
    };
    f.write_all(data).map_err(io("write file", &tmp))?;
    drop(f);
    if atomic {
        std::fs::rename(&tmp, path).map_err(io("rename file", path))?;
    }
    Ok(())
}

/// Replaces a file atomically: temporary file, rename. With `durable`, the temporary file is
/// synced before the rename and the directory after it.
pub fn replace_file(path: &Path, data: &[u8], durable: bool) -> Result<(), LedgerError> {
    let tmp = path.with_extension("tmp");
    let io = |what: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| LedgerError::Io {
            what,
            path: p,
            source,
        }
    };
    {
        let mut f = File::create(&tmp).map_err(io("create file", &tmp))?;
        f.write_all(data).map_err(io("write file", &tmp))?;
        if durable {
            f.sync_all().map_err(io("sync file", &tmp))?;
        }
    }
    std::fs::rename(&tmp, path).map_err(io("rename file", path))?;
    if durable {
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Makes every dirty file of the file system holding `dir` durable, with one `syncfs(2)`.
///
/// Why not `fdatasync` per file: a flush covers hundreds of tile and bundle files, and each
/// `fsync` costs a device round trip (plus an `open`, since the files were closed after writing);
/// one `syncfs` costs one. It also writes back other processes' dirty data on the same file
/// system, which a dedicated data volume keeps small.
pub fn sync_filesystem(dir: &Path) -> Result<(), LedgerError> {
    let d = File::open(dir).map_err(|source| LedgerError::Io {
        what: "open directory",
        path: dir.to_path_buf(),
        source,
    })?;
    rustix::fs::syncfs(&d).map_err(|e| LedgerError::Io {
        what: "syncfs",
        path: dir.to_path_buf(),
        source: e.into(),
    })
}

/// Reads a whole ledger file; a missing file is [`LedgerError::Missing`], naming it.
pub fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, LedgerError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            LedgerError::Missing {
                file: path.to_path_buf(),
            }
        } else {
            LedgerError::Io {
                what,
                path: path.to_path_buf(),
                source,
            }
        }
    })
}
