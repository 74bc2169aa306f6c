//! PostgreSQL's side of `rows.rs`: binary `COPY` tuples of `decisions`, `approvals` and
//! `attachments`, both ways.
//!
//! Write path: a validated record goes straight into tuples. The validation threads do this
//! work (parsing, validating, encoding), so the task that holds the transaction only sends
//! bytes. Each thread encodes its share of a chunk into its own buffers ([`EncodedPart`]); the
//! writer sends the parts one after another between the `COPY` header and trailer, without
//! joining them.
//!
//! Read path: the task that holds the read transaction only receives ([`Fetched`]: the raw
//! `COPY` data of a slice of seqs); decoding the tuples into rows and re-deriving the records
//! happens on the re-derivation threads, each taking a run of seqs ([`Fetched::rederive`]), so
//! the rows are allocated, used and freed on one thread.

use triplicate_core::{CanonicalProof, Record, Timestamp};
use uuid::Uuid;

use crate::pgcopy::{CopyReader, CopyWriter};
use crate::plan::Keyed;
use crate::postgres::{join_time, split_time};
use crate::rows::{
    assemble, proofs_for, read_record, ApprovalRow, AttachmentRow, DecisionRow, RecordRows,
};
use crate::{ProjectionError, RederivedRecord};

/// What the plan needs of a validated record (see [`Keyed`]).
#[derive(Debug, Clone)]
pub(crate) struct RecordKey {
    pub seq: i64,
    /// Canonical hyphenated text.
    pub id: String,
}

impl Keyed for RecordKey {
    fn seq(&self) -> i64 {
        self.seq
    }
    fn id(&self) -> &str {
        &self.id
    }
}

/// The tables, in the order an apply writes them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Table {
    Decisions = 0,
    Approvals = 1,
    Attachments = 2,
}

/// Consecutive records of a batch, encoded by one thread.
#[derive(Debug)]
pub(crate) struct EncodedPart {
    /// Per record, where its tuples start in each table's buffer.
    starts: Vec<[usize; 3]>,
    tables: [Vec<u8>; 3],
}

impl EncodedPart {
    fn len(&self) -> usize {
        self.starts.len()
    }

    /// The tuples of this part's records from its `k`th on, for `table`.
    fn tuples_from(&self, k: usize, table: Table) -> &[u8] {
        let t = table as usize;
        match self.starts.get(k) {
            Some(s) => &self.tables[t][s[t]..],
            None => &[],
        }
    }
}

/// Records `offset..offset + keys.len()` of a batch: validated, and encoded in parts.
#[derive(Debug)]
pub(crate) struct EncodedChunk {
    pub offset: usize,
    pub keys: Vec<RecordKey>,
    parts: Vec<EncodedPart>,
}

impl EncodedChunk {
    /// The pieces of `COPY` data (tuples only) of the chunk's records from its `k`th on.
    pub fn tuples_from(&self, k: usize, table: Table) -> Vec<&[u8]> {
        let mut first = 0;
        let mut out = Vec::with_capacity(self.parts.len());
        for p in &self.parts {
            let end = first + p.len();
            if k < end {
                let piece = p.tuples_from(k.saturating_sub(first), table);
                if !piece.is_empty() {
                    out.push(piece);
                }
            }
            first = end;
        }
        out
    }
}

/// Parses and validates records `offset..offset + part.len()` of a batch
/// (`Record::from_canonical_bytes`: bytes that are not exactly a valid canonical record are
/// refused) and encodes their rows, on up to `threads` threads. The earliest invalid record is
/// reported, as a sequential check would.
///
/// `proofs[k]`, when given, is the core crate's proof for `part[k]` (see
/// [`crate::Projection::apply_proven`]).
pub(crate) fn prepare_chunk(
    offset: usize,
    part: &[Vec<u8>],
    proofs: &[Option<CanonicalProof>],
    threads: usize,
) -> Result<EncodedChunk, ProjectionError> {
    if part.len() < 32 || threads < 2 {
        let (keys, p) = encode_part(offset, part, proofs)?;
        return Ok(EncodedChunk {
            offset,
            keys,
            parts: vec![p],
        });
    }
    let share = part.len().div_ceil(threads);
    std::thread::scope(|sc| {
        let handles: Vec<_> = part
            .chunks(share)
            .enumerate()
            .map(|(i, p)| {
                let proofs = proofs_for(proofs, i * share, p.len());
                sc.spawn(move || encode_part(offset + i * share, p, proofs))
            })
            .collect();
        let mut keys = Vec::with_capacity(part.len());
        let mut parts = Vec::with_capacity(handles.len());
        let mut first: Option<ProjectionError> = None;
        for h in handles {
            let r = h.join().unwrap_or_else(|_| {
                Err(ProjectionError::Storage {
                    what: "validate records",
                    reason: "a validation thread panicked".into(),
                })
            });
            match (r, &first) {
                (Ok((k, p)), None) => {
                    keys.extend(k);
                    parts.push(p);
                }
                (Err(e), None) => first = Some(e),
                _ => {}
            }
        }
        first.map_or(
            Ok(EncodedChunk {
                offset,
                keys,
                parts,
            }),
            Err,
        )
    })
}

