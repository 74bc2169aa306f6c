//! The cross-verifier's reports, kept in the projection so auditors can query them with SQL:
//! the [`ReportStore`] trait, the rows it stores and reads back, and the checks every backend
//! runs before writing.
//!
//! The verifier (`triplicate-verifier`, which depends on this crate, never the other way round)
//! hands over one [`StoredReport`] per run: the report's canonical JSON exactly as it digested
//! it, plus the same content flattened into rows (`verification_reports`,
//! `verification_discrepancies`, `verification_actions`). Auditors' verdicts on proposed
//! actions go into `verification_reviews`. All four tables are append-only, like the
//! governance tables.
//!
//! The projection does not know what the names mean: classes, stores, kinds, operations,
//! authorities, statuses and modes are the verifier's lower-case names, stored as given and
//! checked only for being non-empty and at most [`MAX_NAME_BYTES`] bytes. It does not compute or
//! check the digest either (the verifier owns that function); it keeps the body byte for byte
//! so anyone can re-compute it.

use std::collections::HashSet;
use std::future::Future;

use triplicate_core::{Hash, Timestamp};
use uuid::Uuid;

use crate::ProjectionError;

/// The most bytes a name (class, store, kind, mode, status…) may have.
pub const MAX_NAME_BYTES: usize = 64;

/// The most summaries one [`ReportStore::reports`] call returns.
pub const MAX_REPORTS_PAGE: u32 = 1000;

/// The verdict that approves a proposed action.
pub const VERDICT_APPROVED: &str = "approved";
/// The verdict that rejects a proposed action.
pub const VERDICT_REJECTED: &str = "rejected";

/// Findings of a run by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportCounts {
    pub lag: u64,
    pub minor: u64,
    pub major: u64,
    pub critical: u64,
}

/// One run's report as the verifier hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    /// A UUIDv7: newest first is `run_id` descending.
    pub run_id: Uuid,
    /// `"incremental"` or `"full"`.
    pub mode: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// `None` when the run found nothing.
    pub worst_class: Option<String>,
    pub counts: ReportCounts,
    pub records_compared: u64,
    /// The tree size the run verified.
    pub checkpoint_size: Option<u64>,
    pub checkpoint_root: Option<Hash>,
    /// The report's digest, computed by the verifier over `body`.
    pub digest: Hash,
    /// The report's canonical JSON, exactly as digested; must be valid JSON. Stored and given
    /// back byte for byte.
    pub body: Vec<u8>,
    /// The ledger seq of the audit record carrying the digest.
    pub audit_seq: Option<u64>,
    /// In the report's order (kept as `position`).
    pub discrepancies: Vec<DiscrepancyRow>,
    /// In the report's order (kept as `position`). Action ids are unique across all reports.
    pub actions: Vec<ActionRow>,
}

/// One discrepancy of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscrepancyRow {
    pub seq: Option<u64>,
    pub decision_id: Option<Uuid>,
    /// `"ledger"`, `"stream"` or `"projection"`.
    pub store: String,
    /// `"lag"`, `"minor"`, `"major"` or `"critical"`.
    pub class: String,
    pub kind: String,
    pub expected_hash: Option<Hash>,
    pub actual_hash: Option<Hash>,
    /// The ledger file at fault, when there is one (never `Some("")`).
    pub file: Option<String>,
    pub detail: String,
}

/// One repair action of a report, with its status as of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRow {
    pub id: Uuid,
    pub seq: Option<u64>,
    pub seqs: Vec<u64>,
    pub store: String,
    pub class: String,
    pub kind: String,
    pub operation: String,
    /// `"automatic"` or `"auditor"`.
    pub authority: String,
    /// As of the run: `"planned"`, `"proposed"`, `"applied"`, `"unchanged"` or `"failed"`.
    pub status: String,
    /// The leaf hash the action restores.
    pub restores: Option<Hash>,
    pub detail: String,
}

/// An auditor's verdict on a proposed action, and what executing it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRow {
    pub action_id: Uuid,
    /// [`VERDICT_APPROVED`] or [`VERDICT_REJECTED`].
    pub verdict: String,
    pub key_id: String,
    pub alg: String,
    pub signature: Vec<u8>,
    pub signed_at: Timestamp,
    pub reason: String,
    /// What executing an approval did, e.g. `"applied: …"` or `"failed: …"` (never `Some("")`).
    pub outcome: Option<String>,
    pub recorded_at: Timestamp,
}

