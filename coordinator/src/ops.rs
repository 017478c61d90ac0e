//! The coordinator's operations port: readiness (etcd reachable; the body says whether this
//! replica leads), gRPC health, and metrics gauges refreshed from the job table.

use crate::fleet::{Fleet, Role};
use std::sync::Arc;
use std::time::Duration;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use zoopipe_engine::ops::METRICS;
use zoopipe_engine::ops::http::ReadyCheck;
use zoopipe_engine::ops::metrics::Metrics;

/// `/readyz`: ready while etcd answers.
pub fn ready_check(fleet: Arc<Fleet>) -> ReadyCheck {
    Arc::new(move || {
        let fleet = fleet.clone();
        Box::pin(async move { fleet.readiness().await })
    })
}

/// Every 2 s: gauges from the job table, and gRPC health (serving while etcd answers).
pub fn spawn_refresh(fleet: Arc<Fleet>, health: HealthReporter) {
    tokio::spawn(async move {
        loop {
            let (jobs, tasks, workers) = fleet.counts().await;
            for (state, n) in jobs {
                Metrics::set_state(&METRICS.jobs, &state, n);
            }
            for (state, n) in tasks {
                Metrics::set_state(&METRICS.tasks, &state, n);
            }
            METRICS.workers.set(workers);
            METRICS.leader.set(i64::from(fleet.role() == Role::Leader));
            let status = if fleet.readiness().await.0 {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health.set_service_status("", status).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
}
