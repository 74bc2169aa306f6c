//! Why a run could not be made. Findings about the stores are not errors: they are
//! [`crate::Discrepancy`] values in the report, however bad (a ledger that fails its checks
//! is a `critical` finding, not an `Err`). An error here means the verifier could not look.

use triplicate_projection::ProjectionError;
use triplicate_stream::StreamError;

/// Why a run, or part of one, could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The event stream could not be read (unavailable, closed): retry later.
    #[error("read the event stream: {0}")]
    Stream(#[source] StreamError),
    /// The projection could not be read: retry later.
    #[error("read the projection: {0}")]
    Projection(#[source] ProjectionError),
    /// The trust anchors given are unusable (a malformed notary key).
    #[error("trust anchors: {0}")]
    Trust(String),
    /// A range the caller asked for is malformed.
    #[error("invalid range {start}..{end}: {reason}")]
    InvalidRange {
        start: u64,
        end: u64,
        reason: &'static str,
    },
    /// A worker task panicked or was cancelled (a bug).
    #[error("verifier task failed: {0}")]
    Task(String),
    /// A report could not be canonicalised (a bug: reports hold no floats).
    #[error("canonicalise the report: {0}")]
    Canonical(#[from] triplicate_core::canonical::CanonicalError),
}
