//! The conformance suite every [`EventStream`] backend runs (feature `testkit`):
//! `conformance::run(&store).await` on a fresh, empty store. It checks each guarantee the
//! trait documents, through the trait alone, and panics naming the one that broke.
//!
//! What it cannot check through the trait — durability across a reopen, a closed or
//! unreachable store — each backend's own tests cover.

use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use triplicate_core::digest::leaf_hash;

use crate::fixtures::{batch, decision_id, event, event_with};
use crate::{
    AppendRequest, DecisionRecorded, EventProblem, EventStream, ExpectedRevision, Position,
    StoredEvent, StreamError, MAX_EVENT_BYTES,
};

/// How long a subscription may take to deliver a live event before the suite gives up. A
/// failure guard, not a timing assertion: backends deliver in milliseconds.
const LIVE_DEADLINE: Duration = Duration::from_secs(20);

/// Runs every check on an empty store.
pub async fn run<S: EventStream>(s: &S) {
    empty_store(s).await;
    let mut h = first_appends(s).await;
    h = idempotent_retries(s, h).await;
    conflicts_write_nothing(s, h).await;
    invalid_events_write_nothing(s, h).await;
    h = expected_revisions(s, h).await;
    batch_limits(s, h).await;
    paging(s, h).await;
    h = subscriptions(s, h).await;
    h = concurrent_appenders(s, h).await;
    final_state(s, h).await;
}

/// Every event in global order, through `read_all`.
async fn everything<S: EventStream>(s: &S) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = s.read_all(after, 257).await.expect("read_all");
        after = page.next_after(after);
        let end = page.end;
        out.extend(page.events);
        if end {
            return out;
        }
    }
}

/// What a refusal must leave unchanged.
async fn snapshot<S: EventStream>(s: &S) -> (Option<u64>, usize, Option<Position>) {
    let all = everything(s).await;
    (
        s.highest_seq().await.expect("highest_seq"),
        all.len(),
        all.last().map(|e| e.position),
    )
}

fn b64(h: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(h)
}

fn one(e: DecisionRecorded) -> Vec<AppendRequest> {
    vec![AppendRequest::new_decision(e)]
}

async fn empty_store<S: EventStream>(s: &S) {
    assert_eq!(
        s.highest_seq().await.expect("highest_seq"),
        None,
        "run the conformance suite on an empty store"
    );
    let page = s.read_all(None, 10).await.expect("read_all");
    assert!(
        page.events.is_empty() && page.end,
        "an empty store reads empty"
    );
    assert!(s
        .read_stream(&event(0).stream_id())
        .await
        .expect("read_stream")
        .is_empty());
    assert!(matches!(
        s.append(Vec::new()).await,
        Err(StreamError::EmptyBatch)
    ));
    match s.append(batch(1..3)).await {
        Err(StreamError::Gap { expected, got }) => assert_eq!((expected, got), (0, 1)),
        r => panic!("an empty store starts at seq 0; got {r:?}"),
    }
    assert_eq!(snapshot(s).await, (None, 0, None), "refusals write nothing");
}

/// Appends seqs 0..1000 in uneven batches and reads them back exactly. Returns the highest seq.
async fn first_appends<S: EventStream>(s: &S) -> u64 {
    let out = s.append(batch(0..1)).await.expect("append seq 0");
    assert_eq!((out.appended, out.already_present), (1, 0));
    assert_eq!(out.highest_seq, 0);
    let first = out.last_position.expect("a write has a position");
    let mut last = first;
    for range in [1..2, 2..5, 5..300, 300..1000] {
        let n = range.end - range.start;
        let out = s.append(batch(range.clone())).await.expect("append");
        assert_eq!((out.appended, out.already_present), (n, 0), "{range:?}");
        assert_eq!(out.highest_seq, range.end - 1);
        let p = out.last_position.expect("position");
        assert!(p > last, "positions grow with seq");
        last = p;
    }
    assert_eq!(s.highest_seq().await.expect("highest_seq"), Some(999));

    let all = everything(s).await;
    assert_eq!(all.len(), 1000);
    assert_eq!(all[0].position, first);
    assert_eq!(all[999].position, last);
    for (i, e) in all.iter().enumerate() {
        let want = event(i as u64);
        assert_eq!(e.event, want, "event {i} reads back exactly as written");
        assert_eq!(e.stream_id, want.stream_id());
        assert_eq!(e.revision, 0, "a decision's stream holds one event");
        if i > 0 {
            assert!(
                e.position > all[i - 1].position,
                "global order is seq order"
            );
        }
    }
    let one = s
        .read_stream(&event(42).stream_id())
        .await
        .expect("read_stream");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0], all[42], "read_stream and read_all agree");
    999
}

