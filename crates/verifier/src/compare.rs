//! Comparing the three stores over a seq range, in batches: one ledger read (entries and stored
//! leaf hashes), one stream page walk and one projection range read per batch, never one round
//! trip per record.
//!
//! **Architecture invariant:** the verifier never trusts a stored hash it did not re-derive.
//! The stream's hash comes from its event data (the metadata's hash is only compared with it),
//! the projection's from the bytes it rebuilds from its columns, and the ledger's stored leaf
//! hashes are checked against its re-hashed entries and, through [`crate::CompactRange`], against the
//! notary-signed root.

use std::collections::VecDeque;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use triplicate_core::digest::leaf_hash;
use triplicate_core::{Hash, Record, Timestamp};
use triplicate_keys::{verify_many, VerifyItem};
use triplicate_ledger::Ledger;
use triplicate_projection::{Projection, Rederived, RederivedRecord};
use triplicate_stream::{EventStream, Position, StoredEvent, StreamError};
use uuid::Uuid;

use crate::error::VerifyError;
use crate::ledger_check::{bundle_file, compact_range_at, read_failure, CheckpointRef};
use crate::model::{Class, Discrepancy, Kind, Store};
use crate::policy::VerificationPolicy;
use crate::trust::Trust;

/// Seqs compared per batch by default: large enough that per-call costs vanish. A batch of
/// typical records (~1.2 KB) holds ~10 MB per copy; of records at the 60 KiB limit, 480 MiB per
/// copy, and a run then holds about two batches of the three copies (see [`READ_AHEAD_BYTES`]).
pub const DEFAULT_BATCH: u64 = 8_192;

/// A store's reading loop reads its next batch before the comparison has taken the last one
/// only while that batch is under this many bytes; past it, the loop waits, so large records do
/// not multiply the batches held in memory.
pub const READ_AHEAD_BYTES: usize = 64 << 20;

/// Events asked for per `read_all` page (backends may return fewer).
const STREAM_PAGE: usize = 10_000;

/// The three stores, borrowed for a run.
#[derive(Debug)]
pub struct Stores<'a, L: ?Sized, S, P> {
    pub ledger: &'a L,
    pub stream: &'a S,
    pub projection: &'a P,
}

impl<L: ?Sized, S, P> Clone for Stores<'_, L, S, P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<L: ?Sized, S, P> Copy for Stores<'_, L, S, P> {}

/// How [`verify_range`] reads.
#[derive(Debug, Clone)]
pub struct RangeOptions {
    /// Seqs per batch.
    pub batch: u64,
    /// Where to start walking the stream's global order. `None` walks it from the start (what
    /// full sweeps do). An incremental run passes the cursor the previous run returned: the
    /// global order is seq order, so every event of the range lies after it. A cursor past
    /// an event of the range makes that event look missing, never hides a difference.
    pub stream_after: Option<Position>,
    /// The stream cursor to hand back for the next run is the position of the last event with a
    /// seq below this mark.
    pub stream_mark: Option<u64>,
    /// The verified checkpoint. When the range reaches its size, the re-hashed leaves of the
    /// range, after the compact range at the range's start, must fold into its root.
    pub verified: Option<CheckpointRef>,
    /// An embedded ledger's directory, to name entry bundles in findings.
    pub ledger_dir: Option<PathBuf>,
    /// A store's reading loop reads ahead of the comparison only while its last batch was
    /// under this many bytes ([`READ_AHEAD_BYTES`] by default).
    pub read_ahead_bytes: usize,
}

impl Default for RangeOptions {
    fn default() -> Self {
        RangeOptions {
            batch: DEFAULT_BATCH,
            stream_after: None,
            stream_mark: None,
            verified: None,
            ledger_dir: None,
            read_ahead_bytes: READ_AHEAD_BYTES,
        }
    }
}

/// What [`verify_range`] found.
#[derive(Debug, Clone, Default)]
pub struct RangeFindings {
    /// Ledger seqs compared (the range clipped to the ledger's size).
    pub records: u64,
    /// Seqs at or past the ledger's size that were looked at for extra records.
    pub beyond_ledger: u64,
    /// Every discrepancy, in the order found (by seq within each batch).
    pub discrepancies: Vec<Discrepancy>,
    /// `Some(true)` when the re-hashed leaves folded into the verified checkpoint's root,
    /// `Some(false)` when they did not (also a critical finding), `None` when the range does not
    /// reach the checkpoint's size or no checkpoint was given.
    pub root_verified: Option<bool>,
    /// Signatures checked (approvals and notary), when re-verification was on.
    pub signatures_checked: u64,
    /// The stream cursor for the next run (see [`RangeOptions::stream_mark`]).
    pub stream_resume: Option<Position>,
}

