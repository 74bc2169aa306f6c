//! The HTTP API (axum): decisions, the ledger's public endpoints, health, metrics, admin, and
//! the OpenAPI document (`/openapi.json`, see [`crate::openapi`]); and the review pages under
//! `/ui/` ([`crate::ui`], [`UI_ROUTES`]).
//!
//! # Access log
//!
//! Every request is logged once, when its response is ready, as an `info` event with target
//! `triplicate::access` (the application log uses the crates' own targets). Fields: `method`,
//! `path` (the URI path only; the query string is never logged), `route` (the matched route
//! template, when one matched), `status`, `latency_ms` (until the response headers were ready),
//! `caller` and `role` (the bearer token's configured name and role, or those of the review
//! pages' session the request carries, or `anonymous` for both) and `auth` (`none`,
//! `unrecognised`, `ok` or `session`: whether a bearer token was sent and known, or a review
//! session's cookie identified the caller). Tokens, tickets and session ids are never logged.
//!
//! It is on at the default level (`info`). Operators route it with the usual `RUST_LOG`
//! directives: only the access log, `RUST_LOG=warn,triplicate::access=info`; everything but
//! it, `RUST_LOG=info,triplicate::access=off`. With `--log-format json` each line carries
//! `"target":"triplicate::access"`, which log shippers can route to a separate sink.

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use triplicate_core::{KeyId, Timestamp};
use triplicate_projection::{Cursor, DecisionQuery, Projection, TimeRange};
use uuid::Uuid;

use crate::auth::{Role, Tokens};
use crate::problem::Problem;
use crate::service::{Service, SubmitError, SubmitOutcome};

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The tracing target of the access log.
pub const ACCESS_LOG_TARGET: &str = "triplicate::access";

/// Every route the API serves, as (method, axum path). [`router`] is built from this list and
/// `tests/openapi.rs` compares it with the OpenAPI document both ways, so a route cannot be
/// added without being documented, nor documented without being served.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/decisions"),
    ("GET", "/v1/decisions"),
    ("GET", "/v1/decisions/{id}"),
    ("GET", "/v1/ledger/checkpoint"),
    ("GET", "/v1/ledger/tile/{*path}"),
    ("GET", "/v1/ledger/proof/inclusion"),
    ("GET", "/v1/ledger/proof/consistency"),
    ("GET", "/v1/keys/notary"),
    ("POST", "/v1/admin/policies/reload"),
    ("POST", "/v1/admin/crosscheck"),
    ("POST", "/v1/admin/resume"),
    ("GET", "/v1/crosscheck/last"),
    ("GET", "/v1/verification/reports"),
    ("GET", "/v1/verification/reports/{id}"),
    ("POST", "/v1/verification/runs"),
    ("GET", "/v1/verification/repairs/{id}"),
    ("POST", "/v1/verification/repairs/{id}/approve"),
    ("POST", "/v1/verification/repairs/{id}/reject"),
    ("GET", "/v1/drills"),
    ("GET", "/v1/drills/{id}"),
    ("POST", "/v1/drills/runs"),
    ("POST", "/v1/ui/tickets"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

/// The review pages ([`crate::ui`]): HTML for browsers, with a session cookie instead of a
/// bearer token, answering an unauthenticated request with a 303 to the sign-in page rather
/// than a problem. They are not part of the API, so the OpenAPI document leaves them out
/// (`tests/openapi.rs` checks that it does, and that every one is under `/ui/`); the router is
/// built from both lists.
pub const UI_ROUTES: &[(&str, &str)] = &[
    ("GET", "/ui/login"),
    ("POST", "/ui/login"),
    ("POST", "/ui/logout"),
    ("GET", "/ui/reports"),
    ("GET", "/ui/reports/{id}"),
    ("GET", "/ui/drills"),
    ("GET", "/ui/drills/{id}"),
    ("GET", "/ui/repairs/{id}/approve"),
    ("GET", "/ui/repairs/{id}/reject"),
    ("POST", "/ui/repairs/{id}/approve"),
    ("POST", "/ui/repairs/{id}/reject"),
];

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub service: Service,
    pub tokens: Arc<Tokens>,
    /// Whether decision reads need a `reader` token.
    pub restrict_reads: bool,
    /// The cross-verifier, when the service runs one.
    pub crosscheck: Option<Arc<crate::crosscheck::CrossCheck>>,
    /// The recovery drills, when the service runs them.
    pub drills: Option<Arc<crate::drill::Drills>>,
    /// The review pages' sign-in tickets and sessions.
    pub ui: Arc<crate::ui::UiSessions>,
}

