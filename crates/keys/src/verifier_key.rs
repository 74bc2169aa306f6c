//! A named public key given on a command line or in a config file.

use std::fs;
use std::io;
use std::path::Path;

use ed25519_dalek::pkcs8::spki::{Document, SubjectPublicKeyInfoRef};
use triplicate_core::Algorithm;
use zeroize::Zeroizing;

use crate::note::{self, NoteError};
use crate::public_key::{KeyError, PublicKey};
use crate::signer::Signer;
use crate::software::{self, KeyFileError};

const OID_ED25519: &str = "1.3.101.112";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_PRIME256V1: &str = "1.2.840.10045.3.1.7";

/// A public key and the name it signs notes under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    pub name: String,
    pub key: PublicKey,
}

impl VerifierKey {
    /// The verifier for a signer's notes and signatures.
    pub fn of(signer: &dyn Signer) -> VerifierKey {
        VerifierKey {
            name: signer.name().to_owned(),
            key: signer.verifier(),
        }
    }

    /// Reads a verifier from `spec`, which is either a note verifier key
    /// (`<name>+<key id>+<base64 key>`) or the path of a file holding one of:
    ///
    /// - a note verifier key on its first line that is neither empty nor a `#` comment;
    /// - a `-----BEGIN PUBLIC KEY-----` PEM block (SubjectPublicKeyInfo, Ed25519 or P-256 with
    ///   an uncompressed point), optionally preceded by a `# name: <name>` line;
    /// - a software key file (see [`crate::SoftwareSigner`]), of which only the public half and
    ///   name are kept. This lets a development setup point at the key it generated.
    ///
    /// Keys from PEM files without a `# name:` line are named
    /// [`DEFAULT_KEY_NAME`](crate::DEFAULT_KEY_NAME).
    pub fn parse_or_read(spec: &str) -> Result<VerifierKey, KeyError> {
        let spec = spec.trim();
        let parse_error = match note::parse_note_verifier_key(spec) {
            Ok((name, key)) => return Ok(VerifierKey { name, key }),
            Err(e) => e,
        };
        let path = Path::new(spec);
        if path.exists() {
            return Ok(read_file(path)?);
        }
        if spec.contains('+') {
            // It was meant as a verifier key; say what is wrong with it.
            Err(parse_error)
        } else {
            Err(KeyFileError::NotFound {
                path: Some(path.to_path_buf()),
            }
            .into())
        }
    }

    /// The note verifier key string; fails for keys that cannot verify notes (P-256) and for
    /// names that are not valid note key names.
    pub fn note_string(&self) -> Result<String, KeyError> {
        note::note_verifier_key(&self.name, &self.key)
    }

    /// Verifies a signed note against this key and returns its text (see [`note::verify_note`]).
    pub fn verify_note(&self, signed_note: &str) -> Result<String, NoteError> {
        note::verify_note_with(signed_note, &self.name, &self.key)
    }
}

fn read_file(path: &Path) -> Result<VerifierKey, KeyFileError> {
    let at = || Some(path.to_path_buf());
    // The file may be a private key file; treat its text as secret.
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => KeyFileError::NotFound { path: at() },
        _ => KeyFileError::Io {
            op: "read",
            path: at(),
            source: e,
        },
    })?);
    let unusable = |reason: String| KeyFileError::UnusableKey { path: at(), reason };

    let Some((preamble, block)) = software::split_pem(&text) else {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| unusable("the file is empty".to_owned()))?;
        let (name, key) = note::parse_note_verifier_key(line)
            .map_err(|e| unusable(format!("not a note verifier key or PEM file: {e}")))?;
        return Ok(VerifierKey { name, key });
    };

    if block.starts_with("-----BEGIN PRIVATE KEY-----") {
        software::warn_if_readable_by_others(path);
        let signer = software::parse_pem(&text, at)?;
        return Ok(VerifierKey::of(&signer));
    }
    if !block.starts_with("-----BEGIN PUBLIC KEY-----") {
        return Err(unusable(
            "expected a PUBLIC KEY or PRIVATE KEY PEM block".to_owned(),
        ));
    }
    let name = software::key_name(preamble, &at)?;
    let key = parse_spki_pem(block).map_err(unusable)?;
    Ok(VerifierKey { name, key })
}

fn parse_spki_pem(block: &str) -> Result<PublicKey, String> {
    let (_, doc) = Document::from_pem(block).map_err(|e| format!("bad PEM: {e}"))?;
    let spki = SubjectPublicKeyInfoRef::try_from(doc.as_bytes())
        .map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
    public_key_from_spki(spki)
}

/// The key in a SubjectPublicKeyInfo (a PEM file's, a certificate's, a PIV slot's metadata).
pub(crate) fn public_key_from_spki(spki: SubjectPublicKeyInfoRef<'_>) -> Result<PublicKey, String> {
    let oid = spki.algorithm.oid.to_string();
    let params = spki.algorithm.parameters_oid().ok().map(|o| o.to_string());
    let alg = match (oid.as_str(), params.as_deref()) {
        (OID_ED25519, _) => Algorithm::Ed25519,
        (OID_EC_PUBLIC_KEY, Some(OID_PRIME256V1)) => Algorithm::EcdsaP256,
        (OID_EC_PUBLIC_KEY, other) => {
            return Err(format!(
                "EC key on curve {} (only P-256, {OID_PRIME256V1}, is supported)",
                other.unwrap_or("(none given)")
            ))
        }
        _ => {
            return Err(format!(
                "unsupported algorithm {}",
                software::algorithm_name(&oid)
            ))
        }
    };
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| "public key is not a whole number of bytes".to_owned())?;
    PublicKey::new(alg, bits).map_err(|e| e.to_string())
}
