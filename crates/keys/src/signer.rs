//! The one trait every signer implements: software keys, YubiKey PIV, PKCS#11 tokens.

use std::fmt;

use triplicate_core::{Algorithm, KeyId};

use crate::public_key::PublicKey;

/// Why a signer could not sign.
///
/// The variants are what a caller can act on: ask for a PIN, ask again, ask the user to plug in
/// or touch the token, or give up. Hardware signers map their device errors onto these; the
/// `detail` strings are for people, not for matching.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The key needs a PIN and none was given to the signer.
    #[error("sign: the signing token needs a PIN")]
    PinRequired,
    /// The token refused the PIN. `retries_left` is what the token reports, if it does; at
    /// zero the PIN is blocked and only the PUK or an administrator can unblock it.
    #[error("sign: PIN refused{}", match retries_left {
        Some(n) => format!(" ({n} tries left)"),
        None => String::new(),
    })]
    PinIncorrect { retries_left: Option<u32> },
    /// No token (or not the expected one) is connected.
    #[error("sign: signing token not found: {detail}")]
    TokenAbsent { detail: String },
    /// The token wanted a touch and did not get one in time.
    #[error("sign: the signing token was not touched in time")]
    TouchTimeout,
    /// The token or its driver failed.
    #[error("sign: signing device failed: {detail}")]
    Device { detail: String },
    /// The key itself cannot be used (missing, wrong type, or it produced a bad signature).
    #[error("sign: signing key unusable: {detail}")]
    Key { detail: String },
    /// The PIN source named in the key URI failed (unreadable or world-readable file, unset
    /// variable, prompt failed).
    #[error("sign: {0}")]
    Pin(#[from] crate::spec::PinError),
    /// This build or this device cannot do what the key URI asks (a `yubikey:` key in a build
    /// without the `yubikey` feature, Ed25519 on a PIV card older than firmware 5.7).
    #[error("sign: unsupported: {detail}")]
    Unsupported { detail: String },
}

impl SignError {
    /// Whether the same call may succeed if the user does something (touches or plugs in the
    /// token, enters a PIN). `PinIncorrect` is not retryable blindly: each retry spends a try.
    pub fn needs_user(&self) -> bool {
        matches!(
            self,
            SignError::PinRequired | SignError::TokenAbsent { .. } | SignError::TouchTimeout
        )
    }
}

/// Something that can sign with one key.
///
/// # Blocking
///
/// [`Signer::sign`] may block for a second or more: a hardware token may wait for a touch or
/// take hundreds of milliseconds per signature. It may need a PIN (given to the signer when it
/// is built; `sign` reports [`SignError::PinRequired`] if it has none) and it may fail because the
/// token was pulled. Async callers must call it through `tokio::task::spawn_blocking` (or their
/// runtime's equivalent), never on an executor thread.
///
/// # Concurrency
///
/// Signers are `Send + Sync` and may be shared between threads. A device can usually do one
/// operation at a time, so implementations serialise access to it themselves (a mutex around
/// the session); callers need not.
///
/// # Conformance
///
/// Every implementation must pass `conformance::run` (behind the `testkit` feature).
pub trait Signer: Send + Sync + fmt::Debug {
    /// The key's name, used as the signed-note key name: non-empty, no whitespace, no `+`.
    fn name(&self) -> &str;

    /// The key id, `KeyId::derive(alg, public_key)`.
    fn key_id(&self) -> KeyId {
        self.public_key().key_id()
    }

    /// The algorithm [`Signer::sign`] produces signatures for.
    fn algorithm(&self) -> Algorithm {
        self.public_key().alg()
    }

    /// The public key of the signing key.
    fn public_key(&self) -> PublicKey;

    /// Signs `msg`, returning a signature in the form records carry (64 bytes for both
    /// algorithms; ECDSA P-256 signs SHA-256(`msg`) and returns `r || s`).
    ///
    /// May block; see the trait docs.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError>;

    /// The key that verifies this signer's signatures. The same as [`Signer::public_key`]; it
    /// exists so code that only verifies asks for a verifier, as `signed_note` does.
    fn verifier(&self) -> PublicKey {
        self.public_key()
    }
}

/// Why [`approve`] could not make an approval.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    /// The decision could not be canonicalised for its digest or the approval message.
    #[error("approve: canonicalise the decision: {0}")]
    Canonical(#[from] triplicate_core::canonical::CanonicalError),
    /// The signer failed.
    #[error("approve: {0}")]
    Sign(#[from] SignError),
}

/// `signer`'s approval of `decision` at `signed_at`: the signature is over
/// [`Approval::message`](triplicate_core::Approval::message) of the decision's digest, which
/// binds the key id, the algorithm and `signed_at` too. What `triplicate sign` does for an
/// approver, and the notary for the service's own audit records.
///
/// May block (it calls [`Signer::sign`]); see the trait docs.
pub fn approve(
    decision: &triplicate_core::Decision,
    signer: &dyn Signer,
    signed_at: triplicate_core::Timestamp,
) -> Result<triplicate_core::Approval, ApproveError> {
    let mut approval = triplicate_core::Approval {
        key_id: signer.key_id(),
        alg: signer.algorithm(),
        signature: Vec::new(),
        signed_at,
    };
    let msg = approval.message(&decision.digest()?)?;
    approval.signature = signer.sign(&msg)?;
    Ok(approval)
}
