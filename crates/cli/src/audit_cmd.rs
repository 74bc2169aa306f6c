//! `triplicate audit`: an independent auditor of a service's log. It needs no access to the
//! stores and trusts nothing but the notary's key, so it can run on another machine, by
//! someone else.
//!
//! Each check, over the service's public HTTP API:
//!
//! 1. fetch `/v1/ledger/checkpoint` and verify its signature with the trusted notary key;
//! 2. prove the new tree extends the last one this auditor verified (a consistency proof,
//!    RFC 9162 §2.1.4, from `/v1/ledger/proof/consistency`); a smaller tree, another origin or
//!    a proof that does not verify means the log was rewritten;
//! 3. spot-check `--samples` random entries below the tree size: read each from its C2SP
//!    `tlog-tiles` entry bundle (`/v1/ledger/tile/entries/…`), re-hash it (RFC 6962 leaf hash),
//!    verify its inclusion proof (`/v1/ledger/proof/inclusion`) against the signed root, and
//!    check that it is a canonical record whose `seq` is its index and whose notary signature
//!    verifies with the trusted key;
//! 4. only then remember the checkpoint (`<state-dir>/audit-<server>.json`, replaced
//!    atomically), so a restarted auditor still proves consistency from what it saw before.
//!
//! A failed check leaves the remembered checkpoint as it was: the auditor never adopts a
//! history it could not verify, so a rewritten log fails every check until someone acts (and
//! removes the state file if the rewrite was legitimate).
//!
//! **Trust.** `--notary-key` names the only key trusted. Without it the auditor falls back to
//! the key the client commands pinned for the server on first contact (`client.rs`: trust on
//! first use), and warns that it does.
//!
//! **Outcomes.** `ok`; `failed` (a signature, proof or entry did not verify, the service
//! refused a proof, or the state could not be kept); `unreachable` (no answer, or a 5xx).
//! A failure is logged (target `triplicate::audit`, level `error`) and posted to each
//! `--webhook`; an unreachable service only from the `--unreachable-after`-th consecutive
//! unreachable check on, when it also counts as failed. `--once` exits 0, 1 or 2 for the three.
//!
//! Must not know: proof math (`triplicate-ledger`), record formats (`triplicate-core`), how
//! alerts are signed (`triplicate-verifier`'s `WebhookSender`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use triplicate_core::{Record, Timestamp};
use triplicate_keys::PublicKey;
use triplicate_ledger::layout::{bundle_for, bundle_path, TILE_WIDTH};
use triplicate_ledger::proof::{leaf_hash, verify_inclusion};
use triplicate_ledger::SignedCheckpoint;
use triplicate_verifier::{DeliveryOptions, Webhook, WebhookSender};

use crate::client::{
    normalise_url, state_name, write_atomic, Client, Session, StateDir, Unreachable, Unreadable,
    Untrusted,
};
use crate::ledger_cmd::b64;
use crate::verify_cmd::{check_consistency, read_verifier_key};

/// The tracing target of the auditor's events.
pub const LOG_TARGET: &str = "triplicate::audit";
/// The `type` of an alert body.
pub const ALERT_TYPE: &str = "triplicate.audit.alert";
/// The `version` of an alert body.
pub const ALERT_VERSION: u32 = 1;

/// How long to wait for the service to write a bundle its checkpoint already names: it writes
/// the right edge of its tree to the tile files about once a second.
const FLUSH_WAIT: Duration = Duration::from_millis(1200);
/// Attempts at finding an entry bundle, [`FLUSH_WAIT`] apart.
const BUNDLE_ATTEMPTS: u32 = 3;
/// How long a shutting-down auditor waits for alerts still being delivered.
const ALERT_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The service's base URL.
    #[arg(long, env = "TRIPLICATE_URL")]
    pub url: String,
    /// Time between checks: `90s`, `5m`, `1h30m` (units s, m, h, d).
    #[arg(long, default_value = "60s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Serve `/metrics` (Prometheus text) and `/healthz` on this address.
    #[arg(long, value_name = "ADDR", conflicts_with = "once")]
    pub listen: Option<SocketAddr>,
    /// The notary's note verifier key (`name+hex+base64`), or a file holding it: the only key
    /// trusted. Without it, the key pinned for the server on first contact (as `submit` and
    /// `get` pin it) is trusted, with a warning.
    #[arg(long, value_name = "FILE")]
    pub notary_key: Option<String>,
    /// Where the last verified checkpoint is kept (`audit-<server>.json`) [default: the client
    /// state directory, `$TRIPLICATE_CLIENT_STATE_DIR` or `~/.config/triplicate/servers`].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Random entries spot-checked per check (all of them when the tree is smaller).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub samples: u64,
    /// Check once and exit: 0 ok, 1 failed, 2 the service could not be reached.
    #[arg(long)]
    pub once: bool,
    /// POST a signed JSON alert to this URL on a failed check (repeatable).
    #[arg(long = "webhook", value_name = "URL")]
    pub webhooks: Vec<String>,
    /// The environment variable holding the HMAC-SHA256 key that signs the alerts (as
    /// verification.toml's `secret_env`). Without it alerts are sent unsigned.
    #[arg(long, value_name = "VAR", requires = "webhooks")]
    pub webhook_secret_env: Option<String>,
    /// Consecutive unreachable checks before the auditor alerts (and counts them as failed).
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub unreachable_after: u32,
    /// With `--once`, print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = triplicate_verifier::parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("{s:?}: the interval must be at least one second"));
    }
    Ok(d)
}

pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    crate::client::runtime()?.block_on(run_async(args))
}

async fn run_async(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let url = normalise_url(&args.url)?;
    let trusted = match &args.notary_key {
        Some(spec) => Some(
            read_verifier_key(spec)
                .and_then(|k| TrustedKey::parse(&k).map_err(anyhow::Error::msg))
                .map_err(|e| Unreadable(format!("{e:#}")))?,
        ),
        None => {
            tracing::warn!(
                target: LOG_TARGET,
                %url,
                "no --notary-key: trusting the notary key pinned for this server on first \
                 contact (trust on first use, in the client state); give --notary-key with a key \
                 obtained out of band to trust only that key"
            );
            None
        }
    };
    let state_dir = match args.state_dir {
        Some(d) => d,
        None => {
            let file = StateDir::locate()?.file(&url);
            file.parent().map(Path::to_owned).unwrap_or_default()
        }
    };
    let state_file = state_dir.join(format!("audit-{}.json", state_name(&url)));
    let stored = load_state(&state_file)?;
    if let Some(s) = &stored {
        anyhow::ensure!(
            s.url == url,
            Unreadable(format!(
                "{} is the auditor's state for {}, not {url}",
                state_file.display(),
                s.url
            ))
        );
    }
    let metrics = Arc::new(AuditMetrics::new());
    if let Some(s) = &stored {
        metrics.restore(s);
    }
    let alerts = if args.webhooks.is_empty() {
        None
    } else {
        let targets = args
            .webhooks
            .iter()
            .map(|u| Webhook::new(u.clone(), args.webhook_secret_env.clone()))
            .collect();
        Some(Arc::new(
            WebhookSender::new(targets, DeliveryOptions::default())
                .context("set up the --webhook targets")?,
        ))
    };
    let mut auditor = Auditor {
        client: Client::new(&url, None)?,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("triplicate/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("build the HTTP client")?,
        url,
        trusted,
        state_file,
        stored,
        last: None,
        samples: args.samples,
        metrics: metrics.clone(),
        alerts,
        unreachable_after: args.unreachable_after,
        unreachable_streak: 0,
        deliveries: tokio::task::JoinSet::new(),
    };

    if args.once {
        let outcome = auditor.check_and_report().await;
        auditor.finish_alerts(None).await;
        print_outcome(&outcome, &auditor, args.json);
        return Ok(ExitCode::from(outcome.exit_code()));
    }

    // Before anything is printed: whoever reads the first line may stop the auditor at once.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("install the SIGTERM handler")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server = None;
    let mut shown = String::new();
    if let Some(addr) = args.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen on {addr}"))?;
        let bound = listener.local_addr().context("read the bound address")?;
        shown = format!("; metrics on http://{bound}/metrics");
        server = Some(tokio::spawn(serve_metrics(listener, metrics, stop_rx)));
    }
    println!(
        "Auditing {} every {}s{shown}. Stop with Ctrl-C.",
        auditor.url,
        args.interval.as_secs()
    );
    let shutdown = async {
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                if let Err(e) = r {
                    tracing::error!(target: LOG_TARGET, error = %e, "wait for Ctrl-C");
                }
            }
            _ = term.recv() => {}
        }
    };
    tokio::pin!(shutdown);
    let mut ticks = tokio::time::interval(args.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // A check cut short by a signal leaves the state as it was (it is written last).
        let stop = tokio::select! {
            () = &mut shutdown => true,
            _ = async { ticks.tick().await; auditor.check_and_report().await } => false,
        };
        // Reap finished deliveries so the set does not grow.
        while auditor.deliveries.try_join_next().is_some() {}
        if stop {
            break;
        }
    }
    tracing::info!(target: LOG_TARGET, "stopping");
    auditor.finish_alerts(Some(ALERT_GRACE)).await;
    let _ = stop_tx.send(true);
    if let Some(server) = server {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(target: LOG_TARGET, error = %e, "metrics server"),
            Err(e) => tracing::error!(target: LOG_TARGET, error = %e, "metrics server task"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// Trust and state.

/// The notary key the auditor trusts: its note verifier key and the public key in it.
#[derive(Debug, Clone)]
struct TrustedKey {
    vkey: String,
    key: PublicKey,
}

impl TrustedKey {
    fn parse(vkey: &str) -> Result<TrustedKey, String> {
        let vkey = vkey.trim();
        let (_, key) = triplicate_keys::note::parse_note_verifier_key(vkey)
            .map_err(|e| format!("notary key {vkey:?}: {e}"))?;
        Ok(TrustedKey {
            vkey: vkey.to_owned(),
            key,
        })
    }
}

/// The auditor's state file: the last checkpoint it verified.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AuditState {
    /// The service's normalised base URL.
    url: String,
    /// The key the checkpoint was verified with.
    notary_verifier_key: String,
    /// The last verified checkpoint (a signed note).
    checkpoint: String,
    /// Its tree size and root, for people reading the file.
    size: u64,
    root: String,
    /// When it was verified (RFC 3339).
    verified_at: String,
}

fn load_state(path: &Path) -> anyhow::Result<Option<AuditState>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Unreadable(format!("read {}: {e}", path.display())).into()),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Unreadable(format!(
            "{} is not the auditor's state file ({e}); move it aside to start afresh",
            path.display()
        ))
        .into()
    })
}

