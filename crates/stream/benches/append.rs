//! `cargo bench -p triplicate-stream`: appends realistic `DecisionRecorded` events (records of
//! ~1.2 KB built with `triplicate-core`: two approvals, a notary signature, a nested payload)
//! in batches to a fresh `stream.db`, and reports events/s next to baselines measured in the
//! same run, because this machine's disk and CPU vary from run to run:
//!
//! - *SQLite, row by row*: the same rows into the same schema (the real migration, indexes and
//!   triggers), same WAL and `synchronous=FULL`, one cached single-row `INSERT` per event and
//!   one transaction per batch — the ordinary way to use SQLite, without validation or checks.
//! - *raw file*: the same bytes (data and metadata) appended to a plain file with one
//!   `fdatasync` per batch — the least any durable store of these events must do.
//! - *validation alone* (parse, re-canonicalise, hash), on one thread and on every core: the
//!   CPU an append cannot avoid.
//!
//! Everything is measured in rounds (`BENCH_ROUNDS`), each round in the same order, and the
//! table gives the median over rounds. For each round the bench also reports how much CPU
//! other processes used while the append ran, and how much the append itself used (from
//! `/proc`; Linux only). On a shared machine that moves the numbers more than anything
//! measured here: validation keeps every core busy for most of an append, so an append slows
//! in proportion to the CPU others take.
//!
//! Then, once: idempotent re-appends, `read_all` paging and a subscription's catch-up.
//!
//! Environment: `BENCH_EVENTS` (100000), `BENCH_BATCH` (1000), `BENCH_ROUNDS` (3),
//! `BENCH_DIR` (a temporary directory under the system's; put it on the disk you want to
//! measure).

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use futures::StreamExt;
use triplicate_stream::fixtures::event;
use triplicate_stream::{AppendRequest, DecisionRecorded, EventStream, SqliteStream};

/// The shipped `triplicate` binary's allocator (`crates/cli/src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rate(n: usize, secs: f64) -> String {
    format!("{:>9.0} events/s ({secs:.2} s)", n as f64 / secs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// CPU time so far, in clock ticks: (all CPUs busy, all CPUs in total, this process).
fn ticks() -> Option<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6] + cpu.get(7).copied().unwrap_or(0);
    let total = busy + cpu[3] + cpu[4];
    let me = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = me.get(me.rfind(')')? + 2..)?.split_whitespace().collect();
    let mine = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((busy, total, mine))
}

/// What the machine did while something ran: cores' worth of CPU other processes used, and
/// CPU seconds this process used.
#[derive(Clone, Copy)]
struct Load {
    others_cores: f64,
    own_cpu_secs: f64,
}

fn load(
    before: Option<(u64, u64, u64)>,
    after: Option<(u64, u64, u64)>,
    cores: usize,
    secs: f64,
) -> Option<Load> {
    let ((b0, t0, m0), (b1, t1, m1)) = (before?, after?);
    let total = t1.checked_sub(t0)?.max(1) as f64;
    // Ticks over all CPUs → cores' worth over the interval.
    let per_core = |ticks: f64| ticks / total * cores as f64;
    let mine = m1.saturating_sub(m0) as f64;
    Some(Load {
        others_cores: per_core((b1.saturating_sub(b0) as f64 - mine).max(0.0)),
        own_cpu_secs: per_core(mine) * secs,
    })
}

/// One round's measurements, in seconds.
struct Round {
    validation: f64,
    validation_all: f64,
    append: f64,
    append_load: Option<Load>,
    base: f64,
    raw: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env("BENCH_EVENTS", 100_000);
    let batch = env("BENCH_BATCH", 1_000).max(1);
    let rounds = env("BENCH_ROUNDS", 3).max(1);
    let dir = match std::env::var_os("BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("scratch directory");
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());

    let t = Instant::now();
    let events: Vec<DecisionRecorded> = (0..n as u64).map(event).collect();
    let prep = t.elapsed().as_secs_f64();
    let bytes: usize = events.iter().map(|e| e.record_bytes.len()).sum();
    let batches: Vec<Vec<AppendRequest>> = events
        .chunks(batch)
        .map(|c| c.iter().cloned().map(AppendRequest::new_decision).collect())
        .collect();

    let mut results = Vec::new();
    let mut last = None;
    for round in 0..rounds {
        // Validation alone, one thread: the CPU floor of a validated append.
        let t = Instant::now();
        for e in &events {
            e.check().expect("valid event");
        }
        let validation = t.elapsed().as_secs_f64();
        // Validation alone on every core: the ceiling for a validated append on this machine.
        let t = Instant::now();
        std::thread::scope(|scope| {
            for part in events.chunks(n.div_ceil(cores).max(1)) {
                scope.spawn(move || {
                    for e in part {
                        e.check().expect("valid event");
                    }
                });
            }
        });
        let validation_all = t.elapsed().as_secs_f64();

        // The stream, into a fresh file.
        let here = dir.path().join(format!("round{round}"));
        let s = SqliteStream::open(&here.join("stream"))
            .await
            .expect("open");
        let before = ticks();
        let t = Instant::now();
        for b in &batches {
            s.append(b.clone()).await.expect("append");
        }
        let append = t.elapsed().as_secs_f64();
        let append_load = load(before, ticks(), cores, append);

        // Baseline: SQLite row by row, same schema and durability.
        let base = baseline_sqlite(&here.join("baseline"), &events, batch);
        // Baseline: raw sequential writes, one fdatasync per batch.
        let raw = baseline_file(&here.join("raw"), &events, batch);

        results.push(Round {
            validation,
            validation_all,
            append,
            append_load,
            base,
            raw,
        });
        if round + 1 == rounds {
            last = Some(s);
        } else {
            s.close().await.expect("close");
            std::fs::remove_dir_all(&here).expect("remove the round's files");
        }
    }
    let s = last.expect("at least one round");

