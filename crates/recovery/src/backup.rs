//! Taking a backup.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use triplicate_core::{Hash, Timestamp};
use triplicate_keys::{Signer, VerifierKey};
use triplicate_projection::{DrillStore, Projection, Rederived, ReportStore, MAX_RANGE};
use triplicate_stream::EventStream;
use uuid::Uuid;

use crate::export::{DrillLine, EventLine, ReportLine, ReviewLine};
use crate::layout::{
    LEDGER_DIR, PROJECTION_DRILLS, PROJECTION_RECORDS, PROJECTION_REPORTS, STREAM_EVENTS,
};
use crate::manifest::{
    FileEntry, Manifest, ProjectionPart, SignedManifest, StreamPart, MANIFEST_FILE, MANIFEST_FORMAT,
};
use crate::RecoveryError;

/// What a backup reads: the live ledger's directory (its files are read, never its writer's
/// lock: a running service may keep writing), the other two stores, and the notary that signs
/// the manifest.
pub struct BackupSources<'a, S, P> {
    pub ledger_dir: &'a Path,
    pub stream: &'a S,
    pub projection: &'a P,
    pub notary: Arc<dyn Signer>,
}

impl<S, P> std::fmt::Debug for BackupSources<'_, S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupSources")
            .field("ledger_dir", &self.ledger_dir)
            .field("notary", &self.notary.name())
            .finish_non_exhaustive()
    }
}

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    pub dir: PathBuf,
    pub manifest: SignedManifest,
    pub elapsed: Duration,
}

/// A file written line by line, hashed as it is written, renamed into place when finished.
struct LineFile {
    path: PathBuf,
    tmp: PathBuf,
    rel: &'static str,
    out: tokio::io::BufWriter<tokio::fs::File>,
    hash: Sha256,
    bytes: u64,
}

impl LineFile {
    async fn create(dir: &Path, rel: &'static str) -> Result<LineFile, RecoveryError> {
        let path = dir.join(rel);
        if let Some(p) = path.parent() {
            tokio::fs::create_dir_all(p)
                .await
                .map_err(RecoveryError::io("create directory", p))?;
        }
        let tmp = path.with_extension("jsonl.tmp");
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(RecoveryError::io("create export", &tmp))?;
        Ok(LineFile {
            path,
            tmp,
            rel,
            out: tokio::io::BufWriter::with_capacity(1 << 20, file),
            hash: Sha256::new(),
            bytes: 0,
        })
    }

    async fn line(&mut self, data: &[u8]) -> Result<(), RecoveryError> {
        self.hash.update(data);
        self.hash.update(b"\n");
        self.bytes += data.len() as u64 + 1;
        self.out
            .write_all(data)
            .await
            .map_err(RecoveryError::io("write export", &self.tmp))?;
        self.out
            .write_all(b"\n")
            .await
            .map_err(RecoveryError::io("write export", &self.tmp))
    }

    async fn finish(mut self) -> Result<FileEntry, RecoveryError> {
        self.out
            .flush()
            .await
            .map_err(RecoveryError::io("write export", &self.tmp))?;
        self.out
            .get_mut()
            .sync_all()
            .await
            .map_err(RecoveryError::io("sync export", &self.tmp))?;
        tokio::fs::rename(&self.tmp, &self.path)
            .await
            .map_err(RecoveryError::io("install export", &self.path))?;
        let digest: Hash = self.hash.finalize().into();
        Ok(FileEntry {
            path: self.rel.to_owned(),
            sha256: hex::encode(digest),
            bytes: self.bytes,
        })
    }
}

fn json_line<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, RecoveryError> {
    serde_json::to_vec(v).map_err(|e| RecoveryError::Damaged {
        store: "export",
        reason: e.to_string(),
    })
}

