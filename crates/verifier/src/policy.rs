//! `verification.toml`: how the cross-verifier runs and what it may do on its own.
//!
//! ```toml
//! grace_period = "5m"            # a downstream record missing for less than this is `lag`
//! reverify_signatures = false    # re-check every approval and notary signature on each run
//!
//! [repair]
//! automatic = ["minor"]          # classes repaired without an auditor: [] or ["minor"]
//!
//! [schedule]
//! incremental = "*/5 * * * *"    # cron: classic 5 fields, or 6-7 with seconds (and year)
//! full = "0 30 3 * * Sun"
//! rolling_window = 1000          # seqs before the last run's end that each run re-checks
//!
//! [[webhook]]
//! url = "https://alerts.example.org/triplicate"
//! secret_env = "TRIPLICATE_WEBHOOK_SECRET"   # the HMAC key comes from this variable
//! classes = ["major", "critical"]
//! ```
//!
//! Every field is optional ([`VerificationPolicy::default`] says what is assumed). Loading
//! follows `triplicate-policy`: the file is walked as a span-keeping TOML document
//! (`toml::de::DeTable`) rather than deserialised, so every problem is reported at once with
//! its line, and the error is that crate's [`PolicyError`], whose `Display` prints
//! `file:line: reason` lines.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;
use triplicate_core::Timestamp;
use triplicate_policy::{PolicyError, Problem};

use crate::model::Class;

/// The file name inside a policy directory.
pub const VERIFICATION_FILE: &str = "verification.toml";

/// A validated `verification.toml`. Built only by the loader or [`Default`], so every schedule
/// parses and every class named may do what it is configured for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerificationPolicy {
    /// How long a downstream store may lack a record (counted from the record's
    /// `recorded_at`) before it is `minor` rather than `lag`.
    pub grace_period: Duration,
    /// Classes whose repairs run without an auditor. Only `minor` may be listed: `major`
    /// repairs wait for an auditor by design, `lag` is the catch-up worker's, and a `critical`
    /// ledger cannot be repaired from the other stores.
    pub auto_repair: BTreeSet<Class>,
    /// When incremental runs start.
    pub incremental: CronSchedule,
    /// When full sweeps start.
    pub full_sweep: CronSchedule,
    /// How many seqs before the last run's end each incremental run re-checks, so a record
    /// changed just after it was verified is seen again.
    pub rolling_window: u64,
    /// Re-verify every approval and notary signature (batch Ed25519) on each run.
    pub reverify_signatures: bool,
    /// Where alerts are posted.
    pub webhooks: Vec<Webhook>,
    /// Scheduled recovery drills (`[drills.<scenario>]`), in scenario order.
    pub drills: Vec<DrillSchedule>,
    /// Where drills make their scratch copies (`[drills] scratch_dir`, an absolute path); the
    /// system's temporary directory when unset. A copy needs room for one backup and one copy
    /// of the stores.
    pub drill_scratch_dir: Option<std::path::PathBuf>,
}

/// The recovery drill scenarios (`triplicate drill run --scenario`), as `[drills.<name>]`
/// tables name them.
pub const DRILL_SCENARIOS: [&str; 5] = [
    "lose-projection",
    "lose-stream",
    "corrupt-ledger",
    "restore-all",
    "store-outage",
];

/// One scheduled drill scenario: when it runs, and how long it may go without a passed drill
/// before the alert rules say so (`triplicate_drill_window_seconds`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DrillSchedule {
    /// One of [`DRILL_SCENARIOS`].
    pub scenario: String,
    pub schedule: CronSchedule,
    pub window: Duration,
}

impl Default for VerificationPolicy {
    /// A five-minute grace period, automatic repair of `minor` only, incremental runs every
    /// five minutes, a full sweep daily at 03:30 UTC, a 1,000-seq rolling window, no signature
    /// re-verification, no webhooks.
    fn default() -> Self {
        VerificationPolicy {
            grace_period: Duration::from_secs(300),
            auto_repair: BTreeSet::from([Class::Minor]),
            incremental: CronSchedule::DEFAULT_INCREMENTAL
                .parse()
                .unwrap_or_else(|_| {
                    // Unreachable: the constant parses (tested). Every-minute is a safe fallback.
                    CronSchedule::every_minute()
                }),
            full_sweep: CronSchedule::DEFAULT_FULL
                .parse()
                .unwrap_or_else(|_| CronSchedule::every_minute()),
            rolling_window: 1_000,
            reverify_signatures: false,
            webhooks: Vec::new(),
            drills: Vec::new(),
            drill_scratch_dir: None,
        }
    }
}