/// Compares seqs `range` across the three stores.
///
/// Seqs below the ledger's size (`ledger.tree_size()` when called, or the verified
/// checkpoint's size) are compared with the ledger; seqs at or past it are looked for in the
/// stream and the projection, where any record is `extra`. `now` is the instant lag is judged
/// at: a record missing downstream is `lag` while `now - recorded_at` is under the policy's
/// grace period. When the policy says so (and `trust` holds a registry), every approval and
/// notary signature in the range is re-verified.
///
/// Returns `Err` only when the stream or the projection could not be read at all; everything
/// wrong with what they hold, and any failure of the ledger, is a finding.
#[tracing::instrument(skip_all, fields(start = range.start, end = range.end))]
pub async fn verify_range<L, S, P>(
    stores: Stores<'_, L, S, P>,
    policy: &VerificationPolicy,
    trust: &Trust,
    range: Range<u64>,
    now: Timestamp,
    options: &RangeOptions,
) -> Result<RangeFindings, VerifyError>
where
    L: Ledger + ?Sized,
    S: EventStream,
    P: Projection,
{
    if range.end < range.start {
        return Err(VerifyError::InvalidRange {
            start: range.start,
            end: range.end,
            reason: "it ends before it starts",
        });
    }
    let batch = options.batch.clamp(1, triplicate_projection::MAX_RANGE);
    let size = options
        .verified
        .map_or_else(|| stores.ledger.tree_size(), |c| c.size);
    let stream_highest = stores
        .stream
        .highest_seq()
        .await
        .map_err(VerifyError::Stream)?;
    let projection_highest = stores
        .projection
        .highest_seq()
        .await
        .map_err(VerifyError::Projection)?;
    let mut out = RangeFindings::default();

    // Re-hashed leaves fold into the verified root only if the range runs to the tree's end.
    let mut fold = match options.verified {
        Some(cp) if range.end >= cp.size && range.start <= cp.size => {
            match compact_range_at(stores.ledger, range.start) {
                Ok(cr) => Some(cr),
                Err(e) => {
                    out.discrepancies.push(read_failure(
                        "read the compact range at the start of the range",
                        &e,
                    ));
                    out.root_verified = Some(false);
                    None
                }
            }
        }
        _ => None,
    };

    let ctx = Arc::new(Ctx {
        size,
        grace: policy.grace_period,
        now,
        stream_highest,
        projection_highest,
        ledger_dir: options.ledger_dir.clone(),
        reverify: policy.reverify_signatures && trust.registry().is_some(),
        trust: trust.clone(),
    });
    let mut scan = StreamScan::new(
        stores.stream,
        range.start,
        options.stream_after,
        options.stream_mark,
    );
    // Each copy is read by its own loop, which runs up to two batches ahead of the comparison
    // (a channel of one, plus the batch being read), so a store that is done with a batch
    // starts on the next instead of idling until the slowest store is done with it. The loops
    // run in this task (`join!`); their reads run on the blocking pool. Batch k is compared on
    // the blocking pool while later batches are read; results are taken in order, so findings
    // stay in seq order and leaves fold in order.
    let (stream_tx, stream_rx) = tokio::sync::mpsc::channel(1);
    let (projection_tx, projection_rx) = tokio::sync::mpsc::channel(1);
    let read_stream = async {
        let tx = stream_tx;
        for (_, hi) in batches(range.clone(), batch) {
            let mut events = Vec::new();
            let mut findings = Vec::new();
            let read = scan
                .take_until(hi, &mut events, &mut findings)
                .await
                .map(|()| (events, findings));
            let failed = read.is_err();
            let bytes = read.as_ref().map_or(0, |(events, _)| {
                events.iter().map(|e| e.event.record_bytes.len()).sum()
            });
            // A closed channel: the comparison stopped (on an error it returns).
            if tx.send(read).await.is_err() || failed {
                break;
            }
            // A large batch: wait until the comparison has taken it before reading on.
            if bytes > options.read_ahead_bytes && tx.reserve().await.is_err() {
                break;
            }
        }
    };
    let read_projection = async {
        let tx = projection_tx;
        for (lo, hi) in batches(range.clone(), batch) {
            let read = stores
                .projection
                .record_bytes(lo, hi)
                .await
                .map_err(VerifyError::Projection);
            let failed = read.is_err();
            let bytes = read.as_ref().map_or(0, |records| {
                records
                    .iter()
                    .filter_map(RederivedRecord::bytes)
                    .map(<[u8]>::len)
                    .sum()
            });
            if tx.send(read).await.is_err() || failed {
                break;
            }
            if bytes > options.read_ahead_bytes && tx.reserve().await.is_err() {
                break;
            }
        }
    };
    let compare = async {
        let (mut stream_rx, mut projection_rx) = (stream_rx, projection_rx);
        let stopped = || VerifyError::Task("a store's reading loop stopped early".into());
        let mut pending: Option<Pending> = None;
        for (lo, hi) in batches(range.clone(), batch) {
            let ledger_hi = hi.min(size);
            let (events, mut read_findings) = stream_rx.recv().await.ok_or_else(stopped)??;
            let projected = projection_rx.recv().await.ok_or_else(stopped)??;
            let (entries, stored, ledger_findings) = read_ledger(stores.ledger, lo, ledger_hi);
            read_findings.extend(ledger_findings);
            // Read after the copies were: the write path appends to the ledger before the
            // copies, so a record a copy holds past this size is one the ledger lacks, not one
            // it gained while the run went on.
            let ledger_now = stores.ledger.tree_size().max(size);
            out.records += ledger_hi.saturating_sub(lo);
            out.beyond_ledger += hi - lo.max(ledger_hi);

            let chunk = Chunk {
                lo,
                hi,
                ledger_now,
                entries,
                stored,
                events,
                projected,
            };
            let c = ctx.clone();
            let next = Pending {
                lo,
                read_findings,
                task: tokio::task::spawn_blocking(move || compare_chunk(&c, chunk)),
            };
            if let Some(done) = pending.replace(next) {
                absorb(&mut out, &mut fold, done).await?;
            }
        }
        if let Some(done) = pending.take() {
            absorb(&mut out, &mut fold, done).await?;
        }
        Ok::<(), VerifyError>(())
    };
    let ((), (), compared) = tokio::join!(read_stream, read_projection, compare);
    compared?;
    if let (Some(cr), Some(cp)) = (fold, options.verified) {
        let root = cr.root();
        let ok = cr.size() == cp.size && root == cp.root;
        out.root_verified = Some(ok);
        if !ok {
            out.discrepancies.push(Discrepancy {
                expected_hash: Some(cp.root),
                actual_hash: Some(root),
                ..crate::ledger_check::critical(
                    Kind::RootMismatch,
                    format!(
                        "the entries re-hashed from seq {} on fold into root {} at size {}, \
                         but the checkpoint says {} at size {}",
                        range.start,
                        crate::b64::encode(&root),
                        cr.size(),
                        crate::b64::encode(&cp.root),
                        cp.size
                    ),
                )
            });
        }
    }
    out.stream_resume = scan.resume;
    for d in &out.discrepancies {
        tracing::info!(
            target: "triplicate::verifier",
            seq = d.seq,
            store = %d.store,
            class = %d.class,
            kind = %d.kind,
            decision_id = d.decision_id.map(|u| u.to_string()),
            expected = d.expected_hash.as_ref().map(crate::b64::encode),
            actual = d.actual_hash.as_ref().map(crate::b64::encode),
            file = d.file,
            "{}", d.detail
        );
    }
    Ok(out)
}

