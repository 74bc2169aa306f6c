//! `triplicate admin …`: operator calls to a running service.

use std::process::ExitCode;

use clap::{Args, Subcommand};

/// `triplicate admin …`.
#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Accept writes again after the cross-verifier froze them (`POST /v1/admin/resume`).
    Resume(ResumeArgs),
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The service's base URL.
    #[arg(long)]
    pub url: String,
    /// An admin bearer token.
    #[arg(long, env = "TRIPLICATE_TOKEN", hide_env_values = true)]
    pub token: String,
}

pub fn run(cmd: AdminCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AdminCmd::Resume(a) => {
            let rt = crate::client::runtime()?;
            let url = format!("{}/v1/admin/resume", a.url.trim_end_matches('/'));
            let out = rt.block_on(async {
                let resp = reqwest::Client::new()
                    .post(&url)
                    .bearer_auth(&a.token)
                    .send()
                    .await?;
                let status = resp.status().as_u16();
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                Ok::<_, reqwest::Error>((status, body))
            });
            match out {
                Ok((200, body)) => {
                    match body["was_frozen"].as_str() {
                        Some(why) => println!("writes resumed (they were frozen: {why})"),
                        None => println!("writes were not frozen; nothing to resume"),
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Ok((status, body)) => {
                    eprintln!(
                        "error: POST {url}: {}",
                        crate::client::describe_problem(status, &body)
                    );
                    Ok(ExitCode::from(1))
                }
                Err(e) => {
                    eprintln!("error: POST {url}: {e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
    }
}
