//! Judging approvals: keys (unknown, algorithm, validity, revocation, duplicates) and quorums
//! (all-of requirements, hardware-only groups, the default rule). `Policy::evaluate` takes
//! approvals whose signatures were already verified, so these approvals carry dummy signatures;
//! `tests/check.rs` covers real ones.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use triplicate_core::{Algorithm, Approval};
use triplicate_keys::{Signer, SoftwareSigner};
use triplicate_policy::{
    ApprovalFault, MetRequirement, Policy, QuorumOk, Refusal, RuleSource, UnmetRequirement,
};

struct World {
    alice: SoftwareSigner,
    /// Alice's backup token: same holder, another key.
    alice2: SoftwareSigner,
    /// Expires 2026-06-01.
    bob: SoftwareSigner,
    /// In board and treasury.
    carol: SoftwareSigner,
    /// Valid from 2026-03-01.
    dan: SoftwareSigner,
    /// Revoked 2026-06-15.
    erin: SoftwareSigner,
    /// A software key in board.
    eve: SoftwareSigner,
    policy: Policy,
}

const SIGNED: &str = "2026-05-01T10:00:00Z";
const NOW: &str = "2026-05-01T10:05:00Z";

fn world_with(require_hardware: bool, default: &str) -> World {
    let s = |n: &str| SoftwareSigner::generate(n);
    let (alice, alice2, bob, carol, dan, erin, eve) = (
        s("alice"),
        s("alice2"),
        s("bob"),
        s("carol"),
        s("dan"),
        s("erin"),
        s("eve"),
    );
    let keys = [
        notary_block(),
        signer_table(&alice, "Alice", &["board"], "yubikey-piv", ""),
        signer_table(&alice2, "Alice", &["board"], "yubikey-piv", ""),
        signer_table(
            &bob,
            "Bob",
            &["board"],
            "yubikey-piv",
            "valid_until = 2026-06-01T00:00:00Z",
        ),
        signer_table(&carol, "Carol", &["board", "treasury"], "pkcs11", ""),
        signer_table(&dan, "Dan", &["treasury"], "yubikey-piv", "").replace(
            "valid_from = 2026-01-01T00:00:00Z",
            "valid_from = 2026-03-01T00:00:00Z",
        ),
        signer_table(
            &erin,
            "Erin",
            &["board"],
            "yubikey-piv",
            "revoked = { at = 2026-06-15T00:00:00Z, reason = \"token lost\" }",
        ),
        signer_table(&eve, "Eve", &["board"], "software", ""),
    ]
    .concat();
    let gov = format!(
        r#"[groups.board]
require_hardware = {require_hardware}
[groups.treasury]

[kinds.motion]
quorum = [{{ group = "board", threshold = 2 }}]

[kinds."budget.approval"]
quorum = [
  {{ group = "board", threshold = 2 }},
  {{ group = "treasury", threshold = 1 }},
]
{default}"#
    );
    let policy = match Policy::from_strs(&keys, &gov) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    World {
        alice,
        alice2,
        bob,
        carol,
        dan,
        erin,
        eve,
        policy,
    }
}

fn world() -> World {
    world_with(false, "")
}

fn a(s: &SoftwareSigner) -> Approval {
    unsigned(&s.public_key(), SIGNED)
}

fn a_at(s: &SoftwareSigner, signed_at: &str) -> Approval {
    unsigned(&s.public_key(), signed_at)
}

fn refused(p: &Policy, kind: &str, approvals: &[Approval], now: &str) -> Refusal {
    match p.evaluate(kind, approvals, t(now)) {
        Ok(ok) => panic!("expected a refusal, got {ok:?}"),
        Err(r) => r,
    }
}

fn accepted(p: &Policy, kind: &str, approvals: &[Approval], now: &str) -> QuorumOk {
    match p.evaluate(kind, approvals, t(now)) {
        Ok(ok) => ok,
        Err(r) => panic!("expected acceptance, got: {r}"),
    }
}

