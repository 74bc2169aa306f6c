//! The normalised rows of one record, shared by both backends, and the two directions between
//! them and a record: [`RecordRows::from_record`] (the write path) and [`RecordRows::rebuild`]
//! (what the verifier reads).
//!
//! Rebuilding never consults a stored copy of the bytes or the hash; it puts the columns back
//! into a [`Record`] and lets `triplicate-core` produce `JCS(record)`. It is strict where being
//! lenient would hide a change to a column: ids must be canonical UUID text, positions must be
//! exactly `0..n`, numbers must fit their fields. A row that breaks such a rule is reported as
//! damaged rather than silently normalised.

use std::collections::HashSet;

use serde_json::{Map, Value};
use triplicate_core::{
    Algorithm, Approval, Attachment, CanonicalProof, Decision, KeyId, NotarySignature, Record,
    Timestamp,
};
use uuid::Uuid;

use crate::plan::Keyed;
use crate::{ProjectionError, Rederived, RederivedRecord};

/// One `decisions` row. Times are Unix nanoseconds (each backend splits them into its columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecisionRow {
    pub seq: i64,
    /// Canonical hyphenated lowercase UUID text.
    pub id: String,
    pub version: i64,
    pub kind: String,
    pub title: String,
    pub body: String,
    /// The payload object as RFC 8785 JSON text.
    pub payload: String,
    pub proposed_at: i128,
    pub recorded_at: i128,
    pub supersedes: Option<String>,
    pub notary_key_id: String,
    pub notary_alg: String,
    pub notary_signature: Vec<u8>,
}

/// One `approvals` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApprovalRow {
    pub seq: i64,
    pub position: i64,
    pub key_id: String,
    pub alg: String,
    pub signature: Vec<u8>,
    pub signed_at: i128,
}

/// One `attachments` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttachmentRow {
    pub seq: i64,
    pub position: i64,
    pub sha256: Vec<u8>,
    pub media_type: String,
    pub size: i64,
    pub name: Option<String>,
}

/// Every row of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordRows {
    pub decision: DecisionRow,
    pub approvals: Vec<ApprovalRow>,
    pub attachments: Vec<AttachmentRow>,
}

fn int(v: u64, what: &str) -> Result<i64, String> {
    i64::try_from(v).map_err(|_| format!("{what} {v} does not fit a 64-bit signed integer"))
}

