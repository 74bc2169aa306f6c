//! Records for tests and benchmarks: real `triplicate-core` types, canonical and valid (their
//! signatures are well-formed bytes but sign nothing: the projection never verifies them).

#![allow(clippy::expect_used)]

use serde_json::json;
use sha2::{Digest, Sha256};
use triplicate_core::{
    Algorithm, Approval, Attachment, Decision, KeyId, NotarySignature, Record, Timestamp,
    UnsignedRecord, RECORD_VERSION,
};
use uuid::Uuid;

/// The kinds sample records cycle through.
pub const KINDS: [&str; 4] = [
    "budget.approval",
    "policy.change",
    "board.motion",
    "key.rotation",
];
/// The first word of sample titles, by `seq % 5`.
pub const TITLE_WORDS: [&str; 5] = ["Budget", "Policy", "Treasury", "Charter", "Audit"];

/// A deterministic UUIDv7 for `seq`: the seq in the random bits, a timestamp derived from it.
pub fn sample_id(seq: u64) -> Uuid {
    let mut b = [0u8; 16];
    let ms = 1_790_000_000_000u64 + seq;
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70;
    b[8] = 0x80;
    b[9..].copy_from_slice(&(seq + 1).to_be_bytes()[1..]);
    Uuid::from_bytes(b)
}

/// The approver keys sample records draw from (Ed25519 key ids of fixed public keys).
pub fn approver_keys() -> Vec<KeyId> {
    (1u8..=5)
        .map(|k| KeyId::derive(Algorithm::Ed25519, &[k; 32]))
        .collect()
}

/// The notary key id of sample records.
pub fn notary_key() -> KeyId {
    KeyId::derive(Algorithm::Ed25519, &[9; 32])
}

fn ts(nanos: i128) -> Timestamp {
    Timestamp::from_unix_nanos(nanos).expect("sample time in range")
}

