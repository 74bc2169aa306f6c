//! The KurrentDB backend (feature `kurrentdb`): EventStoreDB 20.6+ and KurrentDB servers over
//! gRPC, through the `kurrentdb` client crate. Connection strings are the client's own
//! (`kurrentdb://user:password@host:2113?tls=true`, `esdb://…`, `…+discover://…` for a
//! cluster): TLS, certificate checks, CA file and credentials all come from there.
//!
//! Must not know: anything of the write path but the events it is handed; it speaks to one
//! KurrentDB deployment and nothing else.
//!
//! # Layout on the server
//!
//! | trait | here |
//! |---|---|
//! | stream `decision-<uuid>` | stream `<prefix><uuid>`; the prefix is `decision-` unless [`KurrentOptions::stream_prefix`] says otherwise (tests give each run its own) |
//! | event | type `DecisionRecorded`, data = `record_bytes` (content type `application/octet-stream`, so the bytes are stored exactly), custom metadata = [`EventMetadata::to_json`] |
//! | event id | [`DecisionRecorded::event_id`]: a retried append of the same event is deduplicated by the server itself |
//! | [`Position`] | the event's `$all` position, `Position::new(commit, prepare)` |
//! | global order | `$all` filtered to stream names starting with the prefix |
//! | [`ExpectedRevision`](crate::ExpectedRevision) | checked before writing (below); every write is also sent with `StreamState::NoStream`, so the server refuses a second event for a decision even from another process |
//!
//! The user of the connection string needs to read `$all` (by default only `$admins` may) and
//! to read and write the decision streams.
//!
//! # Appends: checks first, then one append per event (the prefix-durable rule)
//!
//! kurrentdb 1.2 has no multi-stream append (KurrentDB 25.1's `MultiStreamAppend` is reached
//! only through the v2 protocol, which this client does not speak), and every event of a batch
//! is in its own stream. So a batch is written as one single-stream append per new event, each
//! awaited before the next, in seq order — which keeps `$all` order equal to seq order. Before
//! the first write, the whole batch is validated and planned against what the store holds
//! ([`crate::plan`]), so every refusal (invalid event, conflict, wrong expected revision, gap)
//! still writes nothing.
//!
//! A failure *while writing* (the server becomes unreachable, a deadline passes, another
//! process wrote one of the streams meanwhile) can leave a prefix of the batch's new events
//! written. That is the **prefix-durable** rule, stated in the trait docs: every event of the
//! prefix passed every check and is in the ledger, and the store still holds exactly seqs
//! `0..=highest` — the no-gaps rule holds because each write extends the highest seq by one.
//! The error is retryable ([`StreamError::Unavailable`]) unless another writer got in; retrying
//! the same batch finds the prefix present and writes the rest.
//!
//! Appends through one handle are serialised by a `tokio` mutex. The checks read the store and
//! then write, so two *processes* appending at once could interleave their writes; the server's
//! `NoStream` expectation keeps a decision to one event, but only one writer keeps `$all` in seq
//! order. One service process writes; any number may read.
//!
//! # What an append reads first, and what it costs
//!
//! What a batch can collide with is held at its seqs and in its streams. Without an index by
//! seq, "what is stored at seq N" is found through the global order: the filtered `$all` holds
//! exactly seqs `0..=highest` in order, so a known event (seq and position) anchors a range.
//!
//! 1. One backwards read of `$all` from the end, one event: the highest seq and its position.
//! 2. One stream read per new event's stream (seq above the highest), up to
//!    [`PRECHECK_READS`] at once: is the decision already recorded at another seq? Skipped when
//!    the store is empty.
//! 3. Only when the batch reaches at or below the highest seq (a retry, or a conflicting
//!    batch): the events at those seqs. When the batch overlaps the last `batch.len()` events,
//!    that is one backwards read from the highest event. When it lies further back, the
//!    streams its events name are read first (an identical stored event gives its position),
//!    then `$all` is read from the nearest event whose seq and position are known (or from the
//!    start of `$all`), in pages of [`RANGE_PAGE`]. That costs the distance to the nearest
//!    anchor: the batch's length for any retry, and more only for a batch that contradicts
//!    the store at seqs far from every event it names.
//! 4. One append per new event, in seq order; on `Ok` the server has made each durable (a
//!    single node fsyncs before it acknowledges; a cluster acknowledges once a quorum has it).
//!
//! Reads and appends ask for the cluster's leader (`requires-leader`), so a read started after
//! an append returned sees it. Every call but a subscription carries a deadline
//! ([`KurrentOptions::deadline`]).
//!
//! # Reads and subscriptions
//!
//! [`EventStream::read_all`] reads `$all` forwards from the cursor, filtered by stream-name
//! prefix, `limit + 2` events (a read from a position may include the event at it, which is dropped; one
//! more says whether the page reached the end). [`EventStream::subscribe`] is a catch-up
//! subscription to `$all` with the same filter, without the client's automatic resubscription,
//! so a dropped subscription yields one error and ends. Stored times (`stored_at`) have whole
//! seconds: the client crate truncates the server's timestamps.
//!
//! # Limits
//!
//! KurrentDB caps one append request at `MaxAppendSize` bytes (1 MiB by default, at most
//! 16 MiB). Here a request carries one event: at most [`MAX_EVENT_BYTES`] of data and about 120
//! bytes of metadata, far below the default, so a batch is bounded by its number of events —
//! [`KURRENT_LIMITS`], 1,000, which keeps the writer's mutex for at most 1,000 sequential round
//! trips.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, CurrentRevision, EventData, ReadAllOptions,
    ReadStreamOptions, RecordedEvent, StreamPosition, StreamState, SubscribeToAllOptions,
    SubscriptionEvent, SubscriptionFilter,
};
use tokio::sync::Mutex;
use tracing::Instrument;
use triplicate_core::Timestamp;
use uuid::Uuid;

