//! The in-memory job table the lifecycle changes: jobs, their task slots, and what each
//! task's latest attempt is doing. Rebuilt from the job store after a failover.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use zoopipe_common::plan::{SplitKind, Task};
use zoopipe_common::report::{JobReport, JobState, TaskResult};
use zoopipe_common::spec::JobConfig;

#[derive(Debug)]
pub enum TaskStatus {
    Pending,
    /// Being claimed in the store for a worker (between the pick and the claim's answer).
    Claiming,
    Running {
        worker: String,
        token: u64,
        /// Multipart uploads the attempt reported open (url, upload id), to abort if it dies.
        uploads: Vec<(String, String)>,
        /// When it was assigned (or adopted from the store).
        since: Instant,
        /// Whether its worker has listed it in a heartbeat since (it really runs).
        started: bool,
        /// What it had read at its last heartbeat.
        so_far: AttemptProgress,
    },
    Done(Box<TaskResult>),
}

pub struct Slot {
    pub task: Task,
    /// Attempts started, the running one included (attempt numbers are never reused).
    pub attempts: u32,
    /// Of those, attempts handed back by draining workers: they use up none of `max_attempts`.
    pub handed_back: u32,
    pub status: TaskStatus,
    /// A retried task waits for its backoff: not handed out before this.
    pub ready_at: Option<Instant>,
    /// The last failure's message (named when the job gives up on the task).
    pub last_error: Option<String>,
}

impl Slot {
    pub fn new(task: Task) -> Self {
        Self {
            task,
            attempts: 0,
            handed_back: 0,
            status: TaskStatus::Pending,
            ready_at: None,
            last_error: None,
        }
    }
}

pub struct JobEntry {
    pub config: Arc<JobConfig>,
    pub slots: BTreeMap<u32, Slot>,
    pub report: JobReport,
    pub started: Instant,
    /// Every slot before this index is claimed or done (scans for pending tasks start here,
    /// so a job of 100,000 tasks is not rescanned per acquire); reset to 0 on any requeue.
    pub scan_from: u32,
    /// How many slots are done (a completion checks "all done" without a scan).
    pub done: usize,
    /// Input bytes the plan covers.
    pub bytes_total: u64,
    /// A database job's view (see `Lifecycle::resnapshot`).
    pub database: Option<DatabaseView>,
    /// Whether its tasks read a database (and so need the job's snapshot).
    pub reads_database: bool,
    /// Its inputs are still being listed and planned (`Lifecycle::keep_planning`): more tasks
    /// will come, so finishing the ones it has does not end it.
    pub planning: bool,
    /// Cancels being recorded in the store (`Lifecycle::cancel`): the commit must not start
    /// meanwhile, or a cancel answered "cancelled" would end in a published output.
    pub cancelling: u32,
}

/// What a database job's tasks must see. Tasks are handed out only while `snapshot` holds;
/// it is dropped (the exporting transaction ends) once every task has its result. How many
/// were taken is the report's `snapshots`; the incremental range is the spec's.
pub struct DatabaseView {
    pub snapshot: Option<Arc<zoopipe_common::sql::Snapshot>>,
    /// A new snapshot is being taken (`Lifecycle::resnapshot`): never two at once.
    pub renewing: bool,
}

/// What a running attempt has read so far (from its worker's heartbeats).
#[derive(Clone, Copy, Debug, Default)]
pub struct AttemptProgress {
    pub rows_read: u64,
    pub rows_invalid: u64,
    pub bytes_read: u64,
}

/// A job's progress while it runs (and its report once it ended).
#[derive(Clone, Debug)]
pub struct JobProgress {
    pub job_id: String,
    pub state: JobState,
    pub tasks_total: u32,
    pub tasks_done: u32,
    pub rows_read: u64,
    pub rows_invalid: u64,
    pub bytes_read: u64,
    pub bytes_total: u64,
    pub report: Option<JobReport>,
}

impl JobEntry {
    /// Tasks without a result yet.
    pub fn unfinished(&self) -> u32 {
        self.slots
            .values()
            .filter(|s| !matches!(s.status, TaskStatus::Done(_)))
            .count() as u32
    }

    pub fn new(config: Arc<JobConfig>, slots: BTreeMap<u32, Slot>, report: JobReport) -> Self {
        let done = slots
            .values()
            .filter(|s| matches!(s.status, TaskStatus::Done(_)))
            .count();
        let reads_database = slots.values().any(|s| {
            s.task
                .splits
                .iter()
                .any(|split| matches!(split.kind, SplitKind::Sql(_)))
        });
        Self {
            config,
            slots,
            report,
            started: Instant::now(),
            scan_from: 0,
            done,
            bytes_total: 0,
            database: None,
            reads_database,
            planning: false,
            cancelling: 0,
        }
    }

    pub fn ended(&self) -> bool {
        self.report.state.ended()
    }

    /// Every task has its result, planning is over and no cancel is under way: the commit
    /// may start.
    pub fn ready_to_commit(&self) -> bool {
        self.done == self.slots.len()
            && !self.planning
            && self.cancelling == 0
            && self.report.state == JobState::Running
    }

    pub fn results(&self) -> impl Iterator<Item = (u32, &TaskResult)> {
        self.slots.iter().filter_map(|(i, s)| match &s.status {
            TaskStatus::Done(r) => Some((*i, r.as_ref())),
            _ => None,
        })
    }

    /// The report so far: the final one once the job ended, else the finished tasks' counts.
    pub fn current_report(&self) -> JobReport {
        let mut report = self.report.clone();
        if !self.ended() {
            for (_, result) in self.results() {
                report.add(result);
            }
        }
        report
    }

    pub fn progress(&self) -> JobProgress {
        let mut progress = JobProgress {
            job_id: self.report.job_id.clone(),
            state: self.report.state,
            tasks_total: self.slots.len() as u32,
            tasks_done: 0,
            rows_read: 0,
            rows_invalid: 0,
            bytes_read: 0,
            bytes_total: self.bytes_total,
            report: self.ended().then(|| self.report.clone()),
        };
        for slot in self.slots.values() {
            match &slot.status {
                TaskStatus::Done(r) => {
                    progress.tasks_done += 1;
                    progress.rows_read += r.rows_read;
                    progress.rows_invalid += r.rows_invalid;
                    progress.bytes_read += r.bytes_read;
                }
                TaskStatus::Running { so_far, .. } if !self.ended() => {
                    progress.rows_read += so_far.rows_read;
                    progress.rows_invalid += so_far.rows_invalid;
                    progress.bytes_read += so_far.bytes_read;
                }
                _ => {}
            }
        }
        progress
    }
}
