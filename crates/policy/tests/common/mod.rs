//! Shared helpers for the policy tests: known-good keys, policy text builders, signed approvals.
#![allow(dead_code, clippy::unwrap_used)]

use triplicate_core::{Approval, Decision, Timestamp};
use triplicate_keys::{PublicKey, Signer, SoftwareSigner};

/// Real public keys (from the example registry in `policies/keys.toml`), for tests that only
/// load policies. `(key id, base64 public key)`.
pub const NOTARY: (&str, &str) = (
    "6a05e928c7f51116",
    "DDcplfSZ13aIKAJnAYLWh4J5s0Hvja0oE4wNk0FWYds=",
);
pub const ALICE: (&str, &str) = (
    "fc65f28e8ea31843",
    "fviyy/1WqPcPHZy9briFQaTlQY9Np+IvFz2+G6CM1mc=",
);
pub const CAROL: (&str, &str) = (
    "1c6a6fac3868fbeb",
    "KqiGWAC+9MmVKLjG9P4M1V+GJsBUsqHg0r5DpavJwkA=",
);
pub const DAN: (&str, &str) = (
    "45e7303f419d7ce5",
    "YKCjmgaoXjLsK7eECtTUa4+75ZICq9zz0+PIh6ao/50=",
);
pub const BOB_P256: (&str, &str) = (
    "90e7467455e02b43",
    "BFguV3L5i9jtmPki0UvMGa22pP/4MvKDPWDO2+2c4jNhuAlFaVTN3F+ZYrqv8C/nbPdPziIrOjzRlpFnfe7sJHU=",
);

/// Lines 1–4 of a test `keys.toml`, then a blank line 5: a valid notary. Key tables start on
/// line 6.
pub fn notary_block() -> String {
    format!(
        "[notary]\nalg = \"ed25519\"\npublic_key = \"{}\"\nheld = \"software\"\n\n",
        NOTARY.1
    )
}

/// A `governance.toml` with groups `board` and `treasury` (no hardware requirement) and
/// `motion` needing one board approval.
pub const GOVERNANCE: &str = r#"[groups.board]
[groups.treasury]

[kinds.motion]
quorum = [{ group = "board", threshold = 1 }]
"#;

/// One `[[key]]` table: 7 lines, then `extra` (one line, no newline) or, if it is empty, a
/// blank line. So a table starting on line N has `public_key` on N+2, `groups` on N+4, `held`
/// on N+5, `extra` on N+7, and the next table starts on N+8.
pub fn key_table(
    public_key: &str,
    holder: &str,
    groups: &[&str],
    held: &str,
    extra: &str,
) -> String {
    let groups: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
    format!(
        "[[key]]\nalg = \"ed25519\"\npublic_key = \"{public_key}\"\nholder = \"{holder}\"\n\
         groups = [{}]\nheld = \"{held}\"\nvalid_from = 2026-01-01T00:00:00Z\n{extra}\n",
        groups.join(", ")
    )
}

/// The key table of a software signer.
pub fn signer_table(
    s: &SoftwareSigner,
    holder: &str,
    groups: &[&str],
    held: &str,
    extra: &str,
) -> String {
    key_table(&s.public_key().to_base64(), holder, groups, held, extra)
}

pub fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A valid decision of `kind`.
pub fn decision(kind: &str) -> Decision {
    let json = serde_json::json!({
        "id": uuid::Uuid::now_v7().to_string(),
        "kind": kind,
        "title": "Approve the Q3 operating budget",
        "body": "As tabled by the treasurer.",
        "payload": {"amount": {"currency": "EUR", "minor_units": 1_250_000}},
        "proposed_at": "2026-11-02T09:00:00Z",
    });
    Decision::from_json(json.to_string().as_bytes()).unwrap()
}

/// `signer`'s real approval of `decision`, signed at `signed_at`.
pub fn approve(decision: &Decision, signer: &SoftwareSigner, signed_at: &str) -> Approval {
    triplicate_keys::approve(decision, signer, t(signed_at)).unwrap()
}

/// An approval by `key` with a signature that is never checked (for `Policy::evaluate`,
/// which takes approvals whose signatures were already verified).
pub fn unsigned(key: &PublicKey, signed_at: &str) -> Approval {
    Approval {
        key_id: key.key_id(),
        alg: key.alg(),
        signature: vec![0; 64],
        signed_at: t(signed_at),
    }
}

/// The 1-based line of the only line of `text` containing `needle`; panics unless exactly one.
pub fn line_of(text: &str, needle: &str) -> usize {
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(hits.len(), 1, "{needle:?} occurs on lines {hits:?}");
    hits[0]
}