use crate::event::{DecisionRecorded, EventMetadata, StreamId, EVENT_TYPE, MAX_EVENT_BYTES};
use crate::plan::{check_shape, plan_batch, Held, Holdings, Planned, Step};
use crate::{
    AppendOutcome, AppendRequest, EventStream, ExpectedRevision, Limits, Page, Position,
    StoredEvent, StreamError,
};

/// KurrentDB's default `MaxAppendSize`: the most bytes of events one append request may carry.
pub const DEFAULT_MAX_APPEND_SIZE: usize = 1024 * 1024;

/// Generous bound on the metadata of one event (`{"leaf_hash":"<44>","seq":"<≤20>"}` is 85
/// bytes) and the event type.
const METADATA_MAX_BYTES: usize = 256;

// One event is one append request, so this is what makes every request fit the server's
// default `MaxAppendSize`.
const _: () = assert!(MAX_EVENT_BYTES + METADATA_MAX_BYTES <= DEFAULT_MAX_APPEND_SIZE);

/// The limits of one append here: events are written one request each, in sequence, so a
/// batch is bounded by its number of events (the time the writer's mutex is held), not by
/// `MaxAppendSize`. Every event fits the server's limit (see the module docs); the byte bound
/// is what the event bound implies.
pub const KURRENT_LIMITS: Limits = Limits {
    max_batch_events: 1_000,
    max_batch_bytes: 1_000 * MAX_EVENT_BYTES,
};

/// Stream reads an append makes at once while it checks what the store holds.
pub const PRECHECK_READS: usize = 32;
/// Events per read when an append looks for what is stored at seqs far from the end.
pub const RANGE_PAGE: usize = 4_096;
/// Largest page `read_all` returns, whatever the caller asks: bounds the memory of one read.
const MAX_PAGE: usize = 10_000;
/// Above this many events, a search for stored seqs is logged: it means a batch contradicts
/// the store far from every event it names.
const LONG_SEARCH: u64 = 100_000;

/// gRPC status codes (grpc/doc/statuscodes.md) that mean "try again later".
fn transient_code(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::ResourceExhausted
            | tonic::Code::Aborted
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
    )
}

/// How to reach the server and name the streams.
#[derive(Debug, Clone)]
pub struct KurrentOptions {
    /// What every decision stream's name starts with: `<prefix><uuid>`. The global order is
    /// `$all` filtered to this prefix, so two prefixes are two independent stores on one server
    /// (what the tests use). Must not be empty nor start with `$` (system streams). The
    /// [`StreamId`]s handed out stay `decision-<uuid>` whatever the prefix.
    pub stream_prefix: String,
    /// Deadline of each call to the server: one event's append, one page read, one stream
    /// read. A call past it fails with [`StreamError::Unavailable`]. Subscriptions have none.
    pub deadline: Duration,
}

impl Default for KurrentOptions {
    fn default() -> Self {
        KurrentOptions {
            stream_prefix: StreamId::PREFIX.to_string(),
            deadline: Duration::from_secs(30),
        }
    }
}

/// The event stream on a KurrentDB server. Cheap to clone; clones share the connection and
/// the writer's mutex.
#[derive(Clone)]
pub struct KurrentStream {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    prefix: String,
    deadline: Duration,
    /// `host:port,…`, for logs and `Debug` (the settings themselves hold the password).
    hosts: String,
    /// Serialises appends through this handle: the checks and the writes that follow them must
    /// not interleave with another append's, or `$all` could leave seq order.
    writer: Mutex<()>,
}

impl fmt::Debug for KurrentStream {
    // Never the client or its settings: their Debug prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KurrentStream")
            .field("hosts", &self.inner.hosts)
            .field("stream_prefix", &self.inner.prefix)
            .finish()
    }
}

/// Maps a client error to what a caller can act on. Every append is idempotent, so treating
/// an ambiguous server error as retryable costs at most a retry.
fn kurrent_err(context: &'static str) -> impl Fn(kurrentdb::Error) -> StreamError {
    use kurrentdb::Error as E;
    move |e| match e {
        E::ConnectionClosed
        | E::GrpcConnectionError(_)
        | E::DeadlineExceeded
        | E::NotLeaderException(_)
        // The client folds Unavailable, Internal, Unknown and DataLoss into this one.
        | E::ServerError(_) => StreamError::Unavailable {
            reason: format!("{context}: {e}"),
        },
        E::Grpc { code, .. } if transient_code(code) => StreamError::Unavailable {
            reason: format!("{context}: {e}"),
        },
        E::AccessDenied => StreamError::AccessDenied {
            context,
            reason: "the server refused the connection string's credentials or their \
                     permissions (reading $all needs $admins or an ACL granting it)"
                .to_string(),
        },
        other => StreamError::Backend {
            context,
            source: Box::new(other),
        },
    }
}

/// The text between the scheme and the last `@` (the user info, where a password would be),
/// and the part of it after the first `:`.
fn secrets_of(url: &str) -> Vec<String> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let Some(at) = url.rfind('@').filter(|&at| at >= start) else {
        return Vec::new();
    };
    let userinfo = &url[start..at];
    let mut out = vec![userinfo.to_string()];
    if let Some((_, pw)) = userinfo.split_once(':') {
        out.push(pw.to_string());
    }
    // The parser may report them percent-decoded.
    let decoded: Vec<String> = out.iter().map(|s| percent_decode(s)).collect();
    out.extend(decoded);
    out.retain(|s| !s.is_empty());
    // Longest first, so the whole user info is replaced before the password inside it.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with the user info and password of `url` replaced by `***`.
fn redact(url: &str, text: &str) -> String {
    let mut out = text.to_string();
    for secret in secrets_of(url) {
        out = out.replace(&secret, "***");
    }
    out
}

/// A connection string the client cannot use: the reason, never the password.
fn bad_url(url: &str, reason: &str) -> StreamError {
    StreamError::Backend {
        context: "parse the KurrentDB connection string",
        source: format!("{}: {}", redact(url, url), redact(url, reason)).into(),
    }
}

