//! Receipts: what a submitter keeps. A record, its leaf hash and index, a signed checkpoint and
//! the inclusion proof against it. Verified offline by `triplicate_ledger::receipt`.

use serde::{Deserialize, Serialize};

use crate::error::{parse_json, Problem, ValidationError};
use crate::record::Record;
use crate::Hash;

/// The receipt format version.
pub const RECEIPT_VERSION: u32 = 1;

mod b64_hash {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::Hash;

    pub fn serialize<S: Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(h))
    }

    pub fn decode(s: &str) -> Result<Hash, String> {
        let v = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| format!("{s:?} is not base64: {e}"))?;
        v.try_into()
            .map_err(|v: Vec<u8>| format!("hash has {} bytes, expected 32", v.len()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        decode(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }

    pub mod list {
        use super::*;

        pub fn serialize<S: Serializer>(hs: &[Hash], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(
                hs.iter()
                    .map(|h| base64::engine::general_purpose::STANDARD.encode(h)),
            )
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
            Vec::<String>::deserialize(d)?
                .iter()
                .map(|s| decode(s))
                .collect::<Result<_, _>>()
                .map_err(serde::de::Error::custom)
        }
    }
}

/// Proof that a record is in the ledger, checkable with the notary's public key alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub version: u32,
    /// The record's index in the ledger (equals `record.seq`).
    pub seq: u64,
    /// `SHA-256(0x00 || JCS(record))`, base64.
    #[serde(with = "b64_hash")]
    pub leaf_hash: Hash,
    pub record: Record,
    /// The signed checkpoint note (C2SP tlog-checkpoint) the proof is against.
    pub checkpoint: String,
    /// RFC 9162 inclusion proof of `seq` in the checkpoint's tree, base64 hashes.
    #[serde(with = "b64_hash::list")]
    pub inclusion_proof: Vec<Hash>,
}

impl Receipt {
    /// Parses and validates a receipt (the record inside it included).
    pub fn from_json(bytes: &[u8]) -> Result<Receipt, ValidationError> {
        let mut r: Receipt = parse_json("", bytes)?;
        r.record.decision.normalise();
        // Every problem at once, the receipt's own and its record's, as for the other types.
        let mut problems = Vec::new();
        if r.version != RECEIPT_VERSION {
            problems.push(Problem {
                field: "version".to_owned(),
                reason: format!("is {}; must be {RECEIPT_VERSION}", r.version),
            });
        }
        if let Err(e) = r.record.validate() {
            problems.extend(e.problems.into_iter().map(|mut p| {
                // "(record)" names the record as a whole; inside a receipt that is "record".
                p.field = if p.field.starts_with('(') {
                    "record".to_owned()
                } else {
                    format!("record.{}", p.field)
                };
                p
            }));
        }
        if problems.is_empty() {
            Ok(r)
        } else {
            Err(ValidationError { problems })
        }
    }

    /// Checks that `seq` and `leaf_hash` are the record's own.
    pub fn check_self_consistent(&self) -> Result<(), ValidationError> {
        if self.seq != self.record.seq {
            return Err(ValidationError::one(
                "seq",
                format!(
                    "is {} but the record's seq is {}",
                    self.seq, self.record.seq
                ),
            ));
        }
        let leaf = self
            .record
            .leaf_hash()
            .map_err(|e| ValidationError::one("record", e.to_string()))?;
        if leaf != self.leaf_hash {
            return Err(ValidationError::one(
                "leaf_hash",
                format!(
                    "is {} but the record hashes to {}",
                    hex::encode(self.leaf_hash),
                    hex::encode(leaf)
                ),
            ));
        }
        Ok(())
    }
}
