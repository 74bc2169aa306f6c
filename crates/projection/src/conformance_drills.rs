//! The conformance suite every [`DrillStore`] backend runs: `conformance_drills::run(&backend)`
//! on a store without drills, through the trait only. It checks the guarantees the trait
//! documents and panics naming the one that broke. Expected answers are computed from the
//! drills themselves ([`summary_of`], [`status_of`]), never read back from the store.

#![allow(clippy::expect_used)]

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use triplicate_core::Timestamp;
use uuid::Uuid;

use crate::drills::MAX_SIGNATURE_BYTES;
use crate::reports::{MAX_NAME_BYTES, MAX_REPORTS_PAGE};
use crate::{DrillStatus, DrillStore, DrillSummary, ProjectionError, StoredDrill};

/// A deterministic UUIDv7 for drill `n`: later drills sort after earlier ones.
pub fn sample_drill_id(n: u64) -> Uuid {
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&(1_800_000_000_000 + n * 1000).to_be_bytes()[2..]);
    b[6] = 0x70;
    b[8] = 0x80;
    b[9..].copy_from_slice(&(0xd0_0000_0000 + n).to_be_bytes()[1..]);
    Uuid::from_bytes(b)
}

fn ts(nanos: i128) -> Timestamp {
    Timestamp::from_unix_nanos(nanos).expect("sample time in range")
}

/// A drill report's body: JSON with what a re-serialisation would change (spacing, member
/// order, escapes, a float written long, non-ASCII text), so only a byte-exact store gives it
/// back.
fn body(drill_id: Uuid, scenario: &str) -> Vec<u8> {
    format!(
        "{{\"drill_id\":\"{drill_id}\",  \"scenario\":{scenario:?}, \"z\":2.50000,\"a\":[ ],\
         \"note\":\"caf\u{e9} \\u00e9 \\u0000 \\ud83d\\ude00 \\/ \u{1F5F3}\"}}\n"
    )
    .into_bytes()
}

/// A varied drill `n` of `scenario`: optional fields present or absent, flags and signature
/// lengths cycling with `n`; its digest is the SHA-256 of its body (the projection never checks
/// it) and its signature stands in for the notary's.
pub fn sample_drill(n: u64, scenario: &str, passed: bool) -> StoredDrill {
    let drill_id = sample_drill_id(n);
    let body = body(drill_id, scenario);
    let start = 1_800_000_000_000_000_000i128 + i128::from(n) * 1_000_000_000_000;
    StoredDrill {
        drill_id,
        scenario: scenario.into(),
        // Sub-microsecond parts: a store that keeps only microseconds is caught.
        started_at: ts(start + 123_456_789),
        finished_at: ts(start + 7_000_000_001),
        passed,
        in_place: n.is_multiple_of(2),
        records_before: 10_000 + n,
        records_after: 10_000 + n + u64::from(!passed),
        detect_ms: (!n.is_multiple_of(3)).then_some(40 + n),
        recover_ms: 1_500 + n,
        discrepancies_left: u64::from(!passed) * (n % 4 + 1),
        digest: Sha256::digest(&body).into(),
        key_id: format!("{:016x}", 0x4e07_a000_0000_0000u64 + n),
        alg: if n.is_multiple_of(2) {
            "ed25519"
        } else {
            "ecdsa-p256"
        }
        .into(),
        signature: Sha256::digest(n.to_be_bytes()).repeat(1 + (n % 3) as usize),
        body,
        audit_seq: n.is_multiple_of(2).then_some(3_000 + n),
    }
}

/// A drill with nothing optional and every number zero.
pub fn minimal_drill(n: u64) -> StoredDrill {
    let mut d = sample_drill(n, "m", false);
    d.in_place = true;
    d.records_before = 0;
    d.records_after = 0;
    d.detect_ms = None;
    d.recover_ms = 0;
    d.discrepancies_left = 0;
    d.audit_seq = None;
    d.key_id = "k".into();
    d.alg = "a".into();
    d.signature = vec![0];
    d.body = b"[]".to_vec();
    d.digest = Sha256::digest(&d.body).into();
    // Times before 1970 and at the end of year 9999.
    d.started_at = ts(-1_000_000_000_000_000_001);
    d.finished_at = ts(253_402_300_799_999_999_999);
    d
}

