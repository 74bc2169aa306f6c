//! Ledger snapshots: copied from a live writer, checked against the signed checkpoint with a
//! key the caller trusts, brought up to date incrementally, installed as a new ledger, and used
//! to repair damaged files.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use triplicate_keys::{note::note_verifier_key, Signer, SoftwareSigner};
use triplicate_ledger::backup::{
    copy_snapshot, install_snapshot, repair_from_snapshot, tree_files, verify_snapshot,
};
use triplicate_ledger::fsck::{fsck, FsckError};
use triplicate_ledger::{EmbeddedLedger, Ledger, LedgerConfig};

const ORIGIN: &str = "triplicate.invalid/backup-test";

fn entry(i: u64) -> Vec<u8> {
    format!(
        "{{\"entry\":{i},\"pad\":\"{}\"}}",
        "q".repeat((i % 40) as usize)
    )
    .into_bytes()
}

fn fill(l: &EmbeddedLedger, upto: u64) {
    let mut s = l.tree_size();
    while s < upto {
        let n = 300.min(upto - s);
        let e: Vec<Vec<u8>> = (s..s + n).map(entry).collect();
        l.append(s, &e).unwrap();
        s += n;
    }
}

fn vkey(s: &Arc<dyn Signer>) -> String {
    note_verifier_key(s.name(), &s.public_key()).unwrap()
}

fn flip(path: &Path, at: usize) {
    let mut d = std::fs::read(path).unwrap();
    d[at] ^= 0x01;
    std::fs::write(path, d).unwrap();
}

#[test]
fn snapshot_of_a_live_ledger_installs_as_an_identical_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    let signer: Arc<dyn Signer> = Arc::new(SoftwareSigner::generate("backup-notary"));
    let l = EmbeddedLedger::open(LedgerConfig::new(&live, ORIGIN), signer.clone()).unwrap();
    fill(&l, 1000);
    l.flush().unwrap();
    // Entries past the flushed checkpoint are in the WAL only; the snapshot covers the flush.
    fill(&l, 1100);

    let snap_dir = tmp.path().join("snap");
    let snap = copy_snapshot(&live, &snap_dir, &vkey(&signer)).unwrap();
    assert_eq!(snap.size, 1000);
    assert_eq!(snap.root, l.root_at(1000).unwrap());
    assert_eq!(snap.copied(), snap.files.len());
    // Every tree file plus hashes, checkpoint and notary.vkey.
    assert_eq!(snap.files.len(), tree_files(1000).len() + 3);
    assert!(!snap_dir.join("wal").exists());

    // Incremental: a second backup after more entries copies only the new and partial files.
    l.flush().unwrap();
    let again = copy_snapshot(&live, &snap_dir, &vkey(&signer)).unwrap();
    assert_eq!(again.size, 1100);
    let copied: Vec<&str> = again
        .files
        .iter()
        .filter(|f| f.copied)
        .map(|f| f.path.as_str())
        .collect();
    assert!(
        !copied.contains(&"tile/entries/000") && !copied.contains(&"tile/0/002"),
        "full files of the first backup were copied again: {copied:?}"
    );
    assert!(copied.contains(&"tile/entries/004.p/76"), "{copied:?}");
    // The older partial files are gone from the snapshot directory.
    assert!(!snap_dir.join("tile/entries/003.p/232").exists());
    verify_snapshot(&snap_dir, &vkey(&signer)).unwrap();

    let target = tmp.path().join("restored/ledger");
    let names: Vec<String> = again.files.iter().map(|f| f.path.clone()).collect();
    install_snapshot(&snap_dir, &names, again.size, &target).unwrap();
    fsck(&target, Some(&vkey(&signer))).unwrap();
    drop(l);
    let r = EmbeddedLedger::open(LedgerConfig::new(&target, ORIGIN), signer.clone()).unwrap();
    assert_eq!(r.tree_size(), 1100);
    assert_eq!(
        r.entries(1050, 1060).unwrap(),
        (1050..1060).map(entry).collect::<Vec<_>>()
    );
    // It takes new entries like any ledger.
    r.append(1100, &[entry(1100)]).unwrap();
    // A non-empty target is refused.
    assert!(install_snapshot(&snap_dir, &names, again.size, &target).is_err());
}

