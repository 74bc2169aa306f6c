//! Opening the key a `--key` argument names, for `sign` and `keys`: a software key file, a
//! `pkcs11:` URI or a `yubikey:` URI (see `triplicate_keys::spec`).
//!
//! On a terminal, a hardware key without a PIN source in its URI asks for the PIN (no echo),
//! and a signature waiting for a touch says "touch your YubiKey" on stderr. Without a terminal
//! the URI must say where the PIN comes from (`pin-source=file:…` or `env:…`).

use std::io::{self, IsTerminal as _};
use std::sync::Arc;

use anyhow::Context;
use triplicate_keys::{open_signer, Interaction, KeySpec, OpenOptions, Signer};
use zeroize::Zeroizing;

/// PIN prompts and touch notices on the controlling terminal.
#[derive(Debug)]
pub struct Terminal;

impl Interaction for Terminal {
    fn pin(&self, what: &str) -> io::Result<Zeroizing<String>> {
        if !io::stdin().is_terminal() && !io::stderr().is_terminal() {
            return Err(io::Error::other(
                "no terminal to ask for the PIN on; give the key URI a pin-source=file:… or pin-source=env:…",
            ));
        }
        rpassword::prompt_password(format!("PIN for {what}: ")).map(Zeroizing::new)
    }

    fn touch(&self, what: &str) {
        eprintln!("touch your YubiKey ({what}) to sign…");
    }
}

/// Parses and opens `key`, naming the signer `name` (hardware keys; key files keep theirs).
pub fn open(key: &str, name: &str) -> anyhow::Result<(KeySpec, Arc<dyn Signer>)> {
    let spec = KeySpec::parse(key).context("--key")?;
    let opts = OpenOptions::named(name).with_interaction(Arc::new(Terminal));
    let signer = open_signer(&spec, &opts).with_context(|| format!("open key {spec}"))?;
    Ok((spec, signer))
}
