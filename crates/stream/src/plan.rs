//! What every backend decides before writing a batch, whatever it stores events in: the
//! batch's shape, each event's validity, and — given what the store already holds for the
//! batch's seqs and streams — which events to write, which to skip as retries, and which
//! problem to refuse the batch for. Backends fetch the stored state their own way (one query
//! here; stream reads on KurrentDB) and write the result their own way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};

use triplicate_core::digest::leaf_hash;
use triplicate_core::Hash;

use crate::event::{EventProblem, StreamId};
use crate::{AppendRequest, ExpectedRevision, Limits, StreamError};

/// Batch-level checks, cheap and made before anything else: not empty, within the backend's
/// limits, consecutive seqs.
pub(crate) fn check_shape(batch: &[AppendRequest], limits: Limits) -> Result<(), StreamError> {
    if batch.is_empty() {
        return Err(StreamError::EmptyBatch);
    }
    let bytes: usize = batch.iter().map(|r| r.event.record_bytes.len()).sum();
    if batch.len() > limits.max_batch_events || bytes > limits.max_batch_bytes {
        return Err(StreamError::BatchTooLarge {
            events: batch.len(),
            bytes,
            max_events: limits.max_batch_events,
            max_bytes: limits.max_batch_bytes,
        });
    }
    for (i, w) in batch.windows(2).enumerate() {
        let (prev, this) = (w[0].event.seq, w[1].event.seq);
        if prev.checked_add(1) != Some(this) {
            return Err(StreamError::InvalidEvent {
                index: i + 1,
                seq: this,
                problem: EventProblem::NotConsecutive { previous: prev },
            });
        }
    }
    Ok(())
}

/// Events per unit of validation work. Small enough that the writer can start on the first
/// rows while the rest are still being checked.
const CHUNK: usize = 32;
/// Below this many events a batch is validated on the calling thread alone: starting a thread
/// costs more than it saves.
const PARALLEL_MIN: usize = 128;

/// A checked chunk: fine, or the batch index of its first bad event and why.
type ChunkResult = Result<(), (usize, EventProblem)>;

/// [`crate::DecisionRecorded::check`] over a batch, shared between the calling thread and
/// helper threads, so a backend can write events as soon as they are checked while later ones
/// are still being checked ([`Validation::wait_from`]). Chunks are claimed in order; a thread
/// that needs a chunk someone else is checking checks later chunks meanwhile.
pub(crate) struct Validation<'a> {
    batch: &'a [AppendRequest],
    next: AtomicUsize,
    cancelled: AtomicBool,
    /// Per chunk: `None` until checked, then the first problem in it, if any.
    done: Mutex<Vec<Option<ChunkResult>>>,
    changed: Condvar,
    /// What the store holds, once the backend knows: an event identical to a stored one was
    /// validated when it was stored, so a retry costs a hash instead of a parse.
    held: OnceLock<Arc<Holdings>>,
}

