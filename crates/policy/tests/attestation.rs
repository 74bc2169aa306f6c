//! Groups that require attested keys: `keys.toml` names each key's YubiKey attestation bundle,
//! `governance.toml` names the roots, and the loader verifies each chain against them. Chains
//! are built at test time with a throwaway CA (rcgen), as a YubiKey would write them.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer,
    KeyPair, PKCS_ECDSA_P256_SHA256,
};
use triplicate_core::{Algorithm, Approval, KeyId};
use triplicate_keys::PublicKey;
use triplicate_policy::Policy;

/// A throwaway attestation CA: root → "f9" intermediate; leaves for new P-256 keys.
struct Ca {
    root_pem: String,
    f9_pem: String,
    f9: Issuer<'static, KeyPair>,
}

fn dn(cn: &str) -> rcgen::DistinguishedName {
    let mut d = rcgen::DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d
}

impl Ca {
    fn new(cn: &str) -> Ca {
        let mut root = CertificateParams::default();
        root.distinguished_name = dn(cn);
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.not_before = date_time_ymd(2016, 1, 1);
        root.not_after = date_time_ymd(2052, 1, 1);
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let root_cert = root.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root, root_key);
        let mut f9 = CertificateParams::default();
        f9.distinguished_name = dn("Test YubiKey PIV Attestation");
        f9.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        f9.not_before = date_time_ymd(2016, 1, 1);
        f9.not_after = date_time_ymd(9999, 12, 31);
        let f9_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let f9_cert = f9.signed_by(&f9_key, &root_issuer).unwrap();
        Ca {
            root_pem: root_cert.pem(),
            f9_pem: f9_cert.pem(),
            f9: Issuer::new(f9, f9_key),
        }
    }

    /// A new P-256 key "generated on the card" with serial `serial`, and its attestation bundle.
    fn attested_key(&self, serial: u8) -> (PublicKey, String) {
        let mut leaf = CertificateParams::default();
        leaf.distinguished_name = dn("YubiKey PIV Attestation 9c");
        leaf.not_before = date_time_ymd(2016, 1, 1);
        leaf.not_after = date_time_ymd(9999, 12, 31);
        let oid = |n: u64| [1, 3, 6, 1, 4, 1, 41482, 3, n];
        leaf.custom_extensions = vec![
            CustomExtension::from_oid_content(&oid(3), vec![5, 7, 1]),
            CustomExtension::from_oid_content(&oid(7), vec![0x02, 0x01, serial & 0x7f]),
            CustomExtension::from_oid_content(&oid(8), vec![3, 2]),
        ];
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = leaf.signed_by(&key, &self.f9).unwrap();
        let public = PublicKey::new(Algorithm::EcdsaP256, key.public_key_raw()).unwrap();
        (public, format!("{}{}", cert.pem(), self.f9_pem))
    }
}

fn p256_key(pk: &PublicKey, holder: &str, extra: &str) -> String {
    format!(
        "[[key]]\nalg = \"ecdsa-p256\"\npublic_key = \"{}\"\nholder = \"{holder}\"\n\
         groups = [\"board\"]\nheld = \"yubikey-piv\"\nvalid_from = 2026-01-01T00:00:00Z\n{extra}\n",
        pk.to_base64()
    )
}

const GOV: &str = "[groups.board]\nrequire_hardware = true\nrequire_attestation = true\n\n\
    [attestation]\nroots = [\"roots/test-root.pem\"]\n\n\
    [kinds.motion]\nquorum = [{ group = \"board\", threshold = 2 }]\n";

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn approval(key_id: KeyId) -> Approval {
    Approval {
        key_id,
        alg: Algorithm::EcdsaP256,
        signature: vec![0; 64],
        signed_at: t("2026-05-01T10:00:00Z"),
    }
}

