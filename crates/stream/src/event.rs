//! The one event type, `DecisionRecorded`, and the names the trait speaks in: stream ids,
//! global positions, stored events.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use serde::Deserialize;
use triplicate_core::canonical::CanonicalError;
use triplicate_core::digest::leaf_hash;
use triplicate_core::limits::RECORD_MAX_BYTES;
use triplicate_core::{Hash, Record, Timestamp, ValidationError};
use uuid::Uuid;

/// The event type stored with every event.
pub const EVENT_TYPE: &str = "DecisionRecorded";

/// The largest `record_bytes` an event may carry: the record format's own limit, so anything
/// the ledger accepted fits every backend (KurrentDB and JetStream allow far more).
pub const MAX_EVENT_BYTES: usize = RECORD_MAX_BYTES;

/// A record entered the ledger.
///
/// Data is the record's canonical bytes (`record_bytes = JCS(record)`); metadata carries the
/// `seq` and the leaf hash the ledger stored. `seq` and `decision_id` are also inside the bytes:
/// they are repeated so a store can index and route an event without parsing it, and
/// [`DecisionRecorded::check`] refuses an event whose copies disagree.
#[derive(Clone, PartialEq, Eq)]
pub struct DecisionRecorded {
    pub seq: u64,
    pub decision_id: Uuid,
    /// `SHA-256(0x00 || record_bytes)` (RFC 6962 leaf hash).
    pub leaf_hash: Hash,
    pub record_bytes: Vec<u8>,
}

impl fmt::Debug for DecisionRecorded {
    // The bytes are up to 60 KiB; a debug print names the event instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionRecorded")
            .field("seq", &self.seq)
            .field("decision_id", &self.decision_id)
            .field("leaf_hash", &b64(&self.leaf_hash))
            .field(
                "record_bytes",
                &format_args!("{} bytes", self.record_bytes.len()),
            )
            .finish()
    }
}

impl DecisionRecorded {
    /// The event for a record, with its canonical bytes.
    pub fn from_record(record: &Record) -> Result<DecisionRecorded, CanonicalError> {
        let record_bytes = record.to_bytes()?;
        Ok(DecisionRecorded {
            seq: record.seq,
            decision_id: record.decision.id,
            leaf_hash: leaf_hash(&record_bytes),
            record_bytes,
        })
    }

    /// The event for canonical record bytes (as the ledger holds them), parsed and checked.
    pub fn from_record_bytes(record_bytes: Vec<u8>) -> Result<DecisionRecorded, ValidationError> {
        let r = Record::from_canonical_bytes(&record_bytes)?;
        Ok(DecisionRecorded {
            seq: r.seq,
            decision_id: r.decision.id,
            leaf_hash: leaf_hash(&record_bytes),
            record_bytes,
        })
    }

    /// The per-decision stream the event belongs to.
    pub fn stream_id(&self) -> StreamId {
        StreamId::for_decision(self.decision_id)
    }

    /// What the metadata document says.
    pub fn metadata(&self) -> EventMetadata {
        EventMetadata {
            seq: self.seq,
            leaf_hash: self.leaf_hash,
        }
    }

    /// A deterministic event id: the first 16 bytes of the leaf hash as a version-8 UUID.
    ///
    /// Event stores deduplicate retries by an id the writer chooses (KurrentDB's event id,
    /// JetStream's `Nats-Msg-Id`); deriving it from the content makes a retry of the same event
    /// carry the same id from any writer, and a different event a different one.
    pub fn event_id(&self) -> Uuid {
        let mut b = [0u8; 16];
        b.copy_from_slice(&self.leaf_hash[..16]);
        uuid::Builder::from_custom_bytes(b).into_uuid()
    }

    /// Checks what every backend checks before writing (through [`crate::AppendRequest::check`],
    /// which skips the parse for bytes a core `CanonicalProof` covers): the bytes are at most
    /// [`MAX_EVENT_BYTES`], parse as a canonical record (`Record::from_canonical_bytes`), and
    /// agree with the event's `seq`, decision id and leaf hash.
    ///
    /// This is most of an append's CPU (parse, validate, re-serialise to prove the bytes are
    /// canonical, hash), so backends run it in parallel for large batches.
    pub fn check(&self) -> Result<(), EventProblem> {
        let size = self.record_bytes.len();
        if size > MAX_EVENT_BYTES {
            return Err(EventProblem::TooLarge {
                size,
                max: MAX_EVENT_BYTES,
            });
        }
        let r = Record::from_canonical_bytes(&self.record_bytes)
            .map_err(EventProblem::NotACanonicalRecord)?;
        if r.seq != self.seq {
            return Err(EventProblem::SeqMismatch { record_seq: r.seq });
        }
        if r.decision.id != self.decision_id {
            return Err(EventProblem::DecisionMismatch {
                record_decision: r.decision.id,
            });
        }
        let computed = leaf_hash(&self.record_bytes);
        if computed != self.leaf_hash {
            return Err(EventProblem::LeafHashMismatch {
                claimed: self.leaf_hash,
                computed,
            });
        }
        Ok(())
    }
}