// ---------------------------------------------------------------------------------------------
// A check.

/// What one check established.
#[derive(Debug)]
struct Verified {
    checkpoint: SignedCheckpoint,
    /// The tree size verified before, if any.
    previous: Option<u64>,
    /// The entries spot-checked.
    sampled: Vec<u64>,
}

/// Why a check did not pass.
#[derive(Debug)]
enum Failure {
    /// Something did not verify. `checkpoint` is the service's, when its signature verified.
    Failed {
        message: String,
        checkpoint: Option<SignedCheckpoint>,
    },
    /// The service did not answer (or answered 5xx).
    Unreachable(String),
}

impl Failure {
    fn failed(message: impl Into<String>, checkpoint: Option<&SignedCheckpoint>) -> Failure {
        Failure::Failed {
            message: message.into(),
            checkpoint: checkpoint.cloned(),
        }
    }

    /// A client call's error: [`Unreachable`] stays unreachable, anything else failed.
    fn from_client(e: anyhow::Error, checkpoint: Option<&SignedCheckpoint>) -> Failure {
        if let Some(u) = e.chain().find_map(|c| c.downcast_ref::<Unreachable>()) {
            return Failure::Unreachable(u.0.clone());
        }
        let message = match e.downcast_ref::<Untrusted>() {
            Some(u) => u.0.clone(),
            None => format!("{e:#}"),
        };
        Failure::failed(message, checkpoint)
    }

    /// The same, for a failure of the consistency step.
    fn rewritten(e: anyhow::Error, checkpoint: &SignedCheckpoint) -> Failure {
        match Failure::from_client(e, Some(checkpoint)) {
            Failure::Failed {
                message,
                checkpoint,
            } => Failure::Failed {
                message: format!("the log was rewritten: {message}"),
                checkpoint,
            },
            u => u,
        }
    }
}

/// The outcome of a check as reported.
#[derive(Debug)]
enum Outcome {
    Ok(Verified),
    Failed {
        message: String,
        checkpoint: Option<SignedCheckpoint>,
    },
    Unreachable {
        message: String,
        streak: u32,
    },
}

impl Outcome {
    fn exit_code(&self) -> u8 {
        match self {
            Outcome::Ok(_) => 0,
            Outcome::Failed { .. } => 1,
            Outcome::Unreachable { .. } => 2,
        }
    }
}

#[derive(Debug)]
struct Auditor {
    url: String,
    client: Client,
    /// For the tiles, which `Client` does not fetch.
    http: reqwest::Client,
    /// `None` until the pinned key is known (no `--notary-key`).
    trusted: Option<TrustedKey>,
    state_file: PathBuf,
    /// The state file as loaded, until its checkpoint is verified with the trusted key.
    stored: Option<AuditState>,
    /// The last checkpoint verified.
    last: Option<SignedCheckpoint>,
    samples: u64,
    metrics: Arc<AuditMetrics>,
    alerts: Option<Arc<WebhookSender>>,
    unreachable_after: u32,
    unreachable_streak: u32,
    deliveries: tokio::task::JoinSet<()>,
}

