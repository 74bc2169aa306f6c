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
//! # Encoding (version 1)
//!
//! `row_digest = SHA-256("triplicate/row-digest/v1\n" || decision || approvals || attachments)`,
//! all integers big-endian, where `text(s)` and `bytes(b)` are a `u32` length and the UTF-8 or
//! raw bytes, `time(t)` is PostgreSQL's binary `timestamptz` (microseconds since
//! 2000-01-01T00:00:00Z as an `i64`) followed by the nanoseconds within the microsecond as an
//! `i16`, and `opt(x)` is `0x00`, or `0x01` and `x`:
//!
//! - decision: `i64 seq, 16-byte id, i32 version, text(kind), text(title), text(body),
//!   text(payload JCS), time(proposed_at), time(recorded_at), opt(16-byte supersedes),
//!   text(notary_key_id), text(notary_alg), bytes(notary_signature)`
//! - approvals: `i32 count`, then per approval in position order `i16 position, text(key_id),
//!   text(alg), bytes(signature), time(signed_at)`
//! - attachments: `i32 count`, then per attachment in position order `i16 position,
//!   bytes(sha256), text(media_type), i64 size, opt(text(name))`
//!
//! `range_digest = SHA-256("triplicate/row-range-digest/v1\n" || row_digest…)` over the rows a
//! range holds, in seq order (each row digest covers its own seq, so where a row is missing
//! shows). The PostgreSQL backend computes both in one query ([`POSTGRES_RANGE_DIGESTS`]).

use sha2::{Digest, Sha256};
use triplicate_core::{Hash, Record};

use crate::postgres::split_time;
use crate::rows::RecordRows;
use crate::ProjectionError;

/// Prefix of a row digest.
pub const ROW_DIGEST_DOMAIN: &[u8] = b"triplicate/row-digest/v1\n";
/// Prefix of a range digest over row digests.
pub const ROW_RANGE_DIGEST_DOMAIN: &[u8] = b"triplicate/row-range-digest/v1\n";

/// The SQL that computes, for `$1 <= seq < $2` split into parts of `$3` seqs, each non-empty
/// part's index (`(seq - $1) / $3`) and its range digest, from the columns alone.
pub(crate) const POSTGRES_RANGE_DIGESTS: &str = r#"
WITH a AS (
    SELECT seq,
           int4send(count(*)::int4)
           || string_agg(
                int2send(position)
                || int4send(octet_length(key_id)) || convert_to(key_id, 'UTF8')
                || int4send(octet_length(alg)) || convert_to(alg, 'UTF8')
                || int4send(length(signature)) || signature
                || timestamptz_send(signed_at) || int2send(signed_at_extra_ns),
                ''::bytea ORDER BY position) AS enc
    FROM approvals WHERE seq >= $1 AND seq < $2 GROUP BY seq
), t AS (
    SELECT seq,
           int4send(count(*)::int4)
           || string_agg(
                int2send(position)
                || int4send(length(sha256)) || sha256
                || int4send(octet_length(media_type)) || convert_to(media_type, 'UTF8')
                || int8send(size)
                || CASE WHEN name IS NULL THEN '\x00'::bytea
                        ELSE '\x01'::bytea || int4send(octet_length(name)) || convert_to(name, 'UTF8')
                   END,
                ''::bytea ORDER BY position) AS enc
    FROM attachments WHERE seq >= $1 AND seq < $2 GROUP BY seq
), r AS (
    SELECT d.seq,
           sha256(
             convert_to(E'triplicate/row-digest/v1\n', 'UTF8')
             || int8send(d.seq) || uuid_send(d.id) || int4send(d.version)
             || int4send(octet_length(d.kind)) || convert_to(d.kind, 'UTF8')
             || int4send(octet_length(d.title)) || convert_to(d.title, 'UTF8')
             || int4send(octet_length(d.body)) || convert_to(d.body, 'UTF8')
             || int4send(octet_length(d.payload::text)) || convert_to(d.payload::text, 'UTF8')
             || timestamptz_send(d.proposed_at) || int2send(d.proposed_at_extra_ns)
             || timestamptz_send(d.recorded_at) || int2send(d.recorded_at_extra_ns)
             || CASE WHEN d.supersedes IS NULL THEN '\x00'::bytea
                     ELSE '\x01'::bytea || uuid_send(d.supersedes) END
             || int4send(octet_length(d.notary_key_id)) || convert_to(d.notary_key_id, 'UTF8')
             || int4send(octet_length(d.notary_alg)) || convert_to(d.notary_alg, 'UTF8')
             || int4send(length(d.notary_signature)) || d.notary_signature
             || coalesce(a.enc, int4send(0))
             || coalesce(t.enc, int4send(0))
           ) AS h
    FROM decisions d
    LEFT JOIN a ON a.seq = d.seq
    LEFT JOIN t ON t.seq = d.seq
    WHERE d.seq >= $1 AND d.seq < $2
)
SELECT (seq - $1) / $3 AS part,
       sha256(convert_to(E'triplicate/row-range-digest/v1\n', 'UTF8')
              || string_agg(h, ''::bytea ORDER BY seq)) AS digest
FROM r GROUP BY 1 ORDER BY 1
"#;

