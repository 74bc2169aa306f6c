//! The conformance suite every [`ReportStore`] backend runs: `conformance_reports::run(&backend)`
//! on a store without reports, through the trait only. It checks the guarantees the trait
//! documents and panics naming the one that broke. Expected answers are computed from the
//! reports themselves (summaries and pending counts with [`crate::reports::is_pending`]).

#![allow(clippy::expect_used)]

use sha2::{Digest, Sha256};
use triplicate_core::{Hash, Timestamp};
use uuid::Uuid;

use crate::reports::{is_pending, MAX_NAME_BYTES, MAX_REPORTS_PAGE};
use crate::{
    ActionRecord, ActionRow, DiscrepancyRow, FullReport, ProjectionError, ReportCounts,
    ReportStore, ReportSummary, ReviewRow, StoredReport,
};

/// A deterministic UUIDv7 for run `n`: later runs sort after earlier ones.
pub fn sample_run_id(n: u64) -> Uuid {
    v7(1_800_000_000_000 + n * 1000, 0x5200_0000 + n)
}

/// A deterministic UUIDv7 for action `i` of run `n`.
pub fn sample_action_id(n: u64, i: u64) -> Uuid {
    v7(
        1_800_000_000_000 + n * 1000,
        0xac00_0000_0000 + (n << 24) + i,
    )
}

fn v7(ms: u64, tail: u64) -> Uuid {
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70;
    b[8] = 0x80;
    b[9..].copy_from_slice(&tail.to_be_bytes()[1..]);
    Uuid::from_bytes(b)
}

fn ts(nanos: i128) -> Timestamp {
    Timestamp::from_unix_nanos(nanos).expect("sample time in range")
}

fn hash(seed: u64) -> Hash {
    Sha256::digest(seed.to_be_bytes()).into()
}

/// A report body: JSON as a verifier might write it, with what a re-serialisation would change
/// (spacing, member order, escapes, a float written long, non-ASCII text), so only a byte-exact
/// store gives it back.
fn body(run_id: Uuid, discrepancies: usize) -> Vec<u8> {
    format!(
        "{{\"run_id\":\"{run_id}\",  \"z\":1.50000, \"a\":[ ],\"note\":\"caf\u{e9} \\u00e9 \\u0000 \
         \\ud83d\\ude00 \\/ \u{1F5F3}\",\"discrepancies\":{discrepancies}}}\n"
    )
    .into_bytes()
}

/// A varied discrepancy: every optional field both absent and present across `i`.
pub fn sample_discrepancy(i: usize) -> DiscrepancyRow {
    let k = i as u64;
    DiscrepancyRow {
        seq: (i % 5 != 4).then_some(k * 3),
        decision_id: (i % 3 != 2).then(|| v7(1_790_000_000_000 + k, k + 1)),
        store: ["ledger", "stream", "projection"][i % 3].into(),
        class: ["lag", "minor", "major", "critical"][i % 4].into(),
        kind: ["hash_mismatch", "missing", "extra", "signature_invalid"][i % 4].into(),
        expected_hash: i.is_multiple_of(2).then(|| hash(k)),
        actual_hash: (i % 4 == 1).then(|| hash(k + 1_000_000)),
        file: (i % 7 == 3).then(|| format!("tile/0/{k:03}")),
        detail: match i % 4 {
            0 => String::new(),
            1 => format!("leaf hash differs at seq {}", k * 3),
            2 => "multi\nline \"quoted\" détail ✓".into(),
            _ => "x".repeat(300),
        },
    }
}

/// A varied action of run `n`: statuses and authorities cycle so some are pending.
pub fn sample_action(n: u64, i: usize) -> ActionRow {
    let k = i as u64;
    let (authority, status) = [
        ("auditor", "proposed"),
        ("automatic", "applied"),
        ("auditor", "proposed"),
        ("automatic", "planned"),
        ("auditor", "failed"),
        ("automatic", "unchanged"),
    ][i % 6];
    ActionRow {
        id: sample_action_id(n, k),
        seq: (i % 4 != 3).then_some(k * 3),
        seqs: match i % 3 {
            0 => Vec::new(),
            1 => vec![k * 3],
            _ => vec![k * 3, k * 3 + 1, 9_007_199_254_740_993],
        },
        store: ["projection", "stream"][i % 2].into(),
        class: if authority == "auditor" {
            "major"
        } else {
            "minor"
        }
        .into(),
        kind: "hash_mismatch".into(),
        operation: ["restore_from_ledger", "append_missing"][i % 2].into(),
        authority: authority.into(),
        status: status.into(),
        restores: i.is_multiple_of(2).then(|| hash(k + 77)),
        detail: if i.is_multiple_of(2) {
            String::new()
        } else {
            format!("restore seq {} — from the ledger", k * 3)
        },
    }
}

