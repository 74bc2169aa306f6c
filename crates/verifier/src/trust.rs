//! What the verifier trusts: the notary's key (checkpoints and record signatures) and, for
//! signature re-verification, the key registry.

use std::sync::Arc;

use triplicate_keys::PublicKey;
use triplicate_policy::Policy;

use crate::error::VerifyError;

/// The trust anchors of a run. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Trust {
    notary_vkey: String,
    notary: PublicKey,
    registry: Option<Arc<Policy>>,
}

impl Trust {
    /// From the notary's note verifier key (`<name>+<hex id>+<base64 key>`, as `notary.vkey`
    /// holds it) and, to re-verify approvals, the key registry.
    pub fn new(notary_vkey: &str, registry: Option<Arc<Policy>>) -> Result<Trust, VerifyError> {
        let vkey = notary_vkey.trim();
        let (_, notary) = triplicate_keys::note::parse_note_verifier_key(vkey)
            .map_err(|e| VerifyError::Trust(format!("notary verifier key {vkey:?}: {e}")))?;
        Ok(Trust {
            notary_vkey: vkey.to_owned(),
            notary,
            registry,
        })
    }

    /// The notary's note verifier key.
    pub fn notary_vkey(&self) -> &str {
        &self.notary_vkey
    }

    /// The notary's public key.
    pub fn notary(&self) -> &PublicKey {
        &self.notary
    }

    /// The key registry, if one was given.
    pub fn registry(&self) -> Option<&Policy> {
        self.registry.as_deref()
    }
}
