//! `triplicate`: the one binary operators, secretaries, approvers and auditors run.
//!
//! Owns: argument parsing, logging set-up, wiring configuration to concrete backends, exit
//! codes, and what is printed. Errors become `anyhow` here and nowhere else.
//!
//! Must not know: record formats, tree math or signature algorithms beyond calling the library
//! crates that own them.

// This is the binary's edge: printing results to stdout is its job.
#![allow(clippy::print_stdout)]

mod bench;
mod demo;
mod keys_cmd;
mod ledger_cmd;
mod logging;
mod sample;
mod serve_cmd;
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
    /// Record sample signed decisions in an embedded ledger and verify their receipts offline.
    Demo(demo::DemoArgs),
    /// Software keys for development and tests.
    #[command(subcommand)]
    Keys(keys_cmd::KeysCmd),
    /// Inspect, check, prove and benchmark the verified ledger.
    #[command(subcommand)]
    Ledger(ledger_cmd::LedgerCmd),
    /// Run the governance service (embedded stores in ./data unless told otherwise).
    Serve(serve_cmd::ServeArgs),
    /// Verify receipts and checkpoints offline, trusting only the notary's public key.
    #[command(subcommand)]
    Verify(verify_cmd::VerifyCmd),
}

/// The embedded defaults' data directory.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let result = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Keys(c) => keys_cmd::run(c),
        Command::Ledger(c) => ledger_cmd::run(c),
        Command::Serve(a) => serve_cmd::run(a),
        Command::Verify(c) => verify_cmd::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "command failed");
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