/// A whole report for run `n` with `discrepancies` and `actions` rows; its digest is the
/// SHA-256 of its body (the projection never checks it).
pub fn sample_report(n: u64, discrepancies: usize, actions: usize) -> StoredReport {
    let run_id = sample_run_id(n);
    let body = body(run_id, discrepancies);
    let start = 1_800_000_000_000_000_000i128 + i128::from(n) * 1_000_000_000_000;
    let counts = ReportCounts {
        lag: n,
        minor: 2 * n + 1,
        major: discrepancies as u64,
        critical: n % 2,
    };
    StoredReport {
        run_id,
        mode: if n.is_multiple_of(2) {
            "full"
        } else {
            "incremental"
        }
        .into(),
        // Sub-microsecond parts: a store that keeps only microseconds is caught.
        started_at: ts(start + 123_456_789),
        finished_at: ts(start + 5_000_000_001),
        worst_class: (discrepancies > 0).then(|| "major".into()),
        counts,
        records_compared: 100_000 + n,
        checkpoint_size: Some(1_000 + n),
        checkpoint_root: Some(hash(n + 500)),
        digest: Sha256::digest(&body).into(),
        body,
        audit_seq: Some(2_000 + n),
        discrepancies: (0..discrepancies).map(sample_discrepancy).collect(),
        actions: (0..actions).map(|i| sample_action(n, i)).collect(),
    }
}

/// A report with nothing optional: no findings, no rows, every `Option` absent.
pub fn minimal_report(n: u64) -> StoredReport {
    let mut r = sample_report(n, 0, 0);
    r.worst_class = None;
    r.counts = ReportCounts::default();
    r.records_compared = 0;
    r.checkpoint_size = None;
    r.checkpoint_root = None;
    r.audit_seq = None;
    r.body = b"{}".to_vec();
    r.digest = Sha256::digest(&r.body).into();
    // Times before 1970 and at the end of year 9999.
    r.started_at = ts(-1_000_000_000_000_000_001);
    r.finished_at = ts(253_402_300_799_999_999_999);
    r
}

/// A review of `action`.
pub fn sample_review(action: Uuid, verdict: &str, outcome: Option<&str>, k: u64) -> ReviewRow {
    let at = 1_810_000_000_000_000_000i128 + i128::from(k) * 1_000_000_007;
    ReviewRow {
        action_id: action,
        verdict: verdict.into(),
        key_id: format!("{:016x}", 0xa1b2_c3d4_0000_0000u64 + k),
        alg: if k.is_multiple_of(2) {
            "ed25519"
        } else {
            "ecdsa-p256"
        }
        .into(),
        signature: Sha256::digest(k.to_be_bytes()).repeat(2),
        signed_at: ts(at + 1),
        reason: if k.is_multiple_of(2) {
            String::new()
        } else {
            format!("reviewed by auditor {k}: ok")
        },
        outcome: outcome.map(str::to_owned),
        recorded_at: ts(at + 999_999_999),
    }
}

/// The summary a store must list for `r`, given every review recorded so far.
pub fn summary_of(r: &StoredReport, reviews: &[ReviewRow]) -> ReportSummary {
    ReportSummary {
        run_id: r.run_id,
        mode: r.mode.clone(),
        started_at: r.started_at,
        finished_at: r.finished_at,
        worst_class: r.worst_class.clone(),
        counts: r.counts,
        records_compared: r.records_compared,
        checkpoint_size: r.checkpoint_size,
        digest: r.digest,
        audit_seq: r.audit_seq,
        pending_actions: r.actions.iter().filter(|a| is_pending(a, reviews)).count() as u64,
    }
}

