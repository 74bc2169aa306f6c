//! Offline receipt verification: record → leaf hash → inclusion proof → signed checkpoint, and
//! the notary's signature on the record. Needs nothing but the receipt and the notary's note
//! verifier key; no store, no network.
//!
//! What it cannot check offline: the approvals, which need the key registry as it was when the
//! record was written (the cross-verifier does that).

use triplicate_core::Receipt;
use triplicate_keys::note::parse_note_verifier_key;

use crate::checkpoint::SignedCheckpoint;
use crate::proof;

/// The step of receipt verification that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    #[error("leaf hash: {0}")]
    LeafHash(String),
    #[error("notary signature on the record: {0}")]
    NotarySignature(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("inclusion proof: {0}")]
    Inclusion(String),
}

/// What a valid receipt proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReceipt {
    pub seq: u64,
    pub leaf_hash: triplicate_core::Hash,
    pub checkpoint: SignedCheckpoint,
}

/// Verifies a receipt with the notary's note verifier key (`<name>+<hex>+<base64>`).
pub fn verify_receipt(
    receipt: &Receipt,
    notary_vkey: &str,
) -> Result<VerifiedReceipt, ReceiptError> {
    // 1. The record's bytes give the leaf hash the receipt claims.
    receipt
        .check_self_consistent()
        .map_err(|e| ReceiptError::LeafHash(e.to_string()))?;
    let leaf = receipt
        .record
        .leaf_hash()
        .map_err(|e| ReceiptError::LeafHash(e.to_string()))?;

    // 2. The notary signed the record.
    let (_, notary) = parse_note_verifier_key(notary_vkey)
        .map_err(|e| ReceiptError::Checkpoint(e.to_string()))?;
    let sig = &receipt.record.notary;
    if sig.alg != notary.alg() || sig.key_id != notary.key_id() {
        return Err(ReceiptError::NotarySignature(format!(
            "record is signed by key {} ({}) but the notary key is {} ({})",
            sig.key_id,
            sig.alg,
            notary.key_id(),
            notary.alg()
        )));
    }
    let msg = receipt
        .record
        .notary_message()
        .map_err(|e| ReceiptError::NotarySignature(e.to_string()))?;
    notary
        .verify(&msg, &sig.signature)
        .map_err(|e| ReceiptError::NotarySignature(e.to_string()))?;

    // 3. The checkpoint is signed by the notary.
    let cp = SignedCheckpoint::verify(&receipt.checkpoint, notary_vkey)
        .map_err(|e| ReceiptError::Checkpoint(e.to_string()))?;

    // 4. The leaf is in the checkpoint's tree.
    proof::verify_inclusion(
        &receipt.inclusion_proof,
        receipt.seq,
        cp.size,
        &cp.root,
        &leaf,
    )
    .map_err(|e| ReceiptError::Inclusion(e.to_string()))?;
    Ok(VerifiedReceipt {
        seq: receipt.seq,
        leaf_hash: leaf,
        checkpoint: cp,
    })
}
