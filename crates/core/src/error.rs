//! Validation errors: every refusal names the field and the reason, and all of them are
//! reported at once.

use std::fmt;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON path of the field, e.g. `decision.approvals[2].signed_at`.
    pub field: String,
    /// Why it was refused.
    pub reason: String,
}

/// Why an input was refused: every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused:")?;
        for (i, p) in self.problems.iter().enumerate() {
            let sep = if i == 0 { " " } else { "; " };
            write!(f, "{sep}{}: {}", p.field, p.reason)?;
        }
        Ok(())
    }
}

impl ValidationError {
    /// One problem.
    pub fn one(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ValidationError {
            problems: vec![Problem {
                field: field.into(),
                reason: reason.into(),
            }],
        }
    }

    /// True when `field` has a problem whose reason contains `needle` (for tests and callers
    /// that map problems to their own messages).
    pub fn has(&self, field: &str, needle: &str) -> bool {
        self.problems
            .iter()
            .any(|p| p.field == field && p.reason.contains(needle))
    }
}

/// Collects problems while validating.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            reason: reason.into(),
        });
    }

    pub fn into_result(self) -> Result<(), ValidationError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationError { problems: self.0 })
        }
    }
}

/// Turns a serde_json error into a problem, naming the field when serde does.
pub(crate) fn from_serde(prefix: &str, e: &serde_json::Error) -> ValidationError {
    let msg = e.to_string();
    // serde's messages look like "unknown field `x`, expected one of ... at line 1 column 9".
    let field = msg
        .split('`')
        .nth(1)
        .filter(|_| msg.starts_with("unknown field") || msg.starts_with("missing field"))
        .map(|f| {
            if prefix.is_empty() {
                f.to_owned()
            } else {
                format!("{prefix}.{f}")
            }
        })
        .unwrap_or_else(|| {
            if prefix.is_empty() {
                "(document)".to_owned()
            } else {
                prefix.to_owned()
            }
        });
    ValidationError::one(field, msg)
}