impl RecordRows {
    /// The rows of a (validated) record. Consumes it so the large strings move, not copy.
    pub fn from_record(r: Record) -> Result<RecordRows, String> {
        let seq = int(r.seq, "seq")?;
        let d = r.decision;
        let payload = triplicate_core::canonical::object_jcs(&d.payload);
        let payload =
            String::from_utf8(payload).map_err(|e| format!("payload is not UTF-8: {e}"))?;
        let approvals = r
            .approvals
            .into_iter()
            .enumerate()
            .map(|(i, a)| ApprovalRow {
                seq,
                position: i as i64,
                key_id: a.key_id.as_str().to_owned(),
                alg: a.alg.as_str().to_owned(),
                signature: a.signature,
                signed_at: a.signed_at.unix_nanos(),
            })
            .collect();
        let attachments = d
            .attachments
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                Ok(AttachmentRow {
                    seq,
                    position: i as i64,
                    sha256: hex::decode(&a.sha256)
                        .map_err(|e| format!("attachment {i} sha256: {e}"))?,
                    media_type: a.media_type,
                    size: int(a.size, "attachment size")?,
                    // Absent and empty are the same canonical thing; store one of them.
                    name: a.name.filter(|n| !n.is_empty()),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(RecordRows {
            decision: DecisionRow {
                seq,
                id: d.id.hyphenated().to_string(),
                version: i64::from(r.version),
                kind: d.kind,
                title: d.title,
                body: d.body,
                payload,
                proposed_at: d.proposed_at.unix_nanos(),
                recorded_at: r.recorded_at.unix_nanos(),
                supersedes: d.supersedes.map(|u| u.hyphenated().to_string()),
                notary_key_id: r.notary.key_id.as_str().to_owned(),
                notary_alg: r.notary.alg.as_str().to_owned(),
                notary_signature: r.notary.signature,
            },
            approvals,
            attachments,
        })
    }

    /// The record these rows describe, or why they cannot describe one.
    #[cfg(test)]
    pub fn rebuild(&self) -> Result<Record, String> {
        self.clone().into_record()
    }

    /// Like [`RecordRows::rebuild`], moving the strings instead of copying them.
    pub fn into_record(self) -> Result<Record, String> {
        self.into_record_with(strict_json::object)
    }

    /// The record, with its payload made from the column's text by `payload` (after the seq is
    /// checked, before anything else).
    fn into_record_with(
        self,
        payload: impl FnOnce(&str) -> Result<Map<String, Value>, String>,
    ) -> Result<Record, String> {
        let RecordRows {
            decision: d,
            approvals: approval_rows,
            attachments: attachment_rows,
        } = self;
        let seq = u64::try_from(d.seq).map_err(|_| format!("seq {} is negative", d.seq))?;
        if d.seq > SAFE_INTEGER {
            return Err(format!("seq {} is beyond 2^53", d.seq));
        }
        let payload = payload(&d.payload)?;
        let n_approvals = approval_rows.len();
        let mut approvals = Vec::with_capacity(n_approvals);
        for (i, a) in approval_rows.into_iter().enumerate() {
            if a.seq != d.seq || a.position != i as i64 {
                return Err(format!(
                    "approval positions are not 0..{n_approvals} (found seq {} position {} at index {i})",
                    a.seq, a.position
                ));
            }
            approvals.push(Approval {
                key_id: key_id(&a.key_id, "approval key_id")?,
                alg: alg(&a.alg, "approval alg")?,
                signature: a.signature,
                signed_at: time(a.signed_at, "approval signed_at")?,
            });
        }
        let n_attachments = attachment_rows.len();
        let mut attachments = Vec::with_capacity(n_attachments);
        for (i, a) in attachment_rows.into_iter().enumerate() {
            if a.seq != d.seq || a.position != i as i64 {
                return Err(format!(
                    "attachment positions are not 0..{n_attachments} (found seq {} position {} at index {i})",
                    a.seq, a.position
                ));
            }
            if a.sha256.len() != 32 {
                return Err(format!("attachment {i} sha256 is not 32 bytes"));
            }
            if a.name.as_deref() == Some("") {
                return Err(format!(
                    "attachment {i} name is empty (absent is NULL, not '')"
                ));
            }
            if a.size > SAFE_INTEGER {
                // JCS writes numbers as doubles: 2^53 + 1 would come out as 2^53 and hide the
                // change.
                return Err(format!("attachment {i} size {} is beyond 2^53", a.size));
            }
            attachments.push(Attachment {
                sha256: hex::encode(&a.sha256),
                media_type: a.media_type,
                size: u64::try_from(a.size)
                    .map_err(|_| format!("attachment {i} size {} is negative", a.size))?,
                name: a.name,
            });
        }
        Ok(Record {
            version: u32::try_from(d.version)
                .map_err(|_| format!("version {} does not fit", d.version))?,
            seq,
            decision: Decision {
                id: uuid(&d.id, "id")?,
                kind: d.kind,
                title: d.title,
                body: d.body,
                payload,
                proposed_at: time(d.proposed_at, "proposed_at")?,
                supersedes: d
                    .supersedes
                    .as_deref()
                    .map(|s| uuid(s, "supersedes"))
                    .transpose()?,
                attachments,
            },
            approvals,
            recorded_at: time(d.recorded_at, "recorded_at")?,
            notary: NotarySignature {
                key_id: key_id(&d.notary_key_id, "notary key_id")?,
                alg: alg(&d.notary_alg, "notary alg")?,
                signature: d.notary_signature,
            },
        })
    }

    /// `JCS(rebuild())`: the record bytes re-derived from the rows.
    #[cfg(test)]
    pub fn rebuild_bytes(&self) -> Result<Vec<u8>, String> {
        self.clone().into_bytes()
    }

    /// Like [`RecordRows::rebuild_bytes`], consuming the rows.
    ///
    /// When the payload column's text is checked to be its own RFC 8785 form (the usual case;
    /// see `payload.rs`), core's writer writes the text as the payload member
    /// (`Record::to_bytes_with_payload_text_unchecked`), which skips parsing and rewriting it;
    /// the bytes are the same.
    pub fn into_bytes(self) -> Result<Vec<u8>, String> {
        let text = self.decision.payload.as_bytes();
        if crate::payload::canonical_object_len(text) == Some(text.len()) {
            #[cfg(debug_assertions)]
            let slow = self.clone().into_bytes_slow();
            let mut rows = self;
            let text = std::mem::take(&mut rows.decision.payload);
            let record = rows.into_record_with(|_| Ok(Map::new()))?;
            // The record was built with an empty payload, so core takes the text.
            let out = record
                .to_bytes_with_payload_text_unchecked(text.as_bytes())
                .ok_or("the rebuilt record's payload is not empty")?;
            #[cfg(debug_assertions)]
            assert_eq!(
                Ok(&out),
                slow.as_ref(),
                "the payload text written as it is differs from the parsed payload"
            );
            return Ok(out);
        }
        self.into_bytes_slow()
    }

    /// The re-derived record of these rows: its bytes and decision id, or why the rows
    /// describe no record.
    pub fn rederive(self) -> RederivedRecord {
        let seq = self.decision.seq as u64;
        // Parsed before the rows are consumed; kept only if the rows re-derive, which checks
        // that it is canonical UUID text.
        let id = Uuid::try_parse(&self.decision.id).ok();
        match self.into_bytes() {
            Ok(b) => RederivedRecord {
                seq,
                content: Rederived::Bytes(b),
                decision_id: id,
            },
            Err(why) => RederivedRecord {
                seq,
                content: Rederived::Damaged(why),
                decision_id: None,
            },
        }
    }

    /// Re-derivation by parsing the payload text and writing the whole record.
    fn into_bytes_slow(self) -> Result<Vec<u8>, String> {
        self.into_record()?
            .to_bytes()
            .map_err(|e| format!("cannot canonicalise the rebuilt record: {e}"))
    }
}

/// 2^53: integers beyond it do not survive JCS (which writes numbers as doubles) exactly.
const SAFE_INTEGER: i64 = 1 << 53;

/// Parses a stored payload as strictly as `triplicate-core` parses a record's: an object, no
/// member named twice in any object, integers within ±2^53. Lenient parsing would let a row
/// altered to `{"a":2,"a":1}` or to an integer JCS rounds re-derive to the original bytes.
mod strict_json {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};

    use super::SAFE_INTEGER;

    struct AnyValue;

    impl<'de> DeserializeSeed<'de> for AnyValue {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for AnyValue {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
            Ok(Value::Bool(b))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
            if n.unsigned_abs() > SAFE_INTEGER as u64 {
                return Err(E::custom(format!("integer {n} is beyond 2^53")));
            }
            Ok(Value::from(n))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
            if n > SAFE_INTEGER as u64 {
                return Err(E::custom(format!("integer {n} is beyond 2^53")));
            }
            Ok(Value::from(n))
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
            // As `triplicate-core` parses: an integral float (`1.0`, `-0.0`) is the integer
            // JCS writes for it.
            if n.fract() == 0.0 && n.abs() <= SAFE_INTEGER as f64 {
                return Ok(Value::from(n as i64));
            }
            Number::from_f64(n)
                .map(Value::Number)
                .ok_or_else(|| E::custom("numbers must be finite"))
        }
        fn visit_str<E>(self, s: &str) -> Result<Value, E> {
            Ok(Value::String(s.to_owned()))
        }
        fn visit_string<E>(self, s: String) -> Result<Value, E> {
            Ok(Value::String(s))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(AnyValue)? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
            members(map).map(Value::Object)
        }
    }

    fn members<'de, A: MapAccess<'de>>(mut map: A) -> Result<Map<String, Value>, A::Error> {
        let mut out = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if out.contains_key(&name) {
                return Err(de::Error::custom(format!("member {name:?} appears twice")));
            }
            let v = map.next_value_seed(AnyValue)?;
            out.insert(name, v);
        }
        Ok(out)
    }

