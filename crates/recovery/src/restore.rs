//! Checking a backup, and restoring it into empty stores.

use std::io::{BufRead, BufReader};

use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use triplicate_core::digest::leaf_hash;
use triplicate_core::{Hash, Record};
use triplicate_keys::VerifierKey;
use triplicate_ledger::{EmbeddedLedger, Ledger};
use triplicate_projection::{DrillStore, Projection, ReportStore};
use triplicate_stream::EventStream;
use uuid::Uuid;

use crate::export::{DrillLine, EventLine, ReportLine};
use crate::fill::{fill_projection, fill_stream, FillOutcome};
use crate::layout::{
    LEDGER_DIR, PROJECTION_DRILLS, PROJECTION_RECORDS, PROJECTION_REPORTS, STREAM_EVENTS,
};
use crate::manifest::{Manifest, SignedManifest, MANIFEST_FILE, MANIFEST_FORMAT};
use crate::RecoveryError;

/// Most seqs listed in a summary of disagreements (the counts are always complete).
const LIST_CAP: usize = 100;

/// How an export compared with the verified ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportCheck {
    /// Entries that are exactly the ledger's record at their seq.
    pub agreeing: u64,
    /// Entries that differ from the ledger's record at their seq, or repeat a seq (the first
    /// [`LIST_CAP`] seqs).
    pub differing: Vec<u64>,
    pub differing_count: u64,
    /// Seqs below the tree size the export lacks (counted).
    pub missing: u64,
}

impl ExportCheck {
    fn differs(&mut self, seq: u64) {
        self.differing_count += 1;
        if self.differing.len() < LIST_CAP {
            self.differing.push(seq);
        }
    }
}

/// A backup that passed every check, ready to restore.
#[derive(Debug, Clone)]
pub struct VerifiedBackup {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub stream: ExportCheck,
    pub projection: ExportCheck,
    /// The reports, checked (digest, body), oldest first.
    pub reports: Vec<ReportLine>,
    /// Reports whose digest the ledger's audit record at their `audit_seq` does not confirm.
    pub reports_unconfirmed: Vec<Uuid>,
    /// The recovery-drill reports, checked (digest, notary signature), oldest first.
    pub drills: Vec<DrillLine>,
    /// Drill reports whose digest the ledger's `drill` audit record does not confirm.
    pub drills_unconfirmed: Vec<Uuid>,
}

fn safe_rel(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.starts_with('/')
        && !rel.contains('\\')
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Leaf hashes read from the ledger a window at a time, for exports in seq order: memory stays
/// flat however large the ledger is.
struct Leaves<'a> {
    ledger: &'a EmbeddedLedger,
    size: u64,
    base: u64,
    window: Vec<Hash>,
}

const LEAF_WINDOW: u64 = 65_536;

