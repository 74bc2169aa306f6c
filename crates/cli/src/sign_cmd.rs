//! `triplicate sign`: an approver adds their approval to a decision.
//!
//! The input is a bare decision or a submission (`{"decision": …, "approvals": […]}`) that
//! other approvers already signed; the output is the submission with one more approval, ready
//! for the next approver or for `triplicate submit`. The approval signs
//! [`triplicate_core::Approval::message`] of the decision's digest, which binds the key id,
//! the algorithm and `signed_at` (now) too. A decision that does not validate is never signed:
//! every problem is printed instead.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};
use triplicate_core::{Approval, Decision, Submission, ValidationError};

use crate::client::{fail, read_input, write_atomic, Unreadable};

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The approver's key: a pkcs11: URI, a yubikey: URI (e.g. `yubikey:slot=9c`), or a
    /// software key file (PKCS#8 PEM, as `triplicate keys generate` writes).
    #[arg(long)]
    pub key: String,
    /// A decision, or a submission {"decision": …, "approvals": […]} to add an approval to.
    pub decision: PathBuf,
    /// Write the submission here (atomically; may be the input file) instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print a JSON summary (with `--out`) instead of text. Without `--out` the submission
    /// itself is printed either way.
    #[arg(long)]
    pub json: bool,
}

/// Parses a decision or a submission, naming every problem with its field path as it is in
/// the input (`decision.title` in a submission, `title` in a bare decision).
fn parse(bytes: &[u8]) -> Result<(Decision, Vec<Approval>), ValidationError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ValidationError::one("(document)", e.to_string()))?;
    let is_submission = value
        .as_object()
        .is_some_and(|o| o.contains_key("decision"));
    if !is_submission {
        return every_problem(&value).map(|d| (d, Vec::new()));
    }
    let mut problems = Vec::new();
    if let Some(extra) = value
        .as_object()
        .into_iter()
        .flat_map(|o| o.keys())
        .find(|k| *k != "decision" && *k != "approvals")
    {
        problems.push(triplicate_core::Problem {
            field: extra.clone(),
            reason: "unknown field; a submission has `decision` and `approvals`".into(),
        });
    }
    let decision = match every_problem(&value["decision"]) {
        Ok(d) => Some(d),
        Err(e) => {
            problems.extend(e.problems.into_iter().map(|mut p| {
                p.field = if p.field.starts_with('(') {
                    "decision".to_owned()
                } else {
                    format!("decision.{}", p.field)
                };
                p
            }));
            None
        }
    };
    let mut approvals = Vec::new();
    match &value["approvals"] {
        Value::Null => {}
        Value::Array(list) => {
            for (i, a) in list.iter().enumerate() {
                match Approval::from_json(a.to_string().as_bytes()) {
                    Ok(a) => approvals.push(a),
                    Err(e) => problems.extend(e.problems.into_iter().map(|mut p| {
                        p.reason = strip_position(&p.reason).to_owned();
                        p.field = if p.field.starts_with('(') {
                            format!("approvals[{i}]")
                        } else {
                            format!("approvals[{i}].{}", p.field)
                        };
                        p
                    })),
                }
            }
        }
        _ => problems.push(triplicate_core::Problem {
            field: "approvals".into(),
            reason: "must be a list of approvals".into(),
        }),
    }
    match decision {
        Some(d) if problems.is_empty() => Ok((d, approvals)),
        _ => Err(ValidationError { problems }),
    }
}

/// `reason` without serde's trailing ` at line L column C`.
fn strip_position(reason: &str) -> &str {
    if let Some(at) = reason.rfind(" at line ") {
        let tail = &reason[at + " at line ".len()..];
        let mut parts = tail.split(" column ");
        let numeric = |s: Option<&str>| {
            s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        };
        if numeric(parts.next()) && numeric(parts.next()) && parts.next().is_none() {
            return &reason[..at];
        }
    }
    reason
}

