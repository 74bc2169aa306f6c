//! The service with its event stream in NATS JetStream: started while NATS is down (writes are
//! acknowledged from the ledger, the stream is pending and the lag shows), then NATS comes up
//! and the catch-up worker fills the stream; a full cross-check is clean.
//!
//! The NATS server here is one the test starts itself (`nats-server -js` on a free port with a
//! temporary store), so it can be down first; backups, restores and drills on JetStream are in
//! `recovery.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{populate, start_with};
use triplicate_server::setup::{ProjectionChoice, StreamChoice};

/// Kills the server when dropped.
struct NatsServer(std::process::Child);

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_started_while_nats_is_down_fills_the_stream_once_it_is_up() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let stream = StreamChoice::parse(
        &format!("nats://127.0.0.1:{port}?stream=OUTAGE"),
        Default::default(),
    )
    .unwrap();
    let r = start_with(&tmp.path().join("data"), ProjectionChoice::Sqlite, stream).await;
    assert_eq!(r.service.stream().name(), "nats");

    // Writes commit to the ledger and the projection; the stream lags.
    let http = reqwest::Client::new();
    let base = format!("http://{}", r.addr);
    for i in 0..5 {
        let d = common::decision("motion", &format!("While NATS is down {i}"));
        let b = common::body(
            &d,
            &[
                common::approve(&d, &r.approvers[0]),
                common::approve(&d, &r.approvers[1]),
            ],
        );
        let (status, out) = common::call(
            &http,
            &base,
            "POST",
            "/v1/decisions",
            Some(&r.admin_token),
            Some(&b),
        )
        .await;
        assert_eq!(status, 201, "{out}");
        assert_eq!(out["stores"]["stream"], "pending", "{out}");
        assert_eq!(out["stores"]["ledger"], "written", "{out}");
    }
    let h = r.service.health();
    assert_eq!(h.ledger_size, 5);
    assert!(h.stream.size < 5, "{h:?}");

    // NATS comes up; the catch-up worker fills the stream.
    let store = tempfile::tempdir().unwrap();
    let _server = NatsServer(
        std::process::Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run nats-server (Debian package nats-server)"),
    );
    let mut caught_up = false;
    for _ in 0..600 {
        let h = r.service.health();
        if h.stream.size >= h.ledger_size {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        caught_up,
        "the stream did not catch up: {:?}",
        r.service.health()
    );
    populate(&r, &http, 20).await;
    let check = r.crosscheck.run_now(true).await.unwrap();
    assert!(check.report.is_clean(), "{:?}", check.report.discrepancies);
    assert_eq!(check.report.records_compared, 25);
    r.stop().await.unwrap();
}
