//! What readers ask of the projection: filters, paging, and the opaque cursor.
//!
//! Results are newest first (highest `seq` first; `seq` is the ledger's order, so it is the
//! order records were recorded in). A page ends where the next one starts: the cursor carries
//! the last `seq` returned and a fingerprint of the filter, so a cursor is refused with any
//! other filter instead of silently paging a different result set.

use base64::Engine;
use sha2::{Digest, Sha256};
use triplicate_core::{KeyId, Record, Timestamp};
use uuid::Uuid;

use crate::ProjectionError;

/// Results per page when a query does not say.
pub const DEFAULT_LIMIT: usize = 50;
/// The most results one page may hold.
pub const MAX_LIMIT: usize = 500;
/// The longest title search accepted, in bytes.
pub const MAX_TEXT_LEN: usize = 512;

/// A half-open time interval: `from <= t < until`; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub from: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

impl TimeRange {
    /// `from <= t < until`.
    pub fn between(from: Timestamp, until: Timestamp) -> TimeRange {
        TimeRange {
            from: Some(from),
            until: Some(until),
        }
    }

    /// True when neither end is set.
    pub fn is_open(&self) -> bool {
        self.from.is_none() && self.until.is_none()
    }

    /// True when `t` is in the range.
    pub fn contains(&self, t: &Timestamp) -> bool {
        self.from.is_none_or(|f| *t >= f) && self.until.is_none_or(|u| *t < u)
    }
}

/// Filters for [`crate::Projection::query`]; every filter that is set must match.
///
/// Built with [`DecisionQuery::new`] and the setters, or as a struct literal with
/// `..Default::default()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionQuery {
    /// Exactly this decision kind (`budget.approval`).
    pub kind: Option<String>,
    /// When the notary recorded the decision.
    pub recorded: TimeRange,
    /// When the decision was proposed.
    pub proposed: TimeRange,
    /// Approved (among others) by this key.
    pub approver: Option<KeyId>,
    /// Directly supersedes this decision.
    pub supersedes: Option<Uuid>,
    /// On the supersession chain of this decision: the decision itself, everything it
    /// supersedes transitively, and everything that transitively supersedes it (not its
    /// siblings: two decisions replacing the same one are each on its chain, not on each other's).
    pub chain_of: Option<Uuid>,
    /// Every word of this text appears in the title (case-insensitive; words are runs of
    /// letters and digits; whole words, no stemming).
    pub title_words: Option<String>,
    /// Results per page; 0 means [`DEFAULT_LIMIT`]; at most [`MAX_LIMIT`].
    pub limit: usize,
    /// Where to continue: the `next` of the previous page, with the same filters.
    pub cursor: Option<Cursor>,
}

impl DecisionQuery {
    /// No filters: every decision, newest first.
    pub fn new() -> DecisionQuery {
        DecisionQuery::default()
    }
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }
    pub fn recorded(mut self, range: TimeRange) -> Self {
        self.recorded = range;
        self
    }
    pub fn proposed(mut self, range: TimeRange) -> Self {
        self.proposed = range;
        self
    }
    pub fn approver(mut self, key: KeyId) -> Self {
        self.approver = Some(key);
        self
    }
    pub fn supersedes(mut self, id: Uuid) -> Self {
        self.supersedes = Some(id);
        self
    }
    pub fn chain_of(mut self, id: Uuid) -> Self {
        self.chain_of = Some(id);
        self
    }
    pub fn title_words(mut self, text: impl Into<String>) -> Self {
        self.title_words = Some(text.into());
        self
    }
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
    pub fn after(mut self, cursor: Cursor) -> Self {
        self.cursor = Some(cursor);
        self
    }

    /// A filter-only description, stable within a build, that cursors are bound to.
    fn fingerprint(&self) -> [u8; 8] {
        let t = |t: &Option<Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
        let desc = format!(
            "kind={:?}\nrecorded={}..{}\nproposed={}..{}\napprover={:?}\nsupersedes={:?}\nchain_of={:?}\ntitle={:?}",
            self.kind,
            t(&self.recorded.from),
            t(&self.recorded.until),
            t(&self.proposed.from),
            t(&self.proposed.until),
            self.approver.as_ref().map(KeyId::as_str),
            self.supersedes,
            self.chain_of,
            self.title_words,
        );
        let h = Sha256::digest(desc.as_bytes());
        let mut out = [0u8; 8];
        out.copy_from_slice(&h[..8]);
        out
    }

    /// Checks the query and resolves what the backends need: the page size, the seq to
    /// continue below, and the title's words.
    pub(crate) fn plan(&self) -> Result<QueryPlan, ProjectionError> {
        let limit = match self.limit {
            0 => DEFAULT_LIMIT,
            n if n > MAX_LIMIT => {
                return Err(ProjectionError::InvalidQuery(format!(
                    "limit {n} is more than the {MAX_LIMIT} results a page may hold"
                )))
            }
            n => n,
        };
        let before_seq = match &self.cursor {
            None => None,
            Some(c) => Some(c.decode(&self.fingerprint())?),
        };
        let words = match &self.title_words {
            None => None,
            Some(text) => {
                if text.len() > MAX_TEXT_LEN {
                    return Err(ProjectionError::InvalidQuery(format!(
                        "title search is {} bytes; at most {MAX_TEXT_LEN} are allowed",
                        text.len()
                    )));
                }
                let words = title_words(text);
                if words.is_empty() {
                    return Err(ProjectionError::InvalidQuery(
                        "title search has no words (letters or digits)".into(),
                    ));
                }
                Some(words)
            }
        };
        for (name, r) in [("recorded", &self.recorded), ("proposed", &self.proposed)] {
            if let (Some(f), Some(u)) = (r.from, r.until) {
                if f > u {
                    return Err(ProjectionError::InvalidQuery(format!(
                        "{name} range starts ({f}) after it ends ({u})"
                    )));
                }
            }
        }
        Ok(QueryPlan {
            limit,
            before_seq,
            words,
            fingerprint: self.fingerprint(),
        })
    }

    /// True when `r` passes every filter except `chain_of` and the title words, which need
    /// more than the record (the store's other rows, a tokenizer). For the conformance suite's
    /// reference answers.
    #[cfg(feature = "testkit")]
    pub(crate) fn matches_simple(&self, r: &Record) -> bool {
        self.kind.as_ref().is_none_or(|k| *k == r.decision.kind)
            && self.recorded.contains(&r.recorded_at)
            && self.proposed.contains(&r.decision.proposed_at)
            && self
                .approver
                .as_ref()
                .is_none_or(|k| r.approvals.iter().any(|a| a.key_id == *k))
            && self
                .supersedes
                .is_none_or(|s| r.decision.supersedes == Some(s))
    }
}