impl Auditor {
    /// One check, counted, logged and (on failure) alerted.
    async fn check_and_report(&mut self) -> Outcome {
        let started = Timestamp::now();
        let result = self.check().await;
        self.metrics.last_check.set(unix_now());
        match result {
            Ok(v) => {
                self.unreachable_streak = 0;
                self.metrics.observe_ok(&v);
                tracing::info!(
                    target: LOG_TARGET,
                    url = %self.url,
                    size = v.checkpoint.size,
                    root = %b64(&v.checkpoint.root),
                    previous_size = v.previous,
                    sampled = v.sampled.len(),
                    "audit check passed"
                );
                Outcome::Ok(v)
            }
            Err(Failure::Failed {
                message,
                checkpoint,
            }) => {
                self.unreachable_streak = 0;
                self.metrics.observe_failed();
                tracing::error!(
                    target: LOG_TARGET,
                    url = %self.url,
                    failure = %message,
                    size = checkpoint.as_ref().map(|c| c.size),
                    last_verified_size = self.last_size(),
                    "audit check FAILED"
                );
                let body = self.alert_body("failed", &started, &message, checkpoint.as_ref());
                self.alert(body);
                Outcome::Failed {
                    message,
                    checkpoint,
                }
            }
            Err(Failure::Unreachable(message)) => {
                self.unreachable_streak = self.unreachable_streak.saturating_add(1);
                self.metrics.unreachable.inc();
                let streak = self.unreachable_streak;
                if streak >= self.unreachable_after {
                    self.metrics.observe_failed();
                    tracing::error!(
                        target: LOG_TARGET,
                        url = %self.url,
                        failure = %message,
                        consecutive = streak,
                        "audit check FAILED: the service is unreachable"
                    );
                    let body = self.alert_body("unreachable", &started, &message, None);
                    self.alert(body);
                } else {
                    tracing::warn!(
                        target: LOG_TARGET,
                        url = %self.url,
                        failure = %message,
                        consecutive = streak,
                        alert_after = self.unreachable_after,
                        "audit check could not reach the service"
                    );
                }
                Outcome::Unreachable { message, streak }
            }
        }
    }

    fn last_size(&self) -> Option<u64> {
        self.last
            .as_ref()
            .map(|c| c.size)
            .or(self.stored.as_ref().map(|s| s.size))
    }

    async fn check(&mut self) -> Result<Verified, Failure> {
        let key = self.trusted_key().await?;
        self.verify_stored(&key)?;
        let note = self
            .client
            .checkpoint()
            .await
            .map_err(|e| Failure::from_client(e, None))?;
        let cp = SignedCheckpoint::verify(&note, &key.vkey).map_err(|e| {
            Failure::failed(
                format!(
                    "the checkpoint that {} serves is not signed by the trusted notary key: {e}",
                    self.url
                ),
                None,
            )
        })?;
        let previous = self.last.as_ref().map(|c| c.size);
        if let Some(old) = &self.last {
            if cp.size < old.size {
                return Err(Failure::failed(
                    format!(
                        "the log was rewritten: {} now presents a tree of {} entries, smaller \
                         than the tree of {} entries (root {}) verified before",
                        self.url,
                        cp.size,
                        old.size,
                        b64(&old.root)
                    ),
                    Some(&cp),
                ));
            }
            let proof = if old.size == 0 || old.size == cp.size {
                Vec::new()
            } else {
                self.client
                    .consistency(old.size, cp.size)
                    .await
                    .map_err(|e| Failure::rewritten(e, &cp))?
            };
            check_consistency(old, &cp, &proof).map_err(|e| {
                Failure::failed(
                    format!(
                        "the log was rewritten: {}'s tree of {} entries (root {}) does not \
                         extend the tree of {} entries (root {}) verified before: {e}",
                        self.url,
                        cp.size,
                        b64(&cp.root),
                        old.size,
                        b64(&old.root)
                    ),
                    Some(&cp),
                )
            })?;
        }
        let sampled = self.spot_check(&cp, &key).await?;
        self.remember(&cp, &key)
            .map_err(|e| Failure::failed(format!("{e:#}"), Some(&cp)))?;
        self.last = Some(cp.clone());
        Ok(Verified {
            checkpoint: cp,
            previous,
            sampled,
        })
    }

