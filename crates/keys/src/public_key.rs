//! Public keys as records carry them, and single-signature verification.
//!
//! Ed25519 (RFC 8032, pure Ed25519) keys are 32 bytes; ECDSA P-256 keys are uncompressed SEC1
//! points (65 bytes, `0x04 || x || y`), which is what PIV cards hand out. Both signature forms are
//! 64 bytes; for P-256 that is the fixed-width `r || s` over SHA-256 of the message.

use std::fmt;
use std::hash::{Hash, Hasher};

use base64::prelude::{Engine as _, BASE64_STANDARD};
use ed25519_dalek::VerifyingKey;
use ring::{agreement, signature as ring_sig};
use triplicate_core::{Algorithm, KeyId};

use crate::software::KeyFileError;

/// Why a public key, key name or verifier key was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key has the wrong number of bytes for its algorithm.
    #[error("{alg} public key must be {expected} bytes, got {actual}")]
    Length {
        alg: Algorithm,
        expected: usize,
        actual: usize,
    },
    /// The bytes have the right length but are not an acceptable public key.
    #[error("{alg} public key refused: {reason}")]
    InvalidKey {
        alg: Algorithm,
        reason: &'static str,
    },
    /// The text is not valid base64.
    #[error("decode {alg} public key: invalid base64: {detail}")]
    Base64 { alg: Algorithm, detail: String },
    /// Validating a P-256 key needs a random scalar (see [`PublicKey::new`]) and the operating
    /// system's random number generator failed. Nothing is known about the key.
    #[error("validate {alg} public key: the system random number generator failed")]
    Rng { alg: Algorithm },
    /// A key name that cannot be a signed-note key name.
    #[error("invalid key name {name:?}: a key name must be non-empty and contain no whitespace and no '+'")]
    InvalidName { name: String },
    /// C2SP signed notes (as `signed_note` and Go's `sumdb/note` implement them) only have an
    /// Ed25519 key type, so other keys cannot sign or verify notes.
    #[error("signed notes need an Ed25519 key; a {alg} key cannot sign or verify notes")]
    NoteAlgorithm { alg: Algorithm },
    /// A note verifier key string (`<name>+<hex id>+<base64 key>`) that does not parse.
    #[error("malformed note verifier key: {reason}")]
    MalformedVerifierKey { reason: String },
    /// A note verifier key whose key id does not match its name and key.
    #[error("note verifier key for {name:?} says key id {stated:08x} but its name and key give {derived:08x}")]
    VerifierKeyId {
        name: String,
        stated: u32,
        derived: u32,
    },
    /// A note verifier key with a signature type other than Ed25519 (0x01).
    #[error("note verifier key has unsupported signature type 0x{0:02x} (only 0x01, Ed25519, is defined)")]
    UnknownNoteKeyType(u8),
    /// A key file given where a verifier was expected could not be used.
    #[error(transparent)]
    File(#[from] KeyFileError),
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The signature has the wrong number of bytes for the key's algorithm.
    #[error("{alg} signature must be {expected} bytes, got {actual}")]
    SignatureLength {
        alg: Algorithm,
        expected: usize,
        actual: usize,
    },
    /// The signature is well-formed but does not verify for this key and message.
    #[error("{alg} signature does not verify under key {key_id}")]
    Invalid { alg: Algorithm, key_id: KeyId },
}

/// A validated public key of one of the [`Algorithm`]s records carry.
///
/// Construction validates the key once, so verification never meets a malformed key; see
/// [`PublicKey::new`] for what is refused.
#[derive(Clone)]
pub struct PublicKey {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Ed25519(Box<Ed25519Key>),
    EcdsaP256([u8; 65]),
}

/// An Ed25519 key in the two forms we use it in: `ed25519-dalek`'s, for signed notes and
/// signers, and `ed25519-zebra`'s, for verification (see [`PublicKey::verify`]). Both keep the
/// decompressed point, so verification does not pay a square root per call.
#[derive(Clone)]
struct Ed25519Key {
    dalek: VerifyingKey,
    /// Always `Some`: zebra decodes every encoding dalek decodes (both decompress with
    /// curve25519-dalek, and zebra also accepts non-canonical encodings). Were it ever `None`,
    /// the key verifies nothing.
    zebra: Option<ed25519_zebra::VerificationKey>,
}