impl<'a> Leaves<'a> {
    fn new(ledger: &'a EmbeddedLedger, size: u64) -> Leaves<'a> {
        Leaves {
            ledger,
            size,
            base: 0,
            window: Vec::new(),
        }
    }

    /// The leaf at `seq`, moving the window forward as needed; `None` for a seq behind the
    /// window (an export out of order) or past the tree.
    fn get(&mut self, seq: u64) -> Result<Option<Hash>, RecoveryError> {
        if seq >= self.size || seq < self.base {
            return Ok(None);
        }
        if seq >= self.base + self.window.len() as u64 {
            self.base = seq - seq % LEAF_WINDOW;
            let end = (self.base + LEAF_WINDOW).min(self.size);
            self.window = self.ledger.leaf_hashes(self.base, end)?;
        }
        Ok(usize::try_from(seq - self.base)
            .ok()
            .and_then(|i| self.window.get(i).copied()))
    }
}

/// Compares an export, line by line, with the ledger's leaves. An export lists seqs in
/// increasing order (the stream's global order, the projection's seqs); a line whose seq is
/// not above the previous one (a duplicate, or out of order) counts as differing.
fn check_export_lines(
    path: &Path,
    ledger: &EmbeddedLedger,
    size: u64,
    mut each: impl FnMut(&str) -> Result<(u64, Hash), String>,
) -> Result<ExportCheck, RecoveryError> {
    let f = std::fs::File::open(path).map_err(RecoveryError::io("open export", path))?;
    let mut check = ExportCheck::default();
    let mut leaves = Leaves::new(ledger, size);
    let mut next = 0u64;
    let mut named = 0u64;
    for (n, line) in BufReader::with_capacity(1 << 20, f).lines().enumerate() {
        let line = line.map_err(RecoveryError::io("read export", path))?;
        let (seq, got) = each(&line)
            .map_err(|reason| RecoveryError::refused(path, format!("line {}: {reason}", n + 1)))?;
        if seq >= size {
            return Err(RecoveryError::refused(
                path,
                format!(
                    "line {}: seq {seq} is past the ledger snapshot's {size} entries",
                    n + 1
                ),
            ));
        }
        if seq < next {
            check.differs(seq);
            continue;
        }
        next = seq + 1;
        match leaves.get(seq)? {
            Some(leaf) if leaf == got => {
                check.agreeing += 1;
                named += 1;
            }
            _ => {
                check.differs(seq);
                named += 1;
            }
        }
    }
    // Every seq below the size that no line named in order.
    check.missing = size - named;
    Ok(check)
}

/// Checks a backup directory against the notary key the caller trusts, without writing
/// anything anywhere:
///
/// 1. `manifest.json` parses, has this format, and its signature verifies with `trusted`
///    (never with a key the backup carries);
/// 2. every file it lists is a plain relative path, present, of the listed length and SHA-256;
/// 3. the ledger snapshot re-derives, from its entry bundles, every tile, the stored-hash index
///    and a root equal to the signed checkpoint's, which must verify with `trusted` and be the
///    manifest's checkpoint, size and root;
/// 4. each stream event and projection record is compared with the ledger's entry at its seq
///    (counted: a store that was damaged when the backup was taken is a fact the backup
///    records, not a fault of the backup), and each report's body re-derives its digest, which
///    the ledger's audit record at its `audit_seq` should confirm.
///
/// Any failure of 1–3, or an export that cannot be parsed, is [`RecoveryError::Refused`]
/// naming the file and the reason.
pub async fn verify_backup(
    dir: &Path,
    trusted: &VerifierKey,
) -> Result<VerifiedBackup, RecoveryError> {
    let dir = dir.to_path_buf();
    let trusted = trusted.clone();
    tokio::task::spawn_blocking(move || verify_blocking(&dir, &trusted))
        .await
        .map_err(|e| RecoveryError::Task(e.to_string()))?
}

fn verify_blocking(dir: &Path, trusted: &VerifierKey) -> Result<VerifiedBackup, RecoveryError> {
    let mpath = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&mpath).map_err(|e| {
        RecoveryError::refused(
            &mpath,
            if e.kind() == std::io::ErrorKind::NotFound {
                "missing: not a backup, or one that did not finish".to_owned()
            } else {
                e.to_string()
            },
        )
    })?;
    let signed = SignedManifest::parse(&bytes).map_err(|r| RecoveryError::refused(&mpath, r))?;
    signed
        .verify(trusted)
        .map_err(|r| RecoveryError::refused(&mpath, r))?;
    let m = signed.manifest;
    if m.format != MANIFEST_FORMAT {
        return Err(RecoveryError::refused(
            &mpath,
            format!(
                "format {:?}, this version reads {MANIFEST_FORMAT:?}",
                m.format
            ),
        ));
    }
    for f in &m.files {
        if !safe_rel(&f.path) {
            return Err(RecoveryError::refused(
                &mpath,
                format!("lists {:?}, which is not a plain relative path", f.path),
            ));
        }
        let p = dir.join(&f.path);
        let (digest, len) = triplicate_ledger::backup::file_digest(&p)
            .map_err(|e| RecoveryError::refused(&p, e.to_string()))?;
        if len != f.bytes || hex::encode(digest) != f.sha256 {
            return Err(RecoveryError::refused(
                &p,
                format!(
                    "SHA-256 {} ({len} bytes) but the manifest says {} ({} bytes)",
                    hex::encode(digest),
                    f.sha256,
                    f.bytes
                ),
            ));
        }
    }
    for needed in [
        STREAM_EVENTS,
        PROJECTION_RECORDS,
        PROJECTION_REPORTS,
        PROJECTION_DRILLS,
    ] {
        if !m.files.iter().any(|f| f.path == needed) {
            return Err(RecoveryError::refused(
                &mpath,
                format!("does not list {needed}"),
            ));
        }
    }
    let vkey = trusted.note_string().map_err(|e| {
        RecoveryError::refused(&mpath, format!("the trusted key cannot verify notes: {e}"))
    })?;
    let ldir = dir.join(LEDGER_DIR);
    let report = triplicate_ledger::backup::verify_snapshot(&ldir, &vkey).map_err(|e| match e {
        triplicate_ledger::fsck::FsckError::Unreadable { file, reason }
        | triplicate_ledger::fsck::FsckError::Inconsistent { file, reason } => {
            RecoveryError::refused(file, reason)
        }
        other => RecoveryError::refused(&ldir, other.to_string()),
    })?;
    let cp_path = ldir.join(triplicate_ledger::layout::CHECKPOINT);
    let cp_text = std::fs::read_to_string(&cp_path)
        .map_err(|e| RecoveryError::refused(&cp_path, e.to_string()))?;
    if report.size != m.tree_size
        || hex::encode(report.root) != m.root
        || cp_text != m.checkpoint
        || report.origin != m.origin
    {
        return Err(RecoveryError::refused(
            &cp_path,
            format!(
                "the snapshot re-derives {} entries with root {} but the manifest says {} with {}",
                report.size,
                hex::encode(report.root),
                m.tree_size,
                m.root
            ),
        ));
    }
    let ledger_files: Vec<&str> = m
        .files
        .iter()
        .filter_map(|f| f.path.strip_prefix("ledger/"))
        .collect();
    for needed in [
        triplicate_ledger::layout::CHECKPOINT,
        triplicate_ledger::layout::HASHES,
    ] {
        if !ledger_files.contains(&needed) {
            return Err(RecoveryError::refused(
                &mpath,
                format!("does not list ledger/{needed}"),
            ));
        }
    }