/// Why one event of a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventProblem {
    #[error("record_bytes is {size} bytes; at most {max} are allowed")]
    TooLarge { size: usize, max: usize },
    #[error("record_bytes is not a canonical record: {0}")]
    NotACanonicalRecord(ValidationError),
    #[error("the event's seq differs from its record's seq {record_seq}")]
    SeqMismatch { record_seq: u64 },
    #[error("the event's decision id differs from its record's ({record_decision})")]
    DecisionMismatch { record_decision: Uuid },
    #[error(
        "the event's leaf hash {} is not its record's leaf hash {}",
        b64(claimed),
        b64(computed)
    )]
    LeafHashMismatch { claimed: Hash, computed: Hash },
    #[error("checking it panicked (a bug in the record parser)")]
    CheckPanicked,
    #[error(
        "seq does not follow the previous event's seq {previous}: a batch holds consecutive seqs"
    )]
    NotConsecutive { previous: u64 },
}

/// The metadata stored beside an event's data.
///
/// Stored as a JSON object with string values only, `{"leaf_hash":"<base64>","seq":"<n>"}`:
/// KurrentDB's multi-stream append accepts nothing else, and strings keep a `seq` above 2^53
/// exact in every JSON reader. Hashes are standard base64, as in receipts and ledger errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventMetadata {
    pub seq: u64,
    pub leaf_hash: Hash,
}

impl EventMetadata {
    /// The stored JSON text.
    pub fn to_json(&self) -> String {
        // Built by hand: base64 and digits need no escaping, and this runs once per event.
        format!(
            "{{\"leaf_hash\":\"{}\",\"seq\":\"{}\"}}",
            b64(&self.leaf_hash),
            self.seq
        )
    }

    /// Parses stored metadata, strictly.
    pub fn from_json(text: &str) -> Result<EventMetadata, String> {
        // Borrowed from `text` unless a value holds an escape (every read of the stream
        // decodes one of these; the verifier reads them all).
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wire<'a> {
            #[serde(borrow)]
            leaf_hash: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            seq: std::borrow::Cow<'a, str>,
        }
        let w: Wire<'_> = serde_json::from_str(text).map_err(|e| format!("metadata: {e}"))?;
        let seq = w
            .seq
            .parse::<u64>()
            .map_err(|e| format!("metadata seq {:?}: {e}", w.seq))?;
        // 32 bytes are 44 characters of padded base64; a longer text cannot decode into the
        // buffer and is refused with the rest.
        let mut buf = [0u8; 33];
        let leaf_hash = base64::engine::general_purpose::STANDARD
            .decode_slice(w.leaf_hash.as_bytes(), &mut buf)
            .ok()
            .and_then(|n| Hash::try_from(&buf[..n]).ok())
            .ok_or_else(|| {
                format!(
                    "metadata leaf_hash {:?} is not 32 bytes of base64",
                    w.leaf_hash
                )
            })?;
        Ok(EventMetadata { seq, leaf_hash })
    }
}

/// A per-decision stream: `decision-<uuid>` (canonical lowercase hyphenated UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(Uuid);

impl StreamId {
    pub const PREFIX: &'static str = "decision-";

    /// The stream of one decision.
    pub fn for_decision(decision_id: Uuid) -> StreamId {
        StreamId(decision_id)
    }

    /// The decision whose stream this is.
    pub fn decision_id(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.0.hyphenated())
    }
}

impl FromStr for StreamId {
    type Err = String;

    /// Only the exact text [`StreamId`]'s `Display` writes, so one stream has one name.
    fn from_str(s: &str) -> Result<StreamId, String> {
        let rest = s
            .strip_prefix(Self::PREFIX)
            .ok_or_else(|| format!("stream id {s:?} does not start with {:?}", Self::PREFIX))?;
        let id = Uuid::try_parse(rest).map_err(|e| format!("stream id {s:?}: {e}"))?;
        let id = StreamId(id);
        // `Display` writes the prefix and the lowercase hyphenated form; compared without
        // building the string (every event the verifier reads is parsed here).
        let mut canonical = [0u8; uuid::fmt::Hyphenated::LENGTH];
        if id.0.hyphenated().encode_lower(&mut canonical) != rest {
            return Err(format!("stream id {s:?} is not canonical; write {id}"));
        }
        Ok(id)
    }
}

/// A place in the global order (`$all`), minted by a backend.
///
/// Opaque to callers, who compare positions, keep them as cursors and hand them back. Two
/// parts so every backend's native position fits without translation: SQLite's row id and
/// JetStream's stream sequence are `(n, 0)`; KurrentDB's `$all` position is
/// `(commit, prepare)`, ordered the same way. Positions increase along the global order but
/// are not dense: do not compute them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    major: u64,
    minor: u64,
}

