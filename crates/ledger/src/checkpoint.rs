//! Checkpoints: C2SP `tlog-checkpoint` bodies (<https://c2sp.org/tlog-checkpoint>) carried in
//! C2SP signed notes (<https://c2sp.org/signed-note>), signed by the notary.
//!
//! The body is `<origin>\n<size>\n<base64 root>\n`; the note adds a blank line and one
//! signature line per signer (room for witness cosignatures later).

use tlog_tiles::{Checkpoint, Hash as TlogHash};
use triplicate_core::Hash;
use triplicate_keys::Signer;

/// A checkpoint together with its signed-note text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// The whole signed note, as written to `checkpoint` and handed out in receipts.
    pub note: String,
}

/// Why a checkpoint was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    #[error("checkpoint is not a valid C2SP tlog-checkpoint note: {0}")]
    Malformed(String),
    #[error("checkpoint signature does not verify with notary key {key}: {reason}")]
    BadSignature { key: String, reason: String },
    #[error("notary could not sign the checkpoint: {0}")]
    Sign(String),
    #[error("notary verifier key is not usable: {0}")]
    VerifierKey(String),
}

impl SignedCheckpoint {
    /// Builds and signs the checkpoint for a tree.
    pub fn sign(
        origin: &str,
        size: u64,
        root: Hash,
        signer: &dyn Signer,
    ) -> Result<SignedCheckpoint, CheckpointError> {
        let body = Checkpoint::new(origin, size, TlogHash(root), "")
            .map_err(|e| CheckpointError::Malformed(format!("origin {origin:?}: {e}")))?;
        let text = String::from_utf8(body.to_bytes())
            .map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        let note = triplicate_keys::note::sign_note(&text, signer)
            .map_err(|e| CheckpointError::Sign(e.to_string()))?;
        Ok(SignedCheckpoint {
            origin: origin.to_owned(),
            size,
            root,
            note,
        })
    }

    /// Verifies a signed checkpoint note with the notary's note verifier key
    /// (`<name>+<hex id>+<base64 key>`) and parses it.
    pub fn verify(note: &str, verifier_key: &str) -> Result<SignedCheckpoint, CheckpointError> {
        let text = triplicate_keys::note::verify_note(note, verifier_key).map_err(|e| {
            CheckpointError::BadSignature {
                key: verifier_key.to_owned(),
                reason: e.to_string(),
            }
        })?;
        let body = Checkpoint::from_bytes(text.as_bytes())
            .map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        Ok(SignedCheckpoint {
            origin: body.origin().to_owned(),
            size: body.size(),
            root: body.hash().0,
            note: note.to_owned(),
        })
    }
}