    /// The trusted key: `--notary-key`, or the key pinned for the server (pinning it now on
    /// first contact, through the client's per-server state).
    async fn trusted_key(&mut self) -> Result<TrustedKey, Failure> {
        if let Some(k) = &self.trusted {
            return Ok(k.clone());
        }
        let dir = StateDir::locate()
            .map_err(|e| Failure::failed(format!("locate the client state: {e:#}"), None))?;
        let session = Session::open(&self.client, &dir)
            .await
            .map_err(|e| Failure::from_client(e, None))?;
        session
            .save()
            .map_err(|e| Failure::failed(format!("{e:#}"), None))?;
        let key = TrustedKey::parse(&session.vkey).map_err(|e| Failure::failed(e, None))?;
        tracing::warn!(
            target: LOG_TARGET,
            url = %self.url,
            notary_key = %key.vkey,
            pinned_in = %dir.file(&self.url).display(),
            "trusting the notary key pinned for this server on first contact"
        );
        self.trusted = Some(key.clone());
        Ok(key)
    }

    /// Verifies the checkpoint of the state file with the trusted key, once. A state that does
    /// not verify fails every check: it was verified with another key, or it was altered.
    fn verify_stored(&mut self, key: &TrustedKey) -> Result<(), Failure> {
        let Some(s) = &self.stored else {
            return Ok(());
        };
        if self.last.is_some() {
            return Ok(());
        }
        let cp = SignedCheckpoint::verify(&s.checkpoint, &key.vkey).map_err(|e| {
            Failure::failed(
                format!(
                    "the checkpoint remembered in {} does not verify with the trusted notary key \
                     (it was verified with {}): {e}; move the file aside only if you know why",
                    self.state_file.display(),
                    s.notary_verifier_key
                ),
                None,
            )
        })?;
        self.last = Some(cp);
        Ok(())
    }

    /// Writes the state file (atomically) for a verified checkpoint.
    fn remember(&mut self, cp: &SignedCheckpoint, key: &TrustedKey) -> anyhow::Result<()> {
        let state = AuditState {
            url: self.url.clone(),
            notary_verifier_key: key.vkey.clone(),
            checkpoint: cp.note.clone(),
            size: cp.size,
            root: b64(&cp.root),
            verified_at: Timestamp::now().to_string(),
        };
        let mut bytes = serde_json::to_vec_pretty(&state)?;
        bytes.push(b'\n');
        write_atomic(&self.state_file, &bytes)
            .context("remember the verified checkpoint (a restarted auditor needs it)")?;
        self.stored = Some(state);
        Ok(())
    }

    /// Spot-checks up to `samples` distinct random entries of `cp`'s tree and returns their
    /// indexes. Every sampled entry is checked; the failure lists every entry that failed.
    async fn spot_check(
        &self,
        cp: &SignedCheckpoint,
        key: &TrustedKey,
    ) -> Result<Vec<u64>, Failure> {
        let picks = pick(cp.size, self.samples);
        let mut bundles = HashMap::new();
        let mut problems = Vec::new();
        for &index in &picks {
            let (bytes, path) = self.entry(index, cp, key, &mut bundles).await?;
            let leaf = leaf_hash(&bytes);
            let (served, proof) = self
                .client
                .inclusion(index, cp.size)
                .await
                .map_err(|e| Failure::from_client(e, Some(cp)))?;
            self.metrics.entries.inc();
            if let Err(e) = verify_inclusion(&proof, index, cp.size, &cp.root, &leaf) {
                problems.push(format!(
                    "entry {index}: its bytes in {path} hash to {}, which the inclusion proof \
                     does not lead from to the signed root ({e}; the service's proof is for \
                     leaf {})",
                    b64(&leaf),
                    b64(&served)
                ));
                continue;
            }
            if let Err(e) = check_record(&bytes, index, &key.key) {
                problems.push(format!("entry {index}: {e}"));
            }
        }
        if problems.is_empty() {
            Ok(picks)
        } else {
            Err(Failure::failed(
                format!(
                    "{} of {} spot-checked entries of {}'s tree of {} entries failed: {}",
                    problems.len(),
                    picks.len(),
                    self.url,
                    cp.size,
                    problems.join("; ")
                ),
                Some(cp),
            ))
        }
    }

