//! Golden vectors: a fixed decision and record, their canonical bytes and every digest and signed
//! message derived from them, compared byte for byte with the files in `tests/golden/`.
//!
//! The expected files were produced by an independent RFC 8785 implementation
//! (`tests/golden/independent_jcs.py`) and checked by hand; see `tests/golden/README.md`. A
//! failure here means the record format changed: that needs a new record version, not new files.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use triplicate_core::digest::{approval_message, leaf_hash};
use triplicate_core::{
    Algorithm, Approval, Decision, KeyId, NotarySignature, Record, Timestamp, UnsignedRecord,
    RECORD_VERSION,
};

fn read(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_text(name: &str) -> String {
    String::from_utf8(read(name)).unwrap().trim_end().to_owned()
}

/// Byte-for-byte comparison, showing where the first difference is.
fn assert_bytes(name: &str, actual: &[u8]) {
    let expected = read(name);
    if expected != actual {
        let at = expected
            .iter()
            .zip(actual)
            .position(|(a, b)| a != b)
            .unwrap_or(expected.len().min(actual.len()));
        let from = at.saturating_sub(40);
        panic!(
            "{name} differs at byte {at} (expected {} bytes, got {}):\nexpected …{}\nactual   …{}",
            expected.len(),
            actual.len(),
            String::from_utf8_lossy(&expected[from..(at + 40).min(expected.len())]),
            String::from_utf8_lossy(&actual[from..(at + 40).min(actual.len())]),
        );
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn decision() -> Decision {
    Decision::from_json(&read("decision.json")).unwrap()
}

fn ed25519_key(n: u8) -> KeyId {
    KeyId::derive(Algorithm::Ed25519, &[n; 32])
}

fn p256_key() -> KeyId {
    let mut point = vec![4u8];
    point.extend([2u8; 64]);
    KeyId::derive(Algorithm::EcdsaP256, &point)
}

/// The record `record.json` describes, built in code from `decision.json`.
fn record() -> Record {
    let mut approvals = vec![
        Approval {
            key_id: ed25519_key(1),
            alg: Algorithm::Ed25519,
            signature: (1..=64).collect(),
            signed_at: "2026-11-20T10:00:00Z".parse().unwrap(),
        },
        Approval {
            key_id: p256_key(),
            alg: Algorithm::EcdsaP256,
            signature: (65..=128).collect(),
            signed_at: "2026-11-20T10:05:30.25Z".parse().unwrap(),
        },
    ];
    approvals.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    UnsignedRecord {
        version: RECORD_VERSION,
        seq: 41,
        decision: decision(),
        approvals,
        recorded_at: "2026-11-20T10:06:00.123456789Z".parse().unwrap(),
    }
    .with_notary(NotarySignature {
        key_id: ed25519_key(9),
        alg: Algorithm::Ed25519,
        signature: (192..=255).rev().collect(),
    })
}

#[test]
fn the_decision_id_is_a_uuid_v7() {
    let d = decision();
    assert_eq!(d.id.to_string(), "01936f2e-5a1b-7c3d-8e4f-0123456789ab");
    assert_eq!(d.id.get_version_num(), 7);
    assert_eq!(d.id.get_variant(), uuid::Variant::RFC4122);
}

#[test]
fn decision_canonical_bytes() {
    let jcs = decision().canonical_bytes().unwrap();
    assert_bytes("decision.jcs", &jcs);
    // The canonical bytes are a fixed point: read back, they canonicalise to themselves.
    let again = Decision::from_json(&jcs).unwrap();
    assert_eq!(again.canonical_bytes().unwrap(), jcs);
    assert_eq!(again.digest().unwrap(), decision().digest().unwrap());
}

#[test]
fn decision_digest() {
    let expected = read_text("decision.digest.hex");
    assert_eq!(hex::encode(decision().digest().unwrap()), expected);
    // The same digest, computed here from the file and the prefix the design names.
    let independent = sha256(&[b"triplicate/decision/v1\n", &read("decision.jcs")]);
    assert_eq!(hex::encode(independent), expected);
}

/// The RFC 8785 rules the vector exercises, spelled out so that a regenerated file that broke
/// one of them would not pass unnoticed.
#[test]
fn rfc8785_rules_hold_in_the_decision_vector() {
    let jcs = String::from_utf8(read("decision.jcs")).unwrap();
    // No insignificant whitespace.
    assert!(!jcs.contains("\": ") && !jcs.contains(", \"") && !jcs.contains('\n'));
    // ECMAScript number serialisation, from canonical and non-canonical spellings.
    assert!(
        jcs.contains(r#""ratios":[100,1e-7,0.5,-3,9007199254740992,-9007199254740992]"#),
        "{jcs}"
    );
    // 1e2, 0.50, 1.0E-7, 4.50, 2e-3, 1e-6, 333333333.33333329, 123456789012345.6, -0.0
    assert!(
        jcs.contains(
            r#""spellings":[100,0.5,1e-7,4.5,0.002,0.000001,333333333.3333333,123456789012345.6,0]"#
        ),
        "{jcs}"
    );
    assert!(jcs.contains(r#""size":9007199254740992"#));
    // Members sorted by UTF-16 code units. U+000D before "1" (its escaped text "\r" would sort
    // after). U+1F600 (surrogates D83D DE00) before U+FB33, although its code point is larger:
    // sorting by code point or by UTF-8 bytes gets this pair wrong.
    let payload = &jcs[jcs.find("\"payload\":").unwrap()..];
    let keys = [
        "{\"\\r\":",
        "\"1\":",
        "\"amount\":",
        "\"escapes\":",
        "\"nested\":",
        "\"nothing\":",
        "\"ratios\":",
        "\"spellings\":",
        "\"zeta\":",
        "\"\u{f6}\":",
        "\"\u{20ac}\":",
        "\"\u{1f600}\":",
        "\"\u{fb33}\":",
    ];
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| payload.find(k).unwrap_or_else(|| panic!("{k} missing")))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "payload members out of UTF-16 order: {positions:?}"
    );
    assert!(jcs.contains(r#"{"B":null,"a":"x"}"#), "{jcs}");
    assert!(jcs.contains(r#""amount":{"city":"Zürich","currency":"EUR","minor_units":120000000,"mood":"🎉","symbol":"€"}"#));
    // Strings: only '"', '\\' and control characters escaped; short forms where JSON has them,
    // lowercase \u00xx otherwise; DEL, '/', non-ASCII and U+2028 written as UTF-8.
    assert!(
        jcs.contains("\"escapes\":\"\\u0001\\b\\f\\n\\r\\t\\u001f\u{7f}/\\\\\\\"\u{e9}\u{2028}\""),
        "{jcs}"
    );
    assert!(jcs.contains("Zürich office budget for 2027 — €1.2m 🏛"));
    assert!(jcs.contains("abstention. 🗳\\n\\t\\\"Minutes\\\" are at C:\\\\board\\\\2026."));
    // Optional members present here; attachment members sorted, absent name omitted.
    assert!(jcs.contains(r#""supersedes":"01936f2e-0000-7000-8000-000000000001""#));
    assert!(jcs.contains(r#"{"media_type":"text/csv","sha256":"#));
}

#[test]
fn key_id_derivation() {
    // First 8 bytes of SHA-256("triplicate/key/v1\n" || "ed25519" || "\n" || [1; 32]).
    assert_eq!(ed25519_key(1).as_str(), read_text("key_id.txt"));
    let independent = sha256(&[b"triplicate/key/v1\n", b"ed25519", b"\n", &[1u8; 32]]);
    assert_eq!(hex::encode(&independent[..8]), read_text("key_id.txt"));
}

#[test]
fn approval_message_vector() {
    let digest = decision().digest().unwrap();
    let signed_at: Timestamp = "2026-11-20T10:00:00Z".parse().unwrap();
    let msg = approval_message(&digest, &ed25519_key(1), Algorithm::Ed25519, &signed_at).unwrap();
    assert_bytes("approval.message", &msg);
    let expected = format!(
        "triplicate/approval/v1\n{{\"alg\":\"ed25519\",\"decision_digest\":\"{}\",\"key_id\":\"{}\",\"signed_at\":\"2026-11-20T10:00:00Z\"}}",
        read_text("decision.digest.hex"),
        read_text("key_id.txt"),
    );
    assert_eq!(String::from_utf8(msg.clone()).unwrap(), expected);
    // The record's approval by that key signs the same message; the other approval does not.
    let r = record();
    let mine = r
        .approvals
        .iter()
        .find(|a| a.key_id == ed25519_key(1))
        .unwrap();
    assert_eq!(mine.message(&digest).unwrap(), msg);
    let other = r.approvals.iter().find(|a| a.key_id == p256_key()).unwrap();
    let other_msg = String::from_utf8(other.message(&digest).unwrap()).unwrap();
    assert!(other_msg.contains("\"alg\":\"ecdsa-p256\""), "{other_msg}");
    assert!(other_msg.contains("\"signed_at\":\"2026-11-20T10:05:30.25Z\""));
}

#[test]
fn record_bytes_from_code_and_from_json() {
    let built = record();
    assert_bytes("record.jcs", &built.to_bytes().unwrap());
    // record.json: the same record, members in another order, pretty-printed, numbers in
    // non-canonical spellings.
    let parsed = Record::from_bytes(&read("record.json")).unwrap();
    assert_eq!(parsed, built);
    assert_bytes("record.jcs", &parsed.to_bytes().unwrap());
    // Stores hold exactly the canonical bytes: the pretty form is valid but refused there.
    let e = Record::from_canonical_bytes(&read("record.json")).unwrap_err();
    assert!(e.has("(record)", "not in RFC 8785 canonical form"), "{e}");
    let stored = Record::from_canonical_bytes(&read("record.jcs")).unwrap();
    assert_bytes("record.jcs", &stored.to_bytes().unwrap());
    assert_eq!(stored.seq, 41);
    assert_eq!(stored.approvals.len(), 2);
    assert_eq!(
        stored.decision.digest().unwrap(),
        built.decision.digest().unwrap()
    );
}

#[test]
fn record_leaf_hash() {
    let expected = read_text("record.leaf.hex");
    assert_eq!(hex::encode(record().leaf_hash().unwrap()), expected);
    assert_eq!(hex::encode(leaf_hash(&read("record.jcs"))), expected);
    // RFC 6962 leaf: SHA-256(0x00 || record_bytes), computed here independently.
    assert_eq!(
        hex::encode(sha256(&[&[0u8], &read("record.jcs")])),
        expected
    );
}

#[test]
fn record_notary_message() {
    let r = record();
    let msg = r.notary_message().unwrap();
    assert_bytes("record.notary_message", &msg);
    assert_eq!(r.unsigned().notary_message().unwrap(), msg);
    // It is the prefix and the canonical record without its "notary" member.
    let body = msg
        .strip_prefix(b"triplicate/record/v1\n".as_slice())
        .unwrap();
    let mut without_notary: serde_json::Value =
        serde_json::from_slice(&read("record.jcs")).unwrap();
    without_notary.as_object_mut().unwrap().remove("notary");
    assert_eq!(
        body,
        triplicate_core::canonical::to_jcs(&without_notary)
            .unwrap()
            .as_slice()
    );
    assert!(!String::from_utf8_lossy(body).contains("notary"));
}
