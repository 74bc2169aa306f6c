//! Walking a parsed TOML document by hand, collecting every problem with its line.
//!
//! Why not `#[derive(Deserialize)]` with `deny_unknown_fields`: serde stops at the first error,
//! so a file with three mistakes would take three reloads to fix. `toml::de::DeTable` keeps the
//! span of every key and value, recovers from syntax errors, and lets us check every field of
//! every table and report all of it at once. The cost is this small set of typed getters.

use std::ops::Range;
use std::path::Path;

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, Time, UtcOffset};
use toml::de::{DeTable, DeValue};
use toml::Spanned;
use triplicate_core::Timestamp;

use crate::error::Problem;

/// A spanned TOML value.
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// One policy file being checked: its name, its text, and the problems found so far.
pub(crate) struct Doc<'a> {
    file: &'a Path,
    /// Byte offset at which each line starts, for turning spans into line numbers.
    line_starts: Vec<usize>,
    problems: Vec<Problem>,
    /// False when the file had TOML syntax errors. Its content is then a best-effort recovery,
    /// so checks in *other* files that depend on it (does this group exist? how many keys does
    /// it have?) are skipped rather than reported against a half-read file.
    pub syntax_ok: bool,
}

impl<'a> Doc<'a> {
    /// Parses `text`, recording every syntax error. Returns the (possibly partial) document.
    pub fn parse(file: &'a Path, text: &'a str) -> (Doc<'a>, Spanned<DeTable<'a>>) {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let mut doc = Doc {
            file,
            line_starts,
            problems: Vec::new(),
            syntax_ok: true,
        };
        let (table, errors) = DeTable::parse_recoverable(text);
        for e in &errors {
            doc.syntax_ok = false;
            let line = e.span().map_or(1, |s| doc.line(s.start));
            doc.push(line, format!("TOML syntax error: {}", e.message()));
        }
        (doc, table)
    }

    /// A document that could not be read at all.
    pub fn unreadable(file: &'a Path, reason: String) -> Doc<'a> {
        Doc {
            file,
            line_starts: vec![0],
            problems: vec![Problem {
                file: file.to_path_buf(),
                line: 0,
                reason,
            }],
            syntax_ok: false,
        }
    }

    /// 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }

    /// Records a problem on `line`.
    pub fn push(&mut self, line: usize, reason: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line,
            reason: reason.into(),
        });
    }

    /// Records a problem at the start of `span`.
    pub fn at(&mut self, span: Range<usize>, reason: impl Into<String>) {
        let line = self.line(span.start);
        self.push(line, reason);
    }

    /// The problems, sorted by line (stable, so problems on one line keep the order in which
    /// they were found).
    pub fn into_problems(mut self) -> Vec<Problem> {
        self.problems.sort_by_key(|p| p.line);
        self.problems
    }
}

/// A table in a document, with what is needed to report on it.
pub(crate) struct Table<'t, 'i> {
    pub table: &'t DeTable<'i>,
    /// The table's header (or inline table), where missing fields are reported.
    pub span: Range<usize>,
    /// How messages name it: `[notary]`, `[[key]] #2`, `[groups.board]`.
    pub name: String,
}

impl<'t, 'i> Table<'t, 'i> {
    pub fn new(table: &'t DeTable<'i>, span: Range<usize>, name: impl Into<String>) -> Self {
        Table {
            table,
            span,
            name: name.into(),
        }
    }

    /// A value that must be a table, as a [`Table`]; reports anything else.
    pub fn from_value(
        doc: &mut Doc<'_>,
        value: &'t Value<'i>,
        name: impl Into<String>,
    ) -> Option<Self> {
        let name = name.into();
        match value.get_ref() {
            DeValue::Table(t) => Some(Table::new(t, value.span(), name)),
            other => {
                doc.at(
                    value.span(),
                    format!("{name} must be a table, not {}", article(other.type_str())),
                );
                None
            }
        }
    }

