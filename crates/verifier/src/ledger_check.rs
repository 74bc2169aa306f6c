//! The ledger's self-check: its checkpoint's signature, the consistency proof from the last
//! verified checkpoint, the stored hashes against the checkpoint's root, and (with
//! [`CompactRange`]) the re-hashed leaves folded into that root.
//!
//! Re-hashing "only new leaves" still proves the whole tree: the compact range at the range's
//! start (at most 64 subtree roots, taken from the ledger's stored hashes through an inclusion
//! proof of the leaf before it) plus the re-hashed leaves must fold into the root the notary
//! signed. Stored hashes that lied about the earlier subtrees could not produce that root
//! without a SHA-256 collision. RFC 9162 §2.1 defines the tree; §2.1.4 the consistency proof.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use triplicate_core::Hash;
use triplicate_ledger::proof::verify_consistency;
use triplicate_ledger::{Ledger, LedgerError, SignedCheckpoint};

use crate::model::{Class, Discrepancy, Kind, Store};

/// A checkpoint the verifier has verified (or will verify from), as reports carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRef {
    pub size: u64,
    #[serde(with = "crate::b64::hash")]
    pub root: Hash,
}

impl From<&SignedCheckpoint> for CheckpointRef {
    fn from(c: &SignedCheckpoint) -> Self {
        CheckpointRef {
            size: c.size,
            root: c.root,
        }
    }
}

pub(crate) fn critical(kind: Kind, detail: String) -> Discrepancy {
    Discrepancy {
        seq: None,
        decision_id: None,
        store: Store::Ledger,
        class: Class::Critical,
        kind,
        expected_hash: None,
        actual_hash: None,
        file: None,
        detail,
    }
}

/// A ledger read that failed, as a critical finding naming the file when the error does.
pub(crate) fn read_failure(what: &str, e: &LedgerError) -> Discrepancy {
    let file = match e {
        LedgerError::Corrupt { file, .. } | LedgerError::Missing { file } => {
            Some(file.display().to_string())
        }
        LedgerError::Io { path, .. } => Some(path.display().to_string()),
        _ => None,
    };
    Discrepancy {
        file,
        ..critical(Kind::LedgerFiles, format!("{what}: {e}"))
    }
}

/// Checks the ledger's current checkpoint: its signature under `notary_vkey` (a note verifier
/// key), that the stored hashes give its root, and, when `last_verified` is given, the
/// consistency proof from it. Returns the verified checkpoint, or `None` with the critical
/// findings when its signature fails (nothing signed can then be trusted).
pub fn check_checkpoint<L: Ledger + ?Sized>(
    ledger: &L,
    notary_vkey: &str,
    last_verified: Option<CheckpointRef>,
    findings: &mut Vec<Discrepancy>,
) -> Option<CheckpointRef> {
    let cp = ledger.checkpoint();
    let verified = match SignedCheckpoint::verify(&cp.note, notary_vkey) {
        Ok(v) => v,
        Err(e) => {
            findings.push(Discrepancy {
                expected_hash: None,
                actual_hash: Some(cp.root),
                ..critical(
                    Kind::CheckpointInvalid,
                    format!("the checkpoint of size {} does not verify: {e}", cp.size),
                )
            });
            return None;
        }
    };
    if verified.size != cp.size || verified.root != cp.root {
        findings.push(critical(
            Kind::CheckpointInvalid,
            format!(
                "the ledger reports size {} but its signed note says size {}",
                cp.size, verified.size
            ),
        ));
        return None;
    }
    let new = CheckpointRef::from(&verified);
    match ledger.root_at(new.size) {
        Ok(root) if root == new.root => {}
        Ok(root) => findings.push(Discrepancy {
            expected_hash: Some(new.root),
            actual_hash: Some(root),
            ..critical(
                Kind::RootMismatch,
                format!(
                    "the stored hashes give root {} for size {} but the checkpoint says {}",
                    crate::b64::encode(&root),
                    new.size,
                    crate::b64::encode(&new.root)
                ),
            )
        }),
        Err(e) => findings.push(read_failure("compute the root from stored hashes", &e)),
    }
    if let Some(old) = last_verified {
        if old.size > new.size {
            findings.push(Discrepancy {
                expected_hash: Some(old.root),
                actual_hash: Some(new.root),
                ..critical(
                    Kind::ConsistencyFailure,
                    format!(
                        "the ledger holds {} entries but was verified at {}: it shrank",
                        new.size, old.size
                    ),
                )
            });
        } else {
            let proof = ledger.consistency_proof(old.size, new.size);
            match proof {
                Ok(proof) => {
                    if let Err(e) =
                        verify_consistency(&proof, old.size, &old.root, new.size, &new.root)
                    {
                        findings.push(Discrepancy {
                            expected_hash: Some(old.root),
                            actual_hash: Some(new.root),
                            ..critical(
                                Kind::ConsistencyFailure,
                                format!(
                                    "the tree of size {} is not an extension of the verified \
                                     tree of size {}: {e}",
                                    new.size, old.size
                                ),
                            )
                        });
                    }
                }
                Err(e) => findings.push(read_failure("build the consistency proof", &e)),
            }
        }
    }
    Some(new)
}

