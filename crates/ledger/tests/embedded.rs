//! The embedded ledger: conformance, reopening, recovery after a lost page cache, tampering,
//! locking, and proofs for random sizes checked against the RFC 6962 definitions.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use triplicate_keys::{note::note_verifier_key, Signer, SoftwareSigner};
use triplicate_ledger::fsck::{fsck, FsckError};
use triplicate_ledger::layout;
use triplicate_ledger::proof::{leaf_hash, verify_consistency, verify_inclusion};
use triplicate_ledger::{EmbeddedLedger, Ledger, LedgerConfig, LedgerError};

const ORIGIN: &str = "triplicate.invalid/test";

fn signer() -> Arc<dyn Signer> {
    Arc::new(SoftwareSigner::generate("test-notary"))
}

fn config(dir: &Path) -> LedgerConfig {
    LedgerConfig::new(dir, ORIGIN)
}

/// A ledger that flushes only when told to (or dropped).
fn flushed_by_hand(dir: &Path) -> LedgerConfig {
    let mut c = config(dir);
    c.flush_bytes = u64::MAX;
    c.flush_interval = std::time::Duration::MAX;
    c
}

fn entry(i: u64) -> Vec<u8> {
    format!(
        "{{\"entry\":{i},\"pad\":\"{}\"}}",
        "p".repeat((i % 50) as usize)
    )
    .into_bytes()
}

fn fill(l: &EmbeddedLedger, upto: u64, batch: u64) {
    let mut s = l.tree_size();
    while s < upto {
        let n = batch.min(upto - s);
        let e: Vec<Vec<u8>> = (s..s + n).map(entry).collect();
        l.append(s, &e).unwrap();
        s += n;
    }
}

fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest(b"").into(),
        1 => leaves[0],
        n => {
            let k = n.next_power_of_two() / 2;
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(mth(&leaves[..k]));
            h.update(mth(&leaves[k..]));
            h.finalize().into()
        }
    }
}

#[test]
fn conformance() {
    let dir = tempfile::tempdir().unwrap();
    let l = EmbeddedLedger::open(config(dir.path()), signer()).unwrap();
    triplicate_ledger::conformance::run(&l);
}

#[test]
fn conformance_with_frequent_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.flush_bytes = 4096;
    let l = EmbeddedLedger::open(c, signer()).unwrap();
    triplicate_ledger::conformance::run(&l);
    drop(l);
    fsck(dir.path(), None).unwrap();
}

#[test]
fn reopen_keeps_everything_and_files_follow_c2sp_layout() {
    let dir = tempfile::tempdir().unwrap();
    let s = signer();
    let cp = {
        let l = EmbeddedLedger::open(config(dir.path()), s.clone()).unwrap();
        fill(&l, 70_000, 1000);
        l.checkpoint()
    };
    // 70,000 = 273 full bundles + 112; level 1 has 273 hashes = 1 full tile + 17.
    for rel in [
        "tile/entries/272",
        "tile/entries/273.p/112",
        "tile/0/272",
        "tile/0/273.p/112",
        "tile/1/000",
        "tile/1/001.p/17",
        "tile/2/000.p/1",
        "checkpoint",
    ] {
        assert!(dir.path().join(rel).is_file(), "{rel} missing");
    }
    // Superseded partials of full tiles are removed once the full tile is durable.
    assert!(!dir.path().join("tile/entries/000.p").exists());
    assert!(!dir.path().join("tile/0/000.p").exists());

    let l = EmbeddedLedger::open(config(dir.path()), s.clone()).unwrap();
    assert_eq!(l.checkpoint(), cp);
    assert_eq!(l.entry(69_999).unwrap(), entry(69_999));
    assert_eq!(l.entry(12_345).unwrap(), entry(12_345));
    fill(&l, 70_100, 7);
    drop(l);
    let r = fsck(dir.path(), None).unwrap();
    assert_eq!(r.size, 70_100);
    assert_eq!(r.wal_pending, 0);

    // Checkpoint on disk is a C2SP signed note with the origin line first.
    let text = std::fs::read_to_string(dir.path().join("checkpoint")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(ORIGIN));
    assert_eq!(lines.next(), Some("70100"));
    assert!(text.contains("\n\n\u{2014} test-notary "));
}