    /// Entry `index` of `cp`'s tree, from its entry bundle, and the bundle's path. The service
    /// writes the bundle at its tree's right edge about once a second, so a bundle its newest
    /// checkpoint names may be missing for a moment: the auditor then waits and also tries the
    /// full bundle and the bundle of the service's newer tree, which begin with the same
    /// entries (what is read is verified against `cp`'s root either way).
    async fn entry(
        &self,
        index: u64,
        cp: &SignedCheckpoint,
        key: &TrustedKey,
        bundles: &mut HashMap<u64, (String, Vec<Vec<u8>>)>,
    ) -> Result<(Vec<u8>, String), Failure> {
        let (n, width) = bundle_for(index, cp.size);
        // Below TILE_WIDTH, so it fits in usize.
        let offset = usize::try_from(index % TILE_WIDTH).unwrap_or_default();
        if let Some((path, entries)) = bundles.get(&n) {
            if let Some(e) = entries.get(offset) {
                return Ok((e.clone(), path.clone()));
            }
        }
        let mut widths = vec![width];
        if width < TILE_WIDTH {
            widths.push(TILE_WIDTH);
        }
        for attempt in 1..=BUNDLE_ATTEMPTS {
            for &w in &widths {
                let path = bundle_path(n, w);
                let Some(bytes) = self.tile(&path, cp).await? else {
                    continue;
                };
                let entries = parse_bundle(&bytes).map_err(|e| {
                    Failure::failed(
                        format!("{path} served by {} is not an entry bundle: {e}", self.url),
                        Some(cp),
                    )
                })?;
                if entries.len() as u64 != w {
                    return Err(Failure::failed(
                        format!(
                            "{path} served by {} holds {} entries, not {w}",
                            self.url,
                            entries.len()
                        ),
                        Some(cp),
                    ));
                }
                let entry = entries.get(offset).cloned().unwrap_or_default();
                bundles.insert(n, (path.clone(), entries));
                return Ok((entry, path));
            }
            if attempt == BUNDLE_ATTEMPTS {
                break;
            }
            tokio::time::sleep(FLUSH_WAIT).await;
            // Best effort: a newer tree's bundle holds the same entries first.
            if let Ok(note) = self.client.checkpoint().await {
                if let Ok(newer) = SignedCheckpoint::verify(&note, &key.vkey) {
                    if newer.size > cp.size {
                        let (_, w) = bundle_for(index, newer.size);
                        if !widths.contains(&w) {
                            widths.push(w);
                        }
                    }
                }
            }
        }
        Err(Failure::failed(
            format!(
                "{} does not serve {} (nor a later bundle holding entry {index}), which its \
                 checkpoint of {} entries needs",
                self.url,
                bundle_path(n, width),
                cp.size
            ),
            Some(cp),
        ))
    }

    /// `GET /v1/ledger/<path>`: the tile's bytes, or `None` when the service has no such tile.
    async fn tile(&self, path: &str, cp: &SignedCheckpoint) -> Result<Option<Vec<u8>>, Failure> {
        let what = format!("get {path} at {}", self.url);
        let resp = self
            .http
            .get(format!("{}/v1/ledger/{path}", self.url))
            .send()
            .await
            .map_err(|e| Failure::Unreachable(format!("{what}: {:#}", anyhow::Error::new(e))))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status.is_server_error() {
            return Err(Failure::Unreachable(format!("{what}: status {status}")));
        }
        if !status.is_success() {
            return Err(Failure::failed(
                format!("{what}: status {status}"),
                Some(cp),
            ));
        }
        let bytes = resp.bytes().await.map_err(|e| {
            Failure::Unreachable(format!(
                "{what}: read the answer: {:#}",
                anyhow::Error::new(e)
            ))
        })?;
        Ok(Some(bytes.to_vec()))
    }

    /// The alert's JSON body.
    fn alert_body(
        &self,
        kind: &str,
        checked_at: &Timestamp,
        failure: &str,
        checkpoint: Option<&SignedCheckpoint>,
    ) -> Value {
        let last = match &self.last {
            Some(c) => cp_ref(c.size, &b64(&c.root)),
            None => self
                .stored
                .as_ref()
                .map(|s| cp_ref(s.size, &s.root))
                .unwrap_or(Value::Null),
        };
        json!({
            "type": ALERT_TYPE,
            "version": ALERT_VERSION,
            "kind": kind,
            "url": self.url,
            "checked_at": checked_at.to_string(),
            "failure": failure,
            "checkpoint": checkpoint.map(|c| cp_ref(c.size, &b64(&c.root))),
            "last_verified": last,
            "consecutive_unreachable": self.unreachable_streak,
        })
    }

    /// Posts an alert to every `--webhook` in the background.
    fn alert(&mut self, body: Value) {
        let Some(sender) = self.alerts.clone() else {
            return;
        };
        let metrics = self.metrics.clone();
        self.deliveries.spawn(async move {
            for d in sender.deliver_json(&body).await {
                metrics.observe_webhook(d.delivered);
            }
        });
    }

