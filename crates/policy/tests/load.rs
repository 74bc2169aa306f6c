//! Loading policy files: every refusal reason, reported with its exact file and line, and all
//! problems at once.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;
use triplicate_policy::{DefaultRule, Held, Policy, PolicyError, RuleSource};

fn refused(keys: &str, gov: &str) -> PolicyError {
    match Policy::from_strs(keys, gov) {
        Ok(p) => panic!("policy should be refused, loaded {p:?}"),
        Err(e) => e,
    }
}

/// Asserts the error holds exactly one problem, in `file` on `line`, whose reason contains
/// `needle`.
#[track_caller]
fn only(err: &PolicyError, file: &str, line: usize, needle: &str) {
    assert_eq!(err.problems.len(), 1, "expected one problem, got: {err}");
    assert!(
        err.has(file, line, needle),
        "expected {file}:{line}: …{needle}…, got: {err}"
    );
}

fn one_key(extra: &str) -> String {
    format!(
        "{}{}",
        notary_block(),
        key_table(ALICE.1, "Alice", &["board"], "software", extra)
    )
}

#[test]
fn a_minimal_policy_loads() {
    let p = Policy::from_strs(&one_key(""), GOVERNANCE).unwrap();
    let id = ALICE.0.parse().unwrap();
    let k = p.key(&id).unwrap();
    assert_eq!(k.holder, "Alice");
    assert_eq!(k.groups, vec!["board".to_owned()]);
    assert_eq!(k.held, Held::Software);
    assert_eq!(k.valid_from, t("2026-01-01T00:00:00Z"));
    assert_eq!(k.valid_until, None);
    assert_eq!(k.revoked, None);
    assert_eq!(p.notary().key_id.as_str(), NOTARY.0);
    assert_eq!(p.notary().held, Held::Software);
    assert!(!p.group("board").unwrap().require_hardware);
    assert_eq!(p.default_rule(), &DefaultRule::Refuse);
    assert_eq!(p.rule_for("motion").map(|(s, _)| s), Some(RuleSource::Kind));
    assert!(p.rule_for("budget.approval").is_none());
}

#[test]
fn toml_syntax_error_in_keys() {
    let keys = format!(
        "{}[[key]]\nalg = \"ed25519\nholder = \"x\"\n",
        notary_block()
    );
    let e = refused(&keys, GOVERNANCE);
    assert!(
        e.problems.iter().all(|p| p.file == Path::new("keys.toml")),
        "{e}"
    );
    assert!(e.has("keys.toml", 7, "TOML syntax error"), "{e}");
    // A syntax error in keys.toml must not also produce threshold complaints in the other file.
    assert!(
        !e.problems
            .iter()
            .any(|p| p.file == Path::new("governance.toml")),
        "{e}"
    );
}

#[test]
fn toml_syntax_error_in_governance() {
    let gov = "[groups.board]\n\n[kinds.motion]\nquorum = [{ group = \"board\", threshold = 1 }\n";
    let e = refused(&one_key(""), gov);
    assert!(e.has("governance.toml", 4, "TOML syntax error"), "{e}");
    // Nor does it make the keys' groups "unknown".
    assert!(
        !e.problems.iter().any(|p| p.file == Path::new("keys.toml")),
        "{e}"
    );
}

#[test]
fn duplicate_toml_key_is_a_syntax_error() {
    let e = refused(&one_key("holder = \"Alice again\""), GOVERNANCE);
    only(&e, "keys.toml", 13, "duplicate key");
}

#[test]
fn unknown_field_in_a_key() {
    let e = refused(&one_key("colour = \"blue\""), GOVERNANCE);
    only(&e, "keys.toml", 13, "unknown field `colour` in [[key]] #1");
}

#[test]
fn unknown_top_level_field_and_table() {
    let keys = format!("version = 2\n{}", one_key(""));
    let gov = format!("{GOVERNANCE}\n[verification]\ngrace = \"5m\"\n");
    let e = refused(&keys, &gov);
    assert_eq!(e.problems.len(), 2, "{e}");
    assert!(e.has("keys.toml", 1, "unknown field `version`"), "{e}");
    assert!(
        e.has("governance.toml", 7, "unknown field `verification`"),
        "{e}"
    );
}