#[test]
fn checkpoint_note_verifies_with_the_notary_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = signer();
    let l = EmbeddedLedger::open(config(dir.path()), s.clone()).unwrap();
    fill(&l, 10, 10);
    let cp = l.checkpoint();
    let vkey = note_verifier_key(s.name(), &s.public_key()).unwrap();
    let v = triplicate_ledger::SignedCheckpoint::verify(&cp.note, &vkey).unwrap();
    assert_eq!(v, cp);
    let other = signer();
    let wrong = note_verifier_key(other.name(), &other.public_key()).unwrap();
    assert!(triplicate_ledger::SignedCheckpoint::verify(&cp.note, &wrong).is_err());
    let tampered = cp.note.replacen("\n10\n", "\n11\n", 1);
    assert!(triplicate_ledger::SignedCheckpoint::verify(&tampered, &vkey).is_err());
}

#[test]
fn a_second_writer_is_refused_and_another_notary_too() {
    let dir = tempfile::tempdir().unwrap();
    let s = signer();
    let l = EmbeddedLedger::open(config(dir.path()), s.clone()).unwrap();
    match EmbeddedLedger::open(config(dir.path()), s.clone()) {
        Err(LedgerError::Locked { holder, .. }) => {
            assert!(holder.contains(&std::process::id().to_string()))
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(l);
    assert!(matches!(
        EmbeddedLedger::open(config(dir.path()), signer()),
        Err(LedgerError::NotaryKeyMismatch { .. })
    ));
    assert!(matches!(
        EmbeddedLedger::open(LedgerConfig::new(dir.path(), "other/origin"), s),
        Err(LedgerError::OriginMismatch { .. })
    ));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A scratch directory with a ledger in `live` that flushes only when told to, holding 1,000
/// entries, flushed; and the path `lost`, for the files a simulated crash leaves.
fn flushed_at_1000() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    Arc<dyn Signer>,
    EmbeddedLedger,
) {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let lost = dir.path().join("lost");
    let s = signer();
    let l = EmbeddedLedger::open(flushed_by_hand(&live), s.clone()).unwrap();
    fill(&l, 1000, 100);
    l.flush().unwrap();
    (dir, live, lost, s, l)
}

/// A power loss keeps only what was made durable: the files as of the last flush, plus the
/// WAL (synced for every batch). Opening must replay the WAL and lose nothing acknowledged.
#[test]
fn power_loss_recovers_from_the_wal() {
    for keep_new_checkpoint in [false, true] {
        let (_dir, live, lost, s, l) = flushed_at_1000();
        copy_dir(&live, &lost); // what the disk held durably
        fill(&l, 1700, 37);
        let acked = l.tree_size();
        // Only the WAL (and maybe the last checkpoint) reached the disk after the flush.
        std::fs::copy(live.join("wal"), lost.join("wal")).unwrap();
        if keep_new_checkpoint {
            std::fs::copy(live.join("checkpoint"), lost.join("checkpoint")).unwrap();
        }
        std::mem::forget(l); // no flush on drop: the process "lost power"

        let r = EmbeddedLedger::open(config(&lost), s.clone()).unwrap();
        assert_eq!(r.tree_size(), acked);
        let all = r.entries(0, acked).unwrap();
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e, &entry(i as u64));
        }
        drop(r);
        assert_eq!(fsck(&lost, None).unwrap().size, acked);
    }
}