impl Ed25519Key {
    fn new(dalek: VerifyingKey) -> Ed25519Key {
        let zebra = ed25519_zebra::VerificationKey::try_from(dalek.to_bytes()).ok();
        if zebra.is_none() {
            tracing::error!(
                "ed25519-zebra refused a key ed25519-dalek decoded; it will verify nothing"
            );
        }
        Ed25519Key { dalek, zebra }
    }
}

impl PublicKey {
    /// Validates `bytes` as a public key of `alg`.
    ///
    /// Ed25519: 32 bytes that decode to a curve point, in canonical encoding, not of small order
    /// (a "weak" key, for which one signature verifies for many messages) and with no
    /// small-order component. Honest key generation (`A = a·B`) never produces the last three;
    /// refusing them here means no key has a torsion part for a signature to play with, and
    /// every key has exactly one encoding.
    ///
    /// ECDSA P-256: 65 bytes, `0x04 || x || y`, a point on the curve (NIST SP 800-56A partial
    /// public-key validation, which suffices for a prime-order curve). The check is `ring`'s own
    /// public-key parser, reached through an ECDH agreement with a throwaway scalar: `ring` has
    /// no other public entry to it, and using it means we accept exactly the keys `ring` will
    /// verify with. This costs about one scalar multiplication and needs the system RNG.
    pub fn new(alg: Algorithm, bytes: &[u8]) -> Result<PublicKey, KeyError> {
        let expected = alg.public_key_len();
        if bytes.len() != expected {
            return Err(KeyError::Length {
                alg,
                expected,
                actual: bytes.len(),
            });
        }
        match alg {
            Algorithm::Ed25519 => {
                let mut arr = [0u8; 32];
                arr.copy_from_slice(bytes);
                let vk = VerifyingKey::from_bytes(&arr).map_err(|_| KeyError::InvalidKey {
                    alg,
                    reason: "not the encoding of a curve point",
                })?;
                let point = vk.to_edwards();
                if point.compress().to_bytes() != arr {
                    return Err(KeyError::InvalidKey {
                        alg,
                        reason: "non-canonical point encoding",
                    });
                }
                if vk.is_weak() {
                    return Err(KeyError::InvalidKey {
                        alg,
                        reason: "small-order (weak) key",
                    });
                }
                if !point.is_torsion_free() {
                    return Err(KeyError::InvalidKey {
                        alg,
                        reason: "point has a small-order component",
                    });
                }
                Ok(PublicKey {
                    inner: Inner::Ed25519(Box::new(Ed25519Key::new(vk))),
                })
            }
            Algorithm::EcdsaP256 => {
                if bytes[0] != 0x04 {
                    return Err(KeyError::InvalidKey {
                        alg,
                        reason: "not an uncompressed SEC1 point (first byte must be 0x04)",
                    });
                }
                validate_p256_point(bytes)?;
                let mut arr = [0u8; 65];
                arr.copy_from_slice(bytes);
                Ok(PublicKey {
                    inner: Inner::EcdsaP256(arr),
                })
            }
        }
    }

    /// Decodes standard (padded) base64 and validates the result as [`PublicKey::new`] does.
    pub fn from_base64(alg: Algorithm, text: &str) -> Result<PublicKey, KeyError> {
        let bytes = BASE64_STANDARD
            .decode(text.trim())
            .map_err(|e| KeyError::Base64 {
                alg,
                detail: e.to_string(),
            })?;
        PublicKey::new(alg, &bytes)
    }

    /// Wraps a key derived from a secret key. Such keys are valid by construction (the clamped
    /// secret scalar is a non-zero multiple of 8 below the group order times 8), so the checks
    /// in [`PublicKey::new`] are skipped.
    pub(crate) fn from_ed25519(vk: VerifyingKey) -> PublicKey {
        PublicKey {
            inner: Inner::Ed25519(Box::new(Ed25519Key::new(vk))),
        }
    }

    /// The key's algorithm.
    pub fn alg(&self) -> Algorithm {
        match self.inner {
            Inner::Ed25519(_) => Algorithm::Ed25519,
            Inner::EcdsaP256(_) => Algorithm::EcdsaP256,
        }
    }

