//! Row digests: a hash of one record's normalised rows that a database can compute from its own
//! columns, so a verifier can compare large ranges without reading them.
//!
//! Re-deriving record bytes needs this crate's code ([`crate::Projection::record_bytes`] reads
//! every row of a range). To *locate* a change among millions of rows without reading them, the
//! verifier instead compares, range by range, a digest the store computes where the data lives
//! with the same digest computed from the ledger's record. The digest is a function of the
//! columns alone (never a stored hash, which the design forbids trusting), so a change to any
//! column changes it; a range whose digests agree holds exactly the rows the ledger's records
//! imply. A range that differs is split until it is small, and only then are its rows read and
//! re-derived as usual: the digest locates, re-derivation still decides.
//!
//! # Definition (version 2)
//!
//! Each row is encoded as PostgreSQL's binary record format (`record_send`, what the server
//! computes from its columns in C): an `i32` column count, then per column its type's `i32`
//! OID and an `i32` length (-1 for NULL) followed by the column's binary send format (big-endian
//! integers; `text` and `json` as UTF-8; `uuid` as 16 bytes; `timestamptz` as microseconds
//! since 2000-01-01T00:00:00Z; `bytea` as is). Columns are the tables' own, in their order:
//! `decisions` (15), `approvals` (7), `attachments` (6).
//!
//! A part of a range has the digest
//! `SHA-256("triplicate/row-range-digest/v2\n" || D || A || T)` where `D` is
//! `SHA-256(SHA-256(row)…)` over the part's `decisions` rows in seq order, and `A` and `T` the
//! same over its `approvals` and `attachments` rows in (seq, position) order. A part holding no
//! row of any table has no digest. The tables are chained separately so that the server
//! hashes each table in one ordered pass, with no join ([`POSTGRES_RANGE_DIGESTS`]).
//!
//! The encoding follows the schema: a migration that changes these tables' columns changes
//! every digest, and the conformance suite (which compares both sides) says so. `text` and
//! `json` are sent in the session's client encoding, which sqlx fixes to UTF-8.

use sha2::{Digest, Sha256};
use triplicate_core::{Hash, Record};

use crate::postgres::split_time;
use crate::rows::RecordRows;
use crate::ProjectionError;

/// Prefix of a part's digest.
pub const ROW_RANGE_DIGEST_DOMAIN: &[u8] = b"triplicate/row-range-digest/v2\n";

/// The SQL that computes, for `$1 <= seq < $2` split into parts of `$3` seqs, each table's
/// chain digest per non-empty part: rows of `(table, part, digest)`, table 0 `decisions`,
/// 1 `approvals`, 2 `attachments`. One statement, so one snapshot; each subquery hashes its
/// rows while scanning them (`OFFSET 0` keeps the planner from moving the hashing into the
/// aggregate, where it would also carry whole rows through the sort).
pub(crate) const POSTGRES_RANGE_DIGESTS: &str = r#"
SELECT 0::int4 AS t, part, sha256(string_agg(h, ''::bytea ORDER BY seq)) AS digest FROM (
    SELECT (seq - $1) / $3 AS part, seq, sha256(record_send(d)) AS h
    FROM decisions d WHERE seq >= $1 AND seq < $2 OFFSET 0) s
GROUP BY part
UNION ALL
SELECT 1, part, sha256(string_agg(h, ''::bytea ORDER BY seq, position)) FROM (
    SELECT (seq - $1) / $3 AS part, seq, position, sha256(record_send(a)) AS h
    FROM approvals a WHERE seq >= $1 AND seq < $2 OFFSET 0) s
GROUP BY part
UNION ALL
SELECT 2, part, sha256(string_agg(h, ''::bytea ORDER BY seq, position)) FROM (
    SELECT (seq - $1) / $3 AS part, seq, position, sha256(record_send(t)) AS h
    FROM attachments t WHERE seq >= $1 AND seq < $2 OFFSET 0) s
GROUP BY part
"#;

// Type OIDs of the columns (PostgreSQL's `pg_type.oid`, fixed for built-in types).
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const TEXT: u32 = 25;
const JSON: u32 = 114;
const BYTEA: u32 = 17;
const TIMESTAMPTZ: u32 = 1184;
const UUID: u32 = 2950;