/// A flush writes the durable checkpoint before it restarts the WAL, and appends go on in
/// between, so a crash there leaves a checkpoint past the WAL's base and a WAL that runs past
/// the checkpoint. Opening that must replay it all and lose nothing.
#[test]
fn a_crash_between_a_flushs_checkpoint_and_its_wal_restart_loses_nothing() {
    let (_dir, live, lost, s, l) = flushed_at_1000();
    // The files at base 1000, among them its partial bundle, which the next flush removes
    // only once its WAL restart has made the base 1500.
    copy_dir(&live, &lost);
    fill(&l, 1500, 37);
    let old_wal = std::fs::read(live.join("wal")).unwrap(); // base 1000, batches to 1500
    l.flush().unwrap(); // checkpoint 1500, WAL restarted at 1500
    fill(&l, 1777, 41);
    let acked = l.tree_size();
    copy_dir(&live, &lost);
    assert!(lost.join("tile/entries/003.p/232").exists());
    // The old WAL with the batches appended after the checkpoint: what the disk holds when
    // the flush's checkpoint is durable and its WAL restart never happened.
    let mut wal = old_wal;
    wal.extend_from_slice(&std::fs::read(live.join("wal")).unwrap()[32..]);
    std::fs::write(lost.join("wal"), wal).unwrap();
    std::mem::forget(l);

    let before = fsck(&lost, None).unwrap();
    assert_eq!((before.size, before.wal_pending), (1500, acked - 1500));
    let r = EmbeddedLedger::open(config(&lost), s).unwrap();
    assert_eq!(r.tree_size(), acked);
    for (i, e) in r.entries(0, acked).unwrap().iter().enumerate() {
        assert_eq!(e, &entry(i as u64));
    }
    drop(r);
    let after = fsck(&lost, None).unwrap();
    assert_eq!((after.size, after.wal_pending), (acked, 0));
}

/// A flush that cannot make its files durable must not let a later flush restart the WAL over
/// them (a failed write-back is reported once; the next `syncfs` may succeed with the data
/// gone): it refuses further appends, and a reopen replays the WAL with nothing lost.
#[test]
fn a_flush_that_fails_stops_appends_and_a_reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let s = signer();
    let l = EmbeddedLedger::open(flushed_by_hand(dir.path()), s.clone()).unwrap();
    fill(&l, 700, 50);
    // The checkpoint's temporary file cannot be created: a directory is in the way.
    let blocker = dir.path().join("checkpoint.tmp");
    std::fs::create_dir(&blocker).unwrap();
    assert!(matches!(l.flush(), Err(LedgerError::Io { .. })));
    let refused = l.append(700, &[entry(700)]).unwrap_err();
    assert!(matches!(refused, LedgerError::Poisoned { .. }), "{refused}");
    assert_eq!(l.tree_size(), 700);
    drop(l); // a poisoned ledger does not flush on close
    std::fs::remove_dir(&blocker).unwrap();

    let r = EmbeddedLedger::open(config(dir.path()), s).unwrap();
    assert_eq!(r.tree_size(), 700);
    for (i, e) in r.entries(0, 700).unwrap().iter().enumerate() {
        assert_eq!(e, &entry(i as u64));
    }
    fill(&r, 800, 50);
    drop(r);
    assert_eq!(fsck(dir.path(), None).unwrap().size, 800);
}

/// Flushes from another thread while appends go on (the server's flusher beside its
/// committer): every append lands, every flush succeeds, and the files check clean.
#[test]
fn appends_and_flushes_from_two_threads_agree() {
    let dir = tempfile::tempdir().unwrap();
    let s = signer();
    let mut c = config(dir.path());
    c.flush_interval = std::time::Duration::MAX;
    let l = EmbeddedLedger::open(c, s.clone()).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    // Sets `done` when dropped, so a panic in `fill` stops the flusher too (the scope would
    // otherwise wait for it for ever instead of failing).
    struct Done<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let flushes = std::thread::scope(|sc| {
        let flusher = sc.spawn(|| {
            let mut n = 0u32;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                l.flush().unwrap();
                n += 1;
            }
            n
        });
        {
            let _done = Done(&done);
            fill(&l, 6_000, 7);
        }
        flusher.join().unwrap()
    });
    assert!(flushes > 0);
    assert_eq!(l.tree_size(), 6_000);
    l.flush().unwrap();
    let files = fsck(dir.path(), None).unwrap();
    assert_eq!((files.size, files.wal_pending), (6_000, 0));
    drop(l);
    let r = EmbeddedLedger::open(config(dir.path()), s).unwrap();
    for (i, e) in r.entries(0, 6_000).unwrap().iter().enumerate() {
        assert_eq!(e, &entry(i as u64));
    }
}

