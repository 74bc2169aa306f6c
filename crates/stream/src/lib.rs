//! `triplicate-stream`: the event-sourced copy of the records.
//!
//! Owns: the [`EventStream`] trait and what each call guarantees; the `DecisionRecorded` event
//! (data = `record_bytes`, metadata = `seq` and `leaf_hash`) in per-decision streams
//! `decision-<uuid>`; the checks every append makes, whatever the backend; the embedded SQLite
//! backend ([`SqliteStream`], `<data-dir>/stream.db`); behind the `kurrentdb` feature, the
//! KurrentDB / EventStoreDB backend (`KurrentStream`); and, behind the `testkit` feature, the
//! conformance suite every backend runs, realistic sample events and a fault-injecting wrapper.
//!
//! Must not know: the ledger or the projection (the caller hands it events the ledger already
//! holds), HTTP, policies, SQL outside the SQLite backend, or gRPC outside the KurrentDB one. The trait speaks in expected
//! revisions, global positions and catch-up subscriptions, the vocabulary KurrentDB and NATS
//! JetStream share, so those backends fit behind it:
//!
//! | trait | SQLite (here) | KurrentDB | NATS JetStream |
//! |---|---|---|---|
//! | stream `decision-<id>` | `events.stream_id` | stream | subject `…decision.<id>` |
//! | [`ExpectedRevision`] | checked in the transaction | `StreamState` | `Nats-Expected-Last-Subject-Sequence` |
//! | idempotent retry | pre-check of seqs and streams | event id = [`DecisionRecorded::event_id`] | `Nats-Msg-Id` = the same id |
//! | batch | atomic: one transaction | prefix-durable: one append per event, in seq order (kurrentdb 1.2 has no multi-stream append) | prefix-durable: pipelined publishes, each expecting the previous one's stream sequence (atomic batch publish needs 2.12+; not used yet) |
//! | [`Position`] | row id | `$all` (commit, prepare) | stream sequence (= seq + 1) |
//! | [`EventStream::subscribe`] | read pages, woken by commits, polling as a fallback | catch-up subscription to `$all` | ordered consumer |
//!
//! Backend limits differ (JetStream batches are capped at 1,000 events, the size of its atomic
//! batches, so the cap holds once atomic publishing is used; KurrentDB caps each
//! append request at `MaxAppendSize`, 1 MiB by default, which one event always fits, and its
//! batches at 1,000 events written in sequence), so callers size batches by
//! [`EventStream::limits`].

#[cfg(feature = "testkit")]
pub mod conformance;
mod error;
mod event;
#[cfg(feature = "testkit")]
mod failing;
#[cfg(feature = "testkit")]
pub mod fixtures;
#[cfg(feature = "kurrentdb")]
mod kurrent;
#[cfg(feature = "nats")]
mod nats;
mod plan;
mod sqlite;
mod subscription;

use std::fmt;
use std::future::Future;

use futures::stream::BoxStream;
use triplicate_core::CanonicalProof;

pub use error::StreamError;
pub use event::{
    DecisionRecorded, EventMetadata, EventProblem, Position, StoredEvent, StreamId, EVENT_TYPE,
    MAX_EVENT_BYTES,
};
#[cfg(feature = "testkit")]
pub use failing::FailingStream;
#[cfg(feature = "kurrentdb")]
pub use kurrent::{
    KurrentOptions, KurrentStream, DEFAULT_MAX_APPEND_SIZE, KURRENT_LIMITS, PRECHECK_READS,
    RANGE_PAGE,
};
#[cfg(feature = "nats")]
pub use nats::{
    NatsOptions, NatsStream, DEFAULT_STREAM_NAME as NATS_DEFAULT_STREAM,
    DEFAULT_SUBJECT_PREFIX as NATS_DEFAULT_SUBJECT_PREFIX,
};
pub use sqlite::{Replaced, Replacement, SqliteOptions, SqliteStream};

