//! `triplicate-recovery`: verified backups of the three stores, restores that check everything
//! before writing anything, and the rebuild paths that refill a store from the ledger.
//!
//! Owns: the backup directory's layout and formats (`manifest.json` signed by the notary, the
//! ledger snapshot under `ledger/`, `stream/events.jsonl`, `projection/records.jsonl`,
//! `projection/reports.jsonl`, `projection/drills.jsonl`), [`backup`], [`verify_backup`], [`restore`], and the batched
//! fills [`fill_stream`] and [`fill_projection`] that rebuild a store through its ordinary
//! idempotent append or apply.
//!
//! Must not know: SQL, HTTP, how the service opens its stores or holds its notary key. It
//! drives the store traits and a [`triplicate_keys::Signer`]; the ledger's own files are the
//! ledger crate's (`triplicate_ledger::backup`).
//!
//! The rule it keeps: the ledger is the store of record. A restore trusts nothing in the
//! backup it did not check against the notary key the caller trusts (never the backup's own),
//! and what the stream and projection exports hold is checked record by record against the
//! verified ledger; the restored stores are filled from the ledger, so an export that
//! disagrees cannot put a wrong record anywhere.

mod backup;
mod error;
mod export;
mod fill;
mod manifest;
mod restore;

pub use backup::{backup, BackupOutcome, BackupSources};
pub use error::RecoveryError;
pub use export::{DrillLine, EventLine, ReportLine, ReviewLine};
pub use fill::{fill_projection, fill_projection_from_stream, fill_stream, FillOutcome};
pub use manifest::{
    FileEntry, Manifest, ProjectionPart, SignedManifest, StreamPart, MANIFEST_DOMAIN,
    MANIFEST_FILE, MANIFEST_FORMAT,
};
pub use restore::{
    restore, restore_reports, verify_backup, ExportCheck, RestoreOutcome, RestoreTargets,
    VerifiedBackup,
};

/// Where each part lives inside a backup directory.
pub mod layout {
    /// The ledger snapshot (C2SP tiles, bundles, `hashes`, `checkpoint`, `notary.vkey`).
    pub const LEDGER_DIR: &str = "ledger";
    /// Every stream event, in global order, one JSON object per line ([`crate::EventLine`]).
    pub const STREAM_EVENTS: &str = "stream/events.jsonl";
    /// Every projection record re-derived from its rows, one canonical record per line.
    pub const PROJECTION_RECORDS: &str = "projection/records.jsonl";
    /// Every stored verification report with its reviews ([`crate::ReportLine`]).
    pub const PROJECTION_REPORTS: &str = "projection/reports.jsonl";
    /// Every stored recovery-drill report ([`crate::DrillLine`]).
    pub const PROJECTION_DRILLS: &str = "projection/drills.jsonl";
}
