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
use triplicate_projection::reports::{ReportStore as _, ReviewRow, StoredReport};
use triplicate_projection::Projection as _;
use triplicate_stream::EventStream as _;
use triplicate_verifier::review::{ReviewStatement, Verdict};
use triplicate_verifier::{
    apply_approved, apply_repairs, ActionStatus, Class, DeliveryOptions, Operation, Report,
    RunMode, RunRequest, Stores, Trust, VerificationPolicy, VerifyError, WebhookSender,
};

use uuid::Uuid;

use crate::rebuild::RebuildError;
use crate::service::{Service, SubmitOutcome};

/// The service's cross-verifier.
pub struct CrossCheck {
    service: Service,
    policy: VerificationPolicy,
    /// Held for the whole of a run, so runs never overlap; holds the last report.
    run: tokio::sync::Mutex<Option<Arc<Report>>>,
    /// The last run, readable while a run is under way.
    last: std::sync::RwLock<Option<Arc<RunRecord>>>,
    /// Where alerts go (`[[webhook]]` in verification.toml).
    webhooks: Option<Arc<WebhookSender>>,
    /// Reports the projection could not store yet, oldest first.
    unsaved: std::sync::Mutex<Vec<StoredReport>>,
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

/// An auditor's signed verdict, as it arrives.
#[derive(Debug, Clone)]
pub struct SignedVerdict {
    pub key_id: triplicate_core::KeyId,
    pub alg: triplicate_core::Algorithm,
    pub signature: Vec<u8>,
    pub signed_at: Timestamp,
    pub reason: String,
}

/// What a recorded verdict did.
#[derive(Debug, Clone)]
pub struct ReviewOutcome {
    pub run_id: Uuid,
    /// The action's status afterwards (`rejected`, `applied`, `unchanged`, `approved` when
    /// deferred to the operator, `proposed` when the repair failed).
    pub status: String,
    pub review: ReviewRow,
}

/// Why a verdict was not recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReviewFailure {
    #[error("no proposed repair {0}")]
    NotFound(Uuid),
    #[error("repair {action_id} is {status}, not waiting for an auditor")]
    Closed { action_id: Uuid, status: String },
    #[error("the verdict is refused: {0}")]
    Refused(triplicate_verifier::review::ReviewError),
    #[error("the report store: {0}")]
    Store(String),
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
    #[error("alert webhooks: {0}")]
    Webhook(#[from] triplicate_verifier::WebhookError),
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
    /// The cross-verifier of `service` under `policy`. Fails when a webhook target's secret
    /// variable is unset or empty (a configured alert that could not be signed is a
    /// misconfiguration the operator hears about at start, not at the first finding).
    pub fn new(
        service: Service,
        policy: VerificationPolicy,
    ) -> Result<CrossCheck, CrossCheckError> {
        let webhooks = if policy.webhooks.is_empty() {
            None
        } else {
            Some(Arc::new(WebhookSender::new(
                policy.webhooks.clone(),
                DeliveryOptions::default(),
            )?))
        };
        Ok(CrossCheck {
            webhooks,
            service,
            policy,
            run: tokio::sync::Mutex::new(None),
            last: std::sync::RwLock::new(None),
            unsaved: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Continues the chain of runs from the newest report the projection stores, so a restart
    /// keeps proving consistency from the last verified checkpoint and runs incrementally from
    /// where the last run ended. The stored report is trusted only when its body hashes to its
    /// digest and the ledger's audit record at its `audit_seq` carries that digest: the
    /// projection alone could otherwise move the starting point past records never compared.
    /// Returns the run id continued from.
    pub async fn resume_from_store(&self) -> Option<Uuid> {
        let projection = self.service.projection();
        let newest = match projection.reports(None, 1).await {
            Ok(page) => page.into_iter().next()?,
            Err(e) => {
                tracing::warn!(error = %e, "read the last stored report; the first run is a full sweep");
                return None;
            }
        };
        let full = projection.report(newest.run_id).await.ok()??;
        let report = match triplicate_verifier::from_stored(&full.report) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "the last stored report does not check out; the first run is a full sweep");
                return None;
            }
        };
        let audited = full.report.audit_seq.and_then(|seq| {
            let receipt = self.service.receipt(seq).ok()?;
            triplicate_verifier::audited_digest(&receipt.record.decision)
        });
        if audited != Some(full.report.digest) {
            tracing::warn!(
                run_id = %newest.run_id,
                "the last stored report has no matching audit record in the ledger; the first \
                 run is a full sweep"
            );
            return None;
        }
        let run_id = report.run_id;
        tracing::info!(%run_id, "cross-checks continue from the last stored report");
        *self.run.lock().await = Some(Arc::new(report.clone()));
        *self.last.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(RunRecord {
            report,
            digest: full.report.digest,
            audit_seq: full.report.audit_seq,
        }));
        Some(run_id)
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
        // What the stores acknowledged holding, read before the run reads them: a store that
        // holds less lost records (the catch-up worker only ever raises these).
        let inner = &self.service.inner;
        request.acknowledged = Some(triplicate_verifier::Acknowledged {
            stream: inner
                .stream_state
                .acked
                .load(std::sync::atomic::Ordering::Acquire),
            projection: inner
                .projection_state
                .acked
                .load(std::sync::atomic::Ordering::Acquire),
        });
        // Repairs run below, with the downstream stores' write locks held, so the committer's
        // store writers and the catch-up worker never append into them at the same time.
        request.repair = false;
        let trust = trust_of(&self.service, &self.policy)?;
        let stores = || Stores {
            ledger: &**self.service.ledger(),
            stream: self.service.stream(),
            projection: self.service.projection(),
        };
        let mut report = triplicate_verifier::run(stores(), &self.policy, &trust, &request).await?;
        self.repair(stores(), &mut report).await;
        self.check_drill_reports(&mut report).await;
        if let Some(reason) = critical_summary(&report) {
            self.service.freeze_writes(reason);
        }
        let digest = report
            .digest()
            .map_err(|e| CrossCheckError::Report(e.to_string()))?;
        let audit_seq = self.append_audit(&report, &digest).await;
        self.store(&report, audit_seq).await;
        self.alert(&report);
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

    /// Checks every stored recovery-drill report against the notary's signature over it and
    /// the digest its `drill` audit record in the ledger carries. A report that fails either
    /// is evidence someone changed: a `major` discrepancy in the projection (kind
    /// `report_tampered`), with no repair proposed (the report can be restored from a backup,
    /// never re-derived).
    async fn check_drill_reports(&self, report: &mut Report) {
        use triplicate_projection::DrillStore as _;
        let projection = self.service.projection();
        let notary = triplicate_keys::VerifierKey::of(self.service.notary().as_ref());
        let size = self.service.ledger().tree_size();
        let mut before = None;
        loop {
            let page = match projection.drills(before, 1_000, None).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(target: "triplicate::verifier", error = %e, "the stored drill reports could not be read");
                    return;
                }
            };
            let Some(last) = page.last() else { break };
            before = Some(last.drill_id);
            for summary in &page {
                let Ok(Some(stored)) = projection.drill(summary.drill_id).await else {
                    continue;
                };
                let body_digest =
                    crate::drill::verify_report(&stored.body, &stored.signature, &notary);
                let mut problems = Vec::new();
                match &body_digest {
                    Ok(d) if *d != stored.digest => {
                        problems.push("its stored digest is not its body's".to_owned())
                    }
                    Ok(_) => {}
                    Err(why) => problems.push(why.clone()),
                }
                let mut ledger_digest = None;
                if let Some(seq) = stored.audit_seq.filter(|s| *s < size) {
                    let audited = self.service.receipt(seq).ok().and_then(|r| {
                        (r.record.decision.id == stored.drill_id)
                            .then(|| crate::drill::audited_drill_digest(&r.record.decision))
                            .flatten()
                    });
                    ledger_digest = audited;
                    let ok = match (&body_digest, audited) {
                        (Ok(d), Some(a)) => *d == a,
                        _ => false,
                    };
                    if !ok {
                        problems.push(format!(
                            "the drill audit record at seq {seq} does not carry its digest"
                        ));
                    }
                }
                if problems.is_empty() {
                    continue;
                }
                let d = triplicate_verifier::Discrepancy {
                    seq: stored.audit_seq,
                    decision_id: Some(stored.drill_id),
                    store: triplicate_verifier::Store::Projection,
                    class: triplicate_verifier::Class::Major,
                    kind: triplicate_verifier::Kind::ReportTampered,
                    expected_hash: ledger_digest,
                    actual_hash: body_digest.ok(),
                    file: None,
                    detail: format!(
                        "the stored report of drill {}: {}",
                        stored.drill_id,
                        problems.join("; ")
                    ),
                };
                tracing::warn!(
                    target: "triplicate::verifier",
                    drill_id = %stored.drill_id,
                    detail = %d.detail,
                    "a stored drill report does not check out"
                );
                report.counts.major += 1;
                report.discrepancies.push(d);
            }
            if page.len() < 1_000 {
                break;
            }
        }
    }

    /// Posts the report's findings to the webhook targets whose classes it has, in the
    /// background (retries take up to minutes; the next run does not wait for them), counting
    /// each delivery in `triplicate_crosscheck_webhook_deliveries_total`.
    fn alert(&self, report: &Report) {
        let Some(sender) = self.webhooks.clone() else {
            return;
        };
        if report.is_clean() {
            return;
        }
        let report = report.clone();
        let service = self.service.clone();
        tokio::spawn(async move {
            for d in sender.deliver(&report, None).await {
                service.metrics().observe_webhook(d.delivered);
            }
        });
    }

    /// Stores the report in the projection's report tables, after any earlier reports that
    /// could not be stored (the projection was down): those wait in memory and are retried
    /// first, oldest first. Then refreshes the pending-repairs gauge.
    async fn store(&self, report: &Report, audit_seq: Option<u64>) {
        let stored = match triplicate_verifier::to_stored(report, audit_seq) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(run_id = %report.run_id, error = %e, "canonicalise the report");
                return;
            }
        };
        let waiting = {
            let mut unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
            unsaved.push(stored);
            std::mem::take(&mut *unsaved)
        };
        let mut left = Vec::new();
        let projection = self.service.projection();
        for stored in waiting {
            if !left.is_empty() {
                left.push(stored);
                continue;
            }
            let run_id = stored.run_id;
            match projection.store_report(stored.clone()).await {
                Ok(_) => tracing::info!(
                    target: "triplicate::verifier",
                    run_id = %run_id,
                    "report stored in the projection"
                ),
                Err(e) => {
                    tracing::error!(
                        target: "triplicate::verifier",
                        run_id = %run_id,
                        error = %e,
                        "the report could not be stored in the projection; it is kept in memory \
                         and stored after the next run"
                    );
                    left.push(stored);
                }
            }
        }
        {
            let mut unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
            left.append(&mut unsaved);
            *unsaved = left;
        }
        self.refresh_pending().await;
    }

    /// Counts proposed repairs still waiting for an auditor, over the most recent reports,
    /// into `triplicate_crosscheck_pending_repairs`.
    async fn refresh_pending(&self) {
        let mut pending = 0;
        let mut before = None;
        // At most 10,000 reports back: a proposal older than that is not an alert any more.
        for _ in 0..10 {
            match self.service.projection().reports(before, 1000).await {
                Ok(page) => {
                    pending += page.iter().map(|r| r.pending_actions).sum::<u64>();
                    match page.last() {
                        Some(last) if page.len() == 1000 => before = Some(last.run_id),
                        _ => break,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "count pending repairs");
                    return;
                }
            }
        }
        self.service.metrics().set_pending_repairs(pending);
    }

    /// Records an auditor's verdict on a proposed repair, signed with the auditor's key (see
    /// [`triplicate_verifier::review`]), and on approval runs the repair: projection rows,
    /// missing stream events, and a rebuild of the embedded stream from the ledger
    /// ([`crate::rebuild`]; not while writes are frozen). A JetStream or KurrentDB rebuild, or
    /// any repair of a run that found the ledger itself at fault, is recorded as `deferred`
    /// for the operator. One verdict closes an action, except an approval whose repair failed,
    /// which may be approved again. Serialised with runs.
    pub async fn review(
        &self,
        action_id: Uuid,
        verdict: Verdict,
        signed: SignedVerdict,
    ) -> Result<ReviewOutcome, ReviewFailure> {
        let _run = self.run.lock().await;
        let projection = self.service.projection();
        let found = projection
            .action(action_id)
            .await
            .map_err(|e| ReviewFailure::Store(e.to_string()))?
            .ok_or(ReviewFailure::NotFound(action_id))?;
        let full = projection
            .report(found.run_id)
            .await
            .map_err(|e| ReviewFailure::Store(e.to_string()))?
            .ok_or(ReviewFailure::NotFound(action_id))?;
        let report = triplicate_verifier::from_stored(&full.report)
            .map_err(|e| ReviewFailure::Store(e.to_string()))?;
        let status = triplicate_verifier::effective_status(&found.action, &found.reviews);
        if status != "proposed" || found.action.authority != "auditor" {
            return Err(ReviewFailure::Closed { action_id, status });
        }
        let statement = ReviewStatement {
            action_id,
            run_id: found.run_id,
            report_digest: full.report.digest,
            verdict,
            key_id: signed.key_id.clone(),
            alg: signed.alg,
            signed_at: signed.signed_at,
            reason: signed.reason.clone(),
        };
        let policy = self.service.policy();
        let now = Timestamp::now();
        let auditor = statement
            .verify(&signed.signature, &policy, now)
            .map_err(ReviewFailure::Refused)?
            .holder
            .clone();
        let outcome = match verdict {
            Verdict::Rejected => "rejected: nothing was run".to_owned(),
            Verdict::Approved => {
                let mut action = report
                    .actions
                    .iter()
                    .find(|a| a.id == action_id)
                    .cloned()
                    .ok_or_else(|| {
                        ReviewFailure::Store(format!(
                            "action {action_id} is in the report's rows but not in its body"
                        ))
                    })?;
                if report.counts.critical > 0 {
                    "deferred: approved; the run found the ledger itself at fault, so nothing is \
                     copied from it: the operator restores the ledger first and the next run \
                     confirms the rest"
                        .to_owned()
                } else if action.operation == Operation::RebuildStream {
                    let label = action_id.to_string();
                    let frozen = self.service.writes_frozen();
                    match frozen {
                        // A later run found the ledger at fault: nothing is copied from it
                        // until an operator has acted; the approval may be given again.
                        Some(reason) => Err(RebuildError::Failed(format!(
                            "writes are frozen ({reason}): the stream is not rebuilt from a \
                             ledger under suspicion; approve again once writes are resumed"
                        ))),
                        None => crate::rebuild::rebuild_stream(&self.service.inner, &label).await,
                    }
                    .map_or_else(
                        |e| match e {
                            RebuildError::Unsupported(backend) => format!(
                                "deferred: approved; the service does not rebuild a {backend} \
                                 stream: the operator rebuilds it from the ledger (a new \
                                 stream, filled with `triplicate recovery`) and the next run \
                                 confirms it"
                            ),
                            e => format!("failed: {e}"),
                        },
                        |r| {
                            format!(
                                "applied: the stream was rebuilt from the ledger's {} entries \
                                 (its signed checkpoint), checked against the checkpoint's root \
                                 and put in place; the replaced stream is kept at {}",
                                r.size,
                                r.kept_at.display()
                            )
                        },
                    )
                } else if action.operation.is_executable() {
                    let _held = crate::service::hold_for_repair(&self.service.inner).await;
                    let stores = Stores {
                        ledger: &**self.service.ledger(),
                        stream: self.service.stream(),
                        projection,
                    };
                    match apply_approved(stores, &mut action, found.run_id).await {
                        Ok(_) => match action.status {
                            ActionStatus::Applied => format!("applied: {}", action.detail),
                            ActionStatus::Unchanged => format!("unchanged: {}", action.detail),
                            _ => format!("failed: {}", action.detail),
                        },
                        Err(e) => format!("failed: {e}"),
                    }
                } else {
                    format!(
                        "deferred: approved; {:?} is not an operation the service runs: the \
                         operator carries it out and the next run confirms it",
                        action.operation
                    )
                }
            }
        };
        let review = ReviewRow {
            action_id,
            verdict: verdict.as_str().to_owned(),
            key_id: signed.key_id.to_string(),
            alg: signed.alg.to_string(),
            signature: signed.signature,
            signed_at: signed.signed_at,
            reason: signed.reason,
            outcome: Some(outcome.clone()),
            recorded_at: now,
        };
        projection
            .record_review(review.clone())
            .await
            .map_err(|e| ReviewFailure::Store(e.to_string()))?;
        tracing::warn!(
            target: "triplicate::verifier",
            %action_id,
            run_id = %found.run_id,
            verdict = verdict.as_str(),
            auditor = %auditor,
            key_id = %signed.key_id,
            %outcome,
            "an auditor reviewed a proposed repair"
        );
        let mut reviews = found.reviews;
        reviews.push(review.clone());
        let status = triplicate_verifier::effective_status(&found.action, &reviews);
        drop(_run);
        self.refresh_pending().await;
        Ok(ReviewOutcome {
            run_id: found.run_id,
            status,
            review,
        })
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
        let _held = crate::service::hold_for_repair(inner).await;
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
        &crate::setup::StreamChoice::Sqlite,
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
            let report =
                triplicate_verifier::unopenable_ledger_report(&e, Some(&dir), &trust, mode);
            // Nothing can store this report (the projection is a copy of a ledger that will not
            // open) but the alert still goes out.
            if !policy.webhooks.is_empty() {
                let sender =
                    WebhookSender::new(policy.webhooks.clone(), DeliveryOptions::default())
                        .map_err(CrossCheckError::from)?;
                for d in sender.deliver(&report, None).await {
                    if !d.delivered {
                        tracing::error!(url = %d.url, error = ?d.error, "the alert was not delivered");
                    }
                }
            }
            return Ok(report);
        }
        Err(e) => return Err(OfflineError::Setup(e.to_string())),
    };
    // The same cross-check the service runs, on a service of its own over the opened stores
    // (no HTTP, no catch-up worker): the run continues from the last stored report, its report
    // is stored, and its audit record appended, as when the service runs it.
    let service = Service::start(parts)
        .await
        .map_err(|e| OfflineError::Setup(format!("start the service: {e}")))?;
    let checker = CrossCheck::new(service, policy)?;
    checker.resume_from_store().await;
    let record = checker.run_now(full).await?;
    let report = record.report.clone();
    if let Err(e) = embedded.flush() {
        tracing::warn!(error = %e, "flush the ledger after the cross-check");
    }
    Ok(report)
}