fn problems(dir: &Path) -> String {
    match Policy::load(dir) {
        Ok(_) => panic!("the policy loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn only_keys_with_a_verified_attestation_count_for_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test PIV Root");
    let (alice, alice_bundle) = ca.attested_key(11);
    let (bob, bob_bundle) = ca.attested_key(22);
    let (carol, _) = ca.attested_key(33);
    write(dir.path(), "roots/test-root.pem", &ca.root_pem);
    write(dir.path(), "attestations/alice.pem", &alice_bundle);
    write(dir.path(), "attestations/bob.pem", &bob_bundle);
    let keys = [
        notary_block(),
        p256_key(&alice, "Alice", "attestation = \"attestations/alice.pem\""),
        p256_key(&bob, "Bob", "attestation = \"attestations/bob.pem\""),
        p256_key(&carol, "Carol", ""),
    ]
    .concat();
    write(dir.path(), "keys.toml", &keys);
    write(dir.path(), "governance.toml", GOV);
    let policy = Policy::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));

    let a = policy
        .key(&alice.key_id())
        .unwrap()
        .attestation
        .clone()
        .unwrap();
    assert_eq!((a.serial, a.firmware.as_str()), (11, "5.7.1"));
    assert_eq!(
        (a.pin_policy.as_str(), a.touch_policy.as_str()),
        ("always", "always")
    );
    assert_eq!(a.slot.as_deref(), Some("9c"));
    assert!(a.root.contains("Test PIV Root"), "{}", a.root);
    assert!(policy.key(&carol.key_id()).unwrap().attestation.is_none());

    let now = t("2026-05-01T10:05:00Z");
    let ok = policy.evaluate(
        "motion",
        &[approval(alice.key_id()), approval(bob.key_id())],
        now,
    );
    assert!(ok.is_ok(), "{ok:?}");
    // Carol's key is on a YubiKey, but nothing proves it was generated there: not counted.
    let refused = policy
        .evaluate(
            "motion",
            &[approval(alice.key_id()), approval(carol.key_id())],
            now,
        )
        .unwrap_err();
    assert_eq!(refused.unmet.len(), 1, "{refused}");
    assert_eq!(refused.unmet[0].unattested_not_counted, vec![1]);
    assert!(
        refused.to_string().contains("requires attested keys"),
        "{refused}"
    );
}

#[test]
fn an_attestation_of_another_key_or_from_an_unknown_ca_is_refused_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test PIV Root");
    let stranger = Ca::new("Some Other Root");
    let (alice, _) = ca.attested_key(1);
    let (_, someone_elses) = ca.attested_key(2);
    let (bob, bob_by_stranger) = stranger.attested_key(3);
    let (carol, carol_bundle) = ca.attested_key(4);
    write(dir.path(), "roots/test-root.pem", &ca.root_pem);
    write(dir.path(), "a.pem", &someone_elses);
    write(dir.path(), "b.pem", &bob_by_stranger);
    write(dir.path(), "c.pem", &carol_bundle);
    let keys = [
        notary_block(),
        p256_key(&alice, "Alice", "attestation = \"a.pem\""),
        p256_key(&bob, "Bob", "attestation = \"b.pem\""),
        p256_key(&carol, "Carol", "attestation = \"c.pem\""),
    ]
    .concat();
    write(dir.path(), "keys.toml", &keys);
    write(dir.path(), "governance.toml", GOV);
    let text = problems(dir.path());
    let line_of = |needle: &str| keys.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert!(
        text.contains(&format!("keys.toml:{}:", line_of("a.pem")))
            && text.contains(&alice.key_id().to_string()),
        "key mismatch at the attestation's line, naming the key: {text}"
    );
    assert!(
        text.contains(&format!("keys.toml:{}:", line_of("b.pem"))),
        "unknown CA at its line: {text}"
    );
    assert!(
        !text.contains("c.pem"),
        "Carol's attestation is good: {text}"
    );
}

#[test]
fn attestation_needs_roots_a_yubikey_and_enough_attested_keys() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test PIV Root");
    let (alice, bundle) = ca.attested_key(1);
    let (bob, _) = ca.attested_key(2);
    write(dir.path(), "a.pem", &bundle);
    // No roots configured although the group requires attestation.
    let keys = [
        notary_block(),
        p256_key(&alice, "Alice", "attestation = \"a.pem\""),
        p256_key(&bob, "Bob", ""),
    ]
    .concat();
    write(dir.path(), "keys.toml", &keys);
    write(
        dir.path(),
        "governance.toml",
        "[groups.board]\nrequire_attestation = true\n\n[kinds.motion]\nquorum = [{ group = \"board\", threshold = 1 }]\n",
    );
    let text = problems(dir.path());
    assert!(text.contains("no [attestation] roots"), "{text}");

    // With roots, a threshold of 2 cannot be met by one attested key.
    write(dir.path(), "roots/test-root.pem", &ca.root_pem);
    write(dir.path(), "governance.toml", GOV);
    let text = problems(dir.path());
    assert!(text.contains("without a verified attestation"), "{text}");
    assert!(text.contains("governance.toml:"), "{text}");

    // An attested key must say it is held on a YubiKey.
    let keys = keys.replacen("held = \"yubikey-piv\"", "held = \"pkcs11\"", 1);
    write(dir.path(), "keys.toml", &keys);
    let text = problems(dir.path());
    assert!(
        text.contains("held = \\\"yubikey-piv\\\"") || text.contains("held = \"yubikey-piv\""),
        "{text}"
    );
}
