//! Why a projection operation failed, with the fields a caller needs to act on it.

/// Why a projection operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// A record of the batch is not a valid canonical record, or does not fit the batch.
    #[error("record {index} of the batch is invalid: {reason}")]
    InvalidRecord { index: usize, reason: String },
    /// A seq is already stored with other content. Hashes are lowercase hex leaf hashes; the
    /// stored one is re-derived from the rows.
    #[error("seq {seq} is already stored with leaf hash {stored}; the batch offers {offered}")]
    SeqConflict {
        seq: u64,
        stored: String,
        offered: String,
    },
    /// A decision id is already stored at another seq.
    #[error("decision {id} is already recorded at seq {stored_seq} (leaf hash {stored}); the batch offers it at seq {offered_seq} (leaf hash {offered})")]
    DecisionConflict {
        id: uuid::Uuid,
        stored_seq: u64,
        stored: String,
        offered_seq: u64,
        offered: String,
    },
    /// The first new record of a batch is not one past the highest stored seq.
    #[error("the batch's first new seq is {got} but the projection's next seq is {expected}: it would leave a gap")]
    Gap { expected: u64, got: u64 },
    /// More records than one apply may carry.
    #[error("a batch of {records} records is more than the {max} one apply may carry")]
    BatchTooLarge { records: usize, max: usize },
    /// A query, cursor or range the projection cannot serve as asked.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// A repair request that cannot be applied (the record does not match the seq, a reason
    /// or run id is missing).
    #[error("invalid repair of seq {seq}: {reason}")]
    InvalidRepair { seq: u64, reason: String },
    /// Stored rows that cannot be turned back into a record (for queries; range reads report
    /// damage per seq instead, see [`crate::Rederived::Damaged`]).
    #[error("the rows of seq {seq} are damaged: {reason}")]
    Damaged { seq: u64, reason: String },
    /// This handle was opened read-only.
    #[error("this projection handle is read-only ({0})")]
    ReadOnly(&'static str),
    /// The database role this handle uses may not do this (a reader writing, say).
    #[error("permission denied to {what}: {reason}")]
    PermissionDenied { what: &'static str, reason: String },
    /// The database cannot be reached or was closed; retrying later may succeed.
    #[error("projection store is unavailable: {0}")]
    Unavailable(String),
    /// The schema could not be applied or is not the one this build knows.
    #[error("projection schema: {0}")]
    Schema(String),
    /// A verification report's run id is already stored with another digest (both lowercase
    /// hex). Nothing was written.
    #[error("verification run {run_id} is already stored with digest {stored}; this report has digest {offered}")]
    ReportConflict {
        run_id: uuid::Uuid,
        stored: String,
        offered: String,
    },
    /// A verification report that cannot be stored as given (see [`crate::ReportStore`]).
    /// Nothing was written.
    #[error("verification report {run_id} is invalid: {reason}")]
    InvalidReport { run_id: uuid::Uuid, reason: String },
    /// A review that cannot be recorded as given. Nothing was written.
    #[error("review of action {action_id} is invalid: {reason}")]
    InvalidReview {
        action_id: uuid::Uuid,
        reason: String,
    },
    /// A review names an action that no stored report holds. Nothing was written.
    #[error("no stored verification report holds action {action_id}; only a stored action can be reviewed")]
    UnknownAction { action_id: uuid::Uuid },
    /// A recovery drill's id is already stored with another digest (both lowercase hex).
    /// Nothing was written.
    #[error(
        "drill {drill_id} is already stored with digest {stored}; this report has digest {offered}"
    )]
    DrillConflict {
        drill_id: uuid::Uuid,
        stored: String,
        offered: String,
    },
    /// A recovery drill's report that cannot be stored as given (see [`crate::DrillStore`]).
    /// Nothing was written.
    #[error("drill report {drill_id} is invalid: {reason}")]
    InvalidDrill {
        drill_id: uuid::Uuid,
        reason: String,
    },
    /// Anything else the database reported.
    #[error("projection store failed to {what}: {reason}")]
    Storage { what: &'static str, reason: String },
}

impl ProjectionError {
    /// True when retrying the same call later may succeed (the store was down, closed or
    /// busy). Conflicts, gaps and invalid records are never retryable.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProjectionError::Unavailable(_))
    }
}