fn check_prefix(prefix: &str) -> Result<(), StreamError> {
    let bad = |why: &str| StreamError::Backend {
        context: "check the stream prefix",
        source: format!("stream prefix {prefix:?} {why}").into(),
    };
    if prefix.is_empty() {
        return Err(bad("is empty: the filter on $all would match every stream"));
    }
    if prefix.starts_with('$') {
        return Err(bad("starts with $, which names system streams"));
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("holds whitespace or control characters"));
    }
    Ok(())
}

/// The server's name for a decision's stream.
fn stream_name(prefix: &str, id: &StreamId) -> String {
    format!("{prefix}{}", id.decision_id().hyphenated())
}

/// The decision stream a server stream name is, refusing any other name (one stream, one name).
fn parse_stream_name(prefix: &str, name: &str) -> Result<StreamId, String> {
    let rest = name
        .strip_prefix(prefix)
        .ok_or_else(|| format!("stream {name:?} does not start with {prefix:?}"))?;
    let id = Uuid::try_parse(rest).map_err(|e| format!("stream {name:?}: {e}"))?;
    if id.hyphenated().to_string() != rest {
        return Err(format!(
            "stream {name:?} does not name its decision canonically"
        ));
    }
    Ok(StreamId::for_decision(id))
}

fn to_kurrent(p: Position) -> kurrentdb::Position {
    let (commit, prepare) = p.parts();
    kurrentdb::Position { commit, prepare }
}

fn from_kurrent(p: kurrentdb::Position) -> Position {
    Position::new(p.commit, p.prepare)
}

/// What a stream read reports when the server did not say where the event is in `$all`
/// (servers before self-committed events carried their position: the gRPC API's `-1`).
fn unknown_position(p: kurrentdb::Position) -> bool {
    p.commit == u64::MAX && p.prepare == u64::MAX
}

/// One event as sent: the parts of a KurrentDB `EventData` (whose fields the client keeps to
/// itself), so the mapping is testable without a server.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outgoing {
    stream: String,
    id: Uuid,
    event_type: &'static str,
    data: Vec<u8>,
    metadata: String,
}

impl Outgoing {
    fn new(prefix: &str, e: &DecisionRecorded) -> Outgoing {
        Outgoing {
            stream: stream_name(prefix, &e.stream_id()),
            id: e.event_id(),
            event_type: EVENT_TYPE,
            data: e.record_bytes.clone(),
            metadata: e.metadata().to_json(),
        }
    }

    fn into_event_data(self) -> EventData {
        // Binary, so the server stores the canonical bytes exactly as given.
        EventData::binary(self.event_type, self.data.into())
            .id(self.id)
            .metadata(self.metadata.into_bytes().into())
    }
}

/// One recorded event's parts, borrowed from the client's `RecordedEvent` (which only the
/// client crate can build), so decoding is testable without a server.
#[derive(Debug, Clone, Copy)]
struct Incoming<'a> {
    stream: &'a str,
    revision: u64,
    event_type: &'a str,
    data: &'a [u8],
    metadata: &'a [u8],
    position: kurrentdb::Position,
    /// Seconds and nanoseconds since the Unix epoch.
    created: (i64, u32),
}