/// A report as listed, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSummary {
    pub run_id: Uuid,
    pub mode: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub worst_class: Option<String>,
    pub counts: ReportCounts,
    pub records_compared: u64,
    pub checkpoint_size: Option<u64>,
    pub digest: Hash,
    pub audit_seq: Option<u64>,
    /// The report's actions still waiting for an auditor (see [`is_pending`]).
    pub pending_actions: u64,
}

/// One action, the run it belongs to, and its reviews in recorded order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRecord {
    pub run_id: Uuid,
    pub action: ActionRow,
    pub reviews: Vec<ReviewRow>,
}

/// A whole report and every review of its actions, in recorded order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullReport {
    pub report: StoredReport,
    pub reviews: Vec<ReviewRow>,
}

/// Whether `action` still waits for an auditor, given reviews (those of other actions are
/// ignored): its authority is `"auditor"`, its status as of the run `"proposed"`, and no review
/// rejected it or records an outcome starting with `"applied"`, `"unchanged"` or `"deferred"`
/// (approved, and handed to the operator: it waits for nobody's verdict any more). An approval
/// whose execution failed leaves it pending. This is the rule behind
/// [`ReportSummary::pending_actions`]; the backends compute it in SQL.
pub fn is_pending(action: &ActionRow, reviews: &[ReviewRow]) -> bool {
    action.authority == "auditor"
        && action.status == "proposed"
        && !reviews.iter().any(|r| {
            r.action_id == action.id
                && (r.verdict == VERDICT_REJECTED
                    || r.outcome.as_deref().is_some_and(|o| {
                        o.starts_with("applied")
                            || o.starts_with("unchanged")
                            || o.starts_with("deferred")
                    }))
        })
}

/// Where the cross-verifier's reports and the auditors' reviews are kept.
///
/// Guarantees every backend gives:
/// - **Atomic, idempotent, checked writes.** [`ReportStore::store_report`] writes the report
///   and all its rows in one transaction, or nothing. The same run id with the same digest
///   again writes nothing (`Ok(false)`); with another digest it is
///   [`ProjectionError::ReportConflict`] naming both. Names must be non-empty and at most
///   [`MAX_NAME_BYTES`] bytes, optional text never `Some("")`, no text may contain NUL,
///   numbers must fit a signed 64-bit column, action ids must be new, and the body must be
///   valid JSON; otherwise [`ProjectionError::InvalidReport`] and nothing is written.
/// - **Byte-exact bodies.** The body comes back exactly as stored.
/// - **Append-only.** Nothing updates or deletes a stored report, row or review; the
///   databases' triggers refuse it (and on PostgreSQL the roles hold no such privilege).
/// - **Durable on `Ok`**, and **consistent reads**: a read sees one committed state.
pub trait ReportStore: Send + Sync {
    /// Stores a report and its rows atomically. Idempotent: the same `run_id` with the same
    /// digest again is `Ok(false)` (nothing written); the same `run_id` with another digest is
    /// refused ([`ProjectionError::ReportConflict`], naming both digests in hex) and nothing is
    /// written. `Ok(true)` when written.
    fn store_report(
        &self,
        report: StoredReport,
    ) -> impl Future<Output = Result<bool, ProjectionError>> + Send;

