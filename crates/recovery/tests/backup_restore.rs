//! Backups and restores of the embedded stores: a round trip, an incremental backup, and every
//! way a backup can be wrong (an altered file, an altered manifest, another notary's key, an
//! export that disagrees with the ledger), each refused or reported with the target untouched.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use triplicate_keys::{Signer, SoftwareSigner, VerifierKey};
use triplicate_ledger::{EmbeddedLedger, Ledger, LedgerConfig};
use triplicate_projection::{Projection, SqliteProjection};
use triplicate_recovery::{
    backup, fill_projection, fill_stream, restore, verify_backup, BackupSources, RecoveryError,
    RestoreTargets, SignedManifest,
};
use triplicate_stream::{fixtures, EventStream, SqliteStream};

const ORIGIN: &str = "triplicate.invalid/recovery-test";

struct Stores {
    ledger: Arc<EmbeddedLedger>,
    stream: SqliteStream,
    projection: SqliteProjection,
}

async fn stores(dir: &Path, notary: &Arc<dyn Signer>, records: u64) -> Stores {
    let ledger = Arc::new(
        EmbeddedLedger::open(
            LedgerConfig::new(dir.join("ledger"), ORIGIN),
            notary.clone(),
        )
        .unwrap(),
    );
    let mut s = ledger.tree_size();
    while s < records {
        let e = (s + 700).min(records);
        let batch: Vec<Vec<u8>> = (s..e).map(|i| fixtures::event(i).record_bytes).collect();
        ledger.append(s, &batch).unwrap();
        s = e;
    }
    ledger.flush().unwrap();
    let stream = SqliteStream::open(dir).await.unwrap();
    let projection = SqliteProjection::open(dir).await.unwrap();
    let l: Arc<dyn Ledger> = ledger.clone();
    fill_stream(l.clone(), &stream, records).await.unwrap();
    fill_projection(l, &projection, records).await.unwrap();
    Stores {
        ledger,
        stream,
        projection,
    }
}

/// Every file under `dir` with its bytes, to show a target untouched.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

