//! `triplicate-keys`: public keys, signature verification, and the `Signer` trait.
//!
//! Owns: [`PublicKey`] (Ed25519 and ECDSA P-256, as records carry them) and its verification,
//! batch verification ([`verify_many`]), the [`Signer`] trait every signer implements (software
//! keys now; YubiKey PIV and PKCS#11 tokens later), the development-only [`SoftwareSigner`] and
//! its PKCS#8 key file, and C2SP signed notes ([`note`]) signed by any Ed25519 [`Signer`].
//!
//! Must not know: records, digests, ledgers, policies, HTTP or async runtimes. Callers hand this
//! crate bytes and get back signatures or verdicts; what the bytes mean is `triplicate-core`'s
//! business. Signing may block (a hardware token waits for a touch), so async callers wrap
//! [`Signer::sign`] in `spawn_blocking`; nothing here spawns threads or tasks.
//!
//! **Architecture invariant:** every acceptance decision about a single signature goes through
//! [`PublicKey::verify`] (Ed25519 `verify_strict`, ECDSA P-256 via `ring`). [`verify_many`] is
//! a faster route to the same verdicts, with one documented difference (see its docs).

mod batch;
pub mod note;
mod public_key;
mod signer;
mod software;
pub mod spec;
mod verifier_key;

#[cfg(feature = "testkit")]
pub mod conformance;

pub use batch::{verify_many, VerifyItem};
pub use note::NoteError;
pub use public_key::{KeyError, PublicKey, VerifyError};
pub use signer::{SignError, Signer};
pub use software::{KeyFileError, SoftwareSigner, DEFAULT_KEY_NAME};
pub use spec::{Interaction, KeySpec, KeySpecError, OpenOptions, PinError, PinSource};
pub use triplicate_core::{Algorithm, KeyId};
pub use verifier_key::VerifierKey;
