//! Why a set of policy files was refused: every problem, each with its file and line.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One problem in one policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file, as the loader was given it (`<dir>/keys.toml`), or the bare file name for
    /// policies given as text ([`crate::Policy::from_strs`]).
    pub file: PathBuf,
    /// 1-based line the problem is on. `0` when the problem is about the file as a whole (it
    /// could not be read, or is not UTF-8), so there is no line to point at.
    pub line: usize,
    /// Why it was refused, in words an operator can act on.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
        }
    }
}

/// The policy files were refused. `problems` holds every problem found, not only the first,
/// sorted by file (`keys.toml` first) and line, so one edit-and-reload fixes them all.
///
/// Display prints one problem per line as `file:line: reason`, the form editors and terminals
/// turn into links.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "policy refused: {n} problem{}",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n{p}")?;
        }
        Ok(())
    }
}

impl PolicyError {
    /// True when some problem is in a file named `file_name` (the last path component), on
    /// `line`, with a reason containing `needle`. For tests and for callers that map particular
    /// problems to their own messages.
    pub fn has(&self, file_name: &str, line: usize, needle: &str) -> bool {
        self.problems.iter().any(|p| {
            p.file.file_name() == Some(Path::new(file_name).as_os_str())
                && p.line == line
                && p.reason.contains(needle)
        })
    }
}