impl VerificationPolicy {
    /// Whether `class` may be repaired without an auditor.
    pub fn repairs_automatically(&self, class: Class) -> bool {
        self.auto_repair.contains(&class)
    }

    /// Reads and validates `<dir>/verification.toml`.
    pub fn load(dir: &Path) -> Result<VerificationPolicy, PolicyError> {
        let path = dir.join(VERIFICATION_FILE);
        let text = std::fs::read(&path)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|b| {
                String::from_utf8(b).map_err(|e| {
                    format!(
                        "not UTF-8 (invalid byte at offset {}): TOML files are UTF-8",
                        e.utf8_error().valid_up_to()
                    )
                })
            });
        let text = text.map_err(|reason| PolicyError {
            problems: vec![Problem {
                file: path.clone(),
                line: 0,
                reason,
            }],
        })?;
        let policy = Self::parse(&path, &text)?;
        tracing::info!(
            file = %path.display(),
            grace_period_s = policy.grace_period.as_secs(),
            incremental = policy.incremental.expression(),
            full = policy.full_sweep.expression(),
            webhooks = policy.webhooks.len(),
            "loaded verification policy"
        );
        Ok(policy)
    }

    /// Validates `verification.toml` given as text; problems name the file
    /// `verification.toml`.
    pub fn from_toml(text: &str) -> Result<VerificationPolicy, PolicyError> {
        Self::parse(Path::new(VERIFICATION_FILE), text)
    }

    fn parse(file: &Path, text: &str) -> Result<VerificationPolicy, PolicyError> {
        let mut doc = Doc::new(file, text);
        let (root, errors) = DeTable::parse_recoverable(text);
        for e in &errors {
            let line = e.span().map_or(1, |s| doc.line(s.start));
            doc.push(line, format!("TOML syntax error: {}", e.message()));
        }
        let mut p = VerificationPolicy::default();
        let root = root.get_ref();
        doc.deny_unknown(
            root,
            "the file",
            &[
                "grace_period",
                "reverify_signatures",
                "repair",
                "schedule",
                "webhook",
                "drills",
            ],
        );
        if let Some(v) = get(root, "grace_period") {
            if let Some(d) = doc.duration("grace_period", v) {
                p.grace_period = d;
            }
        }
        if let Some(v) = get(root, "reverify_signatures") {
            if let Some(b) = doc.boolean("reverify_signatures", v) {
                p.reverify_signatures = b;
            }
        }
        if let Some(t) = get(root, "repair").and_then(|v| doc.table("[repair]", v)) {
            doc.deny_unknown(t, "[repair]", &["automatic"]);
            if let Some(v) = get(t, "automatic") {
                if let Some(classes) = doc.classes("automatic", v) {
                    let mut ok = BTreeSet::new();
                    for (class, span) in classes {
                        match class {
                            Class::Minor => {
                                ok.insert(class);
                            }
                            Class::Lag => doc.at(
                                span,
                                "`lag` is not repaired by the verifier: the catch-up worker \
                                 brings lagging stores up to the ledger",
                            ),
                            Class::Major => doc.at(
                                span,
                                "`major` repairs wait for an auditor's approval; they cannot \
                                 be made automatic",
                            ),
                            Class::Critical => doc.at(
                                span,
                                "`critical` is a ledger failure; nothing can repair the \
                                 ledger from the other stores",
                            ),
                        }
                    }
                    p.auto_repair = ok;
                }
            }
        }
        if let Some(t) = get(root, "schedule").and_then(|v| doc.table("[schedule]", v)) {
            doc.deny_unknown(t, "[schedule]", &["incremental", "full", "rolling_window"]);
            if let Some(s) = get(t, "incremental").and_then(|v| doc.cron("incremental", v)) {
                p.incremental = s;
            }
            if let Some(s) = get(t, "full").and_then(|v| doc.cron("full", v)) {
                p.full_sweep = s;
            }
            if let Some(v) = get(t, "rolling_window") {
                match doc.integer("rolling_window", v) {
                    Some(n) if n >= 0 => p.rolling_window = n.unsigned_abs(),
                    Some(_) => doc.at(v.span(), "`rolling_window` must not be negative"),
                    None => {}
                }
            }
        }
        if let Some(v) = get(root, "webhook") {
            match v.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let name = format!("[[webhook]] #{}", i + 1);
                        if let Some(t) = doc.table(&name, item) {
                            if let Some(w) = doc.webhook(&name, t, item.span()) {
                                p.webhooks.push(w);
                            }
                        }
                    }
                }
                other => doc.at(
                    v.span(),
                    format!(
                        "`webhook` must be an array of tables ([[webhook]]), not {}",
                        article(other.type_str())
                    ),
                ),
            }
        }
        if let Some(t) = get(root, "drills").and_then(|v| doc.table("[drills]", v)) {
            let mut keys: Vec<&str> = DRILL_SCENARIOS.to_vec();
            keys.push("scratch_dir");
            doc.deny_unknown(t, "[drills]", &keys);
            if let Some(v) = get(t, "scratch_dir") {
                if let Some(dir) = doc.string("scratch_dir", v) {
                    let path = std::path::PathBuf::from(dir);
                    if path.is_absolute() {
                        p.drill_scratch_dir = Some(path);
                    } else {
                        doc.at(v.span(), "`scratch_dir` must be an absolute path");
                    }
                }
            }
            for name in DRILL_SCENARIOS {
                let Some(v) = get(t, name) else { continue };
                let table = format!("[drills.{name}]");
                let Some(d) = doc.table(&table, v) else {
                    continue;
                };
                doc.deny_unknown(d, &table, &["schedule", "window"]);
                let schedule = match get(d, "schedule") {
                    Some(v) => doc.cron("schedule", v),
                    None => {
                        doc.at(v.span(), format!("{table} needs a `schedule` (cron)"));
                        None
                    }
                };
                let window = match get(d, "window") {
                    Some(v) => doc.duration("window", v),
                    None => {
                        doc.at(
                            v.span(),
                            format!(
                                "{table} needs a `window`: how long it may go without a passed \
                                 drill (e.g. \"8d\")"
                            ),
                        );
                        None
                    }
                };
                if let (Some(schedule), Some(window)) = (schedule, window) {
                    p.drills.push(DrillSchedule {
                        scenario: name.to_owned(),
                        schedule,
                        window,
                    });
                }
            }
        }
        let problems = doc.into_problems();
        if problems.is_empty() {
            Ok(p)
        } else {
            Err(PolicyError { problems })
        }
    }
}

