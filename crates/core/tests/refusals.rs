//! Every refusal names the field and the reason; bad input changes nothing because parsing
//! returns an error before any value exists.

#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use triplicate_core::{Algorithm, KeyId, Receipt, Record, ValidationError};

fn base() -> Value {
    json!({
        "id": "01936f2e-5a1b-7c3d-8e4f-0123456789ab",
        "kind": "policy.change",
        "title": "Adopt the records retention policy",
        "body": "As circulated.",
        "payload": {"policy": "retention", "years": 7},
        "proposed_at": "2026-11-20T09:30:00Z"
    })
}

fn decision_err(v: &Value) -> ValidationError {
    triplicate_core::Decision::from_json(v.to_string().as_bytes()).unwrap_err()
}

fn with(field: &str, value: Value) -> Value {
    let mut v = base();
    v[field] = value;
    v
}

fn key(n: u8) -> String {
    KeyId::derive(Algorithm::Ed25519, &[n; 32]).to_string()
}

fn sig() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([7u8; 64])
}

fn record_json(approvals: Vec<Value>) -> Value {
    json!({
        "version": 1,
        "seq": 3,
        "decision": base(),
        "approvals": approvals,
        "recorded_at": "2026-11-20T10:00:00Z",
        "notary": {"key_id": key(9), "alg": "ed25519", "signature": sig()}
    })
}

fn approval(n: u8) -> Value {
    json!({"key_id": key(n), "alg": "ed25519", "signature": sig(), "signed_at": "2026-11-20T09:45:00Z"})
}

fn sorted_approvals(count: u8) -> Vec<Value> {
    let mut v: Vec<Value> = (1..=count).map(approval).collect();
    v.sort_by(|a, b| a["key_id"].as_str().cmp(&b["key_id"].as_str()));
    v
}

#[test]
fn the_base_decision_and_record_are_valid() {
    triplicate_core::Decision::from_json(base().to_string().as_bytes()).unwrap();
    Record::from_bytes(record_json(sorted_approvals(2)).to_string().as_bytes()).unwrap();
}

#[test]
fn unknown_and_missing_fields() {
    let e = decision_err(&with("colour", json!("red")));
    assert!(e.has("colour", "unknown field"), "{e}");
    let mut v = base();
    v.as_object_mut().unwrap().remove("title");
    assert!(
        decision_err(&v).has("title", "missing field"),
        "{}",
        decision_err(&v)
    );
    let mut r = record_json(sorted_approvals(1));
    r["approvals"][0]["comment"] = json!("hi");
    let e = Record::from_bytes(r.to_string().as_bytes()).unwrap_err();
    assert!(e.to_string().contains("unknown field `comment`"), "{e}");
}

#[test]
fn ids_must_be_canonical_uuid_v7() {
    let e = decision_err(&with("id", json!("01936f2e-5a1b-4c3d-8e4f-0123456789ab")));
    assert!(e.has("id", "UUIDv7"), "{e}");
    let e = decision_err(&with("id", json!("01936F2E-5A1B-7C3D-8E4F-0123456789AB")));
    assert!(e.to_string().contains("not canonical"), "{e}");
    let e = decision_err(&with("id", json!("{01936f2e-5a1b-7c3d-8e4f-0123456789ab}")));
    assert!(e.to_string().contains("not canonical"), "{e}");
    let e = decision_err(&with(
        "supersedes",
        json!("01936f2e-5a1b-7c3d-8e4f-0123456789ab"),
    ));
    assert!(e.has("supersedes", "cannot supersede itself"), "{e}");
}

#[test]
fn kinds_are_dotted_lowercase_names() {
    for bad in [
        "Policy.change",
        "1policy",
        "policy..change",
        "policy.",
        "",
        "policy-change",
    ] {
        let e = decision_err(&with("kind", json!(bad)));
        assert!(e.has("kind", "dotted lowercase"), "{bad}: {e}");
    }
    let long = format!("a.{}", "b".repeat(63));
    assert!(decision_err(&with("kind", json!(long))).has("kind", "at most 64"));
    for good in ["motion", "budget.approval", "key_rotation.notary2"] {
        triplicate_core::Decision::from_json(with("kind", json!(good)).to_string().as_bytes())
            .unwrap();
    }
}

