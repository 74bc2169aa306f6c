//! The conformance suite every [`Projection`] backend runs: `conformance::run(&backend)` on an
//! empty projection, through the trait only. It checks the guarantees the trait documents and
//! panics naming the one that broke. Query answers are checked against a reference computed
//! from the records themselves.

#![allow(clippy::expect_used)]

use std::collections::{BTreeSet, HashSet};

use triplicate_core::digest::leaf_hash;
use triplicate_core::{CanonicalProof, KeyId, Record, Timestamp};
use uuid::Uuid;

use crate::fixtures::{approver_keys, bytes, sample_id, sample_record, tricky_records};
use crate::query::title_words;
use crate::{
    Cursor, DecisionQuery, Projection, ProjectionError, Rederived, RemovalRequest, RepairRequest,
    TimeRange, MAX_RANGE,
};

/// Every stored record's re-derived bytes, and the highest seq: what "unchanged" compares.
pub async fn snapshot<P: Projection>(p: &P) -> (Option<u64>, Vec<(u64, Rederived)>) {
    let highest = p.highest_seq().await.expect("highest seq");
    let mut out = Vec::new();
    if let Some(h) = highest {
        let mut start = 0;
        while start <= h {
            let end = (start + MAX_RANGE).min(h + 1);
            for r in p.record_bytes(start, end).await.expect("range read") {
                out.push((r.seq, r.content));
            }
            start = end;
        }
    }
    (highest, out)
}

fn batch(records: &[Record]) -> Vec<Vec<u8>> {
    records.iter().map(bytes).collect()
}

fn samples(range: std::ops::Range<u64>) -> Vec<Record> {
    range.map(|s| sample_record(s, 0)).collect()
}

/// The record as it reads back from its canonical bytes (a payload float written as an
/// integer, such as `1e15`, reads back as an integer): what a store can give back.
pub fn canonical(r: &Record) -> Record {
    Record::from_canonical_bytes(&bytes(r)).expect("fixtures are canonical records")
}

/// Runs every check; panics with the broken guarantee.
pub async fn run<P: Projection>(p: &P) {
    // Empty.
    assert_eq!(
        p.highest_seq().await.expect("highest"),
        None,
        "conformance needs an empty projection"
    );
    assert!(p
        .record_bytes(0, 10)
        .await
        .expect("empty range read")
        .is_empty());
    assert!(p
        .query(&DecisionQuery::new())
        .await
        .expect("empty query")
        .records
        .is_empty());
    assert_eq!(p.decision(sample_id(0)).await.expect("lookup"), None);
    let out = p
        .apply(Vec::new())
        .await
        .expect("an empty batch is a no-op");
    assert_eq!((out.applied, out.already_present), (0, 0));
    assert!(
        matches!(
            p.apply(batch(&samples(1..2))).await,
            Err(ProjectionError::Gap {
                expected: 0,
                got: 1
            })
        ),
        "an empty projection starts at seq 0"
    );

    // Batches of several sizes, then the records that are easy to store wrongly.
    let mut records: Vec<Record> = Vec::new();
    for (from, to) in [(0u64, 1u64), (1, 3), (3, 100), (100, 300)] {
        let part = samples(from..to);
        let out = p.apply(batch(&part)).await.expect("apply a fresh batch");
        assert_eq!((out.applied, out.already_present), (to - from, 0));
        records.extend(part);
    }
    // The tricky records with the proofs the write path gives (all but the last: a batch may
    // carry fewer proofs than records). They must read back exactly as if checked in full.
    let tricky = tricky_records(300);
    let n_tricky = tricky.len() as u64;
    let (tricky_bytes, mut proofs): (Vec<Vec<u8>>, Vec<Option<CanonicalProof>>) = tricky
        .iter()
        .map(|r| {
            let (b, proof) = r.to_proven_bytes().expect("tricky records are valid");
            (b, Some(proof))
        })
        .unzip();
    assert_eq!(tricky_bytes, batch(&tricky));
    proofs.pop();
    p.apply_proven(tricky_bytes, proofs)
        .await
        .expect("apply the tricky records");
    records.extend(tricky.iter().map(canonical));
    let mut next = 300 + n_tricky;
    // A large (but valid) record: a 32 KiB body.
    let mut big = sample_record(next, 0);
    big.decision.body = "é".repeat(16 * 1024);
    p.apply(vec![bytes(&big)])
        .await
        .expect("apply a large record");
    records.push(big);
    next += 1;
    assert_eq!(p.highest_seq().await.expect("highest"), Some(next - 1));

    rederivation(p, &records).await;
    row_digests(p, &records).await;
    idempotency(p, &mut records, &mut next).await;
    large_batches(p, &mut records, &mut next).await;
    refusals(p, next).await;
    lookups(p, &records).await;
    queries(p, &records).await;
    repairs(p, &records, next).await;
    removals(p, &records, next).await;
}

