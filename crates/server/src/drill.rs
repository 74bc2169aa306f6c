//! Recovery drills: prove, with evidence, that each store can be lost and rebuilt without
//! losing a record (DESIGN.md, Recovery drills).
//!
//! A drill runs on a **scratch copy** of a deployment: it takes a fresh backup of the source
//! service's stores (which also proves the backup path), restores it into scratch stores (which
//! proves the restore path), damages the scratch copy as its scenario says, times how long the
//! damage takes to detect and to recover from, runs a full cross-verification of the scratch
//! stores at the end, and passes only when every record of the backup is in all three stores
//! again and the cross-verification finds nothing. The source is never changed except by the
//! drill's own evidence: its report, signed by the notary, stored in the source's projection,
//! and its digest appended to the source's ledger as a `drill` audit record.
//!
//! | scenario | damage | detected by | recovered by |
//! |---|---|---|---|
//! | `lose-projection` | the projection's database removed | a cross-check (records missing) | the projection rebuilt from the ledger, batched |
//! | `lose-stream` | the stream's database removed | a cross-check (records missing) | the stream rebuilt from the ledger, batched |
//! | `corrupt-ledger` | one byte of a hash tile flipped | `fsck` (names the file) | the damaged files put back from the backup, `fsck` clean |
//! | `restore-all` | every store removed | — (total loss) | the backup verified and restored into fresh stores, caught up from the ledger |
//! | `store-outage` | the projection locked while records are written | the service marks it pending | the lock released; the catch-up worker fills it |

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use triplicate_core::canonical::to_jcs;
use triplicate_core::{Decision, Hash, Timestamp, DRILL_KIND};
use triplicate_keys::{Signer, VerifierKey};
use triplicate_ledger::{EmbeddedLedger, Ledger, LedgerConfig};
use triplicate_projection::{
    drill_faults, DrillStore, PgOptions, PgProjection, Projection, SqliteProjection,
};
use triplicate_recovery::{BackupSources, RestoreTargets};
use triplicate_stream::{EventStream, SqliteStream};
use triplicate_verifier::VerificationPolicy;
use uuid::Uuid;

use crate::crosscheck::CrossCheck;
use crate::service::{Service, ServiceOptions, ServiceParts};
use crate::stores::{ProjectionBackend, StreamBackend};

pub use triplicate_core::DRILL_REPORT_DOMAIN;
/// The report format this module writes.
pub const DRILL_REPORT_VERSION: u32 = 1;

/// What a drill damages and rebuilds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    LoseProjection,
    LoseStream,
    CorruptLedger,
    RestoreAll,
    StoreOutage,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::LoseProjection,
        Scenario::LoseStream,
        Scenario::CorruptLedger,
        Scenario::RestoreAll,
        Scenario::StoreOutage,
    ];

    /// The name operators type (`--scenario`), metrics label and report field.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::LoseProjection => "lose-projection",
            Scenario::LoseStream => "lose-stream",
            Scenario::CorruptLedger => "corrupt-ledger",
            Scenario::RestoreAll => "restore-all",
            Scenario::StoreOutage => "store-outage",
        }
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Scenario, String> {
        Scenario::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown scenario {s:?}; one of: {}",
                    Scenario::ALL.map(Scenario::name).join(", ")
                )
            })
    }
}

/// How to run a drill.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub scenario: Scenario,
    /// Where the scratch copy goes (a fresh directory is made under it); the system's
    /// temporary directory when `None`. Removed afterwards unless `keep_scratch`.
    pub scratch_dir: Option<PathBuf>,
    /// An empty PostgreSQL database (owner URL) for the scratch projection; an embedded SQLite
    /// projection when `None`.
    pub scratch_postgres_url: Option<String>,
    pub keep_scratch: bool,
    /// Records written while the store is out (`store-outage`).
    pub outage_records: u64,
}

impl DrillOptions {
    pub fn new(scenario: Scenario) -> DrillOptions {
        DrillOptions {
            scenario,
            scratch_dir: None,
            scratch_postgres_url: None,
            keep_scratch: false,
            outage_records: 20,
        }
    }
}

/// A checkpoint as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointSummary {
    pub size: u64,
    /// Lower-case hex.
    pub root: String,
}

impl CheckpointSummary {
    fn of(ledger: &dyn Ledger) -> CheckpointSummary {
        let cp = ledger.checkpoint();
        CheckpointSummary {
            size: cp.size,
            root: hex::encode(cp.root),
        }
    }
}

/// One step of a drill, timed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub ok: bool,
    pub seconds: f64,
    pub detail: String,
}

/// The final cross-verification of the scratch stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalCheck {
    pub run_id: Uuid,
    pub clean: bool,
    pub records_compared: u64,
    pub lag: u64,
    pub minor: u64,
    pub major: u64,
    pub critical: u64,
}

/// What a drill did and found: the evidence an auditor reviews.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    pub version: u32,
    pub drill_id: Uuid,
    pub scenario: Scenario,
    pub in_place: bool,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// The source ledger's checkpoint when the drill started.
    pub source_checkpoint: CheckpointSummary,
    /// The backup the scratch copy was made from.
    pub backup_tree_size: u64,
    pub backup_root: String,
    /// Records in the scratch copy before the damage (the backup's).
    pub records_before: u64,
    /// Records held by all three scratch stores after recovery.
    pub records_after: u64,
    /// `records_before − records_after` when positive.
    pub records_lost: u64,
    pub checkpoint_before: CheckpointSummary,
    pub checkpoint_after: CheckpointSummary,
    /// From the damage until it was detected; `None` when the scenario's loss is total.
    pub detect_seconds: Option<f64>,
    pub detected_by: Option<String>,
    /// From detection (or the damage) until the stores held every record again.
    pub recover_seconds: Option<f64>,
    pub steps: Vec<Step>,
    pub final_check: Option<FinalCheck>,
    /// Discrepancies the final cross-verification found (0 to pass).
    pub discrepancies_left: u64,
    pub passed: bool,
    /// Why it did not pass.
    pub failure: Option<String>,
}

impl DrillReport {
    /// `SHA-256("triplicate/drill-report/v1\n" || JCS(report))`.
    pub fn digest(&self) -> Result<Hash, String> {
        Ok(Sha256::digest(message(self)?).into())
    }
}

fn message(report: &DrillReport) -> Result<Vec<u8>, String> {
    let mut m = DRILL_REPORT_DOMAIN.to_vec();
    m.extend(to_jcs(report).map_err(|e| e.to_string())?);
    Ok(m)
}

