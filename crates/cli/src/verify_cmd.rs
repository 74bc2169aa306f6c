//! `triplicate verify receipt|consistency`: offline checks that trust only the notary's key.
//! Exit 0 valid, 1 invalid (the failing step is printed), 2 unreadable.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use triplicate_core::Receipt;
use triplicate_ledger::proof::{b64_hash, verify_consistency, ConsistencyProof};
use triplicate_ledger::receipt::verify_receipt;
use triplicate_ledger::SignedCheckpoint;

#[derive(Debug, Subcommand)]
pub enum VerifyCmd {
    /// Verify a receipt: record → leaf hash → notary signature → inclusion proof → signed
    /// checkpoint.
    Receipt {
        /// The receipt (JSON).
        file: PathBuf,
        /// The notary's note verifier key (`name+hex+base64`), or a file holding it.
        #[arg(long)]
        notary_key: String,
    },
    /// Verify that NEW_CHECKPOINT's tree extends OLD_CHECKPOINT's.
    Consistency {
        old_checkpoint: PathBuf,
        new_checkpoint: PathBuf,
        /// The consistency proof: the JSON `triplicate ledger prove --consistency` prints, or a
        /// JSON list of base64 hashes.
        #[arg(long)]
        proof: PathBuf,
        /// The notary's note verifier key, or a file holding it.
        #[arg(long)]
        notary_key: String,
    },
}

/// A note verifier key given on the command line or in a file (a key string, a file holding
/// one, a public key PEM, or a software key file of which only the public half is used).
pub fn read_verifier_key(spec: &str) -> anyhow::Result<String> {
    let v = triplicate_keys::VerifierKey::parse_or_read(spec)
        .with_context(|| format!("notary key {spec:?}"))?;
    Ok(v.note_string()?)
}

fn unreadable(e: anyhow::Error) -> ExitCode {
    println!("UNREADABLE: {e:#}");
    ExitCode::from(2)
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("read {}", path.display()))
}

pub fn run(cmd: VerifyCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        VerifyCmd::Receipt { file, notary_key } => {
            let vkey = match read_verifier_key(&notary_key) {
                Ok(v) => v,
                Err(e) => return Ok(unreadable(e)),
            };
            let bytes = match read(&file) {
                Ok(b) => b,
                Err(e) => return Ok(unreadable(e)),
            };
            let receipt = match Receipt::from_json(&bytes) {
                Ok(r) => r,
                Err(e) => {
                    return Ok(unreadable(
                        anyhow::Error::new(e)
                            .context(format!("{} is not a receipt", file.display())),
                    ))
                }
            };
            match verify_receipt(&receipt, &vkey) {
                Ok(v) => {
                    println!(
                        "VALID: record {} (seq {}) is entry {} of the tree of {} entries with root {}, signed by {}",
                        receipt.record.decision.id,
                        v.seq,
                        v.seq,
                        v.checkpoint.size,
                        crate::ledger_cmd::b64(&v.checkpoint.root),
                        v.checkpoint.origin
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("INVALID at step {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        VerifyCmd::Consistency {
            old_checkpoint,
            new_checkpoint,
            proof,
            notary_key,
        } => {
            let vkey = match read_verifier_key(&notary_key) {
                Ok(v) => v,
                Err(e) => return Ok(unreadable(e)),
            };
            let (old, new, proof_bytes) =
                match (read(&old_checkpoint), read(&new_checkpoint), read(&proof)) {
                    (Ok(a), Ok(b), Ok(c)) => (a, b, c),
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Ok(unreadable(e)),
                };
            let hashes = match parse_proof(&proof_bytes) {
                Ok(h) => h,
                Err(e) => return Ok(unreadable(e.context(format!("{}", proof.display())))),
            };
            let check = |text: &[u8], which: &str| -> Result<SignedCheckpoint, String> {
                let text = String::from_utf8(text.to_vec())
                    .map_err(|_| format!("{which} checkpoint is not UTF-8"))?;
                SignedCheckpoint::verify(&text, &vkey)
                    .map_err(|e| format!("{which} checkpoint: {e}"))
            };
            let (old_cp, new_cp) = match (check(&old, "old"), check(&new, "new")) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), _) | (_, Err(e)) => {
                    println!("INVALID at step {e}");
                    return Ok(ExitCode::from(1));
                }
            };
            if let ProofInput::Full(p) = &hashes {
                if p.old_size != old_cp.size || p.new_size != new_cp.size {
                    println!(
                        "INVALID at step proof sizes: the proof is for {} -> {} but the checkpoints are {} -> {}",
                        p.old_size, p.new_size, old_cp.size, new_cp.size
                    );
                    return Ok(ExitCode::from(1));
                }
            }
            if old_cp.origin != new_cp.origin {
                println!(
                    "INVALID at step origin: {:?} and {:?} are different logs",
                    old_cp.origin, new_cp.origin
                );
                return Ok(ExitCode::from(1));
            }
            match verify_consistency(
                hashes.hashes(),
                old_cp.size,
                &old_cp.root,
                new_cp.size,
                &new_cp.root,
            ) {
                Ok(()) => {
                    println!(
                        "VALID: the tree of {} entries extends the tree of {} entries ({})",
                        new_cp.size, old_cp.size, new_cp.origin
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("INVALID at step consistency proof: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

enum ProofInput {
    Full(ConsistencyProof),
    Bare(Vec<[u8; 32]>),
}

impl ProofInput {
    fn hashes(&self) -> &[[u8; 32]] {
        match self {
            ProofInput::Full(p) => &p.proof,
            ProofInput::Bare(h) => h,
        }
    }
}

fn parse_proof(bytes: &[u8]) -> anyhow::Result<ProofInput> {
    if let Ok(p) = serde_json::from_slice::<ConsistencyProof>(bytes) {
        return Ok(ProofInput::Full(p));
    }
    let list: Vec<String> = serde_json::from_slice(bytes)
        .context("not a consistency proof (JSON object or list of base64 hashes)")?;
    let hashes = list
        .iter()
        .map(|s| b64_hash::decode(s).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<_>>()?;
    Ok(ProofInput::Bare(hashes))
}
