//! The one job lifecycle, shared by `zoopipectl run` and the fleet coordinator:
//!
//! ```text
//! submit: plan → tasks (stored) ─▶ take_tasks: claim (fencing token) ─▶ complete / fail / lost
//!    fail, lost ─▶ retry::decide: again after a backoff, or the job fails naming the task
//!    all tasks done ─▶ finish_job: re-read misaligned files ─▶ error-rate gate
//!                     ─▶ commit ─▶ publish (_report.json, _SUCCESS) ─▶ store the report
//! ```
//!
//! Durable state goes through a `JobStore` (in memory for the embedded mode, etcd for the
//! fleet); who runs a task is the caller's business (local task runners, or workers pulling
//! over gRPC).

mod memory;
mod planning;
pub mod retry;
mod store;
mod table;

pub use memory::MemoryStore;
pub use retry::{Decision, FailureKind, decide};
pub use store::{JobStore, NameClaim, Planned, StoreError, StoreResult, persist};
pub use table::{AttemptProgress, DatabaseView, JobEntry, JobProgress, Slot, TaskStatus};

use crate::commit::{
    check_inputs_outside_output, check_listing_avoids_output, check_output_free, commit,
    error_rate_exceeded, publish, write_report, write_unpublished_report,
};
use crate::ops::METRICS;
use crate::ownership;
use crate::task::{TaskContext, discard};
use chrono::Utc;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{Mutex, Notify};
use tracing::Instrument;
use zoopipe_common::plan::{ObjectPlanner, Split, SplitKind, Task, misaligned_files, start_plan};
use zoopipe_common::report::{JobReport, JobState, TaskResult};
use zoopipe_common::spec::{JobConfig, JobSpec, SchemaSource};
use zoopipe_common::storage::Storage;

/// Every task's winning attempt, by task index.
pub type Outcomes = BTreeMap<u32, TaskResult>;

pub fn new_job_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", Utc::now().format("%Y%m%d-%H%M%S"), &id[..8])
}

/// Why a job could not start.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The spec, schema or output choice is wrong.
    #[error("{0}")]
    Invalid(zoopipe_common::Error),
    /// The inputs or output are not as the job needs them (missing, unreadable, occupied).
    #[error("{0}")]
    Precondition(zoopipe_common::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The same named job was submitted by someone else at the same moment.
    #[error("the same named job was submitted concurrently; submit again to attach to it")]
    Concurrent,
}

/// What a submission did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitOutcome {
    Created,
    AlreadySucceeded,
    AlreadyRunning,
    Resumed,
}

#[derive(Clone, Debug)]
pub struct Submitted {
    pub job_id: String,
    /// Tasks planned so far (all of them, unless `planning`).
    pub tasks: u32,
    pub tasks_to_run: u32,
    pub outcome: SubmitOutcome,
    /// Its inputs are still being listed: more tasks will come.
    pub planning: bool,
}

/// One task handed to a runner.
#[derive(Clone)]
pub struct Assignment {
    pub job_id: String,
    pub task: Task,
    pub attempt: u32,
    pub token: u64,
    pub config: Arc<JobConfig>,
}

/// An attempt a worker says it runs (from a heartbeat).
pub struct RunningAttempt {
    pub job_id: String,
    pub index: u32,
    pub token: u64,
    pub uploads: Vec<(String, String)>,
    /// What it has read so far.
    pub so_far: AttemptProgress,
}

/// What a job that ended without a commit still has to write (see `Lifecycle::wrap_up`).
struct Ended {
    config: Arc<JobConfig>,
    report: JobReport,
    discard: Vec<TaskResult>,
    /// Whether the store has the end already (a cancel records it first).
    recorded: bool,
}

/// The report of a job that ends without a commit: nothing of it was published.
fn ending_report(job: &JobEntry, state: JobState, message: &str) -> JobReport {
    let finished = job.results().count();
    let total = job.slots.len();
    let kept = if job.config.spec.name.is_some() {
        "kept unpublished for a resubmission to resume"
    } else {
        "discarded"
    };
    let mut report = job.report.clone();
    report.state = state;
    report.partitions.total = total as u64;
    report.partitions.succeeded = finished as u64;
    report.partitions.failed = (total - finished) as u64;
    report.message = Some(format!(
        "{message}; nothing was committed ({finished} of {total} tasks had finished, their parts {kept})"
    ));
    report.duration_s = job.started.elapsed().as_secs_f64();
    report.finished_at = Utc::now().to_rfc3339();
    report
}

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no job {0}")]
    NotFound(String),
    #[error("job {0} is committing its output and can no longer be cancelled")]
    Committing(String),
    /// The store did not take the cancel: the job runs on.
    #[error("cannot record the cancel of job {0} ({1}); it runs on: cancel again")]
    Unrecorded(String, StoreError),
}

/// Told a job's id when it starts its commit.
type CommitObserver = Box<dyn Fn(&str) + Send + Sync>;
/// Told a job's id, and the tasks and input bytes planned, as they are planned.
type PlannedObserver = Box<dyn Fn(&str, u64, u64) + Send + Sync>;

pub struct Lifecycle {
    store: Arc<dyn JobStore>,
    storage: Storage,
    jobs: Mutex<BTreeMap<String, JobEntry>>,
    /// Woken when a task may have become available (submitted, requeued, backoff over).
    work: Notify,
    /// Woken when a job has ended and everything its end writes is written.
    ended: Notify,
    /// Jobs whose end is fully written (report, store, claim released).
    wrapped_up: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Told when a job starts its commit (the embedded runner's progress display).
    on_commit: std::sync::OnceLock<CommitObserver>,
    /// Told when tasks are planned (the embedded runner's progress totals).
    on_planned: std::sync::OnceLock<PlannedObserver>,
    /// The commit running for each job (`spawn_finish`): never two at once, all stopped when
    /// this replica stops leading.
    commits: std::sync::Mutex<std::collections::HashMap<String, tokio::task::AbortHandle>>,
    /// The planning going on for each job still listing its inputs (`keep_planning`):
    /// stopped likewise.
    planners: std::sync::Mutex<std::collections::HashMap<String, tokio::task::AbortHandle>>,
    /// One submit at a time per job name: two submits of one named job at the same moment
    /// must end as one job (the second follows the first), not as a refusal of the second
    /// at the output's claim.
    naming: std::sync::Mutex<std::collections::HashMap<String, Arc<Mutex<()>>>>,
    /// Outputs (output, errors) of jobs being submitted, not yet in the table
    /// (`check_not_nested`).
    submitting: std::sync::Mutex<Vec<(String, [String; 2])>>,
}

/// A submit's outputs, counted by `check_not_nested` until the submit ends (by then the job
/// is in the table, or it was not created).
struct OutputsReserved<'a> {
    lifecycle: &'a Lifecycle,
    job_id: String,
}

impl Drop for OutputsReserved<'_> {
    fn drop(&mut self) {
        let mut submitting = self
            .lifecycle
            .submitting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        submitting.retain(|(id, _)| *id != self.job_id);
    }
}

impl Lifecycle {
    pub fn new(store: Arc<dyn JobStore>, storage: Storage) -> Arc<Self> {
        Arc::new(Self {
            store,
            storage,
            jobs: Mutex::new(BTreeMap::new()),
            work: Notify::new(),
            ended: Notify::new(),
            wrapped_up: Default::default(),
            on_commit: std::sync::OnceLock::new(),
            on_planned: std::sync::OnceLock::new(),
            commits: Default::default(),
            planners: Default::default(),
            naming: Default::default(),
            submitting: Default::default(),
        })
    }

    /// The lock that keeps submits of one named job apart (see `naming`).
    fn name_lock(&self, key: &str) -> Arc<Mutex<()>> {
        let mut locks = self.naming.lock().unwrap_or_else(|e| e.into_inner());
        // Locks nobody holds or waits for go, so the map stays as small as the names in use.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(key.to_string()).or_default().clone()
    }

    /// Call `f(job_id)` whenever a job starts its commit (once per lifecycle).
    pub fn on_commit(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.on_commit.set(Box::new(f));
    }

