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
//! [stream]
//! url = "nats://nats-1.internal:4222,nats://nats-2.internal:4222"   # or "sqlite" (the default)
//! [stream.nats]                              # only with nats:// URLs
//! stream = "TRIPLICATE"                      # the JetStream stream, created if missing
//! subject_prefix = "triplicate"              # subjects <prefix>.decision.<uuid>
//! replicas = 3                               # of a stream created here
//! credentials = "/etc/triplicate/nats.creds" # optional
//! tls_ca = "/etc/triplicate/nats-ca.pem"     # optional; TLS is then required
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
use crate::setup::{ProjectionChoice, StreamChoice};

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
    pub stream: StreamConfig,
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

/// `[stream]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// `sqlite` (embedded, under `data_dir`) or NATS server URLs (`nats://…`, `tls://…`,
    /// comma-separated).
    #[serde(default = "default_store")]
    pub url: String,
    /// `[stream.nats]`: used with NATS URLs.
    #[serde(default)]
    pub nats: NatsConfig,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            url: default_store(),
            nats: NatsConfig::default(),
        }
    }
}

/// `[stream.nats]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// The JetStream stream's name; created if missing.
    #[serde(default = "default_nats_stream")]
    pub stream: String,
    /// Subjects are `<subject_prefix>.decision.<uuid>`.
    #[serde(default = "default_nats_prefix")]
    pub subject_prefix: String,
    /// Replicas of a stream the service creates (3 to survive losing one node of a cluster).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// A NATS credentials file; relative to the configuration file.
    pub credentials: Option<PathBuf>,
    /// CA certificates (PEM) for TLS to the servers; relative to the configuration file.
    pub tls_ca: Option<PathBuf>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            stream: default_nats_stream(),
            subject_prefix: default_nats_prefix(),
            replicas: default_replicas(),
            credentials: None,
            tls_ca: None,
        }
    }
}

fn default_nats_stream() -> String {
    triplicate_stream::NATS_DEFAULT_STREAM.to_owned()
}

fn default_nats_prefix() -> String {
    triplicate_stream::NATS_DEFAULT_SUBJECT_PREFIX.to_owned()
}

fn default_replicas() -> usize {
    1
}

impl NatsConfig {
    /// The stream options these settings make.
    pub fn options(&self) -> triplicate_stream::NatsOptions {
        triplicate_stream::NatsOptions {
            stream: self.stream.clone(),
            subject_prefix: self.subject_prefix.clone(),
            replicas: self.replicas,
            credentials: self.credentials.clone(),
            tls_ca: self.tls_ca.clone(),
            ..triplicate_stream::NatsOptions::default()
        }
    }
}

/// `[projection]`.
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
        for p in [&mut c.data_dir, &mut c.policy_dir]
            .into_iter()
            .chain(c.stream.nats.credentials.as_mut())
            .chain(c.stream.nats.tls_ca.as_mut())
        {
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
        c.stream_choice().map_err(invalid)?;
        crate::auth::Tokens::new(&c.tokens).map_err(invalid)?;
        if c.origin.trim().is_empty() || c.origin.contains('\n') {
            return Err(invalid("origin must be one non-empty line".into()));
        }
        Ok(c)
    }

    /// The stream backend the file names.
    pub fn stream_choice(&self) -> Result<StreamChoice, String> {
        StreamChoice::parse(&self.stream.url, self.stream.nats.options())
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

    #[test]
    fn the_stream_url_chooses_the_backend_and_query_overrides_the_table() {
        let c = Config::parse(Path::new("/etc/t/c.toml"), GOOD).unwrap();
        assert_eq!(c.stream_choice().unwrap(), StreamChoice::Sqlite);
        let text = format!(
            "{GOOD}\n[stream]\nurl = \"nats://a:4222, nats://b:4222?replicas=3\"\n\
             [stream.nats]\nstream = \"GOV\"\ncredentials = \"nats.creds\"\n"
        );
        let c = Config::parse(Path::new("/etc/t/c.toml"), &text).unwrap();
        match c.stream_choice().unwrap() {
            StreamChoice::Nats { urls, options } => {
                assert_eq!(urls, "nats://a:4222, nats://b:4222");
                assert_eq!(options.stream, "GOV");
                assert_eq!(options.subject_prefix, "triplicate");
                assert_eq!(options.replicas, 3);
                assert_eq!(
                    options.credentials.as_deref(),
                    Some(Path::new("/etc/t/nats.creds"))
                );
            }
            other => panic!("{other:?}"),
        }
        let text = format!("{GOOD}\n[stream]\nurl = \"kurrentdb://u:secret@k:2113?tls=true\"\n");
        let c = Config::parse(Path::new("c.toml"), &text).unwrap();
        assert_eq!(c.stream_choice().unwrap().name(), "kurrentdb");
        for (url, needle) in [
            ("kafka://x", "stream.url"),
            ("nats://a?replicas=9", "replicas"),
            ("nats://a?stream=A.B", "stream name"),
            ("nats://a?colour=red", "unknown parameter"),
            ("nats://?", "names no NATS server"),
        ] {
            let text = format!("{GOOD}\n[stream]\nurl = \"{url}\"\n");
            let e = Config::parse(Path::new("c.toml"), &text)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{url}: {e}");
        }
    }

    /// The example configurations shipped in ops/ are ones the service accepts.
    #[test]
    fn the_shipped_example_configs_parse() {
        let ops = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops");
        let mut files = vec![ops.join("config/triplicate.toml")];
        for e in std::fs::read_dir(ops.join("compose/config")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                files.push(p);
            }
        }
        assert!(files.len() >= 2, "{files:?}");
        for f in files {
            let c = Config::load(&f).unwrap_or_else(|e| panic!("{e}"));
            c.stream_choice().unwrap();
            c.projection_choice().unwrap();
        }
    }
}
