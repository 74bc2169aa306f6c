//! Webhook alerts against a local receiver (axum on 127.0.0.1:0) that records every request
//! and answers from a script: who gets an alert, what it says, how it is signed, and how
//! failures are retried.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, VecDeque};
use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use triplicate_core::Timestamp;
use triplicate_verifier::{
    alert_body, CheckpointRef, Class, Counts, Delivery, DeliveryOptions, Discrepancy, Kind, Report,
    RunMode, SeqRange, Store, VerificationPolicy, Webhook, WebhookError, WebhookSender,
    REPORT_VERSION,
};
use uuid::Uuid;

const SECRET_VAR: &str = "HOOK_SECRET";
const SECRET: &str = "correct horse battery staple";

// ---------------------------------------------------------------------------------------------
// The receiver.

#[derive(Clone, Copy)]
struct Reply {
    status: u16,
    retry_after: Option<u64>,
    delay: Duration,
}

fn reply(status: u16) -> Reply {
    Reply {
        status,
        retry_after: None,
        delay: Duration::ZERO,
    }
}

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

struct Script {
    received: Vec<Received>,
    replies: VecDeque<Reply>,
    then: Reply,
}

type Shared = Arc<Mutex<Script>>;

struct Receiver {
    base: String,
    shared: Shared,
}