    /// Call `f(job_id, tasks, bytes)` whenever tasks covering `bytes` of input are planned: a
    /// new job's at submit, then each later chunk of a long listing's (once per lifecycle).
    pub fn on_planned(&self, f: impl Fn(&str, u64, u64) + Send + Sync + 'static) {
        let _ = self.on_planned.set(Box::new(f));
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// A future that resolves at the next `notify_work` (create it before looking for work).
    pub fn work_notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.work.notified()
    }

    pub fn notify_work(&self) {
        self.work.notify_waiters();
    }

    /// Plan and store a job. A named job (`name` + `vars`) is its own idempotency key: an
    /// earlier run that succeeded answers a resubmission (unless `force`), a running one is
    /// attached to, a failed or cancelled one resumes with its uncommitted tasks.
    pub async fn submit(
        self: &Arc<Self>,
        mut spec: JobSpec,
        force: bool,
    ) -> Result<Submitted, SubmitError> {
        let mut name_key = None;
        let mut previous = None;
        let mut _same_name = None;
        if let Some(name) = &spec.name {
            let key = self.store.name_key(name, &spec.vars);
            _same_name = Some(self.name_lock(&key).lock_owned().await);
            if let Some(earlier) = self.store.job_for_name(&key).await? {
                if let Some(answer) = self.rerun(&earlier, force).await? {
                    return Ok(answer);
                }
                // --force: a fresh run replaces the earlier one's output.
                spec.overwrite = true;
                previous = Some(earlier);
            }
            name_key = Some(key);
        }
        // An incremental job starts above the mark its last successful run left (unless
        // `since` is given: a first bound, or a backfill).
        if let (Some(mark), None) = (spec.mark_name(), &spec.since) {
            spec.since = self.store.mark(&mark).await?;
            spec.until = None;
        }
        let job_id = new_job_id();
        tracing::Span::current().record("job", job_id.as_str());
        if spec.trace_parent.is_none() {
            spec.trace_parent = zoopipe_common::logging::current_traceparent();
        }
        let mut config = JobConfig::new(job_id.clone(), spec).map_err(SubmitError::Invalid)?;
        let (plan, more) = start_plan(&self.storage, &mut config)
            .await
            .map_err(SubmitError::Precondition)?;
        check_inputs_outside_output(&config, &plan.inputs).map_err(SubmitError::Invalid)?;
        let _reserved = self
            .check_not_nested(&config)
            .await
            .map_err(SubmitError::Invalid)?;
        // One job per output: claimed before anything is written, given up if the job does
        // not start after all.
        ownership::claim(&self.storage, &config)
            .await
            .map_err(SubmitError::Precondition)?;
        let stored = self.store_job(config, plan, more, name_key, previous).await;
        if let Err((e, config)) = stored {
            ownership::release(&self.storage, &config).await;
            return Err(e);
        }
        stored.map_err(|(e, _)| e)
    }

