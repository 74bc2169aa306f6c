//! `triplicate-projection`: the read-optimised SQL copy of the records.
//!
//! Owns: the [`Projection`] trait and its guarantees; the normalised schema (`decisions`,
//! `approvals`, `attachments`, `repairs`) and its migrations (`migrations/postgres/`,
//! `migrations/sqlite/projection/`); re-deriving a record's canonical bytes from those rows
//! (never from a stored copy); the readers' queries; the reconciler's repair entry point; the
//! cross-verifier's reports and the auditors' reviews of proposed repairs ([`ReportStore`],
//! tables `verification_reports`, `verification_discrepancies`, `verification_actions`,
//! `verification_reviews`, append-only, each report's canonical JSON kept byte for byte);
//! recovery drills' signed reports ([`DrillStore`], table `drill_reports`, append-only, each
//! report's canonical JSON and the notary's signature kept byte for byte, and per scenario the
//! newest and the newest passed drill, for the service's metrics); the PostgreSQL backend
//! ([`PgProjection`], with the `triplicate_writer` / `triplicate_reader` roles and append-only
//! triggers) and the embedded SQLite backend ([`SqliteProjection`], `<data-dir>/projection.db`);
//! conformance suites for the three traits and test fixtures (feature `testkit`).
//!
//! Must not know: the ledger or the event stream, HTTP, policies or signature verification (a
//! record arrives here already verified and committed by the ledger; the projection checks
//! only that its bytes are a canonical record), how the verifier classifies what it finds (a
//! report's classes, stores, kinds and statuses are the verifier's names, stored as given; its
//! digest is the verifier's to compute), or what a drill's scenario means (a name, stored as
//! given; a drill's digest and signature are the caller's to compute and check). No SQL leaves
//! this crate: callers speak records, seqs, filters, cursors and report rows.

#[cfg(feature = "testkit")]
pub mod conformance;
#[cfg(feature = "testkit")]
pub mod conformance_drills;
#[cfg(feature = "testkit")]
pub mod conformance_reports;
pub mod drill_faults;
pub mod drills;
mod error;
#[cfg(any(test, feature = "testkit"))]
pub mod fixtures;
mod payload;
mod pgcopy;
mod pgrows;
mod plan;
mod postgres;
pub mod query;
pub mod reports;
pub mod row_digest;
mod rows;
mod sqlite;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::future::Future;

use triplicate_core::digest::leaf_hash;
use triplicate_core::{CanonicalProof, Hash, Record};
use uuid::Uuid;

pub use drills::{DrillStatus, DrillStore, DrillSummary, StoredDrill};
pub use error::ProjectionError;
pub use postgres::{PgOptions, PgProjection, PG_READER_ROLE, PG_WRITER_ROLE};
pub use query::{Cursor, DecisionQuery, Page, TimeRange};
pub use reports::{
    ActionRecord, ActionRow, DiscrepancyRow, FullReport, ReportCounts, ReportStore, ReportSummary,
    ReviewRow, StoredReport,
};
pub use sqlite::SqliteProjection;

/// The most seqs one [`Projection::record_bytes`] call may span (the verifier reads in chunks).
pub const MAX_RANGE: u64 = 65_536;

/// The most records one [`Projection::apply`] call may carry (60 KiB each at most, so a batch
/// holds at most ~600 MiB; the write path sends ~1,000).
pub const MAX_BATCH: usize = 10_000;

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Records written by this call.
    pub applied: u64,
    /// Records of the batch already stored with identical content (a retry).
    pub already_present: u64,
}

/// A record's bytes as re-derived from the projection's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rederived {
    /// `JCS(record)` rebuilt from the columns.
    Bytes(Vec<u8>),
    /// The rows exist but cannot describe a record (a column was altered into something no
    /// record has, such as a gap in approval positions). The verifier treats this like a
    /// hash mismatch.
    Damaged(String),
}

/// One seq of a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RederivedRecord {
    pub seq: u64,
    pub content: Rederived,
    /// The decision id the rows name, when they re-derive to a record (`None` for damaged
    /// rows). It is part of the bytes; a reader that has matched the bytes against another
    /// copy can take it from here instead of parsing them.
    pub decision_id: Option<Uuid>,
}

impl RederivedRecord {
    /// The RFC 6962 leaf hash of the re-derived bytes; `None` for damaged rows.
    pub fn leaf_hash(&self) -> Option<Hash> {
        match &self.content {
            Rederived::Bytes(b) => Some(leaf_hash(b)),
            Rederived::Damaged(_) => None,
        }
    }

