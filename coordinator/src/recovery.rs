//! Carrying on after a failover or an etcd outage: a new leader reloads every job from etcd;
//! tasks whose owner lost its lease (seen by a watch, or by a periodic reconciliation when
//! the watch was down) and tasks whose assignment never reached their worker run again.

use crate::fleet::Fleet;
use chrono::Utc;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zoopipe_common::report::{JobReport, JobState};
use zoopipe_common::spec::{JobConfig, JobSpec};
use zoopipe_engine::lifecycle::{JobEntry, Slot, TaskStatus};

impl Fleet {
    /// Reload every job from etcd (a new leader carries on where the last one stopped):
    /// results stay recorded, owned tasks stay with their owners until their leases expire,
    /// the rest is pending; a job that was committing commits again (idempotently).
    pub async fn recover(self: Arc<Self>) -> crate::state::Result<usize> {
        let stored = self.state.load_jobs().await?;
        let mut entries = Vec::new();
        for s in stored {
            if let Some(report) = &s.report
                && self.expired(report)
            {
                self.forget(&s.job_id).await;
                continue;
            }
            let spec: JobSpec = match serde_json::from_value(s.spec.clone()) {
                Ok(spec) => spec,
                Err(e) => {
                    tracing::error!(job = s.job_id, error = %e, "unreadable job spec; skipping");
                    continue;
                }
            };
            let config = match JobConfig::new(s.job_id.clone(), spec) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(job = s.job_id, error = %e, "invalid job spec; skipping");
                    continue;
                }
            };
            // Planning goes on where the last leader's stopped.
            let planning = s.planned.is_some_and(|p| p.open);
            let tasks = s.tasks;
            let report = s.report.clone().unwrap_or_else(|| {
                let mut report = JobReport::new(&s.job_id);
                report.state = JobState::Running;
                report.started_at = Utc::now().to_rfc3339();
                report.partitions.total = tasks.len() as u64;
                report
            });
            let slots = tasks
                .into_iter()
                .map(|(index, task)| {
                    let mut slot = Slot::new(task);
                    // Counting goes on where the last leader stopped (never reusing a number,
                    // never resetting the budget).
                    let counted = s.attempts.get(&index).copied().unwrap_or_default();
                    slot.attempts = counted.attempt;
                    slot.handed_back = counted.handed_back.min(counted.attempt);
                    if let Some(r) = s.results.get(&index) {
                        slot.attempts = slot.attempts.max(r.attempt);
                        slot.status = TaskStatus::Done(Box::new(r.clone()));
                    } else if let Some(o) = s.owners.get(&index) {
                        slot.attempts = slot.attempts.max(o.attempt);
                        slot.status = TaskStatus::Running {
                            worker: o.worker.clone(),
                            token: o.token,
                            uploads: Vec::new(),
                            since: Instant::now(),
                            started: false,
                            so_far: Default::default(),
                        };
                    }
                    (index, slot)
                })
                .collect::<BTreeMap<_, _>>();
            let mut entry = JobEntry::new(Arc::new(config), slots, report);
            entry.planning = planning;
            entries.push((entry, s.state == JobState::Committing));
        }
        Ok(self.lifecycle.load(entries).await)
    }

    /// Whether an ended job is past the retention period.
    fn expired(&self, report: &JobReport) -> bool {
        if !report.state.ended() {
            return false;
        }
        let Ok(finished) = chrono::DateTime::parse_from_rfc3339(&report.finished_at) else {
            return false;
        };
        let age = Utc::now().signed_duration_since(finished);
        age.to_std().is_ok_and(|age| age > self.retention())
    }

    /// Remove an expired job from etcd and from the table.
    async fn forget(&self, job_id: &str) {
        match self.state.delete_job(job_id).await {
            Ok(()) => {
                self.lifecycle.forget(job_id).await;
                tracing::info!(job = job_id, "ended job past the retention period removed");
            }
            Err(e) => tracing::warn!(job = job_id, error = %e, "cannot remove an expired job"),
        }
    }

    /// Remove every ended job past the retention period (run now and then by the leader).
    async fn sweep(&self) {
        for report in self.lifecycle.list().await {
            if self.expired(&report) {
                self.forget(&report.job_id).await;
            }
        }
    }

    /// Run again the tasks whose owner vanished without a result (lease expired).
    pub async fn watch_leases(self: Arc<Self>) -> crate::state::Result<()> {
        let mut lost = self.state.watch_lost_owners().await?;
        tokio::spawn(async move {
            while let Some((job, index, token)) = lost.recv().await {
                // Most deletions are completions (already marked done here): skip those
                // without a read. A completion deletes the owner key too: only a task
                // without a result is lost.
                if !self.lifecycle.is_running(&job, index).await
                    || self.state.has_result(&job, index).await.unwrap_or(false)
                {
                    continue;
                }
                tracing::warn!(
                    job,
                    task = index,
                    "owner lost its lease; running the task again"
                );
                self.lifecycle
                    .lost(&job, index, token, "its worker was lost (lease expired)")
                    .await;
            }
        });
        Ok(())
    }

    /// Every few seconds, run again the running tasks that have neither an owner key nor a
    /// result in etcd (their lease expired while the watch was down, e.g. during an etcd
    /// outage), and those whose assignment never reached their worker.
    pub fn reconcile(self: Arc<Self>) {
        tokio::spawn(async move {
            let mut rounds = 0u64;
            loop {
                tokio::time::sleep(Duration::from_secs(3)).await;
                rounds += 1;
                // Every ten minutes, while leading: ended jobs past the retention period go.
                if rounds.is_multiple_of(200) && self.role() == crate::fleet::Role::Leader {
                    self.sweep().await;
                }
                self.hand_back_unstarted().await;
                let mut by_job: BTreeMap<String, Vec<(u32, u64)>> = BTreeMap::new();
                for (job, index, _, token, ..) in self.lifecycle.running().await {
                    by_job.entry(job).or_default().push((index, token));
                }
                for (job_id, indexes) in by_job {
                    let Ok(claimed) = self.state.claimed_tasks(&job_id).await else {
                        continue;
                    };
                    for (index, token) in indexes.into_iter().filter(|(i, _)| !claimed.contains(i))
                    {
                        tracing::warn!(
                            job = job_id,
                            task = index,
                            "owner gone; running the task again"
                        );
                        self.lifecycle
                            .lost(
                                &job_id,
                                index,
                                Some(token),
                                "its worker was lost (owner key gone)",
                            )
                            .await;
                    }
                }
            }
        });
    }

    /// Tasks assigned to a live worker that never started them: the answer to its
    /// AcquireTask was lost (a coordinator that died between the claim and the reply, a dropped
    /// connection), so the worker's heartbeats keep the owner key alive while nothing runs.
    /// An attempt that no heartbeat listed for a lease TTL after it was assigned (while the
    /// worker kept beating) is released and the task runs again.
    async fn hand_back_unstarted(&self) {
        let grace = Duration::from_secs(self.lease_ttl_s.max(1) as u64);
        let heartbeats = match self.heartbeats.lock() {
            Ok(h) => h.clone(),
            Err(_) => return,
        };
        for (job_id, index, worker, token, since, started) in self.lifecycle.running().await {
            let silent = !started
                && heartbeats
                    .get(&worker)
                    .is_some_and(|seen| seen.saturating_duration_since(since) > grace);
            if !silent {
                continue;
            }
            tracing::warn!(
                job = job_id,
                task = index,
                "assigned but never started by its worker (the assignment was lost); running it again"
            );
            let handed_back = self
                .lifecycle
                .fail(
                    &job_id,
                    index,
                    token,
                    zoopipe_engine::lifecycle::FailureKind::Lost,
                    "the assignment never reached its worker".into(),
                )
                .await;
            if let Err(e) = handed_back {
                tracing::warn!(job = job_id, task = index, error = %e, "cannot hand the task back yet");
            }
        }
    }
}
