//! Property tests over generated valid records: every record reads back from its canonical bytes
//! as itself, with the same bytes and digests; and changing any one field changes what is hashed
//! and what is signed.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use serde_json::{Map, Value};
use triplicate_core::limits::{APPROVALS_MAX, TITLE_MAX_CHARS};
use triplicate_core::{
    Algorithm, Approval, Attachment, Decision, KeyId, NotarySignature, Record, Timestamp,
    UnsignedRecord, RECORD_VERSION,
};
use uuid::Uuid;

const SAFE: i64 = 1 << 53;

/// A UUIDv7 (version 7, RFC 4122 variant) from a 48-bit millisecond time and 74 other bits.
fn v7(ms: u64, rand: u128) -> Uuid {
    let mut b = rand.to_be_bytes();
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70 | (b[6] & 0x0f);
    b[8] = 0x80 | (b[8] & 0x3f);
    Uuid::from_bytes(b)
}

fn uuid_v7() -> impl Strategy<Value = Uuid> {
    (0u64..(1 << 48), any::<u128>()).prop_map(|(ms, r)| v7(ms, r))
}

/// Any instant in years 0000-9999, sometimes on whole seconds, sometimes with a fraction.
fn timestamp() -> impl Strategy<Value = Timestamp> {
    const MIN: i128 = -62_167_219_200; // 0000-01-01T00:00:00Z
    const MAX: i128 = 253_402_300_799; // 9999-12-31T23:59:59Z
    (
        MIN..=MAX,
        prop_oneof![Just(0i128), 0i128..1_000_000_000, Just(999_999_999)],
    )
        .prop_map(|(s, ns)| Timestamp::from_unix_nanos(s * 1_000_000_000 + ns).unwrap())
}

fn text_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => select(vec!['a', 'Z', ' ', '0', 'é', 'ü', '€', '—', '😀', '🗳', '\u{fb33}', '日', '"', '\\']),
        1 => any::<char>().prop_filter("no control characters", |c| !c.is_control()),
    ]
}

/// 1..=200 characters, not all whitespace, no control characters.
fn title() -> impl Strategy<Value = String> {
    (
        select(vec!['A', 'z', 'Ä', '€', '😀', '\u{fb33}']),
        prop::collection::vec(text_char(), 0..TITLE_MAX_CHARS),
    )
        .prop_map(|(first, rest)| std::iter::once(first).chain(rest).collect())
}

fn body() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            8 => text_char(),
            1 => select(vec!['\n', '\r', '\t']),
        ],
        0..400,
    )
    .prop_map(String::from_iter)
}

/// Any string, control characters included (payload strings may hold them).
fn any_string(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![3 => text_char(), 1 => any::<char>()], 0..max)
        .prop_map(String::from_iter)
}

/// Numbers that read back as the same `serde_json::Value`: integers within ±2^53, and floats
/// that are not integers (JCS writes `2.0` as `2`, which reads back as an integer, so validation
/// refuses integral floats built in code; parsing turns them into integers).
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-SAFE..=SAFE).prop_map(Value::from),
        select(vec![SAFE, -SAFE, 0, 1, -1]).prop_map(Value::from),
        (-1.0e9f64..1.0e9)
            .prop_filter("not an integer", |f| f.fract() != 0.0)
            .prop_map(Value::from),
        (1i64..1_000_000, -12i32..-1).prop_filter_map("not an integer", |(m, e)| {
            let f = m as f64 * 10f64.powi(e);
            (f.fract() != 0.0).then(|| Value::from(f))
        }),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        any_string(16).prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(any_string(6), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn payload() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(any_string(8), json_value(), 0..8)
        .prop_map(|m| m.into_iter().collect())
}

fn kind() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,14}(\\.[a-z][a-z0-9_]{0,14}){0,3}"
}

