//! The embedded SQLite projection: the conformance suites (records, verification reports and
//! drill reports); every column feeds the re-derived hash; append-only triggers and the repair
//! guard; the verification and drill tables' triggers; read-only handles; reopening; upgrading
//! a version-1 and a version-3 file; a closed database; concurrent appliers; repairs logged and
//! restoring a lost row; random records round-trip byte for byte.

#![allow(clippy::unwrap_used)]

mod common;

use proptest::prelude::*;
use rusqlite::functions::FunctionFlags;
use rusqlite::Connection;
use triplicate_core::digest::leaf_hash;
use triplicate_projection::conformance::{canonical, run, snapshot};
use triplicate_projection::conformance_drills::{self, sample_drill};
use triplicate_projection::conformance_reports::{self, sample_report, sample_review};
use triplicate_projection::fixtures::{bytes, sample_record};
use triplicate_projection::row_digest;
use triplicate_projection::{
    DecisionQuery, DrillStore, Projection, ProjectionError, Rederived, RepairRequest, ReportStore,
    SqliteProjection,
};

fn batch(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range.map(|s| bytes(&sample_record(s, 0))).collect()
}

/// A raw connection to the file, as another program (or the sqlite3 shell) would have.
fn raw(dir: &std::path::Path) -> Connection {
    Connection::open(dir.join("projection.db")).unwrap()
}

/// A raw connection that defines the guard function with a fixed answer.
fn raw_with_guard(dir: &std::path::Path, answer: i64) -> Connection {
    let c = raw(dir);
    c.create_scalar_function(
        "triplicate_repair_active",
        0,
        FunctionFlags::SQLITE_UTF8,
        move |_| Ok(answer),
    )
    .unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let dir = tempfile::tempdir().unwrap();
    let p = SqliteProjection::open(dir.path()).await.unwrap();
    run(&p).await;
}