    let ledger = EmbeddedLedger::open_read_only(&ldir, Some(&vkey))
        .map_err(|e| RecoveryError::refused(&ldir, e.to_string()))?;

    let stream = check_export_lines(&dir.join(STREAM_EVENTS), &ledger, m.tree_size, |line| {
        let e: EventLine = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let h = leaf_hash(e.data.as_bytes());
        // The event's own leaf hash must be its data's; otherwise the event differs.
        let declared = hex::decode(&e.leaf_hash).map_err(|e| e.to_string())?;
        Ok((e.seq, if declared == h { h } else { [0u8; 32] }))
    })?;
    let projection = check_export_lines(
        &dir.join(PROJECTION_RECORDS),
        &ledger,
        m.tree_size,
        |line| {
            let r = Record::from_canonical_bytes(line.as_bytes()).map_err(|e| e.to_string())?;
            Ok((r.seq, leaf_hash(line.as_bytes())))
        },
    )?;

    let confirmed_by_ledger = |seq: Option<u64>, id: Uuid, digest: &Hash| {
        seq.filter(|s| *s < m.tree_size).is_some_and(|s| {
            ledger
                .entry(s)
                .ok()
                .and_then(|b| Record::from_canonical_bytes(&b).ok())
                .filter(|rec| rec.decision.id == id)
                .and_then(|rec| triplicate_verifier::audited_digest(&rec.decision))
                .as_ref()
                == Some(digest)
        })
    };
    let rpath = dir.join(PROJECTION_REPORTS);
    let f =
        std::fs::File::open(&rpath).map_err(|e| RecoveryError::refused(&rpath, e.to_string()))?;
    let mut reports = Vec::new();
    let mut unconfirmed = Vec::new();
    for (n, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(RecoveryError::io("read export", &rpath))?;
        let bad = |r: String| RecoveryError::refused(&rpath, format!("line {}: {r}", n + 1));
        let r: ReportLine = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        let digest = triplicate_verifier::body_digest(r.body.as_bytes());
        if hex::encode(digest) != r.digest {
            return Err(bad(format!(
                "report {}: its body's digest is {} but the line says {}",
                r.run_id,
                hex::encode(digest),
                r.digest
            )));
        }
        if !confirmed_by_ledger(r.audit_seq, r.run_id, &digest) {
            unconfirmed.push(r.run_id);
        }
        reports.push(r);
    }
    let dpath = dir.join(PROJECTION_DRILLS);
    let f =
        std::fs::File::open(&dpath).map_err(|e| RecoveryError::refused(&dpath, e.to_string()))?;
    let mut drills = Vec::new();
    let mut drills_unconfirmed = Vec::new();
    for (n, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(RecoveryError::io("read export", &dpath))?;
        let bad = |r: String| RecoveryError::refused(&dpath, format!("line {}: {r}", n + 1));
        let d: DrillLine = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        let stored = d.to_stored().map_err(&bad)?;
        let mut msg = triplicate_core::DRILL_REPORT_DOMAIN.to_vec();
        msg.extend_from_slice(&stored.body);
        let digest: Hash = sha2::Sha256::digest(&msg).into();
        if digest != stored.digest {
            return Err(bad(format!(
                "drill {}: its body's digest is {} but the line says {}",
                d.drill_id,
                hex::encode(digest),
                d.digest
            )));
        }
        if stored.key_id != trusted.key.key_id().to_string()
            || trusted.key.verify(&msg, &stored.signature).is_err()
        {
            return Err(bad(format!(
                "drill {}: the report is not signed by the trusted notary key",
                d.drill_id
            )));
        }
        if !confirmed_by_ledger(stored.audit_seq, stored.drill_id, &digest) {
            drills_unconfirmed.push(d.drill_id);
        }
        drills.push(d);
    }
    tracing::info!(
        dir = %dir.display(),
        tree_size = m.tree_size,
        stream_agreeing = stream.agreeing,
        stream_differing = stream.differing_count,
        projection_agreeing = projection.agreeing,
        projection_differing = projection.differing_count,
        reports = reports.len(),
        "backup verified"
    );
    Ok(VerifiedBackup {
        dir: dir.to_path_buf(),
        manifest: m,
        stream,
        projection,
        reports,
        reports_unconfirmed: unconfirmed,
        drills,
        drills_unconfirmed,
    })
}