/// `range` in consecutive batches of `batch` seqs (the last may be shorter).
fn batches(range: Range<u64>, batch: u64) -> impl Iterator<Item = (u64, u64)> {
    let end = range.end;
    std::iter::successors(Some(range.start), move |lo| {
        Some(end.min(lo.saturating_add(batch)))
    })
    .take_while(move |lo| *lo < end)
    .map(move |lo| (lo, end.min(lo.saturating_add(batch))))
}

/// A batch read and being compared.
struct Pending {
    lo: u64,
    read_findings: Vec<Discrepancy>,
    task: tokio::task::JoinHandle<ChunkResult>,
}

/// Takes a compared batch's results into the findings, and its re-hashed leaves into the fold.
async fn absorb(
    out: &mut RangeFindings,
    fold: &mut Option<crate::ledger_check::CompactRange>,
    done: Pending,
) -> Result<(), VerifyError> {
    let result = done
        .task
        .await
        .map_err(|e| VerifyError::Task(e.to_string()))?;
    out.discrepancies.extend(done.read_findings);
    out.discrepancies.extend(result.findings);
    out.signatures_checked += result.signatures;
    if let Some(cr) = fold.as_mut() {
        match result.rehashed {
            Some(leaves) if cr.size() == done.lo => {
                for l in leaves {
                    cr.push(l);
                }
            }
            _ => {
                // A batch whose entries could not be read breaks the fold; its failure is
                // already a finding.
                *fold = None;
                out.root_verified = Some(false);
            }
        }
    }
    Ok(())
}

type LedgerPart = (Option<Vec<Vec<u8>>>, Option<Vec<Hash>>, Vec<Discrepancy>);

fn read_ledger<L: Ledger + ?Sized>(ledger: &L, lo: u64, hi: u64) -> LedgerPart {
    if lo >= hi {
        return (Some(Vec::new()), Some(Vec::new()), Vec::new());
    }
    let mut findings = Vec::new();
    let entries = ledger
        .entries(lo, hi)
        .map_err(|e| findings.push(read_failure(&format!("read entries {lo}..{hi}"), &e)))
        .ok();
    let stored = ledger
        .leaf_hashes(lo, hi)
        .map_err(|e| findings.push(read_failure(&format!("read leaf hashes {lo}..{hi}"), &e)))
        .ok();
    (entries, stored, findings)
}

/// Walks the stream's global order once for the whole range, handing each batch the events
/// whose seqs fall below its end.
struct StreamScan<'s, S> {
    stream: &'s S,
    /// Events below the range's start are passed over as they are read, not kept.
    start: u64,
    after: Option<Position>,
    buffer: VecDeque<StoredEvent>,
    end: bool,
    /// The highest seq handed out so far.
    seen: Option<u64>,
    mark: Option<u64>,
    resume: Option<Position>,
}

impl<'s, S: EventStream> StreamScan<'s, S> {
    fn new(stream: &'s S, start: u64, after: Option<Position>, mark: Option<u64>) -> Self {
        StreamScan {
            stream,
            start,
            after,
            buffer: VecDeque::new(),
            end: false,
            seen: None,
            mark,
            resume: after,
        }
    }

    /// Moves every event with seq < `hi` that comes before the first event with seq ≥ `hi`
    /// into `out`. Undecodable events become findings and are stepped over.
    async fn take_until(
        &mut self,
        hi: u64,
        out: &mut Vec<StoredEvent>,
        findings: &mut Vec<Discrepancy>,
    ) -> Result<(), VerifyError> {
        loop {
            while let Some(e) = self.buffer.front() {
                if e.event.seq >= hi {
                    return Ok(());
                }
                let Some(e) = self.buffer.pop_front() else {
                    break;
                };
                if self.mark.is_some_and(|m| e.event.seq < m) {
                    self.resume = Some(e.position);
                }
                if e.event.seq < self.start {
                    self.seen = Some(self.seen.map_or(e.event.seq, |s| s.max(e.event.seq)));
                    continue;
                }
                if self.seen.is_some_and(|s| e.event.seq <= s) {
                    // Only a tampered store has these, so a linear look is fine.
                    let duplicate = out.iter().any(|o| o.event.seq == e.event.seq);
                    findings.push(Discrepancy {
                        seq: Some(e.event.seq),
                        decision_id: Some(e.event.decision_id),
                        store: Store::Stream,
                        class: Class::Major,
                        kind: if duplicate {
                            Kind::Duplicate
                        } else {
                            Kind::OutOfOrder
                        },
                        expected_hash: None,
                        actual_hash: Some(leaf_hash(&e.event.record_bytes)),
                        file: None,
                        detail: format!(
                            "event at position {} has seq {}, not after seq {} read before it",
                            e.position,
                            e.event.seq,
                            self.seen.unwrap_or_default()
                        ),
                    });
                    if duplicate {
                        continue;
                    }
                }
                self.seen = Some(self.seen.map_or(e.event.seq, |s| s.max(e.event.seq)));
                out.push(e);
            }
            if self.end {
                return Ok(());
            }
            self.fill(findings).await?;
        }
    }

