//! The review pages: HTML rendered on the server for auditors and admins (issue 5, "Reports
//! and review"). No JavaScript at all; a little inline CSS.
//!
//! | route | who | |
//! |---|---|---|
//! | `POST /v1/ui/tickets` | bearer: auditor, admin | a single-use sign-in ticket, valid 60 s (JSON; in the OpenAPI document) |
//! | `GET /ui/login?ticket=T&next=/ui/…` | anyone with a ticket | redeems it: a session cookie, then 303 to `next` |
//! | `GET /ui/login`, `POST /ui/login` | anyone | a form to paste a token into, for people without the CLI |
//! | `POST /ui/logout` | a session | ends it |
//! | `GET /ui/reports?before=` | a session | the runs, newest first, 50 a page |
//! | `GET /ui/reports/{id}` | a session | one run: summary, checkpoint, digest and audit record, discrepancies by class, repairs |
//! | `GET /ui/repairs/{id}/approve`, `/reject` | an auditor's session | the statement an auditor's key signs, and a form for the signature |
//! | `POST /ui/repairs/{id}/approve`, `/reject` | an auditor's session | records the signed verdict |
//!
//! The pages read and record through the functions the JSON endpoints use
//! ([`crate::verification_http`]): what a page shows is what the API serves, and a verdict sent
//! through a form is checked exactly as one sent to the API.
//!
//! # Sessions
//!
//! A browser sends no bearer token on a navigation, so a token is exchanged for a session:
//! either a ticket (`POST /v1/ui/tickets` with the token, then open
//! `/ui/login?ticket=T&next=/ui/reports`) or the token pasted into the sign-in form. A session
//! is a random 256-bit id in the cookie `triplicate_ui` (`HttpOnly; SameSite=Strict;
//! Path=/ui`), mapped in memory to the token's name and role for 8 hours; the service keeps
//! only the SHA-256 of ids and tickets, and a restart signs everyone out. Tickets work once.
//!
//! # What keeps the pages safe
//!
//! - Every dynamic value is HTML-escaped ([`escape`]) when written into a page; attribute
//!   values are always double-quoted.
//! - Every response under `/ui/` carries [`CONTENT_SECURITY_POLICY`] (no script can run, forms
//!   post only to this origin, no framing), `X-Content-Type-Options: nosniff`,
//!   `Cache-Control: no-store`, `Referrer-Policy: no-referrer` and `X-Frame-Options: DENY`.
//! - Every form that changes something carries the session's random CSRF token in a hidden
//!   field, compared in constant time; POSTs a browser marks as coming from another site
//!   (`Sec-Fetch-Site` other than `same-origin` or `none`) are refused, which also stops a
//!   foreign page from signing a visitor in with its own token.
//! - `next` is followed only when it is a plain path under `/ui/` (no `//`, no dot segments,
//!   no escapes): no open redirect.
//! - Only auditors review, as the API enforces: an admin's session sees the pages without
//!   review controls and is refused the review forms.
//! - Signing happens with the auditor's key outside the browser: the page shows the exact
//!   statement to sign and takes the signature; it never sees a private key.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Form, Json};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use triplicate_core::{Algorithm, Hash, KeyId, Timestamp};
use triplicate_projection::reports::{ReportSummary, ReviewRow};
use triplicate_verifier::review::{ReviewStatement, Verdict, AUDITOR_GROUP};
use triplicate_verifier::{Class, Discrepancy};
use uuid::Uuid;

use crate::auth::Role;
use crate::http::{require_auditor, AppState};
use crate::problem::Problem;
use crate::verification_http::{
    self as vh, ActionState, RepairView, ReportView, VerdictBody, DEFAULT_REPORTS_PAGE,
};

/// The session cookie.
pub const SESSION_COOKIE: &str = "triplicate_ui";

/// How long a sign-in ticket can be redeemed.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(60);

/// How long a session lasts (it does not slide: after this, sign in again).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// The `Content-Security-Policy` of every UI response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     img-src 'self'; form-action 'self'; frame-ancestors 'none'";

/// The background of the discrepancy tables' header rows. A colour no other element of the
/// pages uses, so a screenshot shows whether a discrepancy table rendered (`tests/ui.rs`).
pub const DISCREPANCY_HEADER_RGB: [u8; 3] = [0x5b, 0x2a, 0x86];

/// Where a sign-in goes when it names no (acceptable) `next`.
const DEFAULT_PAGE: &str = "/ui/reports";

/// The most tickets, and separately the most sessions, open at once. More than any real team
/// needs; it bounds the memory a flood of ticket requests can take.
const MAX_OPEN: usize = 10_000;

// ---------------------------------------------------------------------------------------------
// Escaping.

/// `s` with `&`, `<`, `>`, `"` and `'` replaced by character references: safe as element
/// content and as a quoted attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let _ = write_escaped(&mut out, s);
    out
}

fn write_escaped(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    let mut last = 0;
    for (i, c) in s.char_indices() {
        let replacement = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&#39;",
            _ => continue,
        };
        out.write_str(&s[last..i])?;
        out.write_str(replacement)?;
        last = i + c.len_utf8();
    }
    out.write_str(&s[last..])
}

/// A value that is HTML-escaped when formatted: `write!(out, "<td>{}</td>", e(&x))`.
struct Esc<T>(T);

impl<T: fmt::Display> fmt::Display for Esc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, &self.0.to_string())
    }
}

fn e<T: fmt::Display>(v: T) -> Esc<T> {
    Esc(v)
}

/// Percent-encodes everything but unreserved characters and `/`, for a query value.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `s` as one POSIX shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn b64(bytes: &[u8]) -> String {
    vh::b64(bytes)
}

// ---------------------------------------------------------------------------------------------
// Tickets and sessions.

/// Who a ticket or session stands for.
#[derive(Clone)]
struct Grant {
    name: String,
    role: Role,
    expires: Instant,
}

#[derive(Clone)]
struct Session {
    grant: Grant,
    /// The value every form of this session must carry.
    csrf: String,
}

#[derive(Default)]
struct Tables {
    /// By SHA-256 of the ticket.
    tickets: HashMap<[u8; 32], Grant>,
    /// By SHA-256 of the session id.
    sessions: HashMap<[u8; 32], Session>,
}

/// Sign-in tickets and sessions of the review pages, in memory.
pub struct UiSessions {
    ticket_lifetime: Duration,
    session_lifetime: Duration,
    tables: Mutex<Tables>,
}

impl fmt::Debug for UiSessions {
    // Never the secrets: only how many there are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.lock();
        f.debug_struct("UiSessions")
            .field("ticket_lifetime", &self.ticket_lifetime)
            .field("session_lifetime", &self.session_lifetime)
            .field("tickets", &t.tickets.len())
            .field("sessions", &t.sessions.len())
            .finish()
    }
}

impl Default for UiSessions {
    fn default() -> Self {
        UiSessions::new(TICKET_LIFETIME, SESSION_LIFETIME)
    }
}

/// Why a ticket or session could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UiError {
    #[error("{MAX_OPEN} {what} are open already; try again later")]
    Full { what: &'static str },
}