/// One thread's share of [`prepare_chunk`].
fn encode_part(
    offset: usize,
    part: &[Vec<u8>],
    proofs: &[Option<CanonicalProof>],
) -> Result<(Vec<RecordKey>, EncodedPart), ProjectionError> {
    let size: usize = part.iter().map(Vec::len).sum();
    let mut d = CopyWriter::tuples(size);
    let mut a = CopyWriter::tuples(part.len() * 2 * 160);
    let mut t = CopyWriter::tuples(0);
    let mut keys = Vec::with_capacity(part.len());
    let mut starts = Vec::with_capacity(part.len());
    for (k, bytes) in part.iter().enumerate() {
        let invalid = |reason: String| ProjectionError::InvalidRecord {
            index: offset + k,
            reason,
        };
        let r = read_record(bytes, proofs.get(k)).map_err(|e| invalid(e.to_string()))?;
        starts.push([d.len(), a.len(), t.len()]);
        let seq = encode_record(&r, &mut d, &mut a, &mut t).map_err(invalid)?;
        keys.push(RecordKey {
            seq,
            id: r.decision.id.hyphenated().to_string(),
        });
    }
    Ok((
        keys,
        EncodedPart {
            starts,
            tables: [d.into_tuples(), a.into_tuples(), t.into_tuples()],
        },
    ))
}

fn int(v: u64, what: &str) -> Result<i64, String> {
    i64::try_from(v).map_err(|_| format!("{what} {v} does not fit a 64-bit signed integer"))
}

fn small(v: usize, what: &str) -> Result<i16, String> {
    i16::try_from(v).map_err(|_| format!("{what} {v} does not fit"))
}

fn time(w: &mut CopyWriter, t: &Timestamp) -> Result<(), String> {
    let (micros, extra) = split_time(t.unix_nanos())?;
    w.timestamp(micros.0);
    w.i16(extra);
    Ok(())
}

fn uuid(w: &mut CopyWriter, u: &Uuid) {
    w.uuid(u);
}

/// Writes a validated record's rows (the mapping in the README: "Record → rows") and returns
/// its seq. On an error the buffers may hold part of the record; the caller refuses the batch.
fn encode_record(
    r: &Record,
    d: &mut CopyWriter,
    a: &mut CopyWriter,
    t: &mut CopyWriter,
) -> Result<i64, String> {
    let seq = int(r.seq, "seq")?;
    let x = &r.decision;
    d.row(15);
    d.i64(seq);
    uuid(d, &x.id);
    d.i32(i32::try_from(r.version).map_err(|_| "version does not fit".to_owned())?);
    d.text(&x.kind);
    d.text(&x.title);
    d.text(&x.body);
    d.bytes(&triplicate_core::canonical::object_jcs(&x.payload));
    time(d, &x.proposed_at)?;
    time(d, &r.recorded_at)?;
    match &x.supersedes {
        Some(s) => uuid(d, s),
        None => d.null(),
    }
    d.text(r.notary.key_id.as_str());
    d.text(r.notary.alg.as_str());
    d.bytes(&r.notary.signature);
    for (i, p) in r.approvals.iter().enumerate() {
        a.row(7);
        a.i64(seq);
        a.i16(small(i, "approval position")?);
        a.text(p.key_id.as_str());
        a.text(p.alg.as_str());
        a.bytes(&p.signature);
        time(a, &p.signed_at)?;
    }
    for (i, m) in x.attachments.iter().enumerate() {
        let mut sha = [0u8; 32];
        hex::decode_to_slice(&m.sha256, &mut sha)
            .map_err(|e| format!("attachment {i} sha256: {e}"))?;
        t.row(6);
        t.i64(seq);
        t.i16(small(i, "attachment position")?);
        t.bytes(&sha);
        t.text(&m.media_type);
        t.i64(int(m.size, "attachment size")?);
        // Absent and empty are the same canonical thing; store one of them (NULL).
        match m.name.as_deref().filter(|n| !n.is_empty()) {
            Some(n) => t.text(n),
            None => t.null(),
        }
    }
    Ok(seq)
}

