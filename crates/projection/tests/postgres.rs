//! The PostgreSQL projection, on a real server (`TRIPLICATE_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`): each test gets its own fresh database with
//! the real migrations and drops it at the end. With no server the tests fail, saying why.
//!
//! The conformance suites (records, verification reports and drill reports); roles and
//! triggers over real connections as `triplicate_reader`, `triplicate_writer` and the owner,
//! for the governance, the verification and the drill tables; every column feeds the
//! re-derived hash; the payload column keeps what `jsonb` cannot; migrations on a cluster whose
//! roles exist, and from versions 1 and 3; a closed pool; concurrent appliers; repairs logged
//! and restoring a lost row; random records round-trip.

#![allow(clippy::unwrap_used)]

mod common;

use proptest::prelude::*;
use sqlx::{ConnectOptions, PgConnection, Row};
use triplicate_core::digest::leaf_hash;
use triplicate_projection::conformance::{canonical, run, snapshot};
use triplicate_projection::conformance_drills::{self, sample_drill};
use triplicate_projection::conformance_reports::{self, sample_report, sample_review};
use triplicate_projection::fixtures::{bytes, sample_record, tricky_records};
use triplicate_projection::row_digest;
use triplicate_projection::testkit::PgTestDb;
use triplicate_projection::{
    DecisionQuery, DrillStore, PgProjection, Projection, ProjectionError, Rederived, RepairRequest,
    ReportStore, PG_READER_ROLE, PG_WRITER_ROLE,
};

fn batch(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range.map(|s| bytes(&sample_record(s, 0))).collect()
}

async fn writer(db: &PgTestDb) -> PgProjection {
    db.projection(Some(PG_WRITER_ROLE)).await
}

/// A connection to the test database acting as `role` (or as the owner, the admin user).
async fn connect_as(db: &PgTestDb, role: Option<&str>) -> PgConnection {
    let mut c = db.connect_options().connect().await.unwrap();
    if let Some(role) = role {
        sqlx::query(&format!("SET ROLE {role}"))
            .execute(&mut c)
            .await
            .unwrap();
    }
    c
}

