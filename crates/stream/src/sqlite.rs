//! The embedded backend: one SQLite file, `<data-dir>/stream.db`, schema in
//! `migrations/sqlite/stream/` (see `crates/stream/README.md`).
//!
//! Durability: WAL journal with `synchronous=FULL`, so a commit has reached the disk (the WAL
//! is fsynced) before `append` returns. Positions are the `events` table's row ids
//! (`AUTOINCREMENT`: never reused), assigned inside the write transaction; SQLite admits one
//! writer at a time, so positions are committed in increasing order and a reader never sees a
//! later position before an earlier one.
//!
//! rusqlite is synchronous; every call runs on tokio's blocking pool. One writer connection
//! behind a mutex serialises appends; reads use a small pool of separate connections, which
//! WAL lets run alongside the writer, each seeing the last committed state.
//!
//! An append is one `BEGIN IMMEDIATE` transaction: one query fetches whatever the store holds
//! at the batch's seqs or in its streams, then multi-row `INSERT`s (up to
//! [`MAX_ROWS_PER_INSERT`] rows per statement, within SQLite's parameter limit) write the new
//! events as soon as they are validated, while helper threads are still validating later ones,
//! and one commit makes it durable.
//!
//! Checkpoints (copying the WAL into the database file) are made once an append has returned,
//! on the blocking pool while its callers go on, or, if the next append takes the writer
//! first, by that append before `BEGIN` while the helper threads validate its batch. Never
//! inside a commit, as SQLite does by itself: the caller would wait for the checkpoint's writes
//! and fsync with nothing else to do meanwhile. SQLite's automatic checkpoint remains as a
//! backstop at [`AUTOCHECKPOINT_PAGES`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::stream::BoxStream;
use rusqlite::limits::Limit;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
use tokio::sync::watch;
use triplicate_core::Timestamp;

use crate::event::{DecisionRecorded, EventMetadata, StreamId, EVENT_TYPE};
use crate::plan::{check_shape, Held, Holdings, Planner, Step, Validation};
use crate::subscription::poll_subscription;
use crate::{
    AppendOutcome, AppendRequest, EventStream, Limits, Page, Position, StoredEvent, StreamError,
};

/// Schema migrations, in order; `schema_version` records the last one applied.
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    include_str!("../../../migrations/sqlite/stream/0001_events.sql"),
)];
const LATEST_SCHEMA: i64 = 1;

/// Upper bound on rows per `INSERT`. Past a few dozen rows a longer statement saves nothing
/// (measured in `benches/sqlite_settings.rs`) and costs more to prepare.
const MAX_ROWS_PER_INSERT: usize = 256;
/// Rows are written in multiples of this many while a batch is still being validated.
const ROWS_QUANTUM: usize = 32;
/// Bound parameters per inserted row: stream id, revision, seq, data, metadata.
const PARAMS_PER_ROW: usize = 5;
/// An append first copies the WAL into the database file when about this many bytes of events
/// went into the WAL since the last complete copy: every append of a large batch, so each
/// checkpoint is small enough to finish while the batch is being validated (measured, see
/// `BENCHMARKS.md`: 1 MiB beat 2, 4 and 8 MiB, and all of them beat SQLite's automatic
/// checkpoint after the commit).
const CHECKPOINT_BYTES: u64 = 1024 * 1024;
/// What a row stores besides its record bytes (stream id, metadata, time, type, integers),
/// rounded up, for [`CHECKPOINT_BYTES`].
const ROW_OVERHEAD: usize = 200;
/// SQLite's own checkpoint after a commit, when the WAL holds this many pages: a backstop
/// (the WAL is normally copied at the start of an append, see `append_blocking`), set above
/// what the largest batch writes (64 MiB, about 4,500 pages of 16 KiB) so a single append
/// never triggers it.
const AUTOCHECKPOINT_PAGES: i64 = 8_192;
/// Largest page a read returns, whatever the caller asks: bounds the memory of one read.
const MAX_PAGE: usize = 10_000;
/// Pages a subscription reads while catching up.
const SUBSCRIPTION_PAGE: usize = 500;
/// Idle reader connections kept for reuse.
const READER_POOL: usize = 4;

/// The limits of one append here: one transaction of at most 10,000 events and 64 MiB keeps
/// the writer lock held for well under a second.
pub(crate) const SQLITE_LIMITS: Limits = Limits {
    max_batch_events: 10_000,
    max_batch_bytes: 64 * 1024 * 1024,
};

/// How to open `stream.db`.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How long an append waits for another process's write lock before failing with
    /// [`StreamError::Unavailable`].
    pub busy_timeout: Duration,
    /// How often an idle subscription looks for events appended through another handle or
    /// process (appends through this handle wake it at once).
    pub poll_interval: Duration,
    /// Refuse to grow the file past about this many bytes ([`StreamError::Full`]; nothing of
    /// the refused batch is written). `None`: only the disk limits it.
    pub max_size_bytes: Option<u64>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(500),
            max_size_bytes: None,
        }
    }
}