    /// Refuse an output that contains, or lies inside, the output of a job still running here:
    /// a commit with `--overwrite` removes whatever its prefix holds besides its own parts, and
    /// a reader of the outer prefix would see the inner job's parts as its own. (One output
    /// exactly is kept to one job by its owner marker.)
    async fn check_not_nested(
        &self,
        config: &JobConfig,
    ) -> zoopipe_common::Result<OutputsReserved<'_>> {
        let ours = [&config.output, &config.errors].map(|t| t.url.to_string());
        let jobs = self.jobs.lock().await;
        let running = jobs.iter().filter(|(_, j)| !j.ended()).map(|(id, j)| {
            let targets = [&j.config.output, &j.config.errors].map(|t| t.url.to_string());
            (id.clone(), targets)
        });
        let mut submitting = self.submitting.lock().unwrap_or_else(|e| e.into_inner());
        // Jobs being submitted count too: two nested submits at the same moment must not both
        // pass before either is in the table.
        for (job_id, targets) in running.chain(submitting.iter().cloned()) {
            if targets[0] == ours[0] {
                // The same output: its owner marker refuses this job, naming the other.
                continue;
            }
            for theirs in &targets {
                for mine in &ours {
                    let nested = mine != theirs
                        && ((mine.ends_with('/') && theirs.starts_with(mine.as_str()))
                            || (theirs.ends_with('/') && mine.starts_with(theirs.as_str())));
                    if nested {
                        return Err(zoopipe_common::Error::config(format!(
                            "{mine} and {theirs}, where job {job_id} is writing, lie one inside \
                             the other: a commit would remove or mix the other's parts; \
                             choose separate prefixes"
                        )));
                    }
                }
            }
        }
        submitting.push((config.job_id.clone(), ours));
        Ok(OutputsReserved {
            lifecycle: self,
            job_id: config.job_id.clone(),
        })
    }

    /// The rest of `submit`, once the output is claimed; on failure the config comes back so
    /// the claim can be given up.
    async fn store_job(
        self: &Arc<Self>,
        mut config: JobConfig,
        plan: zoopipe_common::plan::Plan,
        more: Option<ObjectPlanner>,
        name_key: Option<String>,
        previous: Option<String>,
    ) -> Result<Submitted, (SubmitError, JobConfig)> {
        let job_id = config.job_id.clone();
        if let Err(e) = check_output_free(&self.storage, &config).await {
            return Err((SubmitError::Precondition(e), config));
        }
        if more.is_some() {
            match check_listing_avoids_output(&self.storage, &config).await {
                Ok(None) => {}
                Ok(Some(refusal)) => return Err((SubmitError::Invalid(refusal), config)),
                Err(e) => return Err((SubmitError::Precondition(e), config)),
            }
        }
        // Every attempt, wherever it runs, validates with exactly the schema planned with
        // (inferred or given): it travels inline in the stored spec.
        let Some(schema) = config.schema.as_deref().map(|s| s.to_json_schema("Record")) else {
            let e = zoopipe_common::Error::config("planning produced no schema");
            return Err((SubmitError::Invalid(e), config));
        };
        config.spec.schema = Some(SchemaSource::Inline(schema));
        let spec_json = match serde_json::to_value(&config.spec) {
            Ok(json) => json,
            Err(e) => {
                let e = zoopipe_common::Error::config(e.to_string());
                return Err((SubmitError::Invalid(e), config));
            }
        };
        let name = name_key.as_deref().map(|key| NameClaim {
            key,
            seen: previous.as_deref(),
        });
        let planned = more.as_ref().map(|more| Planned {
            next_task: more.next_task(),
            open: true,
        });
        if let Err(e) = self
            .store
            .create_job(&job_id, &spec_json, &plan.tasks, name, planned)
            .await
        {
            let e = match e {
                StoreError::JobExists(_) => SubmitError::Concurrent,
                e => SubmitError::Store(e),
            };
            return Err((e, config));
        }
        let mut report = JobReport::new(&job_id);
        report.state = JobState::Running;
        report.started_at = Utc::now().to_rfc3339();
        report.inputs = plan.inputs.iter().map(|i| i.url.to_string()).collect();
        report.partitions.total = plan.tasks.len() as u64;
        let slots: BTreeMap<u32, Slot> = plan
            .tasks
            .into_iter()
            .map(|task| (task.index, Slot::new(task)))
            .collect();
        let count = slots.len() as u32;
        let mut entry = JobEntry::new(Arc::new(config), slots, report);
        entry.bytes_total = plan.inputs.iter().map(|i| i.size).sum();
        entry.planning = more.is_some();
        if let Some(database) = plan.database {
            entry.report.inputs = vec![database.relation];
            entry.bytes_total = entry
                .slots
                .values()
                .flat_map(|s| &s.task.splits)
                .map(|s| s.size)
                .sum();
            let snapshot = Arc::new(database.snapshot);
            self.watch_snapshot(&job_id, &snapshot);
            entry.report.snapshots = 1;
            entry.report.high_water = entry.config.spec.until.clone();
            entry.database = Some(DatabaseView {
                snapshot: Some(snapshot),
                renewing: false,
            });
        }
        if let Some(observer) = self.on_planned.get() {
            observer(&job_id, u64::from(count), entry.bytes_total);
        }
        self.jobs.lock().await.insert(job_id.clone(), entry);
        let planning = more.is_some();
        tracing::info!(job = job_id, tasks = count, planning, "job submitted");
        if let Some(more) = more {
            self.keep_planning(&job_id, more);
        }
        self.work.notify_waiters();
        Ok(Submitted {
            job_id,
            tasks: count,
            tasks_to_run: count,
            outcome: SubmitOutcome::Created,
            planning,
        })
    }

    /// What an earlier run of a named job answers a resubmission. `None`: start a new run
    /// (forced). Decided under the table's lock; the writes to storage and the store happen
    /// outside it, so heartbeats and other jobs never wait on them.
    async fn rerun(
        self: &Arc<Self>,
        job_id: &str,
        force: bool,
    ) -> Result<Option<Submitted>, SubmitError> {
        enum Next {
            Answer(Submitted),
            Resume(Arc<JobConfig>),
            Replace(Vec<TaskResult>),
        }
        let next = {
            let jobs = self.jobs.lock().await;
            let Some(job) = jobs.get(job_id) else {
                if force {
                    return Ok(None);
                }
                // Recorded under the name but not loaded (its spec unreadable): never replace
                // its output unasked.
                return Err(SubmitError::Precondition(zoopipe_common::Error::config(
                    format!(
                        "job {job_id}, the earlier run of this named job, is recorded but could not be loaded; submit with --force to start a new run that replaces its output"
                    ),
                )));
            };
            let remaining = job.unfinished();
            let answer = |outcome, tasks_to_run| Submitted {
                job_id: job_id.to_string(),
                tasks: job.slots.len() as u32,
                tasks_to_run,
                outcome,
                planning: job.planning,
            };
            match job.report.state {
                JobState::Succeeded if !force => {
                    Next::Answer(answer(SubmitOutcome::AlreadySucceeded, 0))
                }
                JobState::Pending | JobState::Running | JobState::Committing => {
                    Next::Answer(answer(SubmitOutcome::AlreadyRunning, remaining))
                }
                JobState::Failed | JobState::Cancelled if !force => {
                    Next::Resume(job.config.clone())
                }
                // Forced: the earlier run's kept (unpublished) parts go; published ones stay
                // until the new run replaces them.
                JobState::Succeeded => Next::Replace(Vec::new()),
                _ => Next::Replace(job.results().map(|(_, r)| r.clone()).collect()),
            }
        };
        match next {
            Next::Answer(answer) => Ok(Some(answer)),
            Next::Replace(results) => {
                for result in &results {
                    discard(&self.storage, result).await;
                }
                Ok(None)
            }
            Next::Resume(config) => {
                ownership::claim(&self.storage, &config)
                    .await
                    .map_err(SubmitError::Precondition)?;
                let store = &self.store;
                if let Err(e) = persist("the resume", job_id, || store.resume_job(job_id)).await {
                    ownership::release(&self.storage, &config).await;
                    return Err(e.into());
                }
                Ok(Some(self.resume(job_id).await))
            }
        }
    }

    /// The table's side of resuming an ended named job (the store has it already): its
    /// unfinished tasks run again, with their attempt numbers going on (hand-backs aside, a
    /// resumed task gets its full budget of attempts again).
    async fn resume(self: &Arc<Self>, job_id: &str) -> Submitted {
        let mut jobs = self.jobs.lock().await;
        let Some(job) = jobs.get_mut(job_id) else {
            return Submitted {
                job_id: job_id.to_string(),
                tasks: 0,
                tasks_to_run: 0,
                outcome: SubmitOutcome::Resumed,
                planning: false,
            };
        };
        if !job.ended() {
            // Two resubmissions at once: the other one resumed it already.
            let remaining = job.unfinished();
            return Submitted {
                job_id: job_id.to_string(),
                tasks: job.slots.len() as u32,
                tasks_to_run: remaining,
                outcome: SubmitOutcome::AlreadyRunning,
                planning: job.planning,
            };
        }
        let remaining = job.unfinished();
        for slot in job.slots.values_mut() {
            if !matches!(slot.status, TaskStatus::Done(_)) {
                slot.status = TaskStatus::Pending;
                slot.handed_back = slot.attempts;
                slot.ready_at = None;
            }
        }
        job.scan_from = 0;
        let mut report = JobReport::new(job_id);
        let planning = job.planning;
        // Nothing left to run (or plan): straight to the commit.
        report.state = if remaining == 0 && !planning {
            JobState::Committing
        } else {
            JobState::Running
        };
        report.started_at = Utc::now().to_rfc3339();
        report.inputs = std::mem::take(&mut job.report.inputs);
        report.partitions.total = job.slots.len() as u64;
        job.report = report;
        job.started = Instant::now();
        let tasks = job.slots.len() as u32;
        let reads_database = job.reads_database;
        drop(jobs);
        if let Ok(mut done) = self.wrapped_up.lock() {
            done.remove(job_id);
        }
        tracing::info!(job = job_id, tasks = remaining, "resuming a named job");
        if planning {
            // It ended before its inputs were all planned: planning goes on from its last task.
            self.resume_planning(job_id).await;
        }
        if remaining == 0 && !planning {
            self.spawn_finish(job_id);
        } else if reads_database {
            // The ended run's snapshot is gone with it: the tasks left, and those done under
            // the old snapshot, read again under a new one (never two snapshots in one output).
            let me = self.clone();
            let id = job_id.to_string();
            tokio::spawn(async move { me.resnapshot(&id).await });
        }
        self.work.notify_waiters();
        Submitted {
            job_id: job_id.to_string(),
            tasks,
            tasks_to_run: remaining,
            outcome: SubmitOutcome::Resumed,
            planning,
        }
    }

    /// Claim up to `free` ready tasks for `worker` (under `lease`; 0 for none).
    pub async fn take_tasks(
        &self,
        worker: &str,
        lease: i64,
        free: u32,
    ) -> Result<Vec<Assignment>, StoreError> {
        // Pick under the lock, claim in the store without it: concurrent acquires then reach
        // etcd together (it commits them in one batch) instead of one after another.
        let now = Instant::now();
        let picks: Vec<(String, u32, u32, u32)> = {
            let mut jobs = self.jobs.lock().await;
            let mut picks = Vec::new();
            'jobs: for (job_id, job) in jobs.iter_mut() {
                if job.ended() || job.report.state == JobState::Committing {
                    continue;
                }
                if job.reads_database && current_snapshot(job).is_none() {
                    continue; // a new snapshot is being taken (`resnapshot`)
                }
                let mut waiting = false;
                for (index, slot) in job.slots.range_mut(job.scan_from..) {
                    if picks.len() as u32 >= free {
                        break 'jobs;
                    }
                    let pending = matches!(slot.status, TaskStatus::Pending);
                    let backing_off = pending && slot.ready_at.is_some_and(|t| t > now);
                    waiting |= backing_off;
                    // Everything before the first task waiting for its backoff is claimed or
                    // done: the next scan starts after it.
                    if !waiting {
                        job.scan_from = index + 1;
                    }
                    if backing_off {
                        continue;
                    }
                    if pending {
                        slot.attempts += 1;
                        slot.ready_at = None;
                        slot.status = TaskStatus::Claiming;
                        picks.push((job_id.clone(), *index, slot.attempts, slot.handed_back));
                    }
                }
            }
            picks
        };
        let claims =
            futures::future::join_all(picks.iter().map(|(job_id, index, attempt, handed_back)| {
                self.store
                    .claim(job_id, *index, worker, *attempt, *handed_back, lease)
            }))
            .await;
        let mut out = Vec::new();
        let mut failure = None;
        let mut jobs = self.jobs.lock().await;
        for ((job_id, index, attempt, _), claimed) in picks.into_iter().zip(claims) {
            let Some(job) = jobs.get_mut(&job_id) else {
                continue;
            };
            let snapshot = current_snapshot(job);
            let Some(slot) = job.slots.get_mut(&index) else {
                continue;
            };
            if !matches!(slot.status, TaskStatus::Claiming) {
                continue;
            }
            match claimed {
                // The job's snapshot was dropped while this claim was in flight (a new one is
                // being taken): the task waits for it; its owner key goes.
                Ok(Some(token)) if job.reads_database && snapshot.is_none() => {
                    slot.status = TaskStatus::Pending;
                    slot.attempts -= 1;
                    job.scan_from = 0;
                    let (store, job_id) = (self.store.clone(), job_id.clone());
                    tokio::spawn(async move {
                        let _ = store.release(&job_id, index, token).await;
                    });
                }
                Ok(Some(token)) => {
                    slot.status = TaskStatus::Running {
                        worker: worker.to_string(),
                        token,
                        uploads: Vec::new(),
                        since: Instant::now(),
                        started: false,
                        so_far: AttemptProgress::default(),
                    };
                    out.push(Assignment {
                        job_id: job_id.clone(),
                        task: with_snapshot(&slot.task, snapshot.as_deref()),
                        attempt,
                        token,
                        config: job.config.clone(),
                    });
                }
                // An earlier owner is still there (its lease has not ended yet), or the store
                // failed: the task stays pending for a later acquire.
                other => {
                    slot.status = TaskStatus::Pending;
                    slot.attempts -= 1;
                    job.scan_from = 0;
                    if let Err(e) = other {
                        failure = Some(e);
                    }
                }
            }
        }
        drop(jobs);
        match failure {
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    /// An attempt's result. `false`: refused (a superseded attempt, or the job ended), and its
    /// staged parts were discarded.
    pub async fn complete(
        self: &Arc<Self>,
        job_id: &str,
        token: u64,
        result: TaskResult,
    ) -> Result<bool, StoreError> {
        let ended = self
            .jobs
            .lock()
            .await
            .get(job_id)
            .is_none_or(JobEntry::ended);
        if ended {
            // Cancelled or failed meanwhile (or unknown): nothing of it may be published, and
            // its owner key goes (left under the worker's live lease, it would keep the task
            // from being claimed when a named job is resumed).
            discard(&self.storage, &result).await;
            let _ = self.store.release(job_id, result.index, token).await;
            return Ok(false);
        }
        if let Some(why) = result.imbalance() {
            // A bug, not bad luck: fail the job loudly rather than publish a part whose rows
            // do not add up.
            tracing::error!(
                job = job_id,
                task = result.index,
                why,
                "counts do not balance"
            );
            discard(&self.storage, &result).await;
            let ended = {
                let mut jobs = self.jobs.lock().await;
                jobs.get_mut(job_id).and_then(|job| {
                    let name = job.slots.get(&result.index).map_or_else(
                        || format!("task {}", result.index),
                        |s| partition_name(&s.task),
                    );
                    let message = format!("{name}: counts do not balance ({why})");
                    self.end_job(job, JobState::Failed, message)
                })
            };
            self.wrap_up(ended).await;
            return Ok(false);
        }
        if !self.store.complete(job_id, token, &result).await? {
            // A superseded attempt (its lease expired and the task ran again): drop its parts.
            tracing::warn!(
                job = job_id,
                task = result.index,
                attempt = result.attempt,
                "late result refused"
            );
            discard(&self.storage, &result).await;
            return Ok(false);
        }
        // A coordinator that dies here has recorded the result but not answered: the worker
        // sends it again to the next one, which must acknowledge it (see `JobStore::complete`).
        zoopipe_common::fault::crash_point("complete-recorded");
        METRICS.attempt("committed");
        METRICS.rows_read.inc_by(result.rows_read);
        METRICS.rows_invalid.inc_by(result.rows_invalid);
        METRICS.bytes_read.inc_by(result.bytes_read);
        METRICS.bytes_written.inc_by(result.bytes_written);
        METRICS.task_seconds.observe(result.duration_s);
        let mut jobs = self.jobs.lock().await;
        let Some(job) = jobs.get_mut(job_id) else {
            return Ok(true);
        };
        {
            // The table moved on while the store took the result: a database job took a new
            // snapshot and reset the task (its store keys go too). Rows of the old snapshot
            // must not be committed beside the new one's.
            let resnapshotting = job.reads_database && current_snapshot(job).is_none();
            let Some(slot) = job.slots.get_mut(&result.index) else {
                return Ok(true);
            };
            let current = match &slot.status {
                // While a new snapshot is taken every attempt of the old one is void.
                TaskStatus::Running { token: t, .. } => *t == token && !resnapshotting,
                TaskStatus::Done(done) => done.attempt == result.attempt,
                _ => false,
            };
            if !current {
                drop(jobs);
                tracing::warn!(
                    job = job_id,
                    task = result.index,
                    attempt = result.attempt,
                    "result of a reset attempt refused"
                );
                discard(&self.storage, &result).await;
                return Ok(false);
            }
            if !matches!(slot.status, TaskStatus::Done(_)) {
                job.done += 1;
            }
            slot.status = TaskStatus::Done(Box::new(result));
        }
        self.commit_if_ready(job_id, job);
        Ok(true)
    }

    /// Start the job's commit when it is ready (see `JobEntry::ready_to_commit`).
    fn commit_if_ready(self: &Arc<Self>, job_id: &str, job: &mut JobEntry) {
        if job.ready_to_commit() {
            job.report.state = JobState::Committing;
            // Every row is read: the snapshot's transaction can end.
            if let Some(view) = job.database.as_mut() {
                view.snapshot = None;
            }
            self.spawn_finish(job_id);
        }
    }

    /// An attempt ended without a result (reported by its runner). Ignored unless the attempt
    /// still owns its task. `Err`: the store did not take the release (the runner reports
    /// again).
    pub async fn fail(
        self: &Arc<Self>,
        job_id: &str,
        index: u32,
        token: u64,
        kind: FailureKind,
        message: String,
    ) -> StoreResult<()> {
        // `false` when the owner key is gone already (its lease ended, or an earlier release
        // applied whose answer was lost): the table decides whether this attempt still owns
        // the task.
        self.store.release(job_id, index, token).await?;
        let ended = {
            let mut jobs = self.jobs.lock().await;
            let Some(job) = jobs.get_mut(job_id) else {
                return Ok(());
            };
            let owns = job.slots.get(&index).is_some_and(
                |s| matches!(s.status, TaskStatus::Running { token: t, .. } if t == token),
            );
            if !owns || job.ended() {
                return Ok(()); // a stale attempt: the task is already elsewhere
            }
            // A database task that failed may have found the snapshot gone (a host that
            // vanished without closing the connection): look now rather than at the next probe.
            if let Some(snapshot) = current_snapshot(job) {
                let (me, id) = (self.clone(), job_id.to_string());
                tokio::spawn(async move {
                    if !snapshot.answers(SNAPSHOT_PATIENCE).await {
                        drop(snapshot);
                        me.resnapshot(&id).await;
                    }
                });
            }
            self.settle(job, index, kind, message)
        };
        self.wrap_up(ended).await;
        Ok(())
    }

    /// The attempt `token` (`None`: whichever runs) of `index` is gone without a word (its
    /// worker's lease ended, or it never received the task): abort the uploads it reported and
    /// decide as for a failure. A late word about an earlier attempt changes nothing.
    pub async fn lost(self: &Arc<Self>, job_id: &str, index: u32, token: Option<u64>, why: &str) {
        let ended = {
            let mut jobs = self.jobs.lock().await;
            let Some(job) = jobs.get_mut(job_id) else {
                return;
            };
            if job.ended() {
                return;
            }
            let uploads = match job.slots.get_mut(&index).map(|s| &mut s.status) {
                Some(TaskStatus::Running {
                    uploads, token: t, ..
                }) if token.is_none_or(|token| *t == token) => std::mem::take(uploads),
                _ => return,
            };
            self.abort_uploads(uploads);
            METRICS.lease_expiries.inc();
            self.settle(job, index, FailureKind::Lost, why.to_string())
        };
        self.wrap_up(ended).await;
    }

    /// The one retry decision applied to a task whose attempt ended without a result (under
    /// the job table's lock; what the job's end must write comes back for after it).
    fn settle(
        self: &Arc<Self>,
        job: &mut JobEntry,
        index: u32,
        kind: FailureKind,
        message: String,
    ) -> Option<Ended> {
        let max = job.config.spec.max_attempts;
        let job_id = job.report.job_id.clone();
        let slot = job.slots.get_mut(&index)?;
        match decide(kind, slot.attempts - slot.handed_back, max) {
            Decision::Retry { after, counted } => {
                if counted {
                    METRICS.retries.inc();
                } else {
                    slot.handed_back += 1;
                }
                tracing::warn!(
                    job = job_id,
                    task = index,
                    attempt = slot.attempts,
                    ?kind,
                    message,
                    "task attempt failed, running it again"
                );
                slot.status = TaskStatus::Pending;
                slot.last_error = Some(message);
                job.scan_from = 0;
                if after.is_zero() {
                    slot.ready_at = None;
                    self.work.notify_waiters();
                } else {
                    slot.ready_at = Some(Instant::now() + after);
                    let me = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        me.work.notify_waiters();
                    });
                }
                None
            }
            Decision::FailJob => {
                let attempts = match slot.attempts - slot.handed_back {
                    n if n > 1 => format!(" after {n} attempts"),
                    _ => String::new(),
                };
                let message = format!("{} failed{attempts}: {message}", partition_name(&slot.task));
                self.end_job(job, JobState::Failed, message)
            }
        }
    }

    /// Abort multipart uploads a lost attempt reported, so none lingers in the bucket.
    fn abort_uploads(&self, uploads: Vec<(String, String)>) {
        if uploads.is_empty() {
            return;
        }
        let storage = self.storage.clone();
        tokio::spawn(async move {
            for (url, upload_id) in uploads {
                let staged = zoopipe_common::storage::StagedObject::Multipart {
                    url: url.clone(),
                    upload_id,
                    parts: Vec::new(),
                    bytes: 0,
                    crc32: 0,
                };
                match staged.discard(&storage).await {
                    Ok(()) => tracing::info!(url, "aborted a lost attempt's upload"),
                    Err(e) => {
                        tracing::warn!(url, error = %e, "cannot abort a lost attempt's upload")
                    }
                }
            }
        });
    }

    /// Start the job's commit (`finish_job`) unless one is running already: one commit of a
    /// job at a time, in this process; `clear` stops them when this replica stops leading.
    fn spawn_finish(self: &Arc<Self>, job_id: &str) {
        let Ok(mut commits) = self.commits.lock() else {
            return;
        };
        if commits.get(job_id).is_some_and(|h| !h.is_finished()) {
            // Asked again while one runs (it may be just past its decision): look again soon.
            drop(commits);
            self.finish_later(job_id, std::time::Duration::from_secs(1));
            return;
        }
        let handle = tokio::spawn(self.clone().finish_job(job_id.to_string()));
        commits.insert(job_id.to_string(), handle.abort_handle());
    }

    /// `spawn_finish` after `after` (a step that failed, to be tried again).
    fn finish_later(self: &Arc<Self>, job_id: &str, after: std::time::Duration) {
        let (me, job_id) = (self.clone(), job_id.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            me.spawn_finish(&job_id);
        });
    }

    /// Every task of the job has a result (its state was set to `Committing` under the lock):
    /// re-read misaligned files, apply the error-rate gate, or commit. The commit runs without
    /// the job table's lock, so heartbeats, other jobs and status calls go on meanwhile. Every
    /// store write on the way is retried through an etcd blip (`persist`), so a job never
    /// stays committing; started only by `spawn_finish`.
    async fn finish_job(self: Arc<Self>, job_id: String) {
        let (config, outcomes, report, started) = {
            let mut jobs = self.jobs.lock().await;
            let Some(job) = jobs.get_mut(&job_id) else {
                return;
            };
            if job.report.state != JobState::Committing {
                return;
            }
            let ranges: Vec<_> = job
                .results()
                .flat_map(|(_, r)| r.ranges.iter().cloned())
                .collect();
            let bad = misaligned_files(&ranges);
            if !bad.is_empty() {
                let replacements = rereads(job, &bad);
                drop(jobs);
                self.reread(&job_id, replacements).await;
                return;
            }
            let outcomes: Outcomes = job.results().map(|(i, r)| (i, r.clone())).collect();
            let mut totals = job.report.clone();
            outcomes.values().for_each(|r| totals.add(r));
            if !totals.balanced() {
                let message = format!(
                    "counts do not balance: {} rows read but {} valid + {} invalid",
                    totals.total_processed, totals.total_valid, totals.total_errors
                );
                let ended = self.end_job(job, JobState::Failed, message);
                drop(jobs);
                self.wrap_up(ended).await;
                return;
            }
            if let Some(message) = error_rate_exceeded(&job.config, &outcomes) {
                for result in outcomes.values() {
                    job.report.add(result);
                }
                let ended = self.end_job(job, JobState::Failed, message);
                drop(jobs);
                self.wrap_up(ended).await;
                return;
            }
            (
                job.config.clone(),
                outcomes,
                job.report.clone(),
                job.started,
            )
        };
        let store = &self.store;
        let entered = persist("the commit's start", &job_id, || {
            store.set_job_state(&job_id, JobState::Committing)
        })
        .await;
        if let Err(e) = entered {
            // Not leading any more: the new leader commits from the stored results.
            tracing::warn!(job = job_id, error = %e, "cannot start the commit");
            return;
        }
        if let Some(observer) = self.on_commit.get() {
            observer(&job_id);
        }
        let ctx = TaskContext::new(self.storage.clone());
        let span = tracing::info_span!("commit", job = job_id.as_str());
        if let Some(parent) = &config.spec.trace_parent {
            zoopipe_common::logging::set_parent(&span, parent);
        }
        // Re-read files replace their ranges' tasks: count what actually ran.
        let mut report = report;
        report.partitions.total = outcomes.len() as u64;
        let mut report = match commit(&ctx, &config, outcomes, report)
            .instrument(span)
            .await
        {
            Ok(mut report) => {
                report.state = JobState::Succeeded;
                report
            }
            Err((e, mut report)) => {
                report.state = JobState::Failed;
                report.message = Some(format!("commit failed: {e}"));
                report
            }
        };
        report.duration_s = started.elapsed().as_secs_f64();
        report.items_per_second = report.total_processed as f64 / report.duration_s.max(1e-9);
        report.finished_at = Utc::now().to_rfc3339();
        // A coordinator deposed while it committed (frozen past its lease) must not write the
        // job's report and markers over those of the leader that finished the commit since.
        if let Err(e) = persist("the commit", &job_id, || store.confirm_leading()).await {
            tracing::warn!(
                job = report.job_id,
                error = %e,
                "no longer leading: the commit is the new leader's, nothing written"
            );
            return;
        }
        let written = if report.state == JobState::Succeeded {
            publish(&self.storage, &config, &report).await
        } else {
            write_report(&self.storage, &config, &report).await
        };
        if let Err(e) = written {
            report.state = JobState::Failed;
            report.message = Some(format!("commit failed: {e}"));
            // `_report.json` may already say succeeded while `_SUCCESS` is missing: say failed.
            let _ = write_report(&self.storage, &config, &report).await;
        }
        // The output is published: the next incremental run starts above what it holds.
        if let (JobState::Succeeded, Some(name), Some(mark)) =
            (report.state, config.spec.mark_name(), &config.spec.until)
            && let Err(e) = persist("the job's mark", &job_id, || store.set_mark(&name, mark)).await
        {
            tracing::error!(job = report.job_id, error = %e, "could not record the job's mark");
        }
        if let Err(e) = persist("the job's end", &job_id, || store.finish_job(&report)).await {
            // Another leader records it (it commits again from the manifest, idempotently).
            tracing::error!(job = report.job_id, error = %e, "could not record the job's end");
            return;
        }
        ownership::release(&self.storage, &config).await;
        tracing::info!(job = report.job_id, state = ?report.state, "job ended");
        if let Some(job) = self.jobs.lock().await.get_mut(&job_id) {
            job.report = report;
        }
        self.mark_wrapped_up(&job_id);
        self.work.notify_waiters();
    }

    /// Quoted newlines crossed a range boundary: those files' ranges are thrown away and each
    /// file runs again whole, under the index of its first range. The store learns first
    /// (outside the table's lock: the job is committing, so nothing else touches its tasks);
    /// then the table, and the job runs again.
    async fn reread(self: &Arc<Self>, job_id: &str, replacements: Vec<(Vec<u32>, Task)>) {
        for (owners, task) in &replacements {
            let store = &self.store;
            let stored = persist("a re-read", job_id, || {
                store.replace_tasks(job_id, owners, task)
            })
            .await;
            if let Err(e) = stored {
                tracing::warn!(job = job_id, error = %e, "cannot record the re-read");
                if !matches!(e, StoreError::NotLeader) {
                    // Decided again from the stored tasks after a while.
                    self.finish_later(job_id, std::time::Duration::from_secs(5));
                }
                return;
            }
        }
        let mut discarded = Vec::new();
        {
            let mut jobs = self.jobs.lock().await;
            let Some(job) = jobs.get_mut(job_id) else {
                return;
            };
            for (owners, task) in replacements {
                for index in &owners {
                    if let Some(slot) = job.slots.remove(index)
                        && let TaskStatus::Done(r) = slot.status
                    {
                        discarded.push(*r);
                    }
                }
                job.slots.insert(task.index, Slot::new(task));
            }
            job.report.partitions.total = job.slots.len() as u64;
            job.scan_from = 0;
            job.done = job.results().count();
            // Running again: the whole-file tasks are handed out.
            job.report.state = JobState::Running;
        }
        self.work.notify_waiters();
        let storage = self.storage.clone();
        tokio::spawn(async move {
            for result in &discarded {
                discard(&storage, result).await;
            }
        });
    }

    /// End a job that will not commit: nothing of it is published. A named job keeps its
    /// finished tasks' parts (staged, invisible) so that submitting it again resumes with only
    /// the rest; an unnamed one cannot be resumed, so they go. Changes the table only (under
    /// its lock); the writes to storage and the store come back as `Ended` for `wrap_up`, so
    /// heartbeats and other jobs never wait on S3.
    fn end_job(&self, job: &mut JobEntry, state: JobState, message: String) -> Option<Ended> {
        if job.ended() {
            return None;
        }
        let report = ending_report(job, state, &message);
        Some(self.apply_end(job, report, false))
    }

    /// Make `report` (from `ending_report`) the job's end in the table; `recorded`: the store
    /// has it already.
    fn apply_end(&self, job: &mut JobEntry, report: JobReport, recorded: bool) -> Ended {
        if let Some(view) = job.database.as_mut() {
            view.snapshot = None;
        }
        self.stop_planning(&report.job_id);
        let discard_parts: Vec<TaskResult> = if job.config.spec.name.is_none() {
            job.results().map(|(_, r)| r.clone()).collect()
        } else {
            Vec::new()
        };
        job.report = report;
        self.work.notify_waiters();
        Ended {
            config: job.config.clone(),
            report: job.report.clone(),
            discard: discard_parts,
            recorded,
        }
    }

    /// The writes of a job's end, outside the job table's lock. The store first (retried
    /// through a blip), so a job that ended stays ended after a restart or failover; then its
    /// parts discarded, its report written beside the output, its output claim given up. A
    /// replica that no longer leads writes nothing: the new leader ends the job itself.
    async fn wrap_up(&self, ended: Option<Ended>) {
        let Some(ended) = ended else {
            return;
        };
        let job_id = ended.report.job_id.as_str();
        if !ended.recorded {
            let store = &self.store;
            if let Err(e) =
                persist("the job's end", job_id, || store.finish_job(&ended.report)).await
            {
                tracing::error!(job = job_id, error = %e, "could not record the job's end");
                if matches!(e, StoreError::NotLeader) {
                    return;
                }
            }
        }
        for result in &ended.discard {
            discard(&self.storage, result).await;
        }
        let _ = write_unpublished_report(&self.storage, &ended.config, &ended.report).await;
        ownership::release(&self.storage, &ended.config).await;
        self.mark_wrapped_up(job_id);
    }

    fn mark_wrapped_up(&self, job_id: &str) {
        if let Ok(mut done) = self.wrapped_up.lock() {
            done.insert(job_id.to_string());
        }
        self.ended.notify_waiters();
    }

    /// Cancel a job that has not started its commit.
    pub async fn cancel(self: &Arc<Self>, job_id: &str) -> Result<JobState, CancelError> {
        // Recorded in the store first, then in the table: a cancel the store did not take is
        // refused (the job runs on, and the caller may cancel again), never reported as done
        // to come back as running after a restart.
        // While the store takes it, the job may finish its last task: `cancelling` keeps its
        // commit from starting, so what the cancel answers is what happens.
        let report = {
            let mut jobs = self.jobs.lock().await;
            let job = jobs
                .get_mut(job_id)
                .ok_or_else(|| CancelError::NotFound(job_id.to_string()))?;
            if job.ended() {
                return Ok(job.report.state);
            }
            if job.report.state == JobState::Committing {
                return Err(CancelError::Committing(job_id.to_string()));
            }
            job.cancelling += 1;
            ending_report(job, JobState::Cancelled, "cancelled by a user")
        };
        let recorded = self.store.finish_job(&report).await;
        let ended = {
            let mut jobs = self.jobs.lock().await;
            let job = jobs
                .get_mut(job_id)
                .ok_or_else(|| CancelError::NotFound(job_id.to_string()))?;
            job.cancelling -= 1;
            if let Err(e) = recorded {
                // The job runs on, and may have become ready to commit meanwhile.
                self.commit_if_ready(job_id, job);
                return Err(CancelError::Unrecorded(job_id.to_string(), e));
            }
            if job.ended() {
                return Ok(job.report.state);
            }
            if job.report.state == JobState::Committing {
                // Resumed into its commit meanwhile (a named resubmission): the commit stands.
                return Err(CancelError::Committing(job_id.to_string()));
            }
            self.apply_end(job, report, true)
        };
        self.wrap_up(Some(ended)).await;
        Ok(JobState::Cancelled)
    }

    /// Wait until the job has ended and its end is written; its final report.
    pub async fn wait_ended(&self, job_id: &str) -> Option<JobReport> {
        loop {
            let ended = self.ended.notified();
            let done = self
                .wrapped_up
                .lock()
                .map(|d| d.contains(job_id))
                .unwrap_or(true);
            {
                let jobs = self.jobs.lock().await;
                let job = jobs.get(job_id)?;
                if done && job.ended() {
                    return Some(job.report.clone());
                }
            }
            ended.await;
        }
    }

    pub async fn contains(&self, job_id: &str) -> bool {
        self.jobs.lock().await.contains_key(job_id)
    }

    /// The job's report so far (final once it ended).
    pub async fn report(&self, job_id: &str) -> Option<JobReport> {
        self.jobs
            .lock()
            .await
            .get(job_id)
            .map(JobEntry::current_report)
    }

    pub async fn progress(&self, job_id: &str) -> Option<JobProgress> {
        self.jobs.lock().await.get(job_id).map(JobEntry::progress)
    }

    pub async fn list(&self) -> Vec<JobReport> {
        let jobs = self.jobs.lock().await;
        jobs.values().map(|j| j.report.clone()).collect()
    }

    /// Jobs by state, and tasks of unfinished jobs by state: for metrics.
    pub async fn counts(&self) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
        let mut jobs_by_state: BTreeMap<String, i64> = [
            "pending",
            "running",
            "committing",
            "succeeded",
            "failed",
            "cancelled",
        ]
        .into_iter()
        .map(|s| (s.to_string(), 0))
        .collect();
        let mut tasks_by_state: BTreeMap<String, i64> = ["pending", "running", "done"]
            .into_iter()
            .map(|s| (s.to_string(), 0))
            .collect();
        let jobs = self.jobs.lock().await;
        for job in jobs.values() {
            let state = format!("{:?}", job.report.state).to_lowercase();
            *jobs_by_state.entry(state).or_default() += 1;
            if job.ended() {
                continue;
            }
            for slot in job.slots.values() {
                let state = match slot.status {
                    TaskStatus::Pending => "pending",
                    TaskStatus::Claiming | TaskStatus::Running { .. } => "running",
                    TaskStatus::Done(_) => "done",
                };
                *tasks_by_state.entry(state.to_string()).or_default() += 1;
            }
        }
        (jobs_by_state, tasks_by_state)
    }

    /// A worker's heartbeat lists the attempts it runs: mark them started and note their
    /// open uploads. Returns the positions (in `running`) of attempts to stop: their job
    /// ended or their task went elsewhere.
    pub async fn heartbeat(&self, running: Vec<RunningAttempt>) -> Vec<usize> {
        let mut jobs = self.jobs.lock().await;
        let mut stop = Vec::new();
        for (position, attempt) in running.into_iter().enumerate() {
            let current = jobs.get_mut(&attempt.job_id).and_then(|j| {
                let ended = j.ended();
                j.slots
                    .get_mut(&attempt.index)
                    .filter(|_| !ended)
                    .map(|s| &mut s.status)
            });
            match current {
                Some(TaskStatus::Running {
                    token,
                    uploads,
                    started,
                    so_far,
                    ..
                }) if *token == attempt.token => {
                    *started = true;
                    *uploads = attempt.uploads;
                    *so_far = attempt.so_far;
                }
                _ => stop.push(position),
            }
        }
        stop
    }

    /// The lines of the input before task `index`'s first byte range, once the tasks that hold
    /// every range before it are done (its error rows are then numbered as they are written:
    /// `task::errors`). `Some(0)` for a task that starts its file.
    pub async fn line_offset(&self, job_id: &str, index: u32) -> Option<u64> {
        let jobs = self.jobs.lock().await;
        let job = jobs.get(job_id)?;
        let split = job.slots.get(&index)?.task.splits.first()?;
        let SplitKind::Bytes { start, .. } = split.kind else {
            return Some(0);
        };
        let counted = job.slots.values().flat_map(|s| match &s.status {
            TaskStatus::Done(result) => result.ranges.as_slice(),
            _ => &[],
        });
        zoopipe_common::plan::lines_before(counted, &split.url, start)
    }

    /// Whether the task's latest attempt is running (not done, not pending).
    pub async fn is_running(&self, job_id: &str, index: u32) -> bool {
        self.jobs.lock().await.get(job_id).is_some_and(|j| {
            matches!(
                j.slots.get(&index).map(|s| &s.status),
                Some(TaskStatus::Running { .. })
            )
        })
    }

    /// Running attempts of unfinished jobs: (job, task, worker, token, assigned at, started).
    pub async fn running(&self) -> Vec<(String, u32, String, u64, Instant, bool)> {
        let jobs = self.jobs.lock().await;
        jobs.iter()
            .filter(|(_, j)| !j.ended())
            .flat_map(|(job_id, j)| {
                j.slots
                    .iter()
                    .filter_map(|(index, slot)| match &slot.status {
                        TaskStatus::Running {
                            worker,
                            token,
                            since,
                            started,
                            ..
                        } => Some((
                            job_id.clone(),
                            *index,
                            worker.clone(),
                            *token,
                            *since,
                            *started,
                        )),
                        _ => None,
                    })
            })
            .collect()
    }

    /// Replace the job table with jobs reloaded from the store (a new leader); jobs whose
    /// every task has a result, or that were committing, commit again (idempotently).
    pub async fn load(self: &Arc<Self>, entries: Vec<(JobEntry, bool)>) -> usize {
        let mut jobs = self.jobs.lock().await;
        jobs.clear();
        let mut to_finish = Vec::new();
        let mut to_plan = Vec::new();
        let mut to_tidy = Vec::new();
        for (mut entry, committing) in entries {
            let job_id = entry.report.job_id.clone();
            if entry.ended() && !committing {
                to_tidy.push(Ended {
                    config: entry.config.clone(),
                    report: entry.report.clone(),
                    discard: match entry.report.state {
                        // An unnamed job that did not commit cannot be resumed: its staged
                        // parts go. (A succeeded job's parts are published: never touched.)
                        JobState::Failed | JobState::Cancelled
                            if entry.config.spec.name.is_none() =>
                        {
                            entry.results().map(|(_, r)| r.clone()).collect()
                        }
                        _ => Vec::new(),
                    },
                    recorded: true,
                });
            }
            let all_done = entry.done == entry.slots.len() && !entry.planning;
            if !entry.ended() && entry.planning && !committing {
                to_plan.push(job_id.clone());
            }
            if !entry.ended() && (all_done || committing) {
                entry.report.state = JobState::Committing;
                to_finish.push(job_id.clone());
            }
            tracing::info!(job = job_id, state = ?entry.report.state, "job reloaded");
            jobs.insert(job_id, entry);
        }
        // A database job's snapshot died with the old leader: a new one, every task again.
        let resnapshot: Vec<String> = jobs
            .iter()
            .filter(|(_, j)| !j.ended() && j.report.state != JobState::Committing)
            .filter(|(_, j)| j.reads_database)
            .map(|(id, _)| id.clone())
            .collect();
        let count = jobs.len();
        drop(jobs);
        for id in to_finish {
            self.spawn_finish(&id);
        }
        for id in to_plan {
            self.resume_planning(&id).await;
        }
        for id in resnapshot {
            let me = self.clone();
            tokio::spawn(async move { me.resnapshot(&id).await });
        }
        // Ended jobs whose end the store holds: the old leader may have died (or lost S3)
        // before it wrote their end's clean-up (output claim, staged parts). Redone in the
        // background, idempotently: a claim is removed only while it is still the job's own.
        let me = self.clone();
        tokio::spawn(async move {
            for ended in to_tidy {
                for result in &ended.discard {
                    discard(&me.storage, result).await;
                }
                ownership::release(&me.storage, &ended.config).await;
                me.mark_wrapped_up(&ended.report.job_id);
            }
        });
        self.work.notify_waiters();
        count
    }

    /// Notice when a database job's snapshot is lost (the database restarted, the connection
    /// was cut) while its tasks still need it, and take a new one.
    fn watch_snapshot(
        self: &Arc<Self>,
        job_id: &str,
        snapshot: &Arc<zoopipe_common::sql::Snapshot>,
    ) {
        let held = Arc::downgrade(snapshot);
        let (me, job_id) = (Arc::downgrade(self), job_id.to_string());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SNAPSHOT_PROBE).await;
                // Dropped on purpose (all rows read, the job ended): nothing to watch.
                let Some(snapshot) = held.upgrade() else {
                    return;
                };
                if snapshot.answers(SNAPSHOT_PATIENCE).await {
                    continue;
                }
                drop(snapshot);
                if let Some(me) = me.upgrade() {
                    tracing::warn!(job = job_id, "the job's database snapshot was lost");
                    me.resnapshot(&job_id).await;
                }
                return;
            }
        });
    }

    /// Give a database job a new snapshot and read everything again under it: results and
    /// running attempts of the old one are dropped (their owner keys and results deleted, so a
    /// late result is refused), so no output ever mixes two snapshots. Runs after a failover
    /// (the old leader's transaction is gone with it) and when the snapshot is lost.
    pub async fn resnapshot(self: &Arc<Self>, job_id: &str) {
        let (config, entry) = {
            let mut jobs = self.jobs.lock().await;
            let Some(job) = jobs.get_mut(job_id) else {
                return;
            };
            if job.ended() || job.report.state == JobState::Committing || !job.reads_database {
                return;
            }
            let view = job.database.get_or_insert(DatabaseView {
                snapshot: None,
                renewing: false,
            });
            if view.renewing {
                return; // one is being taken already
            }
            view.snapshot = None;
            // Reloaded after a failover (or resumed): the lost snapshot was the first.
            job.report.snapshots = job.report.snapshots.max(1);
            if job.report.snapshots >= MAX_SNAPSHOTS {
                let message = format!(
                    "the job's database snapshot was lost {} times; nothing was mixed, but the job gives up (check the database's stability and idle_in_transaction_session_timeout)",
                    job.report.snapshots
                );
                let ended = self.end_job(job, JobState::Failed, message);
                drop(jobs);
                self.wrap_up(ended).await;
                return;
            }
            view.renewing = true;
            (job.config.clone(), job.started)
        };
        self.renew_snapshot(job_id, config, entry).await;
        // Whatever happened, the next loss may be handled (by this entry: a reloaded one has
        // its own flag).
        if let Some(job) = self.jobs.lock().await.get_mut(job_id)
            && job.started == entry
            && let Some(view) = job.database.as_mut()
        {
            view.renewing = false;
        }
    }

    /// `resnapshot`'s work, on the table entry that started at `entry` (a failover may replace
    /// the entry meanwhile: then this stops).
    async fn renew_snapshot(
        self: &Arc<Self>,
        job_id: &str,
        config: Arc<JobConfig>,
        entry: Instant,
    ) {
        // The same planning, under a new snapshot: the stored slices still cover every row
        // (the first and last are open-ended), and an incremental range stays the one fixed
        // when the job was first planned (`until`).
        let mut attempt = 0;
        let planned = loop {
            let mut again = (*config).clone();
            match zoopipe_common::plan::plan_job(&self.storage, &mut again).await {
                Ok(plan) => break plan.database,
                Err(e) if e.is_retryable() && attempt < 30 => {
                    attempt += 1;
                    tracing::warn!(job = job_id, error = %e, "cannot take a new snapshot yet");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(e) => {
                    let ended = {
                        let mut jobs = self.jobs.lock().await;
                        jobs.get_mut(job_id).filter(|j| j.started == entry).and_then(|job| {
                            let message = format!(
                                "the job's database snapshot was lost and no new one could be taken: {e}"
                            );
                            self.end_job(job, JobState::Failed, message)
                        })
                    };
                    self.wrap_up(ended).await;
                    return;
                }
            }
        };
        let Some(planned) = planned else {
            return;
        };
        let snapshot = Arc::new(planned.snapshot);
        // Which tasks read under the old snapshot: every one with a result or an attempt. No
        // task is handed out meanwhile (the job holds no snapshot), so the set cannot grow.
        let reset: Vec<u32> = {
            let jobs = self.jobs.lock().await;
            let Some(job) = jobs.get(job_id).filter(|j| j.started == entry) else {
                return;
            };
            if job.ended() || job.report.state == JobState::Committing {
                return;
            }
            job.slots
                .iter()
                .filter(|(_, s)| {
                    matches!(s.status, TaskStatus::Done(_) | TaskStatus::Running { .. })
                })
                .map(|(i, _)| *i)
                .collect()
        };
        // Their owner keys and results go first: from now on a late result of an old attempt
        // is refused by the store, and the table below refuses one the store took before.
        let store = self.store.clone();
        let cleared = persist("reset tasks read under a lost snapshot", job_id, || {
            store.reset_tasks(job_id, &reset)
        })
        .await;
        if let Err(e) = cleared {
            tracing::warn!(job = job_id, error = %e, "cannot reset the old snapshot's tasks");
            return; // not leading any more: the next leader takes its own snapshot
        }
        let stale = {
            let mut jobs = self.jobs.lock().await;
            let Some(job) = jobs.get_mut(job_id).filter(|j| j.started == entry) else {
                return;
            };
            if job.ended() || job.report.state == JobState::Committing {
                return;
            }
            let mut stale = Vec::new();
            for index in &reset {
                let Some(slot) = job.slots.get_mut(index) else {
                    continue;
                };
                match std::mem::replace(&mut slot.status, TaskStatus::Pending) {
                    TaskStatus::Done(result) => {
                        job.done -= 1;
                        stale.push(*result);
                    }
                    TaskStatus::Running { uploads, .. } => self.abort_uploads(uploads),
                    other => slot.status = other,
                }
                slot.ready_at = None;
            }
            job.scan_from = 0;
            let view = job.database.get_or_insert(DatabaseView {
                snapshot: None,
                renewing: true,
            });
            view.snapshot = Some(snapshot.clone());
            job.report.snapshots += 1;
            job.report.high_water = job.config.spec.until.clone();
            stale
        };
        for result in &stale {
            discard(&self.storage, result).await;
        }
        tracing::info!(
            job = job_id,
            tasks = reset.len(),
            "new database snapshot: every task reads again"
        );
        self.watch_snapshot(job_id, &snapshot);
        self.work.notify_waiters();
    }

    /// Forget one job (removed from the store: past its retention).
    pub async fn forget(&self, job_id: &str) {
        if let Some(handle) = self.planners.lock().ok().and_then(|mut p| p.remove(job_id)) {
            handle.abort();
        }
        self.jobs.lock().await.remove(job_id);
        if let Ok(mut done) = self.wrapped_up.lock() {
            done.remove(job_id);
        }
    }

    /// Forget every job and stop their commits (this replica stopped leading: the next
    /// leader commits them again from the store and the manifest, and a re-election of this
    /// replica starts them anew, never beside an old one).
    pub async fn clear(&self) {
        for handles in [&self.commits, &self.planners] {
            if let Ok(mut handles) = handles.lock() {
                for (_, handle) in handles.drain() {
                    handle.abort();
                }
            }
        }
        self.jobs.lock().await.clear();
    }
}

