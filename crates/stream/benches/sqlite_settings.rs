//! `cargo bench -p triplicate-stream --bench sqlite_settings`: what the write path of
//! `stream.db` costs under other schema choices and connection settings, without validation,
//! so each choice in `migrations/sqlite/stream/0001_events.sql` and `src/sqlite.rs` can be
//! checked against its alternatives.
//!
//! Every variant writes the same realistic events (as `benches/append.rs`) into a fresh
//! database: batches of `BENCH_BATCH` in one `BEGIN IMMEDIATE` transaction each, multi-row
//! `INSERT`s of up to 256 rows, WAL and `synchronous=FULL`, unless the variant changes one of
//! these. Variants run interleaved, in rounds (`BENCH_ROUNDS`), and the table gives medians:
//! events/s (wall time, which other processes on a shared machine disturb) and CPU time per
//! event (this process's user + system time from `/proc`, Linux only, which they disturb much
//! less), each also relative to the first line, the settings `stream.db` uses.
//!
//! The first line does its checkpoints as `SqliteStream` does (before a batch, once 1 MiB went
//! into the WAL, SQLite's automatic checkpoint only as a backstop), here on the same thread and
//! so without the overlap with validation that is its point in an append; "no checkpoint"
//! shows what the checkpoints cost at most.
//!
//! Environment: `BENCH_EVENTS` (100000), `BENCH_BATCH` (1000), `BENCH_ROUNDS` (3), `BENCH_DIR`.

#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::Instant;

use rusqlite::{Connection, TransactionBehavior};
use triplicate_stream::fixtures::event;
use triplicate_stream::DecisionRecorded;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This process's CPU time so far, in clock ticks (1/100 s on Linux).
fn own_ticks() -> Option<u64> {
    let me = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = me.get(me.rfind(')')? + 2..)?.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

#[derive(Clone, Copy, PartialEq)]
enum Checkpoint {
    /// Before a batch once ~1 MiB went into the WAL; automatic at 8,192 pages (`SqliteStream`).
    BeforeBatch,
    /// SQLite's automatic checkpoint after a commit, at this many pages.
    Automatic(i64),
    /// None at all during the run.
    Never,
}

#[derive(Clone)]
struct Variant {
    name: &'static str,
    page_size: u32,
    autoincrement: bool,
    /// The stream id as the decision's 16 UUID bytes instead of 'decision-<uuid>' text.
    blob_stream_id: bool,
    unique_indexes: bool,
    rows_per_insert: usize,
    synchronous: &'static str,
    checkpoint: Checkpoint,
    /// Extra pragmas, run after the others.
    pragmas: &'static str,
}

const STREAM_DB: Variant = Variant {
    name: "as stream.db (16 KiB pages, AUTOINCREMENT, text id)",
    page_size: 16_384,
    autoincrement: true,
    blob_stream_id: false,
    unique_indexes: true,
    rows_per_insert: 256,
    synchronous: "FULL",
    checkpoint: Checkpoint::BeforeBatch,
    pragmas: "PRAGMA cache_size = -16384;",
};

fn variants() -> Vec<Variant> {
    let v = |f: fn(&mut Variant)| {
        let mut x = STREAM_DB.clone();
        f(&mut x);
        x
    };
    vec![
        STREAM_DB,
        v(|x| {
            x.name = "SQLite's automatic checkpoint, 1,000 pages";
            x.checkpoint = Checkpoint::Automatic(1_000);
        }),
        v(|x| {
            x.name = "no checkpoint (what checkpoints cost at most)";
            x.checkpoint = Checkpoint::Never;
        }),
        v(|x| {
            x.name = "INTEGER PRIMARY KEY without AUTOINCREMENT";
            x.autoincrement = false;
        }),
        v(|x| {
            x.name = "stream id as a 16-byte BLOB";
            x.blob_stream_id = true;
        }),
        v(|x| {
            x.name = "4 KiB pages";
            x.page_size = 4_096;
        }),
        v(|x| {
            x.name = "8 KiB pages";
            x.page_size = 8_192;
        }),
        v(|x| {
            x.name = "32 KiB pages";
            x.page_size = 32_768;
        }),
        v(|x| {
            x.name = "64 KiB pages";
            x.page_size = 65_536;
        }),
        v(|x| {
            x.name = "one row per INSERT";
            x.rows_per_insert = 1;
        }),
        v(|x| {
            x.name = "32 rows per INSERT";
            x.rows_per_insert = 32;
        }),
        v(|x| {
            x.name = "64 rows per INSERT";
            x.rows_per_insert = 64;
        }),
        v(|x| {
            x.name = "128 rows per INSERT";
            x.rows_per_insert = 128;
        }),
        v(|x| {
            x.name = "cache_size 2 MiB";
            x.pragmas = "PRAGMA cache_size = -2048;";
        }),
        v(|x| {
            x.name = "cache_size 64 MiB";
            x.pragmas = "PRAGMA cache_size = -65536;";
        }),
        v(|x| {
            x.name = "mmap_size 256 MiB";
            x.pragmas = "PRAGMA cache_size = -16384; PRAGMA mmap_size = 268435456;";
        }),
        v(|x| {
            x.name = "temp_store MEMORY";
            x.pragmas = "PRAGMA cache_size = -16384; PRAGMA temp_store = MEMORY;";
        }),
        v(|x| {
            x.name = "synchronous=NORMAL (not durable; reference)";
            x.synchronous = "NORMAL";
        }),
        v(|x| {
            x.name = "no unique indexes (reference)";
            x.unique_indexes = false;
        }),
    ]
}

fn schema(v: &Variant) -> String {
    let key = if v.autoincrement {
        "INTEGER PRIMARY KEY AUTOINCREMENT"
    } else {
        "INTEGER PRIMARY KEY"
    };
    let (id_type, id_check) = if v.blob_stream_id {
        ("BLOB", "length(stream_id) = 16")
    } else {
        ("TEXT", "stream_id LIKE 'decision-%'")
    };
    let unique = if v.unique_indexes {
        ", UNIQUE (stream_id, revision), UNIQUE (seq)"
    } else {
        ""
    };
    format!(
        "CREATE TABLE events (
            position    {key},
            stream_id   {id_type} NOT NULL CHECK ({id_check}),
            revision    INTEGER NOT NULL CHECK (revision >= 0),
            seq         INTEGER NOT NULL CHECK (seq >= 0),
            event_type  TEXT    NOT NULL CHECK (event_type = 'DecisionRecorded'),
            data        BLOB    NOT NULL,
            metadata    TEXT    NOT NULL,
            recorded_at TEXT    NOT NULL
            {unique});
         CREATE TRIGGER events_no_update BEFORE UPDATE ON events
         BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE refused'); END;
         CREATE TRIGGER events_no_delete BEFORE DELETE ON events
         BEGIN SELECT RAISE(ABORT, 'events are append-only: DELETE refused'); END;"
    )
}