    /// Waits for the alerts still being delivered, at most `grace` (for ever with `None`).
    async fn finish_alerts(&mut self, grace: Option<Duration>) {
        let drain = async { while self.deliveries.join_next().await.is_some() {} };
        match grace {
            None => drain.await,
            Some(g) => {
                if tokio::time::timeout(g, drain).await.is_err() {
                    tracing::warn!(
                        target: LOG_TARGET,
                        "stopping with alerts still undelivered"
                    );
                }
            }
        }
    }
}

fn cp_ref(size: u64, root: &str) -> Value {
    json!({ "size": size, "root": root })
}

/// Up to `samples` distinct random indexes below `size`, ascending (all of them when `size` is
/// at most `samples`).
fn pick(size: u64, samples: u64) -> Vec<u64> {
    if size <= samples {
        return (0..size).collect();
    }
    let length = usize::try_from(size).unwrap_or(usize::MAX);
    let amount = usize::try_from(samples).unwrap_or(usize::MAX);
    let mut v: Vec<u64> = rand::seq::index::sample(&mut rand::thread_rng(), length, amount)
        .into_iter()
        .map(|i| i as u64)
        .collect();
    v.sort_unstable();
    v
}

/// Splits a C2SP entry bundle (the ledger's own parser: each entry a big-endian `uint16` length
/// and that many bytes), owning the entries.
fn parse_bundle(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    triplicate_ledger::bundle::parse(data).map(|e| e.into_iter().map(<[u8]>::to_vec).collect())
}

