//! The fleet coordinator's job table over the state in etcd (the gRPC services that call it
//! are in `api`).
//!
//! Workers pull: `AcquireTask` long-polls until a task is pending, claims it in etcd under the
//! worker's lease (the claim's revision is the attempt's fencing token) and hands it out with its
//! job spec. `CompleteTask` is accepted only through the fencing-token transaction; a refused
//! result's staged parts are discarded here. A worker whose lease expires loses its owner keys;
//! the etcd watch requeues those tasks. When every task has a result, the job commits with the
//! same `commit` as the embedded mode.

use crate::commit::{
    check_inputs_outside_output, check_output_free, commit, error_rate_exceeded, publish,
    write_report,
};
use crate::leader::{self, Campaign, LeaderInfo};
use crate::state::{EtcdState, StateError};
use chrono::Utc;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Notify};
use tonic::Status;
use tracing::Instrument;
use zoopipe_common::plan::{Task, misaligned_files, plan_job};
use zoopipe_common::report::{JobReport, JobState, TaskResult};
use zoopipe_common::schema::CompiledSchema;
use zoopipe_common::spec::{JobConfig, JobSpec, SchemaSource};
use zoopipe_common::storage::Storage;
use zoopipe_proto::convert::{state_to, task_to};
use zoopipe_proto::v1;
use zoopipe_worker::ops::METRICS;
use zoopipe_worker::{Progress, WorkerContext, discard};

/// How long `AcquireTask` waits for work before returning empty.
/// How long a call waits for an election under way before it is refused.
const ELECTION_WAIT: Duration = Duration::from_secs(10);

pub(crate) const LONG_POLL: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) enum TaskStatus {
    Pending,
    /// Being claimed in etcd for a worker (between the pick and the claim's answer).
    Claiming,
    Running {
        worker: String,
        token: u64,
        /// Multipart uploads the attempt reported open (url, upload id), to abort if it dies.
        uploads: Vec<(String, String)>,
        /// When this replica assigned it (or adopted it from etcd).
        since: Instant,
        /// Whether the worker has listed it in a heartbeat since (it really runs).
        started: bool,
    },
    Done(Box<TaskResult>),
}

pub(crate) struct Slot {
    pub(crate) task: Task,
    pub(crate) attempts: u32,
    pub(crate) status: TaskStatus,
}

pub(crate) struct JobEntry {
    pub(crate) config: Arc<JobConfig>,
    pub(crate) spec: v1::JobSpec,
    pub(crate) slots: BTreeMap<u32, Slot>,
    pub(crate) report: JobReport,
    pub(crate) started: Instant,
    /// Every slot before this index is claimed or done (scans for pending tasks start here,
    /// so a job of 100,000 tasks is not rescanned per acquire); reset to 0 on any requeue.
    pub(crate) scan_from: u32,
    /// How many slots are done (a completion checks "all done" without a scan).
    pub(crate) done: usize,
}