#[test]
fn quorum_met() {
    let w = world();
    let ok = accepted(&w.policy, "motion", &[a(&w.alice), a(&w.bob)], NOW);
    assert_eq!(
        ok,
        QuorumOk {
            kind: "motion".to_owned(),
            rule: RuleSource::Kind,
            requirements: vec![MetRequirement {
                group: "board".to_owned(),
                needed: 2,
                got: 2,
                approvals: vec![0, 1],
            }],
        }
    );
}

#[test]
fn quorum_not_met() {
    let w = world();
    let r = refused(&w.policy, "motion", &[a(&w.alice)], NOW);
    assert!(!r.kind_refused);
    assert!(r.approvals.is_empty(), "{r}");
    assert_eq!(
        r.unmet,
        vec![UnmetRequirement {
            group: "board".to_owned(),
            needed: 2,
            got: 1,
            software_not_counted: vec![],
            unattested_not_counted: vec![],
        }]
    );
    assert_eq!(
        r.to_string(),
        "decision kind `motion` refused: group `board` needs 2 approvals, got 1"
    );
    // A treasury-only approver does not count for the board.
    let r = refused(&w.policy, "motion", &[a(&w.alice), a(&w.dan)], NOW);
    assert_eq!((r.unmet[0].needed, r.unmet[0].got), (2, 1));
}

#[test]
fn every_requirement_must_hold() {
    let w = world();
    let kind = "budget.approval";
    // Board met, treasury not.
    let r = refused(&w.policy, kind, &[a(&w.alice), a(&w.bob)], NOW);
    assert_eq!(r.unmet.len(), 1, "{r}");
    assert_eq!((r.unmet[0].group.as_str(), r.unmet[0].got), ("treasury", 0));
    // Treasury met, board not.
    let r = refused(&w.policy, kind, &[a(&w.alice), a(&w.dan)], NOW);
    assert_eq!(r.unmet.len(), 1, "{r}");
    assert_eq!((r.unmet[0].group.as_str(), r.unmet[0].got), ("board", 1));
    // Neither: both reported.
    let r = refused(&w.policy, kind, &[a(&w.alice)], NOW);
    let unmet: Vec<(&str, usize, usize)> = r
        .unmet
        .iter()
        .map(|u| (u.group.as_str(), u.needed, u.got))
        .collect();
    assert_eq!(unmet, vec![("board", 2, 1), ("treasury", 1, 0)]);
    // Both met.
    let ok = accepted(&w.policy, kind, &[a(&w.alice), a(&w.bob), a(&w.dan)], NOW);
    let got: Vec<(&str, Vec<usize>)> = ok
        .requirements
        .iter()
        .map(|m| (m.group.as_str(), m.approvals.clone()))
        .collect();
    assert_eq!(got, vec![("board", vec![0, 1]), ("treasury", vec![2])]);
}

#[test]
fn an_approver_in_two_groups_counts_for_both() {
    let w = world();
    let ok = accepted(
        &w.policy,
        "budget.approval",
        &[a(&w.alice), a(&w.carol)],
        NOW,
    );
    assert_eq!(ok.requirements[0].approvals, vec![0, 1]);
    assert_eq!(ok.requirements[1].approvals, vec![1]);
}

#[test]
fn expired_key() {
    let w = world();
    // Valid until 2026-06-01T00:00:00Z (exclusive).
    accepted(
        &w.policy,
        "motion",
        &[a(&w.alice), a_at(&w.bob, "2026-05-31T23:59:59Z")],
        "2026-05-31T23:59:59.5Z",
    );
    // Signed in time but submitted at the expiry instant.
    let r = refused(
        &w.policy,
        "motion",
        &[a(&w.alice), a_at(&w.bob, "2026-05-31T23:59:59Z")],
        "2026-06-01T00:00:00Z",
    );
    assert_eq!(r.reasons_for(1), vec![ApprovalFault::Expired]);
    assert!(r.reasons_for(0).is_empty());
    assert!(
        r.approvals[0]
            .message
            .contains("expired at 2026-06-01T00:00:00Z"),
        "{r}"
    );
    // Signed after expiry.
    let r = refused(
        &w.policy,
        "motion",
        &[a(&w.alice), a_at(&w.bob, "2026-06-02T00:00:00Z")],
        "2026-06-02T00:01:00Z",
    );
    assert_eq!(r.reasons_for(1), vec![ApprovalFault::Expired]);
    // The expired approval does not count, so the quorum is not met either.
    assert_eq!((r.unmet[0].needed, r.unmet[0].got), (2, 1));
}

