//! Webhook alerts about a finished run: a signed JSON POST to each `[[webhook]]` target of
//! `verification.toml` whose `classes` the report has something to say about.
//!
//! The service calls [`WebhookSender::deliver`] after a run (spawning it, so a slow receiver
//! never holds up the next run); the sender knows nothing about schedules or metrics, and the
//! run knows nothing about webhooks. [`WebhookSender::deliver_json`] sends any other JSON body
//! (the independent auditor's alerts, `triplicate audit`) to every target with the same
//! headers, signature and retries; its body is the caller's.
//!
//! # What is sent
//!
//! One `POST` per target and run, `Content-Type: application/json`, the body built by
//! [`alert_body`]:
//!
//! ```json
//! {
//!   "type": "triplicate.verification.alert",
//!   "version": 1,
//!   "run_id": "0190…", "mode": "incremental",
//!   "started_at": "2025-…Z", "finished_at": "2025-…Z",
//!   "report_digest": "<base64 of Report::digest()>",
//!   "worst_class": "major",
//!   "counts": {"lag": 0, "minor": 2, "major": 1, "critical": 0},
//!   "checkpoint": {"size": 1234, "root": "<base64>"},
//!   "discrepancies": [{"seq": 17, "decision_id": "…", "store": "stream", "class": "major",
//!                      "kind": "differs", "expected_hash": "<base64>",
//!                      "actual_hash": "<base64>", "file": null, "detail": "…"}],
//!   "discrepancies_omitted": 0,
//!   "report_url": "https://…" or null
//! }
//! ```
//!
//! `counts` and `worst_class` describe the whole report; `discrepancies` holds only the classes
//! the target listed, most serious first (report order within a class), at most
//! [`MAX_DISCREPANCIES`] of them, and `discrepancies_omitted` says how many more of those
//! classes the report holds. `checkpoint` is the checkpoint the run verified, `null` when its
//! signature did not verify. `report_digest` is `null` only if the report could not be
//! canonicalised, which is a bug (reports hold no floats) and is logged.
//!
//! # Headers and the signature
//!
//! - `User-Agent: triplicate/<version>`
//! - `X-Triplicate-Delivery: <UUIDv4>`: the same on every retry of one delivery, so a
//!   receiver can drop a duplicate (an attempt that timed out here may have arrived there).
//! - `X-Triplicate-Timestamp: <unix seconds>`: when this attempt was sent.
//! - `X-Triplicate-Signature: sha256=<hex>`, when the target has a `secret_env`: lowercase hex
//!   of `HMAC-SHA256(secret, timestamp || "." || body)`, where `timestamp` is the header's
//!   decimal text and `body` the exact bytes received.
//!
//! The timestamp is inside the signed string so that a captured request cannot be replayed
//! later: a receiver that checks the signature and the timestamp's age refuses it. Each retry
//! is signed afresh with its own timestamp, so a retry after a long backoff is still fresh. A
//! receiver verifies a request like this:
//!
//! 1. Read `X-Triplicate-Timestamp` and `X-Triplicate-Signature`; refuse the request if either
//!    is missing or the signature does not start with `sha256=`.
//! 2. Refuse it if the timestamp is more than a few minutes away from its own clock (five is
//!    usual).
//! 3. Compute `HMAC-SHA256(secret, timestamp + "." + raw_body)` over the raw body bytes, before
//!    any JSON parsing, and compare its hex with the header's in constant time (for example
//!    `hmac.compare_digest` in Python, `crypto.timingSafeEqual` in Node, `Mac::verify_slice`
//!    in Rust).
//! 4. Optionally remember `X-Triplicate-Delivery` for the tolerance window and ignore repeats.
//!
//! A target without `secret_env` is sent unsigned (the sender warns once, when it is built);
//! its receiver cannot tell an alert from a forgery.
//!
//! # Retries
//!
//! Connection errors, timeouts, `5xx` and `429` are retried up to [`DeliveryOptions::attempts`]
//! times in all, with exponential backoff from `first_backoff`, capped at `max_backoff`, with
//! "equal jitter" (a wait of `d` becomes a random wait in `[d/2, d]`, so receivers that came
//! back at once are not hit by every sender in step). A `Retry-After` header in seconds, on a
//! `429` or a `5xx`, is honoured (the wait is at least that long, capped at `max_backoff`).
//! Other `4xx` answers are not retried: the request itself is wrong and would be refused
//! again. Redirects are not followed (a `3xx` is a failure): a signed alert goes only to the
//! URL configured.
//!
//! # Logs
//!
//! Target `triplicate::alerts`: `warn` for each failed attempt, `info` for a delivery, `error`
//! for a delivery given up. Logs and errors show a target's URL without its user
//! information, query or fragment; a URL whose path carries a token appears in them as it is,
//! so secrets belong in `secret_env`, not in the URL.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use rand::Rng;
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Serialize;
use sha2::Sha256;
use triplicate_core::{Hash, Timestamp};
use uuid::Uuid;