/// Runs `sql`, which must fail; returns the error's message.
async fn refused(c: &mut PgConnection, sql: &str) -> String {
    match sqlx::query(sql).execute(&mut *c).await {
        Ok(r) => panic!("{sql:?} was allowed ({} rows)", r.rows_affected()),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let db = PgTestDb::create().await;
    run(&writer(&db).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_conformance() {
    let db = PgTestDb::create().await;
    conformance_reports::run(&writer(&db).await).await;
}

const VERIFICATION_TABLES: [&str; 4] = [
    "verification_reports",
    "verification_discrepancies",
    "verification_actions",
    "verification_reviews",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_tables_roles_and_triggers() {
    let db = PgTestDb::create().await;
    let p = writer(&db).await;
    let r = sample_report(1, 5, 3);
    p.store_report(r.clone()).await.unwrap();
    p.record_review(sample_review(r.actions[0].id, "approved", None, 0))
        .await
        .unwrap();
    let before = conformance_reports::snapshot(&p).await;
    let mut owner = connect_as(&db, None).await;

    // Privileges: the reader reads; the writer reads and inserts; neither changes or removes.
    for table in VERIFICATION_TABLES {
        for (role, privilege, held) in [
            (PG_READER_ROLE, "SELECT", true),
            (PG_READER_ROLE, "INSERT", false),
            (PG_WRITER_ROLE, "SELECT", true),
            (PG_WRITER_ROLE, "INSERT", true),
            (PG_READER_ROLE, "UPDATE", false),
            (PG_READER_ROLE, "DELETE", false),
            (PG_READER_ROLE, "TRUNCATE", false),
            (PG_WRITER_ROLE, "UPDATE", false),
            (PG_WRITER_ROLE, "DELETE", false),
            (PG_WRITER_ROLE, "TRUNCATE", false),
            ("public", "SELECT", false),
        ] {
            let got: bool = sqlx::query_scalar("SELECT has_table_privilege($1, $2, $3)")
                .bind(role)
                .bind(table)
                .bind(privilege)
                .fetch_one(&mut owner)
                .await
                .unwrap();
            assert_eq!(got, held, "{role} {privilege} on {table}");
        }
    }

    // The reader: SELECT only, through SQL and through the trait.
    let mut rd = connect_as(&db, Some(PG_READER_ROLE)).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM verification_discrepancies")
        .fetch_one(&mut rd)
        .await
        .unwrap();
    assert_eq!(n, 5);
    for sql in [
        "INSERT INTO verification_reports SELECT * FROM verification_reports",
        "INSERT INTO verification_reviews (action_id, verdict, key_id, alg, signature,          signed_at, signed_at_extra_ns, reason, recorded_at, recorded_at_extra_ns)          SELECT action_id, 'rejected', 'k', 'ed25519', '\\x01', now(), 0, '', now(), 0          FROM verification_actions LIMIT 1",
        "UPDATE verification_reports SET mode = 'full'",
        "DELETE FROM verification_reviews",
        "TRUNCATE verification_actions CASCADE",
    ] {
        let e = refused(&mut rd, sql).await;
        assert!(e.contains("permission denied"), "reader: {sql}: {e}");
    }
    let reader = db.projection(Some(PG_READER_ROLE)).await;
    assert_eq!(reader.report(r.run_id).await.unwrap().unwrap().report, r);
    assert!(matches!(
        reader.store_report(sample_report(2, 1, 1)).await,
        Err(ProjectionError::PermissionDenied { .. })
    ));
    assert!(matches!(
        reader
            .record_review(sample_review(r.actions[1].id, "rejected", None, 1))
            .await,
        Err(ProjectionError::PermissionDenied { .. })
    ));

    // The writer: no UPDATE, DELETE or TRUNCATE, and no way round the triggers.
    let mut w = connect_as(&db, Some(PG_WRITER_ROLE)).await;
    for table in VERIFICATION_TABLES {
        for sql in [
            format!("DELETE FROM {table}"),
            format!("TRUNCATE {table} CASCADE"),
            format!("ALTER TABLE {table} DISABLE TRIGGER ALL"),
        ] {
            let e = refused(&mut w, &sql).await;
            assert!(
                e.contains("permission denied") || e.contains("must be owner"),
                "writer: {sql}: {e}"
            );
        }
    }
    let e = refused(
        &mut w,
        "SELECT nextval(pg_get_serial_sequence('verification_reviews', 'review_id'))",
    )
    .await;
    assert!(e.contains("permission denied"), "writer: nextval: {e}");

    // Privileges are the first wall; the triggers are the second, for everyone (no repair
    // exception here): the writer granted everything, and the owner.
    sqlx::query(&format!(
        "GRANT UPDATE, DELETE, TRUNCATE ON {} TO triplicate_writer",
        VERIFICATION_TABLES.join(", ")
    ))
    .execute(&mut owner)
    .await
    .unwrap();
    sqlx::query("SET triplicate.repair = 'on'")
        .execute(&mut w)
        .await
        .unwrap();
    sqlx::query("SET triplicate.repair = 'on'")
        .execute(&mut owner)
        .await
        .unwrap();
    for (who, c) in [("writer", &mut w), ("owner", &mut owner)] {
        for (sql, what) in [
            (
                "UPDATE verification_reports SET mode = 'full'",
                "UPDATE on verification_reports refused",
            ),
            (
                "DELETE FROM verification_reports",
                "DELETE on verification_reports refused",
            ),
            (
                "TRUNCATE verification_reports CASCADE",
                "TRUNCATE on verification_reports refused",
            ),
            (
                "UPDATE verification_discrepancies SET detail = 'x'",
                "UPDATE on verification_discrepancies refused",
            ),
            (
                "DELETE FROM verification_discrepancies",
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
            (
                "TRUNCATE verification_reviews",
                "TRUNCATE on verification_reviews refused",
            ),
        ] {
            let e = refused(c, sql).await;
            assert!(e.contains(what), "{who}: {sql}: {e}");
        }
    }
    // The schema's own checks hold for rows written behind the projection's back.
    let e = refused(
        &mut owner,
        "INSERT INTO verification_reports (run_id, mode, started_at, started_at_extra_ns,          finished_at, finished_at_extra_ns, lag, minor, major, critical, records_compared,          digest, body) VALUES (gen_random_uuid(), 'full', now(), 0, now(), 0, 0, 0, 0, 0, 0,          decode(repeat('00', 32), 'hex'), '{\"a\":')",
    )
    .await;
    assert!(e.contains("json"), "a body that is not JSON: {e}");
    let e = refused(
        &mut owner,
        "INSERT INTO verification_reviews (action_id, verdict, key_id, alg, signature,          signed_at, signed_at_extra_ns, reason, recorded_at, recorded_at_extra_ns)          VALUES (gen_random_uuid(), 'approved', 'k', 'ed25519', '\\x01', now(), 0, '', now(), 0)",
    )
    .await;
    assert!(e.contains("foreign key"), "a review of no action: {e}");
    assert!(conformance_reports::snapshot(&p).await == before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_is_upgraded_and_keeps_its_records() {
    let db = PgTestDb::create_unmigrated().await;
    // The database as the previous build left it: migration 1 only, and records.
    let mut v1 = sqlx::migrate::Migrator::new(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/postgres"
    )))
    .await
    .unwrap();
    v1.migrations = v1
        .migrations
        .iter()
        .filter(|m| m.version == 1)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    v1.run(db.owner_pool()).await.unwrap();
    let p = writer(&db).await;
    p.apply(batch(0..25)).await.unwrap();
    assert!(p.store_report(sample_report(1, 1, 1)).await.is_err());

    PgProjection::migrate(db.owner_pool()).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(db.owner_pool())
            .await
            .unwrap();
    assert_eq!(versions, vec![1, 2, 3, 4]);
    let p = writer(&db).await;
    assert_eq!(p.highest_seq().await.unwrap(), Some(24));
    assert_eq!(
        p.record_bytes(24, 25).await.unwrap()[0].bytes(),
        Some(bytes(&sample_record(24, 0)).as_slice())
    );
    let r = sample_report(1, 3, 2);
    assert!(p.store_report(r.clone()).await.unwrap());
    let d = sample_drill(1, "projection-loss", true);
    assert!(p.store_drill(d.clone()).await.unwrap());
    let reader = db.projection(Some(PG_READER_ROLE)).await;
    assert_eq!(reader.report(r.run_id).await.unwrap().unwrap().report, r);
    assert_eq!(reader.drill(d.drill_id).await.unwrap(), Some(d));
    // Migrating again changes nothing.
    PgProjection::migrate(db.owner_pool()).await.unwrap();
}

/// A database migrated up to `version` only, as an older build left it.
async fn migrated_up_to(db: &PgTestDb, version: i64) {
    let mut m = sqlx::migrate::Migrator::new(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/postgres"
    )))
    .await
    .unwrap();
    m.migrations = m
        .migrations
        .iter()
        .filter(|m| m.version <= version)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    m.run(db.owner_pool()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_database_is_upgraded_with_the_drill_table_and_keeps_everything() {
    let db = PgTestDb::create_unmigrated().await;
    migrated_up_to(&db, 3).await;
    let p = writer(&db).await;
    p.apply(batch(0..10)).await.unwrap();
    let r = sample_report(1, 3, 2);
    assert!(p.store_report(r.clone()).await.unwrap());
    let d = sample_drill(1, "projection-loss", true);
    assert!(
        p.store_drill(d.clone()).await.is_err(),
        "no drill table before 0004"
    );

    PgProjection::migrate(db.owner_pool()).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(db.owner_pool())
            .await
            .unwrap();
    assert_eq!(versions, vec![1, 2, 3, 4]);
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'drill_reports' ORDER BY 1",
    )
    .fetch_all(db.owner_pool())
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "drill_reports_passed",
            "drill_reports_pkey",
            "drill_reports_scenario"
        ]
    );
    assert_eq!(p.highest_seq().await.unwrap(), Some(9));
    assert_eq!(p.report(r.run_id).await.unwrap().unwrap().report, r);
    assert!(p.store_drill(d.clone()).await.unwrap());
    let reader = db.projection(Some(PG_READER_ROLE)).await;
    assert_eq!(reader.drill(d.drill_id).await.unwrap(), Some(d.clone()));
    assert_eq!(reader.drill_status().await.unwrap().len(), 1);
    // Migrating again changes nothing.
    PgProjection::migrate(db.owner_pool()).await.unwrap();
    assert_eq!(p.drills(None, 10, None).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_conformance() {
    let db = PgTestDb::create().await;
    conformance_drills::run(&writer(&db).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_reports_roles_and_triggers() {
    let db = PgTestDb::create().await;
    let p = writer(&db).await;
    for (n, passed) in [(1, true), (2, false), (3, true)] {
        assert!(p
            .store_drill(sample_drill(n, "restore-stream", passed))
            .await
            .unwrap());
    }
    let before = conformance_drills::snapshot(&p).await;
    assert_eq!(before.0.len(), 3);
    let mut owner = connect_as(&db, None).await;

    // Privileges: the reader reads; the writer reads and inserts; neither changes or removes.
    for (role, privilege, held) in [
        (PG_READER_ROLE, "SELECT", true),
        (PG_READER_ROLE, "INSERT", false),
        (PG_WRITER_ROLE, "SELECT", true),
        (PG_WRITER_ROLE, "INSERT", true),
        (PG_READER_ROLE, "UPDATE", false),
        (PG_READER_ROLE, "DELETE", false),
        (PG_READER_ROLE, "TRUNCATE", false),
        (PG_WRITER_ROLE, "UPDATE", false),
        (PG_WRITER_ROLE, "DELETE", false),
        (PG_WRITER_ROLE, "TRUNCATE", false),
        ("public", "SELECT", false),
        ("public", "INSERT", false),
    ] {
        let got: bool = sqlx::query_scalar("SELECT has_table_privilege($1, 'drill_reports', $2)")
            .bind(role)
            .bind(privilege)
            .fetch_one(&mut owner)
            .await
            .unwrap();
        assert_eq!(got, held, "{role} {privilege} on drill_reports");
    }

    // The reader: SELECT only, through SQL and through the trait.
    let mut rd = connect_as(&db, Some(PG_READER_ROLE)).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM drill_reports WHERE passed")
        .fetch_one(&mut rd)
        .await
        .unwrap();
    assert_eq!(n, 2);
    for sql in [
        "INSERT INTO drill_reports SELECT * FROM drill_reports",
        "UPDATE drill_reports SET passed = true",
        "DELETE FROM drill_reports",
        "TRUNCATE drill_reports",
    ] {
        let e = refused(&mut rd, sql).await;
        assert!(e.contains("permission denied"), "reader: {sql}: {e}");
    }
    let reader = db.projection(Some(PG_READER_ROLE)).await;
    assert_eq!(reader.drills(None, 10, None).await.unwrap(), before.0);
    assert_eq!(reader.drill_status().await.unwrap(), before.2);
    let other = sample_drill(4, "restore-stream", true);
    assert!(matches!(
        reader.store_drill(other.clone()).await,
        Err(ProjectionError::PermissionDenied { .. })
    ));

    // The writer: no UPDATE, DELETE or TRUNCATE, and no way round the triggers.
    let mut w = connect_as(&db, Some(PG_WRITER_ROLE)).await;
    for sql in [
        "UPDATE drill_reports SET passed = true",
        "DELETE FROM drill_reports",
        "TRUNCATE drill_reports",
        "ALTER TABLE drill_reports DISABLE TRIGGER ALL",
    ] {
        let e = refused(&mut w, sql).await;
        assert!(
            e.contains("permission denied") || e.contains("must be owner"),
            "writer: {sql}: {e}"
        );
    }

    // Privileges are the first wall; the triggers are the second, for everyone (no repair
    // exception here): the writer granted everything, and the owner.
    sqlx::query("GRANT UPDATE, DELETE, TRUNCATE ON drill_reports TO triplicate_writer")
        .execute(&mut owner)
        .await
        .unwrap();
    for c in [&mut w, &mut owner] {
        sqlx::query("SET triplicate.repair = 'on'")
            .execute(&mut *c)
            .await
            .unwrap();
    }
    for (who, c) in [("writer", &mut w), ("owner", &mut owner)] {
        for (sql, what) in [
            (
                "UPDATE drill_reports SET passed = true",
                "UPDATE on drill_reports refused",
            ),
            (
                "UPDATE drill_reports SET body = '{}' WHERE NOT passed",
                "UPDATE on drill_reports refused",
            ),
            (
                "DELETE FROM drill_reports",
                "DELETE on drill_reports refused",
            ),
            (
                "DELETE FROM drill_reports WHERE NOT passed",
                "DELETE on drill_reports refused",
            ),
            (
                "TRUNCATE drill_reports",
                "TRUNCATE on drill_reports refused",
            ),
        ] {
            let e = refused(c, sql).await;
            assert!(e.contains(what), "{who}: {sql}: {e}");
        }
    }
    // The schema's own checks hold for rows written behind the projection's back.
    for (what, column, value, says) in [
        ("an empty scenario", "scenario", "''", "check"),
        (
            "a scenario over 64 bytes",
            "scenario",
            "repeat('s', 65)",
            "check",
        ),
        ("a body that is not JSON", "body", "'{\"a\":'", "json"),
        (
            "a signature over 512 bytes",
            "signature",
            "decode(repeat('00', 513), 'hex')",
            "check",
        ),
        ("an empty signature", "signature", "'\\x'::bytea", "check"),
        ("a negative count", "records_after", "-1", "check"),
        ("a short digest", "digest", "'\\x00'::bytea", "check"),
    ] {
        // A copy of a stored row under a new id, with one column replaced.
        let select = DRILL_COLUMNS
            .iter()
            .map(|col| match *col {
                "drill_id" => "gen_random_uuid()",
                col if col == column => value,
                col => col,
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO drill_reports ({}) SELECT {select} FROM drill_reports LIMIT 1",
            DRILL_COLUMNS.join(", ")
        );
        let e = refused(&mut owner, &sql).await;
        assert!(e.contains(says), "{what}: {e}");
    }
    assert!(conformance_drills::snapshot(&p).await == before);
    assert_eq!(p.drill(other.drill_id).await.unwrap(), None);
}

/// Every column of `drill_reports`.
const DRILL_COLUMNS: [&str; 20] = [
    "drill_id",
    "scenario",
    "started_at",
    "started_at_extra_ns",
    "finished_at",
    "finished_at_extra_ns",
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
async fn roles_hold_no_update_delete_or_truncate() {
    let db = PgTestDb::create().await;
    let mut c = connect_as(&db, None).await;
    for role in [PG_WRITER_ROLE, PG_READER_ROLE] {
        for table in ["decisions", "approvals", "attachments", "repairs"] {
            for privilege in ["UPDATE", "DELETE", "TRUNCATE"] {
                let held: bool = sqlx::query_scalar("SELECT has_table_privilege($1, $2, $3)")
                    .bind(role)
                    .bind(table)
                    .bind(privilege)
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                assert!(!held, "{role} holds {privilege} on {table}");
            }
            let select: bool = sqlx::query_scalar("SELECT has_table_privilege($1, $2, 'SELECT')")
                .bind(role)
                .bind(table)
                .fetch_one(&mut c)
                .await
                .unwrap();
            assert!(select, "{role} can read {table}");
        }
    }
    for function in ["triplicate_repair", "triplicate_remove_from"] {
        let execute = |role: &'static str| {
            sqlx::query_scalar::<_, bool>(
                "SELECT has_function_privilege($1, p.oid, 'EXECUTE') FROM pg_proc p WHERE proname = $2",
            )
            .bind(role)
            .bind(function)
        };
        assert!(
            execute(PG_WRITER_ROLE).fetch_one(&mut c).await.unwrap(),
            "{function}"
        );
        assert!(
            !execute(PG_READER_ROLE).fetch_one(&mut c).await.unwrap(),
            "{function}"
        );
        assert!(
            !execute("public").fetch_one(&mut c).await.unwrap(),
            "{function}"
        );
    }
    // The removal log is append-only too, and only readable.
    for privilege in ["INSERT", "UPDATE", "DELETE", "TRUNCATE"] {
        for role in [PG_WRITER_ROLE, PG_READER_ROLE] {
            let held: bool = sqlx::query_scalar("SELECT has_table_privilege($1, 'removals', $2)")
                .bind(role)
                .bind(privilege)
                .fetch_one(&mut c)
                .await
                .unwrap();
            assert!(!held, "{role} holds {privilege} on removals");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_and_writer_cannot_update_delete_or_truncate_and_triggers_refuse_everyone() {
    let db = PgTestDb::create().await;
    let p = writer(&db).await;
    p.apply(batch(0..20)).await.unwrap();
    let mut owner = connect_as(&db, None).await;
    let mut w = connect_as(&db, Some(PG_WRITER_ROLE)).await;

    // The writer's one way to change a row: the repair function, which logs what it changed.
    let drifted = bytes(&sample_record(5, 1));
    let out = p
        .repair(RepairRequest {
            seq: 5,
            record_bytes: drifted.clone(),
            reason: "test: repair as the writer".into(),
            run_id: "run-7".into(),
        })
        .await
        .unwrap();
    let row = sqlx::query(
        "SELECT seq, old_leaf_hash, new_leaf_hash, reason, run_id, old_rows::text, repaired_by::text \
         FROM repairs WHERE id = $1",
    )
    .bind(out.repair_id.unwrap())
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert_eq!(row.get::<i64, _>(0), 5);
    assert_eq!(
        row.get::<Vec<u8>, _>(1),
        leaf_hash(&bytes(&sample_record(5, 0))).to_vec()
    );
    assert_eq!(row.get::<Vec<u8>, _>(2), leaf_hash(&drifted).to_vec());
    assert_eq!(row.get::<String, _>(3), "test: repair as the writer");
    assert_eq!(row.get::<String, _>(4), "run-7");
    let old_rows: String = row.get(5);
    assert!(old_rows.contains("\"approvals\""), "{old_rows}");
    assert!(
        old_rows.contains("variant 0"),
        "the old rows are captured: {old_rows}"
    );
    // The login user (session_user), not the function's owner.
    let session_user: String = sqlx::query_scalar("SELECT session_user::text")
        .fetch_one(&mut w)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>(6), session_user);
    let before = snapshot(&p).await;

    // The reader: SELECT only.
    let mut r = connect_as(&db, Some(PG_READER_ROLE)).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM decisions")
        .fetch_one(&mut r)
        .await
        .unwrap();
    assert_eq!(n, 20);
    for sql in [
        "UPDATE decisions SET title = 'x' WHERE seq = 1",
        "DELETE FROM decisions WHERE seq = 1",
        "TRUNCATE decisions",
        "TRUNCATE decisions CASCADE",
        "INSERT INTO decisions SELECT * FROM decisions WHERE seq = 1",
        "UPDATE approvals SET alg = 'x'",
        "DELETE FROM attachments",
        "DELETE FROM repairs",
    ] {
        let e = refused(&mut r, sql).await;
        assert!(e.contains("permission denied"), "reader: {sql}: {e}");
    }
    let e = refused(
        &mut r,
        "SELECT triplicate_repair(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
         NULL, NULL, NULL, NULL)",
    )
    .await;
    assert!(e.contains("permission denied for function"), "reader: {e}");

    // The writer: INSERT and the repair function, nothing else.
    for sql in [
        "UPDATE decisions SET title = 'x' WHERE seq = 1",
        "DELETE FROM decisions WHERE seq = 1",
        "TRUNCATE decisions",
        "UPDATE approvals SET alg = 'x'",
        "DELETE FROM approvals",
        "TRUNCATE approvals",
        "UPDATE attachments SET size = 0",
        "DELETE FROM attachments",
        "TRUNCATE attachments",
        "INSERT INTO repairs (seq, new_leaf_hash, reason, run_id) VALUES (1, decode(repeat('00', 32), 'hex'), 'x', 'y')",
        "UPDATE repairs SET reason = 'x'",
        "DELETE FROM repairs",
        "SET session_replication_role = replica",
        "ALTER TABLE decisions DISABLE TRIGGER ALL",
        "DROP TRIGGER decisions_append_only ON decisions",
    ] {
        let e = refused(&mut w, sql).await;
        assert!(
            e.contains("permission denied") || e.contains("must be owner"),
            "writer: {sql}: {e}"
        );
    }

    // Privileges are the first wall; the triggers are the second. Grant the writer UPDATE,
    // DELETE and TRUNCATE in this database and let it set the repair flag itself: the triggers
    // still refuse, because the flag counts only for the tables' owner (inside the SECURITY
    // DEFINER repair function).
    sqlx::query("GRANT UPDATE, DELETE, TRUNCATE ON decisions, approvals, attachments, repairs TO triplicate_writer")
        .execute(&mut owner)
        .await
        .unwrap();
    sqlx::query("SET triplicate.repair = 'on'")
        .execute(&mut w)
        .await
        .unwrap();
    for (sql, what) in [
        (
            "UPDATE decisions SET title = 'x' WHERE seq = 1",
            "UPDATE on decisions refused",
        ),
        (
            "DELETE FROM decisions WHERE seq = 1",
            "DELETE on decisions refused",
        ),
        (
            "TRUNCATE decisions CASCADE",
            "TRUNCATE on decisions refused",
        ),
        (
            "DELETE FROM approvals WHERE seq = 1",
            "DELETE on approvals refused",
        ),
        ("TRUNCATE approvals", "TRUNCATE on approvals refused"),
        ("DELETE FROM attachments", "DELETE on attachments refused"),
        ("TRUNCATE attachments", "TRUNCATE on attachments refused"),
        ("DELETE FROM repairs", "DELETE on repairs refused"),
    ] {
        let e = refused(&mut w, sql).await;
        assert!(
            e.contains(what),
            "writer with privileges and the flag: {sql}: {e}"
        );
    }
    sqlx::query("REVOKE UPDATE, DELETE, TRUNCATE ON decisions, approvals, attachments, repairs FROM triplicate_writer")
        .execute(&mut owner)
        .await
        .unwrap();

    // The owner's mistakes are caught too.
    for (sql, what) in [
        (
            "UPDATE decisions SET title = 'x' WHERE seq = 1",
            "UPDATE on decisions refused",
        ),
        (
            "DELETE FROM decisions WHERE seq = 1",
            "DELETE on decisions refused",
        ),
        (
            "TRUNCATE decisions CASCADE",
            "TRUNCATE on decisions refused",
        ),
        (
            "UPDATE approvals SET alg = 'x'",
            "UPDATE on approvals refused",
        ),
        ("DELETE FROM attachments", "DELETE on attachments refused"),
        ("TRUNCATE repairs", "TRUNCATE on repairs refused"),
    ] {
        let e = refused(&mut owner, sql).await;
        assert!(e.contains(what), "owner: {sql}: {e}");
    }
    assert!(
        snapshot(&p).await == before,
        "a refused statement changed the store"
    );
    // The flag does not outlive the function: in the transaction that called it, the next
    // DELETE is refused again, even for the owner. (Here the function re-writes seq 6 with its
    // own columns, straight from SQL.)
    sqlx::query("BEGIN").execute(&mut owner).await.unwrap();
    let id: i64 = sqlx::query_scalar(
        "SELECT triplicate_repair(d.seq, NULL, decode(repeat('11', 32), 'hex'), 'sql test', 'run-8', \
         d.id, d.version, d.kind, d.title, d.body, d.payload, d.proposed_at, d.proposed_at_extra_ns, \
         d.recorded_at, d.recorded_at_extra_ns, d.supersedes, d.notary_key_id, d.notary_alg, \
         d.notary_signature, \
         ARRAY(SELECT key_id FROM approvals a WHERE a.seq = d.seq ORDER BY position), \
         ARRAY(SELECT alg FROM approvals a WHERE a.seq = d.seq ORDER BY position), \
         ARRAY(SELECT signature FROM approvals a WHERE a.seq = d.seq ORDER BY position), \
         ARRAY(SELECT signed_at FROM approvals a WHERE a.seq = d.seq ORDER BY position), \
         ARRAY(SELECT signed_at_extra_ns FROM approvals a WHERE a.seq = d.seq ORDER BY position), \
         ARRAY(SELECT sha256 FROM attachments t WHERE t.seq = d.seq ORDER BY position), \
         ARRAY(SELECT media_type FROM attachments t WHERE t.seq = d.seq ORDER BY position), \
         ARRAY(SELECT size FROM attachments t WHERE t.seq = d.seq ORDER BY position), \
         ARRAY(SELECT name FROM attachments t WHERE t.seq = d.seq ORDER BY position)) \
         FROM decisions d WHERE d.seq = 6",
    )
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert!(id > 0);
    let flag: String = sqlx::query_scalar("SELECT current_setting('triplicate.repair', true)")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(flag, "off");
    let e = refused(&mut owner, "DELETE FROM decisions WHERE seq = 5").await;
    assert!(e.contains("refused"), "{e}");
    sqlx::query("ROLLBACK").execute(&mut owner).await.unwrap();
    assert!(snapshot(&p).await == before);
    assert_eq!(
        p.record_bytes(5, 6).await.unwrap()[0].bytes(),
        Some(drifted.as_slice())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_handle_reads_and_cannot_write() {
    let db = PgTestDb::create().await;
    writer(&db).await.apply(batch(0..10)).await.unwrap();
    let r = db.projection(Some(PG_READER_ROLE)).await;
    assert_eq!(r.highest_seq().await.unwrap(), Some(9));
    assert_eq!(
        r.query(&DecisionQuery::new()).await.unwrap().records.len(),
        10
    );
    assert!(matches!(
        r.apply(batch(10..11)).await,
        Err(ProjectionError::PermissionDenied { .. })
    ));
    assert!(matches!(
        r.repair(RepairRequest {
            seq: 3,
            record_bytes: bytes(&sample_record(3, 1)),
            reason: "x".into(),
            run_id: "y".into(),
        })
        .await,
        Err(ProjectionError::PermissionDenied { .. })
    ));
    assert_eq!(r.highest_seq().await.unwrap(), Some(9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_column_feeds_the_rederived_hash() {
    let db = PgTestDb::create().await;
    let p = writer(&db).await;
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
            "proposed_at",
            "proposed_at = proposed_at + interval '1 microsecond'",
        ),
        (
            "decisions",
            "proposed_at_extra_ns",
            "proposed_at_extra_ns = (proposed_at_extra_ns + 1) % 1000",
        ),
        (
            "decisions",
            "recorded_at",
            "recorded_at = recorded_at - interval '1 second'",
        ),
        (
            "decisions",
            "recorded_at_extra_ns",
            "recorded_at_extra_ns = (recorded_at_extra_ns + 1) % 1000",
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
            "notary_signature = decode(repeat('00', 64), 'hex')",
        ),
        ("approvals", "seq", "seq = seq + 1000000"),
        ("approvals", "position", "position = position + 2"),
        ("approvals", "key_id", "key_id = 'ffffffffffffffff'"),
        ("approvals", "alg", "alg = 'ecdsa-p256'"),
        (
            "approvals",
            "signature",
            "signature = decode(repeat('00', 64), 'hex')",
        ),
        (
            "approvals",
            "signed_at",
            "signed_at = signed_at + interval '1 microsecond'",
        ),
        (
            "approvals",
            "signed_at_extra_ns",
            "signed_at_extra_ns = (signed_at_extra_ns + 1) % 1000",
        ),
        ("attachments", "seq", "seq = seq + 1000000"),
        ("attachments", "position", "position = position + 2"),
        (
            "attachments",
            "sha256",
            "sha256 = decode(repeat('00', 32), 'hex')",
        ),
        ("attachments", "media_type", "media_type = 'text/html'"),
        ("attachments", "size", "size = size + 1"),
        (
            "attachments",
            "name",
            "name = CASE WHEN name IS NULL THEN 'x' ELSE NULL END",
        ),
    ];
    // A superuser session with triggers switched off: the tamperer the verifier exists for.
    let mut c = connect_as(&db, None).await;
    for table in ["decisions", "approvals", "attachments"] {
        let cols: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns WHERE table_name = $1",
        )
        .bind(table)
        .fetch_all(&mut c)
        .await
        .unwrap();
        assert!(!cols.is_empty());
        for col in cols {
            assert!(
                alterations.iter().any(|(t, c, _)| *t == table && *c == col),
                "{table}.{col} is not altered by this test"
            );
        }
    }
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut c)
        .await
        .unwrap();
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
            "decisions" => format!("seq = {seq}"),
            _ => format!("seq = {seq} AND position = 1"),
        };
        let n = sqlx::query(&format!("UPDATE {table} SET {set} WHERE {filter}"))
            .execute(&mut c)
            .await
            .unwrap()
            .rows_affected();
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
    for seq in [0u64, 12, 14, 449] {
        assert_eq!(
            p.record_bytes(seq, seq + 1).await.unwrap()[0].bytes(),
            Some(bytes(&sample_record(seq, 0)).as_slice())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_keep_what_jsonb_cannot() {
    let db = PgTestDb::create().await;
    let p = writer(&db).await;
    let records = tricky_records(0);
    p.apply(records.iter().map(bytes).collect()).await.unwrap();
    let mut c = connect_as(&db, None).await;
    for r in &records {
        let stored: String =
            sqlx::query_scalar("SELECT payload::text FROM decisions WHERE seq = $1")
                .bind(r.seq as i64)
                .fetch_one(&mut c)
                .await
                .unwrap();
        let jcs = triplicate_core::canonical::to_jcs(&r.decision.payload).unwrap();
        assert_eq!(
            stored.as_bytes(),
            jcs.as_slice(),
            "seq {}: the payload column is its canonical text",
            r.seq
        );
    }
    // Record 1 carries "\u0000", which jsonb refuses outright.
    let e = sqlx::query("SELECT payload::jsonb FROM decisions WHERE seq = 1")
        .execute(&mut c)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Unicode escape"), "{e}");
    // Sub-microsecond times survive too.
    let ns: i16 = sqlx::query_scalar("SELECT proposed_at_extra_ns FROM decisions WHERE seq = 0")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(ns, 789);
    let got = p.record_bytes(0, records.len() as u64).await.unwrap();
    for (g, r) in got.iter().zip(&records) {
        assert_eq!(g.bytes(), Some(bytes(r).as_slice()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_where_the_roles_exist_and_are_idempotent() {
    // Several fresh databases migrating at once on one cluster: the roles are created once
    // (or already exist) and every database gets its own grants.
    let (a, b, c) = tokio::join!(PgTestDb::create(), PgTestDb::create(), PgTestDb::create());
    for db in [&a, &b, &c] {
        PgProjection::migrate(db.owner_pool()).await.unwrap();
        let p = writer(db).await;
        p.apply(batch(0..3)).await.unwrap();
        let r = db.projection(Some(PG_READER_ROLE)).await;
        assert_eq!(r.highest_seq().await.unwrap(), Some(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pool_is_a_clear_retryable_error_and_changes_nothing() {
    let db = PgTestDb::create().await;
    let p = writer(&db).await;
    p.apply(batch(0..5)).await.unwrap();
    let before = snapshot(&p).await;
    p.close().await;
    let e = p.apply(batch(5..6)).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("closed"), "{e}");
    assert!(p.highest_seq().await.unwrap_err().is_retryable());
    assert!(p.record_bytes(0, 5).await.is_err());
    assert!(p.query(&DecisionQuery::new()).await.is_err());
    let again = writer(&db).await;
    assert!(snapshot(&again).await == before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appliers_of_the_same_batch_write_it_once() {
    let db = PgTestDb::create().await;
    let p = writer(&db).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_restores_a_lost_row_and_damage_is_reported() {
    let db = PgTestDb::create().await;
    let p = writer(&db).await;
    p.apply(batch(0..30)).await.unwrap();
    let mut c = connect_as(&db, None).await;
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut c)
        .await
        .unwrap();
    for t in ["attachments", "approvals", "decisions"] {
        sqlx::query(&format!("DELETE FROM {t} WHERE seq = 12"))
            .execute(&mut c)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE approvals SET position = 5 WHERE seq = 4 AND position = 0")
        .execute(&mut c)
        .await
        .unwrap();
    let got = p.record_bytes(3, 13).await.unwrap();
    assert_eq!(got.len(), 9, "seq 12 is missing");
    assert!(matches!(&got[1].content, Rederived::Damaged(why) if why.contains("positions")));
    assert!(matches!(
        p.query(&DecisionQuery::new()).await,
        Err(ProjectionError::Damaged { seq: 4, .. })
    ));
    match p.apply(vec![bytes(&sample_record(4, 0))]).await {
        Err(ProjectionError::SeqConflict { stored, .. }) => assert!(stored.contains("damaged")),
        r => panic!("expected a conflict, got {r:?}"),
    }

    for seq in [12u64, 4] {
        let good = bytes(&sample_record(seq, 0));
        let out = p
            .repair(RepairRequest {
                seq,
                record_bytes: good.clone(),
                reason: "projection lost or damaged rows".into(),
                run_id: "run-9".into(),
            })
            .await
            .unwrap();
        assert!(out.changed);
        assert_eq!(out.old_leaf_hash, None);
        assert_eq!(out.old_damage.is_some(), seq == 4);
        assert_eq!(
            p.record_bytes(seq, seq + 1).await.unwrap()[0].bytes(),
            Some(good.as_slice())
        );
    }
    let old: Vec<(i64, Option<Vec<u8>>, Option<String>)> =
        sqlx::query_as("SELECT seq, old_leaf_hash, old_rows::text FROM repairs ORDER BY id")
            .fetch_all(&mut c)
            .await
            .unwrap();
    assert_eq!(old.len(), 2);
    assert_eq!((old[0].0, &old[0].1, &old[0].2), (12, &None, &None));
    assert_eq!(old[1].0, 4);
    assert!(old[1].2.as_deref().unwrap().contains("\"position\":5"));
    assert_eq!(
        p.query(&DecisionQuery::new()).await.unwrap().records.len(),
        30
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "PostgreSQL is not reachable")]
async fn an_unreachable_server_fails_the_tests_loudly() {
    PgTestDb::create_at("postgres://postgres@127.0.0.1:1/postgres").await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn random_records_round_trip_byte_for_byte(records in common::records(12, 1)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let db = PgTestDb::create().await;
            let p = writer(&db).await;
            let applied: Vec<Vec<u8>> = records.iter().map(bytes).collect();
            p.apply(applied.clone()).await.unwrap();
            let got = p.record_bytes(0, applied.len() as u64).await.unwrap();
            prop_assert_eq!(got.len(), applied.len());
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