/// Fields per tuple of each table, as fetched.
const DECISION_FIELDS: i16 = 15;
const APPROVAL_FIELDS: i16 = 7;
const ATTACHMENT_FIELDS: i16 = 6;

/// The binary `COPY` data of the rows of some seqs, each table in seq (and position) order, as
/// received (see `postgres.rs`, `fetch`). Empty buffers: no rows.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    pub decisions: Vec<u8>,
    pub approvals: Vec<u8>,
    pub attachments: Vec<u8>,
}

/// Where each tuple starts, and its first field (the seq).
fn index(data: &[u8], fields: i16) -> Result<Vec<(usize, i64)>, String> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = CopyReader::new(data)?;
    let mut out = Vec::new();
    loop {
        let pos = r.position();
        if r.row(fields)?.is_none() {
            return Ok(out);
        }
        let seq = r.i64("seq")?;
        for _ in 1..fields {
            r.field()?;
        }
        out.push((pos, seq));
    }
}

impl Fetched {
    /// All the rows, decoded and put together per record (for queries and the write path's
    /// lookups).
    pub fn rows(&self) -> Result<Vec<RecordRows>, String> {
        let d = index(&self.decisions, DECISION_FIELDS)?;
        let a = index(&self.approvals, APPROVAL_FIELDS)?;
        let t = index(&self.attachments, ATTACHMENT_FIELDS)?;
        self.decode(&d, &a, &t)
    }

    /// Decodes the given tuples (positions from [`index`]).
    fn decode(
        &self,
        d: &[(usize, i64)],
        a: &[(usize, i64)],
        t: &[(usize, i64)],
    ) -> Result<Vec<RecordRows>, String> {
        Ok(assemble(
            decode_decisions(&self.decisions, d)?,
            decode_approvals(&self.approvals, a)?,
            decode_attachments(&self.attachments, t)?,
        ))
    }

    /// Every record's bytes re-derived from the rows (damaged rows reported as such), in seq
    /// order, on up to `threads` threads. Each thread decodes and rebuilds a run of consecutive
    /// seqs. `Err` only when the data is not the `COPY` data asked for.
    pub fn rederive(self, threads: usize) -> Result<Vec<RederivedRecord>, String> {
        self.per_record(threads, RecordRows::rederive)
    }

    /// `f` of every record's rows, in seq order, on up to `threads` threads (see
    /// [`Fetched::rederive`]).
    pub fn per_record<T: Send>(
        self,
        threads: usize,
        f: impl Fn(RecordRows) -> T + Sync,
    ) -> Result<Vec<T>, String> {
        let d = index(&self.decisions, DECISION_FIELDS)?;
        let a = index(&self.approvals, APPROVAL_FIELDS)?;
        let t = index(&self.attachments, ATTACHMENT_FIELDS)?;
        let run = |d: &[(usize, i64)], a: &[(usize, i64)], t: &[(usize, i64)]| {
            self.decode(d, a, t)
                .map(|rows| rows.into_iter().map(&f).collect::<Vec<_>>())
        };
        if d.len() < 128 || threads < 2 {
            return run(&d, &a, &t);
        }
        // Run k holds the decisions d[k·share..] and the approvals and attachments from its
        // first seq up to the next run's first seq (rows are in seq order), so rows of a seq
        // without a decision row end up in one run, which skips them as a whole read would.
        let share = d.len().div_ceil(threads);
        let runs: Vec<_> = d
            .chunks(share)
            .enumerate()
            .map(|(k, dk)| {
                let from = if k == 0 { i64::MIN } else { dk[0].1 };
                let to = d.get((k + 1) * share).map_or(i64::MAX, |x| x.1);
                let cut = |rows: &[(usize, i64)]| {
                    let lo = rows.partition_point(|r| r.1 < from);
                    let hi = rows.partition_point(|r| r.1 < to);
                    (lo, hi.max(lo))
                };
                (dk, cut(&a), cut(&t))
            })
            .collect();
        std::thread::scope(|sc| {
            let handles: Vec<_> = runs
                .into_iter()
                .map(|(dk, (a0, a1), (t0, t1))| {
                    let (ak, tk, run) = (&a[a0..a1], &t[t0..t1], &run);
                    sc.spawn(move || run(dk, ak, tk))
                })
                .collect();
            let mut out = Vec::with_capacity(d.len());
            for h in handles {
                out.extend(
                    h.join()
                        .map_err(|_| "a re-derivation thread panicked".to_owned())??,
                );
            }
            Ok(out)
        })
    }

