//! Deciding what an apply writes, the same way for every backend: given the validated batch and
//! what the store already holds at its seqs and decision ids (re-derived from the rows), which
//! records are retries, which conflict, and whether the new ones would leave a gap.

use std::collections::HashMap;

use triplicate_core::digest::leaf_hash;

use crate::rows::RecordRows;
use crate::{hex_hash, ProjectionError};

/// What the plan (and the batch's own checks) need of a validated record: its seq and its
/// decision id as canonical UUID text.
pub(crate) trait Keyed {
    fn seq(&self) -> i64;
    fn id(&self) -> &str;
}

impl Keyed for RecordRows {
    fn seq(&self) -> i64 {
        self.decision.seq
    }
    fn id(&self) -> &str {
        &self.decision.id
    }
}

/// A stored record that shares a seq or a decision id with the batch.
#[derive(Debug)]
pub(crate) struct Stored {
    pub seq: u64,
    pub id: String,
    /// Re-derived bytes, or why the rows could not be re-derived.
    pub content: Result<Vec<u8>, String>,
}

impl Stored {
    fn hash_text(&self) -> String {
        match &self.content {
            Ok(b) => hex_hash(&leaf_hash(b)),
            Err(why) => format!("(rows damaged: {why})"),
        }
    }
}

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ApplyPlan {
    /// Index of the first record to write; every record from it on is new.
    pub fresh_from: usize,
    /// Records already stored with identical content.
    pub already: u64,
}

/// Plans an apply of consecutive records (a batch, or the next chunk of one; see the module
/// docs). `batch` holds the bytes `rows` were made from.
pub(crate) fn plan_apply<K: Keyed>(
    rows_of: &[K],
    batch: &[Vec<u8>],
    stored: Vec<Stored>,
    highest: Option<u64>,
) -> Result<ApplyPlan, ProjectionError> {
    let mut by_seq: HashMap<u64, &Stored> = HashMap::new();
    let mut by_id: HashMap<&str, &Stored> = HashMap::new();
    for s in &stored {
        by_seq.insert(s.seq, s);
        by_id.insert(s.id.as_str(), s);
    }
    let next_seq = highest.map_or(0, |h| h + 1);
    let mut already = 0u64;
    for (i, rows) in rows_of.iter().enumerate() {
        let seq = rows.seq() as u64;
        let offered = || hex_hash(&leaf_hash(&batch[i]));
        if let Some(s) = by_seq.get(&seq) {
            if s.content.as_deref() == Ok(batch[i].as_slice()) {
                already += 1;
                continue;
            }
            return Err(ProjectionError::SeqConflict {
                seq,
                stored: s.hash_text(),
                offered: offered(),
            });
        }
        if let Some(s) = by_id.get(rows.id()) {
            return Err(ProjectionError::DecisionConflict {
                id: uuid::Uuid::try_parse(rows.id()).unwrap_or_default(),
                stored_seq: s.seq,
                stored: s.hash_text(),
                offered_seq: seq,
                offered: offered(),
            });
        }
        // The first record not yet stored: it and everything after it is new, and it must
        // continue the stored prefix.
        if seq != next_seq {
            return Err(ProjectionError::Gap {
                expected: next_seq,
                got: seq,
            });
        }
        // Later records of the batch have higher seqs than anything stored, so only their
        // decision ids can conflict.
        for (k, later) in rows_of.iter().enumerate().skip(i + 1) {
            if let Some(s) = by_id.get(later.id()) {
                return Err(ProjectionError::DecisionConflict {
                    id: uuid::Uuid::try_parse(later.id()).unwrap_or_default(),
                    stored_seq: s.seq,
                    stored: s.hash_text(),
                    offered_seq: later.seq() as u64,
                    offered: hex_hash(&leaf_hash(&batch[k])),
                });
            }
        }
        return Ok(ApplyPlan {
            fresh_from: i,
            already,
        });
    }
    Ok(ApplyPlan {
        fresh_from: rows_of.len(),
        already,
    })
}