/// Range reads give back exactly the bytes applied.
async fn rederivation<P: Projection>(p: &P, records: &[Record]) {
    let all = p
        .record_bytes(0, records.len() as u64)
        .await
        .expect("range read");
    assert_eq!(
        all.len(),
        records.len(),
        "a range read returns every stored seq"
    );
    for (got, want) in all.iter().zip(records) {
        assert_eq!(got.seq, want.seq, "range reads are in seq order");
        let want_bytes = bytes(want);
        assert_eq!(
            got.bytes(),
            Some(want_bytes.as_slice()),
            "seq {}: re-derived bytes differ from the applied bytes:\n got {:?}\nwant {}",
            want.seq,
            got.bytes().map(String::from_utf8_lossy),
            String::from_utf8_lossy(&want_bytes)
        );
        assert_eq!(got.leaf_hash(), Some(leaf_hash(&want_bytes)));
    }
    let part = p.record_bytes(10, 20).await.expect("sub-range");
    assert_eq!(
        part.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (10..20).collect::<Vec<_>>()
    );
    let beyond = p
        .record_bytes(records.len() as u64 - 2, records.len() as u64 + 50)
        .await
        .expect("range past the end");
    assert_eq!(
        beyond.len(),
        2,
        "seqs the projection lacks are absent, not errors"
    );
    assert!(p.record_bytes(5, 5).await.expect("empty range").is_empty());
    assert!(matches!(
        p.record_bytes(5, 4).await,
        Err(ProjectionError::InvalidQuery(_))
    ));
    assert!(matches!(
        p.record_bytes(0, MAX_RANGE + 1).await,
        Err(ProjectionError::InvalidQuery(_))
    ));
}

/// Row digests computed by the store agree with those computed from the records, part by part,
/// for every way of splitting the range (the tricky and the large records included).
async fn row_digests<P: Projection>(p: &P, records: &[Record]) {
    use crate::row_digest::{of_record_bytes, part_width, PartDigests, RowHashes};
    let n = records.len() as u64;
    let hashes: Vec<RowHashes> = records
        .iter()
        .map(|r| of_record_bytes(&bytes(r)).expect("a record has row hashes"))
        .collect();
    for (start, end, parts) in [
        (0, n, 1u32),
        (0, n, 7),
        (0, n, 64),
        (290, n, 3),
        (5, 6, 1),
        (n - 3, n + 40, 4),
        (n + 1, n + 100, 5),
    ] {
        let mut want = PartDigests::new(start, part_width(start, end, parts));
        for h in hashes.iter().filter(|h| h.seq >= start && h.seq < end) {
            want.add(h);
        }
        let got = p.row_digests(start, end, parts).await.expect("row digests");
        assert_eq!(
            got,
            want.finish(),
            "row digests of {start}..{end} in {parts} parts differ from the records'"
        );
    }
    assert!(p.row_digests(9, 9, 3).await.expect("empty").is_empty());
    assert!(matches!(
        p.row_digests(9, 8, 1).await,
        Err(ProjectionError::InvalidQuery(_))
    ));
}

