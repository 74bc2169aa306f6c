//! One verification run: the ledger's self-check, the comparison, repair planning and
//! execution, and the report.

use std::path::{Path, PathBuf};

use triplicate_core::Timestamp;
use triplicate_ledger::{Ledger, LedgerError};
use triplicate_projection::Projection;
use triplicate_stream::{EventStream, Position};
use uuid::Uuid;

use crate::compare::{verify_range, RangeOptions, Stores, DEFAULT_BATCH};
use crate::error::VerifyError;
use crate::ledger_check::{check_checkpoint, fsck_finding, read_failure, CheckpointRef};
use crate::model::{Class, Counts, Discrepancy, Kind, Store};
use crate::policy::VerificationPolicy;
use crate::repair::{apply_repairs, plan_repairs};
use crate::report::{Report, RunMode, SeqRange, REPORT_VERSION};
use crate::trust::Trust;

/// What a run should cover and what it starts from.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub mode: RunMode,
    /// Incremental runs: the end of the last run's verified range; this run starts
    /// `rolling_window` seqs before it.
    pub resume_from: u64,
    /// The checkpoint the last run verified: the consistency proof starts there.
    pub last_verified: Option<CheckpointRef>,
    /// Incremental runs: where to start walking the stream (the last report's cursor).
    pub stream_after: Option<Position>,
    /// An embedded ledger's directory: full runs check its files with fsck, and findings name
    /// entry bundles.
    pub ledger_dir: Option<PathBuf>,
    /// The instant lag is judged at; `None` for the clock at the run's start.
    pub as_of: Option<Timestamp>,
    /// Seqs per batch.
    pub batch: u64,
    /// Run the repairs the policy allows (otherwise they are only planned).
    pub repair: bool,
    /// How many records the caller knows each downstream store acknowledged holding (the
    /// service counts what its writes returned): a store now holding fewer lost records it
    /// had, which is never lag. `None` when unknown (an offline run).
    pub acknowledged: Option<Acknowledged>,
}

/// Records each downstream store acknowledged holding (its highest seq + 1), as the writer saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acknowledged {
    pub stream: u64,
    pub projection: u64,
}

impl RunRequest {
    /// A full sweep from nothing.
    pub fn full() -> RunRequest {
        RunRequest {
            mode: RunMode::Full,
            resume_from: 0,
            last_verified: None,
            stream_after: None,
            ledger_dir: None,
            as_of: None,
            batch: DEFAULT_BATCH,
            repair: true,
            acknowledged: None,
        }
    }

    /// An incremental run continuing from `last` (its verified checkpoint and stream cursor).
    pub fn incremental_after(last: &Report) -> RunRequest {
        RunRequest {
            mode: RunMode::Incremental,
            resume_from: last.verified_end().unwrap_or(0),
            last_verified: last.checkpoint_new.or(last.checkpoint_old),
            stream_after: last.stream_cursor.as_deref().and_then(|c| c.parse().ok()),
            ..RunRequest::full()
        }
    }

    /// A full sweep that keeps the chain of verified checkpoints from `last`.
    pub fn full_after(last: &Report) -> RunRequest {
        RunRequest {
            last_verified: last.checkpoint_new.or(last.checkpoint_old),
            ..RunRequest::full()
        }
    }
}

