//! Building a running service from a data directory: the development set-up generated on
//! first start (notary key, three approver keys, a policy, an admin token), and opening the
//! embedded stores.
//!
//! Everything generated here is for development and says so loudly: keys in software files,
//! a policy that accepts software keys, a token in a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use triplicate_keys::{Signer, SoftwareSigner};
use triplicate_ledger::{EmbeddedLedger, LedgerConfig};
use triplicate_policy::Policy;
use triplicate_projection::{PgOptions, PgProjection, SqliteProjection};
use triplicate_stream::{NatsOptions, NatsStream, SqliteStream, StreamError};

use crate::auth::{hash_token, Role, TokenEntry};
use crate::service::{ServiceOptions, ServiceParts};
use crate::stores::{ProjectionBackend, StreamBackend};

/// Where the event stream lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamChoice {
    /// `<data-dir>/stream.db`.
    #[default]
    Sqlite,
    /// A NATS JetStream stream: the server URLs (comma-separated) and the stream's options.
    Nats { urls: String, options: NatsOptions },
    /// KurrentDB / EventStoreDB: a `kurrentdb://` (or `esdb://`, `kurrentdb+discover://`,
    /// `esdb+discover://`) connection string, which carries TLS settings and credentials.
    /// Needs a build with the `kurrentdb` feature.
    KurrentDb { url: String },
}

impl StreamChoice {
    /// Reads a stream URL: `sqlite`, or `nats://` / `tls://` server URLs, comma-separated,
    /// optionally ending in `?stream=NAME&subject_prefix=PREFIX&replicas=N`, which override
    /// `nats` (the `[stream.nats]` table, or the defaults). A URL never appears in errors or
    /// logs: it may hold a password.
    pub fn parse(url: &str, nats: NatsOptions) -> Result<StreamChoice, String> {
        let url = url.trim();
        if url == "sqlite" {
            return Ok(StreamChoice::Sqlite);
        }
        let scheme = url.split("://").next().unwrap_or_default();
        if matches!(
            scheme,
            "kurrentdb" | "esdb" | "kurrentdb+discover" | "esdb+discover"
        ) {
            return Ok(StreamChoice::KurrentDb {
                url: url.to_owned(),
            });
        }
        if !(url.starts_with("nats://") || url.starts_with("tls://")) {
            return Err(format!(
                "stream.url must be \"sqlite\", nats:// (tls://) server URLs or a kurrentdb:// \
                 connection string, not a {scheme:?} URL"
            ));
        }
        let mut options = nats;
        let (urls, query) = match url.rsplit_once('?') {
            Some((u, q)) => (u, Some(q)),
            None => (url, None),
        };
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "stream" => options.stream = v.to_owned(),
                "subject_prefix" => options.subject_prefix = v.to_owned(),
                "replicas" => {
                    options.replicas = v
                        .parse()
                        .map_err(|_| format!("stream.url: replicas={v:?} is not a number"))?
                }
                other => {
                    return Err(format!(
                        "stream.url: unknown parameter {other:?} (stream, subject_prefix, replicas)"
                    ))
                }
            }
        }
        options.check().map_err(|e| format!("stream: {e}"))?;
        // The URLs are checked by the client when the stream is opened (lazily, so that
        // NATS may be down at start); an empty list is refused here.
        for u in urls.split(',').map(str::trim) {
            let host = u.split_once("://").map_or("", |(_, rest)| rest);
            if host.is_empty() {
                return Err("stream.url names no NATS server (nats://HOST:PORT)".into());
            }
            if !(u.starts_with("nats://") || u.starts_with("tls://")) {
                return Err("stream.url: every server URL must be nats:// or tls://".into());
            }
        }
        Ok(StreamChoice::Nats {
            urls: urls.to_owned(),
            options,
        })
    }

    /// A short name for logs and status.
    pub fn name(&self) -> &'static str {
        match self {
            StreamChoice::Sqlite => "sqlite",
            StreamChoice::Nats { .. } => "nats",
            StreamChoice::KurrentDb { .. } => "kurrentdb",
        }
    }

    /// True for the stream in `<data-dir>/stream.db`.
    pub fn is_embedded(&self) -> bool {
        matches!(self, StreamChoice::Sqlite)
    }

    /// Opens the stream. An unreachable NATS is not an error: the stream starts pending and
    /// connects on first use (the catch-up worker keeps trying); a refusal (a stream of the
    /// wrong shape, bad credentials) is.
    pub async fn open(&self, data_dir: &Path) -> Result<StreamBackend, StreamError> {
        match self {
            StreamChoice::Sqlite => Ok(StreamBackend::Sqlite(SqliteStream::open(data_dir).await?)),
            StreamChoice::Nats { urls, options } => {
                match NatsStream::connect(urls, options.clone()).await {
                    Ok(s) => Ok(StreamBackend::Nats(s)),
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(
                            error = %e,
                            "NATS is unreachable at start; the stream is pending until it answers"
                        );
                        Ok(StreamBackend::Nats(NatsStream::lazy(
                            urls,
                            options.clone(),
                        )?))
                    }
                    Err(e) => Err(e),
                }
            }
            #[cfg(feature = "kurrentdb")]
            StreamChoice::KurrentDb { url } => Ok(StreamBackend::Kurrent(
                triplicate_stream::KurrentStream::connect(url).await?,
            )),
            #[cfg(not(feature = "kurrentdb"))]
            StreamChoice::KurrentDb { .. } => Err(StreamError::Backend {
                context: "open the KurrentDB stream",
                source: "this build has no KurrentDB backend: build with `--features kurrentdb` \
                         (cargo build --release --features kurrentdb --bin triplicate)"
                    .into(),
            }),
        }
    }
}