#[test]
fn unknown_field_in_notary_group_kind_and_requirement() {
    let keys = format!(
        "[notary]\nalg = \"ed25519\"\npublic_key = \"{}\"\nheld = \"software\"\nname = \"n\"\n{}",
        NOTARY.1,
        key_table(ALICE.1, "Alice", &["board"], "software", "")
    );
    let gov = r#"[groups.board]
require_hardwar = true

[kinds.motion]
quorum = [{ group = "board", threshold = 1, weight = 2 }]
descripton = "typo"
"#;
    let e = refused(&keys, gov);
    assert_eq!(e.problems.len(), 4, "{e}");
    assert!(
        e.has("keys.toml", 5, "unknown field `name` in [notary]"),
        "{e}"
    );
    assert!(
        e.has("governance.toml", 2, "unknown field `require_hardwar`"),
        "{e}"
    );
    assert!(e.has("governance.toml", 5, "unknown field `weight`"), "{e}");
    assert!(
        e.has("governance.toml", 6, "unknown field `descripton`"),
        "{e}"
    );
}

#[test]
fn unquoted_dotted_kind_gets_a_hint() {
    let gov = "[groups.board]\n\n[kinds.budget.approval]\nquorum = [{ group = \"board\", threshold = 1 }]\n";
    let e = refused(&one_key(""), gov);
    // The kind `budget` has no quorum (reported at its header) and a field `approval`.
    assert_eq!(e.problems.len(), 2, "{e}");
    assert!(e.has("governance.toml", 3, "missing field `quorum`"), "{e}");
    assert!(
        e.has("governance.toml", 3, "[kinds.\"budget.approval\"]"),
        "{e}"
    );
}

#[test]
fn unknown_algorithm() {
    let keys = format!(
        "{}[[key]]\nalg = \"rsa-2048\"\npublic_key = \"{}\"\nholder = \"A\"\ngroups = [\"board\"]\nheld = \"software\"\nvalid_from = 2026-01-01T00:00:00Z\n",
        notary_block(),
        ALICE.1
    );
    let e = refused(&keys, GOVERNANCE);
    only(
        &e,
        "keys.toml",
        7,
        "unknown signature algorithm \"rsa-2048\"",
    );
}

#[test]
fn unknown_held_value() {
    let e = refused(
        &format!(
            "{}{}",
            notary_block(),
            key_table(ALICE.1, "A", &["board"], "usb-stick", "")
        ),
        GOVERNANCE,
    );
    only(&e, "keys.toml", 11, "unknown `held` value \"usb-stick\"");
}

#[test]
fn malformed_key_bad_base64() {
    let e = refused(
        &format!(
            "{}{}",
            notary_block(),
            key_table("not base64!", "A", &["board"], "software", "")
        ),
        GOVERNANCE,
    );
    only(&e, "keys.toml", 8, "invalid base64");
}

#[test]
fn malformed_key_wrong_length() {
    // 31 bytes.
    let e = refused(
        &format!(
            "{}{}",
            notary_block(),
            key_table(
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",
                "A",
                &["board"],
                "software",
                ""
            )
        ),
        GOVERNANCE,
    );
    only(&e, "keys.toml", 8, "must be 32 bytes, got 31");
}

#[test]
fn malformed_key_not_a_valid_point() {
    // The identity point (y = 1): a small-order, "weak" Ed25519 key.
    let identity = "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let e = refused(
        &format!(
            "{}{}",
            notary_block(),
            key_table(identity, "A", &["board"], "software", "")
        ),
        GOVERNANCE,
    );
    only(&e, "keys.toml", 8, "small-order");

    // A P-256 point off the curve (the last byte of a valid key flipped).
    let off =
        "BFguV3L5i9jtmPki0UvMGa22pP/4MvKDPWDO2+2c4jNhuAlFaVTN3F+ZYrqv8C/nbPdPziIrOjzRlpFnfe7sJHQ=";
    let keys = format!(
        "{}[[key]]\nalg = \"ecdsa-p256\"\npublic_key = \"{off}\"\nholder = \"B\"\ngroups = [\"board\"]\nheld = \"yubikey-piv\"\nvalid_from = 2026-01-01T00:00:00Z\n",
        notary_block()
    );
    let e = refused(&keys, GOVERNANCE);
    only(&e, "keys.toml", 8, "not a point on the P-256 curve");
}