#[test]
fn not_yet_valid_key() {
    let w = world();
    // Dan's key is valid from 2026-03-01.
    let r = refused(
        &w.policy,
        "budget.approval",
        &[a(&w.alice), a(&w.bob), a_at(&w.dan, "2026-02-28T12:00:00Z")],
        NOW,
    );
    assert_eq!(r.reasons_for(2), vec![ApprovalFault::NotYetValid]);
    assert_eq!(r.approvals[0].key_id, w.dan.key_id());
    assert!(
        r.approvals[0]
            .message
            .contains("is valid from 2026-03-01T00:00:00Z"),
        "{r}"
    );
    // A signing time after valid_from does not help if the submission is before it.
    let r = refused(
        &w.policy,
        "budget.approval",
        &[a(&w.alice), a(&w.bob), a_at(&w.dan, "2026-03-02T00:00:00Z")],
        "2026-02-28T12:00:00Z",
    );
    assert_eq!(r.reasons_for(2), vec![ApprovalFault::NotYetValid]);
    accepted(
        &w.policy,
        "budget.approval",
        &[a(&w.alice), a(&w.bob), a_at(&w.dan, "2026-03-01T00:00:00Z")],
        NOW,
    );
}

#[test]
fn revoked_key() {
    let w = world();
    // Erin's key is revoked at 2026-06-15T00:00:00Z.
    let before = "2026-06-14T12:00:00Z";
    accepted(
        &w.policy,
        "motion",
        &[a_at(&w.alice, before), a_at(&w.erin, before)],
        "2026-06-14T12:01:00Z",
    );
    // Signed before the revocation but submitted after: refused, since `signed_at` is only the
    // signer's claim and a stolen key could back-date it.
    let r = refused(
        &w.policy,
        "motion",
        &[a_at(&w.alice, before), a_at(&w.erin, before)],
        "2026-06-15T00:00:01Z",
    );
    assert_eq!(r.reasons_for(1), vec![ApprovalFault::Revoked]);
    assert!(
        r.approvals[0]
            .message
            .contains("revoked at 2026-06-15T00:00:00Z (token lost)"),
        "{r}"
    );
    // Signed at the revocation instant.
    let r = refused(
        &w.policy,
        "motion",
        &[
            a_at(&w.alice, "2026-06-15T00:00:00Z"),
            a_at(&w.erin, "2026-06-15T00:00:00Z"),
        ],
        "2026-06-15T00:00:00Z",
    );
    assert_eq!(r.reasons_for(1), vec![ApprovalFault::Revoked]);
}

#[test]
fn a_key_with_several_faults_reports_each() {
    let w = world();
    // Bob's key expired on 2026-06-01; Erin's was revoked on 2026-06-15. Neither is known
    // to be valid in 2025.
    let r = refused(
        &w.policy,
        "motion",
        &[
            a_at(&w.bob, "2025-12-01T00:00:00Z"),
            a_at(&w.erin, "2025-12-01T00:00:00Z"),
        ],
        "2026-07-01T00:00:00Z",
    );
    assert_eq!(
        r.reasons_for(0),
        vec![ApprovalFault::NotYetValid, ApprovalFault::Expired]
    );
    assert_eq!(
        r.reasons_for(1),
        vec![ApprovalFault::NotYetValid, ApprovalFault::Revoked]
    );
}