/// What a backend needs to run a query.
#[derive(Debug, Clone)]
pub(crate) struct QueryPlan {
    pub limit: usize,
    /// Return only seqs below this (the cursor's position).
    pub before_seq: Option<u64>,
    /// Lowercased words of the title search.
    pub words: Option<Vec<String>>,
    pub fingerprint: [u8; 8],
}

impl QueryPlan {
    /// The page for `records` fetched with `LIMIT limit + 1`, newest first.
    pub fn page(&self, mut records: Vec<Record>) -> Page {
        let next = if records.len() > self.limit {
            records.truncate(self.limit);
            records
                .last()
                .map(|r| Cursor::encode(r.seq, &self.fingerprint))
        } else {
            None
        };
        Page { records, next }
    }
}

/// Splits a title search into lowercase words: maximal runs of letters and digits.
///
/// Both backends' full-text indexes split titles the same way for such words (PostgreSQL's
/// `simple` configuration, SQLite FTS5's `unicode61` tokenizer without diacritic folding), so
/// passing them only words keeps the two backends' answers the same.
pub(crate) fn title_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Newest first.
    pub records: Vec<Record>,
    /// The cursor for the next page; `None` when this page is the last.
    pub next: Option<Cursor>,
}

/// Where a page ends. Opaque to callers: hand it back with the same filters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    /// A cursor received from a client (for example in a URL); checked when used.
    pub fn from_string(s: impl Into<String>) -> Cursor {
        Cursor(s.into())
    }

    /// The cursor's text, to hand to a client.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn encode(seq: u64, fingerprint: &[u8; 8]) -> Cursor {
        let mut raw = Vec::with_capacity(17);
        raw.push(1u8); // format version
        raw.extend_from_slice(&seq.to_be_bytes());
        raw.extend_from_slice(fingerprint);
        Cursor(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
    }

    fn decode(&self, fingerprint: &[u8; 8]) -> Result<u64, ProjectionError> {
        let bad = |why: &str| ProjectionError::InvalidQuery(format!("cursor {:?} {why}", self.0));
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&self.0)
            .map_err(|_| bad("is not a cursor this service issued"))?;
        if raw.len() != 17 || raw[0] != 1 {
            return Err(bad("is not a cursor this service issued"));
        }
        if raw[9..] != fingerprint[..] {
            return Err(bad(
                "was issued for different filters; repeat the query from the first page",
            ));
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&raw[1..9]);
        Ok(u64::from_be_bytes(seq))
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn words_are_runs_of_letters_and_digits_lowercased() {
        assert_eq!(
            title_words("  Budget: Q3-2027, café ÖL!"),
            vec!["budget", "q3", "2027", "café", "öl"]
        );
        assert!(title_words(" -- ").is_empty());
    }

    #[test]
    fn cursors_are_bound_to_their_filters() {
        let q = DecisionQuery::new().kind("budget.approval");
        let plan = q.plan().unwrap();
        let c = Cursor::encode(42, &plan.fingerprint);
        assert_eq!(
            q.clone().after(c.clone()).plan().unwrap().before_seq,
            Some(42)
        );
        let other = DecisionQuery::new().kind("policy.change").after(c);
        assert!(
            matches!(other.plan(), Err(ProjectionError::InvalidQuery(m)) if m.contains("different filters"))
        );
        let junk = DecisionQuery::new().after(Cursor::from_string("not a cursor"));
        assert!(matches!(junk.plan(), Err(ProjectionError::InvalidQuery(_))));
    }

    #[test]
    fn limits_and_ranges_are_checked() {
        assert!(DecisionQuery::new().limit(MAX_LIMIT + 1).plan().is_err());
        assert_eq!(DecisionQuery::new().plan().unwrap().limit, DEFAULT_LIMIT);
        let t1: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert!(DecisionQuery::new()
            .recorded(TimeRange::between(t1, t0))
            .plan()
            .is_err());
        assert!(DecisionQuery::new().title_words("?!").plan().is_err());
    }
}
