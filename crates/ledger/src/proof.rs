//! Offline proof verification (RFC 9162 §2.1.3.2 and §2.1.4.2), for receipts, auditors and the
//! `verify` command. Pure functions: no files, no keys.

use serde::{Deserialize, Serialize};
use tlog_tiles::tlog::{self, Hash as TlogHash};
use triplicate_core::Hash;

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    #[error("index {index} is not inside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("sizes {old} and {new} do not form a consistency proof (need 0 < old <= new)")]
    BadSizes { old: u64, new: u64 },
    #[error("the proof does not lead to the expected root")]
    Mismatch,
    #[error(
        "the proof has {len} hashes; no proof for a tree under 2^64 entries has more than {max}"
    )]
    TooLong { len: usize, max: usize },
}

/// Longest possible inclusion proof (one hash per tree level).
pub const MAX_INCLUSION_HASHES: usize = 64;
/// Longest possible consistency proof.
pub const MAX_CONSISTENCY_HASHES: usize = 128;

// The proof checkers recurse once per hash; an untrusted receipt with a million hashes must be
// refused before it can exhaust the stack.
fn check_len(proof: &[Hash], max: usize) -> Result<(), ProofError> {
    if proof.len() > max {
        return Err(ProofError::TooLong {
            len: proof.len(),
            max,
        });
    }
    Ok(())
}

/// RFC 6962 leaf hash of an entry: `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    tlog::record_hash(entry).0
}

fn to_tlog(p: &[Hash]) -> Vec<TlogHash> {
    p.iter().map(|h| TlogHash(*h)).collect()
}

/// Checks that `leaf` is entry `index` of the tree of `size` entries with root `root`.
pub fn verify_inclusion(
    proof: &[Hash],
    index: u64,
    size: u64,
    root: &Hash,
    leaf: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    check_len(proof, MAX_INCLUSION_HASHES)?;
    tlog::check_record(
        &to_tlog(proof),
        size,
        TlogHash(*root),
        index,
        TlogHash(*leaf),
    )
    .map_err(|_| ProofError::Mismatch)
}

/// Checks that the tree of `old_size` entries with root `old_root` is a prefix of the tree of
/// `new_size` entries with root `new_root`.
pub fn verify_consistency(
    proof: &[Hash],
    old_size: u64,
    old_root: &Hash,
    new_size: u64,
    new_root: &Hash,
) -> Result<(), ProofError> {
    check_len(proof, MAX_CONSISTENCY_HASHES)?;
    if old_size == new_size {
        return if proof.is_empty() && old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    if old_size == 0 {
        // Every tree extends the empty one; the proof must be empty.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    if old_size > new_size {
        return Err(ProofError::BadSizes {
            old: old_size,
            new: new_size,
        });
    }
    tlog::check_tree(
        &to_tlog(proof),
        new_size,
        TlogHash(*new_root),
        old_size,
        TlogHash(*old_root),
    )
    .map_err(|_| ProofError::Mismatch)
}

/// Base64 (standard, padded) for hashes in JSON.
pub mod b64_hash {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    use triplicate_core::Hash;

    pub fn serialize<S: Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = String::deserialize(d)?;
        decode(&s).map_err(serde::de::Error::custom)
    }

    pub fn decode(s: &str) -> Result<Hash, String> {
        let v = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| format!("hash {s:?} is not base64: {e}"))?;
        v.try_into()
            .map_err(|v: Vec<u8>| format!("hash {s:?} has {} bytes, expected 32", v.len()))
    }
}

/// Base64 lists of hashes in JSON.
pub mod b64_hashes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    use triplicate_core::Hash;

    pub fn serialize<S: Serializer>(hs: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            hs.iter()
                .map(|h| base64::engine::general_purpose::STANDARD.encode(h)),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter()
            .map(|s| super::b64_hash::decode(s))
            .collect::<Result<_, _>>()
            .map_err(serde::de::Error::custom)
    }
}

/// An inclusion proof as the CLI prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    #[serde(with = "b64_hash")]
    pub leaf_hash: Hash,
    #[serde(with = "b64_hash")]
    pub root: Hash,
    #[serde(with = "b64_hashes")]
    pub proof: Vec<Hash>,
}