    // The same batches again: every event a retry.
    let t = Instant::now();
    for b in &batches {
        let out = s.append(b.clone()).await.expect("re-append");
        assert_eq!(out.appended, 0);
    }
    let reappend = t.elapsed().as_secs_f64();

    // Reading: the global order in pages, and a subscription catching up.
    let t = Instant::now();
    let (mut after, mut read) = (None, 0usize);
    loop {
        let page = s.read_all(after, 1_000).await.expect("read_all");
        read += page.events.len();
        after = page.next_after(after);
        if page.end {
            break;
        }
    }
    let reading = t.elapsed().as_secs_f64();
    assert_eq!(read, n);
    let t = Instant::now();
    let mut sub = s.subscribe(None);
    for _ in 0..n {
        sub.next().await.expect("event").expect("ok");
    }
    let catch_up = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(s.path()).map(|m| m.len()).unwrap_or(0);
    s.close().await.expect("close");

    println!(
        "{n} events, {} bytes of record each on average, batches of {batch}; {cores} cores; \
         prepared in {prep:.2} s (not timed below)",
        bytes / n.max(1)
    );
    for (k, r) in results.iter().enumerate() {
        let load = r.append_load.map_or_else(
            || "machine load unknown".to_owned(),
            |l| {
                format!(
                    "other processes used {:.2} cores meanwhile; it used {:.2} CPU-s \
                     ({:.1} µs per event)",
                    l.others_cores,
                    l.own_cpu_secs,
                    l.own_cpu_secs * 1e6 / n.max(1) as f64
                )
            },
        );
        println!(
            "round {}: append {:.0} events/s, {load}",
            k + 1,
            n as f64 / r.append
        );
    }
    let med = |f: fn(&Round) -> f64| median(results.iter().map(f).collect());
    let (append, base, raw) = (med(|r| r.append), med(|r| r.base), med(|r| r.raw));
    let (validation, validation_all) = (med(|r| r.validation), med(|r| r.validation_all));
    println!("median of {rounds} round(s):");
    let line = |label: &str, secs: f64| println!("{label:<44} {}", rate(n, secs));
    line("append (validated, checked, idempotent)", append);
    line("baseline: SQLite row by row, same schema", base);
    line("baseline: raw file, fdatasync per batch", raw);
    line("validation alone, one thread", validation);
    line(
        &format!("validation alone, {cores} threads"),
        validation_all,
    );
    // Ratios within each round (same conditions), then their median.
    println!(
        "append / SQLite row by row {:.2}; append / validation on all cores {:.2}; \
         append / raw file {:.2} (per-round ratios, median)",
        med(|r| r.base / r.append),
        med(|r| r.validation_all / r.append),
        med(|r| r.raw / r.append),
    );
    line("re-append (every event already present)", reappend);
    line("read_all, pages of 1,000", reading);
    line("subscribe, catch-up", catch_up);
    println!(
        "stream.db: {:.1} MB ({:.0} bytes per event)",
        size as f64 / 1e6,
        size as f64 / n.max(1) as f64
    );
}

/// Seconds to insert `events` one row per statement into the real schema.
fn baseline_sqlite(dir: &Path, events: &[DecisionRecorded], batch: usize) -> f64 {
    std::fs::create_dir_all(dir).expect("baseline dir");
    let mut c = rusqlite::Connection::open(dir.join("stream.db")).expect("baseline db");
    let _: String = c
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .expect("wal");
    c.pragma_update(None, "synchronous", "FULL").expect("sync");
    c.execute_batch(include_str!(
        "../../../migrations/sqlite/stream/0001_events.sql"
    ))
    .expect("schema");
    let recorded_at = triplicate_core::Timestamp::now().to_string();
    let t = Instant::now();
    for chunk in events.chunks(batch) {
        let tx = c.transaction().expect("begin");
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO events (stream_id, revision, seq, event_type, data, metadata, recorded_at)
                     VALUES (?1, 0, ?2, 'DecisionRecorded', ?3, ?4, ?5)",
                )
                .expect("prepare");
            for e in chunk {
                st.execute(rusqlite::params![
                    e.stream_id().to_string(),
                    e.seq as i64,
                    e.record_bytes,
                    e.metadata().to_json(),
                    recorded_at,
                ])
                .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    t.elapsed().as_secs_f64()
}

/// Seconds to append the same bytes to a file with one `fdatasync` per batch.
fn baseline_file(dir: &Path, events: &[DecisionRecorded], batch: usize) -> f64 {
    std::fs::create_dir_all(dir).expect("raw dir");
    let mut f = std::fs::File::create(dir.join("events")).expect("raw file");
    let t = Instant::now();
    for chunk in events.chunks(batch) {
        let mut buf = Vec::with_capacity(chunk.len() * 1_400);
        for e in chunk {
            buf.extend_from_slice(&e.record_bytes);
            buf.extend_from_slice(e.metadata().to_json().as_bytes());
        }
        f.write_all(&buf).expect("write");
        f.sync_data().expect("fdatasync");
    }
    t.elapsed().as_secs_f64()
}
