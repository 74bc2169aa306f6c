//! C2SP signed notes (<https://c2sp.org/signed-note>), signed by any Ed25519 [`Signer`].
//!
//! The format is `signed_note`'s (cloudflare/azul, a port of Go's `golang.org/x/mod/sumdb/note`);
//! this module only adapts our [`Signer`] and [`PublicKey`] to its traits, so checkpoints we
//! sign can be checked by standard tooling and vice versa.
//!
//! A note verifier key is `<name>+<key id>+<key>` where the key id is 8 lowercase hex digits,
//! the first 4 bytes of `SHA-256(<name> || "\n" || 0x01 || public key)`, and the key is
//! `base64(0x01 || 32-byte Ed25519 public key)`; `0x01` is the Ed25519 signature type.
//! For example, Go's documentation key:
//!
//! ```text
//! PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW
//! ```
//!
//! A signed note is the text (ending in a newline), a blank line, then one line per signature:
//! `— <name> base64(4-byte key id || 64-byte signature)`.
//!
//! The note key id (32 bits, bound to the name) is not our [`KeyId`](crate::KeyId) (64 bits,
//! bound to the algorithm); both identify the same key in their own contexts.
//!
//! Only Ed25519 keys can sign notes: the C2SP spec defines other signature types, but
//! `signed_note` and Go's `sumdb/note` implement Ed25519 alone, and a checkpoint nobody can
//! check is no use. P-256 keys are refused with [`KeyError::NoteAlgorithm`].

use std::cell::RefCell;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use signed_note::{Note, VerifierList};
use triplicate_core::Algorithm;

use crate::public_key::{KeyError, PublicKey};
use crate::signer::{SignError, Signer};

/// The signature type byte for Ed25519 in note keys and key ids.
const ALG_ED25519: u8 = 0x01;

/// Why a note could not be signed or verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The signer failed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The signer's or verifier's key or name cannot be used for notes.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The text is not a valid note text (must be UTF-8 ending in a newline, with no control
    /// characters other than newline, at most 1 MB) or the note is not a well-formed signed note.
    #[error("malformed note")]
    Malformed,
    /// The note has no signature by the expected key (it may be signed by others).
    #[error("note has no signature by {name}+{key_id:08x}")]
    NotSigned { name: String, key_id: u32 },
    /// The note has a signature line for the expected key, but it does not verify: the note
    /// was altered or the signature forged.
    #[error("note signature by {name}+{key_id:08x} does not verify")]
    InvalidSignature { name: String, key_id: u32 },
}

/// Whether `name` may name a note key: non-empty, no Unicode whitespace, no `+`.
pub fn is_valid_key_name(name: &str) -> bool {
    signed_note::is_key_name_valid(name)
}

/// The note key id of an Ed25519 key under `name`.
fn note_key_id(name: &str, key: &PublicKey) -> Result<u32, KeyError> {
    let vk = key
        .ed25519()
        .ok_or(KeyError::NoteAlgorithm { alg: key.alg() })?;
    let mut encoded = [0u8; 33];
    encoded[0] = ALG_ED25519;
    encoded[1..].copy_from_slice(vk.as_bytes());
    Ok(signed_note::key_id(name, &encoded))
}

/// The note verifier key `<name>+<8 hex key id>+<base64(0x01 || key)>` for an Ed25519 key.
pub fn note_verifier_key(name: &str, key: &PublicKey) -> Result<String, KeyError> {
    if !is_valid_key_name(name) {
        return Err(KeyError::InvalidName {
            name: name.to_owned(),
        });
    }
    let vk = key
        .ed25519()
        .ok_or(KeyError::NoteAlgorithm { alg: key.alg() })?;
    Ok(signed_note::new_ed25519_verifier_key(name, vk))
}

