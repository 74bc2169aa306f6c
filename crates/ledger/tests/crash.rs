//! Crash test: a child process appends until it is killed with SIGKILL at a random moment, many
//! times over the same ledger. After every kill, every entry the child was told was committed
//! must be there, byte for byte, and `fsck` must pass.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use triplicate_keys::SoftwareSigner;
use triplicate_ledger::fsck::fsck;
use triplicate_ledger::{EmbeddedLedger, Ledger, LedgerConfig};

fn crash_entry(i: u64) -> Vec<u8> {
    format!("crash-test entry {i} {}", "x".repeat((i % 97) as usize)).into_bytes()
}

#[test]
fn sigkill_mid_append_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let ledger_dir = dir.path().join("ledger");
    let key = dir.path().join("notary.pem");
    let signer = SoftwareSigner::generate("crash-notary");
    signer.write_pem_file(&key).unwrap();
    let signer = Arc::new(signer);

    let rounds = 40;
    let mut last_acked = 0u64;
    for round in 0..rounds {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-crash-child"))
            .arg(&ledger_dir)
            .arg(&key)
            .arg((round as u64 + 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Kill at a different moment each round: 20..200 ms into the run.
        std::thread::sleep(Duration::from_millis(20 + (round * 37 % 180) as u64));
        child.kill().unwrap(); // SIGKILL
        let stdout = child.stdout.take().unwrap();
        let status = child.wait().unwrap();
        // It must have been appending (and flushing) until the kill: a child that stopped on
        // its own hit an error, which the lines it printed to stderr name.
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "round {round}: the child stopped before it was killed: {status}"
        );
        let acked = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("ack ").and_then(|n| n.parse::<u64>().ok()))
            .last()
            .unwrap_or(last_acked);
        assert!(acked >= last_acked);
        last_acked = acked;

        // fsck before the writer's open: the files as the kill left them must check clean
        // (the WAL may hold acknowledged entries past the checkpoint). A child killed before
        // it finished creating the ledger (a loaded machine, the first round) left no
        // checkpoint and acknowledged nothing: there is nothing to check yet, and the open
        // below must still create the ledger over what it left.
        let created = ledger_dir.join("checkpoint").exists();
        assert!(
            created || acked == 0,
            "round {round}: acked {acked} without a checkpoint"
        );
        if created {
            let r = fsck(&ledger_dir, None).unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert!(r.size + r.wal_pending >= acked, "round {round}");
        }

        let l = EmbeddedLedger::open(
            LedgerConfig::new(&ledger_dir, "triplicate.invalid/crash-test"),
            signer.clone(),
        )
        .unwrap_or_else(|e| panic!("round {round}: reopen: {e}"));
        let size = l.tree_size();
        assert!(
            size >= acked,
            "round {round}: acknowledged {acked}, found {size}"
        );
        let entries = l.entries(0, size).unwrap();
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e, &crash_entry(i as u64), "round {round}: entry {i}");
        }
        drop(l);
        let r = fsck(&ledger_dir, None).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(r.size, size);
    }
    assert!(last_acked > 0, "the child never acknowledged anything");
}
