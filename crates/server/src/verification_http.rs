//! The verification endpoints: reports of cross-check runs as the projection stores them,
//! on-demand runs, and auditors' signed verdicts on proposed repairs.
//!
//! | route | role | |
//! |---|---|---|
//! | `GET /v1/verification/reports?before=&limit=` | auditor, admin | newest first |
//! | `GET /v1/verification/reports/{id}` | auditor, admin | the report, its digest and audit seq, each action's status and reviews |
//! | `POST /v1/verification/runs` (`{"full": bool}`) | auditor, admin | runs one now; 201 with the stored report |
//! | `GET /v1/verification/repairs/{id}` | auditor, admin | one proposed repair: what to sign |
//! | `POST /v1/verification/repairs/{id}/approve`, `/reject` | auditor | a signed verdict |
//!
//! The review pages (`crate::ui`) read and record through the same functions: [`load_report`],
//! [`reports_page`], [`load_repair`] and [`record_verdict`], so a page never shows what the API
//! would not serve, nor records a verdict the API would refuse.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use triplicate_core::{Algorithm, Hash, KeyId, Timestamp};
use triplicate_projection::reports::{
    is_pending, ActionRow, ReportStore as _, ReportSummary, ReviewRow,
};
use triplicate_verifier::review::Verdict;
use triplicate_verifier::{RepairAction, Report};
use uuid::Uuid;

use crate::auth::Role;
use crate::crosscheck::{ReviewFailure, ReviewOutcome, SignedVerdict};
use crate::http::{checker, require_auditor, AppState};
use crate::problem::Problem;

/// Standard base64, as hashes and signatures are served.
pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn store_problem(e: impl std::fmt::Display) -> Problem {
    Problem::unavailable(format!("the report store: {e}"))
}

pub(crate) fn parse_id(what: &str, id: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id).map_err(|e| Problem::bad_request(format!("{id:?} is not a {what}: {e}")))
}

/// A summary as served.
pub fn summary_json(r: &ReportSummary) -> Value {
    json!({
        "run_id": r.run_id,
        "mode": r.mode,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "worst_class": r.worst_class,
        "counts": {
            "lag": r.counts.lag,
            "minor": r.counts.minor,
            "major": r.counts.major,
            "critical": r.counts.critical,
        },
        "records_compared": r.records_compared,
        "checkpoint_size": r.checkpoint_size,
        "digest": b64(&r.digest),
        "audit_seq": r.audit_seq,
        "pending_actions": r.pending_actions,
    })
}

/// A review as served.
pub fn review_json(r: &ReviewRow) -> Value {
    json!({
        "action_id": r.action_id,
        "verdict": r.verdict,
        "key_id": r.key_id,
        "alg": r.alg,
        "signature": b64(&r.signature),
        "signed_at": r.signed_at,
        "reason": r.reason,
        "outcome": r.outcome,
        "recorded_at": r.recorded_at,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportsParams {
    before: Option<String>,
    limit: Option<u32>,
}

/// Most reports per page, unless `limit` says fewer.
pub const DEFAULT_REPORTS_PAGE: u32 = 50;

/// Up to `limit` (1 to 1000) stored reports older than run `before`, newest first, and the run
/// id to pass as `before` for the next page (`None` on the last page).
pub(crate) async fn reports_page(
    s: &AppState,
    before: Option<Uuid>,
    limit: u32,
) -> Result<(Vec<ReportSummary>, Option<Uuid>), Problem> {
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit {limit} is out of range: 1 to 1000"
        )));
    }
    let page = s
        .service
        .projection()
        .reports(before, limit)
        .await
        .map_err(store_problem)?;
    let next = (page.len() == limit as usize)
        .then(|| page.last().map(|r| r.run_id))
        .flatten();
    Ok((page, next))
}

pub(crate) async fn list_reports(
    State(s): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<ReportsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    require_auditor(&s, &headers)?;
    let Query(params) = params.map_err(|e| Problem::bad_request(e.body_text()))?;
    let before = params
        .before
        .as_deref()
        .map(|b| parse_id("run id", b))
        .transpose()?;
    let (page, next) =
        reports_page(&s, before, params.limit.unwrap_or(DEFAULT_REPORTS_PAGE)).await?;
    Ok(Json(json!({
        "reports": page.iter().map(summary_json).collect::<Vec<_>>(),
        "next": next,
    }))
    .into_response())
}

/// One action of a stored report, with its reviews counted.
#[derive(Debug, Clone)]
pub(crate) struct ActionState {
    /// The action as the report's rows store it (its status as of the run).
    pub row: ActionRow,
    /// Its status once its reviews are counted ([`triplicate_verifier::effective_status`]).
    pub status: String,
    /// Whether it still waits for an auditor ([`is_pending`]).
    pub pending: bool,
    /// Its reviews, in recorded order.
    pub reviews: Vec<ReviewRow>,
}