    async fn fill(&mut self, findings: &mut Vec<Discrepancy>) -> Result<(), VerifyError> {
        match self.stream.read_all(self.after, STREAM_PAGE).await {
            Ok(page) => {
                self.after = page.next_after(self.after);
                self.end = page.end || page.events.is_empty();
                self.buffer.extend(page.events);
                Ok(())
            }
            Err(StreamError::Damaged { position, reason }) => {
                // The page stopped at an undecodable event. Read what lies before it one event
                // at a time (positions cannot be computed), then step over it.
                loop {
                    match self.stream.read_all(self.after, 1).await {
                        Ok(page) if !page.events.is_empty() => {
                            self.after = page.next_after(self.after);
                            self.buffer.extend(page.events);
                        }
                        Ok(_) => break,
                        Err(StreamError::Damaged { position: p, .. }) if p == position => break,
                        Err(StreamError::Damaged { .. }) => break,
                        Err(e) => return Err(VerifyError::Stream(e)),
                    }
                }
                findings.push(Discrepancy {
                    seq: None,
                    decision_id: None,
                    store: Store::Stream,
                    class: Class::Major,
                    kind: Kind::Damaged,
                    expected_hash: None,
                    actual_hash: None,
                    file: None,
                    detail: format!("event at position {position} cannot be read: {reason}"),
                });
                self.after = Some(position);
                Ok(())
            }
            Err(e) => Err(VerifyError::Stream(e)),
        }
    }
}

struct Ctx {
    size: u64,
    grace: Duration,
    now: Timestamp,
    stream_highest: Option<u64>,
    projection_highest: Option<u64>,
    ledger_dir: Option<PathBuf>,
    reverify: bool,
    trust: Trust,
}

struct Chunk {
    lo: u64,
    hi: u64,
    /// The ledger's size after this batch's copies were read.
    ledger_now: u64,
    entries: Option<Vec<Vec<u8>>>,
    stored: Option<Vec<Hash>>,
    events: Vec<StoredEvent>,
    projected: Vec<RederivedRecord>,
}

struct ChunkResult {
    findings: Vec<Discrepancy>,
    /// Leaf hashes re-derived from the ledger's entries, for the root fold.
    rehashed: Option<Vec<Hash>>,
    signatures: u64,
}

/// The few fields of a record the comparison needs, read without validating the rest.
#[derive(Deserialize)]
struct Head {
    decision: HeadDecision,
    recorded_at: Timestamp,
}

#[derive(Deserialize)]
struct HeadDecision {
    id: Uuid,
}

fn head(bytes: &[u8]) -> Option<Head> {
    serde_json::from_slice(bytes).ok()
}

/// Maps `items` on every available core (the batch's CPU work is SHA-256, parsing and
/// signature checks), unless there are fewer than `min_each` items per core to give.
fn par_map<T: Sync, R: Send>(items: &[T], min_each: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = triplicate_core::available_threads().min(8);
    if threads <= 1 || items.len() < min_each.max(1) * 2 {
        return items.iter().map(&f).collect();
    }
    let per = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|part| {
                let f = &f;
                s.spawn(move || part.iter().map(f).collect::<Vec<R>>())
            })
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            match h.join() {
                Ok(v) => out.extend(v),
                // Hashing does not panic; if it ever did, re-raise it here, where the
                // spawn_blocking task turns it into VerifyError::Task.
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}