/// The handler of one entry of [`ROUTES`].
fn endpoint(method: &str, path: &str) -> MethodRouter<AppState> {
    match (method, path) {
        ("POST", "/v1/decisions") => post(submit),
        ("GET", "/v1/decisions") => get(list),
        ("GET", "/v1/decisions/{id}") => get(get_decision),
        ("GET", "/v1/ledger/checkpoint") => get(checkpoint),
        ("GET", "/v1/ledger/tile/{*path}") => get(tile),
        ("GET", "/v1/ledger/proof/inclusion") => get(inclusion),
        ("GET", "/v1/ledger/proof/consistency") => get(consistency),
        ("GET", "/v1/keys/notary") => get(notary_key),
        ("POST", "/v1/admin/policies/reload") => post(reload_policy),
        ("POST", "/v1/admin/crosscheck") => post(crosscheck_run),
        ("POST", "/v1/admin/resume") => post(resume_writes),
        ("GET", "/v1/crosscheck/last") => get(crosscheck_last),
        ("GET", "/v1/drills") => get(crate::drills_http::list_drills),
        ("GET", "/v1/drills/{id}") => get(crate::drills_http::get_drill),
        ("POST", "/v1/drills/runs") => post(crate::drills_http::run_drill),
        ("GET", "/v1/verification/reports") => get(crate::verification_http::list_reports),
        ("GET", "/v1/verification/reports/{id}") => get(crate::verification_http::get_report),
        ("POST", "/v1/verification/runs") => post(crate::verification_http::post_run),
        ("GET", "/v1/verification/repairs/{id}") => get(crate::verification_http::get_repair),
        ("POST", "/v1/verification/repairs/{id}/approve") => {
            post(crate::verification_http::approve)
        }
        ("POST", "/v1/verification/repairs/{id}/reject") => post(crate::verification_http::reject),
        ("POST", "/v1/ui/tickets") => post(crate::ui::issue_ticket),
        ("GET", "/healthz") => get(|| async { "ok\n" }),
        ("GET", "/readyz") => get(readyz),
        ("GET", "/metrics") => get(metrics),
        ("GET", "/openapi.json") => get(openapi_json),
        // A programming error that every test building the router finds.
        _ => panic!("ROUTES lists {method} {path}, which has no handler"),
    }
}

/// The router: [`ROUTES`], [`UI_ROUTES`] (with the pages' security headers), a 404 for
/// anything else (a page under `/ui/`, else problem+json), the body limit and the access log.
pub fn router(state: AppState) -> Router {
    let mut app = Router::new();
    for (method, path) in ROUTES {
        // Routes on one path are merged by axum (`GET` and `POST /v1/decisions`).
        app = app.route(path, endpoint(method, path));
    }
    let mut ui = Router::new();
    for (method, path) in UI_ROUTES {
        ui = ui.route(path, crate::ui::endpoint(method, path));
    }
    let ui = ui.layer(middleware::map_response(crate::ui::security_headers));
    app.merge(ui)
        .fallback(|req: Request| async move {
            let path = req.uri().path();
            if path == "/ui" || path.starts_with("/ui/") {
                crate::ui::not_found()
            } else {
                Problem::not_found("no such endpoint").into_response()
            }
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), access_log))
        .with_state(state)
}

/// Logs one line per request under [`ACCESS_LOG_TARGET`]; see the module docs.
async fn access_log(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let sent_token = req.headers().contains_key(header::AUTHORIZATION);
    let caller = match s.tokens.identify(req.headers()) {
        Some(c) => Some((c, "ok")),
        None => crate::ui::session_caller(&s, req.headers()).map(|c| (c, "session")),
    };
    let response = next.run(req).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1e3;
    let (name, role, auth) = match &caller {
        Some(((name, role), how)) => (name.as_str(), role.as_str(), *how),
        None if sent_token => ("anonymous", "anonymous", "unrecognised"),
        None => ("anonymous", "anonymous", "none"),
    };
    tracing::info!(
        target: ACCESS_LOG_TARGET,
        method = method.as_str(),
        path,
        route = route.as_deref(),
        status = response.status().as_u16(),
        latency_ms,
        caller = name,
        role,
        auth,
        "request"
    );
    response
}

/// The OpenAPI document, built once.
static OPENAPI: LazyLock<Bytes> = LazyLock::new(|| {
    Bytes::from(
        serde_json::to_vec(&crate::openapi::document())
            // Serialising a `Value` cannot fail.
            .unwrap_or_default(),
    )
});

async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI.clone(),
    )
        .into_response()
}