/// A drill at every limit: names of 64 bytes (one in two-byte characters), the longest
/// signature, every number `i64::MAX`.
pub fn maximal_drill(n: u64) -> StoredDrill {
    let mut d = sample_drill(n, "x", true);
    d.scenario = "s".repeat(MAX_NAME_BYTES);
    d.key_id = "é".repeat(MAX_NAME_BYTES / 2);
    d.alg = "a".repeat(MAX_NAME_BYTES);
    d.signature = (0..MAX_SIGNATURE_BYTES).map(|i| (i % 251) as u8).collect();
    let max = i64::MAX as u64;
    d.records_before = max;
    d.records_after = max;
    d.detect_ms = Some(max);
    d.recover_ms = max;
    d.discrepancies_left = max;
    d.audit_seq = Some(max);
    d
}

/// The summary a store must list for `d`.
pub fn summary_of(d: &StoredDrill) -> DrillSummary {
    crate::drills::summary_of(d)
}

/// The status a store must report for these drills (all it holds): per scenario, sorted by
/// scenario in byte order, the drill with the highest id and the passed drill with the
/// highest id.
pub fn status_of(drills: &[StoredDrill]) -> Vec<DrillStatus> {
    let mut by: BTreeMap<&str, (Option<&StoredDrill>, Option<&StoredDrill>)> = BTreeMap::new();
    for d in drills {
        let e = by.entry(d.scenario.as_str()).or_default();
        if e.0.is_none_or(|l| d.drill_id > l.drill_id) {
            e.0 = Some(d);
        }
        if d.passed && e.1.is_none_or(|l| d.drill_id > l.drill_id) {
            e.1 = Some(d);
        }
    }
    by.into_iter()
        .map(|(scenario, (last, passed))| DrillStatus {
            scenario: scenario.to_owned(),
            last: summary_of(last.expect("every scenario has a drill")),
            last_passed: passed.map(summary_of),
        })
        .collect()
}

/// Everything the store answers: every summary, every whole drill, the status. What "nothing
/// changed" compares.
pub async fn snapshot<P: DrillStore>(
    p: &P,
) -> (
    Vec<DrillSummary>,
    Vec<Option<StoredDrill>>,
    Vec<DrillStatus>,
) {
    let summaries = all_summaries(p, MAX_REPORTS_PAGE, None).await;
    let mut whole = Vec::new();
    for s in &summaries {
        whole.push(p.drill(s.drill_id).await.expect("read a drill"));
    }
    let status = p.drill_status().await.expect("read the drill status");
    (summaries, whole, status)
}

/// Every summary (of `scenario`, when given), page by page with `before`, checking each page's
/// order, size and filter.
async fn all_summaries<P: DrillStore>(
    p: &P,
    limit: u32,
    scenario: Option<&str>,
) -> Vec<DrillSummary> {
    let mut out: Vec<DrillSummary> = Vec::new();
    let mut before = None;
    loop {
        let page = p
            .drills(before, limit, scenario.map(str::to_owned))
            .await
            .expect("list drills");
        assert!(page.len() <= limit as usize, "a page holds at most `limit`");
        for w in page.windows(2) {
            assert!(
                w[0].drill_id > w[1].drill_id,
                "newest first (drill_id descending)"
            );
        }
        if let (Some(b), Some(first)) = (before, page.first()) {
            assert!(first.drill_id < b, "a page starts strictly before `before`");
        }
        if let Some(s) = scenario {
            assert!(
                page.iter().all(|d| d.scenario == s),
                "only drills of scenario {s:?}"
            );
        }
        let done = page.len() < limit as usize;
        before = page.last().map(|s| s.drill_id);
        out.extend(page);
        if done || before.is_none() {
            return out;
        }
    }
}

/// The summaries a store holding `known` must list (of `scenario`, when given), newest first.
fn expected(known: &[StoredDrill], scenario: Option<&str>) -> Vec<DrillSummary> {
    let mut want: Vec<DrillSummary> = known
        .iter()
        .filter(|d| scenario.is_none_or(|s| d.scenario == s))
        .map(summary_of)
        .collect();
    want.sort_by_key(|s| std::cmp::Reverse(s.drill_id));
    want
}

