//! The service with the PostgreSQL projection: end to end, and through an outage.
//!
//! Each test gets its own fresh database (`PgTestDb`) on the machine's server (or
//! `TRIPLICATE_TEST_PG_URL`); the outage is made by a TCP proxy this test controls, never by
//! touching the shared server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use triplicate_core::{Decision, Timestamp};
use triplicate_keys::SoftwareSigner;
use triplicate_projection::testkit::PgTestDb;
use triplicate_projection::Projection;
use triplicate_server::setup::{ProjectionChoice, DEV_ORIGIN};
use triplicate_server::{Running, ServeConfig, ServiceOptions};
use uuid::Uuid;

/// A TCP proxy to PostgreSQL that the test can cut (every connection dropped, new ones closed
/// at once) and restore.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (up, conns) = (up.clone(), conns.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        return;
                    };
                    // Checked and recorded under the list's lock, so `cut` (which takes it
                    // too) cannot fall between them and miss a connection let through.
                    let mut open = conns.lock().unwrap();
                    if !up.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let target = target.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    open.push(task);
                }
            })
        };
        Proxy {
            port,
            up,
            conns,
            accept,
        }
    }

    fn cut(&self) {
        let mut open = self.conns.lock().unwrap();
        self.up.store(false, Ordering::SeqCst);
        for c in open.drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

fn db_url(db: &PgTestDb, host_port: &str) -> String {
    let o = db.connect_options();
    format!("postgres://{}@{host_port}/{}", o.get_username(), db.name())
}

fn direct(db: &PgTestDb) -> String {
    let o = db.connect_options();
    format!("{}:{}", o.get_host(), o.get_port())
}

async fn start(dir: &std::path::Path, url: String, options: ServiceOptions) -> Running {
    triplicate_server::start(ServeConfig {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        projection: ProjectionChoice::Postgres { url },
        stream: Default::default(),
        origin: DEV_ORIGIN.into(),
        // Runs happen when a test asks: a scheduled one would add its audit record mid-test.
        options: ServiceOptions {
            scheduled_crosscheck: false,
            ..options
        },
    })
    .await
    .unwrap()
}

fn submission(r: &Running, title: &str) -> Value {
    let d = Decision::from_json(
        json!({
            "id": Uuid::now_v7().to_string(),
            "kind": "motion",
            "title": title,
            "body": "Carried.",
            "payload": {},
            "proposed_at": Timestamp::now().to_string(),
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let approve =
        |key: &SoftwareSigner| triplicate_keys::approve(&d, key, Timestamp::now()).unwrap();
    json!({ "decision": d, "approvals": [approve(&r.approvers[0]), approve(&r.approvers[1])] })
}

async fn submit(r: &Running, body: &Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/decisions", r.addr))
        .bearer_auth(&r.admin_token)
        .json(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn assert_projection_matches_ledger(r: &Running, size: u64) {
    for _ in 0..800 {
        if r.service.health().projection.size >= size {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let h = r.service.health();
    assert_eq!(h.projection.size, size, "{h:?}");
    assert!(h.projection.healthy, "{h:?}");
    let ledger = r.service.ledger().entries(0, size).unwrap();
    let projected = r.service.projection().record_bytes(0, size).await.unwrap();
    assert_eq!(projected.len() as u64, size);
    for (seq, bytes) in ledger.iter().enumerate() {
        assert_eq!(projected[seq].bytes(), Some(bytes.as_slice()), "seq {seq}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_writes_postgres_and_reads_from_it() {
    let db = PgTestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let r = start(
        dir.path(),
        db_url(&db, &direct(&db)),
        ServiceOptions::default(),
    )
    .await;
    for i in 0..5 {
        let (status, out) = submit(&r, &submission(&r, &format!("Motion {i}"))).await;
        assert_eq!(status, 201, "{out}");
    }
    assert_projection_matches_ledger(&r, 5).await;
    let list: Value = reqwest::get(format!("http://{}/v1/decisions?q=motion&limit=2", r.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["decisions"].as_array().unwrap().len(), 2);
    assert_eq!(list["decisions"][0]["seq"], 4);
    assert!(list["next"].is_string());
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_keep_committing_while_postgres_is_unreachable_and_nothing_is_lost() {
    let db = PgTestDb::create().await;
    let proxy = Proxy::start(direct(&db)).await;
    let dir = tempfile::tempdir().unwrap();
    let options = ServiceOptions {
        store_timeout: Duration::from_secs(1),
        catchup_interval: Duration::from_millis(100),
        ..ServiceOptions::default()
    };
    let r = start(
        dir.path(),
        db_url(&db, &format!("127.0.0.1:{}", proxy.port)),
        options,
    )
    .await;
    for i in 0..3 {
        let (status, out) = submit(&r, &submission(&r, &format!("Before {i}"))).await;
        assert_eq!(status, 201, "{out}");
        assert_eq!(out["stores"]["projection"], "written");
    }

    proxy.cut();
    let mut pending = 0;
    for i in 0..5 {
        let (status, out) = submit(&r, &submission(&r, &format!("During {i}"))).await;
        assert_eq!(
            status, 201,
            "the ledger commits while PostgreSQL is down: {out}"
        );
        assert_eq!(out["stores"]["stream"], "written");
        if out["stores"]["projection"] == "pending" {
            pending += 1;
        }
    }
    assert_eq!(
        pending, 5,
        "every receipt during the outage says the projection is pending"
    );
    let ready: Value = reqwest::get(format!("http://{}/readyz", r.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ledger_size"], 8);
    assert_eq!(ready["projection"]["lag"], 5, "{ready}");
    assert_eq!(ready["projection"]["healthy"], false);
    let metrics = reqwest::get(format!("http://{}/metrics", r.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("triplicate_store_lag_records{store=\"projection\"} 5"),
        "{metrics}"
    );

    proxy.restore();
    assert_projection_matches_ledger(&r, 8).await;
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_starts_while_postgres_is_unreachable_and_fills_it_later() {
    let db = PgTestDb::create_unmigrated().await;
    let proxy = Proxy::start(direct(&db)).await;
    proxy.cut();
    let dir = tempfile::tempdir().unwrap();
    let options = ServiceOptions {
        store_timeout: Duration::from_secs(1),
        catchup_interval: Duration::from_millis(100),
        ..ServiceOptions::default()
    };
    // PostgreSQL is down at start (and has never been migrated): the service starts anyway.
    let r = start(
        dir.path(),
        db_url(&db, &format!("127.0.0.1:{}", proxy.port)),
        options,
    )
    .await;
    for i in 0..3 {
        let (status, out) = submit(&r, &submission(&r, &format!("While down {i}"))).await;
        assert_eq!(status, 201, "the ledger commits: {out}");
        assert_eq!(out["stores"]["projection"], "pending", "{out}");
    }
    let ready: Value = reqwest::get(format!("http://{}/readyz", r.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["projection"]["healthy"], false, "{ready}");
    // PostgreSQL answers: the migrations run, the catch-up worker fills the projection.
    proxy.restore();
    assert_projection_matches_ledger(&r, 3).await;
    r.stop().await.unwrap();
}
