//! YubiKey PIV attestation verification against throwaway CAs built at test time (rcgen), and
//! against one real YubiKey's published attestation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, CustomExtension, DnType, IsCa,
    Issuer, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256,
};
use triplicate_keys::attest::{
    CertRole, FirmwareVersion, FormFactor, PinPolicy, TouchPolicy, OID_SERIAL_NUMBER,
};
use triplicate_keys::{
    read_pem_certificates, Algorithm, Attestation, AttestationError, PublicKey, TrustedRoots,
};

const TEST_RSA_KEY: &str = include_str!("data/attest/test-rsa-root.key.pem");
const YUBICO_ROOT: &str = include_str!("data/attest/yubico-piv-root-ca-263751.pem");
const REAL_F9: &str = include_str!("data/attest/yubikey-25515137-slotf9.pem");
const REAL_LEAF: &str = include_str!("data/attest/yubikey-25515137-slot9c-attestation.pem");

/// 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;

fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

fn now() -> SystemTime {
    at(NOW)
}

fn yubico_oid(n: u64) -> [u64; 9] {
    [1, 3, 6, 1, 4, 1, 41482, 3, n]
}

fn der_integer(v: u32) -> Vec<u8> {
    let mut bytes: Vec<u8> = v.to_be_bytes().to_vec();
    while bytes.len() > 1 && bytes[0] == 0 && bytes[1] & 0x80 == 0 {
        bytes.remove(0);
    }
    if bytes[0] & 0x80 != 0 {
        bytes.insert(0, 0);
    }
    let mut out = vec![0x02, bytes.len() as u8];
    out.extend(bytes);
    out
}

fn octet_string(content: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04, content.len() as u8];
    out.extend_from_slice(content);
    out
}

/// The Yubico extensions as a YubiKey writes them: serial 12345678, firmware 5.7.1, PIN once,
/// touch cached, USB-C Keychain.
fn yubikey_extensions() -> Vec<(u64, Vec<u8>)> {
    vec![
        (3, vec![5, 7, 1]),
        (7, der_integer(12_345_678)),
        (8, vec![2, 3]),
        (9, vec![3]),
    ]
}

#[derive(Clone, Copy)]
enum RootKind {
    Rsa,
    P384,
}

struct Spec {
    root: RootKind,
    root_cn: &'static str,
    f9_alg: &'static rcgen::SignatureAlgorithm,
    f9_dates: (i32, i32),
    /// The leaf's years; `None` copies the f9 certificate's dates, as a YubiKey does.
    leaf_dates: Option<(i32, i32)>,
    leaf_alg: &'static rcgen::SignatureAlgorithm,
    leaf_cn: &'static str,
    extensions: Vec<(u64, Vec<u8>)>,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            root: RootKind::Rsa,
            root_cn: "Test PIV Root CA",
            f9_alg: &PKCS_ECDSA_P384_SHA384,
            // Yubico's f9 certificates on old devices run to 9999-12-31 (GeneralizedTime).
            f9_dates: (2016, 9999),
            leaf_dates: None,
            leaf_alg: &PKCS_ECDSA_P256_SHA256,
            leaf_cn: "YubiKey PIV Attestation 9c",
            extensions: yubikey_extensions(),
        }
    }
}

struct Chain {
    root: Certificate,
    f9: Certificate,
    leaf: Certificate,
    leaf_key: KeyPair,
}

impl Chain {
    fn roots(&self) -> TrustedRoots {
        TrustedRoots::from_pem(&self.root.pem()).unwrap()
    }

    fn attestation(&self) -> Attestation {
        Attestation::new(self.leaf.der().to_vec(), vec![self.f9.der().to_vec()])
    }

    fn leaf_public_key(&self) -> PublicKey {
        let alg = if self.leaf_key.algorithm() == &PKCS_ED25519 {
            Algorithm::Ed25519
        } else {
            Algorithm::EcdsaP256
        };
        PublicKey::new(alg, self.leaf_key.public_key_raw()).unwrap()
    }
}

fn name(cn: &str) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn root_key(kind: RootKind) -> KeyPair {
    match kind {
        RootKind::Rsa => KeyPair::from_pkcs8_pem_and_sign_algo(TEST_RSA_KEY, &PKCS_RSA_SHA256)
            .expect("test RSA key"),
        RootKind::P384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap(),
    }
}

