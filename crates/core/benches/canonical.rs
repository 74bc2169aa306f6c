//! `cargo bench -p triplicate-core`: what every store's write path and the verifier pay per
//! record, against `serde_jcs` measured in the same run.
//!
//! - *serialise*: `Record::to_bytes()` (the record-shaped writer) vs `serde_jcs::to_vec`.
//! - *validate*: `Record::from_canonical_bytes` (parse, validate, re-canonicalise, compare),
//!   and how much of it the parse alone (`serde_json::from_slice`) takes.
//!
//! Records are ~1.3 KB: a budget decision with a nested payload, two Ed25519 approvals and the
//! notary's signature. Environment: `BENCH_RECORDS` (20000).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use serde_json::json;
use triplicate_core::{
    Algorithm, Approval, Decision, KeyId, NotarySignature, Record, Timestamp, RECORD_VERSION,
};
use uuid::Uuid;

fn ts(nanos: i128) -> Timestamp {
    Timestamp::from_unix_nanos(nanos).expect("in range")
}

fn record(seq: u64) -> Record {
    let proposed = 1_790_000_000_000_000_000i128 + i128::from(seq) * 1_000_123_457;
    let id = Uuid::from_u128(0x0193_6f2e_5a1b_7c3d_8e4f_0000_0000_0000 | u128::from(seq));
    let key = |k: u8| KeyId::derive(Algorithm::Ed25519, &[k; 32]);
    let decision = Decision {
        id,
        kind: "budget.approval".into(),
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
        supersedes: None,
        attachments: Vec::new(),
    };
    let mut approvals: Vec<Approval> = (0..2u8)
        .map(|k| Approval {
            key_id: key(k),
            alg: Algorithm::Ed25519,
            signature: vec![k.wrapping_add(seq as u8); 64],
            signed_at: ts(proposed + 3_600_123_456_789 * (i128::from(k) + 1)),
        })
        .collect();
    approvals.sort_by(|a, b| a.key_id.as_str().cmp(b.key_id.as_str()));
    Record {
        version: RECORD_VERSION,
        seq,
        decision,
        approvals,
        recorded_at: ts(proposed + 86_400_000_000_001),
        notary: NotarySignature {
            key_id: key(9),
            alg: Algorithm::Ed25519,
            signature: vec![9; 64],
        },
    }
}

fn report(what: &str, n: usize, secs: f64, baseline: Option<f64>) {
    let rate = n as f64 / secs;
    let per = secs * 1e6 / n as f64;
    match baseline {
        Some(b) => println!(
            "{what:<58} {rate:>10.0} /s {per:>7.2} µs   {:.2}x",
            b / secs
        ),
        None => println!("{what:<58} {rate:>10.0} /s {per:>7.2} µs   (baseline)"),
    }
}

fn main() {
    let n: usize = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let records: Vec<Record> = (0..n as u64).map(record).collect();
    let bytes: Vec<Vec<u8>> = records.iter().map(|r| r.to_bytes().unwrap()).collect();
    let avg = bytes.iter().map(Vec::len).sum::<usize>() / n;
    println!("{n} records of {avg} bytes on average, one thread");

    let t = Instant::now();
    for r in &records {
        black_box(serde_jcs::to_vec(r).unwrap());
    }
    let jcs = t.elapsed().as_secs_f64();
    report("serialise: serde_jcs::to_vec(record)", n, jcs, None);
    let t = Instant::now();
    for r in &records {
        black_box(r.to_bytes().unwrap());
    }
    report(
        "serialise: Record::to_bytes (record-shaped writer)",
        n,
        t.elapsed().as_secs_f64(),
        Some(jcs),
    );

    let t = Instant::now();
    for b in &bytes {
        black_box(serde_json::from_slice::<Record>(b).unwrap());
    }
    let parse = t.elapsed().as_secs_f64();
    report(
        "parse only: serde_json::from_slice::<Record>",
        n,
        parse,
        None,
    );
    let t = Instant::now();
    for b in &bytes {
        black_box(Record::from_canonical_bytes(b).unwrap());
    }
    report(
        "validate: Record::from_canonical_bytes (vs parse only)",
        n,
        t.elapsed().as_secs_f64(),
        Some(parse),
    );
}
