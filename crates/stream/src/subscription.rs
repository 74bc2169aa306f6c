//! Catch-up-then-live subscriptions for backends without a native one: read pages of the
//! global order until the end, then sleep until a commit is announced or a poll interval
//! passes, and read again.
//!
//! The announcement (a `watch` channel the backend bumps after each commit) makes delivery
//! prompt for appends through the same handle; polling catches appends from other handles or
//! processes, which announce nothing here. Events are only ever read, never buffered beyond one
//! page, so a slow subscriber holds one page, not the backlog.

use std::time::Duration;

use futures::stream::BoxStream;
use tokio::sync::watch;

use crate::{EventStream, Position, StoredEvent, StreamError};

/// Subscribes to `store` after `after`, reading `page` events at a time.
pub(crate) fn poll_subscription<S>(
    store: S,
    after: Option<Position>,
    mut commits: watch::Receiver<u64>,
    poll: Duration,
    page: usize,
) -> BoxStream<'static, Result<StoredEvent, StreamError>>
where
    S: EventStream + 'static,
{
    Box::pin(async_stream::stream! {
        let mut after = after;
        loop {
            // Mark what has been announced so far before reading: a commit after this point
            // wakes the wait below even if it lands between the read and the wait.
            commits.borrow_and_update();
            let p = match store.read_all(after, page).await {
                Ok(p) => p,
                Err(e) => {
                    yield Err(e);
                    return;
                }
            };
            let end = p.end;
            for e in p.events {
                after = Some(e.position);
                yield Ok(e);
            }
            if !end {
                continue;
            }
            tokio::select! {
                changed = commits.changed() => {
                    if changed.is_err() {
                        // The backend is gone; one more read reports why (or finds the rest).
                        tokio::time::sleep(poll).await;
                    }
                }
                _ = tokio::time::sleep(poll) => {}
            }
        }
    })
}