/// Runs `triplicate_ledger::fsck` on an embedded ledger's directory and turns a failure into
/// a critical finding naming the file. Blocking: it streams every bundle and tile.
pub fn fsck_finding(dir: &Path, notary_vkey: &str) -> Option<Discrepancy> {
    match triplicate_ledger::fsck::fsck(dir, Some(notary_vkey)) {
        Ok(report) => {
            tracing::debug!(
                size = report.size,
                bundles = report.bundles_checked,
                "ledger fsck passed"
            );
            None
        }
        Err(e) => {
            let (file, reason) = match &e {
                triplicate_ledger::fsck::FsckError::Unreadable { file, reason }
                | triplicate_ledger::fsck::FsckError::Inconsistent { file, reason } => {
                    (file.clone(), reason.clone())
                }
                // FsckError is non-exhaustive; a future variant still becomes a finding.
                #[allow(unreachable_patterns)]
                other => (dir.to_path_buf(), other.to_string()),
            };
            Some(Discrepancy {
                file: Some(file.display().to_string()),
                ..critical(
                    Kind::LedgerFiles,
                    format!("fsck: {}: {reason}", file.display()),
                )
            })
        }
    }
}

/// The file an embedded ledger keeps entry `index` in, for naming it in findings.
pub(crate) fn bundle_file(dir: &Path, index: u64, size: u64) -> PathBuf {
    let (n, width) = triplicate_ledger::layout::bundle_for(index, size);
    dir.join(triplicate_ledger::layout::bundle_path(n, width))
}

fn node(l: &Hash, r: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

/// The RFC 6962 compact range of a tree prefix: the roots of its perfect subtrees, left to
/// right (heights decreasing). Leaves appended to it fold into the root of the longer tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// (height, root), heights strictly decreasing.
    nodes: Vec<(u32, Hash)>,
}

impl CompactRange {
    /// The empty tree.
    pub fn empty() -> CompactRange {
        CompactRange::default()
    }

    /// The compact range of the tree of `size` leaves, from the leaf hash of entry `size - 1`
    /// and its inclusion proof in that tree (RFC 9162 §2.1.3): the proof's first
    /// `trailing_zeros(size)` hashes are left siblings inside the last perfect subtree, the rest
    /// are the earlier perfect subtrees from right to left. Nothing here is trusted until the
    /// range, extended, folds into a verified root.
    pub fn from_last_leaf(size: u64, last_leaf: Hash, proof: &[Hash]) -> Option<CompactRange> {
        if size == 0 {
            return Some(CompactRange::empty());
        }
        let km = size.trailing_zeros();
        let inner = usize::try_from(km).ok()?;
        if proof.len() != inner + (size.count_ones() as usize - 1) {
            return None;
        }
        let mut cur = last_leaf;
        for sib in &proof[..inner] {
            cur = node(sib, &cur);
        }
        let heights: Vec<u32> = (0..64u32).rev().filter(|b| size >> b & 1 == 1).collect();
        let mut nodes: Vec<(u32, Hash)> = proof[inner..]
            .iter()
            .rev()
            .zip(heights.iter())
            .map(|(h, &height)| (height, *h))
            .collect();
        nodes.push((km, cur));
        Some(CompactRange { size, nodes })
    }

    /// Leaves folded in so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut cur = (0u32, leaf);
        while let Some(&(h, left)) = self.nodes.last() {
            if h != cur.0 {
                break;
            }
            self.nodes.pop();
            cur = (h + 1, node(&left, &cur.1));
        }
        self.nodes.push(cur);
        self.size += 1;
    }

    /// The RFC 6962 root of the tree so far (SHA-256 of the empty string for no leaves).
    pub fn root(&self) -> Hash {
        match self.nodes.split_last() {
            None => Sha256::digest([]).into(),
            Some((last, rest)) => rest
                .iter()
                .rev()
                .fold(last.1, |acc, (_, left)| node(left, &acc)),
        }
    }
}

/// The compact range at `start` from the ledger's stored hashes: empty at 0, else from the
/// stored leaf hash of `start - 1` and its inclusion proof.
pub(crate) fn compact_range_at<L: Ledger + ?Sized>(
    ledger: &L,
    start: u64,
) -> Result<CompactRange, LedgerError> {
    if start == 0 {
        return Ok(CompactRange::empty());
    }
    let leaf = ledger
        .leaf_hashes(start - 1, start)?
        .pop()
        .ok_or(LedgerError::OutOfRange {
            index: start - 1,
            size: ledger.tree_size(),
        })?;
    let proof = ledger.inclusion_proof(start - 1, start)?;
    CompactRange::from_last_leaf(start, leaf, &proof).ok_or_else(|| {
        LedgerError::Proof(format!(
            "the inclusion proof of entry {} has {} hashes, not the shape of a tree of {start}",
            start - 1,
            proof.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use triplicate_ledger::proof::leaf_hash;

    /// RFC 6962 MTH, recursively, as the reference.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaves[0],
            n => {
                let k = 1usize << (usize::BITS - (n - 1).leading_zeros() - 1);
                node(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    /// RFC 6962 PATH(m, D[n]).
    fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        let n = leaves.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = 1usize << (usize::BITS - (n - 1).leading_zeros() - 1);
        if m < k {
            let mut p = path(m, &leaves[..k]);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = path(m - k, &leaves[k..]);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    #[test]
    fn compact_range_matches_mth_from_any_start() {
        let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for start in 0..leaves.len() {
            let mut cr = if start == 0 {
                CompactRange::empty()
            } else {
                CompactRange::from_last_leaf(
                    start as u64,
                    leaves[start - 1],
                    &path(start - 1, &leaves[..start]),
                )
                .unwrap()
            };
            assert_eq!(cr.root(), mth(&leaves[..start]), "start {start}");
            for (i, l) in leaves.iter().enumerate().skip(start) {
                cr.push(*l);
                assert_eq!(cr.root(), mth(&leaves[..=i]), "start {start} end {i}");
            }
        }
    }
}
