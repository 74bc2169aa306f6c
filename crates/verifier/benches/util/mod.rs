//! What the verifier's benches share: their knobs and how they print a rate.

// Each bench uses part of this module.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// `name` from the environment (underscores allowed), else `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

pub fn rate(n: u64, d: Duration) -> String {
    format!(
        "{:>9.0} records/s ({:.3} s)",
        n as f64 / d.as_secs_f64(),
        d.as_secs_f64()
    )
}

/// This process's CPU time (user + system, every thread), from `/proc/self/stat` (clock ticks
/// of 1/100 s); `None` where that cannot be read.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces), itself in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    // utime and stime are fields 14 and 15 of the line; `rest` starts at field 3.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Wall-clock and CPU time of one measured step, so a rate comes with how many cores it kept
/// busy and the CPU it cost per record (the figure that does not depend on the core count).
pub struct Clock {
    wall: Instant,
    cpu: Option<Duration>,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            cpu: process_cpu(),
            wall: Instant::now(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.wall.elapsed()
    }

    /// `rate(n, elapsed)`, then the cores kept busy and the CPU microseconds per record.
    pub fn rate(&self, n: u64) -> String {
        let wall = self.wall.elapsed();
        let cpu = match (self.cpu, process_cpu()) {
            (Some(a), Some(b)) => {
                let c = b.saturating_sub(a).as_secs_f64();
                format!(
                    "  [{:.2} cores, {:.2} us CPU/record]",
                    c / wall.as_secs_f64(),
                    c * 1e6 / n.max(1) as f64
                )
            }
            _ => String::new(),
        };
        format!("{}{cpu}", rate(n, wall))
    }
}