fn attachments() -> impl Strategy<Value = Vec<Attachment>> {
    prop::collection::btree_map(
        any::<[u8; 32]>(),
        (
            select(vec![
                "application/pdf",
                "text/plain",
                "image/svg+xml",
                "application/vnd.oasis.opendocument.text",
            ]),
            0u64..=(1 << 53),
            proptest::option::of(
                prop::collection::vec(text_char(), 1..=TITLE_MAX_CHARS).prop_map(String::from_iter),
            ),
        ),
        0..4,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(digest, (media_type, size, name))| Attachment {
                sha256: hex::encode(digest),
                media_type: media_type.to_owned(),
                size,
                name,
            })
            .collect()
    })
}

prop_compose! {
    fn decision()(
        id in uuid_v7(),
        kind in kind(),
        title in title(),
        body in body(),
        payload in payload(),
        proposed_at in timestamp(),
        supersedes in proptest::option::of(uuid_v7()),
        attachments in attachments(),
    ) -> Decision {
        Decision {
            id,
            kind,
            title,
            body,
            payload,
            proposed_at,
            supersedes: supersedes.filter(|s| *s != id),
            attachments,
        }
    }
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    select(vec![Algorithm::Ed25519, Algorithm::EcdsaP256])
}

fn approvals() -> impl Strategy<Value = Vec<Approval>> {
    prop::collection::btree_map(
        any::<[u8; 32]>(),
        (
            algorithm(),
            any::<[u8; 64]>().prop_map(Vec::from),
            timestamp(),
        ),
        1..=APPROVALS_MAX,
    )
    .prop_map(|m| {
        let mut approvals: Vec<Approval> = m
            .into_iter()
            .map(|(key, (alg, signature, signed_at))| Approval {
                key_id: KeyId::derive(alg, &key),
                alg,
                signature,
                signed_at,
            })
            .collect();
        approvals.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        // Two keys with the same 64-bit id: astronomically unlikely, but stay valid.
        approvals.dedup_by(|a, b| a.key_id == b.key_id);
        approvals
    })
}

prop_compose! {
    fn record()(
        decision in decision(),
        seq in prop_oneof![0u64..=(1 << 53), Just(0u64), Just(1u64 << 53)],
        approvals in approvals(),
        recorded_at in timestamp(),
        notary_alg in algorithm(),
        notary_key in any::<[u8; 32]>(),
        notary_sig in any::<[u8; 64]>(),
    ) -> Record {
        UnsignedRecord { version: RECORD_VERSION, seq, decision, approvals, recorded_at }
            .with_notary(NotarySignature {
                key_id: KeyId::derive(notary_alg, &notary_key),
                alg: notary_alg,
                signature: notary_sig.to_vec(),
            })
    }
}

fn later(t: &Timestamp, nanos: i128) -> Timestamp {
    Timestamp::from_unix_nanos(t.unix_nanos() + nanos)
        .or_else(|_| Timestamp::from_unix_nanos(t.unix_nanos() - nanos))
        .unwrap()
}

