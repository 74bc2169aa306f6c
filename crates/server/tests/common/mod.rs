//! Helpers shared by the server's integration tests: decisions and approvals as a submitter
//! and approvers would make them.

// Each test binary uses its own subset.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use triplicate_core::{Approval, Decision, Timestamp};
use triplicate_keys::{Signer, SoftwareSigner};
use uuid::Uuid;

/// A valid decision of `kind` with a fresh UUIDv7.
pub fn decision(kind: &str, title: &str) -> Decision {
    Decision::from_json(
        json!({
            "id": Uuid::now_v7().to_string(),
            "kind": kind,
            "title": title,
            "body": "Moved and carried.",
            "payload": {"amount": 1200},
            "proposed_at": Timestamp::now().to_string(),
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

/// `key`'s approval of `d`, signed now.
pub fn approve(d: &Decision, key: &dyn Signer) -> Approval {
    triplicate_keys::approve(d, key, Timestamp::now()).unwrap()
}

/// The `POST /v1/decisions` body.
pub fn body(d: &Decision, approvals: &[Approval]) -> Value {
    json!({ "decision": d, "approvals": approvals })
}

/// One request to `base` + `path` (GET, or POST with a JSON body), with an optional bearer
/// token: the status and the body as JSON (`Null` when it is not JSON).
pub async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let url = format!("{base}{path}");
    let mut req = match method {
        "POST" => http.post(url),
        _ => http.get(url),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Waits (up to 20 s) until the stream and the projection hold everything the ledger does.
pub async fn settle(service: &triplicate_server::Service) {
    let size = service.ledger().tree_size();
    for _ in 0..800 {
        let h = service.health();
        if h.stream.size >= size && h.projection.size >= size {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("stores did not catch up: {:?}", service.health());
}

/// Submits `n` motions ("Adopt motion {i}"), each approved by the development approvers 1 and
/// 2, 25 at a time with the admin token, and waits for both copies to hold them.
pub async fn populate(r: &triplicate_server::Running, http: &reqwest::Client, n: usize) {
    let base = format!("http://{}", r.addr);
    let titles: Vec<String> = (0..n).map(|i| format!("Adopt motion {i}")).collect();
    for chunk in titles.chunks(25) {
        let outs = futures::future::join_all(chunk.iter().map(|t| {
            let d = decision("motion", t);
            let b = body(
                &d,
                &[approve(&d, &r.approvers[0]), approve(&d, &r.approvers[1])],
            );
            let base = base.clone();
            async move {
                call(
                    http,
                    &base,
                    "POST",
                    "/v1/decisions",
                    Some(&r.admin_token),
                    Some(&b),
                )
                .await
            }
        }))
        .await;
        for (status, out) in outs {
            assert_eq!(status, 201, "{out}");
        }
    }
    settle(&r.service).await;
}

/// Changes the projection's title at `seq` as someone with the file would (the trigger that
/// refuses it dropped first).
pub fn drift(dir: &std::path::Path, seq: u64, title: &str) {
    let c = rusqlite::Connection::open(dir.join("projection.db")).unwrap();
    c.execute_batch("DROP TRIGGER IF EXISTS decisions_no_update;")
        .unwrap();
    c.execute(
        "UPDATE decisions SET title = ?1 WHERE seq = ?2",
        rusqlite::params![title, seq as i64],
    )
    .unwrap();
}

/// The statement `key` signs for its verdict on `repair` (as `GET /v1/verification/repairs/…`
/// serves it), signed at `signed_at`, and the signature in base64.
pub fn sign_verdict(
    key: &SoftwareSigner,
    repair: &Value,
    verdict: triplicate_verifier::review::Verdict,
    reason: &str,
    signed_at: Timestamp,
) -> (triplicate_verifier::review::ReviewStatement, String) {
    use base64::Engine as _;
    let digest = base64::engine::general_purpose::STANDARD
        .decode(repair["report_digest"].as_str().unwrap())
        .unwrap();
    let st = triplicate_verifier::review::ReviewStatement {
        action_id: Uuid::parse_str(repair["id"].as_str().unwrap()).unwrap(),
        run_id: Uuid::parse_str(repair["run_id"].as_str().unwrap()).unwrap(),
        report_digest: digest.try_into().unwrap(),
        verdict,
        key_id: key.key_id(),
        alg: key.algorithm(),
        signed_at,
        reason: reason.into(),
    };
    let sig = key.sign(&st.message().unwrap()).unwrap();
    (st, base64::engine::general_purpose::STANDARD.encode(sig))
}

/// The body of `POST /v1/verification/repairs/{id}/approve|reject`: `key`'s verdict on
/// `repair`, signed now.
pub fn verdict_body(
    key: &SoftwareSigner,
    repair: &Value,
    verdict: triplicate_verifier::review::Verdict,
    reason: &str,
) -> Value {
    let (st, signature) = sign_verdict(key, repair, verdict, reason, Timestamp::now());
    json!({
        "key_id": st.key_id,
        "alg": st.alg,
        "signature": signature,
        "signed_at": st.signed_at,
        "reason": reason,
    })
}

/// What a webhook receiver got: each POST's headers and body.
pub type Posts = std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;

/// A local webhook receiver on 127.0.0.1:0 that records every POST to `/hook` and answers 200:
/// its URL and what it got.
pub async fn receiver() -> (String, Posts) {
    use axum::routing::post;
    let posts: Posts = Posts::default();
    let seen = posts.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push((headers, body.to_vec()));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), posts)
}

/// A full cross-check through `POST /v1/verification/runs` with `token` (an auditor's or an
/// admin's): the stored report as the service answers it (201).
pub async fn full_run(
    r: &triplicate_server::Running,
    http: &reqwest::Client,
    token: &str,
) -> Value {
    let base = format!("http://{}", r.addr);
    let body = json!({ "full": true });
    let (status, out) = call(
        http,
        &base,
        "POST",
        "/v1/verification/runs",
        Some(token),
        Some(&body),
    )
    .await;
    assert_eq!(status, 201, "{out}");
    out
}

/// A development service on `dir` (127.0.0.1, any port) with `projection`.
pub async fn start(
    dir: &std::path::Path,
    projection: triplicate_server::setup::ProjectionChoice,
) -> triplicate_server::Running {
    start_with(dir, projection, Default::default()).await
}

/// A development service on `dir` with `projection` and `stream`.
pub async fn start_with(
    dir: &std::path::Path,
    projection: triplicate_server::setup::ProjectionChoice,
    stream: triplicate_server::setup::StreamChoice,
) -> triplicate_server::Running {
    triplicate_server::start(triplicate_server::ServeConfig {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        projection,
        stream,
        origin: triplicate_server::setup::DEV_ORIGIN.into(),
        options: triplicate_server::ServiceOptions::on_demand_crosscheck(),
    })
    .await
    .unwrap()
}

/// The owner URL of a test database.
pub fn pg_url(db: &triplicate_projection::testkit::PgTestDb) -> String {
    let o = db.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        db.name()
    )
}

/// The NATS server the tests use: `TRIPLICATE_TEST_NATS_URL`, default `nats://127.0.0.1:4222`
/// (the README's test command starts one when none answers).
pub fn nats_url() -> String {
    std::env::var("TRIPLICATE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A JetStream stream of the test's own on the test NATS server (deleted by [`drop_nats`]).
pub fn fresh_nats() -> triplicate_server::setup::StreamChoice {
    let id = uuid::Uuid::now_v7().simple().to_string();
    triplicate_server::setup::StreamChoice::parse(
        &format!("{}?stream=T{id}&subject_prefix=t{id}", nats_url()),
        Default::default(),
    )
    .unwrap()
}

/// Deletes a test's JetStream stream.
pub async fn drop_nats(choice: &triplicate_server::setup::StreamChoice) {
    if let triplicate_server::setup::StreamChoice::Nats { options, .. } = choice {
        if let Ok(c) = async_nats::connect(nats_url()).await {
            let _ = async_nats::jetstream::new(c)
                .delete_stream(&options.stream)
                .await;
        }
    }
}

/// POSTs `body` (JSON) to `path` with `token`, then hangs up 30 ms later without reading the
/// answer, as a client that timed out would: the server has the whole request and has started
/// on it.
pub async fn post_and_hang_up(addr: std::net::SocketAddr, path: &str, token: &str, body: &str) {
    use tokio::io::AsyncWriteExt as _;
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    drop(socket);
}
