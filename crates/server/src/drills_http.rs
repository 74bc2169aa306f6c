//! The recovery-drill endpoints.
//!
//! | route | role | |
//! |---|---|---|
//! | `GET /v1/drills?scenario=&before=&limit=` | auditor, admin | stored drill reports, newest first |
//! | `GET /v1/drills/{id}` | auditor, admin | one report, its digest, whether the notary's signature and the ledger's `drill` audit record check out |
//! | `POST /v1/drills/runs` (`{"scenario": "lose-projection"}`) | admin | runs a drill on a scratch copy now; 201 with its report |

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use triplicate_keys::VerifierKey;
use triplicate_projection::{DrillStore as _, DrillSummary, StoredDrill};
use uuid::Uuid;

use crate::auth::Role;
use crate::drill::{DrillError, DrillOptions, DrillReport, Scenario};
use crate::http::{require_auditor, AppState};
use crate::problem::Problem;
use crate::verification_http::{b64, parse_id};

fn store_problem(e: impl std::fmt::Display) -> Problem {
    Problem::unavailable(format!("the drill store: {e}"))
}

/// A stored drill's summary as served.
pub fn summary_json(d: &DrillSummary) -> Value {
    json!({
        "drill_id": d.drill_id,
        "scenario": d.scenario,
        "started_at": d.started_at,
        "finished_at": d.finished_at,
        "passed": d.passed,
        "in_place": d.in_place,
        "records_before": d.records_before,
        "records_after": d.records_after,
        "detect_ms": d.detect_ms,
        "recover_ms": d.recover_ms,
        "discrepancies_left": d.discrepancies_left,
        "digest": b64(&d.digest),
        "audit_seq": d.audit_seq,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DrillsParams {
    scenario: Option<String>,
    before: Option<String>,
    limit: Option<u32>,
}

/// Up to `limit` stored drills before `before`, newest first, and the cursor of the next page.
pub(crate) async fn drills_page(
    s: &AppState,
    scenario: Option<String>,
    before: Option<Uuid>,
    limit: u32,
) -> Result<(Vec<DrillSummary>, Option<Uuid>), Problem> {
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit {limit} is out of range: 1 to 1000"
        )));
    }
    if let Some(sc) = &scenario {
        sc.parse::<Scenario>().map_err(Problem::bad_request)?;
    }
    let page = s
        .service
        .projection()
        .drills(before, limit, scenario)
        .await
        .map_err(store_problem)?;
    let next = (page.len() == limit as usize)
        .then(|| page.last().map(|d| d.drill_id))
        .flatten();
    Ok((page, next))
}

pub(crate) async fn list_drills(
    State(s): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<DrillsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    require_auditor(&s, &headers)?;
    let Query(p) = params.map_err(|e| Problem::bad_request(e.body_text()))?;
    let before = p
        .before
        .as_deref()
        .map(|b| parse_id("drill id", b))
        .transpose()?;
    let (page, next) = drills_page(&s, p.scenario, before, p.limit.unwrap_or(50)).await?;
    Ok(Json(json!({
        "drills": page.iter().map(summary_json).collect::<Vec<_>>(),
        "next": next,
    }))
    .into_response())
}

/// A stored drill read back and checked: the notary's signature over its body, the body's
/// digest, and the ledger's `drill` audit record at its `audit_seq`.
#[derive(Debug, Clone)]
pub(crate) struct DrillView {
    pub stored: StoredDrill,
    pub report: DrillReport,
    /// `Err` says why the signature or digest does not check out.
    pub signature: Result<(), String>,
    /// `None` without an audit record.
    pub audit_record_matches: Option<bool>,
}

pub(crate) async fn load_drill(s: &AppState, id: Uuid) -> Result<DrillView, Problem> {
    let stored = s
        .service
        .projection()
        .drill(id)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| Problem::not_found(format!("no drill {id}")))?;
    let report: DrillReport = serde_json::from_slice(&stored.body)
        .map_err(|e| Problem::internal(format!("the stored drill report does not parse: {e}")))?;
    let notary = VerifierKey::of(s.service.notary().as_ref());
    let signature =
        crate::drill::verify_report(&stored.body, &stored.signature, &notary).and_then(|d| {
            if d == stored.digest {
                Ok(())
            } else {
                Err("the stored digest is not the body's".into())
            }
        });
    let audit_record_matches = stored.audit_seq.map(|seq| {
        s.service
            .receipt(seq)
            .ok()
            .and_then(|r| crate::drill::audited_drill_digest(&r.record.decision))
            == Some(stored.digest)
    });
    Ok(DrillView {
        stored,
        report,
        signature,
        audit_record_matches,
    })
}

fn view_json(v: &DrillView) -> Value {
    json!({
        "drill_id": v.stored.drill_id,
        "report": v.report,
        "digest": b64(&v.stored.digest),
        "signature": {
            "key_id": v.stored.key_id,
            "alg": v.stored.alg,
            "value": b64(&v.stored.signature),
            "valid": v.signature.is_ok(),
            "problem": v.signature.as_ref().err(),
        },
        "audit_seq": v.stored.audit_seq,
        "audit_record_matches": v.audit_record_matches,
    })
}

pub(crate) async fn get_drill(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    require_auditor(&s, &headers)?;
    let id = parse_id("drill id", &id)?;
    let v = load_drill(&s, id).await?;
    Ok(Json(view_json(&v)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    scenario: String,
    /// Refused: in-place drills run only on a stopped deployment, from the CLI.
    #[serde(default)]
    in_place: bool,
}

pub(crate) async fn run_drill(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let (who, _) = s.tokens.require(&headers, Role::Admin)?;
    let b: RunBody = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("the body must be {{\"scenario\": …}}: {e}")))?;
    let scenario: Scenario = b.scenario.parse().map_err(Problem::bad_request)?;
    if b.in_place {
        return Err(Problem::bad_request(
            "a running service drills a scratch copy only; an in-place drill needs the \
             deployment stopped: triplicate drill run --in-place --config FILE",
        ));
    }
    let drills = s
        .drills
        .clone()
        .ok_or_else(|| Problem::unavailable("this service runs no drills"))?;
    tracing::info!(by = %who, %scenario, "drill requested");
    // A task of its own, so the drill runs to the end (and its report is kept) even if the
    // caller hangs up: a drill cut short would leave its scratch copy and no report.
    let out = tokio::spawn(async move { drills.run(DrillOptions::new(scenario)).await })
        .await
        .map_err(|e| Problem::internal(format!("the drill failed: {e}")))?
        .map_err(|e| match e {
            DrillError::Busy => Problem::new(
                StatusCode::CONFLICT,
                "drill-running",
                "A drill is running",
                "another drill is running; drills run one at a time",
            ),
            other => Problem::unavailable(other.to_string()),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "drill_id": out.report.drill_id,
            "report": out.report,
            "digest": b64(&out.digest),
            "audit_seq": out.audit_seq,
            "stored": out.stored,
        })),
    )
        .into_response())
}
