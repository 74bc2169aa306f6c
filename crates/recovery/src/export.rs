//! The line formats of the stream and projection exports (JSON Lines: one object per line).
//!
//! Record bytes are canonical JSON (RFC 8785), which never holds a raw newline, so the
//! projection's records file is simply one record's exact bytes per line, and an event's data
//! is carried as a JSON string whose value is exactly the record's bytes.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use triplicate_core::Timestamp;
use triplicate_projection::ReviewRow;
use uuid::Uuid;

/// One stream event as exported: what the store held, including its own position and time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLine {
    /// The store's global position, `<major>:<minor>` (informational: a restore gets new ones).
    pub position: String,
    pub stream: String,
    pub revision: u64,
    pub seq: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The metadata's leaf hash, lower-case hex.
    pub leaf_hash: String,
    pub stored_at: Timestamp,
    /// The record's bytes (canonical JSON) as a string.
    pub data: String,
}

/// One auditor review of a proposed repair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewLine {
    pub action_id: Uuid,
    pub verdict: String,
    pub key_id: String,
    pub alg: String,
    /// Standard base64.
    pub signature: String,
    pub signed_at: Timestamp,
    pub reason: String,
    pub outcome: Option<String>,
    pub recorded_at: Timestamp,
}

impl ReviewLine {
    pub(crate) fn from_row(r: &ReviewRow) -> ReviewLine {
        ReviewLine {
            action_id: r.action_id,
            verdict: r.verdict.clone(),
            key_id: r.key_id.clone(),
            alg: r.alg.clone(),
            signature: base64::engine::general_purpose::STANDARD.encode(&r.signature),
            signed_at: r.signed_at,
            reason: r.reason.clone(),
            outcome: r.outcome.clone(),
            recorded_at: r.recorded_at,
        }
    }

    pub(crate) fn to_row(&self) -> Result<ReviewRow, String> {
        Ok(ReviewRow {
            action_id: self.action_id,
            verdict: self.verdict.clone(),
            key_id: self.key_id.clone(),
            alg: self.alg.clone(),
            signature: base64::engine::general_purpose::STANDARD
                .decode(&self.signature)
                .map_err(|e| format!("review of action {}: signature: {e}", self.action_id))?,
            signed_at: self.signed_at,
            reason: self.reason.clone(),
            outcome: self.outcome.clone(),
            recorded_at: self.recorded_at,
        })
    }
}

/// One verification report as exported: its canonical body (from which the stored rows are
/// derived again on restore), its digest, the seq of its audit record, and its reviews.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportLine {
    pub run_id: Uuid,
    /// `SHA-256("triplicate/verification-report/v1\n" || body)`, lower-case hex.
    pub digest: String,
    pub audit_seq: Option<u64>,
    /// The report's canonical JSON, exactly as stored.
    pub body: String,
    pub reviews: Vec<ReviewLine>,
}