use crate::ledger_check::CheckpointRef;
use crate::model::{Class, Counts, Discrepancy, Kind, Store};
use crate::policy::Webhook;
use crate::report::{Report, RunMode};

/// The body's `type`.
pub const ALERT_TYPE: &str = "triplicate.verification.alert";

/// The body's `version`.
pub const ALERT_VERSION: u32 = 1;

/// At most this many discrepancies are listed in one alert; the rest are counted in
/// `discrepancies_omitted`.
pub const MAX_DISCREPANCIES: usize = 100;

/// Header carrying the delivery's id (the same across its retries).
pub const DELIVERY_HEADER: &str = "x-triplicate-delivery";
/// Header carrying the attempt's unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "x-triplicate-timestamp";
/// Header carrying `sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
pub const SIGNATURE_HEADER: &str = "x-triplicate-signature";

const USER_AGENT: &str = concat!("triplicate/", env!("CARGO_PKG_VERSION"));

/// Log target of every event of this module.
const LOG_TARGET: &str = "triplicate::alerts";

type HmacSha256 = Hmac<Sha256>;

/// Why a [`WebhookSender`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// A target's `secret_env` names a variable that is unset, empty or not UTF-8. Sending
    /// such a target unsigned would silently drop the protection the file asked for.
    #[error("webhook {url}: secret_env variable {var} {reason}")]
    Secret {
        url: String,
        var: String,
        reason: &'static str,
    },
    /// A target's URL does not parse.
    #[error("webhook {url}: invalid URL: {reason}")]
    Url { url: String, reason: String },
    /// The options cannot work (no attempts at all, a zero timeout).
    #[error("webhook delivery options: {0}")]
    Options(&'static str),
    /// The HTTP client could not be built (TLS set-up).
    #[error("build the webhook HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// How hard a delivery tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryOptions {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The wait after the first failed attempt, doubled after each further one (before
    /// jitter).
    pub first_backoff: Duration,
    /// The longest wait between two attempts, `Retry-After` included.
    pub max_backoff: Duration,
    /// How long one attempt may take, from connecting to the response's status line.
    pub timeout: Duration,
}

impl Default for DeliveryOptions {
    /// Six attempts, backoff from 500 ms up to 30 s, 10 s per attempt: about 16 s of waiting
    /// over five retries, about a minute and a half at worst with every attempt timing out.
    fn default() -> Self {
        DeliveryOptions {
            attempts: 6,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

impl Webhook {
    /// A target given in code rather than in `verification.toml` (the auditor's `--webhook`):
    /// `url`, signed with the key in the environment variable `secret_env` if one is named;
    /// `classes` are the file's default (`major` and `critical`), which only
    /// [`WebhookSender::deliver`] looks at.
    pub fn new(url: impl Into<String>, secret_env: Option<String>) -> Webhook {
        Webhook {
            url: url.into(),
            secret_env,
            classes: BTreeSet::from([Class::Major, Class::Critical]),
        }
    }
}

/// What became of one target's alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The target's URL, as configured.
    pub url: String,
    /// The id sent in `X-Triplicate-Delivery`.
    pub delivery_id: Uuid,
    /// Whether a `2xx` answer was received.
    pub delivered: bool,
    /// Attempts made.
    pub attempts: u32,
    /// The HTTP status of the last answer, if any attempt got one.
    pub status: Option<u16>,
    /// Why the last attempt failed; `None` when delivered.
    pub error: Option<String>,
}

/// One target, ready to send to.
struct Target {
    url: reqwest::Url,
    /// The URL as configured, reported back in [`Delivery::url`].
    configured: String,
    /// For logs and errors: no user information, query or fragment.
    shown: String,
    classes: BTreeSet<Class>,
    /// Keyed with the secret once; cloned for each signature. `None`: unsigned.
    mac: Option<HmacSha256>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.shown)
            .field("classes", &self.classes)
            .field("signed", &self.mac.is_some())
            .finish()
    }
}

