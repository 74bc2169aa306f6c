//! Signed notes signed by our signers, and the Go `sumdb/note` vector.

use triplicate_keys::note::{
    note_verifier_key, parse_note_verifier_key, sign_note, verify_note, NoteError,
};
use triplicate_keys::{Algorithm, KeyError, PublicKey, SignError, Signer, SoftwareSigner};

const TEXT: &str = "example.com/log\n42\nqINS1GRFhWHwdkUeqLEoP4R3eW3l7f8Ht8+bFJ6/RJM=\n";

#[test]
fn sign_then_verify() {
    let signer = SoftwareSigner::generate("example.com/log");
    let note = sign_note(TEXT, &signer).unwrap();
    assert!(note.starts_with(TEXT));
    assert!(note.contains("\n\n— example.com/log "), "{note}");
    let vkey = note_verifier_key(signer.name(), &signer.verifier()).unwrap();
    assert_eq!(verify_note(&note, &vkey).unwrap(), TEXT);
}

#[test]
fn tampered_note_is_refused() {
    let signer = SoftwareSigner::generate("example.com/log");
    let vkey = note_verifier_key(signer.name(), &signer.verifier()).unwrap();
    let note = sign_note(TEXT, &signer).unwrap();

    let altered_text = note.replacen("42", "43", 1);
    assert!(matches!(
        verify_note(&altered_text, &vkey),
        Err(NoteError::InvalidSignature { .. })
    ));

    // Flip a character inside the base64 signature (after the 4-byte key id).
    let sig_start = note.rfind(' ').unwrap() + 1;
    let mut bytes = note.clone().into_bytes();
    let i = sig_start + 20;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let altered_sig = String::from_utf8(bytes).unwrap();
    assert!(matches!(
        verify_note(&altered_sig, &vkey),
        Err(NoteError::InvalidSignature { .. })
    ));

    let no_blank_line = note.replacen("\n\n", "\n", 1);
    assert!(matches!(
        verify_note(&no_blank_line, &vkey),
        Err(NoteError::Malformed)
    ));
}

#[test]
fn wrong_key_is_refused() {
    let signer = SoftwareSigner::generate("example.com/log");
    let note = sign_note(TEXT, &signer).unwrap();

    // Same name, different key: different key id, so the note is not signed by it.
    let other = SoftwareSigner::generate("example.com/log");
    let other_vkey = note_verifier_key(other.name(), &other.verifier()).unwrap();
    assert!(matches!(
        verify_note(&note, &other_vkey),
        Err(NoteError::NotSigned { .. })
    ));

    // Same key, different name.
    let renamed = note_verifier_key("example.com/other", &signer.verifier()).unwrap();
    assert!(matches!(
        verify_note(&note, &renamed),
        Err(NoteError::NotSigned { .. })
    ));
}

#[test]
fn bad_note_texts_are_refused() {
    let signer = SoftwareSigner::generate("n");
    assert!(matches!(
        sign_note("no final newline", &signer),
        Err(NoteError::Malformed)
    ));
    assert!(matches!(
        sign_note("tab\there\n", &signer),
        Err(NoteError::Malformed)
    ));
}

#[test]
fn verifier_key_string_round_trip() {
    let signer = SoftwareSigner::generate("example.com/log");
    let vkey = note_verifier_key("example.com/log", &signer.public_key()).unwrap();
    let (name, key) = parse_note_verifier_key(&vkey).unwrap();
    assert_eq!(name, "example.com/log");
    assert_eq!(key, signer.public_key());
    assert_eq!(note_verifier_key(&name, &key).unwrap(), vkey);

    // Shape: name, 8 hex digits, base64 of 33 bytes (0x01 || key). The base64 part may itself
    // contain '+', so split at most twice.
    let parts: Vec<&str> = vkey.splitn(3, '+').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[1].len(), 8);
    assert!(
        parts[2].starts_with('A'),
        "0x01 type byte encodes as 'A...': {vkey}"
    );
    assert_eq!(parts[2].len(), 44);

    assert!(matches!(
        note_verifier_key("bad name", &signer.public_key()),
        Err(KeyError::InvalidName { .. })
    ));
}

#[test]
fn go_vector_verifies_and_our_signer_reproduces_it() {
    // golang.org/x/mod/sumdb/note's example, as used in signed_note's own tests.
    let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    let text = "If you think cryptography is the answer to your problem,\n\
                then you don't know what your problem is.\n";
    let want = "If you think cryptography is the answer to your problem,\n\
                then you don't know what your problem is.\n\
                \n\
                — PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    assert_eq!(verify_note(want, vkey).unwrap(), text);

    // The matching signer key is "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz":
    // base64(0x01 || seed). Wrap the seed as our key file and sign the same text; Ed25519 is
    // deterministic, so we must produce the same note byte for byte.
    use base64::prelude::{Engine as _, BASE64_STANDARD};
    let skey = BASE64_STANDARD
        .decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
        .unwrap();
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&skey[1..]);
    let pem = format!(
        "# name: PeterNeumann\n-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        BASE64_STANDARD.encode(&der)
    );
    let peter = SoftwareSigner::from_pem_str(&pem).unwrap();
    assert_eq!(
        note_verifier_key(peter.name(), &peter.verifier()).unwrap(),
        vkey
    );
    assert_eq!(sign_note(text, &peter).unwrap(), want);
}

#[derive(Debug)]
struct FailingSigner(SoftwareSigner);

impl Signer for FailingSigner {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn public_key(&self) -> PublicKey {
        self.0.public_key()
    }
    fn sign(&self, _msg: &[u8]) -> Result<Vec<u8>, SignError> {
        Err(SignError::PinIncorrect {
            retries_left: Some(2),
        })
    }
}

#[derive(Debug)]
struct LyingSigner(SoftwareSigner, SoftwareSigner);

impl Signer for LyingSigner {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn public_key(&self) -> PublicKey {
        self.0.public_key()
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        self.1.sign(msg)
    }
}

#[test]
fn signer_errors_come_through_typed() {
    let s = FailingSigner(SoftwareSigner::generate("t"));
    let err = sign_note(TEXT, &s).unwrap_err();
    assert!(
        matches!(
            err,
            NoteError::Sign(SignError::PinIncorrect {
                retries_left: Some(2)
            })
        ),
        "{err}"
    );
    assert_eq!(err.to_string(), "sign: PIN refused (2 tries left)");
}

#[test]
fn a_signer_whose_signatures_do_not_verify_is_caught() {
    let s = LyingSigner(SoftwareSigner::generate("t"), SoftwareSigner::generate("t"));
    let err = sign_note(TEXT, &s).unwrap_err();
    assert!(
        matches!(err, NoteError::Sign(SignError::Key { .. })),
        "{err}"
    );
}

#[test]
fn p256_keys_cannot_sign_or_verify_notes() {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let kp = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .unwrap();
    use ring::signature::KeyPair as _;
    let key = PublicKey::new(Algorithm::EcdsaP256, kp.public_key().as_ref()).unwrap();
    let err = note_verifier_key("p256", &key).unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::NoteAlgorithm {
                alg: Algorithm::EcdsaP256
            }
        ),
        "{err}"
    );
}
