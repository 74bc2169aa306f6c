//! `triplicate-verifier`: the cross-verifier. It re-derives every record's hash from each
//! store's own content, compares the three stores per `seq`, classifies what differs by
//! `verification.toml`, repairs what the policy allows from the ledger, and reports.
//!
//! Owns: the verification policy ([`VerificationPolicy`], `policies/verification.toml`); the
//! ledger's self-check ([`check_checkpoint`], [`CompactRange`], [`fsck_finding`]); the batched
//! comparison ([`verify_range`]); signature re-verification (batch Ed25519, inside
//! [`verify_range`] when the policy asks; audit records against the notary key); range digests
//! and the top-down descent ([`sweep`]); repair planning and execution ([`plan_repairs`],
//! [`apply_repairs`], [`apply_approved`]); the run ([`run()`]) and its [`Report`] with a
//! canonical digest; the report's audit record ([`audit_decision`]) and its rows in the
//! projection ([`to_stored`], [`from_stored`]); auditors' signed verdicts ([`review`]); alert
//! webhooks ([`WebhookSender`]: HMAC-signed JSON POSTs with retries, the one place this crate
//! speaks HTTP, as a client).
//!
//! Must not know: which backend a store is (it is generic over the `Ledger`, `EventStream`
//! and `Projection` traits; only [`fsck_finding`] and file names in findings know the embedded
//! ledger's layout, and only when given its directory), serving HTTP, schedulers or metrics
//! (the service runs this on its cron schedule, appends the audit record, stores the report
//! and counts it), or SQL.
//!
//! **Architecture invariant:** the verifier never trusts a stored hash it did not re-derive:
//! the stream's hash is re-derived from its event data, the projection's from the bytes it
//! rebuilds from its columns, the ledger's stored leaf hashes from its entries, and those
//! folded into the root the notary signed.
//!
//! **Architecture invariant:** findings are data, not errors. However badly a store fails
//! (a ledger whose files disagree, an undecodable event, rows that describe no record), the run
//! ends with a report; `Err` means only that a store could not be reached.

mod audit;
mod b64;
mod compare;
mod error;
mod ledger_check;
mod model;
mod policy;
mod repair;
mod report;
pub mod review;
mod run;
mod stored;
pub mod sweep;
mod trust;
mod webhook;

pub use audit::{audit_decision, audit_decision_with, audited_digest};
pub use compare::{
    verify_range, RangeFindings, RangeOptions, Stores, DEFAULT_BATCH, READ_AHEAD_BYTES,
};
pub use error::VerifyError;
pub use ledger_check::{check_checkpoint, fsck_finding, CheckpointRef, CompactRange};
pub use model::{Class, Counts, Discrepancy, Kind, Store};
pub use policy::{
    parse_duration, CronSchedule, DrillSchedule, VerificationPolicy, Webhook, DRILL_SCENARIOS,
    VERIFICATION_FILE,
};
pub use repair::{
    apply_approved, apply_repairs, plan_repairs, ActionStatus, ApplySummary, Authority, Operation,
    RepairAction,
};
pub use report::{Report, RunMode, SeqRange, REPORT_DOMAIN, REPORT_VERSION};
pub use run::{run, unopenable_ledger_report, Acknowledged, RunRequest};
pub use stored::{body_digest, effective_status, from_stored, to_stored, StoredReportError};
pub use trust::Trust;
pub use webhook::{
    alert_body, Delivery, DeliveryOptions, WebhookError, WebhookSender, ALERT_TYPE, ALERT_VERSION,
    DELIVERY_HEADER, MAX_DISCREPANCIES, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