#[test]
fn open_refuses_files_that_disagree_with_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let s = signer();
    {
        let l = EmbeddedLedger::open(config(dir.path()), s.clone()).unwrap();
        fill(&l, 600, 100);
    }
    // A stored hash on the root's path flipped (the node over entries 0..512): the root no
    // longer matches the checkpoint. (A flipped hash off that path is fsck's to find.)
    let hashes = dir.path().join(layout::HASHES);
    let good = std::fs::read(&hashes).unwrap();
    let mut bad = good.clone();
    let at = tlog_tiles::stored_hash_index(9, 0) as usize * 32;
    bad[at] ^= 1;
    std::fs::write(&hashes, &bad).unwrap();
    match EmbeddedLedger::open(config(dir.path()), s.clone()) {
        Err(LedgerError::Corrupt { file, .. }) => {
            assert!(
                file.ends_with("checkpoint") || file.ends_with("hashes"),
                "{file:?}"
            )
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    std::fs::write(&hashes, &good).unwrap();

    // The right-edge partial tile damaged.
    let tile = dir.path().join("tile/0/002.p/88");
    let good_tile = std::fs::read(&tile).unwrap();
    let mut t = good_tile.clone();
    t[0] ^= 1;
    std::fs::write(&tile, &t).unwrap();
    match EmbeddedLedger::open(config(dir.path()), s.clone()) {
        Err(LedgerError::Corrupt { file, .. }) => assert!(file.ends_with("tile/0/002.p/88")),
        other => panic!("expected Corrupt naming the tile, got {other:?}"),
    }
    std::fs::write(&tile, &good_tile).unwrap();

    // The checkpoint missing while data exists.
    let cp = dir.path().join("checkpoint");
    let cp_text = std::fs::read(&cp).unwrap();
    std::fs::remove_file(&cp).unwrap();
    assert!(matches!(
        EmbeddedLedger::open(config(dir.path()), s.clone()),
        Err(LedgerError::Missing { .. })
    ));
    std::fs::write(&cp, &cp_text).unwrap();
    EmbeddedLedger::open(config(dir.path()), s).unwrap();
}

#[test]
fn a_crash_during_creation_leaves_a_ledger_that_opens_empty() {
    let dir = tempfile::tempdir().unwrap();
    let s = signer();
    drop(EmbeddedLedger::open(config(dir.path()), s.clone()).unwrap());
    // As if the creating process died before writing its first checkpoint.
    std::fs::remove_file(dir.path().join("checkpoint")).unwrap();
    let l = EmbeddedLedger::open(config(dir.path()), s.clone()).unwrap();
    assert_eq!(l.tree_size(), 0);
    fill(&l, 3, 3);
    drop(l);
    // With entries acknowledged, a missing checkpoint is damage, not a fresh start.
    std::fs::remove_file(dir.path().join("checkpoint")).unwrap();
    assert!(matches!(
        EmbeddedLedger::open(config(dir.path()), s),
        Err(LedgerError::Missing { .. })
    ));
}

fn flip(path: &Path, at: usize) {
    let mut d = std::fs::read(path).unwrap();
    let i = at.min(d.len() - 1);
    d[i] ^= 0x20;
    std::fs::write(path, d).unwrap();
}

fn tampered(setup: impl Fn(&Path)) -> FsckError {
    let dir = tempfile::tempdir().unwrap();
    {
        let l = EmbeddedLedger::open(config(dir.path()), signer()).unwrap();
        fill(&l, 70_000, 5000);
    }
    fsck(dir.path(), None).unwrap();
    setup(dir.path());
    fsck(dir.path(), None).unwrap_err()
}

#[test]
fn fsck_names_a_flipped_byte_in_an_entry_bundle() {
    let e = tampered(|d| flip(&d.join("tile/entries/100"), 500));
    assert_eq!(e.exit_code(), 1, "{e}");
    assert!(e.to_string().contains("tile/entries/100"), "{e}");
}

#[test]
fn fsck_names_a_flipped_byte_in_a_level_zero_tile() {
    let e = tampered(|d| flip(&d.join("tile/0/100"), 40));
    assert_eq!(e.exit_code(), 1, "{e}");
    assert!(e.to_string().contains("tile/0/100"), "{e}");
}

#[test]
fn fsck_names_a_flipped_byte_in_a_higher_tile() {
    let e = tampered(|d| flip(&d.join("tile/1/000"), 64));
    assert_eq!(e.exit_code(), 1, "{e}");
    assert!(e.to_string().contains("tile/1/000"), "{e}");
    let e = tampered(|d| flip(&d.join("tile/1/001.p/17"), 3));
    assert!(e.to_string().contains("tile/1/001.p/17"), "{e}");
}

#[test]
fn fsck_catches_a_tampered_checkpoint_and_index() {
    let e = tampered(|d| {
        let p = d.join("checkpoint");
        let t = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, t.replacen("70000", "69999", 1)).unwrap();
    });
    assert_eq!(e.exit_code(), 1, "{e}");
    assert!(e.to_string().contains("checkpoint"), "{e}");
    let e = tampered(|d| flip(&d.join("checkpoint"), 60));
    assert_eq!(e.exit_code(), 1, "{e}");
    let e = tampered(|d| flip(&d.join("hashes"), 32 * 1000 + 5));
    assert_eq!(e.exit_code(), 1, "{e}");
    assert!(e.to_string().contains("hashes"), "{e}");
}