/// Stores a verified backup's verification reports (with their reviews) and drill reports in
/// `projection` (each idempotent: one already stored with the same digest is skipped). A
/// restore does this after filling the records; so does a projection rebuilt from the ledger,
/// which the ledger alone cannot give its reports back. Returns the reviews stored.
pub async fn restore_reports<P: ReportStore + DrillStore>(
    backup: &VerifiedBackup,
    projection: &P,
) -> Result<u64, RecoveryError> {
    let mut reviews = 0u64;
    for r in &backup.reports {
        let report: triplicate_verifier::Report =
            serde_json::from_str(&r.body).map_err(|e| RecoveryError::Damaged {
                store: "backup",
                reason: format!("report {}: {e}", r.run_id),
            })?;
        let mut stored = triplicate_verifier::to_stored(&report, r.audit_seq).map_err(|e| {
            RecoveryError::Damaged {
                store: "backup",
                reason: format!("report {}: {e}", r.run_id),
            }
        })?;
        // The body exactly as it was stored (its digest was checked against it).
        stored.body = r.body.clone().into_bytes();
        stored.digest = triplicate_verifier::body_digest(&stored.body);
        if !projection.store_report(stored).await? {
            continue;
        }
        for review in &r.reviews {
            let row = review.to_row().map_err(|reason| RecoveryError::Damaged {
                store: "backup",
                reason,
            })?;
            projection.record_review(row).await?;
            reviews += 1;
        }
    }
    for d in &backup.drills {
        let stored = d.to_stored().map_err(|reason| RecoveryError::Damaged {
            store: "backup",
            reason,
        })?;
        projection.store_drill(stored).await?;
    }
    Ok(reviews)
}

/// Where a restore writes: the ledger directory (absent or empty) and the two stores (empty),
/// already opened by the caller.
pub struct RestoreTargets<'a, S, P> {
    pub ledger_dir: &'a Path,
    pub stream: &'a S,
    pub projection: &'a P,
}

impl<S, P> std::fmt::Debug for RestoreTargets<'_, S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreTargets")
            .field("ledger_dir", &self.ledger_dir)
            .finish_non_exhaustive()
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    pub tree_size: u64,
    pub root: String,
    pub stream: FillOutcome,
    pub projection: FillOutcome,
    pub reports: u64,
    pub reviews: u64,
    pub drills: u64,
    pub elapsed: Duration,
}

