//! The embedded SQLite stream: the conformance suite, durability across reopen, concurrent
//! appenders, a closed database, the fault-injecting wrapper, and append-only triggers.

#![allow(clippy::unwrap_used)]

use triplicate_stream::conformance::{run, sample_event};
use triplicate_stream::failing::FailingStream;
use triplicate_stream::{AppendRequest, EventStream, SqliteStream, StreamError};

fn batch(range: std::ops::Range<u64>) -> Vec<AppendRequest> {
    range
        .map(|s| AppendRequest::new_decision(sample_event(s, 0)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStream::open(dir.path()).await.unwrap();
    run(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SqliteStream::open(dir.path()).await.unwrap();
        s.append(batch(0..50)).await.unwrap();
    }
    let s = SqliteStream::open(dir.path()).await.unwrap();
    assert_eq!(s.highest_seq().await.unwrap(), Some(49));
    let page = s.read_all(0, 100).await.unwrap();
    assert_eq!(page.events.len(), 50);
    assert_eq!(page.events[49].event, sample_event(49, 0));
    s.append(batch(50..51)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_of_the_same_batch_write_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStream::open(dir.path()).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.append(batch(0..200)).await }));
    }
    let mut appended = 0;
    for t in tasks {
        appended += t.await.unwrap().unwrap().appended;
    }
    assert_eq!(appended, 200, "exactly one appender wrote the batch");
    assert_eq!(s.read_all(0, 1000).await.unwrap().events.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_database_is_a_clear_retryable_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStream::open(dir.path()).await.unwrap();
    s.close();
    let e = s.append(batch(0..1)).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("closed"), "{e}");
    assert!(s.highest_seq().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failing_wrapper_fails_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let s = FailingStream::new(SqliteStream::open(dir.path()).await.unwrap());
    s.fail_next(2);
    assert!(matches!(
        s.append(batch(0..1)).await,
        Err(StreamError::Unavailable(_))
    ));
    assert!(matches!(
        s.highest_seq().await,
        Err(StreamError::Unavailable(_))
    ));
    s.append(batch(0..1)).await.unwrap();
    s.set_down(true);
    assert!(s.append(batch(1..2)).await.unwrap_err().is_retryable());
    s.set_down(false);
    s.append(batch(1..2)).await.unwrap();
    assert_eq!(s.highest_seq().await.unwrap(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cannot_be_updated_or_deleted_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStream::open(dir.path()).await.unwrap();
    s.append(batch(0..2)).await.unwrap();
    let c = rusqlite::Connection::open(dir.path().join("stream.db")).unwrap();
    let e = c
        .execute("UPDATE events SET data = x'00' WHERE seq = 0", [])
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    let e = c.execute("DELETE FROM events", []).unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}