/// Parses a note verifier key into its name and public key.
///
/// Accepts exactly what `signed_note::StandardVerifier::new` (and Go's `note.NewVerifier`)
/// accept, and additionally refuses keys [`PublicKey::new`] refuses (weak keys and the like).
pub fn parse_note_verifier_key(vkey: &str) -> Result<(String, PublicKey), KeyError> {
    let vkey = vkey.trim();
    // `signed_note` is the authority on the format; we re-split only to get at the key bytes,
    // and to say precisely what is wrong when it refuses.
    let standard = signed_note::StandardVerifier::new(vkey);
    let malformed = |reason: &str| KeyError::MalformedVerifierKey {
        reason: reason.to_owned(),
    };
    let mut parts = vkey.splitn(3, '+');
    let (name, id_hex, key_b64) = match (parts.next(), parts.next(), parts.next()) {
        (Some(n), Some(i), Some(k)) => (n, i, k),
        _ => return Err(malformed("expected <name>+<key id>+<base64 key>")),
    };
    if !is_valid_key_name(name) {
        return Err(KeyError::InvalidName {
            name: name.to_owned(),
        });
    }
    let stated = match u32::from_str_radix(id_hex, 16) {
        Ok(id) if id_hex.len() == 8 => id,
        _ => return Err(malformed("key id must be 8 hex digits")),
    };
    let encoded = BASE64_STANDARD
        .decode(key_b64)
        .map_err(|e| malformed(&format!("key is not base64: {e}")))?;
    let derived = signed_note::key_id(name, &encoded);
    if stated != derived {
        return Err(KeyError::VerifierKeyId {
            name: name.to_owned(),
            stated,
            derived,
        });
    }
    let (alg, key) = encoded
        .split_first()
        .ok_or_else(|| malformed("key is empty"))?;
    if *alg != ALG_ED25519 {
        return Err(KeyError::UnknownNoteKeyType(*alg));
    }
    let public = PublicKey::new(Algorithm::Ed25519, key)?;
    if let Err(e) = standard {
        // Every refusal of `signed_note` should have been caught above with a better message;
        // if not, its verdict still stands.
        return Err(malformed(&e.to_string()));
    }
    Ok((name.to_owned(), public))
}

/// Adapts a [`Signer`] to `signed_note::Signer`.
struct NoteSigner<'a> {
    signer: &'a dyn Signer,
    key_id: u32,
    // `signed_note` can only carry an opaque `signature::Error`; the real error waits here.
    error: RefCell<Option<SignError>>,
}

impl signed_note::Signer for NoteSigner<'_> {
    fn name(&self) -> &str {
        self.signer.name()
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        self.signer.sign(msg).map_err(|e| {
            *self.error.borrow_mut() = Some(e);
            ed25519_dalek::SignatureError::new()
        })
    }
}

/// Adapts a [`PublicKey`] to `signed_note::Verifier`, verifying with [`PublicKey::verify`], the
/// rule every other signature is judged by (the crate's own `StandardVerifier` uses
/// ed25519-dalek's `verify`, which does not refuse non-canonical or small-order `R`).
struct NoteVerifier {
    name: String,
    key_id: u32,
    key: PublicKey,
}

impl signed_note::Verifier for NoteVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.key.verify(msg, sig).is_ok()
    }
}

/// Signs `text` as a note with `signer`, returning the whole signed note.
///
/// The signer must hold an Ed25519 key and have a valid key name. The signature is checked
/// against the signer's verifier before the note is returned, so a faulty token cannot hand out
/// a checkpoint nobody can verify. May block as [`Signer::sign`] does.
pub fn sign_note(text: &str, signer: &dyn Signer) -> Result<String, NoteError> {
    let name = signer.name();
    if !is_valid_key_name(name) {
        return Err(KeyError::InvalidName {
            name: name.to_owned(),
        }
        .into());
    }
    let verifier = signer.verifier();
    let key_id = note_key_id(name, &verifier)?;
    let mut note = Note::new(text.as_bytes(), &[]).map_err(|_| NoteError::Malformed)?;
    let adapter = NoteSigner {
        signer,
        key_id,
        error: RefCell::new(None),
    };
    if let Err(e) = note.add_sigs(&[&adapter]) {
        return Err(match adapter.error.into_inner() {
            Some(sign_error) => NoteError::Sign(sign_error),
            None => map_note_error(e, name, key_id),
        });
    }
    let signed = String::from_utf8(note.to_bytes()).map_err(|_| NoteError::Malformed)?;
    verify_note_with(&signed, name, &verifier).map_err(|e| match e {
        NoteError::InvalidSignature { .. } | NoteError::NotSigned { .. } => {
            NoteError::Sign(SignError::Key {
                detail: "the signer produced a note signature its own public key does not verify"
                    .to_owned(),
            })
        }
        other => other,
    })?;
    Ok(signed)
}

