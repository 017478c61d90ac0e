//! Planning that goes on while a job runs. A job over more input than two rounds of the worker
//! slots starts with the tasks of its first listing pages (`plan::start_plan`); the rest is
//! planned here a page at a time, so tasks run while a prefix of a million objects is still
//! being listed. Each chunk of tasks is stored, with how far planning got (`Planned`), before
//! any of it is handed out; a new leader (or a resubmission of a named job that ended while
//! planning) goes on from the last stored task. The job commits only once planning ended.

use super::{Ended, Lifecycle, Planned, Slot, StoreError, persist};
use crate::commit::check_inputs_outside_output;
use futures::FutureExt;
use std::sync::Arc;
use zoopipe_common::plan::{ObjectPlanner, PlanChunk};
use zoopipe_common::report::JobState;

impl Lifecycle {
    /// Plan the rest of `job_id`'s inputs in the background (stopped when the job ends, by
    /// `stop_planning`, and by `clear` and `forget`).
    pub(super) fn keep_planning(self: &Arc<Self>, job_id: &str, planner: ObjectPlanner) {
        let (me, id) = (self.clone(), job_id.to_string());
        // Spawned under the lock: the planning cannot end its job (and look for its own handle
        // in `stop_planning`) before the handle is there.
        let mut planners = self
            .planners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let handle = tokio::spawn(async move {
            // A bug in planning must end the job, not leave it waiting for tasks forever.
            let planning = std::panic::AssertUnwindSafe(me.clone().plan_rest(id.clone(), planner));
            if planning.catch_unwind().await.is_err() {
                let message = "a planning bug (a panic; see the log)".to_string();
                me.fail_planning(&id, message).await;
            }
        });
        if let Some(old) = planners.insert(job_id.to_string(), handle.abort_handle()) {
            old.abort();
        }
    }

    /// Stop the planning of a job that ended (it lists no further and stores nothing more),
    /// unless this is that planning itself, ending the job.
    pub(super) fn stop_planning(&self, job_id: &str) {
        let mut planners = self
            .planners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(handle) = planners.remove(job_id)
            && tokio::task::try_id() != Some(handle.id())
        {
            handle.abort();
        }
    }

    /// Go on planning a job reloaded (or resumed) with its planning unfinished: the objects
    /// its stored tasks read are skipped, the rest listed and planned anew, numbered from the
    /// table's next task. That number is stored first, so the store never counts tasks from
    /// before (a chunk stored as the job ended, say) among the new ones.
    pub(super) async fn resume_planning(self: &Arc<Self>, job_id: &str) {
        let planner = {
            let jobs = self.jobs.lock().await;
            let Some(job) = jobs.get(job_id).filter(|j| j.planning) else {
                return;
            };
            let planned = job
                .slots
                .values()
                .flat_map(|s| s.task.splits.iter().map(|split| split.url.clone()));
            let next_task = job.slots.keys().next_back().map_or(0, |i| i + 1);
            ObjectPlanner::resume(
                self.storage.clone(),
                (*job.config).clone(),
                planned.collect::<Vec<_>>(),
                next_task,
            )
        };
        let planned = Planned {
            next_task: planner.next_task(),
            open: true,
        };
        let store = &self.store;
        let marked = persist("the planning mark", job_id, || {
            store.add_tasks(job_id, &[], planned)
        })
        .await;
        if let Err(e) = marked {
            if !matches!(e, StoreError::NotLeader) {
                let message = format!("cannot store the planning mark: {e}");
                self.fail_planning(job_id, message).await;
            }
            return;
        }
        tracing::info!(job = job_id, "planning goes on");
        self.keep_planning(job_id, planner);
    }

    async fn plan_rest(self: Arc<Self>, job_id: String, mut planner: ObjectPlanner) {
        loop {
            let running = self.jobs.lock().await.get(&job_id).and_then(|j| {
                // (Its config, to check the chunk's inputs against its output.)
                (!j.ended()).then(|| j.config.clone())
            });
            let Some(config) = running else {
                return; // cancelled, failed, or this replica stopped leading
            };
            let chunk = match planner.next().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return,
                Err(e) => return self.fail_planning(&job_id, e.to_string()).await,
            };
            if let Err(e) = check_inputs_outside_output(&config, &chunk.inputs) {
                return self.fail_planning(&job_id, e.to_string()).await;
            }
            let planned = Planned {
                next_task: planner.next_task(),
                open: !chunk.last,
            };
            let store = &self.store;
            let stored = persist("planned tasks", &job_id, || {
                store.add_tasks(&job_id, &chunk.tasks, planned)
            })
            .await;
            match stored {
                Ok(()) => {}
                // Another coordinator leads: it goes on planning from what is stored.
                Err(StoreError::NotLeader) => return,
                Err(e) => {
                    let message = format!("cannot store the planned tasks: {e}");
                    return self.fail_planning(&job_id, message).await;
                }
            }
            // A coordinator that dies here has stored tasks no worker got: its successor
            // hands them out and plans on from them.
            zoopipe_common::fault::crash_point("planned-stored");
            let last = chunk.last;
            self.add_planned(&job_id, chunk).await;
            if last {
                return;
            }
        }
    }

    /// A stored chunk joins the job table: its tasks can be handed out now.
    async fn add_planned(self: &Arc<Self>, job_id: &str, chunk: PlanChunk) {
        let mut jobs = self.jobs.lock().await;
        let Some(job) = jobs.get_mut(job_id).filter(|j| !j.ended()) else {
            return;
        };
        let count = chunk.tasks.len();
        for task in chunk.tasks {
            job.slots.insert(task.index, Slot::new(task));
        }
        job.report.partitions.total = job.slots.len() as u64;
        let bytes: u64 = chunk.inputs.iter().map(|i| i.size).sum();
        job.bytes_total += bytes;
        if let Some(observer) = self.on_planned.get() {
            observer(job_id, count as u64, bytes);
        }
        job.report
            .inputs
            .extend(chunk.inputs.iter().map(|i| i.url.to_string()));
        tracing::debug!(
            job = job_id,
            tasks = count,
            last = chunk.last,
            "more tasks planned"
        );
        if chunk.last {
            job.planning = false;
            tracing::info!(job = job_id, tasks = job.slots.len(), "planning done");
            if job.ready_to_commit() {
                // Every task finished before the last listing page was planned.
                job.report.state = JobState::Committing;
                self.spawn_finish(job_id);
            }
        }
        drop(jobs);
        self.work.notify_waiters();
    }

    /// Planning met an input it cannot read (named in `message`): the job fails, publishing
    /// nothing.
    async fn fail_planning(self: &Arc<Self>, job_id: &str, message: String) {
        let ended: Option<Ended> = {
            let mut jobs = self.jobs.lock().await;
            let Some(job) = jobs.get_mut(job_id) else {
                return;
            };
            self.end_job(job, JobState::Failed, format!("planning failed: {message}"))
        };
        self.wrap_up(ended).await;
    }
}