fn insert_sql(rows: usize) -> String {
    let mut s = String::from(
        "INSERT INTO events (stream_id, revision, seq, event_type, data, metadata, recorded_at) VALUES ",
    );
    for i in 0..rows {
        let b = 3 + i * 5;
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "(?{b},?{},?{},?2,?{},?{},?1)",
            b + 1,
            b + 2,
            b + 3,
            b + 4
        ));
    }
    s
}

/// (seconds, CPU seconds) to write `events` with variant `v` into a fresh file under `dir`.
fn run(v: &Variant, dir: &Path, events: &[DecisionRecorded], batch: usize) -> (f64, Option<f64>) {
    std::fs::create_dir_all(dir).expect("variant dir");
    let mut c = Connection::open(dir.join("stream.db")).expect("open");
    c.pragma_update(None, "page_size", v.page_size)
        .expect("page size");
    let _: String = c
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .expect("wal");
    c.pragma_update(None, "synchronous", v.synchronous)
        .expect("synchronous");
    c.execute_batch(v.pragmas).expect("pragmas");
    let automatic = match v.checkpoint {
        Checkpoint::BeforeBatch => 8_192,
        Checkpoint::Automatic(pages) => pages,
        Checkpoint::Never => 0,
    };
    c.pragma_update(None, "wal_autocheckpoint", automatic)
        .expect("autocheckpoint");
    c.execute_batch(&schema(v)).expect("schema");
    c.set_prepared_statement_cache_capacity(64);
    // Rows as the stream binds them, built before timing (the append builds them while
    // validating).
    let ids: Vec<Vec<u8>> = events
        .iter()
        .map(|e| {
            if v.blob_stream_id {
                e.decision_id.as_bytes().to_vec()
            } else {
                e.stream_id().to_string().into_bytes()
            }
        })
        .collect();
    let metadata: Vec<String> = events.iter().map(|e| e.metadata().to_json()).collect();
    let recorded_at = "2026-11-30T12:00:00.000000000Z";

    let cpu = own_ticks();
    let t = Instant::now();
    let mut since_checkpoint = 0usize;
    for (k, chunk) in events.chunks(batch).enumerate() {
        if v.checkpoint == Checkpoint::BeforeBatch && since_checkpoint >= 1024 * 1024 {
            let _: i64 = c
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(0))
                .expect("checkpoint");
            since_checkpoint = 0;
        }
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("begin");
        for (p, part) in chunk.chunks(v.rows_per_insert).enumerate() {
            let first = k * batch + p * v.rows_per_insert;
            let mut st = tx.prepare_cached(&insert_sql(part.len())).expect("prepare");
            st.raw_bind_parameter(1, recorded_at).expect("bind");
            st.raw_bind_parameter(2, "DecisionRecorded").expect("bind");
            for (i, e) in part.iter().enumerate() {
                let b = 3 + i * 5;
                let id = &ids[first + i];
                if v.blob_stream_id {
                    st.raw_bind_parameter(b, id.as_slice()).expect("bind");
                } else {
                    st.raw_bind_parameter(b, std::str::from_utf8(id).expect("text id"))
                        .expect("bind");
                }
                st.raw_bind_parameter(b + 1, 0i64).expect("bind");
                st.raw_bind_parameter(b + 2, e.seq as i64).expect("bind");
                st.raw_bind_parameter(b + 3, e.record_bytes.as_slice())
                    .expect("bind");
                st.raw_bind_parameter(b + 4, metadata[first + i].as_str())
                    .expect("bind");
                since_checkpoint += e.record_bytes.len() + 200;
            }
            st.raw_execute().expect("insert");
        }
        tx.commit().expect("commit");
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu
        .zip(own_ticks())
        .map(|(a, b)| b.saturating_sub(a) as f64 / 100.0);
    drop(c);
    (secs, cpu)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n = env("BENCH_EVENTS", 100_000);
    let batch = env("BENCH_BATCH", 1_000).max(1);
    let rounds = env("BENCH_ROUNDS", 3).max(1);
    let dir = match std::env::var_os("BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("scratch directory");
    let events: Vec<DecisionRecorded> = (0..n as u64).map(event).collect();
    let variants = variants();
    let mut secs = vec![Vec::new(); variants.len()];
    let mut cpus = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for (i, v) in variants.iter().enumerate() {
            let here = dir.path().join(format!("r{round}v{i}"));
            let (s, c) = run(v, &here, &events, batch);
            std::fs::remove_dir_all(&here).expect("remove the variant's files");
            secs[i].push(s);
            if let Some(c) = c {
                cpus[i].push(c);
            }
        }
    }
    println!(
        "{n} events, batches of {batch}, no validation; medians of {rounds} interleaved round(s)"
    );
    println!(
        "{:<52} {:>10} {:>8} {:>12} {:>8}",
        "variant", "events/s", "ratio", "CPU µs/event", "ratio"
    );
    let base_secs = median(secs[0].clone());
    let base_cpu = (!cpus[0].is_empty()).then(|| median(cpus[0].clone()));
    for (i, v) in variants.iter().enumerate() {
        let s = median(secs[i].clone());
        let cpu = (!cpus[i].is_empty()).then(|| median(cpus[i].clone()));
        let (cpu_us, cpu_ratio) = match (cpu, base_cpu) {
            (Some(c), Some(b)) => (
                format!("{:.2}", c * 1e6 / n as f64),
                format!("{:.2}", c / b.max(1e-9)),
            ),
            _ => ("n/a".to_owned(), "n/a".to_owned()),
        };
        println!(
            "{:<52} {:>10.0} {:>8.2} {:>12} {:>8}",
            v.name,
            n as f64 / s,
            base_secs / s,
            cpu_us,
            cpu_ratio
        );
    }
}