/// Runs one verification: checks the ledger (checkpoint signature, consistency with the last
/// verified checkpoint, stored hashes against the root; fsck on full runs when the directory
/// is known), compares the range across the three stores with re-hashed ledger leaves folded
/// into the verified root, plans repairs and runs those the policy allows, and reports.
///
/// Returns `Err` only when the stream or the projection could not be read; a failing ledger
/// is a critical finding in the report.
#[tracing::instrument(skip_all, fields(mode = ?request.mode))]
pub async fn run<L, S, P>(
    stores: Stores<'_, L, S, P>,
    policy: &VerificationPolicy,
    trust: &Trust,
    request: &RunRequest,
) -> Result<Report, VerifyError>
where
    L: Ledger + ?Sized,
    S: EventStream,
    P: Projection,
{
    let run_id = Uuid::now_v7();
    let started_at = Timestamp::now();
    let as_of = request.as_of.unwrap_or(started_at);
    let mut discrepancies = Vec::new();

    if let (RunMode::Full, Some(dir)) = (request.mode, &request.ledger_dir) {
        let (dir, vkey) = (dir.clone(), trust.notary_vkey().to_owned());
        let found = tokio::task::spawn_blocking(move || fsck_finding(&dir, &vkey))
            .await
            .map_err(|e| VerifyError::Task(e.to_string()))?;
        discrepancies.extend(found);
    }
    let verified = check_checkpoint(
        stores.ledger,
        trust.notary_vkey(),
        request.last_verified,
        &mut discrepancies,
    );
    let size = verified.map_or_else(|| stores.ledger.tree_size(), |c| c.size);
    let start = match request.mode {
        RunMode::Full => 0,
        RunMode::Incremental => request
            .resume_from
            .saturating_sub(policy.rolling_window)
            .min(size),
    };
    // Look past the ledger's end for records the other stores hold and it lacks.
    let stream_end = stores
        .stream
        .highest_seq()
        .await
        .map_err(VerifyError::Stream)?
        .map_or(0, |h| h.saturating_add(1));
    let projection_end = stores
        .projection
        .highest_seq()
        .await
        .map_err(VerifyError::Projection)?
        .map_or(0, |h| h.saturating_add(1));
    let end = size.max(stream_end).max(projection_end);
    let options = RangeOptions {
        batch: request.batch,
        stream_after: match request.mode {
            RunMode::Full => None,
            RunMode::Incremental => request.stream_after,
        },
        stream_mark: Some(size.saturating_sub(policy.rolling_window)),
        verified,
        ledger_dir: request.ledger_dir.clone(),
        ..RangeOptions::default()
    };
    let found = verify_range(stores, policy, trust, start..end, as_of, &options).await?;
    let mut found_here = found.discrepancies;
    if let Some(ack) = request.acknowledged {
        lost_acknowledged(&mut found_here, ack);
    }
    discrepancies.extend(found_here);

    let mut actions = plan_repairs(&discrepancies, policy);
    let ledger_at_fault = discrepancies.iter().any(|d| d.class == Class::Critical);
    if request.repair && ledger_at_fault {
        // The copies are repaired from the ledger; a ledger that failed its own checks is not
        // a source to copy from until an operator has acted.
        tracing::warn!("the ledger failed its checks; automatic repairs are not run");
    } else if request.repair {
        let summary = apply_repairs(stores, policy, &mut actions, run_id).await;
        if summary.applied + summary.failed > 0 {
            tracing::info!(
                applied = summary.applied,
                unchanged = summary.unchanged,
                failed = summary.failed,
                "ran automatic repairs"
            );
        }
    }
    let counts = Counts::of(&discrepancies);
    let report = Report {
        version: REPORT_VERSION,
        run_id,
        mode: request.mode,
        started_at,
        finished_at: Timestamp::now(),
        as_of,
        checkpoint_old: request.last_verified,
        checkpoint_new: verified,
        ranges: vec![SeqRange { start, end }],
        records_compared: found.records,
        signatures_checked: found.signatures_checked,
        counts,
        discrepancies,
        actions,
        stream_cursor: found.stream_resume.map(|p| p.to_string()),
    };
    log_discrepancies(&report);
    tracing::info!(
        target: "triplicate::verifier",
        run_id = %run_id,
        records = report.records_compared,
        lag = counts.lag,
        minor = counts.minor,
        major = counts.major,
        critical = counts.critical,
        root_verified = found.root_verified,
        "verification run finished"
    );
    Ok(report)
}

