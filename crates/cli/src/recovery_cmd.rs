//! `triplicate backup` and `triplicate restore`.
//!
//! Exit codes: 0 done; 1 the backup failed a check (restore) and nothing was written; 2 could
//! not run (including a target that is not empty without `--force`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;
use triplicate_server::recovery::{Deployment, RecoveryFailure, RestoreOptions};
use triplicate_server::setup::{ProjectionChoice, StreamChoice};

/// Which deployment: a development data directory or a configuration file.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// A development data directory (`serve --data-dir`): its `keys/notary.pem`, its embedded
    /// stores.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A configuration file (`serve --config`): its notary key, data directory and projection.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `--postgres-url` with `--data-dir`: the projection in PostgreSQL, as `serve` takes it.
#[derive(Debug, Args)]
pub struct PgArg {
    /// PostgreSQL URL of the projection (an owner role), with --data-dir; without it the
    /// projection is `<data-dir>/projection.db`.
    #[arg(long, env = "TRIPLICATE_POSTGRES_URL", requires = "data_dir")]
    pub postgres_url: Option<String>,
    /// NATS JetStream server URLs of the stream, with --data-dir (as `serve --stream-url`);
    /// without it the stream is `<data-dir>/stream.db`.
    #[arg(long, env = "TRIPLICATE_STREAM_URL", requires = "data_dir")]
    pub stream_url: Option<String>,
}

impl Target {
    pub fn deployment(&self, pg: &PgArg) -> Result<Deployment, String> {
        match (&self.data_dir, &self.config) {
            (Some(d), _) => Ok(Deployment::DataDir {
                data_dir: d.clone(),
                projection: match &pg.postgres_url {
                    Some(url) => ProjectionChoice::Postgres { url: url.clone() },
                    None => ProjectionChoice::Sqlite,
                },
                stream: match &pg.stream_url {
                    Some(url) => StreamChoice::parse(url, Default::default())?,
                    None => StreamChoice::Sqlite,
                },
            }),
            (None, Some(c)) => triplicate_server::config::Config::load(c)
                .map(|c| Deployment::Config(Box::new(c)))
                .map_err(|e| e.to_string()),
            (None, None) => Err("say which deployment: --data-dir DIR or --config FILE".into()),
        }
    }
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub pg: PgArg,
    /// The backup directory: created if missing; one holding an earlier backup of the same
    /// ledger is brought up to date, copying only new ledger tiles and bundles.
    #[arg(long)]
    pub out: PathBuf,
    /// Print the signed manifest's summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup directory (holding `manifest.json`).
    #[arg(long)]
    pub from: PathBuf,
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub pg: PgArg,
    /// Restore even though the target holds data: its embedded stores are moved into
    /// `<data-dir>/replaced-<time>/` first (a PostgreSQL database holding data is still refused).
    #[arg(long)]
    pub force: bool,
    /// The notary's note verifier key to trust (`name+keyid+key`, or a file holding it), as
    /// `GET /v1/keys/notary` or a receipt's holder pinned it. Without it the target's own
    /// notary key is trusted; with both, they must agree.
    #[arg(long)]
    pub notary_vkey: Option<String>,
    /// Print what was restored as JSON.
    #[arg(long)]
    pub json: bool,
}

fn could_not_run(msg: &str, json_out: bool) -> ExitCode {
    eprintln!("error: {msg}");
    if json_out {
        println!("{}", json!({ "error": msg, "exit": 2 }));
    }
    ExitCode::from(2)
}

fn failure(e: RecoveryFailure, json_out: bool) -> ExitCode {
    match e {
        RecoveryFailure::Refused(inner) => {
            let msg = inner.to_string();
            eprintln!("error: {msg}");
            eprintln!("nothing was written to the target");
            if json_out {
                println!("{}", json!({ "error": msg, "refused": true, "exit": 1 }));
            }
            ExitCode::from(1)
        }
        other => could_not_run(&other.to_string(), json_out),
    }
}