/// Runs every check; panics with the broken guarantee.
pub async fn run<P: DrillStore>(p: &P) {
    let mut known = Vec::new();
    empty(p).await;
    round_trips(p, &mut known).await;
    idempotency_and_conflicts(p, &known).await;
    invalid_drills(p, &known).await;
    paging(p, &mut known).await;
    status(p, &mut known).await;
    concurrent_stores(p, &mut known).await;
    assert_eq!(
        all_summaries(p, MAX_REPORTS_PAGE, None).await,
        expected(&known, None),
        "the store holds exactly the drills stored"
    );
}

/// A store without drills answers every read with nothing.
pub async fn empty<P: DrillStore>(p: &P) {
    assert!(
        p.drills(None, 10, None)
            .await
            .expect("list drills")
            .is_empty(),
        "drill conformance needs a store without drills"
    );
    assert!(p
        .drills(None, 10, Some("m".into()))
        .await
        .expect("list drills")
        .is_empty());
    assert_eq!(p.drill(sample_drill_id(1)).await.expect("read"), None);
    assert!(p.drill_status().await.expect("status").is_empty());
}

/// Drills come back exactly as stored: every field, the body and the signature byte for byte.
pub async fn round_trips<P: DrillStore>(p: &P, known: &mut Vec<StoredDrill>) {
    let drills = [
        sample_drill(1000, "projection-loss", true),
        sample_drill(1001, "ledger-tail-corruption", false),
        minimal_drill(1002),
        maximal_drill(1003),
        sample_drill(1004, "é-stream-loss ✓", true),
    ];
    for d in drills {
        assert!(
            p.store_drill(d.clone()).await.expect("store a drill"),
            "a new drill is written (Ok(true))"
        );
        let got = p
            .drill(d.drill_id)
            .await
            .expect("read the drill")
            .expect("the stored drill is found");
        assert_eq!(
            got.body,
            d.body,
            "the body comes back byte for byte:\n got {:?}\nwant {:?}",
            String::from_utf8_lossy(&got.body),
            String::from_utf8_lossy(&d.body)
        );
        assert_eq!(got.signature, d.signature, "the signature byte for byte");
        assert_eq!(got.started_at, d.started_at, "started_at to the nanosecond");
        assert_eq!(
            got.finished_at, d.finished_at,
            "finished_at to the nanosecond"
        );
        assert_eq!(got, d, "every field round-trips");
        known.push(d);
    }
    assert_eq!(
        p.drills(None, 10, None).await.expect("list drills"),
        expected(known, None),
        "summaries, newest first"
    );
    assert_eq!(
        p.drill_status().await.expect("status"),
        status_of(known),
        "one status per scenario"
    );
}

/// The same drill again writes nothing; another digest for a stored drill is refused.
pub async fn idempotency_and_conflicts<P: DrillStore>(p: &P, known: &[StoredDrill]) {
    let before = snapshot(p).await;
    for d in known {
        assert!(
            !p.store_drill(d.clone()).await.expect("store again"),
            "the same drill again is Ok(false)"
        );
    }
    // Same id and digest, other fields: still "already stored", and nothing is written.
    let mut same_digest = known[0].clone();
    same_digest.body = b"{\"other\":true}".to_vec();
    same_digest.passed = !same_digest.passed;
    same_digest.scenario = "another-scenario".into();
    same_digest.signature = vec![9; 10];
    assert!(
        !p.store_drill(same_digest)
            .await
            .expect("store with the same digest"),
        "the same id and digest is Ok(false) whatever the other fields"
    );

    // Another digest for a stored drill.
    let mut other = known[1].clone();
    other.body = b"{\"tampered\":1}".to_vec();
    other.digest = Sha256::digest(&other.body).into();
    other.passed = true;
    match p.store_drill(other.clone()).await {
        Err(ProjectionError::DrillConflict {
            drill_id,
            stored,
            offered,
        }) => {
            assert_eq!(drill_id, known[1].drill_id);
            assert_eq!(
                stored,
                hex::encode(known[1].digest),
                "names the stored digest"
            );
            assert_eq!(
                offered,
                hex::encode(other.digest),
                "names the offered digest"
            );
        }
        r => panic!("expected a conflict naming both digests, got {r:?}"),
    }
    assert!(
        snapshot(p).await == before,
        "a repeated or conflicting drill changed the store"
    );
}

