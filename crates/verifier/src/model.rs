//! What a run finds: discrepancies, their classes and kinds, and the stores they are about.
//!
//! These types are serialised into reports (and, later, into the projection's report tables
//! and the HTTP API), so their snake_case names are part of that format.

use std::fmt;

use serde::{Deserialize, Serialize};
use triplicate_core::Hash;
use uuid::Uuid;

/// The store a discrepancy is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Store {
    Ledger,
    Stream,
    Projection,
}

impl Store {
    /// The name used in reports and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Store::Ledger => "ledger",
            Store::Stream => "stream",
            Store::Projection => "projection",
        }
    }
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How serious a discrepancy is, in increasing order (`Class::Critical` is the largest), as
/// DESIGN.md's cross-verifier defines the classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// A downstream store lacks a record younger than the grace period: noted only, the
    /// catch-up worker is expected to bring it.
    Lag,
    /// A downstream store lacks a record past the grace period, or a projection row drifted
    /// (or was removed): repairable from the ledger without judgement.
    Minor,
    /// The stream's content differs from the ledger (an event altered or removed), a store
    /// holds a record the ledger lacks, or a signature in a record does not verify: a repair is
    /// proposed and waits for an auditor.
    Major,
    /// The ledger itself fails a check (checkpoint, proof, its files): writes must stop until an
    /// operator acts.
    Critical,
}

impl Class {
    /// Every class, in increasing severity.
    pub const ALL: [Class; 4] = [Class::Lag, Class::Minor, Class::Major, Class::Critical];

    /// The name used in `verification.toml`, reports and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Lag => "lag",
            Class::Minor => "minor",
            Class::Major => "major",
            Class::Critical => "critical",
        }
    }

    /// Parses a name written in `verification.toml`.
    pub fn parse(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is wrong, independent of how serious the policy judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Kind {
    /// The store lacks a seq the ledger holds, past its own highest seq (it is behind).
    Missing,
    /// The store lacks a seq the ledger holds although it holds later seqs. Stores fill in seq
    /// order, so a hole is never lag: something removed the record.
    Gap,
    /// The hash re-derived from the store's content differs from the ledger's leaf hash.
    Differs,
    /// The stream event's data matches the ledger but what is stored beside it does not (the
    /// leaf hash in its metadata, or the decision its stream is named after).
    MetadataDiffers,
    /// The store holds a seq the ledger lacks.
    Extra,
    /// The store holds the same seq more than once.
    Duplicate,
    /// An event at an unexpected place in the global order (a seq lower than one already read).
    OutOfOrder,
    /// The store holds something that cannot be read back as a record (undecodable event,
    /// rows that describe no record).
    Damaged,
    /// An approval's or the notary's signature does not verify.
    BadSignature,
    /// An approval's key was unknown, of another algorithm, not yet valid, expired or revoked
    /// when the record was written, or the key or its holder approved twice.
    BadApproval,
    /// The ledger entry is not a record the verifier can parse.
    Unparseable,
    /// The checkpoint's signature or format does not verify.
    CheckpointInvalid,
    /// The consistency proof from the last verified checkpoint to the current one fails, or
    /// the ledger is smaller than it was.
    ConsistencyFailure,
    /// The stored hashes, or the re-hashed leaves, do not lead to the checkpoint's root.
    RootMismatch,
    /// A ledger entry re-hashes to something other than its stored leaf hash.
    LeafMismatch,
    /// A ledger file is missing, unreadable, or disagrees with the others (fsck, or a read).
    LedgerFiles,
    /// A report the projection stores (a recovery drill's) does not match the digest its
    /// audit record in the ledger carries, or its notary signature does not verify: someone
    /// changed the evidence.
    ReportTampered,
}

impl Kind {
    /// The snake_case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Gap => "gap",
            Kind::Differs => "differs",
            Kind::MetadataDiffers => "metadata_differs",
            Kind::Extra => "extra",
            Kind::Duplicate => "duplicate",
            Kind::OutOfOrder => "out_of_order",
            Kind::Damaged => "damaged",
            Kind::BadSignature => "bad_signature",
            Kind::BadApproval => "bad_approval",
            Kind::Unparseable => "unparseable",
            Kind::CheckpointInvalid => "checkpoint_invalid",
            Kind::ConsistencyFailure => "consistency_failure",
            Kind::RootMismatch => "root_mismatch",
            Kind::LeafMismatch => "leaf_mismatch",
            Kind::LedgerFiles => "ledger_files",
            Kind::ReportTampered => "report_tampered",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing a run found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discrepancy {
    /// The seq concerned; `None` for findings about the ledger as a whole (its checkpoint, a
    /// file) or an undecodable event whose seq cannot be read.
    pub seq: Option<u64>,
    /// The decision at that seq, when the ledger's entry (or the store's content) names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<Uuid>,
    pub store: Store,
    pub class: Class,
    pub kind: Kind,
    /// What the ledger says (its leaf hash, its checkpoint root); `None` when it has nothing
    /// at this seq.
    #[serde(default, with = "crate::b64::option")]
    pub expected_hash: Option<Hash>,
    /// What the store's content re-derives to; `None` when it holds nothing there or its
    /// content cannot be re-derived.
    #[serde(default, with = "crate::b64::option")]
    pub actual_hash: Option<Hash>,
    /// The ledger file at fault, when one is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The same, for people: what was compared and what was found.
    pub detail: String,
}

/// Counts of discrepancies per class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub lag: u64,
    pub minor: u64,
    pub major: u64,
    pub critical: u64,
}

impl Counts {
    /// Counts `discrepancies` by class.
    pub fn of(discrepancies: &[Discrepancy]) -> Counts {
        let mut c = Counts::default();
        for d in discrepancies {
            *c.get_mut(d.class) += 1;
        }
        c
    }

    /// The count for one class.
    pub fn get(&self, class: Class) -> u64 {
        match class {
            Class::Lag => self.lag,
            Class::Minor => self.minor,
            Class::Major => self.major,
            Class::Critical => self.critical,
        }
    }

    fn get_mut(&mut self, class: Class) -> &mut u64 {
        match class {
            Class::Lag => &mut self.lag,
            Class::Minor => &mut self.minor,
            Class::Major => &mut self.major,
            Class::Critical => &mut self.critical,
        }
    }

    /// Every discrepancy, whatever its class.
    pub fn total(&self) -> u64 {
        self.lag + self.minor + self.major + self.critical
    }

    /// The most serious class with at least one discrepancy.
    pub fn worst(&self) -> Option<Class> {
        Class::ALL.into_iter().rev().find(|c| self.get(*c) > 0)
    }
}