/// A payload with one value changed: the first leaf found, or a new member if there is none.
fn change_a_payload_value(payload: &mut Map<String, Value>) {
    fn change(v: &mut Value) -> bool {
        match v {
            Value::Null => *v = Value::Bool(false),
            Value::Bool(b) => *b = !*b,
            Value::Number(n) => {
                *v = if n.as_i64() == Some(0) {
                    Value::from(1)
                } else {
                    Value::from(0)
                }
            }
            Value::String(s) => s.push('x'),
            Value::Array(a) => return a.iter_mut().any(change),
            Value::Object(o) => return o.values_mut().any(change),
        }
        true
    }
    if !payload.values_mut().any(change) {
        payload.insert("added".into(), Value::Null);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_records_are_valid(r in record()) {
        r.validate().unwrap();
        r.unsigned().validate().unwrap();
        r.decision.validate("decision").unwrap();
        prop_assert!(!r.approvals.is_empty() && r.approvals.len() <= APPROVALS_MAX);
    }

    #[test]
    fn the_record_writer_gives_serde_jcs_bytes(r in record()) {
        // Release builds skip the writer's debug check; this compares in every profile.
        let reference = triplicate_core::canonical::to_jcs(&r).unwrap();
        prop_assert_eq!(String::from_utf8(r.to_bytes().unwrap()).unwrap(), String::from_utf8(reference).unwrap());
        let unsigned = r.unsigned();
        let mut want = b"triplicate/record/v1\n".to_vec();
        want.extend_from_slice(&triplicate_core::canonical::to_jcs(&unsigned).unwrap());
        prop_assert_eq!(unsigned.notary_message().unwrap(), want);
        prop_assert_eq!(r.decision.canonical_bytes().unwrap(), triplicate_core::canonical::to_jcs(&r.decision).unwrap());
        prop_assert_eq!(
            triplicate_core::canonical::object_jcs(&r.decision.payload),
            triplicate_core::canonical::to_jcs(&r.decision.payload).unwrap()
        );
    }

    #[test]
    fn records_round_trip_through_their_canonical_bytes(r in record()) {
        let bytes = r.to_bytes().unwrap();
        let back = Record::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &r);
        prop_assert_eq!(back.to_bytes().unwrap(), bytes.clone());
        // Stores' stricter reading accepts exactly these bytes.
        prop_assert_eq!(&Record::from_canonical_bytes(&bytes).unwrap(), &r);
        // Every digest and signed message is the same after the round trip.
        prop_assert_eq!(back.leaf_hash().unwrap(), r.leaf_hash().unwrap());
        prop_assert_eq!(back.notary_message().unwrap(), r.notary_message().unwrap());
        let digest = r.decision.digest().unwrap();
        prop_assert_eq!(back.decision.digest().unwrap(), digest);
        prop_assert_eq!(back.decision.canonical_bytes().unwrap(), r.decision.canonical_bytes().unwrap());
        for (a, b) in r.approvals.iter().zip(&back.approvals) {
            prop_assert_eq!(a.message(&digest).unwrap(), b.message(&digest).unwrap());
        }
        // The decision alone round-trips too.
        let d = Decision::from_json(&r.decision.canonical_bytes().unwrap()).unwrap();
        prop_assert_eq!(&d, &r.decision);
    }

    /// A proof is issued exactly for what the stores' strict reading accepts: the proven bytes
    /// are the canonical bytes, read back (strictly, or through the proof) as the record, with
    /// the proof's seq, decision id and leaf hash; other bytes are not covered and are read
    /// strictly, so the proof changes only the cost.
    #[test]
    fn a_proof_covers_exactly_the_canonical_bytes(r in record()) {
        let (bytes, proof) = r.to_proven_bytes().unwrap();
        prop_assert_eq!(&bytes, &r.to_bytes().unwrap());
        prop_assert_eq!(proof.seq(), r.seq);
        prop_assert_eq!(proof.decision_id(), r.decision.id);
        prop_assert_eq!(proof.leaf_hash(), &r.leaf_hash().unwrap());
        prop_assert!(proof.covers(&bytes));
        prop_assert_eq!(&Record::from_canonical_bytes(&bytes).unwrap(), &r);
        prop_assert_eq!(&Record::from_proven_bytes(&bytes, &proof).unwrap(), &r);
        // The same record spelled otherwise is not covered, and is refused as not canonical.
        let pretty = serde_json::to_vec_pretty(&r).unwrap();
        prop_assert!(!proof.covers(&pretty));
        prop_assert!(Record::from_proven_bytes(&pretty, &proof).is_err());
        // Another valid record is not covered either, and reads as itself.
        let mut other = r.clone();
        // Down, not up: seqs go up to 2^53, and JCS writes 2^53 + 1 as 2^53.
        other.seq = if r.seq == 0 { 1 } else { r.seq - 1 };
        let other_bytes = other.to_bytes().unwrap();
        prop_assert!(!proof.covers(&other_bytes));
        prop_assert_eq!(&Record::from_proven_bytes(&other_bytes, &proof).unwrap(), &other);
    }

    #[test]
    fn other_spellings_read_back_to_the_same_record(r in record()) {
        // Pretty-printed, members in declaration order: not canonical, but the same record.
        let pretty = serde_json::to_vec_pretty(&r).unwrap();
        let back = Record::from_bytes(&pretty).unwrap();
        prop_assert_eq!(&back, &r);
        prop_assert_eq!(back.to_bytes().unwrap(), r.to_bytes().unwrap());
        prop_assert!(Record::from_canonical_bytes(&pretty).is_err());
    }

    #[test]
    fn changing_any_field_changes_the_leaf_hash_and_the_notary_message(
        r in record(),
        which in 0usize..12,
    ) {
        let mut m = r.clone();
        let mut decision_changed = true;
        match which {
            0 => {
                // Same length, so still within the limit.
                let last = m.decision.title.pop();
                m.decision.title.push(if last == Some('!') { '?' } else { '!' });
            }
            1 => m.decision.body.push('!'),
            2 => change_a_payload_value(&mut m.decision.payload),
            3 => {
                let last = m.decision.kind.pop();
                m.decision.kind.push(if last == Some('x') { 'y' } else { 'x' });
            }
            4 => m.decision.proposed_at = later(&m.decision.proposed_at, 1),
            5 => m.decision.id = v7(1, r.decision.id.as_u128().wrapping_add(1)),
            6 => {
                m.decision.supersedes = match m.decision.supersedes {
                    Some(_) => None,
                    None => Some(v7(2, 2)),
                }
            }
            7 => {
                decision_changed = false;
                m.seq = if m.seq == 0 { 1 } else { m.seq - 1 };
            }
            8 => {
                decision_changed = false;
                let a = &mut m.approvals[0];
                a.signed_at = later(&a.signed_at, 1);
            }
            9 => {
                decision_changed = false;
                m.recorded_at = later(&m.recorded_at, 1_000);
            }
            10 => {
                decision_changed = false;
                m.approvals[0].signature[0] ^= 1;
            }
            _ => {
                decision_changed = false;
                m.approvals.pop();
                if m.approvals.is_empty() {
                    let mut a = r.approvals[0].clone();
                    a.key_id = KeyId::derive(Algorithm::Ed25519, b"another approver");
                    m.approvals.push(a);
                }
            }
        }
        m.validate().unwrap();
        prop_assert_ne!(m.to_bytes().unwrap(), r.to_bytes().unwrap());
        prop_assert_ne!(m.leaf_hash().unwrap(), r.leaf_hash().unwrap());
        prop_assert_ne!(m.notary_message().unwrap(), r.notary_message().unwrap());
        let (before, after) = (r.decision.digest().unwrap(), m.decision.digest().unwrap());
        prop_assert_eq!(before != after, decision_changed);
    }

    #[test]
    fn the_notary_signature_is_in_the_leaf_but_not_in_what_the_notary_signs(r in record()) {
        let mut m = r.clone();
        m.notary.signature[63] ^= 0x80;
        prop_assert_ne!(m.leaf_hash().unwrap(), r.leaf_hash().unwrap());
        prop_assert_eq!(m.notary_message().unwrap(), r.notary_message().unwrap());
        prop_assert!(r.notary_message().unwrap().starts_with(b"triplicate/record/v1\n"));
    }

    #[test]
    fn the_approval_message_binds_decision_key_algorithm_and_time(
        r in record(),
        other_key in any::<[u8; 32]>(),
        nanos in 1i128..1_000_000_000_000,
    ) {
        let digest = r.decision.digest().unwrap();
        let a = &r.approvals[0];
        let msg = a.message(&digest).unwrap();
        prop_assert!(msg.starts_with(b"triplicate/approval/v1\n"));

        let mut b = a.clone();
        b.signed_at = later(&a.signed_at, nanos);
        prop_assert_ne!(b.message(&digest).unwrap(), msg.clone());

        let mut b = a.clone();
        b.key_id = KeyId::derive(a.alg, &other_key);
        prop_assume!(b.key_id != a.key_id);
        prop_assert_ne!(b.message(&digest).unwrap(), msg.clone());

        let mut b = a.clone();
        b.alg = match a.alg {
            Algorithm::Ed25519 => Algorithm::EcdsaP256,
            Algorithm::EcdsaP256 => Algorithm::Ed25519,
        };
        prop_assert_ne!(b.message(&digest).unwrap(), msg.clone());

        let mut other = digest;
        other[31] ^= 1;
        prop_assert_ne!(a.message(&other).unwrap(), msg.clone());

        // The signature itself is not part of the message.
        let mut b = a.clone();
        b.signature[0] ^= 1;
        prop_assert_eq!(b.message(&digest).unwrap(), msg);
    }
}

