//! `triplicate-core`: the governance record and everything needed to reproduce its bytes.
//!
//! Owns: the decision, approval, record and receipt types; their validation; their canonical
//! bytes (RFC 8785 JCS); the domain-separated digests that approvals and the notary sign; the
//! RFC 6962 leaf hash the ledger stores.
//!
//! Must not know: files, databases, networks, key storage or any signature algorithm's
//! implementation. It is pure and synchronous (the one clock read is `Timestamp::now`): the same
//! input gives the same bytes on every machine, in every store, in every language that
//! implements JCS.

pub mod canonical;
pub mod digest;
pub mod error;
pub mod ids;
mod jcs;
pub mod limits;
pub mod receipt;
pub mod record;
pub mod timestamp;
pub mod view;

pub use error::{Problem, ValidationError};

/// Threads worth running CPU work on: `std::thread::available_parallelism`, read once per
/// process. std reads the cgroup files on every call (a few system calls); the stores ask once
/// per batch they validate, which profiling of embedded submissions put at ~1 % of their CPU.
pub fn available_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
pub use ids::{Algorithm, Hash, KeyId, KeyIdError};
pub use receipt::{Receipt, RECEIPT_VERSION};
pub use record::{
    Approval, Attachment, CanonicalProof, Decision, NotarySignature, Record, Submission,
    UnsignedRecord, RECORD_VERSION,
};
pub use timestamp::{Timestamp, TimestampError};
pub use view::{
    ApprovalView, AttachmentView, DecisionView, KeyIdRef, NotaryView, PayloadView, RecordView,
};

/// The decision kind of the service's own audit records: one per cross-verification run,
/// carrying the run's report digest, approved by the notary key alone. Reserved: the service
/// refuses submissions of this kind, and the verifier accepts exactly one approval, the
/// notary's, on records of this kind (DESIGN.md, Cross-verifier, step 4).
pub const AUDIT_KIND: &str = "verification";

/// The decision kind of a recovery drill's audit record: one per drill, carrying the drill
/// report's digest, approved by the notary key alone. Reserved like [`AUDIT_KIND`].
pub const DRILL_KIND: &str = "drill";

/// Prefix of a drill report's digest and of the notary's signature over it:
/// `SHA-256("triplicate/drill-report/v1\n" || JCS(report))`.
pub const DRILL_REPORT_DOMAIN: &[u8] = b"triplicate/drill-report/v1\n";

/// The kinds only the service itself records, approved by its notary key alone
/// ([`AUDIT_KIND`], [`DRILL_KIND`]).
pub const SERVICE_KINDS: [&str; 2] = [AUDIT_KIND, DRILL_KIND];

/// Whether `kind` is one only the service records.
pub fn is_service_kind(kind: &str) -> bool {
    SERVICE_KINDS.contains(&kind)
}
