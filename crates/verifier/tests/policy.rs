//! `verification.toml`: the example in `policies/` loads, and a broken file is refused with
//! every problem and its line.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use triplicate_verifier::{Class, VerificationPolicy};

#[test]
fn the_example_policy_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let p = VerificationPolicy::load(&dir).unwrap();
    assert_eq!(p.grace_period, Duration::from_secs(300));
    assert!(p.reverify_signatures);
    assert!(p.repairs_automatically(Class::Minor));
    assert!(!p.repairs_automatically(Class::Major));
    assert_eq!(p.incremental.expression(), "*/5 * * * *");
    assert_eq!(p.full_sweep.expression(), "0 30 3 * * Sun");
    assert_eq!(p.rolling_window, 1000);
    assert_eq!(p.webhooks.len(), 1);
    assert_eq!(
        p.webhooks[0].secret_env.as_deref(),
        Some("TRIPLICATE_WEBHOOK_SECRET")
    );
    // Sunday 2026-11-29 03:30 UTC is the next full sweep after Saturday noon.
    let sat: triplicate_core::Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
    assert_eq!(
        p.full_sweep.next_after(sat).unwrap().to_string(),
        "2026-11-29T03:30:00Z"
    );
}

#[test]
fn an_empty_file_is_the_defaults() {
    let p = VerificationPolicy::from_toml("").unwrap();
    assert_eq!(p.grace_period, Duration::from_secs(300));
    assert!(!p.reverify_signatures);
    assert!(p.webhooks.is_empty());
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let text = r#"grace_period = "5 minutes"
reverify_signatures = "yes"
colour = "blue"

[repair]
automatic = ["minor", "major", "sometimes"]

[schedule]
incremental = "*/5 * * *"
full = "0 61 3 * * *"
rolling_window = -1

[[webhook]]
url = "ftp://example.org"
secret_env = "not a name"

[[webhook]]
classes = ["critical"]
"#;
    let e = VerificationPolicy::from_toml(text).unwrap_err();
    let lines: Vec<usize> = e.problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![1, 2, 3, 6, 6, 9, 10, 11, 14, 15, 17], "{e}");
    assert!(e.has("verification.toml", 1, "unknown unit"));
    assert!(e.has("verification.toml", 2, "must be true or false"));
    assert!(e.has("verification.toml", 3, "unknown field `colour`"));
    assert!(e.has("verification.toml", 6, "wait for an auditor"));
    assert!(e.has("verification.toml", 6, "unknown class \"sometimes\""));
    assert!(e.has("verification.toml", 9, "has 4 fields"));
    assert!(e.has("verification.toml", 10, "not a cron expression"));
    assert!(e.has("verification.toml", 11, "must not be negative"));
    assert!(e.has("verification.toml", 14, "must start with https://"));
    assert!(e.has("verification.toml", 15, "environment variable name"));
    assert!(e.has("verification.toml", 17, "missing field `url`"));
    // Display is one `file:line: reason` per problem.
    assert!(e.to_string().contains("verification.toml:9: `incremental`"));
}

#[test]
fn a_syntax_error_names_its_line() {
    let e = VerificationPolicy::from_toml("grace_period = \"5m\"\n[schedule\n").unwrap_err();
    assert!(
        e.problems
            .iter()
            .any(|p| p.line == 2 && p.reason.contains("TOML syntax error")),
        "{e}"
    );
}