impl<'a> Validation<'a> {
    /// Runs `f` with a validation of `batch` under way on helper threads (none for small
    /// batches); `f` calls [`Validation::wait`] before trusting events.
    pub(crate) fn run<T>(
        batch: &'a [AppendRequest],
        f: impl FnOnce(&Validation<'a>) -> Result<T, StreamError>,
    ) -> Result<T, StreamError> {
        let v = Validation {
            batch,
            next: AtomicUsize::new(0),
            cancelled: AtomicBool::new(false),
            done: Mutex::new(vec![None; batch.len().div_ceil(CHUNK)]),
            changed: Condvar::new(),
            held: OnceLock::new(),
        };
        let helpers = if batch.len() < PARALLEL_MIN {
            0
        } else {
            // The calling thread validates too, whenever it waits.
            triplicate_core::available_threads()
                .saturating_sub(1)
                .max(1)
        };
        std::thread::scope(|s| {
            for _ in 0..helpers {
                s.spawn(|| while v.claim_and_check() {});
            }
            let out = f(&v);
            // Stop the helpers early if `f` gave up (the batch is refused anyway).
            v.cancelled.store(true, Ordering::Relaxed);
            out
        })
    }

    /// Checks the next unclaimed chunk; false when there is none left.
    fn claim_and_check(&self) -> bool {
        if self.cancelled.load(Ordering::Relaxed) {
            return false;
        }
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let start = k * CHUNK;
        if start >= self.batch.len() {
            return false;
        }
        let end = (start + CHUNK).min(self.batch.len());
        // A panic here must still mark the chunk done, or the writer would wait for it forever.
        let result = std::panic::catch_unwind(|| {
            for (i, req) in self.batch[start..end].iter().enumerate() {
                if let Some(held) = self.held.get() {
                    if held.holds_identical(&req.event) {
                        continue;
                    }
                }
                req.check().map_err(|p| (start + i, p))?;
            }
            Ok(())
        })
        .unwrap_or(Err((start, EventProblem::CheckPanicked)));
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        done[k] = Some(result);
        self.changed.notify_all();
        true
    }

    /// Tells the validation what the store holds, so retried events skip the parse.
    pub(crate) fn knows(&self, held: Arc<Holdings>) {
        // Set once; a second call would carry the same holdings.
        let _ = self.held.set(held);
    }

    /// Waits until event `from` is checked (helping meanwhile) and returns `end`, such that
    /// events `from..end` are all valid: as far as checking has got, past `from`, without a
    /// gap or a problem. When event `from` itself has a problem, returns that problem. Events
    /// are thus handed out in batch order, and a problem is reported only once every event
    /// before it has been handed out: the caller refuses the batch for the earliest problem of
    /// any kind.
    pub(crate) fn wait_from(&self, from: usize) -> Result<usize, StreamError> {
        let first = from / CHUNK;
        loop {
            {
                let done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
                if done.get(first).is_none_or(Option::is_some) {
                    return self.checked_run(&done, from);
                }
            }
            // Not checked yet: check something ourselves, or wait for whoever claimed it.
            if !self.claim_and_check() {
                let done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
                if done[first].is_none() {
                    drop(
                        self.changed
                            .wait_while(done, |d| d[first].is_none())
                            .unwrap_or_else(PoisonError::into_inner),
                    );
                }
            }
        }
    }

    /// The end of the run of checked, valid events from `from` (whose chunk is checked).
    fn checked_run(&self, done: &[Option<ChunkResult>], from: usize) -> Result<usize, StreamError> {
        let mut end = from;
        for (k, chunk) in done.iter().enumerate().skip(from / CHUNK) {
            match chunk {
                Some(Ok(())) => end = ((k + 1) * CHUNK).min(self.batch.len()),
                // The events before the first bad one in a chunk were checked and are valid.
                Some(Err((index, problem))) => {
                    if *index > from {
                        return Ok(*index);
                    }
                    return Err(StreamError::InvalidEvent {
                        index: *index,
                        seq: self.batch[*index].event.seq,
                        problem: problem.clone(),
                    });
                }
                None => break,
            }
        }
        Ok(end.max(from))
    }
}

/// An event the store already holds.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub seq: u64,
    pub stream_id: StreamId,
    pub revision: u64,
    /// Re-derived from the stored bytes, never read from stored metadata: a retry is
    /// recognised only if the bytes really are identical.
    pub leaf_hash: Hash,
}

impl Held {
    pub(crate) fn new(seq: u64, stream_id: StreamId, revision: u64, data: &[u8]) -> Held {
        Held {
            seq,
            stream_id,
            revision,
            leaf_hash: leaf_hash(data),
        }
    }
}

/// What the store holds that a batch could collide with.
#[derive(Debug, Default)]
pub(crate) struct Holdings {
    by_seq: HashMap<u64, Held>,
    /// The last event of each stream the batch names.
    by_stream: HashMap<StreamId, Held>,
    pub highest_seq: Option<u64>,
}

impl Holdings {
    /// True when `e` is byte for byte an event stored at its seq in its stream (and its
    /// claimed hash is its bytes' hash): everything [`crate::DecisionRecorded::check`] would
    /// establish, since the stored event passed it.
    pub(crate) fn holds_identical(&self, e: &crate::DecisionRecorded) -> bool {
        self.by_seq.get(&e.seq).is_some_and(|h| {
            h.leaf_hash == e.leaf_hash
                && h.stream_id == e.stream_id()
                && leaf_hash(&e.record_bytes) == e.leaf_hash
        })
    }

    /// True when the store is known to hold an event at `seq`.
    // Used by the network backends, which are optional features.
    #[cfg_attr(not(any(feature = "nats", feature = "kurrentdb")), allow(dead_code))]
    pub(crate) fn has_seq(&self, seq: u64) -> bool {
        self.by_seq.contains_key(&seq)
    }

    pub(crate) fn add(&mut self, h: Held) {
        match self.by_stream.get(&h.stream_id) {
            Some(other) if other.revision >= h.revision => {}
            _ => {
                self.by_stream.insert(h.stream_id, h.clone());
            }
        }
        self.by_seq.insert(h.seq, h);
    }
}

/// What to do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Stored with identical bytes: skip.
    Present,
    /// Write it at this revision of its stream.
    Write { revision: u64 },
}

/// Decides, event by event in batch order, what a batch does against [`Holdings`]. Feed it
/// only events that passed validation.
#[derive(Debug)]
pub(crate) struct Planner<'h> {
    held: &'h Holdings,
    next_seq: u64,
    wrote_any: bool,
    /// Streams this batch writes, with the seq and hash of the event that writes them.
    fresh: HashMap<StreamId, (u64, Hash)>,
    highest: Option<u64>,
}

