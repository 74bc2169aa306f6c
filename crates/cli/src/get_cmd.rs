//! `triplicate get` and `triplicate list`: read decisions back from the service.
//!
//! `get` checks the server's history first (`client::Session`), then verifies the fresh receipt
//! it returns offline with the pinned notary key. `list` reads the projection's pages (newest
//! first) and prints them; it trusts nothing and remembers nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Value};

use crate::client::{run_client, write_atomic, Client, Session, StateDir, TokenArgs, Untrusted};
use crate::submit_cmd::{checked_receipt, print_receipt_lines, print_refusal};

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The service's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "TRIPLICATE_URL")]
    pub url: String,
    #[command(flatten)]
    pub token: TokenArgs,
    /// The decision id (a UUID).
    pub id: String,
    /// Save the verified receipt (with its fresh inclusion proof) here.
    #[arg(long)]
    pub receipt_out: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The service's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "TRIPLICATE_URL")]
    pub url: String,
    #[command(flatten)]
    pub token: TokenArgs,
    /// Only decisions of this kind (e.g. `budget.approval`).
    #[arg(long)]
    pub kind: Option<String>,
    /// Recorded at or after this time (RFC 3339).
    #[arg(long, value_name = "T")]
    pub from: Option<String>,
    /// Recorded before this time (RFC 3339).
    #[arg(long, value_name = "T")]
    pub to: Option<String>,
    /// Only decisions this key (key id, 16 hex digits) approved.
    #[arg(long, value_name = "KEYID")]
    pub approver: Option<String>,
    /// Words that must all appear in the title.
    #[arg(long, value_name = "TEXT")]
    pub q: Option<String>,
    /// Continue after this cursor (the `next` of the previous page).
    #[arg(long, value_name = "C")]
    pub cursor: Option<String>,
    /// Records per page (the service's default when absent).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print the page as JSON ({"decisions": […], "next": …}) instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run_get(a: GetArgs) -> anyhow::Result<ExitCode> {
    run_client(a.json, get(a))
}

pub fn run_list(a: ListArgs) -> anyhow::Result<ExitCode> {
    run_client(a.json, list(a))
}

async fn get(a: GetArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&a.url, a.token.resolve()?)?;
    let dir = StateDir::locate()?;
    let mut session = Session::open(&client, &dir).await?;
    let reply = client.decision(a.id.trim()).await?;
    if !reply.is_success() {
        session.save()?;
        print_refusal(&reply, a.json);
        return Ok(ExitCode::from(1));
    }
    let (receipt, verified) = checked_receipt(&reply.body, &session)?;
    if receipt.record.decision.id.to_string() != a.id.trim().to_ascii_lowercase() {
        return Err(Untrusted(format!(
            "asked for decision {}, the server answered with decision {}",
            a.id, receipt.record.decision.id
        ))
        .into());
    }
    session.observe(&client, &receipt.checkpoint).await?;
    if let Some(out) = &a.receipt_out {
        let mut text = serde_json::to_vec_pretty(&receipt)?;
        text.push(b'\n');
        write_atomic(out, &text)?;
    }
    session.save()?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "receipt": receipt,
                "stores": reply.body["stores"],
                "verified": {
                    "tree_size": verified.checkpoint.size,
                    "root": crate::ledger_cmd::b64(&verified.checkpoint.root),
                    "origin": verified.checkpoint.origin,
                },
                "server": session.to_json(),
                "receipt_out": a.receipt_out,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let r = &receipt.record;
    let d = &r.decision;
    println!("decision {} (seq {})", d.id, r.seq);
    println!("  kind:       {}", d.kind);
    println!("  title:      {}", d.title);
    println!("  proposed:   {}", d.proposed_at);
    println!("  recorded:   {}", r.recorded_at);
    if let Some(s) = d.supersedes {
        println!("  supersedes: {s}");
    }
    for a in &r.approvals {
        println!(
            "  approval:   key {} ({}) signed at {}",
            a.key_id, a.alg, a.signed_at
        );
    }
    for att in &d.attachments {
        println!(
            "  attachment: {} {} ({} bytes, sha256 {})",
            att.name.as_deref().unwrap_or("(unnamed)"),
            att.media_type,
            att.size,
            att.sha256
        );
    }
    println!("  body:       {}", first_line(&d.body));
    print_receipt_lines(&receipt, &verified, &reply.body["stores"], &session);
    if let Some(out) = &a.receipt_out {
        println!("  saved to:   {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    let mut out: String = line.chars().take(100).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

async fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&a.url, a.token.resolve()?)?;
    let mut query: Vec<(&str, String)> = Vec::new();
    for (name, v) in [
        ("kind", &a.kind),
        ("from", &a.from),
        ("to", &a.to),
        ("approver", &a.approver),
        ("q", &a.q),
        ("cursor", &a.cursor),
    ] {
        if let Some(v) = v {
            query.push((name, v.clone()));
        }
    }
    if let Some(l) = a.limit {
        query.push(("limit", l.to_string()));
    }
    let reply = client.list(&query).await?;
    if !reply.is_success() {
        print_refusal(&reply, a.json);
        return Ok(ExitCode::from(1));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reply.body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let records = reply.body["decisions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if records.is_empty() {
        println!("no decisions match");
    } else {
        println!(
            "{:>6}  {:<30}  {:<20}  {:<36}  {:>3}  TITLE",
            "SEQ", "RECORDED AT", "KIND", "ID", "APP"
        );
        for r in &records {
            println!("{}", row(r));
        }
    }
    if let Some(next) = reply.body["next"].as_str() {
        println!();
        println!("more: add --cursor {next}");
    }
    Ok(ExitCode::SUCCESS)
}

fn row(r: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    let d = &r["decision"];
    format!(
        "{:>6}  {:<30}  {:<20}  {:<36}  {:>3}  {}",
        r["seq"]
            .as_u64()
            .map_or_else(|| "?".to_owned(), |n| n.to_string()),
        s(&r["recorded_at"]),
        s(&d["kind"]),
        s(&d["id"]),
        r["approvals"].as_array().map_or(0, |a| a.len()),
        s(&d["title"])
    )
}
