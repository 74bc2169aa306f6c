//! `triplicate-policy`: the key registry and the quorum rules, read from `policies/`.
//!
//! Owns: loading and validating `keys.toml` (approvers' keys, their holders, groups, validity,
//! revocation and how each is held; the notary's key) and `governance.toml` (groups, and per
//! decision kind the quorum: requirements that must all hold); judging a submission's approvals
//! against them ([`Policy::check`]: signatures, keys, quorum) with a structured, serialisable
//! outcome.
//!
//! Must not know: HTTP, async runtimes, stores, or where approvals come from. It is pure and
//! synchronous; the only I/O is [`Policy::load`] reading two files. The clock is the caller's:
//! every judgement takes `now`, so the cross-verifier can re-judge a stored record as of its
//! `recorded_at`. `verification.toml`, which sits in the same directory, is the cross-verifier's
//! and is not read here.
//!
//! **Architecture invariant:** a [`Policy`] exists only if both files passed every check, and
//! loading reports every problem found (file, line, reason), not only the first.
//!
//! **Architecture invariant:** an approval counts only if its signature verifies under the
//! registered key (through `triplicate_keys::PublicKey::verify`), its key is valid and
//! unrevoked at both its `signed_at` and the submission time, and neither its key nor its
//! holder has already approved. Any approval that does not count refuses the submission.
//!
//! The file formats are described in this crate's README.

mod doc;
mod error;
mod evaluate;
mod governance;
mod keys;
mod policy;

pub use error::{PolicyError, Problem};
pub use evaluate::{
    ApprovalFault, ApprovalProblem, MetRequirement, QuorumOk, Refusal, UnmetRequirement,
};
pub use governance::{DefaultRule, Group, Quorum, Requirement};
pub use keys::{Held, KeyAttestation, KeyEntry, NotaryKey, Revocation};
pub use policy::{Policy, RuleSource, GOVERNANCE_FILE, KEYS_FILE};