#[test]
fn duplicate_key() {
    let w = world();
    let r = refused(&w.policy, "motion", &[a(&w.alice), a(&w.alice)], NOW);
    assert_eq!(r.reasons_for(0), vec![]);
    assert_eq!(r.reasons_for(1), vec![ApprovalFault::DuplicateKey]);
    assert!(
        r.approvals[0]
            .message
            .contains("already approves as approval 0"),
        "{r}"
    );
    // Counted once.
    assert_eq!((r.unmet[0].needed, r.unmet[0].got), (2, 1));
    // Even when the quorum is met without the duplicate, the submission is refused.
    let r = refused(
        &w.policy,
        "motion",
        &[a(&w.alice), a(&w.bob), a(&w.bob)],
        NOW,
    );
    assert!(r.unmet.is_empty(), "{r}");
    assert_eq!(r.reasons_for(2), vec![ApprovalFault::DuplicateKey]);
}

#[test]
fn duplicate_holder_with_another_key() {
    let w = world();
    let r = refused(&w.policy, "motion", &[a(&w.alice), a(&w.alice2)], NOW);
    assert_eq!(r.reasons_for(1), vec![ApprovalFault::DuplicateHolder]);
    assert_eq!(r.approvals[0].key_id, w.alice2.key_id());
    assert!(
        r.approvals[0]
            .message
            .contains("Alice already approves as approval 0"),
        "{r}"
    );
    assert_eq!((r.unmet[0].needed, r.unmet[0].got), (2, 1));
    // Either of Alice's keys is fine on its own.
    accepted(&w.policy, "motion", &[a(&w.alice2), a(&w.bob)], NOW);
}

#[test]
fn unknown_key_and_algorithm_mismatch() {
    let w = world();
    let stranger = SoftwareSigner::generate("stranger");
    let mut wrong_alg = a(&w.bob);
    wrong_alg.alg = Algorithm::EcdsaP256;
    let r = refused(
        &w.policy,
        "motion",
        &[a(&w.alice), a(&stranger), wrong_alg],
        NOW,
    );
    assert_eq!(r.reasons_for(1), vec![ApprovalFault::UnknownKey]);
    assert_eq!(r.reasons_for(2), vec![ApprovalFault::AlgorithmMismatch]);
    assert!(
        r.approvals[1]
            .message
            .contains("the approval says ecdsa-p256 but key"),
        "{r}"
    );
    assert_eq!((r.unmet[0].needed, r.unmet[0].got), (2, 1));
}

#[test]
fn require_hardware_ignores_software_keys() {
    let soft = world_with(false, "");
    accepted(&soft.policy, "motion", &[a(&soft.alice), a(&soft.eve)], NOW);

    let hard = world_with(true, "");
    let r = refused(&hard.policy, "motion", &[a(&hard.alice), a(&hard.eve)], NOW);
    // Eve's approval is sound; it just does not count for a hardware-only group.
    assert!(r.approvals.is_empty(), "{r}");
    assert_eq!(
        r.unmet,
        vec![UnmetRequirement {
            group: "board".to_owned(),
            needed: 2,
            got: 1,
            software_not_counted: vec![1],
            unattested_not_counted: vec![],
        }]
    );
    assert!(
        r.to_string()
            .ends_with("got 1 (1 software key not counted: the group requires hardware keys)"),
        "{r}"
    );
    // Hardware keys (yubikey-piv, pkcs11) count.
    accepted(
        &hard.policy,
        "motion",
        &[a(&hard.alice), a(&hard.carol)],
        NOW,
    );
    // A software key in a hardware group alongside enough hardware keys is accepted.
    let ok = accepted(
        &hard.policy,
        "motion",
        &[a(&hard.alice), a(&hard.eve), a(&hard.carol)],
        NOW,
    );
    assert_eq!(ok.requirements[0].approvals, vec![0, 2]);
}

#[test]
fn unlisted_kinds_are_refused_by_default() {
    let w = world();
    let r = refused(&w.policy, "policy.change", &[a(&w.alice), a(&w.bob)], NOW);
    assert!(r.kind_refused);
    assert!(r.unmet.is_empty());
    assert_eq!(
        r.to_string(),
        "decision kind `policy.change` refused: the policy lists no quorum for this kind and \
         refuses unlisted kinds"
    );
}