/// Sends alerts to the `[[webhook]]` targets of `verification.toml`. Cheap to share behind an
/// `Arc`; one HTTP client (and its connection pool) serves every target.
#[derive(Debug)]
pub struct WebhookSender {
    targets: Vec<Target>,
    options: DeliveryOptions,
    client: reqwest::Client,
}

impl WebhookSender {
    /// Builds a sender, reading each target's `secret_env` from the process environment now,
    /// so a missing secret is found at start-up rather than when an alert is due.
    pub fn new(
        targets: Vec<Webhook>,
        options: DeliveryOptions,
    ) -> Result<WebhookSender, WebhookError> {
        Self::with_env(targets, options, |var| std::env::var_os(var))
    }

    /// [`WebhookSender::new`] with the environment given as a lookup function (for tests, and
    /// for callers that keep secrets elsewhere).
    pub fn with_env<F>(
        targets: Vec<Webhook>,
        options: DeliveryOptions,
        env: F,
    ) -> Result<WebhookSender, WebhookError>
    where
        F: Fn(&str) -> Option<std::ffi::OsString>,
    {
        if options.attempts == 0 {
            return Err(WebhookError::Options("attempts must be at least 1"));
        }
        if options.timeout.is_zero() {
            return Err(WebhookError::Options("timeout must be more than zero"));
        }
        let mut ready = Vec::with_capacity(targets.len());
        for t in targets {
            let url = reqwest::Url::parse(&t.url).map_err(|e| WebhookError::Url {
                url: t.url.clone(),
                reason: e.to_string(),
            })?;
            let shown = shown_url(&url);
            let mac = match &t.secret_env {
                None => {
                    tracing::warn!(
                        target: LOG_TARGET,
                        url = %shown,
                        "webhook has no secret_env: its alerts are sent unsigned and a receiver \
                         cannot tell them from forgeries"
                    );
                    None
                }
                Some(var) => {
                    let secret_error = |reason| WebhookError::Secret {
                        url: shown.clone(),
                        var: var.clone(),
                        reason,
                    };
                    let value = env(var).ok_or_else(|| secret_error("is not set"))?;
                    let value = value
                        .into_string()
                        .map_err(|_| secret_error("is not valid UTF-8"))?;
                    if value.is_empty() {
                        return Err(secret_error("is empty"));
                    }
                    // HMAC takes a key of any length; this cannot fail.
                    let mac = HmacSha256::new_from_slice(value.as_bytes())
                        .map_err(|_| secret_error("cannot key HMAC-SHA256"))?;
                    Some(mac)
                }
            };
            ready.push(Target {
                url,
                configured: t.url,
                shown,
                classes: t.classes,
                mac,
            });
        }
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            // A signed alert goes to the configured URL only, and a redirected POST may turn
            // into a GET that drops the body.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(WebhookError::Client)?;
        Ok(WebhookSender {
            targets: ready,
            options,
            client,
        })
    }

    /// How many targets the sender has.
    pub fn targets(&self) -> usize {
        self.targets.len()
    }