/// 256 random bits, URL-safe base64 without padding (43 characters).
fn random_secret() -> String {
    let mut raw = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Equality of two secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    digest(a)
        .iter()
        .zip(digest(b).iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl UiSessions {
    /// Tickets valid for `ticket_lifetime`, sessions for `session_lifetime` (the service uses
    /// [`TICKET_LIFETIME`] and [`SESSION_LIFETIME`]; tests shorten them).
    pub fn new(ticket_lifetime: Duration, session_lifetime: Duration) -> UiSessions {
        UiSessions {
            ticket_lifetime,
            session_lifetime,
            tables: Mutex::new(Tables::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long a ticket can be redeemed.
    pub fn ticket_lifetime(&self) -> Duration {
        self.ticket_lifetime
    }

    /// A new single-use ticket standing for `name` with `role`.
    pub fn issue_ticket(&self, name: &str, role: Role) -> Result<String, UiError> {
        let now = Instant::now();
        let mut t = self.lock();
        t.tickets.retain(|_, g| g.expires > now);
        if t.tickets.len() >= MAX_OPEN {
            return Err(UiError::Full {
                what: "sign-in tickets",
            });
        }
        let ticket = random_secret();
        t.tickets.insert(
            digest(&ticket),
            Grant {
                name: name.to_owned(),
                role,
                expires: now + self.ticket_lifetime,
            },
        );
        Ok(ticket)
    }

    /// Who `ticket` stands for, if it is known and unexpired; it is spent either way.
    fn redeem(&self, ticket: &str) -> Option<Grant> {
        let grant = self.lock().tickets.remove(&digest(ticket))?;
        (grant.expires > Instant::now()).then_some(grant)
    }

    /// A new session for `name` with `role`: its id.
    fn open(&self, name: &str, role: Role) -> Result<String, UiError> {
        let now = Instant::now();
        let mut t = self.lock();
        t.sessions.retain(|_, s| s.grant.expires > now);
        if t.sessions.len() >= MAX_OPEN {
            return Err(UiError::Full { what: "sessions" });
        }
        let id = random_secret();
        t.sessions.insert(
            digest(&id),
            Session {
                grant: Grant {
                    name: name.to_owned(),
                    role,
                    expires: now + self.session_lifetime,
                },
                csrf: random_secret(),
            },
        );
        Ok(id)
    }

    /// The unexpired session with this id.
    fn find(&self, id: &str) -> Option<Session> {
        let key = digest(id);
        let mut t = self.lock();
        match t.sessions.get(&key) {
            Some(s) if s.grant.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                t.sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    fn close(&self, id: &str) {
        self.lock().sessions.remove(&digest(id));
    }
}

/// The signed-in person looking at a page.
#[derive(Debug, Clone)]
struct Viewer {
    /// The session id (the cookie's value).
    id: String,
    name: String,
    role: Role,
    csrf: String,
}

impl Viewer {
    /// Whether this person may approve or reject repairs.
    fn reviews(&self) -> bool {
        self.role == Role::Auditor
    }
}

/// The session cookie's value, if the request carries one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
}

fn viewer(s: &AppState, headers: &HeaderMap) -> Option<Viewer> {
    let id = session_cookie(headers)?;
    let session = s.ui.find(id)?;
    Some(Viewer {
        id: id.to_owned(),
        name: session.grant.name,
        role: session.grant.role,
        csrf: session.csrf,
    })
}

/// The name and role of the session a request carries, for the access log.
pub(crate) fn session_caller(s: &AppState, headers: &HeaderMap) -> Option<(String, Role)> {
    let id = session_cookie(headers)?;
    s.ui.find(id).map(|x| (x.grant.name, x.grant.role))
}

// ---------------------------------------------------------------------------------------------
// Routes.

/// The handler of one entry of [`crate::http::UI_ROUTES`].
pub(crate) fn endpoint(method: &str, path: &str) -> MethodRouter<AppState> {
    match (method, path) {
        ("GET", "/ui/login") => get(login_form),
        ("POST", "/ui/login") => post(login_submit),
        ("POST", "/ui/logout") => post(logout),
        ("GET", "/ui/reports") => get(reports),
        ("GET", "/ui/reports/{id}") => get(report),
        ("GET", "/ui/drills") => get(drills),
        ("GET", "/ui/drills/{id}") => get(drill),
        ("GET", "/ui/repairs/{id}/approve") => get(approve_form),
        ("GET", "/ui/repairs/{id}/reject") => get(reject_form),
        ("POST", "/ui/repairs/{id}/approve") => post(approve_submit),
        ("POST", "/ui/repairs/{id}/reject") => post(reject_submit),
        // A programming error that every test building the router finds.
        _ => panic!("UI_ROUTES lists {method} {path}, which has no handler"),
    }
}

/// Sets the headers every UI response carries (see the module docs).
pub(crate) fn harden(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// [`harden`] as a middleware for the UI routes.
pub(crate) async fn security_headers(r: Response) -> Response {
    harden(r)
}

/// The answer to a path under `/ui/` that names no page.
pub(crate) fn not_found() -> Response {
    harden(problem_page(
        &Problem::not_found("there is no such page"),
        None,
    ))
}

// ---------------------------------------------------------------------------------------------
// Responses.

fn html(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

fn see_other(location: &str) -> Response {
    let value =
        HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static(DEFAULT_PAGE));
    (StatusCode::SEE_OTHER, [(header::LOCATION, value)]).into_response()
}

/// 303 to the sign-in page, coming back to `next` afterwards.
fn to_login(next: &str) -> Response {
    see_other(&format!("/ui/login?next={}", percent_encode(next)))
}

/// Whether a sign-in may send the browser on to `next`: a plain path under `/ui/` (letters,
/// digits and `/-_.~` only; no empty or dot segment), never the sign-in page itself, with an
/// optional query of letters, digits and `-_.~=&%:+,`.
pub fn is_safe_next(next: &str) -> bool {
    let (path, query) = next.split_once('?').unwrap_or((next, ""));
    next.len() <= 1024
        && path.starts_with("/ui/")
        && !path.starts_with("/ui/login")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
        && path
            .split('/')
            .skip(1)
            .all(|seg| !seg.is_empty() && !seg.starts_with('.'))
        && query
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~=&%:+,".contains(&b))
}

fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if is_safe_next(n) => n,
        _ => DEFAULT_PAGE,
    }
}

fn forbidden(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
}

/// A POST a browser says came from another site (`Sec-Fetch-Site`).
fn foreign_post(headers: &HeaderMap) -> Option<Problem> {
    let site = headers
        .get("sec-fetch-site")?
        .to_str()
        .unwrap_or("cross-site");
    (!matches!(site, "same-origin" | "none")).then(|| {
        forbidden(format!(
            "this form was sent from another site (Sec-Fetch-Site: {site}); open the review \
             pages themselves and send it from there"
        ))
    })
}

fn csrf_refused() -> Problem {
    forbidden(
        "the form does not carry this session's CSRF token; reload the page and send it again",
    )
}

const STYLE: &str = "\
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1f2328;background:#fff}\
header{display:flex;gap:1em;align-items:center;padding:.6em 1.2em;background:#24292f;color:#fff}\
header a{color:#fff;font-weight:600;text-decoration:none}header .who{margin-left:auto}\
main{padding:1em 1.2em}h1{font-size:1.5em;margin:.2em 0 .6em}h2{font-size:1.2em;margin:1.4em 0 .5em}\
h3{font-size:1.05em;margin:1em 0 .4em}\
table{border-collapse:collapse;margin:.3em 0 1em}td,th{border:1px solid #d0d7de;padding:.3em .5em;\
text-align:left;vertical-align:top}th{background:#f6f8fa}\
table.wide{width:100%}table.kv th{width:14em}\
table.disc thead tr,table.disc thead th{background:#5b2a86;color:#fff;border-color:#5b2a86}\
code,pre{font:13px/1.4 ui-monospace,monospace;word-break:break-all}\
pre{white-space:pre-wrap;background:#f6f8fa;border:1px solid #d0d7de;padding:.6em}\
.badge{display:inline-block;padding:0 .5em;border-radius:1em;font-size:.85em;font-weight:600;color:#fff}\
.b-clean{background:#1a7f37}.b-lag{background:#6e7781}.b-minor{background:#9a6700}\
.b-major{background:#bc4c00}.b-critical{background:#cf222e}\
.status{font-weight:600}.error{color:#cf222e;font-weight:600}.muted{color:#656d76}\
a.button,button{display:inline-block;padding:.25em .8em;border:1px solid #1f2328;border-radius:.3em;\
background:#f6f8fa;color:#1f2328;font:inherit;text-decoration:none;cursor:pointer}\
a.approve{background:#1a7f37;border-color:#1a7f37;color:#fff}\
a.reject{background:#cf222e;border-color:#cf222e;color:#fff}\
form.inline{display:inline}label{display:block;margin:.5em 0 .2em;font-weight:600}\
input[type=text],input[type=password],select,textarea{font:inherit;width:40em;max-width:100%}\
textarea{height:5em}";

/// A whole page: `main` is already HTML (every dynamic value in it escaped).
fn page(title: &str, viewer: Option<&Viewer>, main: &str) -> String {
    let mut out = String::with_capacity(main.len() + 4096);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{} · Triplicate</title>\
         <style>{STYLE}</style></head><body><header><a href=\"/ui/reports\">Triplicate · \
         review</a><a href=\"/ui/reports\">Verification runs</a><a href=\"/ui/drills\">\
         Recovery drills</a>",
        e(title)
    );
    if let Some(v) = viewer {
        let _ = write!(
            out,
            "<span class=\"who\">{} ({})</span><form class=\"inline\" method=\"post\" \
             action=\"/ui/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form>",
            e(&v.name),
            e(v.role.as_str()),
            e(&v.csrf)
        );
    }
    let _ = writeln!(out, "</header><main>{main}</main></body></html>");
    out
}

/// A problem as a page, with its status; `back` is a link (href, text) to offer.
fn problem_page_with(p: &Problem, viewer: Option<&Viewer>, back: Option<(&str, &str)>) -> Response {
    let (href, text) = back.unwrap_or((DEFAULT_PAGE, "Back to the reports"));
    let main = format!(
        "<h1>{}</h1><p class=\"error\">{}</p><p><a href=\"{}\">{}</a></p>",
        e(p.title),
        e(&p.detail),
        e(href),
        e(text)
    );
    html(p.status, page(p.title, viewer, &main))
}

fn problem_page(p: &Problem, viewer: Option<&Viewer>) -> Response {
    problem_page_with(p, viewer, None)
}

/// A 303 to the sign-in page that comes back to this request's page.
fn sign_in_first(uri: &OriginalUri) -> Response {
    let here = uri
        .0
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or(DEFAULT_PAGE);
    to_login(here)
}

// ---------------------------------------------------------------------------------------------
// Signing in and out.

/// `POST /v1/ui/tickets`: a single-use ticket for the caller's token (auditor or admin).
pub(crate) async fn issue_ticket(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let (who, role) = require_auditor(&s, &headers)?;
    let ticket =
        s.ui.issue_ticket(&who, role)
            .map_err(|e| Problem::unavailable(e.to_string()))?;
    let lifetime = s.ui.ticket_lifetime();
    let expires_at = Timestamp::from_unix_nanos(
        Timestamp::now().unix_nanos() + i128::try_from(lifetime.as_nanos()).unwrap_or(0),
    )
    .map_err(|e| Problem::internal(format!("the ticket's expiry: {e}")))?;
    tracing::info!(
        who,
        role = role.as_str(),
        "review pages: sign-in ticket issued"
    );
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "ticket": ticket,
            "expires_at": expires_at,
            // Whole seconds, rounded up.
            "expires_in": lifetime.as_millis().div_ceil(1000),
            "login_path": format!("/ui/login?ticket={ticket}"),
        })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct LoginParams {
    ticket: Option<String>,
    next: Option<String>,
}

fn login_page(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let mut main = String::from("<h1>Sign in to the review pages</h1>");
    if let Some(error) = error {
        let _ = write!(main, "<p class=\"error\">{}</p>", e(error));
    }
    let _ = write!(
        main,
        "<p>For auditors and admins. Open a one-time sign-in link: <code>POST \
         /v1/ui/tickets</code> with your token answers with a <code>login_path</code> that works \
         once, for {} seconds. Or paste your token here; it is used once to start a session \
         and not kept by the browser. A session lasts {} hours, or until you sign out.</p>\
         <form method=\"post\" action=\"/ui/login\"><input type=\"hidden\" name=\"next\" \
         value=\"{}\"><label for=\"token\">Token</label><input type=\"password\" id=\"token\" \
         name=\"token\" autocomplete=\"off\" required><p><button type=\"submit\">Sign in\
         </button></p></form>",
        TICKET_LIFETIME.as_secs(),
        SESSION_LIFETIME.as_secs() / 3600,
        e(next)
    );
    html(status, page("Sign in", None, &main))
}

/// Opens a session for `grant` and sends the browser to `next` with its cookie.
fn start_session(s: &AppState, name: &str, role: Role, next: &str, how: &str) -> Response {
    match s.ui.open(name, role) {
        Ok(id) => {
            tracing::info!(
                who = name,
                role = role.as_str(),
                how,
                "review pages: signed in"
            );
            let mut r = see_other(next);
            let cookie = format!(
                "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/ui; Max-Age={}",
                s.ui.session_lifetime.as_secs()
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(err) => problem_page(&Problem::unavailable(err.to_string()), None),
    }
}

/// `GET /ui/login`: redeems `ticket` if there is one, else the sign-in form.
async fn login_form(
    State(s): State<AppState>,
    params: Result<Query<LoginParams>, QueryRejection>,
) -> Response {
    let Ok(Query(p)) = params else {
        return login_page(
            StatusCode::BAD_REQUEST,
            DEFAULT_PAGE,
            Some("The address's query is malformed."),
        );
    };
    let next = safe_next(p.next.as_deref());
    let Some(ticket) = p.ticket else {
        return login_page(StatusCode::OK, next, None);
    };
    match s.ui.redeem(&ticket) {
        Some(g) => start_session(&s, &g.name, g.role, next, "ticket"),
        None => login_page(
            StatusCode::UNAUTHORIZED,
            next,
            Some(
                "This sign-in link does not work: a ticket works once, within a minute of being \
                 issued. Ask for a new one, or paste your token below.",
            ),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct TokenLogin {
    token: String,
    #[serde(default)]
    next: String,
}

/// `POST /ui/login`: a pasted token, exchanged for a session.
async fn login_submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<TokenLogin>, FormRejection>,
) -> Response {
    if let Some(p) = foreign_post(&headers) {
        return problem_page(&p, None);
    }
    let Ok(Form(f)) = form else {
        return login_page(
            StatusCode::BAD_REQUEST,
            DEFAULT_PAGE,
            Some("The form is malformed."),
        );
    };
    let next = safe_next(Some(&f.next));
    let mut bearer = HeaderMap::new();
    let known = HeaderValue::from_str(&format!("Bearer {}", f.token.trim()))
        .ok()
        .and_then(|v| {
            bearer.insert(header::AUTHORIZATION, v);
            s.tokens.identify(&bearer)
        });
    match known {
        None => login_page(
            StatusCode::UNAUTHORIZED,
            next,
            Some("That is not a token this service knows."),
        ),
        Some((_, role)) if !matches!(role, Role::Auditor | Role::Admin) => login_page(
            StatusCode::FORBIDDEN,
            next,
            Some(&format!(
                "The review pages are for auditors and admins; that token is a {}'s.",
                role.as_str()
            )),
        ),
        Some((name, role)) => start_session(&s, &name, role, next, "token"),
    }
}

#[derive(Debug, Default, Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/logout`.
async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Response {
    if let Some(p) = foreign_post(&headers) {
        return problem_page(&p, None);
    }
    let Some(v) = viewer(&s, &headers) else {
        return see_other("/ui/login");
    };
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if !same_secret(&csrf, &v.csrf) {
        return problem_page(&csrf_refused(), Some(&v));
    }
    s.ui.close(&v.id);
    tracing::info!(who = v.name, "review pages: signed out");
    let mut r = see_other("/ui/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("triplicate_ui=; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0"),
    );
    r
}

// ---------------------------------------------------------------------------------------------
// The reports.

fn class_badge(class: Option<&str>) -> String {
    match class {
        Some(c) => format!("<span class=\"badge b-{0}\">{0}</span>", e(c)),
        None => "<span class=\"badge b-clean\">clean</span>".to_owned(),
    }
}

fn opt<T: fmt::Display>(v: Option<T>) -> String {
    v.map(|v| e(v).to_string())
        .unwrap_or_else(|| "<span class=\"muted\">—</span>".to_owned())
}

fn hash_cell(h: Option<&Hash>) -> String {
    match h {
        Some(h) => format!("<code>{}</code>", e(b64(h))),
        None => "<span class=\"muted\">none</span>".to_owned(),
    }
}

#[derive(Debug, Deserialize)]
struct ListParams {
    before: Option<String>,
}

/// `GET /ui/reports`.
async fn reports(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, Response> {
    let v = viewer(&s, &headers).ok_or_else(|| sign_in_first(&uri))?;
    let shown = |p: Problem| problem_page(&p, Some(&v));
    let Query(params) = params.map_err(|r| shown(Problem::bad_request(r.body_text())))?;
    let before = params
        .before
        .as_deref()
        .map(|b| vh::parse_id("run id", b))
        .transpose()
        .map_err(shown)?;
    let (runs, next) = vh::reports_page(&s, before, DEFAULT_REPORTS_PAGE)
        .await
        .map_err(shown)?;
    let main = render_list(&runs, next, before.is_some());
    Ok(html(
        StatusCode::OK,
        page("Verification runs", Some(&v), &main),
    ))
}

fn render_list(runs: &[ReportSummary], next: Option<Uuid>, older: bool) -> String {
    let mut out = String::from("<h1>Verification runs</h1>");
    if runs.is_empty() {
        out.push_str("<p>No run is stored yet.</p>");
    } else {
        out.push_str(
            "<table class=\"wide runs\"><thead><tr><th>run</th><th>mode</th><th>finished</th>\
             <th>lag</th><th>minor</th><th>major</th><th>critical</th><th>worst</th>\
             <th>pending repairs</th><th>audit seq</th></tr></thead><tbody>",
        );
        for r in runs {
            let _ = write!(
                out,
                "<tr><td><a href=\"/ui/reports/{0}\"><code>{0}</code></a></td><td>{1}</td>\
                 <td>{2}</td><td>{3}</td><td>{4}</td><td>{5}</td><td>{6}</td><td>{7}</td>\
                 <td>{8}</td><td>{9}</td></tr>",
                e(r.run_id),
                e(&r.mode),
                e(r.finished_at),
                r.counts.lag,
                r.counts.minor,
                r.counts.major,
                r.counts.critical,
                class_badge(r.worst_class.as_deref()),
                r.pending_actions,
                opt(r.audit_seq),
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("<p>");
    if older {
        out.push_str("<a href=\"/ui/reports\">Newest runs</a> ");
    }
    if let Some(n) = next {
        let _ = write!(
            out,
            "<a href=\"/ui/reports?before={}\">Older runs</a>",
            e(n)
        );
    }
    out.push_str("</p>");
    out
}

/// `GET /ui/drills`: stored recovery-drill reports, newest first.
async fn drills(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, Response> {
    let v = viewer(&s, &headers).ok_or_else(|| sign_in_first(&uri))?;
    let shown = |p: Problem| problem_page(&p, Some(&v));
    let Query(params) = params.map_err(|r| shown(Problem::bad_request(r.body_text())))?;
    let before = params
        .before
        .as_deref()
        .map(|b| vh::parse_id("drill id", b))
        .transpose()
        .map_err(shown)?;
    let (page_rows, next) = crate::drills_http::drills_page(&s, None, before, DEFAULT_REPORTS_PAGE)
        .await
        .map_err(shown)?;
    let mut out = String::from("<h1>Recovery drills</h1>");
    if page_rows.is_empty() {
        out.push_str(
            "<p>No drill is stored yet. Run one with <code>triplicate drill run --scenario \
             lose-projection</code>, or schedule them in <code>verification.toml</code>.</p>",
        );
    } else {
        out.push_str(
            "<table class=\"wide drills\"><thead><tr><th>drill</th><th>scenario</th>\
             <th>result</th><th>records before</th><th>records after</th><th>detect</th>\
             <th>recover</th><th>discrepancies left</th><th>finished</th><th>audit seq</th>\
             </tr></thead><tbody>",
        );
        for d in &page_rows {
            let _ = write!(
                out,
                "<tr><td><a href=\"/ui/drills/{0}\"><code>{0}</code></a></td><td>{1}</td>\
                 <td>{2}</td><td>{3}</td><td>{4}</td><td>{5}</td><td>{6} ms</td><td>{7}</td>\
                 <td>{8}</td><td>{9}</td></tr>",
                e(d.drill_id),
                e(&d.scenario),
                pass_badge(d.passed),
                d.records_before,
                d.records_after,
                d.detect_ms
                    .map_or_else(|| "—".to_owned(), |m| format!("{m} ms")),
                d.recover_ms,
                d.discrepancies_left,
                e(d.finished_at),
                opt(d.audit_seq),
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("<p>");
    if before.is_some() {
        out.push_str("<a href=\"/ui/drills\">Newest drills</a> ");
    }
    if let Some(n) = next {
        let _ = write!(
            out,
            "<a href=\"/ui/drills?before={}\">Older drills</a>",
            e(n)
        );
    }
    out.push_str("</p>");
    Ok(html(
        StatusCode::OK,
        page("Recovery drills", Some(&v), &out),
    ))
}

fn pass_badge(passed: bool) -> &'static str {
    if passed {
        "<span class=\"badge b-clean\">passed</span>"
    } else {
        "<span class=\"badge b-critical\">FAILED</span>"
    }
}

/// `GET /ui/drills/{id}`: one drill report, its steps, and whether its signature and audit
/// record check out.
async fn drill(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let v = viewer(&s, &headers).ok_or_else(|| sign_in_first(&uri))?;
    let shown =
        |p: Problem| problem_page_with(&p, Some(&v), Some(("/ui/drills", "Back to the drills")));
    let id = vh::parse_id("drill id", &id).map_err(shown)?;
    let d = crate::drills_http::load_drill(&s, id)
        .await
        .map_err(shown)?;
    let r = &d.report;
    let secs = |x: Option<f64>| x.map_or_else(|| "—".to_owned(), |x| format!("{x:.3} s"));
    let mut out = String::new();
    let _ = write!(
        out,
        "<h1>Drill <code>{}</code> {}</h1><table class=\"kv\">\
         <tr><th>scenario</th><td>{}</td></tr>\
         <tr><th>started / finished</th><td>{} / {}</td></tr>\
         <tr><th>records before / after / lost</th><td>{} / {} / {}</td></tr>\
         <tr><th>checkpoint before</th><td>size {}, root <code>{}</code></td></tr>\
         <tr><th>checkpoint after</th><td>size {}, root <code>{}</code></td></tr>\
         <tr><th>time to detect</th><td>{} {}</td></tr>\
         <tr><th>time to recover</th><td>{}</td></tr>\
         <tr><th>discrepancies left</th><td>{}</td></tr>\
         <tr><th>failure</th><td>{}</td></tr>\
         <tr><th>digest</th><td><code>{}</code></td></tr>\
         <tr><th>notary signature</th><td>{}</td></tr>\
         <tr><th>audit record</th><td>{}</td></tr></table>",
        e(r.drill_id),
        pass_badge(r.passed),
        e(r.scenario),
        e(r.started_at),
        e(r.finished_at),
        r.records_before,
        r.records_after,
        r.records_lost,
        r.checkpoint_before.size,
        e(&r.checkpoint_before.root),
        r.checkpoint_after.size,
        e(&r.checkpoint_after.root),
        secs(r.detect_seconds),
        e(r.detected_by.as_deref().unwrap_or("")),
        secs(r.recover_seconds),
        r.discrepancies_left,
        e(r.failure.as_deref().unwrap_or("—")),
        e(b64(&d.stored.digest)),
        match &d.signature {
            Ok(()) => format!("valid (key <code>{}</code>)", e(&d.stored.key_id)),
            Err(why) => format!("<span class=\"error\">INVALID: {}</span>", e(why)),
        },
        match (d.stored.audit_seq, d.audit_record_matches) {
            (Some(seq), Some(true)) => format!("seq {seq}, carries this digest"),
            (Some(seq), _) =>
                format!("<span class=\"error\">seq {seq} does NOT carry this digest</span>"),
            _ => "<span class=\"muted\">none (writes were frozen, or the append failed)</span>"
                .to_owned(),
        },
    );
    out.push_str(
        "<h2>Steps</h2><table class=\"wide steps\"><thead><tr><th>step</th><th>ok</th>\
         <th>seconds</th><th>detail</th></tr></thead><tbody>",
    );
    for st in &r.steps {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td></tr>",
            e(&st.name),
            if st.ok {
                "ok"
            } else {
                "<span class=\"error\">failed</span>"
            },
            st.seconds,
            e(&st.detail)
        );
    }
    out.push_str("</tbody></table><p><a href=\"/ui/drills\">All drills</a></p>");
    Ok(html(StatusCode::OK, page("Recovery drill", Some(&v), &out)))
}

/// `GET /ui/reports/{id}`.
async fn report(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let v = viewer(&s, &headers).ok_or_else(|| sign_in_first(&uri))?;
    let shown = |p: Problem| problem_page(&p, Some(&v));
    let run_id = vh::parse_id("run id", &id).map_err(shown)?;
    let view = vh::load_report(&s, run_id).await.map_err(shown)?;
    let main = render_report(&view, &v);
    Ok(html(
        StatusCode::OK,
        page(&format!("Run {run_id}"), Some(&v), &main),
    ))
}

fn render_report(view: &ReportView, viewer: &Viewer) -> String {
    let r = &view.report;
    let mut out = String::new();
    let _ = write!(
        out,
        "<h1>Run <code>{}</code> {}</h1>",
        e(view.run_id),
        class_badge(r.counts.worst().map(Class::as_str))
    );

    // Half-open in the report; shown inclusive.
    let ranges: Vec<String> = r
        .ranges
        .iter()
        .filter(|x| x.end > x.start)
        .map(|x| format!("{} to {}", x.start, x.end - 1))
        .collect();
    let _ = write!(
        out,
        "<table class=\"kv\"><tbody><tr><th>mode</th><td>{}</td></tr>\
         <tr><th>started</th><td>{}</td></tr><tr><th>finished</th><td>{}</td></tr>\
         <tr><th>lag judged as of</th><td>{}</td></tr>\
         <tr><th>seqs compared</th><td>{}</td></tr>\
         <tr><th>records compared</th><td>{}</td></tr>\
         <tr><th>signatures checked</th><td>{}</td></tr>\
         <tr><th>findings</th><td>lag {}, minor {}, major {}, critical {}</td></tr>\
         </tbody></table>",
        e(serde_json::to_value(r.mode)
            .ok()
            .and_then(|m| m.as_str().map(str::to_owned))
            .unwrap_or_default()),
        e(r.started_at),
        e(r.finished_at),
        e(r.as_of),
        e(ranges.join(", ")),
        r.records_compared,
        r.signatures_checked,
        r.counts.lag,
        r.counts.minor,
        r.counts.major,
        r.counts.critical,
    );

    out.push_str("<h2>Checkpoint</h2><table class=\"kv\"><tbody>");
    for (what, c) in [
        ("verified before (from)", r.checkpoint_old),
        ("verified by this run", r.checkpoint_new),
    ] {
        let cell = match c {
            Some(c) => format!("size {}, root <code>{}</code>", c.size, e(b64(&c.root))),
            None if what.starts_with("verified by") => {
                "<span class=\"error\">none: the checkpoint did not verify</span>".to_owned()
            }
            None => "<span class=\"muted\">none (a first run)</span>".to_owned(),
        };
        let _ = write!(out, "<tr><th>{}</th><td>{cell}</td></tr>", e(what));
    }
    out.push_str("</tbody></table>");

    let audit = match (view.audit_seq, view.audit_record_matches) {
        (Some(seq), Some(true)) => format!(
            "<span class=\"status\">yes</span>: the ledger's audit record at seq {seq} carries \
             this digest"
        ),
        (Some(seq), _) => format!(
            "<span class=\"error\">NO</span>: the ledger's record at seq {seq} does not carry \
             this digest; this stored report is not the one the ledger audited"
        ),
        (None, _) => "<span class=\"error\">no audit record</span>: the digest was not \
                      appended to the ledger (writes were frozen, or the append failed)"
            .to_owned(),
    };
    let _ = write!(
        out,
        "<h2>Digest and audit record</h2><table class=\"kv\"><tbody>\
         <tr><th>report digest</th><td><code>{}</code></td></tr>\
         <tr><th>in the ledger</th><td>{audit}</td></tr></tbody></table>",
        e(b64(&view.digest))
    );

    out.push_str("<h2>Discrepancies</h2>");
    if r.discrepancies.is_empty() {
        out.push_str("<p>None: the three stores agree on every seq compared.</p>");
    }
    for class in Class::ALL.into_iter().rev() {
        let found: Vec<&Discrepancy> = r
            .discrepancies
            .iter()
            .filter(|d| d.class == class)
            .collect();
        if found.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "<h3>{} <span class=\"muted\">({})</span></h3><table class=\"wide disc\" \
             id=\"disc-{}\"><thead><tr><th>seq</th><th>store</th><th>kind</th><th>decision</th>\
             <th>expected hash</th><th>actual hash</th><th>detail</th></tr></thead><tbody>",
            class_badge(Some(class.as_str())),
            found.len(),
            e(class.as_str())
        );
        for d in found {
            let decision = match d.decision_id {
                Some(id) => format!("<a href=\"/v1/decisions/{0}\"><code>{0}</code></a>", e(id)),
                None => opt(None::<&str>),
            };
            let file = d
                .file
                .as_deref()
                .map(|f| format!(" <span class=\"muted\">[{}]</span>", e(f)))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{decision}</td><td>{}</td><td>{}</td>\
                 <td>{}{file}</td></tr>",
                opt(d.seq),
                e(d.store),
                e(d.kind),
                hash_cell(d.expected_hash.as_ref()),
                hash_cell(d.actual_hash.as_ref()),
                e(&d.detail),
            );
        }
        out.push_str("</tbody></table>");
    }

    out.push_str("<h2>Repairs</h2>");
    if view.actions.is_empty() {
        out.push_str("<p>None.</p>");
    } else {
        out.push_str(
            "<table class=\"wide actions\"><thead><tr><th>repair</th><th>seq</th><th>store</th>\
             <th>operation</th><th>authority</th><th>status</th><th>detail</th><th>reviews</th>\
             <th></th></tr></thead><tbody>",
        );
        for a in &view.actions {
            render_action(&mut out, a, viewer);
        }
        out.push_str("</tbody></table>");
    }
    out
}

fn render_action(out: &mut String, a: &ActionState, viewer: &Viewer) {
    let row = &a.row;
    let seq = match (row.seq, row.seqs.is_empty()) {
        (Some(s), _) => s.to_string(),
        (None, false) => row
            .seqs
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        (None, true) => String::new(),
    };
    let controls = if !a.pending {
        String::new()
    } else if viewer.reviews() {
        format!(
            "<a class=\"button approve\" href=\"/ui/repairs/{0}/approve\">Approve</a> \
             <a class=\"button reject\" href=\"/ui/repairs/{0}/reject\">Reject</a>",
            e(row.id)
        )
    } else {
        "<span class=\"muted\">waits for an auditor</span>".to_owned()
    };
    let _ = write!(
        out,
        "<tr id=\"repair-{0}\"><td><code>{0}</code></td><td>{1}</td><td>{2}</td><td>{3}</td>\
         <td>{4}</td><td><span class=\"status\">{5}</span></td><td>{6}</td><td>{7}</td>\
         <td>{controls}</td></tr>",
        e(row.id),
        e(seq),
        e(&row.store),
        e(&row.operation),
        e(&row.authority),
        e(&a.status),
        e(&row.detail),
        render_reviews(&a.reviews),
    );
}

fn render_reviews(reviews: &[ReviewRow]) -> String {
    reviews
        .iter()
        .map(|r| {
            format!(
                "<p><strong>{}</strong> by key <code>{}</code> at {}: “{}”{}</p>",
                e(&r.verdict),
                e(&r.key_id),
                e(r.signed_at),
                e(&r.reason),
                r.outcome
                    .as_deref()
                    .map(|o| format!(" — {}", e(o)))
                    .unwrap_or_default()
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Reviews.

/// The values a statement is shown for (the review form's first part, sent back by GET).
#[derive(Debug, Default, Deserialize)]
struct StatementParams {
    key_id: Option<String>,
    alg: Option<String>,
    signed_at: Option<String>,
    reason: Option<String>,
}

fn verb(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Approved => "approve",
        Verdict::Rejected => "reject",
    }
}

/// Now, to the second (a time an auditor can type).
fn now_seconds() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_unix_nanos(now.unix_nanos() - now.unix_nanos().rem_euclid(1_000_000_000))
        .unwrap_or(now)
}

async fn approve_form(
    s: State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    id: Path<String>,
    params: Result<Query<StatementParams>, QueryRejection>,
) -> Result<Response, Response> {
    review_form(s, headers, uri, id, params, Verdict::Approved).await
}

async fn reject_form(
    s: State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    id: Path<String>,
    params: Result<Query<StatementParams>, QueryRejection>,
) -> Result<Response, Response> {
    review_form(s, headers, uri, id, params, Verdict::Rejected).await
}

/// `GET /ui/repairs/{id}/approve|reject`: the repair, the exact statement to sign for the
/// values given (key id, algorithm, time, reason), the CLI command that does it all, and the
/// form for the signature.
async fn review_form(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    Path(id): Path<String>,
    params: Result<Query<StatementParams>, QueryRejection>,
    verdict: Verdict,
) -> Result<Response, Response> {
    let v = viewer(&s, &headers).ok_or_else(|| sign_in_first(&uri))?;
    let shown = |p: Problem| problem_page(&p, Some(&v));
    if !v.reviews() {
        return Err(shown(vh::not_an_auditor(v.role, "session")));
    }
    let action_id = vh::parse_id("repair id", &id).map_err(shown)?;
    let repair = vh::load_repair(&s, action_id).await.map_err(shown)?;
    let params = params.map(|Query(p)| p).unwrap_or_default();
    let auditors: Vec<(String, String, String)> = s
        .service
        .policy()
        .keys()
        .filter(|k| k.in_group(AUDITOR_GROUP))
        .map(|k| (k.key_id.to_string(), k.alg().to_string(), k.holder.clone()))
        .collect();
    let (status, main) = render_review_form(&repair, verdict, &params, &v, &auditors);
    let title = format!("{} repair {action_id}", capitalised(verb(verdict)));
    Ok(html(status, page(&title, Some(&v), &main)))
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn render_repair_summary(out: &mut String, repair: &RepairView) {
    let row = &repair.state.row;
    let _ = write!(
        out,
        "<table class=\"kv\"><tbody><tr><th>run</th><td><a href=\"/ui/reports/{0}\"><code>{0}\
         </code></a></td></tr><tr><th>report digest</th><td><code>{1}</code></td></tr>\
         <tr><th>operation</th><td>{2}</td></tr><tr><th>store</th><td>{3}</td></tr>\
         <tr><th>seq</th><td>{4}</td></tr><tr><th>finding</th><td>{5} {6}</td></tr>\
         <tr><th>restores the ledger's hash</th><td>{7}</td></tr><tr><th>detail</th><td>{8}</td>\
         </tr><tr><th>status</th><td><span class=\"status\">{9}</span></td></tr></tbody></table>",
        e(repair.run_id),
        e(b64(&repair.report_digest)),
        e(&row.operation),
        e(&row.store),
        opt(row.seq),
        class_badge(Some(&row.class)),
        e(&row.kind),
        hash_cell(row.restores.as_ref()),
        e(&row.detail),
        e(&repair.state.status),
    );
    if !repair.state.reviews.is_empty() {
        let _ = write!(
            out,
            "<h2>Reviews so far</h2>{}",
            render_reviews(&repair.state.reviews)
        );
    }
}

/// The form's page and its status: 409 when the repair waits for no verdict.
fn render_review_form(
    repair: &RepairView,
    verdict: Verdict,
    params: &StatementParams,
    viewer: &Viewer,
    auditors: &[(String, String, String)],
) -> (StatusCode, String) {
    let verb = verb(verdict);
    let id = repair.action_id;
    let mut out = format!(
        "<h1>{} repair <code>{}</code></h1>",
        capitalised(verb),
        e(id)
    );
    render_repair_summary(&mut out, repair);
    if !repair.state.pending {
        let _ = write!(
            out,
            "<p class=\"error\">This repair is {}: it does not wait for a verdict.</p>",
            e(&repair.state.status)
        );
        return (StatusCode::CONFLICT, out);
    }

    let key_id = params.key_id.as_deref().unwrap_or("").trim();
    let alg = params.alg.as_deref().unwrap_or("ed25519").trim();
    let default_time = now_seconds().to_string();
    let signed_at = params
        .signed_at
        .as_deref()
        .map(str::trim)
        .unwrap_or(&default_time);
    let reason = params.reason.as_deref().unwrap_or("");

    // 1. The statement, for the values given.
    let _ = write!(
        out,
        "<h2>1. The statement your key signs</h2><p>A verdict is your auditor key's \
         signature over <code>\"triplicate/repair-review/v1\\n\" || JCS(statement)</code>. Fill \
         in your key id (a key in group <code>{AUDITOR_GROUP}</code>), its algorithm, the time \
         you sign at and your reason, and this page shows the exact bytes to sign.</p>\
         <form method=\"get\" action=\"/ui/repairs/{0}/{1}\">\
         <label for=\"s-key\">Key id</label><input type=\"text\" id=\"s-key\" name=\"key_id\" \
         value=\"{2}\">{3}<label for=\"s-time\">Signed at (UTC, RFC 3339)</label>\
         <input type=\"text\" id=\"s-time\" name=\"signed_at\" value=\"{4}\">\
         <label for=\"s-reason\">Reason</label><textarea id=\"s-reason\" name=\"reason\">{5}\
         </textarea><p><button type=\"submit\">Show the statement</button></p></form>",
        e(id),
        verb,
        e(key_id),
        alg_select("s-alg", alg),
        e(signed_at),
        e(reason),
    );
    if !auditors.is_empty() {
        out.push_str(
            "<p class=\"muted\">Auditor keys in keys.toml:</p><table><thead><tr><th>key id</th>\
             <th>algorithm</th><th>holder</th></tr></thead><tbody>",
        );
        for (k, a, h) in auditors {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                e(k),
                e(a),
                e(h)
            );
        }
        out.push_str("</tbody></table>");
    }
    match statement(repair, verdict, key_id, alg, signed_at, reason) {
        Ok(Some(message)) => {
            let _ = write!(
                out,
                "<p>Sign exactly these bytes (the first line ends with a newline; nothing \
                 follows the closing brace):</p><pre id=\"statement\">{0}</pre>\
                 <p>The same bytes in base64:</p><pre id=\"statement-b64\">{1}</pre>\
                 <p class=\"muted\">The signature is 64 bytes (Ed25519, or ECDSA P-256 as \
                 <code>r || s</code>), pasted in base64. With an Ed25519 key file and OpenSSL: \
                 </p><pre>echo '{1}' | base64 -d &gt; statement.bin\n\
                 openssl pkeyutl -sign -rawin -inkey FILE -in statement.bin | base64 -w0</pre>",
                e(String::from_utf8_lossy(&message)),
                e(b64(&message))
            );
        }
        Ok(None) => {
            out.push_str("<p class=\"muted\">Enter your key id to see the statement.</p>");
        }
        Err(why) => {
            let _ = write!(out, "<p class=\"error\">{}</p>", e(why));
        }
    }

    // The CLI does all of it.
    let reason_arg = if reason.is_empty() {
        "REASON".to_owned()
    } else {
        shell_quote(reason)
    };
    let _ = write!(
        out,
        "<h2>Or sign and send it with the CLI</h2><pre id=\"cli\">triplicate crosscheck {verb} \
         {} --key FILE --reason {} --url URL --token TOKEN</pre><p class=\"muted\">FILE is your \
         auditor key (it never leaves your machine), URL this service's address, TOKEN your \
         auditor token.</p>",
        e(id),
        e(reason_arg)
    );

    // 2. The signature.
    let _ = write!(
        out,
        "<h2>2. Send the signature</h2><form method=\"post\" action=\"/ui/repairs/{0}/{1}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{2}\">\
         <label for=\"v-key\">Key id</label><input type=\"text\" id=\"v-key\" name=\"key_id\" \
         value=\"{3}\" required>{4}<label for=\"v-time\">Signed at</label><input type=\"text\" \
         id=\"v-time\" name=\"signed_at\" value=\"{5}\" required><label for=\"v-reason\">Reason\
         </label><textarea id=\"v-reason\" name=\"reason\">{6}</textarea>\
         <label for=\"v-sig\">Signature (base64)</label><textarea id=\"v-sig\" \
         name=\"signature\" required></textarea><p><button type=\"submit\">{7}</button></p>\
         </form>",
        e(id),
        verb,
        e(&viewer.csrf),
        e(key_id),
        alg_select("v-alg", alg),
        e(signed_at),
        e(reason),
        capitalised(verb),
    );
    (StatusCode::OK, out)
}

fn alg_select(id: &str, chosen: &str) -> String {
    let mut out = format!(
        "<label for=\"{0}\">Algorithm</label><select id=\"{0}\" name=\"alg\">",
        e(id)
    );
    for a in [Algorithm::Ed25519, Algorithm::EcdsaP256] {
        let selected = if a.as_str() == chosen {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, "<option{selected}>{}</option>", e(a.as_str()));
    }
    out.push_str("</select>");
    out
}

/// The message an auditor's key signs for these values; `None` without a key id.
fn statement(
    repair: &RepairView,
    verdict: Verdict,
    key_id: &str,
    alg: &str,
    signed_at: &str,
    reason: &str,
) -> Result<Option<Vec<u8>>, String> {
    if key_id.is_empty() {
        return Ok(None);
    }
    let key_id: KeyId = key_id.parse().map_err(|e| format!("key id: {e}"))?;
    let alg: Algorithm = alg.parse().map_err(|e| format!("algorithm: {e}"))?;
    let signed_at: Timestamp = signed_at.parse().map_err(|e| format!("signed at: {e}"))?;
    vh::check_reason(reason).map_err(|p| p.detail)?;
    ReviewStatement {
        action_id: repair.action_id,
        run_id: repair.run_id,
        report_digest: repair.report_digest,
        verdict,
        key_id,
        alg,
        signed_at,
        reason: reason.to_owned(),
    }
    .message()
    .map(Some)
    .map_err(|e| format!("build the statement: {e}"))
}

/// What the signature form sends.
#[derive(Debug, Default, Deserialize)]
struct VerdictForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key_id: String,
    #[serde(default)]
    alg: String,
    #[serde(default)]
    signature: String,
    #[serde(default)]
    signed_at: String,
    #[serde(default)]
    reason: String,
}

impl VerdictForm {
    /// The verdict as the API takes it.
    fn body(&self) -> Result<VerdictBody, Problem> {
        let bad = |what: &str, e: &dyn fmt::Display| Problem::bad_request(format!("{what}: {e}"));
        Ok(VerdictBody {
            key_id: self.key_id.trim().parse().map_err(|e| bad("key id", &e))?,
            alg: self.alg.trim().parse().map_err(|e| bad("algorithm", &e))?,
            // Pasted base64 may be wrapped or carry a trailing newline.
            signature: self.signature.split_whitespace().collect(),
            signed_at: self
                .signed_at
                .trim()
                .parse()
                .map_err(|e| bad("signed at", &e))?,
            reason: self.reason.clone(),
        })
    }

    /// The form's address with these values (not the signature), to go back to it.
    fn again(&self, action_id: &str, verdict: Verdict) -> String {
        format!(
            "/ui/repairs/{}/{}?key_id={}&alg={}&signed_at={}&reason={}",
            percent_encode(action_id),
            verb(verdict),
            percent_encode(self.key_id.trim()),
            percent_encode(self.alg.trim()),
            percent_encode(self.signed_at.trim()),
            percent_encode(&self.reason),
        )
    }
}

async fn approve_submit(
    s: State<AppState>,
    headers: HeaderMap,
    id: Path<String>,
    form: Result<Form<VerdictForm>, FormRejection>,
) -> Result<Response, Response> {
    review_submit(s, headers, id, form, Verdict::Approved).await
}

async fn reject_submit(
    s: State<AppState>,
    headers: HeaderMap,
    id: Path<String>,
    form: Result<Form<VerdictForm>, FormRejection>,
) -> Result<Response, Response> {
    review_submit(s, headers, id, form, Verdict::Rejected).await
}

/// `POST /ui/repairs/{id}/approve|reject`: records the signed verdict through
/// [`crate::crosscheck::CrossCheck::review`] and shows what it did.
async fn review_submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<VerdictForm>, FormRejection>,
    verdict: Verdict,
) -> Result<Response, Response> {
    if let Some(p) = foreign_post(&headers) {
        return Err(problem_page(&p, None));
    }
    let Some(v) = viewer(&s, &headers) else {
        let back = Uuid::parse_str(&id)
            .map(|u| format!("/ui/repairs/{u}/{}", verb(verdict)))
            .unwrap_or_else(|_| DEFAULT_PAGE.to_owned());
        return Err(to_login(&back));
    };
    let shown = |p: Problem| problem_page(&p, Some(&v));
    let Form(f) = form.map_err(|r| shown(Problem::bad_request(r.body_text())))?;
    if !same_secret(&f.csrf, &v.csrf) {
        tracing::warn!(
            who = v.name,
            repair = id,
            "review pages: a verdict without this session's CSRF token refused"
        );
        return Err(shown(csrf_refused()));
    }
    if !v.reviews() {
        return Err(shown(vh::not_an_auditor(v.role, "session")));
    }
    let action_id = vh::parse_id("repair id", &id).map_err(shown)?;
    let again = f.again(&id, verdict);
    let back = Some((again.as_str(), "Back to the form"));
    let signed = f
        .body()
        .and_then(VerdictBody::into_signed)
        .map_err(|p| problem_page_with(&p, Some(&v), back))?;
    let out = vh::record_verdict(&s, &v.name, action_id, verdict, signed)
        .await
        .map_err(|p| problem_page_with(&p, Some(&v), back))?;
    let mut main = format!(
        "<h1>Repair <code>{}</code>: {}</h1><p>Your verdict is recorded. The repair is now \
         <span class=\"status\" id=\"status\">{}</span>.</p>",
        e(action_id),
        e(verdict.as_str()),
        e(&out.status)
    );
    if let Some(o) = &out.review.outcome {
        let _ = write!(main, "<p id=\"outcome\">{}</p>", e(o));
    }
    let _ = write!(
        main,
        "{}<p><a href=\"/ui/reports/{1}#repair-{2}\">Back to run <code>{1}</code></a></p>",
        render_reviews(std::slice::from_ref(&out.review)),
        e(out.run_id),
        e(action_id)
    );
    Ok(html(
        StatusCode::OK,
        page(&format!("Repair {action_id}"), Some(&v), &main),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn escape_neutralises_markup_in_text_and_attributes() {
        for (hostile, want) in [
            (
                "<script>alert('x')</script>",
                "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;",
            ),
            (
                "\" onmouseover=\"alert(1)",
                "&quot; onmouseover=&quot;alert(1)",
            ),
            ("a & b <b>", "a &amp; b &lt;b&gt;"),
            ("&lt;", "&amp;lt;"),
            ("plain text – ünïcödé ✓", "plain text – ünïcödé ✓"),
            ("", ""),
        ] {
            assert_eq!(escape(hostile), want);
            assert_eq!(e(hostile).to_string(), want);
        }
        let out = escape("</td><img src=x onerror=alert(1)>'\"&");
        assert!(!out.contains(['<', '>', '"', '\'']), "{out}");
    }

    #[test]
    fn only_plain_paths_under_ui_are_followed_after_sign_in() {
        for ok in [
            "/ui/reports",
            "/ui/reports/0190a1b2-0000-7000-8000-000000000000",
            "/ui/reports?before=0190a1b2-0000-7000-8000-000000000000",
            "/ui/repairs/x/approve",
            "/ui/repairs/x/approve?key_id=ab&signed_at=2026-01-01T00:00:00Z&reason=a%20b",
        ] {
            assert!(is_safe_next(ok), "{ok}");
        }
        for bad in [
            "https://evil.example/ui/",
            "//evil.example/ui/reports",
            "/\\evil.example",
            "/ui//evil.example",
            "/ui/../v1/admin/resume",
            "/ui/%2e%2e/x",
            "/ui/reports\r\nSet-Cookie: x=y",
            "/ui/reports?x=\r\nSet-Cookie: x=y",
            "/ui/reports?next=//evil.example",
            "/ui/login?next=/ui/reports",
            "/v1/decisions",
            "ui/reports",
            "",
            "/ui/",
            "javascript:alert(1)",
        ] {
            assert!(!is_safe_next(bad), "{bad}");
        }
        assert_eq!(safe_next(Some("//evil.example")), DEFAULT_PAGE);
        assert_eq!(safe_next(None), DEFAULT_PAGE);
    }

    #[test]
    fn tickets_work_once_and_expire() {
        let ui = UiSessions::new(Duration::from_millis(30), Duration::from_secs(60));
        let t = ui.issue_ticket("alice", Role::Auditor).unwrap();
        assert_eq!(t.len(), 43);
        let g = ui.redeem(&t).unwrap();
        assert_eq!((g.name.as_str(), g.role), ("alice", Role::Auditor));
        assert!(ui.redeem(&t).is_none(), "a ticket works once");
        let late = ui.issue_ticket("alice", Role::Auditor).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert!(ui.redeem(&late).is_none(), "an expired ticket");
        assert!(ui.redeem("made-up").is_none());
        // Debug never shows a secret.
        let id = ui.open("alice", Role::Auditor).unwrap();
        let shown = format!("{ui:?}");
        assert!(!shown.contains(&id), "{shown}");
        assert!(ui.find(&id).is_some());
        ui.close(&id);
        assert!(ui.find(&id).is_none());
    }

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", ""));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; triplicate_uix=2"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("b=2; triplicate_ui=abc; c=3"),
        );
        assert_eq!(session_cookie(&h), Some("abc"));
    }
}