async fn idempotent_retries<S: EventStream>(s: &S, h: u64) -> u64 {
    let before = snapshot(s).await;
    let out = s.append(batch(h - 49..h + 1)).await.expect("retry");
    assert_eq!((out.appended, out.already_present), (0, 50));
    assert_eq!(out.last_position, None);
    assert_eq!(out.highest_seq, h);
    let out = s.append(batch(0..1)).await.expect("retry of seq 0");
    assert_eq!((out.appended, out.already_present), (0, 1));
    // A retry is recognised whatever its expectation says.
    for expected in [
        ExpectedRevision::Exact(0),
        ExpectedRevision::Exact(7),
        ExpectedRevision::Any,
    ] {
        let out = s
            .append(vec![AppendRequest {
                event: event(3),
                expected,
                proof: None,
            }])
            .await
            .expect("retry with another expectation");
        assert_eq!(out.already_present, 1, "{expected}");
    }
    assert_eq!(snapshot(s).await, before, "retries write nothing");

    // A retry that also extends the store.
    let out = s
        .append(batch(h - 9..h + 21))
        .await
        .expect("overlapping retry");
    assert_eq!((out.appended, out.already_present), (20, 10));
    assert_eq!(out.highest_seq, h + 20);
    h + 20
}

async fn conflicts_write_nothing<S: EventStream>(s: &S, h: u64) {
    let before = snapshot(s).await;

    // Other bytes at a stored seq: same decision, other content.
    let other = event_with(7, 7, 1);
    match s.append(one(other.clone())).await {
        Err(e @ StreamError::SeqConflict { .. }) => {
            let msg = e.to_string();
            let StreamError::SeqConflict {
                seq,
                stored,
                offered,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(seq, 7);
            assert_eq!(stored, event(7).leaf_hash, "names the stored hash");
            assert_eq!(offered, other.leaf_hash, "names the offered hash");
            assert!(
                msg.contains(&b64(&stored)) && msg.contains(&b64(&offered)),
                "{msg}"
            );
        }
        r => panic!("expected a seq conflict, got {r:?}"),
    }
    // Other bytes at a stored seq: another decision entirely.
    assert!(matches!(
        s.append(one(event_with(8, 500_000, 0))).await,
        Err(StreamError::SeqConflict { seq: 8, .. })
    ));
    // A conflict at the end of a retry: nothing of the batch is written.
    let mut b = batch(h - 2..h + 3);
    b[4] = AppendRequest::new_decision(event_with(h + 2, 5, 0));
    match s.append(b).await {
        Err(e @ StreamError::DecisionConflict { .. }) => {
            let msg = e.to_string();
            let StreamError::DecisionConflict {
                stream_id,
                existing_seq,
                existing,
                offered_seq,
                offered,
                in_batch,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(stream_id, event(5).stream_id());
            assert_eq!((existing_seq, offered_seq, in_batch), (5, h + 2, false));
            assert_eq!(existing, event(5).leaf_hash);
            assert_eq!(offered, event_with(h + 2, 5, 0).leaf_hash);
            assert!(
                msg.contains(&b64(&existing)) && msg.contains(&b64(&offered)),
                "{msg}"
            );
        }
        r => panic!("a decision is recorded once; got {r:?}"),
    }
    // Two events for one decision in the same batch.
    let b = vec![
        AppendRequest::new_decision(event(h + 1)),
        AppendRequest::new_decision(event_with(h + 2, h + 1, 0)),
    ];
    match s.append(b).await {
        Err(StreamError::DecisionConflict {
            existing_seq,
            offered_seq,
            in_batch,
            ..
        }) => assert_eq!((existing_seq, offered_seq, in_batch), (h + 1, h + 2, true)),
        r => panic!("two events for one decision in a batch; got {r:?}"),
    }
    // A gap after the highest seq.
    match s.append(batch(h + 3..h + 5)).await {
        Err(StreamError::Gap { expected, got }) => assert_eq!((expected, got), (h + 1, h + 3)),
        r => panic!("expected a gap, got {r:?}"),
    }
    assert_eq!(snapshot(s).await, before, "conflicts write nothing");
}

async fn invalid_events_write_nothing<S: EventStream>(s: &S, h: u64) {
    let before = snapshot(s).await;
    let next = h + 1;

    // Each maker gives an event claiming `seq` that is wrong in one way.
    type Case = (
        &'static str,
        fn(u64) -> DecisionRecorded,
        fn(&EventProblem) -> bool,
    );
    let cases: [Case; 6] = [
        (
            "leaf hash is not the bytes' hash",
            |seq| {
                let mut e = event(seq);
                e.leaf_hash[0] ^= 1;
                e
            },
            |p| matches!(p, EventProblem::LeafHashMismatch { .. }),
        ),
        (
            "seq disagrees with the record",
            |seq| {
                let mut e = event(seq + 1);
                e.seq = seq;
                e
            },
            |p| matches!(p, EventProblem::SeqMismatch { .. }),
        ),
        (
            "decision id disagrees with the record",
            |seq| {
                let mut e = event(seq);
                e.decision_id = decision_id(900_000);
                e
            },
            |p| matches!(p, EventProblem::DecisionMismatch { .. }),
        ),
        (
            "bytes not canonical",
            |seq| {
                let mut e = event(seq);
                e.record_bytes.insert(1, b' ');
                e.leaf_hash = leaf_hash(&e.record_bytes);
                e
            },
            |p| matches!(p, EventProblem::NotACanonicalRecord(_)),
        ),
        (
            "bytes not a record",
            |seq| {
                let mut e = event(seq);
                e.record_bytes = b"not a record".to_vec();
                e.leaf_hash = leaf_hash(&e.record_bytes);
                e
            },
            |p| matches!(p, EventProblem::NotACanonicalRecord(_)),
        ),
        (
            "oversized",
            |seq| {
                let mut e = event(seq);
                e.record_bytes = vec![b' '; MAX_EVENT_BYTES + 1];
                e.leaf_hash = leaf_hash(&e.record_bytes);
                e
            },
            |p| matches!(p, EventProblem::TooLarge { .. }),
        ),
    ];
    for (what, bad, is) in cases {
        // Alone, and after a valid event: neither is written, and the error names the bad one.
        match s.append(one(bad(next))).await {
            Err(StreamError::InvalidEvent {
                index: 0,
                seq,
                problem,
            }) if is(&problem) => assert_eq!(seq, next),
            r => panic!("{what}: got {r:?}"),
        }
        let b = vec![
            AppendRequest::new_decision(event(next)),
            AppendRequest::new_decision(bad(next + 1)),
        ];
        match s.append(b).await {
            Err(StreamError::InvalidEvent {
                index: 1, problem, ..
            }) if is(&problem) => {}
            r => panic!("{what}, second in its batch: got {r:?}"),
        }
    }
    // In a large batch (which a backend may check in parallel) the earliest problem is the one
    // reported, whether it is an invalid event or a conflict.
    let mut b = batch(next..next + 1000);
    b[900].event.leaf_hash[0] ^= 1;
    b[700].event.leaf_hash[0] ^= 1;
    match s.append(b).await {
        Err(StreamError::InvalidEvent { index: 700, .. }) => {}
        r => panic!("the earliest invalid event is reported; got {r:?}"),
    }
    let mut b = batch(h - 99..h + 901);
    b[50] = AppendRequest::new_decision(event_with(h - 49, h - 49, 1));
    b[600].event.leaf_hash[0] ^= 1;
    match s.append(b).await {
        Err(StreamError::SeqConflict { seq, .. }) => assert_eq!(seq, h - 49),
        r => panic!("a conflict before an invalid event is reported first; got {r:?}"),
    }
    let mut b = batch(h - 99..h + 901);
    b[50].event.leaf_hash[0] ^= 1;
    b[600] = AppendRequest::new_decision(event_with(h + 501, 3, 0));
    match s.append(b).await {
        Err(StreamError::InvalidEvent { index: 50, .. }) => {}
        r => panic!("an invalid retry before a conflict is reported first; got {r:?}"),
    }
    match s
        .append(vec![
            AppendRequest::new_decision(event(next)),
            AppendRequest::new_decision(event(next + 2)),
        ])
        .await
    {
        Err(StreamError::InvalidEvent {
            index: 1,
            problem: EventProblem::NotConsecutive { previous },
            ..
        }) => assert_eq!(previous, next),
        r => panic!("a batch holds consecutive seqs; got {r:?}"),
    }
    assert_eq!(snapshot(s).await, before, "invalid events write nothing");
}

async fn expected_revisions<S: EventStream>(s: &S, h: u64) -> u64 {
    let before = snapshot(s).await;
    match s
        .append(vec![AppendRequest {
            event: event(h + 1),
            expected: ExpectedRevision::Exact(0),
            proof: None,
        }])
        .await
    {
        Err(StreamError::WrongExpectedRevision {
            stream_id,
            expected,
            actual,
        }) => {
            assert_eq!(stream_id, event(h + 1).stream_id());
            assert_eq!((expected, actual), (ExpectedRevision::Exact(0), None));
        }
        r => panic!("a new decision's stream is at no revision; got {r:?}"),
    }
    // A new event for an existing decision is a conflict even when the revision matches.
    assert!(matches!(
        s.append(vec![AppendRequest {
            event: event_with(h + 1, 9, 0),
            expected: ExpectedRevision::Exact(0),
            proof: None,
        }])
        .await,
        Err(StreamError::DecisionConflict { .. })
    ));
    assert_eq!(
        snapshot(s).await,
        before,
        "refused expectations write nothing"
    );
    for (seq, expected) in [
        (h + 1, ExpectedRevision::Any),
        (h + 2, ExpectedRevision::NoStream),
    ] {
        let out = s
            .append(vec![AppendRequest {
                event: event(seq),
                expected,
                proof: None,
            }])
            .await
            .expect("a new stream passes NoStream and Any");
        assert_eq!(out.appended, 1);
    }
    h + 2
}

async fn batch_limits<S: EventStream>(s: &S, h: u64) {
    let before = snapshot(s).await;
    let limits = s.limits();
    let e = AppendRequest::new_decision(event(h + 1));
    let too_many = vec![e.clone(); limits.max_batch_events + 1];
    assert!(matches!(
        s.append(too_many).await,
        Err(StreamError::BatchTooLarge { .. })
    ));
    let mut big = e;
    big.event.record_bytes = vec![b' '; MAX_EVENT_BYTES];
    let n = limits.max_batch_bytes / MAX_EVENT_BYTES + 1;
    if n <= limits.max_batch_events {
        assert!(matches!(
            s.append(vec![big; n]).await,
            Err(StreamError::BatchTooLarge { .. })
        ));
    }
    assert_eq!(snapshot(s).await, before, "oversized batches write nothing");
}

async fn paging<S: EventStream>(s: &S, h: u64) {
    let all = everything(s).await;
    assert_eq!(all.len() as u64, h + 1);
    for limit in [1usize, 7, 1000, 5000] {
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let page = s.read_all(after, limit).await.expect("read_all");
            assert!(
                page.events.len() <= limit,
                "a page holds at most `limit` events"
            );
            after = page.next_after(after);
            let end = page.end;
            got.extend(page.events);
            if end {
                break;
            }
        }
        assert_eq!(
            got, all,
            "pages of {limit} cover the global order exactly once"
        );
    }
    let last = all.last().map(|e| e.position);
    let page = s.read_all(last, 10).await.expect("read_all after the end");
    assert!(page.events.is_empty() && page.end);
    let page = s
        .read_all(Some(all[10].position), 3)
        .await
        .expect("read_all from a position");
    assert_eq!(
        page.events,
        all[11..14],
        "reads start strictly after the cursor"
    );
    assert!(!page.end);
}

async fn next_event(
    sub: &mut futures::stream::BoxStream<'static, Result<StoredEvent, StreamError>>,
    what: &str,
) -> StoredEvent {
    match tokio::time::timeout(LIVE_DEADLINE, sub.next()).await {
        Ok(Some(Ok(e))) => e,
        Ok(Some(Err(e))) => panic!("{what}: subscription failed: {e}"),
        Ok(None) => panic!("{what}: subscription ended"),
        Err(_) => panic!("{what}: nothing delivered in {LIVE_DEADLINE:?}"),
    }
}

async fn subscriptions<S: EventStream>(s: &S, h: u64) -> u64 {
    let all = everything(s).await;
    let mut from_start = s.subscribe(None);
    for want in &all {
        assert_eq!(&next_event(&mut from_start, "catch-up").await, want);
    }
    let mut from_middle = s.subscribe(Some(all[10].position));
    assert_eq!(next_event(&mut from_middle, "catch-up").await, all[11]);
    let mut from_end = s.subscribe(all.last().map(|e| e.position));
    // Nothing new yet: neither caught-up subscription may invent an event.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), from_end.next())
            .await
            .is_err(),
        "a caught-up subscription waits"
    );

    // Live: appended after subscribing, delivered in order to every subscriber.
    s.append(batch(h + 1..h + 4)).await.expect("append live");
    for seq in h + 1..h + 4 {
        assert_eq!(next_event(&mut from_start, "live").await.event.seq, seq);
        assert_eq!(next_event(&mut from_end, "live").await.event.seq, seq);
    }
    for want in &all[12..] {
        assert_eq!(&next_event(&mut from_middle, "catch-up").await, want);
    }
    assert_eq!(next_event(&mut from_middle, "live").await.event.seq, h + 1);
    h + 3
}