/// The embedded event stream. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct SqliteStream {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    options: SqliteOptions,
    rows_per_insert: usize,
    /// `None` once closed.
    writer: Mutex<Option<Writer>>,
    /// Idle reader connections, each with the [`Inner::generation`] of the file it opened.
    readers: Mutex<Vec<(u64, Connection)>>,
    /// Bumped when [`SqliteStream::replace`] puts another file at `path`: a reader of an
    /// older generation still reads the replaced file and is not pooled again.
    generation: AtomicU64,
    closed: AtomicBool,
    /// Bumped after every commit that wrote events (and on close), to wake subscriptions.
    commits: watch::Sender<u64>,
    /// A checkpoint task is queued (see `append`).
    checkpoint_queued: AtomicBool,
}

/// The writer connection and what it knows of the WAL.
struct Writer {
    conn: Connection,
    /// Bytes of events committed since the last checkpoint that copied the whole WAL into the
    /// database file: an estimate of the WAL's size (a page holds rows and some slack).
    uncheckpointed: u64,
}

impl std::fmt::Debug for SqliteStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStream")
            .field("path", &self.inner.path)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

/// Maps a SQLite error to what a caller can act on.
fn sql(context: &'static str) -> impl Fn(rusqlite::Error) -> StreamError {
    move |e| match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StreamError::Unavailable {
            reason: format!("{context}: {e}"),
        },
        Some(ErrorCode::DiskFull) => StreamError::Full {
            reason: format!("{context}: {e}"),
        },
        _ => StreamError::Backend {
            context,
            source: Box::new(e),
        },
    }
}

fn to_i64(v: u64, what: &'static str) -> Result<i64, StreamError> {
    i64::try_from(v).map_err(|_| StreamError::Backend {
        context: what,
        source: format!("{v} does not fit SQLite's 64-bit signed integer").into(),
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StreamError> + Send + 'static,
) -> Result<T, StreamError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StreamError::Backend {
            context: "run database task",
            source: Box::new(e),
        })?
}

impl SqliteStream {
    /// Opens `<data_dir>/stream.db`, creating the directory and the file if needed, with
    /// default options.
    pub async fn open(data_dir: &Path) -> Result<SqliteStream, StreamError> {
        SqliteStream::open_with(data_dir, SqliteOptions::default()).await
    }