/// What the writer expects of an event's stream before the event is appended
/// (KurrentDB's `StreamState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedRevision {
    /// The stream must not exist yet: a new decision. What the write path uses.
    NoStream,
    /// The stream's last event must be at this revision.
    Exact(u64),
    /// No expectation.
    Any,
}

impl fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedRevision::NoStream => f.write_str("no stream"),
            ExpectedRevision::Exact(r) => write!(f, "revision {r}"),
            ExpectedRevision::Any => f.write_str("any revision"),
        }
    }
}

/// One event to append and what its stream must look like first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    pub event: DecisionRecorded,
    pub expected: ExpectedRevision,
    /// The core crate's proof that the event's bytes are a valid canonical record, from the
    /// write path that built it: the append then checks the event by hashing its bytes
    /// instead of parsing them (see [`AppendRequest::check`]). `None` is checked in full.
    pub proof: Option<CanonicalProof>,
}

impl AppendRequest {
    /// A new decision's event: its stream must not exist yet.
    pub fn new_decision(event: DecisionRecorded) -> AppendRequest {
        AppendRequest {
            event,
            expected: ExpectedRevision::NoStream,
            proof: None,
        }
    }

    /// A new decision's event with the proof the write path got when it wrote the record.
    pub fn new_proven_decision(event: DecisionRecorded, proof: CanonicalProof) -> AppendRequest {
        AppendRequest {
            proof: Some(proof),
            ..AppendRequest::new_decision(event)
        }
    }

    /// What every backend checks before writing: [`DecisionRecorded::check`]. With a proof that
    /// covers the event's bytes (their leaf hash is the proof's) and agrees with its seq,
    /// decision id and claimed leaf hash, the bytes are known to be a canonical record and
    /// only hashed; anything else is checked in full, so a proof can only make a check cheaper,
    /// never let through an event the full check refuses.
    pub fn check(&self) -> Result<(), EventProblem> {
        if let Some(proof) = &self.proof {
            let e = &self.event;
            if proof.seq() == e.seq
                && proof.decision_id() == e.decision_id
                && proof.leaf_hash() == &e.leaf_hash
                && proof.covers(&e.record_bytes)
            {
                return Ok(());
            }
        }
        self.event.check()
    }
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Events this call wrote.
    pub appended: u64,
    /// Events of the batch already stored with identical bytes (a retry), skipped.
    pub already_present: u64,
    /// Position of the last event this call wrote; `None` when it wrote nothing.
    pub last_position: Option<Position>,
    /// The highest seq stored once the call returned.
    pub highest_seq: u64,
}

/// A page of the global order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Events in global order, each after the cursor the read was given.
    pub events: Vec<StoredEvent>,
    /// True when no event after the last one returned had been committed when the page was
    /// read. A short page with `end == false` is possible (backends may cap pages in bytes).
    pub end: bool,
}

impl Page {
    /// The cursor for the next page: the last event's position, or `after` if the page is
    /// empty.
    pub fn next_after(&self, after: Option<Position>) -> Option<Position> {
        self.events.last().map(|e| e.position).or(after)
    }
}

/// How much one append may carry on a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most events in one [`EventStream::append`].
    pub max_batch_events: usize,
    /// Most `record_bytes`, summed over a batch.
    pub max_batch_bytes: usize,
}

