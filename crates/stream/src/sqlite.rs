//! The embedded backend: one SQLite file, `<data-dir>/stream.db`, in WAL mode with
//! `synchronous=FULL` (a commit is on disk when it returns). Schema:
//! `migrations/sqlite/stream/0001_events.sql`.
//!
//! rusqlite is synchronous; every call runs on tokio's blocking pool behind one connection
//! mutex, which also serialises writers (SQLite allows one anyway). A batch is one transaction:
//! one query finds which of its seqs and streams already exist, one multi-row `INSERT` per 400
//! events writes the rest, one commit makes it durable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use rusqlite::{params_from_iter, Connection, OpenFlags, OptionalExtension};
use tokio::sync::watch;
use triplicate_core::{digest::leaf_hash, Timestamp};

use crate::event::{decision_of, DecisionRecorded, StoredEvent, EVENT_TYPE};
use crate::{AppendOutcome, AppendRequest, EventStream, ExpectedRevision, Page, StreamError};

const SCHEMA: &str = include_str!("../../../migrations/sqlite/stream/0001_events.sql");
const SCHEMA_VERSION: i64 = 1;
/// Rows per multi-row INSERT (8 parameters each, well under SQLite's 32,766 limit).
const ROWS_PER_INSERT: usize = 400;

/// The embedded SQLite event stream.
#[derive(Clone)]
pub struct SqliteStream {
    path: PathBuf,
    conn: Arc<Mutex<Option<Connection>>>,
    /// The last committed global position, for live subscriptions.
    head: watch::Sender<u64>,
}

impl std::fmt::Debug for SqliteStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStream")
            .field("path", &self.path)
            .finish()
    }
}

fn storage(what: &'static str) -> impl Fn(rusqlite::Error) -> StreamError {
    move |e| match e {
        rusqlite::Error::SqliteFailure(code, _)
            if matches!(
                code.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StreamError::Unavailable(format!("{what}: {e}"))
        }
        other => StreamError::Storage {
            what,
            reason: other.to_string(),
        },
    }
}

impl SqliteStream {
    /// Opens (creating) `<data_dir>/stream.db`.
    pub async fn open(data_dir: &Path) -> Result<SqliteStream, StreamError> {
        let path = data_dir.join("stream.db");
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, StreamError> {
            std::fs::create_dir_all(p.parent().unwrap_or(Path::new("."))).map_err(|e| {
                StreamError::Storage {
                    what: "create data directory",
                    reason: e.to_string(),
                }
            })?;
            let conn = Connection::open_with_flags(
                &p,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            )
            .map_err(storage("open stream.db"))?;
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(storage("set WAL mode"))?;
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(storage("set synchronous=FULL"))?;
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .map_err(storage("set busy timeout"))?;
            conn.execute_batch(SCHEMA)
                .map_err(storage("apply schema"))?;
            let v: i64 = conn
                .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
                .map_err(storage("read schema version"))?;
            if v != SCHEMA_VERSION {
                return Err(StreamError::Storage {
                    what: "check schema version",
                    reason: format!("stream.db has schema {v}; this build knows {SCHEMA_VERSION}"),
                });
            }
            Ok(conn)
        })
        .await
        .map_err(|e| StreamError::Unavailable(format!("open task failed: {e}")))??;
        let head: i64 = conn
            .query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
                r.get(0)
            })
            .map_err(storage("read head"))?;
        let (head, _) = watch::channel(u64::try_from(head).unwrap_or(0));
        tracing::info!(path = %path.display(), "opened event stream");
        Ok(SqliteStream {
            path,
            conn: Arc::new(Mutex::new(Some(conn))),
            head,
        })
    }

    /// Closes the database; later calls fail with [`StreamError::Unavailable`].
    pub fn close(&self) {
        let mut g = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        *g = None;
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StreamError> + Send + 'static,
    ) -> Result<T, StreamError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = conn.lock().unwrap_or_else(|p| p.into_inner());
            match g.as_mut() {
                Some(c) => f(c),
                None => Err(StreamError::Unavailable(
                    "the stream database is closed".into(),
                )),
            }
        })
        .await
        .map_err(|e| StreamError::Unavailable(format!("database task failed: {e}")))?
    }
}

