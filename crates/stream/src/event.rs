//! The one event type: `DecisionRecorded`.

use triplicate_core::{digest::leaf_hash, Hash, Record, Timestamp};
use uuid::Uuid;

/// The event type name stored with every event.
pub const EVENT_TYPE: &str = "DecisionRecorded";

/// A record entered the ledger. Data is the record's canonical bytes; metadata carries the seq
/// and the leaf hash the ledger stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecorded {
    pub seq: u64,
    pub decision_id: Uuid,
    pub leaf_hash: Hash,
    pub record_bytes: Vec<u8>,
}

impl DecisionRecorded {
    /// The event for canonical record bytes (parsed and checked).
    pub fn from_record_bytes(record_bytes: Vec<u8>) -> Result<DecisionRecorded, String> {
        let r = Record::from_canonical_bytes(&record_bytes).map_err(|e| e.to_string())?;
        Ok(DecisionRecorded {
            seq: r.seq,
            decision_id: r.decision.id,
            leaf_hash: leaf_hash(&record_bytes),
            record_bytes,
        })
    }

    /// The per-decision stream the event belongs to.
    pub fn stream_id(&self) -> String {
        stream_id(&self.decision_id)
    }

    /// Checks that the bytes are a canonical record agreeing with the event's fields.
    pub fn validate(&self) -> Result<(), String> {
        let r = Record::from_canonical_bytes(&self.record_bytes).map_err(|e| e.to_string())?;
        if r.seq != self.seq {
            return Err(format!(
                "event seq is {} but its record's seq is {}",
                self.seq, r.seq
            ));
        }
        if r.decision.id != self.decision_id {
            return Err(format!(
                "event is for decision {} but its record is decision {}",
                self.decision_id, r.decision.id
            ));
        }
        let h = leaf_hash(&self.record_bytes);
        if h != self.leaf_hash {
            return Err(format!(
                "event leaf hash {} is not its record's leaf hash {}",
                hex::encode(self.leaf_hash),
                hex::encode(h)
            ));
        }
        Ok(())
    }

    /// The metadata document stored beside the data.
    pub fn metadata_json(&self) -> String {
        serde_json::json!({"seq": self.seq, "leaf_hash": hex::encode(self.leaf_hash)}).to_string()
    }
}

/// `decision-<uuid>`.
pub fn stream_id(decision_id: &Uuid) -> String {
    format!("decision-{}", decision_id.hyphenated())
}

/// The decision id in a stream id.
pub fn decision_of(stream_id: &str) -> Option<Uuid> {
    stream_id
        .strip_prefix("decision-")
        .and_then(|s| Uuid::try_parse(s).ok())
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Global position.
    pub position: u64,
    pub stream_id: String,
    /// Position within the stream, from 0.
    pub revision: u64,
    pub event: DecisionRecorded,
    pub recorded_at: Timestamp,
}