#[test]
fn a_default_quorum_applies_to_unlisted_kinds() {
    let w = world_with(
        false,
        "\n[default]\naction = \"quorum\"\nquorum = [{ group = \"treasury\", threshold = 2 }]\n",
    );
    let ok = accepted(&w.policy, "policy.change", &[a(&w.carol), a(&w.dan)], NOW);
    assert_eq!(ok.rule, RuleSource::Default);
    let r = refused(&w.policy, "policy.change", &[a(&w.alice), a(&w.dan)], NOW);
    assert!(!r.kind_refused);
    assert_eq!(r.unmet[0].group, "treasury");
    // Listed kinds still use their own rule.
    assert_eq!(
        accepted(&w.policy, "motion", &[a(&w.alice), a(&w.bob)], NOW).rule,
        RuleSource::Kind
    );
}

#[test]
fn refusals_serialise_for_problem_json() {
    let w = world_with(true, "");
    let stranger = SoftwareSigner::generate("stranger");
    let r = refused(
        &w.policy,
        "budget.approval",
        &[a(&w.alice), a(&stranger), a(&w.eve)],
        NOW,
    );
    let json = serde_json::to_value(&r).unwrap();
    let expected = serde_json::json!({
        "kind": "budget.approval",
        "kind_refused": false,
        "approvals": [{
            "index": 1,
            "key_id": stranger.key_id().to_string(),
            "reason": "unknown_key",
            "message": format!("no key {} in the key registry", stranger.key_id()),
        }],
        "unmet": [
            {"group": "board", "needed": 2, "got": 1, "software_not_counted": [2]},
            {"group": "treasury", "needed": 1, "got": 0},
        ],
    });
    assert_eq!(json, expected);

    let ok = accepted(&w.policy, "motion", &[a(&w.alice), a(&w.carol)], NOW);
    assert_eq!(
        serde_json::to_value(&ok).unwrap(),
        serde_json::json!({
            "kind": "motion",
            "rule": "kind",
            "requirements": [{"group": "board", "needed": 2, "got": 2, "approvals": [0, 1]}],
        })
    );
}

#[test]
fn the_shipped_example_policy_judges_as_documented() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let p = Policy::load(&dir).unwrap();
    let key = |id: &str| p.key(&id.parse().unwrap()).unwrap().public_key.clone();
    let alice = key(ALICE.0);
    let carol = key(CAROL.0);
    let dan = key(DAN.0);
    let erin_old = key("585bff1c4a896a31");
    let erin_new = key("643775046b0350c5");
    let at = "2026-07-01T09:00:00Z";
    let now = "2026-07-01T09:10:00Z";
    // Alice and Carol: Carol counts for board and treasury.
    p.evaluate(
        "budget.approval",
        &[unsigned(&alice, at), unsigned(&carol, at)],
        t(now),
    )
    .unwrap();
    // Alice and Dan: one board member short.
    let r = p
        .evaluate(
            "budget.approval",
            &[unsigned(&alice, at), unsigned(&dan, at)],
            t(now),
        )
        .unwrap_err();
    assert_eq!((r.unmet[0].group.as_str(), r.unmet[0].got), ("board", 1));
    // Erin's lost token no longer counts; her replacement does, and both are one holder.
    let r = p
        .evaluate(
            "motion",
            &[unsigned(&alice, at), unsigned(&erin_old, at)],
            t(now),
        )
        .unwrap_err();
    assert_eq!(r.reasons_for(1), vec![ApprovalFault::Revoked]);
    p.evaluate(
        "motion",
        &[unsigned(&alice, at), unsigned(&erin_new, at)],
        t(now),
    )
    .unwrap();
    // Kinds the example does not list are refused.
    let r = p
        .evaluate("expense.claim", &[unsigned(&alice, at)], t(now))
        .unwrap_err();
    assert!(r.kind_refused);
}