impl Position {
    /// For backends: a position from the backend's native parts.
    pub const fn new(major: u64, minor: u64) -> Position {
        Position { major, minor }
    }

    /// The backend's native parts.
    pub const fn parts(self) -> (u64, u64) {
        (self.major, self.minor)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl FromStr for Position {
    type Err = String;

    /// The `Display` form, `<major>:<minor>`, for cursors kept in files or databases.
    fn from_str(s: &str) -> Result<Position, String> {
        let (a, b) = s
            .split_once(':')
            .ok_or_else(|| format!("position {s:?} is not <major>:<minor>"))?;
        let part = |p: &str| p.parse::<u64>().map_err(|e| format!("position {s:?}: {e}"));
        Ok(Position::new(part(a)?, part(b)?))
    }
}

/// An event as a store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Where it is in the global order.
    pub position: Position,
    pub stream_id: StreamId,
    /// Its place in its stream, from 0.
    pub revision: u64,
    /// The event as read back: data and metadata exactly as stored, not re-validated (the
    /// verifier re-derives the leaf hash from `record_bytes` and trusts nothing else).
    pub event: DecisionRecorded,
    /// When this store committed it (its own clock; the record has its own `recorded_at`).
    pub stored_at: Timestamp,
}

/// Standard base64, the encoding receipts and ledger errors use for hashes.
pub(crate) fn b64(h: &Hash) -> String {
    base64::engine::general_purpose::STANDARD.encode(h)
}

#[cfg(test)]
mod metadata_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn metadata_round_trips_and_is_parsed_strictly() {
        let m = EventMetadata {
            seq: 9_007_199_254_740_993,
            leaf_hash: [0xab; 32],
        };
        assert_eq!(EventMetadata::from_json(&m.to_json()).unwrap(), m);
        // Escapes are decoded (the values are then owned, not borrowed).
        let escaped = m.to_json().replace("\"seq\":\"9", "\"seq\":\"\\u0039");
        assert_eq!(EventMetadata::from_json(&escaped).unwrap(), m);

        let hash = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        for (text, why) in [
            (
                format!("{{\"leaf_hash\":\"{}\",\"seq\":\"1\"}}", hash(&[1; 31])),
                "31 bytes",
            ),
            (
                format!("{{\"leaf_hash\":\"{}\",\"seq\":\"1\"}}", hash(&[1; 33])),
                "33 bytes",
            ),
            (
                format!("{{\"leaf_hash\":\"{}\",\"seq\":\"1\"}}", hash(&[1; 36])),
                "36 bytes",
            ),
            (
                "{\"leaf_hash\":\"not base64!\",\"seq\":\"1\"}".to_owned(),
                "not base64",
            ),
            (
                format!("{{\"leaf_hash\":\"{}\",\"seq\":\"-1\"}}", hash(&[1; 32])),
                "negative seq",
            ),
            (
                format!("{{\"leaf_hash\":\"{}\",\"seq\":1}}", hash(&[1; 32])),
                "seq as a number",
            ),
            (
                format!(
                    "{{\"leaf_hash\":\"{}\",\"seq\":\"1\",\"extra\":\"x\"}}",
                    hash(&[1; 32])
                ),
                "an unknown member",
            ),
            ("{}".to_owned(), "no members"),
        ] {
            assert!(EventMetadata::from_json(&text).is_err(), "{why}: {text}");
        }
    }
}

#[cfg(test)]
mod stream_id_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Only the text `Display` writes names a stream: every other spelling of the same UUID is
    /// refused, so one decision cannot have two streams.
    #[test]
    fn only_the_canonical_stream_id_parses() {
        let id = StreamId(Uuid::parse_str("0190a1b2-c3d4-7e5f-8a6b-7c8d9e0fa1b2").unwrap());
        let text = id.to_string();
        assert_eq!(text, "decision-0190a1b2-c3d4-7e5f-8a6b-7c8d9e0fa1b2");
        assert_eq!(text.parse::<StreamId>().unwrap(), id);
        for bad in [
            "decision-0190A1B2-C3D4-7E5F-8A6B-7C8D9E0FA1B2",
            "decision-0190a1b2c3d47e5f8a6b7c8d9e0fa1b2",
            "decision-{0190a1b2-c3d4-7e5f-8a6b-7c8d9e0fa1b2}",
            "decision-urn:uuid:0190a1b2-c3d4-7e5f-8a6b-7c8d9e0fa1b2",
            "Decision-0190a1b2-c3d4-7e5f-8a6b-7c8d9e0fa1b2",
            "decision-0190a1b2-c3d4-7e5f-8a6b-7c8d9e0fa1b",
            "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0fa1b2",
        ] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad}");
        }
    }
}