/// An alert target.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Webhook {
    /// `http://` or `https://` URL that receives a JSON POST.
    pub url: String,
    /// The environment variable holding the HMAC key that signs each POST. The key itself never
    /// appears in the file.
    pub secret_env: Option<String>,
    /// The classes that trigger a POST (default: `major` and `critical`).
    pub classes: BTreeSet<Class>,
}

/// A cron schedule as written, with its parsed form.
///
/// The `cron` crate wants a seconds field (6 or 7 fields); the classic 5-field form
/// (`min hour dom month dow`) is accepted too and read as firing at second 0.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expression: String,
    schedule: cron::Schedule,
}

impl CronSchedule {
    /// Every five minutes.
    pub const DEFAULT_INCREMENTAL: &'static str = "*/5 * * * *";
    /// Daily at 03:30 UTC.
    pub const DEFAULT_FULL: &'static str = "30 3 * * *";

    fn every_minute() -> CronSchedule {
        CronSchedule {
            expression: "* * * * *".into(),
            schedule: cron::Schedule::from_str("0 * * * * *")
                .unwrap_or_else(|_| unreachable_schedule()),
        }
    }

    /// The expression as written in the file.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first time the schedule fires strictly after `t` (UTC); `None` if it never does
    /// again (a schedule pinned to past years).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let nanos = t.unix_nanos();
        let secs = i64::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
        let sub = u32::try_from(nanos.rem_euclid(1_000_000_000)).ok()?;
        let at = chrono::DateTime::<chrono::Utc>::from_timestamp(secs, sub)?;
        let next = self.schedule.after(&at).next()?;
        let n = i128::from(next.timestamp()) * 1_000_000_000
            + i128::from(next.timestamp_subsec_nanos());
        Timestamp::from_unix_nanos(n).ok()
    }
}

#[allow(clippy::panic)]
fn unreachable_schedule() -> cron::Schedule {
    // "0 * * * * *" is a valid expression for every `cron` release; reaching this is a bug.
    panic!("the every-minute cron expression did not parse")
}

impl FromStr for CronSchedule {
    type Err = String;