/// A finished drill: the report, its canonical body and digest, the notary's signature over
/// the report, and the seq of its audit record in the source ledger.
#[derive(Debug, Clone)]
pub struct DrillOutcome {
    pub report: DrillReport,
    pub body: Vec<u8>,
    pub digest: Hash,
    pub key_id: String,
    pub alg: String,
    pub signature: Vec<u8>,
    pub audit_seq: Option<u64>,
    /// Whether the source's projection stored the report.
    pub stored: bool,
    /// Kept scratch directory, if any.
    pub scratch: Option<PathBuf>,
}

/// Why a drill could not run at all (as opposed to running and failing, which is a report).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DrillError {
    #[error("the drill could not run: {0}")]
    Setup(String),
    #[error("another drill is running; one at a time")]
    Busy,
}

/// Verifies a drill report's signature with the notary's key: the message is the report's
/// canonical bytes under [`DRILL_REPORT_DOMAIN`].
pub fn verify_report(body: &[u8], signature: &[u8], notary: &VerifierKey) -> Result<Hash, String> {
    let report: DrillReport =
        serde_json::from_slice(body).map_err(|e| format!("not a drill report: {e}"))?;
    let msg = message(&report)?;
    if msg[DRILL_REPORT_DOMAIN.len()..] != *body {
        return Err("the body is not the report's canonical form".into());
    }
    notary
        .key
        .verify(&msg, signature)
        .map_err(|e| format!("the notary's signature does not verify: {e}"))?;
    Ok(Sha256::digest(&msg).into())
}

/// The audit decision for a drill report: kind `drill`, id = the drill's id.
pub fn audit_decision(report: &DrillReport, digest: &Hash) -> Decision {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
    let mut payload = serde_json::Map::new();
    payload.insert("drill_id".into(), report.drill_id.to_string().into());
    payload.insert("scenario".into(), report.scenario.name().into());
    payload.insert("report_digest".into(), b64.clone().into());
    payload.insert("passed".into(), report.passed.into());
    payload.insert("records_before".into(), report.records_before.into());
    payload.insert("records_after".into(), report.records_after.into());
    payload.insert("started_at".into(), report.started_at.to_string().into());
    payload.insert("finished_at".into(), report.finished_at.to_string().into());
    let verdict = if report.passed { "passed" } else { "FAILED" };
    Decision {
        id: report.drill_id,
        kind: DRILL_KIND.to_owned(),
        title: format!(
            "Recovery drill {} ({}): {verdict}",
            report.drill_id, report.scenario
        ),
        body: format!(
            "The {} recovery drill {} restored {} of {} records and {verdict}. Its report's \
             digest is {b64}.",
            report.scenario, report.drill_id, report.records_after, report.records_before
        ),
        payload,
        proposed_at: report.finished_at,
        supersedes: None,
        attachments: Vec::new(),
    }
}

/// The report digest a `drill` audit decision commits to, if `decision` is one.
pub fn audited_drill_digest(decision: &Decision) -> Option<Hash> {
    if decision.kind != DRILL_KIND {
        return None;
    }
    triplicate_verifier::audited_digest(decision)
}

/// The scratch copy's stores and service.
struct Scratch {
    root: PathBuf,
    stores: PathBuf,
    pg: Option<String>,
    notary: Arc<dyn Signer>,
    policy_dir: Option<PathBuf>,
    origin: String,
    /// In place: where the deployment's own store files are moved instead of removed.
    aside: Option<PathBuf>,
}

fn setup(e: impl std::fmt::Display) -> DrillError {
    DrillError::Setup(e.to_string())
}

impl Scratch {
    fn ledger_dir(&self) -> PathBuf {
        self.stores.join("ledger")
    }

    async fn open_stream(&self) -> Result<StreamBackend, String> {
        SqliteStream::open(&self.stores)
            .await
            .map(StreamBackend::Sqlite)
            .map_err(|e| e.to_string())
    }

    async fn open_projection(&self) -> Result<ProjectionBackend, String> {
        match &self.pg {
            None => SqliteProjection::open(&self.stores)
                .await
                .map(ProjectionBackend::Sqlite)
                .map_err(|e| e.to_string()),
            Some(url) => {
                crate::setup::migrate_postgres_url(url).await?;
                PgProjection::connect(
                    url,
                    PgOptions::with_role(triplicate_projection::PG_WRITER_ROLE),
                )
                .await
                .map(ProjectionBackend::Postgres)
                .map_err(|e| e.to_string())
            }
        }
    }

    /// Removes the named files and directories of the stores' directory, or, in place, moves
    /// them into the aside directory (never deleting a deployment's data).
    fn discard(&self, names: &[&str]) -> Result<(), String> {
        for name in names {
            let p = self.stores.join(name);
            if !p.exists() {
                continue;
            }
            match &self.aside {
                Some(aside) => {
                    std::fs::create_dir_all(aside)
                        .map_err(|e| format!("{}: {e}", aside.display()))?;
                    std::fs::rename(&p, aside.join(name))
                        .map_err(|e| format!("move {} aside: {e}", p.display()))?;
                }
                None if p.is_dir() => {
                    std::fs::remove_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?
                }
                None => std::fs::remove_file(&p).map_err(|e| format!("{}: {e}", p.display()))?,
            }
        }
        Ok(())
    }

