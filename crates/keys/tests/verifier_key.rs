//! `VerifierKey::parse_or_read`: note key strings, PEM files, key files.

use std::fs;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use triplicate_keys::note::sign_note;
use triplicate_keys::{
    Algorithm, KeyError, KeyFileError, Signer, SoftwareSigner, VerifierKey, DEFAULT_KEY_NAME,
};

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = BASE64_STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

#[test]
fn from_string_file_and_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let signer = SoftwareSigner::generate("example.com/log");
    let want = VerifierKey::of(&signer);
    let vkey = want.note_string().unwrap();

    assert_eq!(VerifierKey::parse_or_read(&vkey).unwrap(), want);

    let vkey_file = dir.path().join("notary.vkey");
    fs::write(&vkey_file, format!("# the notary\n\n{vkey}\n")).unwrap();
    assert_eq!(
        VerifierKey::parse_or_read(vkey_file.to_str().unwrap()).unwrap(),
        want
    );

    let key_file = dir.path().join("notary.pem");
    signer.write_pem_file(&key_file).unwrap();
    let from_key = VerifierKey::parse_or_read(key_file.to_str().unwrap()).unwrap();
    assert_eq!(from_key, want);

    let note = sign_note("hello\n", &signer).unwrap();
    assert_eq!(from_key.verify_note(&note).unwrap(), "hello\n");
}

#[test]
fn from_spki_pem() {
    use ed25519_dalek::pkcs8::EncodePublicKey as _;
    let dir = tempfile::tempdir().unwrap();
    let signer = SoftwareSigner::generate("x");
    let vk =
        ed25519_dalek::VerifyingKey::from_bytes(signer.public_key().as_bytes().try_into().unwrap())
            .unwrap();
    let der = vk.to_public_key_der().unwrap();
    let path = dir.path().join("pub.pem");
    fs::write(
        &path,
        format!("# name: bob\n{}", pem("PUBLIC KEY", der.as_bytes())),
    )
    .unwrap();
    let got = VerifierKey::parse_or_read(path.to_str().unwrap()).unwrap();
    assert_eq!(got.name, "bob");
    assert_eq!(got.key, signer.public_key());

    // P-256 SPKI from RustCrypto.
    let sk = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let der = sk.verifying_key().to_public_key_der().unwrap();
    let path = dir.path().join("p256.pem");
    fs::write(&path, pem("PUBLIC KEY", der.as_bytes())).unwrap();
    let got = VerifierKey::parse_or_read(path.to_str().unwrap()).unwrap();
    assert_eq!(got.name, DEFAULT_KEY_NAME);
    assert_eq!(got.key.alg(), Algorithm::EcdsaP256);
    assert_eq!(
        got.key.as_bytes(),
        sk.verifying_key().to_encoded_point(false).as_bytes()
    );
    assert!(matches!(
        got.note_string(),
        Err(KeyError::NoteAlgorithm { .. })
    ));
}

#[test]
fn errors_say_what_was_wrong() {
    assert!(matches!(
        VerifierKey::parse_or_read("/no/such/file"),
        Err(KeyError::File(KeyFileError::NotFound { .. }))
    ));
    assert!(matches!(
        VerifierKey::parse_or_read("name+0000000+AAAA"),
        Err(KeyError::MalformedVerifierKey { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk");
    fs::write(&path, "junk\n").unwrap();
    let err = VerifierKey::parse_or_read(path.to_str().unwrap()).unwrap_err();
    assert!(
        matches!(err, KeyError::File(KeyFileError::UnusableKey { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("junk"), "{err}");
}
