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
            return wait(running).await;
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
        wait(running).await
    })
}

/// Reloads policies on SIGHUP; stops on Ctrl-C or SIGTERM after finishing in-flight requests.
async fn wait(running: triplicate_server::Running) -> anyhow::Result<ExitCode> {
    let service = running.service.clone();
    tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler; reload policies over HTTP");
                return;
            }
        };
        while hup.recv().await.is_some() {
            match service.reload_policy() {
                Ok(()) => tracing::info!("policy reloaded on SIGHUP"),
                Err(e) => {
                    tracing::error!(error = %e, "policy refused on SIGHUP; the old one stays")
                }
            }
        }
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("install the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("wait for Ctrl-C")?,
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
    running.stop().await.context("stop the server")?;
    Ok(ExitCode::SUCCESS)
}
