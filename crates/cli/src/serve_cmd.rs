//! `triplicate serve`: the governance service on its embedded defaults, or with PostgreSQL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use triplicate_server::setup::{ProjectionChoice, DEV_ORIGIN};
use triplicate_server::{ServeConfig, ServiceOptions};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the ledger, the stream, the projection and the development keys live.
    #[arg(long, default_value_os_t = crate::default_data_dir(), env = "TRIPLICATE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "TRIPLICATE_LISTEN")]
    pub listen: SocketAddr,
    /// PostgreSQL URL for the projection (an owner role: migrations run at start; the service
    /// then acts as `triplicate_writer`). Without it the projection is `<data-dir>/projection.db`.
    #[arg(long, env = "TRIPLICATE_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// Checkpoint origin for a new ledger.
    #[arg(long, default_value = DEV_ORIGIN)]
    pub origin: String,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async move {
        let projection = match args.postgres_url {
            Some(url) => ProjectionChoice::Postgres { url },
            None => ProjectionChoice::Sqlite,
        };
        let running = triplicate_server::start(ServeConfig {
            data_dir: args.data_dir.clone(),
            listen: args.listen,
            projection,
            origin: args.origin,
            options: ServiceOptions::default(),
        })
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("start the service")?;
        println!(
            "Triplicate is serving on http://{} (data in {}).\n\
             DEVELOPMENT SET-UP: software notary and approver keys in {}/keys, policy in {}/policies,\n\
             admin token in {}/dev-admin-token. Stop with Ctrl-C.",
            running.addr,
            args.data_dir.display(),
            args.data_dir.display(),
            args.data_dir.display(),
            args.data_dir.display(),
        );
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
                    Err(e) => tracing::error!(error = %e, "policy refused on SIGHUP; the old one stays"),
                }
            }
        });
        tokio::signal::ctrl_c().await.context("wait for Ctrl-C")?;
        tracing::info!("shutting down: finishing in-flight requests");
        running.stop().await.context("stop the server")?;
        Ok(ExitCode::SUCCESS)
    })
}