/// Restores a verified backup into empty targets: refuses ([`RecoveryError::TargetNotEmpty`],
/// nothing written) when the ledger directory holds anything, the stream or the projection a
/// record, or the projection a report; then installs the ledger snapshot (atomically), fills
/// the stream and the projection from it through their ordinary append and apply (so every
/// record they get is the ledger's, whatever the exports held: [`VerifiedBackup`] says how the
/// exports compared), and stores the reports and reviews.
pub async fn restore<S, P>(
    backup: &VerifiedBackup,
    targets: RestoreTargets<'_, S, P>,
    trusted: &VerifierKey,
) -> Result<RestoreOutcome, RecoveryError>
where
    S: EventStream,
    P: Projection + ReportStore + DrillStore,
{
    let started = Instant::now();
    let ldir = targets.ledger_dir;
    if let Ok(mut entries) = std::fs::read_dir(ldir) {
        if entries.next().is_some() {
            return Err(RecoveryError::TargetNotEmpty {
                path: ldir.to_path_buf(),
                reason: "the ledger directory is not empty".into(),
            });
        }
    }
    if let Some(h) = targets.stream.highest_seq().await? {
        return Err(RecoveryError::TargetNotEmpty {
            path: ldir.parent().unwrap_or(ldir).to_path_buf(),
            reason: format!("the stream holds records up to seq {h}"),
        });
    }
    if let Some(h) = targets.projection.highest_seq().await? {
        return Err(RecoveryError::TargetNotEmpty {
            path: ldir.parent().unwrap_or(ldir).to_path_buf(),
            reason: format!("the projection holds records up to seq {h}"),
        });
    }
    if !targets.projection.reports(None, 1).await?.is_empty()
        || !targets.projection.drills(None, 1, None).await?.is_empty()
    {
        return Err(RecoveryError::TargetNotEmpty {
            path: ldir.parent().unwrap_or(ldir).to_path_buf(),
            reason: "the projection holds verification or drill reports".into(),
        });
    }

    let m = &backup.manifest;
    let files: Vec<String> = m
        .files
        .iter()
        .filter_map(|f| f.path.strip_prefix("ledger/").map(str::to_owned))
        .collect();
    let vkey = trusted
        .note_string()
        .map_err(|e| RecoveryError::Notary(e.to_string()))?;
    let ledger: Arc<dyn Ledger> = {
        let src = backup.dir.join(LEDGER_DIR);
        let dst = ldir.to_path_buf();
        let size = m.tree_size;
        let vkey = vkey.clone();
        tokio::task::spawn_blocking(move || -> Result<EmbeddedLedger, RecoveryError> {
            triplicate_ledger::backup::install_snapshot(&src, &files, size, &dst)?;
            Ok(EmbeddedLedger::open_read_only(&dst, Some(&vkey))?)
        })
        .await
        .map_err(|e| RecoveryError::Task(e.to_string()))?
        .map(Arc::new)?
    };
    let (stream, projection) = tokio::join!(
        fill_stream(ledger.clone(), targets.stream, m.tree_size),
        fill_projection(ledger.clone(), targets.projection, m.tree_size),
    );
    let (stream, projection) = (stream?, projection?);

    let reviews = restore_reports(backup, targets.projection).await?;
    let outcome = RestoreOutcome {
        tree_size: m.tree_size,
        root: m.root.clone(),
        stream,
        projection,
        reports: backup.reports.len() as u64,
        reviews,
        drills: backup.drills.len() as u64,
        elapsed: started.elapsed(),
    };
    tracing::info!(
        tree_size = outcome.tree_size,
        reports = outcome.reports,
        "restore finished"
    );
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use triplicate_keys::{Signer, SoftwareSigner};
    use triplicate_ledger::LedgerConfig;

    #[test]
    fn exports_are_compared_in_order_with_a_window_of_leaves() {
        let tmp = tempfile::tempdir().unwrap();
        let notary: Arc<dyn Signer> = Arc::new(SoftwareSigner::generate("t"));
        let l =
            EmbeddedLedger::open(LedgerConfig::new(tmp.path().join("l"), "t/log"), notary).unwrap();
        let n = 70_000u64;
        let mut s = 0;
        while s < n {
            let e = (s + 10_000).min(n);
            let batch: Vec<Vec<u8>> = (s..e).map(|i| i.to_string().into_bytes()).collect();
            l.append(s, &batch).unwrap();
            s = e;
        }
        let leaf = |i: u64| leaf_hash(i.to_string().as_bytes());
        // In order, skipping 5 and 66_000, one wrong at 65_537 (past the first window), a
        // duplicate of 7 and an out-of-order 3.
        let mut lines = Vec::new();
        for i in 0..n {
            if i == 5 || i == 66_000 {
                continue;
            }
            let h = if i == 65_537 { [9u8; 32] } else { leaf(i) };
            lines.push(format!("{i} {}", hex::encode(h)));
            if i == 7 {
                lines.push(format!("7 {}", hex::encode(leaf(7))));
                lines.push(format!("3 {}", hex::encode(leaf(3))));
            }
        }
        let path = tmp.path().join("export");
        std::fs::write(&path, lines.join("\n")).unwrap();
        let parse = |line: &str| -> Result<(u64, Hash), String> {
            let (a, b) = line.split_once(' ').ok_or("no space")?;
            let h: Hash = hex::decode(b).unwrap().try_into().unwrap();
            Ok((a.parse().unwrap(), h))
        };
        let c = check_export_lines(&path, &l, n, parse).unwrap();
        assert_eq!(c.differing, vec![7, 3, 65_537]);
        assert_eq!(c.differing_count, 3);
        assert_eq!(c.agreeing, n - 2 - 1);
        assert_eq!(c.missing, 2);
        // A seq past the tree refuses the export.
        std::fs::write(&path, format!("{n} {}", hex::encode([0u8; 32]))).unwrap();
        assert!(check_export_lines(&path, &l, n, parse).is_err());
    }
}
