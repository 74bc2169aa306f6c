//! The cross-verifier inside the service: runs [`triplicate_verifier::run`] over the service's
//! own stores on the `verification.toml` schedule (incremental runs on `incremental`, full
//! sweeps on `full_sweep`) and on demand (`POST /v1/admin/crosscheck`), never two at once,
//! keeping the last report (its checkpoint and stream cursor start the next incremental run).
//!
//! Automatic repairs run as the policy allows (`[repair] automatic`). A `critical` finding (the
//! ledger failed its own checks) freezes writes ([`Service::freeze_writes`]) until an admin
//! resumes them.

use std::path::Path;
use std::sync::Arc;

use triplicate_core::Timestamp;
use triplicate_projection::Projection as _;
use triplicate_stream::EventStream as _;
use triplicate_verifier::{
    apply_repairs, ActionStatus, Class, Report, RunMode, RunRequest, Stores, Trust,
    VerificationPolicy, VerifyError,
};

use crate::service::{Service, SubmitOutcome};

/// The service's cross-verifier.
pub struct CrossCheck {
    service: Service,
    policy: VerificationPolicy,
    /// Held for the whole of a run, so runs never overlap; holds the last report.
    run: tokio::sync::Mutex<Option<Arc<Report>>>,
    /// The last run, readable while a run is under way.
    last: std::sync::RwLock<Option<Arc<RunRecord>>>,
}

impl std::fmt::Debug for CrossCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrossCheck")
            .field("incremental", &self.policy.incremental.expression())
            .field("full_sweep", &self.policy.full_sweep.expression())
            .finish_non_exhaustive()
    }
}

/// A finished run: its report, the report's digest, and the seq of the audit record that
/// carries the digest in the ledger (`None` when it could not be appended, e.g. while writes
/// are frozen).
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub report: Report,
    pub digest: triplicate_core::Hash,
    pub audit_seq: Option<u64>,
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrossCheckError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("notary verifier key: {0}")]
    Notary(String),
    #[error("digest the report: {0}")]
    Report(String),
}

/// Loads `policy_dir/verification.toml`; without one, the verifier's defaults (logged). A file
/// that exists but is invalid is an error.
pub fn load_policy(
    policy_dir: Option<&Path>,
) -> Result<VerificationPolicy, triplicate_policy::PolicyError> {
    match policy_dir {
        Some(dir) if dir.join(triplicate_verifier::VERIFICATION_FILE).exists() => {
            let p = VerificationPolicy::load(dir)?;
            tracing::info!(
                file = %dir.join(triplicate_verifier::VERIFICATION_FILE).display(),
                incremental = p.incremental.expression(),
                full_sweep = p.full_sweep.expression(),
                "cross-check schedule loaded"
            );
            Ok(p)
        }
        _ => {
            let p = VerificationPolicy::default();
            tracing::info!(
                dir = ?policy_dir,
                incremental = p.incremental.expression(),
                full_sweep = p.full_sweep.expression(),
                "no verification.toml: the cross-check uses the verifier's defaults"
            );
            Ok(p)
        }
    }
}

/// The trust a run starts from: the service's own notary key, and the key registry when the
/// policy re-verifies signatures.
pub fn trust_of(service: &Service, policy: &VerificationPolicy) -> Result<Trust, CrossCheckError> {
    let notary = service.notary();
    let vkey = triplicate_keys::note::note_verifier_key(notary.name(), &notary.public_key())
        .map_err(|e| CrossCheckError::Notary(e.to_string()))?;
    let registry = policy.reverify_signatures.then(|| service.policy());
    Ok(Trust::new(&vkey, registry)?)
}