/// The WAL is copied into the database file after every few hundred records, by a task of its
/// own rather than inside a commit: the file grows once enough records were applied, while
/// SQLite's own checkpoint (a backstop at 64 MB of WAL) would not have run yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_after_enough_records() {
    let dir = tempfile::tempdir().unwrap();
    let p = SqliteProjection::open(dir.path()).await.unwrap();
    let file = dir.path().join("projection.db");
    let size = || std::fs::metadata(&file).unwrap().len();
    let before = size();
    for k in 0..6 {
        p.apply(batch(k * 100..(k + 1) * 100)).await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while size() < before + 256 * 1024 {
        assert!(
            std::time::Instant::now() < deadline,
            "projection.db stayed at {} bytes after 600 records (it was {before})",
            size()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let c = raw(dir.path());
    let pages: i64 = c
        .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
        .unwrap();
    assert_eq!(pages, 1000, "a fresh connection has SQLite's default");
    assert_eq!(p.highest_seq().await.unwrap(), Some(599));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let p = SqliteProjection::open(dir.path()).await.unwrap();
    conformance_reports::run(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_tables_refuse_update_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let p = SqliteProjection::open(dir.path()).await.unwrap();
    let r = sample_report(1, 5, 3);
    p.store_report(r.clone()).await.unwrap();
    p.record_review(sample_review(r.actions[0].id, "approved", None, 0))
        .await
        .unwrap();
    let before = conformance_reports::snapshot(&p).await;
    // Any connection, with or without the repair guard: these triggers have no exception.
    for c in [raw(dir.path()), raw_with_guard(dir.path(), 1)] {
        for (sql, msg) in [
            (
                "UPDATE verification_reports SET mode = 'full'",
                "UPDATE on verification_reports refused",
            ),
            (
                "DELETE FROM verification_reports",
                "DELETE on verification_reports refused",
            ),
            (
                "UPDATE verification_discrepancies SET detail = 'x'",
                "UPDATE on verification_discrepancies refused",
            ),
            (
                "DELETE FROM verification_discrepancies WHERE position = 0",
                "DELETE on verification_discrepancies refused",
            ),
            (
                "UPDATE verification_actions SET status = 'applied'",
                "UPDATE on verification_actions refused",
            ),
            (
                "DELETE FROM verification_actions",
                "DELETE on verification_actions refused",
            ),
            (
                "UPDATE verification_reviews SET verdict = 'rejected'",
                "UPDATE on verification_reviews refused",
            ),
            (
                "DELETE FROM verification_reviews",
                "DELETE on verification_reviews refused",
            ),
        ] {
            let e = c.execute(sql, []).unwrap_err().to_string();
            assert!(e.contains(msg), "{sql}: {e}");
        }
        // The schema's own checks hold for rows written behind the projection's back too.
        let e = c
            .execute(
                "INSERT INTO verification_reviews (action_id, verdict, key_id, alg, signature,                  signed_at_s, signed_at_ns, reason, recorded_at_s, recorded_at_ns)                  SELECT action_id, 'maybe', 'k', 'ed25519', x'01', 0, 0, '', 0, 0                  FROM verification_actions LIMIT 1",
                [],
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("CHECK"), "{e}");
    }
    assert!(conformance_reports::snapshot(&p).await == before);
    // The writer enforces the foreign keys: a review of no action is refused by the schema
    // too, not only by the projection's own check.
    let c = raw(dir.path());
    c.pragma_update(None, "foreign_keys", "ON").unwrap();
    let e = c
        .execute(
            "INSERT INTO verification_reviews (action_id, verdict, key_id, alg, signature,              signed_at_s, signed_at_ns, reason, recorded_at_s, recorded_at_ns)              VALUES ('01900000-0000-7000-8000-000000000000', 'approved', 'k', 'ed25519',              x'01', 0, 0, '', 0, 0)",
            [],
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("FOREIGN KEY"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_file_is_upgraded_and_keeps_its_records() {
    let dir = tempfile::tempdir().unwrap();
    {
        let p = SqliteProjection::open(dir.path()).await.unwrap();
        p.apply(batch(0..25)).await.unwrap();
    }
    // Turn the file back into what a version-1 build left: its records, no verification
    // tables (dropping a table fires no triggers), schema version 1.
    {
        let c = raw(dir.path());
        c.execute_batch(
            "DROP TABLE verification_reviews; DROP TABLE verification_actions; \
             DROP TABLE verification_discrepancies; DROP TABLE verification_reports; \
             DROP TABLE removals; DROP TABLE drill_reports; PRAGMA user_version = 1;",
        )
        .unwrap();
        let left: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'verification%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
        // A reader of the new build refuses the old file until the writer has upgraded it.
        let e = SqliteProjection::open_read_only(dir.path())
            .await
            .unwrap_err();
        assert!(matches!(e, ProjectionError::Schema(_)), "{e}");
    }
    let p = SqliteProjection::open(dir.path()).await.unwrap();
    let version: i64 = raw(dir.path())
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4);
    assert_eq!(p.highest_seq().await.unwrap(), Some(24));
    assert_eq!(
        p.record_bytes(0, 25).await.unwrap()[24].bytes(),
        Some(bytes(&sample_record(24, 0)).as_slice())
    );
    let r = sample_report(1, 3, 2);
    assert!(p.store_report(r.clone()).await.unwrap());
    assert_eq!(p.report(r.run_id).await.unwrap().unwrap().report, r);
    let d = sample_drill(1, "projection-loss", true);
    assert!(p.store_drill(d.clone()).await.unwrap());
    assert_eq!(p.drill(d.drill_id).await.unwrap(), Some(d));
    let ro = SqliteProjection::open_read_only(dir.path()).await.unwrap();
    assert_eq!(ro.reports(None, 10).await.unwrap().len(), 1);
    assert_eq!(ro.drills(None, 10, None).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let p = SqliteProjection::open(dir.path()).await.unwrap();
    conformance_drills::run(&p).await;
}

/// Every column of `drill_reports`.
const DRILL_COLUMNS: [&str; 20] = [
    "drill_id",
    "scenario",
    "started_at_s",
    "started_at_ns",
    "finished_at_s",
    "finished_at_ns",
    "passed",
    "in_place",
    "records_before",
    "records_after",
    "detect_ms",
    "recover_ms",
    "discrepancies_left",
    "digest",
    "key_id",
    "alg",
    "signature",
    "body",
    "audit_seq",
    "stored_at",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_reports_refuse_update_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let p = SqliteProjection::open(dir.path()).await.unwrap();
    for (n, passed) in [(1, true), (2, false), (3, true)] {
        assert!(p
            .store_drill(sample_drill(n, "restore-stream", passed))
            .await
            .unwrap());
    }
    let before = conformance_drills::snapshot(&p).await;
    assert_eq!(before.0.len(), 3);
    // Any connection, with or without the repair guard: these triggers have no exception.
    for c in [raw(dir.path()), raw_with_guard(dir.path(), 1)] {
        for (sql, msg) in [
            (
                "UPDATE drill_reports SET passed = 1",
                "UPDATE on drill_reports refused",
            ),
            (
                "UPDATE drill_reports SET body = '{}' WHERE passed = 0",
                "UPDATE on drill_reports refused",
            ),
            (
                "DELETE FROM drill_reports",
                "DELETE on drill_reports refused",
            ),
            (
                "DELETE FROM drill_reports WHERE passed = 0",
                "DELETE on drill_reports refused",
            ),
        ] {
            let e = c.execute(sql, []).unwrap_err().to_string();
            assert!(e.contains(msg), "{sql}: {e}");
        }
        // The schema's own checks hold for rows written behind the projection's back too.
        for (what, column, value) in [
            ("an empty scenario", "scenario", "''"),
            (
                "a scenario over 64 bytes",
                "scenario",
                "printf('%.65c', 's')",
            ),
            ("a body that is not JSON", "body", "'{\"a\":'"),
            ("a signature over 512 bytes", "signature", "zeroblob(513)"),
            ("an empty signature", "signature", "x''"),
            ("passed neither 0 nor 1", "passed", "2"),
            ("a negative count", "records_after", "-1"),
            ("a short digest", "digest", "x'00'"),
        ] {
            // A copy of a stored row under a new id, with one column replaced.
            let select = DRILL_COLUMNS
                .iter()
                .map(|col| match *col {
                    "drill_id" => "'01900000-0000-7000-8000-000000000000'",
                    col if col == column => value,
                    col => col,
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO drill_reports ({}) SELECT {select} FROM drill_reports LIMIT 1",
                DRILL_COLUMNS.join(", ")
            );
            let e = c.execute(&sql, []).unwrap_err().to_string();
            assert!(e.contains("CHECK"), "{what}: {e}");
        }
    }
    assert!(conformance_drills::snapshot(&p).await == before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_handle_reads_drills_and_cannot_write_them() {
    let dir = tempfile::tempdir().unwrap();
    let w = SqliteProjection::open(dir.path()).await.unwrap();
    let d = sample_drill(1, "ledger-tail-corruption", false);
    w.store_drill(d.clone()).await.unwrap();
    let ro = SqliteProjection::open_read_only(dir.path()).await.unwrap();
    assert_eq!(ro.drill(d.drill_id).await.unwrap(), Some(d.clone()));
    assert_eq!(ro.drills(None, 5, None).await.unwrap().len(), 1);
    assert_eq!(ro.drill_status().await.unwrap().len(), 1);
    let other = sample_drill(2, "ledger-tail-corruption", true);
    assert!(matches!(
        ro.store_drill(other.clone()).await,
        Err(ProjectionError::ReadOnly(_))
    ));
    // Not even a retry of a stored drill goes through a read-only handle.
    assert!(matches!(
        ro.store_drill(d.clone()).await,
        Err(ProjectionError::ReadOnly(_))
    ));
    assert_eq!(w.drill(other.drill_id).await.unwrap(), None);
    assert_eq!(w.drills(None, 5, None).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_file_is_upgraded_with_the_drill_table_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let r = sample_report(1, 3, 2);
    {
        let p = SqliteProjection::open(dir.path()).await.unwrap();
        p.apply(batch(0..10)).await.unwrap();
        p.store_report(r.clone()).await.unwrap();
    }
    // What a version-3 build left: no drill table (dropping it drops its indexes and
    // triggers, and fires none), schema version 3.
    {
        let c = raw(dir.path());
        c.execute_batch("DROP TABLE drill_reports; PRAGMA user_version = 3;")
            .unwrap();
        let left: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'drill%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
        let e = SqliteProjection::open_read_only(dir.path())
            .await
            .unwrap_err();
        assert!(matches!(e, ProjectionError::Schema(_)), "{e}");
    }
    let p = SqliteProjection::open(dir.path()).await.unwrap();
    let c = raw(dir.path());
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4);
    let mut objects: Vec<String> = c
        .prepare(
            "SELECT type || ' ' || name FROM sqlite_schema \
             WHERE tbl_name = 'drill_reports' ORDER BY 1",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    objects.retain(|o| !o.starts_with("index sqlite_autoindex"));
    assert_eq!(
        objects,
        [
            "index drill_reports_passed",
            "index drill_reports_scenario",
            "table drill_reports",
            "trigger drill_reports_no_delete",
            "trigger drill_reports_no_update",
        ]
    );
    assert_eq!(p.highest_seq().await.unwrap(), Some(9));
    assert_eq!(p.report(r.run_id).await.unwrap().unwrap().report, r);
    let d = sample_drill(1, "projection-loss", true);
    assert!(p.store_drill(d.clone()).await.unwrap());
    let ro = SqliteProjection::open_read_only(dir.path()).await.unwrap();
    assert_eq!(ro.drill(d.drill_id).await.unwrap(), Some(d));
    // Opening again applies nothing more.
    drop((p, ro));
    let p = SqliteProjection::open(dir.path()).await.unwrap();
    assert_eq!(p.drills(None, 10, None).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_handle_reads_reports_and_cannot_write_them() {
    let dir = tempfile::tempdir().unwrap();
    let w = SqliteProjection::open(dir.path()).await.unwrap();
    let r = sample_report(1, 4, 2);
    w.store_report(r.clone()).await.unwrap();
    let ro = SqliteProjection::open_read_only(dir.path()).await.unwrap();
    assert_eq!(ro.report(r.run_id).await.unwrap().unwrap().report, r);
    assert_eq!(ro.reports(None, 5).await.unwrap().len(), 1);
    assert!(ro.action(r.actions[1].id).await.unwrap().is_some());
    assert!(matches!(
        ro.store_report(sample_report(2, 1, 1)).await,
        Err(ProjectionError::ReadOnly(_))
    ));
    assert!(matches!(
        ro.record_review(sample_review(r.actions[0].id, "rejected", None, 0))
            .await,
        Err(ProjectionError::ReadOnly(_))
    ));
    assert!(w
        .report(r.run_id)
        .await
        .unwrap()
        .unwrap()
        .reviews
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_column_feeds_the_rederived_hash() {
    let dir = tempfile::tempdir().unwrap();
    let p = SqliteProjection::open(dir.path()).await.unwrap();
    p.apply(batch(0..450)).await.unwrap();
    // Seqs 13 + 15k have two approvals, two attachments (one named) and a supersedes.
    let alterations: &[(&str, &str, &str)] = &[
        ("decisions", "seq", "seq = seq + 1000000"),
        (
            "decisions",
            "id",
            "id = '01900000-0000-7000-8000-00000000abcd'",
        ),
        ("decisions", "version", "version = 2"),
        ("decisions", "kind", "kind = 'other.kind'"),
        ("decisions", "title", "title = title || '!'"),
        ("decisions", "body", "body = body || ' '"),
        ("decisions", "payload", "payload = '{\"ratio\":0.5}'"),
        (
            "decisions",
            "proposed_at_s",
            "proposed_at_s = proposed_at_s + 1",
        ),
        (
            "decisions",
            "proposed_at_ns",
            "proposed_at_ns = (proposed_at_ns + 1) % 1000000000",
        ),
        (
            "decisions",
            "recorded_at_s",
            "recorded_at_s = recorded_at_s - 1",
        ),
        (
            "decisions",
            "recorded_at_ns",
            "recorded_at_ns = (recorded_at_ns + 1) % 1000000000",
        ),
        ("decisions", "supersedes", "supersedes = NULL"),
        (
            "decisions",
            "notary_key_id",
            "notary_key_id = '0000000000000000'",
        ),
        ("decisions", "notary_alg", "notary_alg = 'ecdsa-p256'"),
        (
            "decisions",
            "notary_signature",
            "notary_signature = zeroblob(64)",
        ),
        ("approvals", "seq", "seq = seq + 1000000"),
        ("approvals", "position", "position = position + 2"),
        ("approvals", "key_id", "key_id = 'ffffffffffffffff'"),
        ("approvals", "alg", "alg = 'ecdsa-p256'"),
        ("approvals", "signature", "signature = zeroblob(64)"),
        ("approvals", "signed_at_s", "signed_at_s = signed_at_s + 1"),
        (
            "approvals",
            "signed_at_ns",
            "signed_at_ns = (signed_at_ns + 1) % 1000000000",
        ),
        ("attachments", "seq", "seq = seq + 1000000"),
        ("attachments", "position", "position = position + 2"),
        ("attachments", "sha256", "sha256 = zeroblob(32)"),
        ("attachments", "media_type", "media_type = 'text/html'"),
        ("attachments", "size", "size = size + 1"),
        (
            "attachments",
            "name",
            "name = CASE WHEN name IS NULL THEN 'x' ELSE NULL END",
        ),
    ];
    // Every column of every governance table is altered once.
    let c = raw(dir.path());
    for table in ["decisions", "approvals", "attachments"] {
        let mut q = c
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap();
        let cols: Vec<String> = q
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for col in cols {
            assert!(
                alterations.iter().any(|(t, c, _)| *t == table && *c == col),
                "{table}.{col} is not altered by this test"
            );
        }
    }
    // The test plays a tamperer with the triggers out of the way.
    for t in ["decisions", "approvals", "attachments"] {
        c.execute_batch(&format!("DROP TRIGGER {t}_no_update;"))
            .unwrap();
    }
    for (k, (table, column, set)) in alterations.iter().enumerate() {
        let seq = 13 + 15 * k as u64;
        let original = bytes(&sample_record(seq, 0));
        let before = p.record_bytes(seq, seq + 1).await.unwrap();
        assert_eq!(before[0].bytes(), Some(original.as_slice()));
        let row_digest = {
            let mut parts = row_digest::PartDigests::new(seq, 1);
            parts.add(&row_digest::of_record_bytes(&original).unwrap());
            parts.finish()
        };
        assert_eq!(p.row_digests(seq, seq + 1, 1).await.unwrap(), row_digest);
        let filter = match *table {
            // One approval or attachment only, so the record still has the others.
            "decisions" => format!("seq = {seq}"),
            _ => format!("seq = {seq} AND position = 1"),
        };
        let n = c
            .execute(&format!("UPDATE {table} SET {set} WHERE {filter}"), [])
            .unwrap();
        assert_eq!(n, 1, "{table}.{column}");
        let after = p.record_bytes(seq, seq + 1).await.unwrap();
        let changed = match after.first() {
            None => true,
            Some(r) => r.leaf_hash() != Some(leaf_hash(&original)),
        };
        assert!(
            changed,
            "altering {table}.{column} did not change the re-derived hash"
        );
        assert_ne!(
            p.row_digests(seq, seq + 1, 1).await.unwrap(),
            row_digest,
            "altering {table}.{column} did not change the row digest"
        );
    }
    // Untouched records still re-derive exactly.
    for seq in [0u64, 12, 14, 299] {
        assert_eq!(
            p.record_bytes(seq, seq + 1).await.unwrap()[0].bytes(),
            Some(bytes(&sample_record(seq, 0)).as_slice())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_refuse_update_and_delete_outside_the_repair_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = SqliteProjection::open(dir.path()).await.unwrap();
    p.apply(batch(0..20)).await.unwrap();
    let before = snapshot(&p).await;

    // Another program, without the guard function, cannot even prepare a change.
    let c = raw(dir.path());
    for sql in [
        "UPDATE decisions SET title = 'x' WHERE seq = 1",
        "DELETE FROM decisions WHERE seq = 1",
        "DELETE FROM approvals",
        "DELETE FROM attachments WHERE seq = 0",
    ] {
        let e = c.execute(sql, []).unwrap_err().to_string();
        assert!(
            e.contains("triplicate_repair_active") || e.contains("refused"),
            "{sql}: {e}"
        );
    }
    // With the guard saying "not repairing", the triggers abort with their message.
    let c = raw_with_guard(dir.path(), 0);
    for (sql, msg) in [
        (
            "UPDATE decisions SET title = 'x' WHERE seq = 1",
            "UPDATE on decisions refused",
        ),
        (
            "DELETE FROM decisions WHERE seq = 1",
            "DELETE on decisions refused",
        ),
        (
            "UPDATE approvals SET alg = 'x'",
            "UPDATE on approvals refused",
        ),
        (
            "DELETE FROM approvals WHERE seq = 2",
            "DELETE on approvals refused",
        ),
        (
            "UPDATE attachments SET size = 0",
            "UPDATE on attachments refused",
        ),
        ("DELETE FROM attachments", "DELETE on attachments refused"),
    ] {
        let e = c.execute(sql, []).unwrap_err().to_string();
        assert!(e.contains(msg), "{sql}: {e}");
    }
    // Even with the guard open, UPDATE stays refused (repairs delete and re-insert), and the
    // repair log is never changed.
    p.repair(RepairRequest {
        seq: 3,
        record_bytes: bytes(&sample_record(3, 1)),
        reason: "test".into(),
        run_id: "run-1".into(),
    })
    .await
    .unwrap();
    let c = raw_with_guard(dir.path(), 1);
    // A row for the removal log's row triggers to refuse changing.
    c.execute(
        "INSERT INTO removals (seq, old_leaf_hash, reason, run_id, old_rows, removed_at) \
         VALUES (99, NULL, 'test', 'run-0', '{}', '2026-01-01T00:00:00Z')",
        [],
    )
    .unwrap();
    for (sql, msg) in [
        (
            "UPDATE decisions SET title = 'x' WHERE seq = 1",
            "UPDATE on decisions refused",
        ),
        (
            "UPDATE repairs SET reason = 'x'",
            "UPDATE on repairs refused",
        ),
        ("DELETE FROM repairs", "DELETE on repairs refused"),
        (
            "UPDATE removals SET reason = 'x'",
            "UPDATE on removals refused",
        ),
        ("DELETE FROM removals", "DELETE on removals refused"),
    ] {
        let e = c.execute(sql, []).unwrap_err().to_string();
        assert!(e.contains(msg), "{sql}: {e}");
    }
    p.repair(RepairRequest {
        seq: 3,
        record_bytes: bytes(&sample_record(3, 0)),
        reason: "test".into(),
        run_id: "run-1".into(),
    })
    .await
    .unwrap();
    assert!(snapshot(&p).await == before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repairs_are_logged_and_restore_a_lost_row() {
    let dir = tempfile::tempdir().unwrap();
    let p = SqliteProjection::open(dir.path()).await.unwrap();
    p.apply(batch(0..30)).await.unwrap();

    // Drift: someone rewrote a title behind the projection's back.
    let c = raw_with_guard(dir.path(), 1);
    c.execute_batch(
        "DROP TRIGGER decisions_no_update; UPDATE decisions SET title = 'forged' WHERE seq = 7;",
    )
    .unwrap();
    let drifted = p.record_bytes(7, 8).await.unwrap()[0].leaf_hash().unwrap();
    let good = bytes(&sample_record(7, 0));
    assert_ne!(drifted, leaf_hash(&good));
    // An apply of the ledger's record now conflicts, naming the drifted hash.
    match p.apply(vec![good.clone()]).await {
        Err(ProjectionError::SeqConflict { stored, .. }) => {
            assert_eq!(stored, hex::encode(drifted))
        }
        r => panic!("expected a conflict, got {r:?}"),
    }
    let out = p
        .repair(RepairRequest {
            seq: 7,
            record_bytes: good.clone(),
            reason: "projection drift: leaf hash mismatch".into(),
            run_id: "run-42".into(),
        })
        .await
        .unwrap();
    assert_eq!(out.old_leaf_hash, Some(drifted));
    assert_eq!(
        p.record_bytes(7, 8).await.unwrap()[0].bytes(),
        Some(good.as_slice())
    );
    let (seq, old, new, reason, run, old_rows): (i64, Vec<u8>, Vec<u8>, String, String, String) = c
        .query_row(
            "SELECT seq, old_leaf_hash, new_leaf_hash, reason, run_id, old_rows FROM repairs WHERE id = ?1",
            [out.repair_id.unwrap()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
        )
        .unwrap();
    assert_eq!(
        (seq, reason.as_str(), run.as_str()),
        (7, "projection drift: leaf hash mismatch", "run-42")
    );
    assert_eq!(old, drifted.to_vec());
    assert_eq!(new, leaf_hash(&good).to_vec());
    assert!(old_rows.contains("\"title\":\"forged\""), "{old_rows}");
    // The title index followed the repair.
    let found = p
        .query(&DecisionQuery::new().title_words("forged"))
        .await
        .unwrap();
    assert!(found.records.is_empty());

    // A row lost in the middle: deleted with the guard open.
    c.execute_batch("DELETE FROM attachments WHERE seq = 12; DELETE FROM approvals WHERE seq = 12; DELETE FROM decisions WHERE seq = 12;")
        .unwrap();
    assert!(p.record_bytes(12, 13).await.unwrap().is_empty());
    let lost = bytes(&sample_record(12, 0));
    let out = p
        .repair(RepairRequest {
            seq: 12,
            record_bytes: lost.clone(),
            reason: "projection lost a row".into(),
            run_id: "run-43".into(),
        })
        .await
        .unwrap();
    assert_eq!((out.old_leaf_hash, out.changed), (None, true));
    assert_eq!(
        p.record_bytes(12, 13).await.unwrap()[0].bytes(),
        Some(lost.as_slice())
    );
    let old: Option<Vec<u8>> = c
        .query_row(
            "SELECT old_leaf_hash FROM repairs WHERE seq = 12",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_rows_are_reported_not_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let p = SqliteProjection::open(dir.path()).await.unwrap();
    p.apply(batch(0..10)).await.unwrap();
    let c = raw(dir.path());
    c.execute_batch("DROP TRIGGER approvals_no_update; UPDATE approvals SET position = 5 WHERE seq = 4 AND position = 0;")
        .unwrap();
    let got = p.record_bytes(3, 6).await.unwrap();
    assert_eq!(got.len(), 3);
    assert!(matches!(&got[1].content, Rederived::Damaged(why) if why.contains("positions")));
    assert!(got[0].bytes().is_some() && got[2].bytes().is_some());
    assert!(matches!(
        p.query(&DecisionQuery::new()).await,
        Err(ProjectionError::Damaged { seq: 4, .. })
    ));
    match p.apply(vec![bytes(&sample_record(4, 0))]).await {
        Err(ProjectionError::SeqConflict { stored, .. }) => {
            assert!(stored.contains("damaged"), "{stored}")
        }
        r => panic!("expected a conflict, got {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_open_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let missing = SqliteProjection::open_read_only(dir.path())
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("read-only"), "{missing}");

    let w = SqliteProjection::open(dir.path()).await.unwrap();
    w.apply(batch(0..10)).await.unwrap();
    let r = SqliteProjection::open_read_only(dir.path()).await.unwrap();
    assert_eq!(r.highest_seq().await.unwrap(), Some(9));
    assert!(matches!(
        r.apply(batch(10..11)).await,
        Err(ProjectionError::ReadOnly(_))
    ));
    assert!(matches!(
        r.repair(RepairRequest {
            seq: 1,
            record_bytes: bytes(&sample_record(1, 1)),
            reason: "x".into(),
            run_id: "y".into()
        })
        .await,
        Err(ProjectionError::ReadOnly(_))
    ));
    // The reader sees the writer's later commits.
    w.apply(batch(10..12)).await.unwrap();
    assert_eq!(r.highest_seq().await.unwrap(), Some(11));
    assert_eq!(
        r.record_bytes(11, 12).await.unwrap()[0].bytes(),
        Some(bytes(&sample_record(11, 0)).as_slice())
    );
    assert_eq!(
        r.query(&DecisionQuery::new().limit(3))
            .await
            .unwrap()
            .records
            .len(),
        3
    );
    // SQLite itself refuses writes on a read-only connection.
    let c = Connection::open_with_flags(
        dir.path().join("projection.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let e = c
        .execute("DELETE FROM repairs", [])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("readonly") || e.contains("read-only") || e.contains("refused"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_everything_and_checks_the_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    {
        let p = SqliteProjection::open(dir.path()).await.unwrap();
        p.apply(batch(0..50)).await.unwrap();
    }
    let p = SqliteProjection::open(dir.path()).await.unwrap();
    assert_eq!(p.highest_seq().await.unwrap(), Some(49));
    assert_eq!(
        p.record_bytes(49, 50).await.unwrap()[0].bytes(),
        Some(bytes(&sample_record(49, 0)).as_slice())
    );
    p.apply(batch(50..51)).await.unwrap();
    p.close();
    // A file from a newer build is refused, not guessed at.
    raw(dir.path())
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let e = SqliteProjection::open(dir.path()).await.unwrap_err();
    assert!(
        matches!(e, ProjectionError::Schema(ref m) if m.contains("99")),
        "{e}"
    );
    let e = SqliteProjection::open_read_only(dir.path())
        .await
        .unwrap_err();
    assert!(matches!(e, ProjectionError::Schema(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_database_is_a_clear_retryable_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = SqliteProjection::open(dir.path()).await.unwrap();
    p.apply(batch(0..5)).await.unwrap();
    let before = snapshot(&p).await;
    p.close();
    let e = p.apply(batch(5..6)).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("closed"), "{e}");
    assert!(p.highest_seq().await.is_err());
    assert!(p.record_bytes(0, 5).await.is_err());
    assert!(p.query(&DecisionQuery::new()).await.is_err());
    let p = SqliteProjection::open(dir.path()).await.unwrap();
    assert!(snapshot(&p).await == before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appliers_of_the_same_batch_write_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = SqliteProjection::open(dir.path()).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move { p.apply(batch(0..200)).await }));
    }
    let mut applied = 0;
    for t in tasks {
        applied += t.await.unwrap().unwrap().applied;
    }
    assert_eq!(applied, 200, "exactly one applier wrote the batch");
    assert_eq!(p.record_bytes(0, 1000).await.unwrap().len(), 200);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_records_round_trip_byte_for_byte(records in common::records(12, 0)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let p = SqliteProjection::open(dir.path()).await.unwrap();
            let applied: Vec<Vec<u8>> = records.iter().map(bytes).collect();
            p.apply(applied.clone()).await.unwrap();
            let got = p.record_bytes(0, applied.len() as u64).await.unwrap();
            for (g, want) in got.iter().zip(&applied) {
                prop_assert_eq!(g.bytes(), Some(want.as_slice()));
            }
            for r in &records {
                prop_assert_eq!(p.decision(r.decision.id).await.unwrap(), Some(canonical(r)));
            }
            Ok(())
        })?;
    }
}
