//! Realistic sample events for tests and benchmarks (feature `testkit`): real records built
//! with `triplicate-core`, shaped like the ones the write path makes (a `budget.approval`
//! decision with a nested payload, two Ed25519 approvals, the notary's signature; ~1.2 KB of
//! canonical bytes). Signatures are deterministic pseudo-random bytes, not real signatures: the
//! stream checks a record's form and hash, not its signatures (that is the verifier's job).
//!
//! Everything is a function of its arguments, so a test can rebuild the event it expects.

use sha2::{Digest, Sha256};
use triplicate_core::{
    Algorithm, Approval, Decision, KeyId, NotarySignature, Record, Timestamp, UnsignedRecord,
    RECORD_VERSION,
};
use uuid::Uuid;

use crate::{AppendRequest, DecisionRecorded};

/// `n` pseudo-random bytes for `label` and `i`.
fn noise(label: &str, i: u64, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut block = 0u64;
    while out.len() < n {
        let mut h = Sha256::new();
        h.update(label.as_bytes());
        h.update(i.to_be_bytes());
        h.update(block.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        block += 1;
    }
    out.truncate(n);
    out
}

/// 2026-11-20T09:00:00Z, the fixtures' epoch.
const EPOCH_MS: u64 = 1_795_683_600_000;

fn at_ms(ms: u64) -> Timestamp {
    Timestamp::from_unix_nanos(i128::from(ms) * 1_000_000).expect("fixture times are in range")
}

/// The id of sample decision `n`: a UUIDv7 whose time part grows with `n`, as ids minted in
/// order do.
pub fn decision_id(n: u64) -> Uuid {
    let mut r = [0u8; 10];
    r.copy_from_slice(&noise("decision-id", n, 10));
    uuid::Builder::from_unix_timestamp_millis(EPOCH_MS + n * 1_000, &r).into_uuid()
}

/// Sample decision `decision` recorded at `seq`; `variant` changes the title, so the same seq
/// and decision can be given other bytes.
pub fn record(seq: u64, decision: u64, variant: u8) -> Record {
    let n = decision;
    let json = serde_json::json!({
        "id": decision_id(n).to_string(),
        "kind": "budget.approval",
        "title": format!("Approve the Q{} operating budget, line {n}{}", n % 4 + 1,
            if variant == 0 { String::new() } else { format!(" (variant {variant})") }),
        "body": format!(
            "The board approves the operating budget for the quarter as tabled by the treasurer, \
             including the infrastructure line and the audit reserve. Motion {n} carried after \
             discussion; the secretary is instructed to notify the finance committee."
        ),
        "payload": {
            "amount": {"currency": "EUR", "minor_units": 1_250_000 + n},
            "cost_centre": format!("CC-{:04}", n % 10_000),
            "fiscal_year": 2026,
            "lines": [
                {"code": "infra", "minor_units": 800_000},
                {"code": "audit-reserve", "minor_units": 450_000 + n}
            ]
        },
        "proposed_at": at_ms(EPOCH_MS + n * 1_000).to_string(),
    });
    // The JSON above is valid by construction; a refusal here is a bug in this fixture.
    let decision = Decision::from_json(json.to_string().as_bytes()).expect("sample decision");
    let mut approvals: Vec<Approval> = [[1u8; 32], [2u8; 32]]
        .iter()
        .enumerate()
        .map(|(k, public)| Approval {
            key_id: KeyId::derive(Algorithm::Ed25519, public),
            alg: Algorithm::Ed25519,
            signature: noise("approval", n * 2 + k as u64, 64),
            signed_at: at_ms(EPOCH_MS + n * 1_000 + 300_000 + k as u64 * 1_000),
        })
        .collect();
    approvals.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    UnsignedRecord {
        version: RECORD_VERSION,
        seq,
        decision,
        approvals,
        recorded_at: at_ms(EPOCH_MS + n * 1_000 + 600_000),
    }
    .with_notary(NotarySignature {
        key_id: KeyId::derive(Algorithm::Ed25519, &[9u8; 32]),
        alg: Algorithm::Ed25519,
        signature: noise("notary", seq ^ (u64::from(variant) << 56), 64),
    })
}

/// The event for [`record`]`(seq, decision, variant)`.
pub fn event_with(seq: u64, decision: u64, variant: u8) -> DecisionRecorded {
    DecisionRecorded::from_record(&record(seq, decision, variant)).expect("sample record bytes")
}

/// The usual event at `seq`: decision number `seq`, variant 0.
pub fn event(seq: u64) -> DecisionRecorded {
    event_with(seq, seq, 0)
}

/// New-decision appends of [`event`] for every seq in `seqs`.
pub fn batch(seqs: std::ops::Range<u64>) -> Vec<AppendRequest> {
    seqs.map(|s| AppendRequest::new_decision(event(s)))
        .collect()
}