/// Retries are no-ops; overlapping batches write only what is new.
async fn idempotency<P: Projection>(p: &P, records: &mut Vec<Record>, next: &mut u64) {
    let retry = batch(&records[200..300]);
    let out = p.apply(retry).await.expect("retry");
    assert_eq!(
        (out.applied, out.already_present),
        (0, 100),
        "a retry writes nothing"
    );
    let tail = records[records.len() - 3..].to_vec();
    let new = samples(*next..*next + 4);
    let mut overlap = batch(&tail);
    overlap.extend(batch(&new));
    let out = p.apply(overlap).await.expect("overlapping batch");
    assert_eq!((out.applied, out.already_present), (4, 3));
    records.extend(new);
    *next += 4;
    assert_eq!(p.highest_seq().await.expect("highest"), Some(*next - 1));
}

/// Batches larger than one validation chunk: refusals in a later chunk write nothing of the
/// earlier ones; retries overlap stored records across chunks.
async fn large_batches<P: Projection>(p: &P, records: &mut Vec<Record>, next: &mut u64) {
    let n = *next;
    let before = snapshot(p).await;
    let fresh = samples(n..n + 900);
    // An invalid record late in the batch.
    let mut bad = batch(&fresh);
    bad[800] = b"not a record".to_vec();
    assert!(matches!(
        p.apply(bad).await,
        Err(ProjectionError::InvalidRecord { index: 800, .. })
    ));
    // Not consecutive at a chunk boundary, and a decision twice across chunks.
    let mut bad = batch(&fresh);
    bad[250] = bytes(&sample_record(n + 251, 0));
    assert!(matches!(
        p.apply(bad).await,
        Err(ProjectionError::InvalidRecord { index: 250, .. })
    ));
    let mut bad = batch(&fresh);
    let mut twin = sample_record(n + 10, 0);
    twin.seq = n + 600;
    bad[600] = bytes(&twin);
    assert!(matches!(
        p.apply(bad).await,
        Err(ProjectionError::InvalidRecord { index: 600, .. })
    ));
    // A decision already stored, late in the batch.
    let mut bad = batch(&fresh);
    let mut stolen = sample_record(5, 0);
    stolen.seq = n + 700;
    bad[700] = bytes(&stolen);
    assert!(matches!(
        p.apply(bad).await,
        Err(ProjectionError::DecisionConflict { stored_seq: 5, offered_seq, .. }) if offered_seq == n + 700
    ));
    assert!(
        snapshot(p).await == before,
        "a refused large batch changed the store"
    );

    let out = p.apply(batch(&fresh[..600])).await.expect("a large batch");
    assert_eq!((out.applied, out.already_present), (600, 0));
    // A retry overlapping 300 stored records, then 600 new ones, across chunks.
    let more = samples(n + 300..n + 1200);
    let out = p
        .apply(batch(&more))
        .await
        .expect("a large overlapping batch");
    assert_eq!((out.applied, out.already_present), (600, 300));
    records.extend(samples(n..n + 1200));
    *next = n + 1200;
    assert_eq!(p.highest_seq().await.expect("highest"), Some(*next - 1));
    let got = p.record_bytes(n, *next).await.expect("range read");
    assert_eq!(got.len(), 1200);
    for (g, r) in got.iter().zip(&records[n as usize..]) {
        assert_eq!(g.bytes(), Some(bytes(r).as_slice()));
    }
}

