//! Judging a submission's approvals against the policy: each approval's key, then the quorum.
//!
//! The outcome types are `Serialize` because the HTTP layer returns them inside an RFC 9457
//! problem+json body; their field names and the `ApprovalFault` codes are part of that API.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::Serialize;
use triplicate_core::{Approval, Decision, KeyId, Timestamp};

use crate::governance::Quorum;
use crate::policy::{Policy, RuleSource};

/// Why one approval does not count. Serialised as a stable snake_case code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ApprovalFault {
    /// No key with this id is registered.
    UnknownKey,
    /// The approval's `alg` is not the registered key's algorithm.
    AlgorithmMismatch,
    /// The key's `valid_from` is after the approval's `signed_at` or the submission time.
    NotYetValid,
    /// The key's `valid_until` is at or before the approval's `signed_at` or the submission
    /// time.
    Expired,
    /// The key was revoked at or before the approval's `signed_at` or the submission time.
    Revoked,
    /// The same key approves twice; the later approval is the one reported.
    DuplicateKey,
    /// Another key of the same holder already approves; the later approval is the one
    /// reported. One person is one approver however many keys they hold, or a quorum of two
    /// could be met by one person with a token and its backup.
    DuplicateHolder,
    /// The signature does not verify under the registered key, or the message it should sign
    /// could not be built.
    BadSignature,
}

impl ApprovalFault {
    /// The code, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalFault::UnknownKey => "unknown_key",
            ApprovalFault::AlgorithmMismatch => "algorithm_mismatch",
            ApprovalFault::NotYetValid => "not_yet_valid",
            ApprovalFault::Expired => "expired",
            ApprovalFault::Revoked => "revoked",
            ApprovalFault::DuplicateKey => "duplicate_key",
            ApprovalFault::DuplicateHolder => "duplicate_holder",
            ApprovalFault::BadSignature => "bad_signature",
        }
    }
}

impl fmt::Display for ApprovalFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason one approval does not count. An approval with several problems has several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalProblem {
    /// Position of the approval in the submitted list.
    pub index: usize,
    pub key_id: KeyId,
    pub reason: ApprovalFault,
    /// The same, for people, with the times and ids involved.
    pub message: String,
}

/// A requirement of the quorum that the approvals did not meet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnmetRequirement {
    pub group: String,
    pub needed: usize,
    pub got: usize,
    /// Approvals by members of the group that are sound but did not count because the group
    /// requires hardware keys and these keys are held in software.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub software_not_counted: Vec<usize>,
    /// Approvals by members of the group that are sound but did not count because the group
    /// requires attested keys and these keys have no verified attestation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unattested_not_counted: Vec<usize>,
}

/// A requirement of the quorum that the approvals met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetRequirement {
    pub group: String,
    pub needed: usize,
    pub got: usize,
    /// Indices of the approvals that counted.
    pub approvals: Vec<usize>,
}

/// The approvals satisfy the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuorumOk {
    pub kind: String,
    /// Whether the kind's own rule or `[default]` applied.
    pub rule: RuleSource,
    pub requirements: Vec<MetRequirement>,
}

/// The approvals do not satisfy the policy: everything wrong with them, at once.
///
/// Any failing approval refuses the submission, even if the quorum is met without it: the
/// record would carry it, and a record with an approval that does not verify or whose key was
/// revoked is one the cross-verifier must flag. The submitter drops it and submits again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct Refusal {
    pub kind: String,
    /// The kind is not listed in `governance.toml` and `[default]` refuses unlisted kinds.
    pub kind_refused: bool,
    /// Every problem with every approval, by index.
    pub approvals: Vec<ApprovalProblem>,
    /// Every requirement not met, counting only approvals without problems.
    pub unmet: Vec<UnmetRequirement>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "decision kind `{}` refused", self.kind)?;
        let mut sep = ": ";
        if self.kind_refused {
            write!(
                f,
                "{sep}the policy lists no quorum for this kind and refuses unlisted kinds"
            )?;
            sep = "; ";
        }
        for p in &self.approvals {
            write!(
                f,
                "{sep}approval {} (key {}): {}: {}",
                p.index, p.key_id, p.reason, p.message
            )?;
            sep = "; ";
        }
        for u in &self.unmet {
            write!(
                f,
                "{sep}group `{}` needs {} approval{}, got {}",
                u.group,
                u.needed,
                if u.needed == 1 { "" } else { "s" },
                u.got
            )?;
            if !u.software_not_counted.is_empty() {
                write!(
                    f,
                    " ({} software key{} not counted: the group requires hardware keys)",
                    u.software_not_counted.len(),
                    if u.software_not_counted.len() == 1 {
                        ""
                    } else {
                        "s"
                    }
                )?;
            }
            if !u.unattested_not_counted.is_empty() {
                let n = u.unattested_not_counted.len();
                write!(
                    f,
                    " ({n} key{} without a verified attestation not counted: the group requires attested keys)",
                    if n == 1 { "" } else { "s" }
                )?;
            }
            sep = "; ";
        }
        Ok(())
    }
}

