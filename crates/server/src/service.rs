//! The write path: `validate → verify each approval → quorum → assign seq → notarise → ledger
//! append (durable, group commit) → stream append → projection apply → receipt`.
//!
//! **Architecture invariant:** a record is committed once the ledger has it durably; the
//! stream and the projection follow. A store that fails or is behind is *pending*: the
//! committer stops writing to it and the catch-up worker (`catchup.rs`) brings it up to the
//! ledger's size from the ledger's own entries. Nothing acknowledged is lost, because nothing
//! is acknowledged before the ledger's `fdatasync`.
//!
//! Concurrency: request handlers validate and check the policy in parallel (signature checks
//! are most of a submission's CPU); one committer task takes every waiting submission
//! (up to `batch_max`) into one ledger append, so many callers share one `fdatasync`. The
//! committer is the only task that assigns seqs, so seqs have no holes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, Notify};
use triplicate_core::{digest::leaf_hash, CanonicalProof, NotarySignature};
use triplicate_core::{
    Decision, Receipt, Record, Submission, Timestamp, UnsignedRecord, ValidationError, AUDIT_KIND,
    RECEIPT_VERSION, RECORD_VERSION,
};
use triplicate_keys::Signer;
use triplicate_ledger::{Ledger, LedgerError, SignedCheckpoint};
use triplicate_policy::{Policy, PolicyError, Refusal};
use triplicate_projection::Projection;
use triplicate_stream::{AppendRequest, DecisionRecorded, EventStream};
use uuid::Uuid;

use crate::stores::{ProjectionBackend, StreamBackend};

/// The freeze marker's name under the data directory.
pub const FREEZE_FILE: &str = "writes-frozen";

/// Tuning of the write path.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// The most submissions one ledger commit takes.
    pub batch_max: usize,
    /// How long a commit waits on the stream or the projection before marking it pending.
    pub store_timeout: Duration,
    /// Records per catch-up batch.
    pub catchup_batch: usize,
    /// How often the catch-up worker retries a pending store.
    pub catchup_interval: Duration,
    /// Whether the service runs the cross-check on its own, on the `verification.toml`
    /// schedule (on by default). `triplicate demo` and the embedded `bench submit` turn it
    /// off: they run the cross-check when they mean to, and a scheduled run landing in the
    /// middle would change what they show. On-demand runs and drills are not affected.
    pub scheduled_crosscheck: bool,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            batch_max: 1000,
            store_timeout: Duration::from_secs(5),
            catchup_batch: 1000,
            catchup_interval: Duration::from_secs(1),
            scheduled_crosscheck: true,
        }
    }
}

impl ServiceOptions {
    /// The defaults without the scheduled cross-check: runs happen on demand only.
    pub fn on_demand_crosscheck() -> ServiceOptions {
        ServiceOptions {
            scheduled_crosscheck: false,
            ..ServiceOptions::default()
        }
    }
}

/// Where a store stands for one record, as a receipt or a read reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreState {
    /// The store holds the record.
    Written,
    /// The store does not hold it yet; the catch-up worker will write it.
    Pending,
}

/// Per-store status of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StoreStatus {
    /// Always `written`: nothing is acknowledged before the ledger has it.
    pub ledger: StoreState,
    pub stream: StoreState,
    pub projection: StoreState,
}

/// An accepted submission.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub receipt: Receipt,
    pub stores: StoreStatus,
}

/// How a submission was answered.
#[derive(Debug, Clone)]
pub enum SubmitOutcome {
    /// Recorded now.
    Created(Accepted),
    /// The same submission was recorded earlier: its original record, with a fresh proof.
    Existing(Accepted),
}

/// Why a submission was refused or failed. Nothing was written in any case but `Internal`
/// after the ledger append (which the service logs; the record then stands).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    #[error("the submission is malformed: {0}")]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Refused(Box<Refusal>),
    #[error("decision {id} is already recorded at seq {seq} with different content")]
    Conflict { id: Uuid, seq: u64 },
    #[error("the service is not accepting writes: {0}")]
    Unavailable(String),
    #[error("writes are frozen: {0}")]
    Frozen(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Lag of one downstream store behind the ledger.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StoreLag {
    /// Records the store holds (its highest seq + 1).
    pub size: u64,
    /// Records it lacks (ledger size − size).
    pub lag: u64,
    /// Whether the last write or probe succeeded.
    pub healthy: bool,
}

/// The service's health, for `/readyz` and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub ledger_size: u64,
    pub stream: StoreLag,
    pub projection: StoreLag,
    pub accepting_writes: bool,
    /// Writes are refused after a critical cross-check finding, until an admin resumes them.
    pub writes_frozen: bool,
}

struct Job {
    submission: Submission,
    reply: Reply,
}

/// Where a submission's answer goes.
type Reply = oneshot::Sender<Result<SubmitOutcome, SubmitError>>;

/// Progress of one downstream store: the size it is known to hold and whether it is healthy.
#[derive(Debug)]
pub(crate) struct Downstream {
    /// Records held (highest seq + 1), as of the last write or probe.
    pub size: AtomicU64,
    /// Records the store acknowledged holding in the service's own writes (the end of each
    /// range it wrote and the store accepted), never lowered; at start, what the store held,
    /// capped at the ledger's size. A store holding fewer lost records it had: the catch-up
    /// worker does not write over that in the stream, and the cross-check reports it.
    pub acked: AtomicU64,
    pub healthy: AtomicBool,
    /// Held by whoever writes the store (the committer or the catch-up worker), so their
    /// appends never race into each other's gap checks.
    pub write: tokio::sync::Mutex<()>,
    /// Wakes this store's catch-up loop: the committer found the store behind or failing, or
    /// a rebuild finished.
    pub wake: Notify,
}

impl Downstream {
    fn new(size: u64, ledger_size: u64) -> Downstream {
        Downstream {
            size: AtomicU64::new(size),
            acked: AtomicU64::new(size.min(ledger_size)),
            healthy: AtomicBool::new(true),
            write: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
        }
    }
}

pub(crate) struct Inner {
    pub ledger: Arc<dyn Ledger>,
    pub ledger_dir: Option<PathBuf>,
    pub notary: Arc<dyn Signer>,
    pub policy: RwLock<Arc<Policy>>,
    pub policy_dir: Option<PathBuf>,
    pub stream: StreamBackend,
    pub projection: ProjectionBackend,
    /// Decision id → seq, for idempotency. Rebuilt from the ledger at start.
    index: Mutex<HashMap<Uuid, u64>>,
    pub stream_state: Downstream,
    pub projection_state: Downstream,
    pub options: ServiceOptions,
    pub metrics: crate::metrics::Metrics,
    /// Why writes are refused, when the cross-verifier found the ledger at fault; cleared by
    /// an admin (`POST /v1/admin/resume`).
    frozen: RwLock<Option<String>>,
    /// `<data-dir>/writes-frozen`: the freeze outlives a restart (an operator restarting the
    /// service must not be how a critical finding is cleared); `resume_writes` removes it.
    freeze_file: Option<PathBuf>,
}

/// The governance service: the stores, the policy, the committer.
#[derive(Clone)]
pub struct Service {
    pub(crate) inner: Arc<Inner>,
    /// To the judge: submissions whose approvals are yet to be verified and judged.
    judge_tx: mpsc::Sender<Job>,
    /// To the committer: judged submissions, and the service's own audit records.
    tx: mpsc::Sender<Job>,
    /// The committer and judge tasks, for [`Service::close`].
    committer: Arc<std::sync::Mutex<Option<Tasks>>>,
}

/// The tasks that hold the service's stores while it runs.
struct Tasks {
    committer: tokio::task::JoinHandle<()>,
    judge: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("ledger_size", &self.inner.ledger.tree_size())
            .field("stream", &self.inner.stream.name())
            .field("projection", &self.inner.projection.name())
            .finish()
    }
}

/// What the service is built from.
pub struct ServiceParts {
    pub ledger: Arc<dyn Ledger>,
    /// The ledger's directory, when its tiles can be served from files.
    pub ledger_dir: Option<PathBuf>,
    pub notary: Arc<dyn Signer>,
    pub policy: Policy,
    /// Where `reload_policy` reads from.
    pub policy_dir: Option<PathBuf>,
    pub stream: StreamBackend,
    pub projection: ProjectionBackend,
    pub options: ServiceOptions,
}

impl std::fmt::Debug for ServiceParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceParts").finish_non_exhaustive()
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("read the ledger to build the decision index: {0}")]
    Ledger(#[from] LedgerError),
    #[error("ledger entry {seq} is not a record: {reason}")]
    BadEntry { seq: u64, reason: String },
    #[error("building the decision index failed: {0}")]
    Index(String),
    #[error("the notary key {key} is not the notary in keys.toml ({policy})")]
    NotaryMismatch { key: String, policy: String },
    #[error("the notary key cannot sign: {0}")]
    NotaryCannotSign(String),
}