#[test]
fn a_p256_key_loads() {
    let keys = format!(
        "{}[[key]]\nkey_id = \"{}\"\nalg = \"ecdsa-p256\"\npublic_key = \"{}\"\nholder = \"B\"\ngroups = [\"board\"]\nheld = \"yubikey-piv\"\nvalid_from = 2026-01-01T00:00:00Z\n",
        notary_block(),
        BOB_P256.0,
        BOB_P256.1
    );
    let p = Policy::from_strs(&keys, GOVERNANCE).unwrap();
    let k = p.key(&BOB_P256.0.parse().unwrap()).unwrap();
    assert_eq!(k.alg(), triplicate_core::Algorithm::EcdsaP256);
}

#[test]
fn key_id_that_does_not_match_the_key() {
    let e = refused(&one_key(&format!("key_id = \"{}\"", CAROL.0)), GOVERNANCE);
    only(
        &e,
        "keys.toml",
        13,
        &format!(
            "key_id {} does not match the public key: KeyId::derive(ed25519, public_key) is {}",
            CAROL.0, ALICE.0
        ),
    );
    // A stated id that matches is fine.
    Policy::from_strs(&one_key(&format!("key_id = \"{}\"", ALICE.0)), GOVERNANCE).unwrap();
    // One that is not a key id at all is refused as such.
    let e = refused(&one_key("key_id = \"ALICE\""), GOVERNANCE);
    only(&e, "keys.toml", 13, "not 16 lowercase hex digits");
}

#[test]
fn duplicate_key_id() {
    let keys = format!(
        "{}{}{}",
        notary_block(),
        key_table(ALICE.1, "Alice", &["board"], "software", ""),
        key_table(ALICE.1, "Alice (backup)", &["treasury"], "software", "")
    );
    let e = refused(&keys, GOVERNANCE);
    only(
        &e,
        "keys.toml",
        14,
        &format!(
            "duplicate key id {}: the same key is registered at line 6",
            ALICE.0
        ),
    );
}

#[test]
fn the_notary_cannot_be_an_approver() {
    let keys = format!(
        "{}{}",
        notary_block(),
        key_table(NOTARY.1, "Service", &["board"], "software", "")
    );
    let e = refused(&keys, GOVERNANCE);
    only(&e, "keys.toml", 6, "is the notary's key");
}

#[test]
fn the_notary_must_be_ed25519() {
    let keys = format!(
        "[notary]\nalg = \"ecdsa-p256\"\npublic_key = \"{}\"\nheld = \"pkcs11\"\n\n{}",
        BOB_P256.1,
        key_table(ALICE.1, "Alice", &["board"], "software", "")
    );
    let e = refused(&keys, GOVERNANCE);
    only(&e, "keys.toml", 2, "the notary key must be ed25519");
}

#[test]
fn missing_notary_and_missing_fields() {
    let keys =
        "[[key]]\nalg = \"ed25519\"\ngroups = [\"board\"]\nvalid_from = 2026-01-01T00:00:00Z\n";
    let e = refused(keys, GOVERNANCE);
    assert_eq!(e.problems.len(), 4, "{e}");
    assert!(e.has("keys.toml", 1, "missing [notary] table"), "{e}");
    assert!(
        e.has("keys.toml", 1, "missing field `public_key` in [[key]] #1"),
        "{e}"
    );
    assert!(e.has("keys.toml", 1, "missing field `holder`"), "{e}");
    assert!(e.has("keys.toml", 1, "missing field `held`"), "{e}");
}

#[test]
fn valid_until_before_valid_from() {
    let e = refused(&one_key("valid_until = 2025-12-31T23:59:59Z"), GOVERNANCE);
    only(&e, "keys.toml", 13, "is not after valid_from");
    // An empty window is refused too.
    let e = refused(&one_key("valid_until = 2026-01-01T00:00:00Z"), GOVERNANCE);
    only(&e, "keys.toml", 13, "is not after valid_from");
}

#[test]
fn times_need_an_offset() {
    let e = refused(&one_key("valid_until = 2027-01-01T00:00:00"), GOVERNANCE);
    only(&e, "keys.toml", 13, "not a full date-time with an offset");
    let e = refused(&one_key("valid_until = \"next year\""), GOVERNANCE);
    only(&e, "keys.toml", 13, "is not an RFC 3339 date-time");
    // A string and an offset are accepted, and converted to UTC.
    let p = Policy::from_strs(
        &one_key("valid_until = \"2027-01-01T01:00:00+01:00\""),
        GOVERNANCE,
    )
    .unwrap();
    let k = p.key(&ALICE.0.parse().unwrap()).unwrap();
    assert_eq!(k.valid_until, Some(t("2027-01-01T00:00:00Z")));
}