/// Malformed drills are refused before anything is written.
pub async fn invalid_drills<P: DrillStore>(p: &P, known: &[StoredDrill]) {
    let before = snapshot(p).await;
    let base = || sample_drill(2000, "restore-projection", true);
    let over = i64::MAX as u64 + 1;
    type Edit = Box<dyn Fn(&mut StoredDrill)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("empty scenario", Box::new(|d| d.scenario = String::new())),
        (
            "scenario over 64 bytes",
            Box::new(|d| d.scenario = "s".repeat(MAX_NAME_BYTES + 1)),
        ),
        (
            "scenario over 64 bytes in two-byte characters",
            Box::new(|d| d.scenario = "é".repeat(MAX_NAME_BYTES / 2 + 1)),
        ),
        (
            "NUL in the scenario",
            Box::new(|d| d.scenario = "a\0b".into()),
        ),
        ("empty key id", Box::new(|d| d.key_id = String::new())),
        ("NUL in the key id", Box::new(|d| d.key_id = "k\0".into())),
        ("empty alg", Box::new(|d| d.alg = String::new())),
        (
            "alg over 64 bytes",
            Box::new(|d| d.alg = "a".repeat(MAX_NAME_BYTES + 1)),
        ),
        ("empty signature", Box::new(|d| d.signature = Vec::new())),
        (
            "signature over 512 bytes",
            Box::new(|d| d.signature = vec![7; MAX_SIGNATURE_BYTES + 1]),
        ),
        ("body not JSON", Box::new(|d| d.body = b"{\"a\":".to_vec())),
        ("body empty", Box::new(|d| d.body = Vec::new())),
        (
            "body trailing text",
            Box::new(|d| d.body = b"{} {}".to_vec()),
        ),
        (
            "body not UTF-8",
            Box::new(|d| d.body = b"{\"a\":\"\xff\"}".to_vec()),
        ),
        (
            "records_before beyond i64",
            Box::new(move |d| d.records_before = over),
        ),
        (
            "records_after beyond i64",
            Box::new(|d| d.records_after = u64::MAX),
        ),
        (
            "detect_ms beyond i64",
            Box::new(move |d| d.detect_ms = Some(over)),
        ),
        (
            "recover_ms beyond i64",
            Box::new(move |d| d.recover_ms = over),
        ),
        (
            "discrepancies_left beyond i64",
            Box::new(move |d| d.discrepancies_left = over),
        ),
        (
            "audit_seq beyond i64",
            Box::new(|d| d.audit_seq = Some(u64::MAX)),
        ),
    ];
    for (what, edit) in cases {
        let mut d = base();
        edit(&mut d);
        match p.store_drill(d).await {
            Err(ProjectionError::InvalidDrill { drill_id, reason }) => {
                assert_eq!(drill_id, sample_drill_id(2000), "{what}");
                assert!(!reason.is_empty(), "{what}: the refusal says why");
            }
            other => panic!("{what}: expected an invalid drill, got {other:?}"),
        }
    }
    // An invalid drill under a stored id is refused as invalid, not compared.
    let mut stored_id = known[0].clone();
    stored_id.scenario = String::new();
    assert!(
        matches!(
            p.store_drill(stored_id).await,
            Err(ProjectionError::InvalidDrill { .. })
        ),
        "an invalid drill under a stored id"
    );
    assert!(
        snapshot(p).await == before,
        "a refused drill changed the store"
    );
    assert_eq!(p.drill(sample_drill_id(2000)).await.expect("read"), None);
}

