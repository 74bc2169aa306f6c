//! The OpenAPI document against the server it describes, the access log, and restricted reads.
//!
//! The document (`triplicate_server::openapi::document`) is written by hand, so these tests
//! keep it honest: its paths and methods are exactly `http::ROUTES` (the review pages,
//! `http::UI_ROUTES`, are HTML under `/ui/` and never in it); it is OpenAPI 3.1 shaped
//! and every `$ref` resolves; its problem types are the README's; each operation's `security`
//! agrees with how the running server answers a call without a token; and real responses
//! validate against the documented schemas (with a small validator for the JSON Schema subset
//! the document uses).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{approve, decision};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Value};
use triplicate_keys::SoftwareSigner;
use triplicate_server::auth::{hash_token, Role, TokenEntry, Tokens};
use triplicate_server::http::{AppState, ACCESS_LOG_TARGET, ROUTES, UI_ROUTES};
use triplicate_server::openapi::{document, openapi_path, PROBLEM_TYPES};
use triplicate_server::setup::{self, ProjectionChoice, DEV_ORIGIN};
use triplicate_server::{ServeConfig, Service, ServiceOptions};
use uuid::Uuid;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

// ---------------------------------------------------------------------------------------------
// The document alone.

#[test]
fn document_is_openapi_3_1_shaped_and_every_ref_resolves() {
    let doc = document();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "openapi: {}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string());
    assert!(doc["info"]["version"].is_string());
    let paths = doc["paths"].as_object().expect("paths is an object");
    assert!(!paths.is_empty());

    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");

    let mut operation_ids = BTreeSet::new();
    for (path, item) in paths {
        assert!(path.starts_with('/'), "{path}");
        let item = item.as_object().unwrap();
        let templated: BTreeSet<String> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_owned)
            .collect();
        for (method, op) in item {
            assert!(
                METHODS.contains(&method.as_str()),
                "{path}: {method} is not an HTTP method"
            );
            let at = format!("{} {path}", method.to_uppercase());
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: operationId"));
            assert!(
                operation_ids.insert(id.to_owned()),
                "{at}: duplicate operationId {id}"
            );

            // Every path parameter is declared, required, and templated; nothing else is.
            let params: Vec<Value> = op["parameters"]
                .as_array()
                .map(|ps| ps.iter().map(|p| deref(&doc, p).clone()).collect())
                .unwrap_or_default();
            let declared: BTreeSet<String> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(p["required"], true, "{at}: path parameter {p}");
                    p["name"].as_str().unwrap().to_owned()
                })
                .collect();
            assert_eq!(declared, templated, "{at}: path parameters");
            for p in &params {
                assert!(
                    ["path", "query", "header", "cookie"].contains(&p["in"].as_str().unwrap()),
                    "{at}: {p}"
                );
                assert!(
                    p["schema"].is_object(),
                    "{at}: parameter without a schema: {p}"
                );
            }

            // Security is explicit on every operation and names only known schemes.
            let security = op["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{at}: no explicit security"));
            for requirement in security {
                for scheme in requirement.as_object().unwrap().keys() {
                    assert!(
                        schemes.contains_key(scheme),
                        "{at}: unknown scheme {scheme}"
                    );
                }
            }

            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{at}: no responses");
            for (status, resp) in responses {
                assert!(
                    status.len() == 3 && status.parse::<u16>().is_ok(),
                    "{at}: status {status}"
                );
                let resp = deref(&doc, resp);
                assert!(
                    resp["description"].is_string(),
                    "{at} {status}: description"
                );
                // Errors are problem+json, except the body limit's 413 which axum answers.
                if status.starts_with('4') || status.starts_with('5') {
                    let content = resp["content"].as_object().unwrap();
                    let problem = content.contains_key("application/problem+json");
                    assert!(
                        problem || status == "413" || (path == "/readyz" && status == "503"),
                        "{at} {status}: an error that is not problem+json"
                    );
                }
            }
        }
    }

    // The request body of a submission: {decision, approvals}, both required.
    let body = &doc["paths"]["/v1/decisions"]["post"]["requestBody"];
    assert_eq!(body["required"], true);
    let submission = deref(&doc, &body["content"]["application/json"]["schema"]);
    assert_eq!(submission["required"], json!(["decision", "approvals"]));

    let mut refs = Vec::new();
    collect_refs(&doc, "#", &mut refs);
    assert!(refs.len() > 50, "only {} refs?", refs.len());
    for (at, r) in refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: $ref {r} is not local"));
        assert!(
            doc.pointer(pointer).is_some(),
            "{at}: $ref {r} does not resolve"
        );
    }
}

