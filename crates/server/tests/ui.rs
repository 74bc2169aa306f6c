//! The review pages (`/ui/…`) through the real server on 127.0.0.1:0 with the development
//! set-up: sign-in tickets and sessions, the open-redirect guard, the security headers,
//! escaping, CSRF, what an admin may not do, an auditor's approval through the form; and the
//! report page in headless Chromium, its DOM and a screenshot.
//!
//! The Chromium test needs Debian's `chromium` package (`scripts/test.sh` installs it); it
//! fails, never skips, when the browser is missing. `CHROMIUM` names another binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::{drift, sign_verdict};
use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION, SET_COOKIE};
use serde_json::{json, Value};
use triplicate_core::Timestamp;
use triplicate_server::http::{AppState, UI_ROUTES};
use triplicate_server::setup::{self, dev_setup, DevPaths, ProjectionChoice, DEV_ORIGIN};
use triplicate_server::ui::{
    escape, UiSessions, CONTENT_SECURITY_POLICY, DISCREPANCY_HEADER_RGB, SESSION_LIFETIME,
};
use triplicate_server::{Running, ServeConfig, Service, ServiceOptions};
use triplicate_verifier::review::Verdict;
use uuid::Uuid;

/// Every proposal waits for an auditor: a drifted projection row becomes a proposed repair.
const PROPOSE_ONLY: &str = "grace_period = \"5m\"\n[repair]\nautomatic = []\n";

struct H {
    r: Running,
    /// Follows no redirects, so each 303 can be checked.
    http: reqwest::Client,
    base: String,
    dir: tempfile::TempDir,
}

/// One answer: status, headers, body.
struct Answer {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// The session cookie this answer sets (`name=value`), if any.
    fn session_cookie(&self) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .find(|c| c.starts_with("triplicate_ui="))
            .map(|c| c.split(';').next().unwrap().to_owned())
    }

    /// The value of the hidden (or text) input `name` in the first form that has one.
    fn input(&self, name: &str) -> String {
        let at = self
            .text
            .find(&format!("name=\"{name}\" value=\""))
            .unwrap_or_else(|| panic!("no input {name} in {}", self.text));
        let rest = &self.text[at + name.len() + 15..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The development set-up with `verification` as its `verification.toml`.
async fn start(verification: &str) -> H {
    let dir = tempfile::tempdir().unwrap();
    dev_setup(dir.path()).unwrap();
    std::fs::write(
        DevPaths::new(dir.path()).policies.join("verification.toml"),
        verification,
    )
    .unwrap();
    let r = triplicate_server::start(ServeConfig {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        projection: ProjectionChoice::Sqlite,
        stream: Default::default(),
        origin: DEV_ORIGIN.into(),
        options: ServiceOptions::on_demand_crosscheck(),
    })
    .await
    .unwrap();
    let base = format!("http://{}", r.addr);
    H {
        r,
        http: no_redirects(),
        base,
        dir,
    }
}

impl H {
    async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let resp = req.send().await.unwrap();
        Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            text: resp.text().await.unwrap(),
        }
    }

    /// GET `path` with the session `cookie`, if any.
    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        self.send(req).await
    }

    /// POSTs a form to `path` with the session `cookie`, if any.
    async fn post_form(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Answer {
        let mut req = self.http.post(format!("{}{path}", self.base)).form(form);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        self.send(req).await
    }

    async fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        common::call(&self.http, &self.base, method, path, token, body).await
    }

    /// A sign-in ticket for `token`.
    async fn ticket(&self, token: &str) -> String {
        let (status, body) = self.api("POST", "/v1/ui/tickets", Some(token), None).await;
        assert_eq!(status, 201, "{body}");
        body["ticket"].as_str().unwrap().to_owned()
    }

    /// Signs in with a fresh ticket for `token`: the session cookie.
    async fn session(&self, token: &str) -> String {
        let t = self.ticket(token).await;
        let a = self.get(&format!("/ui/login?ticket={t}"), None).await;
        assert_eq!(a.status, 303, "{}", a.text);
        a.session_cookie().expect("a session cookie")
    }

    async fn submit(&self, n: usize) {
        common::populate(&self.r, &reqwest::Client::new(), n).await;
    }

    async fn settle(&self) {
        common::settle(&self.r.service).await;
    }

    /// A full run (stored); its report as served.
    async fn run(&self) -> Value {
        let body = common::full_run(&self.r, &reqwest::Client::new(), &self.r.auditor_token).await;
        self.settle().await;
        body
    }

    /// Four decisions, the projection's row at seq 2 drifted, a run: its report, with one
    /// minor finding and a repair proposed to the auditors.
    async fn with_a_proposed_repair(&self) -> Value {
        self.submit(4).await;
        drift(self.dir.path(), 2, "Adopt a motion nobody approved");
        let run = self.run().await;
        assert_eq!(run["report"]["counts"]["minor"], 1, "{run}");
        assert_eq!(run["actions"][0]["status"], "proposed", "{run}");
        run
    }
}

