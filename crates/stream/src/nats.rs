//! The NATS JetStream backend ([`NatsStream`], feature `nats`): one JetStream stream (file
//! storage, configurable replicas) whose subjects are `<prefix>.decision.<uuid>`, one message
//! per `DecisionRecorded` event.
//!
//! How the trait maps onto JetStream:
//!
//! - **A message per event.** Subject `<prefix>.decision.<uuid>`; payload `record_bytes`;
//!   headers `Triplicate-Event-Type: DecisionRecorded`, `Triplicate-Metadata: {"leaf_hash":…,
//!   "seq":…}` (the same JSON every backend stores) and `Nats-Msg-Id:` [`DecisionRecorded::
//!   event_id`], so the server drops a retried publish inside its duplicate window.
//! - **The stream sequence is the position, and it is `seq + 1`.** Every publish carries
//!   `Nats-Expected-Last-Sequence: <seq>`: the server stores event `seq` only while the stream's
//!   last sequence is `seq`, so events land in seq order, without gaps, each at stream sequence
//!   `seq + 1`, and no other writer can slip a message in between. (The server ignores the
//!   header when its value is 0, so the very first event relies on the pre-check below.) Reads
//!   check the invariant and report a message that breaks it as [`StreamError::Damaged`].
//! - **A decision is recorded once.** Every publish also carries
//!   `Nats-Expected-Last-Subject-Sequence: 0`: the server refuses a second message on a
//!   decision's subject even if two writers race past the pre-check.
//! - **The stream refuses deletes and purges** (`deny_delete`, `deny_purge`): a message can
//!   only be removed by deleting the whole stream, which the cross-verifier then reports.
//!
//! **Appends are prefix-durable, not all-or-nothing, on the wire.** Atomic batch publish needs
//! NATS Server 2.12; the servers this backend is tested on (Debian's 2.9) lack it. So an append
//! first reads what the stream holds for the batch's seqs and decisions (one stream-info
//! request, one ranged fetch for seqs already stored, and one last-message lookup per new
//! decision, 64 in flight), plans the batch exactly as every backend does (`plan.rs`), and
//! refuses it before publishing anything if any event has a problem. Only then are the
//! planned events published, pipelined, each chained to the previous by its expected last
//! sequence. If the connection or the server fails part-way, the events acknowledged so far
//! stay and the rest are not written: a *prefix* of the batch, every event of which is valid
//! and already held by the ledger, with no gap after it, because each later publish expected
//! the sequence of the one that failed. The caller gets an error; the catch-up worker's retry
//! finds the prefix present and writes the rest. Refusals of the batch (everything the trait
//! lists from `InvalidEvent` to `Gap`) still write nothing.
//!
//! **Durability.** A publish is acknowledged once the stream's replicas stored it (a quorum of
//! them with `replicas = 3`). A single server does not fsync each message by default
//! (`sync_interval`, 2 minutes); run three replicas, or set `sync_interval: always` on 2.11+,
//! if an acknowledged event must survive a power loss of one machine. The ledger remains the
//! store of record either way: an event lost by the stream is a `minor` discrepancy that the
//! cross-verifier repairs from the ledger.
//!
//! **Reads.** A page of the global order is one stream-info request plus one ephemeral pull
//! consumer (no acks, memory storage) fetched in batches; a subscription is an ordered consumer,
//! which the client re-creates after gaps or a reconnect, from the position after `after`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::header::{
    HeaderMap, NATS_EXPECTED_LAST_SEQUENCE, NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MESSAGE_ID,
};
use async_nats::jetstream::{self, consumer, context, stream as js};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use triplicate_core::Timestamp;
use uuid::Uuid;

use crate::event::{EventMetadata, StreamId, EVENT_TYPE};
use crate::plan::{check_shape, plan_batch, Held, Holdings, Step};
use crate::{
    AppendOutcome, AppendRequest, DecisionRecorded, EventStream, Limits, Page, Position,
    StoredEvent, StreamError,
};

/// The JetStream stream's name unless configured otherwise.
pub const DEFAULT_STREAM_NAME: &str = "TRIPLICATE";
/// The subjects' first token unless configured otherwise: `triplicate.decision.<uuid>`.
pub const DEFAULT_SUBJECT_PREFIX: &str = "triplicate";
/// The header carrying the event type.
pub const HEADER_EVENT_TYPE: &str = "Triplicate-Event-Type";
/// The header carrying the event metadata JSON ([`EventMetadata::to_json`]).
pub const HEADER_METADATA: &str = "Triplicate-Metadata";

