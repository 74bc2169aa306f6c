//! `triplicate ledger fsck|checkpoint|prove|bench`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use triplicate_ledger::fsck::fsck;
use triplicate_ledger::proof::{ConsistencyProof, InclusionProof};
use triplicate_ledger::{EmbeddedLedger, Ledger};

use crate::verify_cmd::read_verifier_key;

#[derive(Debug, Subcommand)]
pub enum LedgerCmd {
    /// Re-derive the tree from the entry bundles and check every tile and the checkpoint.
    /// Exit 0 clean, 1 tampered or inconsistent, 2 unreadable or missing.
    Fsck {
        #[arg(long, default_value_os_t = crate::default_data_dir())]
        data_dir: PathBuf,
        /// Check the checkpoint against this notary key (a note verifier key or a file holding
        /// one) instead of the key pinned in the ledger directory.
        #[arg(long)]
        notary_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print the latest signed checkpoint.
    Checkpoint {
        #[arg(long, default_value_os_t = crate::default_data_dir())]
        data_dir: PathBuf,
    },
    /// Print an inclusion proof (`--index I [--size N]`) or a consistency proof
    /// (`--consistency FROM TO`) as JSON with base64 hashes.
    Prove {
        #[arg(long, default_value_os_t = crate::default_data_dir())]
        data_dir: PathBuf,
        #[arg(
            long,
            conflicts_with = "consistency",
            required_unless_present = "consistency"
        )]
        index: Option<u64>,
        /// Tree size to prove against (default: the latest checkpoint's).
        #[arg(long, requires = "index")]
        size: Option<u64>,
        #[arg(long, num_args = 2, value_names = ["FROM", "TO"])]
        consistency: Option<Vec<u64>>,
    },
    /// Append N realistic records to a fresh ledger and compare with the machine's bound.
    Bench(crate::bench::BenchArgs),
}

pub fn ledger_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("ledger")
}

pub fn run(cmd: LedgerCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        LedgerCmd::Fsck {
            data_dir,
            notary_key,
            json,
        } => {
            let vkey = match notary_key {
                Some(k) => match read_verifier_key(&k) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return Ok(ExitCode::from(2));
                    }
                },
                None => None,
            };
            let dir = ledger_dir(&data_dir);
            match fsck(&dir, vkey.as_deref()) {
                Ok(r) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "result": "clean",
                                "origin": r.origin,
                                "size": r.size,
                                "root": b64(&r.root),
                                "bundles_checked": r.bundles_checked,
                                "tiles_checked": r.tiles_checked,
                                "hashes_checked": r.hashes_checked,
                                "wal_pending": r.wal_pending,
                            })
                        );
                    } else {
                        println!(
                            "clean: {} entries, root {}, {} bundles, {} tiles and {} stored hashes checked",
                            r.size,
                            b64(&r.root),
                            r.bundles_checked,
                            r.tiles_checked,
                            r.hashes_checked
                        );
                        if r.wal_pending > 0 {
                            println!(
                                "note: the WAL holds {} acknowledged entries past the checkpoint; the next writable open replays them",
                                r.wal_pending
                            );
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    let code = e.exit_code();
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "result": if code == 1 { "inconsistent" } else { "unreadable" },
                                "error": e.to_string(),
                            })
                        );
                    }
                    eprintln!(
                        "{}: {e}",
                        if code == 1 {
                            "TAMPERED OR INCONSISTENT"
                        } else {
                            "UNREADABLE"
                        }
                    );
                    Ok(ExitCode::from(code))
                }
            }
        }
        LedgerCmd::Checkpoint { data_dir } => {
            let l = EmbeddedLedger::open_read_only(&ledger_dir(&data_dir), None)
                .context("open ledger")?;
            print!("{}", l.checkpoint().note);
            Ok(ExitCode::SUCCESS)
        }
        LedgerCmd::Prove {
            data_dir,
            index,
            size,
            consistency,
        } => {
            let l = EmbeddedLedger::open_read_only(&ledger_dir(&data_dir), None)
                .context("open ledger")?;
            if let Some(index) = index {
                let tree_size = size.unwrap_or_else(|| l.tree_size());
                let proof = l
                    .inclusion_proof(index, tree_size)
                    .context("inclusion proof")?;
                let leaf = l
                    .leaf_hashes(index, index + 1)?
                    .pop()
                    .context("leaf hash")?;
                let out = InclusionProof {
                    index,
                    tree_size,
                    leaf_hash: leaf,
                    root: l.root_at(tree_size)?,
                    proof,
                };
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if let Some(c) = consistency {
                let (from, to) = (c[0], c[1]);
                let proof = l.consistency_proof(from, to).context("consistency proof")?;
                let out = ConsistencyProof {
                    old_size: from,
                    new_size: to,
                    old_root: l.root_at(from)?,
                    new_root: l.root_at(to)?,
                    proof,
                };
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        LedgerCmd::Bench(a) => crate::bench::run(a),
    }
}

pub fn b64(h: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(h)
}