    /// Posts an alert about `report` to every target whose classes the report has findings
    /// of, concurrently, retrying each as [`DeliveryOptions`] allows. Returns one [`Delivery`]
    /// per target posted to (none for a clean report), in the targets' order. Never fails:
    /// what went wrong is in each [`Delivery`] and in the logs.
    ///
    /// `report_url`, when given, is passed on in the body for receivers to link to.
    pub async fn deliver(&self, report: &Report, report_url: Option<&str>) -> Vec<Delivery> {
        let present = classes_present(report);
        let due: Vec<(&Target, BTreeSet<Class>)> = self
            .targets
            .iter()
            .filter_map(|t| {
                let classes: BTreeSet<Class> = t.classes.intersection(&present).copied().collect();
                (!classes.is_empty()).then_some((t, classes))
            })
            .collect();
        if due.is_empty() {
            return Vec::new();
        }
        let digest = encoded_digest(report);
        let sends = due.iter().map(|(t, classes)| {
            let alert = build_alert(report, digest.as_deref(), classes, report_url);
            self.deliver_serialised(t, Some(report.run_id), serde_json::to_vec(&alert))
        });
        futures::future::join_all(sends).await
    }

    /// Posts `body` to every target, concurrently, signed and retried exactly as
    /// [`WebhookSender::deliver`] does (same headers, same signature, same backoff). For alerts
    /// that are not about a verification report, such as those of the independent auditor
    /// (`triplicate audit`): the targets' `classes` filter reports only and are ignored here.
    /// Returns one [`Delivery`] per target, in the targets' order. Never fails: what went wrong
    /// is in each [`Delivery`] and in the logs.
    pub async fn deliver_json(&self, body: &serde_json::Value) -> Vec<Delivery> {
        let sends = self
            .targets
            .iter()
            .map(|t| self.deliver_serialised(t, None, serde_json::to_vec(body)));
        futures::future::join_all(sends).await
    }