    /// The key as records carry it (32 bytes for Ed25519, 65 for P-256).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.inner {
            Inner::Ed25519(k) => k.dalek.as_bytes(),
            Inner::EcdsaP256(b) => b,
        }
    }

    /// The key id, `KeyId::derive(alg, bytes)`.
    pub fn key_id(&self) -> KeyId {
        KeyId::derive(self.alg(), self.as_bytes())
    }

    /// Standard (padded) base64 of [`PublicKey::as_bytes`].
    pub fn to_base64(&self) -> String {
        BASE64_STANDARD.encode(self.as_bytes())
    }

    /// The Ed25519 key, for signed notes.
    pub(crate) fn ed25519(&self) -> Option<&VerifyingKey> {
        match &self.inner {
            Inner::Ed25519(k) => Some(&k.dalek),
            Inner::EcdsaP256(_) => None,
        }
    }

    /// The Ed25519 key as the batch verifier takes it.
    pub(crate) fn ed25519_bytes(&self) -> Option<ed25519_zebra::VerificationKeyBytes> {
        match &self.inner {
            Inner::Ed25519(k) => k.zebra.map(Into::into),
            Inner::EcdsaP256(_) => None,
        }
    }

    /// Verifies `sig` over `msg`.
    ///
    /// Ed25519, signature `R || s` by key `A`: `s` must be canonical (`s < ℓ`), `R` must be
    /// the canonical encoding of a point that is not of small order, and the RFC 8032 §5.1.7
    /// group equation must hold in its cofactored form, `[8][s]B = [8]R + [8][k]A` with
    /// `k = SHA-512(R || A || msg)`, checked by `ed25519-zebra` (ZIP 215's rule, with the
    /// encoding checks above added). [`verify_many`](crate::verify_many) checks exactly the same
    /// rule in batches, so the write path may verify approvals in batches and every verifier
    /// (the service, the cross-verifier, `triplicate verify` offline) reaches the same verdict
    /// on every signature. Nobody but the key's holder can turn one valid signature into
    /// another: a different `R` changes `k`, and `s` and `R` have one encoding each.
    ///
    /// How this relates to `verify_strict` (the cofactorless equation), which this crate used
    /// before: every signature `verify_strict` accepts is accepted here. The only signatures
    /// accepted here and refused there have an `R` with a small-order component added, which
    /// only the key's holder can make (it needs a matching `s`); honest signers never produce
    /// one. See ARCHITECTURE.md ("Signature rule").
    ///
    /// ECDSA P-256: `ring`'s `ECDSA_P256_SHA256_FIXED` over SHA-256(`msg`); it accepts both `s`
    /// and `n - s`, as PIV cards produce either.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
        let alg = self.alg();
        let expected = alg.signature_len();
        if sig.len() != expected {
            return Err(VerifyError::SignatureLength {
                alg,
                expected,
                actual: sig.len(),
            });
        }
        let ok = match &self.inner {
            Inner::Ed25519(k) => match crate::batch::ed25519_signature(sig) {
                Some(sig) => k.zebra.is_some_and(|vk| vk.verify(&sig, msg).is_ok()),
                None => false,
            },
            Inner::EcdsaP256(key) => {
                ring_sig::UnparsedPublicKey::new(&ring_sig::ECDSA_P256_SHA256_FIXED, &key[..])
                    .verify(msg, sig)
                    .is_ok()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(self.invalid())
        }
    }

    pub(crate) fn invalid(&self) -> VerifyError {
        VerifyError::Invalid {
            alg: self.alg(),
            key_id: self.key_id(),
        }
    }
}

fn validate_p256_point(bytes: &[u8]) -> Result<(), KeyError> {
    let alg = Algorithm::EcdsaP256;
    let rng = ring::rand::SystemRandom::new();
    let ours = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
        .map_err(|_| KeyError::Rng { alg })?;
    let theirs = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, bytes);
    // With a valid private scalar the agreement fails only if `ring` rejects the peer point.
    agreement::agree_ephemeral(ours, &theirs, |_shared| ()).map_err(|_| KeyError::InvalidKey {
        alg,
        reason: "not a point on the P-256 curve",
    })
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.alg() == other.alg() && self.as_bytes() == other.as_bytes()
    }
}

impl Eq for PublicKey {}