#[test]
fn document_describes_exactly_the_served_routes() {
    let doc = document();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_uppercase(), openapi_path(p)))
        .collect();
    assert_eq!(served.len(), ROUTES.len(), "ROUTES lists a route twice");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not documented: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "documented but not served: {unserved:?}"
    );

    // The review pages are the other list: all under /ui/, none in the API or its document,
    // and no API route under /ui/.
    let pages: BTreeSet<(String, String)> = UI_ROUTES
        .iter()
        .map(|(m, p)| (m.to_uppercase(), openapi_path(p)))
        .collect();
    assert_eq!(
        pages.len(),
        UI_ROUTES.len(),
        "UI_ROUTES lists a route twice"
    );
    for (method, path) in &pages {
        assert!(
            path.starts_with("/ui/"),
            "{method} {path} is a page outside /ui/"
        );
        assert!(
            !served.contains(&(method.clone(), path.clone())),
            "{method} {path} is in both ROUTES and UI_ROUTES"
        );
    }
    for (method, path) in &served {
        assert!(
            !path.starts_with("/ui"),
            "API route {method} {path} under /ui"
        );
    }
    for path in doc["paths"].as_object().unwrap().keys() {
        assert!(
            !path.starts_with("/ui"),
            "the document describes page {path}"
        );
    }
}

/// The README's "HTTP problems" section is the contract clients read; the document and
/// `PROBLEM_TYPES` must name the same types with the same statuses.
#[test]
fn problem_types_are_the_readmes() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme
        .find("## HTTP problems")
        .expect("README has HTTP problems");
    let section = &readme[start + 3..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    // `kind` (NNN …
    let mut promised = BTreeMap::new();
    let mut parts = section.split('`');
    let _ = parts.next();
    while let (Some(code), Some(after)) = (parts.next(), parts.next()) {
        if let Some(status) = after
            .strip_prefix(" (")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse::<u16>().ok())
        {
            promised.insert(code.to_owned(), status);
        }
    }
    let ours: BTreeMap<String, u16> = PROBLEM_TYPES
        .iter()
        .map(|p| (p.kind.to_owned(), p.status))
        .collect();
    assert_eq!(ours, promised, "PROBLEM_TYPES vs README");

    let doc = document();
    for p in PROBLEM_TYPES {
        let s = &doc["components"]["schemas"][format!("Problem{}", p.name)]["allOf"][1];
        assert_eq!(s["properties"]["type"]["const"], p.uri());
        assert_eq!(s["properties"]["status"]["const"], p.status);
        let r = &doc["components"]["responses"][p.name]["content"]["application/problem+json"];
        assert!(r["schema"].is_object(), "response {}", p.name);
    }
}

