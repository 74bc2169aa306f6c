//! Auditors' verdicts on proposed repairs: what an auditor's key signs, and who counts as an
//! auditor.
//!
//! A verdict is signed, like an approval, over a domain-separated JCS statement:
//!
//! ```text
//! "triplicate/repair-review/v1\n" || JCS({action_id, alg, key_id, reason, report_digest
//!                                          (lowercase hex), run_id, signed_at, verdict})
//! ```
//!
//! It binds the action to the report that proposed it (by the report's digest, which the
//! ledger's audit record carries), the verdict, the reason given and the signing time, so a
//! recorded verdict cannot be moved to another action or report, flipped, or re-dated. The key
//! must be in `keys.toml`, in the group [`AUDITOR_GROUP`], and usable when it signed and when
//! the verdict arrives (the same rule as approvals: [`KeyEntry::fault_at`]).

use serde::Serialize;
use triplicate_core::canonical::{to_jcs, CanonicalError};
use triplicate_core::{Algorithm, Hash, KeyId, Timestamp};
use triplicate_policy::{KeyEntry, Policy};
use uuid::Uuid;

/// Prefix of the message an auditor signs.
pub const REVIEW_DOMAIN: &[u8] = b"triplicate/repair-review/v1\n";

/// The `keys.toml` group whose keys may approve or reject proposed repairs (declare it in
/// `governance.toml` like any group). Auditors should hold no approver key: the people who
/// judge repairs to the record are not the people who made it.
pub const AUDITOR_GROUP: &str = "auditors";

/// An auditor's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approved,
    Rejected,
}

impl Verdict {
    /// `approved` or `rejected`, as stored and signed.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approved => "approved",
            Verdict::Rejected => "rejected",
        }
    }
}

/// What a verdict is about and says; [`ReviewStatement::message`] is what the key signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewStatement {
    pub action_id: Uuid,
    pub run_id: Uuid,
    pub report_digest: Hash,
    pub verdict: Verdict,
    pub key_id: KeyId,
    pub alg: Algorithm,
    pub signed_at: Timestamp,
    pub reason: String,
}

#[derive(Serialize)]
struct Statement<'a> {
    action_id: String,
    alg: Algorithm,
    key_id: &'a KeyId,
    reason: &'a str,
    report_digest: String,
    run_id: String,
    signed_at: &'a Timestamp,
    verdict: &'static str,
}

impl ReviewStatement {
    /// `"triplicate/repair-review/v1\n" || JCS(statement)`.
    pub fn message(&self) -> Result<Vec<u8>, CanonicalError> {
        let s = Statement {
            action_id: self.action_id.to_string(),
            alg: self.alg,
            key_id: &self.key_id,
            reason: &self.reason,
            report_digest: hex::encode(self.report_digest),
            run_id: self.run_id.to_string(),
            signed_at: &self.signed_at,
            verdict: self.verdict.as_str(),
        };
        let mut msg = REVIEW_DOMAIN.to_vec();
        msg.extend_from_slice(&to_jcs(&s)?);
        Ok(msg)
    }

    /// Checks that `signature` is this statement signed by an auditor's key in `registry`,
    /// usable at `signed_at` and at `now`. Returns the key's entry.
    pub fn verify<'p>(
        &self,
        signature: &[u8],
        registry: &'p Policy,
        now: Timestamp,
    ) -> Result<&'p KeyEntry, ReviewError> {
        let entry = registry
            .key(&self.key_id)
            .ok_or_else(|| ReviewError::UnknownKey(self.key_id.to_string()))?;
        if entry.alg() != self.alg {
            return Err(ReviewError::Algorithm {
                key: self.key_id.to_string(),
                registered: entry.alg().to_string(),
                claimed: self.alg.to_string(),
            });
        }
        if !entry.in_group(AUDITOR_GROUP) {
            return Err(ReviewError::NotAnAuditor(self.key_id.to_string()));
        }
        if let Some((_, why)) = entry.fault_at(self.signed_at, now).into_iter().next() {
            return Err(ReviewError::KeyNotUsable(why));
        }
        let msg = self
            .message()
            .map_err(|e| ReviewError::Message(e.to_string()))?;
        entry
            .public_key
            .verify(&msg, signature)
            .map_err(|e| ReviewError::BadSignature(e.to_string()))?;
        Ok(entry)
    }
}

/// Why a verdict is not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReviewError {
    #[error("key {0} is not in keys.toml")]
    UnknownKey(String),
    #[error("key {key} is registered as {registered}, the verdict claims {claimed}")]
    Algorithm {
        key: String,
        registered: String,
        claimed: String,
    },
    #[error("key {0} is not in the `{AUDITOR_GROUP}` group: only auditors review repairs")]
    NotAnAuditor(String),
    #[error("{0}")]
    KeyNotUsable(String),
    #[error("the signature does not verify: {0}")]
    BadSignature(String),
    #[error("build the signed statement: {0}")]
    Message(String),
}