    /// Removes the projection: its SQLite files (moved aside in place), or every table of the
    /// scratch database.
    async fn lose_projection(&self) -> Result<(), String> {
        match &self.pg {
            None if self.aside.is_some() => self.discard(&PROJECTION_FILES),
            None => drill_faults::remove_sqlite(&self.stores).map_err(|e| e.to_string()),
            Some(url) => drill_faults::drop_postgres(url)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// A service over the scratch stores (no HTTP, no workers unless asked).
    async fn service(&self, options: ServiceOptions) -> Result<Service, String> {
        let ledger = {
            let config = LedgerConfig::new(self.ledger_dir(), self.origin.clone());
            let notary = self.notary.clone();
            tokio::task::spawn_blocking(move || EmbeddedLedger::open(config, notary))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        };
        let policy = match &self.policy_dir {
            Some(d) => triplicate_policy::Policy::load(d).map_err(|e| e.to_string())?,
            None => return Err("the source service has no policy directory".into()),
        };
        let parts = ServiceParts {
            ledger: Arc::new(ledger),
            ledger_dir: Some(self.ledger_dir()),
            notary: self.notary.clone(),
            policy,
            policy_dir: self.policy_dir.clone(),
            stream: self.open_stream().await?,
            projection: self.open_projection().await?,
            options,
        };
        Service::start(parts).await.map_err(|e| e.to_string())
    }
}

const STREAM_FILES: [&str; 3] = ["stream.db", "stream.db-wal", "stream.db-shm"];
const PROJECTION_FILES: [&str; 3] = ["projection.db", "projection.db-wal", "projection.db-shm"];

/// Records steps and times.
struct Log {
    steps: Vec<Step>,
}

impl Log {
    fn step(&mut self, name: &str, started: Instant, ok: bool, detail: impl Into<String>) {
        let detail = detail.into();
        tracing::info!(step = name, ok, detail = %detail, "drill step");
        self.steps.push(Step {
            name: name.to_owned(),
            ok,
            seconds: started.elapsed().as_secs_f64(),
            detail,
        });
    }
}

/// The scratch cross-check policy: the source's grace period, no automatic repairs (the drill
/// recovers through the rebuild paths, not the reconciler), no alerts.
fn scratch_policy(source: &VerificationPolicy) -> VerificationPolicy {
    let mut p = source.clone();
    p.auto_repair.clear();
    p.webhooks.clear();
    p
}

/// What the scenario found and did.
#[derive(Default)]
struct Phase {
    detect: Option<Duration>,
    detected_by: Option<String>,
    recover: Option<Duration>,
    failure: Option<String>,
}

/// Runs one drill against `source` (a running service, or one started over a stopped
/// deployment's stores) on a scratch copy, then signs and stores its report and appends its
/// audit record to the source's ledger. A drill that runs and fails is an `Ok` outcome whose
/// report says why; `Err` means it could not run (no scratch space, the source's stores
/// unreadable).
pub async fn run_drill(
    source: &Service,
    policy: &VerificationPolicy,
    options: DrillOptions,
) -> Result<DrillOutcome, DrillError> {
    let drill_id = Uuid::now_v7();
    let started_at = Timestamp::now();
    let scenario = options.scenario;
    tracing::info!(%drill_id, %scenario, "recovery drill starting");
    let base = options
        .scratch_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let root = base.join(format!("triplicate-drill-{drill_id}"));
    let source_dir = source
        .ledger_dir()
        .ok_or_else(|| setup("the source service has no ledger directory"))?
        .to_path_buf();
    let origin = source.ledger().checkpoint().origin;
    let scratch = Scratch {
        stores: root.join("stores"),
        root: root.clone(),
        pg: options.scratch_postgres_url.clone(),
        notary: source.notary().clone(),
        policy_dir: source.policy_dir().map(Path::to_path_buf),
        origin,
        aside: None,
    };
    // The backup reads the ledger's files: make them show every committed record first.
    let ledger = source.ledger().clone();
    tokio::task::spawn_blocking(move || ledger.flush())
        .await
        .map_err(setup)?
        .map_err(|e| setup(format!("flush the source ledger: {e}")))?;
    let source_checkpoint = CheckpointSummary::of(source.ledger().as_ref());
    if source_checkpoint.size == 0 {
        return Err(setup(
            "the ledger is empty: there is nothing to lose and rebuild yet",
        ));
    }
    let mut log = Log { steps: Vec::new() };
    std::fs::create_dir_all(&root).map_err(|e| setup(format!("{}: {e}", root.display())))?;

    // 1. A fresh backup of the source.
    let t = Instant::now();
    let backup = triplicate_recovery::backup(
        BackupSources {
            ledger_dir: &source_dir,
            stream: source.stream(),
            projection: source.projection(),
            notary: source.notary().clone(),
        },
        &root.join("backup"),
    )
    .await
    .map_err(|e| {
        let _ = std::fs::remove_dir_all(&root);
        setup(format!("back up the source: {e}"))
    })?;
    log.step(
        "backup",
        t,
        true,
        format!(
            "{} records, {} files",
            backup.manifest.manifest.tree_size,
            backup.manifest.manifest.files.len()
        ),
    );

    let (report, after) = conduct(
        &scratch,
        policy,
        &options,
        &backup,
        Header {
            drill_id,
            started_at,
            source_checkpoint,
            in_place: false,
        },
        log,
    )
    .await;
    if let Some((svc, checker)) = after {
        // Release the scratch stores before their files are removed: a store still open
        // writes into the directory as it closes (the ledger's final flush, SQLite removing
        // its WAL), racing the removal. The cross-checker holds a handle on the service;
        // close() needs it gone.
        drop(checker);
        if tokio::time::timeout(Duration::from_secs(60), svc.close())
            .await
            .is_err()
        {
            tracing::warn!("the drill's scratch service did not close within 60 s");
        }
    }
    let outcome = finish(source, report).await;
    if options.keep_scratch {
        return outcome.map(|outcome| DrillOutcome {
            scratch: Some(scratch.root.clone()),
            ..outcome
        });
    }
    // Removed whether or not the report could be stored.
    remove_scratch(&scratch.root).await;
    outcome
}

/// Removes a drill's scratch directory. A store's maintenance task (a SQLite checkpoint on the
/// blocking pool) may still hold its database for a few milliseconds after the drill let go
/// of it, and close it, writing into the directory, while it is being removed, as may the
/// stores of a scenario that failed before its service could be closed; so a failed removal is
/// tried again for up to two seconds before it is reported.
async fn remove_scratch(root: &Path) {
    let mut attempt = 0;
    loop {
        let dir = root.to_owned();
        let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        match removed {
            Ok(()) => return,
            Err(e) if attempt < 40 => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, dir = %root.display(), "removing the drill's scratch copy again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, dir = %root.display(), "the drill's scratch copy was not removed");
                return;
            }
        }
    }
}

/// What every report starts with.
struct Header {
    drill_id: Uuid,
    started_at: Timestamp,
    source_checkpoint: CheckpointSummary,
    in_place: bool,
}

/// The drill proper, after the backup: restore it into the scratch stores (not in place),
/// damage, detect, recover, fill, verify; the report, and the service over the recovered
/// stores (when one could be started).
async fn conduct(
    scratch: &Scratch,
    policy: &VerificationPolicy,
    options: &DrillOptions,
    backup: &triplicate_recovery::BackupOutcome,
    header: Header,
    mut log: Log,
) -> (DrillReport, Option<(Service, CrossCheck)>) {
    let scenario = options.scenario;
    let backup_dir = backup.dir.clone();
    let m = backup.manifest.manifest.clone();
    let trusted = VerifierKey::of(scratch.notary.as_ref());
    let restored = if header.in_place {
        Ok(())
    } else {
        let t = Instant::now();
        let r = restore_into(scratch, &backup_dir, &trusted).await;
        match &r {
            Ok(d) => log.step("restore to scratch", t, true, d.clone()),
            Err(e) => log.step("restore to scratch", t, false, e.clone()),
        }
        r.map(|_| ())
    };
    let records_before = m.tree_size;

    let opts = ServiceOptions {
        store_timeout: Duration::from_millis(500),
        catchup_interval: Duration::from_millis(100),
        ..ServiceOptions::default()
    };
    let mut phase = Phase::default();
    let checkpoint_before = CheckpointSummary {
        size: m.tree_size,
        root: m.root.clone(),
    };
    let mut after: Option<(Service, CrossCheck)> = None;
    if let Err(e) = &restored {
        phase.failure = Some(format!("the backup could not be restored: {e}"));
    } else {
        let out = match scenario {
            Scenario::LoseProjection | Scenario::LoseStream => {
                lose_and_rebuild(scratch, policy, scenario, opts.clone(), &mut log).await
            }
            Scenario::CorruptLedger => {
                corrupt_ledger(scratch, backup, policy, opts.clone(), &mut log).await
            }
            Scenario::RestoreAll => {
                restore_all(
                    scratch,
                    &backup_dir,
                    &trusted,
                    policy,
                    opts.clone(),
                    &mut log,
                )
                .await
            }
            Scenario::StoreOutage => {
                store_outage(
                    scratch,
                    policy,
                    opts.clone(),
                    options.outage_records,
                    &mut log,
                )
                .await
            }
        };
        match out {
            Ok((p, svc, cc)) => {
                phase = p;
                after = Some((svc, cc));
            }
            Err(e) => phase.failure = Some(e),
        }
    }

    // 3. The verdict: every record back in all three stores, a full cross-check clean.
    let mut records_after = 0;
    let mut checkpoint_after = checkpoint_before.clone();
    let mut final_check = None;
    if let Some((svc, cc)) = &after {
        let t = Instant::now();
        // The drill's own records (audit records of the detection run, outage records) are in
        // the scratch ledger too: every store must hold all of it.
        let size = svc.ledger().tree_size();
        let fill = fill_all(svc, size).await;
        let held = held_by_all(svc).await;
        records_after = held.as_ref().map_or(0, |h| *h).min(records_before);
        checkpoint_after = CheckpointSummary::of(svc.ledger().as_ref());
        match cc.run_now(true).await {
            Ok(run) => {
                let c = run.report.counts;
                let fc = FinalCheck {
                    run_id: run.report.run_id,
                    clean: run.report.is_clean(),
                    records_compared: run.report.records_compared,
                    lag: c.lag,
                    minor: c.minor,
                    major: c.major,
                    critical: c.critical,
                };
                log.step(
                    "final full cross-check",
                    t,
                    fc.clean,
                    format!(
                        "{} records compared: {} lag, {} minor, {} major, {} critical",
                        fc.records_compared, c.lag, c.minor, c.major, c.critical
                    ),
                );
                if !fc.clean && phase.failure.is_none() {
                    phase.failure = Some(format!(
                        "the final cross-check found {} discrepancies",
                        c.lag + c.minor + c.major + c.critical
                    ));
                }
                final_check = Some(fc);
            }
            Err(e) => {
                log.step("final full cross-check", t, false, e.to_string());
                phase
                    .failure
                    .get_or_insert(format!("the final cross-check could not run: {e}"));
            }
        }
        if let Err(e) = fill.and(held.map(|_| ())) {
            phase.failure.get_or_insert(e);
        }
    }
    let records_lost = records_before.saturating_sub(records_after);
    if records_lost > 0 {
        phase
            .failure
            .get_or_insert(format!("{records_lost} records were lost"));
    }
    let discrepancies_left = final_check
        .as_ref()
        .map_or(0, |f| f.lag + f.minor + f.major + f.critical);
    let passed = phase.failure.is_none()
        && final_check.as_ref().is_some_and(|f| f.clean)
        && records_lost == 0
        && log.steps.iter().all(|s| s.ok);
    let report = DrillReport {
        version: DRILL_REPORT_VERSION,
        drill_id: header.drill_id,
        scenario,
        in_place: header.in_place,
        started_at: header.started_at,
        finished_at: Timestamp::now(),
        source_checkpoint: header.source_checkpoint,
        backup_tree_size: m.tree_size,
        backup_root: m.root.clone(),
        records_before,
        records_after,
        records_lost,
        checkpoint_before,
        checkpoint_after,
        detect_seconds: phase.detect.map(|d| d.as_secs_f64()),
        detected_by: phase.detected_by,
        recover_seconds: phase.recover.map(|d| d.as_secs_f64()),
        steps: log.steps,
        final_check,
        discrepancies_left,
        passed,
        failure: if passed {
            None
        } else {
            Some(
                phase
                    .failure
                    .unwrap_or_else(|| "a step of the drill failed".into()),
            )
        },
    };
    (report, after)
}

/// Signs the report, appends its audit record to the source's ledger, stores it in the
/// source's projection.
async fn finish(source: &Service, report: DrillReport) -> Result<DrillOutcome, DrillError> {
    let body = to_jcs(&report).map_err(setup)?;
    let msg = message(&report).map_err(setup)?;
    let digest: Hash = Sha256::digest(&msg).into();
    let notary = source.notary().clone();
    let (key_id, alg) = (notary.key_id().to_string(), notary.algorithm().to_string());
    let signature = tokio::task::spawn_blocking(move || notary.sign(&msg))
        .await
        .map_err(setup)?
        .map_err(|e| setup(format!("the notary could not sign the drill report: {e}")))?;
    let audit_seq = match source.record_audit(audit_decision(&report, &digest)).await {
        Ok(
            crate::service::SubmitOutcome::Created(a) | crate::service::SubmitOutcome::Existing(a),
        ) => Some(a.receipt.seq),
        Err(e) => {
            tracing::error!(error = %e, drill_id = %report.drill_id, "the drill's audit record could not be appended to the ledger");
            None
        }
    };
    let stored = triplicate_projection::StoredDrill {
        drill_id: report.drill_id,
        scenario: report.scenario.name().to_owned(),
        started_at: report.started_at,
        finished_at: report.finished_at,
        passed: report.passed,
        in_place: report.in_place,
        records_before: report.records_before,
        records_after: report.records_after,
        detect_ms: report.detect_seconds.map(|s| (s * 1000.0).round() as u64),
        recover_ms: report
            .recover_seconds
            .map_or(0, |s| (s * 1000.0).round() as u64),
        discrepancies_left: report.discrepancies_left,
        digest,
        key_id: key_id.clone(),
        alg: alg.clone(),
        signature: signature.clone(),
        body: body.clone(),
        audit_seq,
    };
    let stored_ok = match source.projection().store_drill(stored).await {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(error = %e, drill_id = %report.drill_id, "the drill report could not be stored in the projection");
            false
        }
    };
    source.metrics().drill_finished(&report);
    tracing::info!(
        drill_id = %report.drill_id,
        scenario = %report.scenario,
        passed = report.passed,
        records_before = report.records_before,
        records_after = report.records_after,
        "recovery drill finished"
    );
    Ok(DrillOutcome {
        report,
        body,
        digest,
        key_id,
        alg,
        signature,
        audit_seq,
        stored: stored_ok,
        scratch: None,
    })
}