/// Every summary and every full report: what "nothing changed" compares.
pub async fn snapshot<P: ReportStore>(p: &P) -> Vec<(ReportSummary, Option<FullReport>)> {
    let mut out = Vec::new();
    for s in all_summaries(p, MAX_REPORTS_PAGE).await {
        let full = p.report(s.run_id).await.expect("read a report");
        out.push((s, full));
    }
    out
}

/// Every summary, page by page with `before`, checking each page's order and size.
async fn all_summaries<P: ReportStore>(p: &P, limit: u32) -> Vec<ReportSummary> {
    let mut out: Vec<ReportSummary> = Vec::new();
    let mut before = None;
    loop {
        let page = p.reports(before, limit).await.expect("list reports");
        assert!(page.len() <= limit as usize, "a page holds at most `limit`");
        for w in page.windows(2) {
            assert!(
                w[0].run_id > w[1].run_id,
                "newest first (run_id descending)"
            );
        }
        if let (Some(b), Some(first)) = (before, page.first()) {
            assert!(first.run_id < b, "a page starts strictly before `before`");
        }
        let done = page.len() < limit as usize;
        before = page.last().map(|s| s.run_id);
        out.extend(page);
        if done || before.is_none() {
            return out;
        }
    }
}

/// Runs every check; panics with the broken guarantee.
pub async fn run<P: ReportStore>(p: &P) {
    empty(p).await;
    let stored = round_trips(p).await;
    idempotency_and_conflicts(p, &stored).await;
    invalid_reports(p).await;
    paging(p).await;
    reviews_and_pending(p).await;
    large_report(p).await;
    concurrent_stores(p).await;
}

/// A store without reports answers every read with nothing.
pub async fn empty<P: ReportStore>(p: &P) {
    assert!(
        p.reports(None, 10).await.expect("list reports").is_empty(),
        "report conformance needs a store without reports"
    );
    assert_eq!(p.report(sample_run_id(1)).await.expect("read"), None);
    assert_eq!(p.action(sample_action_id(1, 0)).await.expect("read"), None);
}