/// Decision id → seq for the ledger's first `size` entries. Every entry is read and parsed
/// (about 1–2 µs per record on one core), so the range is split between the available cores:
/// a restart over 100,000 records took ~110 ms instead of ~210 ms on 2 cores. Ids go into the
/// map in seq order, as one pass would put them, and the earliest bad entry is the one reported.
fn build_index(ledger: &dyn Ledger, size: u64) -> Result<HashMap<Uuid, u64>, StartError> {
    const CHUNK: u64 = 4096;
    let ids_in = |from: u64, to: u64| -> Result<Vec<Uuid>, StartError> {
        let mut ids = Vec::with_capacity((to - from) as usize);
        let mut at = from;
        while at < to {
            let end = (at + CHUNK).min(to);
            for (i, e) in ledger.entries(at, end)?.iter().enumerate() {
                let parsed: IdOnly =
                    serde_json::from_slice(e).map_err(|err| StartError::BadEntry {
                        seq: at + i as u64,
                        reason: err.to_string(),
                    })?;
                ids.push(parsed.decision.id);
            }
            at = end;
        }
        Ok(ids)
    };
    let threads = if size < 4 * CHUNK {
        1
    } else {
        triplicate_core::available_threads() as u64
    };
    let share = size.div_ceil(threads);
    let parts: Vec<Result<Vec<Uuid>, StartError>> = std::thread::scope(|s| {
        let ids_in = &ids_in;
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (from, to) = ((t * share).min(size), ((t + 1) * share).min(size));
                s.spawn(move || ids_in(from, to))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(StartError::Index(
                        "a thread reading the ledger panicked".into(),
                    ))
                })
            })
            .collect()
    });
    let mut index = HashMap::with_capacity(size as usize);
    let mut seq = 0u64;
    for part in parts {
        for id in part? {
            index.insert(id, seq);
            seq += 1;
        }
    }
    Ok(index)
}

/// The smallest parse of a ledger entry that finds its decision id.
#[derive(serde::Deserialize)]
struct IdOnly {
    decision: IdOnlyDecision,
}
#[derive(serde::Deserialize)]
struct IdOnlyDecision {
    id: Uuid,
}

