//! Domain-separated digests and signed messages. Every hash and signature has its own prefix,
//! so a signature made for one purpose can never be replayed as another.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::canonical::{to_jcs, CanonicalError};
use crate::{Algorithm, Hash, KeyId, Timestamp};

/// Prefix of the decision digest.
pub const DECISION_DOMAIN: &[u8] = b"triplicate/decision/v1\n";
/// Prefix of the message an approver signs.
pub const APPROVAL_DOMAIN: &[u8] = b"triplicate/approval/v1\n";
/// Prefix of the message the notary signs.
pub const RECORD_DOMAIN: &[u8] = b"triplicate/record/v1\n";

/// `SHA-256(prefix || data)`.
pub fn domain_hash(prefix: &[u8], data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(prefix);
    h.update(data);
    h.finalize().into()
}

/// RFC 6962 leaf hash: `SHA-256(0x00 || record_bytes)`.
pub fn leaf_hash(record_bytes: &[u8]) -> Hash {
    domain_hash(&[0u8], record_bytes)
}

#[derive(Serialize)]
struct ApprovalStatement<'a> {
    alg: Algorithm,
    decision_digest: String,
    key_id: &'a KeyId,
    signed_at: &'a Timestamp,
}

/// What an approver's key signs: `"triplicate/approval/v1\n" || JCS({alg, decision_digest
/// (lowercase hex), key_id, signed_at})`.
///
/// It binds the signing time, key and algorithm as well as the decision: a signature over the
/// decision digest alone would let anyone rewrite `signed_at`.
pub fn approval_message(
    decision_digest: &Hash,
    key_id: &KeyId,
    alg: Algorithm,
    signed_at: &Timestamp,
) -> Result<Vec<u8>, CanonicalError> {
    let statement = ApprovalStatement {
        alg,
        decision_digest: hex::encode(decision_digest),
        key_id,
        signed_at,
    };
    let mut msg = APPROVAL_DOMAIN.to_vec();
    msg.extend_from_slice(&to_jcs(&statement)?);
    Ok(msg)
}