#[test]
fn revocation_needs_a_time_and_a_reason() {
    // Carol keeps `board` (which `motion` needs) non-empty while Alice's key is revoked.
    let revoked = |r: &str| {
        format!(
            "{}{}",
            one_key(&format!("revoked = {r}")),
            key_table(CAROL.1, "Carol", &["board"], "software", "")
        )
    };
    let p = Policy::from_strs(
        &revoked("{ at = 2026-06-01T00:00:00Z, reason = \"token lost\" }"),
        GOVERNANCE,
    )
    .unwrap();
    let r = p
        .key(&ALICE.0.parse().unwrap())
        .unwrap()
        .revoked
        .clone()
        .unwrap();
    assert_eq!(
        (r.at, r.reason.as_str()),
        (t("2026-06-01T00:00:00Z"), "token lost")
    );

    let e = refused(&revoked("{ at = 2026-06-01T00:00:00Z }"), GOVERNANCE);
    only(&e, "keys.toml", 13, "missing field `reason` in `revoked`");
    let e = refused(
        &revoked("{ at = 2026-06-01T00:00:00Z, reason = \"\", by = \"x\" }"),
        GOVERNANCE,
    );
    assert_eq!(e.problems.len(), 2, "{e}");
    assert!(e.has("keys.toml", 13, "unknown field `by`"), "{e}");
    assert!(
        e.has("keys.toml", 13, "`revoked.reason` must not be empty"),
        "{e}"
    );
}

#[test]
fn wrong_types_are_named() {
    let keys = format!(
        "{}[[key]]\nalg = \"ed25519\"\npublic_key = \"{}\"\nholder = 7\ngroups = \"board\"\nheld = \"software\"\nvalid_from = 2026-01-01T00:00:00Z\n",
        notary_block(),
        ALICE.1
    );
    let e = refused(&keys, GOVERNANCE);
    // Only these two: with the key's groups unreadable, `board` may not really be empty, so
    // no "threshold larger than the group" is reported on top.
    assert_eq!(e.problems.len(), 2, "{e}");
    assert!(
        e.has("keys.toml", 9, "`holder` must be a string, not an integer"),
        "{e}"
    );
    assert!(
        e.has(
            "keys.toml",
            10,
            "`groups` must be an array of strings, not a string"
        ),
        "{e}"
    );
}

#[test]
fn unknown_group_named_by_a_key() {
    let keys = format!(
        "{}{}",
        notary_block(),
        key_table(ALICE.1, "Alice", &["board", "bored"], "software", "")
    );
    let e = refused(&keys, GOVERNANCE);
    only(
        &e,
        "keys.toml",
        10,
        "unknown group `bored`: governance.toml declares `board`, `treasury`",
    );
}

#[test]
fn key_in_no_group_or_a_group_twice() {
    let e = refused(
        &format!(
            "{}{}",
            notary_block(),
            key_table(ALICE.1, "A", &[], "software", "")
        ),
        GOVERNANCE,
    );
    // The only key being in no group, `board` (which `motion` needs) is empty too.
    assert_eq!(e.problems.len(), 2, "{e}");
    assert!(e.has("keys.toml", 10, "`groups` is empty"), "{e}");
    assert!(
        e.has("governance.toml", 5, "larger than group `board`"),
        "{e}"
    );
    let e = refused(
        &format!(
            "{}{}",
            notary_block(),
            key_table(ALICE.1, "A", &["board", "board"], "software", "")
        ),
        GOVERNANCE,
    );
    only(&e, "keys.toml", 10, "group `board` is listed twice");
}

#[test]
fn unknown_group_in_a_quorum() {
    let gov = r#"[groups.board]

[kinds.motion]
quorum = [
    { group = "board", threshold = 1 },
    { group = "treasury", threshold = 1 },
]
"#;
    let keys = format!(
        "{}{}",
        notary_block(),
        key_table(ALICE.1, "A", &["board"], "software", "")
    );
    let e = refused(&keys, gov);
    only(
        &e,
        "governance.toml",
        6,
        "unknown group `treasury`: declare it as [groups.treasury]",
    );
}