/// Newest first, strictly before `before`, at most `limit`, only `scenario`; bad limits and
/// impossible scenarios refused.
pub async fn paging<P: DrillStore>(p: &P, known: &mut Vec<StoredDrill>) {
    let scenario = |n: u64| ["alpha", "beta", "gamma"][(n % 3) as usize];
    // Stored out of order: the order is the drill ids', not the order of storing.
    for n in [5u64, 2, 9, 1, 7, 3, 8, 4, 6] {
        let d = sample_drill(n, scenario(n), n % 4 != 0);
        assert!(p.store_drill(d.clone()).await.expect("store"));
        known.push(d);
    }
    let want = expected(known, None);
    assert_eq!(want.len(), 14);
    assert_eq!(
        p.drills(None, MAX_REPORTS_PAGE, None).await.expect("list"),
        want,
        "every summary, newest first"
    );
    for limit in [1, 2, 3, 13, 14, 15] {
        assert_eq!(
            all_summaries(p, limit, None).await,
            want,
            "pages of {limit} cover every drill once"
        );
    }
    for s in ["alpha", "beta", "gamma", "m"] {
        let want = expected(known, Some(s));
        assert!(!want.is_empty());
        for limit in [1, 2, MAX_REPORTS_PAGE] {
            assert_eq!(
                all_summaries(p, limit, Some(s)).await,
                want,
                "pages of {limit} of scenario {s} cover its drills once"
            );
        }
    }
    let ids = |page: Vec<DrillSummary>| page.iter().map(|s| s.drill_id).collect::<Vec<_>>();
    assert_eq!(
        ids(p
            .drills(Some(sample_drill_id(7)), 3, None)
            .await
            .expect("list")),
        vec![sample_drill_id(6), sample_drill_id(5), sample_drill_id(4)],
        "strictly before `before`"
    );
    assert_eq!(
        ids(p
            .drills(Some(sample_drill_id(9)), 10, Some("alpha".into()))
            .await
            .expect("list")),
        vec![sample_drill_id(6), sample_drill_id(3)],
        "strictly before `before`, only the scenario's"
    );
    assert_eq!(
        ids(p
            .drills(Some(sample_drill_id(8)), 1, Some("beta".into()))
            .await
            .expect("list")),
        vec![sample_drill_id(7)],
        "`before` and `scenario` and `limit` together"
    );
    // `before` need not be a stored drill.
    let between = Uuid::from_u128(sample_drill_id(3).as_u128() + 1);
    assert_eq!(
        p.drills(Some(between), 1, None).await.expect("list"),
        vec![summary_of(&sample_drill(3, "alpha", true))],
        "summary fields"
    );
    assert!(p
        .drills(Some(Uuid::nil()), 10, None)
        .await
        .expect("list")
        .is_empty());
    assert_eq!(
        p.drills(Some(Uuid::max()), 1000, None)
            .await
            .expect("list")
            .len(),
        14
    );
    assert!(
        p.drills(None, 10, Some("no-such-scenario".into()))
            .await
            .expect("list")
            .is_empty(),
        "a scenario without drills lists nothing"
    );
    assert!(
        p.drills(None, 10, Some("ALPHA".into()))
            .await
            .expect("list")
            .is_empty(),
        "scenarios are matched exactly"
    );
    for bad in [0, MAX_REPORTS_PAGE + 1, u32::MAX] {
        assert!(
            matches!(
                p.drills(None, bad, None).await,
                Err(ProjectionError::InvalidQuery(_))
            ),
            "limit {bad} is refused"
        );
    }
    for bad in [String::new(), "s".repeat(MAX_NAME_BYTES + 1), "a\0".into()] {
        assert!(
            matches!(
                p.drills(None, 10, Some(bad.clone())).await,
                Err(ProjectionError::InvalidQuery(_))
            ),
            "scenario filter {bad:?} is refused"
        );
    }
}