async fn restore_into(
    scratch: &Scratch,
    backup_dir: &Path,
    trusted: &VerifierKey,
) -> Result<String, String> {
    std::fs::create_dir_all(&scratch.stores).map_err(|e| e.to_string())?;
    let verified = triplicate_recovery::verify_backup(backup_dir, trusted)
        .await
        .map_err(|e| e.to_string())?;
    let stream = scratch.open_stream().await?;
    let projection = scratch.open_projection().await?;
    let out = triplicate_recovery::restore(
        &verified,
        RestoreTargets {
            ledger_dir: &scratch.ledger_dir(),
            stream: &stream,
            projection: &projection,
        },
        trusted,
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(format!(
        "{} records; stream {} and projection {} written ({:.0}/s)",
        out.tree_size,
        out.stream.written,
        out.projection.written,
        out.projection.rate()
    ))
}

/// How many records all three stores hold: the smallest of the ledger's size and each
/// store's highest seq + 1.
async fn held_by_all(svc: &Service) -> Result<u64, String> {
    let l = svc.ledger().tree_size();
    let s = svc
        .stream()
        .highest_seq()
        .await
        .map_err(|e| e.to_string())?
        .map_or(0, |h| h + 1);
    let p = svc
        .projection()
        .highest_seq()
        .await
        .map_err(|e| e.to_string())?
        .map_or(0, |h| h + 1);
    Ok(l.min(s).min(p))
}

/// Brings both downstream stores to `size` through the rebuild paths.
async fn fill_all(svc: &Service, size: u64) -> Result<(), String> {
    let (s, p) = tokio::join!(
        triplicate_recovery::fill_stream(svc.ledger().clone(), svc.stream(), size),
        triplicate_recovery::fill_projection(svc.ledger().clone(), svc.projection(), size),
    );
    s.map_err(|e| format!("fill the stream: {e}"))?;
    p.map_err(|e| format!("fill the projection: {e}"))?;
    Ok(())
}

type Ran = Result<(Phase, Service, CrossCheck), String>;

async fn checker(svc: &Service, policy: &VerificationPolicy) -> Result<CrossCheck, String> {
    CrossCheck::new(svc.clone(), scratch_policy(policy)).map_err(|e| e.to_string())
}

/// `lose-projection` / `lose-stream`: remove the store, detect the loss with a cross-check,
/// rebuild the store from the ledger.
async fn lose_and_rebuild(
    scratch: &Scratch,
    policy: &VerificationPolicy,
    scenario: Scenario,
    options: ServiceOptions,
    log: &mut Log,
) -> Ran {
    let t = Instant::now();
    let lost = if scenario == Scenario::LoseProjection {
        scratch.lose_projection().await
    } else {
        scratch.discard(&STREAM_FILES)
    };
    let what = if scenario == Scenario::LoseProjection {
        "projection"
    } else {
        "stream"
    };
    log.step(
        &format!("lose the {what}"),
        t,
        lost.is_ok(),
        lost.clone()
            .err()
            .unwrap_or_else(|| format!("the {what}'s database removed")),
    );
    lost?;
    let damaged = Instant::now();
    let svc = scratch.service(options).await?;
    let cc = checker(&svc, policy).await?;
    let t = Instant::now();
    let run = cc.run_now(false).await.map_err(|e| e.to_string())?;
    let missing = run
        .report
        .discrepancies
        .iter()
        .filter(|d| {
            d.store
                == if scenario == Scenario::LoseProjection {
                    triplicate_verifier::Store::Projection
                } else {
                    triplicate_verifier::Store::Stream
                }
        })
        .count();
    let mut phase = Phase::default();
    if missing > 0 {
        phase.detect = Some(damaged.elapsed());
        phase.detected_by = Some(format!(
            "cross-check {}: {missing} records missing from the {what}",
            run.report.run_id
        ));
    } else {
        phase.failure = Some(format!("the cross-check did not notice the lost {what}"));
    }
    log.step(
        "detect",
        t,
        missing > 0,
        phase.detected_by.clone().unwrap_or_default(),
    );
    let t = Instant::now();
    let size = svc.ledger().tree_size();
    let out = if scenario == Scenario::LoseProjection {
        triplicate_recovery::fill_projection(svc.ledger().clone(), svc.projection(), size).await
    } else {
        triplicate_recovery::fill_stream(svc.ledger().clone(), svc.stream(), size).await
    };
    match out {
        Ok(f) => {
            phase.recover = Some(t.elapsed());
            log.step(
                &format!("rebuild the {what} from the ledger"),
                t,
                true,
                format!(
                    "{} records in {} batches, {:.0} records/s",
                    f.written,
                    f.batches,
                    f.rate()
                ),
            );
        }
        Err(e) => {
            log.step(
                &format!("rebuild the {what} from the ledger"),
                t,
                false,
                e.to_string(),
            );
            phase.failure.get_or_insert(e.to_string());
        }
    }
    if scenario == Scenario::LoseProjection {
        // The ledger gives the records back; the verification and drill reports (evidence,
        // never re-derivable) come back from the drill's backup.
        let t = Instant::now();
        let trusted = VerifierKey::of(scratch.notary.as_ref());
        let back = match triplicate_recovery::verify_backup(&scratch.root.join("backup"), &trusted)
            .await
        {
            Ok(v) => triplicate_recovery::restore_reports(&v, svc.projection())
                .await
                .map(|reviews| (v.reports.len(), reviews, v.drills.len())),
            Err(e) => Err(e),
        };
        match back {
            Ok((reports, reviews, drills)) => log.step(
                "restore the reports from the backup",
                t,
                true,
                format!(
                    "{reports} verification reports, {reviews} reviews, {drills} drill reports"
                ),
            ),
            Err(e) => {
                log.step(
                    "restore the reports from the backup",
                    t,
                    false,
                    e.to_string(),
                );
                phase.failure.get_or_insert(e.to_string());
            }
        }
    }
    Ok((phase, svc, cc))
}

/// `corrupt-ledger`: flip a byte of a hash tile in the scratch ledger, detect it with `fsck`,
/// put the damaged files back from the backup.
async fn corrupt_ledger(
    scratch: &Scratch,
    backup: &triplicate_recovery::BackupOutcome,
    policy: &VerificationPolicy,
    options: ServiceOptions,
    log: &mut Log,
) -> Ran {
    let ldir = scratch.ledger_dir();
    let m = &backup.manifest.manifest;
    // The lowest hash tile: full when the ledger has 256 entries or more.
    let target = m
        .files
        .iter()
        .filter_map(|f| f.path.strip_prefix("ledger/"))
        .find(|p| p.starts_with("tile/0/"))
        .map(str::to_owned)
        .ok_or("the ledger is empty: there is no tile to damage")?;
    let t = Instant::now();
    let path = ldir.join(&target);
    let mut data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(aside) = &scratch.aside {
        // In place: the undamaged file is kept, whatever happens next.
        std::fs::create_dir_all(aside).map_err(|e| e.to_string())?;
        std::fs::write(aside.join(target.replace('/', "_")), &data)
            .map_err(|e| format!("keep {target}: {e}"))?;
    }
    let at = data.len() / 2;
    data[at] ^= 0x20;
    std::fs::write(&path, &data).map_err(|e| format!("{}: {e}", path.display()))?;
    log.step(
        "damage a tile",
        t,
        true,
        format!("one bit of {target} flipped"),
    );
    let damaged = Instant::now();

    let mut phase = Phase::default();
    let vkey = VerifierKey::of(scratch.notary.as_ref())
        .note_string()
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    let (dir, v) = (ldir.clone(), vkey.clone());
    let found = tokio::task::spawn_blocking(move || triplicate_ledger::fsck::fsck(&dir, Some(&v)))
        .await
        .map_err(|e| e.to_string())?;
    match &found {
        Err(e) => {
            phase.detect = Some(damaged.elapsed());
            phase.detected_by = Some(format!("fsck: {e}"));
            log.step("detect", t, true, format!("fsck: {e}"));
        }
        Ok(_) => {
            phase.failure = Some("fsck did not notice the damaged tile".into());
            log.step("detect", t, false, "fsck found nothing");
        }
    }
    let t = Instant::now();
    let files: Vec<triplicate_ledger::backup::SnapshotFile> = m
        .files
        .iter()
        .filter_map(|f| {
            let path = f.path.strip_prefix("ledger/")?.to_owned();
            let sha256: Hash = hex::decode(&f.sha256).ok()?.try_into().ok()?;
            Some(triplicate_ledger::backup::SnapshotFile {
                path,
                sha256,
                len: f.bytes,
                copied: false,
            })
        })
        .collect();
    let snap = backup.dir.join("ledger");
    let (dir, v) = (ldir.clone(), vkey);
    let repaired = tokio::task::spawn_blocking(move || {
        let replaced = triplicate_ledger::backup::repair_from_snapshot(&dir, &snap, &files)
            .map_err(|e| e.to_string())?;
        triplicate_ledger::fsck::fsck(&dir, Some(&v))
            .map(|_| replaced)
            .map_err(|e| format!("fsck after the repair: {e}"))
    })
    .await
    .map_err(|e| e.to_string())?;
    match &repaired {
        Ok(replaced) => {
            phase.recover = Some(t.elapsed());
            log.step(
                "restore the damaged files from the backup",
                t,
                replaced.contains(&target),
                format!("replaced {replaced:?}; fsck clean"),
            );
        }
        Err(e) => {
            log.step(
                "restore the damaged files from the backup",
                t,
                false,
                e.clone(),
            );
            phase.failure.get_or_insert(e.clone());
        }
    }
    repaired?;
    let svc = scratch.service(options).await?;
    let cc = checker(&svc, policy).await?;
    Ok((phase, svc, cc))
}

/// `restore-all`: every scratch store removed, the backup verified and restored into fresh
/// stores, caught up from the ledger.
async fn restore_all(
    scratch: &Scratch,
    backup_dir: &Path,
    trusted: &VerifierKey,
    policy: &VerificationPolicy,
    options: ServiceOptions,
    log: &mut Log,
) -> Ran {
    let t = Instant::now();
    let lost = if scratch.aside.is_some() {
        let mut names = vec!["ledger", crate::service::FREEZE_FILE];
        names.extend(STREAM_FILES);
        names.extend(PROJECTION_FILES);
        scratch.discard(&names)
    } else {
        std::fs::remove_dir_all(&scratch.stores).map_err(|e| e.to_string())
    };
    let lost = match lost {
        Ok(()) if scratch.pg.is_some() => scratch.lose_projection().await,
        other => other,
    };
    log.step(
        "lose every store",
        t,
        lost.is_ok(),
        lost.clone()
            .err()
            .unwrap_or_else(|| "ledger, stream and projection removed".into()),
    );
    lost?;
    let t = Instant::now();
    let out = restore_into(scratch, backup_dir, trusted).await;
    let mut phase = Phase::default();
    match &out {
        Ok(d) => {
            phase.recover = Some(t.elapsed());
            log.step("restore everything from the backup", t, true, d.clone());
        }
        Err(e) => {
            log.step("restore everything from the backup", t, false, e.clone());
            phase.failure = Some(e.clone());
        }
    }
    out?;
    let svc = scratch.service(options).await?;
    let cc = checker(&svc, policy).await?;
    Ok((phase, svc, cc))
}

/// `store-outage`: the projection made unreachable (its tables locked by another session)
/// while records are written, then back; the service must commit every record to the ledger,
/// mark the projection pending, and catch it up afterwards.
async fn store_outage(
    scratch: &Scratch,
    policy: &VerificationPolicy,
    options: ServiceOptions,
    records: u64,
    log: &mut Log,
) -> Ran {
    let svc = scratch.service(options).await?;
    let stop = tokio::sync::watch::channel(false);
    let mut rx = stop.1.clone();
    let worker = crate::catchup::spawn(&svc, async move {
        let _ = rx.wait_for(|s| *s).await;
    });
    let cc = checker(&svc, policy).await?;
    let t = Instant::now();
    let lock = match &scratch.pg {
        None => drill_faults::WriteLock::sqlite(&scratch.stores).await,
        Some(url) => drill_faults::WriteLock::postgres(url).await,
    }
    .map_err(|e| format!("take the projection offline: {e}"))?;
    log.step("take the projection offline", t, true, lock.describe());
    let out_at = Instant::now();
    let mut phase = Phase::default();
    let t = Instant::now();
    let mut written = 0u64;
    for i in 0..records {
        let d = outage_decision(i);
        match svc.record_audit(d).await {
            Ok(_) => written += 1,
            Err(e) => {
                phase.failure = Some(format!("a write during the outage failed: {e}"));
                break;
            }
        }
    }
    log.step(
        "write during the outage",
        t,
        written == records,
        format!("{written} of {records} records committed to the ledger"),
    );
    let t = Instant::now();
    let mut pending = false;
    for _ in 0..200 {
        if !svc.health().projection.healthy {
            pending = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    if pending {
        phase.detect = Some(out_at.elapsed());
        phase.detected_by = Some("the service marked the projection pending".into());
    } else {
        phase
            .failure
            .get_or_insert("the service never marked the projection pending".into());
    }
    log.step(
        "detect",
        t,
        pending,
        phase.detected_by.clone().unwrap_or_default(),
    );
    let t = Instant::now();
    lock.release().await.map_err(|e| e.to_string())?;
    let size = svc.ledger().tree_size();
    let mut caught_up = false;
    for _ in 0..1200 {
        let h = svc.health();
        if h.projection.size >= size && h.projection.healthy {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    if caught_up {
        phase.recover = Some(t.elapsed());
    } else {
        phase
            .failure
            .get_or_insert("the projection did not catch up within 30 s".into());
    }
    log.step(
        "bring the projection back; the catch-up worker fills it",
        t,
        caught_up,
        format!("projection at {} of {size}", svc.health().projection.size),
    );
    let _ = stop.0.send(true);
    let _ = worker.await;
    Ok((phase, svc, cc))
}

/// A record written during the outage: the service's own kind, approved by the notary.
fn outage_decision(i: u64) -> Decision {
    let mut payload = serde_json::Map::new();
    payload.insert("outage_record".into(), i.into());
    Decision {
        id: Uuid::now_v7(),
        kind: DRILL_KIND.to_owned(),
        title: format!("Store-outage drill record {i}"),
        body: "Written by a store-outage drill to the scratch copy while its projection was \
               unreachable."
            .into(),
        payload,
        proposed_at: Timestamp::now(),
        supersedes: None,
        attachments: Vec::new(),
    }
}

/// The service's drills: one at a time, on demand (`POST /v1/drills/runs`) and on the
/// `[drills.<scenario>]` schedules of `verification.toml`.
pub struct Drills {
    service: Service,
    policy: VerificationPolicy,
    running: tokio::sync::Mutex<()>,
    /// Scratch copies go here (`[drills] scratch_dir`; the system's temporary directory when
    /// `None`), unless a run's options say otherwise.
    pub scratch_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Drills {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drills")
            .field("schedules", &self.policy.drills.len())
            .finish_non_exhaustive()
    }
}

impl Drills {
    /// The drills of `service` under `policy`; exports each scheduled scenario's window and
    /// the stored drills' last results as metrics.
    pub async fn new(service: Service, policy: VerificationPolicy) -> Drills {
        for s in &policy.drills {
            if let Ok(scenario) = s.scenario.parse::<Scenario>() {
                service.metrics().set_drill_window(scenario, s.window);
            }
        }
        match service.projection().drill_status().await {
            Ok(status) => {
                for st in status {
                    let Ok(scenario) = st.scenario.parse::<Scenario>() else {
                        continue;
                    };
                    let secs = |t: Timestamp| t.unix_nanos() as f64 / 1e9;
                    service.metrics().restore_drill(
                        scenario,
                        secs(st.last.finished_at),
                        st.last.passed,
                        st.last_passed.map(|p| secs(p.finished_at)),
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "the stored drills' results could not be read"),
        }
        Drills {
            scratch_dir: policy.drill_scratch_dir.clone(),
            service,
            policy,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs one drill now, or refuses ([`DrillError::Busy`]) while another runs.
    pub async fn run(&self, mut options: DrillOptions) -> Result<DrillOutcome, DrillError> {
        let _guard = self.running.try_lock().map_err(|_| DrillError::Busy)?;
        if options.scratch_dir.is_none() {
            options.scratch_dir.clone_from(&self.scratch_dir);
        }
        let scenario = options.scenario;
        run_drill(&self.service, &self.policy, options)
            .await
            .inspect_err(|e| {
                self.service.metrics().drill_error(scenario);
                tracing::error!(error = %e, %scenario, "the drill could not run");
            })
    }

    /// The loop `serve` runs: sleeps until the next scheduled drill, runs it, repeats until
    /// `shutdown`. Does nothing without `[drills.*]` schedules.
    pub fn spawn(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            tokio::pin!(shutdown);
            if self.policy.drills.is_empty() {
                return;
            }
            loop {
                let now = Timestamp::now();
                let next = self
                    .policy
                    .drills
                    .iter()
                    .filter_map(|d| Some((d.schedule.next_after(now)?, d.scenario.clone())))
                    .min_by_key(|(t, _)| *t);
                let Some((at, name)) = next else {
                    tracing::warn!("the drill schedules have no next time");
                    return;
                };
                let wait = u64::try_from(at.unix_nanos() - now.unix_nanos()).unwrap_or(0);
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(Duration::from_nanos(wait)) => {}
                }
                let Ok(scenario) = name.parse::<Scenario>() else {
                    continue;
                };
                match self.run(DrillOptions::new(scenario)).await {
                    Ok(o) => tracing::info!(
                        drill_id = %o.report.drill_id,
                        %scenario,
                        passed = o.report.passed,
                        "scheduled drill finished"
                    ),
                    Err(e) => tracing::error!(%scenario, error = %e, "scheduled drill did not run"),
                }
            }
        })
    }
}

/// One drill over a stopped deployment's stores (`triplicate drill run --data-dir|--config`):
/// they are opened as the service opens them, a service is started over them without HTTP,
/// and the drill runs as the service would run it (its report stored in the projection, its
/// audit record appended to the ledger). Refused while a running service holds the ledger:
/// run the drill through it (`POST /v1/drills/runs`).
pub async fn run_on_deployment(
    dep: &crate::recovery::Deployment,
    options: DrillOptions,
) -> Result<DrillOutcome, DrillError> {
    let notary = dep.notary().await.map_err(setup)?;
    let policy_dir = dep.policy_dir();
    let policy = crate::crosscheck::load_policy(Some(&policy_dir))
        .map_err(|e| setup(format!("verification policy: {e}")))?;
    let projection = dep.projection_choice().map_err(setup)?;
    let stream = dep.stream_choice().map_err(setup)?;
    let (parts, embedded) = crate::setup::open_parts(
        dep.data_dir(),
        dep.origin(),
        notary,
        &policy_dir,
        projection,
        &stream,
        ServiceOptions::default(),
    )
    .await
    .map_err(|e| match e {
        crate::setup::SetupError::Ledger(triplicate_ledger::LedgerError::Locked {
            path,
            holder,
        }) => setup(format!(
            "the ledger under {} is locked by a running service ({holder}); run the drill \
             through it: triplicate drill run --url URL --token ADMIN_TOKEN",
            path.display()
        )),
        other => setup(other),
    })?;
    let service = Service::start(parts).await.map_err(setup)?;
    let drills = Drills::new(service, policy).await;
    let out = drills.run(options).await;
    if let Err(e) = embedded.flush() {
        tracing::warn!(error = %e, "flush the ledger after the drill");
    }
    out
}

/// One drill **in place**, on a stopped deployment's own stores (`triplicate drill run
/// --in-place --data-dir|--config`): only with the explicit flag, and only for whoever can stop
/// the service and write its data directory, which is its operators' (the admin's) role. The
/// drill first takes a backup into `<data-dir>/drills/<id>/backup`; what it damages is never
/// deleted: store files are moved into `<data-dir>/drills/<id>/aside/` (and a damaged tile's
/// original kept there) before the scenario recovers the deployment itself. Both directories
/// stay after the drill, for the operator to inspect and remove. The report, signed by the
/// notary, is stored in the recovered projection and its audit record appended to the
/// recovered ledger. Needs the embedded projection: a PostgreSQL projection is never dropped in
/// place (run the drill on a scratch database instead).
pub async fn run_in_place(
    dep: &crate::recovery::Deployment,
    options: DrillOptions,
) -> Result<DrillOutcome, DrillError> {
    if matches!(
        dep.projection_choice().map_err(setup)?,
        crate::setup::ProjectionChoice::Postgres { .. }
    ) {
        return Err(setup(
            "in-place drills need the embedded projection: a PostgreSQL projection is never \
             dropped or locked in place; run the drill on a scratch copy (--scratch-postgres-url)",
        ));
    }
    if !dep.stream_choice().map_err(setup)?.is_embedded() {
        return Err(setup(
            "in-place drills need the embedded stream: a NATS JetStream stream is never \
             deleted in place; run the drill on a scratch copy (the default)",
        ));
    }
    let frozen = dep.data_dir().join(crate::service::FREEZE_FILE);
    if frozen.exists() {
        return Err(setup(format!(
            "writes are frozen ({}): the deployment is in an incident; resolve it (see \
             ops/runbooks/critical-verification-failure.md) before drilling it in place",
            frozen.display()
        )));
    }
    let drill_id = Uuid::now_v7();
    let started_at = Timestamp::now();
    let scenario = options.scenario;
    tracing::warn!(%drill_id, %scenario, data_dir = %dep.data_dir().display(), "recovery drill starting IN PLACE");
    let notary = dep.notary().await.map_err(setup)?;
    let policy = crate::crosscheck::load_policy(Some(&dep.policy_dir()))
        .map_err(|e| setup(format!("verification policy: {e}")))?;
    let ledger_dir = dep.ledger_dir();
    // Open the ledger as its writer once: it refuses while a service runs, and it replays and
    // flushes anything the last writer left in its WAL, so the files show every record.
    let source_checkpoint = {
        let config = LedgerConfig::new(ledger_dir.clone(), dep.origin().to_owned());
        let n = notary.clone();
        tokio::task::spawn_blocking(move || {
            EmbeddedLedger::open(config, n).map(|l| CheckpointSummary::of(&l))
        })
        .await
        .map_err(setup)?
        .map_err(|e| match e {
            triplicate_ledger::LedgerError::Locked { holder, .. } => setup(format!(
                "the ledger is locked by a running service ({holder}); stop it for an \
                 in-place drill, or run the drill on a scratch copy through it (--url)"
            )),
            other => setup(other),
        })?
    };
    if source_checkpoint.size == 0 {
        return Err(setup(
            "the ledger is empty: there is nothing to lose and rebuild yet",
        ));
    }
    let root = dep.data_dir().join("drills").join(drill_id.to_string());
    std::fs::create_dir_all(&root).map_err(|e| setup(format!("{}: {e}", root.display())))?;
    let mut log = Log { steps: Vec::new() };
    let t = Instant::now();
    let backup = {
        let stream = dep.open_stream().await.map_err(setup)?;
        let projection = dep.open_projection(false).await.map_err(setup)?;
        triplicate_recovery::backup(
            BackupSources {
                ledger_dir: &ledger_dir,
                stream: &stream,
                projection: &projection,
                notary: notary.clone(),
            },
            &root.join("backup"),
        )
        .await
        .map_err(|e| setup(format!("back up the deployment first: {e}")))?
    };
    log.step(
        "backup",
        t,
        true,
        format!(
            "{} records, {} files, kept in {}",
            backup.manifest.manifest.tree_size,
            backup.manifest.manifest.files.len(),
            backup.dir.display()
        ),
    );
    let scratch = Scratch {
        stores: dep.data_dir().to_path_buf(),
        root: root.clone(),
        pg: None,
        notary: notary.clone(),
        policy_dir: Some(dep.policy_dir()),
        origin: dep.origin().to_owned(),
        aside: Some(root.join("aside")),
    };
    let (report, after) = conduct(
        &scratch,
        &policy,
        &options,
        &backup,
        Header {
            drill_id,
            started_at,
            source_checkpoint,
            in_place: true,
        },
        log,
    )
    .await;
    // The report goes to the deployment itself: through the service over the recovered stores,
    // or, when the scenario could not start one, a service over whatever the stores now hold.
    let svc = match after {
        Some((svc, checker)) => {
            // Its cross-checker holds a handle on the service; close() needs it gone.
            drop(checker);
            svc
        }
        None => scratch
            .service(ServiceOptions::default())
            .await
            .map_err(|e| {
                setup(format!(
                    "the drill failed and the deployment's stores do not open ({e}); its \
                     originals are in {}",
                    root.display()
                ))
            })?,
    };
    let outcome = finish(&svc, report).await;
    let ledger = svc.ledger().clone();
    let flushed = tokio::task::spawn_blocking(move || ledger.flush()).await;
    if !matches!(flushed, Ok(Ok(()))) {
        tracing::warn!(result = ?flushed.map(|r| r.map_err(|e| e.to_string())), "flush the ledger after the drill");
    }
    // Release the deployment's stores (the ledger's lock) before returning.
    if tokio::time::timeout(Duration::from_secs(60), svc.close())
        .await
        .is_err()
    {
        tracing::warn!("the deployment's service did not close within 60 s after the drill");
    }
    let outcome = outcome?;
    Ok(DrillOutcome {
        scratch: Some(root),
        ..outcome
    })
}