    /// How many decision rows the data holds.
    #[cfg(feature = "testkit")]
    pub fn decisions(&self) -> Result<usize, String> {
        index(&self.decisions, DECISION_FIELDS).map(|d| d.len())
    }
}

/// The rows of records as an apply writes them, without validating the records (a benchmark
/// baseline: the database's share of an apply).
#[cfg(feature = "testkit")]
pub(crate) fn encode_unvalidated(
    offset: usize,
    records: &[Record],
) -> Result<EncodedChunk, String> {
    let mut d = CopyWriter::tuples(records.len() * 1400);
    let mut a = CopyWriter::tuples(records.len() * 2 * 160);
    let mut t = CopyWriter::tuples(0);
    let mut keys = Vec::with_capacity(records.len());
    let mut starts = Vec::with_capacity(records.len());
    for r in records {
        starts.push([d.len(), a.len(), t.len()]);
        let seq = encode_record(r, &mut d, &mut a, &mut t)?;
        keys.push(RecordKey {
            seq,
            id: r.decision.id.hyphenated().to_string(),
        });
    }
    Ok(EncodedChunk {
        offset,
        keys,
        parts: vec![EncodedPart {
            starts,
            tables: [d.into_tuples(), a.into_tuples(), t.into_tuples()],
        }],
    })
}

pub(crate) fn decode_decisions(
    data: &[u8],
    at: &[(usize, i64)],
) -> Result<Vec<DecisionRow>, String> {
    let mut out = Vec::with_capacity(at.len());
    for &(pos, _) in at {
        let mut r = CopyReader::at(data, pos);
        r.row(DECISION_FIELDS)?;
        out.push(DecisionRow {
            seq: r.i64("seq")?,
            id: r.uuid("id")?.hyphenated().to_string(),
            version: i64::from(r.i32("version")?),
            kind: r.text("kind")?,
            title: r.text("title")?,
            body: r.text("body")?,
            payload: r.text("payload")?,
            proposed_at: join_time(r.timestamp("proposed_at")?, r.i16("proposed_at_extra_ns")?),
            recorded_at: join_time(r.timestamp("recorded_at")?, r.i16("recorded_at_extra_ns")?),
            supersedes: r
                .opt_uuid("supersedes")?
                .map(|u| u.hyphenated().to_string()),
            notary_key_id: r.text("notary_key_id")?,
            notary_alg: r.text("notary_alg")?,
            notary_signature: r.bytes("notary_signature")?,
        });
    }
    Ok(out)
}

pub(crate) fn decode_approvals(
    data: &[u8],
    at: &[(usize, i64)],
) -> Result<Vec<ApprovalRow>, String> {
    let mut out = Vec::with_capacity(at.len());
    for &(pos, _) in at {
        let mut r = CopyReader::at(data, pos);
        r.row(APPROVAL_FIELDS)?;
        out.push(ApprovalRow {
            seq: r.i64("seq")?,
            position: i64::from(r.i16("position")?),
            key_id: r.text("key_id")?,
            alg: r.text("alg")?,
            signature: r.bytes("signature")?,
            signed_at: join_time(r.timestamp("signed_at")?, r.i16("signed_at_extra_ns")?),
        });
    }
    Ok(out)
}