#[test]
fn threshold_zero() {
    let gov = "[groups.board]\n\n[kinds.motion]\nquorum = [{ group = \"board\", threshold = 0 }]\n";
    let e = refused(&one_key(""), gov);
    only(
        &e,
        "governance.toml",
        4,
        "threshold 0 for `board` must be at least 1",
    );
}

#[test]
fn threshold_larger_than_the_group() {
    let gov = r#"[groups.board]
[groups.treasury]

[kinds."budget.approval"]
quorum = [
  { group = "board", threshold = 2 },
  { group = "treasury", threshold = 1 },
]
"#;
    let e = refused(&one_key(""), gov);
    assert_eq!(e.problems.len(), 2, "{e}");
    assert!(
        e.has(
            "governance.toml",
            6,
            "threshold 2 is larger than group `board`, which has 1 approver who can count (1 key in keys.toml)",
        ),
        "{e}"
    );
    assert!(
        e.has("governance.toml", 7, "larger than group `treasury`"),
        "{e}"
    );
    // The treasury requirement names a group with no keys at all.
    let keys = format!(
        "{}{}{}",
        notary_block(),
        key_table(ALICE.1, "Alice", &["board"], "software", ""),
        key_table(CAROL.1, "Carol", &["board"], "software", "")
    );
    let e = refused(&keys, gov);
    only(
        &e,
        "governance.toml",
        7,
        "threshold 1 is larger than group `treasury`, which has 0 approvers",
    );
}

#[test]
fn group_size_counts_holders_not_keys_and_skips_revoked_and_software() {
    let gov = r#"[groups.board]
require_hardware = true

[kinds.motion]
quorum = [{ group = "board", threshold = 2 }]
"#;
    // Four keys in `board`: Alice's two (one holder), Carol's revoked one, Dan's software one.
    let keys = format!(
        "{}{}{}{}{}",
        notary_block(),
        key_table(ALICE.1, "Alice", &["board"], "yubikey-piv", ""),
        key_table(BOB_P256.1, "Alice", &["board"], "yubikey-piv", "")
            .replace("alg = \"ed25519\"", "alg = \"ecdsa-p256\""),
        key_table(
            CAROL.1,
            "Carol",
            &["board"],
            "pkcs11",
            "revoked = { at = 2026-02-01T00:00:00Z, reason = \"left the board\" }"
        ),
        key_table(DAN.1, "Dan", &["board"], "software", "")
    );
    let e = refused(&keys, gov);
    only(
        &e,
        "governance.toml",
        5,
        "which has 1 approver who can count (4 keys in keys.toml, 1 revoked, 1 held in software, \
         which this group does not count (require_hardware = true))",
    );
    // Without the hardware requirement Dan counts, and two holders meet the threshold.
    let soft = gov.replace("require_hardware = true", "require_hardware = false");
    Policy::from_strs(&keys, &soft).unwrap();
}

#[test]
fn quorum_shapes() {
    let keys = one_key("");
    let e = refused(&keys, "[groups.board]\n[kinds.motion]\nquorum = []\n");
    only(
        &e,
        "governance.toml",
        3,
        "`quorum` in [kinds.\"motion\"] is empty",
    );
    let e = refused(
        &keys,
        "[groups.board]\n[kinds.motion]\nquorum = \"board\"\n",
    );
    only(&e, "governance.toml", 3, "must be a list of");
    let e = refused(
        &keys,
        "[groups.board]\n[kinds.motion]\nquorum = [\n  { group = \"board\", threshold = 1 },\n  { group = \"board\", threshold = 1 },\n]\n",
    );
    only(
        &e,
        "governance.toml",
        5,
        "group `board` is already required at line 4",
    );
    let e = refused(
        &keys,
        "[groups.board]\n[kinds.motion]\nquorum = [{ group = \"board\" }]\n",
    );
    only(&e, "governance.toml", 3, "missing field `threshold`");
    let e = refused(
        &keys,
        "[groups.board]\n[kinds.motion]\nquorum = [{ group = \"board\", threshold = \"two\" }]\n",
    );
    only(
        &e,
        "governance.toml",
        3,
        "`threshold` must be an integer, not a string",
    );
}

