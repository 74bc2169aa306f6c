//! `triplicate bench submit`: a load generator for the write path over HTTP.
//!
//! Signs N realistic decisions (two approvals each by default) before the clock starts, then
//! submits them with C requests in flight and reports throughput and latency percentiles
//! (submit → receipt with inclusion proof, as the client sees it). Without `--url` the service
//! runs in this process on a temporary data directory, sharing the machine's cores with the
//! load generator, as a single-box deployment would. A sample of the receipts is verified
//! offline afterwards. Timings are reported, never asserted.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use triplicate_core::{Receipt, Submission};
use triplicate_keys::SoftwareSigner;
use triplicate_ledger::receipt::verify_receipt;
use triplicate_server::setup::{DevPaths, ProjectionChoice, DEV_ORIGIN};
use triplicate_server::{ServeConfig, ServiceOptions};

use crate::client::{describe_problem, fail, Client, Secret, TokenArgs, Unreadable};

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Sign and submit realistic decisions concurrently over HTTP; report throughput and
    /// latency percentiles.
    Submit(SubmitBenchArgs),
}

#[derive(Debug, Args)]
pub struct SubmitBenchArgs {
    /// A running service. Without it the service is started in this process on a temporary
    /// data directory (embedded stores).
    #[arg(long)]
    pub url: Option<String>,
    #[command(flatten)]
    pub token: TokenArgs,
    /// An approver key file to sign with (repeat for each approver). Default: approvers 1 and
    /// 2 of the development set-up in --data-dir (with --url) or of the embedded service.
    #[arg(long = "key", value_name = "FILE")]
    pub keys: Vec<PathBuf>,
    /// With --url: the served data directory, whose development approver keys and admin token
    /// are used when --key and a token are not given.
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    pub data_dir: PathBuf,
    /// Decisions to submit.
    #[arg(long, default_value_t = 10_000)]
    pub records: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Open loop: start submission i at i/RATE seconds (decisions per second) instead of as
    /// fast as the service answers. Latency is then measured from each submission's scheduled
    /// start, so a service that falls behind shows it (no coordinated omission); give enough
    /// --concurrency that workers are free when a submission is due.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: BenchCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCmd::Submit(a) => {
            let json = a.json;
            Ok(submit(a).unwrap_or_else(|e| fail(&e, json)))
        }
    }
}

/// How many receipts are kept and verified offline after the run.
const RECEIPT_SAMPLE: u64 = 100;

/// What one worker saw.
#[derive(Debug, Default)]
struct Tally {
    latencies_us: Vec<u64>,
    statuses: std::collections::BTreeMap<u16, u64>,
    first_problem: Option<String>,
    transport_errors: u64,
    first_transport_error: Option<String>,
    receipts: Vec<Value>,
}

fn submit(a: SubmitBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        a.records > 0 && a.concurrency > 0,
        "--records and --concurrency must be positive"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async move {
        let scratch;
        let (url, signers, token, running) = match &a.url {
            Some(url) => {
                let signers = load_signers(&a.keys, &a.data_dir)?;
                let token = match a.token.resolve()? {
                    Some(t) => Some(t),
                    None => dev_token(&a.data_dir),
                };
                (url.clone(), signers, token, None)
            }
            None => {
                scratch = tempfile::tempdir().context("create a temporary data directory")?;
                let running = triplicate_server::start(ServeConfig {
                    data_dir: scratch.path().to_owned(),
                    listen: "127.0.0.1:0".parse().context("listen address")?,
                    projection: ProjectionChoice::Sqlite,
                    stream: Default::default(),
                    origin: DEV_ORIGIN.to_owned(),
                    options: ServiceOptions {
                        scheduled_crosscheck: false,
                        ..ServiceOptions::default()
                    },
                })
                .await
                .map_err(|e| anyhow::anyhow!(e))
                .context("start the embedded service")?;
                let signers = load_signers(&a.keys, scratch.path())?;
                let token = Some(Secret::new(running.admin_token.clone()));
                (
                    format!("http://{}", running.addr),
                    signers,
                    token,
                    Some(running),
                )
            }
        };
        let outcome = drive(&a, &url, signers, token).await;
        if let Some(r) = running {
            r.stop().await.context("stop the embedded service")?;
        }
        outcome
    })
}