/// Each scenario's newest drill and newest passed drill, whatever the order of storing.
pub async fn status<P: DrillStore>(p: &P, known: &mut Vec<StoredDrill>) {
    // (n, scenario, passed), stored in this order. Scenario names a collation would order
    // differently from bytes: upper case before lower, punctuation, non-ASCII.
    let drills = [
        (103, "restore-ledger", false),
        (101, "restore-ledger", true),
        (102, "restore-ledger", false),
        (112, "never-passed", false),
        (111, "never-passed", false),
        (121, "Latest-passed", false),
        (122, "Latest-passed", true),
        (131, "a-b", true),
        (132, "ab", false),
        (133, "a_b", true),
        (134, "Ab", true),
    ];
    for (n, scenario, passed) in drills {
        let d = sample_drill(n, scenario, passed);
        assert!(p.store_drill(d.clone()).await.expect("store"));
        known.push(d);
    }
    let got = p.drill_status().await.expect("status");
    assert_eq!(got, status_of(known), "status of every scenario");
    let by: BTreeMap<&str, &DrillStatus> = got.iter().map(|s| (s.scenario.as_str(), s)).collect();
    let scenarios: Vec<&str> = got.iter().map(|s| s.scenario.as_str()).collect();
    let mut sorted = scenarios.clone();
    sorted.sort_unstable();
    assert_eq!(scenarios, sorted, "sorted by scenario, in byte order");
    let ledger = by["restore-ledger"];
    assert_eq!(
        ledger.last.drill_id,
        sample_drill_id(103),
        "the newest drill"
    );
    assert_eq!(
        ledger.last_passed.as_ref().map(|s| s.drill_id),
        Some(sample_drill_id(101)),
        "the newest passed drill, older than the newest"
    );
    assert_eq!(by["never-passed"].last.drill_id, sample_drill_id(112));
    assert_eq!(by["never-passed"].last_passed, None, "no passed drill");
    assert_eq!(
        by["Latest-passed"].last_passed.as_ref(),
        Some(&by["Latest-passed"].last),
        "the newest drill passed"
    );

    // A newer failure moves `last` and keeps `last_passed`.
    let d = sample_drill(123, "Latest-passed", false);
    assert!(p.store_drill(d.clone()).await.expect("store"));
    known.push(d);
    let got = p.drill_status().await.expect("status");
    assert_eq!(got, status_of(known), "status after a newer failure");
    let latest = got
        .iter()
        .find(|s| s.scenario == "Latest-passed")
        .expect("listed");
    assert_eq!(latest.last.drill_id, sample_drill_id(123));
    assert_eq!(
        latest.last_passed.as_ref().map(|s| s.drill_id),
        Some(sample_drill_id(122))
    );
    // An older pass stored late changes nothing about "newest".
    let d = sample_drill(100, "never-passed", true);
    assert!(p.store_drill(d.clone()).await.expect("store"));
    known.push(d);
    let got = p.drill_status().await.expect("status");
    assert_eq!(got, status_of(known), "status after an older pass");
    let never = got
        .iter()
        .find(|s| s.scenario == "never-passed")
        .expect("listed");
    assert_eq!(never.last.drill_id, sample_drill_id(112));
    assert_eq!(
        never.last_passed.as_ref().map(|s| s.drill_id),
        Some(sample_drill_id(100))
    );
}

/// The same drill stored by several callers at once is written once; two digests for one id
/// at once: one is written, the other refused as a conflict.
pub async fn concurrent_stores<P: DrillStore>(p: &P, known: &mut Vec<StoredDrill>) {
    let d = sample_drill(5000, "concurrent", true);
    let results = futures::future::join_all((0..4).map(|_| p.store_drill(d.clone()))).await;
    let written = results
        .into_iter()
        .map(|x| x.expect("a concurrent store"))
        .filter(|w| *w)
        .count();
    assert_eq!(written, 1, "exactly one concurrent store writes the drill");
    assert_eq!(p.drill(d.drill_id).await.expect("read"), Some(d.clone()));
    known.push(d);

    let a = sample_drill(5001, "concurrent", true);
    let mut b = a.clone();
    b.body = b"{\"b\":1}".to_vec();
    b.digest = Sha256::digest(&b.body).into();
    let (ra, rb) = futures::future::join(p.store_drill(a.clone()), p.store_drill(b.clone())).await;
    let winner = match (ra, rb) {
        (Ok(true), Err(ProjectionError::DrillConflict { .. })) => a,
        (Err(ProjectionError::DrillConflict { .. }), Ok(true)) => b,
        other => panic!("expected one write and one conflict, got {other:?}"),
    };
    assert_eq!(
        p.drill(winner.drill_id).await.expect("read"),
        Some(winner.clone()),
        "the written drill is the one that won"
    );
    known.push(winner);
}
