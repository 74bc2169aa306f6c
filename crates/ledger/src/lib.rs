//! `triplicate-ledger`: the verified ledger, an append-only Merkle log with signed checkpoints.
//!
//! Owns: the [`Ledger`] trait and its guarantees; the embedded implementation
//! ([`EmbeddedLedger`]) stored as C2SP `tlog-tiles` (RFC 6962/9162 hashing) under
//! `<data-dir>/ledger/`; checkpoints as C2SP `tlog-checkpoint` signed notes; inclusion and
//! consistency proofs; `fsck`; and offline verification of proofs, checkpoints and receipts.
//!
//! Must not know: what an entry means (entries are opaque bytes here; only receipt
//! verification parses a record, through `triplicate-core`), the other two stores, HTTP,
//! async runtimes, or how the notary key is held (it is a `triplicate_keys::Signer`).

pub mod backup;
pub mod bound;
pub mod bundle;
pub mod checkpoint;
#[cfg(feature = "testkit")]
pub mod conformance;
mod embedded;
pub mod fsck;
mod fsutil;
mod hashes;
pub mod layout;
pub mod proof;
pub mod receipt;
mod wal;

use std::path::PathBuf;

pub use checkpoint::{CheckpointError, SignedCheckpoint};
pub use embedded::{EmbeddedLedger, LedgerConfig};
pub use triplicate_core::Hash;

/// What an append did.
#[derive(Debug, Clone)]
pub struct AppendOutcome {
    /// Index of the first entry of the batch.
    pub first_index: u64,
    /// Entries this call added. Less than the batch length when part of the batch was already
    /// present with identical bytes (an idempotent retry); zero when all of it was.
    pub appended: u64,
    /// A signed checkpoint that covers every entry of the batch.
    pub checkpoint: SignedCheckpoint,
}

/// The verified ledger.
///
/// Guarantees every implementation gives:
/// - **Durable on `Ok`.** When [`Ledger::append`] returns `Ok`, every entry of the batch
///   survives a crash or power loss; the call blocks until then. A batch is committed as a
///   whole (one durability barrier per call, never one per entry).
/// - **Append-only, caller-sequenced.** The caller says at which index its batch starts (the
///   write path assigns `seq` before the notary signs it). A batch that would leave a gap is
///   refused; a batch that overlaps entries already stored is accepted only if the overlap has
///   identical bytes (an idempotent retry), and otherwise refused with [`LedgerError::Conflict`]
///   naming both leaf hashes. A refused batch writes nothing.
/// - **Signed checkpoints.** [`Ledger::checkpoint`] and every append return a checkpoint signed
///   by the notary that commits to the tree size and root.
/// - **Proofs against any size up to the current one**, computed from stored hashes without
///   holding the tree in memory.
/// - **Single writer.** At most one writer per store; others are refused with
///   [`LedgerError::Locked`].
///
/// Calls may block on disk I/O and, for appends, on the notary's signature; async callers use
/// `spawn_blocking`.
pub trait Ledger: Send + Sync {
    /// Appends `entries` at `first_index..first_index + entries.len()`.
    fn append(&self, first_index: u64, entries: &[Vec<u8>]) -> Result<AppendOutcome, LedgerError>;
    /// Number of entries.
    fn tree_size(&self) -> u64;
    /// The latest signed checkpoint.
    fn checkpoint(&self) -> SignedCheckpoint;
    /// Entries `start..end` (at most the current size), in order.
    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, LedgerError>;
    /// One entry.
    fn entry(&self, index: u64) -> Result<Vec<u8>, LedgerError> {
        let mut v = self.entries(index, index + 1)?;
        v.pop().ok_or(LedgerError::OutOfRange {
            index,
            size: self.tree_size(),
        })
    }
    /// RFC 6962 leaf hashes of entries `start..end`, as stored.
    fn leaf_hashes(&self, start: u64, end: u64) -> Result<Vec<Hash>, LedgerError>;
    /// Root hash of the tree of the first `size` entries.
    fn root_at(&self, size: u64) -> Result<Hash, LedgerError>;
    /// Inclusion proof (RFC 9162 §2.1.3) of entry `index` in the tree of `tree_size` entries.
    fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, LedgerError>;
    /// Consistency proof (RFC 9162 §2.1.4) from the tree of `old_size` to that of `new_size`.
    fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, LedgerError>;
    /// Makes the files on disk (tiles, bundles, the `checkpoint` file) show every committed
    /// entry, for readers of the files such as backups. Entries are durable before this (an
    /// append returns once they are); a backend without such files does nothing.
    fn flush(&self) -> Result<(), LedgerError> {
        Ok(())
    }
}

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ledger file {} is damaged or disagrees with the checkpoint: {reason}", file.display())]
    Corrupt { file: PathBuf, reason: String },
    #[error("ledger file {} is missing", file.display())]
    Missing { file: PathBuf },
    #[error("ledger {} is locked by another writer ({holder}); one writer per data directory", path.display())]
    Locked { path: PathBuf, holder: String },
    #[error("entry of {len} bytes is larger than the {max} bytes an entry bundle can hold")]
    EntryTooLarge { len: usize, max: usize },
    #[error("empty batch: nothing to append")]
    EmptyBatch,
    #[error(
        "batch starts at index {got} but the ledger holds {expected} entries: it would leave a gap"
    )]
    Gap { expected: u64, got: u64 },
    #[error("index {index} is already stored with leaf hash {stored}; the batch offers {offered}")]
    Conflict {
        index: u64,
        stored: String,
        offered: String,
    },
    #[error("index {index} is outside the tree of size {size}")]
    OutOfRange { index: u64, size: u64 },
    #[error("the ledger was created for notary key {pinned} but was opened with {offered}")]
    NotaryKeyMismatch { pinned: String, offered: String },
    #[error("the ledger's origin is {stored:?} but it was opened as {configured:?}")]
    OriginMismatch { stored: String, configured: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("this ledger was opened read-only")]
    ReadOnly,
    #[error("an earlier append failed after its batch was made durable ({reason}); reopen the ledger to replay it")]
    Poisoned { reason: String },
    #[error("proof computation failed: {0}")]
    Proof(String),
}

pub(crate) fn b64(h: &Hash) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(h)
}
