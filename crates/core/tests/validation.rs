//! Every refusal: which field (its JSON path) and why, checked with `ValidationError::has`. Bad
//! input never yields a value, so refusing it changes nothing.

#![allow(clippy::unwrap_used)]

use base64::Engine;
use serde_json::{json, Value};
use triplicate_core::limits::{
    APPROVALS_MAX, ATTACHMENTS_MAX, BODY_MAX_BYTES, PAYLOAD_MAX_BYTES, PAYLOAD_MAX_DEPTH,
    RECORD_MAX_BYTES, TITLE_MAX_CHARS,
};
use triplicate_core::{
    Algorithm, Approval, Decision, KeyId, Receipt, Record, Timestamp, ValidationError,
    RECEIPT_VERSION,
};

const ID: &str = "01936f2e-5a1b-7c3d-8e4f-0123456789ab";

// ---------------------------------------------------------------------------------------------
// Builders

fn decision_json() -> Value {
    json!({
        "id": ID,
        "kind": "policy.change",
        "title": "Adopt the records retention policy",
        "body": "As circulated.",
        "payload": {"policy": "retention", "years": 7},
        "proposed_at": "2026-11-20T09:30:00Z"
    })
}

fn with(field: &str, value: Value) -> Value {
    let mut v = decision_json();
    v[field] = value;
    v
}

fn with_payload(payload: Value) -> Value {
    with("payload", payload)
}

fn parse_decision(v: &Value) -> Result<Decision, ValidationError> {
    Decision::from_json(v.to_string().as_bytes())
}

fn accepted(v: &Value) -> Decision {
    parse_decision(v).unwrap_or_else(|e| panic!("refused: {e}\n{v}"))
}

