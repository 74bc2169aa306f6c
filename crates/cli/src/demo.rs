//! `triplicate demo`: the guided tour, over HTTP, on the embedded defaults.
//!
//! 1. the development set-up (a software notary, three software approvers, a policy that
//!    accepts them, an admin token) in the data directory;
//! 2. the service, started in this process on 127.0.0.1:0 (`triplicate_server::start`);
//! 3. N sample decisions, each signed by two approvers and submitted with `POST /v1/decisions`;
//!    every receipt verified offline with the notary key the service publishes;
//! 4. each decision read back with `GET /v1/decisions/{id}` (a fresh receipt against the latest
//!    checkpoint), verified, and saved in `<data-dir>/receipts/<seq>.json`;
//! 5. the three stores shown to agree: every ledger entry compared with the stream's event and
//!    with the record bytes the projection re-derives from its columns;
//! 6. each store tampered with, the cross-check finding it, the minor case repaired
//!    automatically, the major cases proposed and approved by the development auditor, the
//!    critical case freezing writes, and a clean run at the end (`demo_crosscheck.rs`).
//!
//! Without `--data-dir` the tour runs on a scratch directory that is removed afterwards; with
//! it the data stays, so `triplicate serve --data-dir D` can be started on it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::json;
use triplicate_core::{Receipt, Submission};
use triplicate_keys::{note::note_verifier_key, Signer};
use triplicate_ledger::receipt::verify_receipt;
use triplicate_projection::Projection;
use triplicate_server::setup::{DevPaths, ProjectionChoice, StreamChoice, DEV_ORIGIN};
use triplicate_server::{Running, ServeConfig, ServiceOptions};
use triplicate_stream::EventStream;

use crate::client::{describe_problem, Client, Secret};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the data here (ledger, stream, projection, development keys, receipts) so
    /// `triplicate serve --data-dir D` can run on it afterwards. Default: a scratch directory,
    /// removed at the end.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How many decisions to submit (`--count` is the old name).
    #[arg(long, visible_alias = "count", default_value_t = 3)]
    pub records: u64,
    /// Checkpoint origin for a new ledger.
    #[arg(long, default_value = DEV_ORIGIN)]
    pub origin: String,
    /// Print a summary object instead of the tour.
    #[arg(long)]
    pub json: bool,
    /// Stop after the stores are shown to agree: no cross-check runs, no tampering (each run
    /// appends an audit record to the ledger, so the ledger then holds only the decisions).
    #[arg(long)]
    pub no_tamper: bool,
    /// Sign with hardware keys: the notary on SoftHSM2 (Ed25519), the approvers on the PIV
    /// card and on SoftHSM2, a board that requires hardware keys. Needs the stand-ins of
    /// ../shared/tools/hwtoken up and their `env` sourced (or real tokens in HWTOKEN_*).
    #[arg(long)]
    pub hardware: bool,
    /// Keep the event stream in NATS JetStream at these server URLs (as `serve --stream-url`;
    /// end with `?stream=NAME` to pick the JetStream stream) instead of `<data-dir>/stream.db`.
    #[arg(long, env = "TRIPLICATE_STREAM_URL", conflicts_with = "hardware")]
    pub stream_url: Option<String>,
}

/// What the tour established, for `--json`.
#[derive(Debug, Default)]
struct Summary {
    submitted: u64,
    verified: u64,
    ledger: u64,
    stream: u64,
    projection: u64,
    url: String,
    receipts: Vec<PathBuf>,
    /// The cross-check runs of the tamper tour.
    runs: Vec<serde_json::Value>,
    /// The closing recovery drill's report.
    drill: Option<serde_json::Value>,
}

/// Prints tour lines unless `--json` asked for the summary only.
pub(crate) struct Tour {
    quiet: bool,
}