fn submit_problem(e: SubmitError) -> Problem {
    match e {
        SubmitError::Invalid(v) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-submission",
            "The submission is malformed",
            v.to_string(),
        )
        .with(&json!({ "problems": v.problems.iter().map(|p| json!({"field": p.field, "reason": p.reason})).collect::<Vec<_>>() })),
        SubmitError::Refused(r) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "approvals-refused",
            "The approvals do not satisfy the policy",
            r.to_string(),
        )
        .with(&json!({ "kind": r.kind, "kind_refused": r.kind_refused, "approvals": r.approvals, "unmet": r.unmet })),
        SubmitError::Conflict { id, seq } => Problem::new(
            StatusCode::CONFLICT,
            "decision-id-conflict",
            "The decision id is already recorded with different content",
            format!("decision {id} is already recorded at seq {seq} with different content"),
        )
        .with(&json!({ "decision_id": id, "seq": seq })),
        SubmitError::Unavailable(d) => Problem::unavailable(d),
        SubmitError::Frozen(reason) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "writes-frozen",
            "Writes are frozen until an admin resumes them",
            format!("the cross-verifier found the ledger at fault; writes are refused until an admin calls POST /v1/admin/resume: {reason}"),
        ),
        other => Problem::internal(other.to_string()),
    }
}

async fn submit(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (who, _) = match s.tokens.require(&headers, Role::Submitter) {
        Ok(x) => x,
        Err(p) => return p.into_response(),
    };
    match s.service.submit(&body).await {
        Ok(SubmitOutcome::Created(a)) => {
            tracing::info!(who, seq = a.receipt.seq, "decision recorded");
            (StatusCode::CREATED, Json(a)).into_response()
        }
        Ok(SubmitOutcome::Existing(a)) => (StatusCode::OK, Json(a)).into_response(),
        Err(e) => submit_problem(e).into_response(),
    }
}

fn check_read(s: &AppState, headers: &HeaderMap) -> Result<(), Problem> {
    if s.restrict_reads {
        s.tokens.require(headers, Role::Reader)?;
    }
    Ok(())
}

async fn get_decision(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    check_read(&s, &headers)?;
    let id = Uuid::parse_str(&id)
        .map_err(|e| Problem::bad_request(format!("{id:?} is not a decision id: {e}")))?;
    let seq = s
        .service
        .seq_of(id)
        .ok_or_else(|| Problem::not_found(format!("no decision {id} is recorded")))?;
    let receipt = s.service.receipt(seq).map_err(submit_problem)?;
    Ok(Json(json!({
        "receipt": receipt,
        "stores": s.service.status_of(seq),
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    kind: Option<String>,
    from: Option<String>,
    to: Option<String>,
    approver: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(s): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    check_read(&s, &headers)?;
    let Query(p) = params.map_err(|e| Problem::bad_request(e.body_text()))?;
    let time = |v: &Option<String>, name: &str| -> Result<Option<Timestamp>, Problem> {
        v.as_deref()
            .map(|t| {
                t.parse::<Timestamp>()
                    .map_err(|e| Problem::bad_request(format!("{name}: {e}")))
            })
            .transpose()
    };
    let from = time(&p.from, "from")?;
    let to = time(&p.to, "to")?;
    let mut q = DecisionQuery::new();
    if let Some(k) = p.kind {
        q = q.kind(k);
    }
    if from.is_some() || to.is_some() {
        q = q.recorded(TimeRange { from, until: to });
    }
    if let Some(a) = p.approver {
        let key: KeyId = a
            .parse()
            .map_err(|e| Problem::bad_request(format!("approver: {e}")))?;
        q = q.approver(key);
    }
    if let Some(text) = p.q {
        q = q.title_words(text);
    }
    if let Some(c) = p.cursor {
        q = q.after(Cursor::from_string(c));
    }
    q = q.limit(p.limit.unwrap_or(0));
    let page = s
        .service
        .projection()
        .query(&q)
        .await
        .map_err(|e| match e {
            triplicate_projection::ProjectionError::InvalidQuery(d) => Problem::bad_request(d),
            other => Problem::unavailable(format!("the projection cannot answer: {other}")),
        })?;
    Ok(Json(json!({
        "decisions": page.records,
        "next": page.next.map(|c| c.to_string()),
    }))
    .into_response())
}

/// Ledger responses are public and, except the checkpoint, immutable.
fn cacheable(content_type: &'static str, body: impl IntoResponse, immutable: bool) -> Response {
    let cache = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}

async fn checkpoint(State(s): State<AppState>) -> Response {
    cacheable(
        "text/plain; charset=utf-8",
        s.service.ledger().checkpoint().note,
        false,
    )
}

/// `/v1/ledger/tile/...`: the C2SP tlog-tiles paths (`tile/<L>/<N>[.p/<W>]`,
/// `tile/entries/<N>[.p/<W>]`), served from the ledger's files.
async fn tile(State(s): State<AppState>, Path(path): Path<String>) -> Result<Response, Problem> {
    let Some(dir) = s.service.ledger_dir() else {
        return Err(Problem::not_found("this ledger is not stored as tiles"));
    };
    // Only the tile grammar: digits, 'x' groups, 'entries', '.p', '/'. No '..', no absolute path.
    let ok = !path.is_empty()
        && path.len() < 128
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != ".."
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
        });
    if !ok {
        return Err(Problem::bad_request(format!("{path:?} is not a tile path")));
    }
    let file = dir.join("tile").join(&path);
    match tokio::fs::read(&file).await {
        Ok(bytes) => Ok(cacheable(
            "application/octet-stream",
            bytes,
            !path.contains(".p/"),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Problem::not_found(format!("no tile {path}")))
        }
        Err(e) => Err(Problem::internal(format!("read tile {path}: {e}"))),
    }
}

#[derive(Debug, Deserialize)]
struct InclusionParams {
    index: u64,
    size: Option<u64>,
}

fn b64(h: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(h)
}

async fn inclusion(
    State(s): State<AppState>,
    q: Result<Query<InclusionParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(q) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    let ledger = s.service.ledger();
    let size = q.size.unwrap_or_else(|| ledger.tree_size());
    let proof = ledger
        .inclusion_proof(q.index, size)
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    let leaf = ledger
        .leaf_hashes(q.index, q.index + 1)
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    Ok(cacheable(
        "application/json",
        Json(json!({
            "index": q.index,
            "tree_size": size,
            "leaf_hash": leaf.first().map(|h| b64(h)),
            "proof": proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
        })),
        q.size.is_some(),
    ))
}

#[derive(Debug, Deserialize)]
struct ConsistencyParams {
    from: u64,
    to: Option<u64>,
}

async fn consistency(
    State(s): State<AppState>,
    q: Result<Query<ConsistencyParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(q) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    let ledger = s.service.ledger();
    let to = q.to.unwrap_or_else(|| ledger.tree_size());
    let proof = ledger
        .consistency_proof(q.from, to)
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    Ok(cacheable(
        "application/json",
        Json(json!({
            "from": q.from,
            "to": to,
            "proof": proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
        })),
        q.to.is_some(),
    ))
}

async fn notary_key(State(s): State<AppState>) -> Result<Response, Problem> {
    let notary = s.service.notary();
    let vkey = triplicate_keys::note::note_verifier_key(notary.name(), &notary.public_key())
        .map_err(|e| Problem::internal(e.to_string()))?;
    Ok(cacheable(
        "application/json",
        Json(json!({
            "name": notary.name(),
            "key_id": notary.key_id(),
            "algorithm": notary.algorithm(),
            "public_key": notary.public_key().to_base64(),
            "note_verifier_key": vkey,
        })),
        false,
    ))
}

async fn reload_policy(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, Problem> {
    s.tokens.require(&headers, Role::Admin)?;
    match s.service.reload_policy() {
        Ok(()) => Ok(Json(json!({ "reloaded": true })).into_response()),
        Err(e) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-policy",
            "The new policy is invalid; the old one stays in force",
            e.to_string(),
        )
        .with(&json!({ "problems": e.problems }))),
    }
}

async fn readyz(State(s): State<AppState>) -> Response {
    let h = s.service.health();
    let ready = h.accepting_writes;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(h)).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    let h = s.service.health();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.service.metrics().render(&h),
    )
        .into_response()
}