fn build(spec: Spec) -> Chain {
    let mut root_params = CertificateParams::default();
    root_params.distinguished_name = name(spec.root_cn);
    root_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    root_params.not_before = date_time_ymd(2016, 3, 14);
    root_params.not_after = date_time_ymd(2052, 4, 17);
    let root_key = root_key(spec.root);
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);

    let mut f9_params = CertificateParams::default();
    f9_params.distinguished_name = name("Test PIV Attestation");
    f9_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    f9_params.not_before = date_time_ymd(spec.f9_dates.0, 3, 14);
    f9_params.not_after = date_time_ymd(spec.f9_dates.1, 12, 31);
    let f9_key = KeyPair::generate_for(spec.f9_alg).unwrap();
    let f9 = f9_params.signed_by(&f9_key, &root_issuer).unwrap();

    let mut leaf_params = CertificateParams::default();
    leaf_params.distinguished_name = name(spec.leaf_cn);
    match spec.leaf_dates {
        // A YubiKey copies its f9 certificate's dates into the leaf.
        None => {
            leaf_params.not_before = f9_params.not_before;
            leaf_params.not_after = f9_params.not_after;
        }
        Some((from, to)) => {
            leaf_params.not_before = date_time_ymd(from, 1, 1);
            leaf_params.not_after = date_time_ymd(to, 1, 1);
        }
    }
    leaf_params.custom_extensions = spec
        .extensions
        .iter()
        .map(|(n, v)| CustomExtension::from_oid_content(&yubico_oid(*n), v.clone()))
        .collect();
    let f9_issuer = Issuer::new(f9_params, f9_key);
    let leaf_key = KeyPair::generate_for(spec.leaf_alg).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &f9_issuer).unwrap();
    Chain {
        root,
        f9,
        leaf,
        leaf_key,
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

#[test]
fn good_chain_to_rsa_root_verifies_and_yields_the_device_facts() {
    let chain = build(Spec::default());
    let expected = chain.leaf_public_key();
    let v = chain
        .attestation()
        .verify_for(&expected, &chain.roots(), now())
        .unwrap();
    assert_eq!(v.public_key, expected);
    assert_eq!(v.public_key.alg(), Algorithm::EcdsaP256);
    assert_eq!(v.serial, 12_345_678);
    assert_eq!(
        v.firmware,
        FirmwareVersion {
            major: 5,
            minor: 7,
            patch: 1
        }
    );
    assert_eq!(v.firmware.to_string(), "5.7.1");
    assert_eq!(v.pin_policy, PinPolicy::Once);
    assert_eq!(v.touch_policy, TouchPolicy::Cached);
    assert_eq!(v.form_factor, Some(FormFactor(3)));
    assert_eq!(v.slot, Some(0x9c));
    assert_eq!(v.root_subject, "CN=Test PIV Root CA");
    assert_eq!(v.root_fingerprint, sha256(chain.root.der()));
}

#[test]
fn all_ecdsa_chain_verifies_and_other_policies_read_right() {
    let mut extensions = yubikey_extensions();
    extensions[2] = (8, vec![3, 1]);
    let chain = build(Spec {
        root: RootKind::P384,
        f9_alg: &PKCS_ECDSA_P256_SHA256,
        f9_dates: (2024, 2040),
        leaf_cn: "YubiKey PIV Attestation 9a",
        extensions,
        ..Spec::default()
    });
    let v = chain.attestation().verify(&chain.roots(), now()).unwrap();
    assert_eq!(v.public_key, chain.leaf_public_key());
    assert_eq!(v.pin_policy, PinPolicy::Always);
    assert_eq!(v.touch_policy, TouchPolicy::Never);
    assert_eq!(v.slot, Some(0x9a));
}

#[test]
fn ed25519_attested_key_is_returned_as_ed25519() {
    let chain = build(Spec {
        leaf_alg: &PKCS_ED25519,
        ..Spec::default()
    });
    let v = chain.attestation().verify(&chain.roots(), now()).unwrap();
    assert_eq!(v.public_key.alg(), Algorithm::Ed25519);
    assert_eq!(v.public_key, chain.leaf_public_key());
}

#[test]
fn wrong_root_has_no_path() {
    let chain = build(Spec::default());
    let other = build(Spec {
        root: RootKind::P384,
        root_cn: "Some Other Root",
        ..Spec::default()
    });
    let err = chain
        .attestation()
        .verify(&other.roots(), now())
        .unwrap_err();
    match err {
        AttestationError::NoPathToRoot {
            cert,
            subject,
            issuer,
        } => {
            assert_eq!(cert, CertRole::Intermediate(1));
            assert_eq!(subject, "CN=Test PIV Attestation");
            assert_eq!(issuer, "CN=Test PIV Root CA");
        }
        other => panic!("expected NoPathToRoot, got {other:?}"),
    }
}

#[test]
fn impostor_root_with_the_same_name_fails_the_intermediates_signature() {
    let chain = build(Spec::default());
    // Same subject name, different (P-384) key.
    let impostor = build(Spec {
        root: RootKind::P384,
        ..Spec::default()
    });
    let err = chain
        .attestation()
        .verify(&impostor.roots(), now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttestationError::BadSignature {
                cert: CertRole::Intermediate(1),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn leaf_without_its_f9_certificate_has_no_path() {
    let chain = build(Spec::default());
    let att = Attestation::new(chain.leaf.der().to_vec(), vec![]);
    let err = att.verify(&chain.roots(), now()).unwrap_err();
    assert!(
        matches!(
            err,
            AttestationError::NoPathToRoot {
                cert: CertRole::Leaf,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn tampered_leaf_signature_is_refused_naming_the_leaf() {
    let chain = build(Spec::default());
    let mut leaf = chain.leaf.der().to_vec();
    // The signature BIT STRING ends the certificate; flip a bit of its last byte.
    let last = leaf.len() - 1;
    leaf[last] ^= 0x01;
    let att = Attestation::new(leaf, vec![chain.f9.der().to_vec()]);
    let err = att.verify(&chain.roots(), now()).unwrap_err();
    match &err {
        AttestationError::BadSignature {
            cert,
            subject,
            issuer,
        } => {
            assert_eq!(*cert, CertRole::Leaf);
            assert_eq!(subject, "CN=YubiKey PIV Attestation 9c");
            assert_eq!(issuer, "CN=Test PIV Attestation");
        }
        other => panic!("expected BadSignature, got {other:?}"),
    }
    assert!(err.to_string().contains("attestation (leaf) certificate"));
}

#[test]
fn tampered_leaf_content_is_refused() {
    let chain = build(Spec::default());
    let mut leaf = chain.leaf.der().to_vec();
    // Change the serial extension's value (12345678 = 0x00bc614e) to another serial.
    let pos = leaf
        .windows(4)
        .position(|w| w == [0x00, 0xbc, 0x61, 0x4e])
        .expect("serial bytes in the leaf");
    leaf[pos + 3] ^= 0x01;
    let att = Attestation::new(leaf, vec![chain.f9.der().to_vec()]);
    let err = att.verify(&chain.roots(), now()).unwrap_err();
    assert!(
        matches!(
            err,
            AttestationError::BadSignature {
                cert: CertRole::Leaf,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn expired_intermediate_is_refused_with_its_dates() {
    let chain = build(Spec {
        f9_dates: (2016, 2020),
        leaf_dates: Some((2016, 2040)),
        ..Spec::default()
    });
    // Valid on 2019-06-01.
    chain
        .attestation()
        .verify(&chain.roots(), at(1_559_347_200))
        .unwrap();
    let err = chain
        .attestation()
        .verify(&chain.roots(), now())
        .unwrap_err();
    match &err {
        AttestationError::Validity {
            cert,
            subject,
            not_before,
            not_after,
            now: when,
        } => {
            assert_eq!(*cert, CertRole::Intermediate(1));
            assert_eq!(subject, "CN=Test PIV Attestation");
            assert_eq!(*not_before, 1_457_913_600); // 2016-03-14
            assert_eq!(*not_after, 1_609_372_800); // 2020-12-31
            assert_eq!(*when, NOW as i64);
        }
        other => panic!("expected Validity, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("2020") && text.contains("2026"), "{text}");
}

#[test]
fn leaf_not_yet_valid_is_refused() {
    let chain = build(Spec::default());
    // 2015-01-01, before the chain's 2016-03-14.
    let err = chain
        .attestation()
        .verify(&chain.roots(), at(1_420_070_400))
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttestationError::Validity {
                cert: CertRole::Leaf,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn expired_root_is_refused() {
    let chain = build(Spec {
        f9_dates: (2016, 2060),
        ..Spec::default()
    });
    // 2055-01-01: the f9 certificate and leaf run to 2060, the root to 2052.
    let err = chain
        .attestation()
        .verify(&chain.roots(), at(2_682_374_400))
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttestationError::Validity {
                cert: CertRole::Root,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn key_mismatch_names_both_keys() {
    let chain = build(Spec::default());
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let expected = PublicKey::new(Algorithm::EcdsaP256, other.public_key_raw()).unwrap();
    let err = chain
        .attestation()
        .verify_for(&expected, &chain.roots(), now())
        .unwrap_err();
    match &err {
        AttestationError::KeyMismatch {
            expected: e,
            attested,
        } => {
            assert_eq!(*e, expected.key_id());
            assert_eq!(*attested, chain.leaf_public_key().key_id());
        }
        other => panic!("expected KeyMismatch, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&expected.key_id().to_string()), "{text}");
    assert!(
        text.contains(&chain.leaf_public_key().key_id().to_string()),
        "{text}"
    );
}

/// Decision: the serial is required. Enrolment records name the device, and every YubiKey that
/// can attest writes the extension, so a leaf without it is refused with a clear error.
#[test]
fn missing_serial_is_a_clear_error() {
    let mut extensions = yubikey_extensions();
    extensions.retain(|(n, _)| *n != 7);
    let chain = build(Spec {
        extensions,
        ..Spec::default()
    });
    let err = chain
        .attestation()
        .verify(&chain.roots(), now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttestationError::MissingExtension {
                oid: OID_SERIAL_NUMBER,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("serial number"));
}

#[test]
fn missing_form_factor_is_tolerated() {
    let mut extensions = yubikey_extensions();
    extensions.retain(|(n, _)| *n != 9);
    let chain = build(Spec {
        extensions,
        ..Spec::default()
    });
    let v = chain.attestation().verify(&chain.roots(), now()).unwrap();
    assert_eq!(v.form_factor, None);
    assert_eq!(v.serial, 12_345_678);
}

#[test]
fn values_wrapped_in_an_octet_string_are_read() {
    let extensions = yubikey_extensions()
        .into_iter()
        .map(|(n, v)| (n, octet_string(&v)))
        .collect();
    let chain = build(Spec {
        extensions,
        ..Spec::default()
    });
    let v = chain.attestation().verify(&chain.roots(), now()).unwrap();
    assert_eq!(v.serial, 12_345_678);
    assert_eq!(v.firmware.to_string(), "5.7.1");
    assert_eq!(v.pin_policy, PinPolicy::Once);
    assert_eq!(v.touch_policy, TouchPolicy::Cached);
    assert_eq!(v.form_factor, Some(FormFactor(3)));
}

#[test]
fn malformed_policy_extension_is_refused() {
    let mut extensions = yubikey_extensions();
    extensions[2] = (8, vec![2, 3, 0]);
    let chain = build(Spec {
        extensions,
        ..Spec::default()
    });
    let err = chain
        .attestation()
        .verify(&chain.roots(), now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttestationError::BadExtension {
                oid: "1.3.6.1.4.1.41482.3.8",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn leaf_signed_with_an_unaccepted_algorithm_is_refused() {
    let chain = build(Spec {
        f9_alg: &PKCS_ED25519,
        ..Spec::default()
    });
    let err = chain
        .attestation()
        .verify(&chain.roots(), now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttestationError::UnsupportedSignatureAlgorithm {
                cert: CertRole::Leaf,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn pem_bundle_in_any_order_verifies() {
    let chain = build(Spec::default());
    let (leaf, f9, root) = (chain.leaf.pem(), chain.f9.pem(), chain.root.pem());
    let expected = chain.leaf_public_key();
    for bundle in [
        format!("{leaf}{f9}"),
        format!("{f9}{leaf}"),
        // A root in the bundle is ignored, not trusted: trust comes from configuration.
        format!("# attestation of slot 9c\n{root}\n{leaf}\n{f9}"),
    ] {
        let att = Attestation::from_pem_bundle(&bundle).unwrap();
        assert_eq!(att.leaf(), chain.leaf.der().as_ref());
        let v = att.verify_for(&expected, &chain.roots(), now()).unwrap();
        assert_eq!(v.serial, 12_345_678);
    }
    // The root in a bundle does not make it trusted.
    let other = build(Spec {
        root: RootKind::P384,
        root_cn: "Some Other Root",
        ..Spec::default()
    });
    let att = Attestation::from_pem_bundle(&format!("{root}{leaf}{f9}")).unwrap();
    assert!(matches!(
        att.verify(&other.roots(), now()),
        Err(AttestationError::NoPathToRoot { .. })
    ));
}

#[test]
fn bundle_with_two_unrelated_leaves_is_refused() {
    let a = build(Spec::default());
    let b = build(Spec::default());
    let bundle = format!("{}{}{}", a.leaf.pem(), a.f9.pem(), b.leaf.pem());
    // Neither leaf issued another certificate and both carry the YubiKey common name, so the
    // bundle does not say which one is the attestation.
    assert!(matches!(
        Attestation::from_pem_bundle(&bundle),
        Err(AttestationError::Bundle { .. })
    ));
}

#[test]
fn read_pem_certificates_reads_blocks_in_order_and_refuses_junk() {
    let chain = build(Spec::default());
    let text = format!("leading text\n{}\n{}", chain.leaf.pem(), chain.f9.pem());
    let ders = read_pem_certificates(&text).unwrap();
    assert_eq!(
        ders,
        vec![chain.leaf.der().to_vec(), chain.f9.der().to_vec()]
    );

    assert!(matches!(
        read_pem_certificates("no pem here"),
        Err(AttestationError::NoCertificates)
    ));
    assert!(matches!(
        read_pem_certificates(TEST_RSA_KEY),
        Err(AttestationError::Pem { .. })
    ));
    assert!(matches!(
        read_pem_certificates("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
        Err(AttestationError::Pem { .. })
    ));
    assert!(matches!(
        TrustedRoots::from_der(vec![]),
        Err(AttestationError::NoRoots)
    ));
}

#[test]
fn garbage_der_is_a_parse_error_not_a_panic() {
    let chain = build(Spec::default());
    for bad in [
        vec![],
        vec![0x30],
        vec![0xff; 40],
        chain.leaf.der()[..100].to_vec(),
    ] {
        let att = Attestation::new(bad, vec![chain.f9.der().to_vec()]);
        assert!(matches!(
            att.verify(&chain.roots(), now()),
            Err(AttestationError::Der { .. })
        ));
    }
    let mut trailing = chain.leaf.der().to_vec();
    trailing.push(0);
    assert!(matches!(
        Attestation::new(trailing, vec![]).verify(&chain.roots(), now()),
        Err(AttestationError::Der { .. })
    ));
}

#[test]
fn real_yubikey_attestation_chains_to_yubicos_root() {
    let roots = TrustedRoots::from_pem(YUBICO_ROOT).unwrap();
    let att = Attestation::from_pem_bundle(&format!("{REAL_LEAF}{REAL_F9}")).unwrap();
    // The chain (RSA-2048 root, RSA-2048 f9, sha256WithRSAEncryption throughout) verifies and
    // the extensions parse; the attested key is P-384, which records cannot carry, so the last
    // step refuses it and says which device and slot.
    let err = att.verify(&roots, now()).unwrap_err();
    match &err {
        AttestationError::UnsupportedKey {
            algorithm,
            serial,
            slot,
        } => {
            assert_eq!(algorithm, "ECDSA P-384");
            assert_eq!(*serial, 25_515_137);
            assert_eq!(*slot, Some(0x9c));
        }
        other => panic!("expected UnsupportedKey, got {other:?}"),
    }
    assert!(err.to_string().contains("25515137"));

    // The same chain with a flipped signature bit fails at the leaf.
    let mut leaf = read_pem_certificates(REAL_LEAF).unwrap().remove(0);
    let last = leaf.len() - 1;
    leaf[last] ^= 0x01;
    let f9 = read_pem_certificates(REAL_F9).unwrap();
    assert!(matches!(
        Attestation::new(leaf, f9).verify(&roots, now()),
        Err(AttestationError::BadSignature {
            cert: CertRole::Leaf,
            ..
        })
    ));

    // Not trusted under a test root; not valid before 2016-03-14.
    let test_roots = build(Spec::default()).roots();
    assert!(matches!(
        att.verify(&test_roots, now()),
        Err(AttestationError::NoPathToRoot {
            cert: CertRole::Intermediate(1),
            ..
        })
    ));
    assert!(matches!(
        att.verify(&roots, at(1_420_070_400)),
        Err(AttestationError::Validity {
            cert: CertRole::Leaf,
            ..
        })
    ));
}