/// Every refusal names what it refuses and leaves the store as it was.
async fn refusals<P: Projection>(p: &P, next: u64) {
    let before = snapshot(p).await;

    // A proof covers only the bytes it was issued for: the same record spelled otherwise (not
    // canonical) is checked in full and refused, and so is a proof for another seq's record.
    let fresh = sample_record(next, 0);
    let (_, proof) = fresh.to_proven_bytes().expect("a valid record");
    let pretty = serde_json::to_vec_pretty(&fresh).expect("serialise");
    assert!(
        matches!(
            p.apply_proven(vec![pretty], vec![Some(proof)]).await,
            Err(ProjectionError::InvalidRecord { index: 0, .. })
        ),
        "non-canonical bytes are refused whatever proof comes with them"
    );
    let other = sample_record(7, 1);
    assert!(
        matches!(
            p.apply_proven(vec![bytes(&other)], vec![Some(proof)]).await,
            Err(ProjectionError::SeqConflict { seq: 7, .. })
        ),
        "a proof for other bytes changes nothing about the verdict"
    );

    // Other content at a stored seq.
    let other = sample_record(7, 1);
    match p.apply(vec![bytes(&other)]).await {
        Err(ProjectionError::SeqConflict {
            seq,
            stored,
            offered,
        }) => {
            assert_eq!(seq, 7);
            assert_eq!(stored, hex::encode(leaf_hash(&bytes(&sample_record(7, 0)))));
            assert_eq!(offered, hex::encode(leaf_hash(&bytes(&other))));
        }
        r => panic!("expected a seq conflict naming both hashes, got {r:?}"),
    }
    // A retry whose middle record differs: nothing of it is written.
    let mut mixed = batch(&samples(next - 3..next + 1));
    mixed[1] = bytes(&sample_record(next - 2, 1));
    assert!(matches!(
        p.apply(mixed).await,
        Err(ProjectionError::SeqConflict { seq, .. }) if seq == next - 2
    ));
    // A decision already stored, offered again at a new seq.
    let mut again = sample_record(5, 0);
    again.seq = next;
    match p.apply(vec![bytes(&again)]).await {
        Err(ProjectionError::DecisionConflict {
            id,
            stored_seq,
            offered_seq,
            stored,
            offered,
        }) => {
            assert_eq!((id, stored_seq, offered_seq), (sample_id(5), 5, next));
            assert_eq!(stored, hex::encode(leaf_hash(&bytes(&sample_record(5, 0)))));
            assert_eq!(offered, hex::encode(leaf_hash(&bytes(&again))));
        }
        r => panic!("expected a decision conflict, got {r:?}"),
    }
    // The same, behind a good record: neither is written.
    let mut again2 = sample_record(6, 0);
    again2.seq = next + 1;
    assert!(matches!(
        p.apply(vec![bytes(&sample_record(next, 0)), bytes(&again2)])
            .await,
        Err(ProjectionError::DecisionConflict { stored_seq: 6, .. })
    ));
    // A gap after the highest seq.
    assert!(matches!(
        p.apply(batch(&samples(next + 5..next + 7))).await,
        Err(ProjectionError::Gap { expected, got }) if expected == next && got == next + 5
    ));
    // Not consecutive within the batch.
    assert!(matches!(
        p.apply(vec![
            bytes(&sample_record(next, 0)),
            bytes(&sample_record(next + 2, 0))
        ])
        .await,
        Err(ProjectionError::InvalidRecord { index: 1, .. })
    ));
    // One decision twice in a batch.
    let mut twin = sample_record(next, 0);
    twin.seq = next + 1;
    assert!(matches!(
        p.apply(vec![bytes(&sample_record(next, 0)), bytes(&twin)])
            .await,
        Err(ProjectionError::InvalidRecord { index: 1, .. })
    ));
    // Bytes that are not a canonical record.
    let mut spaced = bytes(&sample_record(next, 0));
    spaced.insert(1, b' ');
    for (i, bad) in [
        spaced,
        b"not json".to_vec(),
        b"{}".to_vec(),
        // Oversized: a record larger than any entry the ledger can hold.
        format!(
            "{{\"version\":1,\"seq\":{next},\"pad\":\"{}\"}}",
            "x".repeat(70 * 1024)
        )
        .into_bytes(),
    ]
    .into_iter()
    .enumerate()
    {
        match p.apply(vec![bytes(&sample_record(next, 0)), bad]).await {
            Err(ProjectionError::InvalidRecord { index: 1, reason }) => {
                assert!(!reason.is_empty(), "case {i}: the refusal says why");
            }
            r => panic!("case {i}: expected an invalid record at index 1, got {r:?}"),
        }
    }
    let mut huge = sample_record(next, 0);
    huge.decision.body = "x".repeat(32 * 1024);
    huge.decision
        .payload
        .insert("pad".into(), "y".repeat(15 * 1024).into());
    huge.decision.title = "t".repeat(200);
    let mut huge_bytes = serde_json::to_vec(&huge).expect("json");
    huge_bytes.extend(std::iter::repeat_n(b' ', 20 * 1024));
    match p.apply(vec![huge_bytes]).await {
        Err(ProjectionError::InvalidRecord { index: 0, reason }) => {
            assert!(
                reason.contains("at most"),
                "an oversized record says the limit: {reason}"
            );
        }
        r => panic!("expected an oversized record to be refused, got {r:?}"),
    }

    // More records than a batch may hold (refused before any is parsed).
    let many = vec![bytes(&sample_record(next, 0)); crate::MAX_BATCH + 1];
    assert!(matches!(
        p.apply(many).await,
        Err(ProjectionError::BatchTooLarge { .. })
    ));

    assert!(
        snapshot(p).await == before,
        "a refused batch changed the store"
    );
}

