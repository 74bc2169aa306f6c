//! Backups and restores of real deployments: a service's data directory backed up while it
//! runs, restored into a fresh data directory with its reports, and served again with a clean
//! full cross-check; on embedded stores and with the projection in PostgreSQL; a non-empty
//! target refused unless forced.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{drop_nats, fresh_nats, pg_url, start, start_with};
use triplicate_projection::testkit::PgTestDb;
use triplicate_server::recovery::{self, Deployment, RecoveryFailure, RestoreOptions};
use triplicate_server::setup::{ProjectionChoice, StreamChoice};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Back up a running service, stop it, back up again (incrementally), restore into a fresh
/// data directory (its keys copied, as an operator moving a deployment would), serve it, and
/// show every record and report came back and a full cross-check is clean.
async fn round_trip(src_projection: ProjectionChoice, dst_projection: ProjectionChoice) {
    round_trip_with(
        src_projection,
        dst_projection,
        StreamChoice::Sqlite,
        StreamChoice::Sqlite,
    )
    .await;
}

async fn round_trip_with(
    src_projection: ProjectionChoice,
    dst_projection: ProjectionChoice,
    src_stream: StreamChoice,
    dst_stream: StreamChoice,
) {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let r = start_with(&a, src_projection.clone(), src_stream.clone()).await;
    let http = reqwest::Client::new();
    common::populate(&r, &http, 60).await;
    let first = r.crosscheck.run_now(true).await.unwrap();
    assert!(first.report.is_clean());
    // A drill's signed report: backed up and restored with the rest.
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let drill = r
        .drills
        .run(triplicate_server::drill::DrillOptions {
            scratch_dir: Some(scratch),
            ..triplicate_server::drill::DrillOptions::new(
                triplicate_server::drill::Scenario::LoseStream,
            )
        })
        .await
        .unwrap();
    assert!(drill.report.passed);
    common::settle(&r.service).await;

    let dep_a = Deployment::DataDir {
        data_dir: a.clone(),
        projection: src_projection.clone(),
        stream: src_stream.clone(),
    };
    let out = tmp.path().join("backup");
    // While it runs: the backup covers the last flushed checkpoint.
    let live = recovery::backup(&dep_a, &out).await.unwrap();
    assert!(live.manifest.manifest.tree_size <= r.service.ledger().tree_size());
    let size = r.service.ledger().tree_size();
    r.stop().await.unwrap();
    let second = recovery::backup(&dep_a, &out).await.unwrap();
    let m = &second.manifest.manifest;
    assert_eq!(m.tree_size, size);
    assert_eq!(m.stream.events, size);
    assert_eq!(m.projection.records, size);
    assert_eq!(m.projection.reports, 1);
    assert_eq!(m.projection.drills, 1);

    let b = tmp.path().join("b");
    copy_dir(&a.join("keys"), &b.join("keys"));
    let dep_b = Deployment::DataDir {
        data_dir: b.clone(),
        projection: dst_projection.clone(),
        stream: dst_stream.clone(),
    };
    let restored = recovery::restore(&dep_b, &out, RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(restored.outcome.tree_size, size);
    assert_eq!(restored.outcome.stream.written, size);
    assert_eq!(restored.outcome.projection.written, size);
    assert_eq!(restored.outcome.reports, 1);
    assert_eq!(restored.backup.projection.agreeing, size);
    assert!(restored.backup.reports_unconfirmed.is_empty());
    assert_eq!(restored.outcome.drills, 1);
    assert!(restored.backup.drills_unconfirmed.is_empty());

    // A second restore into the same target is refused, naming every non-empty store.
    match recovery::restore(&dep_b, &out, RestoreOptions::default()).await {
        Err(RecoveryFailure::TargetNotEmpty(lines)) => {
            assert!(lines.iter().any(|l| l.contains("ledger")), "{lines:?}");
            assert!(lines.iter().any(|l| l.contains("stream")), "{lines:?}");
        }
        other => panic!("not refused: {other:?}"),
    }

    let r = start_with(&b, dst_projection, dst_stream.clone()).await;
    assert_eq!(r.service.ledger().tree_size(), size);
    assert_eq!(r.service.stream().name(), dst_stream.name());
    let reports = r.crosscheck.resume_from_store().await;
    assert_eq!(
        reports,
        Some(first.report.run_id),
        "the chain of reports continues"
    );
    let check = r.crosscheck.run_now(true).await.unwrap();
    assert!(check.report.is_clean(), "{:?}", check.report.discrepancies);
    // The restored drill report still checks out against its signature and audit record.
    let stored =
        triplicate_projection::DrillStore::drill(r.service.projection(), drill.report.drill_id)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(stored.body, drill.body);
    assert_eq!(check.report.records_compared, size);
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_round_trip_and_forced_restore() {
    round_trip(ProjectionChoice::Sqlite, ProjectionChoice::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_projection_backed_up_and_restored_into_a_fresh_database() {
    let src = PgTestDb::create().await;
    let dst = PgTestDb::create().await;
    round_trip(
        ProjectionChoice::Postgres { url: pg_url(&src) },
        ProjectionChoice::Postgres { url: pg_url(&dst) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_restore_moves_the_old_stores_aside_and_a_bad_backup_leaves_them_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let r = start(&a, ProjectionChoice::Sqlite).await;
    let http = reqwest::Client::new();
    common::populate(&r, &http, 10).await;
    r.stop().await.unwrap();
    let dep = Deployment::DataDir {
        data_dir: a.clone(),
        projection: ProjectionChoice::Sqlite,
        stream: Default::default(),
    };
    let out = tmp.path().join("backup");
    recovery::backup(&dep, &out).await.unwrap();

    // More records after the backup, then a damaged backup: refused, the target untouched.
    let r = start(&a, ProjectionChoice::Sqlite).await;
    common::populate(&r, &http, 5).await;
    let size = r.service.ledger().tree_size();
    r.stop().await.unwrap();
    let events = out.join("stream/events.jsonl");
    let good = std::fs::read(&events).unwrap();
    let mut bad = good.clone();
    bad[20] ^= 1;
    std::fs::write(&events, &bad).unwrap();
    let before = std::fs::read(a.join("ledger/checkpoint")).unwrap();
    let err = recovery::restore(
        &dep,
        &out,
        RestoreOptions {
            force: true,
            trusted: None,
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RecoveryFailure::Refused(_)), "{err}");
    assert!(err.to_string().contains("stream/events.jsonl"), "{err}");
    assert_eq!(std::fs::read(a.join("ledger/checkpoint")).unwrap(), before);
    assert!(!std::fs::read_dir(&a).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("replaced-")));
    std::fs::write(&events, &good).unwrap();

    // Forced: the old stores go aside (kept), the backup comes back.
    let done = recovery::restore(
        &dep,
        &out,
        RestoreOptions {
            force: true,
            trusted: None,
        },
    )
    .await
    .unwrap();
    let aside = done.moved_aside.unwrap();
    assert!(aside.join("ledger/checkpoint").exists());
    assert!(aside.join("stream.db").exists());
    assert!(done.outcome.tree_size < size);
    let r = start(&a, ProjectionChoice::Sqlite).await;
    assert_eq!(r.service.ledger().tree_size(), done.outcome.tree_size);
    r.stop().await.unwrap();
}

/// The stream in NATS JetStream: backed up from one JetStream stream (while the service runs
/// and after), its drill run on the scratch copy, restored into a fresh JetStream stream, served
/// again with a clean full cross-check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_stream_backed_up_and_restored_into_a_fresh_stream() {
    let (src, dst) = (fresh_nats(), fresh_nats());
    let run = round_trip_with(
        ProjectionChoice::Sqlite,
        ProjectionChoice::Sqlite,
        src.clone(),
        dst.clone(),
    );
    let r = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await;
    drop_nats(&src).await;
    drop_nats(&dst).await;
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
}
