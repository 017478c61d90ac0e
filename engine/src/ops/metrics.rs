//! Prometheus metrics of both fleet binaries (each exports the families it updates).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

pub struct Metrics {
    pub registry: Registry,
    /// Coordinator: jobs in its table by state (set on every scrape).
    pub jobs: Family<StateLabel, Gauge>,
    /// Coordinator: tasks of unfinished jobs by state (set on every scrape).
    pub tasks: Family<StateLabel, Gauge>,
    pub rows_read: Counter,
    pub rows_invalid: Counter,
    pub bytes_read: Counter,
    pub bytes_written: Counter,
    /// Seconds per task attempt (worker: measured; coordinator: as reported).
    pub task_seconds: Histogram,
    /// Task attempts by outcome: committed, refused, failed, handed_back.
    pub attempts: Family<KindLabel, Counter>,
    /// Coordinator: tasks requeued because their owner's lease expired.
    pub lease_expiries: Counter,
    /// Coordinator: retryable task failures that were retried.
    pub retries: Counter,
    /// Coordinator: workers registered with it (leader only).
    pub workers: Gauge,
    /// Coordinator: 1 while this replica leads.
    pub leader: Gauge,
    /// Storage requests that failed, by kind (not_found, denied, throttled, io, ...).
    pub s3_errors: Family<KindLabel, Counter>,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("zoopipe");
    let m = Metrics {
        registry: Registry::default(),
        jobs: Family::default(),
        tasks: Family::default(),
        rows_read: Counter::default(),
        rows_invalid: Counter::default(),
        bytes_read: Counter::default(),
        bytes_written: Counter::default(),
        task_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 16)),
        attempts: Family::default(),
        lease_expiries: Counter::default(),
        retries: Counter::default(),
        workers: Gauge::default(),
        leader: Gauge::default(),
        s3_errors: Family::default(),
    };
    registry.register("jobs", "Jobs by state", m.jobs.clone());
    registry.register(
        "tasks",
        "Tasks of unfinished jobs by state",
        m.tasks.clone(),
    );
    registry.register("rows_read", "Rows read", m.rows_read.clone());
    registry.register(
        "rows_invalid",
        "Invalid rows routed to errors",
        m.rows_invalid.clone(),
    );
    registry.register("bytes_read", "Input bytes read", m.bytes_read.clone());
    registry.register(
        "bytes_written",
        "Output bytes written",
        m.bytes_written.clone(),
    );
    registry.register(
        "task_duration_seconds",
        "Duration of task attempts",
        m.task_seconds.clone(),
    );
    registry.register(
        "task_attempts",
        "Task attempts by outcome",
        m.attempts.clone(),
    );
    registry.register(
        "lease_expiries",
        "Tasks requeued because their worker's lease expired",
        m.lease_expiries.clone(),
    );
    registry.register(
        "task_retries",
        "Failed task attempts retried",
        m.retries.clone(),
    );
    registry.register(
        "registered_workers",
        "Workers registered",
        m.workers.clone(),
    );
    registry.register("leader", "1 while this coordinator leads", m.leader.clone());
    registry.register(
        "storage_errors",
        "Failed storage (S3) requests by kind",
        m.s3_errors.clone(),
    );
    Metrics { registry, ..m }
});

impl Metrics {
    pub fn attempt(&self, kind: &str) {
        self.attempts
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub fn storage_error(&self, kind: &str) {
        self.s3_errors
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub fn set_state(family: &Family<StateLabel, Gauge>, state: &str, value: i64) {
        family
            .get_or_create(&StateLabel {
                state: state.into(),
            })
            .set(value);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
