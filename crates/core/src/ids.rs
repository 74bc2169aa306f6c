//! Small identifiers shared by every crate: signature algorithms, key ids, hashes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A SHA-256 output.
pub type Hash = [u8; 32];

/// Domain-separation prefix for key ids.
pub const KEY_ID_DOMAIN: &[u8] = b"triplicate/key/v1\n";

/// A signature algorithm a record may carry.
///
/// `ed25519` signs the message itself (RFC 8032, pure Ed25519). `ecdsa-p256` is ECDSA over
/// P-256 with SHA-256 of the message; signatures are the fixed 64-byte `r || s` form and public
/// keys are uncompressed SEC1 points (65 bytes, `0x04 || x || y`), which is what PIV cards give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Ed25519,
    EcdsaP256,
}

impl Algorithm {
    /// The name used in records, policies and receipts.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::EcdsaP256 => "ecdsa-p256",
        }
    }

    /// Length in bytes of a public key of this algorithm, as records carry it.
    pub fn public_key_len(self) -> usize {
        match self {
            Algorithm::Ed25519 => 32,
            Algorithm::EcdsaP256 => 65,
        }
    }

    /// Length in bytes of a signature of this algorithm, as records carry it.
    pub fn signature_len(self) -> usize {
        64
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for an unknown algorithm name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signature algorithm {0:?} (expected \"ed25519\" or \"ecdsa-p256\")")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ed25519" => Ok(Algorithm::Ed25519),
            "ecdsa-p256" => Ok(Algorithm::EcdsaP256),
            other => Err(UnknownAlgorithm(other.to_owned())),
        }
    }
}

impl Serialize for Algorithm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A key id: 16 lowercase hex digits, the first 8 bytes of
/// `SHA-256("triplicate/key/v1\n" || alg || "\n" || public_key)`.
///
/// Derived from the key itself, so two registries that hold the same key agree on its id and a
/// key id cannot silently point at a different key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

/// Why a string is not a key id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key id {0:?} is not 16 lowercase hex digits")]
pub struct KeyIdError(pub String);

impl KeyId {
    /// Derives the key id of a public key.
    pub fn derive(alg: Algorithm, public_key: &[u8]) -> KeyId {
        let mut h = Sha256::new();
        h.update(KEY_ID_DOMAIN);
        h.update(alg.as_str().as_bytes());
        h.update(b"\n");
        h.update(public_key);
        let d = h.finalize();
        KeyId(hex::encode(&d[..8]))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `s` is a key id: 16 lowercase hex digits.
pub(crate) fn is_key_id(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl KeyId {
    /// `s`, which the caller checked with [`is_key_id`].
    pub(crate) fn from_checked(s: &str) -> KeyId {
        debug_assert!(is_key_id(s));
        KeyId(s.to_owned())
    }
}

impl FromStr for KeyId {
    type Err = KeyIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_key_id(s) {
            Ok(KeyId(s.to_owned()))
        } else {
            Err(KeyIdError(s.to_owned()))
        }
    }
}

impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip() {
        for alg in [Algorithm::Ed25519, Algorithm::EcdsaP256] {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
        }
        assert!("rsa".parse::<Algorithm>().is_err());
    }

    #[test]
    fn key_id_is_derived_and_strict() {
        let id = KeyId::derive(Algorithm::Ed25519, &[7u8; 32]);
        assert_eq!(id.as_str().len(), 16);
        assert_eq!(id.as_str().parse::<KeyId>(), Ok(id.clone()));
        assert_ne!(id, KeyId::derive(Algorithm::EcdsaP256, &[7u8; 32]));
        assert!("ABCDEF0123456789".parse::<KeyId>().is_err());
        assert!("abc".parse::<KeyId>().is_err());
    }
}
