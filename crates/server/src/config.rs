//! The service's configuration file (`triplicate serve --config FILE`), one TOML file; the
//! command line and `TRIPLICATE_*` environment variables override its top-level settings.
//!
//! ```toml
//! data_dir = "/var/lib/triplicate"          # ledger/, stream.db, projection.db
//! listen = "127.0.0.1:8080"
//! origin = "governance.example.org/log"     # checkpoint origin, fixed at the ledger's creation
//! policy_dir = "/etc/triplicate/policies"   # keys.toml, governance.toml
//! restrict_reads = false                     # true: decision reads need a reader token
//!
//! [notary]
//! key = "pkcs11:token=notary;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/triplicate/notary.pin"
//!                                            # or a software key file path (development only)
//! name = "governance.example.org/notary"    # checkpoint note key name (hardware keys only)
//!
//! [projection]
//! url = "postgres://triplicate@db.internal/triplicate"   # or "sqlite" (the default)
//!
//! [[tokens]]
//! name = "secretary"
//! role = "submitter"                         # reader | submitter | auditor | admin
//! sha256 = "…64 hex digits…"                 # printf %s "$TOKEN" | sha256sum; never the token
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::TokenEntry;
use crate::setup::ProjectionChoice;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// The parsed file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    pub origin: String,
    pub policy_dir: PathBuf,
    #[serde(default)]
    pub restrict_reads: bool,
    pub notary: NotaryConfig,
    #[serde(default)]
    pub projection: StoreConfig,
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
}

/// `[notary]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotaryConfig {
    /// Where the notary key lives: a `pkcs11:` URI, a `yubikey:` URI, or a software key file
    /// (PKCS#8 PEM; a relative path is relative to the configuration file). It must be an
    /// Ed25519 key: checkpoints are signed notes, and note verifiers accept Ed25519.
    pub key: String,
    /// The key name checkpoints are signed under (the note verifier key's name). Software key
    /// files carry their own name; this is for hardware keys. It must stay the same for the
    /// ledger's life: clients pin the verifier key, which includes it.
    #[serde(default = "default_notary_name")]
    pub name: String,
}

fn default_notary_name() -> String {
    "triplicate-notary".to_owned()
}

impl NotaryConfig {
    /// The key spec, with a relative file path already resolved.
    pub fn spec(&self) -> Result<triplicate_keys::KeySpec, String> {
        triplicate_keys::KeySpec::parse(&self.key).map_err(|e| format!("notary.key: {e}"))
    }
}

/// `[projection]` (and later `[stream]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite` (embedded, under `data_dir`) or a `postgres://` URL.
    #[serde(default = "default_store")]
    pub url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: default_store(),
        }
    }
}

fn default_store() -> String {
    "sqlite".into()
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

impl Config {
    /// Reads and checks a configuration file. Relative paths in it are relative to the file's
    /// directory, so a config and its policies can move together.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Parses configuration text that came from `path` (for messages and relative paths).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let mut c: Config = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut c.data_dir, &mut c.policy_dir] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let triplicate_keys::KeySpec::File(p) = c.notary.spec().map_err(invalid)? {
            if p.is_relative() {
                c.notary.key = base.join(p).to_string_lossy().into_owned();
            }
        }
        if !triplicate_keys::note::is_valid_key_name(&c.notary.name) {
            return Err(invalid(format!(
                "notary.name {:?} is not a valid note key name (no spaces or '+')",
                c.notary.name
            )));
        }
        c.projection_choice().map_err(invalid)?;
        crate::auth::Tokens::new(&c.tokens).map_err(invalid)?;
        if c.origin.trim().is_empty() || c.origin.contains('\n') {
            return Err(invalid("origin must be one non-empty line".into()));
        }
        Ok(c)
    }

    /// The projection backend the file names.
    pub fn projection_choice(&self) -> Result<ProjectionChoice, String> {
        let url = self.projection.url.trim();
        if url == "sqlite" {
            Ok(ProjectionChoice::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(ProjectionChoice::Postgres {
                url: url.to_owned(),
            })
        } else {
            Err(format!(
                "projection.url must be \"sqlite\" or a postgres:// URL, not {url:?}"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const GOOD: &str = r#"
data_dir = "data"
origin = "example.org/log"
policy_dir = "policies"
[notary]
key = "/etc/notary.pem"
[projection]
url = "postgres://u@h/db"
[[tokens]]
name = "sec"
role = "submitter"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
"#;

    #[test]
    fn relative_paths_follow_the_file_and_urls_choose_the_backend() {
        let c = Config::parse(Path::new("/etc/triplicate/config.toml"), GOOD).unwrap();
        assert_eq!(c.data_dir, Path::new("/etc/triplicate/data"));
        assert_eq!(c.policy_dir, Path::new("/etc/triplicate/policies"));
        assert_eq!(c.notary.key, "/etc/notary.pem");
        assert_eq!(c.listen, default_listen());
        assert!(matches!(
            c.projection_choice().unwrap(),
            ProjectionChoice::Postgres { .. }
        ));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let p = Path::new("c.toml");
        for (text, needle) in [
            (
                GOOD.replace("postgres://u@h/db", "mysql://x"),
                "projection.url",
            ),
            (
                GOOD.replace("origin = ", "orign = "),
                "unknown field `orign`",
            ),
            (
                GOOD.replace("\"submitter\"", "\"root\""),
                "unknown variant `root`",
            ),
            (
                GOOD.replace("00000000000000000000000000000000", "zz"),
                "64 hex digits",
            ),
            (GOOD.replace("example.org/log", ""), "origin"),
        ] {
            let e = Config::parse(p, &text).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} should mention {needle}");
            assert!(e.starts_with("c.toml"), "{e}");
        }
    }
}
