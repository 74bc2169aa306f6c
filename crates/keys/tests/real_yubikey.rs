//! Checks that need a physical YubiKey: a real attestation chaining to Yubico's PIV root, and a
//! signature on the real card (touch it if its slot wants a touch). The emulated card of
//! `../shared/tools/hwtoken` can do neither.
//!
//! Run with a YubiKey plugged in whose slot 9c holds a P-256 key generated on the card:
//!
//! ```sh
//! TRIPLICATE_TEST_YUBIKEY=1 TRIPLICATE_TEST_YUBIKEY_PIN=123456 \
//!   cargo test -p triplicate-keys --features yubikey --test real_yubikey -- --nocapture
//! ```
#![cfg(feature = "yubikey")]
#![allow(clippy::unwrap_used)]

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use triplicate_keys::{
    conformance, open_signer, Attestation, Interaction, KeySpec, OpenOptions, TrustedRoots,
};
use zeroize::Zeroizing;

const YUBICO_ROOT: &str =
    include_str!("../../../policies/attestation-roots/yubico-piv-root-ca-263751.pem");

fn enabled() -> bool {
    if std::env::var("TRIPLICATE_TEST_YUBIKEY").is_ok_and(|v| v == "1") {
        return true;
    }
    eprintln!("SKIPPED real-YubiKey test: set TRIPLICATE_TEST_YUBIKEY=1 (and TRIPLICATE_TEST_YUBIKEY_PIN) with a YubiKey plugged in");
    false
}

#[derive(Debug)]
struct Console;

impl Interaction for Console {
    fn pin(&self, _what: &str) -> io::Result<Zeroizing<String>> {
        Err(io::Error::other("set TRIPLICATE_TEST_YUBIKEY_PIN"))
    }
    fn touch(&self, what: &str) {
        eprintln!("touch your YubiKey ({what})");
    }
}

fn uri() -> String {
    "yubikey:slot=9c?pin-source=env:TRIPLICATE_TEST_YUBIKEY_PIN".to_owned()
}

#[test]
fn a_real_yubikey_signs_and_its_attestation_chains_to_yubicos_root() {
    if !enabled() {
        return;
    }
    let spec = KeySpec::parse(&uri()).unwrap();
    let KeySpec::YubikeyPiv(piv) = &spec else {
        panic!("not a PIV uri")
    };
    let mut opts = OpenOptions::named("real-yubikey").with_interaction(Arc::new(Console));
    opts.touch_timeout = Duration::from_secs(30);
    let signer = open_signer(&spec, &opts).unwrap_or_else(|e| panic!("{e}"));
    conformance::run(signer.as_ref());

    let a = triplicate_keys::piv::read_attestation(piv).unwrap_or_else(|e| panic!("{e}"));
    let leaf = a.slot_certificate.unwrap_or_else(|e| panic!("{e}"));
    let f9 = a.attestation_certificate.unwrap_or_else(|e| panic!("{e}"));
    let roots = TrustedRoots::from_pem(YUBICO_ROOT).unwrap();
    let v = Attestation::new(leaf, vec![f9])
        .verify_for(&signer.public_key(), &roots, SystemTime::now())
        .unwrap_or_else(|e| panic!("the real attestation does not verify: {e}"));
    assert_eq!(v.serial, a.serial);
    eprintln!(
        "YubiKey {} firmware {} slot 9c: PIN {:?}, touch {:?}",
        v.serial, v.firmware, v.pin_policy, v.touch_policy
    );
}
