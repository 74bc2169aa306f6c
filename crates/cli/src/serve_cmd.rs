//! `triplicate serve`: the governance service on its embedded defaults, or with PostgreSQL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use triplicate_server::setup::{ProjectionChoice, StreamChoice, DEV_ORIGIN};
use triplicate_server::{ServeConfig, ServiceOptions};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the ledger, the stream, the projection and the development keys live
    /// [default: ./data].
    #[arg(long, env = "TRIPLICATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "TRIPLICATE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// PostgreSQL URL for the projection (an owner role: migrations run at start; the service
    /// then acts as `triplicate_writer`). Without it the projection is `<data-dir>/projection.db`.
    #[arg(long, env = "TRIPLICATE_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// NATS JetStream server URLs for the event stream (`nats://host:4222`, comma-separated;
    /// `?stream=NAME&subject_prefix=P&replicas=N` at the end names the JetStream stream).
    /// Without it the stream is `<data-dir>/stream.db`.
    #[arg(long, env = "TRIPLICATE_STREAM_URL")]
    pub stream_url: Option<String>,
    /// Checkpoint origin for a new ledger.
    #[arg(long, default_value = DEV_ORIGIN)]
    pub origin: String,
    /// A configuration file (see `triplicate_server::config`): its notary key, policies, tokens
    /// and stores; nothing is generated. `--listen` and `--data-dir` given explicitly override it.
    #[arg(long, env = "TRIPLICATE_CONFIG")]
    pub config: Option<PathBuf>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async move {
        // Before anything is printed: whoever reads the address line may signal at once, and a
        // signal that arrives before its handler would kill the process instead of stopping it.
        let signals = Signals::install()?;
        if let Some(path) = &args.config {
            let mut config = triplicate_server::config::Config::load(path)?;
            if let Some(listen) = args.listen {
                config.listen = listen;
            }
            if let Some(dir) = &args.data_dir {
                config.data_dir = dir.clone();
            }
            if let Some(url) = args.postgres_url {
                config.projection.url = url;
            }
            if let Some(url) = args.stream_url {
                config.stream.url = url;
            }
            let data_dir = config.data_dir.clone();
            let running = triplicate_server::start_configured(config, ServiceOptions::default())
                .await
                .context("start the service")?;
            println!(
                "Triplicate is serving on http://{} (data in {}).",
                running.addr,
                data_dir.display()
            );
            return wait(running, signals).await;
        }
        let projection = match args.postgres_url {
            Some(url) => ProjectionChoice::Postgres { url },
            None => ProjectionChoice::Sqlite,
        };
        let stream = match &args.stream_url {
            Some(url) => StreamChoice::parse(url, Default::default()).map_err(anyhow::Error::msg)?,
            None => StreamChoice::Sqlite,
        };
        let data_dir = args.data_dir.unwrap_or_else(crate::default_data_dir);
        let running = triplicate_server::start(ServeConfig {
            data_dir: data_dir.clone(),
            listen: args
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            projection,
            stream,
            origin: args.origin,
            options: ServiceOptions::default(),
        })
        .await
        .context("start the service")?;
        println!(
            "Triplicate is serving on http://{} (data in {}).\n\
             DEVELOPMENT SET-UP: software notary and approver keys in {}/keys, policy in {}/policies,\n\
             admin token in {}/dev-admin-token. Stop with Ctrl-C.",
            running.addr,
            data_dir.display(),
            data_dir.display(),
            data_dir.display(),
            data_dir.display(),
        );
        wait(running, signals).await
    })
}

/// The handlers `serve` reacts to, installed before the service announces itself.
struct Signals {
    hup: Option<tokio::signal::unix::Signal>,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler; reload policies over HTTP");
                None
            }
        };
        Ok(Self {
            hup,
            term: signal(SignalKind::terminate()).context("install the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("install the Ctrl-C handler")?,
        })
    }
}

/// Reloads policies on SIGHUP; stops on Ctrl-C or SIGTERM after finishing in-flight requests.
async fn wait(running: triplicate_server::Running, signals: Signals) -> anyhow::Result<ExitCode> {
    let Signals {
        hup,
        mut term,
        mut int,
    } = signals;
    let reloader = hup.map(|mut hup| {
        let service = running.service.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match service.reload_policy() {
                    Ok(()) => tracing::info!("policy reloaded on SIGHUP"),
                    Err(e) => {
                        tracing::error!(error = %e, "policy refused on SIGHUP; the old one stays")
                    }
                }
            }
        })
    });
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
    // The reloader holds a handle on the service; stopping waits for every handle to go.
    if let Some(r) = reloader {
        r.abort();
    }
    running.stop().await.context("stop the server")?;
    Ok(ExitCode::SUCCESS)
}
