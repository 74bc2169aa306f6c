//! The verifier against the real embedded stores: a clean run, lag and missing records, a
//! drifted projection row, an altered and a forged stream event, a damaged ledger bundle,
//! invalid signatures, and a broken consistency chain.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{later, policy, Env};
use triplicate_keys::SoftwareSigner;
use triplicate_ledger::Ledger;
use triplicate_stream::{AppendRequest, DecisionRecorded, EventStream};
use triplicate_verifier::{
    run, unopenable_ledger_report, ActionStatus, Authority, CheckpointRef, Class, Kind, Operation,
    Report, RunMode, RunRequest, Store, VerificationPolicy, REPORT_DOMAIN,
};

fn only(report: &Report, class: Class) -> Vec<&triplicate_verifier::Discrepancy> {
    report
        .discrepancies
        .iter()
        .filter(|d| d.class == class)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_stores_give_a_clean_report_and_incremental_runs_chain() {
    let env = Env::new().await;
    env.append(300, 300).await;
    let p = policy();
    let report = run(env.stores(), &p, &env.trust, &env.full())
        .await
        .unwrap();
    assert!(report.is_clean(), "{:#?}", report.discrepancies);
    assert_eq!(report.records_compared, 300);
    // Two approvals and the notary per record.
    assert_eq!(report.signatures_checked, 900);
    assert_eq!(
        report.checkpoint_new,
        Some(CheckpointRef::from(&env.ledger.checkpoint()))
    );
    assert!(report.actions.is_empty());

    // An incremental run after 50 more records covers them plus the rolling window, and proves
    // the new tree consistent with the one verified before.
    env.append(50, 50).await;
    let next = RunRequest::incremental_after(&report);
    let inc = run(env.stores(), &p, &env.trust, &next).await.unwrap();
    assert!(inc.is_clean(), "{:#?}", inc.discrepancies);
    assert_eq!(inc.checkpoint_old, report.checkpoint_new);
    assert_eq!(inc.checkpoint_new.unwrap().size, 350);
    assert_eq!(inc.ranges[0].end, 350);
    assert_eq!(
        inc.ranges[0].start, 0,
        "a 1,000-seq window reaches back to 0"
    );
    assert!(
        inc.stream_cursor.is_none(),
        "nothing lies before the window"
    );

    // The report's digest is SHA-256 over the domain prefix and its RFC 8785 bytes, and the
    // report survives a JSON round trip unchanged.
    let jcs = triplicate_core::canonical::to_jcs(&inc).unwrap();
    let mut pre = REPORT_DOMAIN.to_vec();
    pre.extend_from_slice(&jcs);
    assert_eq!(
        inc.digest().unwrap(),
        triplicate_core::digest::domain_hash(&[], &pre)
    );
    let back: Report = serde_json::from_slice(&serde_json::to_vec(&inc).unwrap()).unwrap();
    assert_eq!(back, inc);
    assert_eq!(back.digest().unwrap(), inc.digest().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_downstream_is_lag_within_grace_then_minor_and_repaired() {
    let env = Env::new().await;
    env.append(300, 290).await;
    let p = policy();

    let young = run(env.stores(), &p, &env.trust, &env.full())
        .await
        .unwrap();
    assert_eq!(young.counts.lag, 20, "{:#?}", young.discrepancies);
    assert_eq!(young.counts.total(), 20);
    for d in &young.discrepancies {
        assert_eq!(d.kind, Kind::Missing);
        assert!(d.seq.unwrap() >= 290);
        assert!(d.decision_id.is_some());
        assert!(d.expected_hash.is_some() && d.actual_hash.is_none());
    }
    assert!(young.actions.is_empty(), "lag is the catch-up worker's");

    let old = run(
        env.stores(),
        &p,
        &env.trust,
        &RunRequest {
            as_of: Some(later()),
            ..env.full()
        },
    )
    .await
    .unwrap();
    assert_eq!(old.counts.minor, 20, "{:#?}", old.discrepancies);
    assert_eq!(old.actions.len(), 20);
    for a in &old.actions {
        assert_eq!(a.authority, Authority::Automatic);
        assert_eq!(a.status, ActionStatus::Applied, "{a:?}");
        match a.store {
            Store::Projection => assert_eq!(a.operation, Operation::ApplyProjectionRecords),
            Store::Stream => assert_eq!(a.operation, Operation::AppendStreamEvent),
            Store::Ledger => panic!("the ledger is never repaired"),
        }
    }
    let after = run(env.stores(), &p, &env.trust, &env.full())
        .await
        .unwrap();
    assert!(after.is_clean(), "{:#?}", after.discrepancies);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_column_altered_is_minor_drift_and_repaired() {
    let env = Env::new().await;
    env.append(300, 300).await;
    {
        // As a superuser with the file would: drop the guard, then update.
        let c = env.raw("projection.db");
        c.execute_batch(
            "DROP TRIGGER decisions_no_update;
             UPDATE decisions SET title = 'Motion 42: adopt a different report' WHERE seq = 42;",
        )
        .unwrap();
    }
    let p = policy();
    let report = run(env.stores(), &p, &env.trust, &env.full())
        .await
        .unwrap();
    assert_eq!(report.counts.total(), 1, "{:#?}", report.discrepancies);
    let d = &report.discrepancies[0];
    assert_eq!(
        (d.seq, d.store, d.class, d.kind),
        (Some(42), Store::Projection, Class::Minor, Kind::Differs)
    );
    assert_eq!(
        d.expected_hash.unwrap(),
        env.ledger.leaf_hashes(42, 43).unwrap()[0]
    );
    assert!(d.actual_hash.is_some() && d.actual_hash != d.expected_hash);
    assert_eq!(report.actions.len(), 1);
    assert_eq!(report.actions[0].status, ActionStatus::Applied);
    // The repair is logged in the projection's own repairs table with the run id.
    let logged: String = env
        .raw("projection.db")
        .query_row("SELECT run_id FROM repairs WHERE seq = 42", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(logged, report.run_id.to_string());

    let after = run(env.stores(), &p, &env.trust, &env.full())
        .await
        .unwrap();
    assert!(after.is_clean(), "{:#?}", after.discrepancies);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_projection_row_is_a_gap_and_restored() {
    let env = Env::new().await;
    env.append(300, 300).await;
    env.raw("projection.db")
        .execute_batch(
            "DROP TRIGGER decisions_no_delete; DROP TRIGGER approvals_no_delete;
             DELETE FROM approvals WHERE seq = 10; DELETE FROM decisions WHERE seq = 10;",
        )
        .unwrap();
    let p = policy();
    let report = run(env.stores(), &p, &env.trust, &env.full())
        .await
        .unwrap();
    assert_eq!(report.counts.total(), 1, "{:#?}", report.discrepancies);
    let d = &report.discrepancies[0];
    assert_eq!(
        (d.seq, d.store, d.class, d.kind),
        (Some(10), Store::Projection, Class::Minor, Kind::Gap),
        "a hole is never lag, however young the record"
    );
    assert_eq!(report.actions[0].status, ActionStatus::Applied);
    let after = run(env.stores(), &p, &env.trust, &env.full())
        .await
        .unwrap();
    assert!(after.is_clean(), "{:#?}", after.discrepancies);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_and_forged_stream_events_are_major_and_only_proposed() {
    let env = Env::new().await;
    env.append(300, 300).await;
    // Alter event 7's data in place (the triggers dropped, as a superuser would).
    let other = env.record(7);
    env.raw("stream.db")
        .execute("DROP TRIGGER events_no_update", [])
        .unwrap();
    env.raw("stream.db")
        .execute("UPDATE events SET data = ?1 WHERE seq = 7", [&other])
        .unwrap();
    // Forge an event the ledger does not have: a well-formed record at the next seq, which
    // the stream accepts (it checks form, not signatures or the ledger).
    let forger = SoftwareSigner::generate("forger");
    let forged = common::record_bytes(300, &[&forger], &forger, "motion");
    env.stream
        .append(vec![AppendRequest::new_decision(
            DecisionRecorded::from_record_bytes(forged).unwrap(),
        )])
        .await
        .unwrap();

    let p = policy();
    let report = run(env.stores(), &p, &env.trust, &env.full())
        .await
        .unwrap();
    let major = only(&report, Class::Major);
    assert_eq!(report.counts.total(), 2, "{:#?}", report.discrepancies);
    assert_eq!(major.len(), 2);
    assert_eq!(
        (major[0].seq, major[0].store, major[0].kind),
        (Some(7), Store::Stream, Kind::Differs)
    );
    assert_eq!(
        major[0].actual_hash.unwrap(),
        triplicate_core::digest::leaf_hash(&other)
    );
    assert_eq!(
        (major[1].seq, major[1].store, major[1].kind),
        (Some(300), Store::Stream, Kind::Extra)
    );
    assert!(major[1].expected_hash.is_none());
    // Nothing ran on its own: one rebuild proposal waiting for an auditor.
    assert_eq!(report.actions.len(), 1, "{:#?}", report.actions);
    let a = &report.actions[0];
    assert_eq!(
        (a.operation, a.authority, a.status, a.class),
        (
            Operation::RebuildStream,
            Authority::Auditor,
            ActionStatus::Proposed,
            Class::Major
        )
    );
    assert_eq!(a.seqs, vec![7, 300]);
    // The stream is as it was.
    let again = run(env.stores(), &p, &env.trust, &env.full())
        .await
        .unwrap();
    assert_eq!(again.counts.major, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_in_a_ledger_bundle_is_critical_naming_the_file() {
    let env = Env::new().await;
    env.append(300, 300).await;
    env.ledger.flush().unwrap();
    let rel = triplicate_ledger::layout::bundle_path(0, 256);
    let path = env.ledger_dir().join(&rel);
    let mut bytes = std::fs::read(&path).unwrap();
    // Inside entry 0's bytes (past its 2-byte length), so the bundle still parses.
    bytes[200] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let p = policy();
    let report = run(env.stores(), &p, &env.trust, &env.full())
        .await
        .unwrap();
    let critical = only(&report, Class::Critical);
    assert!(!critical.is_empty(), "{:#?}", report.discrepancies);
    let name = path.display().to_string();
    // fsck names the bundle, and so does the re-hash of entry 0.
    let fsck = critical
        .iter()
        .find(|d| d.kind == Kind::LedgerFiles)
        .expect("an fsck finding");
    assert_eq!(fsck.file.as_deref(), Some(name.as_str()), "{fsck:?}");
    let leaf = critical
        .iter()
        .find(|d| d.kind == Kind::LeafMismatch)
        .expect("a re-hash finding");
    assert_eq!(
        (leaf.seq, leaf.file.as_deref()),
        (Some(0), Some(name.as_str()))
    );
    // Re-hashed leaves no longer fold into the signed root.
    assert!(critical.iter().any(|d| d.kind == Kind::RootMismatch));
    // The other stores agree with the ledger's stored hashes, so nothing else is flagged and
    // nothing is repaired.
    assert!(report
        .discrepancies
        .iter()
        .all(|d| d.store == Store::Ledger));
    assert!(report.actions.is_empty());
    assert!(report.digest().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_with_an_invalid_approval_signature_is_major() {
    let env = Env::new().await;
    env.append(10, 10).await;
    // A record whose second approval was made by a key the registry does not know, and one
    // whose notary is not the trusted one: both stored consistently in all three stores.
    let stranger = SoftwareSigner::generate("stranger");
    let bad_approver = common::record_bytes(
        10,
        &[&env.approvers[0], &stranger],
        env.notary.as_ref(),
        "motion",
    );
    let other_notary = SoftwareSigner::generate("other-notary");
    let bad_notary = common::record_bytes(
        11,
        &[&env.approvers[0], &env.approvers[1]],
        &other_notary,
        "motion",
    );
    let both = vec![bad_approver, bad_notary];
    env.ledger.append(10, &both).unwrap();
    env.copy_downstream(&both).await;

    let p = policy();
    let report = run(env.stores(), &p, &env.trust, &env.full())
        .await
        .unwrap();
    let major = only(&report, Class::Major);
    assert_eq!(
        report.counts.total(),
        major.len() as u64,
        "{:#?}",
        report.discrepancies
    );
    assert!(major
        .iter()
        .any(|d| d.seq == Some(10) && d.kind == Kind::BadApproval && d.store == Store::Ledger));
    assert!(major
        .iter()
        .any(|d| d.seq == Some(11) && d.kind == Kind::BadSignature));
    assert!(report.actions.is_empty(), "a ledger record is not repaired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_the_ledger_does_not_extend_is_critical() {
    let env = Env::new().await;
    env.append(20, 20).await;
    let p = policy();
    let request = RunRequest {
        last_verified: Some(CheckpointRef {
            size: 10,
            root: [7u8; 32],
        }),
        ..env.full()
    };
    let report = run(env.stores(), &p, &env.trust, &request).await.unwrap();
    assert_eq!(report.counts.critical, 1, "{:#?}", report.discrepancies);
    assert_eq!(report.discrepancies[0].kind, Kind::ConsistencyFailure);
    let shrunk = RunRequest {
        last_verified: Some(CheckpointRef {
            size: 30,
            root: [7u8; 32],
        }),
        ..env.full()
    };
    let report = run(env.stores(), &p, &env.trust, &shrunk).await.unwrap();
    assert_eq!(report.discrepancies[0].kind, Kind::ConsistencyFailure);
    assert!(report.discrepancies[0].detail.contains("shrank"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_runs_read_the_stream_from_the_last_cursor() {
    let env = Env::new().await;
    env.append(300, 300).await;
    let p = VerificationPolicy::from_toml("[schedule]\nrolling_window = 100\n").unwrap();
    let full = run(env.stores(), &p, &env.trust, &env.full())
        .await
        .unwrap();
    assert!(full.is_clean());
    let cursor = full.stream_cursor.clone().expect("a cursor before seq 200");

    env.append(50, 50).await;
    let inc = run(
        env.stores(),
        &p,
        &env.trust,
        &RunRequest::incremental_after(&full),
    )
    .await
    .unwrap();
    assert!(inc.is_clean(), "{:#?}", inc.discrepancies);
    assert_eq!((inc.ranges[0].start, inc.ranges[0].end), (200, 350));
    assert_eq!(inc.records_compared, 150);
    assert_ne!(inc.stream_cursor, Some(cursor), "the cursor moves on");
    // Without a cursor the walk starts at the beginning and passes over what lies before the
    // range: the same result.
    let uncursored = run(
        env.stores(),
        &p,
        &env.trust,
        &RunRequest {
            stream_after: None,
            ..RunRequest::incremental_after(&full)
        },
    )
    .await
    .unwrap();
    assert!(uncursored.is_clean(), "{:#?}", uncursored.discrepancies);
    assert_eq!(uncursored.records_compared, 150);
    assert_eq!(uncursored.stream_cursor, inc.stream_cursor);

    // An event changed before the window is outside an incremental run, and inside a full one.
    let other = env.record(20);
    let c = env.raw("stream.db");
    c.execute_batch("DROP TRIGGER events_no_update").unwrap();
    c.execute("UPDATE events SET data = ?1 WHERE seq = 20", [&other])
        .unwrap();
    let inc2 = run(
        env.stores(),
        &p,
        &env.trust,
        &RunRequest::incremental_after(&inc),
    )
    .await
    .unwrap();
    assert!(inc2.is_clean());
    let full2 = run(env.stores(), &p, &env.trust, &RunRequest::full_after(&inc2))
        .await
        .unwrap();
    assert_eq!(full2.counts.major, 1);
    assert_eq!(full2.checkpoint_old, inc2.checkpoint_new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_stream_event_is_reported_and_stepped_over() {
    let env = Env::new().await;
    env.append(300, 300).await;
    let c = env.raw("stream.db");
    c.execute_batch(
        "DROP TRIGGER events_no_update; UPDATE events SET metadata = '{}' WHERE seq = 150;",
    )
    .unwrap();
    let p = common::policy();
    let report = run(env.stores(), &p, &env.trust, &env.full())
        .await
        .unwrap();
    assert_eq!(report.counts.total(), 2, "{:#?}", report.discrepancies);
    let damaged = report
        .discrepancies
        .iter()
        .find(|d| d.kind == Kind::Damaged)
        .unwrap();
    assert_eq!(
        (damaged.store, damaged.class, damaged.seq),
        (Store::Stream, Class::Major, None)
    );
    // Its seq reads as a hole, and every event after it was still compared.
    let gap = report
        .discrepancies
        .iter()
        .find(|d| d.kind == Kind::Gap)
        .unwrap();
    assert_eq!((gap.store, gap.seq), (Store::Stream, Some(150)));
    assert_eq!(report.actions.len(), 1);
    assert_eq!(report.actions[0].operation, Operation::RebuildStream);
    assert_eq!(report.actions[0].class, Class::Major);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_that_refuses_to_open_is_reported_as_critical() {
    let env = Env::new().await;
    env.append(300, 300).await;
    env.ledger.flush().unwrap();
    // Rewrite the checkpoint to claim a smaller tree: its signature no longer verifies, and
    // the ledger refuses to open.
    let checkpoint = env.ledger_dir().join("checkpoint");
    let text = std::fs::read_to_string(&checkpoint).unwrap();
    std::fs::write(&checkpoint, text.replacen("\n300\n", "\n299\n", 1)).unwrap();
    let err = triplicate_ledger::EmbeddedLedger::open_read_only(&env.ledger_dir(), None)
        .expect_err("the ledger refuses to open");
    let report = unopenable_ledger_report(&err, Some(&env.ledger_dir()), &env.trust, RunMode::Full);
    assert!(report.counts.critical >= 1);
    assert_eq!(report.counts.total(), report.counts.critical);
    let name = checkpoint.display().to_string();
    assert!(
        report
            .discrepancies
            .iter()
            .all(|d| d.file.as_deref() == Some(name.as_str())),
        "{:#?}",
        report.discrepancies
    );
    assert!(report.digest().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_repaired_from_a_ledger_at_fault() {
    let env = Env::new().await;
    env.append(300, 300).await;
    env.ledger.flush().unwrap();
    env.raw("projection.db")
        .execute_batch(
            "DROP TRIGGER decisions_no_update;
             UPDATE decisions SET title = 'drifted' WHERE seq = 42;",
        )
        .unwrap();
    let path = env
        .ledger_dir()
        .join(triplicate_ledger::layout::bundle_path(0, 256));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[200] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let p = policy();
    let report = run(env.stores(), &p, &env.trust, &env.full())
        .await
        .unwrap();
    assert!(report.counts.critical > 0);
    assert_eq!(report.counts.minor, 1, "{:#?}", report.discrepancies);
    assert_eq!(report.actions.len(), 1);
    assert_eq!(report.actions[0].status, ActionStatus::Planned);
    let again = run(env.stores(), &p, &env.trust, &env.full())
        .await
        .unwrap();
    assert_eq!(again.counts.minor, 1, "the drifted row is still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_ledger_gained_during_a_run_are_not_extra() {
    let env = Env::new().await;
    env.append(300, 300).await;
    // As if the checkpoint had been read at 290 and 10 records were committed (to all three
    // stores) while the run went on.
    let cp = CheckpointRef {
        size: 290,
        root: env.ledger.root_at(290).unwrap(),
    };
    let options = triplicate_verifier::RangeOptions {
        verified: Some(cp),
        batch: 64,
        ..Default::default()
    };
    let found = triplicate_verifier::verify_range(
        env.stores(),
        &policy(),
        &env.trust,
        0..300,
        triplicate_core::Timestamp::now(),
        &options,
    )
    .await
    .unwrap();
    assert!(found.discrepancies.is_empty(), "{:#?}", found.discrepancies);
    assert_eq!(found.records, 290);
    assert_eq!(found.root_verified, Some(true));
    assert_eq!(found.signatures_checked, 870);
}

/// Without reading ahead (every batch counts as large), a range gives the same findings, in
/// the same order, as with it: the reading loops wait for the comparison and nothing stalls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_without_read_ahead_finds_the_same() {
    let env = Env::new().await;
    env.append(300, 300).await;
    let c = env.raw("projection.db");
    c.execute_batch(
        "DROP TRIGGER decisions_no_update; UPDATE decisions SET title = 'altered' WHERE seq = 100;",
    )
    .unwrap();
    let run = |read_ahead_bytes: usize| {
        let options = triplicate_verifier::RangeOptions {
            batch: 16,
            read_ahead_bytes,
            ..Default::default()
        };
        let stores = env.stores();
        let trust = env.trust.clone();
        async move {
            triplicate_verifier::verify_range(
                stores,
                &policy(),
                &trust,
                0..300,
                triplicate_core::Timestamp::now(),
                &options,
            )
            .await
            .unwrap()
        }
    };
    let ahead = run(triplicate_verifier::READ_AHEAD_BYTES).await;
    let waiting = run(0).await;
    assert_eq!(ahead.records, 300);
    assert_eq!(waiting.records, 300);
    let key = |f: &triplicate_verifier::RangeFindings| {
        f.discrepancies
            .iter()
            .map(|d| (d.seq, d.store, d.kind, d.expected_hash, d.actual_hash))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&ahead).len(), 1, "{:#?}", ahead.discrepancies);
    assert_eq!(key(&ahead), key(&waiting));
}