impl<'h> Planner<'h> {
    pub(crate) fn new(held: &'h Holdings) -> Planner<'h> {
        Planner {
            held,
            next_seq: held.highest_seq.map_or(0, |h| h.saturating_add(1)),
            wrote_any: false,
            fresh: HashMap::new(),
            highest: held.highest_seq,
        }
    }

    pub(crate) fn step(&mut self, req: &AppendRequest) -> Result<Step, StreamError> {
        let e = &req.event;
        if let Some(h) = self.held.by_seq.get(&e.seq) {
            if h.leaf_hash == e.leaf_hash {
                return Ok(Step::Present);
            }
            return Err(StreamError::SeqConflict {
                seq: e.seq,
                stored: h.leaf_hash,
                offered: e.leaf_hash,
            });
        }
        let sid = e.stream_id();
        if let Some(h) = self.held.by_stream.get(&sid) {
            return Err(StreamError::DecisionConflict {
                stream_id: sid,
                existing_seq: h.seq,
                existing: h.leaf_hash,
                offered_seq: e.seq,
                offered: e.leaf_hash,
                in_batch: false,
            });
        }
        if let Some((seq, hash)) = self.fresh.get(&sid) {
            return Err(StreamError::DecisionConflict {
                stream_id: sid,
                existing_seq: *seq,
                existing: *hash,
                offered_seq: e.seq,
                offered: e.leaf_hash,
                in_batch: true,
            });
        }
        // The stream does not exist (a stream holds one event, and this one is new).
        if let ExpectedRevision::Exact(_) = req.expected {
            return Err(StreamError::WrongExpectedRevision {
                stream_id: sid,
                expected: req.expected,
                actual: None,
            });
        }
        if !self.wrote_any && e.seq != self.next_seq {
            return Err(StreamError::Gap {
                expected: self.next_seq,
                got: e.seq,
            });
        }
        self.wrote_any = true;
        self.fresh.insert(sid, (e.seq, e.leaf_hash));
        self.highest = Some(self.highest.map_or(e.seq, |h| h.max(e.seq)));
        Ok(Step::Write { revision: 0 })
    }

    /// The highest seq stored once the planned events are written.
    pub(crate) fn highest_seq(&self) -> Option<u64> {
        self.highest
    }
}

/// Every event's step, for a backend that plans a whole batch before writing any of it.
#[cfg_attr(not(feature = "kurrentdb"), allow(dead_code))]
#[derive(Debug)]
pub(crate) struct Planned {
    /// One step per event of the batch, in batch order.
    pub steps: Vec<Step>,
    /// The highest seq stored once the planned events are written.
    pub highest_seq: Option<u64>,
}

/// Validates `batch` (in parallel for large batches, retries checked by hash) and plans every
/// event against `held`, refusing the batch for its earliest problem of any kind — the same
/// order of checks as a backend that writes while it validates. For network backends, which
/// cannot write inside the validation's scope: they fetch `held` first, plan with this, then
/// write. Blocking (it may wait for helper threads): call it from a blocking thread.
#[cfg_attr(not(any(feature = "nats", feature = "kurrentdb")), allow(dead_code))]
pub(crate) fn plan_batch(
    batch: &[AppendRequest],
    held: Arc<Holdings>,
) -> Result<Planned, StreamError> {
    Validation::run(batch, |v| {
        v.knows(held.clone());
        let mut planner = Planner::new(&held);
        let mut steps = Vec::with_capacity(batch.len());
        let mut next = 0;
        while next < batch.len() {
            // Nothing is planned before it is known to be valid.
            let ready = v.wait_from(next)?;
            for req in &batch[next..ready] {
                steps.push(planner.step(req)?);
            }
            next = ready;
        }
        Ok(Planned {
            steps,
            highest_seq: planner.highest_seq(),
        })
    })
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::fixtures::batch;

    /// However far checking has got, events are handed out in order, each valid one before a
    /// problem after it, and the problem only once everything before it was handed out.
    #[test]
    fn wait_from_hands_out_valid_runs_in_order_then_the_first_problem() {
        for bad in [0, 5, 31, 32, 40, 299] {
            let mut b = batch(0..300);
            b[bad].event.leaf_hash[0] ^= 1;
            if let Some(r) = b.get_mut(bad + 1) {
                r.event.leaf_hash[0] ^= 1;
            }
            let handed = Validation::run(&b, |v| {
                let mut next = 0;
                loop {
                    match v.wait_from(next) {
                        Ok(end) => {
                            assert!(end > next && end <= bad, "{next}..{end}, bad {bad}");
                            next = end;
                        }
                        Err(StreamError::InvalidEvent { index, .. }) => {
                            assert_eq!(index, bad);
                            return Ok(next);
                        }
                        Err(e) => return Err(e),
                    }
                }
            })
            .unwrap();
            assert_eq!(handed, bad);
        }
        let b = batch(0..100);
        let end = Validation::run(&b, |v| {
            let mut next = 0;
            while next < b.len() {
                next = v.wait_from(next)?;
            }
            Ok(next)
        })
        .unwrap();
        assert_eq!(end, 100);
    }
}