impl Service {
    /// Builds the decision index from the ledger, checks the notary, probes the downstream
    /// stores and starts the committer. The caller starts the catch-up worker
    /// ([`crate::catchup::spawn`]).
    pub async fn start(parts: ServiceParts) -> Result<Service, StartError> {
        let ServiceParts {
            ledger,
            ledger_dir,
            notary,
            policy,
            policy_dir,
            stream,
            projection,
            options,
        } = parts;
        let registered = policy.notary().key_id.clone();
        if notary.key_id() != registered {
            return Err(StartError::NotaryMismatch {
                key: notary.key_id().to_string(),
                policy: registered.to_string(),
            });
        }
        if notary.algorithm() != triplicate_core::Algorithm::Ed25519 {
            return Err(StartError::NotaryCannotSign(format!(
                "it is a {} key: {}",
                notary.algorithm(),
                crate::NOTARY_NEEDS_ED25519
            )));
        }
        notary
            .sign(b"triplicate/self-test/v1\n")
            .map_err(|e| StartError::NotaryCannotSign(e.to_string()))?;

        let size = ledger.tree_size();
        let started = Instant::now();
        let index = {
            let ledger = ledger.clone();
            tokio::task::spawn_blocking(move || build_index(&*ledger, size))
                .await
                .map_err(|e| StartError::Index(e.to_string()))??
        };
        tracing::info!(
            records = size,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "decision index built from the ledger"
        );

        let stream_size = match stream.highest_seq().await {
            Ok(h) => h.map_or(0, |h| h + 1),
            Err(e) => {
                tracing::warn!(error = %e, "event stream unavailable at start; it is pending");
                0
            }
        };
        let projection_size = match projection.highest_seq().await {
            Ok(h) => h.map_or(0, |h| h + 1),
            Err(e) => {
                tracing::warn!(error = %e, "projection unavailable at start; it is pending");
                0
            }
        };
        let freeze_file = ledger_dir
            .as_deref()
            .and_then(std::path::Path::parent)
            .map(|d| d.join(FREEZE_FILE));
        let frozen = freeze_file
            .as_deref()
            .and_then(|f| match std::fs::read_to_string(f) {
                Ok(reason) => {
                    tracing::error!(
                        file = %f.display(),
                        reason = reason.trim(),
                        "writes stay frozen from before the restart until an admin resumes them"
                    );
                    Some(reason.trim().to_owned())
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => Some(format!(
                    "the freeze marker {} cannot be read ({e}); resume to clear it",
                    f.display()
                )),
            });
        let (tx, rx) = mpsc::channel(options.batch_max * 4);
        let inner = Arc::new(Inner {
            ledger,
            ledger_dir,
            notary,
            policy: RwLock::new(Arc::new(policy)),
            policy_dir,
            stream,
            projection,
            index: Mutex::new(index),
            stream_state: Downstream::new(stream_size, size),
            projection_state: Downstream::new(projection_size, size),
            options,
            metrics: crate::metrics::Metrics::default(),
            frozen: RwLock::new(frozen),
            freeze_file,
        });
        let committer = tokio::spawn(committer(inner.clone(), rx));
        let (judge_tx, judge_rx) = mpsc::channel(inner.options.batch_max * 4);
        let judge = tokio::spawn(judge(inner.clone(), judge_rx, tx.clone()));
        Ok(Service {
            inner,
            judge_tx,
            tx,
            committer: Arc::new(std::sync::Mutex::new(Some(Tasks { committer, judge }))),
        })
    }

    /// Stops taking submissions and waits until the judge and the committer have finished the
    /// ones they hold and ended, so the stores are released (the ledger's lock, database
    /// handles) once every other handle on the service (its cross-checker, workers) is gone
    /// too. For a service started over stores something else opens or removes next, such as a
    /// drill's.
    pub async fn close(self) {
        let tasks = self
            .committer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(self);
        if let Some(t) = tasks {
            // The judge ends when the last handle's sender is gone, the committer when the
            // judge's is too; each holds the stores until it has.
            let _ = t.judge.await;
            let _ = t.committer.await;
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.inner
            .policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the policy files. An invalid policy is refused and the one in force stays.
    pub fn reload_policy(&self) -> Result<(), PolicyError> {
        let Some(dir) = &self.inner.policy_dir else {
            return Ok(());
        };
        let policy = Policy::load(dir)?;
        if policy.notary().key_id != self.inner.notary.key_id() {
            return Err(PolicyError {
                problems: vec![triplicate_policy::Problem {
                    file: dir.join("keys.toml"),
                    line: 0,
                    reason: format!(
                    "the notary entry names key {} but the service signs with {}; a new notary key needs a restart",
                    policy.notary().key_id,
                        self.inner.notary.key_id()
                    ),
                }],
            });
        }
        *self.inner.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
        tracing::info!(dir = %dir.display(), "policy reloaded");
        Ok(())
    }

    /// Refuses writes from now on (a critical cross-check finding), saying why.
    pub fn freeze_writes(&self, reason: String) {
        tracing::error!(reason, "writes frozen until an admin resumes them");
        if let Some(f) = &self.inner.freeze_file {
            let written = std::fs::File::create(f).and_then(|mut file| {
                std::io::Write::write_all(&mut file, reason.as_bytes())?;
                file.sync_all()
            });
            if let Err(e) = written {
                tracing::error!(file = %f.display(), error = %e, "could not persist the freeze; it holds until a restart only");
            }
        }
        *self.inner.frozen.write().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// Accepts writes again; returns the reason they were frozen, if they were.
    pub fn resume_writes(&self) -> Option<String> {
        let was = self
            .inner
            .frozen
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(f) = &self.inner.freeze_file {
            match std::fs::remove_file(f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!(file = %f.display(), error = %e, "could not remove the freeze marker; writes resume until a restart only");
                }
            }
        }
        if let Some(reason) = &was {
            tracing::warn!(reason, "writes resumed by an admin");
        }
        was
    }

    /// Why writes are frozen, when they are.
    pub fn writes_frozen(&self) -> Option<String> {
        self.inner
            .frozen
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.inner.ledger
    }

    /// The ledger's directory (tiles are served from it), when it has one.
    pub fn ledger_dir(&self) -> Option<&std::path::Path> {
        self.inner.ledger_dir.as_deref()
    }

    /// The policy directory (`keys.toml`, `governance.toml`, `verification.toml`), when the
    /// policy was loaded from one.
    pub fn policy_dir(&self) -> Option<&std::path::Path> {
        self.inner.policy_dir.as_deref()
    }

    /// The notary signer.
    pub fn notary(&self) -> &Arc<dyn Signer> {
        &self.inner.notary
    }

    /// The projection (reads).
    pub fn projection(&self) -> &ProjectionBackend {
        &self.inner.projection
    }

    /// The event stream.
    pub fn stream(&self) -> &StreamBackend {
        &self.inner.stream
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// Where the stores stand.
    pub fn health(&self) -> Health {
        let size = self.inner.ledger.tree_size();
        let lag = |d: &Downstream| {
            let s = d.size.load(Ordering::Acquire);
            StoreLag {
                size: s,
                lag: size.saturating_sub(s),
                healthy: d.healthy.load(Ordering::Acquire),
            }
        };
        Health {
            ledger_size: size,
            stream: lag(&self.inner.stream_state),
            projection: lag(&self.inner.projection_state),
            accepting_writes: !self.tx.is_closed() && self.writes_frozen().is_none(),
            writes_frozen: self.writes_frozen().is_some(),
        }
    }

    /// Per-store status of the record at `seq`.
    pub fn status_of(&self, seq: u64) -> StoreStatus {
        let state = |d: &Downstream| {
            if d.size.load(Ordering::Acquire) > seq {
                StoreState::Written
            } else {
                StoreState::Pending
            }
        };
        StoreStatus {
            ledger: StoreState::Written,
            stream: state(&self.inner.stream_state),
            projection: state(&self.inner.projection_state),
        }
    }

    /// The seq of a recorded decision.
    pub fn seq_of(&self, id: Uuid) -> Option<u64> {
        self.inner
            .index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied()
    }

    /// The record at `seq` from the ledger, with a receipt against the current checkpoint.
    pub fn receipt(&self, seq: u64) -> Result<Receipt, SubmitError> {
        let checkpoint = self.inner.ledger.checkpoint();
        receipt_at(&*self.inner.ledger, seq, &checkpoint)
    }

    /// Parses, judges and records a submission (see the module docs).
    #[tracing::instrument(skip_all, fields(decision_id))]
    pub async fn submit(&self, body: &[u8]) -> Result<SubmitOutcome, SubmitError> {
        let started = Instant::now();
        let out = self.submit_inner(body).await;
        self.inner.metrics.observe_submit(
            started.elapsed(),
            out.as_ref().map(|o| matches!(o, SubmitOutcome::Created(_))),
        );
        out
    }

    async fn submit_inner(&self, body: &[u8]) -> Result<SubmitOutcome, SubmitError> {
        if let Some(reason) = self.writes_frozen() {
            return Err(SubmitError::Frozen(reason));
        }
        let submission = Submission::from_json(body)?;
        tracing::Span::current().record(
            "decision_id",
            tracing::field::display(submission.decision.id),
        );
        if triplicate_core::is_service_kind(&submission.decision.kind) {
            return Err(SubmitError::Invalid(ValidationError::one(
                "decision.kind",
                format!(
                    "{:?} is reserved for the service's own audit records (one per \
                     cross-verification run or recovery drill); choose another kind",
                    submission.decision.kind
                ),
            )));
        }
        // Idempotency first: a retry of a recorded submission is answered from the ledger even
        // if the policy changed since (the record stands; its approvals were judged then).
        if let Some(outcome) = self.existing(&submission)? {
            return Ok(outcome);
        }
        // The judge verifies and judges the approvals (with those of every other submission
        // waiting) and hands accepted ones to the committer, which answers.
        let (reply, rx) = oneshot::channel();
        self.judge_tx
            .send(Job { submission, reply })
            .await
            .map_err(|_| SubmitError::Unavailable("the committer has stopped".into()))?;
        rx.await
            .map_err(|_| SubmitError::Internal("the committer dropped the submission".into()))?
    }

    /// Records one of the service's own audit records (kind [`AUDIT_KIND`] or
    /// [`triplicate_core::DRILL_KIND`]): `decision`, approved
    /// by the notary key alone (no quorum policy applies), through the same committer as every
    /// submission, so it gets a seq, reaches the stream and the projection, and is covered by
    /// the next cross-check like any record. Idempotent by decision id like [`Service::submit`],
    /// and refused while writes are frozen.
    pub async fn record_audit(&self, decision: Decision) -> Result<SubmitOutcome, SubmitError> {
        if let Some(reason) = self.writes_frozen() {
            return Err(SubmitError::Frozen(reason));
        }
        if !triplicate_core::is_service_kind(&decision.kind) {
            return Err(SubmitError::Internal(format!(
                "an audit record must be of kind {AUDIT_KIND:?} or {:?}, not {:?}",
                triplicate_core::DRILL_KIND,
                decision.kind
            )));
        }
        decision
            .validate("decision")
            .map_err(SubmitError::Invalid)?;
        let notary = self.inner.notary.clone();
        let signed_at = Timestamp::now();
        let approval = tokio::task::spawn_blocking(move || {
            let approval =
                triplicate_keys::approve(&decision, &*notary, signed_at).map_err(|e| match e {
                    triplicate_keys::ApproveError::Sign(e) => {
                        SubmitError::Unavailable(format!("the notary could not sign: {e}"))
                    }
                    e => SubmitError::Internal(format!("approve the audit decision: {e}")),
                })?;
            Ok::<_, SubmitError>(Submission {
                decision,
                approvals: vec![approval],
            })
        })
        .await
        .map_err(|e| SubmitError::Internal(format!("sign the audit record: {e}")))??;
        if let Some(seq) = self.seq_of(approval.decision.id) {
            // A retry: the record stands with its first approval (signed at another instant).
            let receipt = self.receipt(seq)?;
            if receipt.record.decision != approval.decision {
                return Err(SubmitError::Conflict {
                    id: approval.decision.id,
                    seq,
                });
            }
            return Ok(SubmitOutcome::Existing(Accepted {
                stores: self.status_of(seq),
                receipt,
            }));
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                submission: approval,
                reply,
            })
            .await
            .map_err(|_| SubmitError::Unavailable("the committer has stopped".into()))?;
        rx.await
            .map_err(|_| SubmitError::Internal("the committer dropped the submission".into()))?
    }

    /// The answer for a submission whose decision id is already recorded: the original receipt
    /// when the content is the same, a conflict otherwise.
    fn existing(&self, s: &Submission) -> Result<Option<SubmitOutcome>, SubmitError> {
        let Some(seq) = self.seq_of(s.decision.id) else {
            return Ok(None);
        };
        let receipt = self.receipt(seq)?;
        same_or_conflict(s, &receipt.record, seq)?;
        Ok(Some(SubmitOutcome::Existing(Accepted {
            stores: self.status_of(seq),
            receipt,
        })))
    }
}

fn same_or_conflict(s: &Submission, stored: &Record, seq: u64) -> Result<(), SubmitError> {
    if stored.decision == s.decision && stored.approvals == s.canonical_approvals() {
        Ok(())
    } else {
        Err(SubmitError::Conflict {
            id: s.decision.id,
            seq,
        })
    }
}

fn receipt_at(
    ledger: &dyn Ledger,
    seq: u64,
    checkpoint: &SignedCheckpoint,
) -> Result<Receipt, SubmitError> {
    let internal = |what: &str, e: LedgerError| SubmitError::Internal(format!("{what}: {e}"));
    let bytes = ledger
        .entry(seq)
        .map_err(|e| internal("read the record", e))?;
    let record = Record::from_canonical_bytes(&bytes)
        .map_err(|e| SubmitError::Internal(format!("ledger entry {seq} is not a record: {e}")))?;
    let proof = ledger
        .inclusion_proof(seq, checkpoint.size)
        .map_err(|e| internal("compute the inclusion proof", e))?;
    Ok(Receipt {
        version: RECEIPT_VERSION,
        seq,
        leaf_hash: leaf_hash(&bytes),
        record,
        checkpoint: checkpoint.note.clone(),
        inclusion_proof: proof,
    })
}

/// Judges submissions against the policy in force, many at a time: every approval signature of
/// every submission waiting is verified in one `Policy::check_many` call (Ed25519 in batches,
/// each signature judged exactly as alone; see `triplicate_keys::verify_many`), refusals are
/// answered here, and accepted submissions go on to the committer in arrival order. A
/// submission waits for at most the batch being judged before its own is taken.
///
/// The judge does not wait for a batch to fill: it takes what is queued, and when that is fewer
/// than [`JUDGE_GATHER_BELOW`] it yields once (the handlers that are ready queue theirs) and
/// takes those too. Waiting up to 2 ms for more while the committer was busy was measured and
/// dropped (in-process closed loop 2,466–2,660/s against 3,290–3,340/s without): on two
/// saturated cores the wait left work undone and made the commit batches smaller. The one
/// yield gained ~4 % (BENCHMARKS.md); yielding up to three times gained nothing more.
async fn judge(inner: Arc<Inner>, mut rx: mpsc::Receiver<Job>, committer: mpsc::Sender<Job>) {
    let max = inner.options.batch_max;
    let mut jobs = Vec::with_capacity(max);
    while rx.recv_many(&mut jobs, max).await > 0 {
        if jobs.len() < JUDGE_GATHER_BELOW {
            // Under load, request handlers are about to queue more: let the tasks that are
            // ready run once, then take what they queued, so the signatures are checked in a
            // batch (several times cheaper per signature than one by one when the same
            // approvers sign many decisions; see `triplicate_keys::verify_many`). A quiet
            // service pays one pass of its run queue.
            tokio::task::yield_now().await;
            while jobs.len() < max {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        let batch = std::mem::take(&mut jobs);
        inner.metrics.observe_judge_batch(batch.len());
        let policy = inner
            .policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let now = Timestamp::now();
        let judge = move |batch: Vec<Job>| {
            let subs: Vec<(&Decision, &[triplicate_core::Approval])> = batch
                .iter()
                .map(|j| (&j.submission.decision, j.submission.approvals.as_slice()))
                .collect();
            let verdicts = policy.check_many(&subs, now);
            (batch, verdicts)
        };
        // One submission (a quiet service) is judged right here, as cheaply as before; a
        // batch goes to the blocking pool so the async workers keep serving meanwhile.
        let judged = if batch.len() == 1 {
            Ok(judge(batch))
        } else {
            tokio::task::spawn_blocking(move || judge(batch)).await
        };
        let (batch, verdicts) = match judged {
            Ok(judged) => judged,
            Err(e) => {
                // The batch's jobs (and their reply channels) went down with the task, so
                // their callers are answered "the committer dropped the submission".
                tracing::error!(error = %e, "judging a batch panicked; its submissions fail");
                continue;
            }
        };
        for (job, verdict) in batch.into_iter().zip(verdicts) {
            match verdict {
                Ok(quorum) => {
                    tracing::debug!(decision_id = %job.submission.decision.id, rule = ?quorum.rule, "quorum met");
                    if let Err(mpsc::error::SendError(job)) = committer.send(job).await {
                        let _ = job.reply.send(Err(SubmitError::Unavailable(
                            "the committer has stopped".into(),
                        )));
                    }
                }
                Err(refusal) => {
                    let _ = job.reply.send(Err(SubmitError::Refused(Box::new(refusal))));
                }
            }
        }
    }
    tracing::debug!("judge stopped: no more submissions");
}

/// Below this many submissions taken at once, the judge yields once to gather more.
const JUDGE_GATHER_BELOW: usize = 8;

/// Takes every waiting submission into one commit, until the channel closes.
///
/// Four tasks, so a store does not wait on the other's write of the same batch (only, through
/// the committer, on its falling more than [`STORE_QUEUE`] batches behind), and the ledger
/// commit of one batch overlaps the store writes of the ones before: the committer assigns
/// seqs, notarises and appends to the ledger; a writer per store (stream, projection) writes
/// the committed batches in seq order (they reach it in commit order), taking every batch
/// queued while it was busy into one write; the replier computes each batch's inclusion proofs
/// meanwhile, waits until both stores have finished with the batch (written, or found
/// pending), and answers the callers.
///
/// Before the writers took whatever was queued, one task wrote both stores and answered
/// batch by batch: the slower store (the projection) paced every batch, its fixed cost per
/// write (a transaction, an `fsync`, hand-offs between threads) was paid by every batch, and
/// the stream and the proofs waited on it. Taking the queue shortens that path, so more of the
/// cores' time goes to submissions at the same number in flight.
async fn committer(inner: Arc<Inner>, mut rx: mpsc::Receiver<Job>) {
    let (stream_tx, stream_rx) = mpsc::channel::<StoreBatch>(STORE_QUEUE);
    let (projection_tx, projection_rx) = mpsc::channel::<StoreBatch>(STORE_QUEUE);
    let (reply_tx, mut reply_rx) = mpsc::channel::<Outgoing>(STORE_QUEUE);
    let stream_writer = tokio::spawn(store_writer(inner.clone(), StoreKind::Stream, stream_rx));
    let projection_writer = tokio::spawn(store_writer(
        inner.clone(),
        StoreKind::Projection,
        projection_rx,
    ));
    let replier = {
        let inner = inner.clone();
        tokio::spawn(async move {
            while let Some(out) = reply_rx.recv().await {
                answer(&inner, out).await;
            }
        })
    };
    let mut jobs = Vec::with_capacity(inner.options.batch_max);
    while rx.recv_many(&mut jobs, inner.options.batch_max).await > 0 {
        let batch = std::mem::take(&mut jobs);
        let Some(committed) = commit(&inner, batch).await else {
            continue;
        };
        let (stream_done, stream_wait) = oneshot::channel();
        let (projection_done, projection_wait) = oneshot::channel();
        let to_store = |done| StoreBatch {
            start: committed.start_seq,
            entries: committed.entries.clone(),
            proofs: committed.proofs.clone(),
            done,
        };
        // A writer gone means it panicked (a bug): the committer stops, as it did when the
        // one task that wrote both stores failed, rather than run on with a store that no
        // batch reaches. This batch is committed; its callers get their answer (the store
        // pending) from the replier, and the catch-up worker writes it after a restart.
        let stream_sent = stream_tx.send(to_store(stream_done)).await.is_ok();
        let projection_sent = projection_tx.send(to_store(projection_done)).await.is_ok();
        let out = Outgoing {
            committed,
            stream_wait,
            projection_wait,
        };
        if reply_tx.send(out).await.is_err() {
            tracing::error!("the replier stopped; the committer stops");
            break;
        }
        if !(stream_sent && projection_sent) {
            for (sent, d, store) in [
                (stream_sent, &inner.stream_state, "stream"),
                (projection_sent, &inner.projection_state, "projection"),
            ] {
                if !sent {
                    mark_pending(d, store, "its writer stopped");
                }
            }
            tracing::error!(
                stream_writer = stream_sent,
                projection_writer = projection_sent,
                "a store writer stopped; the committer stops"
            );
            break;
        }
    }
    drop((stream_tx, projection_tx, reply_tx));
    let _ = tokio::join!(stream_writer, projection_writer, replier);
    tracing::info!("committer stopped: no more submissions");
}

/// Committed batches queued for each store writer and for the replier. Small: a writer
/// behind holds the committer back (and so the callers) rather than letting work pile up.
const STORE_QUEUE: usize = 4;

/// A batch the ledger holds durably, waiting for the stores and its receipts.
struct Committed {
    start_seq: u64,
    checkpoint: SignedCheckpoint,
    fresh: Vec<(Job, Record)>,
    /// `fresh`'s record bytes, as the ledger appended them (moved back from the append, not
    /// copied again), shared with the store writers.
    entries: Arc<Vec<Vec<u8>>>,
    /// The core crate's proofs of `entries`, so the stores need not parse them again.
    proofs: Arc<Vec<CanonicalProof>>,
    /// Submissions of a decision that an earlier submission in the same batch records, with
    /// that submission's position in `fresh`.
    duplicates: Vec<(Job, usize)>,
}

/// A committed batch on its way to one store.
struct StoreBatch {
    start: u64,
    entries: Arc<Vec<Vec<u8>>>,
    proofs: Arc<Vec<CanonicalProof>>,
    /// Sent once the store has finished with the batch: written, or left to catch-up.
    done: oneshot::Sender<()>,
}

impl StoreBatch {
    fn end(&self) -> u64 {
        self.start + self.entries.len() as u64
    }
}

/// A committed batch waiting for both stores before its callers are answered.
struct Outgoing {
    committed: Committed,
    stream_wait: oneshot::Receiver<()>,
    projection_wait: oneshot::Receiver<()>,
}

#[derive(Debug, Clone, Copy)]
enum StoreKind {
    Stream,
    Projection,
}

/// Writes committed batches to one store in seq order. Each write takes every batch queued
/// meanwhile that continues the one before, up to `batch_max` records in all (what one commit
/// may hold), so a store that fell behind by a few batches catches up in one transaction.
async fn store_writer(inner: Arc<Inner>, store: StoreKind, mut rx: mpsc::Receiver<StoreBatch>) {
    let max = inner.options.batch_max;
    let mut queued: Vec<StoreBatch> = Vec::new();
    while rx.recv_many(&mut queued, STORE_QUEUE).await > 0 {
        for run in runs(std::mem::take(&mut queued), max) {
            write_run(&inner, store, run).await;
        }
    }
    tracing::debug!(?store, "store writer stopped: no more batches");
}

/// Groups queued batches (in commit order) into writes: a batch joins the write before it
/// when it starts where that one ends and the write stays within `max` records; a batch
/// larger than `max` on its own is still one write.
fn runs(queued: Vec<StoreBatch>, max: usize) -> Vec<Vec<StoreBatch>> {
    let mut out: Vec<Vec<StoreBatch>> = Vec::new();
    let mut records = 0;
    for batch in queued {
        let joins = out
            .last()
            .and_then(|run| run.last())
            .is_some_and(|last| last.end() == batch.start && records + batch.entries.len() <= max);
        if joins {
            records += batch.entries.len();
            if let Some(run) = out.last_mut() {
                run.push(batch);
            }
        } else {
            records = batch.entries.len();
            out.push(vec![batch]);
        }
    }
    out
}

/// One write of consecutive committed batches to `store`, then tells each batch it is done.
async fn write_run(inner: &Arc<Inner>, store: StoreKind, run: Vec<StoreBatch>) {
    let (Some(first), Some(last)) = (run.first(), run.last()) else {
        return;
    };
    let (start, end) = (first.start, last.end());
    if end > start {
        debug_assert!(run.iter().all(|b| b.proofs.len() == b.entries.len()));
        let records: Vec<(&[u8], &CanonicalProof)> = run
            .iter()
            .flat_map(|b| b.entries.iter().map(Vec::as_slice).zip(b.proofs.iter()))
            .collect();
        match store {
            StoreKind::Stream => write_stream(inner, start, end, &records).await,
            StoreKind::Projection => write_projection(inner, start, end, &records).await,
        }
    }
    for batch in run {
        let _ = batch.done.send(());
    }
}

/// One group commit: seqs, notary signatures, one ledger append. Returns what the store
/// writers and the replier must finish, or `None` when every submission was already answered.
#[tracing::instrument(skip_all, fields(submissions = jobs.len()))]
async fn commit(inner: &Arc<Inner>, jobs: Vec<Job>) -> Option<Committed> {
    let start_seq = inner.ledger.tree_size();
    let recorded_at = Timestamp::now();
    // The submissions that take a seq, in order, and their callers' replies, kept apart so
    // the submissions can go to the blocking pool and come back while the replies stay here.
    let mut submissions: Vec<Submission> = Vec::with_capacity(jobs.len());
    let mut replies: Vec<Reply> = Vec::with_capacity(jobs.len());
    let mut in_batch: HashMap<Uuid, usize> = HashMap::new();
    // Submissions of a decision an earlier submission in this batch carries, with its index
    // in `submissions`.
    let mut repeats: Vec<(Job, usize)> = Vec::new();
    for job in jobs {
        let id = job.submission.decision.id;
        // Recorded since the handler looked, or twice in this batch.
        if let Some(seq) = lookup(inner, id) {
            let receipt = receipt_at(&*inner.ledger, seq, &inner.ledger.checkpoint());
            let out = receipt.and_then(|receipt| {
                same_or_conflict(&job.submission, &receipt.record, seq)?;
                Ok(SubmitOutcome::Existing(Accepted {
                    stores: status(inner, seq),
                    receipt,
                }))
            });
            let _ = job.reply.send(out);
            continue;
        }
        if let Some(&at) = in_batch.get(&id) {
            repeats.push((job, at));
            continue;
        }
        in_batch.insert(id, submissions.len());
        submissions.push(job.submission);
        replies.push(job.reply);
    }
    if submissions.is_empty() {
        // A repeat names an earlier submission of the batch, so there are none either.
        return None;
    }

    // Notarising and appending run on the blocking pool: a hardware notary may take hundreds
    // of milliseconds a signature (the `Signer` contract forbids calling it on an executor
    // thread), and a software one ~40 µs of CPU, which is spread over the cores.
    let notary = inner.notary.clone();
    let ledger = inner.ledger.clone();
    let done = tokio::task::spawn_blocking(move || {
        let signed = notarise_all(&*notary, start_seq, &submissions, recorded_at);
        let mut records = Vec::with_capacity(signed.len());
        let mut entries = Vec::with_capacity(signed.len());
        let mut proofs = Vec::with_capacity(signed.len());
        let mut refused = Vec::new();
        for (i, s) in signed.into_iter().enumerate() {
            match s {
                Ok((record, bytes, proof)) => {
                    records.push((i, record));
                    entries.push(bytes);
                    proofs.push(proof);
                }
                Err(e) => refused.push((i, e)),
            }
        }
        let appended = (!entries.is_empty()).then(|| ledger.append(start_seq, &entries));
        (submissions, records, entries, proofs, refused, appended)
    })
    .await;
    let (submissions, records, entries, proofs, refused, appended) = match done {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "notarising or appending a batch panicked; it is refused");
            let why = || SubmitError::Internal(format!("notarising or appending panicked: {e}"));
            for reply in replies {
                let _ = reply.send(Err(why()));
            }
            for (job, _) in repeats {
                let _ = job.reply.send(Err(why()));
            }
            return None;
        }
    };

    let mut replies: Vec<Option<Reply>> = replies.into_iter().map(Some).collect();
    let mut submissions: Vec<Option<Submission>> = submissions.into_iter().map(Some).collect();
    // Where each submission's record is in `fresh`, or why it was refused.
    let mut place: Vec<Result<usize, SubmitError>> = Vec::with_capacity(submissions.len());
    place.resize_with(submissions.len(), || Ok(usize::MAX));
    for (i, e) in refused {
        place[i] = Err(refusal_copy(&e));
        if let Some(reply) = replies[i].take() {
            let _ = reply.send(Err(e));
        }
    }
    let mut fresh: Vec<(Job, Record)> = Vec::with_capacity(records.len());
    for (i, record) in records {
        if let (Some(submission), Some(reply)) = (submissions[i].take(), replies[i].take()) {
            place[i] = Ok(fresh.len());
            fresh.push((Job { submission, reply }, record));
        }
    }
    let mut duplicates: Vec<(Job, usize)> = Vec::with_capacity(repeats.len());
    for (job, at) in repeats {
        match &place[at] {
            Ok(k) => duplicates.push((job, *k)),
            Err(e) => {
                let answer = repeat_of_refused(e, submissions[at].as_ref(), &job.submission);
                let _ = job.reply.send(Err(answer));
            }
        }
    }
    let Some(appended) = appended else {
        // Every submission was refused; each caller has its answer.
        return None;
    };
    match appended {
        Ok(out) => {
            inner.metrics.observe_batch(fresh.len());
            let mut index = inner.index.lock().unwrap_or_else(|p| p.into_inner());
            for (_, r) in &fresh {
                index.insert(r.decision.id, r.seq);
            }
            drop(index);
            Some(Committed {
                start_seq,
                checkpoint: out.checkpoint,
                fresh,
                entries: Arc::new(entries),
                proofs: Arc::new(proofs),
                duplicates,
            })
        }
        Err(e) => {
            let reason = e.to_string();
            tracing::error!(%reason, "ledger append failed; the batch is refused");
            for (job, _) in fresh {
                let _ = job.reply.send(Err(SubmitError::Unavailable(format!(
                    "the ledger could not commit: {reason}"
                ))));
            }
            for (job, _) in duplicates {
                let _ = job.reply.send(Err(SubmitError::Unavailable(
                    "the ledger could not commit".into(),
                )));
            }
            None
        }
    }
}

/// The answer to `repeat`, which came in the same batch as `first` under the same decision id
/// after `first` was refused with `refused`: the same refusal if it is the same submission;
/// otherwise (a corrected version, say) it was not judged, and it is answered as retryable, so
/// the retry is judged on its own.
fn repeat_of_refused(
    refused: &SubmitError,
    first: Option<&Submission>,
    repeat: &Submission,
) -> SubmitError {
    if first == Some(repeat) {
        return refusal_copy(refused);
    }
    SubmitError::Unavailable(format!(
        "not recorded: another submission of decision {} in the same batch was refused \
         ({refused}); submit this one again",
        repeat.decision.id
    ))
}

/// The same refusal for another caller. Notarising refuses with `Invalid`, `Unavailable` or
/// `Internal`; anything else is carried as `Internal` with its message.
fn refusal_copy(e: &SubmitError) -> SubmitError {
    match e {
        SubmitError::Invalid(v) => SubmitError::Invalid(v.clone()),
        SubmitError::Unavailable(s) => SubmitError::Unavailable(s.clone()),
        SubmitError::Internal(s) => SubmitError::Internal(s.clone()),
        other => SubmitError::Internal(other.to_string()),
    }
}

/// Submissions below this many are signed on one thread (spawning costs more than it saves).
const PARALLEL_NOTARY_MIN: usize = 16;

/// A submission's record at its seq, ready for the notary, and the message it signs.
struct Prepared {
    unsigned: UnsignedRecord,
    msg: Vec<u8>,
}

/// The notary member (`,"notary":{...}` with a 64-byte signature) is well under this many
/// bytes; a record whose notary message is this far under the size limit fits once signed.
const NOTARY_MEMBER_MARGIN: usize = 512;

/// The record of `s` at `seq`, checked to fit the record size limit once signed, and its
/// notary message. Nothing is signed here, so a refusal costs the notary nothing and takes no
/// seq.
fn prepare(
    notary: &dyn Signer,
    seq: u64,
    s: &Submission,
    recorded_at: Timestamp,
) -> Result<Prepared, SubmitError> {
    if seq > triplicate_core::limits::SAFE_INTEGER as u64 {
        return Err(SubmitError::Unavailable(
            "the ledger has reached 2^53 records".into(),
        ));
    }
    let unsigned = UnsignedRecord {
        version: RECORD_VERSION,
        seq,
        decision: s.decision.clone(),
        approvals: s.canonical_approvals(),
        recorded_at,
    };
    let msg = unsigned
        .notary_message()
        .map_err(|e| SubmitError::Internal(format!("build the notary message: {e}")))?;
    // The decision and each approval passed every rule in `Submission::from_json`, the policy
    // refused duplicates, and the fields added here are ours; what is left to check is what
    // only the whole record has: its size. Signatures of both algorithms are 64 bytes, so near
    // the limit the record is measured with a stand-in signature of that length.
    if msg.len() + NOTARY_MEMBER_MARGIN > triplicate_core::limits::RECORD_MAX_BYTES {
        let probe = unsigned.clone().with_notary(NotarySignature {
            key_id: notary.key_id(),
            alg: notary.algorithm(),
            signature: vec![0; 64],
        });
        let len = probe
            .to_bytes()
            .map_err(|e| SubmitError::Internal(format!("canonicalise the record: {e}")))?
            .len();
        if len > triplicate_core::limits::RECORD_MAX_BYTES {
            return Err(too_large(len));
        }
    }
    Ok(Prepared { unsigned, msg })
}

fn too_large(len: usize) -> SubmitError {
    SubmitError::Invalid(ValidationError::one(
        "(record)",
        format!(
            "is {len} bytes canonicalised; at most {} are allowed (reference large documents from attachments)",
            triplicate_core::limits::RECORD_MAX_BYTES
        ),
    ))
}

/// Signs a prepared record: the record and its canonical bytes.
fn sign_prepared(notary: &dyn Signer, p: Prepared) -> Result<Notarised, SubmitError> {
    let signature = notary
        .sign(&p.msg)
        .map_err(|e| SubmitError::Unavailable(format!("the notary could not sign: {e}")))?;
    let record = p.unsigned.with_notary(NotarySignature {
        key_id: notary.key_id(),
        alg: notary.algorithm(),
        signature,
    });
    // Every rule the stores check, so no record enters the ledger that a store would refuse;
    // the proof lets the stores check these bytes by their hash instead of parsing them again.
    let (bytes, proof) = record.to_proven_bytes().map_err(|e| {
        match record.to_bytes() {
            // `prepare` measured it with a signature of the same length; a signer that
            // returned another length is refused here rather than stored.
            Ok(b) if b.len() > triplicate_core::limits::RECORD_MAX_BYTES => too_large(b.len()),
            _ => SubmitError::Internal(format!("the notarised record is not valid: {e}")),
        }
    })?;
    Ok((record, bytes, proof))
}

/// A notarised record, its canonical bytes and the core crate's proof of them.
type Notarised = (Record, Vec<u8>, CanonicalProof);

/// Notarises `submissions` as seqs `start_seq..`. Seqs are given in order to the submissions
/// whose records fit (a refused one takes none), then the records are signed, on every core
/// for a large batch (a software notary; a hardware signer serialises its own calls). If the
/// notary fails on one, that one and every later one are refused as retryable: their seqs
/// would move, and signing them again at other seqs would leave the notary's signature on two
/// records for one seq.
fn notarise_all(
    notary: &dyn Signer,
    start_seq: u64,
    submissions: &[Submission],
    recorded_at: Timestamp,
) -> Vec<Result<Notarised, SubmitError>> {
    let mut next = start_seq;
    let prepared: Vec<Result<Prepared, SubmitError>> = submissions
        .iter()
        .map(|s| {
            let p = prepare(notary, next, s, recorded_at);
            if p.is_ok() {
                next += 1;
            }
            p
        })
        .collect();
    let took_seq: Vec<bool> = prepared.iter().map(Result::is_ok).collect();
    let sign = |p: Result<Prepared, SubmitError>| p.and_then(|p| sign_prepared(notary, p));
    let threads = triplicate_core::available_threads();
    let mut out: Vec<Result<Notarised, SubmitError>> =
        if threads < 2 || took_seq.iter().filter(|t| **t).count() < PARALLEL_NOTARY_MIN {
            prepared.into_iter().map(sign).collect()
        } else {
            let per = prepared.len().div_ceil(threads);
            let mut parts: Vec<Vec<Result<Prepared, SubmitError>>> = Vec::with_capacity(threads);
            let mut rest = prepared.into_iter();
            loop {
                let part: Vec<_> = rest.by_ref().take(per).collect();
                if part.is_empty() {
                    break;
                }
                parts.push(part);
            }
            std::thread::scope(|s| {
                let handles: Vec<_> = parts
                    .into_iter()
                    .map(|part| {
                        let sign = &sign;
                        s.spawn(move || part.into_iter().map(sign).collect::<Vec<_>>())
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| match h.join() {
                        Ok(part) => part,
                        // Re-raised here, where the blocking task turns it into a refused batch.
                        Err(p) => std::panic::resume_unwind(p),
                    })
                    .collect()
            })
        };
    let mut failed: Option<String> = None;
    for (r, took) in out.iter_mut().zip(took_seq) {
        if let Some(why) = &failed {
            if took {
                *r = Err(SubmitError::Unavailable(format!(
                    "not recorded: the notary failed on an earlier submission of the same batch \
                     ({why}); submit it again"
                )));
            }
        } else if took {
            if let Err(e) = r {
                failed = Some(e.to_string());
            }
        }
    }
    out
}

/// Answers a committed batch's callers once both stores have finished with it. The inclusion
/// proofs are computed first, while the stores write.
#[tracing::instrument(skip_all, fields(records = out.committed.fresh.len()))]
async fn answer(inner: &Arc<Inner>, out: Outgoing) {
    let Outgoing {
        committed:
            Committed {
                start_seq: _,
                checkpoint,
                fresh,
                entries,
                proofs: _,
                duplicates,
            },
        stream_wait,
        projection_wait,
    } = out;
    let proofs: Vec<_> = fresh
        .iter()
        .map(|(_, record)| inner.ledger.inclusion_proof(record.seq, checkpoint.size))
        .collect();
    // An error means the writer dropped the batch (it stopped): the store status says pending.
    let _ = tokio::join!(stream_wait, projection_wait);

    // Rare: a decision submitted twice in one batch. Answered from the first submission's
    // record before `fresh` is consumed, so no record is copied for it.
    for (job, at) in duplicates {
        let (_, record) = &fresh[at];
        let seq = record.seq;
        let out = same_or_conflict(&job.submission, record, seq).and_then(|()| {
            receipt_at(&*inner.ledger, seq, &checkpoint).map(|receipt| {
                SubmitOutcome::Existing(Accepted {
                    stores: status(inner, seq),
                    receipt,
                })
            })
        });
        let _ = job.reply.send(out);
    }
    for (((job, record), bytes), proof) in fresh.into_iter().zip(entries.iter()).zip(proofs) {
        let seq = record.seq;
        let out = proof
            .map(|proof| {
                SubmitOutcome::Created(Accepted {
                    stores: status(inner, seq),
                    receipt: Receipt {
                        version: RECEIPT_VERSION,
                        seq,
                        leaf_hash: leaf_hash(bytes),
                        record,
                        checkpoint: checkpoint.note.clone(),
                        inclusion_proof: proof,
                    },
                })
            })
            .map_err(|e| SubmitError::Internal(format!("compute the inclusion proof: {e}")));
        let _ = job.reply.send(out);
    }
}

fn lookup(inner: &Inner, id: Uuid) -> Option<u64> {
    inner
        .index
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
        .copied()
}

fn status(inner: &Inner, seq: u64) -> StoreStatus {
    let state = |d: &Downstream| {
        if d.size.load(Ordering::Acquire) > seq {
            StoreState::Written
        } else {
            StoreState::Pending
        }
    };
    StoreStatus {
        ledger: StoreState::Written,
        stream: state(&inner.stream_state),
        projection: state(&inner.projection_state),
    }
}

/// Writes consecutive committed records (one or more batches) to the stream unless it is
/// behind (then catch-up owns them).
async fn write_stream(
    inner: &Arc<Inner>,
    start: u64,
    end: u64,
    records: &[(&[u8], &CanonicalProof)],
) {
    let d = &inner.stream_state;
    if !d.healthy.load(Ordering::Acquire) {
        d.wake.notify_one();
        return;
    }
    if write_from(d, start, end).is_none() {
        return;
    }
    let Some(_guard) = lock_for_write(inner, d, "stream").await else {
        return;
    };
    let Some((start, records)) = unwritten(d, start, end, records) else {
        return;
    };
    // The proof names the decision and the leaf hash, so the bytes are neither parsed here
    // nor by the stream; the stream hashes them to tie them to the proof.
    let batch: Vec<AppendRequest> = records
        .iter()
        .zip(start..end)
        .map(|((bytes, proof), seq)| {
            let event = DecisionRecorded {
                seq,
                decision_id: proof.decision_id(),
                leaf_hash: *proof.leaf_hash(),
                record_bytes: bytes.to_vec(),
            };
            AppendRequest::new_proven_decision(event, **proof)
        })
        .collect();
    // In appends the backend takes (JetStream: at most 16 MiB of records each), one after
    // the other; the store's size follows each one, so a failure part-way leaves catch-up a
    // consecutive prefix to continue from.
    let mut at = start;
    for part in within_limits(batch, inner.stream.limits()) {
        let part_end = at + part.len() as u64;
        match tokio::time::timeout(inner.options.store_timeout, inner.stream.append(part)).await {
            Ok(Ok(_)) => {
                d.size.store(part_end, Ordering::Release);
                d.acked.fetch_max(part_end, Ordering::AcqRel);
                at = part_end;
            }
            Ok(Err(e)) => return mark_pending(d, "stream", &e.to_string()),
            Err(_) => return mark_pending(d, "stream", "timed out"),
        }
    }
    debug_assert_eq!(at, end);
}

/// Splits consecutive appends, in order, into batches within `limits`: at most
/// `max_batch_events` events and `max_batch_bytes` of records each. An event larger than the
/// byte limit on its own is a batch alone (the stream refuses it, as it would have anyway).
pub(crate) fn within_limits(
    batch: Vec<AppendRequest>,
    limits: triplicate_stream::Limits,
) -> Vec<Vec<AppendRequest>> {
    let mut out: Vec<Vec<AppendRequest>> = Vec::new();
    let mut bytes = 0usize;
    for req in batch {
        let size = req.event.record_bytes.len();
        let fits = out.last().is_some_and(|part| {
            part.len() < limits.max_batch_events
                && bytes.saturating_add(size) <= limits.max_batch_bytes
        });
        if fits {
            bytes += size;
            if let Some(part) = out.last_mut() {
                part.push(req);
            }
        } else {
            bytes = size;
            out.push(vec![req]);
        }
    }
    out
}

/// Applies consecutive committed records (one or more batches) to the projection unless it
/// is behind.
async fn write_projection(
    inner: &Arc<Inner>,
    start: u64,
    end: u64,
    records: &[(&[u8], &CanonicalProof)],
) {
    let d = &inner.projection_state;
    if !d.healthy.load(Ordering::Acquire) {
        d.wake.notify_one();
        return;
    }
    if write_from(d, start, end).is_none() {
        return;
    }
    let Some(_guard) = lock_for_write(inner, d, "projection").await else {
        return;
    };
    let Some((_, records)) = unwritten(d, start, end, records) else {
        return;
    };
    match tokio::time::timeout(
        inner.options.store_timeout,
        inner.projection.apply_proven(
            records.iter().map(|(bytes, _)| bytes.to_vec()).collect(),
            records.iter().map(|(_, proof)| Some(**proof)).collect(),
        ),
    )
    .await
    {
        Ok(Ok(_)) => {
            d.size.store(end, Ordering::Release);
            d.acked.fetch_max(end, Ordering::AcqRel);
        }
        Ok(Err(e)) => mark_pending(d, "projection", &e.to_string()),
        Err(_) => mark_pending(d, "projection", "timed out"),
    }
}

/// The store's write lock for a store writer, waited for no longer than a store call may
/// take, and only while the store is still healthy once it is held. Whoever else holds it
/// (the catch-up worker, an approved rebuild copying the whole ledger, a repair) may hold it
/// for minutes; the writer must not wait that long, since the callers of every batch queued
/// behind it wait for its answer. `None` leaves the records to the catch-up worker, woken
/// here, and the store pending meanwhile.
///
/// (The writer checks `healthy` before it asks for the lock, but a holder may take the lock
/// after that check: a rebuild marks the store pending, the catch-up worker's probe may mark
/// it healthy again just before the rebuild takes the lock, and a writer waiting without a
/// bound then held every submission until the rebuild ended.)
async fn lock_for_write<'a>(
    inner: &Inner,
    d: &'a Downstream,
    store: &str,
) -> Option<tokio::sync::MutexGuard<'a, ()>> {
    let Ok(guard) = tokio::time::timeout(inner.options.store_timeout, d.write.lock()).await else {
        mark_pending(
            d,
            store,
            "its write lock is held by a rebuild, repair or catch-up",
        );
        return None;
    };
    if !d.healthy.load(Ordering::Acquire) {
        d.wake.notify_one();
        return None;
    }
    Some(guard)
}

/// A store's write lock for a long holder (a rebuild, a repair). The store is marked pending
/// before the wait, so the store writer leaves records to catch-up instead of waiting for the
/// lock, and again once the lock is held: the catch-up worker may have held it meanwhile and,
/// finding the store caught up, marked it healthy. The holder wakes the catch-up worker when it
/// lets go.
pub(crate) async fn hold_pending(d: &Downstream) -> tokio::sync::MutexGuard<'_, ()> {
    d.healthy.store(false, Ordering::Release);
    let guard = d.write.lock().await;
    d.healthy.store(false, Ordering::Release);
    guard
}

/// Both stores' write locks, held while a repair changes them (stream first, as everywhere).
/// The stores are marked pending first, so the store writers leave what is committed
/// meanwhile to the catch-up worker instead of waiting out the store timeout for the locks;
/// when this is dropped the catch-up worker is woken, probes each store and marks it healthy
/// again once it holds everything.
pub(crate) struct HeldForRepair<'a> {
    inner: &'a Inner,
    _stream: tokio::sync::MutexGuard<'a, ()>,
    _projection: tokio::sync::MutexGuard<'a, ()>,
}

