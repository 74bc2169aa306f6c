//! `cargo bench -p triplicate-stream`: 100,000 realistic events (~1.2 KB records) appended in
//! batches of 1,000 to a fresh `stream.db`, next to an in-run baseline: the same rows inserted
//! one statement per row in one transaction per batch into a bare table (no indexes, no
//! triggers) with the same durability settings. Then paging through the global order.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use rusqlite::Connection;
use triplicate_stream::conformance::sample_event;
use triplicate_stream::{AppendRequest, EventStream, SqliteStream};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let batch = 1000u64;
    let events: Vec<_> = (0..n).map(|s| sample_event(s, 0)).collect();
    let bytes: usize = events.iter().map(|e| e.record_bytes.len()).sum();

    // What validation alone costs (parse, re-canonicalise, hash every record).
    let t = Instant::now();
    for e in &events {
        e.validate().expect("valid");
    }
    let validation = t.elapsed().as_secs_f64();

    let dir = tempfile::tempdir().expect("tempdir");
    let s = SqliteStream::open(dir.path()).await.expect("open");
    let t = Instant::now();
    for chunk in events.chunks(batch as usize) {
        let reqs = chunk
            .iter()
            .cloned()
            .map(AppendRequest::new_decision)
            .collect();
        s.append(reqs).await.expect("append");
    }
    let ours = t.elapsed().as_secs_f64();

    let base = Connection::open(dir.path().join("baseline.db")).expect("baseline");
    base.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    base.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    base.execute_batch("CREATE TABLE e (seq INTEGER, stream_id TEXT, data BLOB, metadata TEXT)")
        .expect("table");
    let t = Instant::now();
    let mut base = base;
    for chunk in events.chunks(batch as usize) {
        let tx = base.transaction().expect("tx");
        {
            let mut st = tx
                .prepare_cached("INSERT INTO e VALUES (?1, ?2, ?3, ?4)")
                .expect("prepare");
            for e in chunk {
                st.execute(rusqlite::params![
                    e.seq as i64,
                    e.stream_id(),
                    e.record_bytes,
                    e.metadata_json()
                ])
                .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    let baseline = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut from = 0;
    let mut read = 0u64;
    loop {
        let page = s.read_all(from, 1000).await.expect("read");
        read += page.events.len() as u64;
        match page.next {
            Some(nx) => from = nx,
            None => break,
        }
    }
    let reading = t.elapsed().as_secs_f64();

    println!(
        "events {n} ({} bytes of records each), batches of {batch}",
        bytes / n as usize
    );
    println!(
        "append (validated, idempotent):   {:>9.0} events/s ({ours:.2} s)",
        n as f64 / ours
    );
    println!(
        "baseline (bare row-at-a-time):    {:>9.0} events/s ({baseline:.2} s)",
        n as f64 / baseline
    );
    println!("ratio append/baseline: {:.2}", baseline / ours);
    println!(
        "of which validation alone:        {:>9.0} events/s ({validation:.2} s)",
        n as f64 / validation
    );
    println!(
        "read_all pages of 1000:           {:>9.0} events/s ({read} read)",
        read as f64 / reading
    );
}
