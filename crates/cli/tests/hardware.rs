//! The CLI with hardware keys: `keys show`, `keys enrol`, `sign` and `demo --hardware` against
//! the stand-ins of `../shared/tools/hwtoken` (SoftHSM2, and the emulated PIV card through the
//! yubikey crate or ykcs11). Without the stand-ins these tests say so loudly and return,
//! except in CI, where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use serde_json::Value;
use triplicate_core::{Decision, Submission, Timestamp};

const BIN: &str = env!("CARGO_BIN_EXE_triplicate");

fn hw(var: &str) -> Option<String> {
    triplicate_keys::hwtoken::var(var, "cli hardware")
}

fn triplicate(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = triplicate(args);
    assert!(
        out.status.success(),
        "triplicate {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn softhsm(id: &str) -> Option<String> {
    let module = hw("HWTOKEN_SOFTHSM_MODULE")?;
    let token = hw("HWTOKEN_SOFTHSM_TOKEN")?;
    Some(format!(
        "pkcs11:token={token};id=%{id}?module-path={module}&pin-source=env:HWTOKEN_SOFTHSM_PIN"
    ))
}

/// The emulated card's slot 9c, through the yubikey crate when the binary has it.
fn piv() -> Option<(String, &'static str)> {
    let pin = hw("HWTOKEN_PIV_PIN")?;
    if cfg!(feature = "yubikey") {
        Some((format!("yubikey:slot=9c?pin-value={pin}"), "yubikey-piv"))
    } else {
        let module = hw("HWTOKEN_YKCS11_MODULE")?;
        Some((
            format!("pkcs11:id=%02?module-path={module}&pin-value={pin}"),
            "pkcs11",
        ))
    }
}

/// Holds the emulated card and the SoftHSM2 tokens for the test (other test binaries and
/// processes use them too).
fn card_lock() -> Option<triplicate_keys::hwtoken::CardLock> {
    triplicate_keys::hwtoken::card_lock("cli hardware")
}

#[test]
fn keys_show_reads_hardware_keys() {
    let Some(ed) = softhsm("01") else { return };
    let Some(p256) = softhsm("02") else { return };
    // SoftHSM2 is not safe for processes that use one token at once (a `triplicate` process
    // listed no token while another test's process used it): the tests that start processes
    // on the tokens take the stand-ins' lock.
    let Some(_tokens) = card_lock() else { return };
    let v: Value = serde_json::from_str(&ok(&["keys", "show", "--json", "--key", &ed])).unwrap();
    assert_eq!(
        (v["alg"].as_str(), v["held"].as_str()),
        (Some("ed25519"), Some("pkcs11"))
    );
    assert!(v["note_verifier_key"]
        .as_str()
        .unwrap()
        .starts_with("triplicate-notary+"));
    let v: Value = serde_json::from_str(&ok(&["keys", "show", "--json", "--key", &p256])).unwrap();
    assert_eq!(v["alg"], "ecdsa-p256");
    assert!(v["note_verifier_key"].is_null(), "{v}");
}

#[test]
fn enrol_then_sign_on_two_tokens_meets_a_hardware_quorum() {
    let Some(p256) = softhsm("02") else { return };
    let Some(ed) = softhsm("01") else { return };
    let Some((piv, piv_held)) = piv() else { return };
    let Some(_card) = card_lock() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // The registry: the notary (SoftHSM2 Ed25519, as `keys show` prints it) and two approvers
    // enrolled with `keys enrol`, one printed and one appended.
    let notary: Value =
        serde_json::from_str(&ok(&["keys", "show", "--json", "--key", &ed])).unwrap();
    let keys_toml = d.join("keys.toml");
    std::fs::write(
        &keys_toml,
        format!(
            "[notary]\nalg = \"ed25519\"\npublic_key = \"{}\"\nheld = \"pkcs11\"\n\n",
            notary["public_key"].as_str().unwrap()
        ),
    )
    .unwrap();
    let printed = ok(&[
        "keys",
        "enrol",
        "--key",
        &p256,
        "--holder",
        "Bob <bob@example.org>",
        "--group",
        "board",
        "--valid-from",
        "2026-01-01T00:00:00Z",
    ]);
    assert!(printed.contains("held = \"pkcs11\""), "{printed}");
    assert!(
        !printed.contains("1234"),
        "the PIN is not in the entry: {printed}"
    );
    let mut text = std::fs::read_to_string(&keys_toml).unwrap();
    text.push_str(&printed);
    std::fs::write(&keys_toml, text).unwrap();
    let out = triplicate(&[
        "keys",
        "enrol",
        "--key",
        &piv,
        "--holder",
        "Alice <alice@example.org>",
        "--group",
        "board",
        "--valid-from",
        "2026-01-01T00:00:00Z",
        "--append",
        keys_toml.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = std::fs::read_to_string(&keys_toml).unwrap();
    assert!(keys.contains(&format!("held = \"{piv_held}\"")), "{keys}");
    assert!(
        !keys.contains("123456"),
        "the card PIN is not in keys.toml: {keys}"
    );
    std::fs::write(
        d.join("governance.toml"),
        "[groups.board]\nrequire_hardware = true\n\n[kinds.motion]\nquorum = [{ group = \"board\", threshold = 2 }]\n",
    )
    .unwrap();
    let policy = triplicate_policy::Policy::load(d).unwrap_or_else(|e| panic!("{e}"));

    // Both approvers sign with `triplicate sign`, one after the other.
    let decision = serde_json::json!({
        "id": uuid::Uuid::now_v7().to_string(),
        "kind": "motion",
        "title": "Rotate the treasury signing key",
        "body": "Moved and carried.",
        "payload": {"key": "treasury-2027"},
        "proposed_at": Timestamp::now().to_string(),
    });
    let file = d.join("decision.json");
    std::fs::write(&file, decision.to_string()).unwrap();
    let f = file.to_str().unwrap();
    ok(&["sign", "--key", &p256, f, "--out", f]);
    ok(&["sign", "--key", &piv, f, "--out", f]);
    let sub: Submission = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(sub.approvals.len(), 2);
    let verdict = policy.check(&sub.decision, &sub.approvals, Timestamp::now());
    assert!(verdict.is_ok(), "{verdict:?}");

    // Signing again with the same key is refused; the file is unchanged.
    let out = triplicate(&["sign", "--key", &p256, f, "--out", f]);
    assert!(!out.status.success());
    let again: Submission = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(again.approvals.len(), 2);
    let _: Decision = again.decision;
}

#[test]
fn a_world_readable_pin_file_is_refused_without_showing_the_pin() {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(module) = hw("HWTOKEN_SOFTHSM_MODULE") else {
        return;
    };
    let Some(pin) = hw("HWTOKEN_SOFTHSM_PIN") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, format!("{pin}\n")).unwrap();
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let key = format!(
        "pkcs11:id=%01?module-path={module}&pin-source=file:{}",
        pin_file.display()
    );
    let out = triplicate(&["keys", "show", "--key", &key]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!err.contains(&pin), "{err}");
}

#[test]
fn demo_hardware_runs_the_tour_on_the_stand_ins() {
    if hw("HWTOKEN_SOFTHSM_MODULE").is_none() {
        return;
    }
    let Some(_card) = card_lock() else { return };
    let out = ok(&["demo", "--hardware", "--json", "--records", "2"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["records_submitted"], 2, "{v}");
    assert_eq!(v["receipts_verified"], 2, "{v}");
    assert_eq!(v["agree"], true, "{v}");
    let runs = v["runs"].as_array().unwrap();
    let last = runs.last().unwrap();
    assert_eq!(last["counts"]["critical"], 0, "{last}");
    assert_eq!(last["counts"]["major"], 0, "{last}");
}
