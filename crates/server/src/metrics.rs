//! Prometheus metrics (`/metrics`), on the `prometheus-client` crate.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    mode: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

type IntGauge = Gauge<i64, std::sync::atomic::AtomicI64>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// The cross-verifier's metrics (`triplicate_crosscheck_*`); `ops/prometheus/` alerts on them.
#[derive(Debug)]
struct CrossCheckMetrics {
    runs: Family<RunLabels, Counter>,
    last_run: FloatGauge,
    last_success: FloatGauge,
    last_discrepancies: Family<ClassLabel, IntGauge>,
    discrepancies: Family<ClassLabel, Counter>,
    records: Counter,
    duration: Histogram,
    pending_repairs: IntGauge,
    webhook: Family<ResultLabel, Counter>,
    writes_frozen: IntGauge,
}

impl CrossCheckMetrics {
    fn register(registry: &mut Registry) -> CrossCheckMetrics {
        let m = CrossCheckMetrics {
            runs: Family::default(),
            last_run: FloatGauge::default(),
            last_success: FloatGauge::default(),
            last_discrepancies: Family::default(),
            discrepancies: Family::default(),
            records: Counter::default(),
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 20)),
            pending_repairs: IntGauge::default(),
            webhook: Family::default(),
            writes_frozen: IntGauge::default(),
        };
        registry.register(
            "crosscheck_runs",
            "Cross-check runs by mode and result (clean, findings, failed)",
            m.runs.clone(),
        );
        registry.register(
            "crosscheck_last_run_timestamp_seconds",
            "When the last cross-check run that produced a report finished",
            m.last_run.clone(),
        );
        registry.register(
            "crosscheck_last_success_timestamp_seconds",
            "When the last cross-check run without a minor, major or critical finding finished",
            m.last_success.clone(),
        );
        registry.register(
            "crosscheck_last_run_discrepancies",
            "Discrepancies the last cross-check run found, by class",
            m.last_discrepancies.clone(),
        );
        registry.register(
            "crosscheck_discrepancies",
            "Discrepancies found by every cross-check run, by class",
            m.discrepancies.clone(),
        );
        registry.register(
            "crosscheck_records_verified",
            "Records the cross-check compared across the three stores",
            m.records.clone(),
        );
        registry.register(
            "crosscheck_run_duration_seconds",
            "How long a cross-check run took",
            m.duration.clone(),
        );
        registry.register(
            "crosscheck_pending_repairs",
            "Proposed repairs waiting for an auditor's approval",
            m.pending_repairs.clone(),
        );
        registry.register(
            "crosscheck_webhook_deliveries",
            "Alert webhook deliveries by result (delivered, failed)",
            m.webhook.clone(),
        );
        registry.register(
            "writes_frozen",
            "1 while writes are refused after a critical cross-check finding",
            m.writes_frozen.clone(),
        );
        // Every series an alert rule takes `increase()` of exists from the start at 0, so the
        // first failure is an increase (ops/prometheus/triplicate-rules.yml).
        for class in triplicate_verifier::Class::ALL {
            let l = ClassLabel {
                class: class.as_str(),
            };
            m.last_discrepancies.get_or_create(&l).set(0);
            m.discrepancies.get_or_create(&l).inc_by(0);
        }
        for mode in ["incremental", "full"] {
            for result in ["clean", "findings", "failed"] {
                m.runs.get_or_create(&RunLabels { mode, result }).inc_by(0);
            }
        }
        for result in ["delivered", "failed"] {
            m.webhook.get_or_create(&ResultLabel { result }).inc_by(0);
        }
        m
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScenarioLabel {
    scenario: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DrillRunLabels {
    scenario: &'static str,
    result: &'static str,
}

/// Recovery drills' metrics (`triplicate_drill_*`, by scenario); `ops/prometheus/` alerts when
/// a scheduled scenario has not passed within its window.
#[derive(Debug)]
struct DrillMetrics {
    runs: Family<DrillRunLabels, Counter>,
    last_run: Family<ScenarioLabel, FloatGauge>,
    last_success: Family<ScenarioLabel, FloatGauge>,
    last_result: Family<ScenarioLabel, IntGauge>,
    window: Family<ScenarioLabel, FloatGauge>,
    detect: Family<ScenarioLabel, FloatGauge>,
    recover: Family<ScenarioLabel, FloatGauge>,
}

impl DrillMetrics {
    fn register(registry: &mut Registry) -> DrillMetrics {
        let m = DrillMetrics {
            runs: Family::default(),
            last_run: Family::default(),
            last_success: Family::default(),
            last_result: Family::default(),
            window: Family::default(),
            detect: Family::default(),
            recover: Family::default(),
        };
        registry.register(
            "drill_runs",
            "Recovery drills by scenario and result (pass, fail, error)",
            m.runs.clone(),
        );
        registry.register(
            "drill_last_run_timestamp_seconds",
            "When the last drill of a scenario finished",
            m.last_run.clone(),
        );
        registry.register(
            "drill_last_success_timestamp_seconds",
            "When the last passed drill of a scenario finished",
            m.last_success.clone(),
        );
        registry.register(
            "drill_last_result",
            "1 when the last drill of a scenario passed, 0 when it failed",
            m.last_result.clone(),
        );
        registry.register(
            "drill_window_seconds",
            "How long a scheduled scenario may go without a passed drill (verification.toml)",
            m.window.clone(),
        );
        registry.register(
            "drill_detect_seconds",
            "How long the last drill of a scenario took to detect its damage",
            m.detect.clone(),
        );
        registry.register(
            "drill_recover_seconds",
            "How long the last drill of a scenario took to recover",
            m.recover.clone(),
        );
        for scenario in crate::drill::Scenario::ALL {
            for result in ["pass", "fail", "error"] {
                m.runs
                    .get_or_create(&DrillRunLabels {
                        scenario: scenario.name(),
                        result,
                    })
                    .inc_by(0);
            }
        }
        m
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabel {
    store: &'static str,
}

/// Every metric the service exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    submissions: Family<Outcome, Counter>,
    submit_seconds: Histogram,
    batch_size: Histogram,
    judge_batch: Histogram,
    catchup_records: Family<StoreLabel, Counter>,
    store_lag: Family<StoreLabel, Gauge<i64, std::sync::atomic::AtomicI64>>,
    store_healthy: Family<StoreLabel, Gauge<i64, std::sync::atomic::AtomicI64>>,
    ledger_size: Gauge<u64, AtomicU64>,
    crosscheck: CrossCheckMetrics,
    drills: DrillMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("triplicate");
        let submissions = Family::<Outcome, Counter>::default();
        registry.register(
            "submissions",
            "Submissions by outcome (created, existing, refused, conflict, invalid, failed)",
            submissions.clone(),
        );
        let submit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "submit_seconds",
            "Time from a submission's arrival to its receipt",
            submit_seconds.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "commit_batch_records",
            "Records per ledger commit (group commit)",
            batch_size.clone(),
        );
        let judge_batch = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "judge_batch_submissions",
            "Submissions judged together, their approval signatures verified in one batch",
            judge_batch.clone(),
        );
        let catchup_records = Family::<StoreLabel, Counter>::default();
        registry.register(
            "catchup_records",
            "Records the catch-up worker wrote to a store",
            catchup_records.clone(),
        );
        let store_lag = Family::default();
        registry.register(
            "store_lag_records",
            "Records the store lacks behind the ledger",
            store_lag.clone(),
        );
        let store_healthy = Family::default();
        registry.register(
            "store_healthy",
            "1 when the store's last write or probe succeeded",
            store_healthy.clone(),
        );
        let ledger_size = Gauge::default();
        registry.register(
            "ledger_size_records",
            "Records in the ledger",
            ledger_size.clone(),
        );
        let crosscheck = CrossCheckMetrics::register(&mut registry);
        let drills = DrillMetrics::register(&mut registry);
        Metrics {
            crosscheck,
            drills,
            registry,
            submissions,
            submit_seconds,
            batch_size,
            judge_batch,
            catchup_records,
            store_lag,
            store_healthy,
            ledger_size,
        }
    }
}