// ---------------------------------------------------------------------------------------------
// The document against the running server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_document_agrees_with_the_server() {
    let dir = tempfile::tempdir().unwrap();
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
    let http = reqwest::Client::new();
    let doc = document();

    // Served as JSON, and the same document.
    let resp = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let served: Value = resp.json().await.unwrap();
    assert_eq!(served, doc);

    // Without a token, exactly the operations whose security has no anonymous alternative
    // answer 401 (reads are open in this configuration).
    for (method, path) in ROUTES {
        let op = operation(&doc, method, path);
        let anonymous = op["security"]
            .as_array()
            .unwrap()
            .iter()
            .any(|req| req.as_object().unwrap().is_empty())
            || op["security"] == json!([]);
        let (status, ..) = call(&http, &base, method, &concrete(path), None, None).await;
        if anonymous {
            assert_ne!(status, 401, "{method} {path} is documented as open");
        } else {
            assert_eq!(
                status, 401,
                "{method} {path} is documented as needing a token"
            );
        }
    }

    // Real answers validate against their documented responses.
    let v = Validator::new(&doc);
    let admin = Some(r.admin_token.as_str());
    let d = decision("motion", "Adopt the OpenAPI document");
    let submission = json!({
        "decision": d,
        "approvals": [approve(&d, &r.approvers[1]), approve(&d, &r.approvers[2])],
    });
    let id = d.id.to_string();
    let lonely = decision("motion", "Adopt with one approval");
    for (method, route, url, token, body, expect) in [
        (
            "POST",
            "/v1/decisions",
            "/v1/decisions".to_owned(),
            admin,
            Some(submission.clone()),
            201,
        ),
        (
            "POST",
            "/v1/decisions",
            "/v1/decisions".to_owned(),
            admin,
            Some(submission.clone()),
            200,
        ),
        (
            "POST",
            "/v1/decisions",
            "/v1/decisions".to_owned(),
            None,
            Some(submission.clone()),
            401,
        ),
        (
            "POST",
            "/v1/decisions",
            "/v1/decisions".to_owned(),
            admin,
            Some(json!({})),
            422,
        ),
        (
            "POST",
            "/v1/decisions",
            "/v1/decisions".to_owned(),
            admin,
            // Too few approvals for the quorum.
            Some(json!({ "decision": lonely, "approvals": [approve(&lonely, &r.approvers[1])] })),
            422,
        ),
        (
            "POST",
            "/v1/decisions",
            "/v1/decisions".to_owned(),
            admin,
            Some({
                let mut other = d.clone();
                other.title = "Different content, same id".into();
                json!({
                    "decision": other,
                    "approvals": [approve(&other, &r.approvers[1]), approve(&other, &r.approvers[2])],
                })
            }),
            409,
        ),
        (
            "GET",
            "/v1/decisions/{id}",
            format!("/v1/decisions/{id}"),
            None,
            None,
            200,
        ),
        (
            "GET",
            "/v1/decisions/{id}",
            format!("/v1/decisions/{}", Uuid::now_v7()),
            None,
            None,
            404,
        ),
        (
            "GET",
            "/v1/decisions/{id}",
            "/v1/decisions/not-a-uuid".to_owned(),
            None,
            None,
            400,
        ),
        (
            "GET",
            "/v1/decisions",
            "/v1/decisions?kind=motion&limit=10".to_owned(),
            None,
            None,
            200,
        ),
        (
            "GET",
            "/v1/decisions",
            "/v1/decisions?bogus=1".to_owned(),
            None,
            None,
            400,
        ),
        (
            "GET",
            "/v1/ledger/checkpoint",
            "/v1/ledger/checkpoint".to_owned(),
            None,
            None,
            200,
        ),
        (
            "GET",
            "/v1/ledger/tile/{*path}",
            "/v1/ledger/tile/9/999".to_owned(),
            None,
            None,
            404,
        ),
        (
            "GET",
            "/v1/ledger/tile/{*path}",
            "/v1/ledger/tile/0/not-a-tile".to_owned(),
            None,
            None,
            400,
        ),
        (
            "GET",
            "/v1/ledger/proof/inclusion",
            "/v1/ledger/proof/inclusion?index=0&size=1".to_owned(),
            None,
            None,
            200,
        ),
        (
            "GET",
            "/v1/ledger/proof/inclusion",
            "/v1/ledger/proof/inclusion?index=5&size=1".to_owned(),
            None,
            None,
            400,
        ),
        (
            "GET",
            "/v1/ledger/proof/consistency",
            "/v1/ledger/proof/consistency?from=0&to=1".to_owned(),
            None,
            None,
            200,
        ),
        (
            "GET",
            "/v1/keys/notary",
            "/v1/keys/notary".to_owned(),
            None,
            None,
            200,
        ),
        (
            "POST",
            "/v1/admin/policies/reload",
            "/v1/admin/policies/reload".to_owned(),
            admin,
            None,
            200,
        ),
        (
            "POST",
            "/v1/ui/tickets",
            "/v1/ui/tickets".to_owned(),
            Some(r.auditor_token.as_str()),
            None,
            201,
        ),
        ("GET", "/healthz", "/healthz".to_owned(), None, None, 200),
        ("GET", "/readyz", "/readyz".to_owned(), None, None, 200),
        ("GET", "/metrics", "/metrics".to_owned(), None, None, 200),
        (
            "GET",
            "/openapi.json",
            "/openapi.json".to_owned(),
            None,
            None,
            200,
        ),
    ] {
        let (status, content_type, text) =
            call(&http, &base, method, &url, token, body.as_ref()).await;
        assert_eq!(status, expect, "{method} {url}: {text}");
        v.check_response(method, route, status, &content_type, &text);
    }

    // A body over the limit: 413, documented.
    let big = vec![b' '; triplicate_server::http::MAX_BODY_BYTES + 1];
    let resp = http
        .post(format!("{base}/v1/decisions"))
        .bearer_auth(&r.admin_token)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(operation(&doc, "POST", "/v1/decisions")["responses"]["413"].is_object());

    // Anything else: a problem+json 404.
    let (status, content_type, text) = call(&http, &base, "GET", "/v2/nothing", None, None).await;
    assert_eq!(status, 404);
    assert_eq!(content_type, "application/problem+json");
    v.validate_named("ProblemNotFound", &serde_json::from_str(&text).unwrap());

    r.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Restricted reads and the access log, on a server built from its parts with test tokens.

