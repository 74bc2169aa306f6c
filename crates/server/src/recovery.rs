//! Backups and restores of a deployment: which stores a data directory or a configuration
//! file names, opened the way a backup or a restore needs them, around `triplicate-recovery`.
//!
//! A backup may run while the service runs: it reads the ledger's files without its lock, the
//! SQLite stream through a second connection (WAL mode lets readers in), the projection
//! read-only (SQLite) or as `triplicate_reader` (PostgreSQL). A restore refuses a target that
//! holds anything unless forced; forced, it moves the embedded stores aside (never deletes
//! them) and still refuses a PostgreSQL database that holds records, which it will not empty.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use triplicate_keys::{Signer, VerifierKey};
use triplicate_projection::{
    PgOptions, PgProjection, Projection, ReportStore, SqliteProjection, PG_READER_ROLE,
    PG_WRITER_ROLE,
};
use triplicate_recovery::{
    BackupOutcome, BackupSources, RecoveryError, RestoreOutcome, RestoreTargets, VerifiedBackup,
};
use triplicate_stream::EventStream;

use crate::config::Config;
use crate::setup::{DevPaths, ProjectionChoice, StreamChoice};
use crate::stores::{ProjectionBackend, StreamBackend};

/// The deployment a backup, restore or drill acts on.
#[derive(Debug, Clone)]
pub enum Deployment {
    /// The development layout `triplicate serve --data-dir D` uses: the notary key in
    /// `D/keys/notary.pem`, the embedded stores, optionally a PostgreSQL projection.
    DataDir {
        data_dir: PathBuf,
        projection: ProjectionChoice,
        stream: StreamChoice,
    },
    /// What a configuration file names.
    Config(Box<Config>),
}

/// Why a backup or restore did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryFailure {
    /// The backup failed a check (exit code 1); nothing was written.
    #[error(transparent)]
    Refused(RecoveryError),
    /// The target holds data (exit code 2); nothing was written.
    #[error("the restore target is not empty: {}; restore into an empty data directory, or pass --force to move the embedded stores aside first", .0.join("; "))]
    TargetNotEmpty(Vec<String>),
    /// Anything else (exit code 2).
    #[error("{0}")]
    Failed(String),
}

impl From<RecoveryError> for RecoveryFailure {
    fn from(e: RecoveryError) -> Self {
        match e {
            RecoveryError::Refused { .. } => RecoveryFailure::Refused(e),
            RecoveryError::TargetNotEmpty { path, reason } => {
                RecoveryFailure::TargetNotEmpty(vec![format!("{}: {reason}", path.display())])
            }
            other => RecoveryFailure::Failed(other.to_string()),
        }
    }
}

fn failed(what: &str) -> impl Fn(String) -> RecoveryFailure + '_ {
    move |e| RecoveryFailure::Failed(format!("{what}: {e}"))
}

impl Deployment {
    /// Where the embedded stores live.
    pub fn data_dir(&self) -> &Path {
        match self {
            Deployment::DataDir { data_dir, .. } => data_dir,
            Deployment::Config(c) => &c.data_dir,
        }
    }

    pub fn ledger_dir(&self) -> PathBuf {
        self.data_dir().join("ledger")
    }

    pub fn origin(&self) -> &str {
        match self {
            Deployment::DataDir { .. } => crate::setup::DEV_ORIGIN,
            Deployment::Config(c) => &c.origin,
        }
    }

    /// Where the policies live (`keys.toml`, `governance.toml`, `verification.toml`).
    pub fn policy_dir(&self) -> PathBuf {
        match self {
            Deployment::DataDir { data_dir, .. } => DevPaths::new(data_dir).policies,
            Deployment::Config(c) => c.policy_dir.clone(),
        }
    }

    pub fn projection_choice(&self) -> Result<ProjectionChoice, RecoveryFailure> {
        match self {
            Deployment::DataDir { projection, .. } => Ok(projection.clone()),
            Deployment::Config(c) => c.projection_choice().map_err(RecoveryFailure::Failed),
        }
    }

    pub fn stream_choice(&self) -> Result<StreamChoice, RecoveryFailure> {
        match self {
            Deployment::DataDir { stream, .. } => Ok(stream.clone()),
            Deployment::Config(c) => c.stream_choice().map_err(RecoveryFailure::Failed),
        }
    }