fn load_signers(keys: &[PathBuf], data_dir: &Path) -> anyhow::Result<Vec<Arc<SoftwareSigner>>> {
    let files: Vec<PathBuf> = if keys.is_empty() {
        let paths = DevPaths::new(data_dir);
        vec![paths.approver(1), paths.approver(2)]
    } else {
        keys.to_vec()
    };
    files
        .iter()
        .map(|f| {
            SoftwareSigner::from_pem_file(f)
                .map(Arc::new)
                .map_err(|e| Unreadable(format!("read approver key {}: {e}", f.display())).into())
        })
        .collect()
}

fn dev_token(data_dir: &Path) -> Option<Secret> {
    let text = std::fs::read_to_string(DevPaths::new(data_dir).token).ok()?;
    let t = text.trim();
    (!t.is_empty()).then(|| Secret::new(t))
}

/// Signs `n` submissions on every core.
fn prepare(n: u64, signers: &[Arc<SoftwareSigner>]) -> anyhow::Result<Vec<Vec<u8>>> {
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get()) as u64;
    let chunk = n.div_ceil(threads.max(1)).max(1);
    let mut out = Vec::with_capacity(n as usize);
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> anyhow::Result<Vec<Vec<u8>>> {
                    let lo = (t * chunk).min(n);
                    let hi = ((t + 1) * chunk).min(n);
                    let mut v = Vec::with_capacity((hi - lo) as usize);
                    for i in lo..hi {
                        let decision = crate::sample::decision(i)?;
                        let approvals = signers
                            .iter()
                            .map(|k| crate::sample::approve(&decision, k.as_ref()))
                            .collect::<anyhow::Result<Vec<_>>>()?;
                        v.push(serde_json::to_vec(&Submission {
                            decision,
                            approvals,
                        })?);
                    }
                    Ok(v)
                })
            })
            .collect();
        for h in handles {
            out.extend(
                h.join()
                    .map_err(|_| anyhow::anyhow!("a signing thread panicked"))??,
            );
        }
        Ok(())
    })?;
    Ok(out)
}

fn progress(n: u64, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::new(n);
    if quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    } else if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {msg:<10} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