/// Decisions by id.
async fn lookups<P: Projection>(p: &P, records: &[Record]) {
    for r in records.iter().step_by(17).chain(records.last()) {
        let got = p.decision(r.decision.id).await.expect("lookup");
        assert_eq!(got.as_ref(), Some(r), "decision {} by id", r.decision.id);
    }
    assert_eq!(
        p.decision(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001))
            .await
            .expect("lookup"),
        None
    );
}

/// Everything the reference says `q` matches, newest first.
fn reference(records: &[Record], q: &DecisionQuery) -> Vec<u64> {
    let chain = q.chain_of.map(|of| {
        let by_id: std::collections::HashMap<Uuid, &Record> =
            records.iter().map(|r| (r.decision.id, r)).collect();
        let mut up: HashSet<Uuid> = HashSet::from([of]);
        let mut cur = of;
        while let Some(s) = by_id.get(&cur).and_then(|r| r.decision.supersedes) {
            if !up.insert(s) {
                break;
            }
            cur = s;
        }
        let mut down: HashSet<Uuid> = HashSet::from([of]);
        loop {
            let more: Vec<Uuid> = records
                .iter()
                .filter(|r| r.decision.supersedes.is_some_and(|s| down.contains(&s)))
                .map(|r| r.decision.id)
                .filter(|id| !down.contains(id))
                .collect();
            if more.is_empty() {
                break;
            }
            down.extend(more);
        }
        up.union(&down).copied().collect::<HashSet<_>>()
    });
    let words = q.title_words.as_deref().map(title_words);
    let mut out: Vec<u64> = records
        .iter()
        .filter(|r| q.matches_simple(r))
        .filter(|r| chain.as_ref().is_none_or(|c| c.contains(&r.decision.id)))
        .filter(|r| {
            words.as_ref().is_none_or(|ws| {
                let title: BTreeSet<String> = title_words(&r.decision.title).into_iter().collect();
                ws.iter().all(|w| title.contains(w))
            })
        })
        .map(|r| r.seq)
        .collect();
    out.sort_unstable_by(|a, b| b.cmp(a));
    out
}

/// Runs `q` page by page; checks paging and that each record is the one applied.
async fn all_pages<P: Projection>(p: &P, records: &[Record], q: &DecisionQuery) -> Vec<u64> {
    let mut seqs = Vec::new();
    let mut cursor: Option<Cursor> = None;
    for _ in 0..10_000 {
        let mut page_q = q.clone();
        page_q.cursor = cursor.clone();
        let page = p
            .query(&page_q)
            .await
            .unwrap_or_else(|e| panic!("query {q:?}: {e}"));
        let limit = if q.limit == 0 {
            crate::query::DEFAULT_LIMIT
        } else {
            q.limit
        };
        assert!(
            page.records.len() <= limit,
            "a page holds at most its limit"
        );
        for r in &page.records {
            assert_eq!(
                Some(r),
                records.iter().find(|x| x.seq == r.seq),
                "query results are the records applied"
            );
            seqs.push(r.seq);
        }
        match page.next {
            Some(c) => {
                assert_eq!(
                    page.records.len(),
                    limit,
                    "only a full page has a next cursor"
                );
                cursor = Some(c);
            }
            None => return seqs,
        }
    }
    panic!("paging {q:?} did not end");
}

