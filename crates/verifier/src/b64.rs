//! Hashes in reports are standard base64, as in receipts, checkpoints and ledger errors.

use base64::Engine;
use triplicate_core::Hash;

/// Standard, padded base64 of a hash.
pub fn encode(h: &Hash) -> String {
    base64::engine::general_purpose::STANDARD.encode(h)
}

/// Decodes 32 bytes of standard base64.
pub fn decode(s: &str) -> Result<Hash, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .ok()
        .and_then(|v| Hash::try_from(v).ok())
        .ok_or_else(|| format!("{s:?} is not 32 bytes of standard base64"))
}

/// `#[serde(with = "crate::b64::hash")]`.
pub mod hash {
    use serde::{Deserialize, Deserializer, Serializer};
    use triplicate_core::Hash;

    pub fn serialize<S: Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::encode(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = String::deserialize(d)?;
        super::decode(&s).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "crate::b64::option")]`: `null` when absent.
pub mod option {
    use serde::{Deserialize, Deserializer, Serializer};
    use triplicate_core::Hash;

    pub fn serialize<S: Serializer>(h: &Option<Hash>, s: S) -> Result<S::Ok, S::Error> {
        match h {
            Some(h) => s.serialize_some(&super::encode(h)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Hash>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| super::decode(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}
