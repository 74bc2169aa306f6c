//! Shared by every backend's tests: random valid records for property tests.

#![allow(dead_code)]

use proptest::prelude::*;
use serde_json::{Map, Value};
use triplicate_core::{Algorithm, Approval, Attachment, Decision, KeyId, Record, Timestamp};
use triplicate_projection::fixtures::{notarise, pseudo_random, sample_id};

/// Any JSON value a payload may hold: safe integers, finite floats, any strings (NUL, control
/// characters, astral planes), nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-9_007_199_254_740_991i64..=9_007_199_254_740_991).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite and within 2^53", |f| f.is_finite()
                && f.abs() <= 9e15)
            .prop_map(Value::from),
        prop_oneof![Just(1e-7), Just(0.5), Just(100.0), Just(-0.0), Just(5e-324)]
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[\\x00-\\x1f\"\\\\\u{2028}é🗳]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn payload() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(any::<String>(), json_value(), 0..5)
        .prop_map(|m| m.into_iter().collect())
}

fn time() -> impl Strategy<Value = Timestamp> {
    // Years 0000 to 9999, any nanosecond.
    (-62_167_219_200_000_000_000i128..=253_402_300_799_999_999_999i128)
        .prop_map(|n| Timestamp::from_unix_nanos(n).expect("in range"))
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[^\\p{{Cc}}]{{1,{max}}}"))
        .expect("regex")
        .prop_filter("not blank", |s| !s.trim().is_empty())
}

fn attachment() -> impl Strategy<Value = Attachment> {
    (
        any::<[u8; 32]>(),
        "[a-z]{1,8}/[a-z0-9.+-]{1,12}",
        0u64..=9_007_199_254_740_992,
        proptest::option::of(text(40)),
    )
        .prop_map(|(h, media_type, size, name)| Attachment {
            sha256: hex::encode(h),
            media_type,
            size,
            name,
        })
}

/// A valid record at `seq` (its decision id derived from `seq` and `salt`).
pub fn record(seq: u64, salt: u64) -> impl Strategy<Value = Record> {
    (
        text(60),
        "[\\PC\\n\\r\\t]{0,200}",
        payload(),
        time(),
        time(),
        prop::collection::vec((time(), any::<bool>()), 1..4),
        prop::collection::vec(attachment(), 0..3),
        any::<bool>(),
        "[a-z][a-z0-9_]{0,10}(\\.[a-z][a-z0-9_]{0,10}){0,2}",
    )
        .prop_map(
            move |(title, body, payload, proposed, recorded, approvals, attachments, sup, kind)| {
                let keys: Vec<KeyId> = (0..approvals.len())
                    .map(|k| KeyId::derive(Algorithm::Ed25519, &[k as u8 + 40; 32]))
                    .collect();
                let mut seen = std::collections::BTreeSet::new();
                let attachments = attachments
                    .into_iter()
                    .filter(|a| seen.insert(a.sha256.clone()))
                    .collect();
                let decision = Decision {
                    id: sample_id(1_000_000 * (salt + 1) + seq),
                    kind,
                    title,
                    body,
                    payload,
                    proposed_at: proposed,
                    supersedes: sup.then(|| sample_id(seq)),
                    attachments,
                };
                let approvals = approvals
                    .into_iter()
                    .zip(keys)
                    .map(|((signed_at, p256), key_id)| Approval {
                        key_id,
                        alg: if p256 {
                            Algorithm::EcdsaP256
                        } else {
                            Algorithm::Ed25519
                        },
                        signature: pseudo_random(&seq.to_be_bytes(), 64),
                        signed_at,
                    })
                    .collect();
                notarise(seq, decision, approvals, recorded)
            },
        )
}

/// `count` valid records at seqs `0..count`.
pub fn records(count: u64, salt: u64) -> impl Strategy<Value = Vec<Record>> {
    (0..count)
        .map(|s| record(s, salt).boxed())
        .collect::<Vec<_>>()
        .prop_filter("every record validates", |rs| {
            rs.iter().all(|r| {
                r.to_bytes()
                    .ok()
                    .is_some_and(|b| Record::from_canonical_bytes(&b).is_ok())
            })
        })
}