/// Reports come back exactly as stored: every field, rows in order, the body byte for byte.
pub async fn round_trips<P: ReportStore>(p: &P) -> Vec<StoredReport> {
    let mut full = sample_report(1000, 60, 13);
    // Names at the limit, in bytes (32 two-byte characters).
    full.discrepancies[5].kind = "k".repeat(MAX_NAME_BYTES);
    full.discrepancies[6].kind = "é".repeat(MAX_NAME_BYTES / 2);
    full.actions[1].operation = "o".repeat(MAX_NAME_BYTES);
    let minimal = minimal_report(1001);
    let mut out = Vec::new();
    for r in [full, minimal] {
        assert!(
            p.store_report(r.clone()).await.expect("store a report"),
            "a new report is written (Ok(true))"
        );
        let got = p
            .report(r.run_id)
            .await
            .expect("read the report")
            .expect("the stored report is found");
        assert_eq!(
            got.report.body,
            r.body,
            "the body comes back byte for byte:\n got {:?}\nwant {:?}",
            String::from_utf8_lossy(&got.report.body),
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(
            got.report.discrepancies, r.discrepancies,
            "discrepancies in the order given"
        );
        assert_eq!(got.report.actions, r.actions, "actions in the order given");
        assert_eq!(got.report, r, "every field round-trips");
        assert!(got.reviews.is_empty());
        for (i, a) in r.actions.iter().enumerate() {
            if i % 5 == 0 || i + 1 == r.actions.len() {
                assert_eq!(
                    p.action(a.id).await.expect("read an action"),
                    Some(ActionRecord {
                        run_id: r.run_id,
                        action: a.clone(),
                        reviews: Vec::new(),
                    }),
                    "action {i} by id"
                );
            }
        }
        out.push(r);
    }
    let listed = p.reports(None, 10).await.expect("list reports");
    let want: Vec<ReportSummary> = out.iter().rev().map(|r| summary_of(r, &[])).collect();
    assert_eq!(listed, want, "summaries, newest first");
    out
}

/// The same report again writes nothing; another digest for a stored run is refused.
pub async fn idempotency_and_conflicts<P: ReportStore>(p: &P, stored: &[StoredReport]) {
    let before = snapshot(p).await;
    for r in stored {
        assert!(
            !p.store_report(r.clone()).await.expect("store again"),
            "the same report again is Ok(false)"
        );
    }
    // Same run id and digest, other rows: still "already stored", and nothing is written.
    let mut same_digest = stored[0].clone();
    same_digest.body = b"{\"other\":true}".to_vec();
    same_digest.discrepancies.truncate(3);
    same_digest.actions.push(sample_action(7777, 0));
    assert!(!p
        .store_report(same_digest)
        .await
        .expect("store with the same digest"));
    assert_eq!(
        p.action(sample_action_id(7777, 0)).await.expect("read"),
        None
    );

    // Another digest for a stored run.
    let mut other = stored[0].clone();
    other.body = b"{\"tampered\":1}".to_vec();
    other.digest = Sha256::digest(&other.body).into();
    other.actions = vec![sample_action(7778, 0)];
    match p.store_report(other.clone()).await {
        Err(ProjectionError::ReportConflict {
            run_id,
            stored: s,
            offered,
        }) => {
            assert_eq!(run_id, stored[0].run_id);
            assert_eq!(s, hex::encode(stored[0].digest), "names the stored digest");
            assert_eq!(
                offered,
                hex::encode(other.digest),
                "names the offered digest"
            );
        }
        r => panic!("expected a conflict naming both digests, got {r:?}"),
    }
    assert_eq!(
        p.action(sample_action_id(7778, 0)).await.expect("read"),
        None
    );
    assert!(
        snapshot(p).await == before,
        "a repeated or conflicting report changed the store"
    );
}

/// Malformed reports are refused before anything is written.
pub async fn invalid_reports<P: ReportStore>(p: &P) {
    let before = snapshot(p).await;
    let base = || sample_report(2000, 30, 8);
    type Edit = Box<dyn Fn(&mut StoredReport)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("body not JSON", Box::new(|r| r.body = b"{\"a\":".to_vec())),
        ("body empty", Box::new(|r| r.body = Vec::new())),
        (
            "body trailing text",
            Box::new(|r| r.body = b"{} {}".to_vec()),
        ),
        (
            "body not UTF-8",
            Box::new(|r| r.body = b"{\"a\":\"\xff\"}".to_vec()),
        ),
        (
            "empty class (late)",
            Box::new(|r| r.discrepancies[29].class = String::new()),
        ),
        ("empty mode", Box::new(|r| r.mode = String::new())),
        (
            "empty worst class",
            Box::new(|r| r.worst_class = Some(String::new())),
        ),
        (
            "empty action status",
            Box::new(|r| r.actions[7].status = String::new()),
        ),
        (
            "name over 64 bytes",
            Box::new(|r| r.discrepancies[3].kind = "k".repeat(MAX_NAME_BYTES + 1)),
        ),
        (
            "name over 64 bytes in two-byte characters",
            Box::new(|r| r.actions[2].store = "é".repeat(MAX_NAME_BYTES / 2 + 1)),
        ),
        (
            "file Some(\"\")",
            Box::new(|r| r.discrepancies[0].file = Some(String::new())),
        ),
        (
            "NUL in a detail",
            Box::new(|r| r.discrepancies[1].detail = "a\0b".into()),
        ),
        (
            "seq beyond i64",
            Box::new(|r| r.discrepancies[2].seq = Some(u64::MAX)),
        ),
        ("count beyond i64", Box::new(|r| r.counts.lag = u64::MAX)),
        (
            "action seqs beyond i64",
            Box::new(|r| r.actions[4].seqs = vec![1, u64::MAX]),
        ),
        (
            "action id twice",
            Box::new(|r| r.actions[5].id = r.actions[1].id),
        ),
        (
            "action id of another run",
            Box::new(|r| r.actions[6].id = sample_action_id(1000, 3)),
        ),
    ];
    for (what, edit) in cases {
        let mut r = base();
        edit(&mut r);
        match p.store_report(r).await {
            Err(ProjectionError::InvalidReport { run_id, reason }) => {
                assert_eq!(run_id, sample_run_id(2000), "{what}");
                assert!(!reason.is_empty(), "{what}: the refusal says why");
            }
            other => panic!("{what}: expected an invalid report, got {other:?}"),
        }
    }
    assert!(
        snapshot(p).await == before,
        "a refused report changed the store"
    );
    assert_eq!(
        p.action(sample_action_id(2000, 0)).await.expect("read"),
        None
    );
}

