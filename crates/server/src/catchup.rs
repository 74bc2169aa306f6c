//! The catch-up worker: brings the stream and the projection up to the ledger's size.
//!
//! It runs at start (a restart may find either store behind: the process died between the
//! ledger's commit and a store's write), whenever the committer finds a store behind or failing,
//! and every `catchup_interval` while a store is pending. It reads the missing records from the
//! ledger — the source of truth — and writes them through the stores' ordinary idempotent
//! append/apply, in batches, holding the store's write lock so the committer waits rather than
//! racing it. When a store has caught up it is marked healthy and the committer writes it
//! directly again. Each store has its own loop, so one store's long write or hung call never
//! holds up the other's catch-up.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::task::JoinHandle;
use triplicate_projection::Projection;
use triplicate_stream::EventStream;

use crate::service::{event_for, within_limits, Downstream, Inner, Service};

/// Starts the worker; it stops when `shutdown` resolves.
///
/// Each store has a loop of its own, so a store that is slow, unreachable until its timeout, or
/// held by a long write (an approved stream rebuild holds the stream's write lock while it
/// copies the ledger) never delays the other's catch-up. A loop finishes the round it is
/// writing before it stops, but does not wait for a lock someone else holds.
pub fn spawn(
    service: &Service,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let inner = service.inner.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let stream = tokio::spawn(run(inner.clone(), Store::Stream, stop_rx.clone()));
        let projection = tokio::spawn(run(inner, Store::Projection, stop_rx));
        shutdown.await;
        let _ = stop_tx.send(true);
        let _ = stream.await;
        let _ = projection.await;
        tracing::info!("catch-up worker stopped");
    })
}

/// One store's loop: catch up, then wait for the committer's call (`Downstream::wake`), the
/// retry interval while the store is pending, or a longer re-probe interval when it is not.
async fn run(inner: Arc<Inner>, store: Store, mut stop: tokio::sync::watch::Receiver<bool>) {
    let d = store.state(&inner);
    while !*stop.borrow_and_update() {
        // The lock may be held for minutes (an approved rebuild copying the ledger): a stop
        // does not wait for it. A round under way is finished.
        let guard = tokio::select! {
            guard = d.write.lock() => guard,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let wait = if catch_up(&inner, store, guard).await {
            inner.options.catchup_interval * 10
        } else {
            inner.options.catchup_interval
        };
        tokio::select! {
            // A stop, or the worker's handle gone (then there is nobody left to stop it).
            _ = stop.changed() => {}
            () = d.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
        if stop.has_changed().is_err() {
            break;
        }
    }
    tracing::debug!(store = store.name(), "catch-up loop stopped");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Stream,
    Projection,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Stream => "stream",
            Store::Projection => "projection",
        }
    }
    fn state(self, inner: &Inner) -> &Downstream {
        match self {
            Store::Stream => &inner.stream_state,
            Store::Projection => &inner.projection_state,
        }
    }
}

/// Writes what the store lacks, holding its write lock (`_guard`); returns true when it holds
/// everything the ledger has and is healthy.
async fn catch_up(
    inner: &Arc<Inner>,
    store: Store,
    _guard: tokio::sync::MutexGuard<'_, ()>,
) -> bool {
    let d = store.state(inner);
    // Ask the store itself: after a failure its acknowledged size may be stale either way
    // (a lost acknowledgement of a write that happened).
    let held = match highest(inner, store).await {
        Ok(h) => h.map_or(0, |h| h + 1),
        Err(e) => {
            if d.healthy.swap(false, Ordering::AcqRel) {
                tracing::warn!(store = store.name(), error = %e, "store unreachable; pending");
            }
            return false;
        }
    };
    let acknowledged = d.acked.load(Ordering::Acquire);
    if held < acknowledged {
        // The store acknowledged holding `acknowledged` records and now holds fewer: they were
        // removed (durable writes are not lost by a crash). The projection is a queryable copy
        // and is refilled from the ledger (the cross-check reports the loss as minor); the
        // append-only stream is not written over a removal: it stays pending, and the next
        // cross-check reports it as major, for an auditor and the operator to act on.
        tracing::error!(
            target: "triplicate::verifier",
            store = store.name(),
            held,
            acknowledged,
            "the store holds fewer records than it acknowledged: records were removed"
        );
        if store == Store::Stream {
            d.healthy.store(false, Ordering::Release);
            return false;
        }
    }
    d.size.store(held, Ordering::Release);
    let target = inner.ledger.tree_size();
    let mut at = held;
    if at < target {
        tracing::info!(store = store.name(), from = at, to = target, "catching up");
    }
    while at < target {
        let end = (at + inner.options.catchup_batch as u64).min(target);
        let entries = match inner.ledger.entries(at, end) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(store = store.name(), error = %e, "read the ledger for catch-up");
                return false;
            }
        };
        if let Err(e) = write(inner, store, at, entries).await {
            if d.healthy.swap(false, Ordering::AcqRel) {
                tracing::warn!(store = store.name(), error = %e, "catch-up write failed; pending");
            }
            return false;
        }
        inner.metrics.observe_catchup(store.name(), end - at);
        at = end;
        d.size.store(at, Ordering::Release);
        d.acked.fetch_max(at, Ordering::AcqRel);
    }
    if !d.healthy.swap(true, Ordering::AcqRel) {
        tracing::info!(
            store = store.name(),
            size = at,
            "store caught up; healthy again"
        );
    }
    true
}