async fn drive(
    a: &SubmitBenchArgs,
    url: &str,
    signers: Vec<Arc<SoftwareSigner>>,
    token: Option<Secret>,
) -> anyhow::Result<ExitCode> {
    let client = Client::with_pool(url, token, a.concurrency)?;
    let notary = client.notary_key().await?;

    let bar = progress(a.records, a.json);
    bar.set_message("signing");
    let t = Instant::now();
    let bodies = {
        let signers = signers.clone();
        let n = a.records;
        tokio::task::spawn_blocking(move || prepare(n, &signers))
            .await
            .context("signing task")??
    };
    let prepare_secs = t.elapsed().as_secs_f64();
    let body_bytes: usize = bodies.iter().map(Vec::len).sum();

    bar.set_message("submitting");
    bar.reset();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let sample_every = (a.records / RECEIPT_SAMPLE).max(1) as usize;
    anyhow::ensure!(
        a.rate.is_none_or(|r| r.is_finite() && r > 0.0),
        "--rate must be a positive number of decisions per second"
    );
    let rate = a.rate;
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..a.concurrency.min(a.records as usize) {
        let (client, bodies, next, bar) =
            (client.clone(), bodies.clone(), next.clone(), bar.clone());
        workers.spawn(async move {
            let mut tally = Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let t = match rate {
                    Some(r) => {
                        let due = started + std::time::Duration::from_secs_f64(i as f64 / r);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                // The answer is parsed only for the receipts sampled and the first problem: the
                // generator shares the cores with the service it measures.
                match client.submit_raw(body.clone()).await {
                    Ok(reply) => {
                        tally.latencies_us.push(t.elapsed().as_micros() as u64);
                        *tally.statuses.entry(reply.status).or_default() += 1;
                        if reply.is_success() {
                            if i % sample_every == 0 {
                                let receipt = reply
                                    .json()
                                    .map(|mut v| v["receipt"].take())
                                    .unwrap_or(Value::Null);
                                tally.receipts.push(receipt);
                            }
                        } else if tally.first_problem.is_none() {
                            let body = reply.json().unwrap_or(Value::Null);
                            tally.first_problem = Some(describe_problem(reply.status, &body));
                        }
                    }
                    Err(e) => {
                        tally.transport_errors += 1;
                        if tally.first_transport_error.is_none() {
                            tally.first_transport_error = Some(format!("{e:#}"));
                        }
                    }
                }
                bar.inc(1);
            }
            tally
        });
    }
    let mut all = Tally::default();
    while let Some(t) = workers.join_next().await {
        let t = t.context("a submitting task panicked")?;
        all.latencies_us.extend(t.latencies_us);
        for (s, n) in t.statuses {
            *all.statuses.entry(s).or_default() += n;
        }
        all.first_problem = all.first_problem.take().or(t.first_problem);
        all.transport_errors += t.transport_errors;
        all.first_transport_error = all.first_transport_error.take().or(t.first_transport_error);
        all.receipts.extend(t.receipts);
    }
    let secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    // Verify the sampled receipts offline (not timed).
    let mut verified = 0u64;
    for r in &all.receipts {
        let receipt = Receipt::from_json(r.to_string().as_bytes())
            .context("a receipt from the service is malformed")?;
        verify_receipt(&receipt, &notary.note_verifier_key)
            .with_context(|| format!("the receipt for seq {} does not verify", receipt.seq))?;
        verified += 1;
    }

    all.latencies_us.sort_unstable();
    let lat = &all.latencies_us;
    let accepted: u64 = all
        .statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let refused: u64 = all
        .statuses
        .iter()
        .filter(|(s, _)| (400..500).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let failed = a.records - accepted - refused;
    let rate = accepted as f64 / secs;
    let mean = if lat.is_empty() {
        0.0
    } else {
        lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1000.0
    };
    let (p50, p90, p99) = (
        percentile(lat, 0.50),
        percentile(lat, 0.90),
        percentile(lat, 0.99),
    );
    let max = lat.last().map_or(0.0, |m| *m as f64 / 1000.0);
    let embedded = a.url.is_none();
    let approvals = signers.len();
    if a.json {
        println!(
            "{}",
            json!({
                "url": url,
                "embedded": embedded,
                "records": a.records,
                "concurrency": a.concurrency,
                "target_rate": a.rate,
                "approvals_per_decision": approvals,
                "mean_body_bytes": body_bytes / bodies.len().max(1),
                "prepare_seconds": prepare_secs,
                "seconds": secs,
                "decisions_per_second": rate,
                "accepted": accepted,
                "refused": refused,
                "failed": failed,
                "statuses": all.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
                "latency_ms": { "mean": mean, "p50": p50, "p90": p90, "p99": p99, "max": max },
                "receipts_verified": verified,
                "first_problem": all.first_problem,
                "first_transport_error": all.first_transport_error,
            })
        );
    } else {
        println!(
            "submitted:  {} decisions ({approvals} Ed25519 approvals each, {} bytes mean), {} in flight, to {url}{}",
            a.records,
            body_bytes / bodies.len().max(1),
            a.concurrency,
            if embedded { " (embedded in this process)" } else { "" }
        );
        if let Some(r) = a.rate {
            println!("open loop:  one submission every {:.3} ms (target {r:.0}/s); latency from each scheduled start", 1000.0 / r);
        }
        println!("signed in:  {prepare_secs:.2} s (before the clock started)");
        println!(
            "outcome:    {accepted} accepted, {refused} refused, {failed} failed ({})",
            all.statuses
                .iter()
                .map(|(s, n)| format!("{s}: {n}"))
                .chain(
                    (all.transport_errors > 0)
                        .then(|| format!("transport: {}", all.transport_errors))
                )
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("time:       {secs:.3} s = {rate:.0} decisions/s accepted");
        println!(
            "latency:    p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, max {max:.2} ms, mean {mean:.2} ms (submit -> receipt)"
        );
        println!("receipts:   {verified} sampled and verified offline");
        if let Some(p) = &all.first_problem {
            println!("first refusal: {p}");
        }
        if let Some(e) = &all.first_transport_error {
            println!("first transport error: {e}");
        }
    }
    Ok(if accepted == a.records {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