    struct Object;

    impl<'de> Visitor<'de> for Object {
        type Value = Map<String, Value>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            members(map)
        }
    }

    /// The payload object in `text`.
    pub fn object(text: &str) -> Result<Map<String, Value>, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        let m = de
            .deserialize_map(Object)
            .map_err(|e| format!("payload: {e}"))?;
        de.end().map_err(|e| format!("payload: {e}"))?;
        Ok(m)
    }
}

fn uuid(s: &str, what: &str) -> Result<Uuid, String> {
    let u = Uuid::try_parse(s).map_err(|e| format!("{what} {s:?} is not a UUID: {e}"))?;
    let mut canonical = [0u8; uuid::fmt::Hyphenated::LENGTH];
    if u.hyphenated().encode_lower(&mut canonical) != s {
        return Err(format!("{what} {s:?} is not canonical UUID text"));
    }
    Ok(u)
}

fn key_id(s: &str, what: &str) -> Result<KeyId, String> {
    s.parse().map_err(|e| format!("{what}: {e}"))
}

fn alg(s: &str, what: &str) -> Result<Algorithm, String> {
    s.parse().map_err(|e| format!("{what}: {e}"))
}

fn time(nanos: i128, what: &str) -> Result<Timestamp, String> {
    Timestamp::from_unix_nanos(nanos).map_err(|e| format!("{what}: {e}"))
}

