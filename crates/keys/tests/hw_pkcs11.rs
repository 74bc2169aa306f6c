//! The PKCS#11 signer against real tokens: SoftHSM2 (Ed25519 and P-256) and ykcs11 on the
//! emulated PIV card. Needs the stand-ins of `../shared/tools/hwtoken` (see `hw_available`).

use std::fs;
use std::io;
use std::sync::{Arc, Mutex};

use triplicate_keys::{
    conformance, open_signer, Algorithm, Interaction, KeySpec, OpenOptions, Pkcs11Signer,
    SignError, Signer, VerifierKey,
};
use zeroize::Zeroizing;

fn hw(var: &str) -> Option<String> {
    triplicate_keys::hwtoken::var(var, "hw_pkcs11")
}

fn softhsm(id: &str, pin: &str) -> Option<String> {
    let module = hw("HWTOKEN_SOFTHSM_MODULE")?;
    let token = hw("HWTOKEN_SOFTHSM_TOKEN")?;
    Some(format!(
        "pkcs11:token={token};id=%{id}?module-path={module}{pin}"
    ))
}

fn open(uri: &str) -> Result<Arc<dyn Signer>, SignError> {
    let spec = KeySpec::parse(uri).unwrap_or_else(|e| panic!("{e}"));
    open_signer(&spec, &OpenOptions::named("hw-test"))
}

fn opened(uri: &str) -> Arc<dyn Signer> {
    open(uri).unwrap_or_else(|e| panic!("open {uri}: {e}"))
}

/// PKCS#11 logins belong to the process, not the session: while any SoftHSM2 session of this
/// process is logged in, a second login (even with a wrong PIN) is "already logged in". Tests
/// that hold SoftHSM2 sessions share this lock; the wrong-PIN test takes it alone.
static SOFTHSM: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    SOFTHSM.read().unwrap_or_else(|p| p.into_inner())
}

/// Serialises tests that touch the one emulated PIV card, across test binaries too.
fn card_lock() -> Option<triplicate_keys::hwtoken::CardLock> {
    triplicate_keys::hwtoken::card_lock("hw_pkcs11")
}

#[test]
fn softhsm_ed25519_passes_the_signer_conformance_suite() {
    let _shared = shared();
    let Some(uri) = softhsm("01", "&pin-value=1234") else {
        return;
    };
    let s = opened(&uri);
    assert_eq!(s.algorithm(), Algorithm::Ed25519);
    assert_eq!(s.name(), "hw-test");
    conformance::run(s.as_ref());
}

#[test]
fn softhsm_p256_passes_the_signer_conformance_suite() {
    let _shared = shared();
    let Some(uri) = softhsm("02", "&pin-value=1234") else {
        return;
    };
    let s = opened(&uri);
    assert_eq!(s.algorithm(), Algorithm::EcdsaP256);
    conformance::run(s.as_ref());
}

#[test]
fn ykcs11_on_the_emulated_card_passes_the_suite_with_its_always_authenticate_key() {
    let Some(module) = hw("HWTOKEN_YKCS11_MODULE") else {
        return;
    };
    let Some(pin) = hw("HWTOKEN_PIV_PIN") else {
        return;
    };
    let Some(pem) = hw("HWTOKEN_PIV_9C_PUBKEY") else {
        return;
    };
    let Some(_card) = card_lock() else { return };
    // ykcs11 maps key id 02 to PIV slot 9c, whose key has CKA_ALWAYS_AUTHENTICATE.
    let s = opened(&format!(
        "pkcs11:id=%02?module-path={module}&pin-value={pin}"
    ));
    assert_eq!(s.algorithm(), Algorithm::EcdsaP256);
    let enrolled = VerifierKey::parse_or_read(&pem).unwrap_or_else(|e| panic!("{pem}: {e}"));
    assert_eq!(
        s.public_key(),
        enrolled.key,
        "ykcs11 public key != the slot 9c key up.sh made"
    );
    conformance::run(s.as_ref());
}

#[test]
fn wrong_pin_is_refused_and_says_so() {
    let _alone = SOFTHSM.write().unwrap_or_else(|p| p.into_inner());
    let Some(uri) = softhsm("01", "&pin-value=9999") else {
        return;
    };
    match open(&uri) {
        Err(SignError::PinIncorrect { .. }) => {}
        other => panic!("wrong PIN: {other:?}"),
    }
    // The right PIN still works afterwards.
    let Some(uri) = softhsm("01", "&pin-value=1234") else {
        return;
    };
    let s = opened(&uri);
    assert!(s.sign(b"after a wrong PIN").is_ok());
}

