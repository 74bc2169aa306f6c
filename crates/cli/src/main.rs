//! `triplicate`: the one binary operators, secretaries, approvers and auditors run.
//!
//! Owns: argument parsing, logging set-up, wiring configuration to concrete backends, exit
//! codes, and what is printed. Errors become `anyhow` here and nowhere else.
//!
//! Must not know: record formats, tree math or signature algorithms beyond calling the library
//! crates that own them.

// This is the binary's edge: printing results to stdout is its job.
#![allow(clippy::print_stdout)]

/// mimalloc rather than glibc's malloc: under load the service's many small, short-lived
/// allocations (HTTP bodies, JSON, records) spent ~13 % of its CPU in glibc's allocator and its
/// arena locks (perf under `bench submit`, BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin_cmd;
mod audit_cmd;
mod bench;
mod bench_submit;
mod client;
mod crosscheck_cmd;
mod demo;
mod demo_crosscheck;
mod demo_hardware;
mod drill_cmd;
mod get_cmd;
mod hwkey;
mod keys_cmd;
mod ledger_cmd;
mod logging;
mod recovery_cmd;
mod sample;
mod serve_cmd;
mod sign_cmd;
mod submit_cmd;
mod verify_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Triplicate keeps governance records in triplicate and proves they agree.
#[derive(Debug, Parser)]
#[command(name = "triplicate", version, about)]
struct Cli {
    /// Log format: `human` (default) or `json`.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Human, env = "TRIPLICATE_LOG_FORMAT")]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A guided tour: the service on a development set-up, decisions signed and submitted over
    /// HTTP, receipts verified offline, the three stores shown to agree.
    Demo(demo::DemoArgs),
    /// Load generators: `bench submit` (the write path over HTTP).
    #[command(subcommand)]
    Bench(bench_submit::BenchCmd),
    /// Software keys for development and tests.
    #[command(subcommand)]
    Keys(keys_cmd::KeysCmd),
    /// Inspect, check, prove and benchmark the verified ledger.
    #[command(subcommand)]
    Ledger(ledger_cmd::LedgerCmd),
    /// Run the governance service (embedded stores in ./data unless told otherwise).
    Serve(serve_cmd::ServeArgs),
    /// Add your approval to a decision (or to a submission others signed).
    Sign(sign_cmd::SignArgs),
    /// Submit a signed decision to the service; verify and keep its receipt.
    Submit(submit_cmd::SubmitArgs),
    /// Read one decision back with a fresh receipt, verified offline.
    Get(get_cmd::GetArgs),
    /// List recorded decisions (newest first), filtered.
    List(get_cmd::ListArgs),
    /// Verify receipts and checkpoints offline, trusting only the notary's public key.
    #[command(subcommand)]
    Verify(verify_cmd::VerifyCmd),
    /// Cross-check the ledger, the event stream and the projection.
    #[command(subcommand)]
    Crosscheck(crosscheck_cmd::CrosscheckCmd),
    /// Operator calls to a running service (`admin resume`).
    #[command(subcommand)]
    Admin(admin_cmd::AdminCmd),
    /// An independent auditor of a service's log, trusting only the notary key: checkpoint
    /// signatures, consistency with the last checkpoint seen, random entries re-hashed and proved
    /// included; metrics and alerts on failure.
    Audit(audit_cmd::AuditArgs),
    /// Back up the three stores into a directory: the ledger's tiles (incrementally), the
    /// stream and projection exports, and a manifest the notary signs.
    Backup(recovery_cmd::BackupArgs),
    /// Restore a backup into empty stores, after checking its signature, every file's digest and
    /// the ledger's root against its signed checkpoint. Exit 1: the backup failed a check.
    Restore(recovery_cmd::RestoreArgs),
    /// Recovery drills: lose a store on a scratch copy, detect, recover, verify; signed reports.
    #[command(subcommand)]
    Drill(drill_cmd::DrillCmd),
}

/// The embedded defaults' data directory.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The tour and the load generator run the service in this process: its per-request access
    // log would drown the tour and slow the benchmark, so they log warnings only by default.
    let default_level = match cli.command {
        Command::Demo(_) | Command::Bench(_) => "warn",
        _ => "info",
    };
    logging::init(cli.log_format, default_level);
    let result = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Bench(c) => bench_submit::run(c),
        Command::Keys(c) => keys_cmd::run(c),
        Command::Ledger(c) => ledger_cmd::run(c),
        Command::Serve(a) => serve_cmd::run(a),
        Command::Sign(a) => sign_cmd::run(a),
        Command::Submit(a) => submit_cmd::run(a),
        Command::Get(a) => get_cmd::run_get(a),
        Command::List(a) => get_cmd::run_list(a),
        Command::Verify(c) => verify_cmd::run(c),
        Command::Crosscheck(c) => crosscheck_cmd::run(c),
        Command::Admin(c) => admin_cmd::run(c),
        Command::Audit(a) => audit_cmd::run(a),
        Command::Backup(a) => recovery_cmd::run_backup(a),
        Command::Restore(a) => recovery_cmd::run_restore(a),
        Command::Drill(c) => drill_cmd::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "command failed");
            eprintln!("error: {e:#}");
            ExitCode::from(client::exit_code(&e))
        }
    }
}