#[test]
fn fsck_reports_missing_files_as_unreadable() {
    let e = tampered(|d| std::fs::remove_file(d.join("tile/entries/007")).unwrap());
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("tile/entries/007"), "{e}");
    let e = tampered(|d| std::fs::remove_file(d.join("checkpoint")).unwrap());
    assert_eq!(e.exit_code(), 2, "{e}");
}

struct Grown {
    _dir: tempfile::TempDir,
    ledger: EmbeddedLedger,
    leaves: Vec<[u8; 32]>,
}

fn grown() -> &'static Grown {
    static G: std::sync::OnceLock<Grown> = std::sync::OnceLock::new();
    G.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ledger = EmbeddedLedger::open(config(dir.path()), signer()).unwrap();
        fill(&ledger, 1100, 97);
        let leaves = (0..1100).map(|i| leaf_hash(&entry(i))).collect();
        Grown {
            _dir: dir,
            ledger,
            leaves,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn inclusion_proofs_verify_and_altered_ones_fail(size in 1u64..=1100, pick in any::<u64>(), bit in 0usize..256) {
        let g = grown();
        let index = pick % size;
        let root = mth(&g.leaves[..size as usize]);
        prop_assert_eq!(g.ledger.root_at(size).unwrap(), root);
        let p = g.ledger.inclusion_proof(index, size).unwrap();
        let leaf = g.leaves[index as usize];
        prop_assert!(verify_inclusion(&p, index, size, &root, &leaf).is_ok());
        if !p.is_empty() {
            let mut bad = p.clone();
            let k = (bit / 8) % bad.len();
            bad[k][bit % 32] ^= 1 << (bit % 8);
            prop_assert!(verify_inclusion(&bad, index, size, &root, &leaf).is_err());
            let mut short = p.clone();
            short.pop();
            prop_assert!(verify_inclusion(&short, index, size, &root, &leaf).is_err());
        }
        let mut other = leaf;
        other[0] ^= 1;
        prop_assert!(verify_inclusion(&p, index, size, &root, &other).is_err());
    }

    #[test]
    fn consistency_proofs_verify_and_altered_ones_fail(a in 1u64..=1100, b in 1u64..=1100, bit in 0usize..256) {
        let g = grown();
        let (old, new) = (a.min(b), a.max(b));
        let old_root = mth(&g.leaves[..old as usize]);
        let new_root = mth(&g.leaves[..new as usize]);
        let p = g.ledger.consistency_proof(old, new).unwrap();
        prop_assert!(verify_consistency(&p, old, &old_root, new, &new_root).is_ok());
        if !p.is_empty() {
            let mut bad = p.clone();
            let k = (bit / 8) % bad.len();
            bad[k][bit % 32] ^= 1 << (bit % 8);
            prop_assert!(verify_consistency(&bad, old, &old_root, new, &new_root).is_err());
        }
        if old < new {
            let mut wrong = old_root;
            wrong[0] ^= 1;
            prop_assert!(verify_consistency(&p, old, &wrong, new, &new_root).is_err());
        }
    }
}
