//! The KurrentDB backend against a real server: the conformance suite (directly and through
//! the fault-injecting wrapper), durability across reconnecting, a retried batch after a lost
//! acknowledgement or after a failure part-way through a batch (the prefix-durable rule), and
//! a subscription on one handle seeing appends through another.
//!
//! They need a server: set `TRIPLICATE_TEST_KURRENTDB_URL` (for example
//! `kurrentdb://localhost:2113?tls=false` for a server started with `--insecure`). Without it
//! each test prints one line saying so and does nothing. Every test writes under its own
//! stream prefix (`t<uuid>-decision-`), so tests and runs never see each other's events.
//!
//! One test needs no server: an unreachable address is a retryable error.

#![cfg(feature = "kurrentdb")]
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use triplicate_stream::conformance::run;
use triplicate_stream::fixtures::batch;
use triplicate_stream::{
    EventStream, FailingStream, KurrentOptions, KurrentStream, StoredEvent, StreamError,
};

const URL_VAR: &str = "TRIPLICATE_TEST_KURRENTDB_URL";

/// The server's connection string, or `None` after one loud line saying the test did nothing.
fn server(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            // Straight to the process's stderr rather than `eprintln!`, which the test harness
            // captures and shows only for failing tests: a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: set {URL_VAR} (e.g. kurrentdb://localhost:2113?tls=false) to run it against a KurrentDB server; this test did nothing"
            );
            None
        }
    }
}

/// A stream prefix no other test or run uses: an empty store on a shared server.
fn fresh_prefix() -> String {
    format!("t{}-decision-", uuid::Uuid::now_v7().simple())
}

async fn connect(url: &str, prefix: &str) -> KurrentStream {
    KurrentStream::connect_with(
        url,
        KurrentOptions {
            stream_prefix: prefix.to_string(),
            ..KurrentOptions::default()
        },
    )
    .await
    .unwrap()
}

async fn everything<S: EventStream>(s: &S) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = s.read_all(after, 1000).await.unwrap();
        after = page.next_after(after);
        let end = page.end;
        out.extend(page.events);
        if end {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let Some(url) = server("conformance") else {
        return;
    };
    run(&connect(&url, &fresh_prefix()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_the_failing_wrapper_without_faults() {
    let Some(url) = server("conformance_through_the_failing_wrapper_without_faults") else {
        return;
    };
    let s = FailingStream::new(connect(&url, &fresh_prefix()).await);
    run(&s).await;
    assert_eq!(s.injected(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_keeps_everything_and_positions_keep_growing() {
    let Some(url) = server("reconnecting_keeps_everything_and_positions_keep_growing") else {
        return;
    };
    let prefix = fresh_prefix();
    let before = {
        let s = connect(&url, &prefix).await;
        s.append(batch(0..300)).await.unwrap();
        everything(&s).await
    };
    let s = connect(&url, &prefix).await;
    assert_eq!(everything(&s).await, before);
    s.append(batch(300..301)).await.unwrap();
    let after = everything(&s).await;
    assert_eq!(after[..300], before[..]);
    assert_eq!(after.len(), 301);
    assert!(after[300].position > before[299].position);
    assert_eq!(s.highest_seq().await.unwrap(), Some(300));
    // The retry rules still see the old events.
    let out = s.append(batch(290..310)).await.unwrap();
    assert_eq!((out.appended, out.already_present), (9, 11));
    // Another prefix on the same server is another, empty store.
    let other = connect(&url, &fresh_prefix()).await;
    assert_eq!(other.highest_seq().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_completes_after_a_lost_ack_or_a_written_prefix() {
    let Some(url) = server("a_retried_batch_completes_after_a_lost_ack_or_a_written_prefix") else {
        return;
    };
    let s = FailingStream::new(connect(&url, &fresh_prefix()).await);
    s.append(batch(0..10)).await.unwrap();

    // Written, then reported failed: the retry finds every event present.
    s.lose_next_acks(1);
    let e = s.append(batch(10..20)).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(s.inner().highest_seq().await.unwrap(), Some(19));
    let out = s.append(batch(10..20)).await.unwrap();
    assert_eq!((out.appended, out.already_present), (0, 10));

    // A failure part-way through a batch leaves a prefix of it (here written directly, as a
    // dropped connection after the fourth event would): the retry writes the rest.
    s.inner().append(batch(20..24)).await.unwrap();
    let out = s.append(batch(20..30)).await.unwrap();
    assert_eq!((out.appended, out.already_present), (6, 4));
    let all = everything(s.inner()).await;
    assert_eq!(all.len(), 30);
    assert!(all.iter().enumerate().all(|(i, e)| e.event.seq == i as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_sees_appends_through_another_handle() {
    let Some(url) = server("a_subscription_sees_appends_through_another_handle") else {
        return;
    };
    let prefix = fresh_prefix();
    let (a, b) = (connect(&url, &prefix).await, connect(&url, &prefix).await);
    let mut sub = b.subscribe(None);
    a.append(batch(0..20)).await.unwrap();
    for seq in 0..20 {
        let e = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(e.event.seq, seq);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_retryable_error() {
    // Nothing listens on port 1 of the loopback address; no server is needed.
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        KurrentStream::connect_with(
            "kurrentdb://admin:changeit@127.0.0.1:1?tls=false&maxDiscoverAttempts=1",
            KurrentOptions {
                deadline: Duration::from_secs(5),
                ..KurrentOptions::default()
            },
        ),
    )
    .await
    .expect("connect gives up by itself");
    match r {
        Err(e @ StreamError::Unavailable { .. }) => {
            assert!(e.is_retryable());
            assert!(!e.to_string().contains("changeit"), "{e}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
