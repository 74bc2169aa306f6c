//! Quorum rules: `governance.toml`, the groups and what each decision kind needs from them.
//!
//! Format (see the crate README for the full description):
//!
//! ```toml
//! [groups.board]
//! description = "Board of directors"   # optional
//! require_hardware = true              # optional, default false
//! require_attestation = true           # optional, default false: only keys with a verified
//!                                      # YubiKey attestation count
//!
//! [attestation]                        # needed when a group requires attestation
//! roots = ["attestation-roots/yubico-piv-root.pem"]   # relative to the policy directory
//!
//! [kinds."budget.approval"]            # quote kinds: they contain dots
//! description = "…"                    # optional
//! quorum = [
//!   { group = "board", threshold = 2 },
//!   { group = "treasury", threshold = 1 },
//! ]
//!
//! [default]                            # optional; without it unlisted kinds are refused
//! action = "refuse"                    # or "quorum", with a `quorum = [...]` as above
//! ```

use serde::Serialize;
use toml::de::DeValue;
use triplicate_core::limits::KIND_MAX_LEN;

use crate::doc::{self, Doc, Table};

/// A governance group: the keys whose `groups` name it approve for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Group {
    pub name: String,
    pub description: Option<String>,
    /// When true, only keys held in hardware (`pkcs11`, `yubikey-piv`) count for this group.
    /// Production groups set it; the development policy the service generates cannot, since
    /// its keys are software keys.
    pub require_hardware: bool,
    /// When true, only keys whose YubiKey attestation verified against `[attestation] roots`
    /// count for this group (see [`crate::KeyAttestation`]).
    pub require_attestation: bool,
}

/// "At least `threshold` distinct approvers from `group`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Requirement {
    pub group: String,
    pub threshold: usize,
}

/// What a decision kind needs: every requirement must hold (all-of).
///
/// Requirements are counted independently: an approver in two groups counts towards both.
/// A policy that wants the treasurer's approval to be in addition to two board members', when
/// the treasurer sits on the board, says so with its groups (a `treasury` group the board
/// members are not in) or a higher board threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Quorum {
    pub requirements: Vec<Requirement>,
}

/// What happens to a decision kind that `governance.toml` does not list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DefaultRule {
    /// Refuse it (the default when `[default]` is absent): a new kind of decision should be a
    /// deliberate policy change, not something any quorum can start recording.
    Refuse,
    /// Accept it with this quorum.
    Quorum(Quorum),
}

/// A requirement as read, with the lines that checks against `keys.toml` report on.
#[derive(Debug)]
pub(crate) struct RequirementDraft {
    pub group: String,
    pub group_line: usize,
    pub threshold: usize,
    pub threshold_line: usize,
}

/// A quorum as read. `complete` is false when some part of it had a problem.
#[derive(Debug, Default)]
pub(crate) struct QuorumDraft {
    pub requirements: Vec<RequirementDraft>,
    pub complete: bool,
}

impl QuorumDraft {
    pub fn build(&self) -> Quorum {
        Quorum {
            requirements: self
                .requirements
                .iter()
                .map(|r| Requirement {
                    group: r.group.clone(),
                    threshold: r.threshold,
                })
                .collect(),
        }
    }
}

/// What the loader read from `governance.toml`.
#[derive(Debug, Default)]
pub(crate) struct GovernanceFile {
    pub groups: Vec<Group>,
    pub kinds: Vec<(String, QuorumDraft)>,
    /// `None` for refuse.
    pub default: Option<QuorumDraft>,
    /// `[attestation] roots`: each root file as written, with its line.
    pub attestation_roots: Vec<(String, usize)>,
    /// The line of `[attestation]`, or of the first group requiring attestation, for problems.
    pub attestation_line: usize,
}

const TOP_FIELDS: &[&str] = &["groups", "kinds", "default", "attestation"];
const GROUP_FIELDS: &[&str] = &["description", "require_hardware", "require_attestation"];
const ATTESTATION_FIELDS: &[&str] = &["roots"];
const KIND_FIELDS: &[&str] = &["description", "quorum"];
const DEFAULT_FIELDS: &[&str] = &["action", "quorum"];
const REQUIREMENT_FIELDS: &[&str] = &["group", "threshold"];