/// Newest first, strictly before `before`, at most `limit`; bad limits refused.
pub async fn paging<P: ReportStore>(p: &P) {
    // Stored out of order: the order is the run ids', not the order of storing.
    for n in [5u64, 2, 9, 1, 7, 3, 8, 4, 6] {
        assert!(p
            .store_report(sample_report(n, n as usize, 2))
            .await
            .expect("store"));
    }
    let want: Vec<Uuid> = p
        .reports(None, MAX_REPORTS_PAGE)
        .await
        .expect("list")
        .iter()
        .map(|s| s.run_id)
        .collect();
    assert_eq!(want.len(), 11);
    let mut sorted = want.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(want, sorted, "newest first");
    for limit in [1, 2, 3, 10, 11, 12] {
        let got: Vec<Uuid> = all_summaries(p, limit)
            .await
            .iter()
            .map(|s| s.run_id)
            .collect();
        assert_eq!(got, want, "pages of {limit} cover every report once");
    }
    let page = p.reports(Some(sample_run_id(7)), 3).await.expect("list");
    assert_eq!(
        page.iter().map(|s| s.run_id).collect::<Vec<_>>(),
        vec![sample_run_id(6), sample_run_id(5), sample_run_id(4)],
        "strictly before `before`"
    );
    assert_eq!(
        page[0],
        summary_of(&sample_report(6, 6, 2), &[]),
        "summary fields"
    );
    // `before` need not be a stored run.
    let between = Uuid::from_u128(sample_run_id(3).as_u128() + 1);
    assert_eq!(
        p.reports(Some(between), 1).await.expect("list")[0].run_id,
        sample_run_id(3)
    );
    assert!(p
        .reports(Some(Uuid::nil()), 10)
        .await
        .expect("list")
        .is_empty());
    assert_eq!(
        p.reports(Some(Uuid::max()), 1000)
            .await
            .expect("list")
            .len(),
        11
    );
    for bad in [0, MAX_REPORTS_PAGE + 1, u32::MAX] {
        assert!(
            matches!(
                p.reports(None, bad).await,
                Err(ProjectionError::InvalidQuery(_))
            ),
            "limit {bad} is refused"
        );
    }
}