    /// Opens the notary signer (a blocking call for hardware keys).
    pub async fn notary(&self) -> Result<Arc<dyn Signer>, RecoveryFailure> {
        match self {
            Deployment::DataDir { data_dir, .. } => {
                let key = DevPaths::new(data_dir).keys.join("notary.pem");
                if !key.exists() {
                    return Err(RecoveryFailure::Failed(format!(
                        "{} has no notary key ({} is missing): a development data directory \
                         needs its keys/ (copy them from the deployment the backup came from), \
                         or use --config",
                        data_dir.display(),
                        key.display()
                    )));
                }
                let s = triplicate_keys::SoftwareSigner::from_pem_file(&key).map_err(|e| {
                    RecoveryFailure::Failed(format!("notary key {}: {e}", key.display()))
                })?;
                Ok(Arc::new(s))
            }
            Deployment::Config(c) => crate::open_notary(&c.notary)
                .await
                .map_err(|e| RecoveryFailure::Failed(e.to_string())),
        }
    }

    /// Opens the stream the deployment uses.
    pub async fn open_stream(&self) -> Result<StreamBackend, RecoveryFailure> {
        self.stream_choice()?
            .open(self.data_dir())
            .await
            .map_err(|e| failed("open the stream")(e.to_string()))
    }

    /// Opens the projection: as its writer (running the migrations on PostgreSQL), or for
    /// reading only.
    pub async fn open_projection(&self, write: bool) -> Result<ProjectionBackend, RecoveryFailure> {
        let f = failed("open the projection");
        match self.projection_choice()? {
            ProjectionChoice::Sqlite if write => Ok(ProjectionBackend::Sqlite(
                SqliteProjection::open(self.data_dir())
                    .await
                    .map_err(|e| f(e.to_string()))?,
            )),
            ProjectionChoice::Sqlite => Ok(ProjectionBackend::Sqlite(
                SqliteProjection::open_read_only(self.data_dir())
                    .await
                    .map_err(|e| f(e.to_string()))?,
            )),
            ProjectionChoice::Postgres { url } => {
                if write {
                    crate::setup::migrate_postgres_url(&url).await.map_err(&f)?;
                }
                let role = if write {
                    PG_WRITER_ROLE
                } else {
                    PG_READER_ROLE
                };
                Ok(ProjectionBackend::Postgres(
                    PgProjection::connect(&url, PgOptions::with_role(role))
                        .await
                        .map_err(|e| f(e.to_string()))?,
                ))
            }
        }
    }
}

/// Backs up `dep` into `out` (see `triplicate_recovery::backup`).
pub async fn backup(dep: &Deployment, out: &Path) -> Result<BackupOutcome, RecoveryFailure> {
    let notary = dep.notary().await?;
    let stream = dep.open_stream().await?;
    let projection = dep.open_projection(false).await?;
    let ledger_dir = dep.ledger_dir();
    if !ledger_dir
        .join(triplicate_ledger::layout::CHECKPOINT)
        .exists()
    {
        return Err(RecoveryFailure::Failed(format!(
            "{} holds no ledger",
            ledger_dir.display()
        )));
    }
    Ok(triplicate_recovery::backup(
        BackupSources {
            ledger_dir: &ledger_dir,
            stream: &stream,
            projection: &projection,
            notary,
        },
        out,
    )
    .await?)
}

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Move the embedded stores of a non-empty target aside first.
    pub force: bool,
    /// The notary key to trust (else the deployment's own notary's public key). When both are
    /// known they must be the same key.
    pub trusted: Option<VerifierKey>,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    pub backup: VerifiedBackup,
    pub outcome: RestoreOutcome,
    /// Where a forced restore moved the old embedded stores.
    pub moved_aside: Option<PathBuf>,
}

const SQLITE_SUFFIXES: [&str; 3] = ["", "-wal", "-shm"];

/// What the target's stores already hold, read without changing anything: one line per
/// non-empty store.
async fn occupied(dep: &Deployment) -> Result<Vec<String>, RecoveryFailure> {
    let mut out = Vec::new();
    let ldir = dep.ledger_dir();
    if std::fs::read_dir(&ldir).is_ok_and(|mut d| d.next().is_some()) {
        out.push(format!("{} is not empty", ldir.display()));
    }
    let data = dep.data_dir();
    let embedded_stream = dep.stream_choice()?.is_embedded();
    if !embedded_stream || data.join("stream.db").exists() {
        let s = dep.open_stream().await?;
        if let Some(h) = s
            .highest_seq()
            .await
            .map_err(|e| failed("read the stream")(e.to_string()))?
        {
            out.push(format!("the stream holds records up to seq {h}"));
        }
    }
    let pg = matches!(dep.projection_choice()?, ProjectionChoice::Postgres { .. });
    if pg || data.join("projection.db").exists() {
        let p = dep.open_projection(pg).await?;
        let f = failed("read the projection");
        if let Some(h) = p.highest_seq().await.map_err(|e| f(e.to_string()))? {
            out.push(format!("the projection holds records up to seq {h}"));
        } else if !p
            .reports(None, 1)
            .await
            .map_err(|e| f(e.to_string()))?
            .is_empty()
        {
            out.push("the projection holds verification reports".into());
        }
    }
    Ok(out)
}