/// The event stream: a copy of the ledger's records as `DecisionRecorded` events, one stream
/// per decision, in one global order that is the ledger's `seq` order.
///
/// Every backend gives these guarantees, and `conformance::run` (feature `testkit`) checks
/// them through this trait alone:
///
/// **Appends** ([`EventStream::append`]) take a batch of events with consecutive seqs:
/// - *Validated first.* Every event must pass [`DecisionRecorded::check`] (its bytes a
///   canonical record of at most [`MAX_EVENT_BYTES`] agreeing with its seq, decision id and leaf
///   hash); the batch must be non-empty, hold consecutive seqs, and fit [`EventStream::limits`].
/// - *Idempotent.* An event whose seq is already stored with identical bytes is skipped,
///   whatever its expected revision says (it is a retry; KurrentDB's event ids and JetStream's
///   `Nats-Msg-Id` behave the same way). A batch may overlap what is stored and extend it.
/// - *Conflicts name both hashes.* Different bytes at a stored seq is
///   [`StreamError::SeqConflict`]; an event for a decision whose stream already holds an event
///   at another seq (or that an earlier event of the batch is for) is
///   [`StreamError::DecisionConflict`]: a decision is recorded once, so a stream holds one
///   event, at revision 0.
/// - *Expected revisions* are checked for every event that would be written: `NoStream` and
///   `Any` pass for a new stream; `Exact(r)` needs the stream at revision `r`, which a new
///   decision's stream never is ([`StreamError::WrongExpectedRevision`]).
/// - *No gaps.* The first event the batch would write must have seq `highest_seq + 1` (0 for an
///   empty store): the stream mirrors the ledger, and seq order is the global order.
/// - *All or nothing.* A refused or failed batch writes none of its events; the error is about
///   the earliest event in the batch that has a problem. (A network backend can lose the
///   acknowledgement of a batch it did commit; the retry then finds every event present.)
/// - *Prefix-durable*, instead, on backends without an atomic write across streams (KurrentDB
///   through kurrentdb 1.2; NATS JetStream before 2.12): every refusal above is still decided
///   before anything is written, so a *refused* batch writes nothing; but a *failure while
///   writing* (the store becomes unreachable, a deadline passes, another process wrote one of
///   the streams) may leave a prefix of the batch's new events written. Each event of that
///   prefix passed every check and is in the ledger, and is durable; the error is retryable
///   unless another writer got in; retrying the same batch finds the prefix present and writes
///   the rest. The no-gaps rule still holds: events are written one at a time in seq order,
///   each extending the highest seq by one, so the store always holds exactly `0..=highest`.
/// - *Durable on `Ok`.* When `append` returns `Ok`, the events survive a crash or power loss,
///   and every read or subscription started afterwards sees them.
///
/// **Reads** return events as stored, without re-validating them (the verifier re-derives
/// hashes from `record_bytes`): [`EventStream::read_stream`] one stream by revision;
/// [`EventStream::read_all`] the global order after a cursor, in pages.
///
/// **Subscriptions** ([`EventStream::subscribe`]) yield every event after a cursor in global
/// order, exactly once, without gaps: first what is stored (catch-up), then events as they
/// commit (live). After an error the subscription ends; resubscribe from the last position
/// received.
///
/// Calls may run concurrently from many tasks; appends are serialised by the backend (by one
/// handle, on KurrentDB: one service process writes there, any number read).
pub trait EventStream: Send + Sync {
    /// The most one append may carry on this backend. Constant for a store's lifetime.
    fn limits(&self) -> Limits;

    /// Appends a batch of events with consecutive seqs, following every rule in the trait
    /// docs, and returns once the written events are durable.
    ///
    /// Refusals, checked in this order and naming the first offending event in batch order:
    /// [`StreamError::EmptyBatch`], [`StreamError::BatchTooLarge`], a non-consecutive seq
    /// ([`StreamError::InvalidEvent`] with [`EventProblem::NotConsecutive`]); then, event by
    /// event, [`StreamError::InvalidEvent`], [`StreamError::SeqConflict`],
    /// [`StreamError::DecisionConflict`], [`StreamError::WrongExpectedRevision`],
    /// [`StreamError::Gap`]. Failures: [`StreamError::Unavailable`] (retry), [`StreamError::Full`],
    /// [`StreamError::Closed`], [`StreamError::AccessDenied`], [`StreamError::Backend`]. On any
    /// error nothing of the batch was written — except that a failure reported *after* the
    /// commit (a lost acknowledgement, a dropped connection) may hide a write that happened,
    /// and that on a prefix-durable backend a failure while writing may leave a prefix of the
    /// batch written (see the trait docs); retrying the same batch is always safe and tells
    /// which.
    fn append(
        &self,
        batch: Vec<AppendRequest>,
    ) -> impl Future<Output = Result<AppendOutcome, StreamError>> + Send;