/// Verifies that `note` carries a valid signature by the key `verifier_key` (a note verifier
/// key string) and returns the note's text.
///
/// Signatures by other keys (for example witness cosignatures on a checkpoint) are ignored,
/// as the C2SP spec requires of a verifier that does not know those keys.
pub fn verify_note(note: &str, verifier_key: &str) -> Result<String, NoteError> {
    let (name, key) = parse_note_verifier_key(verifier_key)?;
    verify_note_with(note, &name, &key)
}

/// [`verify_note`] with the verifier key already parsed.
pub fn verify_note_with(note: &str, name: &str, key: &PublicKey) -> Result<String, NoteError> {
    let key_id = note_key_id(name, key)?;
    let parsed = Note::from_bytes(note.as_bytes()).map_err(|_| NoteError::Malformed)?;
    let verifiers = VerifierList::new(vec![Box::new(NoteVerifier {
        name: name.to_owned(),
        key_id,
        key: key.clone(),
    })]);
    parsed
        .verify(&verifiers)
        .map_err(|e| map_note_error(e, name, key_id))?;
    String::from_utf8(parsed.text().to_vec()).map_err(|_| NoteError::Malformed)
}

fn map_note_error(e: signed_note::NoteError, name: &str, key_id: u32) -> NoteError {
    use signed_note::NoteError as E;
    match e {
        E::InvalidSignature { name, id } => NoteError::InvalidSignature { name, key_id: id },
        E::UnverifiedNote => NoteError::NotSigned {
            name: name.to_owned(),
            key_id,
        },
        E::InvalidSigner => NoteError::Key(KeyError::InvalidName {
            name: name.to_owned(),
        }),
        // Mismatched or ambiguous verifiers cannot happen with our single verifier; a signing
        // error without a stored `SignError` cannot either. Both are reported as what they
        // mean to a caller: this note does not check out.
        _ => NoteError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PETER_KEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    #[test]
    fn go_vector_verifies() {
        let note = format!("{TEXT}\n{PETER_SIG}");
        assert_eq!(verify_note(&note, PETER_KEY).unwrap(), TEXT);
        // A cosignature by an unknown key is ignored.
        let cosigned = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        assert_eq!(verify_note(&cosigned, PETER_KEY).unwrap(), TEXT);
    }

    #[test]
    fn go_vector_key_round_trips() {
        let (name, key) = parse_note_verifier_key(PETER_KEY).unwrap();
        assert_eq!(name, "PeterNeumann");
        assert_eq!(note_verifier_key(&name, &key).unwrap(), PETER_KEY);
    }

    #[test]
    fn note_only_signed_by_others_is_not_signed() {
        let note = format!("{TEXT}\n{ENOCH_SIG}");
        assert!(matches!(
            verify_note(&note, PETER_KEY),
            Err(NoteError::NotSigned {
                key_id: 0xc74f20a3,
                ..
            })
        ));
    }

    #[test]
    fn verifier_key_errors_are_specific() {
        assert!(matches!(
            parse_note_verifier_key("PeterNeumann"),
            Err(KeyError::MalformedVerifierKey { .. })
        ));
        assert!(matches!(
            parse_note_verifier_key(
                "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            ),
            Err(KeyError::InvalidName { .. })
        ));
        assert!(matches!(
            parse_note_verifier_key(
                "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            ),
            Err(KeyError::VerifierKeyId {
                stated: 0xc74f20a4,
                derived: 0xc74f20a3,
                ..
            })
        ));
        assert!(matches!(
            parse_note_verifier_key(
                "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T!"
            ),
            Err(KeyError::MalformedVerifierKey { .. })
        ));
        // Signature type 0x02 with a correct id for it.
        let mut enc = vec![2u8];
        enc.extend_from_slice(&[7u8; 32]);
        let id = signed_note::key_id("x", &enc);
        let k = format!("x+{id:08x}+{}", BASE64_STANDARD.encode(&enc));
        assert!(matches!(
            parse_note_verifier_key(&k),
            Err(KeyError::UnknownNoteKeyType(2))
        ));
    }
}
