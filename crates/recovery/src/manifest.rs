//! `manifest.json`: what a backup holds, signed by the notary.
//!
//! The file is `{"manifest": {...}, "signature": {...}}`. The signature is the notary's over
//! `"triplicate/backup-manifest/v1\n" || JCS(manifest)` (RFC 8785), with its own domain prefix
//! like every other signature in Triplicate, so a manifest signature can never be mistaken for
//! a record's or an approval's.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use triplicate_core::canonical::to_jcs;
use triplicate_core::Timestamp;
use triplicate_keys::{Signer, VerifierKey};

use crate::RecoveryError;

/// The manifest's file name in a backup directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The format this crate writes and reads.
pub const MANIFEST_FORMAT: &str = "triplicate-backup/v1";
/// Prefix of the signed message.
pub const MANIFEST_DOMAIN: &[u8] = b"triplicate/backup-manifest/v1\n";

/// One file of the backup and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative to the backup directory, `/`-separated.
    pub path: String,
    /// Lower-case hex SHA-256.
    pub sha256: String,
    pub bytes: u64,
}

/// The stream export's summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamPart {
    /// Events exported (every event with a seq below the tree size).
    pub events: u64,
    /// The stream's highest seq when it was exported (it may run past the snapshot).
    pub highest_seq: Option<u64>,
}

/// The projection export's summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectionPart {
    /// Records exported (every stored seq below the tree size, re-derived from the rows).
    pub records: u64,
    /// Seqs whose rows could not be re-derived into a record (left out, listed).
    pub damaged: Vec<u64>,
    /// Verification reports exported.
    pub reports: u64,
    /// Recovery-drill reports exported.
    pub drills: u64,
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    pub created_at: Timestamp,
    /// The ledger's checkpoint origin.
    pub origin: String,
    /// Entries in the ledger snapshot.
    pub tree_size: u64,
    /// Its root, lower-case hex.
    pub root: String,
    /// The signed checkpoint note the snapshot re-derives.
    pub checkpoint: String,
    /// The notary's note verifier key (informational: a restore checks against the key it
    /// trusts, never this one).
    pub notary_vkey: String,
    pub stream: StreamPart,
    pub projection: ProjectionPart,
    /// Ledger files this backup copied (the rest were already there from an earlier backup
    /// into the same directory).
    pub ledger_files_copied: u64,
    /// Every file, in path order.
    pub files: Vec<FileEntry>,
}

/// The notary's signature over a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestSignature {
    pub alg: String,
    pub key_id: String,
    /// Standard base64.
    pub signature: String,
}

/// `manifest.json` as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedManifest {
    pub manifest: Manifest,
    pub signature: ManifestSignature,
}

fn message(manifest: &Manifest) -> Result<Vec<u8>, RecoveryError> {
    let body = to_jcs(manifest).map_err(|e| RecoveryError::Notary(e.to_string()))?;
    let mut msg = MANIFEST_DOMAIN.to_vec();
    msg.extend_from_slice(&body);
    Ok(msg)
}

impl SignedManifest {
    /// Signs `manifest` with the notary (a blocking call for hardware keys).
    pub fn sign(manifest: Manifest, notary: &dyn Signer) -> Result<SignedManifest, RecoveryError> {
        let msg = message(&manifest)?;
        let sig = notary
            .sign(&msg)
            .map_err(|e| RecoveryError::Notary(e.to_string()))?;
        Ok(SignedManifest {
            signature: ManifestSignature {
                alg: notary.algorithm().to_string(),
                key_id: notary.key_id().to_string(),
                signature: base64::engine::general_purpose::STANDARD.encode(sig),
            },
            manifest,
        })
    }

    /// Checks the signature with the key the caller trusts; `Err` says why not.
    pub fn verify(&self, trusted: &VerifierKey) -> Result<(), String> {
        let key_id = trusted.key.key_id().to_string();
        if self.signature.key_id != key_id {
            return Err(format!(
                "signed by key {} but the trusted notary key is {key_id}",
                self.signature.key_id
            ));
        }
        if self.signature.alg != trusted.key.alg().to_string() {
            return Err(format!(
                "signature algorithm {} but the trusted notary key is {}",
                self.signature.alg,
                trusted.key.alg()
            ));
        }
        let sig = base64::engine::general_purpose::STANDARD
            .decode(&self.signature.signature)
            .map_err(|e| format!("signature is not base64: {e}"))?;
        let msg = message(&self.manifest).map_err(|e| e.to_string())?;
        trusted
            .key
            .verify(&msg, &sig)
            .map_err(|e| format!("the signature does not verify with the trusted notary key: {e}"))
    }

    /// Parses `manifest.json`.
    pub fn parse(bytes: &[u8]) -> Result<SignedManifest, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a backup manifest: {e}"))
    }

    /// The file's bytes (pretty JSON: operators read it).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}