/// How often a database job's snapshot is checked, and how long it may take to answer.
const SNAPSHOT_PROBE: std::time::Duration = std::time::Duration::from_secs(2);
const SNAPSHOT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
/// A job whose snapshot keeps being lost gives up after this many.
const MAX_SNAPSHOTS: u32 = 10;

/// The snapshot a database job's tasks must enter now (`None`: none is held).
fn current_snapshot(job: &JobEntry) -> Option<Arc<zoopipe_common::sql::Snapshot>> {
    job.database.as_ref()?.snapshot.clone()
}

/// The task as handed out: its database slices name the job's current snapshot.
fn with_snapshot(task: &Task, snapshot: Option<&zoopipe_common::sql::Snapshot>) -> Task {
    let mut task = task.clone();
    for split in &mut task.splits {
        if let SplitKind::Sql(slice) = &mut split.kind {
            slice.snapshot = snapshot.map(|s| s.id().to_string());
        }
    }
    task
}

/// For each misaligned file, the tasks of its ranges and the whole-file task replacing them
/// (under the index of its first range).
fn rereads(job: &JobEntry, bad: &BTreeSet<String>) -> Vec<(Vec<u32>, Task)> {
    let mut out = Vec::new();
    for url in bad {
        tracing::warn!(%url, "quoted newlines cross a partition boundary; reading the file whole");
        let owners: Vec<u32> = job
            .slots
            .iter()
            .filter(|(_, s)| s.task.splits.iter().any(|sp| &sp.url == url))
            .map(|(i, _)| *i)
            .collect();
        let Some(first) = owners.first().copied() else {
            continue;
        };
        let Some(template) = job.slots.get(&first).map(|s| s.task.splits[0].clone()) else {
            continue;
        };
        let task = Task {
            index: first,
            splits: vec![Split {
                kind: SplitKind::Whole,
                ..template
            }],
        };
        out.push((owners, task));
    }
    out
}

/// A task as a user recognises it: its index and what it reads.
pub fn partition_name(task: &Task) -> String {
    let Some(first) = task.splits.first() else {
        return format!("task {}", task.index);
    };
    let what = match &first.kind {
        SplitKind::Whole => String::new(),
        SplitKind::Bytes { start, end } => format!(" bytes {start}..{end}"),
        SplitKind::RowGroups { start, end } => format!(" row groups {start}..{end}"),
        SplitKind::Batches { start, end, .. } => format!(" record batches {start}..{end}"),
        SplitKind::Sql(slice) => format!(" {}", slice.relation),
    };
    let more = match task.splits.len() {
        1 => String::new(),
        n => format!(" and {} more file(s)", n - 1),
    };
    format!("task {} ({}{what}{more})", task.index, first.url)
}

#[cfg(test)]
mod tests;
