//! Golden vectors: a fixed decision and record, their canonical bytes and every digest derived
//! from them, checked byte for byte. A change here is a change of the record format: it needs a
//! new record version, not new vectors.
//!
//! To regenerate after a deliberate format change: `UPDATE_VECTORS=1 cargo test -p
//! triplicate-core --test vectors`, then review the diff by hand against RFC 8785.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use triplicate_core::digest::{approval_message, leaf_hash};
use triplicate_core::{
    Algorithm, Approval, Decision, KeyId, NotarySignature, Record, Timestamp, UnsignedRecord,
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn check(name: &str, actual: &[u8]) {
    let path = dir().join(name);
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        expected == actual,
        "{name} changed:\nexpected {}\nactual   {}",
        String::from_utf8_lossy(&expected),
        String::from_utf8_lossy(actual)
    );
}

fn decision() -> Decision {
    Decision::from_json(&std::fs::read(dir().join("decision.json")).unwrap()).unwrap()
}

fn key(n: u8) -> KeyId {
    KeyId::derive(Algorithm::Ed25519, &[n; 32])
}

fn record() -> Record {
    let d = decision();
    let mut approvals: Vec<Approval> = [
        (1u8, "2026-11-20T10:00:00Z"),
        (2, "2026-11-20T10:05:30.25Z"),
    ]
    .iter()
    .map(|(n, at)| Approval {
        key_id: key(*n),
        alg: Algorithm::Ed25519,
        signature: (0..64).map(|i| i as u8 ^ n).collect(),
        signed_at: at.parse::<Timestamp>().unwrap(),
    })
    .collect();
    approvals.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    UnsignedRecord {
        version: 1,
        seq: 41,
        decision: d,
        approvals,
        recorded_at: "2026-11-20T10:06:00.123456789Z".parse().unwrap(),
    }
    .with_notary(NotarySignature {
        key_id: key(9),
        alg: Algorithm::Ed25519,
        signature: vec![0xab; 64],
    })
}

#[test]
fn decision_canonical_bytes_and_digest() {
    let d = decision();
    let jcs = d.canonical_bytes().unwrap();
    check("decision.jcs", &jcs);
    check(
        "decision.digest.hex",
        hex::encode(d.digest().unwrap()).as_bytes(),
    );
    // The canonical bytes parse back to the same decision and the same bytes.
    let again = Decision::from_json(&jcs).unwrap();
    assert_eq!(again, d);
    assert_eq!(again.canonical_bytes().unwrap(), jcs);
}

#[test]
fn rfc8785_rules_hold_in_the_decision_vector() {
    let jcs = String::from_utf8(decision().canonical_bytes().unwrap()).unwrap();
    // ECMAScript number forms.
    assert!(jcs.contains("[0.5,1e-7,100,-3,9007199254740992]"), "{jcs}");
    // Members sorted by UTF-16 code units: ASCII < U+00F6 < U+20AC < U+1F600, which is the
    // surrogate pair 0xD83D 0xDE00 and so sorts after U+20AC (by code point it would too, but
    // U+FB33 vs U+1F600 would not: that is the RFC's own example, in canonical.rs).
    let pos = |k: &str| jcs.find(k).unwrap();
    assert!(pos("\"amount\"") < pos("\"zeta\""));
    assert!(pos("\"zeta\"") < pos("\"\u{f6}\""));
    assert!(pos("\"\u{f6}\"") < pos("\"\u{20ac}\""));
    assert!(pos("\"\u{20ac}\"") < pos("\"\u{1f600}\""));
    // No insignificant whitespace; non-ASCII written as UTF-8, not escaped.
    assert!(!jcs.contains(": ") && !jcs.contains(", "));
    assert!(jcs.contains("Zürich") && jcs.contains("🗳"));
    assert!(jcs.contains("\\n"));
}

#[test]
fn approval_message_vector() {
    let d = decision();
    let msg = approval_message(
        &d.digest().unwrap(),
        &key(1),
        Algorithm::Ed25519,
        &"2026-11-20T10:00:00Z".parse().unwrap(),
    )
    .unwrap();
    check("approval.message", &msg);
    assert!(msg.starts_with(b"triplicate/approval/v1\n{\"alg\":\"ed25519\",\"decision_digest\":\""));
}

#[test]
fn record_bytes_leaf_hash_and_notary_message() {
    let r = record();
    let bytes = r.to_bytes().unwrap();
    check("record.jcs", &bytes);
    check(
        "record.leaf.hex",
        hex::encode(r.leaf_hash().unwrap()).as_bytes(),
    );
    assert_eq!(r.leaf_hash().unwrap(), leaf_hash(&bytes));
    check("record.notary_message", &r.notary_message().unwrap());
    assert_eq!(Record::from_canonical_bytes(&bytes).unwrap(), r);
}

#[test]
fn key_id_vector() {
    check("key_id.txt", key(1).as_str().as_bytes());
}