    /// Reports every field whose name is not in `known`, as `deny_unknown_fields` would, but
    /// all of them.
    pub fn deny_unknown(&self, doc: &mut Doc<'_>, known: &[&str]) {
        for (key, _) in self.table.iter() {
            if !known.contains(&key.get_ref().as_ref()) {
                doc.at(
                    key.span(),
                    format!(
                        "unknown field `{}` in {}; expected one of: {}",
                        key.get_ref(),
                        self.name,
                        known.join(", ")
                    ),
                );
            }
        }
    }

    /// The field `name`, if present.
    pub fn get(&self, name: &str) -> Option<&'t Value<'i>> {
        self.table
            .iter()
            .find(|(k, _)| k.get_ref() == name)
            .map(|(_, v)| v)
    }

    /// The field `name`; reports it missing (at the table's header) if absent.
    pub fn required(&self, doc: &mut Doc<'_>, name: &str) -> Option<&'t Value<'i>> {
        let v = self.get(name);
        if v.is_none() {
            doc.at(
                self.span.clone(),
                format!("missing field `{name}` in {}", self.name),
            );
        }
        v
    }

    /// Iterates over the table's fields with their key spans.
    pub fn entries(&self) -> impl Iterator<Item = (&'t str, Range<usize>, &'t Value<'i>)> {
        self.table
            .iter()
            .map(|(k, v)| (k.get_ref().as_ref(), k.span(), v))
    }
}

/// "a string", "an integer": a TOML type name with its article, for messages.
pub(crate) fn article(type_name: &str) -> String {
    match type_name.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {type_name}"),
        _ => format!("a {type_name}"),
    }
}

fn wrong_type(doc: &mut Doc<'_>, field: &str, expected: &str, value: &Value<'_>) {
    doc.at(
        value.span(),
        format!(
            "`{field}` must be {expected}, not {}",
            article(value.get_ref().type_str())
        ),
    );
}

/// A string value.
pub(crate) fn string<'v>(doc: &mut Doc<'_>, field: &str, value: &'v Value<'_>) -> Option<&'v str> {
    match value.get_ref() {
        DeValue::String(s) => Some(s.as_ref()),
        _ => {
            wrong_type(doc, field, "a string", value);
            None
        }
    }
}

/// A string value that must not be empty or only whitespace.
pub(crate) fn non_empty_string<'v>(
    doc: &mut Doc<'_>,
    field: &str,
    value: &'v Value<'_>,
) -> Option<&'v str> {
    let s = string(doc, field, value)?;
    if s.trim().is_empty() {
        doc.at(value.span(), format!("`{field}` must not be empty"));
        return None;
    }
    Some(s)
}

/// A boolean value.
pub(crate) fn boolean(doc: &mut Doc<'_>, field: &str, value: &Value<'_>) -> Option<bool> {
    match value.get_ref() {
        DeValue::Boolean(b) => Some(*b),
        _ => {
            wrong_type(doc, field, "true or false", value);
            None
        }
    }
}

/// An integer value, as TOML writes it (decimal, hex, octal or binary).
pub(crate) fn integer(doc: &mut Doc<'_>, field: &str, value: &Value<'_>) -> Option<i64> {
    match value.get_ref() {
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Some(n),
            Err(_) => {
                doc.at(value.span(), format!("`{field}` is out of range"));
                None
            }
        },
        _ => {
            wrong_type(doc, field, "an integer", value);
            None
        }
    }
}

