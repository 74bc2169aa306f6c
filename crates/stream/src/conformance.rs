//! The conformance suite every [`EventStream`] backend runs on an empty store, through the
//! trait only. `sample_event(seq)` builds real, canonical records.

use futures::StreamExt;
use triplicate_core::digest::leaf_hash;
use triplicate_core::{
    Algorithm, Approval, Decision, KeyId, NotarySignature, Timestamp, UnsignedRecord,
};

use crate::{AppendRequest, DecisionRecorded, EventStream, ExpectedRevision, StreamError};

/// A canonical record at `seq` for a decision derived from `seq` and `variant`, as an event.
pub fn sample_event(seq: u64, variant: u8) -> DecisionRecorded {
    let id = {
        // Version 7, variant bits, and the seq in the random part so ids are distinct.
        let mut b = [0u8; 16];
        b[6] = 0x70;
        b[8] = 0x80 | (variant & 0x3f);
        b[9..].copy_from_slice(&(seq + 1).to_be_bytes()[1..]);
        uuid::Uuid::from_bytes(b)
    };
    let decision = Decision::from_json(
        serde_json::json!({
            "id": id.to_string(),
            "kind": "budget.approval",
            "title": format!("Motion {seq}"),
            "body": "x".repeat(900),
            "payload": {"seq": seq, "variant": variant},
            "proposed_at": "2026-11-20T09:30:00Z",
        })
        .to_string()
        .as_bytes(),
    )
    .expect("sample decision");
    let approvals = vec![Approval {
        key_id: KeyId::derive(Algorithm::Ed25519, &[1; 32]),
        alg: Algorithm::Ed25519,
        signature: vec![7; 64],
        signed_at: "2026-11-20T09:45:00Z".parse::<Timestamp>().expect("time"),
    }];
    let record = UnsignedRecord {
        version: 1,
        seq,
        decision,
        approvals,
        recorded_at: "2026-11-20T10:00:00Z".parse().expect("time"),
    }
    .with_notary(NotarySignature {
        key_id: KeyId::derive(Algorithm::Ed25519, &[9; 32]),
        alg: Algorithm::Ed25519,
        signature: vec![8; 64],
    });
    let bytes = record.to_bytes().expect("bytes");
    DecisionRecorded {
        seq,
        decision_id: id,
        leaf_hash: leaf_hash(&bytes),
        record_bytes: bytes,
    }
}

fn batch(range: std::ops::Range<u64>) -> Vec<AppendRequest> {
    range
        .map(|s| AppendRequest::new_decision(sample_event(s, 0)))
        .collect()
}

/// Runs every check; panics with the broken guarantee.
pub async fn run<S: EventStream>(s: &S) {
    assert_eq!(s.highest_seq().await.expect("highest"), None);
    let out = s.append(batch(0..3)).await.expect("append 0..3");
    assert_eq!((out.appended, out.already_present), (3, 0));
    let out = s.append(batch(3..1003)).await.expect("append 3..1003");
    assert_eq!(out.appended, 1000);
    assert_eq!(s.highest_seq().await.expect("highest"), Some(1002));

    // Idempotent retries, also overlapping new events.
    let out = s.append(batch(1000..1003)).await.expect("retry");
    assert_eq!((out.appended, out.already_present), (0, 3));
    let out = s.append(batch(1001..1005)).await.expect("overlap");
    assert_eq!((out.appended, out.already_present), (2, 2));

    // Refusals change nothing.
    let before = s.highest_seq().await.expect("highest");
    let other = AppendRequest::new_decision(sample_event(7, 1));
    match s.append(vec![other]).await {
        Err(StreamError::SeqConflict {
            seq,
            stored,
            offered,
        }) => {
            assert_eq!(seq, 7);
            assert_ne!(stored, offered);
        }
        r => panic!("expected a seq conflict, got {r:?}"),
    }
    // The same decision again at a new seq.
    let mut again = sample_event(5, 0);
    let mut r = triplicate_core::Record::from_canonical_bytes(&again.record_bytes).expect("r");
    r.seq = 1005;
    again.record_bytes = r.to_bytes().expect("bytes");
    again.seq = 1005;
    again.leaf_hash = leaf_hash(&again.record_bytes);
    assert!(matches!(
        s.append(vec![AppendRequest::new_decision(again)]).await,
        Err(StreamError::DecisionConflict { stored_seq: 5, .. })
    ));
    assert!(matches!(
        s.append(batch(1010..1012)).await,
        Err(StreamError::Gap {
            expected: 1005,
            got: 1010
        })
    ));
    let mut bad = sample_event(1005, 0);
    bad.leaf_hash[0] ^= 1;
    assert!(matches!(
        s.append(vec![AppendRequest::new_decision(bad)]).await,
        Err(StreamError::InvalidEvent { index: 0, .. })
    ));
    let mut bad = sample_event(1005, 0);
    bad.seq = 1006;
    assert!(matches!(
        s.append(vec![AppendRequest::new_decision(bad)]).await,
        Err(StreamError::InvalidEvent { .. })
    ));
    // A good event followed by a conflicting one: neither is written.
    let mixed = vec![
        AppendRequest::new_decision(sample_event(1005, 0)),
        AppendRequest {
            event: sample_event(1006, 0),
            expected: ExpectedRevision::Exact(3),
        },
    ];
    assert!(matches!(
        s.append(mixed).await,
        Err(StreamError::WrongExpectedRevision { .. })
    ));
    assert_eq!(s.highest_seq().await.expect("highest"), before);

    // Reads: one stream, the global order in pages.
    let e = sample_event(42, 0);
    let one = s.read_stream(&e.stream_id()).await.expect("read stream");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].revision, 0);
    assert_eq!(one[0].event, e);
    assert!(s
        .read_stream("decision-00000000-0000-7000-8000-000000000000")
        .await
        .expect("empty")
        .is_empty());
    let mut from = 0;
    let mut seqs = Vec::new();
    loop {
        let page = s.read_all(from, 128).await.expect("read all");
        let mut last = None;
        for ev in &page.events {
            assert!(last.is_none_or(|l| ev.position > l));
            last = Some(ev.position);
            seqs.push(ev.event.seq);
            assert_eq!(ev.event.leaf_hash, leaf_hash(&ev.event.record_bytes));
        }
        match page.next {
            Some(n) => from = n,
            None => break,
        }
    }
    assert_eq!(seqs, (0..1005).collect::<Vec<_>>());

    // Subscribe: catch up from the start, then receive a live append.
    let mut sub = s.subscribe(0);
    for want in 0..1005u64 {
        let ev = sub.next().await.expect("catch-up event").expect("ok");
        assert_eq!(ev.event.seq, want);
    }
    let live = tokio::time::timeout(std::time::Duration::from_millis(200), sub.next()).await;
    assert!(live.is_err(), "nothing new yet");
    s.append(batch(1005..1007)).await.expect("append live");
    for want in 1005..1007u64 {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(5), sub.next())
            .await
            .expect("live event in time")
            .expect("stream open")
            .expect("ok");
        assert_eq!(ev.event.seq, want);
    }
}