/// Writes a backup of the three stores into `out` (created if missing) and returns its signed
/// manifest.
///
/// The ledger part is a snapshot of its last durable checkpoint (tree size `N`), checked
/// against that checkpoint with the notary's key before the manifest is signed; backing up
/// into a directory that holds an earlier backup of the same ledger copies only the tiles and
/// bundles that are new. The stream export holds every event with a seq below `N` in global
/// order; the projection export every record below `N` re-derived from its rows (seqs whose
/// rows cannot be re-derived are listed in the manifest), and every verification report with
/// its reviews. The manifest, written last, lists every file with its SHA-256 and is signed by
/// the notary: until it is written the directory holds no manifest, so a backup that did not
/// finish can never be restored by mistake.
pub async fn backup<S, P>(
    src: BackupSources<'_, S, P>,
    out: &Path,
) -> Result<BackupOutcome, RecoveryError>
where
    S: EventStream,
    P: Projection + ReportStore + DrillStore,
{
    let started = Instant::now();
    tokio::fs::create_dir_all(out)
        .await
        .map_err(RecoveryError::io("create backup directory", out))?;
    let trusted = VerifierKey::of(src.notary.as_ref());
    let vkey = trusted
        .note_string()
        .map_err(|e| RecoveryError::Notary(format!("the notary cannot sign checkpoints: {e}")))?;

    // An earlier backup here must be ours (signed by this notary, of this ledger): its full
    // files are reused. Its manifest is set aside first, so from here until the new manifest
    // is written the directory is visibly unfinished.
    let manifest_path = out.join(MANIFEST_FILE);
    if let Ok(bytes) = tokio::fs::read(&manifest_path).await {
        let previous = SignedManifest::parse(&bytes)
            .and_then(|m| m.verify(&trusted).map(|()| m))
            .map_err(|reason| {
                RecoveryError::refused(
                    &manifest_path,
                    format!(
                        "{reason}; back up into an empty directory, or one holding an earlier \
                         backup of this ledger"
                    ),
                )
            })?;
        tracing::info!(
            tree_size = previous.manifest.tree_size,
            "incremental backup over an earlier one"
        );
        let aside = out.join(format!("{MANIFEST_FILE}.previous"));
        tokio::fs::rename(&manifest_path, &aside)
            .await
            .map_err(RecoveryError::io("set the earlier manifest aside", &aside))?;
    }

    let ledger_src = src.ledger_dir.to_path_buf();
    let ledger_dst = out.join(LEDGER_DIR);
    let snapshot = {
        let vkey = vkey.clone();
        tokio::task::spawn_blocking(move || {
            triplicate_ledger::backup::copy_snapshot(&ledger_src, &ledger_dst, &vkey)
        })
        .await
        .map_err(|e| RecoveryError::Task(e.to_string()))??
    };
    let size = snapshot.size;

    // The stream: every event below the snapshot's size, in global order.
    let mut events = LineFile::create(out, STREAM_EVENTS).await?;
    let mut exported = 0u64;
    let mut after = None;
    loop {
        let page = src.stream.read_all(after, 1_000).await?;
        for e in &page.events {
            if e.event.seq >= size {
                continue;
            }
            let data = String::from_utf8(e.event.record_bytes.clone()).map_err(|_| {
                RecoveryError::Damaged {
                    store: "stream",
                    reason: format!("event at {} is not UTF-8 JSON", e.position),
                }
            })?;
            let line = EventLine {
                position: e.position.to_string(),
                stream: e.stream_id.to_string(),
                revision: e.revision,
                seq: e.event.seq,
                event_type: triplicate_stream::EVENT_TYPE.to_owned(),
                leaf_hash: hex::encode(e.event.leaf_hash),
                stored_at: e.stored_at,
                data,
            };
            events.line(&json_line(&line)?).await?;
            exported += 1;
        }
        after = page.next_after(after);
        if page.end {
            break;
        }
    }
    let stream_highest = src.stream.highest_seq().await?;
    let events_file = events.finish().await?;

    // The projection: records re-derived from their rows, then the reports.
    let mut records = LineFile::create(out, PROJECTION_RECORDS).await?;
    let mut damaged = Vec::new();
    let mut record_count = 0u64;
    let mut start = 0u64;
    while start < size {
        let end = (start + MAX_RANGE).min(size);
        for r in src.projection.record_bytes(start, end).await? {
            match &r.content {
                Rederived::Bytes(b) => {
                    records.line(b).await?;
                    record_count += 1;
                }
                Rederived::Damaged(why) => {
                    tracing::warn!(seq = r.seq, reason = %why, "projection rows not exported");
                    damaged.push(r.seq);
                }
            }
        }
        start = end;
    }
    let records_file = records.finish().await?;

    let mut ids: Vec<Uuid> = Vec::new();
    let mut before = None;
    loop {
        let page = src.projection.reports(before, 1_000).await?;
        let Some(last) = page.last() else { break };
        before = Some(last.run_id);
        ids.extend(page.iter().map(|s| s.run_id));
    }
    ids.reverse();
    let mut reports = LineFile::create(out, PROJECTION_REPORTS).await?;
    for id in &ids {
        let Some(full) = src.projection.report(*id).await? else {
            continue;
        };
        let body =
            String::from_utf8(full.report.body.clone()).map_err(|_| RecoveryError::Damaged {
                store: "projection",
                reason: format!("report {id}: body is not UTF-8"),
            })?;
        let line = ReportLine {
            run_id: *id,
            digest: hex::encode(full.report.digest),
            audit_seq: full.report.audit_seq,
            body,
            reviews: full.reviews.iter().map(ReviewLine::from_row).collect(),
        };
        reports.line(&json_line(&line)?).await?;
    }
    let reports_file = reports.finish().await?;

    let mut drill_ids: Vec<Uuid> = Vec::new();
    let mut before = None;
    loop {
        let page = src.projection.drills(before, 1_000, None).await?;
        let Some(last) = page.last() else { break };
        before = Some(last.drill_id);
        drill_ids.extend(page.iter().map(|d| d.drill_id));
    }
    drill_ids.reverse();
    let mut drills = LineFile::create(out, PROJECTION_DRILLS).await?;
    for id in &drill_ids {
        let Some(d) = src.projection.drill(*id).await? else {
            continue;
        };
        let line = DrillLine::from_stored(&d).map_err(|reason| RecoveryError::Damaged {
            store: "projection",
            reason,
        })?;
        drills.line(&json_line(&line)?).await?;
    }
    let drills_file = drills.finish().await?;

    let mut files: Vec<FileEntry> = snapshot
        .files
        .iter()
        .map(|f| FileEntry {
            path: format!("{LEDGER_DIR}/{}", f.path),
            sha256: hex::encode(f.sha256),
            bytes: f.len,
        })
        .collect();
    files.extend([events_file, records_file, reports_file, drills_file]);
    files.sort_by(|a, b| a.path.cmp(&b.path));

    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_owned(),
        created_at: Timestamp::now(),
        origin: snapshot.origin.clone(),
        tree_size: size,
        root: hex::encode(snapshot.root),
        checkpoint: snapshot.checkpoint.clone(),
        notary_vkey: vkey,
        stream: StreamPart {
            events: exported,
            highest_seq: stream_highest,
        },
        projection: ProjectionPart {
            records: record_count,
            damaged,
            reports: ids.len() as u64,
            drills: drill_ids.len() as u64,
        },
        ledger_files_copied: snapshot.copied() as u64,
        files,
    };
    let notary = src.notary.clone();
    let signed =
        tokio::task::spawn_blocking(move || SignedManifest::sign(manifest, notary.as_ref()))
            .await
            .map_err(|e| RecoveryError::Task(e.to_string()))??;
    let tmp = out.join(format!("{MANIFEST_FILE}.tmp"));
    {
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(RecoveryError::io("write manifest", &tmp))?;
        f.write_all(&signed.to_bytes())
            .await
            .map_err(RecoveryError::io("write manifest", &tmp))?;
        f.sync_all()
            .await
            .map_err(RecoveryError::io("sync manifest", &tmp))?;
    }
    tokio::fs::rename(&tmp, &manifest_path)
        .await
        .map_err(RecoveryError::io("install manifest", &manifest_path))?;
    let _ = tokio::fs::remove_file(out.join(format!("{MANIFEST_FILE}.previous"))).await;
    if let Ok(d) = std::fs::File::open(out) {
        let _ = d.sync_all();
    }
    tracing::info!(
        dir = %out.display(),
        tree_size = size,
        events = exported,
        records = record_count,
        reports = ids.len(),
        "backup written"
    );
    Ok(BackupOutcome {
        dir: out.to_path_buf(),
        manifest: signed,
        elapsed: started.elapsed(),
    })
}
