//! `triplicate demo`: the embedded defaults end to end, with no server and no configuration.
//! Creates (once) a development notary key, records sample decisions signed by two approvers
//! in the embedded ledger, writes their receipts, and verifies each receipt offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use triplicate_core::{Receipt, RECEIPT_VERSION};
use triplicate_keys::{note::note_verifier_key, Signer, SoftwareSigner};
use triplicate_ledger::receipt::verify_receipt;
use triplicate_ledger::{EmbeddedLedger, Ledger, LedgerConfig};

use crate::sample::Fixture;

/// Default checkpoint origin of a development ledger.
pub const DEV_ORIGIN: &str = "triplicate.invalid/dev";

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    pub data_dir: PathBuf,
    /// How many decisions to record.
    #[arg(long, default_value_t = 3)]
    pub count: u64,
    /// Checkpoint origin for a new ledger.
    #[arg(long, default_value = DEV_ORIGIN)]
    pub origin: String,
}

/// Loads `<data-dir>/keys/notary.pem`, generating a development key on first use.
pub fn dev_notary(data_dir: &Path) -> anyhow::Result<Arc<dyn Signer>> {
    let path = data_dir.join("keys").join("notary.pem");
    if !path.exists() {
        std::fs::create_dir_all(path.parent().context("key directory")?)
            .context("create key directory")?;
        let key = SoftwareSigner::generate("triplicate-dev-notary");
        key.write_pem_file(&path)
            .with_context(|| format!("write {}", path.display()))?;
        tracing::warn!(
            file = %path.display(),
            "GENERATED A DEVELOPMENT NOTARY KEY IN SOFTWARE. Receipts it signs prove nothing \
             outside this machine; production uses a hardware notary key."
        );
    }
    let key = SoftwareSigner::from_pem_file(&path)
        .with_context(|| format!("read notary key {}", path.display()))?;
    Ok(Arc::new(key))
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let notary = dev_notary(&args.data_dir)?;
    let vkey = note_verifier_key(notary.name(), &notary.public_key())?;
    let ledger = EmbeddedLedger::open(
        LedgerConfig::new(
            crate::ledger_cmd::ledger_dir(&args.data_dir),
            args.origin.clone(),
        ),
        notary.clone(),
    )
    .context("open ledger")?;
    let fixture = Fixture::new(notary)?;

    let start = ledger.tree_size();
    let mut records = Vec::new();
    for i in 0..args.count {
        let d = fixture.decision(start + i)?;
        let a = fixture.approvals(&d)?;
        records.push(fixture.record(start + i, d, a)?);
    }
    let entries: Vec<Vec<u8>> = records
        .iter()
        .map(|r| r.to_bytes())
        .collect::<Result<_, _>>()
        .context("canonical record bytes")?;
    let out = ledger.append(start, &entries).context("append to ledger")?;

    let receipts_dir = args.data_dir.join("receipts");
    std::fs::create_dir_all(&receipts_dir).context("create receipts directory")?;
    for r in records {
        let seq = r.seq;
        let receipt = Receipt {
            version: RECEIPT_VERSION,
            seq,
            leaf_hash: r.leaf_hash()?,
            record: r,
            checkpoint: out.checkpoint.note.clone(),
            inclusion_proof: ledger.inclusion_proof(seq, out.checkpoint.size)?,
        };
        verify_receipt(&receipt, &vkey).context("verify the receipt just written")?;
        let path = receipts_dir.join(format!("{seq}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&receipt)?)
            .with_context(|| format!("write {}", path.display()))?;
        println!(
            "recorded seq {seq} ({}) -> {}",
            receipt.record.decision.title,
            path.display()
        );
    }
    let vkey_path = args.data_dir.join("notary.vkey");
    std::fs::write(&vkey_path, format!("{vkey}\n"))?;
    println!();
    println!("ledger: {} entries, checkpoint:", out.checkpoint.size);
    print!("{}", out.checkpoint.note);
    println!();
    println!("verify a receipt offline:");
    println!(
        "  triplicate verify receipt {}/{}.json --notary-key {}",
        receipts_dir.display(),
        start,
        vkey_path.display()
    );
    println!("check the ledger's files:");
    println!(
        "  triplicate ledger fsck --data-dir {}",
        args.data_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