async fn highest(inner: &Inner, store: Store) -> Result<Option<u64>, String> {
    let timeout = inner.options.store_timeout;
    let r = match store {
        Store::Stream => tokio::time::timeout(timeout, inner.stream.highest_seq())
            .await
            .map(|r| r.map_err(|e| e.to_string())),
        Store::Projection => tokio::time::timeout(timeout, inner.projection.highest_seq())
            .await
            .map(|r| r.map_err(|e| e.to_string())),
    };
    r.unwrap_or_else(|_| Err("timed out".into()))
}

async fn write(
    inner: &Inner,
    store: Store,
    start: u64,
    entries: Vec<Vec<u8>>,
) -> Result<(), String> {
    let timeout = inner.options.store_timeout;
    match store {
        Store::Stream => {
            let batch = entries
                .iter()
                .enumerate()
                .map(|(i, b)| event_for(start + i as u64, b))
                .collect::<Result<Vec<_>, _>>()?;
            // In appends the backend takes; a failure part-way leaves a prefix, which the next
            // round continues from the store's highest seq.
            for part in within_limits(batch, inner.stream.limits()) {
                tokio::time::timeout(timeout, inner.stream.append(part))
                    .await
                    .map_err(|_| "timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Store::Projection => tokio::time::timeout(timeout, inner.projection.apply(entries))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use serde_json::json;
    use triplicate_core::{Approval, Decision, Timestamp};

    use super::*;
    use crate::service::SubmitOutcome;
    use crate::setup::ProjectionChoice;
    use crate::{Running, ServeConfig, ServiceOptions};

    async fn submit(r: &Running, title: &str) -> crate::service::Accepted {
        let d = Decision::from_json(
            json!({
                "id": uuid::Uuid::now_v7().to_string(),
                "kind": "motion",
                "title": title,
                "body": "Moved and carried.",
                "payload": {},
                "proposed_at": Timestamp::now().to_string(),
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let approvals: Vec<Approval> = r.approvers[..2]
            .iter()
            .map(|key| triplicate_keys::approve(&d, key, Timestamp::now()).unwrap())
            .collect();
        let body = json!({ "decision": d, "approvals": approvals }).to_string();
        // Bounded, so a submission that is never answered fails the test rather than hang it.
        let out = tokio::time::timeout(Duration::from_secs(30), r.service.submit(body.as_bytes()))
            .await
            .expect("the submission is answered within 30 s")
            .unwrap();
        match out {
            SubmitOutcome::Created(accepted) => accepted,
            out => panic!("{out:?}"),
        }
    }

    async fn start(dir: &std::path::Path, store_timeout: Duration) -> Running {
        crate::start(ServeConfig {
            data_dir: dir.to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            projection: ProjectionChoice::Sqlite,
            stream: Default::default(),
            origin: crate::setup::DEV_ORIGIN.into(),
            options: ServiceOptions {
                catchup_interval: Duration::from_millis(50),
                store_timeout,
                ..ServiceOptions::on_demand_crosscheck()
            },
        })
        .await
        .unwrap()
    }

    /// Waits up to 10 s for `store` to hold everything the ledger does.
    async fn caught_up(inner: &Inner, store: Store) -> bool {
        let size = inner.ledger.tree_size();
        for _ in 0..400 {
            let d = store.state(inner);
            if d.size.load(Ordering::Acquire) == size && d.healthy.load(Ordering::Acquire) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    /// An approved stream rebuild marks the stream pending and holds its write lock while it
    /// copies the ledger (minutes, for a large one). Meanwhile the projection fails and
    /// misses records: it must be caught up without waiting for the rebuild. (With one loop
    /// over both stores, the worker sat on the stream's lock and the projection stayed behind
    /// until the rebuild ended.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_held_by_a_long_write_does_not_hold_up_the_others_catch_up() {
        let dir = tempfile::tempdir().unwrap();
        let r = start(dir.path(), ServiceOptions::default().store_timeout).await;
        let inner = r.service.inner.clone();
        submit(&r, "Before the rebuild").await;
        assert!(caught_up(&inner, Store::Stream).await);
        assert!(caught_up(&inner, Store::Projection).await);

        // What `rebuild::rebuild_stream` does before it copies anything.
        inner.stream_state.healthy.store(false, Ordering::Release);
        let rebuilding = inner.stream_state.write.lock().await;
        inner.stream_state.healthy.store(false, Ordering::Release);
        crate::service::mark_pending(&inner.projection_state, "projection", "test: an outage");
        for i in 0..3 {
            submit(&r, &format!("During the rebuild {i}")).await;
        }
        assert_eq!(inner.ledger.tree_size(), 4);
        assert!(
            caught_up(&inner, Store::Projection).await,
            "the projection is caught up while the stream's write lock is held: {:?}",
            r.service.health()
        );
        assert_eq!(
            inner.stream_state.size.load(Ordering::Acquire),
            1,
            "the stream was not written while its lock was held"
        );

        drop(rebuilding);
        inner.stream_state.wake.notify_one();
        assert!(
            caught_up(&inner, Store::Stream).await,
            "the stream catches up once its lock is released: {:?}",
            r.service.health()
        );
        assert_eq!(inner.stream.highest_seq().await.unwrap(), Some(3));
        assert_eq!(inner.projection.highest_seq().await.unwrap(), Some(3));
        r.stop().await.unwrap();
    }

    /// The race that once held every submission for as long as a rebuild ran: a rebuild marks
    /// the stream pending, the catch-up worker's probe finds it caught up and marks it healthy
    /// again, then the rebuild takes the write lock. The store writer, seeing the stream
    /// healthy, asks for the lock: it must give up after the store timeout and leave the
    /// records to catch-up, so the callers are answered (the stream pending) rather than kept
    /// waiting for the rebuild.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_writer_does_not_wait_out_a_long_holder_of_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let r = start(dir.path(), Duration::from_millis(300)).await;
        let inner = r.service.inner.clone();
        submit(&r, "Before the rebuild").await;
        assert!(caught_up(&inner, Store::Stream).await);

        // Held with the stream marked healthy: the state the race leaves.
        let rebuilding = inner.stream_state.write.lock().await;
        inner.stream_state.healthy.store(true, Ordering::Release);
        let during = submit(&r, "During the rebuild").await;
        assert_eq!(during.stores.stream, crate::service::StoreState::Pending);
        assert_eq!(during.stores.ledger, crate::service::StoreState::Written);
        assert!(
            !inner.stream_state.healthy.load(Ordering::Acquire),
            "the stream is pending once its writer gave up on the lock"
        );
        // The projection, not held, is written as usual.
        assert!(caught_up(&inner, Store::Projection).await);
        let also = submit(&r, "Also during the rebuild").await;
        assert_eq!(also.stores.stream, crate::service::StoreState::Pending);

        drop(rebuilding);
        assert!(
            caught_up(&inner, Store::Stream).await,
            "the stream catches up once the lock is free: {:?}",
            r.service.health()
        );
        assert_eq!(inner.stream.highest_seq().await.unwrap(), Some(2));
        r.stop().await.unwrap();
    }

    /// A stop does not wait for a store's write lock: an approved rebuild may hold it for
    /// minutes, and the catch-up loop waiting for it held the whole shutdown until it ended.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_does_not_wait_for_a_held_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let r = start(dir.path(), ServiceOptions::default().store_timeout).await;
        let inner = r.service.inner.clone();
        submit(&r, "Before the rebuild").await;
        assert!(caught_up(&inner, Store::Stream).await);

        let rebuilding = inner.stream_state.write.lock().await;
        inner.stream_state.healthy.store(false, Ordering::Release);
        // The stream's loop is woken and waits for the lock.
        inner.stream_state.wake.notify_one();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stopped = tokio::time::timeout(Duration::from_secs(30), tokio::spawn(r.stop())).await;
        drop(rebuilding);
        stopped
            .expect("the service stops while the stream's write lock is held")
            .unwrap()
            .unwrap();
    }

    /// A repair holds both stores' write locks: it marks them pending first, so a submission
    /// meanwhile is answered at once (the stores pending) rather than after the store writers
    /// waited out their timeout (an hour here, so a writer that waited fails the test), and
    /// both are caught up once the repair lets go.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_repair_holding_the_stores_leaves_submissions_to_catch_up() {
        let dir = tempfile::tempdir().unwrap();
        let r = start(dir.path(), Duration::from_secs(3600)).await;
        let inner = r.service.inner.clone();
        submit(&r, "Before the repair").await;
        assert!(caught_up(&inner, Store::Stream).await);
        assert!(caught_up(&inner, Store::Projection).await);

        let held = crate::service::hold_for_repair(&inner).await;
        let during = submit(&r, "During the repair").await;
        assert_eq!(during.stores.stream, crate::service::StoreState::Pending);
        assert_eq!(
            during.stores.projection,
            crate::service::StoreState::Pending
        );
        drop(held);
        assert!(caught_up(&inner, Store::Stream).await);
        assert!(caught_up(&inner, Store::Projection).await);
        assert_eq!(inner.stream.highest_seq().await.unwrap(), Some(1));
        assert_eq!(inner.projection.highest_seq().await.unwrap(), Some(1));
        r.stop().await.unwrap();
    }
}
