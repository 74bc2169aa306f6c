//! `PivSigner` against a PIV card: the emulated card of `../shared/tools/hwtoken` (or a real
//! YubiKey with a P-256 key in slot 9c, if the `HWTOKEN_*` variables describe it).
//!
//! Run with the stand-ins up:
//! `source DIR/env && cargo test -p triplicate-keys --features yubikey --test hw_piv -- --test-threads=1`.
//! Without `HWTOKEN_PIV_PIN` the tests say how to run them and pass, except on CI
//! (`CI=true`), where they fail: there the stand-ins must be up.
//!
//! There is one card: every test holds an exclusive `flock` on `card.lock` next to
//! `$HWTOKEN_PIV_9C_PUBKEY` (the ykcs11 tests take the same lock). The tests only read slot 9c
//! and spend at most one wrong PIN try, which the next correct PIN gives back.
#![cfg(feature = "yubikey")]

use std::io;
use std::sync::{Arc, Mutex};

use triplicate_keys::piv::read_attestation;
use triplicate_keys::spec::PivUri;
use triplicate_keys::{
    conformance, Algorithm, Interaction, KeySpec, OpenOptions, PivKeySource, PivSigner, PublicKey,
    SignError, Signer, SoftwareSigner, VerifierKey,
};
use zeroize::Zeroizing;

/// The card, held exclusively while the test runs.
struct Card {
    _lock: triplicate_keys::hwtoken::CardLock,
    pin: String,
    key: PublicKey,
}

fn card() -> Option<Card> {
    let pin = triplicate_keys::hwtoken::var("HWTOKEN_PIV_PIN", "hw_piv")?;
    let pem = triplicate_keys::hwtoken::var("HWTOKEN_PIV_9C_PUBKEY", "hw_piv")?;
    let lock = triplicate_keys::hwtoken::card_lock("hw_piv")?;
    let key = VerifierKey::parse_or_read(&pem)
        .unwrap_or_else(|e| panic!("read {pem}: {e}"))
        .key;
    Some(Card {
        _lock: lock,
        pin,
        key,
    })
}

fn uri(s: &str) -> PivUri {
    match KeySpec::parse(s) {
        Ok(KeySpec::YubikeyPiv(u)) => u,
        other => panic!("{s}: {other:?}"),
    }
}

impl Card {
    /// Slot 9c with the right PIN in the URI.
    fn uri(&self) -> PivUri {
        uri(&format!("yubikey:slot=9c?pin-value={}", self.pin))
    }

    fn signer(&self, uri: &PivUri, opts: &OpenOptions) -> PivSigner {
        PivSigner::open_with_public_key(uri, opts, &self.key)
            .unwrap_or_else(|e| panic!("open {uri}: {e}"))
    }