pub fn run_backup(a: BackupArgs) -> anyhow::Result<ExitCode> {
    let dep = match a.target.deployment(&a.pg) {
        Ok(d) => d,
        Err(e) => return Ok(could_not_run(&e, a.json)),
    };
    let rt = crate::client::runtime()?;
    let out = match rt.block_on(triplicate_server::recovery::backup(&dep, &a.out)) {
        Ok(o) => o,
        Err(e) => return Ok(failure(e, a.json)),
    };
    let m = &out.manifest.manifest;
    let copied: u64 = m
        .files
        .iter()
        .filter(|f| !f.path.starts_with("ledger/"))
        .map(|_| 1)
        .sum::<u64>()
        + m.ledger_files_copied;
    if a.json {
        println!(
            "{}",
            json!({
                "dir": out.dir,
                "tree_size": m.tree_size,
                "root": m.root,
                "created_at": m.created_at,
                "stream_events": m.stream.events,
                "projection_records": m.projection.records,
                "projection_damaged": m.projection.damaged,
                "reports": m.projection.reports,
                "drills": m.projection.drills,
                "files": m.files.len(),
                "ledger_files_copied": m.ledger_files_copied,
                "signed_by": out.manifest.signature.key_id,
                "seconds": out.elapsed.as_secs_f64(),
            })
        );
    } else {
        println!(
            "Backup of {} records written to {} in {:.2} s.",
            m.tree_size,
            out.dir.display(),
            out.elapsed.as_secs_f64()
        );
        println!("  ledger:     tree size {}, root {}", m.tree_size, m.root);
        println!("  stream:     {} events exported", m.stream.events);
        println!(
            "  projection: {} records, {} verification reports, {} drill reports exported",
            m.projection.records, m.projection.reports, m.projection.drills
        );
        if !m.projection.damaged.is_empty() {
            println!(
                "  WARNING: projection rows of seqs {:?} could not be re-derived and were left out",
                m.projection.damaged
            );
        }
        println!(
            "  {} files, {} written by this backup; manifest signed by notary key {}",
            m.files.len(),
            copied,
            out.manifest.signature.key_id
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_restore(a: RestoreArgs) -> anyhow::Result<ExitCode> {
    let dep = match a.target.deployment(&a.pg) {
        Ok(d) => d,
        Err(e) => return Ok(could_not_run(&e, a.json)),
    };
    let trusted = match &a.notary_vkey {
        Some(v) => match triplicate_keys::VerifierKey::parse_or_read(v) {
            Ok(k) => Some(k),
            Err(e) => return Ok(could_not_run(&format!("--notary-vkey: {e}"), a.json)),
        },
        None => None,
    };
    let rt = crate::client::runtime()?;
    let options = RestoreOptions {
        force: a.force,
        trusted,
    };
    let r = match rt.block_on(triplicate_server::recovery::restore(&dep, &a.from, options)) {
        Ok(r) => r,
        Err(e) => return Ok(failure(e, a.json)),
    };
    let b = &r.backup;
    let o = &r.outcome;
    if a.json {
        println!(
            "{}",
            json!({
                "from": b.dir,
                "data_dir": dep.data_dir(),
                "tree_size": o.tree_size,
                "root": o.root,
                "stream": {
                    "written": o.stream.written,
                    "export_agreeing": b.stream.agreeing,
                    "export_differing": b.stream.differing,
                    "export_missing": b.stream.missing,
                },
                "projection": {
                    "written": o.projection.written,
                    "export_agreeing": b.projection.agreeing,
                    "export_differing": b.projection.differing,
                    "export_missing": b.projection.missing,
                },
                "reports": o.reports,
                "reviews": o.reviews,
                "reports_unconfirmed": b.reports_unconfirmed,
                "drills": o.drills,
                "drills_unconfirmed": b.drills_unconfirmed,
                "moved_aside": r.moved_aside,
                "seconds": o.elapsed.as_secs_f64(),
            })
        );
    } else {
        println!(
            "Restored {} records into {} in {:.2} s (backup of {}, checked: manifest signature, \
             every file's SHA-256, the ledger's root against its signed checkpoint).",
            o.tree_size,
            dep.data_dir().display(),
            o.elapsed.as_secs_f64(),
            b.manifest.created_at
        );
        if let Some(aside) = &r.moved_aside {
            println!(
                "  the target's old stores were moved to {}",
                aside.display()
            );
        }
        println!("  ledger:     tree size {}, root {}", o.tree_size, o.root);
        for (name, fill, check) in [
            ("stream", &o.stream, &b.stream),
            ("projection", &o.projection, &b.projection),
        ] {
            println!(
                "  {:<11} {} records written from the ledger; the export agreed on {}, \
                 differed on {}, lacked {}",
                format!("{name}:"),
                fill.written,
                check.agreeing,
                check.differing_count,
                check.missing
            );
        }
        println!(
            "  reports:    {} verification reports with {} reviews, {} drill reports restored",
            o.reports, o.reviews, o.drills
        );
        if !b.drills_unconfirmed.is_empty() {
            println!(
                "  WARNING: the ledger does not confirm the digest of drill reports {:?}",
                b.drills_unconfirmed
            );
        }
        if !b.reports_unconfirmed.is_empty() {
            println!(
                "  WARNING: the ledger does not confirm the digest of reports {:?}",
                b.reports_unconfirmed
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