    /// Newest first (`run_id` descending), at most `limit` (1..=[`MAX_REPORTS_PAGE`], else
    /// [`ProjectionError::InvalidQuery`]), starting strictly before `before` when given.
    fn reports(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ReportSummary>, ProjectionError>> + Send;

    /// One report with its discrepancies (in the order given), actions (in the order given)
    /// and every review of its actions (in recorded order). `None` when absent.
    fn report(
        &self,
        run_id: Uuid,
    ) -> impl Future<Output = Result<Option<FullReport>, ProjectionError>> + Send;

    /// One action by id, with the run it belongs to and its reviews. `None` when absent.
    fn action(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<ActionRecord>, ProjectionError>> + Send;

    /// Appends a review. Refused ([`ProjectionError::UnknownAction`], nothing written) when the
    /// action does not exist, and ([`ProjectionError::InvalidReview`]) when the verdict is not
    /// [`VERDICT_APPROVED`] or [`VERDICT_REJECTED`] or a field is malformed. Several reviews per
    /// action are allowed (an approval whose execution failed may be approved again); whether
    /// another verdict is allowed is the caller's decision.
    fn record_review(
        &self,
        review: ReviewRow,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;
}

/// Checks a page size before any backend reads.
pub(crate) fn check_limit(limit: u32) -> Result<(), ProjectionError> {
    if limit == 0 || limit > MAX_REPORTS_PAGE {
        return Err(ProjectionError::InvalidQuery(format!(
            "a page of reports holds 1 to {MAX_REPORTS_PAGE}, not {limit}"
        )));
    }
    Ok(())
}

fn no_nul(what: &str, s: &str) -> Result<(), String> {
    if s.contains('\0') {
        return Err(format!(
            "{what} contains a NUL character, which a PostgreSQL text column cannot hold"
        ));
    }
    Ok(())
}

pub(crate) fn name(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if s.len() > MAX_NAME_BYTES {
        return Err(format!(
            "{what} is {} bytes; a name has at most {MAX_NAME_BYTES}",
            s.len()
        ));
    }
    no_nul(what, s)
}

fn opt_text(what: &str, s: Option<&str>) -> Result<(), String> {
    match s {
        Some("") => Err(format!("{what} is Some(\"\"); leave it None when absent")),
        Some(s) => no_nul(what, s),
        None => Ok(()),
    }
}

pub(crate) fn fits(what: &str, v: u64) -> Result<(), String> {
    if i64::try_from(v).is_err() {
        return Err(format!("{what} {v} does not fit a signed 64-bit column"));
    }
    Ok(())
}

pub(crate) fn opt_fits(what: &str, v: Option<u64>) -> Result<(), String> {
    v.map_or(Ok(()), |v| fits(what, v))
}

/// Whether the body is valid JSON (RFC 8259 syntax, UTF-8): what the backends' `json_valid`
/// and `::json` checks accept, checked here so the refusal is clear.
pub(crate) fn json_body(body: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| format!("body is not valid JSON: {e}"))?;
    Ok(())
}

/// Every check [`ReportStore::store_report`] makes before writing anything.
pub(crate) fn check_report(r: &StoredReport) -> Result<(), ProjectionError> {
    check_report_fields(r).map_err(|reason| ProjectionError::InvalidReport {
        run_id: r.run_id,
        reason,
    })
}

fn check_report_fields(r: &StoredReport) -> Result<(), String> {
    name("mode", &r.mode)?;
    if let Some(c) = &r.worst_class {
        name("worst_class", c)?;
    }
    for (what, v) in [
        ("counts.lag", r.counts.lag),
        ("counts.minor", r.counts.minor),
        ("counts.major", r.counts.major),
        ("counts.critical", r.counts.critical),
        ("records_compared", r.records_compared),
    ] {
        fits(what, v)?;
    }
    opt_fits("checkpoint_size", r.checkpoint_size)?;
    opt_fits("audit_seq", r.audit_seq)?;
    // Positions are 32-bit columns.
    for (what, n) in [
        ("discrepancies", r.discrepancies.len()),
        ("actions", r.actions.len()),
    ] {
        if i32::try_from(n).is_err() {
            return Err(format!("{n} {what} are more than one report may hold"));
        }
    }
    for (i, d) in r.discrepancies.iter().enumerate() {
        let at = |f: &str| format!("discrepancy {i}: {f}");
        opt_fits(&at("seq"), d.seq)?;
        name(&at("store"), &d.store)?;
        name(&at("class"), &d.class)?;
        name(&at("kind"), &d.kind)?;
        opt_text(&at("file"), d.file.as_deref())?;
        no_nul(&at("detail"), &d.detail)?;
    }
    let mut ids = HashSet::with_capacity(r.actions.len());
    for (i, a) in r.actions.iter().enumerate() {
        let at = |f: &str| format!("action {i} ({}): {f}", a.id);
        if !ids.insert(a.id) {
            return Err(at("the id appears twice in the report"));
        }
        opt_fits(&at("seq"), a.seq)?;
        for s in &a.seqs {
            fits(&at("seqs"), *s)?;
        }
        name(&at("store"), &a.store)?;
        name(&at("class"), &a.class)?;
        name(&at("kind"), &a.kind)?;
        name(&at("operation"), &a.operation)?;
        name(&at("authority"), &a.authority)?;
        name(&at("status"), &a.status)?;
        no_nul(&at("detail"), &a.detail)?;
    }
    // Last: the most expensive check (the body of a large run is tens of megabytes).
    json_body(&r.body)
}

/// Every check [`ReportStore::record_review`] makes before writing anything (the action's
/// existence is the backend's).
pub(crate) fn check_review(r: &ReviewRow) -> Result<(), ProjectionError> {
    check_review_fields(r).map_err(|reason| ProjectionError::InvalidReview {
        action_id: r.action_id,
        reason,
    })
}

fn check_review_fields(r: &ReviewRow) -> Result<(), String> {
    if r.verdict != VERDICT_APPROVED && r.verdict != VERDICT_REJECTED {
        return Err(format!(
            "verdict {:?} is neither {VERDICT_APPROVED:?} nor {VERDICT_REJECTED:?}",
            r.verdict
        ));
    }
    name("key_id", &r.key_id)?;
    name("alg", &r.alg)?;
    if r.signature.is_empty() {
        return Err("signature is empty".into());
    }
    no_nul("reason", &r.reason)?;
    opt_text("outcome", r.outcome.as_deref())
}

/// A hash column read back: exactly 32 bytes.
pub(crate) fn hash_from(what: &str, b: &[u8]) -> Result<Hash, String> {
    b.try_into()
        .map_err(|_| format!("{what} is {} bytes, not 32", b.len()))
}

/// A non-negative integer column read back.
pub(crate) fn u64_from(what: &str, v: i64) -> Result<u64, String> {
    u64::try_from(v).map_err(|_| format!("{what} is negative ({v})"))
}

/// A timestamp read back from Unix nanoseconds.
pub(crate) fn time_from(what: &str, nanos: i128) -> Result<Timestamp, String> {
    Timestamp::from_unix_nanos(nanos).map_err(|e| format!("{what}: {e}"))
}

/// Rows of a stored report that cannot be read back as written (altered behind the
/// projection's back).
pub(crate) fn damaged(what: &'static str) -> impl Fn(String) -> ProjectionError {
    move |reason| ProjectionError::Storage { what, reason }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn action(status: &str, authority: &str) -> ActionRow {
        ActionRow {
            id: Uuid::from_u128(1),
            seq: Some(3),
            seqs: vec![3],
            store: "projection".into(),
            class: "major".into(),
            kind: "hash_mismatch".into(),
            operation: "restore_from_ledger".into(),
            authority: authority.into(),
            status: status.into(),
            restores: None,
            detail: String::new(),
        }
    }

    fn review(action: u128, verdict: &str, outcome: Option<&str>) -> ReviewRow {
        ReviewRow {
            action_id: Uuid::from_u128(action),
            verdict: verdict.into(),
            key_id: "0011223344556677".into(),
            alg: "ed25519".into(),
            signature: vec![1; 64],
            signed_at: Timestamp::from_unix_nanos(0).unwrap(),
            reason: String::new(),
            outcome: outcome.map(str::to_owned),
            recorded_at: Timestamp::from_unix_nanos(1).unwrap(),
        }
    }

    #[test]
    fn pending_follows_the_rule() {
        let a = action("proposed", "auditor");
        assert!(is_pending(&a, &[]));
        assert!(!is_pending(&action("applied", "auditor"), &[]));
        assert!(!is_pending(&action("proposed", "automatic"), &[]));
        assert!(!is_pending(&a, &[review(1, "rejected", None)]));
        assert!(is_pending(&a, &[review(1, "approved", None)]));
        assert!(is_pending(&a, &[review(1, "approved", Some("failed: x"))]));
        assert!(!is_pending(
            &a,
            &[review(1, "approved", Some("applied: x"))]
        ));
        assert!(!is_pending(&a, &[review(1, "approved", Some("unchanged"))]));
        // Another action's review does not count.
        assert!(is_pending(&a, &[review(2, "rejected", None)]));
    }

    #[test]
    fn review_checks() {
        assert!(check_review(&review(1, "approved", None)).is_ok());
        assert!(check_review(&review(1, "Approved", None)).is_err());
        assert!(check_review(&review(1, "approved", Some(""))).is_err());
        let mut r = review(1, "rejected", None);
        r.key_id = "k".repeat(65);
        assert!(check_review(&r).is_err());
    }

    #[test]
    fn body_must_be_json() {
        assert!(json_body(b"{\"a\":[1,2,{}]}").is_ok());
        assert!(json_body(b"\"\\u0000\"").is_ok());
        for bad in [&b""[..], b"{", b"{} x", b"{\"a\":\xff}", b"nul"] {
            assert!(
                json_body(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