fn compare_chunk(ctx: &Ctx, chunk: Chunk) -> ChunkResult {
    let Chunk {
        lo,
        hi,
        ledger_now,
        entries,
        stored,
        events,
        projected,
    } = chunk;
    let ledger_hi = hi.min(ctx.size);
    let mut findings = Vec::new();

    let rehashed: Option<Vec<Hash>> = entries.as_ref().map(|e| par_map(e, 256, |b| leaf_hash(b)));
    // A copy whose bytes equal the ledger entry's has the leaf hash just computed from that
    // entry: the same function of the same input. Only a copy that differs (or has no entry to
    // compare with) is hashed on its own, so a clean sweep hashes each record once, not three
    // times, and compares the copies byte for byte (which no hash collision could fool).
    let known = |seq: u64, bytes: &[u8]| -> Option<Hash> {
        let k = usize::try_from(seq.checked_sub(lo)?).ok()?;
        let entry = entries.as_ref()?.get(k)?;
        let h = rehashed.as_ref()?.get(k)?;
        (entry.as_slice() == bytes).then_some(*h)
    };
    let hash_of = |seq: u64, bytes: &[u8]| known(seq, bytes).unwrap_or_else(|| leaf_hash(bytes));
    let event_hashes: Vec<Hash> = par_map(&events, 256, |e| {
        hash_of(e.event.seq, &e.event.record_bytes)
    });
    let projected_hashes: Vec<Option<Hash>> =
        par_map(&projected, 256, |r| r.bytes().map(|b| hash_of(r.seq, b)));

    // Index the stream's events and the projection's records by seq.
    let width = usize::try_from(hi - lo).unwrap_or(0);
    let mut by_seq: Vec<Vec<usize>> = vec![Vec::new(); width];
    for (i, e) in events.iter().enumerate() {
        if let Some(slot) = e
            .event
            .seq
            .checked_sub(lo)
            .and_then(|k| usize::try_from(k).ok())
            .and_then(|k| by_seq.get_mut(k))
        {
            slot.push(i);
        }
    }
    let mut proj_by_seq: Vec<Option<usize>> = vec![None; width];
    for (i, r) in projected.iter().enumerate() {
        if let Some(slot) = r
            .seq
            .checked_sub(lo)
            .and_then(|k| usize::try_from(k).ok())
            .and_then(|k| proj_by_seq.get_mut(k))
        {
            *slot = Some(i);
        }
    }

    let entry = |seq: u64| -> Option<&[u8]> {
        let k = usize::try_from(seq - lo).ok()?;
        entries.as_ref()?.get(k).map(Vec::as_slice)
    };

    for seq in lo..ledger_hi {
        let k = (seq - lo) as usize;
        let stored_h = stored.as_ref().and_then(|s| s.get(k)).copied();
        let rehash_h = rehashed.as_ref().and_then(|s| s.get(k)).copied();
        let Some(expected) = stored_h.or(rehash_h) else {
            continue; // The ledger could not be read here; already a critical finding.
        };
        let mut head_cache: Option<Option<Head>> = None;
        let head_of = |cache: &mut Option<Option<Head>>| -> Option<(Uuid, Timestamp)> {
            let h = cache.get_or_insert_with(|| entry(seq).and_then(head));
            h.as_ref().map(|h| (h.decision.id, h.recorded_at))
        };

        if let (Some(s), Some(r)) = (stored_h, rehash_h) {
            if s != r {
                findings.push(Discrepancy {
                    seq: Some(seq),
                    decision_id: head_of(&mut head_cache).map(|h| h.0),
                    store: Store::Ledger,
                    class: Class::Critical,
                    kind: Kind::LeafMismatch,
                    expected_hash: Some(s),
                    actual_hash: Some(r),
                    file: ctx
                        .ledger_dir
                        .as_ref()
                        .map(|d| bundle_file(d, seq, ctx.size).display().to_string()),
                    detail: format!(
                        "ledger entry {seq} re-hashes to {} but its stored leaf hash is {}",
                        crate::b64::encode(&r),
                        crate::b64::encode(&s)
                    ),
                });
            }
        }

        // The stream.
        match by_seq[k].as_slice() {
            [] => findings.push(missing(
                ctx,
                Store::Stream,
                seq,
                ctx.stream_highest,
                expected,
                head_of(&mut head_cache),
            )),
            [first, rest @ ..] => {
                let ev = &events[*first];
                let h = event_hashes[*first];
                // The ledger record's decision id: from the projection's rows when they
                // re-derive to the ledger's bytes (the id is part of them), else parsed from
                // the entry, which costs a parse of the whole record.
                let decision = proj_by_seq[k]
                    .filter(|i| projected_hashes[*i] == Some(expected))
                    .and_then(|i| projected[i].decision_id)
                    .or_else(|| head_of(&mut head_cache).map(|h| h.0));
                if h != expected {
                    findings.push(Discrepancy {
                        seq: Some(seq),
                        decision_id: decision.or(Some(ev.event.decision_id)),
                        store: Store::Stream,
                        class: Class::Major,
                        kind: Kind::Differs,
                        expected_hash: Some(expected),
                        actual_hash: Some(h),
                        file: None,
                        detail: format!(
                            "the event at position {} re-hashes to {}, the ledger holds {}",
                            ev.position,
                            crate::b64::encode(&h),
                            crate::b64::encode(&expected)
                        ),
                    });
                } else if ev.event.leaf_hash != h
                    || decision.is_some_and(|d| d != ev.event.decision_id)
                {
                    findings.push(Discrepancy {
                        seq: Some(seq),
                        decision_id: decision,
                        store: Store::Stream,
                        class: Class::Major,
                        kind: Kind::MetadataDiffers,
                        expected_hash: Some(expected),
                        actual_hash: Some(ev.event.leaf_hash),
                        file: None,
                        detail: format!(
                            "the event at position {} holds the ledger's bytes but its metadata \
                             says leaf hash {} and its stream is {}",
                            ev.position,
                            crate::b64::encode(&ev.event.leaf_hash),
                            ev.stream_id
                        ),
                    });
                }
                for i in rest {
                    let ev = &events[*i];
                    findings.push(Discrepancy {
                        seq: Some(seq),
                        decision_id: Some(ev.event.decision_id),
                        store: Store::Stream,
                        class: Class::Major,
                        kind: Kind::Duplicate,
                        expected_hash: Some(expected),
                        actual_hash: Some(event_hashes[*i]),
                        file: None,
                        detail: format!("a second event for seq {seq} at position {}", ev.position),
                    });
                }
            }
        }

        // The projection.
        match proj_by_seq[k] {
            None => findings.push(missing(
                ctx,
                Store::Projection,
                seq,
                ctx.projection_highest,
                expected,
                head_of(&mut head_cache),
            )),
            Some(i) => match (&projected[i].content, projected_hashes[i]) {
                (Rederived::Damaged(_), _) | (_, None) => {
                    let reason = match &projected[i].content {
                        Rederived::Damaged(r) => r.as_str(),
                        Rederived::Bytes(_) => "no bytes",
                    };
                    findings.push(Discrepancy {
                        seq: Some(seq),
                        decision_id: head_of(&mut head_cache).map(|h| h.0),
                        store: Store::Projection,
                        class: Class::Minor,
                        kind: Kind::Damaged,
                        expected_hash: Some(expected),
                        actual_hash: None,
                        file: None,
                        detail: format!("the rows of seq {seq} describe no record: {reason}"),
                    });
                }
                (_, Some(h)) if h != expected => findings.push(Discrepancy {
                    seq: Some(seq),
                    decision_id: head_of(&mut head_cache).map(|h| h.0),
                    store: Store::Projection,
                    class: Class::Minor,
                    kind: Kind::Differs,
                    expected_hash: Some(expected),
                    actual_hash: Some(h),
                    file: None,
                    detail: format!(
                        "the rows of seq {seq} re-derive to leaf hash {}, the ledger holds {}",
                        crate::b64::encode(&h),
                        crate::b64::encode(&expected)
                    ),
                }),
                _ => {}
            },
        }
    }

    // Records past the ledger's end. Those below the size the ledger reached while the run went
    // on are records appended meanwhile: the next run compares them.
    for seq in lo.max(ledger_hi).max(ledger_now)..hi {
        let k = (seq - lo) as usize;
        for i in &by_seq[k] {
            let ev = &events[*i];
            findings.push(Discrepancy {
                seq: Some(seq),
                decision_id: Some(ev.event.decision_id),
                store: Store::Stream,
                class: Class::Major,
                kind: Kind::Extra,
                expected_hash: None,
                actual_hash: Some(event_hashes[*i]),
                file: None,
                detail: format!(
                    "the stream holds seq {seq} (position {}) but the ledger ends at {}",
                    ev.position, ctx.size
                ),
            });
        }
        if let Some(i) = proj_by_seq[k] {
            let decision = projected[i].bytes().and_then(head).map(|h| h.decision.id);
            findings.push(Discrepancy {
                seq: Some(seq),
                decision_id: decision,
                store: Store::Projection,
                class: Class::Major,
                kind: Kind::Extra,
                expected_hash: None,
                actual_hash: projected_hashes[i],
                file: None,
                detail: format!(
                    "the projection holds seq {seq} but the ledger ends at {}",
                    ctx.size
                ),
            });
        }
    }

    let mut signatures = 0;
    if ctx.reverify {
        if let Some(entries) = &entries {
            signatures = reverify(ctx, lo, entries, &mut findings);
        }
    }
    findings.sort_by_key(|d| (d.seq, d.store));
    ChunkResult {
        findings,
        rehashed,
        signatures,
    }
}

