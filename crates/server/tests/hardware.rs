//! End to end with hardware keys: two approvers sign on the emulated PIV card and on a
//! SoftHSM2 token, the notary signs on SoftHSM2 Ed25519, the decision is submitted over HTTP,
//! the receipt verifies offline with the notary's note verifier key, and the cross-verifier's
//! signature re-verification passes. Needs the stand-ins of `../shared/tools/hwtoken`
//! (scripts/test.sh brings them up); without them it says so loudly and returns, except in CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{approve, body, decision};
use serde_json::{json, Value};
use triplicate_core::Receipt;
use triplicate_keys::{open_signer, KeySpec, OpenOptions, Signer, SoftwareSigner};
use triplicate_ledger::receipt::verify_receipt;
use triplicate_server::auth::{hash_token, Role, TokenEntry};
use triplicate_server::config::{Config, NotaryConfig, StoreConfig};
use triplicate_server::ServiceOptions;

const AUDITOR: &str = "tpl_hw_auditor";
const SUBMITTER: &str = "tpl_hw_submitter";

fn hw(var: &str) -> Option<String> {
    triplicate_keys::hwtoken::var(var, "server hardware")
}

fn open(uri: &str, name: &str) -> Arc<dyn Signer> {
    let spec = KeySpec::parse(uri).unwrap();
    open_signer(&spec, &OpenOptions::named(name)).unwrap_or_else(|e| panic!("open {spec}: {e}"))
}

/// The emulated card's slot 9c: through the yubikey crate when this build has it, else
/// through ykcs11 (PKCS#11 key id 02 is slot 9c).
fn piv_uri(pin: &str) -> Option<String> {
    if cfg!(feature = "yubikey") {
        Some(format!("yubikey:slot=9c?pin-value={pin}"))
    } else {
        let module = hw("HWTOKEN_YKCS11_MODULE")?;
        Some(format!(
            "pkcs11:id=%02?module-path={module}&pin-value={pin}"
        ))
    }
}

