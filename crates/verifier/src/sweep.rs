//! Range digests, and the top-down descent a full sweep uses to find which records differ
//! without comparing every record one by one.
//!
//! A range digest is `SHA-256("triplicate/range-digest/v1\n" || start || end || slot…)` (big-
//! endian u64s), where each seq's slot is a tag byte (0 absent, 1 damaged, 2 present) followed,
//! when present, by the leaf hash re-derived from the store's own content. Two stores agree on a
//! range exactly when their digests do.
//!
//! [`descend`] compares two sources' digests over a range; where they differ it splits the range
//! into `fanout` parts and recurses, and only for a range of at most `leaf_range` seqs whose
//! digests differ does it read the leaves themselves. Locating one altered record among `N`
//! costs about `fanout · log_fanout(N / leaf_range)` digest comparisons and one leaf range read
//! (at most `leaf_range` leaves) per source.
//!
//! That saves reading only when a source computes its digest where the data lives (a database
//! aggregate, a store-side projection) and hands back 32 bytes. [`LeafSource::digest`]'s
//! default computes it from [`LeafSource::leaves`], which reads the whole range: that is what
//! the adapters here do, so on the embedded stores a descent costs more reads than a plain
//! full comparison, and full sweeps use [`crate::verify_range`] instead.
//!
//! [`locate`] is the descent that does save reading, between the ledger and the projection: it
//! compares *row digests* ([`triplicate_projection::row_digest`]), hashes of the normalised
//! rows that PostgreSQL computes from its own columns, many parts of a range in one statement
//! ([`RowDigestSource`]). The ledger's side computes the same digests from its
//! entries. Only a range of at most `leaf_range` seqs whose row digests differ is read and
//! re-derived as usual, so locating one altered row among `N` reads about `leaf_range` rows,
//! never the rest. (The stream still lacks a `read_seqs(range)` call, so it takes no part.)

use std::future::Future;
use std::ops::Range;

use sha2::{Digest, Sha256};
use triplicate_core::digest::leaf_hash;
use triplicate_core::Hash;
use triplicate_ledger::Ledger;
use triplicate_projection::row_digest::{self, RowHashes};
use triplicate_projection::{Projection, MAX_RANGE};
use triplicate_stream::EventStream;

use crate::error::VerifyError;

/// Prefix of a range digest.
pub const RANGE_DIGEST_DOMAIN: &[u8] = b"triplicate/range-digest/v1\n";

/// What a store holds at one seq, as far as comparing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Absent,
    /// Content that cannot be re-derived into a record.
    Damaged,
    /// The leaf hash re-derived from the content.
    Leaf(Hash),
}

/// The digest of `slots`, which are seqs `start..start + slots.len()`.
pub fn range_digest(start: u64, slots: &[Slot]) -> Hash {
    let mut h = Sha256::new();
    h.update(RANGE_DIGEST_DOMAIN);
    h.update(start.to_be_bytes());
    h.update((start + slots.len() as u64).to_be_bytes());
    for s in slots {
        match s {
            Slot::Absent => h.update([0u8]),
            Slot::Damaged => h.update([1u8]),
            Slot::Leaf(l) => {
                h.update([2u8]);
                h.update(l);
            }
        }
    }
    h.finalize().into()
}

/// A store seen as one slot per seq.
pub trait LeafSource: Send + Sync {
    /// One slot per seq of `range`, re-derived from the store's content.
    fn leaves(
        &self,
        range: Range<u64>,
    ) -> impl Future<Output = Result<Vec<Slot>, VerifyError>> + Send;

    /// The digest of `range`. The default reads the leaves; a store that can compute it where
    /// its data lives should.
    fn digest(&self, range: Range<u64>) -> impl Future<Output = Result<Hash, VerifyError>> + Send {
        async move {
            let start = range.start;
            let slots = self.leaves(range).await?;
            Ok(range_digest(start, &slots))
        }
    }
}

/// The ledger's entries, re-hashed (never its stored leaf hashes).
#[derive(Debug)]
pub struct LedgerLeaves<'a, L: ?Sized>(pub &'a L);

impl<L: Ledger + ?Sized> LeafSource for LedgerLeaves<'_, L> {
    async fn leaves(&self, range: Range<u64>) -> Result<Vec<Slot>, VerifyError> {
        let size = self.0.tree_size();
        let end = range.end.min(size);
        let mut out = Vec::with_capacity(usize::try_from(range.end - range.start).unwrap_or(0));
        if range.start < end {
            match self.0.entries(range.start, end) {
                Ok(entries) => out.extend(entries.iter().map(|e| Slot::Leaf(leaf_hash(e)))),
                Err(_) => out.extend((range.start..end).map(|_| Slot::Damaged)),
            }
        }
        out.resize(
            usize::try_from(range.end - range.start).unwrap_or(0),
            Slot::Absent,
        );
        Ok(out)
    }
}

/// The projection's rows, re-derived into record bytes and hashed.
#[derive(Debug)]
pub struct ProjectionLeaves<'a, P>(pub &'a P);