#[test]
fn title_and_body_limits() {
    let ok = "é".repeat(200); // 400 bytes, 200 characters
    triplicate_core::Decision::from_json(with("title", json!(ok)).to_string().as_bytes()).unwrap();
    let e = decision_err(&with("title", json!("é".repeat(201))));
    assert!(e.has("title", "201 characters"), "{e}");
    assert!(decision_err(&with("title", json!("  "))).has("title", "empty"));
    assert!(decision_err(&with("title", json!("a\u{7}b"))).has("title", "control"));
    let body = "x".repeat(32 * 1024);
    triplicate_core::Decision::from_json(with("body", json!(body)).to_string().as_bytes()).unwrap();
    let e = decision_err(&with("body", json!("x".repeat(32 * 1024 + 1))));
    assert!(e.has("body", "32768"), "{e}");
}

#[test]
fn payload_numbers_depth_and_size() {
    let ok = json!({"n": 9007199254740992u64, "m": -9007199254740992i64, "f": 0.1});
    triplicate_core::Decision::from_json(with("payload", ok).to_string().as_bytes()).unwrap();
    for (bad, path) in [
        (json!({"n": 9007199254740993u64}), "payload.n"),
        (
            json!({"a": [1, {"m": -9007199254740993i64}]}),
            "payload.a[1].m",
        ),
        (json!({"f": 1e300}), "payload.f"),
    ] {
        let e = decision_err(&with("payload", bad));
        assert!(e.has(path, "±2^53"), "{path}: {e}");
    }
    let mut deep = json!(1);
    for _ in 0..31 {
        deep = json!([deep]);
    }
    triplicate_core::Decision::from_json(
        with("payload", json!({"d": deep.clone()}))
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let e = decision_err(&with("payload", json!({"d": [deep]})));
    assert!(e.has("payload", "33 levels"), "{e}");
    let e = decision_err(&with("payload", json!({"big": "y".repeat(16 * 1024)})));
    assert!(e.has("payload", "at most 16384"), "{e}");
    assert!(decision_err(&with("payload", json!([1, 2]))).has("payload", "invalid type"));
}

#[test]
fn timestamps_must_be_canonical_utc() {
    for (bad, hint) in [
        ("2026-11-20T10:30:00+01:00", "2026-11-20T09:30:00Z"),
        ("2026-11-20T09:30:00.500Z", "2026-11-20T09:30:00.5Z"),
    ] {
        let e = decision_err(&with("proposed_at", json!(bad)));
        assert!(e.to_string().contains(hint), "{bad}: {e}");
    }
    assert!(
        decision_err(&with("proposed_at", json!("2026-11-20t09:30:00z")))
            .to_string()
            .contains("proposed_at")
    );
}

#[test]
fn empty_optional_fields_are_absent_in_canonical_bytes() {
    let mut v = base();
    v["supersedes"] = Value::Null;
    v["attachments"] = json!([]);
    let d = triplicate_core::Decision::from_json(v.to_string().as_bytes()).unwrap();
    let plain = triplicate_core::Decision::from_json(base().to_string().as_bytes()).unwrap();
    assert_eq!(
        d.canonical_bytes().unwrap(),
        plain.canonical_bytes().unwrap()
    );
    let text = String::from_utf8(d.canonical_bytes().unwrap()).unwrap();
    assert!(!text.contains("supersedes") && !text.contains("attachments"));
}

#[test]
fn attachments_are_checked() {
    let good = |n: u64| json!({"sha256": format!("{:064x}", n), "media_type": "application/pdf", "size": 10});
    let many: Vec<Value> = (0..64).map(good).collect();
    triplicate_core::Decision::from_json(with("attachments", json!(many)).to_string().as_bytes())
        .unwrap();
    let too_many: Vec<Value> = (0..65).map(good).collect();
    assert!(decision_err(&with("attachments", json!(too_many))).has("attachments", "65"));
    let e = decision_err(&with(
        "attachments",
        json!([{"sha256": "ABC", "media_type": "Application/PDF", "size": 1}]),
    ));
    assert!(e.has("attachments[0].sha256", "64 lowercase hex"), "{e}");
    assert!(e.has("attachments[0].media_type", "lowercase"), "{e}");
    let e = decision_err(&with("attachments", json!([good(1), good(1)])));
    assert!(e.has("attachments[1].sha256", "duplicates"), "{e}");
}

#[test]
fn approvals_are_checked() {
    let e = Record::from_bytes(record_json(vec![]).to_string().as_bytes()).unwrap_err();
    assert!(e.has("approvals", "at least one"), "{e}");
    Record::from_bytes(record_json(sorted_approvals(32)).to_string().as_bytes()).unwrap();
    let e =
        Record::from_bytes(record_json(sorted_approvals(33)).to_string().as_bytes()).unwrap_err();
    assert!(e.has("approvals", "33 approvals"), "{e}");
    let mut unsorted = sorted_approvals(2);
    unsorted.reverse();
    let e = Record::from_bytes(record_json(unsorted).to_string().as_bytes()).unwrap_err();
    assert!(e.has("approvals[1].key_id", "sorted"), "{e}");
    let e = Record::from_bytes(
        record_json(vec![approval(1), approval(1)])
            .to_string()
            .as_bytes(),
    )
    .unwrap_err();
    assert!(e.has("approvals[1].key_id", "approves twice"), "{e}");
    let mut short = approval(1);
    short["signature"] = json!("AAAA");
    let e = Record::from_bytes(record_json(vec![short]).to_string().as_bytes()).unwrap_err();
    assert!(e.has("approvals[0].signature", "3 bytes"), "{e}");
    let mut notb64 = approval(1);
    notb64["signature"] = json!("not base64!");
    let e = Record::from_bytes(record_json(vec![notb64]).to_string().as_bytes()).unwrap_err();
    assert!(e.to_string().contains("base64"), "{e}");
}

#[test]
fn records_are_checked_and_problems_reported_together() {
    let mut r = record_json(sorted_approvals(1));
    r["version"] = json!(2);
    r["decision"]["kind"] = json!("BAD");
    r["decision"]["title"] = json!("");
    let e = Record::from_bytes(r.to_string().as_bytes()).unwrap_err();
    assert!(e.has("version", "must be 1"), "{e}");
    assert!(e.has("decision.kind", "dotted"), "{e}");
    assert!(e.has("decision.title", "empty"), "{e}");
    assert_eq!(e.problems.len(), 3, "{e}");

    // Just under the bundle limit in body and payload, pushed over by the attachments' names.
    let mut big = record_json(sorted_approvals(32));
    big["decision"]["body"] = json!("b".repeat(32 * 1024));
    big["decision"]["payload"] = json!({"p": "q".repeat(16 * 1000)});
    let names: Vec<Value> = (0..64)
        .map(|n| json!({"sha256": format!("{:064x}", n), "media_type": "text/plain", "size": 1, "name": "n".repeat(200)}))
        .collect();
    big["decision"]["attachments"] = json!(names);
    let e = Record::from_bytes(big.to_string().as_bytes()).unwrap_err();
    assert!(e.to_string().contains("61440"), "{e}");
}

#[test]
fn canonical_bytes_only_from_stores() {
    let r = Record::from_bytes(record_json(sorted_approvals(2)).to_string().as_bytes()).unwrap();
    let bytes = r.to_bytes().unwrap();
    assert_eq!(Record::from_canonical_bytes(&bytes).unwrap(), r);
    let pretty = serde_json::to_vec_pretty(&r).unwrap();
    let e = Record::from_canonical_bytes(&pretty).unwrap_err();
    assert!(
        e.to_string().contains("not in RFC 8785 canonical form"),
        "{e}"
    );
}

#[test]
fn receipts_check_themselves() {
    let r = Record::from_bytes(record_json(sorted_approvals(1)).to_string().as_bytes()).unwrap();
    let receipt = Receipt {
        version: 1,
        seq: 3,
        leaf_hash: r.leaf_hash().unwrap(),
        record: r,
        checkpoint: "example\n4\nAAAA\n\n— x y\n".into(),
        inclusion_proof: vec![[1; 32], [2; 32]],
    };
    let text = serde_json::to_vec(&receipt).unwrap();
    let back = Receipt::from_json(&text).unwrap();
    assert_eq!(back, receipt);
    back.check_self_consistent().unwrap();
    let mut wrong = receipt.clone();
    wrong.seq = 4;
    assert!(wrong
        .check_self_consistent()
        .unwrap_err()
        .has("seq", "record's seq is 3"));
    let mut wrong = receipt;
    wrong.leaf_hash[0] ^= 1;
    assert!(wrong
        .check_self_consistent()
        .unwrap_err()
        .has("leaf_hash", "hashes to"));
}