/// Checks that entry `index` is a canonical record with `seq` = `index`, notarised by `notary`.
fn check_record(bytes: &[u8], index: u64, notary: &PublicKey) -> Result<(), String> {
    let record = Record::from_canonical_bytes(bytes)
        .map_err(|e| format!("is not a canonical record: {e}"))?;
    if record.seq != index {
        return Err(format!("is a record with seq {}, not {index}", record.seq));
    }
    let sig = &record.notary;
    if sig.alg != notary.alg() || sig.key_id != notary.key_id() {
        return Err(format!(
            "is notarised by key {} ({}), not by the trusted notary key {} ({})",
            sig.key_id,
            sig.alg,
            notary.key_id(),
            notary.alg()
        ));
    }
    let msg = record
        .notary_message()
        .map_err(|e| format!("its notary message cannot be built: {e}"))?;
    notary
        .verify(&msg, &sig.signature)
        .map_err(|e| format!("its notary signature does not verify: {e}"))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Output.

fn print_outcome(outcome: &Outcome, auditor: &Auditor, json: bool) {
    let cp = |c: &SignedCheckpoint| cp_ref(c.size, &b64(&c.root));
    let last = auditor.last.as_ref().map(cp);
    if json {
        let v = match outcome {
            Outcome::Ok(v) => json!({
                "result": "ok",
                "url": auditor.url,
                "checkpoint": cp(&v.checkpoint),
                "previous_size": v.previous,
                "sampled": v.sampled,
                "state_file": auditor.state_file,
            }),
            Outcome::Failed {
                message,
                checkpoint,
            } => json!({
                "result": "failed",
                "url": auditor.url,
                "failure": message,
                "checkpoint": checkpoint.as_ref().map(cp),
                "last_verified": last,
                "state_file": auditor.state_file,
            }),
            Outcome::Unreachable { message, streak } => json!({
                "result": "unreachable",
                "url": auditor.url,
                "failure": message,
                "consecutive_unreachable": streak,
                "last_verified": last,
                "state_file": auditor.state_file,
            }),
        };
        println!("{v}");
        return;
    }
    match outcome {
        Outcome::Ok(v) => {
            let c = &v.checkpoint;
            let history = match v.previous {
                None => "first check: nothing verified before".to_owned(),
                Some(p) if p == c.size => format!("the same tree as verified before ({p} entries)"),
                Some(p) => format!("consistent with the tree of {p} entries verified before"),
            };
            println!(
                "OK: {} serves a tree of {} entries (root {}), signed by the trusted notary key; \
                 {history}; {} entries spot-checked{}",
                auditor.url,
                c.size,
                b64(&c.root),
                v.sampled.len(),
                if v.sampled.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({})",
                        v.sampled
                            .iter()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
        }
        Outcome::Failed { message, .. } => println!("FAILED: {message}"),
        Outcome::Unreachable { message, .. } => println!("UNREACHABLE: {message}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics.

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

type IntGauge = Gauge<i64, std::sync::atomic::AtomicI64>;
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// `triplicate_audit_*`; `ops/prometheus/triplicate-rules.yml` alerts on them.
#[derive(Debug)]
struct AuditMetrics {
    registry: Registry,
    checks: Family<ResultLabel, Counter>,
    last_success: FloatGauge,
    last_check: FloatGauge,
    tree_size: IntGauge,
    unreachable: Counter,
    entries: Counter,
    webhook: Family<ResultLabel, Counter>,
}

impl AuditMetrics {
    fn new() -> AuditMetrics {
        let mut registry = Registry::with_prefix("triplicate_audit");
        let checks = Family::<ResultLabel, Counter>::default();
        let last_success = FloatGauge::default();
        let last_check = FloatGauge::default();
        let tree_size = IntGauge::default();
        let unreachable = Counter::default();
        let entries = Counter::default();
        let webhook = Family::<ResultLabel, Counter>::default();
        registry.register(
            "checks",
            "Audit checks by result (ok, failed; an unreachable service counts as failed from \
             the --unreachable-after-th consecutive check on)",
            checks.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "When the last audit check passed (restored from the state file at start)",
            last_success.clone(),
        );
        registry.register(
            "last_check_timestamp_seconds",
            "When the last audit check finished, whatever its result",
            last_check.clone(),
        );
        registry.register(
            "tree_size",
            "Entries in the last checkpoint the auditor verified",
            tree_size.clone(),
        );
        registry.register(
            "unreachable",
            "Audit checks that could not reach the service",
            unreachable.clone(),
        );
        registry.register(
            "entries_checked",
            "Entries spot-checked (re-hashed and proved included)",
            entries.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Alert webhook deliveries by result (delivered, failed)",
            webhook.clone(),
        );
        // Every series an alert rule takes `increase()` of exists from the start at 0, so the
        // first failure is an increase (ops/prometheus/triplicate-rules.yml).
        for result in ["ok", "failed"] {
            checks.get_or_create(&ResultLabel { result }).inc_by(0);
        }
        for result in ["delivered", "failed"] {
            webhook.get_or_create(&ResultLabel { result }).inc_by(0);
        }
        AuditMetrics {
            registry,
            checks,
            last_success,
            last_check,
            tree_size,
            unreachable,
            entries,
            webhook,
        }
    }

    /// Starts from the state file: the last verified tree and when it was verified.
    fn restore(&self, s: &AuditState) {
        self.tree_size
            .set(i64::try_from(s.size).unwrap_or(i64::MAX));
        let at = time::OffsetDateTime::parse(
            &s.verified_at,
            &time::format_description::well_known::Rfc3339,
        );
        if let Ok(at) = at {
            self.last_success.set(at.unix_timestamp() as f64);
        }
    }

    fn observe_ok(&self, v: &Verified) {
        self.checks
            .get_or_create(&ResultLabel { result: "ok" })
            .inc();
        self.last_success.set(unix_now());
        self.tree_size
            .set(i64::try_from(v.checkpoint.size).unwrap_or(i64::MAX));
    }

    fn observe_failed(&self) {
        self.checks
            .get_or_create(&ResultLabel { result: "failed" })
            .inc();
    }

    fn observe_webhook(&self, delivered: bool) {
        let result = if delivered { "delivered" } else { "failed" };
        self.webhook.get_or_create(&ResultLabel { result }).inc();
    }

    fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/metrics` and `/healthz` until `stop` turns true.
async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<AuditMetrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    use axum::http::header;
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn picks_are_distinct_sorted_and_below_the_size() {
        assert_eq!(pick(0, 8), Vec::<u64>::new());
        assert_eq!(pick(3, 8), vec![0, 1, 2]);
        for _ in 0..50 {
            let p = pick(1000, 8);
            assert_eq!(p.len(), 8);
            assert!(p.windows(2).all(|w| w[0] < w[1]), "{p:?}");
            assert!(p.iter().all(|&i| i < 1000));
        }
    }

    #[test]
    fn bundles_split_and_refuse_truncation() {
        let data = [0, 3, b'a', b'b', b'c', 0, 0, 0, 1, b'z'];
        let e = parse_bundle(&data).unwrap();
        assert_eq!(e, vec![b"abc".to_vec(), Vec::new(), b"z".to_vec()]);
        assert!(parse_bundle(&data[..data.len() - 1]).is_err());
        assert!(parse_bundle(&[0]).is_err());
    }

    #[test]
    fn intervals_need_a_unit_and_a_second() {
        assert_eq!(parse_interval("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_interval("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("60").is_err());
    }
}
