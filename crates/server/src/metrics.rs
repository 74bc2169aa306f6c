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
    catchup_records: Family<StoreLabel, Counter>,
    store_lag: Family<StoreLabel, Gauge<i64, std::sync::atomic::AtomicI64>>,
    store_healthy: Family<StoreLabel, Gauge<i64, std::sync::atomic::AtomicI64>>,
    ledger_size: Gauge<u64, AtomicU64>,
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
        Metrics {
            registry,
            submissions,
            submit_seconds,
            batch_size,
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

    pub(crate) fn observe_catchup(&self, store: &'static str, records: u64) {
        self.catchup_records
            .get_or_create(&StoreLabel { store })
            .inc_by(records);
    }

    /// Renders the text exposition, after refreshing the gauges from `health`.
    pub fn render(&self, health: &crate::service::Health) -> String {
        self.ledger_size.set(health.ledger_size);
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