pub(crate) async fn hold_for_repair(inner: &Inner) -> HeldForRepair<'_> {
    // Both marked before either lock is waited for, so neither writer waits on the other's.
    inner.stream_state.healthy.store(false, Ordering::Release);
    inner
        .projection_state
        .healthy
        .store(false, Ordering::Release);
    let stream = hold_pending(&inner.stream_state).await;
    let projection = hold_pending(&inner.projection_state).await;
    tracing::debug!("stores held for a repair; writes to them are pending meanwhile");
    HeldForRepair {
        inner,
        _stream: stream,
        _projection: projection,
    }
}

impl Drop for HeldForRepair<'_> {
    fn drop(&mut self) {
        // The locks are released right after this; the woken loops wait for them.
        self.inner.stream_state.wake.notify_one();
        self.inner.projection_state.wake.notify_one();
    }
}

/// Where a write of records `start..end` to a store begins: at `start`, or further on when
/// the catch-up worker has already written part of the range (it may stop inside a run of
/// batches a store writer took together). `None` when the store's size is outside the range:
/// behind it, or seemingly holding all of it. Either way the range is left to the catch-up
/// worker, which is woken and probes the store itself: the size is as of the last write or
/// probe, and a repair that removed rows since may have made it too high.
fn write_from(d: &Downstream, start: u64, end: u64) -> Option<u64> {
    let size = d.size.load(Ordering::Acquire);
    if size < start || size >= end {
        d.wake.notify_one();
        return None;
    }
    Some(size)
}

