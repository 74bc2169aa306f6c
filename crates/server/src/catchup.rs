//! The catch-up worker: brings the stream and the projection up to the ledger's size.
//!
//! It runs at start (a restart may find either store behind: the process died between the
//! ledger's commit and a store's write), whenever the committer finds a store behind or failing,
//! and every `catchup_interval` while a store is pending. It reads the missing records from the
//! ledger — the source of truth — and writes them through the stores' ordinary idempotent
//! append/apply, in batches, holding the store's write lock so the committer waits rather than
//! racing it. When a store has caught up it is marked healthy and the committer writes it
//! directly again.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::task::JoinHandle;
use triplicate_projection::Projection;
use triplicate_stream::EventStream;

use crate::service::{event_for, Downstream, Inner, Service};

/// Starts the worker; it stops when `shutdown` resolves.
pub fn spawn(
    service: &Service,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let inner = service.inner.clone();
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            let stream_done = catch_up(&inner, Store::Stream).await;
            let projection_done = catch_up(&inner, Store::Projection).await;
            let wait = if stream_done && projection_done {
                // Nothing pending: wake on the committer's call, or re-probe now and then.
                inner.options.catchup_interval * 10
            } else {
                inner.options.catchup_interval
            };
            tokio::select! {
                () = &mut shutdown => break,
                () = inner.catchup.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!("catch-up worker stopped");
    })
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

/// Writes what the store lacks; returns true when it holds everything the ledger has and is
/// healthy.
async fn catch_up(inner: &Arc<Inner>, store: Store) -> bool {
    let d = store.state(inner);
    let _guard = d.write.lock().await;
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
            tokio::time::timeout(timeout, inner.stream.append(batch))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        Store::Projection => tokio::time::timeout(timeout, inner.projection.apply(entries))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}