    fn from_str(s: &str) -> Result<CronSchedule, String> {
        let fields = s.split_whitespace().count();
        let normalised = match fields {
            5 => {
                let f: Vec<&str> = s.split_whitespace().collect();
                format!(
                    "0 {} {} {} {} {}",
                    f[0],
                    f[1],
                    f[2],
                    f[3],
                    classic_weekdays(f[4]).map_err(|e| format!("{s:?}: {e}"))?
                )
            }
            6 | 7 => s.trim().to_owned(),
            n => {
                return Err(format!(
                    "{s:?} has {n} fields; write 5 (min hour day month weekday) or 6-7 \
                     (sec min hour day month weekday [year])"
                ))
            }
        };
        let schedule = cron::Schedule::from_str(&normalised).map_err(|e| {
            // The crate's message draws a caret under the field on a second line.
            let e = e.to_string();
            let why = e.lines().last().unwrap_or_default().trim().to_owned();
            format!("{s:?} is not a cron expression: {why}")
        })?;
        Ok(CronSchedule {
            expression: s.trim().to_owned(),
            schedule,
        })
    }
}

/// The weekday field of a classic 5-field expression (0–7, 0 and 7 both Sunday) in the `cron`
/// crate's numbering (1–7, 1 Sunday): each number in lists and ranges is moved up by one, 7
/// becomes 1, and a range that ends at 7 is split (`5-7` is Friday to Sunday: `6-7,1`). Names
/// (`MON-FRI`), `*`, `?` and step sizes (`*/2`) are left as written.
fn classic_weekdays(field: &str) -> Result<String, String> {
    let day = |t: &str| -> Result<Option<u32>, String> {
        if t.chars().all(|c| c.is_ascii_digit()) && !t.is_empty() {
            match t.parse::<u32>() {
                Ok(n) if n <= 7 => Ok(Some(n)),
                _ => Err(format!("weekday {t} is out of range 0-7")),
            }
        } else {
            Ok(None)
        }
    };
    let crate_day = |n: u32| if n == 7 { 1 } else { n + 1 };
    let mut parts = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, st)) => (r, Some(st)),
            None => (item, None),
        };
        let step = step.map(|st| format!("/{st}")).unwrap_or_default();
        match range.split_once('-') {
            Some((a, b)) => match (day(a)?, day(b)?) {
                (Some(a), Some(7)) if a > 0 => {
                    parts.push(format!("{}-7{step}", crate_day(a)));
                    parts.push("1".to_owned());
                }
                (Some(_), Some(7)) => parts.push(format!("1-7{step}")),
                (Some(a), Some(b)) => {
                    parts.push(format!("{}-{}{step}", crate_day(a), crate_day(b)))
                }
                _ => parts.push(item.to_owned()),
            },
            None => match day(range)? {
                Some(n) => parts.push(format!("{}{step}", crate_day(n))),
                None => parts.push(item.to_owned()),
            },
        }
    }
    Ok(parts.join(","))
}

/// Parses `90s`, `5m`, `1h30m`, `2d`: whole numbers with units `s`, `m`, `h`, `d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration; write e.g. \"90s\", \"5m\", \"1h30m\"".into());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => {
                return Err(format!(
                    "{s:?}: unknown unit {c:?}; use s, m, h or d (e.g. \"1h30m\")"
                ))
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{s:?}: a number must come before {c:?}"))?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("{s:?} is too long"))?;
    }
    if !digits.is_empty() {
        return Err(format!(
            "{s:?}: the last number has no unit; write e.g. \"{digits}s\""
        ));
    }
    Ok(Duration::from_secs(total))
}

type Value<'i> = Spanned<DeValue<'i>>;

fn get<'t, 'i>(t: &'t DeTable<'i>, name: &str) -> Option<&'t Value<'i>> {
    t.iter()
        .find(|(k, _)| k.get_ref().as_ref() == name)
        .map(|(_, v)| v)
}

fn article(type_name: &str) -> String {
    match type_name.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {type_name}"),
        _ => format!("a {type_name}"),
    }
}

/// The file being checked and its problems: the same approach as `triplicate-policy`'s
/// loader (spans turned into lines, every problem kept), for the handful of types this file
/// has.
struct Doc<'a> {
    file: &'a Path,
    line_starts: Vec<usize>,
    problems: Vec<Problem>,
}