/// The report of a run that could not start because the ledger refused to open (its files
/// disagree with its checkpoint, a file is missing): one critical finding naming the file, in
/// the same format as every other report, so a ledger failure is reported, never a crash. With
/// the ledger's directory, fsck is run too and its finding (usually more precise) is added.
pub fn unopenable_ledger_report(
    error: &LedgerError,
    ledger_dir: Option<&Path>,
    trust: &Trust,
    mode: RunMode,
) -> Report {
    let started_at = Timestamp::now();
    let mut discrepancies: Vec<Discrepancy> = vec![read_failure("open the ledger", error)];
    if let Some(dir) = ledger_dir {
        discrepancies.extend(fsck_finding(dir, trust.notary_vkey()));
    }
    tracing::error!(
        target: "triplicate::verifier",
        error = %error,
        "the ledger could not be opened; reporting it as critical"
    );
    let report = Report {
        version: REPORT_VERSION,
        run_id: Uuid::now_v7(),
        mode,
        started_at,
        finished_at: Timestamp::now(),
        as_of: started_at,
        checkpoint_old: None,
        checkpoint_new: None,
        ranges: Vec::new(),
        records_compared: 0,
        signatures_checked: 0,
        counts: Counts::of(&discrepancies),
        discrepancies,
        actions: Vec::new(),
        stream_cursor: None,
    };
    log_discrepancies(&report);
    report
}

/// The most discrepancies of one run logged one by one; the rest are counted in one event.
pub const LOGGED_DISCREPANCIES: usize = 10_000;

/// One structured event per discrepancy (target `triplicate::verifier`): `info` for lag,
/// `warn` for minor, `error` for major and critical, with the run id, seq, decision id, store,
/// class, kind, both hashes (base64) and the ledger file when known.
pub fn log_discrepancies(report: &Report) {
    for d in report.discrepancies.iter().take(LOGGED_DISCREPANCIES) {
        let expected = d.expected_hash.as_ref().map(crate::b64::encode);
        let actual = d.actual_hash.as_ref().map(crate::b64::encode);
        macro_rules! event {
            ($level:expr) => {
                tracing::event!(
                    target: "triplicate::verifier",
                    $level,
                    run_id = %report.run_id,
                    seq = d.seq,
                    decision_id = d.decision_id.map(tracing::field::display),
                    store = d.store.as_str(),
                    class = d.class.as_str(),
                    kind = d.kind.as_str(),
                    expected_hash = expected.as_deref(),
                    actual_hash = actual.as_deref(),
                    file = d.file.as_deref(),
                    detail = %d.detail,
                    "discrepancy"
                )
            };
        }
        match d.class {
            Class::Lag => event!(tracing::Level::INFO),
            Class::Minor => event!(tracing::Level::WARN),
            Class::Major | Class::Critical => event!(tracing::Level::ERROR),
        }
    }
    if report.discrepancies.len() > LOGGED_DISCREPANCIES {
        tracing::error!(
            target: "triplicate::verifier",
            run_id = %report.run_id,
            not_logged = report.discrepancies.len() - LOGGED_DISCREPANCIES,
            "more discrepancies than are logged one by one; the report lists them all"
        );
    }
}

/// A record missing past a store's end is lag or minor only if the store never held it: a
/// store that acknowledged a seq (the writer saw its write return) and no longer holds it lost
/// it, which is what removing its last records looks like. For the append-only stream that is
/// an event removed, `major` (a rebuild waits for an auditor, nothing is appended over it); the
/// projection's is repaired from the ledger like any gap, `minor`.
fn lost_acknowledged(found: &mut [Discrepancy], ack: Acknowledged) {
    for d in found.iter_mut() {
        let (held, class) = match d.store {
            Store::Stream => (ack.stream, Class::Major),
            Store::Projection => (ack.projection, Class::Minor),
            Store::Ledger => continue,
        };
        if d.kind == Kind::Missing && d.seq.is_some_and(|s| s < held) {
            d.kind = Kind::Gap;
            d.class = class;
            d.detail = format!(
                "{}; the {} had acknowledged holding it (it held {held} records), so it was \
                 removed, not late",
                d.detail, d.store
            );
        }
    }
}