impl Metrics {
    /// Counts one submission by outcome.
    pub fn count(&self, outcome: &'static str) {
        self.submissions.get_or_create(&Outcome { outcome }).inc();
    }

    pub(crate) fn observe_submit(
        &self,
        took: Duration,
        created: Result<bool, &crate::service::SubmitError>,
    ) {
        use crate::service::SubmitError as E;
        let outcome = match created {
            Ok(true) => "created",
            Ok(false) => "existing",
            Err(E::Refused(_)) => "refused",
            Err(E::Conflict { .. }) => "conflict",
            Err(E::Invalid(_)) => "invalid",
            Err(_) => "failed",
        };
        self.count(outcome);
        self.submit_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn observe_batch(&self, records: usize) {
        self.batch_size.observe(records as f64);
    }

    pub(crate) fn observe_judge_batch(&self, submissions: usize) {
        self.judge_batch.observe(submissions as f64);
    }

    pub(crate) fn observe_catchup(&self, store: &'static str, records: u64) {
        self.catchup_records
            .get_or_create(&StoreLabel { store })
            .inc_by(records);
    }

    /// Records a finished cross-check run (`report`), or one that could not run (`None`).
    pub fn observe_crosscheck(
        &self,
        mode: triplicate_verifier::RunMode,
        took: Duration,
        report: Option<&triplicate_verifier::Report>,
    ) {
        let m = &self.crosscheck;
        let mode = match mode {
            triplicate_verifier::RunMode::Incremental => "incremental",
            triplicate_verifier::RunMode::Full => "full",
        };
        m.duration.observe(took.as_secs_f64());
        let Some(report) = report else {
            m.runs
                .get_or_create(&RunLabels {
                    mode,
                    result: "failed",
                })
                .inc();
            return;
        };
        let result = if report.is_clean() {
            "clean"
        } else {
            "findings"
        };
        m.runs.get_or_create(&RunLabels { mode, result }).inc();
        let finished = report.finished_at.unix_nanos() as f64 / 1e9;
        m.last_run.set(finished);
        let c = report.counts;
        if c.minor + c.major + c.critical == 0 {
            m.last_success.set(finished);
        }
        for class in triplicate_verifier::Class::ALL {
            let l = ClassLabel {
                class: class.as_str(),
            };
            let n = c.get(class);
            m.last_discrepancies
                .get_or_create(&l)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
            m.discrepancies.get_or_create(&l).inc_by(n);
        }
        m.records.inc_by(report.records_compared);
    }

    /// Records a finished drill.
    pub fn drill_finished(&self, report: &crate::drill::DrillReport) {
        let scenario = report.scenario.name();
        let l = ScenarioLabel { scenario };
        let m = &self.drills;
        let result = if report.passed { "pass" } else { "fail" };
        m.runs
            .get_or_create(&DrillRunLabels { scenario, result })
            .inc();
        let finished = report.finished_at.unix_nanos() as f64 / 1e9;
        m.last_run.get_or_create(&l).set(finished);
        m.last_result
            .get_or_create(&l)
            .set(i64::from(report.passed));
        if report.passed {
            m.last_success.get_or_create(&l).set(finished);
        }
        if let Some(d) = report.detect_seconds {
            m.detect.get_or_create(&l).set(d);
        }
        if let Some(r) = report.recover_seconds {
            m.recover.get_or_create(&l).set(r);
        }
    }

    /// Records a drill that could not run.
    pub fn drill_error(&self, scenario: crate::drill::Scenario) {
        self.drills
            .runs
            .get_or_create(&DrillRunLabels {
                scenario: scenario.name(),
                result: "error",
            })
            .inc();
    }

    /// The window a scheduled scenario must pass within.
    pub fn set_drill_window(&self, scenario: crate::drill::Scenario, window: Duration) {
        self.drills
            .window
            .get_or_create(&ScenarioLabel {
                scenario: scenario.name(),
            })
            .set(window.as_secs_f64());
    }

    /// The last drill and last passed drill of a scenario, as stored (at start-up, so the
    /// gauges survive restarts).
    pub fn restore_drill(
        &self,
        scenario: crate::drill::Scenario,
        last_run: f64,
        last_passed: bool,
        last_success: Option<f64>,
    ) {
        let l = ScenarioLabel {
            scenario: scenario.name(),
        };
        let m = &self.drills;
        m.last_run.get_or_create(&l).set(last_run);
        m.last_result.get_or_create(&l).set(i64::from(last_passed));
        if let Some(s) = last_success {
            m.last_success.get_or_create(&l).set(s);
        }
    }

    /// Sets the number of proposed repairs waiting for an auditor.
    pub fn set_pending_repairs(&self, n: u64) {
        self.crosscheck
            .pending_repairs
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts one webhook delivery by result.
    pub fn observe_webhook(&self, delivered: bool) {
        let result = if delivered { "delivered" } else { "failed" };
        self.crosscheck
            .webhook
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Renders the text exposition, after refreshing the gauges from `health`.
    pub fn render(&self, health: &crate::service::Health) -> String {
        self.ledger_size.set(health.ledger_size);
        self.crosscheck
            .writes_frozen
            .set(i64::from(health.writes_frozen));
        for (store, lag) in [
            ("stream", &health.stream),
            ("projection", &health.projection),
        ] {
            let l = StoreLabel { store };
            self.store_lag.get_or_create(&l).set(lag.lag as i64);
            self.store_healthy
                .get_or_create(&l)
                .set(i64::from(lag.healthy));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