/// One append: at most 1,000 events (the size of a JetStream atomic batch, so the limit holds
/// when atomic publishing replaces the prefix-durable one) and 16 MiB.
pub(crate) const NATS_LIMITS: Limits = Limits {
    max_batch_events: 1_000,
    max_batch_bytes: 16 * 1024 * 1024,
};
/// The most events one `read_all` page returns.
const MAX_PAGE: usize = 10_000;
/// Last-message lookups in flight while an append finds what its decisions already hold.
const LOOKUPS_IN_FLIGHT: usize = 64;
/// How often an append re-reads a snapshot another writer changed before failing as retryable.
const SNAPSHOT_ATTEMPTS: u32 = 5;
/// How long duplicate message ids are remembered by the server.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Where the stream lives and how to reach it (the `[stream.nats]` table of the service's
/// configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsOptions {
    /// The JetStream stream's name; created if missing.
    pub stream: String,
    /// Subjects are `<subject_prefix>.decision.<uuid>`. One or more dot-separated tokens.
    pub subject_prefix: String,
    /// Replicas of a stream this handle creates (1 for one server, 3 for a cluster that
    /// survives losing a node). An existing stream keeps its own.
    pub replicas: usize,
    /// A NATS credentials file (JWT and NKey seed), if the servers need one.
    pub credentials: Option<PathBuf>,
    /// A PEM file of CA certificates for TLS to the servers; TLS is then required.
    pub tls_ca: Option<PathBuf>,
    /// How long a JetStream request (stream info, a fetch, a publish acknowledgement) may take.
    pub request_timeout: Duration,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            stream: DEFAULT_STREAM_NAME.to_owned(),
            subject_prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
            replicas: 1,
            credentials: None,
            tls_ca: None,
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl NatsOptions {
    /// Refuses names JetStream would refuse or misread (wildcards, whitespace, empty tokens).
    pub fn check(&self) -> Result<(), String> {
        let bad_char = |c: char| c.is_whitespace() || matches!(c, '*' | '>' | '.' | '/' | '\\');
        if self.stream.is_empty() || self.stream.chars().any(bad_char) {
            return Err(format!(
                "stream name {:?}: must be non-empty, without whitespace, '.', '*', '>', '/' or '\\'",
                self.stream
            ));
        }
        if self.subject_prefix.split('.').any(|t| {
            t.is_empty()
                || t.chars()
                    .any(|c| c.is_whitespace() || matches!(c, '*' | '>'))
        }) {
            return Err(format!(
                "subject prefix {:?}: must be dot-separated non-empty tokens without whitespace or wildcards",
                self.subject_prefix
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(format!(
                "replicas {}: JetStream allows 1 to 5",
                self.replicas
            ));
        }
        Ok(())
    }

    fn subject_root(&self) -> String {
        format!("{}.decision.", self.subject_prefix)
    }
}

/// The event stream in a NATS JetStream stream. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct NatsStream {
    inner: Arc<Inner>,
}

struct Inner {
    addrs: Vec<async_nats::ServerAddr>,
    options: NatsOptions,
    /// `<prefix>.decision.`
    root: String,
    /// The connection and the opened stream, once a call managed to open them.
    conn: tokio::sync::OnceCell<Conn>,
    /// Serialises this handle's appends (the trait's rule); other processes are kept out of
    /// each other's way by the expected-last-sequence headers.
    write: tokio::sync::Mutex<()>,
}

/// An open connection (the client reconnects by itself after this) and the stream.
struct Conn {
    js: jetstream::Context,
    stream: js::Stream,
}

impl std::fmt::Debug for NatsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStream")
            .field("stream", &self.inner.options.stream)
            .field("subjects", &format!("{}*", self.inner.root))
            .finish_non_exhaustive()
    }
}

fn backend<E: std::error::Error + Send + Sync + 'static>(
    context: &'static str,
) -> impl FnOnce(E) -> StreamError {
    move |e| StreamError::Backend {
        context,
        source: Box::new(e),
    }
}