    /// Opens `<data_dir>/stream.db`: sets WAL and `synchronous=FULL`, applies the schema
    /// migrations this build knows, and refuses a file that is not a stream database or has a
    /// newer schema.
    pub async fn open_with(
        data_dir: &Path,
        options: SqliteOptions,
    ) -> Result<SqliteStream, StreamError> {
        let dir = data_dir.to_path_buf();
        let path = dir.join("stream.db");
        let (p, o) = (path.clone(), options.clone());
        let (writer, rows_per_insert) = blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|source| StreamError::Io {
                context: "create data directory",
                path: dir.clone(),
                source,
            })?;
            open_writer(&p, &o)
        })
        .await?;
        let (commits, _) = watch::channel(0);
        tracing::info!(path = %path.display(), "opened event stream");
        Ok(SqliteStream {
            inner: Arc::new(Inner {
                path,
                options,
                rows_per_insert,
                writer: Mutex::new(Some(Writer {
                    conn: writer,
                    // Whatever an earlier run left in the WAL is copied by the first append.
                    uncheckpointed: CHECKPOINT_BYTES,
                })),
                readers: Mutex::new(Vec::new()),
                generation: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                commits,
                checkpoint_queued: AtomicBool::new(false),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Closes the database (checkpointing the WAL into the file). Every later call on this
    /// handle or its clones fails with [`StreamError::Closed`]; subscriptions yield that error
    /// and end. Waits for an append in progress to finish first.
    pub async fn close(&self) -> Result<(), StreamError> {
        self.inner.closed.store(true, Ordering::SeqCst);
        let inner = self.inner.clone();
        let out = blocking(move || {
            let writer = inner
                .writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            let readers =
                std::mem::take(&mut *inner.readers.lock().unwrap_or_else(PoisonError::into_inner));
            drop(readers);
            match writer {
                Some(w) => w.conn.close().map_err(|(_, e)| sql("close stream.db")(e)),
                None => Ok(()),
            }
        })
        .await;
        self.inner.commits.send_modify(|n| *n = n.wrapping_add(1));
        tracing::info!(path = %self.inner.path.display(), "closed event stream");
        out
    }

    /// Starts rebuilding this stream beside it: a new, empty stream database in
    /// `<data-dir>/stream-rebuild/` (a leftover of an interrupted rebuild there is discarded:
    /// it was never in use), whose positions continue after every position this file has
    /// used, so a subscriber's cursor never points into the new file's events. Fill it through
    /// its ordinary appends (every rule of the trait holds), then put it in place with
    /// [`SqliteStream::replace`]. Dropping the [`Replacement`] instead leaves this stream as
    /// it is.
    ///
    /// The stream is append-only: this is how a damaged one is mended (an event altered,
    /// removed or forged by someone with the file), never by changing its rows.
    pub async fn prepare_replacement(&self) -> Result<Replacement, StreamError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(StreamError::Closed);
        }
        let dir = self.rebuild_dir();
        let d = dir.clone();
        blocking(move || match std::fs::remove_dir_all(&d) {
            Ok(()) => {
                tracing::warn!(dir = %d.display(), "discarded the leftover of an interrupted stream rebuild");
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StreamError::Io {
                context: "remove the leftover of an interrupted rebuild",
                path: d,
                source,
            }),
        })
        .await?;
        // The highest position ever used here: the larger of the row ids and SQLite's own
        // AUTOINCREMENT counter (either could have been edited by someone with the file).
        let used: i64 = self
            .read(|c| {
                c.query_row(
                    "SELECT MAX(COALESCE((SELECT MAX(position) FROM events), 0),
                                COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0))",
                    [],
                    |r| r.get(0),
                )
                .map_err(sql("read the highest position"))
            })
            .await?;
        let stream = SqliteStream::open_with(&dir, self.inner.options.clone()).await?;
        let inner = stream.inner.clone();
        blocking(move || {
            let guard = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let w = guard.as_ref().ok_or(StreamError::Closed)?;
            w.conn
                .execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?1)",
                    [used],
                )
                .map_err(sql("continue the positions"))?;
            Ok(())
        })
        .await?;
        tracing::info!(dir = %dir.display(), after_position = used, "preparing a replacement stream");
        Ok(Replacement { stream, dir })
    }

    fn rebuild_dir(&self) -> PathBuf {
        self.inner.path.parent().map_or_else(
            || PathBuf::from("stream-rebuild"),
            |p| p.join("stream-rebuild"),
        )
    }

    /// Puts a filled [`Replacement`] in this stream's place, for this handle and its clones:
    /// waits for an append in progress, closes the file (checkpointing its WAL), renames it
    /// (and its `-wal`/`-shm` files, if a reader still holds them) to
    /// `stream.db.replaced-<label>`, kept as evidence, moves the new file to `stream.db` and
    /// reopens it. Reads already running finish on the old file; later ones and
    /// subscriptions (woken now) read the new one, whose events all come after the old
    /// positions. `label` (letters, digits, `-`, `_`, at most 64) names the kept file; a file
    /// of that name already there is refused, as is a closed handle.
    ///
    /// If a rename fails the old file is put back and reopened, and the error returned; if the
    /// new file then cannot be opened the handle is left closed ([`StreamError::Closed`] on
    /// every later call) and the error says why.
    pub async fn replace(
        &self,
        replacement: Replacement,
        label: &str,
    ) -> Result<Replaced, StreamError> {
        if label.is_empty()
            || label.len() > 64
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(StreamError::Backend {
                context: "replace stream.db",
                source: format!("the label {label:?} is not 1 to 64 letters, digits, '-' or '_'")
                    .into(),
            });
        }
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(StreamError::Closed);
        }
        let highest_seq = replacement.stream.highest_seq().await?;
        let new_path = replacement.stream.path().to_path_buf();
        replacement.stream.close().await?;
        let kept_at = self
            .inner
            .path
            .with_file_name(format!("stream.db.replaced-{label}"));
        let inner = self.inner.clone();
        let (dir, kept) = (replacement.dir.clone(), kept_at.clone());
        let out = blocking(move || swap_files(&inner, &new_path, &kept, &dir)).await;
        self.inner.commits.send_modify(|n| *n = n.wrapping_add(1));
        out?;
        tracing::warn!(
            path = %self.inner.path.display(),
            kept_at = %kept_at.display(),
            ?highest_seq,
            "the stream was replaced by a rebuilt one"
        );
        Ok(Replaced {
            kept_at,
            highest_seq,
        })
    }

    /// Runs `f` with a reader connection from the pool (opening one if none is idle).
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StreamError> + Send + 'static,
    ) -> Result<T, StreamError> {
        let inner = self.inner.clone();
        blocking(move || {
            if inner.closed.load(Ordering::SeqCst) {
                return Err(StreamError::Closed);
            }
            let current = inner.generation.load(Ordering::SeqCst);
            let pooled = inner
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
                .filter(|(g, _)| *g == current);
            let (generation, conn) = match pooled {
                Some(c) => c,
                None => (current, open_reader(&inner.path, &inner.options)?),
            };
            let out = f(&conn);
            if !inner.closed.load(Ordering::SeqCst)
                && generation == inner.generation.load(Ordering::SeqCst)
            {
                let mut pool = inner.readers.lock().unwrap_or_else(PoisonError::into_inner);
                if pool.len() < READER_POOL {
                    pool.push((generation, conn));
                }
            }
            out
        })
        .await
    }
}

/// A new stream being built to replace a damaged one ([`SqliteStream::prepare_replacement`]).
#[derive(Debug)]
pub struct Replacement {
    stream: SqliteStream,
    dir: PathBuf,
}

