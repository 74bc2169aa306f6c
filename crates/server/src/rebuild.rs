//! Rebuilding the stream from the ledger while the service runs: what an auditor's approval of
//! a proposed `rebuild_stream` repair does.
//!
//! The stream is append-only, so an event someone altered, removed or forged cannot be mended
//! in place. The embedded stream is rebuilt beside the live one
//! ([`SqliteStream::prepare_replacement`]) from the ledger's entries up to its signed
//! checkpoint, through the stream's ordinary appends; the rebuilt events are then checked to
//! hash, in order, to that checkpoint's root, and only then put in the live stream's place
//! ([`SqliteStream::replace`]); the damaged file is kept beside it as evidence
//! (`stream.db.replaced-<action id>`).
//!
//! Submissions go on meanwhile: the stream is marked pending before the rebuild takes its
//! write lock, so the committer leaves new records to the catch-up worker, which appends them
//! to the rebuilt stream once it is in place (receipts say the stream is pending until then).
//! A JetStream or KurrentDB stream is not rebuilt by the service: the approval is recorded as
//! deferred to the operator, who rebuilds it with the recovery tools.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use triplicate_core::digest::leaf_hash;
use triplicate_stream::EventStream;
use triplicate_verifier::CompactRange;

use crate::service::Inner;
use crate::stores::StreamBackend;

/// Events read back per page when checking the rebuilt stream.
const CHECK_PAGE: usize = 5_000;

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// The rebuilt stream holds seqs `0..size`, the ledger's signed checkpoint when it began.
    pub size: u64,
    /// Where the replaced (damaged) file is kept.
    pub kept_at: PathBuf,
}

/// Why a rebuild did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// This backend is rebuilt by the operator, not by the service.
    #[error("the {0} stream is not rebuilt by the service")]
    Unsupported(&'static str),
    /// It was tried and failed; the live stream is as it was (unless the message says the
    /// swap itself failed).
    #[error("{0}")]
    Failed(String),
}

/// Rebuilds the stream from the ledger and puts it in place; `label` names the kept file.
/// The caller serialises this with cross-check runs and reviews.
pub(crate) async fn rebuild_stream(
    inner: &Arc<Inner>,
    label: &str,
) -> Result<Rebuilt, RebuildError> {
    let StreamBackend::Sqlite(stream) = &inner.stream else {
        return Err(RebuildError::Unsupported(inner.stream.name()));
    };
    let d = &inner.stream_state;
    // Pending while the rebuild runs; the catch-up worker appends what was skipped once the
    // rebuild is in place.
    let guard = crate::service::hold_pending(d).await;
    let checkpoint = inner.ledger.checkpoint();
    tracing::warn!(
        target: "triplicate::verifier",
        size = checkpoint.size,
        label,
        "rebuilding the stream from the ledger; it is pending until the rebuild is in place"
    );
    let out = async {
        let fail = |what: &str| {
            let what = what.to_owned();
            move |e: &dyn std::fmt::Display| RebuildError::Failed(format!("{what}: {e}"))
        };
        let replacement = stream
            .prepare_replacement()
            .await
            .map_err(|e| fail("prepare the new stream")(&e))?;
        let filled = triplicate_recovery::fill_stream(
            inner.ledger.clone(),
            replacement.stream(),
            checkpoint.size,
        )
        .await
        .map_err(|e| fail("fill the new stream from the ledger")(&e))?;
        check_against(replacement.stream(), checkpoint.size, &checkpoint.root).await?;
        let replaced = stream
            .replace(replacement, label)
            .await
            .map_err(|e| fail("put the new stream in place")(&e))?;
        tracing::warn!(
            target: "triplicate::verifier",
            size = checkpoint.size,
            written = filled.written,
            kept_at = %replaced.kept_at.display(),
            "the stream was rebuilt from the ledger"
        );
        Ok(Rebuilt {
            size: checkpoint.size,
            kept_at: replaced.kept_at,
        })
    }
    .await;
    if out.is_ok() {
        d.size.store(checkpoint.size, Ordering::Release);
        d.acked.fetch_max(checkpoint.size, Ordering::AcqRel);
    }
    drop(guard);
    // Either way the catch-up worker probes the stream and brings it up to the ledger.
    d.wake.notify_one();
    out
}

/// Reads the new stream back: seqs `0..size` in order, each event's data hashing to the leaf
/// hash beside it, and all of them to `root`, the signed checkpoint's.
async fn check_against<S: EventStream>(
    stream: &S,
    size: u64,
    root: &triplicate_core::Hash,
) -> Result<(), RebuildError> {
    let mut tree = CompactRange::empty();
    let mut after = None;
    loop {
        let page = stream
            .read_all(after, CHECK_PAGE)
            .await
            .map_err(|e| RebuildError::Failed(format!("read the new stream back: {e}")))?;
        for e in &page.events {
            let expected = tree.size();
            if e.event.seq != expected {
                return Err(RebuildError::Failed(format!(
                    "the new stream holds seq {} where seq {expected} belongs",
                    e.event.seq
                )));
            }
            let leaf = leaf_hash(&e.event.record_bytes);
            if leaf != e.event.leaf_hash {
                return Err(RebuildError::Failed(format!(
                    "the new stream's event at seq {expected} does not hash to its leaf hash"
                )));
            }
            tree.push(leaf);
        }
        after = page.next_after(after);
        if page.end {
            break;
        }
    }
    if tree.size() != size || &tree.root() != root {
        return Err(RebuildError::Failed(format!(
            "the new stream's {} events do not hash to the root of the ledger's signed checkpoint \
             of {size} entries; it was not put in place",
            tree.size()
        )));
    }
    Ok(())
}
