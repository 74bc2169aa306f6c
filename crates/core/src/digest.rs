//! Domain-separated digests and signed messages. Every hash and signature has its own prefix,
//! so a signature made for one purpose can never be replayed as another.

#[cfg(any(test, debug_assertions))]
use serde::Serialize;
use sha2::{Digest, Sha256};

#[cfg(any(test, debug_assertions))]
use crate::canonical::to_jcs;
use crate::canonical::CanonicalError;
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

/// The approval statement as `serde_jcs` sees it: what the direct writer is checked against.
#[cfg(any(test, debug_assertions))]
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
    // Written directly: the judge computes one per approval, and through `serde_jcs` it was
    // ~2.5 % of a busy service's CPU.
    let msg =
        crate::jcs::approval_statement(APPROVAL_DOMAIN, decision_digest, key_id, alg, signed_at);
    #[cfg(debug_assertions)]
    {
        let statement = ApprovalStatement {
            alg,
            decision_digest: hex::encode(decision_digest),
            key_id,
            signed_at,
        };
        let mut expected = APPROVAL_DOMAIN.to_vec();
        expected.extend_from_slice(&to_jcs(&statement)?);
        debug_assert_eq!(
            msg, expected,
            "the approval statement writer disagrees with JCS"
        );
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The direct writer gives `serde_jcs`'s bytes for both algorithms, over digests and times
    /// of every shape (release builds rely on it; debug builds also compare every message).
    #[test]
    fn the_approval_statement_is_its_jcs() {
        let times = [
            Timestamp::from_unix_nanos(0).unwrap(),
            Timestamp::from_unix_nanos(1_795_683_600_123_456_789).unwrap(),
            Timestamp::from_unix_nanos(-62_167_219_200 * 1_000_000_000).unwrap(),
            Timestamp::from_unix_nanos(1_795_683_600_100_000_000).unwrap(),
        ];
        for alg in [Algorithm::Ed25519, Algorithm::EcdsaP256] {
            for (i, t) in times.iter().enumerate() {
                let digest: Hash = std::array::from_fn(|k| (k * 37 + i * 101) as u8);
                let key_id = KeyId::derive(alg, &[i as u8; 32]);
                let statement = ApprovalStatement {
                    alg,
                    decision_digest: hex::encode(digest),
                    key_id: &key_id,
                    signed_at: t,
                };
                let mut expected = APPROVAL_DOMAIN.to_vec();
                expected.extend_from_slice(&to_jcs(&statement).unwrap());
                let got = crate::jcs::approval_statement(APPROVAL_DOMAIN, &digest, &key_id, alg, t);
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&expected)
                );
            }
        }
    }
}