/// [`write_from`], with the records from there on (`records` are `start..end`).
fn unwritten<'a, T>(
    d: &Downstream,
    start: u64,
    end: u64,
    records: &'a [T],
) -> Option<(u64, &'a [T])> {
    let from = write_from(d, start, end)?;
    let skip = usize::try_from(from - start).ok()?;
    Some((from, records.get(skip..)?))
}

pub(crate) fn mark_pending(d: &Downstream, store: &str, reason: &str) {
    if d.healthy.swap(false, Ordering::AcqRel) {
        tracing::warn!(
            store,
            reason,
            "store write failed; records are pending until catch-up"
        );
    }
    d.wake.notify_one();
}

/// The stream event for committed record bytes at `seq` (the stream validates them fully).
pub(crate) fn event_for(seq: u64, bytes: &[u8]) -> Result<AppendRequest, String> {
    let parsed: IdOnly = serde_json::from_slice(bytes)
        .map_err(|e| format!("ledger entry {seq} is not a record: {e}"))?;
    Ok(AppendRequest::new_decision(DecisionRecorded {
        seq,
        decision_id: parsed.decision.id,
        leaf_hash: leaf_hash(bytes),
        record_bytes: bytes.to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    /// A store write starts where the store is: at the range's start, or past what catch-up
    /// has already written of it. A store whose size is outside the range (behind it, or past
    /// its end, which a repair's removals can make stale) is left to catch-up, which is woken.
    #[tokio::test]
    async fn a_store_write_resumes_where_the_store_is() {
        let records = [10u64, 11, 12, 13, 14];
        for (size, want) in [
            (10, Some((10, &records[..]))),
            (12, Some((12, &records[2..]))),
            (14, Some((14, &records[4..]))),
            (7, None),
            (15, None),
            (20, None),
        ] {
            let d = Downstream::new(size, 100);
            assert_eq!(unwritten(&d, 10, 15, &records), want, "size {size}");
            let woken = tokio::time::timeout(Duration::from_millis(20), d.wake.notified());
            assert_eq!(
                woken.await.is_ok(),
                want.is_none(),
                "size {size}: catch-up woken only when the write is left to it"
            );
        }
    }

    /// Appends are split, in order, so that none passes the backend's event or byte limit; an
    /// event over the byte limit alone is an append alone.
    #[test]
    fn stream_appends_are_split_within_the_backends_limits() {
        let req = |seq: u64, len: usize| {
            AppendRequest::new_decision(DecisionRecorded {
                seq,
                decision_id: Uuid::now_v7(),
                leaf_hash: [0; 32],
                record_bytes: vec![b'x'; len],
            })
        };
        let limits = triplicate_stream::Limits {
            max_batch_events: 3,
            max_batch_bytes: 100,
        };
        let shape = |sizes: &[usize]| -> Vec<Vec<u64>> {
            let batch = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| req(i as u64, n))
                .collect();
            within_limits(batch, limits)
                .iter()
                .map(|p| p.iter().map(|r| r.event.seq).collect())
                .collect()
        };
        // Events: three per append.
        assert_eq!(shape(&[1; 7]), vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        // Bytes: 40 + 60 = 100 fits, one more byte does not.
        assert_eq!(shape(&[40, 60, 1]), vec![vec![0, 1], vec![2]]);
        assert_eq!(shape(&[40, 61, 1]), vec![vec![0], vec![1, 2]]);
        // Over the limit alone: alone, and the rest go on.
        assert_eq!(shape(&[10, 150, 10]), vec![vec![0], vec![1], vec![2]]);
        assert!(shape(&[]).is_empty());
    }

    /// Queued batches become one write only while each continues the one before and the write
    /// stays within the limit; a batch over the limit alone is one write; order is kept.
    #[test]
    fn store_writes_take_consecutive_batches_up_to_the_limit() {
        let batch = |start: u64, len: usize| StoreBatch {
            start,
            entries: Arc::new(vec![Vec::new(); len]),
            proofs: Arc::new(Vec::new()),
            done: oneshot::channel().0,
        };
        let shape = |runs: Vec<Vec<StoreBatch>>| -> Vec<Vec<(u64, u64)>> {
            runs.iter()
                .map(|r| r.iter().map(|b| (b.start, b.end())).collect())
                .collect()
        };
        // Consecutive and within 10: one write.
        let got = shape(runs(vec![batch(0, 3), batch(3, 4), batch(7, 3)], 10));
        assert_eq!(got, vec![vec![(0, 3), (3, 7), (7, 10)]]);
        // One more record would pass the limit: a second write.
        let got = shape(runs(vec![batch(0, 3), batch(3, 4), batch(7, 4)], 10));
        assert_eq!(got, vec![vec![(0, 3), (3, 7)], vec![(7, 11)]]);
        // A gap (a batch the ledger refused would not leave one, but a writer never bridges
        // it): separate writes, in order.
        let got = shape(runs(vec![batch(0, 2), batch(5, 2), batch(7, 1)], 10));
        assert_eq!(got, vec![vec![(0, 2)], vec![(5, 7), (7, 8)]]);
        // Over the limit alone: still written, alone.
        let got = shape(runs(vec![batch(0, 12), batch(12, 1), batch(13, 1)], 10));
        assert_eq!(got, vec![vec![(0, 12)], vec![(12, 13), (13, 14)]]);
        assert!(runs(Vec::new(), 10).is_empty());
    }

    use triplicate_keys::SoftwareSigner;
    use triplicate_ledger::{EmbeddedLedger, LedgerConfig};

    use super::*;

    /// A submission whose record stays small, or with `huge`, one over `RECORD_MAX_BYTES`
    /// (each field within its own limit; only the whole record is too large).
    fn submission(approver: &SoftwareSigner, huge: bool) -> Submission {
        let decision = Decision {
            id: Uuid::now_v7(),
            kind: "motion".into(),
            title: "A motion".into(),
            body: if huge {
                "b".repeat(32 * 1024)
            } else {
                "b".into()
            },
            payload: if huge {
                serde_json::json!({ "text": "p".repeat(15 * 1024) })
                    .as_object()
                    .cloned()
                    .unwrap()
            } else {
                serde_json::Map::new()
            },
            proposed_at: Timestamp::now(),
            supersedes: None,
            attachments: (0..if huge { 64 } else { 0 })
                .map(|i| triplicate_core::Attachment {
                    sha256: "ab".repeat(32),
                    media_type: format!("application/x-{}", "m".repeat(100)),
                    size: i,
                    name: Some(format!("{i}-{}", "n".repeat(150))),
                })
                .collect(),
        };
        let approval = triplicate_keys::approve(&decision, approver, Timestamp::now()).unwrap();
        Submission {
            decision,
            approvals: vec![approval],
        }
    }

    /// A repeat of a refused submission gets its refusal; a different submission under the
    /// same id is told to send it again.
    #[test]
    fn a_repeat_of_a_refused_submission_is_answered_by_what_it_is() {
        let approver = SoftwareSigner::generate("approver");
        let first = submission(&approver, true);
        let refused = notarise_all(&approver, 0, std::slice::from_ref(&first), Timestamp::now())
            .pop()
            .unwrap()
            .unwrap_err();
        assert!(matches!(refused, SubmitError::Invalid(_)));
        let same = repeat_of_refused(&refused, Some(&first), &first.clone());
        assert_eq!(same.to_string(), refused.to_string());
        assert!(matches!(same, SubmitError::Invalid(_)));
        let mut corrected = submission(&approver, false);
        corrected.decision.id = first.decision.id;
        let other = repeat_of_refused(&refused, Some(&first), &corrected);
        assert!(
            matches!(&other, SubmitError::Unavailable(why) if why.contains("submit this one again")),
            "{other}"
        );
    }

    /// A software notary that fails on records whose title is `FAIL`, as a pulled token would.
    #[derive(Debug)]
    struct Failing(SoftwareSigner);

    impl Signer for Failing {
        fn name(&self) -> &str {
            self.0.name()
        }
        fn public_key(&self) -> triplicate_keys::PublicKey {
            self.0.public_key()
        }
        fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, triplicate_keys::SignError> {
            if msg.windows(14).any(|w| w == b"\"title\":\"FAIL\"") {
                return Err(triplicate_keys::SignError::Device {
                    detail: "unplugged".into(),
                });
            }
            self.0.sign(msg)
        }
    }

    /// When the notary fails on a record, that one and every later one of the batch are
    /// refused as retryable (their seqs would move); the earlier ones stand, at consecutive
    /// seqs.
    #[test]
    fn a_notary_failure_refuses_the_rest_of_the_batch() {
        let notary = Failing(SoftwareSigner::generate("notary"));
        let approver = SoftwareSigner::generate("approver");
        for (n, fail) in [(5, 2), (40, 10), (40, 0), (40, 39)] {
            let subs: Vec<Submission> = (0..n)
                .map(|i| {
                    let mut s = submission(&approver, false);
                    if i == fail {
                        s.decision.title = "FAIL".into();
                    }
                    s
                })
                .collect();
            let out = notarise_all(&notary, 7, &subs, Timestamp::now());
            for (i, r) in out.iter().enumerate() {
                match r {
                    Ok((record, _, _)) => {
                        assert!(i < fail, "{n}/{fail}: submission {i} was recorded");
                        assert_eq!(record.seq, 7 + i as u64);
                    }
                    Err(SubmitError::Unavailable(why)) => {
                        assert!(i >= fail, "{n}/{fail}: submission {i} was refused: {why}");
                        assert!(why.contains("unplugged"), "{why}");
                    }
                    Err(e) => panic!("{n}/{fail}: submission {i}: {e}"),
                }
            }
        }
    }

    /// A notary whose signatures are a byte short (a faulty token).
    #[derive(Debug)]
    struct Short(SoftwareSigner);

    impl Signer for Short {
        fn name(&self) -> &str {
            self.0.name()
        }
        fn public_key(&self) -> triplicate_keys::PublicKey {
            self.0.public_key()
        }
        fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, triplicate_keys::SignError> {
            let mut sig = self.0.sign(msg)?;
            sig.pop();
            Ok(sig)
        }
    }

    /// A notarised record that breaks a rule the stores check (here a notary signature of the
    /// wrong length) is refused before the ledger append, with the rest of its batch, so the
    /// ledger never holds a record the stores would refuse.
    #[test]
    fn a_record_the_stores_would_refuse_is_not_recorded() {
        let notary = Short(SoftwareSigner::generate("notary"));
        let approver = SoftwareSigner::generate("approver");
        let subs: Vec<Submission> = (0..3).map(|_| submission(&approver, false)).collect();
        let out = notarise_all(&notary, 0, &subs, Timestamp::now());
        assert!(
            matches!(&out[0], Err(SubmitError::Internal(why)) if why.contains("notary.signature")),
            "{:?}",
            out[0].as_ref().err()
        );
        for r in &out[1..] {
            assert!(
                matches!(r, Err(SubmitError::Unavailable(_))),
                "{:?}",
                r.as_ref().err()
            );
        }
    }

    /// Notarised at consecutive seqs from `start`, each record's notary signature good; a
    /// refused submission takes no seq, on one thread and on several.
    #[test]
    fn notarising_a_batch_gives_consecutive_seqs_and_skips_refused_submissions() {
        let notary = SoftwareSigner::generate("notary");
        let approver = SoftwareSigner::generate("approver");
        for (n, huge) in [
            (5, vec![]),
            (5, vec![2]),
            (40, vec![]),
            (40, vec![0, 7, 8, 39]),
            (40, vec![20]),
        ] {
            let subs: Vec<Submission> = (0..n)
                .map(|i| submission(&approver, huge.contains(&i)))
                .collect();
            let out = notarise_all(&notary, 100, &subs, Timestamp::now());
            assert_eq!(out.len(), n, "{n} {huge:?}");
            let mut want_seq = 100;
            for (i, r) in out.iter().enumerate() {
                if huge.contains(&i) {
                    assert!(
                        matches!(r, Err(SubmitError::Invalid(_))),
                        "{n} {huge:?}: submission {i} is over the limit"
                    );
                    continue;
                }
                let (record, bytes, proof) = r.as_ref().unwrap();
                assert_eq!(record.seq, want_seq, "{n} {huge:?}: submission {i}");
                assert_eq!(record.decision.id, subs[i].decision.id);
                assert_eq!(&record.to_bytes().unwrap(), bytes);
                assert!(proof.covers(bytes));
                assert_eq!(
                    (proof.seq(), proof.decision_id()),
                    (record.seq, record.decision.id)
                );
                notary
                    .public_key()
                    .verify(&record.notary_message().unwrap(), &record.notary.signature)
                    .unwrap();
                want_seq += 1;
            }
        }
    }

    /// A ledger of `n` entries, each `{"decision":{"id":…}}` (all the index reads), except
    /// those at `bad`, which are not JSON.
    fn ledger(dir: &std::path::Path, n: u64, bad: &[u64]) -> (EmbeddedLedger, Vec<Uuid>) {
        let l = EmbeddedLedger::open(
            LedgerConfig::new(dir, "triplicate.invalid/index"),
            Arc::new(SoftwareSigner::generate("index-test")),
        )
        .unwrap();
        let ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
        let entries: Vec<Vec<u8>> = ids
            .iter()
            .enumerate()
            .map(|(seq, id)| {
                if bad.contains(&(seq as u64)) {
                    b"not json".to_vec()
                } else {
                    format!(r#"{{"decision":{{"id":"{id}"}}}}"#).into_bytes()
                }
            })
            .collect();
        for (k, part) in entries.chunks(5_000).enumerate() {
            l.append(k as u64 * 5_000, part).unwrap();
        }
        (l, ids)
    }

    /// Large enough that every core reads a share (the split starts at 16,384 entries).
    const N: u64 = 20_000;

    #[test]
    fn the_index_built_in_parallel_maps_every_id_to_its_seq() {
        let dir = tempfile::tempdir().unwrap();
        let (l, ids) = ledger(dir.path(), N, &[]);
        let index = build_index(&l, N).unwrap();
        assert_eq!(index.len(), ids.len());
        for (seq, id) in ids.iter().enumerate() {
            assert_eq!(index.get(id), Some(&(seq as u64)), "entry {seq}");
        }
        // A prefix, as a restart with a smaller verified size would read.
        let index = build_index(&l, 17_000).unwrap();
        assert_eq!(index.len(), 17_000);
        assert_eq!(index.get(&ids[16_999]), Some(&16_999));
        assert_eq!(index.get(&ids[17_000]), None);
    }

    #[test]
    fn the_earliest_bad_entry_is_the_one_reported() {
        let dir = tempfile::tempdir().unwrap();
        // One bad entry in each half: whichever thread finishes first, the first is named.
        let (l, _) = ledger(dir.path(), N, &[6_000, 15_000]);
        match build_index(&l, N) {
            Err(StartError::BadEntry { seq, .. }) => assert_eq!(seq, 6_000),
            other => panic!("{other:?}"),
        }
        let dir = tempfile::tempdir().unwrap();
        let (l, _) = ledger(dir.path(), N, &[15_000]);
        match build_index(&l, N) {
            Err(StartError::BadEntry { seq, .. }) => assert_eq!(seq, 15_000),
            other => panic!("{other:?}"),
        }
    }
}