fn to_i64(v: u64, what: &'static str) -> Result<i64, StreamError> {
    i64::try_from(v).map_err(|_| StreamError::Storage {
        what,
        reason: format!("{v} does not fit SQLite's integer"),
    })
}

/// One `events` row as read: position, stream id, revision, seq, data, metadata, recorded at.
type EventRow = (i64, String, i64, i64, Vec<u8>, String, String);

fn row_to_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn decode(row: EventRow) -> Result<StoredEvent, StreamError> {
    let (position, stream_id, revision, seq, data, metadata, recorded_at) = row;
    let position = u64::try_from(position).unwrap_or(0);
    let damaged = |reason: String| StreamError::Damaged { position, reason };
    let meta: serde_json::Value =
        serde_json::from_str(&metadata).map_err(|e| damaged(format!("metadata: {e}")))?;
    let leaf_hex = meta["leaf_hash"]
        .as_str()
        .ok_or_else(|| damaged("metadata has no leaf_hash".into()))?;
    let leaf: [u8; 32] = hex::decode(leaf_hex)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| {
            damaged(format!(
                "metadata leaf_hash {leaf_hex:?} is not 32 bytes of hex"
            ))
        })?;
    let decision_id = decision_of(&stream_id)
        .ok_or_else(|| damaged(format!("stream id {stream_id:?} is not decision-<uuid>")))?;
    Ok(StoredEvent {
        position,
        revision: u64::try_from(revision).map_err(|_| damaged("negative revision".into()))?,
        event: DecisionRecorded {
            seq: u64::try_from(seq).map_err(|_| damaged("negative seq".into()))?,
            decision_id,
            leaf_hash: leaf,
            record_bytes: data,
        },
        stream_id,
        recorded_at: recorded_at
            .parse()
            .map_err(|e| damaged(format!("recorded_at: {e}")))?,
    })
}

const SELECT: &str =
    "SELECT position, stream_id, revision, seq, data, metadata, recorded_at FROM events";