/// An auditor or an admin: the token's name and role.
pub(crate) fn require_auditor(
    s: &AppState,
    headers: &HeaderMap,
) -> Result<(String, Role), Problem> {
    let (name, role) = s.tokens.require(headers, Role::Reader)?;
    if matches!(role, Role::Auditor | Role::Admin) {
        Ok((name, role))
    } else {
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            format!(
                "this needs an auditor or admin token; the token sent is a {}'s",
                role.as_str()
            ),
        ))
    }
}

pub(crate) fn checker(s: &AppState) -> Result<&Arc<crate::crosscheck::CrossCheck>, Problem> {
    s.crosscheck
        .as_ref()
        .ok_or_else(|| Problem::unavailable("this service runs no cross-verifier"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CrosscheckParams {
    #[serde(default)]
    full: bool,
}

async fn crosscheck_run(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    require_auditor(&s, &headers)?;
    let params: CrosscheckParams = if body.iter().all(u8::is_ascii_whitespace) {
        CrosscheckParams::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("the body: {e}")))?
    };
    let report = crate::verification_http::run_detached(&s, params.full).await?;
    Ok(Json(&report.report).into_response())
}

async fn crosscheck_last(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    require_auditor(&s, &headers)?;
    match checker(&s)?.last() {
        Some(run) => Ok(Json(&run.report).into_response()),
        None => Err(Problem::not_found("no cross-check has run yet")),
    }
}

async fn resume_writes(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, Problem> {
    let (who, _) = s.tokens.require(&headers, Role::Admin)?;
    let was = s.service.resume_writes();
    tracing::warn!(who, was_frozen = was.is_some(), "writes resumed");
    Ok(Json(json!({ "accepting_writes": true, "was_frozen": was })).into_response())
}