pub(crate) fn decode_attachments(
    data: &[u8],
    at: &[(usize, i64)],
) -> Result<Vec<AttachmentRow>, String> {
    let mut out = Vec::with_capacity(at.len());
    for &(pos, _) in at {
        let mut r = CopyReader::at(data, pos);
        r.row(ATTACHMENT_FIELDS)?;
        out.push(AttachmentRow {
            seq: r.i64("seq")?,
            position: i64::from(r.i16("position")?),
            sha256: r.bytes("sha256")?,
            media_type: r.text("media_type")?,
            size: r.i64("size")?,
            name: r.opt_text("name")?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::fixtures::{bytes, sample_record, tricky_records};
    use crate::pgcopy::{HEADER, TRAILER};
    use crate::rows::RecordRows;

    fn whole(chunk: &EncodedChunk, k: usize, table: Table) -> Vec<u8> {
        let mut data = HEADER.to_vec();
        for p in chunk.tuples_from(k, table) {
            data.extend_from_slice(p);
        }
        data.extend_from_slice(TRAILER);
        data
    }

    /// The tuples decode to the same rows `RecordRows::from_record` gives, whichever record of
    /// the chunk they start from and however many threads encoded them.
    #[test]
    fn tuples_hold_the_records_rows() {
        let records: Vec<_> = (0..60)
            .map(|s| sample_record(s, 0))
            .chain(tricky_records(60))
            .collect();
        let batch: Vec<Vec<u8>> = records.iter().map(bytes).collect();
        for threads in [1, 2, 3] {
            let chunk = prepare_chunk(0, &batch, &[], threads).unwrap();
            assert_eq!(chunk.keys.len(), batch.len());
            for k in [0, 1, 31, 59, batch.len() - 1, batch.len()] {
                let fetched = Fetched {
                    decisions: whole(&chunk, k, Table::Decisions),
                    approvals: whole(&chunk, k, Table::Approvals),
                    attachments: whole(&chunk, k, Table::Attachments),
                };
                let got = fetched.rows().unwrap();
                let want: Vec<RecordRows> = records[k..]
                    .iter()
                    .map(|r| RecordRows::from_record(r.clone()).unwrap())
                    .collect();
                assert_eq!(got, want, "threads {threads}, from {k}");
                for (key, r) in chunk.keys[k..].iter().zip(&want) {
                    assert_eq!(key.seq, r.decision.seq);
                    assert_eq!(key.id, r.decision.id);
                }
            }
        }
    }

    /// Re-deriving on several threads gives what one thread gives, and rows of a seq without a
    /// decision row are skipped wherever the runs are cut.
    #[test]
    fn rederive_splits_runs_by_seq() {
        let records: Vec<_> = (0..400).map(|s| sample_record(s, 0)).collect();
        let batch: Vec<Vec<u8>> = records.iter().map(bytes).collect();
        let chunk = prepare_chunk(0, &batch, &[], 1).unwrap();
        // Drop the decision rows of some seqs, keeping their approvals and attachments.
        let all = whole(&chunk, 0, Table::Decisions);
        let at = index(&all, DECISION_FIELDS).unwrap();
        let gone = [0usize, 133, 134, 200, 267, 399];
        let mut decisions = HEADER.to_vec();
        for (k, w) in at.iter().enumerate() {
            let end = at.get(k + 1).map_or(all.len() - TRAILER.len(), |x| x.0);
            if !gone.contains(&k) {
                decisions.extend_from_slice(&all[w.0..end]);
            }
        }
        decisions.extend_from_slice(TRAILER);
        let fetched = || Fetched {
            decisions: decisions.clone(),
            approvals: whole(&chunk, 0, Table::Approvals),
            attachments: whole(&chunk, 0, Table::Attachments),
        };
        let want: Vec<RederivedRecord> = (0..400)
            .filter(|k| !gone.contains(k))
            .map(|k| RederivedRecord {
                seq: k as u64,
                content: crate::Rederived::Bytes(batch[k].clone()),
                decision_id: Record::from_canonical_bytes(&batch[k])
                    .ok()
                    .map(|r| r.decision.id),
            })
            .collect();
        for threads in [1, 2, 3, 7] {
            assert_eq!(
                fetched().rederive(threads).unwrap(),
                want,
                "{threads} threads"
            );
        }
        assert!(Fetched::default().rederive(2).unwrap().is_empty());
        let mut bad = fetched();
        bad.approvals.truncate(bad.approvals.len() - 5);
        assert!(bad.rederive(2).is_err());
    }

    #[test]
    fn the_earliest_invalid_record_is_reported() {
        let mut batch: Vec<Vec<u8>> = (0..100).map(|s| bytes(&sample_record(s, 0))).collect();
        batch[70] = b"{}".to_vec();
        batch[40].push(b' ');
        for threads in [1, 2, 4] {
            match prepare_chunk(1000, &batch, &[], threads) {
                Err(ProjectionError::InvalidRecord { index, .. }) => assert_eq!(index, 1040),
                other => panic!("{other:?}"),
            }
        }
    }
}