impl<P: Projection> LeafSource for ProjectionLeaves<'_, P> {
    async fn leaves(&self, range: Range<u64>) -> Result<Vec<Slot>, VerifyError> {
        let width = usize::try_from(range.end - range.start).unwrap_or(0);
        let mut out = vec![Slot::Absent; width];
        let mut lo = range.start;
        while lo < range.end {
            let hi = range.end.min(lo + MAX_RANGE);
            for r in self
                .0
                .record_bytes(lo, hi)
                .await
                .map_err(VerifyError::Projection)?
            {
                if let Some(slot) = usize::try_from(r.seq - range.start)
                    .ok()
                    .and_then(|k| out.get_mut(k))
                {
                    *slot = r.leaf_hash().map_or(Slot::Damaged, Slot::Leaf);
                }
            }
            lo = hi;
        }
        Ok(out)
    }
}

/// The stream's events, hashed from their data. The trait can only walk the global order, so
/// this reads every event up to the range's end: the stream crate needs a `read_seqs(range)`.
#[derive(Debug)]
pub struct StreamLeaves<'a, S>(pub &'a S);

impl<S: EventStream> LeafSource for StreamLeaves<'_, S> {
    async fn leaves(&self, range: Range<u64>) -> Result<Vec<Slot>, VerifyError> {
        let width = usize::try_from(range.end - range.start).unwrap_or(0);
        let mut out = vec![Slot::Absent; width];
        let mut after = None;
        loop {
            let page = self
                .0
                .read_all(after, 10_000)
                .await
                .map_err(VerifyError::Stream)?;
            after = page.next_after(after);
            let mut past = false;
            for e in &page.events {
                if e.event.seq >= range.end {
                    past = true;
                }
                if let Some(slot) = e
                    .event
                    .seq
                    .checked_sub(range.start)
                    .and_then(|k| usize::try_from(k).ok())
                    .and_then(|k| out.get_mut(k))
                {
                    *slot = Slot::Leaf(leaf_hash(&e.event.record_bytes));
                }
            }
            if page.end || page.events.is_empty() || past {
                return Ok(out);
            }
        }
    }
}

/// A store that can give the row digests ([`triplicate_projection::row_digest`]) of the parts
/// of a range: for each part of [`row_digest::part_width`] seqs that holds a record, its index
/// and range digest, in order.
pub trait RowDigestSource: Send + Sync {
    fn row_digests(
        &self,
        range: Range<u64>,
        parts: u32,
    ) -> impl Future<Output = Result<Vec<(u32, Hash)>, VerifyError>> + Send;
}

/// Entries hashed for row digests per thread at a time.
const ROW_DIGEST_CHUNK: u64 = 16_384;

impl<L: Ledger + ?Sized> RowDigestSource for LedgerLeaves<'_, L> {
    /// Computed from the ledger's entries, on every core: what the projection's rows of each
    /// record must digest to. An entry that is not a valid record gets hashes no row has.
    async fn row_digests(
        &self,
        range: Range<u64>,
        parts: u32,
    ) -> Result<Vec<(u32, Hash)>, VerifyError> {
        let width = row_digest::part_width(range.start, range.end, parts);
        let end = range.end.min(self.0.tree_size());
        let threads = triplicate_core::available_threads();
        let mut digests = row_digest::PartDigests::new(range.start, width);
        let mut lo = range.start;
        while lo < end {
            let hi = end.min(lo.saturating_add(ROW_DIGEST_CHUNK * threads as u64));
            match self.0.entries(lo, hi) {
                Ok(entries) => {
                    for rows in row_hashes_of(lo, &entries, threads) {
                        digests.add(&rows);
                    }
                }
                Err(_) => {
                    for seq in lo..hi {
                        digests.add(&RowHashes::damaged(seq));
                    }
                }
            }
            lo = hi;
        }
        Ok(digests.finish())
    }
}

/// Row hashes of `entries` (seqs `first..`), split over `threads` threads.
fn row_hashes_of(first: u64, entries: &[Vec<u8>], threads: usize) -> Vec<RowHashes> {
    let one = |seq: u64, e: &Vec<u8>| {
        row_digest::of_record_bytes(e)
            .ok()
            .filter(|r| r.seq == seq)
            .unwrap_or_else(|| RowHashes::damaged(seq))
    };
    if threads < 2 || entries.len() < 256 {
        return (first..).zip(entries).map(|(s, e)| one(s, e)).collect();
    }
    let chunk = entries.len().div_ceil(threads);
    std::thread::scope(|sc| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                let from = first + (c * chunk) as u64;
                (
                    from..from + part.len() as u64,
                    sc.spawn(move || {
                        (from..)
                            .zip(part)
                            .map(|(s, e)| one(s, e))
                            .collect::<Vec<_>>()
                    }),
                )
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|(seqs, h)| {
                // A panic while hashing is a bug; those seqs then compare as damaged.
                h.join()
                    .unwrap_or_else(|_| seqs.map(RowHashes::damaged).collect())
            })
            .collect()
    })
}