async fn check<P: Projection>(p: &P, records: &[Record], q: DecisionQuery) {
    let want = reference(records, &q);
    let got = all_pages(p, records, &q).await;
    assert_eq!(got, want, "query {q:?} (newest first)");
}

async fn queries<P: Projection>(p: &P, records: &[Record]) {
    let t = |r: &Record| r.recorded_at;
    let nanos =
        |ts: Timestamp, d: i128| Timestamp::from_unix_nanos(ts.unix_nanos() + d).expect("time");
    let everything = reference(records, &DecisionQuery::new());
    assert_eq!(everything.len(), records.len());
    check(p, records, DecisionQuery::new().limit(7)).await;
    check(p, records, DecisionQuery::new().limit(500)).await;
    for kind in crate::fixtures::KINDS {
        check(p, records, DecisionQuery::new().kind(kind).limit(30)).await;
    }
    check(p, records, DecisionQuery::new().kind("edge.case_v2")).await;
    check(p, records, DecisionQuery::new().kind("no.such_kind")).await;

    // Time ranges, with boundaries on exact (nanosecond) record times: from is inclusive,
    // until exclusive, and one nanosecond matters.
    let r40 = t(&records[40]);
    let r90 = t(&records[90]);
    check(
        p,
        records,
        DecisionQuery::new().recorded(TimeRange::between(r40, r90)),
    )
    .await;
    check(
        p,
        records,
        DecisionQuery::new().recorded(TimeRange::between(nanos(r40, 1), nanos(r90, 1))),
    )
    .await;
    check(
        p,
        records,
        DecisionQuery::new().recorded(TimeRange::between(nanos(r40, -1), r90)),
    )
    .await;
    check(
        p,
        records,
        DecisionQuery::new().recorded(TimeRange {
            from: Some(r90),
            until: None,
        }),
    )
    .await;
    check(
        p,
        records,
        DecisionQuery::new().recorded(TimeRange {
            from: None,
            until: Some(r40),
        }),
    )
    .await;
    let a = records[120].decision.proposed_at;
    let b = records[121].decision.proposed_at;
    check(
        p,
        records,
        DecisionQuery::new().proposed(TimeRange::between(a, b)),
    )
    .await;
    check(
        p,
        records,
        DecisionQuery::new().proposed(TimeRange::between(nanos(a, 1), b)),
    )
    .await;
    // The tricky records' times: before 1970, year 0000 and 9999.
    let shifted = |ts: Timestamp, d: i128| Timestamp::from_unix_nanos(ts.unix_nanos() + d).ok();
    for r in &records[300..305] {
        let at = r.recorded_at;
        check(
            p,
            records,
            DecisionQuery::new().recorded(TimeRange {
                from: Some(at),
                until: shifted(at, 1),
            }),
        )
        .await;
        let at = r.decision.proposed_at;
        check(
            p,
            records,
            DecisionQuery::new().proposed(TimeRange {
                from: shifted(at, -1),
                until: Some(at),
            }),
        )
        .await;
        check(
            p,
            records,
            DecisionQuery::new().proposed(TimeRange {
                from: shifted(at, 1),
                until: None,
            }),
        )
        .await;
    }

    // Approvers.
    let mut keys: Vec<KeyId> = approver_keys();
    keys.push(
        records[300]
            .approvals
            .last()
            .expect("approval")
            .key_id
            .clone(),
    );
    for k in keys {
        check(p, records, DecisionQuery::new().approver(k).limit(100)).await;
    }

    // Supersession.
    check(p, records, DecisionQuery::new().supersedes(sample_id(4))).await;
    check(p, records, DecisionQuery::new().supersedes(sample_id(0))).await;
    for of in [0u64, 3, 4, 14, 299, 1] {
        check(
            p,
            records,
            DecisionQuery::new().chain_of(sample_id(of)).limit(25),
        )
        .await;
    }
    check(p, records, DecisionQuery::new().chain_of(sample_id(99_999))).await;

    // Words of the title.
    for text in [
        "budget",
        "Budget MOTION",
        "motion 42",
        "spéciale",
        "AUDIT review 5",
        "nowhere",
    ] {
        check(p, records, DecisionQuery::new().title_words(text).limit(40)).await;
    }

    // Filters together.
    check(
        p,
        records,
        DecisionQuery::new()
            .kind("policy.change")
            .approver(approver_keys()[1].clone())
            .recorded(TimeRange::between(r40, nanos(t(&records[250]), 1)))
            .title_words("review")
            .limit(5),
    )
    .await;
    check(
        p,
        records,
        DecisionQuery::new()
            .chain_of(sample_id(14))
            .kind("budget.approval"),
    )
    .await;

    // Bad queries are refused, not guessed at.
    let page = p
        .query(&DecisionQuery::new().kind("budget.approval").limit(3))
        .await
        .expect("page");
    let cursor = page.next.expect("more than one page");
    assert!(
        matches!(
            p.query(&DecisionQuery::new().kind("policy.change").after(cursor))
                .await,
            Err(ProjectionError::InvalidQuery(_))
        ),
        "a cursor is bound to its filters"
    );
    assert!(matches!(
        p.query(&DecisionQuery::new().after(Cursor::from_string("garbage")))
            .await,
        Err(ProjectionError::InvalidQuery(_))
    ));
    assert!(matches!(
        p.query(&DecisionQuery::new().limit(crate::query::MAX_LIMIT + 1))
            .await,
        Err(ProjectionError::InvalidQuery(_))
    ));
    assert!(matches!(
        p.query(&DecisionQuery::new().title_words("!!")).await,
        Err(ProjectionError::InvalidQuery(_))
    ));
}