#[test]
fn an_empty_attachment_name_is_no_name_in_the_bytes() {
    let r = {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        record().new_tree(&mut runner).unwrap().current()
    };
    let mut with_empty = r.clone();
    with_empty.decision.attachments = vec![Attachment {
        sha256: "ab".repeat(32),
        media_type: "text/plain".into(),
        size: 3,
        name: Some(String::new()),
    }];
    let mut without = with_empty.clone();
    without.decision.attachments[0].name = None;
    with_empty.validate().unwrap();
    let bytes = with_empty.to_bytes().unwrap();
    assert_eq!(bytes, without.to_bytes().unwrap());
    assert!(!String::from_utf8_lossy(&bytes).contains("\"name\""));
    assert_eq!(Record::from_canonical_bytes(&bytes).unwrap(), without);
    // Proven from the record that spells it otherwise: the same bytes, read back the same.
    let (proven, proof) = with_empty.to_proven_bytes().unwrap();
    assert_eq!(proven, bytes);
    assert_eq!(Record::from_proven_bytes(&bytes, &proof).unwrap(), without);
    // A record that breaks a rule gets no proof.
    let mut too_far = without.clone();
    too_far.seq = 1 << 60;
    assert!(too_far.to_proven_bytes().is_err());
    assert_eq!(
        with_empty.leaf_hash().unwrap(),
        without.leaf_hash().unwrap()
    );
}