impl Refusal {
    /// The reasons given for approval `index`, in the order they were found.
    pub fn reasons_for(&self, index: usize) -> Vec<ApprovalFault> {
        self.approvals
            .iter()
            .filter(|p| p.index == index)
            .map(|p| p.reason)
            .collect()
    }
}

impl Policy {
    /// Judges one submission: verifies each approval's signature over `decision` with the
    /// registered key ([`Policy::verify_signatures`]), checks each approval's key at its
    /// `signed_at` and at `now` (the submission time), and checks the quorum for the
    /// decision's kind ([`Policy::evaluate`]). Everything wrong is reported together.
    pub fn check(
        &self,
        decision: &Decision,
        approvals: &[Approval],
        now: Timestamp,
    ) -> Result<QuorumOk, Refusal> {
        let signatures = self.verify_signatures(decision, approvals);
        self.judge(&decision.kind, approvals, now, signatures)
    }

    /// The write path's call: judges many submissions at once, each exactly as
    /// [`Policy::check`] would, with every approval signature of every submission verified
    /// together by `triplicate_keys::verify_many` (Ed25519 in batches, which reaches the same
    /// verdict on each signature as one-by-one verification and costs a third to a half as
    /// much). `result[i]` is the judgement of `submissions[i]`; a bad signature in one
    /// submission never affects another's.
    pub fn check_many(
        &self,
        submissions: &[(&Decision, &[Approval])],
        now: Timestamp,
    ) -> Vec<Result<QuorumOk, Refusal>> {
        let mut problems: Vec<Vec<ApprovalProblem>> = vec![Vec::new(); submissions.len()];
        let mut messages: Vec<Vec<u8>> = Vec::new();
        // (submission, approval index, registered key) of each message.
        let mut owners: Vec<(usize, usize, &triplicate_keys::PublicKey)> = Vec::new();
        for (n, (decision, approvals)) in submissions.iter().enumerate() {
            let digest = decision.digest();
            for (index, a) in approvals.iter().enumerate() {
                let Some(entry) = self.key(&a.key_id).filter(|e| e.alg() == a.alg) else {
                    continue;
                };
                let msg = match &digest {
                    Err(e) => Err(format!("cannot compute the decision digest: {e}")),
                    Ok(digest) => a
                        .message(digest)
                        .map_err(|e| format!("cannot build the signed message: {e}")),
                };
                match msg {
                    Ok(msg) => {
                        messages.push(msg);
                        owners.push((n, index, &entry.public_key));
                    }
                    Err(message) => problems[n].push(bad_signature(index, a, message)),
                }
            }
        }
        let items: Vec<triplicate_keys::VerifyItem<'_>> = owners
            .iter()
            .zip(&messages)
            .map(|(&(n, index, key), msg)| triplicate_keys::VerifyItem {
                key,
                msg,
                sig: &submissions[n].1[index].signature,
            })
            .collect();
        let verdicts = triplicate_keys::verify_many(&items);
        for (&(n, index, _), verdict) in owners.iter().zip(verdicts) {
            if let Err(e) = verdict {
                problems[n].push(bad_signature(
                    index,
                    &submissions[n].1[index],
                    e.to_string(),
                ));
            }
        }
        submissions
            .iter()
            .zip(problems)
            .map(|((decision, approvals), mut signature_problems)| {
                // In approval order, as `verify_signatures` reports them.
                signature_problems.sort_by_key(|p| p.index);
                self.judge(&decision.kind, approvals, now, signature_problems)
            })
            .collect()
    }

    /// Verifies each approval's signature over `decision` with the key registered under its
    /// `key_id`, as `PublicKey::verify` does, over `Approval::message(decision_digest)`.
    ///
    /// Returns a [`ApprovalFault::BadSignature`] problem for each signature that does not
    /// verify. Approvals whose key is unknown or whose `alg` differs from the registered
    /// key's are skipped: there is no key to verify them with, and [`Policy::evaluate`]
    /// reports them.
    pub fn verify_signatures(
        &self,
        decision: &Decision,
        approvals: &[Approval],
    ) -> Vec<ApprovalProblem> {
        let digest = decision.digest();
        let mut problems = Vec::new();
        for (index, a) in approvals.iter().enumerate() {
            let Some(entry) = self.key(&a.key_id).filter(|e| e.alg() == a.alg) else {
                continue;
            };
            let verdict = match &digest {
                Err(e) => Err(format!("cannot compute the decision digest: {e}")),
                Ok(digest) => match a.message(digest) {
                    Err(e) => Err(format!("cannot build the signed message: {e}")),
                    Ok(msg) => entry
                        .public_key
                        .verify(&msg, &a.signature)
                        .map_err(|e| e.to_string()),
                },
            };
            if let Err(message) = verdict {
                problems.push(bad_signature(index, a, message));
            }
        }
        problems
    }