/// The reconciler's repair: replaces one seq's rows, logs it, and is refused when it would
/// break an invariant.
async fn repairs<P: Projection>(p: &P, records: &[Record], next: u64) {
    let seq = 10u64;
    let good = bytes(&records[seq as usize]);
    let drifted = bytes(&sample_record(seq, 1));
    let req = |b: &[u8]| RepairRequest {
        seq,
        record_bytes: b.to_vec(),
        reason: "conformance: projection drift".into(),
        run_id: "run-conformance".into(),
    };

    let out = p.repair(req(&drifted)).await.expect("repair");
    assert!(out.changed);
    assert!(out.repair_id.is_some(), "a change is logged");
    assert_eq!(out.old_leaf_hash, Some(leaf_hash(&good)));
    assert_eq!(out.new_leaf_hash, leaf_hash(&drifted));
    assert_eq!(
        p.record_bytes(seq, seq + 1).await.expect("read")[0].bytes(),
        Some(drifted.as_slice())
    );
    assert_eq!(
        p.decision(sample_id(seq)).await.expect("lookup"),
        Some(canonical(&sample_record(seq, 1)))
    );
    // The same repair again changes nothing and logs nothing.
    let again = p.repair(req(&drifted)).await.expect("repeat repair");
    assert!(!again.changed);
    assert_eq!(again.repair_id, None);
    // Back to the ledger's content; an apply of it is then a retry again.
    let back = p.repair(req(&good)).await.expect("repair back");
    assert!(back.changed);
    assert!(
        back.repair_id > out.repair_id,
        "repairs are numbered in order"
    );
    let retry = p
        .apply(vec![good.clone()])
        .await
        .expect("retry after repair");
    assert_eq!((retry.applied, retry.already_present), (0, 1));

    let before = snapshot(p).await;
    // The record must be for the seq repaired.
    assert!(matches!(
        p.repair(RepairRequest {
            seq: 11,
            ..req(&good)
        })
        .await,
        Err(ProjectionError::InvalidRepair { seq: 11, .. })
    ));
    // A reason and a run id are required.
    assert!(matches!(
        p.repair(RepairRequest {
            reason: " ".into(),
            ..req(&good)
        })
        .await,
        Err(ProjectionError::InvalidRepair { .. })
    ));
    assert!(matches!(
        p.repair(RepairRequest {
            run_id: String::new(),
            ..req(&good)
        })
        .await,
        Err(ProjectionError::InvalidRepair { .. })
    ));
    // Not a canonical record.
    assert!(matches!(
        p.repair(req(b"{}")).await,
        Err(ProjectionError::InvalidRepair { .. })
    ));
    // A decision id stored at another seq.
    let mut stolen = sample_record(11, 0);
    stolen.seq = seq;
    assert!(matches!(
        p.repair(req(&bytes(&stolen))).await,
        Err(ProjectionError::DecisionConflict {
            stored_seq: 11,
            offered_seq: 10,
            ..
        })
    ));
    // Past the highest seq: that is an apply, not a repair.
    let beyond = bytes(&sample_record(next, 0));
    assert!(matches!(
        p.repair(RepairRequest {
            seq: next,
            ..req(&beyond)
        })
        .await,
        Err(ProjectionError::InvalidRepair { .. })
    ));
    assert!(
        snapshot(p).await == before,
        "a refused repair changed the store"
    );
}

