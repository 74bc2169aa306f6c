//! Reports in the projection: a [`Report`] flattened into the rows of
//! `triplicate_projection::reports` (the projection does not know the verifier's types), and a
//! stored report read back and checked against its digest.

use triplicate_core::canonical::{to_jcs, CanonicalError};
use triplicate_core::digest::domain_hash;
use triplicate_core::Hash;
use triplicate_projection::reports::{
    ActionRow, DiscrepancyRow, ReportCounts, ReviewRow, StoredReport,
};

use crate::report::{Report, RunMode, REPORT_DOMAIN};

fn snake<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => format!("unserialisable: {e}"),
    }
}

/// The rows the projection stores for `report`: its canonical JSON (what the digest is over)
/// and every discrepancy and action flattened. `audit_seq` is the ledger seq of the audit
/// record carrying the digest, when it was appended.
pub fn to_stored(report: &Report, audit_seq: Option<u64>) -> Result<StoredReport, CanonicalError> {
    let body = to_jcs(report)?;
    let digest = domain_hash(REPORT_DOMAIN, &body);
    let c = report.counts;
    Ok(StoredReport {
        run_id: report.run_id,
        mode: match report.mode {
            RunMode::Incremental => "incremental".into(),
            RunMode::Full => "full".into(),
        },
        started_at: report.started_at,
        finished_at: report.finished_at,
        worst_class: c.worst().map(|w| w.as_str().to_owned()),
        counts: ReportCounts {
            lag: c.lag,
            minor: c.minor,
            major: c.major,
            critical: c.critical,
        },
        records_compared: report.records_compared,
        checkpoint_size: report.checkpoint_new.map(|c| c.size),
        checkpoint_root: report.checkpoint_new.map(|c| c.root),
        digest,
        body,
        audit_seq,
        discrepancies: report
            .discrepancies
            .iter()
            .map(|d| DiscrepancyRow {
                seq: d.seq,
                decision_id: d.decision_id,
                store: d.store.as_str().into(),
                class: d.class.as_str().into(),
                kind: d.kind.as_str().into(),
                expected_hash: d.expected_hash,
                actual_hash: d.actual_hash,
                file: d.file.clone(),
                detail: d.detail.clone(),
            })
            .collect(),
        actions: report
            .actions
            .iter()
            .map(|a| ActionRow {
                id: a.id,
                seq: a.seq,
                seqs: a.seqs.clone(),
                store: a.store.as_str().into(),
                class: a.class.as_str().into(),
                kind: a.kind.as_str().into(),
                operation: snake(&a.operation),
                authority: snake(&a.authority),
                status: snake(&a.status),
                restores: a.restores,
                detail: a.detail.clone(),
            })
            .collect(),
    })
}

/// Why a stored report cannot be read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoredReportError {
    #[error("stored report {run_id}: its body does not hash to its digest (stored {stored}, body {body})")]
    DigestMismatch {
        run_id: uuid::Uuid,
        stored: String,
        body: String,
    },
    #[error("stored report {run_id}: its body is not a report: {reason}")]
    Unreadable { run_id: uuid::Uuid, reason: String },
}

/// The report a stored body holds, after checking that the body hashes to the stored digest
/// and names the same run. (Whether the digest is the one the ledger's audit record carries is
/// the caller's check: it needs the ledger.)
pub fn from_stored(stored: &StoredReport) -> Result<Report, StoredReportError> {
    let body = domain_hash(REPORT_DOMAIN, &stored.body);
    if body != stored.digest {
        return Err(StoredReportError::DigestMismatch {
            run_id: stored.run_id,
            stored: crate::b64::encode(&stored.digest),
            body: crate::b64::encode(&body),
        });
    }
    let report: Report =
        serde_json::from_slice(&stored.body).map_err(|e| StoredReportError::Unreadable {
            run_id: stored.run_id,
            reason: e.to_string(),
        })?;
    if report.run_id != stored.run_id {
        return Err(StoredReportError::Unreadable {
            run_id: stored.run_id,
            reason: format!("the body is the report of run {}", report.run_id),
        });
    }
    Ok(report)
}

/// Where a proposed action stands once its reviews are counted: `rejected`, `applied`,
/// `unchanged`, `approved` (recorded, waiting for the operator: the service cannot run it),
/// or its status as of the run (`proposed` while an auditor is still to decide, including
/// after an approval whose execution failed).
pub fn effective_status(action: &ActionRow, reviews: &[ReviewRow]) -> String {
    let mine = reviews.iter().filter(|r| r.action_id == action.id);
    let mut status = action.status.clone();
    for r in mine {
        let outcome = r.outcome.as_deref().unwrap_or("");
        status = if r.verdict == "rejected" {
            "rejected".into()
        } else if outcome.starts_with("applied") {
            "applied".into()
        } else if outcome.starts_with("unchanged") {
            "unchanged".into()
        } else if outcome.starts_with("deferred") {
            "approved".into()
        } else {
            status
        };
    }
    status
}

/// The digest of a stored body, for callers holding only bytes.
pub fn body_digest(body: &[u8]) -> Hash {
    domain_hash(REPORT_DOMAIN, body)
}
