//! A fault-injecting wrapper (feature `testkit`), for tests of the write path and the catch-up
//! worker: it fails calls on demand with [`StreamError::Unavailable`] (retryable) and otherwise
//! passes them to the wrapped backend, like neon's `UnreliableWrapper`.
//!
//! Faults: the next N calls fail (or only the next N appends); every call fails while the
//! store is "down"; and the next N appends are *performed* but reported as failed — a lost
//! acknowledgement, the case that makes idempotent retries necessary.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::stream::BoxStream;

use crate::{
    AppendOutcome, AppendRequest, EventStream, Limits, Page, Position, StoredEvent, StreamError,
    StreamId,
};

/// Wraps a backend and fails on demand. Clones share the fault settings.
#[derive(Debug, Clone)]
pub struct FailingStream<S> {
    inner: S,
    faults: Arc<Faults>,
}

#[derive(Debug, Default)]
struct Faults {
    down: AtomicBool,
    fail_calls: AtomicU64,
    fail_appends: AtomicU64,
    lose_acks: AtomicU64,
    calls: AtomicU64,
    injected: AtomicU64,
}

/// Takes one from `n` if it is positive; true if it did.
fn take_one(n: &AtomicU64) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

impl<S: EventStream> FailingStream<S> {
    pub fn new(inner: S) -> FailingStream<S> {
        FailingStream {
            inner,
            faults: Arc::default(),
        }
    }

    /// The wrapped backend (calls on it are never failed).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The next `n` calls of any kind fail (subscriptions count once, when made).
    pub fn fail_next(&self, n: u64) {
        self.faults.fail_calls.store(n, Ordering::SeqCst);
    }

    /// The next `n` appends fail without writing; reads are unaffected.
    pub fn fail_next_appends(&self, n: u64) {
        self.faults.fail_appends.store(n, Ordering::SeqCst);
    }

    /// The next `n` appends are written, then reported as failed.
    pub fn lose_next_acks(&self, n: u64) {
        self.faults.lose_acks.store(n, Ordering::SeqCst);
    }

    /// While down, every call fails.
    pub fn set_down(&self, down: bool) {
        self.faults.down.store(down, Ordering::SeqCst);
    }

    /// Calls made through the wrapper so far.
    pub fn calls(&self) -> u64 {
        self.faults.calls.load(Ordering::SeqCst)
    }

    /// Failures injected so far.
    pub fn injected(&self) -> u64 {
        self.faults.injected.load(Ordering::SeqCst)
    }

    fn injected_error(&self, what: &str) -> StreamError {
        self.faults.injected.fetch_add(1, Ordering::SeqCst);
        StreamError::Unavailable {
            reason: format!("injected fault: {what}"),
        }
    }

    fn check(&self, is_append: bool) -> Result<(), StreamError> {
        self.faults.calls.fetch_add(1, Ordering::SeqCst);
        if self.faults.down.load(Ordering::SeqCst) {
            return Err(self.injected_error("the store is down"));
        }
        if take_one(&self.faults.fail_calls) {
            return Err(self.injected_error("call failed"));
        }
        if is_append && take_one(&self.faults.fail_appends) {
            return Err(self.injected_error("append failed"));
        }
        Ok(())
    }
}

impl<S: EventStream + 'static> EventStream for FailingStream<S> {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn append(&self, batch: Vec<AppendRequest>) -> Result<AppendOutcome, StreamError> {
        self.check(true)?;
        let out = self.inner.append(batch).await?;
        if take_one(&self.faults.lose_acks) {
            return Err(self.injected_error("append written but its acknowledgement lost"));
        }
        Ok(out)
    }

    async fn read_stream(&self, stream_id: &StreamId) -> Result<Vec<StoredEvent>, StreamError> {
        self.check(false)?;
        self.inner.read_stream(stream_id).await
    }

    async fn read_all(&self, after: Option<Position>, limit: usize) -> Result<Page, StreamError> {
        self.check(false)?;
        self.inner.read_all(after, limit).await
    }

    fn subscribe(
        &self,
        after: Option<Position>,
    ) -> BoxStream<'static, Result<StoredEvent, StreamError>> {
        match self.check(false) {
            Ok(()) => self.inner.subscribe(after),
            Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
        }
    }

    async fn highest_seq(&self) -> Result<Option<u64>, StreamError> {
        self.check(false)?;
        self.inner.highest_seq().await
    }
}
