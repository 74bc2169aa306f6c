use std::path::PathBuf;

use triplicate_ledger::LedgerError;
use triplicate_projection::ProjectionError;
use triplicate_stream::StreamError;

/// Why a backup, restore or fill failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The backup failed a check (signature, digest, ledger root, an export's content); nothing
    /// was written to the target.
    #[error("backup refused: {}: {reason}", file.display())]
    Refused { file: PathBuf, reason: String },
    /// The target already holds data and the restore was not forced.
    #[error("the restore target is not empty: {}: {reason}", path.display())]
    TargetNotEmpty { path: PathBuf, reason: String },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("stream: {0}")]
    Stream(#[from] StreamError),
    #[error("projection: {0}")]
    Projection(#[from] ProjectionError),
    /// The notary could not sign the manifest.
    #[error("notary: {0}")]
    Notary(String),
    /// A store handed back something that cannot be exported (a damaged row, an event that is
    /// not a record).
    #[error("{store}: {reason}")]
    Damaged { store: &'static str, reason: String },
    #[error("background task: {0}")]
    Task(String),
}

impl RecoveryError {
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> RecoveryError {
        let path = path.into();
        move |source| RecoveryError::Io { what, path, source }
    }

    pub(crate) fn refused(file: impl Into<PathBuf>, reason: impl Into<String>) -> RecoveryError {
        RecoveryError::Refused {
            file: file.into(),
            reason: reason.into(),
        }
    }

    /// True when the backup itself was at fault (the CLI's exit code 1), as opposed to the
    /// restore being unable to run (exit code 2).
    pub fn is_refusal(&self) -> bool {
        matches!(self, RecoveryError::Refused { .. })
    }
}