/// Group names: lowercase ASCII letters, digits, `-` and `_`, starting with a letter, so they
/// read the same in TOML keys, logs and URLs.
fn is_group_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some('a'..='z'))
        && c.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '_'))
        && s.len() <= 64
}

/// Decision kinds as `triplicate-core` accepts them: dotted lowercase names.
fn is_kind(s: &str) -> bool {
    s.len() <= KIND_MAX_LEN
        && !s.is_empty()
        && s.split('.').all(|part| {
            let mut c = part.chars();
            matches!(c.next(), Some('a'..='z'))
                && c.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        })
}

/// Reads `governance.toml`, recording every problem in `doc`.
pub(crate) fn parse(
    doc: &mut Doc<'_>,
    root: &toml::Spanned<toml::de::DeTable<'_>>,
) -> GovernanceFile {
    let top = Table::new(root.get_ref(), root.span(), "governance.toml");
    top.deny_unknown(doc, TOP_FIELDS);
    let mut out = GovernanceFile::default();

    if let Some(groups) = top
        .get("groups")
        .and_then(|v| Table::from_value(doc, v, "[groups]"))
    {
        for (name, key_span, value) in groups.entries() {
            if !is_group_name(name) {
                doc.at(
                    key_span.clone(),
                    format!(
                        "group name {name:?} is not allowed: use lowercase letters, digits, \
                         '-' and '_', starting with a letter (at most 64)"
                    ),
                );
            }
            let Some(t) = Table::from_value(doc, value, format!("[groups.{name}]")) else {
                continue;
            };
            t.deny_unknown(doc, GROUP_FIELDS);
            let description = t
                .get("description")
                .and_then(|v| doc::string(doc, "description", v))
                .map(str::to_owned);
            let require_hardware = t
                .get("require_hardware")
                .and_then(|v| doc::boolean(doc, "require_hardware", v))
                .unwrap_or(false);
            let require_attestation = t
                .get("require_attestation")
                .and_then(|v| {
                    let b = doc::boolean(doc, "require_attestation", v);
                    if b == Some(true) && out.attestation_line == 0 {
                        out.attestation_line = doc.line(v.span().start);
                    }
                    b
                })
                .unwrap_or(false);
            out.groups.push(Group {
                name: name.to_owned(),
                description,
                require_hardware,
                require_attestation,
            });
        }
    }

    if let Some(t) = top
        .get("attestation")
        .and_then(|v| Table::from_value(doc, v, "[attestation]"))
    {
        t.deny_unknown(doc, ATTESTATION_FIELDS);
        out.attestation_line = doc.line(t.span.start);
        if let Some(v) = t.required(doc, "roots") {
            if let Some(roots) = doc::string_array(doc, "roots", v) {
                if roots.is_empty() {
                    doc.at(
                        v.span(),
                        "`roots` is empty: name at least one root certificate file",
                    );
                }
                for (r, span) in roots {
                    out.attestation_roots
                        .push((r.to_owned(), doc.line(span.start)));
                }
            }
        }
    }

    if let Some(kinds) = top
        .get("kinds")
        .and_then(|v| Table::from_value(doc, v, "[kinds]"))
    {
        for (name, key_span, value) in kinds.entries() {
            if !is_kind(name) {
                doc.at(
                    key_span.clone(),
                    format!(
                        "decision kind {name:?} is not a valid kind: a dotted lowercase name \
                         like \"budget.approval\" (letters, digits, '_'; each part starts with \
                         a letter; at most {KIND_MAX_LEN} characters)"
                    ),
                );
            }
            let label = format!("[kinds.{name:?}]");
            let Some(t) = Table::from_value(doc, value, label.clone()) else {
                continue;
            };
            deny_unknown_kind_fields(doc, &t, name);
            let _ = t
                .get("description")
                .and_then(|v| doc::string(doc, "description", v));
            let quorum = match t.required(doc, "quorum") {
                Some(v) => parse_quorum(doc, v, &label),
                None => QuorumDraft::default(),
            };
            out.kinds.push((name.to_owned(), quorum));
        }
    }

    if let Some(t) = top
        .get("default")
        .and_then(|v| Table::from_value(doc, v, "[default]"))
    {
        t.deny_unknown(doc, DEFAULT_FIELDS);
        let action = t
            .required(doc, "action")
            .and_then(|v| Some((doc::string(doc, "action", v)?, v.span())));
        let quorum = t.get("quorum");
        match (action, quorum) {
            (Some(("refuse", _)), Some(q)) => doc.at(
                q.span(),
                "`quorum` given but `action` is \"refuse\"; set action = \"quorum\" to use it",
            ),
            (Some(("refuse", _)), None) => {}
            (Some(("quorum", _)), Some(q)) => {
                out.default = Some(parse_quorum(doc, q, "[default]"));
            }
            (Some(("quorum", span)), None) => doc.at(
                span,
                "action = \"quorum\" needs a `quorum` list in [default]",
            ),
            (Some((other, span)), _) => doc.at(
                span,
                format!("unknown default action {other:?}; expected \"refuse\" or \"quorum\""),
            ),
            (None, _) => {}
        }
    }
    out
}