    /// Delivers an already serialised body to one target; `run_id`, when the body is about a
    /// report, goes into the logs.
    async fn deliver_serialised(
        &self,
        target: &Target,
        run_id: Option<Uuid>,
        body: serde_json::Result<Vec<u8>>,
    ) -> Delivery {
        let delivery_id = Uuid::new_v4();
        let mut delivery = Delivery {
            url: target.configured.clone(),
            delivery_id,
            delivered: false,
            attempts: 0,
            status: None,
            error: None,
        };
        // Logged as `run_id` when there is one, left out otherwise.
        let run = run_id.as_ref().map(tracing::field::display);
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                // Unreachable: alerts are strings, integers and nulls.
                let error = format!("serialise the alert: {e}");
                tracing::error!(
                    target: LOG_TARGET,
                    url = %target.shown,
                    run_id = run,
                    %error,
                    "webhook alert not sent"
                );
                delivery.error = Some(error);
                return delivery;
            }
        };
        let opts = &self.options;
        for attempt in 1..=opts.attempts {
            delivery.attempts = attempt;
            let outcome = self.attempt(target, delivery_id, &body).await;
            let (retry, retry_after) = match outcome {
                Attempt::Delivered(status) => {
                    delivery.delivered = true;
                    delivery.status = Some(status);
                    delivery.error = None;
                    tracing::info!(
                        target: LOG_TARGET,
                        url = %target.shown,
                        run_id = run,
                        %delivery_id,
                        attempts = attempt,
                        status,
                        "webhook alert delivered"
                    );
                    return delivery;
                }
                Attempt::Failed {
                    status,
                    error,
                    retry,
                    retry_after,
                } => {
                    delivery.status = status.or(delivery.status);
                    delivery.error = Some(error);
                    (retry, retry_after)
                }
            };
            let last = attempt == opts.attempts || !retry;
            let wait = (!last).then(|| backoff(opts, attempt, retry_after));
            tracing::warn!(
                target: LOG_TARGET,
                url = %target.shown,
                run_id = run,
                %delivery_id,
                attempt,
                status = delivery.status,
                error = delivery.error.as_deref().unwrap_or_default(),
                retry_in_ms = wait.map(|w| w.as_millis() as u64),
                "webhook attempt failed"
            );
            match wait {
                Some(w) => tokio::time::sleep(w).await,
                None => break,
            }
        }
        tracing::error!(
            target: LOG_TARGET,
            url = %target.shown,
            run_id = run,
            %delivery_id,
            attempts = delivery.attempts,
            status = delivery.status,
            error = delivery.error.as_deref().unwrap_or_default(),
            "webhook alert given up"
        );
        delivery
    }

    async fn attempt(&self, target: &Target, delivery_id: Uuid, body: &[u8]) -> Attempt {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
            .to_string();
        let mut request = self
            .client
            .post(target.url.clone())
            .timeout(self.options.timeout)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(DELIVERY_HEADER, delivery_id.to_string())
            .header(TIMESTAMP_HEADER, &timestamp);
        if let Some(mac) = &target.mac {
            request = request.header(SIGNATURE_HEADER, sign(mac.clone(), &timestamp, body));
        }
        let response = match request.body(body.to_vec()).send().await {
            Ok(r) => r,
            Err(e) => {
                // A request that could not even be built will not build next time either.
                let retry = !e.is_builder();
                return Attempt::Failed {
                    status: None,
                    error: error_chain(&e.without_url()),
                    retry,
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Delivered(status.as_u16());
        }
        let retry = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
        let retry_after = if retry {
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
        } else {
            None
        };
        let error = if status.is_redirection() {
            format!("HTTP {status} (redirects are not followed)")
        } else {
            format!("HTTP {status}")
        };
        Attempt::Failed {
            status: Some(status.as_u16()),
            error,
            retry,
            retry_after,
        }
    }
}

enum Attempt {
    Delivered(u16),
    Failed {
        status: Option<u16>,
        error: String,
        retry: bool,
        retry_after: Option<Duration>,
    },
}

/// The wait after failed attempt number `attempt` (1-based): `first_backoff · 2^(attempt-1)`
/// capped at `max_backoff`, with equal jitter, and at least `retry_after` (itself capped).
fn backoff(opts: &DeliveryOptions, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    let base = opts
        .first_backoff
        .saturating_mul(1u32 << doublings)
        .min(opts.max_backoff);
    let half = base / 2;
    let jitter_nanos =
        rand::thread_rng().gen_range(0..=u64::try_from(half.as_nanos()).unwrap_or(u64::MAX));
    let wait = half + Duration::from_nanos(jitter_nanos);
    match retry_after {
        Some(r) => wait.max(r).min(opts.max_backoff),
        None => wait,
    }
}

/// `sha256=` and the lowercase hex of `HMAC-SHA256(secret, timestamp || "." || body)`.
fn sign(mut mac: HmacSha256, timestamp: &str, body: &[u8]) -> String {
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// An error and its sources, `: `-separated (reqwest's own message is terse: "error sending
/// request"; the cause, such as "connection refused", is in its sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

/// The URL without user information, query or fragment, for logs and errors.
fn shown_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    // Both fail only for URLs that cannot have credentials, which then have none to hide.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// The classes a report has findings of.
fn classes_present(report: &Report) -> BTreeSet<Class> {
    let mut present: BTreeSet<Class> = report.discrepancies.iter().map(|d| d.class).collect();
    present.extend(Class::ALL.into_iter().filter(|c| report.counts.get(*c) > 0));
    present
}

fn encoded_digest(report: &Report) -> Option<String> {
    match report.digest() {
        Ok(d) => Some(crate::b64::encode(&d)),
        Err(e) => {
            tracing::error!(
                target: LOG_TARGET,
                run_id = %report.run_id,
                error = %e,
                "cannot canonicalise the report; its alerts carry no digest"
            );
            None
        }
    }
}

/// The JSON body of the alert about `report` for a target listing `classes` (see the module
/// docs for the format). [`WebhookSender::deliver`] sends exactly this, serialised.
pub fn alert_body(
    report: &Report,
    classes: &BTreeSet<Class>,
    report_url: Option<&str>,
) -> serde_json::Value {
    let digest = encoded_digest(report);
    let alert = build_alert(report, digest.as_deref(), classes, report_url);
    // Unreachable failure: the alert is strings, integers and nulls.
    serde_json::to_value(&alert).unwrap_or(serde_json::Value::Null)
}

fn build_alert<'a>(
    report: &'a Report,
    digest: Option<&'a str>,
    classes: &BTreeSet<Class>,
    report_url: Option<&'a str>,
) -> Alert<'a> {
    let mut matching: Vec<&Discrepancy> = report
        .discrepancies
        .iter()
        .filter(|d| classes.contains(&d.class))
        .collect();
    // Most serious first, so a flood of minor findings cannot push a critical one out of the
    // list; the sort is stable, so the report's order holds within a class.
    matching.sort_by_key(|d| std::cmp::Reverse(d.class));
    let omitted = matching.len().saturating_sub(MAX_DISCREPANCIES);
    matching.truncate(MAX_DISCREPANCIES);
    Alert {
        kind: ALERT_TYPE,
        version: ALERT_VERSION,
        run_id: report.run_id,
        mode: report.mode,
        started_at: report.started_at,
        finished_at: report.finished_at,
        report_digest: digest,
        worst_class: report.counts.worst(),
        counts: report.counts,
        checkpoint: report.checkpoint_new,
        discrepancies: matching.into_iter().map(AlertDiscrepancy::from).collect(),
        discrepancies_omitted: omitted as u64,
        report_url,
    }
}

