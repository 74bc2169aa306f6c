//! Recovery drills end to end: every scenario on a running service's scratch copy, with the
//! embedded stores and with PostgreSQL projections; the signed report stored, served and
//! audited in the ledger; the metrics; a tampered drill report caught by the cross-verifier;
//! one drill at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{pg_url, start};
use serde_json::Value;
use triplicate_projection::testkit::PgTestDb;
use triplicate_server::drill::{DrillOptions, Scenario};
use triplicate_server::setup::ProjectionChoice;
use triplicate_server::Running;

/// Every path under `dir`, for a failure message.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            out.extend(walk(&p));
            out.push(p);
        }
    }
    out
}

/// Runs `scenario` on a service holding `n` decisions and checks the report and what it left.
async fn drill_passes(r: &Running, scratch: &Path, scenario: Scenario, scratch_pg: Option<String>) {
    let before = r.service.ledger().tree_size();
    let out = r
        .drills
        .run(DrillOptions {
            scratch_dir: Some(scratch.to_owned()),
            scratch_postgres_url: scratch_pg,
            ..DrillOptions::new(scenario)
        })
        .await
        .unwrap();
    let rep = &out.report;
    assert!(rep.passed, "{scenario}: {:#?}", rep);
    assert_eq!(rep.scenario, scenario);
    assert!(rep.records_before > 0 && rep.records_before <= before);
    assert_eq!(rep.records_after, rep.records_before, "{scenario}");
    assert_eq!(rep.records_lost, 0);
    assert_eq!(rep.discrepancies_left, 0);
    let fc = rep.final_check.as_ref().unwrap();
    assert!(
        fc.clean && fc.records_compared >= rep.records_before,
        "{fc:?}"
    );
    assert!(rep.recover_seconds.is_some(), "{scenario}");
    if scenario == Scenario::RestoreAll {
        assert!(rep.detect_seconds.is_none());
    } else {
        assert!(rep.detect_seconds.is_some(), "{scenario}: {:?}", rep.steps);
        assert!(rep.detected_by.is_some());
    }
    // Evidence: signed, stored, its digest in the source's ledger; the scratch copy removed.
    assert!(out.stored);
    let seq = out.audit_seq.expect("an audit record");
    assert!(seq >= before);
    let left = scratch.join(format!("triplicate-drill-{}", rep.drill_id));
    assert!(
        !left.exists(),
        "{scenario}: the scratch copy is still there, holding {:?}",
        walk(&left)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_passes_on_embedded_stores() {
    let tmp = tempfile::tempdir().unwrap();
    let r = start(&tmp.path().join("data"), ProjectionChoice::Sqlite).await;
    let http = reqwest::Client::new();
    // More than one full tile, so corrupt-ledger damages a full one.
    common::populate(&r, &http, 300).await;
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    for s in Scenario::ALL {
        drill_passes(&r, &scratch, s, None).await;
    }
    let base = format!("http://{}", r.addr);
    // The reports over HTTP, newest first, each signed and audited.
    let (status, page) = common::call(
        &http,
        &base,
        "GET",
        "/v1/drills",
        Some(&r.auditor_token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let drills = page["drills"].as_array().unwrap();
    assert_eq!(drills.len(), 5);
    assert_eq!(drills[0]["scenario"], "store-outage");
    for d in drills {
        assert_eq!(d["passed"], true);
        let id = d["drill_id"].as_str().unwrap();
        let (status, one) = common::call(
            &http,
            &base,
            "GET",
            &format!("/v1/drills/{id}"),
            Some(&r.auditor_token),
            None,
        )
        .await;
        assert_eq!(status, 200, "{one}");
        assert_eq!(one["signature"]["valid"], true, "{one}");
        assert_eq!(one["audit_record_matches"], true, "{one}");
        assert_eq!(one["report"]["drill_id"], d["drill_id"]);
    }
    let (status, _) = common::call(
        &http,
        &base,
        "GET",
        "/v1/drills?scenario=lose-everything",
        Some(&r.auditor_token),
        None,
    )
    .await;
    assert_eq!(status, 400);
    // Metrics: the last result per scenario.
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for s in Scenario::ALL {
        let line = format!(
            "triplicate_drill_last_result{{scenario=\"{}\"}} 1",
            s.name()
        );
        assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
        assert!(metrics.contains(&format!(
            "triplicate_drill_runs_total{{scenario=\"{}\",result=\"pass\"}} 1",
            s.name()
        )));
    }
    // The source is intact and a full cross-check of it is clean (the drills' audit records
    // included).
    let run = r.crosscheck.run_now(true).await.unwrap();
    assert!(run.report.is_clean(), "{:?}", run.report.discrepancies);
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_passes_with_postgresql_projections() {
    let src = PgTestDb::create().await;
    let tmp = tempfile::tempdir().unwrap();
    let r = start(
        &tmp.path().join("data"),
        ProjectionChoice::Postgres { url: pg_url(&src) },
    )
    .await;
    let http = reqwest::Client::new();
    common::populate(&r, &http, 60).await;
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    for s in Scenario::ALL {
        let db = PgTestDb::create_unmigrated().await;
        drill_passes(&r, &scratch, s, Some(pg_url(&db))).await;
    }
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_drill_report_is_caught_by_the_cross_verifier() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let r = start(&data, ProjectionChoice::Sqlite).await;
    let http = reqwest::Client::new();
    common::populate(&r, &http, 20).await;
    let out = r
        .drills
        .run(DrillOptions {
            scratch_dir: Some(tmp.path().to_owned()),
            ..DrillOptions::new(Scenario::LoseStream)
        })
        .await
        .unwrap();
    assert!(out.report.passed);
    common::settle(&r.service).await;
    let clean = r.crosscheck.run_now(true).await.unwrap();
    assert!(clean.report.is_clean(), "{:?}", clean.report.discrepancies);

    // Someone with the database file turns the failed-looking numbers into better ones.
    {
        let c = rusqlite::Connection::open(data.join("projection.db")).unwrap();
        let triggers: Vec<String> = c
            .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'drill_reports'")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            !triggers.is_empty(),
            "drill_reports has no append-only triggers"
        );
        for t in triggers {
            c.execute(&format!("DROP TRIGGER {t}"), []).unwrap();
        }
        let body: String = c
            .query_row(
                "SELECT CAST(body AS TEXT) FROM drill_reports WHERE drill_id = ?1",
                [out.report.drill_id.to_string()],
                |row| row.get(0),
            )
            .unwrap();
        let mut v: Value = serde_json::from_str(&body).unwrap();
        v["recover_seconds"] = serde_json::json!(0.001);
        let forged = serde_json::to_string(&v).unwrap();
        let n = c
            .execute(
                "UPDATE drill_reports SET body = ?1 WHERE drill_id = ?2",
                rusqlite::params![forged, out.report.drill_id.to_string()],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    let run = r.crosscheck.run_now(false).await.unwrap();
    let found: Vec<_> = run
        .report
        .discrepancies
        .iter()
        .filter(|d| d.kind == triplicate_verifier::Kind::ReportTampered)
        .collect();
    assert_eq!(found.len(), 1, "{:?}", run.report.discrepancies);
    assert_eq!(found[0].class, triplicate_verifier::Class::Major);
    assert_eq!(found[0].decision_id, Some(out.report.drill_id));
    assert_eq!(found[0].seq, out.audit_seq);
    // And the API says so too.
    let (status, one) = common::call(
        &http,
        &format!("http://{}", r.addr),
        "GET",
        &format!("/v1/drills/{}", out.report.drill_id),
        Some(&r.auditor_token),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(one["signature"]["valid"], false, "{one}");
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drills_run_one_at_a_time_and_need_an_admin() {
    let tmp = tempfile::tempdir().unwrap();
    let r = start(&tmp.path().join("data"), ProjectionChoice::Sqlite).await;
    let http = reqwest::Client::new();
    common::populate(&r, &http, 5).await;
    let base = format!("http://{}", r.addr);
    let body = serde_json::json!({ "scenario": "lose-projection" });
    let (status, _) = common::call(
        &http,
        &base,
        "POST",
        "/v1/drills/runs",
        Some(&r.auditor_token),
        Some(&body),
    )
    .await;
    assert_eq!(status, 403);
    let (status, p) = common::call(
        &http,
        &base,
        "POST",
        "/v1/drills/runs",
        Some(&r.admin_token),
        Some(&serde_json::json!({ "scenario": "lose-everything" })),
    )
    .await;
    assert_eq!(status, 400, "{p}");
    let (status, p) = common::call(
        &http,
        &base,
        "POST",
        "/v1/drills/runs",
        Some(&r.admin_token),
        Some(&serde_json::json!({ "scenario": "lose-stream", "in_place": true })),
    )
    .await;
    assert_eq!(status, 400, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("--in-place"), "{p}");
    let (a, b) = tokio::join!(
        common::call(
            &http,
            &base,
            "POST",
            "/v1/drills/runs",
            Some(&r.admin_token),
            Some(&body)
        ),
        common::call(
            &http,
            &base,
            "POST",
            "/v1/drills/runs",
            Some(&r.admin_token),
            Some(&body)
        ),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "{} {}", a.1, b.1);
    let done = if a.0 == 201 { a.1 } else { b.1 };
    assert_eq!(done["report"]["passed"], true, "{done}");

    // A caller that hangs up mid-drill (a client timeout): the drill still runs to the end
    // and its report is kept.
    common::post_and_hang_up(r.addr, "/v1/drills/runs", &r.admin_token, &body.to_string()).await;
    let mut listed = 0;
    for _ in 0..600 {
        let (status, page) = common::call(
            &http,
            &base,
            "GET",
            "/v1/drills?scenario=lose-projection",
            Some(&r.auditor_token),
            None,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        listed = page["drills"].as_array().unwrap().len();
        if listed == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(listed, 2, "the hung-up drill's report is kept");
    r.stop().await.unwrap();
}

async fn metrics(r: &Running) -> String {
    reqwest::get(format!("http://{}/metrics", r.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_drills_run_and_their_results_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dev = triplicate_server::setup::dev_setup(&data).unwrap();
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::write(
        dev.policy_dir.join("verification.toml"),
        format!(
            "[drills]\nscratch_dir = {:?}\n[drills.lose-stream]\nschedule = \"*/2 * * * * *\"\n\
             window = \"1d\"\n",
            scratch.display().to_string()
        ),
    )
    .unwrap();
    let r = start(&data, ProjectionChoice::Sqlite).await;
    assert_eq!(r.drills.scratch_dir.as_deref(), Some(scratch.as_path()));
    let m = metrics(&r).await;
    assert!(
        m.contains("triplicate_drill_window_seconds{scenario=\"lose-stream\"} 86400"),
        "{m}"
    );
    common::populate(&r, &reqwest::Client::new(), 5).await;
    let pass = "triplicate_drill_runs_total{scenario=\"lose-stream\",result=\"pass\"} ";
    let mut passed = false;
    for _ in 0..120 {
        let m = metrics(&r).await;
        if m.lines().any(|l| l.starts_with(pass) && !l.ends_with(" 0")) {
            passed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(
        passed,
        "no scheduled drill passed within 30 s:\n{}",
        metrics(&r).await
    );
    r.stop().await.unwrap();
    // The scratch copies were made under [drills] scratch_dir, and removed.
    let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");

    // After a restart the last results come from the stored reports.
    let r = start(&data, ProjectionChoice::Sqlite).await;
    let m = metrics(&r).await;
    assert!(
        m.contains("triplicate_drill_last_result{scenario=\"lose-stream\"} 1"),
        "{m}"
    );
    assert!(
        m.lines().any(|l| l.starts_with(
            "triplicate_drill_last_success_timestamp_seconds{scenario=\"lose-stream\"} "
        )),
        "{m}"
    );
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_drills_recover_a_stopped_deployment_and_keep_its_originals() {
    use triplicate_server::recovery::Deployment;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let r = start(&data, ProjectionChoice::Sqlite).await;
    common::populate(&r, &reqwest::Client::new(), 300).await;
    let first = r.crosscheck.run_now(true).await.unwrap();
    assert!(first.report.is_clean());
    common::settle(&r.service).await;
    // Refused while the service runs.
    let dep = Deployment::DataDir {
        data_dir: data.clone(),
        projection: ProjectionChoice::Sqlite,
        stream: Default::default(),
    };
    let err = triplicate_server::drill::run_in_place(&dep, DrillOptions::new(Scenario::LoseStream))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("running service"), "{err}");
    r.stop().await.unwrap();

    for s in Scenario::ALL {
        let out = triplicate_server::drill::run_in_place(&dep, DrillOptions::new(s))
            .await
            .unwrap();
        let rep = &out.report;
        assert!(rep.passed, "{s}: {rep:#?}");
        assert!(rep.in_place);
        assert_eq!(rep.records_after, rep.records_before, "{s}");
        assert!(out.audit_seq.is_some() && out.stored, "{s}");
        // The backup taken first is kept, and what was damaged is kept aside.
        let kept = out.scratch.clone().unwrap();
        assert!(kept.starts_with(data.join("drills")));
        assert!(kept.join("backup/manifest.json").exists(), "{s}");
        match s {
            Scenario::LoseProjection => assert!(kept.join("aside/projection.db").exists()),
            Scenario::LoseStream => assert!(kept.join("aside/stream.db").exists()),
            Scenario::CorruptLedger => assert!(kept.join("aside/tile_0_000").exists()),
            Scenario::RestoreAll => {
                assert!(kept.join("aside/ledger/checkpoint").exists());
                assert!(kept.join("aside/stream.db").exists());
            }
            Scenario::StoreOutage => {}
        }
    }

    // The deployment serves again, with every record, the verification report that the lost
    // projection held (back from the backup), the five drill reports, and a clean full check.
    let r = start(&data, ProjectionChoice::Sqlite).await;
    assert!(r.service.ledger().tree_size() > 300);
    let stored =
        triplicate_projection::ReportStore::report(r.service.projection(), first.report.run_id)
            .await
            .unwrap();
    assert!(
        stored.is_some(),
        "the verification report did not come back"
    );
    let drills = triplicate_projection::DrillStore::drills(r.service.projection(), None, 10, None)
        .await
        .unwrap();
    assert_eq!(drills.len(), 5);
    assert!(drills.iter().all(|d| d.in_place && d.passed));
    common::settle(&r.service).await;
    let check = r.crosscheck.run_now(true).await.unwrap();
    assert!(check.report.is_clean(), "{:?}", check.report.discrepancies);
    r.stop().await.unwrap();

    // A frozen deployment is in an incident: no in-place drill.
    std::fs::write(data.join("writes-frozen"), "a critical finding\n").unwrap();
    let err = triplicate_server::drill::run_in_place(&dep, DrillOptions::new(Scenario::LoseStream))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("frozen"), "{err}");
    std::fs::remove_file(data.join("writes-frozen")).unwrap();

    // PostgreSQL projections are never dropped in place.
    let pg = Deployment::DataDir {
        data_dir: data.clone(),
        projection: ProjectionChoice::Postgres {
            url: "postgres://nobody@127.0.0.1:1/none".into(),
        },
        stream: Default::default(),
    };
    let err =
        triplicate_server::drill::run_in_place(&pg, DrillOptions::new(Scenario::LoseProjection))
            .await
            .unwrap_err();
    assert!(err.to_string().contains("PostgreSQL"), "{err}");
}