impl Replacement {
    /// The new stream: fill it through its ordinary appends.
    pub fn stream(&self) -> &SqliteStream {
        &self.stream
    }
}

/// What [`SqliteStream::replace`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    /// Where the replaced file is kept.
    pub kept_at: PathBuf,
    /// The highest seq the new stream holds (`None`: empty).
    pub highest_seq: Option<u64>,
}

/// Moves a database's `-wal` and `-shm` files, where there are any, along with it (a reader
/// still holding the old file open keeps its WAL).
fn move_side_files(from: &Path, to: &Path) {
    let side = |p: &Path, suffix: &str| {
        let mut s = p.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    for suffix in ["-wal", "-shm"] {
        let file = side(from, suffix);
        if file.exists() {
            if let Err(e) = std::fs::rename(&file, side(to, suffix)) {
                tracing::warn!(file = %file.display(), error = %e, "could not move a stream database's side file");
            }
        }
    }
}

/// The file moves of [`SqliteStream::replace`], under the writer lock.
fn swap_files(
    inner: &Inner,
    new_path: &Path,
    kept: &Path,
    rebuild_dir: &Path,
) -> Result<(), StreamError> {
    let io = |context: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| StreamError::Io {
            context,
            path,
            source,
        }
    };
    let mut guard = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
    if inner.closed.load(Ordering::SeqCst) {
        return Err(StreamError::Closed);
    }
    if kept.exists() {
        return Err(StreamError::Io {
            context: "keep the replaced stream",
            path: kept.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a replaced stream is already kept under this name",
            ),
        });
    }
    let Some(w) = guard.take() else {
        return Err(StreamError::Closed);
    };
    inner.generation.fetch_add(1, Ordering::SeqCst);
    drop(std::mem::take(
        &mut *inner.readers.lock().unwrap_or_else(PoisonError::into_inner),
    ));
    if let Err((conn, e)) = w.conn.close() {
        *guard = Some(Writer {
            conn,
            uncheckpointed: w.uncheckpointed,
        });
        return Err(sql("close stream.db before replacing it")(e));
    }
    let path = &inner.path;
    // Put whatever is at `path` back in use; `result` is what the caller hears.
    let reopen = |guard: &mut Option<Writer>, result: Result<(), StreamError>| match open_writer(
        path,
        &inner.options,
    ) {
        Ok((conn, _)) => {
            *guard = Some(Writer {
                conn,
                uncheckpointed: CHECKPOINT_BYTES,
            });
            result
        }
        Err(e) => {
            inner.closed.store(true, Ordering::SeqCst);
            tracing::error!(path = %path.display(), error = %e, "stream.db could not be reopened; the stream is closed");
            result.and(Err(e))
        }
    };
    if let Err(e) = std::fs::rename(path, kept).map_err(io("keep the replaced stream", kept)) {
        return reopen(&mut guard, Err(e));
    }
    move_side_files(path, kept);
    if let Err(e) =
        std::fs::rename(new_path, path).map_err(io("move the new stream in place", path))
    {
        if let Err(back) = std::fs::rename(kept, path) {
            // Nothing is at `path` now: reopening would create an empty stream there.
            inner.closed.store(true, Ordering::SeqCst);
            tracing::error!(
                path = %path.display(),
                kept = %kept.display(),
                error = %back,
                "the old stream could not be put back; the stream is closed"
            );
            return Err(e);
        }
        move_side_files(kept, path);
        return reopen(&mut guard, Err(e));
    }
    // The new file was closed by its only connection, which leaves no WAL behind; should one
    // be there all the same, it holds committed events and goes with the file.
    move_side_files(new_path, path);
    if let Some(parent) = path.parent() {
        if let Err(e) = std::fs::File::open(parent).and_then(|d| d.sync_all()) {
            tracing::warn!(dir = %parent.display(), error = %e, "could not sync the data directory after replacing the stream");
        }
    }
    if let Err(e) = std::fs::remove_dir_all(rebuild_dir) {
        tracing::warn!(dir = %rebuild_dir.display(), error = %e, "could not remove the rebuild directory");
    }
    reopen(&mut guard, Ok(()))
}

