//! A fault-injecting wrapper for tests of the write path and the catch-up worker: fails the
//! first N calls, or every call while "down", with [`StreamError::Unavailable`], and otherwise
//! passes through to the wrapped stream.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::stream::BoxStream;

use crate::{AppendOutcome, AppendRequest, EventStream, Page, StoredEvent, StreamError};

/// Wraps a backend and fails on demand.
#[derive(Debug, Clone)]
pub struct FailingStream<S> {
    inner: S,
    fail_next: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
}

impl<S: EventStream> FailingStream<S> {
    pub fn new(inner: S) -> Self {
        FailingStream {
            inner,
            fail_next: Arc::new(AtomicU64::new(0)),
            down: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The next `n` calls fail.
    pub fn fail_next(&self, n: u64) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Every call fails until `set_down(false)`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StreamError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StreamError::Unavailable(
                "injected: the stream is down".into(),
            ));
        }
        let left = self.fail_next.load(Ordering::SeqCst);
        if left > 0 {
            self.fail_next.store(left - 1, Ordering::SeqCst);
            return Err(StreamError::Unavailable("injected failure".into()));
        }
        Ok(())
    }
}

impl<S: EventStream> EventStream for FailingStream<S> {
    async fn append(&self, batch: Vec<AppendRequest>) -> Result<AppendOutcome, StreamError> {
        self.check()?;
        self.inner.append(batch).await
    }
    async fn read_stream(&self, stream_id: &str) -> Result<Vec<StoredEvent>, StreamError> {
        self.check()?;
        self.inner.read_stream(stream_id).await
    }
    async fn read_all(&self, from: u64, limit: usize) -> Result<Page, StreamError> {
        self.check()?;
        self.inner.read_all(from, limit).await
    }
    fn subscribe(&self, from: u64) -> BoxStream<'static, Result<StoredEvent, StreamError>> {
        self.inner.subscribe(from)
    }
    async fn highest_seq(&self) -> Result<Option<u64>, StreamError> {
        self.check()?;
        self.inner.highest_seq().await
    }
}