/// Holds the emulated card for the test (other test binaries use it too).
fn card_lock() -> Option<triplicate_keys::hwtoken::CardLock> {
    triplicate_keys::hwtoken::card_lock("server hardware")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_on_piv_and_softhsm_notary_on_softhsm_end_to_end() {
    let Some(module) = hw("HWTOKEN_SOFTHSM_MODULE") else {
        return;
    };
    let Some(token) = hw("HWTOKEN_SOFTHSM_TOKEN") else {
        return;
    };
    let Some(piv_pin) = hw("HWTOKEN_PIV_PIN") else {
        return;
    };
    let Some(piv) = piv_uri(&piv_pin) else { return };
    let Some(_card) = card_lock() else { return };

    let softhsm = |id: &str| {
        format!(
            "pkcs11:token={token};id=%{id}?module-path={module}&pin-source=env:HWTOKEN_SOFTHSM_PIN"
        )
    };
    let notary_uri = softhsm("01");
    let notary = open(&notary_uri, "triplicate-hw-notary");
    let alice = open(&piv, "alice");
    let bob = open(&softhsm("02"), "bob");
    let mallory = SoftwareSigner::generate("mallory");

    // A policy whose board counts hardware keys only; a software key in the board is ignored.
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("policies");
    std::fs::create_dir_all(&policy_dir).unwrap();
    let key = |s: &dyn Signer, holder: &str, held: &str| {
        format!(
            "[[key]]\nalg = \"{}\"\npublic_key = \"{}\"\nholder = \"{holder}\"\ngroups = [\"board\"]\nheld = \"{held}\"\nvalid_from = 2000-01-01T00:00:00Z\n\n",
            s.algorithm().as_str(),
            s.public_key().to_base64()
        )
    };
    let piv_held = if cfg!(feature = "yubikey") {
        "yubikey-piv"
    } else {
        "pkcs11"
    };
    let keys = format!(
        "[notary]\nalg = \"ed25519\"\npublic_key = \"{}\"\nheld = \"pkcs11\"\n\n{}{}{}\
         [[key]]\nalg = \"ed25519\"\npublic_key = \"{}\"\nholder = \"Audrey Auditor\"\ngroups = [\"auditors\"]\nheld = \"software\"\nvalid_from = 2000-01-01T00:00:00Z\n",
        notary.public_key().to_base64(),
        key(alice.as_ref(), "Alice", piv_held),
        key(bob.as_ref(), "Bob", "pkcs11"),
        key(&mallory, "Mallory", "software"),
        SoftwareSigner::generate("auditor").public_key().to_base64(),
    );
    std::fs::write(policy_dir.join("keys.toml"), keys).unwrap();
    std::fs::write(
        policy_dir.join("governance.toml"),
        "[groups.board]\ndescription = \"Board\"\nrequire_hardware = true\n\n\
         [groups.auditors]\ndescription = \"Auditors\"\n\n\
         [default]\naction = \"quorum\"\nquorum = [{ group = \"board\", threshold = 2 }]\n",
    )
    .unwrap();
    std::fs::write(
        policy_dir.join("verification.toml"),
        "reverify_signatures = true\n",
    )
    .unwrap();
    drop(notary); // the service opens its own, by URI, as an operator configures it

    let entry = |name: &str, role: Role, token: &str| TokenEntry {
        name: name.into(),
        role,
        sha256: hash_token(token),
    };
    let config = Config {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        origin: "hardware.test/log".into(),
        policy_dir: policy_dir.clone(),
        restrict_reads: false,
        notary: NotaryConfig {
            key: notary_uri.clone(),
            name: "triplicate-hw-notary".into(),
        },
        projection: StoreConfig::default(),
        stream: Default::default(),
        tokens: vec![
            entry("auditor", Role::Auditor, AUDITOR),
            entry("submitter", Role::Submitter, SUBMITTER),
        ],
    };
    let r = triplicate_server::start_configured(config, ServiceOptions::on_demand_crosscheck())
        .await
        .unwrap_or_else(|e| panic!("start with the notary on SoftHSM2: {e}"));
    let base = format!("http://{}", r.addr);
    let http = reqwest::Client::new();

    // The note verifier key, as a relying party gets it.
    let (status, nk) = common::call(&http, &base, "GET", "/v1/keys/notary", None, None).await;
    assert_eq!(status, 200, "{nk}");
    let vkey = nk["note_verifier_key"].as_str().unwrap().to_owned();
    assert!(vkey.starts_with("triplicate-hw-notary+"), "{vkey}");

    // A software key does not count for a require_hardware group: refused, nothing written.
    let d = decision("motion", "Adopt the hardware-key policy");
    let (status, refused) = common::call(
        &http,
        &base,
        "POST",
        "/v1/decisions",
        Some(SUBMITTER),
        Some(&body(
            &d,
            &[approve(&d, alice.as_ref()), approve(&d, &mallory)],
        )),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(r.service.ledger().tree_size(), 0);

    // Alice on the PIV card and Bob on SoftHSM2: accepted.
    let approvals = [approve(&d, alice.as_ref()), approve(&d, bob.as_ref())];
    let (status, out) = common::call(
        &http,
        &base,
        "POST",
        "/v1/decisions",
        Some(SUBMITTER),
        Some(&body(&d, &approvals)),
    )
    .await;
    assert_eq!(status, 201, "{out}");
    let receipt = Receipt::from_json(out["receipt"].to_string().as_bytes()).unwrap();
    let verified = verify_receipt(&receipt, &vkey).expect("the receipt verifies offline");
    assert_eq!(verified.seq, 0);
    assert_eq!(
        receipt.record.notary.key_id,
        open(&notary_uri, "n").key_id()
    );
    common::settle(&r.service).await;

    // The cross-verifier re-verifies every approval and notary signature: all good.
    let (status, report) = common::call(
        &http,
        &base,
        "POST",
        "/v1/admin/crosscheck",
        Some(AUDITOR),
        Some(&json!({ "full": true })),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let c: &Value = &report["counts"];
    for class in ["lag", "minor", "major", "critical"] {
        assert_eq!(c[class], 0, "{class}: {report}");
    }
    // One decision (two approvals + notary), and no audit records before this run.
    assert_eq!(report["signatures_checked"], 3, "{report}");
    r.stop().await.unwrap();
}

#[tokio::test]
async fn a_p256_notary_is_refused_at_start_and_the_error_says_why() {
    let Some(module) = hw("HWTOKEN_SOFTHSM_MODULE") else {
        return;
    };
    let Some(token) = hw("HWTOKEN_SOFTHSM_TOKEN") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        origin: "hardware.test/log".into(),
        policy_dir: dir.path().join("policies"),
        restrict_reads: false,
        notary: NotaryConfig {
            key: format!("pkcs11:token={token};id=%02?module-path={module}&pin-source=env:HWTOKEN_SOFTHSM_PIN"),
            name: "triplicate-notary".into(),
        },
        projection: StoreConfig::default(),
        stream: Default::default(),
        tokens: vec![],
    };
    let err = match triplicate_server::start_configured(config, ServiceOptions::default()).await {
        Ok(_) => panic!("a P-256 notary was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("P-256-only token cannot be the notary"),
        "{err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing was created: {err}"
    );
}