fn refused(v: &Value) -> ValidationError {
    match parse_decision(v) {
        Ok(_) => panic!("accepted: {v}"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_has(e: &ValidationError, field: &str, needle: &str) {
    assert!(
        e.has(field, needle),
        "expected a problem at {field:?} containing {needle:?}; got {e:?}"
    );
}

/// Exactly one problem, at `field`, containing `needle`.
#[track_caller]
fn assert_only(e: &ValidationError, field: &str, needle: &str) {
    assert_has(e, field, needle);
    assert_eq!(e.problems.len(), 1, "{e:?}");
}

fn key(n: u8) -> KeyId {
    KeyId::derive(Algorithm::Ed25519, &[n; 32])
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn approval(n: u8) -> Value {
    json!({
        "key_id": key(n).as_str(),
        "alg": "ed25519",
        "signature": b64(&[n; 64]),
        "signed_at": "2026-11-20T09:45:00Z"
    })
}

fn sorted_approvals(count: usize) -> Vec<Value> {
    let mut v: Vec<Value> = (1..=count).map(|n| approval(n as u8)).collect();
    v.sort_by(|a, b| a["key_id"].as_str().cmp(&b["key_id"].as_str()));
    v
}

fn record_json(approvals: Vec<Value>) -> Value {
    json!({
        "version": 1,
        "seq": 3,
        "decision": decision_json(),
        "approvals": approvals,
        "recorded_at": "2026-11-20T10:00:00Z",
        "notary": {"key_id": key(200).as_str(), "alg": "ed25519", "signature": b64(&[9; 64])}
    })
}

fn parse_record(v: &Value) -> Result<Record, ValidationError> {
    Record::from_bytes(v.to_string().as_bytes())
}

fn record_refused(v: &Value) -> ValidationError {
    match parse_record(v) {
        Ok(_) => panic!("accepted: {v}"),
        Err(e) => e,
    }
}

fn attachment(n: u64) -> Value {
    json!({"sha256": format!("{n:064x}"), "media_type": "application/pdf", "size": 10})
}

fn nested_arrays(levels: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..levels {
        v = json!([v]);
    }
    v
}

fn nested_objects(levels: usize) -> Value {
    let mut v = json!("leaf");
    for _ in 0..levels {
        v = json!({ "k": v });
    }
    v
}

// ---------------------------------------------------------------------------------------------
// The baseline is valid

#[test]
fn the_baseline_decision_and_record_are_valid() {
    let d = accepted(&decision_json());
    assert_eq!(d.id.to_string(), ID);
    let r = parse_record(&record_json(sorted_approvals(2))).unwrap();
    assert_eq!(r.approvals.len(), 2);
    r.validate().unwrap();
    r.unsigned().validate().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Structure: unknown, missing, duplicate fields; wrong types; trailing data

#[test]
fn unknown_fields_are_refused_at_every_level() {
    let e = refused(&with("colour", json!("red")));
    assert_only(&e, "colour", "unknown field `colour`");

    let mut r = record_json(sorted_approvals(1));
    r["decision"]["colour"] = json!("red");
    assert_only(&record_refused(&r), "decision.colour", "unknown field");

    let mut r = record_json(sorted_approvals(1));
    r["approvals"][0]["comment"] = json!("hi");
    assert_only(&record_refused(&r), "approvals[0].comment", "unknown field");

    let mut r = record_json(sorted_approvals(1));
    r["notary"]["extra"] = json!(1);
    assert_only(&record_refused(&r), "notary.extra", "unknown field");

    let mut r = record_json(sorted_approvals(1));
    r["receipt"] = json!(1);
    assert_only(&record_refused(&r), "receipt", "unknown field");

    let mut a = attachment(1);
    a["url"] = json!("https://example.invalid/");
    let e = refused(&with("attachments", json!([a])));
    assert_only(&e, "attachments[0].url", "unknown field");
}

#[test]
fn missing_fields_are_refused_with_their_path() {
    for field in ["id", "kind", "title", "body", "payload", "proposed_at"] {
        let mut v = decision_json();
        v.as_object_mut().unwrap().remove(field);
        assert_only(&refused(&v), field, "missing field");
    }
    let mut r = record_json(sorted_approvals(1));
    r["decision"].as_object_mut().unwrap().remove("body");
    assert_only(&record_refused(&r), "decision.body", "missing field `body`");

    let mut r = record_json(sorted_approvals(1));
    r["approvals"][0]
        .as_object_mut()
        .unwrap()
        .remove("signed_at");
    assert_only(
        &record_refused(&r),
        "approvals[0].signed_at",
        "missing field",
    );

    let mut r = record_json(sorted_approvals(1));
    r.as_object_mut().unwrap().remove("notary");
    assert_only(&record_refused(&r), "notary", "missing field");

    let mut a = attachment(1);
    a.as_object_mut().unwrap().remove("size");
    let e = refused(&with("attachments", json!([a])));
    assert_only(&e, "attachments[0].size", "missing field");
}

#[test]
fn duplicate_fields_and_duplicate_payload_members_are_refused() {
    let text = format!(
        r#"{{"id":"{ID}","kind":"a","title":"T","title":"U","body":"","payload":{{}},"proposed_at":"2026-11-20T09:30:00Z"}}"#
    );
    let e = Decision::from_json(text.as_bytes()).unwrap_err();
    assert_only(&e, "title", "duplicate field");

    // A payload member named twice: one parser keeps the first, another the last; refuse both.
    let text = format!(
        r#"{{"id":"{ID}","kind":"a","title":"T","body":"","payload":{{"n":{{"a":1,"a":2}}}},"proposed_at":"2026-11-20T09:30:00Z"}}"#
    );
    let e = Decision::from_json(text.as_bytes()).unwrap_err();
    assert_only(&e, "payload.n", "\"a\" appears twice");
    let text = format!(
        r#"{{"id":"{ID}","kind":"a","title":"T","body":"","payload":{{"a":1,"a":1}},"proposed_at":"2026-11-20T09:30:00Z"}}"#
    );
    let e = Decision::from_json(text.as_bytes()).unwrap_err();
    assert_only(&e, "payload", "appears twice");
}

#[test]
fn wrong_types_and_trailing_data_are_refused() {
    assert_only(
        &refused(&with("payload", json!([1, 2]))),
        "payload",
        "invalid type",
    );
    assert_only(
        &refused(&with("payload", json!("x"))),
        "payload",
        "invalid type",
    );
    assert_only(&refused(&with("title", json!(5))), "title", "invalid type");
    let mut r = record_json(sorted_approvals(1));
    r["seq"] = json!(-1);
    assert_only(&record_refused(&r), "seq", "invalid value");
    r["seq"] = json!("3");
    assert_only(&record_refused(&r), "seq", "invalid type");

    let mut text = decision_json().to_string();
    text.push_str(" {}");
    let e = Decision::from_json(text.as_bytes()).unwrap_err();
    assert_only(&e, "(document)", "trailing characters");
    let e = Decision::from_json(b"").unwrap_err();
    assert_eq!(e.problems.len(), 1, "{e}");
}

// ---------------------------------------------------------------------------------------------
// Ids

#[test]
fn ids_must_be_canonical_uuid_v7() {
    // Version 4.
    let e = refused(&with("id", json!("01936f2e-5a1b-4c3d-8e4f-0123456789ab")));
    assert_only(&e, "id", "must be a UUIDv7");
    assert_has(&e, "id", "version 4");
    // Nil.
    let e = refused(&with("id", json!("00000000-0000-0000-0000-000000000000")));
    assert_has(&e, "id", "version 0");
    // Version 7 bits but not the RFC variant (0xc… is Microsoft's).
    let e = refused(&with("id", json!("01936f2e-5a1b-7c3d-ce4f-0123456789ab")));
    assert_only(&e, "id", "RFC 9562");
    // Other spellings of the valid id: refused with the canonical spelling.
    for spelling in [
        "01936F2E-5A1B-7C3D-8E4F-0123456789AB",
        "{01936f2e-5a1b-7c3d-8e4f-0123456789ab}",
        "01936f2e5a1b7c3d8e4f0123456789ab",
        "urn:uuid:01936f2e-5a1b-7c3d-8e4f-0123456789ab",
    ] {
        let e = refused(&with("id", json!(spelling)));
        assert_only(&e, "id", "is not canonical");
        assert_has(&e, "id", &format!("write \"{ID}\""));
    }
    let e = refused(&with("id", json!("not-a-uuid")));
    assert_only(&e, "id", "is not a UUID");
    // The same rules for supersedes.
    let e = refused(&with(
        "supersedes",
        json!("01936F2E-0000-7000-8000-000000000001"),
    ));
    assert_only(&e, "supersedes", "is not canonical");
}

#[test]
fn a_decision_cannot_supersede_itself() {
    let e = refused(&with("supersedes", json!(ID)));
    assert_only(&e, "supersedes", "cannot supersede itself");
    let d = accepted(&with(
        "supersedes",
        json!("01936f2e-0000-7000-8000-000000000001"),
    ));
    assert!(d.supersedes.is_some());
}

// ---------------------------------------------------------------------------------------------
// Kind, title, body

#[test]
fn kinds_are_dotted_lowercase_names() {
    for bad in [
        "Policy.change",
        "policy.Change",
        "1policy",
        "policy.2nd",
        "policy..change",
        "policy.",
        ".policy",
        "",
        "policy-change",
        "policy change",
        "pölicy",
        "_policy",
    ] {
        let e = refused(&with("kind", json!(bad)));
        assert_only(&e, "kind", "must be a dotted lowercase name");
    }
    let max = format!("a.{}", "b".repeat(62));
    assert_eq!(max.len(), 64);
    accepted(&with("kind", json!(max)));
    let long = format!("a.{}", "b".repeat(63));
    assert_only(&refused(&with("kind", json!(long))), "kind", "at most 64");
    for good in [
        "motion",
        "budget.approval",
        "key_rotation.notary2",
        "a.b_c.d9",
    ] {
        assert_eq!(accepted(&with("kind", json!(good))).kind, good);
    }
}

#[test]
fn titles_are_one_to_200_characters_counted_as_characters() {
    assert_only(
        &refused(&with("title", json!(""))),
        "title",
        "must not be empty",
    );
    assert_only(
        &refused(&with("title", json!("   "))),
        "title",
        "must not be empty",
    );
    // 200 characters of 3 and 4 bytes each: 700 bytes, still within the limit.
    let ok = "€😀".repeat(TITLE_MAX_CHARS / 2);
    assert_eq!(ok.chars().count(), 200);
    assert_eq!(ok.len(), 700);
    assert_eq!(accepted(&with("title", json!(ok))).title, ok);
    let too_long = format!("{ok}ü");
    let e = refused(&with("title", json!(too_long)));
    assert_only(&e, "title", "is 201 characters; at most 200");
    let e = refused(&with("title", json!("line\nbreak")));
    assert_only(&e, "title", "control characters");
}

#[test]
fn bodies_are_at_most_32_kib_of_utf8() {
    accepted(&with("body", json!("")));
    let ok = "x".repeat(BODY_MAX_BYTES);
    accepted(&with("body", json!(ok)));
    let e = refused(&with("body", json!("x".repeat(BODY_MAX_BYTES + 1))));
    assert_only(&e, "body", "is 32769 bytes; at most 32768");
    // Counted in bytes: 16,384 two-byte characters fit, one more byte does not.
    let multi = "é".repeat(BODY_MAX_BYTES / 2);
    accepted(&with("body", json!(multi)));
    let e = refused(&with("body", json!(format!("{multi}x"))));
    assert_only(&e, "body", "32769 bytes");
    // Newlines and tabs are text; other control characters are not.
    accepted(&with("body", json!("a\r\n\tb")));
    let e = refused(&with("body", json!("a\u{0}b")));
    assert_only(&e, "body", "control characters");
}

// ---------------------------------------------------------------------------------------------
// Payload

#[test]
fn payload_canonical_size_is_at_most_16_kib() {
    // {"p":"…"} is 8 bytes plus the string.
    let fits = json!({"p": "q".repeat(PAYLOAD_MAX_BYTES - 8)});
    assert_eq!(
        triplicate_core::canonical::to_jcs(&fits).unwrap().len(),
        PAYLOAD_MAX_BYTES
    );
    accepted(&with_payload(fits));
    let e = refused(&with_payload(
        json!({"p": "q".repeat(PAYLOAD_MAX_BYTES - 7)}),
    ));
    assert_only(&e, "payload", "is 16385 bytes canonicalised; at most 16384");

    // Measured canonicalised: whitespace in the input does not count.
    let text = format!(
        r#"{{"id":"{ID}","kind":"a","title":"T","body":"","proposed_at":"2026-11-20T09:30:00Z","payload":{{  "p" :  "{}"{}}}}}"#,
        "q".repeat(PAYLOAD_MAX_BYTES - 8),
        " ".repeat(2000)
    );
    Decision::from_json(text.as_bytes()).unwrap();
}

#[test]
fn payload_nests_at_most_32_levels() {
    // The payload object itself is level 1.
    let ok = json!({"d": nested_arrays(PAYLOAD_MAX_DEPTH - 1)});
    accepted(&with_payload(ok));
    let e = refused(&with_payload(
        json!({"d": nested_arrays(PAYLOAD_MAX_DEPTH)}),
    ));
    assert_only(&e, "payload", "nests 33 levels deep; at most 32");

    let ok = nested_objects(PAYLOAD_MAX_DEPTH);
    accepted(&with_payload(ok));
    let e = refused(&with_payload(nested_objects(PAYLOAD_MAX_DEPTH + 1)));
    assert_only(&e, "payload", "nests 33 levels");
    // An empty container is a level too; the deepest member counts, wherever it is.
    let empty_arrays = |levels: usize| {
        let mut v = json!([]);
        for _ in 1..levels {
            v = json!([v]);
        }
        v
    };
    accepted(&with_payload(
        json!({"a": 1, "b": empty_arrays(PAYLOAD_MAX_DEPTH - 1), "c": {}}),
    ));
    let e = refused(&with_payload(
        json!({"a": 1, "b": empty_arrays(PAYLOAD_MAX_DEPTH), "c": {}}),
    ));
    assert_only(&e, "payload", "nests 33 levels");
}

#[test]
fn payload_numbers_stay_within_plus_minus_2_pow_53() {
    let ok = json!({
        "max": 9007199254740992u64,
        "min": -9007199254740992i64,
        "f": 0.1,
        "tiny": 1e-300,
        "big_float": 9007199254740992.0,
    });
    let d = accepted(&with_payload(ok));
    let jcs = String::from_utf8(d.canonical_bytes().unwrap()).unwrap();
    assert!(jcs.contains("\"max\":9007199254740992"), "{jcs}");
    assert!(jcs.contains("\"min\":-9007199254740992"), "{jcs}");

    for (payload, path, shown) in [
        (
            json!({"n": 9007199254740993u64}),
            "payload.n",
            "9007199254740993",
        ),
        (
            json!({"a": [1, {"m": -9007199254740993i64}]}),
            "payload.a[1].m",
            "-9007199254740993",
        ),
        (json!({"f": 1e300}), "payload.f", "1e+300"),
        (json!({"f": -1e300}), "payload.f", "-1e+300"),
        (json!({"u": u64::MAX}), "payload.u", "18446744073709551615"),
        (json!({"g": 1e16}), "payload.g", "is outside"),
    ] {
        let e = refused(&with_payload(payload));
        assert_only(&e, path, "outside ±2^53");
        assert_has(&e, path, shown);
        assert_has(&e, path, "send it as a string");
    }
    // Every out-of-range number is reported, not just the first.
    let e = refused(&with_payload(
        json!({"a": 9007199254740993u64, "b": [1e300]}),
    ));
    assert_eq!(e.problems.len(), 2, "{e}");
    assert_has(&e, "payload.a", "±2^53");
    assert_has(&e, "payload.b[0]", "±2^53");
}

// ---------------------------------------------------------------------------------------------
// Timestamps

#[test]
fn timestamps_must_be_canonical_utc_and_say_how_to_write_them() {
    for (bad, canonical) in [
        ("2026-11-20T10:30:00+01:00", "2026-11-20T09:30:00Z"),
        ("2026-11-20T09:30:00+00:00", "2026-11-20T09:30:00Z"),
        ("2026-11-20T09:30:00-00:00", "2026-11-20T09:30:00Z"),
        ("2026-11-20T09:30:00.500Z", "2026-11-20T09:30:00.5Z"),
        ("2026-11-20T09:30:00.000Z", "2026-11-20T09:30:00Z"),
        ("2026-11-20t09:30:00z", "2026-11-20T09:30:00Z"),
        ("2026-11-20T09:30:00z", "2026-11-20T09:30:00Z"),
        ("2026-11-20 09:30:00Z", "2026-11-20T09:30:00Z"),
    ] {
        let e = refused(&with("proposed_at", json!(bad)));
        assert_only(&e, "proposed_at", "is not canonical UTC");
        assert_has(&e, "proposed_at", &format!("write \"{canonical}\""));
        // The canonical spelling is accepted and kept.
        let d = accepted(&with("proposed_at", json!(canonical)));
        assert_eq!(d.proposed_at.to_string(), canonical);
    }
    for bad in ["2026-02-30T09:30:00Z", "2026-11-20T09:30Z", "yesterday"] {
        let e = refused(&with("proposed_at", json!(bad)));
        assert_only(&e, "proposed_at", "is not an RFC 3339 timestamp");
    }
    // Offsets that move the instant out of years 0000-9999 are refused, not a panic.
    for bad in ["9999-12-31T23:30:00-01:00", "0000-01-01T00:30:00+01:00"] {
        let e = refused(&with("proposed_at", json!(bad)));
        assert_only(&e, "proposed_at", "outside years 0000-9999");
    }
    // The same rule everywhere a time appears.
    let mut r = record_json(sorted_approvals(1));
    r["approvals"][0]["signed_at"] = json!("2026-11-20T09:45:00.10Z");
    let e = record_refused(&r);
    assert_only(
        &e,
        "approvals[0].signed_at",
        "write \"2026-11-20T09:45:00.1Z\"",
    );
    let mut r = record_json(sorted_approvals(1));
    r["recorded_at"] = json!("2026-11-20T11:00:00+01:00");
    let e = record_refused(&r);
    assert_only(&e, "recorded_at", "write \"2026-11-20T10:00:00Z\"");
    let mut r = record_json(sorted_approvals(1));
    r["decision"]["proposed_at"] = json!("2026-11-20T09:30:00.000000000Z");
    let e = record_refused(&r);
    assert_only(&e, "decision.proposed_at", "write \"2026-11-20T09:30:00Z\"");
}

#[test]
fn timestamp_api_refuses_the_same_forms() {
    let e = "2026-01-01T10:00:00.120Z".parse::<Timestamp>().unwrap_err();
    assert!(e.0.contains("write \"2026-01-01T10:00:00.12Z\""), "{e}");
    let e = "9999-12-31T23:59:59-23:59"
        .parse::<Timestamp>()
        .unwrap_err();
    assert!(e.0.contains("outside years"), "{e}");
    let t: Timestamp = "9999-12-31T23:59:59.999999999Z".parse().unwrap();
    assert_eq!(t.to_string(), "9999-12-31T23:59:59.999999999Z");
    let t: Timestamp = "0000-01-01T00:00:00Z".parse().unwrap();
    assert_eq!(Timestamp::from_unix_nanos(t.unix_nanos()).unwrap(), t);
}

// ---------------------------------------------------------------------------------------------
// Optional fields

#[test]
fn null_and_empty_optional_fields_are_absent_in_canonical_bytes() {
    let plain = accepted(&decision_json());
    let mut v = decision_json();
    v["supersedes"] = Value::Null;
    v["attachments"] = json!([]);
    let d = accepted(&v);
    assert_eq!(d, plain);
    assert_eq!(
        d.canonical_bytes().unwrap(),
        plain.canonical_bytes().unwrap()
    );
    let text = String::from_utf8(d.canonical_bytes().unwrap()).unwrap();
    assert!(
        !text.contains("supersedes") && !text.contains("attachments"),
        "{text}"
    );

    let d = accepted(&with("attachments", Value::Null));
    assert_eq!(
        d.canonical_bytes().unwrap(),
        plain.canonical_bytes().unwrap()
    );

    // An attachment's empty or null name is no name.
    let mut named = attachment(1);
    named["name"] = json!("");
    let a = accepted(&with("attachments", json!([named])));
    let mut nulled = attachment(1);
    nulled["name"] = Value::Null;
    let b = accepted(&with("attachments", json!([nulled])));
    let c = accepted(&with("attachments", json!([attachment(1)])));
    assert_eq!(a, c);
    assert_eq!(b, c);
    let text = String::from_utf8(a.canonical_bytes().unwrap()).unwrap();
    assert!(!text.contains("\"name\""), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Attachments

#[test]
fn attachments_are_checked() {
    let many: Vec<Value> = (0..ATTACHMENTS_MAX as u64).map(attachment).collect();
    assert_eq!(
        accepted(&with("attachments", json!(many)))
            .attachments
            .len(),
        64
    );
    let too_many: Vec<Value> = (0..ATTACHMENTS_MAX as u64 + 1).map(attachment).collect();
    let e = refused(&with("attachments", json!(too_many)));
    assert_only(&e, "attachments", "has 65 entries; at most 64");

    for bad in [
        "ABCDEF".repeat(10) + "ABCD",
        "abc".to_owned(),
        format!("{}g", "a".repeat(63)),
        "a".repeat(65),
    ] {
        let mut a = attachment(1);
        a["sha256"] = json!(bad);
        let e = refused(&with("attachments", json!([a])));
        assert_only(&e, "attachments[0].sha256", "64 lowercase hex digits");
    }
    for bad in [
        "Application/PDF",
        "application/PDF",
        "application",
        "application/",
        "/pdf",
        "application/pdf; charset=x",
    ] {
        let mut a = attachment(1);
        a["media_type"] = json!(bad);
        let e = refused(&with("attachments", json!([a])));
        assert_only(&e, "attachments[0].media_type", "lowercase type/subtype");
    }
    for good in ["application/vnd.oasis.opendocument.text", "image/svg+xml"] {
        let mut a = attachment(1);
        a["media_type"] = json!(good);
        accepted(&with("attachments", json!([a])));
    }
    let e = refused(&with(
        "attachments",
        json!([attachment(1), attachment(2), attachment(1)]),
    ));
    assert_only(
        &e,
        "attachments[2].sha256",
        "duplicates an earlier attachment",
    );

    let mut a = attachment(1);
    a["size"] = json!(9007199254740992u64);
    accepted(&with("attachments", json!([a.clone()])));
    a["size"] = json!(9007199254740993u64);
    let e = refused(&with("attachments", json!([a])));
    assert_only(&e, "attachments[0].size", "larger than 2^53");

    let mut a = attachment(1);
    a["name"] = json!("n".repeat(201));
    let e = refused(&with("attachments", json!([a])));
    assert_only(&e, "attachments[0].name", "longer than 200");
}

// ---------------------------------------------------------------------------------------------
// Approvals and the notary

#[test]
fn approvals_count_between_one_and_32() {
    let e = record_refused(&record_json(vec![]));
    assert_only(&e, "approvals", "at least one approval");
    let r = parse_record(&record_json(sorted_approvals(APPROVALS_MAX))).unwrap();
    assert_eq!(r.approvals.len(), 32);
    let e = record_refused(&record_json(sorted_approvals(APPROVALS_MAX + 1)));
    assert_only(&e, "approvals", "has 33 approvals; at most 32");
}

#[test]
fn approvals_are_sorted_by_key_id_without_repeats() {
    let mut unsorted = sorted_approvals(3);
    unsorted.swap(1, 2);
    let e = record_refused(&record_json(unsorted));
    assert_only(&e, "approvals[2].key_id", "sorted by key_id");

    let mut twice = sorted_approvals(2);
    twice.insert(1, twice[0].clone());
    let e = record_refused(&record_json(twice));
    assert_only(&e, "approvals[1].key_id", "approves twice");

    // A repeat with a different time or signature is still a repeat.
    let first = approval(1);
    let mut again = approval(1);
    again["signed_at"] = json!("2026-11-20T09:46:00Z");
    let e = record_refused(&record_json(vec![first, again]));
    assert_only(&e, "approvals[1].key_id", "approves twice");
}

#[test]
fn approval_signatures_and_fields_are_checked() {
    for (len, shown) in [(63, "is 63 bytes"), (65, "is 65 bytes"), (0, "is 0 bytes")] {
        let mut a = approval(1);
        a["signature"] = json!(b64(&vec![1u8; len]));
        let e = record_refused(&record_json(vec![a]));
        assert_only(&e, "approvals[0].signature", shown);
        assert_has(&e, "approvals[0].signature", "an ed25519 signature is 64");
    }
    let mut a = approval(1);
    a["alg"] = json!("ecdsa-p256");
    a["signature"] = json!(b64(&[1u8; 72]));
    let e = record_refused(&record_json(vec![a]));
    assert_only(
        &e,
        "approvals[0].signature",
        "an ecdsa-p256 signature is 64",
    );

    let good = b64(&[1u8; 64]);
    for bad in [
        "not base64!".to_owned(),
        good.trim_end_matches('=').to_owned(),
        good.replace('A', "-"),
        format!(" {good}"),
    ] {
        let mut a = approval(1);
        a["signature"] = json!(bad);
        let e = record_refused(&record_json(vec![a]));
        assert_only(&e, "approvals[0].signature", "not standard padded base64");
    }
    let mut a = approval(1);
    a["alg"] = json!("rsa");
    let e = record_refused(&record_json(vec![a]));
    assert_only(&e, "approvals[0].alg", "unknown signature algorithm");
    let mut a = approval(1);
    a["key_id"] = json!(key(1).as_str().to_uppercase());
    let e = record_refused(&record_json(vec![a]));
    assert_only(&e, "approvals[0].key_id", "16 lowercase hex digits");

    // One approval on its own.
    let mut a = approval(1);
    a["signature"] = json!(b64(&[1u8; 10]));
    let e = Approval::from_json(a.to_string().as_bytes()).unwrap_err();
    assert_only(&e, "signature", "is 10 bytes");
    let ok = Approval::from_json(approval(1).to_string().as_bytes()).unwrap();
    assert_eq!(ok.key_id, key(1));
}

#[test]
fn notary_signature_is_checked() {
    let mut r = record_json(sorted_approvals(1));
    r["notary"]["signature"] = json!(b64(&[1u8; 32]));
    let e = record_refused(&r);
    assert_only(
        &e,
        "notary.signature",
        "is 32 bytes; an ed25519 signature is 64",
    );
    r["notary"]["signature"] = json!("***");
    let e = record_refused(&r);
    assert_only(&e, "notary.signature", "base64");
}

// ---------------------------------------------------------------------------------------------
// Records

#[test]
fn record_version_and_seq_are_checked() {
    for version in [0, 2] {
        let mut r = record_json(sorted_approvals(1));
        r["version"] = json!(version);
        assert_only(&record_refused(&r), "version", "must be 1");
    }
    let mut r = record_json(sorted_approvals(1));
    r["seq"] = json!(9007199254740992u64);
    assert_eq!(parse_record(&r).unwrap().seq, 1 << 53);
    // 2^53 + 1 would be written as 2^53 by JCS (numbers are IEEE doubles) and read back as
    // another record.
    r["seq"] = json!(9007199254740993u64);
    assert_only(&record_refused(&r), "seq", "larger than 2^53");
}

fn big_attachments(count: u64, name_chars: usize) -> Vec<Value> {
    (0..count)
        .map(|n| {
            let mut a = attachment(n);
            a["name"] = json!("n".repeat(name_chars));
            a
        })
        .collect()
}

#[test]
fn record_input_is_at_most_60_kib() {
    // Input larger than the limit is refused before it is parsed.
    let text = record_json(sorted_approvals(1)).to_string();
    let padded = format!("{text}{}", " ".repeat(RECORD_MAX_BYTES + 1 - text.len()));
    assert_eq!(padded.len(), RECORD_MAX_BYTES + 1);
    let e = Record::from_bytes(padded.as_bytes()).unwrap_err();
    assert_only(&e, "(record)", "is 61441 bytes; at most 61440");
    assert!(Record::from_canonical_bytes(padded.as_bytes()).is_err());
    // Exactly the limit, most of it whitespace, is read.
    let r = Record::from_bytes(&padded.as_bytes()[..RECORD_MAX_BYTES]).unwrap();
    assert_eq!(r.seq, 3);
}

#[test]
fn canonical_record_is_at_most_60_kib() {
    // Every part within its own limit, and the input under 60 KiB; the canonical bytes over it,
    // because `1e15` is written `1000000000000000`.
    let mut r = record_json(sorted_approvals(1));
    r["decision"]["body"] = json!("b".repeat(BODY_MAX_BYTES));
    r["decision"]["attachments"] = json!(big_attachments(64, 150));
    r["decision"]["payload"] = json!({"p": "NUMBERS"});
    let numbers = vec!["1e15"; 900].join(",");
    let text = r
        .to_string()
        .replace("\"NUMBERS\"", &format!("[{numbers}]"));
    assert!(text.len() <= RECORD_MAX_BYTES, "{}", text.len());
    let e = Record::from_bytes(text.as_bytes()).unwrap_err();
    assert_eq!(e.problems.len(), 1, "{e:?}");
    let reason = &e.problems[0].reason;
    assert!(
        e.problems[0].field == "(record)"
            && reason.contains("bytes canonicalised; at most 61440 are allowed"),
        "{e:?}"
    );
    let canonical_len: usize = reason
        .trim_start_matches("is ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(canonical_len > RECORD_MAX_BYTES && canonical_len > text.len());

    // The same record with shorter attachment names fits.
    r["decision"]["attachments"] = json!(big_attachments(64, 10));
    let text = r
        .to_string()
        .replace("\"NUMBERS\"", &format!("[{numbers}]"));
    let ok = Record::from_bytes(text.as_bytes()).unwrap();
    assert!(ok.to_bytes().unwrap().len() <= RECORD_MAX_BYTES);
}

#[test]
fn validate_checks_the_canonical_size_of_a_record_built_in_code() {
    let mut r = record_json(sorted_approvals(APPROVALS_MAX));
    r["decision"]["body"] = json!("b".repeat(BODY_MAX_BYTES));
    r["decision"]["payload"] = json!({"p": "q".repeat(PAYLOAD_MAX_BYTES - 8)});
    let mut record = parse_record(&r).unwrap();
    let mut n = 0u64;
    while record.to_bytes().unwrap().len() <= RECORD_MAX_BYTES {
        record
            .decision
            .attachments
            .push(triplicate_core::Attachment {
                sha256: format!("{n:064x}"),
                media_type: "text/plain".into(),
                size: 1,
                name: Some("n".repeat(TITLE_MAX_CHARS)),
            });
        n += 1;
    }
    assert!(n <= ATTACHMENTS_MAX as u64);
    let len = record.to_bytes().unwrap().len();
    let e = record.validate().unwrap_err();
    assert_only(
        &e,
        "(record)",
        &format!("is {len} bytes canonicalised; at most 61440"),
    );
    // One attachment fewer and it is valid again.
    record.decision.attachments.pop();
    record.validate().unwrap();
}

#[test]
fn stores_accept_only_canonical_bytes() {
    let r = parse_record(&record_json(sorted_approvals(2))).unwrap();
    let bytes = r.to_bytes().unwrap();
    assert_eq!(Record::from_canonical_bytes(&bytes).unwrap(), r);

    let pretty = serde_json::to_vec_pretty(&r).unwrap();
    assert_eq!(Record::from_bytes(&pretty).unwrap(), r);
    let e = Record::from_canonical_bytes(&pretty).unwrap_err();
    assert_only(&e, "(record)", "valid but not in RFC 8785 canonical form");

    // Compact but in declaration order rather than sorted: also not canonical.
    let compact = serde_json::to_vec(&r).unwrap();
    assert!(!compact.contains(&b'\n'));
    assert_ne!(compact, bytes);
    let e = Record::from_canonical_bytes(&compact).unwrap_err();
    assert_only(&e, "(record)", "not in RFC 8785 canonical form");

    // A trailing newline is not canonical either.
    let mut newline = bytes.clone();
    newline.push(b'\n');
    assert!(Record::from_canonical_bytes(&newline).is_err());

    // Invalid records are refused for what is wrong with them, not for their form.
    let mut bad = record_json(sorted_approvals(1));
    bad["version"] = json!(2);
    let e = Record::from_canonical_bytes(&triplicate_core::canonical::to_jcs(&bad).unwrap())
        .unwrap_err();
    assert_only(&e, "version", "must be 1");
}

#[test]
fn several_problems_are_reported_at_once() {
    let mut r = record_json(sorted_approvals(2));
    r["version"] = json!(2);
    r["seq"] = json!(9007199254740993u64);
    r["decision"]["kind"] = json!("BAD");
    r["decision"]["title"] = json!("");
    r["decision"]["body"] = json!("x\u{1}");
    r["decision"]["supersedes"] = json!(ID);
    r["decision"]["payload"] = json!({"n": 9007199254740993u64});
    r["decision"]["attachments"] = json!([attachment(1), attachment(1)]);
    r["approvals"][1]["signature"] = json!(b64(&[0u8; 3]));
    r["notary"]["signature"] = json!(b64(&[0u8; 3]));
    let e = record_refused(&r);
    assert_has(&e, "version", "must be 1");
    assert_has(&e, "seq", "larger than 2^53");
    assert_has(&e, "decision.kind", "dotted lowercase");
    assert_has(&e, "decision.title", "must not be empty");
    assert_has(&e, "decision.body", "control characters");
    assert_has(&e, "decision.supersedes", "cannot supersede itself");
    assert_has(&e, "decision.payload.n", "±2^53");
    assert_has(&e, "decision.attachments[1].sha256", "duplicates");
    assert_has(&e, "approvals[1].signature", "is 3 bytes");
    assert_has(&e, "notary.signature", "is 3 bytes");
    assert_eq!(e.problems.len(), 10, "{e:?}");
    // The message names every field, in the order found.
    let text = e.to_string();
    assert!(
        text.starts_with("refused: version: must be 1; seq: "),
        "{text}"
    );
    let mut at = 0;
    for p in &e.problems {
        let found = text[at..].find(&format!("{}: {}", p.field, p.reason));
        at += found.unwrap_or_else(|| panic!("{} missing from {text}", p.field));
    }

    let mut d = decision_json();
    d["kind"] = json!("");
    d["title"] = json!("t".repeat(201));
    d["body"] = json!("b".repeat(BODY_MAX_BYTES + 1));
    let e = refused(&d);
    assert_eq!(e.problems.len(), 3, "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// Receipts

fn receipt() -> Receipt {
    let r = parse_record(&record_json(sorted_approvals(1))).unwrap();
    Receipt {
        version: RECEIPT_VERSION,
        seq: r.seq,
        leaf_hash: r.leaf_hash().unwrap(),
        record: r,
        checkpoint: "example.invalid/log\n4\nq83vEjRWeJA=\n\n— example.invalid/log AAAA\n".into(),
        inclusion_proof: vec![[1; 32], [2; 32]],
    }
}

#[test]
fn receipts_round_trip_through_json() {
    let receipt = receipt();
    receipt.check_self_consistent().unwrap();
    let text = serde_json::to_vec(&receipt).unwrap();
    let back = Receipt::from_json(&text).unwrap();
    assert_eq!(back, receipt);
    assert_eq!(serde_json::to_vec(&back).unwrap(), text);
    let v: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(v["leaf_hash"], json!(b64(&receipt.leaf_hash)));
    assert_eq!(v["inclusion_proof"][1], json!(b64(&[2; 32])));
}

#[test]
fn receipts_are_validated_when_read() {
    let good: Value = serde_json::to_value(receipt()).unwrap();

    let mut v = good.clone();
    v["version"] = json!(2);
    let e = Receipt::from_json(v.to_string().as_bytes()).unwrap_err();
    assert_only(&e, "version", "must be 1");

    let mut v = good.clone();
    v["record"]["decision"]["kind"] = json!("Bad");
    let e = Receipt::from_json(v.to_string().as_bytes()).unwrap_err();
    assert_only(&e, "record.decision.kind", "dotted lowercase");

    let mut v = good.clone();
    v["leaf_hash"] = json!(b64(&[1; 31]));
    let e = Receipt::from_json(v.to_string().as_bytes()).unwrap_err();
    assert_only(&e, "leaf_hash", "31 bytes, expected 32");

    let mut v = good.clone();
    v["inclusion_proof"][1] = json!("%%%");
    let e = Receipt::from_json(v.to_string().as_bytes()).unwrap_err();
    assert_only(&e, "inclusion_proof", "not base64");

    let mut v = good;
    v["note"] = json!("x");
    let e = Receipt::from_json(v.to_string().as_bytes()).unwrap_err();
    assert_only(&e, "note", "unknown field");
}

#[test]
fn receipts_check_their_own_seq_and_leaf_hash() {
    let receipt = receipt();
    let mut wrong = receipt.clone();
    wrong.seq = 4;
    let e = wrong.check_self_consistent().unwrap_err();
    assert_only(&e, "seq", "is 4 but the record's seq is 3");

    let mut wrong = receipt.clone();
    wrong.leaf_hash[0] ^= 1;
    let e = wrong.check_self_consistent().unwrap_err();
    assert_only(&e, "leaf_hash", "but the record hashes to");
    assert_has(&e, "leaf_hash", &hex::encode(receipt.leaf_hash));

    // A record changed after the receipt was made no longer matches its leaf hash.
    let mut wrong = receipt;
    wrong.record.decision.title.push('!');
    let e = wrong.check_self_consistent().unwrap_err();
    assert_only(&e, "leaf_hash", "hashes to");
}

// ---------------------------------------------------------------------------------------------
// Integral numbers

#[test]
fn integral_floats_in_input_read_back_as_the_integers_jcs_writes() {
    // `1.0`, `-0.0`, `1e2` are written by JCS as `1`, `0`, `100`; parsing holds them as those
    // integers, so a decision read from a submitter's spelling equals the one read back from a
    // store's canonical bytes (not only byte for byte).
    let text =
        r#"{"a":1.0,"b":-0.0,"c":1e2,"d":[100.0,1.5,-7E0],"e":{"f":9007199254740992.0},"g":-0}"#;
    let v = with_payload(serde_json::from_str::<Value>("{}").unwrap());
    let input = v
        .to_string()
        .replace(r#""payload":{}"#, &format!(r#""payload":{text}"#));
    let d = Decision::from_json(input.as_bytes()).unwrap();
    assert_eq!(
        Value::Object(d.payload.clone()),
        json!({"a": 1, "b": 0, "c": 100, "d": [100, 1.5, -7], "e": {"f": 9007199254740992u64}, "g": 0})
    );
    let canonical = d.canonical_bytes().unwrap();
    assert!(
        String::from_utf8_lossy(&canonical).contains(
            r#""payload":{"a":1,"b":0,"c":100,"d":[100,1.5,-7],"e":{"f":9007199254740992},"g":0}"#
        ),
        "{}",
        String::from_utf8_lossy(&canonical)
    );
    assert_eq!(Decision::from_json(&canonical).unwrap(), d);

    let mut r = record_json(sorted_approvals(1));
    r["decision"] = serde_json::from_str(&input).unwrap();
    let record = Record::from_bytes(r.to_string().as_bytes()).unwrap();
    let bytes = record.to_bytes().unwrap();
    assert_eq!(Record::from_bytes(&bytes).unwrap(), record);
    assert_eq!(Record::from_canonical_bytes(&bytes).unwrap(), record);
}

#[test]
fn integral_floats_built_in_code_are_refused() {
    // Parsing never yields them; code can. Their bytes would read back as a different value.
    let mut d = accepted(&decision_json());
    d.payload.insert("n".into(), json!(2.0));
    d.payload.insert("list".into(), json!([1.5, -0.0]));
    d.payload.insert("huge".into(), json!(1e300));
    let e = d.validate("").unwrap_err();
    assert_has(&e, "payload.n", "integer held as a float");
    assert_has(&e, "payload.n", "writes it as 2");
    assert_has(&e, "payload.list[1]", "integer held as a float");
    assert!(
        !e.problems.iter().any(|p| p.field == "payload.list[0]"),
        "{e:?}"
    );
    // Out of range is the one problem for a huge number, not also "held as a float".
    assert_has(&e, "payload.huge", "±2^53");
    assert_eq!(e.problems.len(), 3, "{e:?}");

    // Inside a record the path starts at the decision.
    let mut r = parse_record(&record_json(sorted_approvals(1))).unwrap();
    r.decision.payload.insert("n".into(), json!(7.0));
    let e = r.validate().unwrap_err();
    assert_only(&e, "decision.payload.n", "integer held as a float");
}

#[test]
fn receipts_report_their_own_and_their_records_problems_together() {
    let mut v: Value = serde_json::to_value(receipt()).unwrap();
    v["version"] = json!(2);
    v["record"]["decision"]["kind"] = json!("Bad");
    v["record"]["approvals"][0]["signature"] = json!(b64(&[0; 3]));
    let e = Receipt::from_json(v.to_string().as_bytes()).unwrap_err();
    assert_has(&e, "version", "is 2; must be 1");
    assert_has(&e, "record.decision.kind", "dotted lowercase");
    assert_has(&e, "record.approvals[0].signature", "is 3 bytes");
    assert_eq!(e.problems.len(), 3, "{e:?}");

    // A record too large as a whole is named "record", not "record.(record)".
    let mut v: Value = serde_json::to_value(receipt()).unwrap();
    v["record"]["decision"]["body"] = json!("b".repeat(BODY_MAX_BYTES));
    v["record"]["decision"]["payload"] = json!({"p": "p".repeat(PAYLOAD_MAX_BYTES - 16)});
    v["record"]["approvals"] = json!(sorted_approvals(APPROVALS_MAX));
    v["record"]["decision"]["attachments"] = (1..=ATTACHMENTS_MAX as u64)
        .map(|n| {
            let mut a = attachment(n);
            a["name"] = json!("n".repeat(TITLE_MAX_CHARS));
            a
        })
        .collect();
    let e = Receipt::from_json(v.to_string().as_bytes()).unwrap_err();
    assert_only(&e, "record", "canonicalised; at most");
    assert!(e.problems[0].reason.contains(&RECORD_MAX_BYTES.to_string()));

    // An empty attachment name reads as no name, as it does in a bare record.
    let mut v: Value = serde_json::to_value(receipt()).unwrap();
    v["record"]["decision"]["attachments"] = json!([{
        "sha256": "ab".repeat(32), "media_type": "text/plain", "size": 3, "name": ""
    }]);
    let back = Receipt::from_json(v.to_string().as_bytes()).unwrap();
    assert_eq!(back.record.decision.attachments[0].name, None);
}