    /// Judges approvals whose signatures the caller has **already verified** (for example in
    /// a batch with `triplicate_keys::verify_many`), for a decision of `kind` submitted at
    /// `now`. The cross-verifier re-judges a stored record by passing its `recorded_at`.
    ///
    /// Each approval's key must be registered, have the approval's algorithm, and be valid
    /// and unrevoked at both its `signed_at` and `now` (see `KeyEntry::fault_at`). No key may
    /// approve twice and no holder may approve twice with different keys; the first approval
    /// counts and later ones are refused. Then every requirement of the kind's quorum must be
    /// met by approvals without problems, where a group with `require_hardware` counts only
    /// keys held in hardware.
    pub fn evaluate(
        &self,
        kind: &str,
        approvals: &[Approval],
        now: Timestamp,
    ) -> Result<QuorumOk, Refusal> {
        self.judge(kind, approvals, now, Vec::new())
    }

    fn judge(
        &self,
        kind: &str,
        approvals: &[Approval],
        now: Timestamp,
        signature_problems: Vec<ApprovalProblem>,
    ) -> Result<QuorumOk, Refusal> {
        let mut problems = Vec::new();
        let mut first_by_key: HashMap<&KeyId, usize> = HashMap::new();
        let mut first_by_holder: HashMap<&str, usize> = HashMap::new();
        for (index, a) in approvals.iter().enumerate() {
            let mut problem = |reason, message| {
                problems.push(ApprovalProblem {
                    index,
                    key_id: a.key_id.clone(),
                    reason,
                    message,
                })
            };
            let Some(entry) = self.key(&a.key_id) else {
                problem(
                    ApprovalFault::UnknownKey,
                    format!("no key {} in the key registry", a.key_id),
                );
                continue;
            };
            if entry.alg() != a.alg {
                problem(
                    ApprovalFault::AlgorithmMismatch,
                    format!(
                        "the approval says {} but key {} is registered as {}",
                        a.alg,
                        a.key_id,
                        entry.alg()
                    ),
                );
            }
            for (reason, message) in entry.fault_at(a.signed_at, now) {
                problem(reason, message);
            }
            if let Some(&first) = first_by_key.get(&a.key_id) {
                problem(
                    ApprovalFault::DuplicateKey,
                    format!("key {} already approves as approval {first}", a.key_id),
                );
            } else {
                first_by_key.insert(&a.key_id, index);
                if let Some(&first) = first_by_holder.get(entry.holder.as_str()) {
                    problem(
                        ApprovalFault::DuplicateHolder,
                        format!(
                            "{} already approves as approval {first} with another key; one \
                             holder is one approver",
                            entry.holder
                        ),
                    );
                } else {
                    first_by_holder.insert(&entry.holder, index);
                }
            }
        }
        problems.extend(signature_problems);
        // Stable: an approval's problems stay in the order they were found.
        problems.sort_by_key(|p| p.index);
        let failed: BTreeSet<usize> = problems.iter().map(|p| p.index).collect();

        let rule = self.rule_for(kind);
        let (met, unmet) = match rule {
            Some((_, quorum)) => self.tally(quorum, approvals, &failed),
            None => (Vec::new(), Vec::new()),
        };
        match rule {
            Some((source, _)) if problems.is_empty() && unmet.is_empty() => {
                tracing::debug!(kind, approvals = approvals.len(), "quorum met");
                Ok(QuorumOk {
                    kind: kind.to_owned(),
                    rule: source,
                    requirements: met,
                })
            }
            _ => Err(Refusal {
                kind: kind.to_owned(),
                kind_refused: rule.is_none(),
                approvals: problems,
                unmet,
            }),
        }
    }

    fn tally(
        &self,
        quorum: &Quorum,
        approvals: &[Approval],
        failed: &BTreeSet<usize>,
    ) -> (Vec<MetRequirement>, Vec<UnmetRequirement>) {
        let mut met = Vec::new();
        let mut unmet = Vec::new();
        for r in &quorum.requirements {
            let require_hardware = self.group(&r.group).is_some_and(|g| g.require_hardware);
            let require_attestation = self.group(&r.group).is_some_and(|g| g.require_attestation);
            let mut counted = Vec::new();
            let mut software_not_counted = Vec::new();
            let mut unattested_not_counted = Vec::new();
            for (index, a) in approvals.iter().enumerate() {
                if failed.contains(&index) {
                    continue;
                }
                let Some(entry) = self.key(&a.key_id).filter(|e| e.in_group(&r.group)) else {
                    continue;
                };
                if require_hardware && !entry.held.is_hardware() {
                    software_not_counted.push(index);
                } else if require_attestation && entry.attestation.is_none() {
                    unattested_not_counted.push(index);
                } else {
                    counted.push(index);
                }
            }
            if counted.len() >= r.threshold {
                met.push(MetRequirement {
                    group: r.group.clone(),
                    needed: r.threshold,
                    got: counted.len(),
                    approvals: counted,
                });
            } else {
                unmet.push(UnmetRequirement {
                    group: r.group.clone(),
                    needed: r.threshold,
                    got: counted.len(),
                    software_not_counted,
                    unattested_not_counted,
                });
            }
        }
        (met, unmet)
    }
}

fn bad_signature(index: usize, a: &Approval, message: String) -> ApprovalProblem {
    ApprovalProblem {
        index,
        key_id: a.key_id.clone(),
        reason: ApprovalFault::BadSignature,
        message,
    }
}