fn open_writer(path: &Path, o: &SqliteOptions) -> Result<(Connection, usize), StreamError> {
    let incompatible = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StreamError::IncompatibleDatabase {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
        _ => sql("open stream.db")(e),
    };
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(incompatible)?;
    conn.busy_timeout(o.busy_timeout)
        .map_err(sql("set busy timeout"))?;
    // Rows are ~1.3 KB: 4 KiB pages hold two and waste a third of each page; 16 KiB pages hold
    // eleven. Only takes effect when the file is new (before the first table exists).
    conn.pragma_update(None, "page_size", 16_384)
        .map_err(incompatible)?;
    // Reading the journal mode is the first read of the file: a file that is not a database
    // fails here.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(incompatible)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StreamError::IncompatibleDatabase {
            path: path.to_path_buf(),
            reason: format!("the journal mode stayed {mode:?}; the stream needs WAL"),
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql("set synchronous=FULL"))?;
    // A few MB of page cache keeps the two unique indexes' upper levels in memory.
    conn.pragma_update(None, "cache_size", -16_384)
        .map_err(sql("set cache size"))?;
    // Appends checkpoint the WAL themselves (see `append_blocking`); SQLite's automatic
    // checkpoint stays as a backstop.
    conn.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES)
        .map_err(sql("set the automatic checkpoint"))?;
    if let Some(max) = o.max_size_bytes {
        let page: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(sql("read page size"))?;
        let pages = (max / u64::try_from(page.max(512)).unwrap_or(4096)).max(1);
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            .map_err(sql("set size limit"))?;
    }
    migrate(&mut conn, path)?;
    conn.set_prepared_statement_cache_capacity(64);
    let params = usize::try_from(conn.limit(Limit::SQLITE_LIMIT_VARIABLE_NUMBER)).unwrap_or(999);
    let rows = ((params.saturating_sub(2)) / PARAMS_PER_ROW).clamp(1, MAX_ROWS_PER_INSERT);
    Ok((conn, rows))
}

fn open_reader(path: &Path, o: &SqliteOptions) -> Result<Connection, StreamError> {
    // Read-write flags so the connection can use the WAL index; `query_only` forbids writes.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql("open a reader on stream.db"))?;
    conn.busy_timeout(o.busy_timeout)
        .map_err(sql("set busy timeout"))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(sql("make the reader read-only"))?;
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

/// Brings the schema up to [`LATEST_SCHEMA`] in one transaction, or refuses the file.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StreamError> {
    let incompatible = |reason: String| StreamError::IncompatibleDatabase {
        path: path.to_path_buf(),
        reason,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql("begin migration"))?;
    let tables: Vec<String> = {
        let mut q = tx
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .map_err(sql("list tables"))?;
        let names = q
            .query_map([], |r| r.get(0))
            .map_err(sql("list tables"))?
            .collect::<Result<_, _>>()
            .map_err(sql("list tables"))?;
        names
    };
    let current: i64 = if tables.iter().any(|t| t == "schema_version") {
        tx.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .map_err(sql("read schema version"))?
    } else if tables.is_empty() {
        0
    } else {
        return Err(incompatible(format!(
            "it has tables ({}) but no schema_version: not a stream database",
            tables.join(", ")
        )));
    };
    if current > LATEST_SCHEMA {
        return Err(incompatible(format!(
            "its schema version is {current}; this build knows versions up to {LATEST_SCHEMA}"
        )));
    }
    for (version, script) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.execute_batch(script)
            .map_err(sql("apply schema migration"))?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
            rusqlite::params![version, Timestamp::now().to_string()],
        )
        .map_err(sql("record schema version"))?;
        tracing::info!(path = %path.display(), version, "applied stream schema migration");
    }
    tx.commit().map_err(sql("commit migration"))
}

/// One row as stored, before it is decoded. The text columns are borrowed from SQLite's row
/// (only the record bytes are copied out), so reading an event allocates once for its data.
struct Row<'r> {
    position: i64,
    stream_id: &'r str,
    revision: i64,
    seq: i64,
    event_type: &'r str,
    data: Vec<u8>,
    metadata: &'r str,
    recorded_at: &'r str,
}

const SELECT: &str = "SELECT position, stream_id, revision, seq, event_type, data, metadata, recorded_at FROM events";

/// Column `i` as text borrowed from the row; refused as `get::<String>` refuses it (a value
/// of another type, or text that is not UTF-8).
fn text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    let v = r.get_ref(i)?;
    v.as_str().map_err(|e| match e {
        rusqlite::types::FromSqlError::InvalidType => {
            rusqlite::Error::InvalidColumnType(i, String::new(), v.data_type())
        }
        other => rusqlite::Error::FromSqlConversionFailure(i, v.data_type(), Box::new(other)),
    })
}

fn row<'r>(r: &'r rusqlite::Row<'_>) -> rusqlite::Result<Row<'r>> {
    Ok(Row {
        position: r.get(0)?,
        stream_id: text(r, 1)?,
        revision: r.get(2)?,
        seq: r.get(3)?,
        event_type: text(r, 4)?,
        data: r.get(5)?,
        metadata: text(r, 6)?,
        recorded_at: text(r, 7)?,
    })
}

/// Turns a row back into an event, refusing rows that cannot be one. The data is returned as
/// stored: whether it matches its hash is the verifier's question.
fn decode(r: Row<'_>) -> Result<StoredEvent, StreamError> {
    let position = Position::new(u64::try_from(r.position).unwrap_or(0), 0);
    let damaged = |reason: String| StreamError::Damaged { position, reason };
    if r.event_type != EVENT_TYPE {
        return Err(damaged(format!("event type {:?}", r.event_type)));
    }
    let stream_id: StreamId = r.stream_id.parse().map_err(damaged)?;
    let meta = EventMetadata::from_json(r.metadata).map_err(damaged)?;
    let seq = u64::try_from(r.seq).map_err(|_| damaged(format!("seq {}", r.seq)))?;
    if meta.seq != seq {
        return Err(damaged(format!(
            "metadata says seq {} but the row's seq is {seq}",
            meta.seq
        )));
    }
    Ok(StoredEvent {
        position,
        stream_id,
        revision: u64::try_from(r.revision)
            .map_err(|_| damaged(format!("revision {}", r.revision)))?,
        event: DecisionRecorded {
            seq,
            decision_id: stream_id.decision_id(),
            leaf_hash: meta.leaf_hash,
            record_bytes: r.data,
        },
        stored_at: r
            .recorded_at
            .parse()
            .map_err(|e| damaged(format!("recorded_at {:?}: {e}", r.recorded_at)))?,
    })
}