#[test]
fn kind_and_group_names_are_checked() {
    let gov = "[groups.Board]\n[groups.board]\n\n[kinds.Motion]\nquorum = [{ group = \"board\", threshold = 1 }]\n";
    let e = refused(&one_key(""), gov);
    assert_eq!(e.problems.len(), 2, "{e}");
    assert!(
        e.has("governance.toml", 1, "group name \"Board\" is not allowed"),
        "{e}"
    );
    assert!(
        e.has(
            "governance.toml",
            4,
            "decision kind \"Motion\" is not a valid kind"
        ),
        "{e}"
    );
}

#[test]
fn default_rule() {
    let keys = one_key("");
    let with_default = |d: &str| format!("{GOVERNANCE}\n[default]\n{d}");
    // GOVERNANCE is 5 lines, then a blank line 6, [default] on line 7, its fields from line 8.
    let p = Policy::from_strs(
        &keys,
        &with_default("action = \"quorum\"\nquorum = [{ group = \"board\", threshold = 1 }]\n"),
    )
    .unwrap();
    assert!(matches!(p.default_rule(), DefaultRule::Quorum(q) if q.requirements.len() == 1));
    assert_eq!(
        p.rule_for("anything.else").map(|(s, _)| s),
        Some(RuleSource::Default)
    );

    let p = Policy::from_strs(&keys, &with_default("action = \"refuse\"\n")).unwrap();
    assert_eq!(p.default_rule(), &DefaultRule::Refuse);

    let e = refused(&keys, &with_default("action = \"quorum\"\n"));
    only(&e, "governance.toml", 8, "needs a `quorum` list");
    let e = refused(
        &keys,
        &with_default("action = \"refuse\"\nquorum = [{ group = \"board\", threshold = 1 }]\n"),
    );
    only(
        &e,
        "governance.toml",
        9,
        "`quorum` given but `action` is \"refuse\"",
    );
    let e = refused(&keys, &with_default("action = \"accept\"\n"));
    only(
        &e,
        "governance.toml",
        8,
        "unknown default action \"accept\"",
    );
    let e = refused(
        &keys,
        &with_default("quorum = [{ group = \"board\", threshold = 9 }]\n"),
    );
    only(
        &e,
        "governance.toml",
        7,
        "missing field `action` in [default]",
    );
    let e = refused(
        &keys,
        &with_default("action = \"quorum\"\nquorum = [{ group = \"board\", threshold = 9 }]\n"),
    );
    only(
        &e,
        "governance.toml",
        9,
        "threshold 9 is larger than group `board`",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let keys = format!(
        "{}{}{}",
        notary_block(),
        // Line 6: unknown held (11), unknown group (10), valid_until before valid_from (13).
        key_table(
            ALICE.1,
            "Alice",
            &["board", "auditors"],
            "floppy",
            "valid_until = 2020-01-01T00:00:00Z"
        ),
        // Line 14: bad base64 (16), unknown field (21).
        key_table("%%%", "Carol", &["board"], "software", "nickname = \"C\"")
    );
    let gov = r#"[groups.board]
[groups.treasury]

[kinds.motion]
quorum = [{ group = "board", threshold = 0 }]

[kinds."budget.approval"]
quorum = [
  { group = "board", threshold = 1 },
  { group = "treasury", threshold = 1 },
  { group = "audit", threshold = 1 },
]
"#;
    let e = refused(&keys, gov);
    let got: Vec<(String, usize)> = e
        .problems
        .iter()
        .map(|p| (p.file.display().to_string(), p.line))
        .collect();
    let k = |l| ("keys.toml".to_owned(), l);
    let g = |l| ("governance.toml".to_owned(), l);
    assert_eq!(
        got,
        vec![k(10), k(11), k(13), k(16), k(21), g(5), g(10), g(11)],
        "{e}"
    );
    assert!(e.has("keys.toml", 10, "unknown group `auditors`"), "{e}");
    assert!(
        e.has("keys.toml", 11, "unknown `held` value \"floppy\""),
        "{e}"
    );
    assert!(e.has("keys.toml", 13, "is not after valid_from"), "{e}");
    assert!(e.has("keys.toml", 16, "invalid base64"), "{e}");
    assert!(e.has("keys.toml", 21, "unknown field `nickname`"), "{e}");
    assert!(e.has("governance.toml", 5, "threshold 0"), "{e}");
    // Treasury has no keys at all; Alice's broken entry still counts for `board`, so the
    // broken entry does not also show up as a too-small board.
    assert!(
        e.has("governance.toml", 10, "larger than group `treasury`"),
        "{e}"
    );
    assert!(e.has("governance.toml", 11, "unknown group `audit`"), "{e}");

    let text = e.to_string();
    assert!(text.starts_with("policy refused: 8 problems\n"), "{text}");
    assert!(
        text.contains("\nkeys.toml:11: unknown `held` value \"floppy\""),
        "{text}"
    );
    assert!(
        text.contains("\ngovernance.toml:11: unknown group `audit`"),
        "{text}"
    );
}

#[test]
fn load_reads_both_files_from_a_directory_and_ignores_others() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keys.toml"), one_key("")).unwrap();
    std::fs::write(dir.path().join("governance.toml"), GOVERNANCE).unwrap();
    // verification.toml belongs to the cross-verifier; this loader does not read it.
    std::fs::write(dir.path().join("verification.toml"), "this is [not toml").unwrap();
    let p = Policy::load(dir.path()).unwrap();
    assert!(p.key(&ALICE.0.parse().unwrap()).is_some());

    // Problems name the files by their path in the directory.
    std::fs::write(
        dir.path().join("governance.toml"),
        "[groups.board]\nx = 1\n",
    )
    .unwrap();
    let e = Policy::load(dir.path()).unwrap_err();
    assert_eq!(e.problems.len(), 1, "{e}");
    assert_eq!(e.problems[0].file, dir.path().join("governance.toml"));
    assert_eq!(e.problems[0].line, 2);
}