/// The body of an alert. Every field is always present (`null` when empty), so receivers need
/// no defaults.
#[derive(Debug, Serialize)]
struct Alert<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    version: u32,
    run_id: Uuid,
    mode: RunMode,
    started_at: Timestamp,
    finished_at: Timestamp,
    report_digest: Option<&'a str>,
    worst_class: Option<Class>,
    counts: Counts,
    checkpoint: Option<CheckpointRef>,
    discrepancies: Vec<AlertDiscrepancy<'a>>,
    discrepancies_omitted: u64,
    report_url: Option<&'a str>,
}

/// A [`Discrepancy`] with every field present.
#[derive(Debug, Serialize)]
struct AlertDiscrepancy<'a> {
    seq: Option<u64>,
    decision_id: Option<Uuid>,
    store: Store,
    class: Class,
    kind: Kind,
    #[serde(with = "crate::b64::option")]
    expected_hash: Option<Hash>,
    #[serde(with = "crate::b64::option")]
    actual_hash: Option<Hash>,
    file: Option<&'a str>,
    detail: &'a str,
}

impl<'a> From<&'a Discrepancy> for AlertDiscrepancy<'a> {
    fn from(d: &'a Discrepancy) -> Self {
        AlertDiscrepancy {
            seq: d.seq,
            decision_id: d.decision_id,
            store: d.store,
            class: d.class,
            kind: d.kind,
            expected_hash: d.expected_hash,
            actual_hash: d.actual_hash,
            file: d.file.as_deref(),
            detail: &d.detail,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let opts = DeliveryOptions {
            attempts: 10,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let w1 = backoff(&opts, 1, None);
            assert!(w1 >= Duration::from_millis(50) && w1 <= Duration::from_millis(100));
            let w3 = backoff(&opts, 3, None);
            assert!(w3 >= Duration::from_millis(200) && w3 <= Duration::from_millis(400));
            let w9 = backoff(&opts, 9, None);
            assert!(w9 >= Duration::from_millis(500) && w9 <= Duration::from_secs(1));
            let huge = backoff(&opts, u32::MAX, None);
            assert!(huge <= Duration::from_secs(1));
        }
        // Retry-After lengthens the wait, never beyond max_backoff.
        assert_eq!(
            backoff(&opts, 1, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            backoff(&opts, 1, Some(Duration::from_secs(3600))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        // RFC 4231 test case 7, its data split at its first "." into "timestamp" and body.
        let mac = HmacSha256::new_from_slice(&[0xaa; 131]).unwrap();
        assert_eq!(
            sign(
                mac,
                "This is a test using a larger than block-size key and a larger than block-size data",
                b" The key needs to be hashed before being used by the HMAC algorithm."
            ),
            "sha256=9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"
        );
    }

    #[test]
    fn shown_url_drops_credentials_and_query() {
        let url =
            reqwest::Url::parse("https://user:pw@alerts.example.org:8443/hook?token=x#f").unwrap();
        assert_eq!(shown_url(&url), "https://alerts.example.org:8443/hook");
    }
}