/// Alters the projection's title at `seq` as someone with the file would.
/// A time to the second, as a person types it.
fn now_seconds() -> Timestamp {
    let n = Timestamp::now().unix_nanos();
    Timestamp::from_unix_nanos(n - n % 1_000_000_000).unwrap()
}

fn assert_hardened(a: &Answer, what: &str) {
    assert_eq!(
        a.headers
            .get("content-security-policy")
            .map(|v| v.to_str().unwrap()),
        Some(CONTENT_SECURITY_POLICY),
        "{what}: CSP"
    );
    assert_eq!(
        a.headers["x-content-type-options"], "nosniff",
        "{what}: nosniff"
    );
    assert_eq!(a.headers["cache-control"], "no-store", "{what}");
    assert!(
        !a.content_type().contains("problem+json"),
        "{what}: pages answer in HTML, not problem+json"
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_signs_a_browser_in_once() {
    let h = start(PROPOSE_ONLY).await;

    // Only auditors and admins get tickets.
    let (status, body) = h.api("POST", "/v1/ui/tickets", None, None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = h
        .api("POST", "/v1/ui/tickets", Some("not-a-known-token"), None)
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = h
        .api("POST", "/v1/ui/tickets", Some(&h.r.auditor_token), None)
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["expires_in"], 60);
    let ticket = body["ticket"].as_str().unwrap().to_owned();
    assert_eq!(
        body["login_path"].as_str().unwrap(),
        format!("/ui/login?ticket={ticket}")
    );

    // Redeemed: a session cookie as promised, and a 303 to `next`.
    let login = format!("/ui/login?ticket={ticket}&next=/ui/reports");
    let a = h.get(&login, None).await;
    assert_eq!(a.status, 303, "{}", a.text);
    assert_eq!(a.location(), "/ui/reports");
    assert_hardened(&a, "the ticket's redirect");
    let set = a.headers[SET_COOKIE].to_str().unwrap().to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(set.split("; ").any(|p| p == part), "{part} in {set}");
    }
    let cookie = a.session_cookie().unwrap();
    // 256 random bits.
    assert_eq!(cookie.len(), "triplicate_ui=".len() + 43, "{cookie}");
    let page = h.get("/ui/reports", Some(&cookie)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.content_type().starts_with("text/html"));
    assert!(page.text.contains("Verification runs"), "{}", page.text);
    assert!(page.text.contains("(auditor)"), "{}", page.text);

    // A second redemption of the same ticket, and a made-up one, sign nobody in.
    for t in [
        ticket.as_str(),
        "bm90LWEtdGlja2V0LWF0LWFsbC1ub3QtYS10aWNrZXQtYXQ",
    ] {
        let a = h.get(&format!("/ui/login?ticket={t}"), None).await;
        assert_eq!(a.status, 401, "{t}: {}", a.text);
        assert!(a.session_cookie().is_none());
        assert!(a.text.contains("does not work"), "{}", a.text);
        assert_hardened(&a, "a refused ticket");
    }

    // Sign out: the cookie is cleared and the session is gone.
    let csrf = page.input("csrf");
    let out = h
        .post_form("/ui/logout", Some(&cookie), &[("csrf", &csrf)])
        .await;
    assert_eq!(out.status, 303, "{}", out.text);
    assert!(out.headers[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let after = h.get("/ui/reports", Some(&cookie)).await;
    assert_eq!(after.status, 303);
    assert_eq!(after.location(), "/ui/login?next=/ui/reports");
    h.r.stop().await.unwrap();
}

/// The service built from its parts with tickets that last 200 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_ticket_signs_nobody_in() {
    let dir = tempfile::tempdir().unwrap();
    let dev = setup::dev_setup(dir.path()).unwrap();
    let (parts, _ledger) = setup::open_parts(
        dir.path(),
        DEV_ORIGIN,
        dev.notary.clone(),
        &dev.policy_dir,
        ProjectionChoice::Sqlite,
        &Default::default(),
        ServiceOptions::default(),
    )
    .await
    .unwrap();
    let service = Service::start(parts).await.unwrap();
    let state = AppState {
        service,
        tokens: Arc::new(triplicate_server::auth::Tokens::new(&dev.tokens).unwrap()),
        restrict_reads: false,
        crosscheck: None,
        drills: None,
        ui: Arc::new(UiSessions::new(
            Duration::from_millis(200),
            SESSION_LIFETIME,
        )),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(triplicate_server::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let http = no_redirects();
    let ticket = |token: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let (status, body) =
                common::call(&http, &base, "POST", "/v1/ui/tickets", Some(&token), None).await;
            assert_eq!(status, 201, "{body}");
            assert_eq!(body["expires_in"], 1, "{body}");
            body["ticket"].as_str().unwrap().to_owned()
        }
    };
    let redeem = |t: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            http.get(format!("{base}/ui/login?ticket={t}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // In time it works (an admin may sign in too).
    let fresh = ticket(dev.admin_token.clone()).await;
    assert_eq!(redeem(fresh).await, 303);
    // Too late it does not.
    let late = ticket(dev.auditor_token.clone()).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(redeem(late).await, 401);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_goes_only_to_pages_under_ui() {
    let h = start(PROPOSE_ONLY).await;
    let run_page = format!("/ui/reports/{}", Uuid::now_v7());

    // An unauthenticated page sends the browser to sign in, and back afterwards.
    let a = h.get(&run_page, None).await;
    assert_eq!(a.status, 303);
    assert_eq!(a.location(), format!("/ui/login?next={run_page}"));
    let t = h.ticket(&h.r.auditor_token).await;
    let a = h
        .get(&format!("/ui/login?ticket={t}&next={run_page}"), None)
        .await;
    assert_eq!(a.status, 303);
    assert_eq!(a.location(), run_page);

    // Anywhere else: the reports.
    for next in [
        "https://evil.example/ui/reports",
        "//evil.example/ui/reports",
        "/%5Cevil.example",
        "/ui//evil.example",
        "/ui/../v1/admin/resume",
        "/v1/verification/reports",
        "javascript:alert(1)",
        "/ui/login",
    ] {
        let t = h.ticket(&h.r.auditor_token).await;
        let a = h
            .http
            .get(format!("{}/ui/login", h.base))
            .query(&[("ticket", t.as_str()), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(a.status(), 303, "{next}");
        assert_eq!(a.headers()[LOCATION], "/ui/reports", "{next}");
        // The same through the token form.
        let a = h
            .post_form(
                "/ui/login",
                None,
                &[("token", &h.r.auditor_token), ("next", next)],
            )
            .await;
        assert_eq!(a.status, 303, "{next}: {}", a.text);
        assert_eq!(a.location(), "/ui/reports", "{next}");
    }
    h.r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_need_a_session_and_carry_the_security_headers() {
    let h = start(PROPOSE_ONLY).await;
    let id = Uuid::now_v7();
    // Every page but the sign-in itself: a 303 to sign in (HTML, never problem+json).
    for (method, route) in UI_ROUTES {
        if *route == "/ui/login" {
            continue;
        }
        let path = route.replace("{id}", &id.to_string());
        let a = match *method {
            "GET" => h.get(&path, None).await,
            _ => h.post_form(&path, None, &[("csrf", "x")]).await,
        };
        assert_eq!(a.status, 303, "{method} {path}: {}", a.text);
        assert!(
            a.location().starts_with("/ui/login"),
            "{method} {path}: {}",
            a.location()
        );
        assert_hardened(&a, &format!("{method} {path}"));
    }

    // The sign-in form, an unknown page and a refused token: hardened too.
    let form = h.get("/ui/login?next=/ui/reports", None).await;
    assert_eq!(form.status, 200);
    assert!(form.text.contains("name=\"token\""), "{}", form.text);
    assert_eq!(form.input("next"), "/ui/reports");
    assert_hardened(&form, "the sign-in form");
    let missing = h.get("/ui/nothing-here", None).await;
    assert_eq!(missing.status, 404);
    assert_hardened(&missing, "an unknown page");
    let refused = h
        .post_form("/ui/login", None, &[("token", "not-a-known-token")])
        .await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    assert!(refused.session_cookie().is_none());
    assert_hardened(&refused, "a refused token");

    // A pasted token signs in; a form another site sent does not.
    let ok = h
        .post_form("/ui/login", None, &[("token", &h.r.admin_token)])
        .await;
    assert_eq!(ok.status, 303, "{}", ok.text);
    let cookie = ok.session_cookie().unwrap();
    let page = h.get("/ui/reports", Some(&cookie)).await;
    assert_eq!(page.status, 200);
    assert_hardened(&page, "the reports");
    let foreign = h
        .send(
            h.http
                .post(format!("{}/ui/login", h.base))
                .header("sec-fetch-site", "cross-site")
                .form(&[("token", h.r.admin_token.as_str())]),
        )
        .await;
    assert_eq!(foreign.status, 403, "{}", foreign.text);
    assert!(foreign.session_cookie().is_none());

    // The JSON API keeps answering problems.
    let (status, body) = h.api("GET", "/v1/nothing-here", None, None).await;
    assert_eq!(status, 404);
    assert_eq!(body["type"], "https://triplicate.dev/problems/not-found");
    h.r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_in_a_report_is_escaped() {
    use triplicate_projection::reports::ReportStore as _;
    let h = start(PROPOSE_ONLY).await;
    let run = h.with_a_proposed_repair().await;
    // A report whose finding quotes hostile content (as a detail quoting an undecodable event
    // would), stored as the verifier stores reports.
    let hostile = "<script>alert('owned')</script><img src=x onerror=alert(1)>\"'&";
    let mut report = run["report"].clone();
    let run_id = Uuid::now_v7();
    report["run_id"] = json!(run_id);
    report["discrepancies"][0]["detail"] = json!(hostile);
    report["discrepancies"][0]["file"] = json!(hostile);
    report["actions"][0]["id"] = json!(Uuid::now_v7());
    report["actions"][0]["detail"] = json!(hostile);
    let report: triplicate_verifier::Report = serde_json::from_value(report).unwrap();
    let stored = triplicate_verifier::to_stored(&report, None).unwrap();
    assert!(h.r.service.projection().store_report(stored).await.unwrap());

    let cookie = h.session(&h.r.auditor_token).await;
    let page = h.get(&format!("/ui/reports/{run_id}"), Some(&cookie)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(!page.text.contains("<script"), "{}", page.text);
    assert!(!page.text.contains("<img"), "{}", page.text);
    assert!(page.text.contains(&escape(hostile)), "{}", page.text);
    assert!(page
        .text
        .contains("&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;"));
    // Without an audit record, the page says so.
    assert!(page.text.contains("no audit record"), "{}", page.text);
    h.r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_the_sessions_csrf_token_change_nothing() {
    let h = start(PROPOSE_ONLY).await;
    let run = h.with_a_proposed_repair().await;
    let auditor = h.r.auditor.as_ref().unwrap();
    let action = run["actions"][0]["id"].as_str().unwrap().to_owned();
    let (_, repair) = h
        .api(
            "GET",
            &format!("/v1/verification/repairs/{action}"),
            Some(&h.r.auditor_token),
            None,
        )
        .await;
    let signed_at = now_seconds();
    let (st, sig) = sign_verdict(auditor, &repair, Verdict::Approved, "restore", signed_at);
    let key_id = st.key_id.to_string();
    let signed_at = signed_at.to_string();

    let cookie = h.session(&h.r.auditor_token).await;
    let other = h.session(&h.r.auditor_token).await;
    let form = h
        .get(&format!("/ui/repairs/{action}/approve"), Some(&other))
        .await;
    let others_csrf = form.input("csrf");
    let path = format!("/ui/repairs/{action}/approve");
    // No token, a made-up one, another session's: all refused, with a properly signed verdict.
    for csrf in [None, Some("made-up"), Some(others_csrf.as_str())] {
        let mut fields = vec![
            ("key_id", key_id.as_str()),
            ("alg", "ed25519"),
            ("signed_at", signed_at.as_str()),
            ("reason", "restore"),
            ("signature", sig.as_str()),
        ];
        if let Some(c) = csrf {
            fields.push(("csrf", c));
        }
        let a = h.post_form(&path, Some(&cookie), &fields).await;
        assert_eq!(a.status, 403, "{csrf:?}: {}", a.text);
        assert!(a.text.contains("CSRF"), "{}", a.text);
        assert_hardened(&a, "a refused form");
    }
    let (_, still) = h
        .api(
            "GET",
            &format!("/v1/verification/repairs/{action}"),
            Some(&h.r.auditor_token),
            None,
        )
        .await;
    assert_eq!(still["reviews"], json!([]), "{still}");
    assert_eq!(still["status"], "proposed");

    // Signing out needs it too.
    let a = h
        .post_form("/ui/logout", Some(&cookie), &[("csrf", &others_csrf)])
        .await;
    assert_eq!(a.status, 403);
    assert_eq!(h.get("/ui/reports", Some(&cookie)).await.status, 200);
    h.r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_session_sees_the_pages_but_no_review_controls() {
    let h = start(PROPOSE_ONLY).await;
    let run = h.with_a_proposed_repair().await;
    let run_id = run["run_id"].as_str().unwrap();
    let action = run["actions"][0]["id"].as_str().unwrap();

    let auditor = h.session(&h.r.auditor_token).await;
    let page = h
        .get(&format!("/ui/reports/{run_id}"), Some(&auditor))
        .await;
    assert!(
        page.text
            .contains(&format!("href=\"/ui/repairs/{action}/approve\"")),
        "{}",
        page.text
    );
    assert!(page
        .text
        .contains(&format!("href=\"/ui/repairs/{action}/reject\"")));

    let admin = h.session(&h.r.admin_token).await;
    let page = h.get(&format!("/ui/reports/{run_id}"), Some(&admin)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("id=\"disc-minor\""), "{}", page.text);
    assert!(!page.text.contains("/ui/repairs/"), "{}", page.text);
    assert!(!page.text.contains(">Approve<"), "{}", page.text);
    assert!(page.text.contains("waits for an auditor"), "{}", page.text);
    let list = h.get("/ui/reports", Some(&admin)).await;
    assert!(
        list.text.contains(&format!("/ui/reports/{run_id}")),
        "{}",
        list.text
    );
    // Nor the forms, nor a verdict posted anyway.
    for which in ["approve", "reject"] {
        let a = h
            .get(&format!("/ui/repairs/{action}/{which}"), Some(&admin))
            .await;
        assert_eq!(a.status, 403, "{}", a.text);
        assert!(a.text.contains("only auditors"), "{}", a.text);
    }
    let csrf = list.input("csrf");
    let a = h
        .post_form(
            &format!("/ui/repairs/{action}/approve"),
            Some(&admin),
            &[
                ("csrf", csrf.as_str()),
                ("key_id", "0000000000000000"),
                ("alg", "ed25519"),
                ("signed_at", "2025-01-01T00:00:00Z"),
                ("signature", "AAAA"),
            ],
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.text);
    h.r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_approves_a_proposed_repair_through_the_form() {
    let h = start(PROPOSE_ONLY).await;
    let run = h.with_a_proposed_repair().await;
    let auditor = h.r.auditor.as_ref().unwrap();
    let run_id = run["run_id"].as_str().unwrap();
    let action = run["actions"][0]["id"].as_str().unwrap().to_owned();
    let cookie = h.session(&h.r.auditor_token).await;

    // The form shows the exact statement for the values given, and the CLI command.
    let signed_at = now_seconds();
    let reason = "restore the ledger's record";
    let (_, repair) = h
        .api(
            "GET",
            &format!("/v1/verification/repairs/{action}"),
            Some(&h.r.auditor_token),
            None,
        )
        .await;
    let (st, sig) = sign_verdict(auditor, &repair, Verdict::Approved, reason, signed_at);
    let form = h
        .send(
            h.http
                .get(format!("{}/ui/repairs/{action}/approve", h.base))
                .header("cookie", &cookie)
                .query(&[
                    ("key_id", st.key_id.to_string()),
                    ("alg", "ed25519".to_owned()),
                    ("signed_at", signed_at.to_string()),
                    ("reason", reason.to_owned()),
                ]),
        )
        .await;
    assert_eq!(form.status, 200, "{}", form.text);
    let message = st.message().unwrap();
    assert!(
        form.text
            .contains(&escape(std::str::from_utf8(&message).unwrap())),
        "the statement as text: {}",
        form.text
    );
    assert!(form
        .text
        .contains(&base64::engine::general_purpose::STANDARD.encode(&message)));
    assert!(
        form.text.contains(&format!(
            "triplicate crosscheck approve {action} --key FILE --reason {}",
            escape("'restore the ledger'\\''s record'")
        )),
        "{}",
        form.text
    );
    assert_eq!(form.input("signed_at"), signed_at.to_string());
    let csrf = form.input("csrf");

    // A signature that does not verify is refused, and the page says why.
    let a = h
        .post_form(
            &format!("/ui/repairs/{action}/approve"),
            Some(&cookie),
            &[
                ("csrf", csrf.as_str()),
                ("key_id", &st.key_id.to_string()),
                ("alg", "ed25519"),
                ("signed_at", &signed_at.to_string()),
                ("reason", "a different reason"),
                ("signature", &sig),
            ],
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.text);
    assert!(a.text.contains("signature"), "{}", a.text);

    // The signed verdict, pasted with a line break as a terminal would wrap it.
    let wrapped = format!("{}\n{}\n", &sig[..40], &sig[40..]);
    let a = h
        .post_form(
            &format!("/ui/repairs/{action}/approve"),
            Some(&cookie),
            &[
                ("csrf", csrf.as_str()),
                ("key_id", &st.key_id.to_string()),
                ("alg", "ed25519"),
                ("signed_at", &signed_at.to_string()),
                ("reason", reason),
                ("signature", &wrapped),
            ],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(
        a.text
            .contains("<span class=\"status\" id=\"status\">applied</span>"),
        "{}",
        a.text
    );
    assert!(a.text.contains("id=\"outcome\">applied"), "{}", a.text);

    // The report page shows it applied, with the review, and no buttons any more.
    let page = h.get(&format!("/ui/reports/{run_id}"), Some(&cookie)).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("<span class=\"status\">applied</span>"),
        "{}",
        page.text
    );
    assert!(page.text.contains(&escape(reason)), "{}", page.text);
    assert!(!page.text.contains(&format!("/ui/repairs/{action}/approve")));
    // The API agrees, and the form now says the repair waits for nothing.
    let (_, after) = h
        .api(
            "GET",
            &format!("/v1/verification/repairs/{action}"),
            Some(&h.r.auditor_token),
            None,
        )
        .await;
    assert_eq!(after["status"], "applied", "{after}");
    assert_eq!(after["reviews"][0]["key_id"], st.key_id.to_string());
    let closed = h
        .get(&format!("/ui/repairs/{action}/approve"), Some(&cookie))
        .await;
    assert_eq!(closed.status, 409, "{}", closed.text);
    assert!(!closed.text.contains("name=\"signature\""));
    h.r.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Headless Chromium.

/// The browser: `$CHROMIUM` or `chromium`. A missing browser fails the test.
fn chromium() -> PathBuf {
    let bin = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("chromium"));
    let runs = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        runs,
        "this test drives headless Chromium and `{} --version` does not run: install Debian's \
         `chromium` package (`apt-get install chromium`; scripts/test.sh does this), or set \
         CHROMIUM to the browser's path",
        bin.display()
    );
    bin
}

/// Runs headless Chromium on `url` with `mode` (`--dump-dom` or `--screenshot=FILE`); its
/// standard output. Fails after 90 s.
///
/// The browser runs in a process group of its own, killed whole once it exits or times out:
/// its helpers (zygotes, renderers, crash handlers, some detached) may outlive it. Its output
/// goes to a file read after it exits, not to a pipe, since a helper holding the pipe open
/// would keep a reader waiting for ever.
async fn browse(bin: PathBuf, mode: String, url: String) -> String {
    use std::os::unix::process::CommandExt;
    let profile = tempfile::tempdir().unwrap();
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    tokio::task::spawn_blocking(move || {
        let out_path = profile.path().join("stdout");
        let out_file = std::fs::File::create(&out_path).unwrap();
        let mut child = std::process::Command::new(&bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                &profile_arg,
                "--window-size=1280,1600",
                &mode,
                &url,
            ])
            .stdout(out_file)
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let kill_group = |pid: u32| {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(std::process::Stdio::null())
                .status();
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                kill_group(child.id());
                let _ = child.wait();
                panic!("chromium {mode} did not finish in 90 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        kill_group(child.id());
        assert!(status.success(), "chromium {mode}: {status}");
        let out = std::fs::read_to_string(&out_path).unwrap();
        drop(profile);
        out
    })
    .await
    .unwrap()
}

/// An RGB(A) 8-bit PNG as (width, height, RGB pixels).
fn decode_png(path: &Path) -> (usize, usize, Vec<[u8; 3]>) {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut decoder = png::Decoder::new(file);
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("screenshot colour type {other:?}"),
    };
    let (w, h) = (info.width as usize, info.height as usize);
    let pixels = (0..h)
        .flat_map(|y| {
            let row = &buf[y * info.line_size..(y + 1) * info.line_size];
            (0..w)
                .map(|x| {
                    [
                        row[x * channels],
                        row[x * channels + 1],
                        row[x * channels + 2],
                    ]
                })
                .collect::<Vec<_>>()
        })
        .collect();
    (w, h, pixels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_page_renders_in_headless_chromium() {
    let bin = chromium();
    let h = start(PROPOSE_ONLY).await;
    let run = h.with_a_proposed_repair().await;
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    let finding = &run["report"]["discrepancies"][0];
    assert_eq!(finding["seq"], 2, "{finding}");
    let expected = finding["expected_hash"].as_str().unwrap().to_owned();
    let actual = finding["actual_hash"].as_str().unwrap().to_owned();
    assert_ne!(expected, actual);
    let signin = |t: String| format!("{}/ui/login?ticket={t}&next=/ui/reports/{run_id}", h.base);

    // The DOM, as the browser built it after signing in through the ticket and its redirect.
    let t = h.ticket(&h.r.auditor_token).await;
    let dom = browse(bin.clone(), "--dump-dom".into(), signin(t)).await;
    assert!(dom.contains(&format!("Run <code>{run_id}</code>")), "{dom}");
    let table_at = dom
        .find("id=\"disc-minor\"")
        .unwrap_or_else(|| panic!("no discrepancy table in {dom}"));
    let table = &dom[table_at..table_at + dom[table_at..].find("</table>").unwrap()];
    for header in [
        "seq",
        "store",
        "kind",
        "decision",
        "expected hash",
        "actual hash",
        "detail",
    ] {
        assert!(
            table.contains(&format!("<th>{header}</th>")),
            "{header}: {table}"
        );
    }
    assert!(table.contains("<td>2</td>"), "the seq: {table}");
    assert!(table.contains(&expected), "the expected hash: {table}");
    assert!(table.contains(&actual), "the actual hash: {table}");
    assert!(table.contains("<td>projection</td>"), "{table}");
    assert!(dom.contains(">Approve</a>"), "an auditor's buttons: {dom}");

    // The screenshot: the discrepancy table's header row is a band of its own colour.
    let shots = tempfile::tempdir().unwrap();
    let file = shots.path().join("report.png");
    let t = h.ticket(&h.r.auditor_token).await;
    browse(bin, format!("--screenshot={}", file.display()), signin(t)).await;
    if let Some(keep) = std::env::var_os("TRIPLICATE_KEEP_SCREENSHOT") {
        std::fs::copy(&file, keep).unwrap();
    }
    let (w, height, px) = decode_png(&file);
    assert_eq!((w, height), (1280, 1600), "the window size");
    // Rows where at least a third of the width is exactly the header colour.
    let banded: Vec<bool> = (0..height)
        .map(|y| {
            px[y * w..(y + 1) * w]
                .iter()
                .filter(|p| **p == DISCREPANCY_HEADER_RGB)
                .count()
                >= w / 3
        })
        .collect();
    let mut longest = 0;
    let mut current = 0;
    for b in &banded {
        current = if *b { current + 1 } else { 0 };
        longest = longest.max(current);
    }
    assert!(
        (15..=80).contains(&longest),
        "the discrepancy table's header row: {longest} consecutive rows of #{:02x}{:02x}{:02x} \
         at least {} px wide (expected a band 15 to 80 px high)",
        DISCREPANCY_HEADER_RGB[0],
        DISCREPANCY_HEADER_RGB[1],
        DISCREPANCY_HEADER_RGB[2],
        w / 3
    );
    // Not a blank page: the background is not nearly everything, and there is text in colours.
    let white = px.iter().filter(|p| **p == [255, 255, 255]).count();
    assert!(
        white < px.len() * 97 / 100,
        "{white} of {} pixels are white",
        px.len()
    );
    let distinct: std::collections::HashSet<[u8; 3]> = px.iter().copied().collect();
    assert!(distinct.len() > 50, "{} distinct colours", distinct.len());
    h.r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_pages_list_and_show_a_signed_drill() {
    let h = start(PROPOSE_ONLY).await;
    h.submit(5).await;
    // Signed out: to the sign-in page.
    let a = h.get("/ui/drills", None).await;
    assert_eq!(a.status, 303, "{}", a.text);
    let cookie = h.session(&h.r.auditor_token).await;
    let a = h.get("/ui/drills", Some(&cookie)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.text.contains("No drill is stored yet"), "{}", a.text);

    let scratch = h.dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let out =
        h.r.drills
            .run(triplicate_server::drill::DrillOptions {
                scratch_dir: Some(scratch),
                ..triplicate_server::drill::DrillOptions::new(
                    triplicate_server::drill::Scenario::LoseProjection,
                )
            })
            .await
            .unwrap();
    let id = out.report.drill_id.to_string();
    let a = h.get("/ui/drills", Some(&cookie)).await;
    assert_eq!(a.status, 200);
    assert_hardened(&a, "the drill list");
    assert!(a.text.contains(&format!("/ui/drills/{id}")), "{}", a.text);
    assert!(
        a.text.contains("lose-projection") && a.text.contains("passed"),
        "{}",
        a.text
    );
    let a = h.get(&format!("/ui/drills/{id}"), Some(&cookie)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_hardened(&a, "a drill");
    for needle in [
        "valid (key",
        "carries this digest",
        "rebuild the projection from the ledger",
        "final full cross-check",
    ] {
        assert!(a.text.contains(needle), "{needle} in {}", a.text);
    }
    let a = h.get("/ui/drills/not-a-uuid", Some(&cookie)).await;
    assert_eq!(a.status, 400);
}