/// The reconciler's removal of a suffix of seqs the ledger lacks: every seq from `from_seq`
/// up goes, each is reported with its old leaf hash, the rest stays byte for byte, and the
/// projection takes the next records again afterwards.
async fn removals<P: Projection>(p: &P, records: &[Record], next: u64) {
    let req = |from_seq: u64| RemovalRequest {
        from_seq,
        reason: "conformance: rows the ledger lacks".into(),
        run_id: "run-conformance".into(),
    };
    // Nothing stored from there up: nothing removed, nothing changed.
    let before = snapshot(p).await;
    let none = p.remove_from(req(next + 5)).await.expect("remove nothing");
    assert!(none.removed.is_empty());
    // A reason and a run id are required.
    assert!(matches!(
        p.remove_from(RemovalRequest {
            reason: String::new(),
            ..req(next - 2)
        })
        .await,
        Err(ProjectionError::InvalidRepair { .. })
    ));
    assert!(matches!(
        p.remove_from(RemovalRequest {
            run_id: " ".into(),
            ..req(next - 2)
        })
        .await,
        Err(ProjectionError::InvalidRepair { .. })
    ));
    assert!(
        snapshot(p).await == before,
        "a refused or empty removal changed the store"
    );

    // The last two seqs go, with their leaf hashes.
    let out = p.remove_from(req(next - 2)).await.expect("remove");
    let expected: Vec<(u64, Option<triplicate_core::Hash>)> = (next - 2..next)
        .map(|s| (s, Some(leaf_hash(&bytes(&records[s as usize])))))
        .collect();
    assert_eq!(out.removed, expected);
    assert_eq!(p.highest_seq().await.expect("highest"), Some(next - 3));
    assert_eq!(
        p.decision(sample_id(next - 1)).await.expect("lookup"),
        None,
        "a removed decision is gone"
    );
    let after = snapshot(p).await;
    assert_eq!(
        after.1,
        before.1[..before.1.len() - 2].to_vec(),
        "the rows below the removal are untouched"
    );
    // The same removal again removes nothing.
    assert!(p
        .remove_from(req(next - 2))
        .await
        .expect("again")
        .removed
        .is_empty());
    // The projection takes the records again, as the catch-up worker would bring them.
    let back = p
        .apply(batch(&records[(next - 2) as usize..next as usize]))
        .await
        .expect("re-apply");
    assert_eq!((back.applied, back.already_present), (2, 0));
    assert!(snapshot(p).await == before, "back as it was");
}