/// A one-line summary of the critical findings, for the writes-frozen problem.
pub fn critical_summary(report: &Report) -> Option<String> {
    let critical: Vec<_> = report
        .discrepancies
        .iter()
        .filter(|d| d.class == Class::Critical)
        .collect();
    let first = critical.first()?;
    let more = match critical.len() {
        1 => String::new(),
        n => format!(" (and {} more critical findings)", n - 1),
    };
    Some(format!(
        "cross-check run {} found the ledger at fault: {:?} {}{}{}",
        report.run_id,
        first.kind,
        first.detail,
        first
            .file
            .as_deref()
            .map(|f| format!(" [{f}]"))
            .unwrap_or_default(),
        more
    ))
}

impl CrossCheck {
    /// The cross-verifier of `service` under `policy`.
    pub fn new(service: Service, policy: VerificationPolicy) -> CrossCheck {
        CrossCheck {
            service,
            policy,
            run: tokio::sync::Mutex::new(None),
            last: std::sync::RwLock::new(None),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &VerificationPolicy {
        &self.policy
    }

    /// The last run, if one finished.
    pub fn last(&self) -> Option<Arc<RunRecord>> {
        self.last.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs one cross-check now (waiting for a run under way to finish first): a full sweep
    /// when `full`, else incremental from the last report. Freezes writes on a critical
    /// finding; otherwise appends the report's audit record to the ledger. Counts the run in
    /// the metrics whatever its outcome.
    pub async fn run_now(&self, full: bool) -> Result<Arc<RunRecord>, CrossCheckError> {
        let started = std::time::Instant::now();
        let out = self.run_locked(full).await;
        let metrics = self.service.metrics();
        match &out {
            Ok(r) => metrics.observe_crosscheck(r.report.mode, started.elapsed(), Some(&r.report)),
            Err(e) => {
                let mode = if full {
                    RunMode::Full
                } else {
                    RunMode::Incremental
                };
                tracing::error!(
                    target: "triplicate::verifier",
                    error = %e,
                    "cross-check run failed"
                );
                metrics.observe_crosscheck(mode, started.elapsed(), None);
            }
        }
        out
    }

    async fn run_locked(&self, full: bool) -> Result<Arc<RunRecord>, CrossCheckError> {
        let mut guard = self.run.lock().await;
        let mut request = match (&*guard, full) {
            (Some(last), true) => RunRequest::full_after(last),
            (Some(last), false) => RunRequest::incremental_after(last),
            (None, _) => RunRequest::full(),
        };
        request.ledger_dir = self.service.ledger_dir().map(Path::to_path_buf);
        // Repairs run below, with the downstream stores' write locks held, so the committer's
        // publisher and the catch-up worker never append into them at the same time.
        request.repair = false;
        let trust = trust_of(&self.service, &self.policy)?;
        let stores = || Stores {
            ledger: &**self.service.ledger(),
            stream: self.service.stream(),
            projection: self.service.projection(),
        };
        let mut report = triplicate_verifier::run(stores(), &self.policy, &trust, &request).await?;
        self.repair(stores(), &mut report).await;
        if let Some(reason) = critical_summary(&report) {
            self.service.freeze_writes(reason);
        }
        let digest = report
            .digest()
            .map_err(|e| CrossCheckError::Report(e.to_string()))?;
        let audit_seq = self.append_audit(&report, &digest).await;
        let report = Arc::new(report);
        // A run whose checkpoint did not verify keeps the chain of the last good one.
        let keep = match (&*guard, report.checkpoint_new) {
            (Some(last), None) => {
                let mut kept = (*report).clone();
                kept.checkpoint_old = last.checkpoint_new.or(last.checkpoint_old);
                kept.checkpoint_new = kept.checkpoint_old;
                kept.stream_cursor = last.stream_cursor.clone();
                Arc::new(kept)
            }
            _ => report.clone(),
        };
        *guard = Some(keep);
        let record = Arc::new(RunRecord {
            report: (*report).clone(),
            digest,
            audit_seq,
        });
        *self.last.write().unwrap_or_else(|p| p.into_inner()) = Some(record.clone());
        Ok(record)
    }

    /// Appends the report's audit record (kind `verification`, carrying its digest) through
    /// the write path, so the next run covers it. Not while writes are frozen: a ledger that
    /// failed its own checks takes no more records until an operator has acted; the report is
    /// still kept, logged and alerted on. Returns the audit record's seq.
    async fn append_audit(&self, report: &Report, digest: &triplicate_core::Hash) -> Option<u64> {
        if let Some(reason) = self.service.writes_frozen() {
            tracing::warn!(
                target: "triplicate::verifier",
                run_id = %report.run_id,
                %reason,
                "writes are frozen: the run's audit record is not appended to the ledger"
            );
            return None;
        }
        let decision = triplicate_verifier::audit_decision_with(report, digest);
        match self.service.record_audit(decision).await {
            Ok(SubmitOutcome::Created(a) | SubmitOutcome::Existing(a)) => {
                tracing::info!(
                    target: "triplicate::verifier",
                    run_id = %report.run_id,
                    seq = a.receipt.seq,
                    "the run's audit record is in the ledger"
                );
                Some(a.receipt.seq)
            }
            Err(e) => {
                tracing::error!(
                    target: "triplicate::verifier",
                    run_id = %report.run_id,
                    error = %e,
                    "the run's audit record could not be appended to the ledger"
                );
                None
            }
        }
    }

    /// Runs the automatic repairs the policy allows (none when the ledger itself is at fault),
    /// holding both downstream stores' write locks, then brings the service's view of their
    /// sizes up to date.
    async fn repair(
        &self,
        stores: Stores<
            '_,
            dyn triplicate_ledger::Ledger,
            crate::stores::StreamBackend,
            crate::stores::ProjectionBackend,
        >,
        report: &mut Report,
    ) {
        let automatic = report.actions.iter().any(|a| {
            a.status == ActionStatus::Planned && self.policy.repairs_automatically(a.class)
        });
        if !automatic {
            return;
        }
        if report.counts.critical > 0 {
            tracing::warn!("the ledger failed its checks; automatic repairs are not run");
            return;
        }
        let inner = &self.service.inner;
        let _stream = inner.stream_state.write.lock().await;
        let _projection = inner.projection_state.write.lock().await;
        let summary = apply_repairs(stores, &self.policy, &mut report.actions, report.run_id).await;
        tracing::info!(
            run_id = %report.run_id,
            applied = summary.applied,
            unchanged = summary.unchanged,
            failed = summary.failed,
            "ran automatic repairs"
        );
        if let Ok(Some(h)) = stores.stream.highest_seq().await {
            inner
                .stream_state
                .size
                .fetch_max(h.saturating_add(1), std::sync::atomic::Ordering::AcqRel);
        }
        if let Ok(Some(h)) = stores.projection.highest_seq().await {
            inner
                .projection_state
                .size
                .fetch_max(h.saturating_add(1), std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// The loop `serve` runs: sleeps until the next incremental or full-sweep time, runs, and
    /// repeats until `shutdown`.
    pub fn spawn(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            tokio::pin!(shutdown);
            loop {
                let now = Timestamp::now();
                let inc = self.policy.incremental.next_after(now);
                let full = self.policy.full_sweep.next_after(now);
                let (at, mode) = match (inc, full) {
                    (Some(i), Some(f)) if f <= i => (f, RunMode::Full),
                    (Some(i), _) => (i, RunMode::Incremental),
                    (None, Some(f)) => (f, RunMode::Full),
                    (None, None) => {
                        tracing::warn!("the cross-check schedules have no next time");
                        return;
                    }
                };
                let wait = u64::try_from(at.unix_nanos() - now.unix_nanos()).unwrap_or(0);
                let stop = tokio::select! {
                    () = &mut shutdown => true,
                    () = tokio::time::sleep(std::time::Duration::from_nanos(wait)) => false,
                };
                if stop {
                    return;
                }
                match self.run_now(mode == RunMode::Full).await {
                    Ok(r) => tracing::info!(
                        run_id = %r.report.run_id,
                        mode = ?r.report.mode,
                        clean = r.report.is_clean(),
                        "scheduled cross-check finished"
                    ),
                    Err(e) => tracing::error!(error = %e, "scheduled cross-check could not run"),
                }
            }
        })
    }
}

/// Why a cross-check on a data directory could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfflineError {
    #[error(
        "the ledger under {} is locked by a running service ({holder}); stop the service, or run \
         the cross-check through it with --url URL --token T",
        path.display()
    )]
    Locked {
        path: std::path::PathBuf,
        holder: String,
    },
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Run(#[from] CrossCheckError),
}

/// One cross-check over the embedded stores of a stopped service's data directory (the
/// development layout: `keys/notary.pem`, `policies/`, `ledger/`, `stream.db`,
/// `projection.db`), opened as the service opens them, with the repairs the policy allows.
/// Refuses when a running service holds the ledger. A full run also checks the ledger's files.
/// A ledger that refuses to open is reported as a critical finding, not an error.
pub async fn run_on_data_dir(
    data_dir: &Path,
    origin: &str,
    full: bool,
) -> Result<Report, OfflineError> {
    let paths = crate::setup::DevPaths::new(data_dir);
    let key = paths.keys.join("notary.pem");
    if !key.exists() {
        return Err(OfflineError::Setup(format!(
            "{} has no development set-up ({} is missing); for a configured service use --url",
            data_dir.display(),
            key.display()
        )));
    }
    let notary = triplicate_keys::SoftwareSigner::from_pem_file(&key)
        .map_err(|e| OfflineError::Setup(format!("notary key {}: {e}", key.display())))?;
    let notary: Arc<dyn triplicate_keys::Signer> = Arc::new(notary);
    let policy = load_policy(Some(&paths.policies))
        .map_err(|e| OfflineError::Setup(format!("verification policy: {e}")))?;
    let vkey = triplicate_keys::note::note_verifier_key(notary.name(), &notary.public_key())
        .map_err(|e| OfflineError::Setup(format!("notary verifier key: {e}")))?;
    let registry = if policy.reverify_signatures {
        Some(Arc::new(
            triplicate_policy::Policy::load(&paths.policies)
                .map_err(|e| OfflineError::Setup(format!("policy: {e}")))?,
        ))
    } else {
        None
    };
    let trust = Trust::new(&vkey, registry).map_err(CrossCheckError::from)?;
    let mode = if full {
        RunMode::Full
    } else {
        RunMode::Incremental
    };
    let parts = crate::setup::open_parts(
        data_dir,
        origin,
        notary,
        &paths.policies,
        crate::setup::ProjectionChoice::Sqlite,
        crate::ServiceOptions::default(),
    )
    .await;
    let (parts, embedded) = match parts {
        Ok(p) => p,
        Err(crate::setup::SetupError::Ledger(triplicate_ledger::LedgerError::Locked {
            path,
            holder,
        })) => return Err(OfflineError::Locked { path, holder }),
        Err(crate::setup::SetupError::Ledger(e)) => {
            let dir = data_dir.join("ledger");
            return Ok(triplicate_verifier::unopenable_ledger_report(
                &e,
                Some(&dir),
                &trust,
                mode,
            ));
        }
        Err(e) => return Err(OfflineError::Setup(e.to_string())),
    };
    let mut request = RunRequest::full();
    request.mode = mode;
    request.ledger_dir = parts.ledger_dir.clone();
    let stores = Stores {
        ledger: &*parts.ledger,
        stream: &parts.stream,
        projection: &parts.projection,
    };
    let report = triplicate_verifier::run(stores, &policy, &trust, &request)
        .await
        .map_err(CrossCheckError::from)?;
    if let Err(e) = embedded.flush() {
        tracing::warn!(error = %e, "flush the ledger after the cross-check");
    }
    Ok(report)
}