/// A seq the store lacks: `gap` below the store's own highest seq, else `lag` while the
/// record is younger than the grace period and `minor` after.
///
/// A gap is never lag: stores fill in seq order, so something removed the record. In the
/// projection that is row drift (`minor`), restored from the ledger. In the stream it is an
/// event removed from an append-only store, which no append can put back (only a rebuild,
/// which waits for an auditor): `major`, as DESIGN.md classes stream content that differs
/// from the ledger.
fn missing(
    ctx: &Ctx,
    store: Store,
    seq: u64,
    highest: Option<u64>,
    expected: Hash,
    head: Option<(Uuid, Timestamp)>,
) -> Discrepancy {
    let (kind, class, detail) = if highest.is_some_and(|h| h > seq) {
        let class = match store {
            Store::Stream => Class::Major,
            Store::Projection | Store::Ledger => Class::Minor,
        };
        (
            Kind::Gap,
            class,
            format!(
                "the {store} lacks seq {seq} but holds later seqs (up to {})",
                highest.unwrap_or_default()
            ),
        )
    } else {
        match head {
            Some((_, recorded_at)) => {
                let age_ns = ctx.now.unix_nanos() - recorded_at.unix_nanos();
                let age = Duration::from_nanos(u64::try_from(age_ns.max(0)).unwrap_or(u64::MAX));
                if age < ctx.grace {
                    (
                        Kind::Missing,
                        Class::Lag,
                        format!(
                            "the {store} lacks seq {seq}, recorded {}s ago (grace {}s)",
                            age.as_secs(),
                            ctx.grace.as_secs()
                        ),
                    )
                } else {
                    (
                        Kind::Missing,
                        Class::Minor,
                        format!(
                            "the {store} lacks seq {seq}, recorded {}s ago, past the {}s grace \
                             period",
                            age.as_secs(),
                            ctx.grace.as_secs()
                        ),
                    )
                }
            }
            None => (
                Kind::Missing,
                Class::Minor,
                format!(
                    "the {store} lacks seq {seq}; the ledger entry's recorded_at cannot be read, \
                     so the grace period cannot apply"
                ),
            ),
        }
    };
    Discrepancy {
        seq: Some(seq),
        decision_id: head.map(|h| h.0),
        store,
        class,
        kind,
        expected_hash: Some(expected),
        actual_hash: None,
        file: None,
        detail,
    }
}

