//! `triplicate submit`: send a signed submission to the service and keep its receipt.
//!
//! Before sending, the server's history is checked against what this client saw before
//! (`client::Session`); the receipt that comes back is verified offline with the pinned notary
//! key, and its checkpoint checked against the same history, before it is saved or reported.
//! Exit 0 recorded (201) or already recorded (200), 1 refused or untrusted, 2 unreachable or
//! unreadable.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Value};
use triplicate_core::{Receipt, Submission};
use triplicate_ledger::receipt::{verify_receipt, VerifiedReceipt};

use crate::client::{
    read_input, render_problem, run_client, write_atomic, Client, Reply, Session, StateDir,
    TokenArgs, Unreadable, Untrusted,
};

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The service's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "TRIPLICATE_URL")]
    pub url: String,
    #[command(flatten)]
    pub token: TokenArgs,
    /// The submission {"decision": …, "approvals": […]}, as `triplicate sign` writes it.
    pub submission: PathBuf,
    /// Save the verified receipt here.
    #[arg(long)]
    pub receipt_out: Option<PathBuf>,
    /// Print JSON (the receipt and the per-store status, or the problem) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: SubmitArgs) -> anyhow::Result<ExitCode> {
    run_client(a.json, submit(a))
}

async fn submit(a: SubmitArgs) -> anyhow::Result<ExitCode> {
    let bytes = read_input(&a.submission)?;
    serde_json::from_slice::<Value>(&bytes)
        .map_err(|e| Unreadable(format!("{} is not JSON: {e}", a.submission.display())))?;
    // Parsed locally only to check that the receipt is for this decision; the service judges.
    let local = Submission::from_json(&bytes).ok();
    let client = Client::new(&a.url, a.token.resolve()?)?;
    let dir = StateDir::locate()?;
    let mut session = Session::open(&client, &dir).await?;
    let reply = client.submit(bytes).await?;
    if !reply.is_success() {
        // The server proved its history; the refusal is about the submission.
        session.save()?;
        print_refusal(&reply, a.json);
        return Ok(ExitCode::from(1));
    }
    let (receipt, verified) = checked_receipt(&reply.body, &session)?;
    if let Some(s) = &local {
        if receipt.record.decision != s.decision {
            return Err(Untrusted(format!(
                "the receipt is for decision {} ({:?}), not the one submitted ({})",
                receipt.record.decision.id, receipt.record.decision.title, s.decision.id
            ))
            .into());
        }
    }
    session.observe(&client, &receipt.checkpoint).await?;
    if let Some(out) = &a.receipt_out {
        let mut text = serde_json::to_vec_pretty(&receipt)?;
        text.push(b'\n');
        write_atomic(out, &text)?;
    }
    session.save()?;
    let created = reply.status == 201;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "status": reply.status,
                "outcome": if created { "created" } else { "already_recorded" },
                "seq": receipt.seq,
                "decision_id": receipt.record.decision.id.to_string(),
                "leaf_hash": crate::ledger_cmd::b64(&receipt.leaf_hash),
                "stores": reply.body["stores"],
                "verified": {
                    "tree_size": verified.checkpoint.size,
                    "root": crate::ledger_cmd::b64(&verified.checkpoint.root),
                    "origin": verified.checkpoint.origin,
                },
                "server": session.to_json(),
                "receipt_out": a.receipt_out,
                "receipt": receipt,
            }))?
        );
    } else {
        println!(
            "{}: seq {}, decision {} ({:?})",
            if created {
                "RECORDED (201)"
            } else {
                "ALREADY RECORDED (200, the original receipt)"
            },
            receipt.seq,
            receipt.record.decision.id,
            receipt.record.decision.title
        );
        print_receipt_lines(&receipt, &verified, &reply.body["stores"], &session);
        if let Some(out) = &a.receipt_out {
            println!("  saved to:   {}", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The receipt in a 200/201 answer (`{"receipt": …, "stores": …}`), verified offline with the
/// pinned notary key.
pub fn checked_receipt(
    body: &Value,
    session: &Session,
) -> anyhow::Result<(Receipt, VerifiedReceipt)> {
    let receipt = Receipt::from_json(body["receipt"].to_string().as_bytes())
        .map_err(|e| Untrusted(format!("the server's receipt is malformed: {e}")))?;
    let verified = verify_receipt(&receipt, &session.vkey).map_err(|e| {
        Untrusted(format!(
            "the server's receipt does not verify offline with the pinned notary key: {e}"
        ))
    })?;
    Ok((receipt, verified))
}

/// The lines `submit` and `get` print about a verified receipt.
pub fn print_receipt_lines(
    receipt: &Receipt,
    verified: &VerifiedReceipt,
    stores: &Value,
    session: &Session,
) {
    println!(
        "  leaf hash:  {}",
        crate::ledger_cmd::b64(&receipt.leaf_hash)
    );
    println!(
        "  receipt:    verified offline: entry {} of the tree of {} entries with root {} ({})",
        verified.seq,
        verified.checkpoint.size,
        crate::ledger_cmd::b64(&verified.checkpoint.root),
        verified.checkpoint.origin
    );
    let state = |s: &str| stores[s].as_str().unwrap_or("unknown").to_owned();
    println!(
        "  stores:     ledger {}, stream {}, projection {}",
        state("ledger"),
        state("stream"),
        state("projection")
    );
    println!("  server:     {}", session.describe());
}

/// A refusal, for people or as `{"status", "problem"}`.
pub fn print_refusal(reply: &Reply, json: bool) {
    if json {
        println!(
            "{}",
            json!({ "status": reply.status, "problem": reply.body })
        );
    } else {
        println!("{}", render_problem(reply.status, &reply.body));
    }
}