/// What the store holds at the batch's seqs (one contiguous range) or in its streams, in one
/// query. Rows found by seq are not fetched again by stream.
fn holdings(
    tx: &rusqlite::Transaction<'_>,
    batch: &[AppendRequest],
) -> Result<Holdings, StreamError> {
    let first = to_i64(batch[0].event.seq, "seq")?;
    let last = to_i64(batch[batch.len() - 1].event.seq, "seq")?;
    let mut ids = String::with_capacity(batch.len() * 48 + 2);
    ids.push('[');
    for (i, r) in batch.iter().enumerate() {
        if i > 0 {
            ids.push(',');
        }
        ids.push('"');
        ids.push_str(&r.event.stream_id().to_string());
        ids.push('"');
    }
    ids.push(']');
    let mut held = Holdings::default();
    {
        // `CROSS JOIN` keeps json_each as the outer loop, so each stream id is one probe of the
        // (stream_id, revision) index rather than a scan of the table.
        let mut q = tx
            .prepare_cached(
                "SELECT seq, stream_id, revision, data, position FROM events WHERE seq BETWEEN ?1 AND ?2
                 UNION ALL
                 SELECT e.seq, e.stream_id, e.revision, e.data, e.position
                   FROM json_each(?3) AS j CROSS JOIN events AS e ON e.stream_id = j.value
                  WHERE e.seq NOT BETWEEN ?1 AND ?2",
            )
            .map_err(sql("prepare pre-check"))?;
        let mut rows = q
            .query(rusqlite::params![first, last, ids])
            .map_err(sql("read what the batch collides with"))?;
        while let Some(r) = rows
            .next()
            .map_err(sql("read what the batch collides with"))?
        {
            let seq: i64 = r.get(0).map_err(sql("read seq"))?;
            let sid: String = r.get(1).map_err(sql("read stream id"))?;
            let revision: i64 = r.get(2).map_err(sql("read revision"))?;
            let data = r.get_ref(3).map_err(sql("read data"))?;
            let data = data.as_blob().map_err(|e| sql("read data")(e.into()))?;
            let position: i64 = r.get(4).map_err(sql("read position"))?;
            let position = Position::new(u64::try_from(position).unwrap_or(0), 0);
            let damaged = |reason: String| StreamError::Damaged { position, reason };
            held.add(Held::new(
                u64::try_from(seq).map_err(|_| damaged(format!("seq {seq}")))?,
                sid.parse().map_err(damaged)?,
                u64::try_from(revision).map_err(|_| damaged(format!("revision {revision}")))?,
                data,
            ));
        }
    }
    let highest: Option<i64> = tx
        .query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))
        .map_err(sql("read highest seq"))?;
    held.highest_seq = highest.and_then(|h| u64::try_from(h).ok());
    Ok(held)
}

/// The multi-row INSERT for `rows` rows: `?1` is the commit time and `?2` the event type,
/// shared by every row; then five parameters per row.
fn insert_sql(rows: usize) -> String {
    let mut s = String::from(
        "INSERT INTO events (stream_id, revision, seq, event_type, data, metadata, recorded_at) VALUES ",
    );
    for i in 0..rows {
        let b = 3 + i * PARAMS_PER_ROW;
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "(?{},?{},?{},?2,?{},?{},?1)",
            b,
            b + 1,
            b + 2,
            b + 3,
            b + 4
        ));
    }
    s
}

/// A row waiting to be inserted; borrows the event's bytes rather than copying them.
struct NewRow<'a> {
    stream_id: String,
    revision: i64,
    seq: i64,
    data: &'a [u8],
    metadata: String,
}