    /// The re-derived bytes; `None` for damaged rows.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.content {
            Rederived::Bytes(b) => Some(b),
            Rederived::Damaged(_) => None,
        }
    }
}

/// The reconciler's request to replace what the projection holds at one seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairRequest {
    pub seq: u64,
    /// The record as the ledger holds it (canonical bytes).
    pub record_bytes: Vec<u8>,
    /// Why (goes into the `repairs` table), e.g. "projection drift: leaf hash mismatch".
    pub reason: String,
    /// The verifier run that decided on the repair.
    pub run_id: String,
}

/// What a repair did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairOutcome {
    pub seq: u64,
    /// The leaf hash re-derived from the rows before the repair; `None` if there were no rows
    /// or they were damaged (see `old_damage`).
    pub old_leaf_hash: Option<Hash>,
    /// Why the old rows could not be re-derived, if they could not.
    pub old_damage: Option<String>,
    pub new_leaf_hash: Hash,
    /// False when the rows already re-derived to the requested bytes: nothing was written and
    /// no `repairs` row was added.
    pub changed: bool,
    /// The `repairs` row written, when something changed.
    pub repair_id: Option<i64>,
}

/// The reconciler's request to remove the rows of every seq from `from_seq` up: records the
/// ledger does not hold (a forged row, a leftover). The caller must have checked that the
/// ledger holds nothing at `from_seq`, under the projection's writer lock, so everything
/// removed is something the ledger lacks; the projection stays a prefix of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovalRequest {
    pub from_seq: u64,
    /// Why (goes into the `removals` table).
    pub reason: String,
    /// The verifier run that decided on the removal.
    pub run_id: String,
}

/// What a removal did: the seqs removed, each with the leaf hash its rows re-derived to
/// (`None` when they were damaged). Empty when nothing was stored from `from_seq` up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovalOutcome {
    pub removed: Vec<(u64, Option<Hash>)>,
}

/// The most seqs one [`Projection::remove_from`] may remove.
pub const MAX_REMOVAL: usize = 10_000;

