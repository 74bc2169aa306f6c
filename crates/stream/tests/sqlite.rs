//! The embedded SQLite stream: the conformance suite (directly and through the fault-injecting
//! wrapper), durability across reopening, a closed, locked, full or foreign database, damaged
//! and tampered rows, appenders and subscribers on separate handles, the wrapper's faults, and
//! a property test against a model of the append rules.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use proptest::prelude::*;
use triplicate_core::digest::leaf_hash;
use triplicate_stream::conformance::run;
use triplicate_stream::fixtures::{batch, event, event_with};
use triplicate_stream::{
    AppendRequest, EventStream, FailingStream, SqliteOptions, SqliteStream, StoredEvent,
    StreamError,
};

async fn open(dir: &Path) -> SqliteStream {
    SqliteStream::open(dir).await.unwrap()
}

async fn everything<S: EventStream>(s: &S) -> Vec<StoredEvent> {
    s.read_all(None, 10_000).await.unwrap().events
}

fn raw(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("stream.db")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let dir = tempfile::tempdir().unwrap();
    run(&open(dir.path()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_the_failing_wrapper_without_faults() {
    let dir = tempfile::tempdir().unwrap();
    let s = FailingStream::new(open(dir.path()).await);
    run(&s).await;
    assert_eq!(s.injected(), 0);
    assert!(s.calls() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_everything_and_positions_keep_growing() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let s = open(dir.path()).await;
        s.append(batch(0..300)).await.unwrap();
        let all = everything(&s).await;
        s.close().await.unwrap();
        all
    };
    // Dropped without close, too.
    {
        let s = open(dir.path()).await;
        assert_eq!(everything(&s).await, before);
        s.append(batch(300..301)).await.unwrap();
    }
    let s = open(dir.path()).await;
    let after = everything(&s).await;
    assert_eq!(after[..300], before[..]);
    assert_eq!(after.len(), 301);
    assert!(after[300].position > before[299].position);
    assert_eq!(s.highest_seq().await.unwrap(), Some(300));
    // The retry rules still see the old events.
    let out = s.append(batch(290..310)).await.unwrap();
    assert_eq!((out.appended, out.already_present), (9, 11));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_append_is_in_the_files_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    s.append(batch(0..100)).await.unwrap();
    s.append(batch(100..101)).await.unwrap();
    // Copy the files as a crash right after the acknowledgement would leave them: the handle
    // still open, nothing checkpointed or closed since.
    let copy = tempfile::tempdir().unwrap();
    for name in ["stream.db", "stream.db-wal"] {
        let from = dir.path().join(name);
        if from.exists() {
            std::fs::copy(&from, copy.path().join(name)).unwrap();
        }
    }
    let recovered = open(copy.path()).await;
    assert_eq!(recovered.highest_seq().await.unwrap(), Some(100));
    assert_eq!(everything(&recovered).await, everything(&s).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_checkpoint_the_wal_so_it_stays_about_a_batch_long() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    let mut written = 0;
    for k in 0..20u64 {
        let b = batch(k * 300..(k + 1) * 300);
        written += b.iter().map(|r| r.event.record_bytes.len()).sum::<usize>();
        s.append(b).await.unwrap();
    }
    // Without the appends' own checkpoints the WAL would hold everything written (SQLite's
    // automatic checkpoint waits for 128 MiB); with them it restarts every few batches.
    let wal = std::fs::metadata(dir.path().join("stream.db-wal"))
        .unwrap()
        .len() as usize;
    assert!(written > 7_000_000, "{written}");
    assert!(
        wal < 3_000_000,
        "the WAL grew to {wal} bytes for {written} written"
    );
    assert_eq!(s.highest_seq().await.unwrap(), Some(5_999));
    assert_eq!(everything(&s).await.len(), 6_000);
}

/// The checkpoint an append makes due runs once that append has returned, without waiting for
/// the next one: the database file grows while nothing else is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appends_checkpoint_runs_after_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    s.append(batch(0..1)).await.unwrap();
    let file = dir.path().join("stream.db");
    let size = || std::fs::metadata(&file).unwrap().len();
    // A fresh file is checkpointed by its first append (which starts the count over).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let before = size();
    let b = batch(1..1_200);
    let written = b.iter().map(|r| r.event.record_bytes.len()).sum::<usize>();
    assert!(written > 1_100_000, "{written}");
    s.append(b).await.unwrap();
    while size() < before + 1_000_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "stream.db stayed at {} bytes after {written} bytes of events (it was {before})",
            size()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(s.highest_seq().await.unwrap(), Some(1_199));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_is_wal_append_only_and_versioned() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    s.append(batch(0..2)).await.unwrap();
    let c = raw(dir.path());
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let v: i64 = c
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 1);
    let e = c
        .execute("UPDATE events SET data = x'00' WHERE seq = 0", [])
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    let e = c.execute("DELETE FROM events", []).unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    let (data, meta): (Vec<u8>, String) = c
        .query_row("SELECT data, metadata FROM events WHERE seq = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(
        data,
        event(1).record_bytes,
        "data is record_bytes, verbatim"
    );
    assert_eq!(meta, event(1).metadata().to_json());
    assert!(meta.starts_with("{\"leaf_hash\":\""), "{meta}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    s.append(batch(0..5)).await.unwrap();
    let mut live = s.subscribe(None);
    for _ in 0..5 {
        live.next().await.unwrap().unwrap();
    }
    let clone = s.clone();
    s.close().await.unwrap();

    let e = clone.append(batch(5..6)).await.unwrap_err();
    assert!(matches!(e, StreamError::Closed), "{e:?}");
    assert!(e.to_string().contains("closed"), "{e}");
    assert!(!e.is_retryable(), "a closed handle stays closed");
    assert!(matches!(s.highest_seq().await, Err(StreamError::Closed)));
    assert!(matches!(
        s.read_all(None, 1).await,
        Err(StreamError::Closed)
    ));
    assert!(matches!(
        s.read_stream(&event(0).stream_id()).await,
        Err(StreamError::Closed)
    ));
    // A subscription waiting for live events is told, and ends.
    let next = tokio::time::timeout(Duration::from_secs(20), live.next())
        .await
        .unwrap();
    assert!(matches!(next, Some(Err(StreamError::Closed))), "{next:?}");
    assert!(live.next().await.is_none());
    let mut fresh = s.subscribe(None);
    assert!(matches!(fresh.next().await, Some(Err(StreamError::Closed))));
    // Closing twice is harmless; the file reopens with everything in it.
    s.close().await.unwrap();
    assert_eq!(open(dir.path()).await.highest_seq().await.unwrap(), Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_elsewhere_is_retryable_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        busy_timeout: Duration::from_millis(100),
        ..SqliteOptions::default()
    };
    let s = SqliteStream::open_with(dir.path(), options).await.unwrap();
    s.append(batch(0..3)).await.unwrap();
    let c = raw(dir.path());
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    let e = s.append(batch(3..10)).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(matches!(e, StreamError::Unavailable { .. }), "{e:?}");
    // Readers are not blocked by a writer (WAL).
    assert_eq!(s.highest_seq().await.unwrap(), Some(2));
    c.execute_batch("COMMIT").unwrap();
    let out = s.append(batch(3..10)).await.unwrap();
    assert_eq!(out.appended, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        max_size_bytes: Some(512 * 1024),
        ..SqliteOptions::default()
    };
    let s = SqliteStream::open_with(dir.path(), options).await.unwrap();
    let mut next = 0u64;
    let err = loop {
        match s.append(batch(next..next + 50)).await {
            Ok(_) => next += 50,
            Err(e) => break e,
        }
        assert!(next < 10_000, "the size limit never took effect");
    };
    assert!(matches!(err, StreamError::Full { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(next > 0, "some batches fit");
    assert_eq!(
        s.highest_seq().await.unwrap(),
        Some(next - 1),
        "none of the refused batch"
    );
    assert_eq!(everything(&s).await.len() as u64, next);
    // Smaller batches may still fit; whatever is stored stays gap-free.
    let _ = s.append(batch(next..next + 1)).await;
    let all = everything(&s).await;
    assert!(all.iter().enumerate().all(|(i, e)| e.event.seq == i as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_files_are_refused_by_name() {
    // Not a database at all.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("stream.db"), vec![0x42; 8192]).unwrap();
    let e = SqliteStream::open(dir.path()).await.unwrap_err();
    assert!(
        matches!(e, StreamError::IncompatibleDatabase { .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("stream.db"), "{e}");

    // Some other SQLite database.
    let dir = tempfile::tempdir().unwrap();
    raw(dir.path())
        .execute_batch("CREATE TABLE decisions (id TEXT)")
        .unwrap();
    let e = SqliteStream::open(dir.path()).await.unwrap_err();
    assert!(e.to_string().contains("not a stream database"), "{e}");

    // A stream database from a newer build.
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).await.close().await.unwrap();
    raw(dir.path())
        .execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (2, 'later')",
            [],
        )
        .unwrap();
    let e = SqliteStream::open(dir.path()).await.unwrap_err();
    assert!(e.to_string().contains("schema version is 2"), "{e}");

    // A data directory that is a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data");
    std::fs::write(&file, b"").unwrap();
    let e = SqliteStream::open(&file).await.unwrap_err();
    assert!(matches!(e, StreamError::Io { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_rows_are_reported_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    s.append(batch(0..3)).await.unwrap();
    raw(dir.path())
        .execute(
            "INSERT INTO events (stream_id, revision, seq, event_type, data, metadata, recorded_at)
             VALUES (?1, 0, 3, 'DecisionRecorded', ?2, '{}', '2026-11-22T00:00:00Z')",
            rusqlite::params![event(3).stream_id().to_string(), event(3).record_bytes],
        )
        .unwrap();
    let e = s.read_all(None, 10).await.unwrap_err();
    match &e {
        StreamError::Damaged { position, reason } => {
            assert_eq!(position.parts().0, 4);
            assert!(reason.contains("metadata"), "{reason}");
        }
        other => panic!("expected damage, got {other:?}"),
    }
    // Events before it still read.
    let page = s.read_all(None, 3).await.unwrap();
    assert_eq!(page.events.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_compare_stored_bytes_not_stored_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    s.append(batch(0..3)).await.unwrap();
    // Someone writes seq 3 with the right metadata but other bytes.
    let real = event(3);
    let forged = event_with(3, 3, 9);
    raw(dir.path())
        .execute(
            "INSERT INTO events (stream_id, revision, seq, event_type, data, metadata, recorded_at)
             VALUES (?1, 0, 3, 'DecisionRecorded', ?2, ?3, '2026-11-22T00:00:00Z')",
            rusqlite::params![
                real.stream_id().to_string(),
                forged.record_bytes,
                real.metadata().to_json()
            ],
        )
        .unwrap();
    // Reads return what is stored, without vouching for it...
    let stored = &everything(&s).await[3];
    assert_eq!(stored.event.leaf_hash, real.leaf_hash);
    assert_ne!(leaf_hash(&stored.event.record_bytes), real.leaf_hash);
    // ...and the real event's retry is a conflict naming the hash of the bytes really stored.
    match s.append(batch(3..4)).await {
        Err(StreamError::SeqConflict {
            stored, offered, ..
        }) => {
            assert_eq!(stored, forged.leaf_hash);
            assert_eq!(offered, real.leaf_hash);
        }
        r => panic!("expected a conflict, got {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_handles_share_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        poll_interval: Duration::from_millis(50),
        ..SqliteOptions::default()
    };
    let a = SqliteStream::open_with(dir.path(), options.clone())
        .await
        .unwrap();
    let b = SqliteStream::open_with(dir.path(), options).await.unwrap();
    // A subscription on one handle sees appends through the other (by polling).
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
    // The same batch through both handles at once (two connections, SQLite's file lock).
    let more = batch(20..420);
    let (ra, rb) = futures::join!(a.append(more.clone()), b.append(more));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.appended + rb.appended, 400);
    assert_eq!(ra.already_present + rb.already_present, 400);
    assert_eq!(everything(&b).await.len(), 420);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_appenders_of_overlapping_batches() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    // Eight writers race to fill 0..400, as catch-up workers racing after an outage would:
    // each appends a window that overlaps what is stored by up to ten events, and moves on to
    // wherever the store ends, whether its append was written, a retry or found a gap.
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut start = w * 5;
            loop {
                let end = (start + 60).min(400);
                match s.append(batch(start..end)).await {
                    Ok(_) | Err(StreamError::Gap { .. }) => {}
                    Err(e) => panic!("writer {w}: {e}"),
                }
                match s.highest_seq().await.unwrap() {
                    Some(399) => break,
                    h => start = h.map_or(0, |h| (h + 1).saturating_sub(10)),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = everything(&s).await;
    assert_eq!(all.len(), 400);
    assert!(all
        .iter()
        .enumerate()
        .all(|(i, e)| e.event == event(i as u64)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failing_wrapper_injects_each_fault() {
    let dir = tempfile::tempdir().unwrap();
    let s = FailingStream::new(open(dir.path()).await);

    s.fail_next(2);
    assert!(s.append(batch(0..1)).await.unwrap_err().is_retryable());
    assert!(s.highest_seq().await.unwrap_err().is_retryable());
    s.append(batch(0..1)).await.unwrap();

    s.fail_next_appends(1);
    assert_eq!(s.highest_seq().await.unwrap(), Some(0), "reads pass");
    assert!(s.append(batch(1..2)).await.is_err());
    assert_eq!(
        s.inner().highest_seq().await.unwrap(),
        Some(0),
        "nothing written"
    );
    s.append(batch(1..2)).await.unwrap();

    // A lost acknowledgement: written, reported failed, and the retry is a no-op.
    s.lose_next_acks(1);
    let e = s.append(batch(2..5)).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(
        s.inner().highest_seq().await.unwrap(),
        Some(4),
        "it was written"
    );
    let out = s.append(batch(2..5)).await.unwrap();
    assert_eq!((out.appended, out.already_present), (0, 3));

    s.set_down(true);
    assert!(s.append(batch(5..6)).await.unwrap_err().is_retryable());
    assert!(s.read_all(None, 1).await.is_err());
    let mut sub = s.subscribe(None);
    assert!(matches!(
        sub.next().await,
        Some(Err(StreamError::Unavailable { .. }))
    ));
    assert!(sub.next().await.is_none());
    s.set_down(false);
    s.append(batch(5..6)).await.unwrap();
    assert_eq!(s.highest_seq().await.unwrap(), Some(5));
    assert_eq!(s.injected(), 7);
}

/// One step of the property test: append events `(seq, decision, variant)` for consecutive
/// seqs starting at `start`.
#[derive(Debug, Clone)]
struct Op {
    start: u64,
    events: Vec<(u64, u8)>,
}

fn op() -> impl Strategy<Value = Op> {
    (0u64..12, prop::collection::vec((0u64..14, 0u8..2), 1..5))
        .prop_map(|(start, events)| Op { start, events })
}

/// The append rules, written plainly: what the store should hold after `op`, or which error
/// kind it should give.
fn model(held: &mut Vec<(u64, u8)>, op: &Op) -> Result<(u64, u64), &'static str> {
    let mut fresh: Vec<(u64, u8)> = Vec::new();
    let mut present = 0;
    for (i, &(decision, variant)) in op.events.iter().enumerate() {
        let seq = op.start + i as u64;
        if let Some(&stored) = held.get(seq as usize) {
            if stored == (decision, variant) {
                present += 1;
                continue;
            }
            return Err("seq conflict");
        }
        if held.iter().chain(fresh.iter()).any(|&(d, _)| d == decision) {
            return Err("decision conflict");
        }
        if fresh.is_empty() && seq != held.len() as u64 {
            return Err("gap");
        }
        fresh.push((decision, variant));
    }
    let n = fresh.len() as u64;
    held.extend(fresh);
    Ok((n, present))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn appends_follow_the_model(ops in prop::collection::vec(op(), 1..12)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let s = open(dir.path()).await;
            let mut held = Vec::new();
            for op in &ops {
                let reqs: Vec<AppendRequest> = op
                    .events
                    .iter()
                    .enumerate()
                    .map(|(i, &(d, v))| AppendRequest::new_decision(event_with(op.start + i as u64, d, v)))
                    .collect();
                let want = model(&mut held, op);
                let got = s.append(reqs).await;
                match (&want, &got) {
                    (Ok((n, p)), Ok(out)) => {
                        prop_assert_eq!((out.appended, out.already_present), (*n, *p));
                    }
                    (Err("seq conflict"), Err(StreamError::SeqConflict { .. }))
                    | (Err("decision conflict"), Err(StreamError::DecisionConflict { .. }))
                    | (Err("gap"), Err(StreamError::Gap { .. })) => {}
                    _ => prop_assert!(false, "op {:?}: model says {:?}, store says {:?}", op, want, got),
                }
                let stored: Vec<(u64, u8)> = everything(&s).await.iter().map(|e| {
                    let r = triplicate_core::Record::from_canonical_bytes(&e.event.record_bytes).unwrap();
                    let d = (0..14).find(|&d| triplicate_stream::fixtures::decision_id(d) == r.decision.id).unwrap();
                    (d, u8::from(r.decision.title.contains("variant")))
                }).collect();
                prop_assert_eq!(&stored, &held);
            }
            Ok(())
        })?;
    }
}

/// Alters an event's data the way someone with the file would: past the append-only trigger.
fn tamper(dir: &Path, seq: u64) {
    let mut c = raw(dir);
    let tx = c.transaction().unwrap();
    tx.execute_batch("DROP TRIGGER events_no_update").unwrap();
    tx.execute(
        "UPDATE events SET data = ?1 WHERE seq = ?2",
        rusqlite::params![event_with(seq, seq, 7).record_bytes, seq as i64],
    )
    .unwrap();
    tx.execute_batch(
        "CREATE TRIGGER events_no_update BEFORE UPDATE ON events
         BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE refused'); END;",
    )
    .unwrap();
    tx.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_replacement_takes_the_place_of_a_damaged_stream() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    let clone = s.clone();
    s.append(batch(0..50)).await.unwrap();
    tamper(dir.path(), 10);
    let before = everything(&s).await;
    assert_ne!(before[10].event, event(10), "the tamper took");
    let last_old = before.last().unwrap().position;
    // A subscriber and a pooled reader from before the replacement.
    let mut sub = s.subscribe(None);
    for _ in 0..50 {
        sub.next().await.unwrap().unwrap();
    }

    let r = s.prepare_replacement().await.unwrap();
    assert!(dir.path().join("stream-rebuild/stream.db").exists());
    r.stream().append(batch(0..50)).await.unwrap();
    // Until it is put in place, the live stream is untouched.
    assert_eq!(everything(&s).await, before);
    let out = s.replace(r, "run-1").await.unwrap();
    assert_eq!(out.highest_seq, Some(49));
    assert_eq!(out.kept_at, dir.path().join("stream.db.replaced-run-1"));
    assert!(!dir.path().join("stream-rebuild").exists());

    // Every handle reads the new file; its positions come after the old ones.
    for h in [&s, &clone] {
        let after = everything(h).await;
        assert_eq!(after.len(), 50);
        for (i, e) in after.iter().enumerate() {
            assert_eq!(e.event, event(i as u64));
            assert!(e.position > last_old, "{:?} after {last_old:?}", e.position);
        }
    }
    // The subscriber hears the rebuilt events, in order.
    for i in 0..50u64 {
        let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(e.event, event(i));
    }
    // Appends go on from there, through either handle.
    clone.append(batch(50..60)).await.unwrap();
    assert_eq!(s.highest_seq().await.unwrap(), Some(59));
    let e = s.append(batch(10..11)).await.unwrap();
    assert_eq!(e.already_present, 1, "the rebuilt event is the ledger's");

    // The damaged file is kept, as it was, for whoever investigates.
    let kept = rusqlite::Connection::open(&out.kept_at).unwrap();
    let data: Vec<u8> = kept
        .query_row("SELECT data FROM events WHERE seq = 10", [], |r| r.get(0))
        .unwrap();
    assert_eq!(data, event_with(10, 10, 7).record_bytes);
    // And the new file keeps the append-only guard.
    let e = raw(dir.path())
        .execute("DELETE FROM events WHERE seq = 0", [])
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    s.close().await.unwrap();
    assert_eq!(everything(&open(dir.path()).await).await.len(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_refuses_a_bad_label_and_a_used_one_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    s.append(batch(0..5)).await.unwrap();
    let before = everything(&s).await;
    for label in ["", "../escape", "a b", &"x".repeat(65)] {
        let r = s.prepare_replacement().await.unwrap();
        r.stream().append(batch(0..1)).await.unwrap();
        let e = s.replace(r, label).await.unwrap_err();
        assert!(e.to_string().contains("label"), "{label:?}: {e}");
        assert_eq!(everything(&s).await, before);
    }
    std::fs::write(dir.path().join("stream.db.replaced-taken"), b"evidence").unwrap();
    let r = s.prepare_replacement().await.unwrap();
    r.stream().append(batch(0..1)).await.unwrap();
    let e = s.replace(r, "taken").await.unwrap_err();
    assert!(e.to_string().contains("already kept"), "{e}");
    assert_eq!(
        std::fs::read(dir.path().join("stream.db.replaced-taken")).unwrap(),
        b"evidence"
    );
    assert_eq!(everything(&s).await, before);
    s.append(batch(5..6)).await.unwrap();

    // A leftover rebuild directory (a crash mid-rebuild) is discarded by the next one, and a
    // replacement dropped without being put in place leaves the stream as it was.
    let r = s.prepare_replacement().await.unwrap();
    r.stream().append(batch(0..3)).await.unwrap();
    drop(r);
    let r = s.prepare_replacement().await.unwrap();
    assert_eq!(r.stream().highest_seq().await.unwrap(), None);
    drop(r);
    assert_eq!(s.highest_seq().await.unwrap(), Some(5));

    s.close().await.unwrap();
    let r = open(dir.path()).await.prepare_replacement().await.unwrap();
    let e = s.replace(r, "closed").await.unwrap_err();
    assert!(matches!(e, StreamError::Closed), "{e}");
}