/// Reviews append in order; `pending_actions` follows them.
pub async fn reviews_and_pending<P: ReportStore>(p: &P) {
    let mut r = sample_report(3000, 4, 8);
    // a0, a1, a2, a5, a7 auditor/proposed; the others are not the auditor's or not proposed.
    for i in [0usize, 1, 2, 5, 7] {
        r.actions[i].authority = "auditor".into();
        r.actions[i].status = "proposed".into();
    }
    for i in [3usize, 4, 6] {
        r.actions[i].authority = "automatic".into();
        r.actions[i].status = "applied".into();
    }
    r.actions[6].authority = "auditor".into(); // auditor's, but applied during the run
    assert!(p.store_report(r.clone()).await.expect("store"));
    let id = |i: usize| r.actions[i].id;
    let mut recorded: Vec<ReviewRow> = Vec::new();

    let pending = |recorded: &[ReviewRow]| summary_of(&r, recorded).pending_actions;
    async fn listed<P: ReportStore>(p: &P, run_id: Uuid) -> ReportSummary {
        p.reports(Some(Uuid::from_u128(run_id.as_u128() + 1)), 1)
            .await
            .expect("list")
            .pop()
            .expect("the report is listed")
    }
    assert_eq!(pending(&recorded), 5);
    assert_eq!(listed(p, r.run_id).await.pending_actions, 5);

    let steps: Vec<(usize, &str, Option<&str>, u64)> = vec![
        // Rejected: no longer pending.
        (0, "rejected", None, 4),
        // Approved, not yet executed: still pending.
        (1, "approved", None, 4),
        // Executed: applied.
        (
            1,
            "approved",
            Some("applied: restored seq 3 from the ledger"),
            3,
        ),
        // Executed and failed: still pending, and may be approved again.
        (2, "approved", Some("failed: stream unavailable"), 3),
        (2, "approved", Some("unchanged: already restored"), 2),
        // "starts with" is case-sensitive.
        (5, "approved", Some("Applied: by hand"), 2),
        (5, "approved", Some("failed: applied nothing"), 2),
        // Reviews of actions that were never pending change nothing.
        (3, "rejected", None, 2),
        (6, "approved", Some("applied: x"), 2),
        (7, "approved", Some("applied"), 1),
        // Approved and handed to the operator: no longer waiting for an auditor.
        (
            5,
            "approved",
            Some("deferred: the operator rebuilds the stream"),
            0,
        ),
    ];
    for (k, (i, verdict, outcome, want)) in steps.into_iter().enumerate() {
        let review = sample_review(id(i), verdict, outcome, k as u64);
        p.record_review(review.clone())
            .await
            .expect("record a review");
        recorded.push(review);
        assert_eq!(pending(&recorded), want, "step {k}: the reference");
        assert_eq!(
            listed(p, r.run_id).await.pending_actions,
            want,
            "step {k}: pending actions after {verdict} {outcome:?} on action {i}"
        );
    }
    assert_eq!(listed(p, r.run_id).await, summary_of(&r, &recorded));

    let full = p.report(r.run_id).await.expect("read").expect("stored");
    assert_eq!(full.report, r, "reviews do not change the report");
    assert_eq!(full.reviews, recorded, "every review, in recorded order");
    for i in 0..r.actions.len() {
        let want: Vec<ReviewRow> = recorded
            .iter()
            .filter(|v| v.action_id == id(i))
            .cloned()
            .collect();
        assert_eq!(
            p.action(id(i)).await.expect("read an action"),
            Some(ActionRecord {
                run_id: r.run_id,
                action: r.actions[i].clone(),
                reviews: want,
            }),
            "action {i} with its reviews"
        );
    }

    // Refusals write nothing.
    let before = snapshot(p).await;
    let unknown = sample_action_id(3000, 99);
    match p
        .record_review(sample_review(unknown, "approved", None, 50))
        .await
    {
        Err(ProjectionError::UnknownAction { action_id }) => assert_eq!(action_id, unknown),
        other => panic!("expected an unknown action, got {other:?}"),
    }
    for (what, review) in [
        ("verdict", sample_review(id(7), "maybe", None, 51)),
        ("verdict case", sample_review(id(7), "Approved", None, 52)),
        (
            "empty outcome",
            sample_review(id(7), "approved", Some(""), 53),
        ),
        ("empty key id", {
            let mut v = sample_review(id(7), "approved", None, 54);
            v.key_id = String::new();
            v
        }),
        ("empty signature", {
            let mut v = sample_review(id(7), "rejected", None, 55);
            v.signature = Vec::new();
            v
        }),
        ("NUL in the reason", {
            let mut v = sample_review(id(7), "rejected", None, 56);
            v.reason = "no\0".into();
            v
        }),
    ] {
        assert!(
            matches!(
                p.record_review(review).await,
                Err(ProjectionError::InvalidReview { .. })
            ),
            "{what} is refused"
        );
    }
    assert!(
        snapshot(p).await == before,
        "a refused review changed the store"
    );
    assert_eq!(p.action(unknown).await.expect("read"), None);
}

/// A report of 20,000 discrepancies round-trips.
pub async fn large_report<P: ReportStore>(p: &P) {
    let r = sample_report(4000, 20_000, 2_500);
    assert!(p
        .store_report(r.clone())
        .await
        .expect("store a large report"));
    let got = p.report(r.run_id).await.expect("read").expect("stored");
    assert_eq!(got.report.discrepancies.len(), 20_000);
    assert_eq!(got.report.actions.len(), 2_500);
    assert!(got.report == r, "the large report round-trips");
    assert!(!p.store_report(r).await.expect("store again"));
}

/// The same report stored by several callers at once is written once.
pub async fn concurrent_stores<P: ReportStore>(p: &P) {
    let r = sample_report(5000, 500, 40);
    let results = futures::future::join_all((0..4).map(|_| p.store_report(r.clone()))).await;
    let written = results
        .into_iter()
        .map(|x| x.expect("a concurrent store"))
        .filter(|w| *w)
        .count();
    assert_eq!(written, 1, "exactly one concurrent store writes the report");
    let got = p.report(r.run_id).await.expect("read").expect("stored");
    assert!(got.report == r);
}