impl<'a> Incoming<'a> {
    fn of(e: &'a RecordedEvent) -> Incoming<'a> {
        Incoming {
            stream: e.stream_id(),
            revision: e.revision,
            event_type: &e.event_type,
            data: &e.data,
            metadata: &e.custom_metadata,
            position: e.position,
            created: (e.created.timestamp(), e.created.timestamp_subsec_nanos()),
        }
    }
}

/// Turns a recorded event back into a `DecisionRecorded`, refusing one that cannot be. The
/// data is returned as stored: whether it matches its hash is the verifier's question.
fn decode(prefix: &str, r: Incoming<'_>) -> Result<StoredEvent, StreamError> {
    let position = from_kurrent(r.position);
    let damaged = |reason: String| StreamError::Damaged { position, reason };
    if r.event_type != EVENT_TYPE {
        return Err(damaged(format!("event type {:?}", r.event_type)));
    }
    let stream_id = parse_stream_name(prefix, r.stream).map_err(damaged)?;
    let metadata = std::str::from_utf8(r.metadata)
        .map_err(|e| damaged(format!("metadata is not UTF-8: {e}")))?;
    let meta = EventMetadata::from_json(metadata).map_err(damaged)?;
    let (secs, nanos) = r.created;
    let stored_at =
        Timestamp::from_unix_nanos(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
            .map_err(|e| damaged(format!("created: {e}")))?;
    Ok(StoredEvent {
        position,
        stream_id,
        revision: r.revision,
        event: DecisionRecorded {
            seq: meta.seq,
            decision_id: stream_id.decision_id(),
            leaf_hash: meta.leaf_hash,
            record_bytes: r.data.to_vec(),
        },
        stored_at,
    })
}

/// The error for a write the server refused because the stream exists after all: another
/// writer recorded the decision between the checks and the write. `stored` is that stream's
/// event, if it could be read.
fn lost_race(req: &AppendRequest, current: CurrentRevision, stored: Option<&Held>) -> StreamError {
    let e = &req.event;
    match stored {
        Some(h) if h.seq == e.seq => StreamError::SeqConflict {
            seq: e.seq,
            stored: h.leaf_hash,
            offered: e.leaf_hash,
        },
        Some(h) => StreamError::DecisionConflict {
            stream_id: e.stream_id(),
            existing_seq: h.seq,
            existing: h.leaf_hash,
            offered_seq: e.seq,
            offered: e.leaf_hash,
            in_batch: false,
        },
        None => StreamError::WrongExpectedRevision {
            stream_id: e.stream_id(),
            expected: ExpectedRevision::NoStream,
            actual: match current {
                CurrentRevision::Current(r) => Some(r),
                CurrentRevision::NoStream => None,
            },
        },
    }
}

fn held_of(e: &StoredEvent) -> Held {
    Held::new(e.event.seq, e.stream_id, e.revision, &e.event.record_bytes)
}

impl KurrentStream {
    /// Connects with default options (streams `decision-<uuid>`). See
    /// [`KurrentStream::connect_with`].
    pub async fn connect(url: &str) -> Result<KurrentStream, StreamError> {
        KurrentStream::connect_with(url, KurrentOptions::default()).await
    }

    /// Parses the connection string (`kurrentdb://…`, `esdb://…`; TLS and credentials as it
    /// says), starts the client and reads the end of `$all` once, so an unreachable server
    /// ([`StreamError::Unavailable`]) or a user who may not read `$all`
    /// ([`StreamError::AccessDenied`]) is known here. A malformed string is
    /// [`StreamError::Backend`] naming the problem; no error or log repeats its password.
    pub async fn connect_with(
        url: &str,
        options: KurrentOptions,
    ) -> Result<KurrentStream, StreamError> {
        let settings: ClientSettings = url
            .parse()
            .map_err(|e: kurrentdb::ClientSettingsParseError| bad_url(url, &e.to_string()))?;
        check_prefix(&options.stream_prefix)?;
        let hosts = settings
            .hosts()
            .iter()
            .map(|h| format!("{}:{}", h.host, h.port))
            .collect::<Vec<_>>()
            .join(",");
        let client = Client::new(settings).map_err(|e| StreamError::Backend {
            context: "start the KurrentDB client",
            source: redact(url, &format!("{e:#}")).into(),
        })?;
        let s = KurrentStream {
            inner: Arc::new(Inner {
                client,
                prefix: options.stream_prefix,
                deadline: options.deadline,
                hosts,
                writer: Mutex::new(()),
            }),
        };
        let highest = s.highest_seq().await?;
        tracing::info!(
            hosts = %s.inner.hosts,
            stream_prefix = %s.inner.prefix,
            highest_seq = ?highest,
            "connected to KurrentDB"
        );
        Ok(s)
    }

    /// The prefix of the decision streams' names on the server.
    pub fn stream_prefix(&self) -> &str {
        &self.inner.prefix
    }

    fn filter(&self) -> SubscriptionFilter {
        SubscriptionFilter::on_stream_name().add_prefix(&self.inner.prefix)
    }

    /// Up to `count` events of `$all` whose stream starts with `prefix`, from `from`.
    async fn read_all_raw(
        &self,
        prefix: &str,
        from: StreamPosition<kurrentdb::Position>,
        backwards: bool,
        count: usize,
        context: &'static str,
    ) -> Result<Vec<RecordedEvent>, StreamError> {
        // `position` first: for Start and End it sets the direction itself.
        let options = ReadAllOptions::default()
            .position(from)
            .filter(SubscriptionFilter::on_stream_name().add_prefix(prefix))
            .max_count(count)
            .requires_leader(true)
            .deadline(self.inner.deadline);
        let options = if backwards {
            options.backwards()
        } else {
            options.forwards()
        };
        let err = kurrent_err(context);
        let mut read = self.inner.client.read_all(&options).await.map_err(&err)?;
        let mut out = Vec::new();
        while let Some(e) = read.next().await.map_err(&err)? {
            // Links are not resolved, so `event` is the record itself.
            if let Some(e) = e.event {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Every event of one decision stream, positions as the server reports them.
    async fn stream_events(&self, stream_id: &StreamId) -> Result<Vec<RecordedEvent>, StreamError> {
        let name = stream_name(&self.inner.prefix, stream_id);
        let options = ReadStreamOptions::default()
            .position(StreamPosition::Start)
            .requires_leader(true)
            .deadline(self.inner.deadline);
        let err = kurrent_err("read a decision stream");
        let mut read = match self.inner.client.read_stream(name.as_str(), &options).await {
            Ok(r) => r,
            Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
            Err(e) => return Err(err(e)),
        };
        let mut out = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(e)) => out.extend(e.event),
                Ok(None) => return Ok(out),
                // The stream does not exist.
                Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
                Err(e) => return Err(err(e)),
            }
        }
    }

    /// Where an event read from its stream is in `$all`, for servers that do not say: a read of
    /// `$all` filtered to that one stream (the server scans `$all` for it).
    async fn position_in_all(&self, name: &str, revision: u64) -> Result<Position, StreamError> {
        let count = usize::try_from(revision)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let found = self
            .read_all_raw(
                name,
                StreamPosition::Start,
                false,
                count,
                "find an event in $all",
            )
            .await?;
        found
            .iter()
            .find(|e| e.stream_id() == name && e.revision == revision)
            .map(|e| from_kurrent(e.position))
            .ok_or_else(|| StreamError::Backend {
                context: "find an event in $all",
                source: format!("{name} revision {revision} is not in $all").into(),
            })
    }

    /// What the store holds that `batch` could collide with (see the module docs for the
    /// reads this makes).
    async fn holdings(&self, batch: &[AppendRequest]) -> Result<Holdings, StreamError> {
        let prefix = self.inner.prefix.as_str();
        let first = batch[0].event.seq;
        let last = batch[batch.len() - 1].event.seq;
        let mut held = Holdings::default();

        let tail = self
            .read_all_raw(prefix, StreamPosition::End, true, 1, "read the end of $all")
            .await?;
        let Some(top) = tail.first() else {
            // Nothing stored under this prefix: no decision stream exists either.
            return Ok(held);
        };
        let top = decode(prefix, Incoming::of(top))?;
        let highest = top.event.seq;
        held.highest_seq = Some(highest);
        // Seq → position of events whose place in $all is known: anchors for range reads.
        let mut known = BTreeMap::from([(highest, top.position)]);
        if (first..=last).contains(&highest) {
            held.add(held_of(&top));
        }

        let near_tail = first <= highest && highest - first < batch.len() as u64;
        // New events' streams must be checked; when the batch reaches far below the tail, its
        // other events' streams are read too, as anchors for the range read.
        let streams: BTreeSet<StreamId> = batch
            .iter()
            .filter(|r| r.event.seq > highest || (!near_tail && r.event.seq != highest))
            .map(|r| r.event.stream_id())
            .collect();
        let found: Vec<Vec<RecordedEvent>> = futures::stream::iter(streams)
            .map(|sid| async move { self.stream_events(&sid).await })
            .buffer_unordered(PRECHECK_READS)
            .try_collect()
            .await?;
        for e in found.iter().flatten() {
            let e = decode(prefix, Incoming::of(e))?;
            if !unknown_position(to_kurrent(e.position)) {
                known.insert(e.event.seq, e.position);
            }
            held.add(held_of(&e));
        }

        if first <= highest {
            let top = last.min(highest);
            let missing: Vec<u64> = (first..=top).filter(|s| !held.has_seq(*s)).collect();
            if let (Some(&lo), Some(&hi)) = (missing.first(), missing.last()) {
                for e in self.read_seqs(lo, hi, &known).await? {
                    held.add(held_of(&e));
                }
                if let Some(s) = missing.iter().find(|s| !held.has_seq(**s)) {
                    return Err(StreamError::Backend {
                        context: "find what the store holds at a seq",
                        source: format!(
                            "seq {s} is below the highest stored seq {highest}, but no event \
                             of the {prefix}* streams in $all has it: the store breaks the \
                             no-gaps rule"
                        )
                        .into(),
                    });
                }
            }
        }
        Ok(held)
    }

    /// The stored events at seqs `lo..=hi` (all at or below the highest), read from `$all`
    /// starting at the known event nearest to them: the global order holds one event per seq,
    /// in seq order, so counting from an anchor finds them.
    async fn read_seqs(
        &self,
        lo: u64,
        hi: u64,
        known: &BTreeMap<u64, Position>,
    ) -> Result<Vec<StoredEvent>, StreamError> {
        let prefix = self.inner.prefix.as_str();
        let below = known.range(..lo).next_back();
        let above = known.range(hi.saturating_add(1)..).next();
        // Events to read each way; forwards without an anchor below starts at seq 0.
        let forwards_cost = below.map_or(hi.saturating_add(1), |(a, _)| hi - a);
        let backwards_cost = above.map(|(b, _)| b - lo);
        let (backwards, mut from, mut remaining) = match backwards_cost {
            Some(cost) if cost < forwards_cost => (
                true,
                above.map(|(_, p)| StreamPosition::Position(to_kurrent(*p))),
                cost,
            ),
            _ => (
                false,
                Some(below.map_or(StreamPosition::Start, |(_, p)| {
                    StreamPosition::Position(to_kurrent(*p))
                })),
                forwards_cost,
            ),
        };
        if remaining > LONG_SEARCH {
            tracing::warn!(
                lo,
                hi,
                events = remaining,
                "a batch contradicts the store far from every event it names; reading $all to find what is stored there"
            );
        }
        let mut out = Vec::new();
        while let Some(start) = from.take() {
            // One more than the distance: a read from a position may include the event at it.
            let n = usize::try_from(remaining.min(RANGE_PAGE as u64)).unwrap_or(RANGE_PAGE) + 1;
            let page = self
                .read_all_raw(prefix, start, backwards, n, "read $all for stored seqs")
                .await?;
            let short = page.len() < n;
            let mut last_pos = None;
            let mut passed = false;
            for e in &page {
                let e = decode(prefix, Incoming::of(e))?;
                let seq = e.event.seq;
                last_pos = Some(e.position);
                passed = if backwards { seq <= lo } else { seq >= hi };
                if (lo..=hi).contains(&seq) {
                    out.push(e);
                }
            }
            remaining = remaining.saturating_sub(n as u64 - 1);
            let moved = last_pos.filter(|p| StreamPosition::Position(to_kurrent(*p)) != start);
            if !(short || passed || remaining == 0) {
                from = moved.map(|p| StreamPosition::Position(to_kurrent(p)));
            }
        }
        Ok(out)
    }

    /// Writes the planned events one append each, in seq order.
    async fn write(
        &self,
        batch: &[AppendRequest],
        plan: &Planned,
    ) -> Result<AppendOutcome, StreamError> {
        let prefix = self.inner.prefix.as_str();
        let (mut appended, mut present, mut last_position) = (0u64, 0u64, None);
        for (req, step) in batch.iter().zip(&plan.steps) {
            if *step == Step::Present {
                present += 1;
                continue;
            }
            let e = &req.event;
            let out = Outgoing::new(prefix, e);
            let stream = out.stream.clone();
            // The checks found no stream; the server enforces that again, against any writer.
            let options = AppendToStreamOptions::default()
                .stream_state(StreamState::NoStream)
                .deadline(self.inner.deadline);
            let result = self
                .inner
                .client
                .append_to_stream(stream.as_str(), &options, out.into_event_data())
                .await;
            let err = match result {
                Ok(w) => {
                    appended += 1;
                    last_position = Some(from_kurrent(w.position));
                    continue;
                }
                Err(kurrentdb::Error::WrongExpectedVersion { current, .. }) => {
                    // Another writer recorded this decision after the checks: name what it wrote.
                    let stored = match self.stream_events(&e.stream_id()).await {
                        Ok(events) => events
                            .first()
                            .and_then(|r| decode(prefix, Incoming::of(r)).ok())
                            .map(|s| held_of(&s)),
                        Err(_) => None,
                    };
                    lost_race(req, current, stored.as_ref())
                }
                Err(other) => kurrent_err("append an event")(other),
            };
            if appended > 0 {
                tracing::warn!(
                    written = appended,
                    seq = e.seq,
                    error = %err,
                    "append failed mid-batch; the events before it are written and durable \
                     (prefix-durable rule); retrying the batch writes the rest"
                );
            }
            return Err(err);
        }
        Ok(AppendOutcome {
            appended,
            already_present: present,
            last_position,
            highest_seq: plan.highest_seq.unwrap_or(0),
        })
    }

    async fn append_inner(&self, batch: Vec<AppendRequest>) -> Result<AppendOutcome, StreamError> {
        check_shape(&batch, KURRENT_LIMITS)?;
        let _writer = self.inner.writer.lock().await;
        let held = Arc::new(self.holdings(&batch).await?);
        // Validation parses every new event (most of an append's CPU) and may wait for helper
        // threads: not on the async runtime's threads.
        let (batch, plan) = tokio::task::spawn_blocking(move || {
            let plan = plan_batch(&batch, held);
            (batch, plan)
        })
        .await
        .map_err(|e| StreamError::Backend {
            context: "check the batch",
            source: Box::new(e),
        })?;
        let plan = plan?;
        let out = self.write(&batch, &plan).await?;
        tracing::debug!(
            appended = out.appended,
            already_present = out.already_present,
            "appended"
        );
        Ok(out)
    }
}

impl EventStream for KurrentStream {
    fn limits(&self) -> Limits {
        KURRENT_LIMITS
    }

    async fn append(&self, batch: Vec<AppendRequest>) -> Result<AppendOutcome, StreamError> {
        let span = tracing::debug_span!(
            "stream.append",
            backend = "kurrentdb",
            events = batch.len(),
            first_seq = batch.first().map(|r| r.event.seq),
            last_seq = batch.last().map(|r| r.event.seq),
        );
        self.append_inner(batch).instrument(span).await
    }

    async fn read_stream(&self, stream_id: &StreamId) -> Result<Vec<StoredEvent>, StreamError> {
        let prefix = self.inner.prefix.as_str();
        let mut out = Vec::new();
        for r in self.stream_events(stream_id).await? {
            let mut e = decode(prefix, Incoming::of(&r))?;
            if unknown_position(r.position) {
                e.position = self
                    .position_in_all(&stream_name(prefix, stream_id), r.revision)
                    .await?;
            }
            out.push(e);
        }
        Ok(out)
    }

    async fn read_all(&self, after: Option<Position>, limit: usize) -> Result<Page, StreamError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let from = after.map_or(StreamPosition::Start, |p| {
            StreamPosition::Position(to_kurrent(p))
        });
        // Two more than asked: the read may include `after` itself, and one past the page says
        // whether there is more.
        let raw = self
            .read_all_raw(&self.inner.prefix, from, false, limit + 2, "read $all")
            .await?;
        let mut events = Vec::with_capacity(limit.min(raw.len()));
        let mut more = false;
        for r in &raw {
            let position = from_kurrent(r.position);
            if after.is_some_and(|a| position <= a) {
                continue;
            }
            if events.len() == limit {
                // Only says there is more; not decoded (nor can it fail).
                more = true;
                break;
            }
            events.push(decode(&self.inner.prefix, Incoming::of(r))?);
        }
        Ok(Page { events, end: !more })
    }

    fn subscribe(
        &self,
        after: Option<Position>,
    ) -> BoxStream<'static, Result<StoredEvent, StreamError>> {
        let this = self.clone();
        Box::pin(async_stream::stream! {
            let mut after = after;
            let from = after.map_or(StreamPosition::Start, |p| StreamPosition::Position(to_kurrent(p)));
            // No retry options: the client does not resubscribe by itself, so a drop is
            // reported and the caller resubscribes from the last position it received.
            let options = SubscribeToAllOptions::default()
                .position(from)
                .filter(this.filter())
                .requires_leader(true);
            let mut sub = this.inner.client.subscribe_to_all(&options).await;
            loop {
                match sub.next_subscription_event().await {
                    Ok(SubscriptionEvent::EventAppeared(r)) => {
                        let Some(r) = r.event.as_ref().or(r.link.as_ref()) else { continue };
                        let position = from_kurrent(r.position);
                        // Exactly once: nothing at or before what was already delivered.
                        if after.is_some_and(|a| position <= a) {
                            continue;
                        }
                        match decode(&this.inner.prefix, Incoming::of(r)) {
                            Ok(e) => {
                                after = Some(position);
                                yield Ok(e);
                            }
                            Err(e) => {
                                yield Err(e);
                                return;
                            }
                        }
                    }
                    // Confirmation, checkpoints, caught-up and fell-behind notices.
                    Ok(_) => {}
                    Err(e) => {
                        yield Err(kurrent_err("subscribe to $all")(e));
                        return;
                    }
                }
            }
        })
    }