async fn take_backup(s: &Stores, notary: &Arc<dyn Signer>, out: &Path) -> SignedManifest {
    backup(
        BackupSources {
            ledger_dir: s.ledger.dir(),
            stream: &s.stream,
            projection: &s.projection,
            notary: notary.clone(),
        },
        out,
    )
    .await
    .unwrap()
    .manifest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_restores_every_record_into_fresh_stores() {
    let tmp = tempfile::tempdir().unwrap();
    let notary: Arc<dyn Signer> = Arc::new(SoftwareSigner::generate("recovery-notary"));
    let trusted = VerifierKey::of(notary.as_ref());
    let src = stores(&tmp.path().join("src"), &notary, 1_300).await;
    let out = tmp.path().join("backup");
    let m = take_backup(&src, &notary, &out).await;
    assert_eq!(m.manifest.tree_size, 1_300);
    assert_eq!(m.manifest.stream.events, 1_300);
    assert_eq!(m.manifest.projection.records, 1_300);
    assert!(m
        .manifest
        .files
        .iter()
        .any(|f| f.path == "stream/events.jsonl"));
    assert_eq!(
        m.manifest.ledger_files_copied,
        m.manifest.files.len() as u64 - 4
    );

    let verified = verify_backup(&out, &trusted).await.unwrap();
    assert_eq!(verified.stream.agreeing, 1_300);
    assert_eq!(verified.stream.differing_count, 0);
    assert_eq!(verified.projection.agreeing, 1_300);
    assert_eq!(verified.stream.missing, 0);

    let dst = tmp.path().join("dst");
    let stream = SqliteStream::open(&dst).await.unwrap();
    let projection = SqliteProjection::open(&dst).await.unwrap();
    let done = restore(
        &verified,
        RestoreTargets {
            ledger_dir: &dst.join("ledger"),
            stream: &stream,
            projection: &projection,
        },
        &trusted,
    )
    .await
    .unwrap();
    assert_eq!(done.stream.written, 1_300);
    assert_eq!(done.projection.written, 1_300);
    // The restored ledger opens as a writer with the same notary and the same root.
    let restored = EmbeddedLedger::open(
        LedgerConfig::new(dst.join("ledger"), ORIGIN),
        notary.clone(),
    )
    .unwrap();
    assert_eq!(restored.tree_size(), 1_300);
    assert_eq!(
        restored.root_at(1_300).unwrap(),
        src.ledger.root_at(1_300).unwrap()
    );
    assert_eq!(stream.highest_seq().await.unwrap(), Some(1_299));
    let a = projection.record_bytes(0, 1_300).await.unwrap();
    let b = src.projection.record_bytes(0, 1_300).await.unwrap();
    assert_eq!(a, b);

    // A second restore into the now full targets is refused, and changes nothing.
    let before = tree(&dst.join("ledger"));
    let err = restore(
        &verified,
        RestoreTargets {
            ledger_dir: &dst.join("ledger"),
            stream: &stream,
            projection: &projection,
        },
        &trusted,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RecoveryError::TargetNotEmpty { .. }), "{err}");
    assert_eq!(tree(&dst.join("ledger")), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_backup_into_the_same_directory_copies_only_new_ledger_files() {
    let tmp = tempfile::tempdir().unwrap();
    let notary: Arc<dyn Signer> = Arc::new(SoftwareSigner::generate("recovery-notary"));
    let dir = tmp.path().join("src");
    let src = stores(&dir, &notary, 2_000).await;
    let out = tmp.path().join("backup");
    let first = take_backup(&src, &notary, &out).await;
    drop(src);
    let src = stores(&dir, &notary, 2_100).await;
    let second = take_backup(&src, &notary, &out).await;
    assert_eq!(second.manifest.tree_size, 2_100);
    // Bundles 0..6 and their level-0 tiles were full in the first backup: not copied again.
    // New: bundle 7 (full now), bundle 8 partial, their tiles, the level-1 partial, hashes,
    // checkpoint, notary.vkey.
    assert!(
        second.manifest.ledger_files_copied < first.manifest.ledger_files_copied / 2,
        "{} of {}",
        second.manifest.ledger_files_copied,
        first.manifest.ledger_files_copied
    );
    let trusted = VerifierKey::of(notary.as_ref());
    let v = verify_backup(&out, &trusted).await.unwrap();
    assert_eq!(v.manifest.tree_size, 2_100);
    assert!(!out.join("manifest.json.previous").exists());
    // Someone else's key cannot take over the directory.
    let other: Arc<dyn Signer> = Arc::new(SoftwareSigner::generate("recovery-notary"));
    let err = backup(
        BackupSources {
            ledger_dir: src.ledger.dir(),
            stream: &src.stream,
            projection: &src.projection,
            notary: other,
        },
        &out,
    )
    .await
    .unwrap_err();
    assert!(err.is_refusal(), "{err}");
}

fn flip(path: &Path, at: usize) {
    let mut d = std::fs::read(path).unwrap();
    d[at] ^= 0x01;
    std::fs::write(path, d).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_backups_are_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let notary: Arc<dyn Signer> = Arc::new(SoftwareSigner::generate("recovery-notary"));
    let trusted = VerifierKey::of(notary.as_ref());
    let src = stores(&tmp.path().join("src"), &notary, 600).await;
    let out = tmp.path().join("backup");
    take_backup(&src, &notary, &out).await;
    verify_backup(&out, &trusted).await.unwrap();

    let refused = |err: RecoveryError, file: &str| match err {
        RecoveryError::Refused { file: f, reason } => {
            assert!(
                f.ends_with(file),
                "{} (expected {file}): {reason}",
                f.display()
            );
            reason
        }
        other => panic!("not a refusal: {other}"),
    };

    // An altered file: its digest no longer matches.
    flip(&out.join("ledger/tile/entries/001"), 10);
    let r = refused(
        verify_backup(&out, &trusted).await.unwrap_err(),
        "ledger/tile/entries/001",
    );
    assert!(r.contains("SHA-256"), "{r}");
    flip(&out.join("ledger/tile/entries/001"), 10);

    flip(&out.join("stream/events.jsonl"), 30);
    refused(
        verify_backup(&out, &trusted).await.unwrap_err(),
        "stream/events.jsonl",
    );
    flip(&out.join("stream/events.jsonl"), 30);

    // An altered manifest: its signature fails.
    let mpath = out.join("manifest.json");
    let good = std::fs::read(&mpath).unwrap();
    let mut m = SignedManifest::parse(&good).unwrap();
    m.manifest.tree_size = 500;
    std::fs::write(&mpath, m.to_bytes()).unwrap();
    let r = refused(
        verify_backup(&out, &trusted).await.unwrap_err(),
        "manifest.json",
    );
    assert!(r.contains("does not verify"), "{r}");
    // A manifest re-signed by another key: refused for its key.
    let other: Arc<dyn Signer> = Arc::new(SoftwareSigner::generate("recovery-notary"));
    let resigned = SignedManifest::sign(
        SignedManifest::parse(&good).unwrap().manifest,
        other.as_ref(),
    )
    .unwrap();
    std::fs::write(&mpath, resigned.to_bytes()).unwrap();
    let r = refused(
        verify_backup(&out, &trusted).await.unwrap_err(),
        "manifest.json",
    );
    assert!(r.contains("trusted notary key"), "{r}");
    std::fs::write(&mpath, &good).unwrap();
    // Restoring with the wrong trusted key: refused.
    let r = refused(
        verify_backup(&out, &VerifierKey::of(other.as_ref()))
            .await
            .unwrap_err(),
        "manifest.json",
    );
    assert!(r.contains("trusted notary key"), "{r}");

    // A tile altered together with its manifest entry (a forger without the notary key):
    // the signature fails. And a missing manifest: not a backup.
    std::fs::remove_file(&mpath).unwrap();
    let r = refused(
        verify_backup(&out, &trusted).await.unwrap_err(),
        "manifest.json",
    );
    assert!(r.contains("missing"), "{r}");
    std::fs::write(&mpath, &good).unwrap();
    verify_backup(&out, &trusted).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_damaged_at_backup_time_is_reported_and_restored_from_the_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let notary: Arc<dyn Signer> = Arc::new(SoftwareSigner::generate("recovery-notary"));
    let trusted = VerifierKey::of(notary.as_ref());
    let dir = tmp.path().join("src");
    let src = stores(&dir, &notary, 300).await;
    // Alter one projection row behind the projection's back (the triggers refuse updates, so
    // drop them as an attacker with the file would).
    drop(src);
    {
        let c = rusqlite::Connection::open(dir.join("projection.db")).unwrap();
        let triggers: Vec<String> = c
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'decisions'",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for t in triggers {
            c.execute(&format!("DROP TRIGGER {t}"), []).unwrap();
        }
        c.execute("UPDATE decisions SET title = 'forged' WHERE seq = 42", [])
            .unwrap();
    }
    let src = stores(&dir, &notary, 300).await;
    let out = tmp.path().join("backup");
    take_backup(&src, &notary, &out).await;
    let v = verify_backup(&out, &trusted).await.unwrap();
    assert_eq!(v.projection.differing, vec![42]);
    assert_eq!(v.projection.agreeing, 299);
    assert_eq!(v.stream.agreeing, 300);

    let dst = tmp.path().join("dst");
    let stream = SqliteStream::open(&dst).await.unwrap();
    let projection = SqliteProjection::open(&dst).await.unwrap();
    restore(
        &v,
        RestoreTargets {
            ledger_dir: &dst.join("ledger"),
            stream: &stream,
            projection: &projection,
        },
        &trusted,
    )
    .await
    .unwrap();
    // The restored row is the ledger's, not the forged export's.
    let got = projection.record_bytes(42, 43).await.unwrap();
    assert_eq!(got[0].bytes().unwrap(), src.ledger.entry(42).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projection_rebuilds_from_the_stream_too() {
    let tmp = tempfile::tempdir().unwrap();
    let notary: Arc<dyn Signer> = Arc::new(SoftwareSigner::generate("recovery-notary"));
    let src = stores(&tmp.path().join("src"), &notary, 7_000).await;
    let dir = tmp.path().join("fresh");
    let fresh = SqliteProjection::open(&dir).await.unwrap();
    // Half of it first, then the rest: a fill continues from the projection's highest seq.
    let half = triplicate_recovery::fill_projection_from_stream(&src.stream, &fresh, 1_000)
        .await
        .unwrap();
    assert_eq!((half.from, half.written), (0, 1_000));
    let rest = triplicate_recovery::fill_projection_from_stream(&src.stream, &fresh, u64::MAX)
        .await
        .unwrap();
    assert_eq!((rest.from, rest.written), (1_000, 6_000));
    assert_eq!(rest.batches, 2);
    let a = fresh.record_bytes(0, 7_000).await.unwrap();
    let b = src.projection.record_bytes(0, 7_000).await.unwrap();
    assert_eq!(a, b);
}