/// An array of strings, each with its span.
pub(crate) fn string_array<'v>(
    doc: &mut Doc<'_>,
    field: &str,
    value: &'v Value<'_>,
) -> Option<Vec<(&'v str, Range<usize>)>> {
    let DeValue::Array(items) = value.get_ref() else {
        wrong_type(doc, field, "an array of strings", value);
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items.iter() {
        match item.get_ref() {
            DeValue::String(s) => out.push((s.as_ref(), item.span())),
            _ => {
                wrong_type(doc, &format!("{field}[]"), "a string", item);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// An instant: a TOML offset date-time (`2026-01-01T00:00:00Z`) or a string holding an
/// RFC 3339 date-time. An offset is required, because a local time names no single instant
/// and a key's validity must not depend on the server's time zone. Any offset is accepted and
/// converted to UTC: unlike a record, a policy file is not signed, so there is no canonical
/// spelling to keep.
pub(crate) fn instant(doc: &mut Doc<'_>, field: &str, value: &Value<'_>) -> Option<Timestamp> {
    let parsed = match value.get_ref() {
        DeValue::Datetime(dt) => from_toml_datetime(dt),
        DeValue::String(s) => OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|e| format!("{s:?} is not an RFC 3339 date-time: {e}")),
        _ => {
            wrong_type(
                doc,
                field,
                "an RFC 3339 date-time such as 2026-01-01T00:00:00Z",
                value,
            );
            return None;
        }
    };
    let result = parsed.and_then(|t| {
        Timestamp::from_unix_nanos(t.unix_timestamp_nanos()).map_err(|e| e.to_string())
    });
    match result {
        Ok(t) => Some(t),
        Err(reason) => {
            doc.at(value.span(), format!("`{field}`: {reason}"));
            None
        }
    }
}

fn from_toml_datetime(dt: &toml::value::Datetime) -> Result<OffsetDateTime, String> {
    let (Some(d), Some(t), Some(offset)) = (dt.date, dt.time, dt.offset) else {
        return Err(format!(
            "{dt} is not a full date-time with an offset; write e.g. 2026-01-01T00:00:00Z \
             (a local date or time names no single instant)"
        ));
    };
    let month = Month::try_from(d.month).map_err(|e| format!("{dt}: {e}"))?;
    let date = Date::from_calendar_date(i32::from(d.year), month, d.day)
        .map_err(|e| format!("{dt}: {e}"))?;
    let time = Time::from_hms_nano(
        t.hour,
        t.minute,
        t.second.unwrap_or(0),
        t.nanosecond.unwrap_or(0),
    )
    .map_err(|e| format!("{dt}: {e}"))?;
    let offset = match offset {
        toml::value::Offset::Z => UtcOffset::UTC,
        toml::value::Offset::Custom { minutes } => {
            UtcOffset::from_whole_seconds(i32::from(minutes) * 60)
                .map_err(|e| format!("{dt}: {e}"))?
        }
    };
    Ok(date.with_time(time).assume_offset(offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based_and_count_newlines() {
        let text = "a = 1\nb = 2\n\nc = 3";
        let (doc, _) = Doc::parse(Path::new("x.toml"), text);
        assert_eq!(doc.line(0), 1);
        assert_eq!(doc.line(5), 1); // the newline itself
        assert_eq!(doc.line(6), 2);
        assert_eq!(doc.line(12), 3);
        assert_eq!(doc.line(13), 4);
        assert_eq!(doc.line(text.len()), 4);
    }

    #[test]
    fn instants_need_an_offset_and_are_converted_to_utc() {
        let text = "a = 2026-01-01T01:30:00+01:30\nb = \"2026-01-01T00:00:00Z\"\nc = 2026-01-01T00:00:00\nd = 2026-01-01\ne = 7\n";
        let (mut doc, table) = Doc::parse(Path::new("x.toml"), text);
        let t = Table::new(table.get_ref(), 0..0, "x");
        let get = |doc: &mut Doc<'_>, name| instant(doc, name, t.get(name).expect("field"));
        let a = get(&mut doc, "a").expect("a");
        assert_eq!(a.to_string(), "2026-01-01T00:00:00Z");
        assert_eq!(get(&mut doc, "b"), Some(a));
        assert_eq!(get(&mut doc, "c"), None);
        assert_eq!(get(&mut doc, "d"), None);
        assert_eq!(get(&mut doc, "e"), None);
        let lines: Vec<usize> = doc.into_problems().iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![3, 4, 5]);
    }
}