impl Tour {
    pub(crate) fn say(&self, line: impl AsRef<str>) {
        if !self.quiet {
            println!("{}", line.as_ref());
        }
    }
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let scratch = match &args.data_dir {
        Some(_) => None,
        None => Some(tempfile::tempdir().context("create a scratch data directory")?),
    };
    let data_dir = match (&args.data_dir, &scratch) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().to_owned(),
        (None, None) => unreachable!("a scratch directory exists when no --data-dir is given"),
    };
    std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let tour = Tour { quiet: args.json };
    let summary = rt.block_on(async {
        let (running, keys) = if args.hardware {
            let hw = crate::demo_hardware::start(&data_dir, &args.origin).await?;
            let keys = Keys {
                notary: hw.notary_uri.clone(),
                policy: data_dir.join("policies-hardware"),
                approvers: hw.approvers,
            };
            (hw.running, keys)
        } else {
            let stream = match &args.stream_url {
                Some(url) => {
                    StreamChoice::parse(url, Default::default()).map_err(anyhow::Error::msg)?
                }
                None => StreamChoice::Sqlite,
            };
            let running = start(&data_dir, &args.origin, stream).await?;
            let paths = DevPaths::new(&data_dir);
            let keys = Keys {
                notary: paths.keys.join("notary.pem").display().to_string(),
                policy: paths.policies.clone(),
                approvers: (1..=running.approvers.len())
                    .map(|i| {
                        let path = paths.approver(i);
                        let key = triplicate_keys::SoftwareSigner::from_pem_file(&path)
                            .with_context(|| format!("read {}", path.display()))?;
                        Ok((
                            path.display().to_string(),
                            std::sync::Arc::new(key) as std::sync::Arc<dyn Signer>,
                        ))
                    })
                    .collect::<anyhow::Result<_>>()?,
            };
            (running, keys)
        };
        let out = tour_over_http(
            &running,
            &keys,
            &data_dir,
            args.records,
            !args.no_tamper,
            &tour,
        )
        .await;
        // Stopping flushes the ledger's tiles and checkpoint, so `ledger checkpoint` and
        // `serve` see everything afterwards.
        let stopped = running.stop().await.context("stop the service");
        let summary = out?;
        stopped?;
        anyhow::Ok(summary)
    })?;

    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "records_submitted": summary.submitted,
                "receipts_verified": summary.verified,
                "stores": {
                    "ledger": summary.ledger,
                    "stream": summary.stream,
                    "projection": summary.projection,
                },
                "agree": true,
                "runs": summary.runs,
                "drill": summary.drill,
                "url": summary.url,
                "data_dir": args.data_dir,
                "receipts": if args.data_dir.is_some() { json!(summary.receipts) } else { json!([]) },
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!();
    match &args.data_dir {
        Some(d) => {
            let first = summary
                .receipts
                .first()
                .map_or_else(|| d.join("receipts/0.json"), Clone::clone);
            println!("Next:");
            println!(
                "  triplicate verify receipt {} --notary-key {}",
                first.display(),
                d.join("notary.vkey").display()
            );
            println!(
                "  triplicate serve --data-dir {}   # the same data, on http://127.0.0.1:8080",
                d.display()
            );
            println!("  triplicate ledger fsck --data-dir {}", d.display());
        }
        None => {
            println!(
                "The scratch data directory is removed now; `triplicate demo --data-dir D` keeps it."
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn start(data_dir: &Path, origin: &str, stream: StreamChoice) -> anyhow::Result<Running> {
    triplicate_server::start(ServeConfig {
        data_dir: data_dir.to_owned(),
        listen: "127.0.0.1:0".parse().context("listen address")?,
        projection: ProjectionChoice::Sqlite,
        stream,
        origin: origin.to_owned(),
        options: ServiceOptions {
            scheduled_crosscheck: false,
            ..ServiceOptions::default()
        },
    })
    .await
    .map_err(|e| anyhow::anyhow!(e))
    .context("start the service")
}

/// The keys the tour signs with, and where they live (paths or URIs, PINs hidden).
struct Keys {
    notary: String,
    policy: PathBuf,
    approvers: Vec<(String, std::sync::Arc<dyn Signer>)>,
}

async fn tour_over_http(
    running: &Running,
    keys: &Keys,
    data_dir: &Path,
    records: u64,
    tamper: bool,
    tour: &Tour,
) -> anyhow::Result<Summary> {
    let url = format!("http://{}", running.addr);
    let client = Client::new(&url, Some(Secret::new(running.admin_token.clone())))?;
    anyhow::ensure!(
        keys.approvers.len() >= 2,
        "the set-up has fewer than two approvers"
    );
    let signers = [&keys.approvers[0].1, &keys.approvers[1].1];
    let shown = |s: &str| match triplicate_keys::KeySpec::parse(s) {
        Ok(spec) => spec.to_string(),
        Err(_) => s.to_owned(),
    };

    let notary = running.service.notary();
    let own_vkey = note_verifier_key(notary.name(), &notary.public_key())?;
    tour.say(format!(
        "1. Set-up in {} ({})",
        data_dir.display(),
        if keys.notary.starts_with("pkcs11:") {
            "hardware keys"
        } else {
            "software keys: for development only"
        }
    ));
    tour.say(format!(
        "   notary       {}  key id {} ({})",
        shown(&keys.notary),
        notary.key_id(),
        notary.algorithm()
    ));
    for (i, (at, a)) in keys.approvers.iter().enumerate() {
        tour.say(format!(
            "   approver {}   {}  key id {} ({})",
            i + 1,
            shown(at),
            a.key_id(),
            a.algorithm()
        ));
    }
    tour.say(format!(
        "   policy       {} (every kind: 2 of board)",
        keys.policy.display()
    ));

    tour.say(format!(
        "2. The service is listening on {url} (ledger, stream and projection in {})",
        data_dir.display()
    ));
    let published = client.notary_key().await?;
    anyhow::ensure!(
        published.note_verifier_key == own_vkey,
        "the service publishes notary key {} but signs with {own_vkey}",
        published.note_verifier_key
    );
    let vkey = published.note_verifier_key;
    let vkey_path = data_dir.join("notary.vkey");
    std::fs::write(&vkey_path, format!("{vkey}\n"))
        .with_context(|| format!("write {}", vkey_path.display()))?;
    tour.say(format!(
        "   GET /v1/keys/notary: {vkey} (saved in {})",
        vkey_path.display()
    ));

    tour.say(format!(
        "3. Submitting {records} decision{}, each signed by approvers 1 and 2 (POST /v1/decisions):",
        if records == 1 { "" } else { "s" }
    ));
    let start_size = running.service.ledger().tree_size();
    let mut summary = Summary {
        url: url.clone(),
        ..Summary::default()
    };
    let mut ids = Vec::new();
    for i in 0..records {
        let decision = crate::sample::decision(start_size + i)?;
        let approvals = signers
            .iter()
            .map(|s| crate::sample::approve(&decision, s.as_ref()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let body = serde_json::to_vec(&Submission {
            decision: decision.clone(),
            approvals,
        })?;
        let reply = client.submit(body).await?;
        anyhow::ensure!(
            reply.status == 201,
            "the service refused a demo decision: {}",
            describe_problem(reply.status, &reply.body)
        );
        let receipt = Receipt::from_json(reply.body["receipt"].to_string().as_bytes())
            .context("the service's receipt")?;
        let v = verify_receipt(&receipt, &vkey).context("verify the receipt offline")?;
        anyhow::ensure!(
            receipt.record.decision == decision,
            "the receipt is for another decision"
        );
        tour.say(format!(
            "   seq {:<4} 201  {:?}  receipt verified offline (entry {} of {})",
            receipt.seq, decision.title, v.seq, v.checkpoint.size
        ));
        ids.push(decision.id);
        summary.submitted += 1;
    }

    tour.say("4. Reading them back (GET /v1/decisions/{id}): fresh receipts against the latest checkpoint");
    let receipts_dir = data_dir.join("receipts");
    std::fs::create_dir_all(&receipts_dir).context("create the receipts directory")?;
    for id in &ids {
        let reply = client.decision(&id.to_string()).await?;
        anyhow::ensure!(
            reply.is_success(),
            "GET decision {id}: {}",
            describe_problem(reply.status, &reply.body)
        );
        let receipt = Receipt::from_json(reply.body["receipt"].to_string().as_bytes())
            .context("the service's receipt")?;
        verify_receipt(&receipt, &vkey).context("verify the fetched receipt offline")?;
        let path = receipts_dir.join(format!("{}.json", receipt.seq));
        std::fs::write(&path, serde_json::to_vec_pretty(&receipt)?)
            .with_context(|| format!("write {}", path.display()))?;
        tour.say(format!(
            "   seq {:<4} verified offline, stores: ledger {}, stream {}, projection {} -> {}",
            receipt.seq,
            reply.body["stores"]["ledger"].as_str().unwrap_or("?"),
            reply.body["stores"]["stream"].as_str().unwrap_or("?"),
            reply.body["stores"]["projection"].as_str().unwrap_or("?"),
            path.display()
        ));
        // Both receipts of this decision (the one handed out at submission and the fresh one)
        // verified offline.
        summary.verified += 1;
        summary.receipts.push(path);
    }

    let size = running.service.ledger().tree_size();
    wait_for_stores(running, size).await?;
    let (stream, projection) = compare_stores(running, size).await?;
    summary.ledger = size;
    summary.stream = stream;
    summary.projection = projection;
    tour.say(format!(
        "5. The three stores agree: the ledger's {size} entries, the stream's {stream} events and \
         the {projection} records the projection re-derives from its columns are the same bytes"
    ));
    if tamper {
        summary.runs = crate::demo_crosscheck::tour(running, data_dir, tour).await?;
        summary.drill = Some(drill(running, data_dir, tour).await?);
    }
    Ok(summary)
}

/// The closing recovery drill: `lose-projection` on a scratch copy of the demo's stores.
async fn drill(
    running: &Running,
    data_dir: &Path,
    tour: &Tour,
) -> anyhow::Result<serde_json::Value> {
    use triplicate_server::drill::{DrillOptions, Scenario};
    tour.say(
        "\nA recovery drill (lose-projection): the stores backed up, restored to a scratch copy, \
         the copy's projection removed, the loss detected by a cross-check, the projection \
         rebuilt from the ledger, and a full cross-check of the copy",
    );
    let options = DrillOptions {
        scratch_dir: Some(data_dir.join("drills")),
        ..DrillOptions::new(Scenario::LoseProjection)
    };
    std::fs::create_dir_all(data_dir.join("drills"))?;
    let out = running
        .drills
        .run(options)
        .await
        .context("run the lose-projection drill")?;
    let r = &out.report;
    for st in &r.steps {
        tour.say(format!(
            "   [{}] {:<44} {:>8.3} s  {}",
            if st.ok { "ok" } else { "!!" },
            st.name,
            st.seconds,
            st.detail
        ));
    }
    tour.say(format!(
        "   drill {}: {} of {} records back, detected in {}, recovered in {}, {} discrepancies \
         left: {}",
        r.drill_id,
        r.records_after,
        r.records_before,
        r.detect_seconds
            .map_or_else(|| "-".into(), |s| format!("{s:.3} s")),
        r.recover_seconds
            .map_or_else(|| "-".into(), |s| format!("{s:.3} s")),
        r.discrepancies_left,
        if r.passed { "PASSED" } else { "FAILED" }
    ));
    tour.say(format!(
        "   its report is signed by the notary, stored (GET /v1/drills/{}, /ui/drills) and its \
         digest is in the ledger at seq {}",
        r.drill_id,
        out.audit_seq.map_or_else(|| "-".into(), |s| s.to_string())
    ));
    anyhow::ensure!(r.passed, "the drill failed: {:?}", r.failure);
    Ok(serde_json::to_value(r)?)
}

/// Waits (up to 30 s) until the stream and the projection hold `size` records. The committer
/// writes them before answering while they keep up, so this returns at once unless one fell
/// behind and the catch-up worker is on it.
async fn wait_for_stores(running: &Running, size: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = running.service.health();
        if h.stream.size >= size && h.projection.size >= size {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the stores did not catch up with the ledger's {size} entries: stream {}, projection {}",
            h.stream.size,
            h.projection.size
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Compares every ledger entry with the stream's event at the same seq and with the bytes the
/// projection re-derives, and returns how many records the stream and the projection hold.
/// The verifier's rule holds here too: nothing stored is trusted as a hash, bytes are compared.
async fn compare_stores(running: &Running, size: u64) -> anyhow::Result<(u64, u64)> {
    const CHUNK: u64 = 4096;
    let service = &running.service;
    let ledger = service.ledger();
    let mut stream_count = 0u64;
    let mut projection_count = 0u64;
    let mut after = None;
    let mut at = 0u64;
    while at < size {
        let end = (at + CHUNK).min(size);
        let entries = ledger.entries(at, end).context("read the ledger")?;
        let projected = service
            .projection()
            .record_bytes(at, end)
            .await
            .context("read the projection")?;
        anyhow::ensure!(
            projected.len() as u64 == end - at,
            "the projection holds {} of the records {at}..{end}",
            projected.len()
        );
        for (i, p) in projected.iter().enumerate() {
            let seq = at + i as u64;
            anyhow::ensure!(p.seq == seq, "the projection skips seq {seq}");
            let bytes = p.bytes().with_context(|| {
                format!("the projection's rows for seq {seq} do not describe a record")
            })?;
            anyhow::ensure!(
                bytes == entries[i].as_slice(),
                "seq {seq}: the projection's re-derived bytes differ from the ledger's"
            );
            projection_count += 1;
        }
        let mut seq = at;
        while seq < end {
            let page = service
                .stream()
                .read_all(after, (end - seq) as usize)
                .await
                .context("read the stream")?;
            anyhow::ensure!(!page.events.is_empty(), "the stream ends before seq {seq}");
            for e in &page.events {
                if seq >= end {
                    break;
                }
                anyhow::ensure!(
                    e.event.seq == seq,
                    "the stream has seq {} where the ledger has {seq}",
                    e.event.seq
                );
                anyhow::ensure!(
                    e.event.record_bytes == entries[(seq - at) as usize],
                    "seq {seq}: the stream's event differs from the ledger's entry"
                );
                stream_count += 1;
                seq += 1;
                after = Some(e.position);
            }
        }
        at = end;
    }
    Ok((stream_count, projection_count))
}
