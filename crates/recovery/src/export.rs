//! The line formats of the stream and projection exports (JSON Lines: one object per line).
//!
//! Record bytes are canonical JSON (RFC 8785), which never holds a raw newline, so the
//! projection's records file is simply one record's exact bytes per line, and an event's data
//! is carried as a JSON string whose value is exactly the record's bytes.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use triplicate_core::Timestamp;
use triplicate_projection::{ReviewRow, StoredDrill};
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

/// One recovery drill's report as exported: every column of the projection's `drill_reports`
/// row, the body (the report's canonical JSON) exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillLine {
    pub drill_id: Uuid,
    pub scenario: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub passed: bool,
    pub in_place: bool,
    pub records_before: u64,
    pub records_after: u64,
    pub detect_ms: Option<u64>,
    pub recover_ms: u64,
    pub discrepancies_left: u64,
    /// `SHA-256("triplicate/drill-report/v1\n" || body)`, lower-case hex.
    pub digest: String,
    pub key_id: String,
    pub alg: String,
    /// The notary's signature over the same message, standard base64.
    pub signature: String,
    pub body: String,
    pub audit_seq: Option<u64>,
}

impl DrillLine {
    pub(crate) fn from_stored(d: &StoredDrill) -> Result<DrillLine, String> {
        Ok(DrillLine {
            drill_id: d.drill_id,
            scenario: d.scenario.clone(),
            started_at: d.started_at,
            finished_at: d.finished_at,
            passed: d.passed,
            in_place: d.in_place,
            records_before: d.records_before,
            records_after: d.records_after,
            detect_ms: d.detect_ms,
            recover_ms: d.recover_ms,
            discrepancies_left: d.discrepancies_left,
            digest: hex::encode(d.digest),
            key_id: d.key_id.clone(),
            alg: d.alg.clone(),
            signature: base64::engine::general_purpose::STANDARD.encode(&d.signature),
            body: String::from_utf8(d.body.clone())
                .map_err(|_| format!("drill {}: the body is not UTF-8", d.drill_id))?,
            audit_seq: d.audit_seq,
        })
    }

    pub(crate) fn to_stored(&self) -> Result<StoredDrill, String> {
        let bad =
            |what: &str, e: &dyn std::fmt::Display| format!("drill {}: {what}: {e}", self.drill_id);
        let digest: [u8; 32] = hex::decode(&self.digest)
            .map_err(|e| bad("digest", &e))?
            .try_into()
            .map_err(|_| bad("digest", &"not 32 bytes"))?;
        Ok(StoredDrill {
            drill_id: self.drill_id,
            scenario: self.scenario.clone(),
            started_at: self.started_at,
            finished_at: self.finished_at,
            passed: self.passed,
            in_place: self.in_place,
            records_before: self.records_before,
            records_after: self.records_after,
            detect_ms: self.detect_ms,
            recover_ms: self.recover_ms,
            discrepancies_left: self.discrepancies_left,
            digest,
            key_id: self.key_id.clone(),
            alg: self.alg.clone(),
            signature: base64::engine::general_purpose::STANDARD
                .decode(&self.signature)
                .map_err(|e| bad("signature", &e))?,
            body: self.body.clone().into_bytes(),
            audit_seq: self.audit_seq,
        })
    }
}