fn message(context: &'static str, text: String) -> StreamError {
    StreamError::Backend {
        context,
        source: text.into(),
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> StreamError {
    StreamError::Unavailable {
        reason: format!("NATS JetStream: {what}: {e}"),
    }
}

/// Request-level failures (timeouts, no responders, a dropped connection) may pass later;
/// anything the server answered with an API error is reported as it is.
fn request_error<K>(what: &'static str, e: async_nats::error::Error<K>) -> StreamError
where
    K: Clone + std::fmt::Debug + std::fmt::Display + PartialEq + Send + Sync + 'static,
{
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("timed out")
        || lower.contains("timeout")
        || lower.contains("no responders")
        || lower.contains("broken pipe")
        || lower.contains("connection")
        || lower.contains("disconnected")
    {
        unavailable(what, text)
    } else {
        message(what, text)
    }
}

impl NatsStream {
    /// Connects to the servers in `urls` (comma-separated `nats://` or `tls://` URLs) and opens
    /// the stream `options.stream`, creating it if missing. An existing stream must capture
    /// exactly `<prefix>.decision.*` on file storage and refuse deletes and purges; anything
    /// else is refused with what differs, and nothing is changed.
    pub async fn connect(urls: &str, options: NatsOptions) -> Result<NatsStream, StreamError> {
        let s = NatsStream::lazy(urls, options)?;
        s.conn().await?;
        Ok(s)
    }

    /// Checks the options and URLs but connects only when first used, and again on each later
    /// call until a connection succeeds: a service can start while NATS is down, with the
    /// stream pending, and the catch-up worker fills it once NATS answers.
    pub fn lazy(urls: &str, options: NatsOptions) -> Result<NatsStream, StreamError> {
        options.check().map_err(|e| message("NATS options", e))?;
        let addrs = urls
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<async_nats::ServerAddr>()
                    .map_err(|e| message("NATS server URL", format!("{s:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if addrs.is_empty() {
            return Err(message("NATS server URL", "no server URL given".into()));
        }
        Ok(NatsStream {
            inner: Arc::new(Inner {
                root: options.subject_root(),
                addrs,
                options,
                conn: tokio::sync::OnceCell::new(),
                write: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The connection and stream, connecting first if no call has yet.
    async fn conn(&self) -> Result<&Conn, StreamError> {
        self.inner.conn.get_or_try_init(|| open(&self.inner)).await
    }

    /// [`EventStream::append`], inside its span.
    async fn append_batch(
        &self,
        mut batch: Vec<AppendRequest>,
    ) -> Result<AppendOutcome, StreamError> {
        check_shape(&batch, NATS_LIMITS)?;
        let _write = self.inner.write.lock().await;
        let held = Arc::new(self.holdings(&batch).await?);
        let (batch_back, planned) = tokio::task::spawn_blocking(move || {
            let p = plan_batch(&batch, held);
            (batch, p)
        })
        .await
        .map_err(|e| message("plan an append", e.to_string()))?;
        batch = batch_back;
        let planned = planned?;
        let conn = self.conn().await?;
        let mut present = 0u64;
        let mut acks = Vec::with_capacity(batch.len());
        for (req, step) in batch.iter_mut().zip(&planned.steps) {
            if *step == Step::Present {
                present += 1;
                continue;
            }
            let e = &mut req.event;
            let h = headers(e);
            let payload = bytes::Bytes::from(std::mem::take(&mut e.record_bytes));
            let ack = conn
                .js
                .publish_with_headers(subject(&self.inner.root, &e.stream_id()), h, payload)
                .await
                .map_err(|err| publish_error(e.seq, err))?;
            acks.push((e.seq, ack));
        }
        let (mut appended, mut last_position) = (0u64, None);
        for (seq, ack) in acks {
            let a = ack.await.map_err(|e| publish_error(seq, e))?;
            if a.duplicate {
                present += 1;
                continue;
            }
            if a.sequence != seq.saturating_add(1) {
                return Err(StreamError::Damaged {
                    position: Position::new(a.sequence, 0),
                    reason: format!(
                        "seq {seq} was stored at stream sequence {}, not {}",
                        a.sequence,
                        seq.saturating_add(1)
                    ),
                });
            }
            appended += 1;
            last_position = Some(Position::new(a.sequence, 0));
        }
        tracing::debug!(appended, already_present = present, "appended");
        Ok(AppendOutcome {
            appended,
            already_present: present,
            last_position,
            highest_seq: planned.highest_seq.unwrap_or(0),
        })
    }

    /// The subject of one decision's events.
    pub fn subject(&self, stream_id: &StreamId) -> String {
        subject(&self.inner.root, stream_id)
    }

    /// The JetStream stream's name.
    pub fn stream_name(&self) -> &str {
        &self.inner.options.stream
    }

    /// The stream's last sequence and message count, as of now.
    async fn state(&self) -> Result<(u64, u64), StreamError> {
        let info = self
            .conn()
            .await?
            .stream
            .get_info()
            .await
            .map_err(|e| request_error("read stream info", e))?;
        Ok((info.state.last_sequence, info.state.messages))
    }

    /// The highest seq, checked against the last message (it must be `last_sequence - 1`).
    async fn highest(&self, last: u64, messages: u64) -> Result<Option<u64>, StreamError> {
        if messages == 0 {
            return Ok(None);
        }
        let m = self
            .conn()
            .await?
            .stream
            .get_raw_message(last)
            .await
            .map_err(|e| request_error("read the last message", e))?;
        let e = decode(
            &self.inner.root,
            &m.subject,
            m.sequence,
            Some(&m.headers),
            &m.payload,
            m.time,
        )?;
        Ok(Some(e.event.seq))
    }

    /// Up to `count` events from stream sequence `start` on, through one ephemeral consumer.
    async fn range(&self, start: u64, count: usize) -> Result<Vec<StoredEvent>, StreamError> {
        let mut out = Vec::with_capacity(count.min(MAX_PAGE));
        if count == 0 {
            return Ok(out);
        }
        let stream = &self.conn().await?.stream;
        let c = stream
            .create_consumer(consumer::pull::Config {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                memory_storage: true,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| request_error("create a read consumer", e))?;
        let name = c.cached_info().name.clone();
        let result = async {
            while out.len() < count {
                let before = out.len();
                let wait = self.inner.options.request_timeout;
                let mut batch = c
                    .fetch()
                    .max_messages(count - out.len())
                    .expires(wait)
                    .messages()
                    .await
                    .map_err(|e| request_error("fetch events", e))?;
                // A pull request the server never answers (a permission missing for
                // `$JS.API.CONSUMER.MSG.NEXT`, say) must not hang the caller.
                while let Some(m) =
                    tokio::time::timeout(wait * 2, batch.next())
                        .await
                        .map_err(|_| {
                            unavailable(
                                "fetch events",
                                format!(
                                    "no answer in {:?} from stream sequence {}",
                                    wait * 2,
                                    start + out.len() as u64
                                ),
                            )
                        })?
                {
                    let m = m.map_err(|e| unavailable("fetch events", e))?;
                    let info = m
                        .info()
                        .map_err(|e| message("read a fetched message's metadata", e.to_string()))?;
                    let (seq, time) = (info.stream_sequence, info.published);
                    out.push(decode(
                        &self.inner.root,
                        &m.subject,
                        seq,
                        m.headers.as_ref(),
                        &m.payload,
                        time,
                    )?);
                    if out.len() == count {
                        break;
                    }
                }
                if out.len() == before {
                    break;
                }
            }
            if out.is_empty() {
                // The caller asks only for events the stream's info says it holds.
                return Err(unavailable(
                    "fetch events",
                    format!("the server returned none from stream sequence {start}"),
                ));
            }
            Ok::<_, StreamError>(())
        }
        .await;
        // Best effort: an ephemeral consumer the server also drops after a minute unused.
        if let Err(e) = stream.delete_consumer(&name).await {
            tracing::debug!(consumer = %name, error = %e, "could not delete a read consumer");
        }
        result.map(|()| out)
    }

    /// The event on one decision's subject, if any (one lookup).
    async fn last_on(&self, sid: StreamId) -> Result<Option<StoredEvent>, StreamError> {
        match self
            .conn()
            .await?
            .stream
            .get_last_raw_message_by_subject(&self.subject(&sid))
            .await
        {
            Ok(m) => decode(
                &self.inner.root,
                &m.subject,
                m.sequence,
                Some(&m.headers),
                &m.payload,
                m.time,
            )
            .map(Some),
            Err(e) if e.kind() == js::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(request_error("look up a decision's event", e)),
        }
    }

    /// What the store holds at the batch's seqs and on its decisions' subjects, as one
    /// consistent snapshot. Another writer appending while the snapshot is read would make it
    /// inconsistent (a later seq seen, an earlier one it stored meanwhile missed, read as a gap
    /// or a conflict): such a snapshot is read again, and after [`SNAPSHOT_ATTEMPTS`] the
    /// append fails as retryable rather than on a conflict that is not there.
    async fn holdings(&self, batch: &[AppendRequest]) -> Result<Holdings, StreamError> {
        for attempt in 1..=SNAPSHOT_ATTEMPTS {
            if let Some(held) = self.snapshot(batch).await? {
                return Ok(held);
            }
            tracing::debug!(
                attempt,
                "the stream changed while it was read; reading again"
            );
        }
        Err(StreamError::Unavailable {
            reason: format!(
                "NATS JetStream: the stream kept changing while this append read it \
                 ({SNAPSHOT_ATTEMPTS} attempts; another writer is appending); retry"
            ),
        })
    }

    /// One snapshot for [`Self::holdings`], or `None` if the stream changed while it was read.
    async fn snapshot(&self, batch: &[AppendRequest]) -> Result<Option<Holdings>, StreamError> {
        let (last, messages) = self.state().await?;
        let mut held = Holdings::default();
        held.highest_seq = self.highest(last, messages).await?;
        let read_up_to = held.highest_seq;
        let first = batch[0].event.seq;
        let last_in_batch = batch[batch.len() - 1].event.seq;
        if let Some(h) = held.highest_seq {
            if first <= h {
                let to = last_in_batch.min(h);
                let count = usize::try_from(to - first + 1).unwrap_or(usize::MAX);
                for e in self.range(first.saturating_add(1), count).await? {
                    held.add(Held::new(
                        e.event.seq,
                        e.stream_id,
                        e.revision,
                        &e.event.record_bytes,
                    ));
                }
            }
        }
        let lookups: Vec<StreamId> = batch
            .iter()
            .filter(|r| !held.has_seq(r.event.seq))
            .map(|r| r.event.stream_id())
            .collect();
        let found: Vec<Option<StoredEvent>> = futures::stream::iter(lookups)
            .map(|sid| self.last_on(sid))
            .buffer_unordered(LOOKUPS_IN_FLIGHT)
            .try_collect()
            .await?;
        for e in found.into_iter().flatten() {
            if read_up_to.is_none_or(|h| e.event.seq > h) {
                // Stored after the stream info was read: seqs before it may have been stored
                // after their own lookups ran, so this snapshot may miss them.
                return Ok(None);
            }
            held.add(Held::new(
                e.event.seq,
                e.stream_id,
                e.revision,
                &e.event.record_bytes,
            ));
        }
        Ok(Some(held))
    }
}

/// The subject of a decision under `root` (`<prefix>.decision.`).
fn subject(root: &str, stream_id: &StreamId) -> String {
    format!("{root}{}", stream_id.decision_id().hyphenated())
}

/// The decision a subject is for, if it is one of ours in canonical form.
fn stream_id_of(root: &str, subject: &str) -> Option<StreamId> {
    let rest = subject.strip_prefix(root)?;
    let id = Uuid::parse_str(rest).ok()?;
    (id.hyphenated().to_string() == rest).then(|| StreamId::for_decision(id))
}

/// The headers an event is published with.
fn headers(e: &DecisionRecorded) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        NATS_MESSAGE_ID,
        e.event_id().hyphenated().to_string().as_str(),
    );
    h.insert(NATS_EXPECTED_LAST_SEQUENCE, e.seq.to_string().as_str());
    h.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, "0");
    h.insert(HEADER_EVENT_TYPE, EVENT_TYPE);
    h.insert(HEADER_METADATA, e.metadata().to_json().as_str());
    h
}

/// A stored message back as an event; refuses messages that cannot be one of ours at this
/// stream sequence. The payload is returned as stored, not re-validated.
fn decode(
    root: &str,
    subject: &str,
    stream_sequence: u64,
    headers: Option<&HeaderMap>,
    payload: &[u8],
    time: time::OffsetDateTime,
) -> Result<StoredEvent, StreamError> {
    let position = Position::new(stream_sequence, 0);
    let damaged = |reason: String| StreamError::Damaged { position, reason };
    let stream_id = stream_id_of(root, subject)
        .ok_or_else(|| damaged(format!("subject {subject:?} is not {root}<uuid>")))?;
    let header = |name: &str| {
        headers
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    match header(HEADER_EVENT_TYPE) {
        Some(t) if t == EVENT_TYPE => {}
        other => return Err(damaged(format!("event type {other:?}"))),
    }
    let meta = header(HEADER_METADATA)
        .ok_or_else(|| damaged("no metadata header".into()))
        .and_then(|m| EventMetadata::from_json(&m).map_err(damaged))?;
    if meta.seq.checked_add(1) != Some(stream_sequence) {
        return Err(damaged(format!(
            "metadata says seq {} but the message is at stream sequence {stream_sequence} \
             (seq + 1 expected): a message was added to or removed from the stream outside \
             Triplicate",
            meta.seq
        )));
    }
    let stored_at = Timestamp::from_unix_nanos(time.unix_timestamp_nanos())
        .map_err(|e| damaged(format!("stored time {time}: {e}")))?;
    Ok(StoredEvent {
        position,
        stream_id,
        // Every publish expects the subject to be empty, so an event is its stream's first.
        revision: 0,
        event: DecisionRecorded {
            seq: meta.seq,
            decision_id: stream_id.decision_id(),
            leaf_hash: meta.leaf_hash,
            record_bytes: payload.to_vec(),
        },
        stored_at,
    })
}

/// Connects and opens (or creates) the stream.
async fn open(inner: &Inner) -> Result<Conn, StreamError> {
    let options = &inner.options;
    let mut connect = async_nats::ConnectOptions::new()
        .name("triplicate")
        .connection_timeout(options.request_timeout)
        .request_timeout(Some(options.request_timeout));
    if let Some(creds) = &options.credentials {
        connect = connect
            .credentials_file(creds)
            .await
            .map_err(|e| message("NATS credentials", format!("{}: {e}", creds.display())))?;
    }
    if let Some(ca) = &options.tls_ca {
        connect = connect.add_root_certificates(ca.clone()).require_tls(true);
    }
    // Credentials in a URL (`nats://user:password@host`, or `nats://token@host`): the client
    // does not read them itself, so they are handed over here.
    if let Some(a) = inner.addrs.iter().find(|a| a.username().is_some()) {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = a.username().map(decode).unwrap_or_default();
        connect = match a.password() {
            Some(p) => connect.user_and_password(user, decode(p)),
            None => connect.token(user),
        };
    }
    let client = connect.connect(inner.addrs.clone()).await.map_err(|e| {
        use async_nats::ConnectErrorKind as K;
        match e.kind() {
            K::TimedOut | K::Io | K::Dns | K::MaxReconnects => unavailable("connect", e),
            _ => message("connect to NATS", e.to_string()),
        }
    })?;
    let js = jetstream::ContextBuilder::new()
        .timeout(options.request_timeout)
        .build(client);
    let stream = open_stream(&js, options).await?;
    tracing::info!(
        stream = %options.stream,
        subjects = %format!("{}*", inner.root),
        "opened the JetStream event stream"
    );
    Ok(Conn { js, stream })
}

/// Opens the stream, or creates it; refuses one that is not shaped for us.
async fn open_stream(
    js: &jetstream::Context,
    options: &NatsOptions,
) -> Result<js::Stream, StreamError> {
    let wanted_subject = format!("{}*", options.subject_root());
    let config = js::Config {
        name: options.stream.clone(),
        description: Some(
            "Triplicate DecisionRecorded events, one subject per decision; written only by the \
             Triplicate service"
                .into(),
        ),
        subjects: vec![wanted_subject.clone()],
        storage: js::StorageType::File,
        num_replicas: options.replicas,
        retention: js::RetentionPolicy::Limits,
        discard: js::DiscardPolicy::New,
        duplicate_window: DUPLICATE_WINDOW,
        deny_delete: true,
        deny_purge: true,
        allow_direct: true,
        ..Default::default()
    };
    let mut stream = js
        .get_or_create_stream(config)
        .await
        .map_err(|e| request_error("open or create the JetStream stream", e))?;
    let info = stream
        .info()
        .await
        .map_err(|e| request_error("read stream info", e))?;
    let c = &info.config;
    let mut problems = Vec::new();
    if c.subjects != [wanted_subject.clone()] {
        problems.push(format!(
            "its subjects are {:?}, not [{wanted_subject:?}]",
            c.subjects
        ));
    }
    if c.storage != js::StorageType::File {
        problems.push("it is not on file storage".to_owned());
    }
    if !c.deny_delete || !c.deny_purge {
        problems.push("it allows deleting or purging messages".to_owned());
    }
    if c.retention != js::RetentionPolicy::Limits
        || c.max_messages > 0
        || c.max_bytes > 0
        || !c.max_age.is_zero()
    {
        problems.push("it has a retention policy or limit that could drop events".to_owned());
    }
    if !problems.is_empty() {
        return Err(message(
            "open the JetStream stream",
            format!(
                "the existing stream {:?} is not a Triplicate event stream: {}; use another \
                 name or fix it (nothing was changed)",
                options.stream,
                problems.join("; ")
            ),
        ));
    }
    if c.num_replicas != options.replicas {
        tracing::warn!(
            stream = %options.stream,
            configured = options.replicas,
            actual = c.num_replicas,
            "the JetStream stream has another replica count than configured; it is kept"
        );
    }
    Ok(stream)
}

fn publish_error(seq: u64, e: context::PublishError) -> StreamError {
    use context::PublishErrorKind as K;
    match e.kind() {
        K::WrongLastSequence => StreamError::Unavailable {
            reason: format!(
                "NATS JetStream refused seq {seq}: the stream changed under this append \
                 (another writer, or a decision recorded meanwhile); retrying re-reads it"
            ),
        },
        K::TimedOut | K::BrokenPipe | K::MaxAckPending => {
            unavailable(&format!("publish seq {seq}"), e)
        }
        K::StreamNotFound => message(
            "publish",
            format!("seq {seq}: the JetStream stream no longer exists"),
        ),
        _ => backend("publish")(e),
    }
}

impl EventStream for NatsStream {
    fn limits(&self) -> Limits {
        NATS_LIMITS
    }

    async fn append(&self, batch: Vec<AppendRequest>) -> Result<AppendOutcome, StreamError> {
        use tracing::Instrument;
        let span = tracing::debug_span!(
            "stream.append",
            backend = "nats",
            events = batch.len(),
            first_seq = batch.first().map(|r| r.event.seq),
        );
        self.append_batch(batch).instrument(span).await
    }

    async fn read_stream(&self, stream_id: &StreamId) -> Result<Vec<StoredEvent>, StreamError> {
        Ok(self.last_on(*stream_id).await?.into_iter().collect())
    }

    async fn read_all(&self, after: Option<Position>, limit: usize) -> Result<Page, StreamError> {
        let start = after.map_or(1, |p| p.parts().0.saturating_add(1));
        let (last, messages) = self.state().await?;
        if messages == 0 || start > last {
            return Ok(Page {
                events: Vec::new(),
                end: true,
            });
        }
        let available = usize::try_from(last - start + 1).unwrap_or(usize::MAX);
        let n = limit.clamp(1, MAX_PAGE).min(available);
        let events = self.range(start, n).await?;
        let end = events.last().is_none_or(|e| e.position.parts().0 >= last);
        Ok(Page { events, end })
    }

    fn subscribe(
        &self,
        after: Option<Position>,
    ) -> BoxStream<'static, Result<StoredEvent, StreamError>> {
        let this = self.clone();
        Box::pin(async_stream::stream! {
            let conn = match this.conn().await {
                Ok(c) => c,
                Err(e) => {
                    yield Err(e);
                    return;
                }
            };
            let inner = &this.inner;
            let deliver_policy = match after {
                None => consumer::DeliverPolicy::All,
                Some(p) => consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: p.parts().0.saturating_add(1),
                },
            };
            let c = match conn
                .stream
                .create_consumer(consumer::pull::OrderedConfig {
                    deliver_policy,
                    filter_subject: format!("{}*", inner.root),
                    ..Default::default()
                })
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    yield Err(request_error("subscribe", e));
                    return;
                }
            };
            let mut messages = match c.messages().await {
                Ok(m) => m,
                Err(e) => {
                    yield Err(request_error("subscribe", e));
                    return;
                }
            };
            while let Some(m) = messages.next().await {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        yield Err(unavailable("subscription", e));
                        return;
                    }
                };
                let decoded = match m.info() {
                    Ok(info) => decode(
                        &inner.root,
                        &m.subject,
                        info.stream_sequence,
                        m.headers.as_ref(),
                        &m.payload,
                        info.published,
                    ),
                    Err(e) => Err(message("read a delivered message's metadata", e.to_string())),
                };
                let failed = decoded.is_err();
                yield decoded;
                if failed {
                    return;
                }
            }
            yield Err(StreamError::Unavailable {
                reason: "NATS JetStream: the subscription's consumer ended".into(),
            });
        })
    }

    async fn highest_seq(&self) -> Result<Option<u64>, StreamError> {
        let (last, messages) = self.state().await?;
        self.highest(last, messages).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn subjects_round_trip_and_only_canonical_ones_are_ours() {
        let id = Uuid::parse_str("01890a5d-ac96-774b-bcce-b302099a8057").unwrap();
        let sid = StreamId::for_decision(id);
        let root = "acme.gov.decision.";
        let s = subject(root, &sid);
        assert_eq!(s, "acme.gov.decision.01890a5d-ac96-774b-bcce-b302099a8057");
        assert_eq!(stream_id_of(root, &s), Some(sid));
        assert_eq!(stream_id_of(root, &s.to_uppercase()), None);
        assert_eq!(stream_id_of("other.decision.", &s), None);
        assert_eq!(stream_id_of(root, "acme.gov.decision.not-a-uuid"), None);
        assert_eq!(
            stream_id_of(root, "acme.gov.decision.01890a5dac96774bbcceb302099a8057"),
            None,
            "the simple form is not canonical"
        );
    }

    #[test]
    fn options_refuse_names_jetstream_would_misread() {
        assert!(NatsOptions::default().check().is_ok());
        for (stream, prefix, replicas) in [
            ("", "t", 1),
            ("A.B", "t", 1),
            ("A*", "t", 1),
            ("A B", "t", 1),
            ("A", "", 1),
            ("A", "a..b", 1),
            ("A", "a.>", 1),
            ("A", "a.*", 1),
            ("A", "t", 0),
            ("A", "t", 6),
        ] {
            let o = NatsOptions {
                stream: stream.into(),
                subject_prefix: prefix.into(),
                replicas,
                ..NatsOptions::default()
            };
            assert!(o.check().is_err(), "{stream:?} {prefix:?} {replicas}");
        }
    }

    #[cfg(feature = "testkit")]
    #[test]
    fn an_event_maps_to_headers_and_back() {
        let e = crate::fixtures::event(7);
        let h = headers(&e);
        assert_eq!(
            h.get(NATS_MESSAGE_ID).unwrap().as_str(),
            e.event_id().hyphenated().to_string()
        );
        assert_eq!(h.get(NATS_EXPECTED_LAST_SEQUENCE).unwrap().as_str(), "7");
        assert_eq!(
            h.get(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE).unwrap().as_str(),
            "0"
        );
        let root = "triplicate.decision.";
        let s = subject(root, &e.stream_id());
        let t = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let back = decode(root, &s, 8, Some(&h), &e.record_bytes, t).unwrap();
        assert_eq!(back.event, e);
        assert_eq!(back.position, Position::new(8, 0));
        assert_eq!(back.revision, 0);
        assert_eq!(back.stored_at.unix_nanos(), 1_700_000_000_000_000_000);

        // At another stream sequence, without headers, or with a foreign type: damaged.
        for (seq, hdr) in [(9, Some(&h)), (8, None)] {
            let err = decode(root, &s, seq, hdr, &e.record_bytes, t).unwrap_err();
            assert!(
                matches!(err, StreamError::Damaged { position, .. } if position == Position::new(seq, 0)),
                "{err}"
            );
        }
        let mut foreign = h.clone();
        foreign.insert(HEADER_EVENT_TYPE, "Other");
        assert!(decode(root, &s, 8, Some(&foreign), &e.record_bytes, t).is_err());
    }
}
