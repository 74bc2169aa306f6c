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

/// Parses JSON into `T`; a failure becomes a problem naming the field (its JSON path, prefixed
/// with `prefix`) and serde's reason.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    prefix: &str,
    bytes: &[u8],
) -> Result<T, ValidationError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        // For unknown, missing and duplicate fields serde names the field in the message, not
        // the path.
        let names_parent = msg.starts_with("missing field") || msg.starts_with("duplicate field");
        let named = msg
            .split('`')
            .nth(1)
            .filter(|_| names_parent || msg.starts_with("unknown field"));
        let mut field = match (path.as_str(), named) {
            (".", Some(f)) => f.to_owned(),
            (".", None) => String::new(),
            (p, Some(f)) if names_parent => format!("{p}.{f}"),
            (p, _) => p.to_owned(),
        };
        if !prefix.is_empty() {
            field = if field.is_empty() {
                prefix.to_owned()
            } else {
                format!("{prefix}.{field}")
            };
        }
        if field.is_empty() {
            field = "(document)".to_owned();
        }
        ValidationError::one(field, msg)
    })?;
    de.end()
        .map_err(|e| ValidationError::one("(document)", e.to_string()))?;
    Ok(value)
}