/// Deterministic pseudo-random bytes (a stand-in for a signature).
pub fn pseudo_random(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut counter = 0u32;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(seed);
        h.update(counter.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

/// Signs with nothing: a record from its parts, with a pseudo-random notary signature.
pub fn notarise(
    seq: u64,
    decision: Decision,
    mut approvals: Vec<Approval>,
    recorded_at: Timestamp,
) -> Record {
    approvals.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    UnsignedRecord {
        version: RECORD_VERSION,
        seq,
        decision,
        approvals,
        recorded_at,
    }
    .with_notary(NotarySignature {
        key_id: notary_key(),
        alg: Algorithm::Ed25519,
        signature: pseudo_random(&seq.to_be_bytes(), 64),
    })
}

/// A varied, valid record at `seq`. Its decision id depends on `seq` only; `variant` changes
/// the body, so `sample_record(s, 1)` is other content for the same seq and decision.
///
/// Shapes by seq: kind `KINDS[seq % 4]`; title starts with `TITLE_WORDS[seq % 5]` and ends in
/// `Motion <seq>`; one to three approvers (of [`approver_keys`]); times with nanoseconds;
/// attachments on two thirds of them (one without a name); `seq % 5 == 4` (from 9 on)
/// supersedes `seq - 5`, making one long chain; `seq % 5 == 3` (from 3 on) supersedes
/// `seq - 3`, making short ones.
pub fn sample_record(seq: u64, variant: u8) -> Record {
    let base: i128 = 1_790_000_000 * 1_000_000_000; // 2026-09-21
    let proposed = base + i128::from(seq) * 60_000_000_000 + i128::from(seq % 1000) * 1_001;
    let recorded = proposed + 3_600_000_000_000 + i128::from(seq % 7) * 123_456_789;
    let supersedes = match seq % 5 {
        4 if seq >= 9 => Some(sample_id(seq - 5)),
        3 => Some(sample_id(seq - 3)),
        _ => None,
    };
    let attachments = match seq % 3 {
        0 => vec![Attachment {
            sha256: hex::encode(Sha256::digest(seq.to_be_bytes())),
            media_type: "application/pdf".into(),
            size: 48_213 + seq,
            name: Some(format!("minutes-{seq}.pdf")),
        }],
        1 => vec![
            Attachment {
                sha256: hex::encode(Sha256::digest((seq + 1_000_000).to_be_bytes())),
                media_type: "text/csv".into(),
                size: 0,
                name: None,
            },
            Attachment {
                sha256: hex::encode(Sha256::digest((seq + 2_000_000).to_be_bytes())),
                media_type: "image/png".into(),
                size: 9_007_199_254_740_992,
                name: Some("chart — Q3.png".into()),
            },
        ],
        _ => Vec::new(),
    };
    let decision = Decision {
        id: sample_id(seq),
        kind: KINDS[(seq % 4) as usize].into(),
        title: format!("{} review: Motion {seq}", TITLE_WORDS[(seq % 5) as usize]),
        body: format!(
            "Resolved (variant {variant}): the board adopts item {seq} as tabled.\n{}",
            "The secretary records the vote. ".repeat(8)
        ),
        payload: json!({
            "seq": seq,
            "amount": {"currency": "EUR", "minor_units": 1_250_000 + seq},
            "ratio": 0.5,
            "tags": ["q3", "ops"],
        })
        .as_object()
        .cloned()
        .expect("object"),
        proposed_at: ts(proposed),
        supersedes,
        attachments,
    };
    let keys = approver_keys();
    let n = 1 + (seq % 3) as usize;
    let approvals = (0..n)
        .map(|k| {
            let key = keys[(seq as usize + k * 2) % keys.len()].clone();
            Approval {
                signature: pseudo_random(format!("{seq}/{key}").as_bytes(), 64),
                key_id: key,
                alg: Algorithm::Ed25519,
                signed_at: ts(proposed + 60_000_000_000 * (k as i128 + 1) + 7),
            }
        })
        .collect();
    notarise(seq, decision, approvals, ts(recorded))
}

/// Records whose bytes are easy to get wrong in a database, at consecutive seqs from `first`:
/// nanosecond, sub-microsecond, pre-1970 and year 0000/9999 times; payload numbers (`1e-7`,
/// `100`, `0.5`, ±(2^53 − 1), the smallest subnormal, 2^52 − 0.5), strings with
/// `\u0000`, control characters, U+2028, emoji and combining marks; members that sort
/// differently by UTF-16 than by bytes; empty objects and arrays; absent versus present
/// optional fields; ECDSA P-256 approvals; the largest attachment size.
pub fn tricky_records(first: u64) -> Vec<Record> {
    let payloads = [
        json!({"small": 1e-7, "hundred": 100, "half": 0.5, "max_safe": 9_007_199_254_740_991i64,
               "min_safe": -9_007_199_254_740_991i64, "third": 0.333_333_333_333_333_3,
               "half_below_2_52": 4_503_599_627_370_495.5, "tiny": 5e-324, "exp": 1.5e-10,
               "negative": -2.5e-300}),
        json!({"nul": "a\u{0}b", "controls": "\u{1}\u{1f}\u{7f}", "line_sep": "\u{2028}\u{2029}",
               "emoji": "🗳️ vote", "combining": "e\u{301}", "rtl": "שלום", "quote": "\"\\/"}),
        json!({"\u{20ac}": 1, "\r": 2, "\u{fb33}": 3, "1": 4, "\u{1f600}": 5, "\u{80}": 6, "\u{f6}": 7,
               "nested": {"b": [], "a": {}, "c": [null, true, false, [[]]]}}),
        json!({}),
        json!({"deep": {"a": {"b": {"c": {"d": {"e": [1, [2, [3, [4]]]]}}}}}}),
    ];
    let times: [i128; 5] = [
        1_790_000_000_123_456_789,   // nanoseconds
        1_790_000_000_000_000_001,   // one nanosecond past the second
        -1_000_000_000_000_000_001,  // before 1970, sub-microsecond
        -62_167_219_200_000_000_000, // 0000-01-01T00:00:00Z
        253_402_300_799_999_999_999, // 9999-12-31T23:59:59.999999999Z
    ];
    let keys = approver_keys();
    let p256 = KeyId::derive(Algorithm::EcdsaP256, &[4; 65]);
    payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| {
            let seq = first + i as u64;
            let t = times[i % times.len()];
            let decision = Decision {
                id: sample_id(10_000_000 + seq),
                kind: "edge.case_v2".into(),
                title: format!("Édition spéciale — «Motion» {i} 🗳️"),
                body: if i == 3 {
                    String::new()
                } else {
                    "Line one\r\nLine two\ttabbed\n".repeat(i + 1)
                },
                payload: payload.as_object().cloned().expect("object"),
                proposed_at: ts(t),
                supersedes: (i % 2 == 1).then(|| sample_id(seq)),
                attachments: match i {
                    0 => vec![Attachment {
                        sha256: "00".repeat(32),
                        media_type: "application/vnd.example+json".into(),
                        size: 9_007_199_254_740_992,
                        name: Some("n\u{e9}e — «x».json".into()),
                    }],
                    1 => vec![
                        Attachment {
                            sha256: "ff".repeat(32),
                            media_type: "text/plain".into(),
                            size: 1,
                            name: None,
                        },
                        Attachment {
                            sha256: "ab".repeat(32),
                            media_type: "text/plain".into(),
                            size: 2,
                            name: Some("b".into()),
                        },
                    ],
                    _ => Vec::new(),
                },
            };
            let approvals = vec![
                Approval {
                    key_id: keys[i % keys.len()].clone(),
                    alg: Algorithm::Ed25519,
                    signature: pseudo_random(&[i as u8, 1], 64),
                    signed_at: ts(times[(i + 1) % times.len()]),
                },
                Approval {
                    key_id: p256.clone(),
                    alg: Algorithm::EcdsaP256,
                    signature: pseudo_random(&[i as u8, 2], 64),
                    signed_at: ts(times[(i + 2) % times.len()]),
                },
            ];
            notarise(seq, decision, approvals, ts(times[(i + 3) % times.len()]))
        })
        .collect()
}

/// A realistic ~1.2 KB record for benchmarks: a budget approval with a nested payload, two
/// Ed25519 approvals and a notary signature (pseudo-random 64-byte signatures); one in ten
/// references an attachment.
pub fn bench_record(seq: u64) -> Record {
    let keys = approver_keys();
    let proposed = 1_790_000_000_000_000_000i128 + i128::from(seq) * 1_000_123_457;
    let decision = Decision {
        id: sample_id(seq),
        kind: KINDS[(seq % 4) as usize].into(),
        title: format!("Approve the Q{} operating budget, line {seq}", seq % 4 + 1),
        body: format!(
            "The board approves the operating budget for the quarter as tabled by the treasurer, \
             including the infrastructure line and the audit reserve. Motion {seq} carried after \
             discussion; the secretary is instructed to notify the finance committee."
        ),
        payload: json!({
            "amount": {"currency": "EUR", "minor_units": 1_250_000 + seq},
            "cost_centre": format!("CC-{:04}", seq % 10_000),
            "fiscal_year": 2026,
            "lines": [
                {"code": "infra", "minor_units": 800_000},
                {"code": "audit-reserve", "minor_units": 450_000 + seq}
            ],
        })
        .as_object()
        .cloned()
        .expect("object"),
        proposed_at: ts(proposed),
        supersedes: (seq % 10 == 9).then(|| sample_id(seq - 1)),
        // One in ten references the signed minutes.
        attachments: if seq.is_multiple_of(10) {
            vec![Attachment {
                sha256: hex::encode(Sha256::digest(seq.to_be_bytes())),
                media_type: "application/pdf".into(),
                size: 182_734 + seq,
                name: Some(format!("minutes-{seq}.pdf")),
            }]
        } else {
            Vec::new()
        },
    };
    let approvals = (0..2)
        .map(|k| Approval {
            key_id: keys[(seq as usize + k) % keys.len()].clone(),
            alg: Algorithm::Ed25519,
            signature: pseudo_random(format!("{seq}/{k}").as_bytes(), 64),
            signed_at: ts(proposed + 3_600_123_456_789 * (k as i128 + 1)),
        })
        .collect();
    notarise(seq, decision, approvals, ts(proposed + 86_400_000_000_001))
}

/// Canonical bytes of a record.
pub fn bytes(r: &Record) -> Vec<u8> {
    r.to_bytes().expect("canonical bytes")
}