impl JobEntry {
    pub(crate) fn ended(&self) -> bool {
        matches!(
            self.report.state,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    pub(crate) fn progress(&self) -> v1::JobProgress {
        let done: Vec<&TaskResult> = self
            .slots
            .values()
            .filter_map(|s| match &s.status {
                TaskStatus::Done(r) => Some(r.as_ref()),
                _ => None,
            })
            .collect();
        v1::JobProgress {
            job_id: self.report.job_id.clone(),
            state: state_to(self.report.state),
            tasks_total: self.slots.len() as u32,
            tasks_done: done.len() as u32,
            rows_read: done.iter().map(|r| r.rows_read).sum(),
            rows_invalid: done.iter().map(|r| r.rows_invalid).sum(),
            bytes_read: done.iter().map(|r| r.bytes_read).sum(),
            report: self.ended().then(|| (&self.report).into()),
        }
    }
}

/// This replica's part in the election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not leading, and no leader known (starting up, or between two leaders).
    Candidate,
    /// Elected and its state reloaded: serves every call itself.
    Leader,
    /// Another replica leads: calls are forwarded there.
    Follower(LeaderInfo),
}

pub struct Fleet {
    pub(crate) state: EtcdState,
    pub(crate) storage: Storage,
    pub(crate) jobs: Mutex<BTreeMap<String, JobEntry>>,
    pub(crate) workers: Mutex<HashMap<String, i64>>,
    /// When each worker's last heartbeat came.
    pub(crate) heartbeats: std::sync::Mutex<HashMap<String, Instant>>,
    pub(crate) work: Notify,
    pub(crate) lease_ttl_s: i64,
    pub(crate) me: LeaderInfo,
    pub(crate) role: std::sync::RwLock<Role>,
    /// The lease holding the leader key while this replica leads (0 otherwise).
    pub(crate) leader_lease: AtomicI64,
    /// A channel to the current leader, for forwarding (address, channel).
    pub(crate) to_leader: std::sync::Mutex<Option<(String, tonic::transport::Channel)>>,
    /// TLS for forwarding to the leader (when the replicas serve TLS).
    pub(crate) forward_tls: Option<tonic::transport::ClientTlsConfig>,
}

pub(crate) fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// A state error as a gRPC status: all of them are worth a retry by the caller.
pub(crate) fn unavailable(e: StateError) -> Status {
    Status::unavailable(e.to_string())
}

impl Fleet {
    pub fn new(
        state: EtcdState,
        lease_ttl_s: i64,
        me: LeaderInfo,
        forward_tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Arc<Self> {
        Arc::new(Self {
            forward_tls,
            state,
            storage: Storage::new(),
            jobs: Mutex::new(BTreeMap::new()),
            workers: Mutex::new(HashMap::new()),
            heartbeats: std::sync::Mutex::new(HashMap::new()),
            work: Notify::new(),
            lease_ttl_s,
            me,
            role: std::sync::RwLock::new(Role::Candidate),
            leader_lease: AtomicI64::new(0),
            to_leader: std::sync::Mutex::new(None),
        })
    }

    pub fn role(&self) -> Role {
        self.role
            .read()
            .map(|r| r.clone())
            .unwrap_or(Role::Candidate)
    }

    pub(crate) fn set_role(&self, role: Role) {
        if let Ok(mut r) = self.role.write() {
            *r = role;
        }
    }

    /// Take part in the election for as long as the process runs: campaign, and once elected
    /// reload every job from etcd and lead until the lease is lost; then start over.
    pub async fn campaign(self: Arc<Self>) {
        let mut last_error = String::new();
        loop {
            let round = leader::try_lead(&self.state, &self.me, self.lease_ttl_s).await;
            match round {
                Ok(Campaign::Won { lease, epoch }) => {
                    last_error.clear();
                    self.state.set_epoch(epoch);
                    self.leader_lease.store(lease, Ordering::SeqCst);
                    tracing::info!(epoch, id = self.me.id, "elected leader; reloading state");
                    self.jobs.lock().await.clear();
                    self.workers.lock().await.clear();
                    match self.clone().recover().await {
                        Ok(jobs) => {
                            tracing::info!(jobs, epoch, "leading");
                            self.set_role(Role::Leader);
                            self.work.notify_waiters();
                            leader::hold(&self.state, lease, self.lease_ttl_s).await;
                        }
                        Err(e) => tracing::warn!(error = %e, "could not reload state"),
                    }
                    self.set_role(Role::Candidate);
                    self.state.set_epoch(0);
                    self.leader_lease.store(0, Ordering::SeqCst);
                    self.jobs.lock().await.clear();
                    self.workers.lock().await.clear();
                    let _ = self.state.client().lease_revoke(lease).await;
                    tracing::warn!(epoch, "no longer leading");
                }
                Ok(Campaign::Lost(leader)) => {
                    last_error.clear();
                    let role = match leader {
                        // Our own earlier incarnation (restarted in place) is no one to follow.
                        Some(info) if info.id != self.me.id && info.address != self.me.address => {
                            Role::Follower(info)
                        }
                        _ => Role::Candidate,
                    };
                    if role != self.role() {
                        tracing::info!(?role, "following");
                        self.set_role(role);
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    let message = e.to_string();
                    if message != last_error {
                        tracing::warn!(error = message, "election round failed; retrying");
                        last_error = message;
                    }
                    self.set_role(Role::Candidate);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Jobs by state, tasks of unfinished jobs by state, and registered workers: for metrics.
    pub async fn counts(&self) -> (BTreeMap<String, i64>, BTreeMap<String, i64>, i64) {
        let mut jobs_by_state = BTreeMap::new();
        let mut tasks_by_state = BTreeMap::new();
        for state in [
            "pending",
            "running",
            "committing",
            "succeeded",
            "failed",
            "cancelled",
        ] {
            jobs_by_state.insert(state.to_string(), 0);
        }
        for state in ["pending", "running", "done"] {
            tasks_by_state.insert(state.to_string(), 0);
        }
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
        drop(jobs);
        let workers = self.workers.lock().await.len() as i64;
        (jobs_by_state, tasks_by_state, workers)
    }

    /// Whether etcd answers now (readiness), with this replica's role.
    pub async fn readiness(&self) -> (bool, String) {
        let mut client = self.state.client();
        let probe = client.get("health-probe", None);
        let reachable = matches!(
            tokio::time::timeout(Duration::from_secs(1), probe).await,
            Ok(Ok(_))
        );
        let role = match self.role() {
            Role::Leader => format!("leader (epoch {})", self.state.epoch()),
            Role::Follower(info) => format!("follower of {} at {}", info.id, info.address),
            Role::Candidate => "candidate (no leader known)".to_string(),
        };
        if reachable {
            (true, role)
        } else {
            (false, format!("etcd unreachable; {role}"))
        }
    }

    /// Shutdown: hand leadership over at once instead of after a lease TTL.
    pub async fn resign(&self) {
        let lease = self.leader_lease.swap(0, Ordering::SeqCst);
        if lease != 0 {
            self.set_role(Role::Candidate);
            leader::resign(&self.state, lease).await;
            tracing::info!("resigned leadership");
        }
    }

    /// `None` when this replica leads and serves the call itself; otherwise a channel to the
    /// leader to forward it to.
    /// While an election is under way (start-up, failover) the call waits for its outcome,
    /// up to `ELECTION_WAIT`, rather than failing a client that arrived a moment early.
    pub(crate) async fn leader_channel(&self) -> Result<Option<tonic::transport::Channel>, Status> {
        let deadline = Instant::now() + ELECTION_WAIT;
        let info = loop {
            match self.role() {
                Role::Leader => return Ok(None),
                Role::Follower(info) => break info,
                Role::Candidate if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Role::Candidate => {
                    return Err(Status::unavailable(
                        "no coordinator leads right now (election in progress); retry shortly",
                    ));
                }
            }
        };
        let mut cached = self
            .to_leader
            .lock()
            .map_err(|_| Status::internal("leader channel lock poisoned"))?;
        if let Some((address, channel)) = cached.as_ref()
            && *address == info.address
        {
            return Ok(Some(channel.clone()));
        }
        let channel = crate::forward::channel(&info.address, self.forward_tls.as_ref())?;
        *cached = Some((info.address.clone(), channel.clone()));
        Ok(Some(channel))
    }

    /// Requeue tasks whose owner vanished without a result (lease expired, or released).
    pub async fn watch_leases(self: Arc<Self>) -> crate::state::Result<()> {
        let mut lost = self.state.watch_lost_owners().await?;
        tokio::spawn(async move {
            while let Some((job, index)) = lost.recv().await {
                // Most deletions are completions (already marked done here): skip those
                // without a read.
                let running = self.jobs.lock().await.get(&job).is_some_and(|j| {
                    matches!(
                        j.slots.get(&index).map(|s| &s.status),
                        Some(TaskStatus::Running { .. })
                    )
                });
                // A completion deletes the owner key too: only a task without a result requeues.
                if !running || self.state.has_result(&job, index).await.unwrap_or(false) {
                    continue;
                }
                let mut jobs = self.jobs.lock().await;
                let Some(entry) = jobs.get_mut(&job) else {
                    continue;
                };
                entry.scan_from = 0;
                let Some(slot) = entry.slots.get_mut(&index) else {
                    continue;
                };
                if let TaskStatus::Running { worker, .. } = &slot.status {
                    tracing::warn!(
                        job,
                        task = index,
                        worker,
                        "owner lost its lease; requeueing"
                    );
                    METRICS.lease_expiries.inc();
                    self.requeue(slot);
                }
            }
        });
        Ok(())
    }

    /// Reload every job from etcd (a restarted coordinator carries on where the last one
    /// stopped): results stay committed, owned tasks stay with their owners until their leases
    /// expire, the rest is pending; a job that was committing commits again (idempotently).
    pub async fn recover(self: Arc<Self>) -> crate::state::Result<usize> {
        let stored = self.state.load_jobs().await?;
        let mut to_finish = Vec::new();
        let mut jobs = self.jobs.lock().await;
        for s in stored {
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
            let Ok(spec_proto) = v1::JobSpec::try_from(&config.spec) else {
                continue;
            };
            let report = s.report.clone().unwrap_or_else(|| {
                let mut report = JobReport::new(&s.job_id);
                report.state = JobState::Running;
                report.started_at = Utc::now().to_rfc3339();
                report.partitions.total = s.tasks.len() as u64;
                report
            });
            let slots = s
                .tasks
                .into_iter()
                .map(|(index, task)| {
                    let (status, attempts) = if let Some(r) = s.results.get(&index) {
                        (TaskStatus::Done(Box::new(r.clone())), r.attempt)
                    } else if let Some(o) = s.owners.get(&index) {
                        let status = TaskStatus::Running {
                            worker: o.worker.clone(),
                            token: o.token,
                            uploads: Vec::new(),
                            since: Instant::now(),
                            started: false,
                        };
                        (status, o.attempt)
                    } else {
                        (TaskStatus::Pending, 0)
                    };
                    (
                        index,
                        Slot {
                            task,
                            attempts,
                            status,
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>();
            let mut entry = JobEntry {
                config: Arc::new(config),
                spec: spec_proto,
                slots,
                report,
                started: Instant::now(),
                scan_from: 0,
                done: 0,
            };
            entry.done = entry
                .slots
                .values()
                .filter(|s| matches!(s.status, TaskStatus::Done(_)))
                .count();
            let all_done = entry.done == entry.slots.len();
            if !entry.ended() && (all_done || s.state == JobState::Committing) {
                to_finish.push(s.job_id.clone());
            }
            tracing::info!(job = s.job_id, state = ?entry.report.state, "job reloaded");
            jobs.insert(s.job_id, entry);
        }
        let count = jobs.len();
        for id in to_finish {
            if let Some(job) = jobs.get_mut(&id) {
                job.report.state = JobState::Committing;
                tokio::spawn(self.clone().finish_job(id));
            }
        }
        drop(jobs);
        self.work.notify_waiters();
        Ok(count)
    }

    /// Every few seconds, requeue running tasks that have neither an owner key nor a result
    /// in etcd (their lease expired while the watch was down, e.g. during an etcd outage).
    pub fn reconcile(self: Arc<Self>) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(3)).await;
                let running: Vec<(String, Vec<u32>)> = {
                    let jobs = self.jobs.lock().await;
                    jobs.iter()
                        .filter(|(_, j)| !j.ended())
                        .map(|(id, j)| {
                            let indexes = j
                                .slots
                                .iter()
                                .filter(|(_, s)| matches!(s.status, TaskStatus::Running { .. }))
                                .map(|(i, _)| *i)
                                .collect();
                            (id.clone(), indexes)
                        })
                        .collect()
                };
                self.hand_back_unstarted().await;
                for (job_id, indexes) in running {
                    if indexes.is_empty() {
                        continue;
                    }
                    let Ok(claimed) = self.state.claimed_tasks(&job_id).await else {
                        continue;
                    };
                    let mut jobs = self.jobs.lock().await;
                    let Some(job) = jobs.get_mut(&job_id) else {
                        continue;
                    };
                    job.scan_from = 0;
                    for index in indexes.into_iter().filter(|i| !claimed.contains(i)) {
                        if let Some(slot) = job.slots.get_mut(&index)
                            && matches!(slot.status, TaskStatus::Running { .. })
                        {
                            tracing::warn!(job = job_id, task = index, "owner gone; requeueing");
                            METRICS.lease_expiries.inc();
                            self.requeue(slot);
                        }
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
        let orphans: Vec<(String, u32, u64)> = {
            let heartbeats = match self.heartbeats.lock() {
                Ok(h) => h.clone(),
                Err(_) => return,
            };
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
                                started: false,
                                ..
                            } if heartbeats.get(worker).is_some_and(|seen| {
                                seen.saturating_duration_since(*since) > grace
                            }) =>
                            {
                                Some((job_id.clone(), *index, *token))
                            }
                            _ => None,
                        })
                })
                .collect()
        };
        for (job_id, index, token) in orphans {
            tracing::warn!(
                job = job_id,
                task = index,
                "assigned but never started by its worker (the assignment was lost); running it again"
            );
            self.fail(
                &job_id,
                index,
                token,
                true,
                "the assignment never reached its worker".into(),
            )
            .await;
        }
    }

    /// The attempt's owner is gone (dead, frozen or cut-off worker): run the task again, and
    /// abort the multipart uploads the lost attempt reported, so none lingers in the bucket.
    pub(crate) fn requeue(&self, slot: &mut Slot) {
        let lost = std::mem::replace(&mut slot.status, TaskStatus::Pending);
        self.work.notify_waiters();
        let TaskStatus::Running { uploads, .. } = lost else {
            return;
        };
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

    pub(crate) fn ctx(&self) -> WorkerContext {
        WorkerContext {
            storage: self.storage.clone(),
            runtime: tokio::runtime::Handle::current(),
            progress: Arc::new(Progress::default()),
            cancel: Arc::new(AtomicBool::new(false)),
            batch_delay: std::time::Duration::ZERO,
            opened: Default::default(),
            upload_opened: Default::default(),
        }
    }

    pub(crate) async fn submit(
        self: &Arc<Self>,
        spec: v1::JobSpec,
        force: bool,
    ) -> Result<v1::SubmitJobResponse, Status> {
        let mut spec =
            JobSpec::try_from(spec).map_err(|e| Status::invalid_argument(e.to_string()))?;
        // A named job's name + variables is its idempotency key.
        let mut name_key = None;
        let mut previous = None;
        if let Some(name) = &spec.name {
            let key = self.state.name_key(name, &spec.vars);
            if let Some(earlier) = self.state.job_for_name(&key).await.map_err(unavailable)? {
                if let Some(answer) = self.rerun(&earlier, force).await? {
                    return Ok(answer);
                }
                // --force: a fresh run replaces the earlier one's output.
                spec.overwrite = true;
                previous = Some(earlier);
            }
            name_key = Some(key);
        }
        let job_id = crate::new_job_id();
        tracing::Span::current().record("job", job_id.as_str());
        spec.trace_parent = zoopipe_common::logging::current_traceparent();
        let mut config = JobConfig::new(job_id.clone(), spec)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        check_output_free(&self.storage, &config)
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let plan = plan_job(&self.storage, &mut config)
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        check_inputs_outside_output(&config, &plan.inputs)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Workers must validate with exactly this schema, inferred or given: send it inline.
        let schema: &CompiledSchema = config
            .schema
            .as_deref()
            .ok_or_else(|| Status::internal("planning produced no schema"))?;
        config.spec.schema = Some(SchemaSource::Inline(schema.to_json_schema("Record")));
        let spec_proto = v1::JobSpec::try_from(&config.spec).map_err(internal)?;
        let spec_json = serde_json::to_value(&config.spec).map_err(internal)?;
        self.state
            .create_job(
                &job_id,
                &spec_json,
                &plan.tasks,
                name_key.as_deref().map(|k| (k, previous.as_deref())),
            )
            .await
            .map_err(|e| match e {
                StateError::JobExists(_) => Status::aborted(
                    "the same named job was submitted concurrently; submit again to attach to it",
                ),
                e => unavailable(e),
            })?;
        let mut report = JobReport::new(&job_id);
        report.state = JobState::Running;
        report.started_at = Utc::now().to_rfc3339();
        report.inputs = plan.inputs.iter().map(|i| i.url.to_string()).collect();
        report.partitions.total = plan.tasks.len() as u64;
        let slots = plan
            .tasks
            .into_iter()
            .map(|task| {
                (
                    task.index,
                    Slot {
                        task,
                        attempts: 0,
                        status: TaskStatus::Pending,
                    },
                )
            })
            .collect::<BTreeMap<_, _>>();
        let count = slots.len() as u32;
        self.jobs.lock().await.insert(
            job_id.clone(),
            JobEntry {
                config: Arc::new(config),
                spec: spec_proto,
                slots,
                report,
                started: Instant::now(),
                scan_from: 0,
                done: 0,
            },
        );
        tracing::info!(job = job_id, tasks = count, "job submitted");
        self.work.notify_waiters();
        Ok(v1::SubmitJobResponse {
            job_id,
            tasks: count,
            outcome: v1::SubmitOutcome::Created as i32,
            tasks_to_run: count,
        })
    }

    /// What an earlier run of a named job answers a resubmission: it already succeeded (a
    /// no-op unless forced), it is still running (attach to it), or it failed or was cancelled
    /// (resume it: only the tasks that did not commit run again). `None`: start a new run.
    pub(crate) async fn rerun(
        self: &Arc<Self>,
        job_id: &str,
        force: bool,
    ) -> Result<Option<v1::SubmitJobResponse>, Status> {
        let mut jobs = self.jobs.lock().await;
        let Some(job) = jobs.get_mut(job_id) else {
            return Ok(None);
        };
        let remaining = job
            .slots
            .values()
            .filter(|s| !matches!(s.status, TaskStatus::Done(_)))
            .count() as u32;
        let answer = |outcome: v1::SubmitOutcome, tasks_to_run| v1::SubmitJobResponse {
            job_id: job_id.to_string(),
            tasks: job.slots.len() as u32,
            outcome: outcome as i32,
            tasks_to_run,
        };
        match job.report.state {
            JobState::Succeeded if !force => {
                Ok(Some(answer(v1::SubmitOutcome::AlreadySucceeded, 0)))
            }
            JobState::Pending | JobState::Running | JobState::Committing => {
                Ok(Some(answer(v1::SubmitOutcome::AlreadyRunning, remaining)))
            }
            JobState::Failed | JobState::Cancelled if !force => {
                let response = answer(v1::SubmitOutcome::Resumed, remaining);
                self.state.resume_job(job_id).await.map_err(unavailable)?;
                for slot in job.slots.values_mut() {
                    if !matches!(slot.status, TaskStatus::Done(_)) {
                        slot.status = TaskStatus::Pending;
                        slot.attempts = 0;
                    }
                }
                job.scan_from = 0;
                let mut report = JobReport::new(job_id);
                report.state = JobState::Running;
                report.started_at = Utc::now().to_rfc3339();
                report.inputs = std::mem::take(&mut job.report.inputs);
                report.partitions.total = job.slots.len() as u64;
                job.report = report;
                job.started = Instant::now();
                tracing::info!(job = job_id, tasks = remaining, "resuming a named job");
                if remaining == 0 {
                    job.report.state = JobState::Committing;
                    tokio::spawn(self.clone().finish_job(job_id.to_string()));
                }
                self.work.notify_waiters();
                Ok(Some(response))
            }
            _ => {
                // Forced: the earlier run's kept (unpublished) parts go; published ones stay
                // until the new run replaces them.
                if job.report.state != JobState::Succeeded {
                    for slot in job.slots.values() {
                        if let TaskStatus::Done(r) = &slot.status {
                            discard(&self.storage, r).await;
                        }
                    }
                }
                Ok(None)
            }
        }
    }

    /// Claim up to `free` pending tasks for `worker`.
    pub(crate) async fn take_tasks(
        &self,
        worker: &str,
        lease: i64,
        free: u32,
    ) -> Result<v1::AcquireTaskResponse, Status> {
        // Pick under the lock, claim in etcd without it: concurrent acquires then reach etcd
        // together (it commits them in one batch) instead of one after another.
        let picks: Vec<(String, u32, u32)> = {
            let mut jobs = self.jobs.lock().await;
            let mut picks = Vec::new();
            'jobs: for (job_id, job) in jobs.iter_mut() {
                if job.ended() {
                    continue;
                }
                for (index, slot) in job.slots.range_mut(job.scan_from..) {
                    if picks.len() as u32 >= free {
                        break 'jobs;
                    }
                    // Everything before here is claimed or done: the next scan starts after.
                    job.scan_from = index + 1;
                    if matches!(slot.status, TaskStatus::Pending) {
                        slot.attempts += 1;
                        slot.status = TaskStatus::Claiming;
                        picks.push((job_id.clone(), *index, slot.attempts));
                    }
                }
            }
            picks
        };
        let claims = futures::future::join_all(picks.iter().map(|(job_id, index, attempt)| {
            self.state.claim(job_id, *index, worker, *attempt, lease)
        }))
        .await;
        let mut out = v1::AcquireTaskResponse::default();
        let mut failure = None;
        let mut jobs = self.jobs.lock().await;
        for ((job_id, index, attempt), claimed) in picks.into_iter().zip(claims) {
            let Some(job) = jobs.get_mut(&job_id) else {
                continue;
            };
            let Some(slot) = job.slots.get_mut(&index) else {
                continue;
            };
            if !matches!(slot.status, TaskStatus::Claiming) {
                continue;
            }
            match claimed {
                Ok(Some(token)) => {
                    slot.status = TaskStatus::Running {
                        worker: worker.to_string(),
                        token,
                        uploads: Vec::new(),
                        since: Instant::now(),
                        started: false,
                    };
                    out.tasks.push(task_to(&job_id, &slot.task, attempt, token));
                    out.jobs.insert(job_id.clone(), job.spec.clone());
                }
                // An earlier owner is still there (its lease has not ended yet), or etcd
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
        if !out.tasks.is_empty() && zoopipe_common::fault::fail_once("assign-answer") {
            // The claims stand, the worker never hears of them (a reply lost on the way).
            return Err(Status::unavailable(
                "fault injected: the assignment is lost",
            ));
        }
        match failure {
            Some(e) if out.tasks.is_empty() => Err(unavailable(e)),
            _ => Ok(out),
        }
    }

    pub(crate) async fn complete(
        self: &Arc<Self>,
        job_id: &str,
        token: u64,
        result: TaskResult,
    ) -> Result<bool, Status> {
        let ended = self
            .jobs
            .lock()
            .await
            .get(job_id)
            .is_none_or(JobEntry::ended);
        if ended {
            // Cancelled or failed meanwhile (or unknown): nothing of it may be published.
            discard(&self.storage, &result).await;
            return Ok(false);
        }
        let accepted = self
            .state
            .complete(job_id, result.index, token, &result)
            .await
            .map_err(unavailable)?;
        if !accepted {
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
        // sends it again to the next one, which must acknowledge it (see `state::complete`).
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
        if let Some(slot) = job.slots.get_mut(&result.index) {
            if !matches!(slot.status, TaskStatus::Done(_)) {
                job.done += 1;
            }
            slot.status = TaskStatus::Done(Box::new(result));
        }
        let all_done = job.done == job.slots.len();
        if all_done && job.report.state == JobState::Running {
            job.report.state = JobState::Committing;
            tokio::spawn(self.clone().finish_job(job_id.to_string()));
        }
        Ok(true)
    }

    /// Every task of the job has a result (its state was set to `Committing` under the lock):
    /// re-read misaligned files, or commit. The commit itself runs without the job table's
    /// lock, so heartbeats, other jobs and status calls go on while parts are published.
    pub(crate) async fn finish_job(self: Arc<Self>, job_id: String) {
        let (config, outcomes, report, started) = {
            let mut jobs = self.jobs.lock().await;
            let Some(job) = jobs.get_mut(&job_id) else {
                return;
            };
            if job.report.state != JobState::Committing {
                return;
            }
            let ranges: Vec<_> = job
                .slots
                .values()
                .filter_map(|s| match &s.status {
                    TaskStatus::Done(r) => Some(r.ranges.clone()),
                    _ => None,
                })
                .flatten()
                .collect();
            let bad = misaligned_files(&ranges);
            if !bad.is_empty() {
                job.report.state = JobState::Running;
                self.reread(job, &bad).await;
                return;
            }
            let outcomes: BTreeMap<u32, TaskResult> = job
                .slots
                .iter()
                .filter_map(|(i, s)| match &s.status {
                    TaskStatus::Done(r) => Some((*i, r.as_ref().clone())),
                    _ => None,
                })
                .collect();
            if let Some(message) = error_rate_exceeded(&job.config, &outcomes) {
                for result in outcomes.values() {
                    job.report.add(result);
                }
                self.end_job(job, JobState::Failed, message).await;
                return;
            }
            (
                job.config.clone(),
                outcomes,
                job.report.clone(),
                job.started,
            )
        };
        if let Err(e) = self
            .state
            .set_job_state(&job_id, JobState::Committing)
            .await
        {
            // Not leading any more (the new leader commits) or etcd is away (the next leader,
            // or this one after a restart, commits from the stored results).
            tracing::warn!(job = job_id, error = %e, "cannot start the commit");
            return;
        }
        let ctx = self.ctx();
        let span = tracing::info_span!("commit", job = job_id.as_str());
        if let Some(parent) = &config.spec.trace_parent {
            zoopipe_common::logging::set_parent(&span, parent);
        }
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
        if let Err(StateError::NotLeader) = self.state.confirm_leading().await {
            tracing::warn!(
                job = report.job_id,
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
        }
        if let Err(e) = self.state.finish_job(&report).await {
            tracing::error!(job = report.job_id, error = %e, "could not record the job's end in etcd");
            if matches!(e, StateError::NotLeader) {
                return;
            }
        }
        tracing::info!(job = report.job_id, state = ?report.state, "job ended");
        if let Some(job) = self.jobs.lock().await.get_mut(&job_id) {
            job.report = report;
        }
    }

    /// Quoted newlines crossed a range boundary: those files' ranges are thrown away and each
    /// file runs again whole, under the index of its first range.
    pub(crate) async fn reread(
        &self,
        job: &mut JobEntry,
        bad: &std::collections::BTreeSet<String>,
    ) {
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
            let mut template = None;
            for index in &owners {
                if let Some(slot) = job.slots.remove(index) {
                    if let TaskStatus::Done(r) = &slot.status {
                        discard(&self.storage, r).await;
                    }
                    template.get_or_insert(slot.task.splits[0].clone());
                }
            }
            if let Some(mut split) = template {
                split.kind = zoopipe_common::plan::SplitKind::Whole;
                let task = Task {
                    index: first,
                    splits: vec![split],
                };
                job.slots.insert(
                    first,
                    Slot {
                        task,
                        attempts: 0,
                        status: TaskStatus::Pending,
                    },
                );
            }
        }
        job.report.partitions.total = job.slots.len() as u64;
        job.scan_from = 0;
        job.done = job
            .slots
            .values()
            .filter(|s| matches!(s.status, TaskStatus::Done(_)))
            .count();
        self.work.notify_waiters();
    }

    pub(crate) async fn fail(
        &self,
        job_id: &str,
        index: u32,
        token: u64,
        retryable: bool,
        message: String,
    ) {
        let released = self
            .state
            .release(job_id, index, token)
            .await
            .unwrap_or(false);
        let mut jobs = self.jobs.lock().await;
        let Some(job) = jobs.get_mut(job_id) else {
            return;
        };
        let max = job.config.spec.max_attempts;
        let Some(slot) = job.slots.get_mut(&index) else {
            return;
        };
        if !released || !matches!(slot.status, TaskStatus::Running { token: t, .. } if t == token) {
            return; // a stale attempt: the task is already elsewhere
        }
        if retryable && slot.attempts < max {
            METRICS.retries.inc();
            tracing::warn!(
                job = job_id,
                task = index,
                attempt = slot.attempts,
                message,
                "task failed, retrying"
            );
            slot.status = TaskStatus::Pending;
            job.scan_from = 0;
            self.work.notify_waiters();
            return;
        }
        self.end_job(
            job,
            JobState::Failed,
            format!("task {index} failed: {message}"),
        )
        .await;
    }

    pub(crate) async fn end_job(&self, job: &mut JobEntry, state: JobState, message: String) {
        if job.ended() {
            return;
        }
        // A named job keeps its committed tasks' parts (staged, invisible) so that submitting
        // it again resumes with only the rest; an unnamed one cannot be resumed.
        if job.config.spec.name.is_none() {
            for slot in job.slots.values() {
                if let TaskStatus::Done(r) = &slot.status {
                    discard(&self.storage, r).await;
                }
            }
        }
        // Say what did not commit: nothing was published; count what had finished.
        let finished = job
            .slots
            .values()
            .filter(|s| matches!(s.status, TaskStatus::Done(_)))
            .count();
        let total = job.slots.len();
        let kept = if job.config.spec.name.is_some() {
            "kept unpublished for a resubmission to resume"
        } else {
            "discarded"
        };
        job.report.state = state;
        job.report.partitions.total = total as u64;
        job.report.partitions.succeeded = finished as u64;
        job.report.partitions.failed = (total - finished) as u64;
        job.report.message = Some(format!(
            "{message}; nothing was committed ({finished} of {total} tasks had finished, their parts {kept})"
        ));
        job.report.duration_s = job.started.elapsed().as_secs_f64();
        job.report.finished_at = Utc::now().to_rfc3339();
        let _ = write_report(&self.storage, &job.config, &job.report).await;
        if let Err(e) = self.state.finish_job(&job.report).await {
            tracing::error!(job = job.report.job_id, error = %e, "could not record the job's end in etcd");
        }
    }
}