/// A consistency proof as the CLI prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    #[serde(with = "b64_hash")]
    pub old_root: Hash,
    #[serde(with = "b64_hash")]
    pub new_root: Hash,
    #[serde(with = "b64_hashes")]
    pub proof: Vec<Hash>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// RFC 6962 reference Merkle tree hash, straight from the definition (§2.1).
    fn mth(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => Sha256::digest(b"").into(),
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = n.next_power_of_two() / 2;
                let (l, r) = (mth(&leaves[..k]), mth(&leaves[k..]));
                let mut h = Sha256::new();
                h.update([1u8]);
                h.update(l);
                h.update(r);
                h.finalize().into()
            }
        }
    }

    /// RFC 6962 §2.1.1 PATH(m, D[n]).
    fn path(m: usize, leaves: &[Vec<u8>]) -> Vec<Hash> {
        let n = leaves.len();
        if n <= 1 {
            return vec![];
        }
        let k = n.next_power_of_two() / 2;
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

    /// RFC 6962 §2.1.2 SUBPROOF(m, D[n], b).
    fn subproof(m: usize, leaves: &[Vec<u8>], b: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if b { vec![] } else { vec![mth(leaves)] };
        }
        let k = n.next_power_of_two() / 2;
        if m <= k {
            let mut p = subproof(m, &leaves[..k], b);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = subproof(m - k, &leaves[k..], false);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    fn leaves(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("leaf {i}").into_bytes()).collect()
    }

    #[test]
    fn rfc6962_empty_tree_and_leaf_hash_vectors() {
        // The empty-tree root and the empty leaf's hash from the RFC 6962 test data
        // (also used by Certificate Transparency's Go and C++ implementations).
        assert_eq!(
            hex::encode(mth(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn rfc6962_reference_tree_roots() {
        // CT's reference vectors: leaves are the byte strings below, roots for sizes 1..=8.
        let data: Vec<Vec<u8>> = [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| hex::decode(h).unwrap())
        .collect();
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        for (n, want) in roots.iter().enumerate() {
            assert_eq!(hex::encode(mth(&data[..=n])), *want, "size {}", n + 1);
        }
    }

    #[test]
    fn proofs_match_the_rfc_definitions() {
        for n in 1..40usize {
            let ls = leaves(n);
            let root = mth(&ls);
            for m in 0..n {
                let p = path(m, &ls);
                verify_inclusion(&p, m as u64, n as u64, &root, &leaf_hash(&ls[m])).unwrap();
            }
            for m in 1..=n {
                let p = subproof(m, &ls, true);
                verify_consistency(&p, m as u64, &mth(&ls[..m]), n as u64, &root).unwrap();
            }
        }
    }

    #[test]
    fn altered_proofs_fail() {
        let ls = leaves(13);
        let root = mth(&ls);
        let mut p = path(5, &ls);
        p[1][0] ^= 1;
        assert_eq!(
            verify_inclusion(&p, 5, 13, &root, &leaf_hash(&ls[5])),
            Err(ProofError::Mismatch)
        );
        assert!(verify_inclusion(&path(5, &ls), 6, 13, &root, &leaf_hash(&ls[5])).is_err());
        assert!(verify_inclusion(&[], 13, 13, &root, &root).is_err());
        let mut c = subproof(4, &ls, true);
        c.pop();
        assert!(verify_consistency(&c, 4, &mth(&ls[..4]), 13, &root).is_err());
    }

    #[test]
    fn absurdly_long_proofs_are_refused_before_recursing() {
        let long = vec![[0u8; 32]; 1_000_000];
        assert_eq!(
            verify_inclusion(&long, 0, u64::MAX, &[0; 32], &[0; 32]),
            Err(ProofError::TooLong {
                len: 1_000_000,
                max: MAX_INCLUSION_HASHES
            })
        );
        assert!(matches!(
            verify_consistency(&long, 1, &[0; 32], u64::MAX, &[0; 32]),
            Err(ProofError::TooLong { .. })
        ));
    }
}