/// Re-verifies every approval and notary signature of the ledger's entries (batch Ed25519),
/// and re-judges each approval's key as of the record's `recorded_at` with the registry.
///
/// The quorum itself is not re-judged: `governance.toml` may have changed since the record was
/// written, and the record was judged by the rules of its day. Keys are judged by the registry
/// as it is now, which still knows revocations and validity windows of old keys.
fn reverify(ctx: &Ctx, lo: u64, entries: &[Vec<u8>], findings: &mut Vec<Discrepancy>) -> u64 {
    let Some(registry) = ctx.trust.registry() else {
        return 0;
    };
    let notary = ctx.trust.notary();
    let notary_id = notary.key_id();
    let records: Vec<Option<Record>> =
        par_map(entries, 64, |b| Record::from_canonical_bytes(b).ok());
    // Messages first, so the batch can borrow them.
    struct Pending {
        seq: u64,
        decision: Uuid,
        what: String,
    }
    let mut msgs: Vec<(Vec<u8>, usize, Pending)> = Vec::new();
    let mut keys: Vec<&triplicate_keys::PublicKey> = Vec::new();
    let mut sigs: Vec<&[u8]> = Vec::new();
    for (k, r) in records.iter().enumerate() {
        let seq = lo + k as u64;
        let Some(r) = r else {
            findings.push(Discrepancy {
                seq: Some(seq),
                decision_id: None,
                store: Store::Ledger,
                class: Class::Major,
                kind: Kind::Unparseable,
                expected_hash: None,
                actual_hash: None,
                file: None,
                detail: format!("ledger entry {seq} is not a canonical record"),
            });
            continue;
        };
        let bad = |kind, detail: String| Discrepancy {
            seq: Some(seq),
            decision_id: Some(r.decision.id),
            store: Store::Ledger,
            class: Class::Major,
            kind,
            expected_hash: None,
            actual_hash: None,
            file: None,
            detail,
        };
        if r.notary.key_id != notary_id || r.notary.alg != notary.alg() {
            findings.push(bad(
                Kind::BadSignature,
                format!(
                    "record {seq} is notarised by key {} ({}), not the trusted notary {notary_id}",
                    r.notary.key_id, r.notary.alg
                ),
            ));
        } else if let Ok(m) = r.notary_message() {
            msgs.push((
                m,
                keys.len(),
                Pending {
                    seq,
                    decision: r.decision.id,
                    what: "the notary signature".into(),
                },
            ));
            keys.push(notary);
            sigs.push(&r.notary.signature);
        }
        let digest = r.decision.digest();
        if triplicate_core::is_service_kind(&r.decision.kind) {
            // The service's own audit record: approved by the notary key alone, no quorum.
            match r.approvals.as_slice() {
                [a] if a.key_id == notary_id && a.alg == notary.alg() => {
                    if let Some(m) = digest.as_ref().ok().and_then(|d| a.message(d).ok()) {
                        msgs.push((
                            m,
                            keys.len(),
                            Pending {
                                seq,
                                decision: r.decision.id,
                                what: "the audit record's notary approval".into(),
                            },
                        ));
                        keys.push(notary);
                        sigs.push(&a.signature);
                    }
                }
                _ => findings.push(bad(
                    Kind::BadApproval,
                    format!(
                        "record {seq} is an audit record ({}) but is not approved by \
                         the notary key {notary_id} alone",
                        r.decision.kind
                    ),
                )),
            }
            continue;
        }
        for (i, a) in r.approvals.iter().enumerate() {
            let Some(entry) = registry.key(&a.key_id).filter(|e| e.alg() == a.alg) else {
                continue; // evaluate() below reports unknown keys and algorithm mismatches.
            };
            let Ok(m) = digest
                .as_ref()
                .map_err(|_| ())
                .and_then(|d| a.message(d).map_err(|_| ()))
            else {
                continue;
            };
            msgs.push((
                m,
                keys.len(),
                Pending {
                    seq,
                    decision: r.decision.id,
                    what: format!("approval {i} (key {})", a.key_id),
                },
            ));
            keys.push(&entry.public_key);
            sigs.push(&a.signature);
        }
        if let Err(refusal) = registry.evaluate(&r.decision.kind, &r.approvals, r.recorded_at) {
            for p in refusal.approvals {
                findings.push(bad(
                    Kind::BadApproval,
                    format!(
                        "record {seq}, approval {} (key {}): {}: {}",
                        p.index, p.key_id, p.reason, p.message
                    ),
                ));
            }
        }
    }
    let items: Vec<VerifyItem<'_>> = msgs
        .iter()
        .map(|(m, i, _)| VerifyItem {
            key: keys[*i],
            msg: m,
            sig: sigs[*i],
        })
        .collect();
    // Batches of a few hundred are as fast per signature as larger ones (see verify_many), so
    // splitting the items across cores costs nothing.
    let parts: Vec<&[VerifyItem<'_>]> = items.chunks(1_024).collect();
    let verdicts: Vec<_> = par_map(&parts, 1, |part| verify_many(part))
        .into_iter()
        .flatten()
        .collect();
    for ((_, _, p), v) in msgs.iter().zip(&verdicts) {
        if let Err(e) = v {
            findings.push(Discrepancy {
                seq: Some(p.seq),
                decision_id: Some(p.decision),
                store: Store::Ledger,
                class: Class::Major,
                kind: Kind::BadSignature,
                expected_hash: None,
                actual_hash: None,
                file: None,
                detail: format!("record {}: {} does not verify: {e}", p.seq, p.what),
            });
        }
    }
    items.len() as u64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use triplicate_keys::Signer as _;

    fn ctx(stream_highest: Option<u64>, projection_highest: Option<u64>) -> Ctx {
        let notary = triplicate_keys::SoftwareSigner::generate("notary");
        let vkey =
            triplicate_keys::note::note_verifier_key(notary.name(), &notary.public_key()).unwrap();
        Ctx {
            size: 10,
            grace: Duration::from_secs(300),
            now: Timestamp::now(),
            stream_highest,
            projection_highest,
            ledger_dir: None,
            reverify: false,
            trust: Trust::new(&vkey, None).unwrap(),
        }
    }

    fn stored_event(event: triplicate_stream::DecisionRecorded, position: u64) -> StoredEvent {
        StoredEvent {
            position: Position::new(position, position),
            stream_id: triplicate_stream::StreamId::for_decision(event.decision_id),
            revision: 0,
            event,
            stored_at: Timestamp::now(),
        }
    }

    /// Seqs `0..n` held alike by the three stores.
    fn agreeing(n: u64) -> Chunk {
        let events: Vec<_> = (0..n).map(triplicate_stream::fixtures::event).collect();
        let entries: Vec<Vec<u8>> = events.iter().map(|e| e.record_bytes.clone()).collect();
        Chunk {
            lo: 0,
            hi: n,
            ledger_now: n,
            stored: Some(entries.iter().map(|b| leaf_hash(b)).collect()),
            entries: Some(entries),
            projected: events
                .iter()
                .map(|e| RederivedRecord {
                    seq: e.seq,
                    content: Rederived::Bytes(e.record_bytes.clone()),
                    decision_id: Some(e.decision_id),
                })
                .collect(),
            events: events
                .into_iter()
                .enumerate()
                .map(|(i, e)| stored_event(e, i as u64))
                .collect(),
        }
    }

    fn sized(n: u64) -> Ctx {
        Ctx {
            size: n,
            ..ctx(n.checked_sub(1), n.checked_sub(1))
        }
    }

    /// Bytes of a well-formed record that no seq of [`agreeing`] holds.
    fn other_bytes() -> Vec<u8> {
        triplicate_stream::fixtures::event(1_000_000).record_bytes
    }

    #[test]
    fn copies_that_agree_are_clean_and_the_entries_are_rehashed() {
        // Enough records for the hashing to split across threads.
        let chunk = agreeing(700);
        let want: Vec<Hash> = chunk.stored.clone().unwrap();
        let out = compare_chunk(&sized(700), chunk);
        assert!(out.findings.is_empty(), "{:#?}", out.findings);
        assert_eq!(out.rehashed, Some(want));
    }

    /// A copy that differs from the ledger's entry is hashed from its own bytes: the report
    /// carries the hash of what the store holds, not the entry's.
    #[test]
    fn a_copy_that_differs_is_reported_with_its_own_hash() {
        let mut chunk = agreeing(10);
        let other = other_bytes();
        chunk.events[3].event.record_bytes = other.clone();
        let mut changed = other.clone();
        changed.push(b' ');
        chunk.projected[5].content = Rederived::Bytes(changed.clone());
        let stored = chunk.stored.clone().unwrap();
        let out = compare_chunk(&sized(10), chunk);
        let found: Vec<_> = out
            .findings
            .iter()
            .map(|d| {
                (
                    d.seq,
                    d.store,
                    d.kind,
                    d.class,
                    d.expected_hash,
                    d.actual_hash,
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    Some(3),
                    Store::Stream,
                    Kind::Differs,
                    Class::Major,
                    Some(stored[3]),
                    Some(leaf_hash(&other))
                ),
                (
                    Some(5),
                    Store::Projection,
                    Kind::Differs,
                    Class::Minor,
                    Some(stored[5]),
                    Some(leaf_hash(&changed))
                ),
            ]
        );
    }

    /// An event holding the ledger's bytes under metadata that names another decision or
    /// another leaf hash is major, whether the ledger's decision id comes from the projection's
    /// matching rows (seq 2) or, with the projection's copy missing or damaged, from the entry
    /// (seqs 4 and 6).
    #[test]
    fn an_event_whose_metadata_disagrees_with_its_bytes_is_found() {
        let mut chunk = agreeing(10);
        let ids: Vec<Uuid> = chunk.events.iter().map(|e| e.event.decision_id).collect();
        for seq in [2, 4, 6] {
            chunk.events[seq].event.decision_id = Uuid::now_v7();
        }
        chunk.events[8].event.leaf_hash = [7; 32];
        chunk.projected.retain(|r| r.seq != 4);
        for r in chunk.projected.iter_mut().filter(|r| r.seq == 6) {
            r.content = Rederived::Damaged("a test".into());
            r.decision_id = None;
        }
        // Rows that re-derive to another record name another decision: that is not the
        // ledger's, and the event at 5 (which agrees with the ledger) is not faulted for it.
        for r in chunk.projected.iter_mut().filter(|r| r.seq == 5) {
            r.content = Rederived::Bytes(other_bytes());
            r.decision_id = Some(Uuid::now_v7());
        }
        let out = compare_chunk(&sized(10), chunk);
        let stream: Vec<_> = out
            .findings
            .iter()
            .filter(|d| d.store == Store::Stream)
            .map(|d| (d.seq, d.kind, d.class, d.decision_id))
            .collect();
        let differs = |seq: u64| {
            (
                Some(seq),
                Kind::MetadataDiffers,
                Class::Major,
                Some(ids[seq as usize]),
            )
        };
        assert_eq!(stream, vec![differs(2), differs(4), differs(6), differs(8)]);
        let projection: Vec<_> = out
            .findings
            .iter()
            .filter(|d| d.store == Store::Projection)
            .map(|d| (d.seq, d.kind, d.decision_id))
            .collect();
        assert_eq!(
            projection,
            vec![
                (Some(4), Kind::Gap, Some(ids[4])),
                (Some(5), Kind::Differs, Some(ids[5])),
                (Some(6), Kind::Damaged, Some(ids[6]))
            ]
        );
    }

    /// An altered ledger entry is critical; the copies are judged against its stored hash,
    /// which they still match, not against the altered entry's re-hash.
    #[test]
    fn copies_are_judged_against_the_stored_hash_when_an_entry_was_altered() {
        let mut chunk = agreeing(10);
        let other = other_bytes();
        if let Some(e) = chunk.entries.as_mut() {
            e[1] = other.clone();
        }
        let stored = chunk.stored.clone().unwrap();
        let out = compare_chunk(&sized(10), chunk);
        let found: Vec<_> = out
            .findings
            .iter()
            .map(|d| (d.seq, d.store, d.kind, d.expected_hash, d.actual_hash))
            .collect();
        assert_eq!(
            found,
            vec![(
                Some(1),
                Store::Ledger,
                Kind::LeafMismatch,
                Some(stored[1]),
                Some(leaf_hash(&other))
            )]
        );
        assert_eq!(out.rehashed.unwrap()[1], leaf_hash(&other));
    }

    #[test]
    fn batches_cover_the_range_in_order() {
        let all = |r: Range<u64>, b: u64| batches(r, b).collect::<Vec<_>>();
        assert_eq!(all(0..10, 4), vec![(0, 4), (4, 8), (8, 10)]);
        assert_eq!(all(3..11, 4), vec![(3, 7), (7, 11)]);
        assert_eq!(all(5..5, 4), vec![]);
        assert_eq!(all(0..3, 1), vec![(0, 1), (1, 2), (2, 3)]);
        assert_eq!(
            all(u64::MAX - 3..u64::MAX, 2),
            vec![(u64::MAX - 3, u64::MAX - 1), (u64::MAX - 1, u64::MAX)]
        );
    }

    /// A hole below a store's highest seq is never lag, however young the record: in the
    /// projection it is minor drift, in the append-only stream a removed event (major).
    #[test]
    fn a_hole_is_major_in_the_stream_and_minor_in_the_projection() {
        let c = ctx(Some(9), Some(9));
        let young = Some((Uuid::now_v7(), Timestamp::now()));
        let stream = missing(&c, Store::Stream, 4, c.stream_highest, [1; 32], young);
        assert_eq!((stream.kind, stream.class), (Kind::Gap, Class::Major));
        let projection = missing(
            &c,
            Store::Projection,
            4,
            c.projection_highest,
            [1; 32],
            young,
        );
        assert_eq!(
            (projection.kind, projection.class),
            (Kind::Gap, Class::Minor)
        );
        // Past both stores' ends, a young record is lag in either.
        for store in [Store::Stream, Store::Projection] {
            let d = missing(&c, store, 10, Some(9), [1; 32], young);
            assert_eq!((d.kind, d.class), (Kind::Missing, Class::Lag), "{store}");
        }
    }
}
