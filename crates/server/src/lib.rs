//! `triplicate-server`: the governance service. The write path (`service`), the catch-up
//! worker (`catchup`), the HTTP API (`http`) with its auth, problem details and metrics, and
//! the auditors' review pages (`ui`).
//!
//! Must not know: SQL, file formats or key storage — it drives the store traits (through the
//! backend enums in `stores`), the policy and the `Signer` trait. Only this crate knows HTTP.

// The OpenAPI document is one large `json!` literal.
#![recursion_limit = "256"]

pub mod auth;
pub mod catchup;
pub mod config;
pub mod crosscheck;
pub mod drill;
mod drills_http;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod rebuild;
pub mod recovery;
pub mod service;
pub mod setup;
pub mod stores;
pub mod ui;
mod verification_http;

pub use service::{Service, ServiceOptions, ServiceParts};

/// Serves `router` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: http::AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = http::router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// What `triplicate serve` runs: where, on which stores.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: std::path::PathBuf,
    pub listen: std::net::SocketAddr,
    pub projection: setup::ProjectionChoice,
    /// The event stream (the embedded one unless set).
    pub stream: setup::StreamChoice,
    pub origin: String,
    pub options: ServiceOptions,
}

/// How long [`Running::stop`] waits for the stores to be released.
pub const STOP_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A started service: its address, the service handle, and the development admin token.
#[derive(Debug)]
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub service: Service,
    pub admin_token: String,
    pub approvers: Vec<triplicate_keys::SoftwareSigner>,
    /// The development auditor's token (empty for a configured service).
    pub auditor_token: String,
    /// The development auditor's key (group `auditors`), for a development set-up.
    pub auditor: Option<triplicate_keys::SoftwareSigner>,
    /// The cross-verifier (its loop runs on the `verification.toml` schedule).
    pub crosscheck: std::sync::Arc<crosscheck::CrossCheck>,
    /// The recovery drills (their loop runs on the `[drills.*]` schedules).
    pub drills: std::sync::Arc<drill::Drills>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting connections, finishes in-flight requests, stops the workers and makes
    /// the ledger's tiles and checkpoint current on disk.
    ///
    /// Then waits until the stores are released (the ledger's lock, database handles), so
    /// whatever opens them next in this process finds them free; for at most
    /// [`STOP_RELEASE_WAIT`], since a caller may still hold a clone of [`Running::service`].
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        let out = (&mut self.server)
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        let Running {
            service,
            crosscheck,
            drills,
            ..
        } = self;
        drop((crosscheck, drills));
        if tokio::time::timeout(STOP_RELEASE_WAIT, service.close())
            .await
            .is_err()
        {
            tracing::warn!("stopped, but another handle on the service still holds its stores");
        }
        out
    }

    /// Waits until the server stops (it stops on its own only on an error).
    pub async fn wait(mut self) -> std::io::Result<()> {
        (&mut self.server)
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
    }
}

/// Starts the service on the development set-up under `config.data_dir` (see
/// [`setup::dev_setup`]): opens the stores, builds the index, starts the committer, the
/// catch-up worker, the ledger flusher and the HTTP server.
pub async fn start(config: ServeConfig) -> Result<Running, StartFailure> {
    let dev = setup::dev_setup(&config.data_dir)?;
    let (parts, ledger) = setup::open_parts(
        &config.data_dir,
        &config.origin,
        dev.notary.clone(),
        &dev.policy_dir,
        config.projection.clone(),
        &config.stream,
        config.options.clone(),
    )
    .await?;
    launch(
        parts,
        ledger,
        auth::Tokens::new(&dev.tokens).map_err(StartFailure::Config)?,
        false,
        config.listen,
        DevCredentials {
            admin_token: dev.admin_token,
            auditor_token: dev.auditor_token,
            approvers: dev.approvers,
            auditor: Some(dev.auditor),
        },
    )
    .await
}

/// Opens the notary signer `[notary]` names (a blocking call for hardware keys: module load,
/// login), and refuses keys that cannot sign checkpoints.
pub(crate) async fn open_notary(
    config: &config::NotaryConfig,
) -> Result<std::sync::Arc<dyn triplicate_keys::Signer>, StartFailure> {
    let spec = config.spec().map_err(StartFailure::Config)?;
    let opts = triplicate_keys::OpenOptions::named(config.name.clone());
    let shown = spec.to_string();
    let signer = tokio::task::spawn_blocking(move || triplicate_keys::open_signer(&spec, &opts))
        .await
        .map_err(|e| StartFailure::Config(format!("notary key {shown}: {e}")))?
        .map_err(|e| StartFailure::Config(format!("notary key {shown}: {e}")))?;
    if signer.algorithm() != triplicate_core::Algorithm::Ed25519 {
        return Err(StartFailure::Config(format!(
            "notary key {shown} is {}: {NOTARY_NEEDS_ED25519}",
            signer.algorithm()
        )));
    }
    Ok(signer)
}

