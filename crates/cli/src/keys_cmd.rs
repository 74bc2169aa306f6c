//! `triplicate keys generate|show`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use triplicate_keys::{note::note_verifier_key, Signer, SoftwareSigner};

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Write a new software Ed25519 key (PKCS#8 PEM, mode 0600). Development and tests only.
    Generate {
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
        /// The key's name (used as the signed-note key name for a notary).
        #[arg(long, default_value = "triplicate-dev")]
        name: String,
    },
    /// Print a key's id, algorithm, public key and note verifier key.
    Show {
        /// A software key file.
        #[arg(long)]
        key: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: KeysCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCmd::Generate { out, name } => {
            let signer = SoftwareSigner::generate(&name);
            signer
                .write_pem_file(&out)
                .with_context(|| format!("write key to {}", out.display()))?;
            tracing::warn!(file = %out.display(), "wrote a SOFTWARE key: for development and tests, not for production approvals");
            show(&signer, false)?;
        }
        KeysCmd::Show { key, json } => {
            let signer = SoftwareSigner::from_pem_file(&key)
                .with_context(|| format!("read key {}", key.display()))?;
            show(&signer, json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(signer: &dyn Signer, json: bool) -> anyhow::Result<()> {
    let pk = signer.public_key();
    let vkey = note_verifier_key(signer.name(), &pk).context("note verifier key")?;
    if json {
        let v = serde_json::json!({
            "name": signer.name(),
            "key_id": signer.key_id().to_string(),
            "alg": signer.algorithm().as_str(),
            "public_key": pk.to_base64(),
            "note_verifier_key": vkey,
            "held": "software",
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("name:              {}", signer.name());
        println!("key id:            {}", signer.key_id());
        println!("algorithm:         {}", signer.algorithm());
        println!("public key:        {}", pk.to_base64());
        println!("note verifier key: {vkey}");
        println!("held:              software");
    }
    Ok(())
}