/// Moves the embedded stores of `dep` (the ledger directory, `stream.db`, a SQLite
/// `projection.db`, `writes-frozen`) into `<data-dir>/replaced-<time>/`.
fn move_aside(dep: &Deployment) -> Result<PathBuf, RecoveryFailure> {
    let data = dep.data_dir();
    let stamp = triplicate_core::Timestamp::now()
        .to_string()
        .replace([':', '.'], "-");
    let aside = data.join(format!("replaced-{stamp}"));
    std::fs::create_dir_all(&aside)
        .map_err(|e| failed("create the aside directory")(e.to_string()))?;
    let mut names: Vec<String> = vec!["ledger".into(), crate::service::FREEZE_FILE.into()];
    for base in ["stream.db", "projection.db"] {
        names.extend(SQLITE_SUFFIXES.iter().map(|s| format!("{base}{s}")));
    }
    for name in names {
        let from = data.join(&name);
        if from.exists() {
            std::fs::rename(&from, aside.join(&name))
                .map_err(|e| failed("move a store aside")(format!("{}: {e}", from.display())))?;
        }
    }
    tracing::warn!(aside = %aside.display(), "the target's embedded stores were moved aside");
    Ok(aside)
}

/// Restores the backup in `from` into `dep`: checks it completely first (nothing is written
/// when it fails a check), refuses a non-empty target unless `force`, then restores.
pub async fn restore(
    dep: &Deployment,
    from: &Path,
    options: RestoreOptions,
) -> Result<Restored, RecoveryFailure> {
    let own = match dep.notary().await {
        Ok(n) => Some(VerifierKey::of(n.as_ref())),
        Err(e) if options.trusted.is_none() => return Err(e),
        Err(_) => None,
    };
    let trusted = match (options.trusted, own) {
        (Some(t), Some(o)) if t.key != o.key || t.name != o.name => {
            return Err(RecoveryFailure::Failed(format!(
                "--notary-vkey names key {} but the deployment's notary is {}: the restored \
                 ledger could not be opened with it",
                t.key.key_id(),
                o.key.key_id()
            )))
        }
        (Some(t), _) => t,
        (None, Some(o)) => o,
        (None, None) => unreachable!("returned above"),
    };
    let verified = triplicate_recovery::verify_backup(from, &trusted).await?;
    if verified.manifest.origin != dep.origin() {
        return Err(RecoveryFailure::Failed(format!(
            "the backup's ledger has origin {:?} but the target deployment's is {:?}",
            verified.manifest.origin,
            dep.origin()
        )));
    }
    let full = occupied(dep).await?;
    let mut moved_aside = None;
    if !full.is_empty() {
        let pg_full = full.iter().any(|l| l.contains("projection"))
            && matches!(dep.projection_choice()?, ProjectionChoice::Postgres { .. });
        let nats_full =
            full.iter().any(|l| l.contains("stream")) && !dep.stream_choice()?.is_embedded();
        if !options.force {
            return Err(RecoveryFailure::TargetNotEmpty(full));
        }
        if nats_full {
            return Err(RecoveryFailure::Failed(
                "the NATS JetStream stream holds events; --force moves embedded stores aside but \
                 never deletes a JetStream stream: configure a new stream name ([stream.nats] \
                 stream) or delete the old stream yourself after saving it"
                    .into(),
            ));
        }
        if pg_full {
            return Err(RecoveryFailure::Failed(
                "the PostgreSQL projection holds data; --force moves embedded stores aside but \
                 never empties a database: create a fresh database and point the projection at it"
                    .into(),
            ));
        }
        moved_aside = Some(move_aside(dep)?);
    }
    std::fs::create_dir_all(dep.data_dir())
        .map_err(|e| failed("create the data directory")(e.to_string()))?;
    let stream = dep.open_stream().await?;
    let projection = dep.open_projection(true).await?;
    let outcome = triplicate_recovery::restore(
        &verified,
        RestoreTargets {
            ledger_dir: &dep.ledger_dir(),
            stream: &stream,
            projection: &projection,
        },
        &trusted,
    )
    .await?;
    Ok(Restored {
        backup: verified,
        outcome,
        moved_aside,
    })
}
