//! The conformance suite every [`Ledger`] backend runs: `conformance::run(&ledger)` on a fresh,
//! empty ledger. It checks the guarantees the trait documents, through the trait only.

use crate::proof::{leaf_hash, verify_consistency, verify_inclusion};
use crate::{Ledger, LedgerError};

fn entry(i: u64) -> Vec<u8> {
    format!("{{\"conformance\":{i}}}").into_bytes()
}

/// Runs every check; panics (it is a test helper) with a message naming the failed guarantee.
pub fn run(ledger: &dyn Ledger) {
    assert_eq!(ledger.tree_size(), 0, "conformance needs an empty ledger");
    let cp0 = ledger.checkpoint();
    assert_eq!(cp0.size, 0);

    // Empty batches and gaps are refused and change nothing.
    assert!(matches!(
        ledger.append(0, &[]),
        Err(LedgerError::EmptyBatch)
    ));
    assert!(matches!(
        ledger.append(1, &[entry(1)]),
        Err(LedgerError::Gap {
            expected: 0,
            got: 1
        })
    ));
    assert!(matches!(
        ledger.append(0, &[vec![0u8; 70_000]]),
        Err(LedgerError::EntryTooLarge { .. })
    ));
    assert_eq!(ledger.tree_size(), 0);

    // Batches of varied sizes across tile boundaries.
    let mut size = 0u64;
    let mut checkpoints = vec![cp0];
    for batch in [1u64, 2, 5, 255, 1, 256, 300, 7] {
        let entries: Vec<Vec<u8>> = (size..size + batch).map(entry).collect();
        let out = ledger.append(size, &entries).expect("append");
        assert_eq!(out.first_index, size);
        assert_eq!(out.appended, batch);
        size += batch;
        assert_eq!(out.checkpoint.size, size, "checkpoint covers the batch");
        assert_eq!(ledger.tree_size(), size);
        assert_eq!(ledger.checkpoint(), out.checkpoint);
        checkpoints.push(out.checkpoint);
    }

    // Idempotent retry of the last batch, and of part of it with new entries after it.
    let last: Vec<Vec<u8>> = (size - 7..size).map(entry).collect();
    let out = ledger.append(size - 7, &last).expect("idempotent retry");
    assert_eq!(out.appended, 0);
    assert_eq!(ledger.tree_size(), size);
    let mixed: Vec<Vec<u8>> = (size - 2..size + 3).map(entry).collect();
    let out = ledger.append(size - 2, &mixed).expect("overlapping retry");
    assert_eq!(out.appended, 3);
    size += 3;
    checkpoints.push(out.checkpoint);

    // A different entry at a used index is a conflict naming both hashes; nothing is written.
    match ledger.append(3, &[b"not the original".to_vec()]) {
        Err(LedgerError::Conflict {
            index,
            stored,
            offered,
        }) => {
            assert_eq!(index, 3);
            assert_ne!(stored, offered);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(ledger.tree_size(), size);

    // Entries read back byte for byte, across bundle boundaries.
    let all = ledger.entries(0, size).expect("entries");
    assert_eq!(all.len() as u64, size);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e, &entry(i as u64), "entry {i}");
    }
    assert_eq!(ledger.entry(256).expect("entry"), entry(256));
    assert!(matches!(
        ledger.entries(0, size + 1),
        Err(LedgerError::OutOfRange { .. })
    ));
    let leaves = ledger.leaf_hashes(250, 270).expect("leaf hashes");
    for (k, h) in leaves.iter().enumerate() {
        assert_eq!(*h, leaf_hash(&entry(250 + k as u64)));
    }

    // Every checkpoint's root is reproducible and consistent with every later one.
    for cp in &checkpoints {
        assert_eq!(
            ledger.root_at(cp.size).expect("root"),
            cp.root,
            "root at {}",
            cp.size
        );
    }
    for (i, old) in checkpoints.iter().enumerate() {
        for new in &checkpoints[i..] {
            let p = ledger
                .consistency_proof(old.size, new.size)
                .expect("consistency proof");
            verify_consistency(&p, old.size, &old.root, new.size, &new.root)
                .unwrap_or_else(|e| panic!("consistency {} -> {}: {e}", old.size, new.size));
        }
    }

    // Inclusion proofs for a spread of indexes against several tree sizes.
    for cp in checkpoints.iter().filter(|c| c.size > 0) {
        for index in [0, 1, cp.size / 2, cp.size - 1]
            .into_iter()
            .filter(|&i| i < cp.size)
        {
            let p = ledger
                .inclusion_proof(index, cp.size)
                .expect("inclusion proof");
            verify_inclusion(&p, index, cp.size, &cp.root, &leaf_hash(&entry(index)))
                .unwrap_or_else(|e| panic!("inclusion of {index} in {}: {e}", cp.size));
        }
    }
    assert!(matches!(
        ledger.inclusion_proof(size, size),
        Err(LedgerError::OutOfRange { .. })
    ));
    assert!(matches!(
        ledger.consistency_proof(1, size + 1),
        Err(LedgerError::OutOfRange { .. })
    ));
}