/// One row in `record_send` format, built column by column.
struct RowEncoder {
    buf: Vec<u8>,
}

impl RowEncoder {
    fn new(columns: u32) -> Self {
        let mut buf = Vec::with_capacity(512);
        buf.extend_from_slice(&columns.to_be_bytes());
        RowEncoder { buf }
    }

    fn column(&mut self, oid: u32, data: &[u8]) -> Result<(), String> {
        let n =
            i32::try_from(data.len()).map_err(|_| format!("a column of {} bytes", data.len()))?;
        self.buf.extend_from_slice(&oid.to_be_bytes());
        self.buf.extend_from_slice(&n.to_be_bytes());
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn null(&mut self, oid: u32) {
        self.buf.extend_from_slice(&oid.to_be_bytes());
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn time(&mut self, unix_nanos: i128) -> Result<(), String> {
        let (micros, extra) = split_time(unix_nanos)?;
        self.column(TIMESTAMPTZ, &micros.0.to_be_bytes())?;
        self.column(INT2, &extra.to_be_bytes())
    }

    fn uuid(&mut self, s: &str) -> Result<(), String> {
        let u = uuid::Uuid::parse_str(s).map_err(|e| format!("uuid {s:?}: {e}"))?;
        self.column(UUID, u.as_bytes())
    }

    fn small(&mut self, v: i64, what: &str) -> Result<(), String> {
        let v = i16::try_from(v).map_err(|_| format!("{what} {v} does not fit a smallint"))?;
        self.column(INT2, &v.to_be_bytes())
    }

    fn hash(self) -> Hash {
        Sha256::digest(&self.buf).into()
    }
}

/// The hashes of one record's rows, table by table: what a part's chains take in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowHashes {
    pub seq: u64,
    pub decision: Hash,
    pub approvals: Vec<Hash>,
    pub attachments: Vec<Hash>,
}

impl RowHashes {
    /// What stands for a record whose rows cannot be had (a ledger entry that is not a record,
    /// a row that cannot be re-derived): a decision hash that is no row's (it is not a SHA-256
    /// of a `record_send` encoding), so its part never matches.
    pub fn damaged(seq: u64) -> RowHashes {
        let mut h = Sha256::new();
        h.update(b"triplicate/row-digest/damaged\n");
        h.update(seq.to_be_bytes());
        RowHashes {
            seq,
            decision: h.finalize().into(),
            approvals: Vec::new(),
            attachments: Vec::new(),
        }
    }
}

/// The row hashes of one record's rows.
pub(crate) fn of_rows(r: &RecordRows) -> Result<RowHashes, String> {
    let d = &r.decision;
    let mut e = RowEncoder::new(15);
    e.column(INT8, &d.seq.to_be_bytes())?;
    e.uuid(&d.id)?;
    let version = i32::try_from(d.version).map_err(|_| format!("version {}", d.version))?;
    e.column(INT4, &version.to_be_bytes())?;
    e.column(TEXT, d.kind.as_bytes())?;
    e.column(TEXT, d.title.as_bytes())?;
    e.column(TEXT, d.body.as_bytes())?;
    e.column(JSON, d.payload.as_bytes())?;
    e.time(d.proposed_at)?;
    e.time(d.recorded_at)?;
    match &d.supersedes {
        None => e.null(UUID),
        Some(s) => e.uuid(s)?,
    }
    e.column(TEXT, d.notary_key_id.as_bytes())?;
    e.column(TEXT, d.notary_alg.as_bytes())?;
    e.column(BYTEA, &d.notary_signature)?;
    let decision = e.hash();
    let approvals = r
        .approvals
        .iter()
        .map(|a| {
            let mut e = RowEncoder::new(7);
            e.column(INT8, &a.seq.to_be_bytes())?;
            e.small(a.position, "approval position")?;
            e.column(TEXT, a.key_id.as_bytes())?;
            e.column(TEXT, a.alg.as_bytes())?;
            e.column(BYTEA, &a.signature)?;
            e.time(a.signed_at)?;
            Ok(e.hash())
        })
        .collect::<Result<_, String>>()?;
    let attachments = r
        .attachments
        .iter()
        .map(|t| {
            let mut e = RowEncoder::new(6);
            e.column(INT8, &t.seq.to_be_bytes())?;
            e.small(t.position, "attachment position")?;
            e.column(BYTEA, &t.sha256)?;
            e.column(TEXT, t.media_type.as_bytes())?;
            e.column(INT8, &t.size.to_be_bytes())?;
            match &t.name {
                None => e.null(TEXT),
                Some(n) => e.column(TEXT, n.as_bytes())?,
            }
            Ok(e.hash())
        })
        .collect::<Result<_, String>>()?;
    Ok(RowHashes {
        seq: u64::try_from(d.seq).map_err(|_| format!("seq {}", d.seq))?,
        decision,
        approvals,
        attachments,
    })
}

/// The row hashes the projection's rows of this record must have: what the verifier computes
/// from the ledger's entry. Bytes that are not a valid canonical record are refused.
pub fn of_record_bytes(record_bytes: &[u8]) -> Result<RowHashes, ProjectionError> {
    let record =
        Record::from_canonical_bytes(record_bytes).map_err(|e| ProjectionError::InvalidRecord {
            index: 0,
            reason: e.to_string(),
        })?;
    of_record(record)
}

/// The row hashes of a (validated) record's rows.
pub fn of_record(record: Record) -> Result<RowHashes, ProjectionError> {
    let seq = record.seq;
    RecordRows::from_record(record)
        .and_then(|rows| of_rows(&rows))
        .map_err(|reason| ProjectionError::InvalidRecord {
            index: 0,
            reason: format!("seq {seq}: {reason}"),
        })
}

/// The digests of the parts of `start..end` (parts of `width` seqs), fed records' row hashes
/// in seq order.
#[derive(Debug)]
pub struct PartDigests {
    start: u64,
    width: u64,
    done: Vec<(u32, Hash)>,
    current: Option<(u32, [Sha256; 3])>,
}

impl PartDigests {
    pub fn new(start: u64, width: u64) -> PartDigests {
        PartDigests {
            start,
            width: width.max(1),
            done: Vec::new(),
            current: None,
        }
    }