#[test]
fn missing_or_unreadable_files_are_problems_on_line_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("keys.toml"),
        format!(
            "{}{}",
            notary_block(),
            key_table("%", "A", &["board"], "software", "")
        ),
    )
    .unwrap();
    let e = Policy::load(dir.path()).unwrap_err();
    // The missing governance.toml does not hide keys.toml's own problem.
    assert_eq!(e.problems.len(), 2, "{e}");
    assert!(e.has("keys.toml", 8, "invalid base64"), "{e}");
    assert!(e.has("governance.toml", 0, "no such file"), "{e}");
    assert!(e.to_string().contains(&format!(
        "\n{}: cannot read",
        dir.path().join("governance.toml").display()
    )));

    std::fs::write(
        dir.path().join("governance.toml"),
        b"[groups.board]\n\xff\n",
    )
    .unwrap();
    let e = Policy::load(dir.path()).unwrap_err();
    assert!(e.has("governance.toml", 0, "not UTF-8"), "{e}");
}

fn shipped() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

#[test]
fn the_shipped_example_policies_are_valid() {
    let p = match Policy::load(&shipped()) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(p.notary().key_id.as_str(), NOTARY.0);
    assert_eq!(p.keys().count(), 6);
    assert!(p.keys().all(|k| k.held.is_hardware()));
    assert_eq!(
        p.keys().filter(|k| k.revoked.is_some()).count(),
        1,
        "the example shows one revoked key"
    );
    let bob = p.key(&BOB_P256.0.parse().unwrap()).unwrap();
    assert_eq!(bob.alg(), triplicate_core::Algorithm::EcdsaP256);
    for g in ["board", "treasury"] {
        assert!(p.group(g).unwrap().require_hardware, "{g}");
    }
    for kind in ["motion", "policy.change", "budget.approval", "key.rotation"] {
        assert!(p.quorum(kind).is_some(), "{kind}");
    }
    let budget: Vec<(String, usize)> = p
        .quorum("budget.approval")
        .unwrap()
        .requirements
        .iter()
        .map(|r| (r.group.clone(), r.threshold))
        .collect();
    assert_eq!(
        budget,
        vec![("board".to_owned(), 2), ("treasury".to_owned(), 1)]
    );
    assert_eq!(p.default_rule(), &DefaultRule::Refuse);
}

#[test]
fn the_shipped_example_key_ids_are_derived_from_their_keys() {
    // Every stated key_id is checked on load; this guards against a future edit dropping them.
    let text = std::fs::read_to_string(shipped().join("keys.toml")).unwrap();
    let stated = text.lines().filter(|l| l.starts_with("key_id = ")).count();
    assert_eq!(stated, 7, "notary and six approver keys state their ids");
}