impl<'a> Doc<'a> {
    fn new(file: &'a Path, text: &str) -> Doc<'a> {
        Doc {
            file,
            line_starts: std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
            problems: Vec::new(),
        }
    }

    fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset)
    }

    fn push(&mut self, line: usize, reason: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line,
            reason: reason.into(),
        });
    }

    fn at(&mut self, span: Range<usize>, reason: impl Into<String>) {
        let line = self.line(span.start);
        self.push(line, reason);
    }

    fn into_problems(mut self) -> Vec<Problem> {
        self.problems.sort_by_key(|p| p.line);
        self.problems
    }

    fn deny_unknown(&mut self, t: &DeTable<'_>, name: &str, known: &[&str]) {
        for (k, _) in t.iter() {
            if !known.contains(&k.get_ref().as_ref()) {
                self.at(
                    k.span(),
                    format!(
                        "unknown field `{}` in {name}; expected one of: {}",
                        k.get_ref(),
                        known.join(", ")
                    ),
                );
            }
        }
    }

    fn wrong_type(&mut self, field: &str, expected: &str, v: &Value<'_>) {
        self.at(
            v.span(),
            format!(
                "`{field}` must be {expected}, not {}",
                article(v.get_ref().type_str())
            ),
        );
    }

    fn table<'t, 'i>(&mut self, name: &str, v: &'t Value<'i>) -> Option<&'t DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(name, "a table", v);
                None
            }
        }
    }

    fn string<'v>(&mut self, field: &str, v: &'v Value<'_>) -> Option<&'v str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.wrong_type(field, "a string", v);
                None
            }
        }
    }

    fn boolean(&mut self, field: &str, v: &Value<'_>) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(field, "true or false", v);
                None
            }
        }
    }

    fn integer(&mut self, field: &str, v: &Value<'_>) -> Option<i64> {
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.at(v.span(), format!("`{field}` is out of range"));
                    None
                }
            },
            _ => {
                self.wrong_type(field, "an integer", v);
                None
            }
        }
    }

    fn duration(&mut self, field: &str, v: &Value<'_>) -> Option<Duration> {
        let s = self.string(field, v)?;
        match parse_duration(s) {
            Ok(d) => Some(d),
            Err(reason) => {
                self.at(v.span(), format!("`{field}`: {reason}"));
                None
            }
        }
    }

    fn cron(&mut self, field: &str, v: &Value<'_>) -> Option<CronSchedule> {
        let s = self.string(field, v)?;
        match s.parse::<CronSchedule>() {
            Ok(c) => Some(c),
            Err(reason) => {
                self.at(v.span(), format!("`{field}`: {reason}"));
                None
            }
        }
    }

    fn classes(&mut self, field: &str, v: &Value<'_>) -> Option<Vec<(Class, Range<usize>)>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(field, "an array of class names", v);
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => match Class::parse(s.as_ref()) {
                    Some(c) => out.push((c, item.span())),
                    None => {
                        // Reported, and the valid names still checked.
                        self.at(
                            item.span(),
                            format!(
                                "unknown class {:?} in `{field}`; expected \"lag\", \"minor\", \
                                 \"major\" or \"critical\"",
                                s.as_ref()
                            ),
                        );
                    }
                },
                _ => {
                    self.wrong_type(&format!("{field}[]"), "a string", item);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn webhook(&mut self, name: &str, t: &DeTable<'_>, span: Range<usize>) -> Option<Webhook> {
        self.deny_unknown(t, name, &["url", "secret_env", "classes"]);
        let url = match get(t, "url") {
            None => {
                self.at(span, format!("missing field `url` in {name}"));
                None
            }
            Some(v) => match self.string("url", v) {
                Some(u) if u.starts_with("https://") || u.starts_with("http://") => {
                    if u.len() <= "https://".len() || u.contains(char::is_whitespace) {
                        self.at(v.span(), format!("`url` {u:?} names no host"));
                        None
                    } else {
                        Some(u.to_owned())
                    }
                }
                Some(u) => {
                    self.at(
                        v.span(),
                        format!("`url` {u:?} must start with https:// (or http:// for a local receiver)"),
                    );
                    None
                }
                None => None,
            },
        };
        let mut secret_env = None;
        if let Some(v) = get(t, "secret_env") {
            if let Some(s) = self.string("secret_env", v) {
                if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    self.at(
                        v.span(),
                        format!(
                            "`secret_env` {s:?} must be an environment variable name \
                             (letters, digits, _); the secret itself never goes in this file"
                        ),
                    );
                } else {
                    secret_env = Some(s.to_owned());
                }
            }
        }
        let mut classes = BTreeSet::from([Class::Major, Class::Critical]);
        if let Some(v) = get(t, "classes") {
            if let Some(cs) = self.classes("classes", v) {
                classes = cs.into_iter().map(|(c, _)| c).collect();
            }
        }
        Some(Webhook {
            url: url?,
            secret_env,
            classes,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn defaults_parse() {
        let p = VerificationPolicy::default();
        assert_eq!(
            p.incremental.expression(),
            CronSchedule::DEFAULT_INCREMENTAL
        );
        assert_eq!(p.full_sweep.expression(), CronSchedule::DEFAULT_FULL);
        assert!(CronSchedule::DEFAULT_INCREMENTAL
            .parse::<CronSchedule>()
            .is_ok());
        assert!(CronSchedule::DEFAULT_FULL.parse::<CronSchedule>().is_ok());
        assert!(p.repairs_automatically(Class::Minor));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn five_and_six_field_cron_agree() {
        let five: CronSchedule = "*/5 * * * *".parse().unwrap();
        let six: CronSchedule = "0 */5 * * * *".parse().unwrap();
        let t: Timestamp = "2026-11-30T10:02:30Z".parse().unwrap();
        assert_eq!(five.next_after(t), six.next_after(t));
        assert_eq!(
            five.next_after(t).unwrap().to_string(),
            "2026-11-30T10:05:00Z"
        );
        assert!("* * *".parse::<CronSchedule>().is_err());
        // Classic weekdays: 0 and 7 are Sunday, 1-5 Monday to Friday (the `cron` crate counts
        // from 1 = Sunday; the 5-field form is translated).
        let sunday: Timestamp = "2026-11-29T00:00:00Z".parse().unwrap();
        let at = |e: &str, t: Timestamp| {
            e.parse::<CronSchedule>()
                .unwrap()
                .next_after(t)
                .unwrap()
                .to_string()
        };
        assert_eq!(at("0 3 * * 0", sunday), "2026-11-29T03:00:00Z");
        assert_eq!(at("0 3 * * 7", sunday), "2026-11-29T03:00:00Z");
        assert_eq!(at("0 3 * * 1", sunday), "2026-11-30T03:00:00Z");
        assert_eq!(at("0 3 * * 1-5", sunday), "2026-11-30T03:00:00Z");
        assert_eq!(at("0 3 * * 6", sunday), "2026-12-05T03:00:00Z");
        assert_eq!(
            at("0 3 * * 5-7", "2026-11-30T00:00:00Z".parse().unwrap()),
            "2026-12-04T03:00:00Z"
        );
        assert_eq!(
            at("0 3 * * 6,0", "2026-11-30T00:00:00Z".parse().unwrap()),
            "2026-12-05T03:00:00Z"
        );
        assert_eq!(at("0 3 * * MON", sunday), "2026-11-30T03:00:00Z");
        assert!("0 3 * * 8".parse::<CronSchedule>().is_err());
        assert!("61 * * * *".parse::<CronSchedule>().is_err());
    }

    #[test]
    fn drill_schedules_parse_and_every_problem_is_named() {
        let p = VerificationPolicy::from_toml(
            "[drills.lose-projection]\nschedule = \"0 3 * * 0\"\nwindow = \"8d\"\n\
             [drills.store-outage]\nschedule = \"0 0 4 1 * *\"\nwindow = \"40d\"\n",
        )
        .unwrap();
        assert_eq!(p.drills.len(), 2);
        assert_eq!(p.drills[0].scenario, "lose-projection");
        assert_eq!(p.drills[0].window, Duration::from_secs(8 * 86_400));
        assert_eq!(p.drills[1].scenario, "store-outage");
        assert!(VerificationPolicy::default().drills.is_empty());
        let p =
            VerificationPolicy::from_toml("[drills]\nscratch_dir = \"/var/tmp/drills\"\n").unwrap();
        assert_eq!(
            p.drill_scratch_dir.as_deref(),
            Some(std::path::Path::new("/var/tmp/drills"))
        );
        let err = VerificationPolicy::from_toml("[drills]\nscratch_dir = \"tmp\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("absolute"), "{err}");

        let err = VerificationPolicy::from_toml(
            "[drills.lose-everything]\nschedule = \"* * * * *\"\nwindow = \"1d\"\n\
             [drills.lose-stream]\nwindow = \"1d\"\n\
             [drills.corrupt-ledger]\nschedule = \"* * * * *\"\nwindow = \"soon\"\nextra = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("lose-everything"), "{err}");
        assert!(err.contains("needs a `schedule`"), "{err}");
        assert!(err.contains("extra"), "{err}");
        assert!(err.contains("window"), "{err}");
    }
}