/// The payload column's text parsed as strictly as a record's payload (see `strict_json`).
pub(crate) fn strict_payload(text: &str) -> Result<Map<String, Value>, String> {
    strict_json::object(text)
}

/// Puts each record's approvals and attachments (all sorted by seq, position) with its
/// decision row (sorted by seq).
pub(crate) fn assemble(
    decisions: Vec<DecisionRow>,
    approvals: Vec<ApprovalRow>,
    attachments: Vec<AttachmentRow>,
) -> Vec<RecordRows> {
    let mut ap = approvals.into_iter().peekable();
    let mut at = attachments.into_iter().peekable();
    decisions
        .into_iter()
        .map(|d| {
            // Rows of seqs without a decision row cannot be part of any record; skip them.
            while ap.next_if(|a| a.seq < d.seq).is_some() {}
            while at.next_if(|a| a.seq < d.seq).is_some() {}
            let mut approvals = Vec::new();
            while let Some(a) = ap.next_if(|a| a.seq == d.seq) {
                approvals.push(a);
            }
            let mut attachments = Vec::new();
            while let Some(a) = at.next_if(|a| a.seq == d.seq) {
                attachments.push(a);
            }
            RecordRows {
                decision: d,
                approvals,
                attachments,
            }
        })
        .collect()
}

/// Threads that re-derive one slice of a range read: every core. (Measured on 2 cores: SQLite
/// range reads went from ~123,000 to ~180,000 records/s against leaving one core to the
/// reading side; PostgreSQL's were about the same either way.)
pub(crate) fn rebuild_threads() -> usize {
    triplicate_core::available_threads()
}

/// Records per validation chunk. An apply validates chunk k+1 while the database writes
/// chunk k, so the CPU work of validation and the database's own work overlap. (Measured with
/// batches of 1,000: 500 beat 125, 250 and 1,000 on both backends.)
pub(crate) const CHUNK: usize = 500;

/// Threads that validate one chunk: every core. (Measured on 2 cores: leaving one core to the
/// database while validating on the other was 10–25 % slower; the writer spends much of its
/// time waiting on I/O and the server.)
pub(crate) fn validation_threads() -> usize {
    triplicate_core::available_threads()
}

/// Reads one record of a batch: with a proof that covers its bytes, parsed without being
/// checked again (`Record::from_proven_bytes`); otherwise `Record::from_canonical_bytes`. The
/// result is the same either way.
pub(crate) fn read_record(
    bytes: &[u8],
    proof: Option<&Option<CanonicalProof>>,
) -> Result<Record, triplicate_core::ValidationError> {
    match proof.and_then(Option::as_ref) {
        Some(proof) => Record::from_proven_bytes(bytes, proof),
        None => Record::from_canonical_bytes(bytes),
    }
}

/// The proofs for records `from..from + len` of a batch: those given (a batch may come with
/// fewer proofs than records, or none).
pub(crate) fn proofs_for(
    proofs: &[Option<CanonicalProof>],
    from: usize,
    len: usize,
) -> &[Option<CanonicalProof>] {
    let end = from.saturating_add(len).min(proofs.len());
    proofs.get(from..end).unwrap_or(&[])
}

/// Parses and validates records `offset..offset + part.len()` of a batch
/// (`Record::from_canonical_bytes`: bytes that are not exactly a valid canonical record are
/// refused) and turns each into rows. Parsing and re-canonicalising is most of an apply's CPU,
/// so up to `threads` threads share the work; the earliest invalid record is reported, as a
/// sequential check would.
///
/// `proofs[k]`, when given, is the core crate's proof for `part[k]`: a record it covers is read
/// without being checked again ([`read_record`]).
pub(crate) fn prepare_part(
    offset: usize,
    part: &[Vec<u8>],
    proofs: &[Option<CanonicalProof>],
    threads: usize,
) -> Result<Vec<RecordRows>, ProjectionError> {
    let check = |offset: usize,
                 part: &[Vec<u8>],
                 proofs: &[Option<CanonicalProof>]|
     -> Result<Vec<RecordRows>, ProjectionError> {
        part.iter()
            .enumerate()
            .map(|(k, bytes)| {
                let invalid = |reason: String| ProjectionError::InvalidRecord {
                    index: offset + k,
                    reason,
                };
                let r = read_record(bytes, proofs.get(k)).map_err(|e| invalid(e.to_string()))?;
                RecordRows::from_record(r).map_err(invalid)
            })
            .collect()
    };
    if part.len() < 32 || threads < 2 {
        return check(offset, part, proofs);
    }
    let chunk = part.len().div_ceil(threads);
    std::thread::scope(|sc| {
        let handles: Vec<_> = part
            .chunks(chunk)
            .enumerate()
            .map(|(i, p)| {
                let proofs = proofs_for(proofs, i * chunk, p.len());
                sc.spawn(move || check(offset + i * chunk, p, proofs))
            })
            .collect();
        let mut rows = Vec::with_capacity(part.len());
        let mut first: Option<ProjectionError> = None;
        for h in handles {
            let r = h.join().unwrap_or_else(|_| {
                Err(ProjectionError::Storage {
                    what: "validate records",
                    reason: "a validation thread panicked".into(),
                })
            });
            match (r, &first) {
                (Ok(p), None) => rows.extend(p),
                (Err(e), None) => first = Some(e),
                _ => {}
            }
        }
        first.map_or(Ok(rows), Err)
    })
}