impl Receiver {
    /// A receiver answering `replies` in turn, then `then` for ever.
    async fn start(replies: Vec<Reply>, then: Reply) -> Receiver {
        let shared: Shared = Arc::new(Mutex::new(Script {
            received: Vec::new(),
            replies: replies.into(),
            then,
        }));
        let app = Router::new()
            .route("/{name}", post(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { base, shared }
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    fn received(&self) -> Vec<Received> {
        self.shared.lock().unwrap().received.clone()
    }
}

async fn handle(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = {
        let mut s = shared.lock().unwrap();
        s.received.push(Received {
            path: uri.path().to_owned(),
            headers,
            body,
            at: Instant::now(),
        });
        let then = s.then;
        s.replies.pop_front().unwrap_or(then)
    };
    tokio::time::sleep(r.delay).await;
    let mut response = StatusCode::from_u16(r.status).unwrap().into_response();
    if let Some(secs) = r.retry_after {
        response
            .headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Reports, targets, senders.

fn discrepancy(seq: u64, class: Class) -> Discrepancy {
    let (store, kind) = match class {
        Class::Lag | Class::Minor => (Store::Projection, Kind::Missing),
        Class::Major => (Store::Stream, Kind::Differs),
        Class::Critical => (Store::Ledger, Kind::RootMismatch),
    };
    Discrepancy {
        seq: Some(seq),
        decision_id: (class == Class::Major).then(Uuid::now_v7),
        store,
        class,
        kind,
        expected_hash: Some([seq as u8; 32]),
        actual_hash: (class == Class::Major).then_some([0xee; 32]),
        file: (class == Class::Critical).then(|| "tile/0/000".to_owned()),
        detail: format!("{class} finding at seq {seq}"),
    }
}

fn report(discrepancies: Vec<Discrepancy>) -> Report {
    let now = Timestamp::now();
    Report {
        version: REPORT_VERSION,
        run_id: Uuid::now_v7(),
        mode: RunMode::Incremental,
        started_at: now,
        finished_at: now,
        as_of: now,
        checkpoint_old: None,
        checkpoint_new: Some(CheckpointRef {
            size: 1234,
            root: [0x42; 32],
        }),
        ranges: vec![SeqRange {
            start: 0,
            end: 1234,
        }],
        records_compared: 1234,
        signatures_checked: 0,
        counts: Counts::of(&discrepancies),
        discrepancies,
        actions: Vec::new(),
        stream_cursor: None,
    }
}

/// `[[webhook]]` tables parsed as `verification.toml` parses them (`Webhook` is
/// non-exhaustive, so this is also how a caller gets one).
fn webhooks(tables: &[(&str, &str)]) -> Vec<Webhook> {
    let mut text = String::new();
    for (url, rest) in tables {
        text.push_str(&format!("[[webhook]]\nurl = \"{url}\"\n{rest}\n\n"));
    }
    VerificationPolicy::from_toml(&text).unwrap().webhooks
}

fn env(var: &str) -> Option<OsString> {
    (var == SECRET_VAR).then(|| SECRET.into())
}

fn fast(attempts: u32) -> DeliveryOptions {
    DeliveryOptions {
        attempts,
        first_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        timeout: Duration::from_secs(5),
    }
}

fn sender(targets: Vec<Webhook>, options: DeliveryOptions) -> WebhookSender {
    WebhookSender::with_env(targets, options, env).unwrap()
}

fn b64(h: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(h)
}

/// Recomputes the signature of a received request with the shared secret.
fn assert_signed(r: &Received) {
    let timestamp = r
        .header("x-triplicate-timestamp")
        .expect("timestamp header");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&r.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(r.header("x-triplicate-signature"), Some(expected.as_str()));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ts: u64 = timestamp.parse().unwrap();
    assert!(now.abs_diff(ts) < 60, "timestamp {ts} is not now ({now})");
}

fn only(deliveries: &[Delivery]) -> &Delivery {
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    &deliveries[0]
}

// ---------------------------------------------------------------------------------------------
// Who gets what.

#[tokio::test]
async fn major_finding_reaches_its_target_signed_with_only_its_classes() {
    let rx = Receiver::start(vec![], reply(200)).await;
    let targets = webhooks(&[
        (
            &rx.url("major"),
            &format!("secret_env = \"{SECRET_VAR}\"\nclasses = [\"major\"]"),
        ),
        (&rx.url("minor"), "classes = [\"minor\"]"),
        (
            &rx.url("critical"),
            &format!("secret_env = \"{SECRET_VAR}\"\nclasses = [\"critical\"]"),
        ),
    ]);
    let report = report(vec![
        discrepancy(3, Class::Lag),
        discrepancy(5, Class::Minor),
        discrepancy(7, Class::Major),
        discrepancy(9, Class::Minor),
    ]);
    let deliveries = sender(targets, fast(3))
        .deliver(&report, Some("https://triplicate.example/reports/1"))
        .await;

    // The critical-only target has nothing to hear about.
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    for d in &deliveries {
        assert!(d.delivered, "{d:?}");
        assert_eq!(
            (d.attempts, d.status, d.error.as_deref()),
            (1, Some(200), None)
        );
    }
    assert_eq!(deliveries[0].url, rx.url("major"));
    assert_eq!(deliveries[1].url, rx.url("minor"));
    let received = rx.received();
    assert_eq!(received.len(), 2);
    let major = received.iter().find(|r| r.path == "/major").unwrap();
    let minor = received.iter().find(|r| r.path == "/minor").unwrap();

    // Headers.
    assert_eq!(major.header("content-type"), Some("application/json"));
    assert_eq!(
        major.header("user-agent"),
        Some(concat!("triplicate/", env!("CARGO_PKG_VERSION")))
    );
    let id: Uuid = major
        .header("x-triplicate-delivery")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(id.get_version_num(), 4);
    assert_eq!(id, deliveries[0].delivery_id);
    assert_signed(major);
    assert_eq!(
        minor.header("x-triplicate-signature"),
        None,
        "unsigned target"
    );
    assert!(minor.header("x-triplicate-timestamp").is_some());

    // Body of the major target: the whole report's summary, only major discrepancies.
    let body = major.json();
    let digest = b64(&report.digest().unwrap());
    let d = &report.discrepancies[2];
    assert_eq!(
        body,
        json!({
            "type": "triplicate.verification.alert",
            "version": 1,
            "run_id": report.run_id.to_string(),
            "mode": "incremental",
            "started_at": report.started_at,
            "finished_at": report.finished_at,
            "report_digest": digest,
            "worst_class": "major",
            "counts": {"lag": 1, "minor": 2, "major": 1, "critical": 0},
            "checkpoint": {"size": 1234, "root": b64(&[0x42; 32])},
            "discrepancies": [{
                "seq": 7,
                "decision_id": d.decision_id.unwrap().to_string(),
                "store": "stream",
                "class": "major",
                "kind": "differs",
                "expected_hash": b64(&[7; 32]),
                "actual_hash": b64(&[0xee; 32]),
                "file": null,
                "detail": "major finding at seq 7",
            }],
            "discrepancies_omitted": 0,
            "report_url": "https://triplicate.example/reports/1",
        })
    );
    // What was sent is what alert_body builds.
    assert_eq!(
        body,
        alert_body(
            &report,
            &BTreeSet::from([Class::Major]),
            Some("https://triplicate.example/reports/1")
        )
    );

    // The minor target sees the two minor findings, in report order, and not the major one.
    let body = minor.json();
    let listed: Vec<(u64, &str)> = body["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["seq"].as_u64().unwrap(), d["class"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, [(5, "minor"), (9, "minor")]);
    assert_eq!(body["worst_class"], "major");
    assert_eq!(body["discrepancies"][0]["decision_id"], Value::Null);
    assert_eq!(body["discrepancies"][0]["actual_hash"], Value::Null);
}

#[tokio::test]
async fn clean_report_sends_nothing() {
    let rx = Receiver::start(vec![], reply(200)).await;
    let targets = webhooks(&[
        (
            &rx.url("all"),
            "classes = [\"lag\", \"minor\", \"major\", \"critical\"]",
        ),
        (&rx.url("default"), ""),
    ]);
    let s = sender(targets, fast(3));
    assert!(s.deliver(&report(vec![]), None).await.is_empty());
    // Lag only: the target listing lag hears of it, the default (major, critical) does not.
    let lag = report(vec![discrepancy(1, Class::Lag)]);
    let deliveries = s.deliver(&lag, None).await;
    assert_eq!(only(&deliveries).url, rx.url("all"));
    let received = rx.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].json()["report_url"], Value::Null);
    assert_eq!(received[0].json()["worst_class"], "lag");
}

#[tokio::test]
async fn critical_only_target_gets_nothing_for_a_major_only_report() {
    let rx = Receiver::start(vec![], reply(200)).await;
    let targets = webhooks(&[(
        &rx.url("critical"),
        &format!("secret_env = \"{SECRET_VAR}\"\nclasses = [\"critical\"]"),
    )]);
    let deliveries = sender(targets, fast(3))
        .deliver(
            &report(vec![
                discrepancy(1, Class::Major),
                discrepancy(2, Class::Major),
            ]),
            None,
        )
        .await;
    assert!(deliveries.is_empty(), "{deliveries:?}");
    assert!(rx.received().is_empty());
}

#[tokio::test]
async fn more_than_100_discrepancies_are_counted_as_omitted() {
    let rx = Receiver::start(vec![], reply(200)).await;
    let targets = webhooks(&[(&rx.url("hook"), "classes = [\"major\", \"critical\"]")]);
    let mut ds: Vec<Discrepancy> = (0..150).map(|i| discrepancy(i, Class::Major)).collect();
    ds.extend((150..160).map(|i| discrepancy(i, Class::Minor)));
    // Last in the report, but most serious: listed first, never crowded out.
    ds.extend((160..165).map(|i| discrepancy(i, Class::Critical)));
    let deliveries = sender(targets, fast(3)).deliver(&report(ds), None).await;
    assert!(only(&deliveries).delivered);
    let body = rx.received()[0].json();
    let listed = body["discrepancies"].as_array().unwrap();
    assert_eq!(listed.len(), 100);
    assert!(listed[..5].iter().all(|d| d["class"] == "critical"));
    assert_eq!(listed[0]["file"], "tile/0/000");
    assert!(listed[5..].iter().all(|d| d["class"] == "major"));
    assert_eq!(listed[5]["seq"], 0);
    // 150 major + 5 critical listed-or-omitted; the 10 minor are not this target's.
    assert_eq!(body["discrepancies_omitted"], 55);
    assert_eq!(body["counts"]["minor"], 10);
    assert_eq!(body["worst_class"], "critical");
}

#[tokio::test]
async fn targets_are_sent_to_concurrently() {
    let slow = Reply {
        delay: Duration::from_millis(700),
        ..reply(200)
    };
    let rx = Receiver::start(vec![], slow).await;
    let targets = webhooks(&[(&rx.url("one"), ""), (&rx.url("two"), "")]);
    let started = Instant::now();
    let deliveries = sender(targets, fast(1))
        .deliver(&report(vec![discrepancy(1, Class::Major)]), None)
        .await;
    let took = started.elapsed();
    assert_eq!(deliveries.len(), 2);
    assert!(deliveries.iter().all(|d| d.delivered), "{deliveries:?}");
    // One after the other would take at least 1.4 s.
    assert!(took < Duration::from_millis(1300), "took {took:?}");
}

// ---------------------------------------------------------------------------------------------
// Retries.

#[tokio::test]
async fn server_errors_are_retried_with_the_same_delivery_id() {
    let rx = Receiver::start(vec![reply(500), reply(500)], reply(200)).await;
    let targets = webhooks(&[(
        &rx.url("hook"),
        &format!("secret_env = \"{SECRET_VAR}\"\nclasses = [\"major\"]"),
    )]);
    let deliveries = sender(targets, fast(6))
        .deliver(&report(vec![discrepancy(1, Class::Major)]), None)
        .await;
    let d = only(&deliveries);
    assert!(d.delivered, "{d:?}");
    assert_eq!(
        (d.attempts, d.status, d.error.as_deref()),
        (3, Some(200), None)
    );
    let received = rx.received();
    assert_eq!(received.len(), 3);
    for r in &received {
        assert_eq!(
            r.header("x-triplicate-delivery"),
            Some(d.delivery_id.to_string().as_str())
        );
        assert_signed(r);
        assert_eq!(r.body, received[0].body);
    }
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let rx = Receiver::start(vec![], reply(400)).await;
    let targets = webhooks(&[(&rx.url("hook"), "")]);
    let deliveries = sender(targets, fast(6))
        .deliver(&report(vec![discrepancy(1, Class::Critical)]), None)
        .await;
    let d = only(&deliveries);
    assert!(!d.delivered);
    assert_eq!((d.attempts, d.status), (1, Some(400)));
    assert!(d.error.as_deref().unwrap().contains("400"), "{d:?}");
    assert_eq!(rx.received().len(), 1);
}

#[tokio::test]
async fn a_receiver_that_always_fails_is_given_up_after_all_attempts() {
    let rx = Receiver::start(vec![], reply(503)).await;
    let targets = webhooks(&[(&rx.url("hook"), "")]);
    let deliveries = sender(targets, fast(4))
        .deliver(&report(vec![discrepancy(1, Class::Major)]), None)
        .await;
    let d = only(&deliveries);
    assert!(!d.delivered);
    assert_eq!((d.attempts, d.status), (4, Some(503)));
    assert!(d.error.as_deref().unwrap().contains("503"), "{d:?}");
    assert_eq!(rx.received().len(), 4);
}

#[tokio::test]
async fn an_unreachable_receiver_is_retried_then_given_up() {
    // A port that was just free: connecting to it is refused.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    let deliveries = sender(webhooks(&[(&url, "")]), fast(3))
        .deliver(&report(vec![discrepancy(1, Class::Major)]), None)
        .await;
    let d = only(&deliveries);
    assert!(!d.delivered);
    assert_eq!((d.attempts, d.status), (3, None));
    assert!(!d.error.as_deref().unwrap().is_empty());
}

#[tokio::test]
async fn a_slow_receiver_times_out_and_is_retried() {
    let slow = Reply {
        delay: Duration::from_secs(5),
        ..reply(200)
    };
    let rx = Receiver::start(vec![slow], reply(200)).await;
    let options = DeliveryOptions {
        timeout: Duration::from_millis(300),
        ..fast(3)
    };
    let deliveries = sender(webhooks(&[(&rx.url("hook"), "")]), options)
        .deliver(&report(vec![discrepancy(1, Class::Major)]), None)
        .await;
    let d = only(&deliveries);
    assert!(d.delivered, "{d:?}");
    assert_eq!((d.attempts, d.status), (2, Some(200)));
    assert_eq!(rx.received().len(), 2);
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    let busy = Reply {
        retry_after: Some(1),
        ..reply(429)
    };
    let rx = Receiver::start(vec![busy], reply(200)).await;
    let options = DeliveryOptions {
        max_backoff: Duration::from_secs(5),
        ..fast(3)
    };
    let deliveries = sender(webhooks(&[(&rx.url("hook"), "")]), options)
        .deliver(&report(vec![discrepancy(1, Class::Major)]), None)
        .await;
    let d = only(&deliveries);
    assert!(d.delivered, "{d:?}");
    assert_eq!(d.attempts, 2);
    let received = rx.received();
    let waited = received[1].at - received[0].at;
    // The backoff alone would be a few milliseconds.
    assert!(waited >= Duration::from_millis(950), "waited {waited:?}");
    assert!(waited < Duration::from_secs(4), "waited {waited:?}");
}

#[tokio::test]
async fn retry_after_is_capped_at_max_backoff() {
    let busy = Reply {
        retry_after: Some(3600),
        ..reply(503)
    };
    let rx = Receiver::start(vec![busy], reply(200)).await;
    let options = DeliveryOptions {
        max_backoff: Duration::from_millis(100),
        ..fast(3)
    };
    let started = Instant::now();
    let deliveries = sender(webhooks(&[(&rx.url("hook"), "")]), options)
        .deliver(&report(vec![discrepancy(1, Class::Major)]), None)
        .await;
    assert!(only(&deliveries).delivered);
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------------
// Construction.

#[test]
fn a_missing_secret_is_a_construction_error() {
    let var = "TRIPLICATE_TEST_WEBHOOK_SECRET_THAT_IS_NEVER_SET";
    let url = "https://alerts.example.org/triplicate";
    let targets = webhooks(&[(url, &format!("secret_env = \"{var}\""))]);
    let err = WebhookSender::new(targets.clone(), DeliveryOptions::default()).unwrap_err();
    match &err {
        WebhookError::Secret { url: u, var: v, .. } => {
            assert_eq!((u.as_str(), v.as_str()), (url, var))
        }
        other => panic!("unexpected error {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(var) && text.contains(url), "{text}");

    // Set but empty is as bad as unset.
    let err = WebhookSender::with_env(targets, DeliveryOptions::default(), |_| {
        Some(OsString::new())
    })
    .unwrap_err();
    assert!(err.to_string().contains("is empty"), "{err}");

    // No secret_env at all: sent unsigned, and that is allowed.
    let unsigned = webhooks(&[(url, "")]);
    assert_eq!(
        WebhookSender::new(unsigned, DeliveryOptions::default())
            .unwrap()
            .targets(),
        1
    );
}

#[test]
fn zero_attempts_is_a_construction_error() {
    let options = DeliveryOptions {
        attempts: 0,
        ..DeliveryOptions::default()
    };
    assert!(matches!(
        WebhookSender::new(Vec::new(), options),
        Err(WebhookError::Options(_))
    ));
}

#[test]
fn default_options() {
    let o = DeliveryOptions::default();
    assert_eq!(o.attempts, 6);
    assert_eq!(o.first_backoff, Duration::from_millis(500));
    assert_eq!(o.max_backoff, Duration::from_secs(30));
    assert_eq!(o.timeout, Duration::from_secs(10));
}