    /// Every event of one stream, by revision (one event per decision stream today); empty
    /// when the stream does not exist. Sees every append that returned before the call.
    fn read_stream(
        &self,
        stream_id: &StreamId,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StreamError>> + Send;

    /// Up to `limit` events strictly after `after` (`None`: from the first event), in global
    /// order, as of one consistent moment no earlier than the call. `limit` 0 is read as 1, and
    /// a backend may return fewer than asked without being at the end. Page on with
    /// [`Page::next_after`] until [`Page::end`]. A stored event that cannot be decoded is
    /// [`StreamError::Damaged`] naming its position; the events before it read normally.
    fn read_all(
        &self,
        after: Option<Position>,
        limit: usize,
    ) -> impl Future<Output = Result<Page, StreamError>> + Send;

    /// Every event strictly after `after`, in global order, exactly once: first what is stored
    /// (catch-up), then each event as it commits (live, promptly for appends through this
    /// handle, within a backend-defined polling interval otherwise). Nothing is buffered ahead
    /// of the consumer beyond one page. The subscription holds what it needs of the backend and
    /// lives as long as the caller keeps it; it ends only after yielding an error (for example
    /// [`StreamError::Closed`]), after which the caller resubscribes from the last position it
    /// received.
    fn subscribe(
        &self,
        after: Option<Position>,
    ) -> BoxStream<'static, Result<StoredEvent, StreamError>>;

    /// The highest seq stored; `None` when the store is empty. Since stored seqs have no holes,
    /// the store holds exactly seqs `0..=highest`: the catch-up worker appends from
    /// `highest + 1` up to the ledger's size.
    fn highest_seq(&self) -> impl Future<Output = Result<Option<u64>, StreamError>> + Send;
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::fixtures::{event, event_with, record};

    fn proven(seq: u64) -> (DecisionRecorded, CanonicalProof) {
        let (bytes, proof) = record(seq, seq, 0).to_proven_bytes().unwrap();
        let e = event(seq);
        assert_eq!(e.record_bytes, bytes);
        (e, proof)
    }

    /// A proof changes what a check costs, never its verdict: an event it does not match in
    /// every respect is checked in full and refused for what is wrong with it.
    #[test]
    fn a_proof_passes_only_the_event_it_was_issued_for() {
        let (e, proof) = proven(7);
        assert_eq!(
            AppendRequest::new_proven_decision(e.clone(), proof).check(),
            Ok(())
        );

        // Another seq claimed for the same bytes.
        let mut wrong_seq = e.clone();
        wrong_seq.seq = 8;
        assert_eq!(
            AppendRequest::new_proven_decision(wrong_seq, proof).check(),
            Err(EventProblem::SeqMismatch { record_seq: 7 })
        );
        // Another decision id claimed.
        let mut wrong_id = e.clone();
        wrong_id.decision_id = event(9).decision_id;
        assert!(matches!(
            AppendRequest::new_proven_decision(wrong_id, proof).check(),
            Err(EventProblem::DecisionMismatch { .. })
        ));
        // Another leaf hash claimed.
        let mut wrong_hash = e.clone();
        wrong_hash.leaf_hash[0] ^= 1;
        assert!(matches!(
            AppendRequest::new_proven_decision(wrong_hash, proof).check(),
            Err(EventProblem::LeafHashMismatch { .. })
        ));
        // Other bytes, with the claims to match them: checked in full. Valid ones pass...
        let other = event_with(7, 7, 1);
        assert_eq!(
            AppendRequest::new_proven_decision(other.clone(), proof).check(),
            Ok(())
        );
        // ...and ones that are not a canonical record are refused.
        let mut spaced = e.clone();
        spaced.record_bytes.insert(1, b' ');
        spaced.leaf_hash = triplicate_core::digest::leaf_hash(&spaced.record_bytes);
        assert!(matches!(
            AppendRequest::new_proven_decision(spaced, proof).check(),
            Err(EventProblem::NotACanonicalRecord(_))
        ));
    }
}