#[test]
fn wrong_pin_on_the_card_reports_tries_left_and_the_right_pin_resets_them() {
    let Some(module) = hw("HWTOKEN_YKCS11_MODULE") else {
        return;
    };
    let Some(pin) = hw("HWTOKEN_PIV_PIN") else {
        return;
    };
    let Some(_card) = card_lock() else { return };
    match open(&format!(
        "pkcs11:id=%02?module-path={module}&pin-value=000000"
    )) {
        Err(e @ SignError::PinIncorrect { .. }) => {
            let text = e.to_string();
            assert!(!text.contains("000000"), "the error shows the PIN: {text}");
        }
        other => panic!("wrong card PIN: {other:?}"),
    }
    let s = opened(&format!(
        "pkcs11:id=%02?module-path={module}&pin-value={pin}"
    ));
    s.sign(b"the right PIN after a wrong one")
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_missing_token_or_module_is_reported_as_such() {
    let _shared = shared();
    let Some(module) = hw("HWTOKEN_SOFTHSM_MODULE") else {
        return;
    };
    match open(&format!(
        "pkcs11:token=no-such-token;id=%01?module-path={module}&pin-value=1234"
    )) {
        Err(SignError::TokenAbsent { detail }) => {
            assert!(
                detail.contains("triplicate-test"),
                "lists the tokens present: {detail}"
            );
        }
        other => panic!("missing token: {other:?}"),
    }
    match open("pkcs11:id=%01?module-path=/nonexistent/libpkcs11.so&pin-value=1") {
        Err(SignError::Device { detail }) => assert!(detail.contains("/nonexistent"), "{detail}"),
        other => panic!("missing module: {other:?}"),
    }
    let Some(uri) = softhsm("7f", "&pin-value=1234") else {
        return;
    };
    match open(&uri) {
        Err(SignError::Key { detail }) => assert!(detail.contains("no private key"), "{detail}"),
        other => panic!("missing key: {other:?}"),
    }
}

#[test]
fn pin_sources_file_env_and_none() {
    let _shared = shared();
    use std::os::unix::fs::PermissionsExt as _;
    let Some(pin) = hw("HWTOKEN_SOFTHSM_PIN") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("pin");
    fs::write(&file, format!("{pin}\n")).unwrap_or_else(|e| panic!("{e}"));
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap_or_else(|e| panic!("{e}"));
    let Some(uri) = softhsm("01", &format!("&pin-source=file:{}", file.display())) else {
        return;
    };
    match open(&uri) {
        Err(SignError::Pin(e)) => assert!(e.to_string().contains("chmod 600"), "{e}"),
        other => panic!("world-readable PIN file: {other:?}"),
    }
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap_or_else(|e| panic!("{e}"));
    assert!(opened(&uri).sign(b"pin from a file").is_ok());

    // HWTOKEN_SOFTHSM_PIN is itself an environment variable the stand-ins set.
    let Some(uri) = softhsm("02", "&pin-source=env:HWTOKEN_SOFTHSM_PIN") else {
        return;
    };
    assert!(opened(&uri).sign(b"pin from the environment").is_ok());

    let Some(uri) = softhsm("01", "") else { return };
    match open(&uri) {
        Err(SignError::PinRequired) => {}
        other => panic!("no PIN: {other:?}"),
    }
}

#[derive(Debug, Default)]
struct Prompter {
    asked: Mutex<Vec<String>>,
    pin: String,
}

impl Interaction for Prompter {
    fn pin(&self, what: &str) -> io::Result<Zeroizing<String>> {
        self.asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(what.to_owned());
        Ok(Zeroizing::new(self.pin.clone()))
    }
    fn touch(&self, _what: &str) {}
}

#[test]
fn without_a_pin_source_the_interaction_is_asked() {
    let _shared = shared();
    let Some(pin) = hw("HWTOKEN_SOFTHSM_PIN") else {
        return;
    };
    let Some(uri) = softhsm("01", "") else { return };
    let prompter = Arc::new(Prompter {
        asked: Mutex::default(),
        pin,
    });
    let spec = KeySpec::parse(&uri).unwrap_or_else(|e| panic!("{e}"));
    let s = open_signer(
        &spec,
        &OpenOptions::named("prompted").with_interaction(prompter.clone()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(s.sign(b"prompted").is_ok());
    let asked = prompter
        .asked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert_eq!(asked.len(), 1, "asked once: {asked:?}");
    assert!(asked[0].contains("triplicate-test"), "{asked:?}");
}

#[test]
fn a_lost_login_is_recovered_by_logging_in_again() {
    let _shared = shared();
    let Some(uri) = softhsm("02", "&pin-value=1234") else {
        return;
    };
    let KeySpec::Pkcs11(u) = KeySpec::parse(&uri).unwrap_or_else(|e| panic!("{e}")) else {
        panic!("not pkcs11")
    };
    let s =
        Pkcs11Signer::open(&u, &OpenOptions::named("relogin")).unwrap_or_else(|e| panic!("{e}"));
    s.sign(b"before").unwrap_or_else(|e| panic!("{e}"));
    s.simulate_lost_login();
    let sig = s
        .sign(b"after")
        .unwrap_or_else(|e| panic!("sign after the login was lost: {e}"));
    s.public_key()
        .verify(b"after", &sig)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn two_signers_on_one_token_share_it_safely() {
    let _shared = shared();
    let Some(ed) = softhsm("01", "&pin-value=1234") else {
        return;
    };
    let Some(p256) = softhsm("02", "&pin-value=1234") else {
        return;
    };
    let (a, b) = (opened(&ed), opened(&p256));
    std::thread::scope(|scope| {
        for i in 0u8..8 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            scope.spawn(move || {
                for j in 0u8..10 {
                    let m = [i, j];
                    let sig = s.sign(&m).unwrap_or_else(|e| panic!("{e}"));
                    s.public_key()
                        .verify(&m, &sig)
                        .unwrap_or_else(|e| panic!("{e}"));
                }
            });
        }
    });
}