impl<P: Projection> RowDigestSource for ProjectionLeaves<'_, P> {
    async fn row_digests(
        &self,
        range: Range<u64>,
        parts: u32,
    ) -> Result<Vec<(u32, Hash)>, VerifyError> {
        self.0
            .row_digests(range.start, range.end, parts)
            .await
            .map_err(VerifyError::Projection)
    }
}

/// One seq where two sources differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafDifference {
    pub seq: u64,
    pub left: Slot,
    pub right: Slot,
}

/// What a descent did and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Descent {
    pub differences: Vec<LeafDifference>,
    /// Range digests compared (one per source each).
    pub digests_compared: u64,
    /// Leaf ranges read from both sources.
    pub leaf_ranges_read: u64,
    /// Seqs in the leaf ranges read (what each source handed over and re-derived).
    pub leaves_read: u64,
}

/// Reads `r` from both sources and records every seq where they differ.
async fn compare_leaves<A: LeafSource, B: LeafSource>(
    left: &A,
    right: &B,
    r: Range<u64>,
    out: &mut Descent,
) -> Result<(), VerifyError> {
    let (a, b) = tokio::join!(left.leaves(r.clone()), right.leaves(r.clone()));
    let (a, b) = (a?, b?);
    out.leaf_ranges_read += 1;
    out.leaves_read += r.end - r.start;
    for (k, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        if x != y {
            out.differences.push(LeafDifference {
                seq: r.start + k as u64,
                left: *x,
                right: *y,
            });
        }
    }
    Ok(())
}

/// Compares `left` and `right` over `range` top-down (see the module docs).
pub async fn descend<A: LeafSource, B: LeafSource>(
    left: &A,
    right: &B,
    range: Range<u64>,
    leaf_range: u64,
    fanout: u64,
) -> Result<Descent, VerifyError> {
    let leaf_range = leaf_range.max(1);
    let fanout = fanout.max(2);
    let mut out = Descent::default();
    let mut todo = vec![range];
    while let Some(r) = todo.pop() {
        if r.start >= r.end {
            continue;
        }
        let len = r.end - r.start;
        // Digests first, at every level: leaves are read only for a range known to differ.
        let (a, b) = tokio::join!(left.digest(r.clone()), right.digest(r.clone()));
        out.digests_compared += 1;
        if a? == b? {
            continue;
        }
        if len <= leaf_range {
            compare_leaves(left, right, r, &mut out).await?;
            continue;
        }
        let step = len.div_ceil(fanout);
        let mut parts = Vec::new();
        let mut s = r.start;
        while s < r.end {
            parts.push(s..r.end.min(s + step));
            s += step;
        }
        // Visit in seq order: the stack pops the last pushed first.
        todo.extend(parts.into_iter().rev());
    }
    out.differences.sort_by_key(|d| d.seq);
    Ok(out)
}

/// Compares `left` and `right` over `range` by row digests, top-down: a range whose digests
/// differ is split into `fanout` parts, all digested in one call per source; only a range of at
/// most `leaf_range` seqs that differs is read ([`LeafSource::leaves`]) and compared leaf by
/// leaf. [`Descent::digests_compared`] counts the parts compared.
pub async fn locate<A, B>(
    left: &A,
    right: &B,
    range: Range<u64>,
    leaf_range: u64,
    fanout: u32,
) -> Result<Descent, VerifyError>
where
    A: LeafSource + RowDigestSource,
    B: LeafSource + RowDigestSource,
{
    let leaf_range = leaf_range.max(1);
    let fanout = fanout.max(2);
    let mut out = Descent::default();
    if range.start >= range.end {
        return Ok(out);
    }
    // The whole range is split at once: one digest of it would cost the same pass over the
    // rows and say less.
    let mut todo = vec![(range, true)];
    while let Some((r, top)) = todo.pop() {
        let len = r.end - r.start;
        if len <= leaf_range && !top {
            compare_leaves(left, right, r, &mut out).await?;
            continue;
        }
        let parts = fanout.min(u32::try_from(len).unwrap_or(u32::MAX));
        let (a, b) = tokio::join!(
            left.row_digests(r.clone(), parts),
            right.row_digests(r.clone(), parts)
        );
        let (a, b) = (a?, b?);
        let width = row_digest::part_width(r.start, r.end, parts);
        out.digests_compared += u64::from(parts);
        let mut differing = Vec::new();
        for part in 0..parts {
            let x = a.iter().find(|(p, _)| *p == part).map(|(_, h)| h);
            let y = b.iter().find(|(p, _)| *p == part).map(|(_, h)| h);
            if x != y {
                let s = r.start + u64::from(part) * width;
                differing.push(s..r.end.min(s + width));
            }
        }
        // Visit in seq order: the stack pops the last pushed first.
        todo.extend(differing.into_iter().rev().map(|r| (r, false)));
    }
    out.differences.sort_by_key(|d| d.seq);
    Ok(out)
}