fn insert(
    tx: &rusqlite::Transaction<'_>,
    rows: &[NewRow<'_>],
    recorded_at: &str,
) -> Result<i64, StreamError> {
    let mut stmt = tx
        .prepare_cached(&insert_sql(rows.len()))
        .map_err(sql("prepare insert"))?;
    stmt.raw_bind_parameter(1, recorded_at)
        .map_err(sql("bind"))?;
    stmt.raw_bind_parameter(2, EVENT_TYPE)
        .map_err(sql("bind"))?;
    for (i, r) in rows.iter().enumerate() {
        let b = 3 + i * PARAMS_PER_ROW;
        stmt.raw_bind_parameter(b, r.stream_id.as_str())
            .map_err(sql("bind"))?;
        stmt.raw_bind_parameter(b + 1, r.revision)
            .map_err(sql("bind"))?;
        stmt.raw_bind_parameter(b + 2, r.seq).map_err(sql("bind"))?;
        stmt.raw_bind_parameter(b + 3, r.data)
            .map_err(sql("bind"))?;
        stmt.raw_bind_parameter(b + 4, r.metadata.as_str())
            .map_err(sql("bind"))?;
    }
    stmt.raw_execute().map_err(sql("insert events"))?;
    Ok(tx.last_insert_rowid())
}

/// Copies the WAL into the database file (`PRAGMA wal_checkpoint(PASSIVE)`: readers are not
/// waited for, and pages a reader may still need stay in the WAL until a later checkpoint).
/// True when every frame was copied, so the next write transaction starts the WAL over.
fn checkpoint(conn: &Connection) -> Result<bool, rusqlite::Error> {
    let (busy, log, copied): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    Ok(busy == 0 && copied >= log)
}

/// Checkpoints when [`CHECKPOINT_BYTES`] went into the WAL since the last complete copy.
fn checkpoint_if_due(w: &mut Writer) {
    if w.uncheckpointed < CHECKPOINT_BYTES {
        return;
    }
    match checkpoint(&w.conn) {
        Ok(true) => w.uncheckpointed = 0,
        // A reader still needs some frames: the next append tries again.
        Ok(false) => {}
        // The batch does not depend on it; SQLite's own checkpoint is the backstop.
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint of stream.db failed; the next append tries again");
        }
    }
}

fn append_blocking(
    w: &mut Writer,
    batch: &[AppendRequest],
    rows_per_insert: usize,
) -> Result<AppendOutcome, StreamError> {
    check_shape(batch, SQLITE_LIMITS)?;
    Validation::run(batch, |v| {
        // The WAL is copied into the database file here, while helper threads validate this
        // batch, rather than by SQLite's automatic checkpoint at the end of a commit, where
        // its writes and fsync would delay the caller with nothing else to overlap them.
        // Done before `BEGIN`, so a complete checkpoint lets this transaction start the WAL
        // over (it stays about one batch long, its pages hot in the OS cache).
        checkpoint_if_due(w);
        let conn = &mut w.conn;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("begin append"))?;
        let held = Arc::new(holdings(&tx, batch)?);
        v.knows(held.clone());
        let mut planner = Planner::new(&held);
        let recorded_at = Timestamp::now().to_string();
        let (mut appended, mut present, mut last_rowid) = (0u64, 0u64, None);
        let mut wal_bytes = 0u64;
        let mut pending: Vec<NewRow<'_>> = Vec::with_capacity(rows_per_insert);
        let mut next = 0;
        while next < batch.len() {
            // Nothing is planned or written before it is known to be valid.
            let ready = v.wait_from(next)?;
            for req in &batch[next..ready] {
                match planner.step(req)? {
                    Step::Present => present += 1,
                    Step::Write { revision } => {
                        let e = &req.event;
                        wal_bytes += (e.record_bytes.len() + ROW_OVERHEAD) as u64;
                        pending.push(NewRow {
                            stream_id: e.stream_id().to_string(),
                            revision: to_i64(revision, "revision")?,
                            seq: to_i64(e.seq, "seq")?,
                            data: &e.record_bytes,
                            metadata: e.metadata().to_json(),
                        });
                    }
                }
            }
            next = ready;
            // Write what is ready while later events are still being checked (in whole
            // quanta, so few statement shapes are prepared and cached), leaving only the last
            // few rows for after the last check, when nothing else overlaps the write.
            let take = if next == batch.len() {
                pending.len()
            } else {
                pending.len() - pending.len() % ROWS_QUANTUM
            };
            let mut at = 0;
            while at < take {
                let n = (take - at).min(rows_per_insert);
                last_rowid = Some(insert(&tx, &pending[at..at + n], &recorded_at)?);
                at += n;
            }
            appended += take as u64;
            pending.drain(..take);
        }
        drop(pending);
        tx.commit().map_err(sql("commit append"))?;
        w.uncheckpointed = w.uncheckpointed.saturating_add(wal_bytes);
        Ok(AppendOutcome {
            appended,
            already_present: present,
            last_position: last_rowid.map(|p| Position::new(u64::try_from(p).unwrap_or(0), 0)),
            highest_seq: planner.highest_seq().unwrap_or(0),
        })
    })
}

impl EventStream for SqliteStream {
    fn limits(&self) -> Limits {
        SQLITE_LIMITS
    }