#[test]
fn a_damaged_or_foreign_snapshot_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    let signer: Arc<dyn Signer> = Arc::new(SoftwareSigner::generate("backup-notary"));
    let l = EmbeddedLedger::open(LedgerConfig::new(&live, ORIGIN), signer.clone()).unwrap();
    fill(&l, 600);
    l.flush().unwrap();
    let snap = tmp.path().join("snap");
    copy_snapshot(&live, &snap, &vkey(&signer)).unwrap();

    // Another notary's key: the checkpoint does not verify.
    let other: Arc<dyn Signer> = Arc::new(SoftwareSigner::generate("backup-notary"));
    let err = verify_snapshot(&snap, &vkey(&other)).unwrap_err();
    assert!(
        matches!(err, FsckError::Inconsistent { ref file, .. } if file.ends_with("checkpoint")),
        "{err}"
    );
    // So is copying from a ledger with a key that is not its notary's.
    assert!(copy_snapshot(&live, &tmp.path().join("x"), &vkey(&other)).is_err());

    // One bit of one bundle.
    let bundle = snap.join("tile/entries/001");
    flip(&bundle, 100);
    let err = verify_snapshot(&snap, &vkey(&signer)).unwrap_err();
    assert!(format!("{err}").contains("tile"), "{err}");
    flip(&bundle, 100);
    verify_snapshot(&snap, &vkey(&signer)).unwrap();

    // A WAL slipped into a snapshot would replay unchecked entries.
    std::fs::write(snap.join("wal"), b"x").unwrap();
    let err = verify_snapshot(&snap, &vkey(&signer)).unwrap_err();
    assert!(matches!(err, FsckError::Inconsistent { ref file, .. } if file.ends_with("wal")));
}

#[test]
fn damaged_live_files_are_repaired_from_a_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    let signer: Arc<dyn Signer> = Arc::new(SoftwareSigner::generate("backup-notary"));
    let l = EmbeddedLedger::open(LedgerConfig::new(&live, ORIGIN), signer.clone()).unwrap();
    fill(&l, 800);
    l.flush().unwrap();
    let snap_dir = tmp.path().join("snap");
    let snap = copy_snapshot(&live, &snap_dir, &vkey(&signer)).unwrap();
    fill(&l, 900);
    l.flush().unwrap();
    drop(l);

    flip(&live.join("tile/0/001"), 7);
    flip(&live.join("tile/entries/002"), 50);
    assert!(fsck(&live, None).is_err());
    let replaced = repair_from_snapshot(&live, &snap_dir, &snap.files).unwrap();
    assert_eq!(
        replaced,
        vec!["tile/0/001".to_owned(), "tile/entries/002".to_owned()]
    );
    let report = fsck(&live, None).unwrap();
    assert_eq!(report.size, 900);
    let l = EmbeddedLedger::open(LedgerConfig::new(&live, ORIGIN), signer).unwrap();
    assert_eq!(l.tree_size(), 900);
}

#[test]
fn an_empty_ledger_snapshots_and_installs() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    let signer: Arc<dyn Signer> = Arc::new(SoftwareSigner::generate("backup-notary"));
    let l = EmbeddedLedger::open(LedgerConfig::new(&live, ORIGIN), signer.clone()).unwrap();
    let snap = copy_snapshot(&live, &tmp.path().join("snap"), &vkey(&signer)).unwrap();
    assert_eq!(snap.size, 0);
    let names: Vec<String> = snap.files.iter().map(|f| f.path.clone()).collect();
    assert_eq!(names, vec!["checkpoint", "hashes", "notary.vkey"]);
    drop(l);
    let target = tmp.path().join("t");
    install_snapshot(&tmp.path().join("snap"), &names, 0, &target).unwrap();
    let r = EmbeddedLedger::open(LedgerConfig::new(&target, ORIGIN), signer).unwrap();
    assert_eq!(r.tree_size(), 0);
}

#[test]
fn a_damaged_partial_tile_is_repaired_while_the_ledger_still_has_it() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    let signer: Arc<dyn Signer> = Arc::new(SoftwareSigner::generate("backup-notary"));
    let l = EmbeddedLedger::open(LedgerConfig::new(&live, ORIGIN), signer.clone()).unwrap();
    fill(&l, 62);
    l.flush().unwrap();
    let snap = copy_snapshot(&live, &tmp.path().join("snap"), &vkey(&signer)).unwrap();
    drop(l);
    flip(&live.join("tile/0/000.p/62"), 40);
    flip(&live.join("tile/entries/000.p/62"), 40);
    assert!(fsck(&live, None).is_err());
    let replaced = repair_from_snapshot(&live, &tmp.path().join("snap"), &snap.files).unwrap();
    assert_eq!(replaced, vec!["tile/0/000.p/62", "tile/entries/000.p/62"]);
    fsck(&live, None).unwrap();
}