    async fn highest_seq(&self) -> Result<Option<u64>, StreamError> {
        let prefix = self.inner.prefix.as_str();
        let tail = self
            .read_all_raw(prefix, StreamPosition::End, true, 1, "read the end of $all")
            .await?;
        match tail.first() {
            None => Ok(None),
            Some(r) => Ok(Some(decode(prefix, Incoming::of(r))?.event.seq)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use triplicate_core::digest::leaf_hash as hash_of;

    fn sample(seq: u64) -> DecisionRecorded {
        let bytes = format!("{{\"seq\":{seq},\"sample\":true}}").into_bytes();
        DecisionRecorded {
            seq,
            decision_id: Uuid::from_u128(
                0x0190_0000_0000_7000_8000_0000_0000_0000 + u128::from(seq),
            ),
            leaf_hash: hash_of(&bytes),
            record_bytes: bytes,
        }
    }

    fn incoming<'a>(o: &'a Outgoing, position: (u64, u64)) -> Incoming<'a> {
        Incoming {
            stream: &o.stream,
            revision: 0,
            event_type: o.event_type,
            data: &o.data,
            metadata: o.metadata.as_bytes(),
            position: kurrentdb::Position {
                commit: position.0,
                prepare: position.1,
            },
            created: (1_795_683_600, 123_000_000),
        }
    }

    #[test]
    fn an_event_maps_to_the_documented_parts_and_back() {
        let e = sample(42);
        let o = Outgoing::new(StreamId::PREFIX, &e);
        assert_eq!(
            o.stream,
            e.stream_id().to_string(),
            "default names are the StreamIds"
        );
        assert_eq!(o.event_type, "DecisionRecorded");
        assert_eq!(o.data, e.record_bytes, "data is the record bytes, exactly");
        let meta: serde_json::Value = serde_json::from_str(&o.metadata).unwrap();
        assert_eq!(meta["seq"], "42", "seq is a string");
        assert_eq!(meta["leaf_hash"], crate::event::b64(&e.leaf_hash));
        assert_eq!(meta.as_object().unwrap().len(), 2);

        let back = decode(StreamId::PREFIX, incoming(&o, (900, 800))).unwrap();
        assert_eq!(back.event, e);
        assert_eq!(back.stream_id, e.stream_id());
        assert_eq!(back.revision, 0);
        assert_eq!(back.position, Position::new(900, 800), "(commit, prepare)");
        assert_eq!(back.position.parts(), (900, 800));
        assert_eq!(
            back.stored_at,
            Timestamp::from_unix_nanos(1_795_683_600_123_000_000).unwrap()
        );
        // The client's EventData is built from these parts (its fields are private).
        let _ = o.into_event_data();
    }

    #[test]
    fn event_ids_are_deterministic_and_the_trait_s() {
        let (a, b) = (sample(1), sample(2));
        let o = Outgoing::new(StreamId::PREFIX, &a);
        assert_eq!(o.id, a.event_id());
        assert_eq!(
            o.id,
            Outgoing::new("t1-decision-", &a).id,
            "whatever the prefix"
        );
        assert_eq!(Outgoing::new(StreamId::PREFIX, &a.clone()).id, o.id);
        assert_ne!(Outgoing::new(StreamId::PREFIX, &b).id, o.id);
        assert_eq!(o.id.get_version_num(), 8);
        assert_eq!(&o.id.as_bytes()[..6], &a.leaf_hash[..6]);
    }

    #[test]
    fn stream_names_carry_the_prefix_and_only_canonical_ones_parse() {
        let id = sample(3).stream_id();
        let name = stream_name("t9-decision-", &id);
        assert_eq!(
            name,
            format!("t9-decision-{}", id.decision_id().hyphenated())
        );
        assert_eq!(parse_stream_name("t9-decision-", &name).unwrap(), id);
        assert_eq!(
            parse_stream_name(StreamId::PREFIX, &id.to_string()).unwrap(),
            id
        );
        let upper = format!("decision-{}", id.decision_id().hyphenated()).to_uppercase();
        for bad in [
            name.as_str(),
            "decision-",
            "decision-not-a-uuid",
            &upper,
            &format!("decision-{}", id.decision_id().simple()),
            "$all",
        ] {
            assert!(parse_stream_name(StreamId::PREFIX, bad).is_err(), "{bad}");
        }
        assert!(check_prefix("decision-").is_ok());
        assert!(check_prefix("t0193-decision-").is_ok());
        for bad in ["", "$decision-", "de cision-", "x\n"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn undecodable_events_are_damaged_with_their_position() {
        let e = sample(5);
        let o = Outgoing::new(StreamId::PREFIX, &e);
        let damaged = |r: Incoming<'_>| match decode(StreamId::PREFIX, r) {
            Err(StreamError::Damaged { position, reason }) => {
                assert_eq!(position, Position::new(7, 6));
                reason
            }
            other => panic!("expected damage, got {other:?}"),
        };
        let good = incoming(&o, (7, 6));
        assert!(damaged(Incoming {
            event_type: "Other",
            ..good
        })
        .contains("event type"));
        assert!(damaged(Incoming {
            stream: "decision-x",
            ..good
        })
        .contains("decision-x"));
        assert!(damaged(Incoming {
            metadata: b"{}",
            ..good
        })
        .contains("metadata"));
        assert!(damaged(Incoming {
            metadata: b"\xff",
            ..good
        })
        .contains("UTF-8"));
        let extra = br#"{"leaf_hash":"AA==","seq":"5"}"#;
        assert!(damaged(Incoming {
            metadata: extra,
            ..good
        })
        .contains("leaf_hash"));
        let numeric = format!(
            "{{\"leaf_hash\":\"{}\",\"seq\":5}}",
            crate::event::b64(&e.leaf_hash)
        );
        assert!(damaged(Incoming {
            metadata: numeric.as_bytes(),
            ..good
        })
        .contains("metadata"));
        assert!(damaged(Incoming {
            created: (i64::MAX, 0),
            ..good
        })
        .contains("created"));
        // Bytes that do not match their hash are returned as stored, not refused.
        let other = Incoming {
            data: b"tampered",
            ..good
        };
        assert_eq!(
            decode(StreamId::PREFIX, other).unwrap().event.record_bytes,
            b"tampered"
        );
    }

    #[test]
    fn positions_map_both_ways_and_unknown_ones_are_recognised() {
        let p = Position::new(1 << 40, (1 << 40) - 7);
        assert_eq!(from_kurrent(to_kurrent(p)), p);
        assert!(unknown_position(kurrentdb::Position::end()));
        assert!(!unknown_position(to_kurrent(p)));
        // Ordered like the server orders them: commit first, then prepare.
        assert!(Position::new(2, 0) > Position::new(1, 9));
        assert!(to_kurrent(Position::new(2, 0)) > to_kurrent(Position::new(1, 9)));
    }

    #[test]
    fn client_errors_map_to_what_a_caller_can_act_on() {
        use kurrentdb::Error as E;
        let map = kurrent_err("append an event");
        for transient in [
            E::ConnectionClosed,
            E::DeadlineExceeded,
            E::ServerError("status: Unavailable".into()),
            E::GrpcConnectionError(kurrentdb::GrpcConnectionError::MaxDiscoveryAttemptReached(
                3,
            )),
            E::GrpcConnectionError(kurrentdb::GrpcConnectionError::Grpc("refused".into())),
            E::NotLeaderException(kurrentdb::Endpoint {
                host: "node2".into(),
                port: 2113,
            }),
            E::Grpc {
                code: tonic::Code::ResourceExhausted,
                message: "busy".into(),
            },
            E::Grpc {
                code: tonic::Code::Aborted,
                message: "retry".into(),
            },
        ] {
            let text = transient.to_string();
            let e = map(transient);
            assert!(e.is_retryable(), "{text} → {e:?}");
            assert!(e.to_string().contains("append an event"), "{e}");
        }
        let e = map(E::AccessDenied);
        assert!(
            matches!(
                e,
                StreamError::AccessDenied {
                    context: "append an event",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("$all"), "{e}");
        for permanent in [
            E::Grpc {
                code: tonic::Code::InvalidArgument,
                message: "maximum append size exceeded".into(),
            },
            E::ResourceDeleted,
            E::UnsupportedFeature,
            E::InternalParsingError("x".into()),
            E::WrongExpectedVersion {
                expected: StreamState::NoStream,
                current: CurrentRevision::Current(0),
            },
        ] {
            let e = map(permanent);
            assert!(matches!(e, StreamError::Backend { .. }), "{e:?}");
            assert!(!e.is_retryable());
        }
    }

    #[test]
    fn a_write_refused_for_its_expected_version_names_what_won() {
        let e = sample(10);
        let req = AppendRequest::new_decision(e.clone());
        let other = sample(11);
        // Another writer stored other bytes at the same seq, for this decision.
        let same_seq = Held::new(10, e.stream_id(), 0, &other.record_bytes);
        match lost_race(&req, CurrentRevision::Current(0), Some(&same_seq)) {
            StreamError::SeqConflict {
                seq,
                stored,
                offered,
            } => {
                assert_eq!((seq, stored, offered), (10, other.leaf_hash, e.leaf_hash));
            }
            x => panic!("{x:?}"),
        }
        // ...or recorded this decision at another seq.
        let elsewhere = Held::new(4, e.stream_id(), 0, &other.record_bytes);
        match lost_race(&req, CurrentRevision::Current(0), Some(&elsewhere)) {
            StreamError::DecisionConflict {
                existing_seq,
                existing,
                offered_seq,
                in_batch,
                ..
            } => {
                assert_eq!((existing_seq, offered_seq, in_batch), (4, 10, false));
                assert_eq!(existing, other.leaf_hash);
            }
            x => panic!("{x:?}"),
        }
        // The stream could not be read back: the server's own words.
        match lost_race(&req, CurrentRevision::Current(2), None) {
            StreamError::WrongExpectedRevision {
                stream_id,
                expected,
                actual,
            } => {
                assert_eq!(stream_id, e.stream_id());
                assert_eq!((expected, actual), (ExpectedRevision::NoStream, Some(2)));
            }
            x => panic!("{x:?}"),
        }
        assert!(matches!(
            lost_race(&req, CurrentRevision::NoStream, None),
            StreamError::WrongExpectedRevision { actual: None, .. }
        ));
    }

    #[tokio::test]
    async fn malformed_connection_strings_are_refused_without_their_password() {
        let cases = [
            "kurrentdb://admin:s3cret-pw@localhost:2113/some/path",
            "kurrentdb://admin:s3cret-pw@localhost:notaport",
            "kurrentdb://admin:s3cret-pw@localhost:2113?tls=maybe",
            "kurrentdb://admin:s3cret-pw@localhost:2113?nodePreference=fastest",
            "nope://admin:s3cret-pw@localhost:2113",
            "kurrentdb://admin:s3cret-pw@h1:1,h2:x,h3:3",
            "kurrentdb://admin:s3cret%2Dpw@[::1",
            "admin:s3cret-pw@localhost",
            "kurrentdb://admin:s3cret-pw@localhost:2113?userCertFile=/x.pem",
        ];
        for url in cases {
            let e = KurrentStream::connect(url).await.unwrap_err();
            let text = format!(
                "{e} {e:?} {:?}",
                std::error::Error::source(&e).map(|s| s.to_string())
            );
            assert!(matches!(e, StreamError::Backend { .. }), "{url}: {e:?}");
            assert!(!e.is_retryable());
            assert!(!text.contains("s3cret"), "{url} leaks its password: {text}");
            assert!(text.contains("connection string"), "{text}");
        }
        // A bad prefix is refused before anything is sent.
        let e = KurrentStream::connect_with(
            "kurrentdb://localhost:2113?tls=false",
            KurrentOptions {
                stream_prefix: "$x".into(),
                ..KurrentOptions::default()
            },
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("system streams"), "{e}");
    }

    #[test]
    fn redaction_covers_the_user_info_in_every_form() {
        let url = "esdb://ad%40min:p%2Fw:rd@host:2113?tls=false";
        let r = redact(url, &format!("{url} / p/w:rd / p%2Fw:rd / ad@min:p/w:rd"));
        assert!(!r.contains("p%2Fw") && !r.contains("p/w"), "{r}");
        assert!(r.contains("host:2113"), "{r}");
        assert!(!r.contains("ad@min:p"), "{r}");
        assert_eq!(
            redact("kurrentdb://host:2113", "kurrentdb://host:2113"),
            "kurrentdb://host:2113"
        );
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }

    #[test]
    fn limits_fit_the_server_s_default_append_size_per_request() {
        let l = KURRENT_LIMITS;
        assert_eq!(l.max_batch_events, 1_000);
        assert_eq!(l.max_batch_bytes, 1_000 * MAX_EVENT_BYTES);
        assert_eq!(DEFAULT_MAX_APPEND_SIZE, 1_048_576);
        // The largest event, with its metadata, in one append request.
        let mut big = sample(u64::MAX);
        big.record_bytes = vec![b'x'; MAX_EVENT_BYTES];
        let o = Outgoing::new(StreamId::PREFIX, &big);
        assert!(o.metadata.len() + o.event_type.len() <= METADATA_MAX_BYTES);
        assert!(o.data.len() + o.metadata.len() <= DEFAULT_MAX_APPEND_SIZE);
        let too_many = vec![AppendRequest::new_decision(sample(0)); 1_001];
        assert!(check_shape(&too_many, l).is_err());
    }
}