fn validate_all(batch: &[AppendRequest]) -> Result<(), StreamError> {
    let check = |offset: usize, part: &[AppendRequest]| -> Result<(), StreamError> {
        for (k, req) in part.iter().enumerate() {
            req.event
                .validate()
                .map_err(|reason| StreamError::InvalidEvent {
                    index: offset + k,
                    reason,
                })?;
        }
        Ok(())
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if batch.len() < 64 || threads < 2 {
        return check(0, batch);
    }
    let chunk = batch.len().div_ceil(threads);
    std::thread::scope(|sc| {
        let handles: Vec<_> = batch
            .chunks(chunk)
            .enumerate()
            .map(|(i, part)| sc.spawn(move || check(i * chunk, part)))
            .collect();
        // Report the earliest invalid event, as a sequential check would.
        let mut first: Option<StreamError> = None;
        for h in handles {
            let r = h.join().unwrap_or_else(|_| {
                Err(StreamError::Storage {
                    what: "validate events",
                    reason: "a validation thread panicked".into(),
                })
            });
            if let (Err(e), None) = (r, &first) {
                first = Some(e);
            }
        }
        first.map_or(Ok(()), Err)
    })
}

fn append_blocking(
    conn: &mut Connection,
    batch: Vec<AppendRequest>,
) -> Result<AppendOutcome, StreamError> {
    if batch.is_empty() {
        return Ok(AppendOutcome {
            appended: 0,
            already_present: 0,
            last_position: None,
        });
    }
    // Validate before touching the database. Parsing and re-canonicalising a record is most of
    // an append's CPU, so large batches are checked on all cores.
    validate_all(&batch)?;
    for (i, req) in batch.iter().enumerate() {
        if i > 0 && req.event.seq != batch[i - 1].event.seq + 1 {
            return Err(StreamError::InvalidEvent {
                index: i,
                reason: format!(
                    "seq {} does not follow {} (a batch holds consecutive seqs)",
                    req.event.seq,
                    batch[i - 1].event.seq
                ),
            });
        }
    }
    let tx = conn.transaction().map_err(storage("begin transaction"))?;
    let first = batch[0].event.seq;
    let last = batch[batch.len() - 1].event.seq;

    // Which seqs of the batch exist already, and which of its decisions.
    let mut by_seq: HashMap<u64, Vec<u8>> = HashMap::new();
    {
        let mut q = tx
            .prepare_cached("SELECT seq, data FROM events WHERE seq BETWEEN ?1 AND ?2")
            .map_err(storage("prepare"))?;
        let rows = q
            .query_map([to_i64(first, "seq")?, to_i64(last, "seq")?], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(storage("read existing seqs"))?;
        for row in rows {
            let (s, d) = row.map_err(storage("read existing seqs"))?;
            by_seq.insert(u64::try_from(s).unwrap_or(u64::MAX), d);
        }
    }
    let mut streams: HashMap<String, (u64, u64, Vec<u8>)> = HashMap::new();
    for chunk in batch.chunks(ROWS_PER_INSERT) {
        let ids: Vec<String> = chunk.iter().map(|r| r.event.stream_id()).collect();
        let sql = format!(
            "SELECT stream_id, revision, seq, data FROM events WHERE stream_id IN ({}) ORDER BY revision",
            vec!["?"; ids.len()].join(",")
        );
        let mut q = tx.prepare_cached(&sql).map_err(storage("prepare"))?;
        let rows = q
            .query_map(params_from_iter(ids.iter()), |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })
            .map_err(storage("read existing streams"))?;
        for row in rows {
            let (id, rev, seq, data) = row.map_err(storage("read existing streams"))?;
            streams.insert(
                id,
                (
                    u64::try_from(rev).unwrap_or(0),
                    u64::try_from(seq).unwrap_or(0),
                    data,
                ),
            );
        }
    }
    let highest: Option<i64> = tx
        .query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))
        .optional()
        .map_err(storage("read highest seq"))?
        .flatten();
    let next_seq = highest.map_or(0, |h| u64::try_from(h).unwrap_or(0) + 1);

    let mut fresh = Vec::new();
    let mut already = 0u64;
    for req in &batch {
        let e = &req.event;
        if let Some(stored) = by_seq.get(&e.seq) {
            if *stored == e.record_bytes {
                already += 1;
                continue;
            }
            return Err(StreamError::SeqConflict {
                seq: e.seq,
                stored: hex::encode(leaf_hash(stored)),
                offered: hex::encode(e.leaf_hash),
            });
        }
        let sid = e.stream_id();
        let revision = match streams.get(&sid) {
            Some((_, stored_seq, data)) => {
                return Err(StreamError::DecisionConflict {
                    stream_id: sid,
                    stored_seq: *stored_seq,
                    stored: hex::encode(leaf_hash(data)),
                    offered_seq: e.seq,
                    offered: hex::encode(e.leaf_hash),
                })
            }
            None => match req.expected {
                ExpectedRevision::NoStream | ExpectedRevision::Any => 0,
                ExpectedRevision::Exact(_) => {
                    return Err(StreamError::WrongExpectedRevision {
                        stream_id: sid,
                        expected: req.expected,
                        actual: None,
                    })
                }
            },
        };
        if fresh.is_empty() && e.seq != next_seq {
            return Err(StreamError::Gap {
                expected: next_seq,
                got: e.seq,
            });
        }
        fresh.push((sid, revision, e));
    }

    let recorded_at = Timestamp::now().to_string();
    let mut last_position = None;
    for chunk in fresh.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO events (stream_id, revision, seq, event_type, data, metadata, recorded_at) VALUES {}",
            vec!["(?,?,?,?,?,?,?)"; chunk.len()].join(",")
        );
        // Owned values first, then one parameter list borrowing them (no copies of the data).
        let ints: Vec<(i64, i64)> = chunk
            .iter()
            .map(|(_, rev, e)| Ok((to_i64(*rev, "revision")?, to_i64(e.seq, "seq")?)))
            .collect::<Result<_, StreamError>>()?;
        let metas: Vec<String> = chunk.iter().map(|(_, _, e)| e.metadata_json()).collect();
        let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * 7);
        for (k, (sid, _, e)) in chunk.iter().enumerate() {
            params.push(sid);
            params.push(&ints[k].0);
            params.push(&ints[k].1);
            params.push(&EVENT_TYPE);
            params.push(&e.record_bytes);
            params.push(&metas[k]);
            params.push(&recorded_at);
        }
        let mut stmt = tx.prepare_cached(&sql).map_err(storage("prepare insert"))?;
        stmt.execute(params_from_iter(params))
            .map_err(storage("insert events"))?;
        last_position = Some(u64::try_from(tx.last_insert_rowid()).unwrap_or(0));
    }
    tx.commit().map_err(storage("commit"))?;
    Ok(AppendOutcome {
        appended: fresh.len() as u64,
        already_present: already,
        last_position,
    })
}

