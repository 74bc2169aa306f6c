//! `triplicate verify receipt|consistency`: offline checks that trust only the notary's key.
//! Exit 0 valid, 1 invalid (the failing step is printed), 2 unreadable.
//!
//! `verify receipt --url URL` also checks the receipt against the server's history, remembered
//! per server like `submit` and `get` do (see `client.rs`); a server that cannot prove it is
//! consistent is INVALID (exit 1), one that cannot be reached UNREADABLE (exit 2).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use triplicate_core::Receipt;
use triplicate_ledger::proof::{b64_hash, verify_consistency, ConsistencyProof};
use triplicate_ledger::receipt::{verify_receipt, ReceiptError, VerifiedReceipt};
use triplicate_ledger::{Hash, SignedCheckpoint};

#[derive(Debug, Subcommand)]
pub enum VerifyCmd {
    /// Verify a receipt: record → leaf hash → notary signature → inclusion proof → signed
    /// checkpoint.
    Receipt {
        /// The receipt (JSON).
        file: PathBuf,
        /// The notary's note verifier key (`name+hex+base64`), or a file holding it. With
        /// `--url` alone, the key pinned for that server is used.
        #[arg(long, required_unless_present = "url")]
        notary_key: Option<String>,
        /// Also check the receipt against the server's history: the server's checkpoint must
        /// verify with the key pinned for it, and the server must prove that its tree, the
        /// receipt's and the newest one this client saw before are one history (remembered
        /// per server, like `submit` and `get`).
        #[arg(long)]
        url: Option<String>,
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
        VerifyCmd::Receipt {
            file,
            notary_key,
            url,
        } => {
            let given = match notary_key.as_deref().map(read_verifier_key).transpose() {
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
            let Some(url) = url else {
                let vkey = given.unwrap_or_default();
                return Ok(report_receipt(&receipt, verify_receipt(&receipt, &vkey)));
            };
            let online = crate::client::runtime()
                .and_then(|rt| rt.block_on(verify_with_server(&url, given.as_deref(), &receipt)));
            match online {
                Ok((outcome, session)) => {
                    let code = report_receipt(&receipt, outcome);
                    println!("server {}: {}", url, session.describe());
                    Ok(code)
                }
                Err(e) => {
                    let code = crate::client::exit_code(&e);
                    let label = if code == 2 { "UNREADABLE" } else { "INVALID" };
                    println!("{label}: {e:#}");
                    Ok(ExitCode::from(code))
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
            match check_consistency(&old_cp, &new_cp, hashes.hashes()) {
                Ok(()) => {
                    println!(
                        "VALID: the tree of {} entries extends the tree of {} entries ({})",
                        new_cp.size, old_cp.size, new_cp.origin
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("INVALID at step {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

fn report_receipt(receipt: &Receipt, outcome: Result<VerifiedReceipt, ReceiptError>) -> ExitCode {
    match outcome {
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
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("INVALID at step {e}");
            ExitCode::from(1)
        }
    }
}

/// `verify receipt --url`: contacts the server (checking its history against the state
/// remembered for it), verifies the receipt with the pinned key and, if it is valid, checks
/// the receipt's checkpoint against the server's history too. The state is saved only when
/// the server passed every check.
async fn verify_with_server(
    url: &str,
    given: Option<&str>,
    receipt: &Receipt,
) -> anyhow::Result<(
    Result<VerifiedReceipt, ReceiptError>,
    crate::client::Session,
)> {
    use crate::client::{Client, Session, StateDir, Untrusted};
    let client = Client::new(url, None)?;
    let mut session = Session::open(&client, &StateDir::locate()?).await?;
    if let Some(k) = given {
        if k != session.vkey {
            return Err(Untrusted(format!(
                "the notary key given ({k}) is not the key pinned for {} ({})",
                client.url(),
                session.vkey
            ))
            .into());
        }
    }
    let outcome = verify_receipt(receipt, &session.vkey);
    if outcome.is_ok() {
        session.observe(&client, &receipt.checkpoint).await?;
    }
    session.save()?;
    Ok((outcome, session))
}

/// Checks that `new`'s tree extends `old`'s: the same log (origin), and `proof` is a valid
/// consistency proof between their roots. Both checkpoints must already be verified against the
/// notary key. The error names the failing step (`origin: …`, `consistency proof: …`).
///
/// Used offline by `verify consistency` and online by the client commands' per-server
/// checkpoint state (`client.rs`).
pub fn check_consistency(
    old: &SignedCheckpoint,
    new: &SignedCheckpoint,
    proof: &[Hash],
) -> Result<(), String> {
    if old.origin != new.origin {
        return Err(format!(
            "origin: {:?} and {:?} are different logs",
            old.origin, new.origin
        ));
    }
    verify_consistency(proof, old.size, &old.root, new.size, &new.root)
        .map_err(|e| format!("consistency proof: {e}"))
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