impl Hash for PublicKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.alg().hash(state);
        self.as_bytes().hash(state);
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("alg", &self.alg())
            .field("key", &self.to_base64())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    fn ring_p256() -> (EcdsaKeyPair, ring::rand::SystemRandom) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        (kp, rng)
    }

    #[test]
    fn p256_known_good_signature_verifies() {
        let (kp, rng) = ring_p256();
        let msg = b"triplicate p256 test";
        let sig = kp.sign(&rng, msg).unwrap();
        let key = PublicKey::new(Algorithm::EcdsaP256, kp.public_key().as_ref()).unwrap();
        assert_eq!(key.alg(), Algorithm::EcdsaP256);
        assert_eq!(key.as_bytes(), kp.public_key().as_ref());
        key.verify(msg, sig.as_ref()).unwrap();

        assert_eq!(key.verify(b"other", sig.as_ref()), Err(key.invalid()));
        let mut bad = sig.as_ref().to_vec();
        bad[10] ^= 1;
        assert_eq!(key.verify(msg, &bad), Err(key.invalid()));
        assert_eq!(
            key.verify(msg, &bad[..63]),
            Err(VerifyError::SignatureLength {
                alg: Algorithm::EcdsaP256,
                expected: 64,
                actual: 63
            })
        );
    }

    #[test]
    fn p256_wrong_length_and_bad_points_are_refused() {
        let (kp, _) = ring_p256();
        let good = kp.public_key().as_ref().to_vec();
        for len in [0, 33, 64, 66] {
            let bytes = vec![4u8; len];
            assert!(matches!(
                PublicKey::new(Algorithm::EcdsaP256, &bytes),
                Err(KeyError::Length {
                    expected: 65,
                    actual,
                    ..
                }) if actual == len
            ));
        }
        // Compressed-form prefix with an uncompressed length.
        let mut wrong_prefix = good.clone();
        wrong_prefix[0] = 0x02;
        assert!(matches!(
            PublicKey::new(Algorithm::EcdsaP256, &wrong_prefix),
            Err(KeyError::InvalidKey { .. })
        ));
        // Off the curve.
        let mut off = good.clone();
        off[64] ^= 1;
        assert!(matches!(
            PublicKey::new(Algorithm::EcdsaP256, &off),
            Err(KeyError::InvalidKey { .. })
        ));
        // x and y of all ones are not field elements.
        let mut big = vec![0xffu8; 65];
        big[0] = 4;
        assert!(matches!(
            PublicKey::new(Algorithm::EcdsaP256, &big),
            Err(KeyError::InvalidKey { .. })
        ));
    }

    #[test]
    fn ed25519_bad_keys_are_refused() {
        assert!(matches!(
            PublicKey::new(Algorithm::Ed25519, &[1u8; 31]),
            Err(KeyError::Length {
                expected: 32,
                actual: 31,
                ..
            })
        ));
        // The identity point (y = 1) is of small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(
            PublicKey::new(Algorithm::Ed25519, &identity),
            Err(KeyError::InvalidKey {
                reason: "small-order (weak) key",
                ..
            })
        ));
        // y = p + 1 is a non-canonical encoding of the identity.
        let mut noncanonical = [0xffu8; 32];
        noncanonical[0] = 0xee;
        noncanonical[31] = 0x7f;
        assert!(matches!(
            PublicKey::new(Algorithm::Ed25519, &noncanonical),
            Err(KeyError::InvalidKey {
                reason: "non-canonical point encoding",
                ..
            })
        ));
    }

    #[test]
    fn ed25519_mixed_order_key_is_refused() {
        use ed25519_dalek::SigningKey;
        let sk = SigningKey::from_bytes(&[9u8; 32]);
        // Add the order-2 point (0, -1) to an honest key.
        let mut minus_one = [0xffu8; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        let t = VerifyingKey::from_bytes(&minus_one).unwrap().to_edwards();
        let mixed = (sk.verifying_key().to_edwards() + t).compress().to_bytes();
        assert!(matches!(
            PublicKey::new(Algorithm::Ed25519, &mixed),
            Err(KeyError::InvalidKey {
                reason: "point has a small-order component",
                ..
            })
        ));
        PublicKey::new(Algorithm::Ed25519, sk.verifying_key().as_bytes()).unwrap();
    }

    #[test]
    fn base64_round_trip_and_key_id() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let key = PublicKey::from_ed25519(sk.verifying_key());
        let again = PublicKey::from_base64(Algorithm::Ed25519, &key.to_base64()).unwrap();
        assert_eq!(key, again);
        assert_eq!(
            key.key_id(),
            KeyId::derive(Algorithm::Ed25519, sk.verifying_key().as_bytes())
        );
        assert!(matches!(
            PublicKey::from_base64(Algorithm::Ed25519, "not base64!"),
            Err(KeyError::Base64 { .. })
        ));
    }
}