async fn concurrent_appenders<S: EventStream>(s: &S, h: u64) -> u64 {
    // The same batch from four writers at once: written once, the rest are retries.
    let b = batch(h + 1..h + 101);
    let results = futures::future::join_all((0..4).map(|_| s.append(b.clone()))).await;
    let (mut appended, mut present) = (0, 0);
    for r in results {
        let out = r.expect("concurrent identical appends all succeed");
        appended += out.appended;
        present += out.already_present;
    }
    assert_eq!((appended, present), (100, 300), "written exactly once");
    let h = h + 100;

    // Two different events for one seq at once: one wins, the other is a conflict.
    let (a, b) = (event(h + 1), event_with(h + 1, h + 1, 1));
    let (ra, rb) = futures::join!(s.append(one(a.clone())), s.append(one(b.clone())));
    let winner = match (ra, rb) {
        (Ok(_), Err(StreamError::SeqConflict { stored, .. })) => {
            assert_eq!(stored, a.leaf_hash);
            a
        }
        (Err(StreamError::SeqConflict { stored, .. }), Ok(_)) => {
            assert_eq!(stored, b.leaf_hash);
            b
        }
        other => panic!("exactly one of two racing events wins; got {other:?}"),
    };
    let stored = s
        .read_stream(&winner.stream_id())
        .await
        .expect("read_stream");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event, winner);
    let h = h + 1;

    // Consecutive batches racing: the later one may find a gap, then succeeds on retry.
    let (first, second) = (batch(h + 1..h + 51), batch(h + 51..h + 101));
    let (r1, r2) = futures::join!(s.append(first), s.append(second.clone()));
    r1.expect("the earlier batch always fits");
    match r2 {
        Ok(out) => assert_eq!(out.appended, 50),
        Err(StreamError::Gap { expected, got }) => {
            assert_eq!((expected, got), (h + 1, h + 51));
            s.append(second).await.expect("retry after the gap closed");
        }
        Err(e) => panic!("the later batch fits or finds a gap; got {e}"),
    }
    h + 100
}

async fn final_state<S: EventStream>(s: &S, h: u64) {
    let all = everything(s).await;
    assert_eq!(s.highest_seq().await.expect("highest_seq"), Some(h));
    let seqs: Vec<u64> = all.iter().map(|e| e.event.seq).collect();
    assert_eq!(
        seqs,
        (0..=h).collect::<Vec<_>>(),
        "one event per seq, no gaps"
    );
    for w in all.windows(2) {
        assert!(w[0].position < w[1].position);
    }
    for e in &all {
        assert_eq!(
            e.event.leaf_hash,
            leaf_hash(&e.event.record_bytes),
            "seq {}: stored hash and bytes agree",
            e.event.seq
        );
        assert_eq!(e.stream_id, e.event.stream_id());
    }
}