    /// The card's PIN retry counter. The emulator keeps the PIN verified across connections
    /// and resets (its deselect does nothing), and then VERIFY without data answers "verified"
    /// instead of the count (so `YubiKey::get_pin_retries` says 0): log out first, with raw
    /// APDUs on a second connection that leaves the card as it was.
    fn pin_retries(&self) -> u8 {
        let ctx =
            pcsc::Context::establish(pcsc::Scope::User).unwrap_or_else(|e| panic!("PC/SC: {e}"));
        let readers = ctx
            .list_readers_owned()
            .unwrap_or_else(|e| panic!("list readers: {e}"));
        let reader = readers
            .iter()
            .find(|r| r.to_string_lossy().contains("Yubico"))
            .unwrap_or_else(|| panic!("no Yubico reader in {readers:?}"));
        let card = ctx
            .connect(reader, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let mut buf = [0u8; 258];
        let mut sw = |apdu: &[u8]| -> u16 {
            let r = card
                .transmit(apdu, &mut buf)
                .unwrap_or_else(|e| panic!("transmit {apdu:02x?}: {e}"));
            let n = r.len();
            assert!(n >= 2, "short response {r:02x?}");
            u16::from_be_bytes([r[n - 2], r[n - 1]])
        };
        let select = [
            0x00, 0xa4, 0x04, 0x00, 0x0b, 0xa0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00,
            0x01, 0x00,
        ];
        let selected = sw(&select);
        assert!(
            selected == 0x9000 || selected >> 8 == 0x61,
            "SELECT PIV: {selected:04x}"
        );
        let logout = sw(&[0x00, 0x20, 0xff, 0x80]);
        assert_eq!(logout, 0x9000, "VERIFY logout");
        let status = sw(&[0x00, 0x20, 0x00, 0x80]);
        let _ = card.disconnect(pcsc::Disposition::LeaveCard);
        match status {
            0x6983 => 0,
            s if s & 0xfff0 == 0x63c0 => (s & 0x0f) as u8,
            s => panic!("VERIFY status answered {s:04x}"),
        }
    }
}

fn opts() -> OpenOptions {
    OpenOptions::named("piv-test")
}

/// An `Interaction` that answers PIN prompts with a fixed PIN and records every call.
#[derive(Debug, Default)]
struct Recorder {
    pin: String,
    prompts: Mutex<Vec<String>>,
    touches: Mutex<Vec<String>>,
}

impl Interaction for Recorder {
    fn pin(&self, what: &str) -> io::Result<Zeroizing<String>> {
        self.prompts
            .lock()
            .unwrap_or_else(|e| panic!("{e}"))
            .push(what.to_owned());
        Ok(Zeroizing::new(self.pin.clone()))
    }
    fn touch(&self, what: &str) {
        self.touches
            .lock()
            .unwrap_or_else(|e| panic!("{e}"))
            .push(what.to_owned());
    }
}

#[test]
fn slot_9c_signer_passes_conformance_with_the_generated_key() {
    let Some(card) = card() else { return };
    let signer = card.signer(&card.uri(), &opts());
    conformance::run(&signer);
    assert_eq!(signer.public_key(), card.key, "not the key up.sh generated");
    assert_eq!(signer.algorithm(), Algorithm::EcdsaP256);
    assert_eq!(signer.slot(), 0x9c);
    assert!(signer.serial() != 0);
    assert!(signer.firmware().major >= 4, "{}", signer.firmware());
    assert_eq!(
        signer.describe(),
        format!("YubiKey {} PIV slot 9c", signer.serial())
    );
    // The emulator has no slot metadata and up.sh writes no certificate, so the key is the one
    // given, unless a certificate for it was written to 9c since (the card is shared).
    assert!(
        matches!(
            signer.key_source(),
            PivKeySource::Given | PivKeySource::Certificate
        ),
        "{:?}",
        signer.key_source()
    );
    let debug = format!("{signer:?}");
    assert!(!debug.contains(&card.pin), "{debug}");
    assert!(debug.contains("PIV slot 9c"), "{debug}");
}

#[test]
fn open_without_a_public_key_says_the_card_reports_none() {
    let Some(card) = card() else { return };
    // What the emulator does: GET METADATA answers with no data, and up.sh wrote no
    // certificate. A YubiKey 5.3+ would report the key from its metadata instead.
    match PivSigner::open(&card.uri(), &opts()) {
        Err(SignError::Key { detail }) => {
            assert!(detail.contains("metadata"), "{detail}");
            assert!(detail.contains("certificate"), "{detail}");
            assert!(detail.contains("open_with_public_key"), "{detail}");
            assert!(!detail.contains(&card.pin), "{detail}");
        }
        Ok(signer) => {
            assert_eq!(signer.public_key(), card.key);
            assert_ne!(signer.key_source(), PivKeySource::Given);
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn wrong_pin_reports_retries_and_the_right_pin_restores_them() {
    let Some(card) = card() else { return };
    let before = card.pin_retries();
    assert!(
        before >= 2,
        "the card has only {before} PIN tries left; not spending one (restart the stand-ins)"
    );
    let wrong = if card.pin == "000000" {
        "999999"
    } else {
        "000000"
    };
    let bad = card.signer(&uri(&format!("yubikey:slot=9c?pin-value={wrong}")), &opts());
    match bad.sign(b"wrong pin") {
        Err(SignError::PinIncorrect { retries_left }) => {
            assert_eq!(retries_left, Some(u32::from(before) - 1))
        }
        other => panic!("expected PinIncorrect, got {other:?}"),
    }
    let good = card.signer(&card.uri(), &opts());
    let sig = good
        .sign(b"right pin")
        .unwrap_or_else(|e| panic!("sign with the right PIN: {e}"));
    card.key
        .verify(b"right pin", &sig)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        card.pin_retries(),
        before,
        "the retry counter was not reset"
    );
}

#[test]
fn a_serial_that_is_not_connected_is_token_absent() {
    let Some(card) = card() else { return };
    let present = card.signer(&card.uri(), &opts()).serial();
    let absent = uri(&format!("yubikey:slot=9c;serial=1?pin-value={}", card.pin));
    match PivSigner::open_with_public_key(&absent, &opts(), &card.key) {
        Err(SignError::TokenAbsent { detail }) => {
            assert!(detail.contains("serial 1"), "{detail}");
            assert!(detail.contains(&present.to_string()), "{detail}");
        }
        other => panic!("expected TokenAbsent, got {other:?}"),
    }
    assert!(matches!(
        read_attestation(&absent),
        Err(SignError::TokenAbsent { .. })
    ));
    // The right serial opens the same card.
    let by_serial = uri(&format!(
        "yubikey:slot=9c;serial={present}?pin-value={}",
        card.pin
    ));
    let signer = card.signer(&by_serial, &opts());
    assert_eq!(signer.serial(), present);
    signer.sign(b"by serial").unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn no_pin_and_nobody_to_ask_is_pin_required() {
    let Some(card) = card() else { return };
    let before = card.pin_retries();
    let signer = card.signer(&uri("yubikey:slot=9c"), &opts());
    assert!(matches!(
        signer.sign(b"no pin"),
        Err(SignError::PinRequired)
    ));
    assert_eq!(card.pin_retries(), before, "a PIN try was spent");
}

#[test]
fn the_interaction_is_asked_for_the_pin_before_each_signature() {
    let Some(card) = card() else { return };
    let recorder = Arc::new(Recorder {
        pin: card.pin.clone(),
        ..Recorder::default()
    });
    let signer = card.signer(
        &uri("yubikey:slot=9c"),
        &opts().with_interaction(recorder.clone()),
    );
    for msg in [&b"first"[..], b"second"] {
        let sig = signer.sign(msg).unwrap_or_else(|e| panic!("{e}"));
        card.key.verify(msg, &sig).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(
        *recorder.prompts.lock().unwrap_or_else(|e| panic!("{e}")),
        vec![signer.describe().to_owned(); 2]
    );
    // The emulator answers at once: nobody is told to touch it.
    assert!(recorder
        .touches
        .lock()
        .unwrap_or_else(|e| panic!("{e}"))
        .is_empty());

    // A PIN in the URI wins over the interaction.
    let with_pin = card.signer(&card.uri(), &opts().with_interaction(recorder.clone()));
    with_pin.sign(b"third").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        recorder
            .prompts
            .lock()
            .unwrap_or_else(|e| panic!("{e}"))
            .len(),
        2
    );
}

#[test]
fn ed25519_is_unsupported_and_names_the_firmware() {
    let Some(card) = card() else { return };
    let firmware = card.signer(&card.uri(), &opts()).firmware();
    let ed25519 = SoftwareSigner::generate("ed").public_key();
    match PivSigner::open_with_public_key(&card.uri(), &opts(), &ed25519) {
        Err(SignError::Unsupported { detail }) => {
            assert!(detail.contains("5.7"), "{detail}");
            assert!(detail.contains("0.9"), "{detail}");
            assert!(detail.contains(&format!("firmware {firmware}")), "{detail}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn a_wrong_expected_key_fails_at_the_first_signature() {
    let Some(card) = card() else { return };
    let other = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let other = PublicKey::new(
        Algorithm::EcdsaP256,
        other.verifying_key().to_encoded_point(false).as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // The emulator cannot say which key 9c holds, so opening succeeds; signing must not.
    match PivSigner::open_with_public_key(&card.uri(), &opts(), &other) {
        Ok(signer) => match signer.sign(b"which key?") {
            Err(SignError::Key { detail }) => {
                assert!(detail.contains("does not verify"), "{detail}")
            }
            other => panic!("expected Key, got {other:?}"),
        },
        // A card that reports its key refuses at once.
        Err(SignError::Key { detail }) => {
            assert!(detail.contains("not the expected key"), "{detail}")
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_card_reset_by_another_application_is_reopened() {
    let Some(card) = card() else { return };
    let signer = card.signer(&card.uri(), &opts());
    signer.sign(b"before").unwrap_or_else(|e| panic!("{e}"));
    // Another connection that resets the card when it closes, as dropping a `YubiKey` does:
    // the signer's handle then fails with a PC/SC error and must be replaced.
    drop(yubikey::YubiKey::open().unwrap_or_else(|e| panic!("open the card again: {e}")));
    let sig = signer
        .sign(b"after")
        .unwrap_or_else(|e| panic!("sign after a reset: {e}"));
    card.key
        .verify(b"after", &sig)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn attestation_reports_what_the_card_provides() {
    let Some(card) = card() else { return };
    let serial = card.signer(&card.uri(), &opts()).serial();
    let att = read_attestation(&card.uri()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((att.serial, att.slot), (serial, 0x9c));
    // piv-authenticator 0.7 answers ATTEST with "function not supported" and has no slot f9
    // certificate; a YubiKey gives both (DER certificates).
    match &att.slot_certificate {
        Ok(der) => assert_eq!(der.first(), Some(&0x30), "not DER"),
        Err(why) => assert!(why.contains("did not attest slot 9c"), "{why}"),
    }
    match &att.attestation_certificate {
        Ok(der) => assert_eq!(der.first(), Some(&0x30), "not DER"),
        Err(why) => assert!(why.contains("slot f9"), "{why}"),
    }
    eprintln!("hw_piv: attestation on this card: {att:?}");
}