impl EventStream for SqliteStream {
    async fn append(&self, batch: Vec<AppendRequest>) -> Result<AppendOutcome, StreamError> {
        let out = self.with_conn(move |c| append_blocking(c, batch)).await?;
        if let Some(p) = out.last_position {
            self.head.send_replace(p);
        }
        Ok(out)
    }

    async fn read_stream(&self, stream_id: &str) -> Result<Vec<StoredEvent>, StreamError> {
        let sid = stream_id.to_owned();
        self.with_conn(move |c| {
            let mut q = c
                .prepare_cached(&format!("{SELECT} WHERE stream_id = ?1 ORDER BY revision"))
                .map_err(storage("prepare"))?;
            let rows = q
                .query_map([sid], row_to_event)
                .map_err(storage("read stream"))?;
            rows.map(|r| decode(r.map_err(storage("read stream"))?))
                .collect()
        })
        .await
    }

    async fn read_all(&self, from: u64, limit: usize) -> Result<Page, StreamError> {
        let from_i = to_i64(from, "position")?;
        let limit_i = to_i64(limit as u64, "limit")?;
        let events: Vec<StoredEvent> = self
            .with_conn(move |c| {
                let mut q = c
                    .prepare_cached(&format!(
                        "{SELECT} WHERE position >= ?1 ORDER BY position LIMIT ?2"
                    ))
                    .map_err(storage("prepare"))?;
                let rows = q
                    .query_map([from_i, limit_i], row_to_event)
                    .map_err(storage("read all"))?;
                rows.map(|r| decode(r.map_err(storage("read all"))?))
                    .collect()
            })
            .await?;
        let next = if events.len() == limit && limit > 0 {
            events.last().map(|e| e.position + 1)
        } else {
            None
        };
        Ok(Page { events, next })
    }

    fn subscribe(&self, from: u64) -> BoxStream<'static, Result<StoredEvent, StreamError>> {
        let me = self.clone();
        let head = self.head.subscribe();
        let state = (me, head, from, std::collections::VecDeque::new(), false);
        Box::pin(futures::stream::unfold(
            state,
            |(me, mut head, mut from, mut buf, failed)| async move {
                if failed {
                    return None;
                }
                loop {
                    if let Some(e) = buf.pop_front() {
                        return Some((Ok(e), (me, head, from, buf, false)));
                    }
                    match me.read_all(from, 500).await {
                        Err(e) => return Some((Err(e), (me, head, from, buf, true))),
                        Ok(page) if !page.events.is_empty() => {
                            from = page.events.last().map_or(from, |e| e.position + 1);
                            buf.extend(page.events);
                        }
                        Ok(_) => {
                            // Caught up: wait for a commit past `from`.
                            if *head.borrow_and_update() >= from {
                                continue;
                            }
                            if head.changed().await.is_err() {
                                return None;
                            }
                        }
                    }
                }
            },
        ))
    }

    async fn highest_seq(&self) -> Result<Option<u64>, StreamError> {
        self.with_conn(|c| {
            let v: Option<i64> = c
                .query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))
                .map_err(storage("read highest seq"))?;
            Ok(v.and_then(|v| u64::try_from(v).ok()))
        })
        .await
    }
}