/// `[kinds.budget.approval]` without quotes is a table `approval` inside a kind `budget`.
/// That mistake gets its own hint rather than only "unknown field".
fn deny_unknown_kind_fields(doc: &mut Doc<'_>, t: &Table<'_, '_>, kind: &str) {
    for (name, key_span, value) in t.entries() {
        if KIND_FIELDS.contains(&name) {
            continue;
        }
        let hint = if matches!(value.get_ref(), DeValue::Table(_)) {
            format!("; a kind with a dot in its name must be quoted: [kinds.\"{kind}.{name}\"]")
        } else {
            String::new()
        };
        doc.at(
            key_span,
            format!(
                "unknown field `{name}` in {}; expected one of: {}{hint}",
                t.name,
                KIND_FIELDS.join(", ")
            ),
        );
    }
}

fn parse_quorum(doc: &mut Doc<'_>, value: &doc::Value<'_>, owner: &str) -> QuorumDraft {
    let DeValue::Array(items) = value.get_ref() else {
        doc.at(
            value.span(),
            format!(
                "`quorum` in {owner} must be a list of {{ group = \"…\", threshold = N }}, \
                 not {}",
                doc::article(value.get_ref().type_str())
            ),
        );
        return QuorumDraft::default();
    };
    let mut draft = QuorumDraft {
        requirements: Vec::new(),
        complete: true,
    };
    if items.is_empty() {
        doc.at(
            value.span(),
            format!(
                "`quorum` in {owner} is empty: it would accept a decision without any approval"
            ),
        );
        draft.complete = false;
    }
    for (i, item) in items.iter().enumerate() {
        let Some(t) = Table::from_value(doc, item, format!("`quorum` #{} in {owner}", i + 1))
        else {
            draft.complete = false;
            continue;
        };
        t.deny_unknown(doc, REQUIREMENT_FIELDS);
        let group = t.required(doc, "group").and_then(|v| {
            let s = doc::string(doc, "group", v)?;
            Some((s.to_owned(), doc.line(v.span().start)))
        });
        let threshold = t.required(doc, "threshold").and_then(|v| {
            let n = doc::integer(doc, "threshold", v)?;
            let line = doc.line(v.span().start);
            match usize::try_from(n) {
                Ok(0) | Err(_) => {
                    let group = group.as_ref().map_or("the group", |(g, _)| g.as_str());
                    doc.push(
                        line,
                        format!(
                            "threshold {n} for `{group}` must be at least 1: a requirement \
                             that needs no approval is no requirement"
                        ),
                    );
                    None
                }
                Ok(n) => Some((n, line)),
            }
        });
        match (group, threshold) {
            (Some((group, group_line)), Some((threshold, threshold_line))) => {
                if let Some(prev) = draft.requirements.iter().find(|r| r.group == group) {
                    doc.push(
                        group_line,
                        format!(
                            "group `{group}` is already required at line {}; state one \
                             threshold per group",
                            prev.group_line
                        ),
                    );
                    draft.complete = false;
                } else {
                    draft.requirements.push(RequirementDraft {
                        group,
                        group_line,
                        threshold,
                        threshold_line,
                    });
                }
            }
            _ => draft.complete = false,
        }
    }
    draft
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_group_name("board"));
        assert!(is_group_name("audit-committee_2"));
        assert!(!is_group_name("Board"));
        assert!(!is_group_name("2board"));
        assert!(!is_group_name(""));
        assert!(is_kind("budget.approval"));
        assert!(is_kind("motion"));
        assert!(!is_kind("budget..approval"));
        assert!(!is_kind("Budget"));
        assert!(!is_kind("key-rotation"));
    }
}
