//! `triplicate keys generate|show|enrol`.
//!
//! `show` and `enrol` take any key a `--key` names: a software key file, a `pkcs11:` URI or a
//! `yubikey:` URI. `enrol` prints (or appends) the `[[key]]` entry for `keys.toml`, with `held`
//! saying how the key is held; the service's policy decides what counts (`require_hardware`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use triplicate_keys::{note::note_verifier_key, Algorithm, KeySpec, Signer, SoftwareSigner};

use crate::hwkey;

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
    /// Print a key's id, algorithm, public key (and note verifier key, for Ed25519).
    Show {
        /// A software key file, a pkcs11: URI or a yubikey: URI.
        #[arg(long)]
        key: String,
        /// The name a hardware key signs notes under (key files carry their own).
        #[arg(long, default_value = "triplicate-notary")]
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the keys.toml `[[key]]` entry that enrols a key as an approver.
    Enrol {
        /// A software key file, a pkcs11: URI or a yubikey: URI.
        #[arg(long)]
        key: String,
        /// Who holds the key (the person accountable for what it signs), e.g. "Alice <a@x.org>".
        #[arg(long)]
        holder: String,
        /// A group (declared in governance.toml) the key approves for; repeat for several.
        #[arg(long = "group", required = true)]
        groups: Vec<String>,
        /// When the key starts counting (RFC 3339); default now.
        #[arg(long)]
        valid_from: Option<String>,
        /// When the key stops counting (RFC 3339); default never.
        #[arg(long)]
        valid_until: Option<String>,
        /// Append the entry to this keys.toml instead of printing it.
        #[arg(long)]
        append: Option<PathBuf>,
        /// For a yubikey: key, where to write its attestation (the slot's attestation
        /// certificate and the card's f9 certificate, PEM). Default with --append:
        /// `attestations/<key id>.pem` beside that keys.toml.
        #[arg(long)]
        attestation_out: Option<PathBuf>,
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
            show(&signer, "software", false)?;
        }
        KeysCmd::Show { key, name, json } => {
            let (spec, signer) = hwkey::open(&key, &name)?;
            show(signer.as_ref(), spec.held(), json)?;
        }
        KeysCmd::Enrol {
            key,
            holder,
            groups,
            valid_from,
            valid_until,
            append,
            attestation_out,
        } => {
            let (spec, signer) = hwkey::open(&key, "approver")?;
            let mut entry = enrol_entry(
                &spec,
                signer.as_ref(),
                &holder,
                &groups,
                valid_from.as_deref(),
                valid_until.as_deref(),
            )?;
            if let KeySpec::YubikeyPiv(uri) = &spec {
                let out = attestation_out.or_else(|| {
                    append.as_ref().map(|k| {
                        k.parent()
                            .unwrap_or(std::path::Path::new("."))
                            .join("attestations")
                            .join(format!("{}.pem", signer.key_id()))
                    })
                });
                entry.push_str(&attestation_line(uri, out.as_deref(), append.as_deref())?);
            }
            match append {
                None => print!("{entry}"),
                Some(path) => {
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&path)
                        .with_context(|| format!("open {} to append", path.display()))?;
                    f.write_all(format!("\n{entry}").as_bytes())
                        .and_then(|()| f.sync_all())
                        .with_context(|| format!("append to {}", path.display()))?;
                    eprintln!(
                        "enrolled key {} ({}) in {}; reload the policy (SIGHUP or POST /v1/admin/policies/reload)",
                        signer.key_id(),
                        signer.algorithm(),
                        path.display()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a yubikey: key's attestation and writes it to `out`; the keys.toml line naming it
/// (relative to the keys.toml being appended to), or a comment saying why there is none.
#[cfg(feature = "yubikey")]
fn attestation_line(
    uri: &triplicate_keys::spec::PivUri,
    out: Option<&std::path::Path>,
    keys_toml: Option<&std::path::Path>,
) -> anyhow::Result<String> {
    let a = triplicate_keys::piv::read_attestation(uri).context("read the attestation")?;
    let (leaf, f9) = match (&a.slot_certificate, &a.attestation_certificate) {
        (Ok(leaf), Ok(f9)) => (leaf, f9),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("note: no attestation recorded: {e}");
            return Ok(format!("# no attestation: {}\n", e.replace('\n', " ")));
        }
    };
    let Some(out) = out else {
        anyhow::bail!(
            "the card attests this key: give --attestation-out FILE (or --append) to keep the attestation"
        );
    };
    let pem = format!("{}{}", pem_block(leaf), pem_block(f9));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(out, pem).with_context(|| format!("write {}", out.display()))?;
    let named = keys_toml
        .and_then(|k| k.parent())
        .and_then(|d| out.strip_prefix(d).ok())
        .unwrap_or(out);
    eprintln!(
        "wrote the attestation of YubiKey {} (firmware {}) slot {:02x} to {}",
        a.serial,
        a.firmware,
        a.slot,
        out.display()
    );
    Ok(format!(
        "attestation = {}\n",
        toml_str(&named.to_string_lossy())
    ))
}

#[cfg(not(feature = "yubikey"))]
fn attestation_line(
    _uri: &triplicate_keys::spec::PivUri,
    _out: Option<&std::path::Path>,
    _keys_toml: Option<&std::path::Path>,
) -> anyhow::Result<String> {
    Ok(String::new()) // opening a yubikey: key already failed in this build
}

#[cfg(feature = "yubikey")]
fn pem_block(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn rfc3339(s: &str, flag: &str) -> anyhow::Result<String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{flag} {s:?} is not an RFC 3339 date-time with an offset"))?;
    Ok(t.format(&time::format_description::well_known::Rfc3339)?)
}

fn enrol_entry(
    spec: &KeySpec,
    signer: &dyn Signer,
    holder: &str,
    groups: &[String],
    valid_from: Option<&str>,
    valid_until: Option<&str>,
) -> anyhow::Result<String> {
    anyhow::ensure!(!holder.trim().is_empty(), "--holder must not be empty");
    let from = match valid_from {
        Some(s) => rfc3339(s, "--valid-from")?,
        None => time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)?
            .format(&time::format_description::well_known::Rfc3339)?,
    };
    let until = valid_until
        .map(|s| rfc3339(s, "--valid-until"))
        .transpose()?;
    let mut e = String::new();
    e.push_str(&format!(
        "# enrolled from {spec} by `triplicate keys enrol`\n[[key]]\n"
    ));
    e.push_str(&format!(
        "key_id = {}\n",
        toml_str(&signer.key_id().to_string())
    ));
    e.push_str(&format!(
        "alg = {}\n",
        toml_str(signer.algorithm().as_str())
    ));
    e.push_str(&format!(
        "public_key = {}\n",
        toml_str(&signer.public_key().to_base64())
    ));
    e.push_str(&format!("holder = {}\n", toml_str(holder.trim())));
    let groups: Vec<String> = groups.iter().map(|g| toml_str(g)).collect();
    e.push_str(&format!("groups = [{}]\n", groups.join(", ")));
    e.push_str(&format!("held = {}\n", toml_str(spec.held())));
    e.push_str(&format!("valid_from = {from}\n"));
    if let Some(u) = until {
        e.push_str(&format!("valid_until = {u}\n"));
    }
    Ok(e)
}

fn show(signer: &dyn Signer, held: &str, json: bool) -> anyhow::Result<()> {
    let pk = signer.public_key();
    // Only Ed25519 keys have note verifier keys (they can sign checkpoints).
    let vkey = match signer.algorithm() {
        Algorithm::Ed25519 => {
            Some(note_verifier_key(signer.name(), &pk).context("note verifier key")?)
        }
        _ => None,
    };
    if json {
        let v = serde_json::json!({
            "name": signer.name(),
            "key_id": signer.key_id().to_string(),
            "alg": signer.algorithm().as_str(),
            "public_key": pk.to_base64(),
            "note_verifier_key": vkey,
            "held": held,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("name:              {}", signer.name());
        println!("key id:            {}", signer.key_id());
        println!("algorithm:         {}", signer.algorithm());
        println!("public key:        {}", pk.to_base64());
        match vkey {
            Some(v) => println!("note verifier key: {v}"),
            None => println!("note verifier key: (none: only Ed25519 keys sign checkpoints)"),
        }
        println!("held:              {held}");
    }
    Ok(())
}
