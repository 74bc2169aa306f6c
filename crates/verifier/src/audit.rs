//! The audit record of a run: the decision the service appends to the ledger for each report,
//! so the verifier's own history is tamper-evident (DESIGN.md, Cross-verifier, step 4).
//!
//! The decision has kind [`AUDIT_KIND`] (`verification`), the run's id as its id (so appending
//! it again is idempotent), and a payload that commits to the report by its digest:
//!
//! ```json
//! {"run_id": "…", "mode": "incremental", "report_digest": "<base64>",
//!  "started_at": "…", "finished_at": "…", "records_compared": 1000,
//!  "counts": {"lag": 0, "minor": 0, "major": 1, "critical": 0},
//!  "checkpoint": {"size": 1000, "root": "<base64>"}}
//! ```
//!
//! Anyone holding a report can recompute its digest ([`Report::digest`]) and find the audit
//! record in the ledger with an inclusion proof; the next run compares the audit record across
//! the three stores like any other record.

use serde_json::{json, Map, Value};
use triplicate_core::canonical::CanonicalError;
use triplicate_core::{Decision, Hash, AUDIT_KIND};

use crate::report::Report;

/// The audit decision for `report`.
pub fn audit_decision(report: &Report) -> Result<Decision, CanonicalError> {
    let digest = report.digest()?;
    Ok(audit_decision_with(report, &digest))
}

/// The audit decision for `report` whose digest is already known.
pub fn audit_decision_with(report: &Report, digest: &Hash) -> Decision {
    let c = report.counts;
    let mut payload = Map::new();
    payload.insert("run_id".into(), json!(report.run_id.to_string()));
    payload.insert("mode".into(), json!(mode_name(report)));
    payload.insert("report_digest".into(), json!(crate::b64::encode(digest)));
    payload.insert("started_at".into(), json!(report.started_at.to_string()));
    payload.insert("finished_at".into(), json!(report.finished_at.to_string()));
    payload.insert("records_compared".into(), json!(report.records_compared));
    payload.insert(
        "counts".into(),
        json!({"lag": c.lag, "minor": c.minor, "major": c.major, "critical": c.critical}),
    );
    payload.insert(
        "checkpoint".into(),
        match report.checkpoint_new {
            Some(cp) => json!({"size": cp.size, "root": crate::b64::encode(&cp.root)}),
            None => Value::Null,
        },
    );
    let verdict = match c.worst() {
        None => "clean".to_owned(),
        Some(_) => format!(
            "{} lag, {} minor, {} major, {} critical",
            c.lag, c.minor, c.major, c.critical
        ),
    };
    Decision {
        id: report.run_id,
        kind: AUDIT_KIND.to_owned(),
        title: format!("Verification run {}: {verdict}", report.run_id),
        body: format!(
            "The {} cross-verification run {} compared {} records across the ledger, the event \
             stream and the projection and found: {verdict}. Its report's digest is {}.",
            mode_name(report),
            report.run_id,
            report.records_compared,
            crate::b64::encode(digest)
        ),
        payload,
        proposed_at: report.finished_at,
        supersedes: None,
        attachments: Vec::new(),
    }
}

fn mode_name(report: &Report) -> &'static str {
    match report.mode {
        crate::report::RunMode::Incremental => "incremental",
        crate::report::RunMode::Full => "full",
    }
}

/// The report digest an audit decision commits to, if `decision` is one: a verification
/// run's (kind `verification`) or a recovery drill's (kind `drill`); both carry it as
/// `payload.report_digest` in standard base64.
pub fn audited_digest(decision: &Decision) -> Option<Hash> {
    if !triplicate_core::is_service_kind(&decision.kind) {
        return None;
    }
    let s = decision.payload.get("report_digest")?.as_str()?;
    crate::b64::decode(s).ok()
}
