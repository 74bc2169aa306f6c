//! The conformance suite every [`Signer`] implementation runs.
//!
//! Software signers run it in this crate's tests; hardware signers (YubiKey PIV, PKCS#11 on
//! SoftHSM2) run the same function in theirs, so "a signer" means one thing everywhere.
//! Failures panic with a message naming the property, as a test should.

use triplicate_core::{Algorithm, KeyId};

use crate::note;
use crate::signer::Signer;

/// Checks `signer` against the [`Signer`] contract:
///
/// - its name is a valid signed-note key name;
/// - `algorithm()`, `public_key().alg()` and `verifier().alg()` agree, and the verifier is the
///   public key;
/// - `key_id()` is `KeyId::derive(alg, public_key)`;
/// - signatures have the algorithm's length and verify with the handed-out verifier, including
///   over the empty message;
/// - a signature does not verify for another message, nor with any single bit flipped;
/// - signing from several threads at once works (implementations serialise device access);
/// - Ed25519 signers can sign a note that verifies with their note verifier key.
///
/// # Panics
///
/// On the first property that does not hold.
pub fn run(signer: &dyn Signer) {
    let name = signer.name();
    assert!(
        note::is_valid_key_name(name),
        "signer name {name:?} is not a valid note key name"
    );

    let alg = signer.algorithm();
    let public = signer.public_key();
    let verifier = signer.verifier();
    assert_eq!(public.alg(), alg, "public_key().alg() != algorithm()");
    assert_eq!(verifier, public, "verifier() != public_key()");
    assert_eq!(
        signer.key_id(),
        KeyId::derive(alg, public.as_bytes()),
        "key_id() is not KeyId::derive(alg, public_key)"
    );
    assert_eq!(signer.key_id(), public.key_id());
    assert_eq!(public.as_bytes().len(), alg.public_key_len());

    let msg = b"triplicate signer conformance\n";
    let sig = sign(signer, msg);
    assert_eq!(sig.len(), alg.signature_len(), "signature length");
    if let Err(e) = verifier.verify(msg, &sig) {
        panic!("signature does not verify with the signer's verifier: {e}");
    }
    let empty = sign(signer, b"");
    if let Err(e) = verifier.verify(b"", &empty) {
        panic!("signature over the empty message does not verify: {e}");
    }

    assert!(
        verifier
            .verify(b"triplicate signer conformance?", &sig)
            .is_err(),
        "signature verifies for a different message"
    );
    for bit in 0..sig.len() * 8 {
        let mut flipped = sig.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(
            verifier.verify(msg, &flipped).is_err(),
            "signature verifies with bit {bit} flipped"
        );
    }

    std::thread::scope(|s| {
        let handles: Vec<_> = (0u8..4)
            .map(|i| {
                s.spawn(move || {
                    let m = [b'c', i];
                    (m, sign(signer, &m))
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok((m, sig)) => {
                    if let Err(e) = verifier.verify(&m, &sig) {
                        panic!("signature made from another thread does not verify: {e}");
                    }
                }
                Err(_) => panic!("signing from another thread panicked"),
            }
        }
    });

    if alg == Algorithm::Ed25519 {
        let text = "triplicate conformance note\n";
        let signed = match note::sign_note(text, signer) {
            Ok(n) => n,
            Err(e) => panic!("sign_note failed: {e}"),
        };
        let vkey = match note::note_verifier_key(name, &verifier) {
            Ok(k) => k,
            Err(e) => panic!("note_verifier_key failed: {e}"),
        };
        match note::verify_note(&signed, &vkey) {
            Ok(t) => assert_eq!(t, text, "verified note text differs"),
            Err(e) => panic!("signed note does not verify: {e}"),
        }
    }
}

fn sign(signer: &dyn Signer, msg: &[u8]) -> Vec<u8> {
    match signer.sign(msg) {
        Ok(sig) => sig,
        Err(e) => panic!("sign failed: {e}"),
    }
}
