//! The report of one run and its canonical digest.
//!
//! The digest is `SHA-256("triplicate/verification-report/v1\n" || JCS(report))`: RFC 8785
//! canonical JSON, with its own domain prefix like every other hash in Triplicate, so that the
//! digest appended to the ledger as an audit record (a later part of issue 5) commits to every
//! field, and anyone can recompute it from the report's JSON in any language with JCS.

use serde::{Deserialize, Serialize};
use triplicate_core::canonical::{to_jcs, CanonicalError};
use triplicate_core::digest::domain_hash;
use triplicate_core::{Hash, Timestamp};
use uuid::Uuid;

use crate::ledger_check::CheckpointRef;
use crate::model::{Counts, Discrepancy};
use crate::repair::RepairAction;

/// Prefix of a report's digest.
pub const REPORT_DOMAIN: &[u8] = b"triplicate/verification-report/v1\n";

/// The report format's version.
pub const REPORT_VERSION: u32 = 1;

/// Incremental or full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// The seqs since the last run plus the rolling window.
    Incremental,
    /// Every seq, and the ledger's files checked with fsck when its directory is known.
    Full,
}

/// A half-open range of seqs, `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    pub start: u64,
    pub end: u64,
}

/// What one run did and found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    /// UUIDv7, so reports sort by when they ran.
    pub run_id: Uuid,
    pub mode: RunMode,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// The instant lag was judged at (the start, unless the caller chose another).
    pub as_of: Timestamp,
    /// The last verified checkpoint the run started from, if any.
    pub checkpoint_old: Option<CheckpointRef>,
    /// The checkpoint this run verified; `None` when its signature did not verify.
    pub checkpoint_new: Option<CheckpointRef>,
    /// The seqs compared (a range may run past the ledger's size to look for extra records).
    pub ranges: Vec<SeqRange>,
    /// Ledger records compared with both other stores.
    pub records_compared: u64,
    /// Approval and notary signatures re-verified.
    pub signatures_checked: u64,
    pub counts: Counts,
    pub discrepancies: Vec<Discrepancy>,
    /// Repairs run or proposed.
    pub actions: Vec<RepairAction>,
    /// Where the next incremental run may start reading the stream's global order
    /// (a `Position` in its `major:minor` form).
    pub stream_cursor: Option<String>,
}

impl Report {
    /// `SHA-256("triplicate/verification-report/v1\n" || JCS(report))`.
    pub fn digest(&self) -> Result<Hash, CanonicalError> {
        Ok(domain_hash(REPORT_DOMAIN, &to_jcs(self)?))
    }

    /// True when nothing at all was found.
    pub fn is_clean(&self) -> bool {
        self.counts.total() == 0
    }

    /// Where the next incremental run starts: the end of the ledger part of this run.
    pub fn verified_end(&self) -> Option<u64> {
        self.checkpoint_new.map(|c| c.size)
    }
}
