//! Realistic sample records for the demo, the benchmarks and `sign`: a decision signed by two
//! approvers' keys and notarised, exactly as the write path builds them.

use std::sync::Arc;

use anyhow::Context;
use triplicate_core::{
    Approval, Decision, NotarySignature, Record, Timestamp, UnsignedRecord, RECORD_VERSION,
};
use triplicate_keys::{Signer, SoftwareSigner};
use uuid::Uuid;

/// Two approvers and a notary, all software keys.
#[derive(Debug)]
pub struct Fixture {
    pub approvers: Vec<SoftwareSigner>,
    pub notary: Arc<dyn Signer>,
}

impl Fixture {
    pub fn new(notary: Arc<dyn Signer>) -> anyhow::Result<Fixture> {
        Ok(Fixture {
            approvers: vec![
                SoftwareSigner::generate("board-alice"),
                SoftwareSigner::generate("treasury-bob"),
            ],
            notary,
        })
    }

    /// A decision of the kind boards pass every week.
    pub fn decision(&self, i: u64) -> anyhow::Result<Decision> {
        decision(i)
    }

    /// Approvals of `decision` by both approvers (sorted by key id, as records require).
    pub fn approvals(&self, decision: &Decision) -> anyhow::Result<Vec<Approval>> {
        let mut approvals = self
            .approvers
            .iter()
            .map(|a| approve(decision, a))
            .collect::<anyhow::Result<Vec<_>>>()?;
        approvals.sort_by(|x, y| x.key_id.cmp(&y.key_id));
        Ok(approvals)
    }

    /// The notarised record for `decision` at `seq`.
    pub fn record(
        &self,
        seq: u64,
        decision: Decision,
        approvals: Vec<Approval>,
    ) -> anyhow::Result<Record> {
        let unsigned = UnsignedRecord {
            version: RECORD_VERSION,
            seq,
            decision,
            approvals,
            recorded_at: Timestamp::now(),
        };
        let msg = unsigned.notary_message().context("notary message")?;
        let signature = self.notary.sign(&msg).context("notary signs")?;
        Ok(unsigned.with_notary(NotarySignature {
            key_id: self.notary.key_id(),
            alg: self.notary.algorithm(),
            signature,
        }))
    }
}

/// A decision of the kind boards pass every week: a budget approval (which the development
/// policy lets pass with 2 of `board` and 1 of `treasury`), `i` making each one different.
pub fn decision(i: u64) -> anyhow::Result<Decision> {
    let json = serde_json::json!({
        "id": Uuid::now_v7().to_string(),
        "kind": "budget.approval",
        "title": format!("Approve the Q{} operating budget, line {i}", i % 4 + 1),
        "body": format!(
            "The board approves the operating budget for the quarter as tabled by the treasurer, \
             including the infrastructure line and the audit reserve. Motion {i} carried after \
             discussion; the secretary is instructed to notify the finance committee."
        ),
        "payload": {
            "amount": {"currency": "EUR", "minor_units": 1_250_000 + i as i64},
            "cost_centre": format!("CC-{:04}", i % 10_000),
            "fiscal_year": 2026,
            "lines": [
                {"code": "infra", "minor_units": 800_000},
                {"code": "audit-reserve", "minor_units": 450_000 + i as i64}
            ]
        },
        "proposed_at": Timestamp::now().to_string(),
    });
    Decision::from_json(json.to_string().as_bytes()).context("build sample decision")
}

/// One approver's approval of `decision`, signed now: the signature is over
/// [`Approval::message`] of the decision's digest, which binds the key id, the algorithm and
/// `signed_at` too.
pub fn approve(decision: &Decision, signer: &dyn Signer) -> anyhow::Result<Approval> {
    triplicate_keys::approve(decision, signer, Timestamp::now()).context("approver signs")
}
