//! Test support (feature `testkit`): the hardware stand-ins of `../shared/tools/hwtoken` as
//! every hardware suite of the workspace finds them, so all of them skip, fail and share the
//! one emulated PIV card the same way.
//!
//! Without the stand-ins a suite says so in one loud line (written to the process's stderr
//! directly: libtest captures `eprintln!` of passing tests) and its tests return; with
//! `CI=true` they panic instead, because CI must run them.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;

/// The stand-ins' setting `name` (`HWTOKEN_*`), or `None` after saying (once per `suite` and
/// process) how to run `suite`.
///
/// # Panics
///
/// When `name` is unset and `CI=true`.
pub fn var(name: &str, suite: &str) -> Option<String> {
    if let Ok(v) = std::env::var(name) {
        return Some(v);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{name} is not set, but CI=true: the hardware stand-ins must be up \
             (scripts/test.sh runs ../shared/tools/hwtoken/up.sh)"
        );
    }
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if warned.iter().any(|s| s == suite) {
        return None;
    }
    warned.push(suite.to_owned());
    let _ = writeln!(
        std::io::stderr(),
        "!!!! {suite}: SKIPPED, {name} is unset. Run ../shared/tools/hwtoken/up.sh DIR; \
         scripts/hwtoken-provision.sh DIR; source DIR/env; then the suite (scripts/test.sh does all of this) !!!!"
    );
    None
}

/// An exclusive hold on the one emulated PIV card, across test binaries and processes.
#[derive(Debug)]
pub struct CardLock {
    _file: File,
}

/// Takes the card lock (`card.lock` beside `$HWTOKEN_PIV_9C_PUBKEY`), waiting for other tests
/// that hold it; `None` (after [`var`]'s message) without the stand-ins.
///
/// # Panics
///
/// When the lock file cannot be opened or locked, or as [`var`] does.
pub fn card_lock(suite: &str) -> Option<CardLock> {
    let pem = var("HWTOKEN_PIV_9C_PUBKEY", suite)?;
    let dir = Path::new(&pem).parent().unwrap_or(Path::new("."));
    let path = dir.join("card.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
    Some(CardLock { _file: file })
}
