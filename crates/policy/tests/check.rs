//! `Policy::check`, the write path's one call: real software-signed approvals, verified against
//! the registered keys, then judged.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use triplicate_core::Algorithm;
use triplicate_keys::{Signer, SoftwareSigner};
use triplicate_policy::{ApprovalFault, Policy, RuleSource};

const SIGNED: &str = "2026-11-02T09:30:00Z";
const NOW: &str = "2026-11-02T09:31:00Z";

struct World {
    alice: SoftwareSigner,
    bob: SoftwareSigner,
    carol: SoftwareSigner,
    erin: SoftwareSigner,
    policy: Policy,
}

fn world() -> World {
    let alice = SoftwareSigner::generate("alice");
    let bob = SoftwareSigner::generate("bob");
    let carol = SoftwareSigner::generate("carol");
    let erin = SoftwareSigner::generate("erin");
    let keys = [
        notary_block(),
        signer_table(&alice, "Alice", &["board"], "software", ""),
        signer_table(&bob, "Bob", &["board"], "software", ""),
        signer_table(&carol, "Carol", &["treasury"], "software", ""),
        signer_table(
            &erin,
            "Erin",
            &["board"],
            "software",
            "revoked = { at = 2026-10-01T00:00:00Z, reason = \"left\" }",
        ),
    ]
    .concat();
    // The development policy's shape: software keys, no hardware requirement.
    let gov = r#"[groups.board]
require_hardware = false
[groups.treasury]
require_hardware = false

[kinds."budget.approval"]
quorum = [
  { group = "board", threshold = 2 },
  { group = "treasury", threshold = 1 },
]
"#;
    World {
        alice,
        bob,
        carol,
        erin,
        policy: Policy::from_strs(&keys, gov).unwrap(),
    }
}

#[test]
fn real_signatures_meet_the_quorum() {
    let w = world();
    let d = decision("budget.approval");
    let approvals = [
        approve(&d, &w.alice, SIGNED),
        approve(&d, &w.bob, SIGNED),
        approve(&d, &w.carol, SIGNED),
    ];
    assert!(w.policy.verify_signatures(&d, &approvals).is_empty());
    let ok = w.policy.check(&d, &approvals, t(NOW)).unwrap();
    assert_eq!(ok.kind, "budget.approval");
    assert_eq!(ok.rule, RuleSource::Kind);
    assert_eq!(ok.requirements[0].approvals, vec![0, 1]);
    assert_eq!(ok.requirements[1].approvals, vec![2]);
}

#[test]
fn a_corrupted_signature_is_refused() {
    let w = world();
    let d = decision("budget.approval");
    let mut bad = approve(&d, &w.bob, SIGNED);
    bad.signature[7] ^= 0x20;
    let approvals = [
        approve(&d, &w.alice, SIGNED),
        bad,
        approve(&d, &w.carol, SIGNED),
    ];
    let r = w.policy.check(&d, &approvals, t(NOW)).unwrap_err();
    assert_eq!(r.approvals.len(), 1, "{r}");
    assert_eq!(r.approvals[0].index, 1);
    assert_eq!(r.approvals[0].key_id, w.bob.key_id());
    assert_eq!(r.approvals[0].reason, ApprovalFault::BadSignature);
    assert_eq!(
        r.approvals[0].message,
        format!(
            "ed25519 signature does not verify under key {}",
            w.bob.key_id()
        )
    );
    // Bob's approval does not count, so the board is one short as well.
    assert_eq!((r.unmet[0].group.as_str(), r.unmet[0].got), ("board", 1));
    // evaluate() trusts the caller to have verified signatures and so would accept these.
    w.policy
        .evaluate("budget.approval", &approvals, t(NOW))
        .unwrap();
}

#[test]
fn a_signature_of_another_decision_is_refused() {
    let w = world();
    let d = decision("budget.approval");
    let other = decision("budget.approval");
    let approvals = [
        approve(&d, &w.alice, SIGNED),
        approve(&other, &w.bob, SIGNED),
        approve(&d, &w.carol, SIGNED),
    ];
    let r = w.policy.check(&d, &approvals, t(NOW)).unwrap_err();
    assert_eq!(r.reasons_for(1), vec![ApprovalFault::BadSignature]);
    assert!(
        r.reasons_for(0).is_empty() && r.reasons_for(2).is_empty(),
        "{r}"
    );
}

#[test]
fn a_rewritten_signing_time_is_refused() {
    // The approval message binds signed_at, so moving it (say, to before a revocation) breaks
    // the signature.
    let w = world();
    let d = decision("budget.approval");
    let mut moved = approve(&d, &w.bob, SIGNED);
    moved.signed_at = t("2026-11-02T09:00:00Z");
    let approvals = [
        approve(&d, &w.alice, SIGNED),
        moved,
        approve(&d, &w.carol, SIGNED),
    ];
    let r = w.policy.check(&d, &approvals, t(NOW)).unwrap_err();
    assert_eq!(r.reasons_for(1), vec![ApprovalFault::BadSignature]);
}

