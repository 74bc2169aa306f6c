//! `SoftwareSigner`: conformance, key files.

use std::fs;

use triplicate_keys::{conformance, KeyFileError, Signer, SoftwareSigner, DEFAULT_KEY_NAME};

#[test]
fn software_signer_passes_conformance() {
    conformance::run(&SoftwareSigner::generate("alice"));
    conformance::run(&SoftwareSigner::generate("example.com/notary"));
}

#[test]
fn pem_file_round_trip_keeps_key_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice.pem");
    let signer = SoftwareSigner::generate("alice");
    signer.write_pem_file(&path).unwrap();

    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("# triplicate software key (development only)\n# name: alice\n-----BEGIN PRIVATE KEY-----\n"));

    let again = SoftwareSigner::from_pem_file(&path).unwrap();
    assert_eq!(again.name(), "alice");
    assert_eq!(again.public_key(), signer.public_key());
    assert_eq!(again.key_id(), signer.key_id());
    // Ed25519 is deterministic: same key, same signature.
    assert_eq!(again.sign(b"m").unwrap(), signer.sign(b"m").unwrap());

    let from_str = SoftwareSigner::from_pem_str(&signer.to_pem()).unwrap();
    assert_eq!(from_str.public_key(), signer.public_key());
}

#[test]
fn write_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    fs::write(&path, "precious").unwrap();
    let err = SoftwareSigner::generate("k")
        .write_pem_file(&path)
        .unwrap_err();
    assert!(matches!(err, KeyFileError::Exists { .. }), "{err}");
    assert!(err.to_string().contains("k.pem"), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "precious");
}

#[test]
fn write_refuses_invalid_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    let err = SoftwareSigner::generate("has space")
        .write_pem_file(&path)
        .unwrap_err();
    assert!(matches!(err, KeyFileError::InvalidName { .. }), "{err}");
    assert!(!path.exists());
}

#[cfg(unix)]
#[test]
fn written_file_has_mode_0600() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    SoftwareSigner::generate("k").write_pem_file(&path).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
}

#[cfg(unix)]
#[test]
fn too_open_file_is_still_read() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    let signer = SoftwareSigner::generate("k");
    signer.write_pem_file(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    // Warns (through tracing) but reads.
    let again = SoftwareSigner::from_pem_file(&path).unwrap();
    assert_eq!(again.public_key(), signer.public_key());
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.pem");
    let err = SoftwareSigner::from_pem_file(&path).unwrap_err();
    assert!(matches!(err, KeyFileError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("nope.pem"), "{err}");
}

fn read_err(text: &str) -> KeyFileError {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.pem");
    fs::write(&path, text).expect("write test file");
    let err = SoftwareSigner::from_pem_file(&path).expect_err("malformed file was accepted");
    assert!(
        err.to_string().contains("bad.pem"),
        "error does not name the file: {err}"
    );
    err
}

#[test]
fn malformed_files_are_refused_with_reasons() {
    assert!(matches!(read_err(""), KeyFileError::NoPem { .. }));
    assert!(matches!(
        read_err("just some text\n"),
        KeyFileError::NoPem { .. }
    ));
    assert!(matches!(
        read_err("-----BEGIN PRIVATE KEY-----\nnot base64!!\n-----END PRIVATE KEY-----\n"),
        KeyFileError::NotPkcs8 { .. }
    ));
    // Valid base64, not DER.
    assert!(matches!(
        read_err("-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END PRIVATE KEY-----\n"),
        KeyFileError::NotPkcs8 { .. }
    ));
    // Truncated: BEGIN without END.
    assert!(matches!(
        read_err("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n"),
        KeyFileError::NoPem { .. }
    ));
    let err = read_err("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END ENCRYPTED PRIVATE KEY-----\n");
    assert!(matches!(err, KeyFileError::NotPkcs8 { .. }), "{err}");
    let err = read_err("# name: a+b\n-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n");
    assert!(
        matches!(err, KeyFileError::InvalidName { ref name, .. } if name == "a+b"),
        "{err}"
    );
    let err = read_err("# name: a\n# name: b\n-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n");
    assert!(matches!(err, KeyFileError::DuplicateName { .. }), "{err}");
}

#[test]
fn p256_pkcs8_is_not_ed25519() {
    use base64::prelude::{Engine as _, BASE64_STANDARD};
    let rng = ring::rand::SystemRandom::new();
    let der = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let b64 = BASE64_STANDARD.encode(der.as_ref());
    let body: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        body.join("\n")
    );
    let err = read_err(&pem);
    assert!(matches!(err, KeyFileError::NotEd25519 { .. }), "{err}");
    assert!(err.to_string().contains("1.2.840.10045.2.1"), "{err}");
}

#[test]
fn pkcs8_v2_with_matching_public_key_reads_and_mismatch_is_refused() {
    // RFC 8410 section 10.3's second example: v2, with attributes and the public key.
    let v2 = "-----BEGIN PRIVATE KEY-----\n\
        MHICAQEwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
        oB8wHQYKKoZIhvcNAQkJFDEPDA1DdXJkbGUgQ2hhaXJzgSEAGb9ECWmEzf6FQbrB\n\
        Z9w7lshQhqowtrbLDFw4rXAxZuE=\n\
        -----END PRIVATE KEY-----\n";
    let s = SoftwareSigner::from_pem_str(v2).unwrap();
    assert_eq!(s.name(), DEFAULT_KEY_NAME);
    assert_eq!(
        hex::encode(s.public_key().as_bytes()),
        "19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1"
    );

    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey as _, KeypairBytes, PublicKeyBytes};
    let mismatched = KeypairBytes {
        secret_key: [1u8; 32],
        public_key: Some(PublicKeyBytes(
            ed25519_dalek::SigningKey::from_bytes(&[2u8; 32])
                .verifying_key()
                .to_bytes(),
        )),
    }
    .to_pkcs8_pem(LineEnding::LF)
    .unwrap();
    let err = read_err(&mismatched);
    assert!(matches!(err, KeyFileError::NotPkcs8 { .. }), "{err}");
}

#[test]
fn debug_never_prints_the_key() {
    let s = SoftwareSigner::generate("alice");
    let pem = s.to_pem();
    let body = pem.lines().nth(3).unwrap().to_owned();
    let dbg = format!("{s:?}");
    assert!(dbg.contains("alice"), "{dbg}");
    assert!(!dbg.contains(&body), "{dbg}");
}
