//! `triplicate-stream`: the event-sourced copy of the records.
//!
//! Owns: the [`EventStream`] trait and its guarantees; the `DecisionRecorded` event (data =
//! `record_bytes`, metadata = `seq` and `leaf_hash`) in per-decision streams `decision-<id>`;
//! the embedded SQLite backend ([`SqliteStream`], `<data-dir>/stream.db`); a conformance suite
//! and a fault-injecting wrapper (feature `testkit`).
//!
//! Must not know: the ledger or the projection, HTTP, policies, or SQL outside the SQLite
//! backend. The trait speaks in expected revisions, global positions and catch-up
//! subscriptions, the vocabulary KurrentDB and NATS JetStream share, so those backends (issue 8)
//! fit without SQL leaking.

#[cfg(feature = "testkit")]
pub mod conformance;
mod event;
#[cfg(feature = "testkit")]
pub mod failing;
mod sqlite;

use std::future::Future;

use futures::stream::BoxStream;

pub use event::{DecisionRecorded, StoredEvent, EVENT_TYPE};
pub use sqlite::SqliteStream;

/// What the writer expects of a stream before appending to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedRevision {
    /// The stream must not exist yet (a new decision).
    NoStream,
    /// The stream's last event must be at this revision.
    Exact(u64),
    /// No expectation.
    Any,
}

/// One event to append and what its stream must look like first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    pub event: DecisionRecorded,
    pub expected: ExpectedRevision,
}

impl AppendRequest {
    /// A new decision's first event.
    pub fn new_decision(event: DecisionRecorded) -> Self {
        AppendRequest {
            event,
            expected: ExpectedRevision::NoStream,
        }
    }
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Events written by this call.
    pub appended: u64,
    /// Events of the batch that were already stored with identical bytes.
    pub already_present: u64,
    /// Global position of the last event written, if any was.
    pub last_position: Option<u64>,
}

/// A page of the global order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub events: Vec<StoredEvent>,
    /// Position to read from next; `None` when the page reached the end.
    pub next: Option<u64>,
}

/// Why a stream operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    #[error("event {index} of the batch is invalid: {reason}")]
    InvalidEvent { index: usize, reason: String },
    #[error("seq {seq} is already stored with leaf hash {stored}; the batch offers {offered}")]
    SeqConflict {
        seq: u64,
        stored: String,
        offered: String,
    },
    #[error("decision {stream_id} is already recorded at seq {stored_seq} (leaf hash {stored}); the batch offers seq {offered_seq} (leaf hash {offered})")]
    DecisionConflict {
        stream_id: String,
        stored_seq: u64,
        stored: String,
        offered_seq: u64,
        offered: String,
    },
    #[error("stream {stream_id} is at {actual:?} but the append expected {expected:?}")]
    WrongExpectedRevision {
        stream_id: String,
        expected: ExpectedRevision,
        actual: Option<u64>,
    },
    #[error("the batch starts at seq {got} but the stream's next seq is {expected}: it would leave a gap")]
    Gap { expected: u64, got: u64 },
    #[error("event store is unavailable: {0}")]
    Unavailable(String),
    #[error("event store {what}: {reason}")]
    Storage { what: &'static str, reason: String },
    #[error("stored event at position {position} is damaged: {reason}")]
    Damaged { position: u64, reason: String },
}

impl StreamError {
    /// True when retrying the same call later may succeed (the store was down or busy).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StreamError::Unavailable(_))
    }
}

/// The event stream.
///
/// Guarantees every backend gives:
/// - **Atomic, idempotent batches.** [`EventStream::append`] writes all of a batch or none of
///   it. An event already stored with the same `seq` and identical bytes is skipped (a retry);
///   different bytes at a stored `seq`, or a second event for a decision already recorded, is
///   refused with both leaf hashes, and nothing of the batch is written.
/// - **Mirrors the ledger's order.** Within a batch seqs are consecutive; the first new seq
///   must be one past the highest stored (no gaps). Global positions increase with seq.
/// - **Validated.** Each event's bytes must be a canonical record whose seq and decision id are
///   the event's and whose leaf hash is the event's.
/// - **Durable on `Ok`.** A returned append survives a crash.
/// - **Reads** return events in global order; [`EventStream::subscribe`] yields every event from
///   a position, then new ones as they commit, without gaps or repeats.
pub trait EventStream: Send + Sync {
    /// Appends a batch (see the trait docs).
    fn append(
        &self,
        batch: Vec<AppendRequest>,
    ) -> impl Future<Output = Result<AppendOutcome, StreamError>> + Send;

    /// Every event of one stream, by revision.
    fn read_stream(
        &self,
        stream_id: &str,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StreamError>> + Send;

    /// Up to `limit` events at global positions `>= from`.
    fn read_all(
        &self,
        from: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Page, StreamError>> + Send;

    /// Events from `from` on: catch-up, then live.
    fn subscribe(&self, from: u64) -> BoxStream<'static, Result<StoredEvent, StreamError>>;

    /// The highest seq stored, `None` when empty.
    fn highest_seq(&self) -> impl Future<Output = Result<Option<u64>, StreamError>> + Send;
}