/// Parses a decision, reporting every problem. Parsing stops at the first field whose JSON
/// does not fit its type (serde stops there), so each such field is noted and replaced by a
/// valid placeholder and the parse retried; the placeholders' fields are left out of what is
/// reported.
fn every_problem(value: &Value) -> Result<Decision, ValidationError> {
    if !value.is_object() {
        return Err(ValidationError::one(
            "(document)",
            "must be a JSON object: a decision, or a submission {\"decision\", \"approvals\"}",
        ));
    }
    let mut doc = value.clone();
    let mut problems: Vec<triplicate_core::Problem> = Vec::new();
    let mut patched: Vec<String> = Vec::new();
    let top = |field: &str| -> String {
        field
            .split(['.', '['])
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    for _ in 0..32 {
        let err = match Decision::from_json(doc.to_string().as_bytes()) {
            Ok(d) if problems.is_empty() => return Ok(d),
            Ok(_) => break,
            Err(e) => e,
        };
        let fresh: Vec<_> = err
            .problems
            .into_iter()
            .filter(|p| !patched.contains(&top(&p.field)))
            .collect();
        let [one] = fresh.as_slice() else {
            // Several at once: the decision parsed and these are its rule checks; all are
            // reported together, so there is nothing more to find.
            problems.extend(fresh);
            break;
        };
        let mut one = one.clone();
        // The position is in the re-serialised text this function parses, not the input's.
        one.reason = strip_position(&one.reason).to_owned();
        let field = top(&one.field);
        problems.push(one);
        let Some(obj) = doc.as_object_mut() else {
            break;
        };
        let placeholder = match field.as_str() {
            "id" => json!(uuid::Uuid::now_v7().to_string()),
            "kind" => json!("placeholder"),
            "title" => json!("placeholder"),
            "body" => json!(""),
            "payload" => json!({}),
            "proposed_at" => json!(triplicate_core::Timestamp::now().to_string()),
            // Optional fields and unknown ones: left out.
            _ => Value::Null,
        };
        if placeholder.is_null() {
            if obj.remove(&field).is_none() {
                break;
            }
        } else {
            obj.insert(field.clone(), placeholder);
        }
        patched.push(field);
    }
    Err(ValidationError { problems })
}

pub fn run(a: SignArgs) -> anyhow::Result<ExitCode> {
    let json_out = a.json;
    match sign(a) {
        Ok(code) => Ok(code),
        Err(e) => Ok(fail(&e, json_out)),
    }
}

fn sign(a: SignArgs) -> anyhow::Result<ExitCode> {
    let (_, signer) =
        crate::hwkey::open(&a.key, "approver").map_err(|e| Unreadable(format!("{e:#}")))?;
    let bytes = read_input(&a.decision)?;
    let (decision, mut approvals) = match parse(&bytes) {
        Ok(x) => x,
        Err(e) => {
            if a.json {
                println!(
                    "{}",
                    json!({
                        "signed": false,
                        "problems": e.problems.iter().map(|p| json!({"field": p.field, "reason": p.reason})).collect::<Vec<_>>(),
                    })
                );
            } else {
                println!(
                    "NOT SIGNED: {} is not a valid decision ({} problem{}):",
                    a.decision.display(),
                    e.problems.len(),
                    if e.problems.len() == 1 { "" } else { "s" }
                );
                for p in &e.problems {
                    println!("  {}: {}", p.field, p.reason);
                }
            }
            return Ok(ExitCode::from(1));
        }
    };
    if let Some(i) = approvals.iter().position(|x| x.key_id == signer.key_id()) {
        anyhow::bail!(
            "key {} ({}) already approved this decision (approval {i}); an approver signs once",
            signer.key_id(),
            signer.name()
        );
    }
    let approval = crate::sample::approve(&decision, signer.as_ref())?;
    let digest = decision.digest().context("decision digest")?;
    approvals.push(approval.clone());
    let submission = Submission {
        decision,
        approvals,
    };
    let mut text = serde_json::to_vec_pretty(&submission)?;
    text.push(b'\n');
    let summary = json!({
        "signed": true,
        "decision_id": submission.decision.id.to_string(),
        "decision_digest": hex::encode(digest),
        "key_id": signer.key_id().to_string(),
        "key_name": signer.name(),
        "alg": signer.algorithm().as_str(),
        "signed_at": approval.signed_at.to_string(),
        "approvals": submission.approvals.len(),
        "out": a.out,
    });
    let human = format!(
        "signed decision {} ({:?}) with key {} ({}) at {}; the submission now has {} approval{}",
        submission.decision.id,
        submission.decision.title,
        signer.key_id(),
        signer.name(),
        approval.signed_at,
        submission.approvals.len(),
        if submission.approvals.len() == 1 {
            ""
        } else {
            "s"
        }
    );
    match &a.out {
        Some(out) => {
            write_atomic(out, &text)?;
            if a.json {
                println!("{summary}");
            } else {
                println!("{human}");
                println!("written to {}", out.display());
            }
        }
        None => {
            // stdout is the submission; the summary goes with the logs.
            std::io::Write::write_all(&mut std::io::stdout(), &text).context("write stdout")?;
            tracing::info!(
                decision_id = %submission.decision.id,
                key_id = %signer.key_id(),
                approvals = submission.approvals.len(),
                "{human}"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_named_with_its_path() {
        let e =
            parse(br#"{"decision": {"id": "nope", "kind": "Bad Kind"}, "approvals": 3, "x": 1}"#)
                .unwrap_err();
        let fields: Vec<&str> = e.problems.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"x"), "{fields:?}");
        assert!(fields.contains(&"approvals"), "{fields:?}");
        assert!(
            fields.iter().any(|f| f.starts_with("decision")),
            "{fields:?}"
        );
    }
}