    /// Adds one record's rows; records must come in increasing seq order, all `>= start`.
    pub fn add(&mut self, rows: &RowHashes) {
        let part =
            u32::try_from(rows.seq.saturating_sub(self.start) / self.width).unwrap_or(u32::MAX);
        if self.current.as_ref().is_some_and(|(p, _)| *p != part) {
            self.close();
        }
        let (_, chains) = self
            .current
            .get_or_insert_with(|| (part, [Sha256::new(), Sha256::new(), Sha256::new()]));
        chains[0].update(rows.decision);
        for a in &rows.approvals {
            chains[1].update(a);
        }
        for t in &rows.attachments {
            chains[2].update(t);
        }
    }

    fn close(&mut self) {
        if let Some((p, [d, a, t])) = self.current.take() {
            self.done.push((
                p,
                part_digest(
                    d.finalize().into(),
                    a.finalize().into(),
                    t.finalize().into(),
                ),
            ));
        }
    }

    /// Each non-empty part's index and digest, in order.
    pub fn finish(mut self) -> Vec<(u32, Hash)> {
        self.close();
        self.done
    }
}

/// A part's digest from its three tables' chain digests.
pub(crate) fn part_digest(decisions: Hash, approvals: Hash, attachments: Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(ROW_RANGE_DIGEST_DOMAIN);
    h.update(decisions);
    h.update(approvals);
    h.update(attachments);
    h.finalize().into()
}

/// The chain digest of a table with no rows in a part.
pub(crate) fn empty_chain() -> Hash {
    Sha256::digest([]).into()
}

/// The width of each of `parts` parts of `start..end` (the last may be shorter).
pub fn part_width(start: u64, end: u64, parts: u32) -> u64 {
    end.saturating_sub(start)
        .div_ceil(u64::from(parts.max(1)))
        .max(1)
}