/// The checks that span a whole batch, made chunk by chunk: consecutive seqs, and one record
/// per decision.
#[derive(Debug, Default)]
pub(crate) struct BatchChecker {
    last_seq: Option<i64>,
    ids: HashSet<String>,
}

impl BatchChecker {
    /// Checks the next chunk, whose first record is record `offset` of the batch.
    pub fn check<K: Keyed>(&mut self, offset: usize, rows: &[K]) -> Result<(), ProjectionError> {
        for (k, r) in rows.iter().enumerate() {
            let seq = r.seq();
            if let Some(last) = self.last_seq {
                if seq != last + 1 {
                    return Err(ProjectionError::InvalidRecord {
                        index: offset + k,
                        reason: format!(
                            "seq {seq} does not follow {last} (a batch holds consecutive seqs)"
                        ),
                    });
                }
            }
            self.last_seq = Some(seq);
            if !self.ids.insert(r.id().to_owned()) {
                return Err(ProjectionError::InvalidRecord {
                    index: offset + k,
                    reason: format!(
                        "decision {} appears twice in the batch (one record per decision)",
                        r.id()
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::fixtures::sample_record;

    #[test]
    fn fixtures_are_valid_records() {
        use crate::fixtures::{bench_record, tricky_records};
        let all = (0..40)
            .map(|s| sample_record(s, s as u8 % 2))
            .chain(tricky_records(40))
            .chain((0..5).map(bench_record));
        for r in all {
            r.validate()
                .unwrap_or_else(|e| panic!("seq {}: {e}", r.seq));
            let b = r.to_bytes().unwrap();
            assert_eq!(
                Record::from_canonical_bytes(&b).unwrap(),
                r,
                "seq {}",
                r.seq
            );
        }
    }

    #[test]
    fn rows_rebuild_to_the_same_bytes() {
        let all = (0..50)
            .map(|s| sample_record(s, 0))
            .chain(crate::fixtures::tricky_records(50));
        for r in all {
            let seq = r.seq;
            let bytes = r.to_bytes().unwrap();
            let rows = RecordRows::from_record(r).unwrap();
            assert_eq!(rows.rebuild_bytes().unwrap(), bytes, "seq {seq}");
        }
    }

    #[test]
    fn non_canonical_ids_and_gapped_positions_are_damage() {
        let mut rows = RecordRows::from_record(sample_record(3, 0)).unwrap();
        rows.decision.id = rows.decision.id.to_uppercase();
        assert!(rows.rebuild().unwrap_err().contains("not canonical"));
        let mut rows = RecordRows::from_record(sample_record(3, 0)).unwrap();
        rows.approvals[0].position = 7;
        assert!(rows.rebuild().unwrap_err().contains("positions"));
    }

    #[test]
    fn payloads_are_parsed_as_strictly_as_records() {
        let mut rows = RecordRows::from_record(sample_record(3, 0)).unwrap();
        for (payload, why) in [
            (r#"{"a":2,"a":1}"#, "twice"),
            (r#"{"a":{"b":1,"b":1}}"#, "twice"),
            (r#"{"a":9007199254740993}"#, "2^53"),
            (r#"{"a":-9007199254740993}"#, "2^53"),
            (r#"[1]"#, "object"),
            (r#"{"a":1} x"#, "trailing"),
        ] {
            rows.decision.payload = payload.into();
            let e = rows.rebuild().unwrap_err();
            assert!(e.contains(why), "{payload}: {e}");
        }
        rows.decision.payload = r#"{"a":9007199254740992,"b":-0.0,"c":1e-7}"#.into();
        assert!(rows.rebuild().is_ok());
    }
}