    async fn append(&self, batch: Vec<AppendRequest>) -> Result<AppendOutcome, StreamError> {
        let span = tracing::debug_span!(
            "stream.append",
            events = batch.len(),
            first_seq = batch.first().map(|r| r.event.seq),
            last_seq = batch.last().map(|r| r.event.seq),
        );
        let inner = self.inner.clone();
        let out = blocking(move || {
            let _g = span.enter();
            if inner.closed.load(Ordering::SeqCst) {
                return Err(StreamError::Closed);
            }
            let mut writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let w = writer.as_mut().ok_or(StreamError::Closed)?;
            let out = append_blocking(w, &batch, inner.rows_per_insert)?;
            tracing::debug!(
                appended = out.appended,
                already_present = out.already_present,
                "appended"
            );
            Ok((out, w.uncheckpointed >= CHECKPOINT_BYTES))
        })
        .await?;
        let (out, due) = out;
        if out.appended > 0 {
            self.inner.commits.send_modify(|n| *n = n.wrapping_add(1));
        }
        if due && !self.inner.checkpoint_queued.swap(true, Ordering::AcqRel) {
            // After this batch's callers have their answer rather than before the next
            // batch's commit: between batches at moderate rates, so no caller waits for it.
            // Not awaited; whichever takes the writer first (this or the next append, which
            // checks too) makes the copy. One queued at a time (a reader holding old frames
            // keeps it due), holding the store only weakly until it runs.
            let inner = Arc::downgrade(&self.inner);
            drop(tokio::task::spawn_blocking(move || {
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                inner.checkpoint_queued.store(false, Ordering::Release);
                let mut writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(w) = writer.as_mut() {
                    checkpoint_if_due(w);
                }
            }));
        }
        Ok(out)
    }

    async fn read_stream(&self, stream_id: &StreamId) -> Result<Vec<StoredEvent>, StreamError> {
        let sid = stream_id.to_string();
        self.read(move |c| {
            let mut q = c
                .prepare_cached(&format!("{SELECT} WHERE stream_id = ?1 ORDER BY revision"))
                .map_err(sql("prepare stream read"))?;
            let mut rows = q.query([sid]).map_err(sql("read stream"))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(sql("read stream"))? {
                out.push(decode(row(r).map_err(sql("read stream"))?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn read_all(&self, after: Option<Position>, limit: usize) -> Result<Page, StreamError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let Ok(after) = i64::try_from(after.map_or(0, |p| p.parts().0)) else {
            // Past any row id SQLite can hold.
            return Ok(Page {
                events: Vec::new(),
                end: true,
            });
        };
        self.read(move |c| {
            let mut q = c
                .prepare_cached(&format!(
                    "{SELECT} WHERE position > ?1 ORDER BY position LIMIT ?2"
                ))
                .map_err(sql("prepare read"))?;
            // One row more than asked tells whether the page reached the end.
            let want = i64::try_from(limit + 1).unwrap_or(i64::MAX);
            let mut rows = q
                .query(rusqlite::params![after, want])
                .map_err(sql("read events"))?;
            let mut events = Vec::with_capacity(limit.min(4_096));
            let mut end = true;
            while let Some(r) = rows.next().map_err(sql("read events"))? {
                if events.len() == limit {
                    // The extra row only says there is more; it is not decoded (nor can it
                    // fail).
                    end = false;
                    break;
                }
                events.push(decode(row(r).map_err(sql("read events"))?)?);
            }
            Ok(Page { events, end })
        })
        .await
    }

    fn subscribe(
        &self,
        after: Option<Position>,
    ) -> BoxStream<'static, Result<StoredEvent, StreamError>> {
        poll_subscription(
            self.clone(),
            after,
            self.inner.commits.subscribe(),
            self.inner.options.poll_interval,
            SUBSCRIPTION_PAGE,
        )
    }

    async fn highest_seq(&self) -> Result<Option<u64>, StreamError> {
        self.read(|c| {
            let v: Option<i64> = c
                .query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))
                .map_err(sql("read highest seq"))?;
            Ok(v.and_then(|v| u64::try_from(v).ok()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The settings durability depends on are the writer connection's own, so they are checked
    /// on it, not on a second connection.
    #[tokio::test]
    async fn the_writer_is_wal_with_full_sync_and_readers_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStream::open(dir.path()).await.unwrap();
        {
            let w = s.inner.writer.lock().unwrap();
            let w = &w.as_ref().unwrap().conn;
            let q = |sql: &str| -> String {
                w.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
                    .map(|v| format!("{v:?}"))
                    .unwrap()
            };
            assert_eq!(q("PRAGMA journal_mode"), "Text(\"wal\")");
            assert_eq!(q("PRAGMA synchronous"), "Integer(2)", "2 is FULL");
            assert_eq!(q("PRAGMA page_size"), "Integer(16384)");
            assert_eq!(q("PRAGMA wal_autocheckpoint"), "Integer(8192)");
        }
        assert!(s.inner.rows_per_insert > 1);
        let e = s
            .read(|c| {
                c.execute("DELETE FROM schema_version", [])
                    .map_err(sql("write through a reader"))
            })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("readonly"), "{e}");
    }

    #[test]
    fn the_insert_statement_numbers_its_parameters() {
        assert_eq!(
            insert_sql(2),
            "INSERT INTO events (stream_id, revision, seq, event_type, data, metadata, recorded_at) \
             VALUES (?3,?4,?5,?2,?6,?7,?1),(?8,?9,?10,?2,?11,?12,?1)"
        );
    }
}