/// The default checkpoint origin of a development ledger.
pub const DEV_ORIGIN: &str = "triplicate.invalid/dev";

/// Why the set-up failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error(transparent)]
    Policy(#[from] triplicate_policy::PolicyError),
    #[error("open the ledger: {0}")]
    Ledger(#[from] triplicate_ledger::LedgerError),
    #[error("open the event stream: {0}")]
    Stream(#[from] triplicate_stream::StreamError),
    #[error("open the projection: {0}")]
    Projection(#[from] triplicate_projection::ProjectionError),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SetupError + 'a {
    move |source| SetupError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Where the development set-up keeps its files under a data directory.
#[derive(Debug, Clone)]
pub struct DevPaths {
    pub keys: PathBuf,
    pub policies: PathBuf,
    pub token: PathBuf,
    /// The development auditor's bearer token (`dev-auditor-token`).
    pub auditor_token: PathBuf,
}

impl DevPaths {
    pub fn new(data_dir: &Path) -> DevPaths {
        DevPaths {
            keys: data_dir.join("keys"),
            policies: data_dir.join("policies"),
            token: data_dir.join("dev-admin-token"),
            auditor_token: data_dir.join("dev-auditor-token"),
        }
    }

    /// The development auditor's key file (`auditor-1.pem`), in group `auditors`.
    pub fn auditor(&self) -> PathBuf {
        self.keys.join("auditor-1.pem")
    }

    /// The approver key files (`approver-1.pem` … `approver-3.pem`).
    pub fn approver(&self, n: usize) -> PathBuf {
        self.keys.join(format!("approver-{n}.pem"))
    }
}

fn load_or_generate(
    path: &Path,
    name: &str,
    generated: &mut Vec<PathBuf>,
) -> Result<SoftwareSigner, SetupError> {
    if !path.exists() {
        let key = SoftwareSigner::generate(name);
        key.write_pem_file(path).map_err(|e| SetupError::Key {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        generated.push(path.to_owned());
    }
    SoftwareSigner::from_pem_file(path).map_err(|e| SetupError::Key {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// The development set-up, created on first start and reused afterwards.
#[derive(Debug)]
pub struct DevSetup {
    pub notary: Arc<dyn Signer>,
    pub approvers: Vec<SoftwareSigner>,
    /// The auditor who approves or rejects proposed repairs (group `auditors`).
    pub auditor: SoftwareSigner,
    pub policy_dir: PathBuf,
    pub tokens: Vec<TokenEntry>,
    /// The admin token in clear, read from `dev-admin-token`.
    pub admin_token: String,
    /// The auditor token in clear, read from `dev-auditor-token`.
    pub auditor_token: String,
}

/// Creates (once) and loads the development notary, three approvers, a policy and an admin
/// token under `data_dir`, warning loudly about anything it generated.
pub fn dev_setup(data_dir: &Path) -> Result<DevSetup, SetupError> {
    let paths = DevPaths::new(data_dir);
    std::fs::create_dir_all(&paths.keys).map_err(io("create key directory", &paths.keys))?;
    let mut generated = Vec::new();
    let notary = load_or_generate(
        &paths.keys.join("notary.pem"),
        "triplicate-dev-notary",
        &mut generated,
    )?;
    let approvers = (1..=3)
        .map(|n| {
            load_or_generate(
                &paths.approver(n),
                &format!("dev-approver-{n}"),
                &mut generated,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let auditor = load_or_generate(&paths.auditor(), "dev-auditor-1", &mut generated)?;
    if !paths.policies.join("keys.toml").exists() {
        std::fs::create_dir_all(&paths.policies)
            .map_err(io("create policy directory", &paths.policies))?;
        let (keys, governance) = dev_policy_text(&notary, &approvers, &auditor);
        let k = paths.policies.join("keys.toml");
        std::fs::write(&k, keys).map_err(io("write", &k))?;
        let g = paths.policies.join("governance.toml");
        std::fs::write(&g, governance).map_err(io("write", &g))?;
        generated.push(paths.policies.clone());
    }
    let admin_token = dev_token(&paths.token, &mut generated)?;
    let auditor_token = dev_token(&paths.auditor_token, &mut generated)?;
    for path in &generated {
        tracing::warn!(
            file = %path.display(),
            "GENERATED FOR DEVELOPMENT: software keys, a policy that accepts them, and an admin \
             token in a file. Receipts signed by this set-up prove nothing outside this machine."
        );
    }
    Ok(DevSetup {
        notary: Arc::new(notary),
        approvers,
        auditor,
        policy_dir: paths.policies,
        tokens: vec![
            TokenEntry {
                name: "dev-admin".into(),
                role: Role::Admin,
                sha256: hash_token(&admin_token),
            },
            TokenEntry {
                name: "dev-auditor".into(),
                role: Role::Auditor,
                sha256: hash_token(&auditor_token),
            },
        ],
        admin_token,
        auditor_token,
    })
}

/// Reads a development token file, creating it (mode 0600) with a fresh random token first.
fn dev_token(path: &Path, generated: &mut Vec<PathBuf>) -> Result<String, SetupError> {
    if !path.exists() {
        let mut raw = [0u8; 24];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
        let token = format!("tpl_dev_{}", hex::encode(raw));
        write_private(path, token.as_bytes())?;
        generated.push(path.to_owned());
    }
    Ok(std::fs::read_to_string(path)
        .map_err(io("read", path))?
        .trim()
        .to_owned())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SetupError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(io("create", path))?;
    f.write_all(bytes).map_err(io("write", path))?;
    f.sync_all().map_err(io("sync", path))
}

/// `keys.toml` and `governance.toml` for the development set-up: three software approvers in
/// group `board` (the first also in `treasury`), and one auditor in group `auditors` (who
/// reviews proposed repairs and approves no decision); every kind needs 2 of `board`, and
/// budget approvals also 1 of `treasury`.
pub fn dev_policy_text(
    notary: &SoftwareSigner,
    approvers: &[SoftwareSigner],
    auditor: &SoftwareSigner,
) -> (String, String) {
    let mut keys = String::from(
        "# DEVELOPMENT POLICY, generated by `triplicate serve` on first start.\n\
         # Software keys only; production policies live in policies/ (see its README).\n\n",
    );
    let pk = |s: &SoftwareSigner| s.public_key().to_base64();
    keys.push_str(&format!(
        "[notary]\nalg = \"ed25519\"\npublic_key = \"{}\"\nheld = \"software\"\n\n",
        pk(notary)
    ));
    for (i, a) in approvers.iter().enumerate() {
        let groups = if i == 0 {
            "[\"board\", \"treasury\"]"
        } else {
            "[\"board\"]"
        };
        keys.push_str(&format!(
            "[[key]]\nalg = \"ed25519\"\npublic_key = \"{}\"\nholder = \"Development approver {}\"\ngroups = {groups}\nheld = \"software\"\nvalid_from = 2000-01-01T00:00:00Z\n\n",
            pk(a),
            i + 1
        ));
    }
    keys.push_str(&format!(
        "[[key]]\nalg = \"ed25519\"\npublic_key = \"{}\"\nholder = \"Development auditor 1\"\ngroups = [\"auditors\"]\nheld = \"software\"\nvalid_from = 2000-01-01T00:00:00Z\n\n",
        pk(auditor)
    ));
    let governance = "# DEVELOPMENT POLICY, generated by `triplicate serve` on first start.\n\n\
        [groups.auditors]\ndescription = \"Development auditors: review proposed repairs\"\nrequire_hardware = false\n\n\
        [groups.board]\ndescription = \"Development board\"\nrequire_hardware = false\n\n\
        [groups.treasury]\ndescription = \"Development treasury\"\nrequire_hardware = false\n\n\
        [kinds.\"budget.approval\"]\nquorum = [\n    { group = \"board\", threshold = 2 },\n    { group = \"treasury\", threshold = 1 },\n]\n\n\
        [default]\naction = \"quorum\"\nquorum = [{ group = \"board\", threshold = 2 }]\n"
        .to_owned();
    (keys, governance)
}

/// Where the projection lives.
#[derive(Debug, Clone)]
pub enum ProjectionChoice {
    /// `<data-dir>/projection.db`.
    Sqlite,
    /// PostgreSQL: the owner URL (runs migrations) and the writer URL the service uses.
    Postgres { url: String },
}

enum MigrateError {
    /// No connection could be made (refused, timed out, no route): PostgreSQL is down.
    Unreachable(String),
    /// It answered and refused (authentication, an unknown database, a failed migration), or
    /// the URL is malformed.
    Failed(triplicate_projection::ProjectionError),
}

/// Applies the projection's migrations as the URL's (owner) role.
async fn migrate_postgres(url: &str) -> Result<(), MigrateError> {
    let owner = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| match e {
            // It answered, and said no (authentication, an unknown database), or the URL is
            // wrong: waiting will not help.
            sqlx::Error::Database(_) | sqlx::Error::Configuration(_) => MigrateError::Failed(
                triplicate_projection::ProjectionError::Unavailable(e.to_string()),
            ),
            // Refused, reset, timed out, or cut during the handshake: it may come back.
            other => MigrateError::Unreachable(other.to_string()),
        })?;
    let out = PgProjection::migrate(&owner)
        .await
        .map_err(MigrateError::Failed);
    owner.close().await;
    out
}

/// Applies the projection's migrations as the owner role of `url` (a restore target, a drill's
/// scratch database).
pub async fn migrate_postgres_url(url: &str) -> Result<(), String> {
    migrate_postgres(url).await.map_err(|e| match e {
        MigrateError::Unreachable(why) => format!("PostgreSQL is unreachable: {why}"),
        MigrateError::Failed(e) => e.to_string(),
    })
}

/// Opens the embedded ledger and stream and the chosen projection under `data_dir`.
pub async fn open_parts(
    data_dir: &Path,
    origin: &str,
    notary: Arc<dyn Signer>,
    policy_dir: &Path,
    projection: ProjectionChoice,
    stream: &StreamChoice,
    options: ServiceOptions,
) -> Result<(ServiceParts, Arc<EmbeddedLedger>), SetupError> {
    let policy = Policy::load(policy_dir)?;
    let ledger_dir = data_dir.join("ledger");
    let ledger = {
        let notary = notary.clone();
        let mut config = LedgerConfig::new(ledger_dir.clone(), origin.to_owned());
        // The service's flusher (`spawn_flusher`) flushes once a second on its own thread;
        // the append path's own interval is only a backstop, so the committer, which would
        // otherwise run the flush that falls due, rarely does.
        config.flush_interval = std::time::Duration::from_secs(10);
        tokio::task::spawn_blocking(move || EmbeddedLedger::open(config, notary))
            .await
            .map_err(|e| SetupError::Io {
                what: "open ledger (task)",
                path: ledger_dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })??
    };
    let ledger = Arc::new(ledger);
    let stream = stream.open(data_dir).await?;
    let projection = match projection {
        ProjectionChoice::Sqlite => {
            ProjectionBackend::Sqlite(SqliteProjection::open(data_dir).await?)
        }
        ProjectionChoice::Postgres { url } => {
            let writer = PgOptions::with_role(triplicate_projection::PG_WRITER_ROLE);
            match migrate_postgres(&url).await {
                Ok(()) => ProjectionBackend::Postgres(PgProjection::connect(&url, writer).await?),
                Err(MigrateError::Unreachable(why)) => {
                    // The ledger is the store of record: the service starts, the projection is
                    // pending, and the catch-up worker fills it once PostgreSQL answers (after
                    // the migrations, which are retried in the background).
                    tracing::warn!(
                        error = %why,
                        "PostgreSQL is unreachable at start; the projection is pending until \
                         it answers"
                    );
                    let url_for_retry = url.clone();
                    tokio::spawn(async move {
                        let mut wait = std::time::Duration::from_millis(500);
                        loop {
                            tokio::time::sleep(wait).await;
                            match migrate_postgres(&url_for_retry).await {
                                Ok(()) => return,
                                Err(MigrateError::Unreachable(_)) => {}
                                Err(MigrateError::Failed(e)) => {
                                    tracing::error!(error = %e, "PostgreSQL migrations failed");
                                }
                            }
                            wait = (wait * 2).min(std::time::Duration::from_secs(30));
                        }
                    });
                    ProjectionBackend::Postgres(PgProjection::connect_lazy(&url, writer)?)
                }
                Err(MigrateError::Failed(e)) => return Err(e.into()),
            }
        }
    };
    Ok((
        ServiceParts {
            ledger: ledger.clone(),
            ledger_dir: Some(ledger_dir),
            notary,
            policy,
            policy_dir: Some(policy_dir.to_owned()),
            stream,
            projection,
            options,
        },
        ledger,
    ))
}

#[cfg(test)]
mod stream_choice_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A build without the KurrentDB backend refuses a kurrentdb:// URL with how to get one,
    /// and never shows the URL (it may carry a password).
    #[cfg(not(feature = "kurrentdb"))]
    #[tokio::test]
    async fn a_kurrentdb_url_without_the_feature_says_how_to_build_it() {
        let c = StreamChoice::parse("kurrentdb://admin:hunter2@k:2113", NatsOptions::default())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let e = c.open(dir.path()).await.unwrap_err().to_string();
        assert!(e.contains("--features kurrentdb"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    /// Errors about a NATS URL never echo it.
    #[test]
    fn nats_url_errors_do_not_echo_the_url() {
        for url in [
            "nats://u:hunter2@h:4222?colour=red",
            "nats://u:hunter2@h,foo://x",
        ] {
            let e = StreamChoice::parse(url, NatsOptions::default()).unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
