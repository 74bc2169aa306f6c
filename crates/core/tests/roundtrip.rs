//! Property tests: every valid record round-trips through its canonical bytes unchanged, and
//! changing any field changes what is hashed and signed.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{Map, Value};
use triplicate_core::{
    Algorithm, Approval, Attachment, Decision, KeyId, NotarySignature, Record, Timestamp,
    UnsignedRecord,
};
use uuid::Uuid;

fn v7(n: u64) -> Uuid {
    // A UUIDv7 from a millisecond timestamp and random bits, deterministic for the test.
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&(n % (1 << 48)).to_be_bytes()[2..]);
    b[6] = 0x70 | ((n >> 8) as u8 & 0x0f);
    b[7] = n as u8;
    b[8] = 0x80 | ((n >> 16) as u8 & 0x3f);
    b[9..].copy_from_slice(&n.to_le_bytes()[..7]);
    Uuid::from_bytes(b)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53)..=(1i64 << 53)).prop_map(Value::from),
        (-1.0e6f64..1.0e6).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zé€😀]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (1_600_000_000i128..2_000_000_000, 0i128..1_000_000_000)
        .prop_map(|(s, ns)| Timestamp::from_unix_nanos(s * 1_000_000_000 + ns).unwrap())
}

prop_compose! {
    fn decision()(
        n in any::<u64>(),
        kind in "[a-z][a-z0-9_]{0,8}(\\.[a-z][a-z0-9_]{0,8}){0,2}",
        title in "[A-Za-zé€ ]{0,30}[A-Za-z]",
        body in "\\PC{0,200}",
        payload in prop::collection::btree_map("[a-z]{1,8}", json_value(), 0..6),
        proposed_at in timestamp(),
        supersedes in proptest::option::of(any::<u64>()),
        attachments in prop::collection::btree_set(any::<u64>(), 0..3),
    ) -> Decision {
        Decision {
            id: v7(n),
            kind,
            title,
            body,
            payload: payload.into_iter().collect::<Map<String, Value>>(),
            proposed_at,
            supersedes: supersedes.map(|s| v7(s ^ 0x5555)).filter(|s| *s != v7(n)),
            attachments: attachments
                .into_iter()
                .map(|a| Attachment {
                    sha256: format!("{a:064x}"),
                    media_type: "application/pdf".into(),
                    size: a % 1_000_000,
                    name: (a % 2 == 0).then(|| format!("doc-{a}.pdf")),
                })
                .collect(),
        }
    }
}

prop_compose! {
    fn record()(
        decision in decision(),
        seq in 0u64..(1 << 53),
        keys in prop::collection::btree_set(any::<[u8; 8]>(), 1..6),
        signed_at in timestamp(),
        recorded_at in timestamp(),
    ) -> Record {
        let mut approvals: Vec<Approval> = keys
            .iter()
            .map(|k| Approval {
                key_id: KeyId::derive(Algorithm::Ed25519, k),
                alg: Algorithm::Ed25519,
                signature: k.repeat(8),
                signed_at,
            })
            .collect();
        approvals.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        approvals.dedup_by(|a, b| a.key_id == b.key_id);
        UnsignedRecord { version: 1, seq, decision, approvals, recorded_at }
            .with_notary(NotarySignature {
                key_id: KeyId::derive(Algorithm::Ed25519, b"notary"),
                alg: Algorithm::Ed25519,
                signature: vec![9; 64],
            })
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn records_round_trip_through_canonical_bytes(r in record()) {
        r.validate().unwrap();
        let bytes = r.to_bytes().unwrap();
        let back = Record::from_canonical_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &r);
        prop_assert_eq!(back.to_bytes().unwrap(), bytes);
        prop_assert_eq!(back.decision.digest().unwrap(), r.decision.digest().unwrap());
    }

    #[test]
    fn any_change_changes_what_is_hashed_and_signed(r in record(), which in 0usize..7) {
        let mut m = r.clone();
        match which {
            0 => m.decision.title.push('!'),
            1 => m.decision.body.push('!'),
            2 => { m.decision.payload.insert("zz_added".into(), Value::from(1)); }
            3 => m.seq ^= 1,
            4 => m.approvals[0].signed_at = Timestamp::from_unix_nanos(m.approvals[0].signed_at.unix_nanos() + 1).unwrap(),
            5 => m.recorded_at = Timestamp::from_unix_nanos(m.recorded_at.unix_nanos() + 1000).unwrap(),
            _ => m.decision.kind.push_str(".x"),
        }
        prop_assert_ne!(m.leaf_hash().unwrap(), r.leaf_hash().unwrap());
        prop_assert_ne!(m.notary_message().unwrap(), r.notary_message().unwrap());
        let d = r.decision.digest().unwrap();
        let a = &r.approvals[0];
        let mut later = a.clone();
        later.signed_at = Timestamp::from_unix_nanos(a.signed_at.unix_nanos() + 1).unwrap();
        prop_assert_ne!(later.message(&d).unwrap(), a.message(&d).unwrap());
        let mut other_key = a.clone();
        other_key.key_id = KeyId::derive(Algorithm::EcdsaP256, b"other");
        prop_assert_ne!(other_key.message(&d).unwrap(), a.message(&d).unwrap());
    }
}