impl ActionState {
    fn of(row: &ActionRow, reviews: &[ReviewRow]) -> ActionState {
        ActionState {
            row: row.clone(),
            status: triplicate_verifier::effective_status(row, reviews),
            pending: is_pending(row, reviews),
            reviews: reviews
                .iter()
                .filter(|r| r.action_id == row.id)
                .cloned()
                .collect(),
        }
    }
}

/// A stored report read back: the report itself (checked against its stored digest), the
/// digest, its audit seq and whether the ledger's audit record there carries the same digest,
/// and each action's status and reviews.
#[derive(Debug, Clone)]
pub(crate) struct ReportView {
    pub run_id: Uuid,
    pub digest: Hash,
    pub audit_seq: Option<u64>,
    /// `None` without an audit record.
    pub audit_record_matches: Option<bool>,
    pub report: Report,
    pub actions: Vec<ActionState>,
}

/// Reads the stored report of `run_id` (see [`ReportView`]).
pub(crate) async fn load_report(s: &AppState, run_id: Uuid) -> Result<ReportView, Problem> {
    let full = s
        .service
        .projection()
        .report(run_id)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| Problem::not_found(format!("no report of run {run_id}")))?;
    let report = triplicate_verifier::from_stored(&full.report)
        .map_err(|e| Problem::internal(format!("the stored report does not check out: {e}")))?;
    let audited = full.report.audit_seq.map(|seq| {
        s.service
            .receipt(seq)
            .ok()
            .and_then(|r| triplicate_verifier::audited_digest(&r.record.decision))
            == Some(full.report.digest)
    });
    let actions = full
        .report
        .actions
        .iter()
        .map(|a| ActionState::of(a, &full.reviews))
        .collect();
    Ok(ReportView {
        run_id,
        digest: full.report.digest,
        audit_seq: full.report.audit_seq,
        audit_record_matches: audited,
        report,
        actions,
    })
}