const READER: &str = "reader-token-for-tests-0123456789";
const SUBMITTER: &str = "submitter-token-for-tests-0123456789";

struct Harness {
    base: String,
    http: reqwest::Client,
    approvers: Vec<SoftwareSigner>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// The service on embedded stores under a fresh directory, with a `reader` and a
    /// `submitter` token named `<names>-reader` and `<names>-submitter`.
    async fn start(restrict_reads: bool, names: &str) -> Harness {
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
        let entry = |role: Role, token: &str| TokenEntry {
            name: format!("{names}-{}", role.as_str()),
            role,
            sha256: hash_token(token),
        };
        let tokens = Tokens::new(&[
            entry(Role::Reader, READER),
            entry(Role::Submitter, SUBMITTER),
        ])
        .unwrap();
        let state = AppState {
            service,
            tokens: Arc::new(tokens),
            restrict_reads,
            crosscheck: None,
            drills: None,
            ui: Default::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(triplicate_server::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Harness {
            base,
            http: reqwest::Client::new(),
            approvers: dev.approvers,
            stop: Some(stop),
            server,
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let (status, _, text) = call(&self.http, &self.base, method, url, token, body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Submits a fresh decision with the submitter token; its id.
    async fn submit(&self) -> Uuid {
        let d = decision("motion", "Adopt restricted reads");
        let b = json!({
            "decision": d,
            "approvals": [approve(&d, &self.approvers[1]), approve(&d, &self.approvers[2])],
        });
        let (status, out) = self
            .call("POST", "/v1/decisions", Some(SUBMITTER), Some(&b))
            .await;
        assert_eq!(status, 201, "{out}");
        d.id
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.server).await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_reads_need_a_reader_token() {
    let h = Harness::start(true, "restricted").await;
    let id = h.submit().await;
    let get = format!("/v1/decisions/{id}");
    for url in [get.as_str(), "/v1/decisions", "/v1/decisions?kind=motion"] {
        let (status, body) = h.call("GET", url, None, None).await;
        assert_eq!(status, 401, "{url}: {body}");
        assert_eq!(body["type"], "https://triplicate.dev/problems/unauthorized");
        let (status, _) = h.call("GET", url, Some("not-a-known-token"), None).await;
        assert_eq!(status, 401, "{url} with an unknown token");
        let (status, body) = h.call("GET", url, Some(READER), None).await;
        assert_eq!(status, 200, "{url} with a reader token: {body}");
        // A submitter may read too.
        let (status, _) = h.call("GET", url, Some(SUBMITTER), None).await;
        assert_eq!(status, 200, "{url} with a submitter token");
    }
    let (_, got) = h.call("GET", &get, Some(READER), None).await;
    assert_eq!(got["receipt"]["record"]["decision"]["id"], id.to_string());

    // The document says so: every operation with an anonymous alternative is a read that the
    // restriction closes.
    let doc = document();
    for (method, path) in ROUTES {
        let op = operation(&doc, method, path);
        let security = op["security"].as_array().unwrap();
        if security.len() > 1 && security.iter().any(|s| s == &json!({})) {
            assert!(
                security.contains(&json!({ "bearer": ["reader"] })),
                "{method} {path}"
            );
            let (status, _) = h.call(method, &concrete(path), None, None).await;
            assert_eq!(status, 401, "{method} {path} with reads restricted");
        }
    }

    // Writes are never open, reads or not; a reader may not submit, a submitter not reload.
    let (status, _) = h
        .call("POST", "/v1/decisions", Some(READER), Some(&json!({})))
        .await;
    assert_eq!(status, 403);
    let (status, body) = h
        .call("POST", "/v1/admin/policies/reload", Some(SUBMITTER), None)
        .await;
    assert_eq!(status, 403);
    Validator::new(&doc).check_response(
        "POST",
        "/v1/admin/policies/reload",
        status,
        "application/problem+json",
        &body.to_string(),
    );

    // The ledger stays public.
    let (status, _) = h
        .call(
            "GET",
            "/v1/ledger/proof/inclusion?index=0&size=1",
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_reads_need_no_token() {
    let h = Harness::start(false, "open").await;
    let id = h.submit().await;
    for url in [format!("/v1/decisions/{id}"), "/v1/decisions".to_owned()] {
        let (status, body) = h.call("GET", &url, None, None).await;
        assert_eq!(status, 200, "{url}: {body}");
        let (status, _) = h.call("GET", &url, Some(READER), None).await;
        assert_eq!(status, 200, "{url} with a reader token");
    }
    // Writes still need a token.
    let (status, _) = h
        .call("POST", "/v1/decisions", None, Some(&json!({})))
        .await;
    assert_eq!(status, 401);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_access_logged_once_with_caller_role_and_status() {
    let log = capture_access_log();
    let h = Harness::start(false, "logged").await;

    let secret = "query-secret-4f1e";
    let anonymous = format!("/v1/decisions/{}", Uuid::now_v7());
    let reader = format!("/v1/decisions/{}", Uuid::now_v7());
    let unknown = format!("/v1/decisions/{}", Uuid::now_v7());
    let bad = "/v1/ledger/tile/logged/not-a-tile";
    assert_eq!(
        h.call("GET", &format!("{anonymous}?x={secret}"), None, None)
            .await
            .0,
        404
    );
    assert_eq!(h.call("GET", &reader, Some(READER), None).await.0, 404);
    assert_eq!(
        h.call("GET", &unknown, Some("made-up-token-for-the-log"), None)
            .await
            .0,
        404
    );
    assert_eq!(h.call("GET", bad, None, None).await.0, 400);
    h.submit().await;
    h.stop().await;

    let events = log.lock().unwrap().clone();
    let find = |path: &str| {
        let hits: Vec<&BTreeMap<String, String>> = events
            .iter()
            .filter(|e| e.get("path").map(String::as_str) == Some(path))
            .collect();
        assert_eq!(hits.len(), 1, "{path} logged once: {hits:?}");
        hits[0].clone()
    };

    let e = find(&anonymous);
    assert_eq!(e["method"], "GET");
    assert_eq!(e["status"], "404");
    assert_eq!(e["caller"], "anonymous");
    assert_eq!(e["role"], "anonymous");
    assert_eq!(e["auth"], "none");
    assert_eq!(e["route"], "/v1/decisions/{id}");
    assert!(e["latency_ms"].parse::<f64>().unwrap() >= 0.0);
    assert_eq!(e["message"], "request");

    let e = find(&reader);
    assert_eq!(e["status"], "404");
    assert_eq!(e["caller"], "logged-reader");
    assert_eq!(e["role"], "reader");
    assert_eq!(e["auth"], "ok");

    let e = find(&unknown);
    assert_eq!(e["role"], "anonymous");
    assert_eq!(e["auth"], "unrecognised");

    let e = find(bad);
    assert_eq!(e["status"], "400");

    // The submission: by the submitter, 201. Other tests in this binary submit too, so it is
    // the one with this harness's caller name.
    let submits: Vec<_> = events
        .iter()
        .filter(|e| e.get("caller").map(String::as_str) == Some("logged-submitter"))
        .collect();
    assert_eq!(submits.len(), 1, "{submits:?}");
    assert_eq!(submits[0]["method"], "POST");
    assert_eq!(submits[0]["path"], "/v1/decisions");
    assert_eq!(submits[0]["status"], "201");
    assert_eq!(submits[0]["role"], "submitter");

    // No query string, no token, anywhere in the log.
    for e in &events {
        for v in e.values() {
            for needle in [secret, READER, SUBMITTER, "made-up-token-for-the-log"] {
                assert!(!v.contains(needle), "{needle} logged: {e:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Captured access-log events, each its fields by name.
type AccessLog = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

/// The access log's events, captured by a global subscriber (a scoped one would not see the
/// server's tasks on other threads). Only `triplicate::access` is captured.
fn capture_access_log() -> AccessLog {
    static LOG: OnceLock<AccessLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        tracing::subscriber::set_global_default(Capture(log.clone()))
            .expect("no other global subscriber in this test binary");
        log
    })
    .clone()
}

struct Capture(AccessLog);

struct Fields(BTreeMap<String, String>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == ACCESS_LOG_TARGET
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(BTreeMap::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A URL for a route, with its path parameters filled in.
fn concrete(route: &str) -> String {
    route
        .replace("{id}", &Uuid::now_v7().to_string())
        .replace("{*path}", "0/000")
}

/// (status, media type without parameters, body text).
async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, String, String) {
    let mut req = http.request(method.parse().unwrap(), format!("{base}{url}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    } else if method == "POST" {
        req = req.json(&json!({}));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| {
            v.to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .trim()
                .to_owned()
        })
        .unwrap_or_default();
    (status, content_type, resp.text().await.unwrap())
}

/// The operation object of an axum route.
fn operation<'a>(doc: &'a Value, method: &str, route: &str) -> &'a Value {
    let op = &doc["paths"][openapi_path(route)][method.to_lowercase()];
    assert!(op.is_object(), "{method} {route} is not documented");
    op
}

/// Follows a `$ref` (repeatedly).
fn deref<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    while let Some(r) = v.get("$ref").and_then(Value::as_str) {
        v = doc
            .pointer(r.strip_prefix('#').unwrap())
            .unwrap_or_else(|| panic!("$ref {r} does not resolve"));
    }
    v
}

fn collect_refs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "$ref" {
                    out.push((at.to_owned(), v.as_str().unwrap_or_default().to_owned()));
                } else {
                    collect_refs(v, &format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                collect_refs(v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Validates JSON against the document's schemas: the subset of JSON Schema 2020-12 the
/// document uses (`$ref`, `allOf`, `oneOf`, `type`, `const`, `enum`, `properties`,
/// `required`, `additionalProperties: false`, `items`, `minimum`, `maximum`, lengths and item
/// counts). Formats and patterns are not checked.
struct Validator<'a> {
    doc: &'a Value,
}

impl<'a> Validator<'a> {
    fn new(doc: &'a Value) -> Validator<'a> {
        Validator { doc }
    }

    /// The documented response for `status` has the response's media type, and a JSON body
    /// validates against its schema.
    fn check_response(&self, method: &str, route: &str, status: u16, media: &str, text: &str) {
        let op = operation(self.doc, method, route);
        let resp = op["responses"]
            .get(status.to_string())
            .unwrap_or_else(|| panic!("{method} {route}: {status} is not documented"));
        let resp = deref(self.doc, resp);
        let content = &resp["content"][media];
        assert!(
            content.is_object(),
            "{method} {route} {status}: {media} is not documented ({})",
            resp["content"]
        );
        if media.ends_with("json") {
            let body: Value = serde_json::from_str(text).unwrap();
            let mut errors = Vec::new();
            self.validate(&content["schema"], &body, "", &mut errors);
            assert!(
                errors.is_empty(),
                "{method} {route} {status}: {errors:#?}\n{body}"
            );
        }
    }

    fn validate_named(&self, name: &str, v: &Value) {
        let mut errors = Vec::new();
        self.validate(&self.doc["components"]["schemas"][name], v, "", &mut errors);
        assert!(errors.is_empty(), "{name}: {errors:#?}\n{v}");
    }

    fn validate(&self, s: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let target = self.doc.pointer(r.trim_start_matches('#'));
            self.validate(target.expect("$ref resolves"), v, at, errors);
        }
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.validate(sub, v, at, errors);
            }
        }
        if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
            let matching = one
                .iter()
                .filter(|sub| {
                    let mut e = Vec::new();
                    self.validate(sub, v, at, &mut e);
                    e.is_empty()
                })
                .count();
            if matching != 1 {
                errors.push(format!("{at}: matches {matching} of oneOf"));
            }
        }
        if let Some(t) = s.get("type") {
            let types: Vec<&str> = match t {
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                other => other.as_str().into_iter().collect(),
            };
            if !types.iter().any(|t| is_type(v, t)) {
                errors.push(format!("{at}: {v} is not {types:?}"));
                return;
            }
        }
        if let Some(c) = s.get("const") {
            if c != v {
                errors.push(format!("{at}: {v} is not {c}"));
            }
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array) {
            if !e.contains(v) {
                errors.push(format!("{at}: {v} is not one of {e:?}"));
            }
        }
        if let (Some(min), Some(n)) = (s.get("minimum").and_then(Value::as_f64), v.as_f64()) {
            if n < min {
                errors.push(format!("{at}: {n} < {min}"));
            }
        }
        if let (Some(max), Some(n)) = (s.get("maximum").and_then(Value::as_f64), v.as_f64()) {
            if n > max {
                errors.push(format!("{at}: {n} > {max}"));
            }
        }
        if let Some(text) = v.as_str() {
            let chars = text.chars().count() as u64;
            if s.get("minLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| chars < m)
            {
                errors.push(format!("{at}: too short"));
            }
            if s.get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| chars > m)
            {
                errors.push(format!("{at}: too long"));
            }
        }
        if let Some(items) = v.as_array() {
            if s.get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| items.len() as u64 > m)
            {
                errors.push(format!("{at}: too many items"));
            }
            if let Some(item) = s.get("items") {
                for (i, x) in items.iter().enumerate() {
                    self.validate(item, x, &format!("{at}/{i}"), errors);
                }
            }
        }
        if let Some(obj) = v.as_object() {
            let props = s.get("properties").and_then(Value::as_object);
            for name in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = name.as_str().unwrap();
                if !obj.contains_key(name) {
                    errors.push(format!("{at}: missing {name}"));
                }
            }
            for (k, x) in obj {
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => self.validate(ps, x, &format!("{at}/{k}"), errors),
                    None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        errors.push(format!("{at}: unexpected member {k}"));
                    }
                    None => {}
                }
            }
        }
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        _ => false,
    }
}