/// The projection: normalised, queryable rows from which every record's bytes can be
/// re-derived.
///
/// Guarantees every backend gives:
/// - **Validated, atomic, idempotent batches.** [`Projection::apply`] parses every record with
///   `Record::from_canonical_bytes` (bytes that are not exactly a valid canonical record are
///   refused) and writes all of the batch or none of it; a batch holds at most [`MAX_BATCH`]
///   records. When a batch has several problems, the first one found is reported (records are
///   checked in order, in chunks, while earlier chunks are written). A record already stored at its seq
///   with identical content is skipped (a retry); other content at a stored seq, or a decision
///   id already stored at another seq, is refused naming both leaf hashes (the stored one
///   re-derived from the rows), and nothing of the batch is written.
/// - **Mirrors the ledger's order.** A batch holds consecutive seqs; its first new record must
///   be one past the highest stored seq (0 for an empty projection), so the projection is
///   always a prefix of the ledger, possibly lagging.
/// - **Re-derivable.** [`Projection::record_bytes`] rebuilds each record from its normalised
///   rows and canonicalises it; no stored copy of the bytes or the hash exists to fall back on,
///   so a change to any column changes what the verifier sees.
/// - **Append-only.** Nothing changes a stored row except [`Projection::repair`], which
///   replaces the rows of one seq and logs the old and new leaf hashes, the reason and the run
///   id in the `repairs` table. The databases enforce this themselves (triggers, and on
///   PostgreSQL roles without UPDATE, DELETE or TRUNCATE).
/// - **Durable on `Ok`.** A returned apply or repair survives a crash.
/// - **Consistent reads.** A query or range read sees one committed state.
pub trait Projection: Send + Sync {
    /// Applies a batch of canonical record bytes (see the trait docs).
    fn apply(
        &self,
        batch: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<ApplyOutcome, ProjectionError>> + Send;

    /// [`Projection::apply`], with the core crate's proofs that the records are canonical
    /// (`proofs[i]` for `batch[i]`, from `Record::to_proven_bytes` on the write path; fewer
    /// proofs than records, or `None`, is allowed). A backend may read a record whose proof
    /// covers its bytes without checking it again; anything else is checked in full, so the
    /// outcome is always `apply`'s. The default ignores the proofs.
    fn apply_proven(
        &self,
        batch: Vec<Vec<u8>>,
        proofs: Vec<Option<CanonicalProof>>,
    ) -> impl Future<Output = Result<ApplyOutcome, ProjectionError>> + Send {
        drop(proofs);
        self.apply(batch)
    }

    /// The decision with this id, as its whole record; `None` if absent.
    fn decision(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Record>, ProjectionError>> + Send;

    /// One page of the decisions matching `query`, newest first.
    fn query(
        &self,
        query: &DecisionQuery,
    ) -> impl Future<Output = Result<Page, ProjectionError>> + Send;

    /// Record bytes re-derived from the rows for every stored seq in `start..end` (at most
    /// [`MAX_RANGE`] seqs), in seq order. Seqs the projection lacks are absent from the result.
    fn record_bytes(
        &self,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<Vec<RederivedRecord>, ProjectionError>> + Send;

    /// Part digests ([`row_digest`]) of `start..end` split into `parts` parts of
    /// [`row_digest::part_width`] seqs: for each part that holds a row, its index and digest,
    /// in order. What the verifier uses to locate a change without reading the rows:
    /// PostgreSQL computes them from its columns in one statement and returns 32 bytes a part.
    /// The default (the embedded backend, whose file the verifier reads locally anyway) reads
    /// and re-derives the range; a row that cannot be re-derived gets hashes no row has.
    fn row_digests(
        &self,
        start: u64,
        end: u64,
        parts: u32,
    ) -> impl Future<Output = Result<Vec<(u32, Hash)>, ProjectionError>> + Send {
        async move {
            if end < start {
                return Err(ProjectionError::InvalidQuery(format!(
                    "range {start}..{end} ends before it starts"
                )));
            }
            let mut digests =
                row_digest::PartDigests::new(start, row_digest::part_width(start, end, parts));
            let mut lo = start;
            while lo < end {
                let hi = end.min(lo.saturating_add(MAX_RANGE));
                for r in self.record_bytes(lo, hi).await? {
                    let rows = match &r.content {
                        Rederived::Bytes(b) => row_digest::of_record_bytes(b)
                            .unwrap_or_else(|_| row_digest::RowHashes::damaged(r.seq)),
                        Rederived::Damaged(_) => row_digest::RowHashes::damaged(r.seq),
                    };
                    digests.add(&rows);
                }
                lo = hi;
            }
            Ok(digests.finish())
        }
    }

    /// The highest seq stored, `None` when empty.
    fn highest_seq(&self) -> impl Future<Output = Result<Option<u64>, ProjectionError>> + Send;

    /// Replaces the rows of `request.seq` with the given record (validated like an apply; its
    /// seq must be `request.seq`; a missing seq is restored) and logs the change. For the
    /// reconciler only; on PostgreSQL it runs through the `triplicate_repair` function, which
    /// only `triplicate_writer` may execute.
    fn repair(
        &self,
        request: RepairRequest,
    ) -> impl Future<Output = Result<RepairOutcome, ProjectionError>> + Send;

    /// Removes the rows of every stored seq from `request.from_seq` up (at most
    /// [`MAX_REMOVAL`]) and logs each in the `removals` table with its old rows. For the
    /// reconciler only, for records the ledger lacks (see [`RemovalRequest`]); on PostgreSQL it
    /// runs through the `triplicate_remove_from` function, which only `triplicate_writer` may
    /// execute. Removing nothing is not an error.
    fn remove_from(
        &self,
        request: RemovalRequest,
    ) -> impl Future<Output = Result<RemovalOutcome, ProjectionError>> + Send;
}

pub(crate) fn hex_hash(h: &Hash) -> String {
    hex::encode(h)
}

/// Checks a batch's size before any backend parses it.
pub(crate) fn check_batch(batch: &[Vec<u8>]) -> Result<(), ProjectionError> {
    if batch.len() > MAX_BATCH {
        return Err(ProjectionError::BatchTooLarge {
            records: batch.len(),
            max: MAX_BATCH,
        });
    }
    Ok(())
}

/// Checks a `record_bytes` range before any backend reads.
pub(crate) fn check_range(start: u64, end: u64) -> Result<(), ProjectionError> {
    if end < start {
        return Err(ProjectionError::InvalidQuery(format!(
            "range {start}..{end} ends before it starts"
        )));
    }
    if end - start > MAX_RANGE {
        return Err(ProjectionError::InvalidQuery(format!(
            "range {start}..{end} spans {} seqs; read at most {MAX_RANGE} at a time",
            end - start
        )));
    }
    Ok(())
}