/// Why the notary must be Ed25519, for the errors that refuse other keys.
pub const NOTARY_NEEDS_ED25519: &str = "the notary signs checkpoints as signed notes, and \
    note verifiers (C2SP signed-note, Go's golang.org/x/mod/sumdb/note) accept Ed25519 \
    signatures only, so a P-256-only token cannot be the notary; use an Ed25519 key \
    (PKCS#11 CKM_EDDSA, e.g. SoftHSM2 or an HSM; a YubiKey from firmware 5.7)";

/// Starts the service from a configuration file's settings: its notary key, its policy
/// directory, its tokens and its stores. Nothing is generated.
pub async fn start_configured(
    config: config::Config,
    options: ServiceOptions,
) -> Result<Running, StartFailure> {
    let notary = open_notary(&config.notary).await?;
    let projection = config.projection_choice().map_err(StartFailure::Config)?;
    let stream = config.stream_choice().map_err(StartFailure::Config)?;
    let (parts, ledger) = setup::open_parts(
        &config.data_dir,
        &config.origin,
        notary,
        &config.policy_dir,
        projection,
        &stream,
        options,
    )
    .await?;
    launch(
        parts,
        ledger,
        auth::Tokens::new(&config.tokens).map_err(StartFailure::Config)?,
        config.restrict_reads,
        config.listen,
        DevCredentials::default(),
    )
    .await
}

/// Why the service did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartFailure {
    #[error(transparent)]
    Setup(#[from] setup::SetupError),
    #[error(transparent)]
    Service(#[from] service::StartError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("listen: {0}")]
    Listen(#[from] std::io::Error),
}

/// What a development set-up hands to whoever started it (tests, the demo, the bench).
#[derive(Debug, Default)]
struct DevCredentials {
    admin_token: String,
    auditor_token: String,
    approvers: Vec<triplicate_keys::SoftwareSigner>,
    auditor: Option<triplicate_keys::SoftwareSigner>,
}

async fn launch(
    parts: ServiceParts,
    ledger: std::sync::Arc<triplicate_ledger::EmbeddedLedger>,
    tokens: auth::Tokens,
    restrict_reads: bool,
    listen: std::net::SocketAddr,
    dev: DevCredentials,
) -> Result<Running, StartFailure> {
    let verification = crosscheck::load_policy(parts.policy_dir.as_deref())
        .map_err(|e| StartFailure::Config(format!("verification policy: {e}")))?;
    let scheduled = parts.options.scheduled_crosscheck;
    let service = Service::start(parts).await?;
    let checker = std::sync::Arc::new(
        crosscheck::CrossCheck::new(service.clone(), verification)
            .map_err(|e| StartFailure::Config(e.to_string()))?,
    );
    checker.resume_from_store().await;
    let drills =
        std::sync::Arc::new(drill::Drills::new(service.clone(), checker.policy().clone()).await);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let catchup = catchup::spawn(&service, stopped(stop_rx.clone()));
    let flusher = spawn_flusher(ledger, stopped(stop_rx.clone()));
    let verifier = if scheduled {
        checker.clone().spawn(stopped(stop_rx.clone()))
    } else {
        tracing::info!("the scheduled cross-check is off (runs happen on demand only)");
        tokio::spawn(async {})
    };
    let drill_loop = drills.clone().spawn(stopped(stop_rx.clone()));
    let state = http::AppState {
        service: service.clone(),
        tokens: std::sync::Arc::new(tokens),
        restrict_reads,
        crosscheck: Some(checker.clone()),
        drills: Some(drills.clone()),
        ui: Default::default(),
    };
    let server = tokio::spawn(async move {
        let out = serve(listener, state, stopped(stop_rx)).await;
        let _ = catchup.await;
        let _ = flusher.await;
        let _ = verifier.await;
        let _ = drill_loop.await;
        out
    });
    tracing::info!(%addr, "serving");
    Ok(Running {
        addr,
        service,
        admin_token: dev.admin_token,
        approvers: dev.approvers,
        auditor_token: dev.auditor_token,
        auditor: dev.auditor,
        crosscheck: checker,
        drills,
        stop: Some(stop_tx),
        server,
    })
}

/// Writes the ledger's partial tiles and checkpoint to disk once a second when the ledger grew,
/// so `/v1/ledger/tile/...` can serve every tile of the checkpoint `/v1/ledger/checkpoint`
/// serves; and once more at shutdown.
pub fn spawn_flusher(
    ledger: std::sync::Arc<triplicate_ledger::EmbeddedLedger>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    use triplicate_ledger::Ledger;
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        let mut flushed = u64::MAX;
        loop {
            let stop = tokio::select! {
                () = &mut shutdown => true,
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => false,
            };
            let size = ledger.tree_size();
            if size != flushed {
                let l = ledger.clone();
                match tokio::task::spawn_blocking(move || l.flush()).await {
                    Ok(Ok(())) => flushed = size,
                    Ok(Err(e)) => tracing::error!(error = %e, "flush the ledger's tiles"),
                    Err(e) => tracing::error!(error = %e, "ledger flush task failed"),
                }
            }
            if stop {
                break;
            }
        }
    })
}