#[test]
fn timestamps_outside_years_0000_to_9999_cannot_be_made() {
    let first = Timestamp::from_unix_nanos(-62_167_219_200 * 1_000_000_000).unwrap();
    assert_eq!(first.to_string(), "0000-01-01T00:00:00Z");
    assert!(Timestamp::from_unix_nanos(first.unix_nanos() - 1).is_err());
    let last = Timestamp::from_unix_nanos(253_402_300_799 * 1_000_000_000 + 999_999_999).unwrap();
    assert_eq!(last.to_string(), "9999-12-31T23:59:59.999999999Z");
    assert!(Timestamp::from_unix_nanos(last.unix_nanos() + 1).is_err());
    for t in [first, last] {
        assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
    }
}

/// Every integer in a JSON value rewritten as a float (`7` becomes `7.0`).
fn integers_as_floats(v: &mut Value) {
    match v {
        Value::Number(n) if !n.is_f64() => {
            if let Some(i) = n.as_i64() {
                *v = Value::from(i as f64);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(integers_as_floats),
        Value::Object(o) => o.values_mut().for_each(integers_as_floats),
        _ => {}
    }
}

proptest! {
    #[test]
    fn integers_spelled_as_floats_read_back_to_the_same_record(r in record()) {
        let mut v = serde_json::to_value(&r).unwrap();
        integers_as_floats(&mut v["decision"]["payload"]);
        let text = serde_json::to_vec(&v).unwrap();
        let back = Record::from_bytes(&text).unwrap();
        prop_assert_eq!(&back, &r);
        prop_assert_eq!(back.to_bytes().unwrap(), r.to_bytes().unwrap());
    }
}
