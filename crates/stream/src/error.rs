//! Why a stream operation failed, in terms every backend shares.

use std::path::PathBuf;

use triplicate_core::Hash;

use crate::event::{b64, EventProblem, StreamId};
use crate::{ExpectedRevision, Position};

/// Why a stream operation failed.
///
/// Refusals of a batch (`EmptyBatch` through `Gap`) mean nothing of the batch was written and
/// retrying the same batch will be refused again. [`StreamError::is_retryable`] says which
/// failures may pass on a later attempt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    #[error("empty batch: nothing to append")]
    EmptyBatch,
    #[error("batch of {events} events ({bytes} bytes) exceeds this store's limit of {max_events} events and {max_bytes} bytes per append")]
    BatchTooLarge {
        events: usize,
        bytes: usize,
        max_events: usize,
        max_bytes: usize,
    },
    #[error("event {index} of the batch (seq {seq}) is invalid: {problem}")]
    InvalidEvent {
        index: usize,
        seq: u64,
        #[source]
        problem: EventProblem,
    },
    /// The seq is stored with other bytes: the stream disagrees with what the caller (the
    /// ledger) holds for it.
    #[error(
        "seq {seq} is already stored with leaf hash {}; the batch offers {}",
        b64(stored),
        b64(offered)
    )]
    SeqConflict {
        seq: u64,
        stored: Hash,
        offered: Hash,
    },
    /// A decision is recorded once: its stream already holds an event (or an earlier event of
    /// the same batch is for the same decision) at another seq.
    #[error("{stream_id} already has seq {existing_seq} (leaf hash {}{}); the batch offers seq {offered_seq} (leaf hash {})",
        b64(existing), if *in_batch { ", earlier in this batch" } else { "" }, b64(offered))]
    DecisionConflict {
        stream_id: StreamId,
        existing_seq: u64,
        existing: Hash,
        offered_seq: u64,
        offered: Hash,
        /// The existing event is earlier in the same batch rather than stored.
        in_batch: bool,
    },
    #[error("{stream_id} is at {} but the append expected {expected}", actual.map_or("no stream".to_string(), |r| format!("revision {r}")))]
    WrongExpectedRevision {
        stream_id: StreamId,
        expected: ExpectedRevision,
        /// The stream's last revision, `None` when it does not exist.
        actual: Option<u64>,
    },
    /// The stream mirrors the ledger, whose seqs have no holes: the first new event of a batch
    /// must be one past the highest stored seq.
    #[error("the batch's first new event is seq {got} but the next seq is {expected}: it would leave a gap")]
    Gap { expected: u64, got: u64 },
    /// The store could not be reached or was busy; the same call may succeed later.
    #[error("event store unavailable: {reason}")]
    Unavailable { reason: String },
    /// The store refused to grow (its size limit or the disk is full). Nothing of the batch
    /// was written; appends fail until space is made.
    #[error("event store is full: {reason}")]
    Full { reason: String },
    #[error("the event store was closed; open it again")]
    Closed,
    #[error("{} is not a stream database this build can open: {reason}", path.display())]
    IncompatibleDatabase { path: PathBuf, reason: String },
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The store refused the credentials, or they lack a permission the call needs (KurrentDB:
    /// the user of the connection string must read `$all` and read and write the decision
    /// streams). Not retryable: the configuration or the store's access rules must change.
    #[error("event store refused access ({context}): {reason}")]
    AccessDenied {
        context: &'static str,
        reason: String,
    },
    /// A backend failure without a more specific meaning.
    #[error("event store: {context}: {source}")]
    Backend {
        context: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored event cannot be read back as a `DecisionRecorded` (its metadata, stream id or
    /// type is wrong). The verifier treats it like a content mismatch.
    #[error("stored event at position {position} is damaged: {reason}")]
    Damaged { position: Position, reason: String },
}

impl StreamError {
    /// True when the same call may succeed if retried later unchanged (the store was down,
    /// busy, or a fault was injected). Refusals of the batch itself are never retryable.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StreamError::Unavailable { .. })
    }
}
