//! `triplicate-keys`: public keys, signature verification, and the `Signer` trait.
//!
//! Owns: [`PublicKey`] (Ed25519 and ECDSA P-256, as records carry them) and its verification,
//! batch verification ([`verify_many`]), the [`Signer`] trait every signer implements (software
//! keys, YubiKey PIV keys with the `yubikey` feature, PKCS#11 tokens), the
//! development-only [`SoftwareSigner`] and its PKCS#8 key file, key specs ([`spec`]), C2SP
//! signed notes ([`note`]) signed by any Ed25519 [`Signer`], and verification of YubiKey PIV
//! attestations ([`attest`]), the evidence that a key to be enrolled was generated on a YubiKey.
//!
//! Must not know: records, digests, ledgers, policies, HTTP or async runtimes. Callers hand this
//! crate bytes and get back signatures or verdicts; what the bytes mean is `triplicate-core`'s
//! business. Signing may block (a hardware token waits for a touch), so async callers wrap
//! [`Signer::sign`] in `spawn_blocking`; nothing here spawns tasks, and only the PIV signer
//! starts a thread (one per signature, to time out a touch; see `piv`).
//!
//! **Architecture invariant:** every acceptance decision about a single signature goes through
//! [`PublicKey::verify`] (Ed25519 by the cofactored rule with canonical encodings, ECDSA P-256
//! via `ring`). [`verify_many`] is a faster route to exactly the same verdicts (Ed25519 in
//! batches), which is what lets the write path verify approvals in batches.

pub mod attest;
mod batch;
pub mod note;
mod pkcs11;
mod public_key;
mod signer;
mod software;
pub mod spec;
mod verifier_key;

#[cfg(feature = "yubikey")]
pub mod piv;

#[cfg(feature = "testkit")]
pub mod conformance;
#[cfg(feature = "testkit")]
pub mod hwtoken;

pub use attest::{
    read_pem_certificates, Attestation, AttestationError, TrustedRoots, VerifiedAttestation,
};
pub use batch::{verify_many, VerifyItem};
pub use note::NoteError;
pub use pkcs11::Pkcs11Signer;
pub use public_key::{KeyError, PublicKey, VerifyError};
pub use signer::{approve, ApproveError, SignError, Signer};
pub use software::{KeyFileError, SoftwareSigner, DEFAULT_KEY_NAME};
pub use spec::{Interaction, KeySpec, KeySpecError, OpenOptions, PinError, PinSource};
pub use triplicate_core::{Algorithm, KeyId};
pub use verifier_key::VerifierKey;

/// Opens the signer a [`KeySpec`] names: a software key file, a PKCS#11 key or a YubiKey PIV
/// slot. Software key files keep the name written in them; hardware signers take
/// `opts.name`.
///
/// Opening a hardware key loads its module or connects to its card, logs in and reads the
/// public key; it does not sign. Callers that must know the key signs (the notary at start)
/// sign a probe message.
pub fn open_signer(
    spec: &KeySpec,
    opts: &OpenOptions,
) -> Result<std::sync::Arc<dyn Signer>, SignError> {
    match spec {
        KeySpec::File(path) => SoftwareSigner::from_pem_file(path)
            .map(|s| std::sync::Arc::new(s) as std::sync::Arc<dyn Signer>)
            .map_err(|e| SignError::Key {
                detail: format!("{}: {e}", path.display()),
            }),
        KeySpec::Pkcs11(uri) => Pkcs11Signer::open(uri, opts).map(|s| std::sync::Arc::new(s) as _),
        KeySpec::YubikeyPiv(uri) => open_piv(uri, opts),
    }
}

#[cfg(feature = "yubikey")]
fn open_piv(
    uri: &spec::PivUri,
    opts: &OpenOptions,
) -> Result<std::sync::Arc<dyn Signer>, SignError> {
    PivSigner::open(uri, opts).map(|s| std::sync::Arc::new(s) as _)
}

#[cfg(not(feature = "yubikey"))]
fn open_piv(
    uri: &spec::PivUri,
    _opts: &OpenOptions,
) -> Result<std::sync::Arc<dyn Signer>, SignError> {
    Err(SignError::Unsupported {
        detail: format!(
            "{uri}: this build has no YubiKey PIV support; rebuild with `--features yubikey` \
             (needs libpcsclite-dev), or reach the same key through ykcs11: \
             pkcs11:id=%02?module-path=/usr/lib/x86_64-linux-gnu/libykcs11.so (id 02 = slot 9c)"
        ),
    })
}

#[cfg(feature = "yubikey")]
pub use piv::{PivAttestation, PivKeySource, PivSigner};