/// The stored report of `run_id` as served (see [`ReportView`]).
pub(crate) async fn report_json(s: &AppState, run_id: Uuid) -> Result<Value, Problem> {
    let v = load_report(s, run_id).await?;
    let actions: Vec<Value> = v
        .actions
        .iter()
        .map(|a| {
            json!({
                "id": a.row.id,
                "status": a.status,
                "pending": a.pending,
                "reviews": a.reviews.iter().map(review_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({
        "run_id": v.run_id,
        "digest": b64(&v.digest),
        "audit_seq": v.audit_seq,
        "audit_record_matches": v.audit_record_matches,
        "report": v.report,
        "actions": actions,
    }))
}

pub(crate) async fn get_report(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    require_auditor(&s, &headers)?;
    let run_id = parse_id("run id", &id)?;
    Ok(Json(report_json(&s, run_id).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunParams {
    #[serde(default)]
    full: bool,
}

pub(crate) async fn post_run(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    require_auditor(&s, &headers)?;
    let params: RunParams = if body.iter().all(u8::is_ascii_whitespace) {
        RunParams::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("the body: {e}")))?
    };
    let run = run_detached(&s, params.full).await?;
    let run_id = run.report.run_id;
    // Served from the store, as every later read will be; if the store is down the run is
    // still answered from memory (its report waits to be stored).
    let body = match report_json(&s, run_id).await {
        Ok(v) => v,
        Err(p) => {
            tracing::warn!(%run_id, problem = %p.detail, "serve the run from memory");
            json!({
                "run_id": run_id,
                "digest": b64(&run.digest),
                "audit_seq": run.audit_seq,
                "audit_record_matches": Value::Null,
                "report": run.report,
                "actions": Vec::<Value>::new(),
                "stored": false,
            })
        }
    };
    Ok((
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("/v1/verification/reports/{run_id}"),
        )],
        Json(body),
    )
        .into_response())
}

/// One repair action as stored, with what an auditor signs a verdict over: its run and that
/// report's digest.
#[derive(Debug, Clone)]
pub(crate) struct RepairView {
    pub action_id: Uuid,
    pub run_id: Uuid,
    pub report_digest: Hash,
    /// The action as the report's body has it (`None` if the body lacks it).
    pub action: Option<RepairAction>,
    pub state: ActionState,
}

/// Reads the repair action `action_id` and its report (checked against its digest).
pub(crate) async fn load_repair(s: &AppState, action_id: Uuid) -> Result<RepairView, Problem> {
    let projection = s.service.projection();
    let found = projection
        .action(action_id)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| Problem::not_found(format!("no proposed repair {action_id}")))?;
    let full = projection
        .report(found.run_id)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| Problem::not_found(format!("no report of run {}", found.run_id)))?;
    let report = triplicate_verifier::from_stored(&full.report)
        .map_err(|e| Problem::internal(format!("the stored report does not check out: {e}")))?;
    Ok(RepairView {
        action_id,
        run_id: found.run_id,
        report_digest: full.report.digest,
        action: report.actions.into_iter().find(|a| a.id == action_id),
        state: ActionState::of(&found.action, &found.reviews),
    })
}

pub(crate) async fn get_repair(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    require_auditor(&s, &headers)?;
    let action_id = parse_id("repair id", &id)?;
    let v = load_repair(&s, action_id).await?;
    Ok(Json(json!({
        "id": v.action_id,
        "run_id": v.run_id,
        "report_digest": b64(&v.report_digest),
        "action": v.action,
        "status": v.state.status,
        "pending": v.state.pending,
        "reviews": v.state.reviews.iter().map(review_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// The body of `approve` and `reject`: the auditor's signature over
/// [`triplicate_verifier::review::ReviewStatement`]. (The review pages fill it from a form.)
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerdictBody {
    pub key_id: KeyId,
    pub alg: Algorithm,
    /// Standard base64.
    pub signature: String,
    pub signed_at: Timestamp,
    #[serde(default)]
    pub reason: String,
}

/// Longest reason an auditor may give.
pub const REASON_MAX_BYTES: usize = 4096;

/// Refuses a reason over [`REASON_MAX_BYTES`].
pub(crate) fn check_reason(reason: &str) -> Result<(), Problem> {
    if reason.len() > REASON_MAX_BYTES {
        return Err(Problem::bad_request(format!(
            "the reason is {} bytes; at most {REASON_MAX_BYTES} are allowed",
            reason.len()
        )));
    }
    Ok(())
}

impl VerdictBody {
    /// The verdict as [`crate::crosscheck::CrossCheck::review`] takes it: the reason's length
    /// checked and the signature decoded.
    pub(crate) fn into_signed(self) -> Result<SignedVerdict, Problem> {
        check_reason(&self.reason)?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(&self.signature)
            .map_err(|e| Problem::bad_request(format!("the signature is not base64: {e}")))?;
        Ok(SignedVerdict {
            key_id: self.key_id,
            alg: self.alg,
            signature,
            signed_at: self.signed_at,
            reason: self.reason,
        })
    }
}

/// The problem of a caller who is not an auditor (`role` is what it is instead).
pub(crate) fn not_an_auditor(role: Role, how: &str) -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "Forbidden",
        format!(
            "only auditors approve or reject repairs; the {how} is a {}'s",
            role.as_str()
        ),
    )
}

/// Runs the cross-check as a task of its own, to the end even if the caller hangs up: a run
/// cut short would leave repairs made and no report saying so.
pub(crate) async fn run_detached(
    s: &AppState,
    full: bool,
) -> Result<std::sync::Arc<crate::crosscheck::RunRecord>, Problem> {
    let checker = checker(s)?.clone();
    tokio::spawn(async move { checker.run_now(full).await })
        .await
        .map_err(|e| Problem::internal(format!("the cross-check run failed: {e}")))?
        .map_err(|e| Problem::unavailable(format!("the cross-check could not run: {e}")))
}

/// Records `who`'s verdict on repair `action_id` through the cross-verifier (which checks the
/// signature and runs an approved repair), mapping its refusals to problems. The review runs
/// as a task of its own, to the end even if the caller hangs up: an approved repair (a stream
/// rebuild may take a while) and the verdict that records its outcome are never cut apart by a
/// dropped connection.
pub(crate) async fn record_verdict(
    s: &AppState,
    who: &str,
    action_id: Uuid,
    verdict: Verdict,
    signed: SignedVerdict,
) -> Result<ReviewOutcome, Problem> {
    let checker = checker(s)?.clone();
    let out = tokio::spawn(async move { checker.review(action_id, verdict, signed).await })
        .await
        .map_err(|e| Problem::internal(format!("the review of {action_id} failed: {e}")))?
        .map_err(|e| match e {
            ReviewFailure::NotFound(_) => Problem::not_found(e.to_string()),
            ReviewFailure::Closed { .. } => Problem::new(
                StatusCode::CONFLICT,
                "review-closed",
                "The repair is not waiting for an auditor",
                e.to_string(),
            ),
            ReviewFailure::Refused(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "review-refused",
                "The verdict's signature is refused",
                e.to_string(),
            ),
            _ => store_problem(e),
        })?;
    tracing::info!(who, %action_id, verdict = verdict.as_str(), "verdict recorded");
    Ok(out)
}

async fn verdict(
    s: AppState,
    headers: HeaderMap,
    id: String,
    body: Bytes,
    verdict: Verdict,
) -> Result<Response, Problem> {
    let (who, role) = s.tokens.require(&headers, Role::Reader)?;
    if role != Role::Auditor {
        return Err(not_an_auditor(role, "token sent"));
    }
    let action_id = parse_id("repair id", &id)?;
    let b: VerdictBody = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("the body: {e}")))?;
    let out = record_verdict(&s, &who, action_id, verdict, b.into_signed()?).await?;
    Ok(Json(json!({
        "action_id": action_id,
        "run_id": out.run_id,
        "verdict": verdict.as_str(),
        "status": out.status,
        "outcome": out.review.outcome,
        "review": review_json(&out.review),
    }))
    .into_response())
}

pub(crate) async fn approve(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    verdict(s, headers, id, body, Verdict::Approved).await
}

pub(crate) async fn reject(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    verdict(s, headers, id, body, Verdict::Rejected).await
}