fn text(h: &mut Sha256, s: &str) -> Result<(), String> {
    bytes(h, s.as_bytes())
}

fn bytes(h: &mut Sha256, b: &[u8]) -> Result<(), String> {
    let n = u32::try_from(b.len()).map_err(|_| format!("a column of {} bytes", b.len()))?;
    h.update(n.to_be_bytes());
    h.update(b);
    Ok(())
}

fn time(h: &mut Sha256, unix_nanos: i128) -> Result<(), String> {
    let (micros, extra) = split_time(unix_nanos)?;
    h.update(micros.0.to_be_bytes());
    h.update(extra.to_be_bytes());
    Ok(())
}

fn uuid(h: &mut Sha256, s: &str) -> Result<(), String> {
    let u = uuid::Uuid::parse_str(s).map_err(|e| format!("uuid {s:?}: {e}"))?;
    h.update(u.as_bytes());
    Ok(())
}

fn count(n: usize) -> Result<[u8; 4], String> {
    i32::try_from(n)
        .map(i32::to_be_bytes)
        .map_err(|_| format!("{n} rows"))
}

fn small(v: i64, what: &str) -> Result<[u8; 2], String> {
    i16::try_from(v)
        .map(i16::to_be_bytes)
        .map_err(|_| format!("{what} {v} does not fit a smallint"))
}

/// The row digest of one record's rows (see the module docs).
pub(crate) fn of_rows(r: &RecordRows) -> Result<Hash, String> {
    let d = &r.decision;
    let mut h = Sha256::new();
    h.update(ROW_DIGEST_DOMAIN);
    h.update(d.seq.to_be_bytes());
    uuid(&mut h, &d.id)?;
    let version = i32::try_from(d.version).map_err(|_| format!("version {}", d.version))?;
    h.update(version.to_be_bytes());
    text(&mut h, &d.kind)?;
    text(&mut h, &d.title)?;
    text(&mut h, &d.body)?;
    text(&mut h, &d.payload)?;
    time(&mut h, d.proposed_at)?;
    time(&mut h, d.recorded_at)?;
    match &d.supersedes {
        None => h.update([0u8]),
        Some(s) => {
            h.update([1u8]);
            uuid(&mut h, s)?;
        }
    }
    text(&mut h, &d.notary_key_id)?;
    text(&mut h, &d.notary_alg)?;
    bytes(&mut h, &d.notary_signature)?;
    h.update(count(r.approvals.len())?);
    for a in &r.approvals {
        h.update(small(a.position, "approval position")?);
        text(&mut h, &a.key_id)?;
        text(&mut h, &a.alg)?;
        bytes(&mut h, &a.signature)?;
        time(&mut h, a.signed_at)?;
    }
    h.update(count(r.attachments.len())?);
    for t in &r.attachments {
        h.update(small(t.position, "attachment position")?);
        bytes(&mut h, &t.sha256)?;
        text(&mut h, &t.media_type)?;
        h.update(t.size.to_be_bytes());
        match &t.name {
            None => h.update([0u8]),
            Some(n) => {
                h.update([1u8]);
                text(&mut h, n)?;
            }
        }
    }
    Ok(h.finalize().into())
}

/// The row digest the projection's rows of this record must have: what the verifier computes
/// from the ledger's entry. Bytes that are not a valid canonical record are refused.
pub fn of_record_bytes(record_bytes: &[u8]) -> Result<Hash, ProjectionError> {
    let record =
        Record::from_canonical_bytes(record_bytes).map_err(|e| ProjectionError::InvalidRecord {
            index: 0,
            reason: e.to_string(),
        })?;
    of_record(record)
}

/// The row digest of a (validated) record's rows.
pub fn of_record(record: Record) -> Result<Hash, ProjectionError> {
    let seq = record.seq;
    RecordRows::from_record(record)
        .and_then(|rows| of_rows(&rows))
        .map_err(|reason| ProjectionError::InvalidRecord {
            index: 0,
            reason: format!("seq {seq}: {reason}"),
        })
}

/// The range digest over row digests, in seq order.
pub fn range_digest<'a>(row_digests: impl IntoIterator<Item = &'a Hash>) -> Hash {
    let mut h = start();
    for d in row_digests {
        h.update(d);
    }
    finish(h)
}

/// A range digest under way: feed it row digests in seq order.
pub(crate) fn start() -> Sha256 {
    let mut h = Sha256::new();
    h.update(ROW_RANGE_DIGEST_DOMAIN);
    h
}

pub(crate) fn finish(h: Sha256) -> Hash {
    h.finalize().into()
}

/// What stands for a row that cannot be re-derived: no record's row digest (it is not a
/// SHA-256 over [`ROW_DIGEST_DOMAIN`]), so its range never matches the ledger's.
pub fn damaged(seq: u64) -> Hash {
    let mut h = Sha256::new();
    h.update(b"triplicate/row-digest/damaged\n");
    h.update(seq.to_be_bytes());
    h.finalize().into()
}

/// The width of each of `parts` parts of `start..end` (the last may be shorter).
pub fn part_width(start: u64, end: u64, parts: u32) -> u64 {
    end.saturating_sub(start)
        .div_ceil(u64::from(parts.max(1)))
        .max(1)
}