#[test]
fn a_signature_by_an_unregistered_key_is_unknown_not_bad() {
    let w = world();
    let d = decision("budget.approval");
    let stranger = SoftwareSigner::generate("stranger");
    let approvals = [
        approve(&d, &w.alice, SIGNED),
        approve(&d, &w.bob, SIGNED),
        approve(&d, &stranger, SIGNED),
        approve(&d, &w.carol, SIGNED),
    ];
    let r = w.policy.check(&d, &approvals, t(NOW)).unwrap_err();
    assert_eq!(r.approvals.len(), 1, "{r}");
    assert_eq!(r.reasons_for(2), vec![ApprovalFault::UnknownKey]);
    assert!(r.unmet.is_empty(), "{r}");
}

#[test]
fn a_claimed_algorithm_other_than_the_registered_one_is_not_verified() {
    let w = world();
    let d = decision("budget.approval");
    let mut claimed = approve(&d, &w.bob, SIGNED);
    claimed.alg = Algorithm::EcdsaP256;
    let approvals = [
        approve(&d, &w.alice, SIGNED),
        claimed,
        approve(&d, &w.carol, SIGNED),
    ];
    let r = w.policy.check(&d, &approvals, t(NOW)).unwrap_err();
    assert_eq!(r.reasons_for(1), vec![ApprovalFault::AlgorithmMismatch]);
}

#[test]
fn signature_and_key_problems_are_reported_together() {
    let w = world();
    let d = decision("budget.approval");
    // Erin's key was revoked on 2026-10-01, and this signature is not hers for this decision.
    let mut erin = approve(&d, &w.erin, SIGNED);
    erin.signature[0] ^= 1;
    let approvals = [
        approve(&d, &w.alice, SIGNED),
        erin,
        approve(&d, &w.alice, SIGNED),
    ];
    let r = w.policy.check(&d, &approvals, t(NOW)).unwrap_err();
    assert_eq!(
        r.reasons_for(1),
        vec![ApprovalFault::Revoked, ApprovalFault::BadSignature]
    );
    assert_eq!(r.reasons_for(2), vec![ApprovalFault::DuplicateKey]);
    let unmet: Vec<(&str, usize, usize)> = r
        .unmet
        .iter()
        .map(|u| (u.group.as_str(), u.needed, u.got))
        .collect();
    assert_eq!(unmet, vec![("board", 2, 1), ("treasury", 1, 0)]);
    // The approvals are listed in order of their index.
    let indices: Vec<usize> = r.approvals.iter().map(|p| p.index).collect();
    assert_eq!(indices, vec![1, 1, 2]);
}

#[test]
fn the_kind_comes_from_the_decision() {
    let w = world();
    let d = decision("motion");
    let approvals = [approve(&d, &w.alice, SIGNED), approve(&d, &w.bob, SIGNED)];
    let r = w.policy.check(&d, &approvals, t(NOW)).unwrap_err();
    assert!(r.kind_refused);
    assert_eq!(r.kind, "motion");
    assert!(r.approvals.is_empty(), "{r}");
}

#[test]
fn many_submissions_judged_together_are_judged_as_one_by_one() {
    let w = world();
    let mut subs = Vec::new();
    for i in 0..40 {
        let d = decision("budget.approval");
        let mut approvals = vec![
            approve(&d, &w.alice, SIGNED),
            approve(&d, &w.bob, SIGNED),
            approve(&d, &w.carol, SIGNED),
        ];
        match i % 8 {
            // A corrupted signature.
            1 => approvals[1].signature[10] ^= 0x04,
            // A signature over another decision.
            2 => approvals[0] = approve(&decision("budget.approval"), &w.alice, SIGNED),
            // Too few approvals.
            3 => {
                approvals.pop();
            }
            // A revoked key, signing after its revocation, plus a bad signature elsewhere.
            4 => {
                approvals[1] = approve(&d, &w.erin, SIGNED);
                approvals[2].signature[63] ^= 0x01;
            }
            // A truncated signature.
            5 => approvals[2].signature.truncate(63),
            _ => {}
        }
        subs.push((d, approvals));
    }
    let refs: Vec<(&triplicate_core::Decision, &[triplicate_core::Approval])> =
        subs.iter().map(|(d, a)| (d, a.as_slice())).collect();
    let together = w.policy.check_many(&refs, t(NOW));
    let one_by_one: Vec<_> = subs
        .iter()
        .map(|(d, a)| w.policy.check(d, a, t(NOW)))
        .collect();
    assert_eq!(together, one_by_one);
    // And the mix is what it says: five of every eight accepted.
    let accepted = together.iter().filter(|r| r.is_ok()).count();
    assert_eq!(accepted, 40 / 8 * 3);
    let bad = together[1].as_ref().unwrap_err();
    assert_eq!(bad.reasons_for(1), vec![ApprovalFault::BadSignature]);
    let revoked = together[4].as_ref().unwrap_err();
    assert_eq!(revoked.reasons_for(1), vec![ApprovalFault::Revoked]);
    assert_eq!(revoked.reasons_for(2), vec![ApprovalFault::BadSignature]);
    assert!(w.policy.check_many(&[], t(NOW)).is_empty());
}
