//! What the verifier's benches share: their knobs and how they print a rate.

use std::time::Duration;

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
