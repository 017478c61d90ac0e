//! The fleet worker loop: register, heartbeat, pull tasks for free slots, run them with the
//! engine's `task::attempt`, and report each result with its fencing token. Stateless: a worker that loses
//! its lease or its coordinator registers again; a refused result's parts are the
//! coordinator's to discard.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore};
use zoopipe_common::plan::Task;
use zoopipe_common::spec::{JobConfig, JobSpec};
use zoopipe_engine::lifecycle::{Assignment, FailureKind};
use zoopipe_engine::ops::METRICS;
use zoopipe_engine::task::{AttemptOutcome, LineOffset, Progress, TaskContext, attempt};
use zoopipe_proto::client::Failover;
use zoopipe_proto::v1;
use zoopipe_proto::v1::worker_service_client::WorkerServiceClient;

type Client = WorkerServiceClient<Failover>;

/// How often a persisting connection problem is logged again.
const QUIET: Duration = Duration::from_secs(30);

/// Seconds to keep reporting a result while the coordinator or etcd is unreachable.
const REPORT_RETRIES: usize = 60;

fn transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Internal
    )
}

/// Uploads a task has opened, as (url, upload id).
type Opened = Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// An attempt running here.
struct Attempt {
    token: u64,
    /// The attempt's own cancel flag.
    cancel: Arc<AtomicBool>,
    /// The multipart uploads it opened.
    opened: Opened,
    /// Its live counters, sent with every heartbeat so a job's progress moves during tasks.
    progress: Arc<Progress>,
}

/// Tasks running here, by (job, index).
type Running = Arc<Mutex<HashMap<(String, u32), Attempt>>>;

pub struct WorkerOptions {
    /// Set while registered with a coordinator (readiness).
    pub registered: Arc<AtomicBool>,
    pub worker_id: String,
    pub slots: usize,
    /// On drain, how long running tasks may take to finish before they are handed back.
    pub grace: Duration,
}

/// Set once (SIGTERM): stop acquiring, finish or hand back the running tasks, return.
#[derive(Default)]
pub struct Drain {
    requested: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Drain {
    pub fn request(&self) {
        self.requested.store(true, Ordering::Relaxed);
        self.notify.notify_waiters();
    }

    fn requested(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }
}

/// Run until a drain is requested, then finish (within the grace period) or hand back the
/// running tasks, and return.
pub async fn run(client: Client, ctx: TaskContext, options: WorkerOptions, drain: Arc<Drain>) {
    let ctx = TaskContext {
        line_offsets: Some(line_offsets(client.clone())),
        ..ctx
    };
    let slots = Arc::new(Semaphore::new(options.slots));
    let running: Running = Arc::default();
    let mut beats = None;
    let mut unreachable_since: Option<std::time::Instant> = None;
    while !drain.requested() {
        let registered = client
            .clone()
            .register_worker(v1::RegisterWorkerRequest {
                worker_id: options.worker_id.clone(),
                slots: options.slots as u32,
            })
            .await;
        let heartbeat_every = match registered {
            Ok(r) => Duration::from_millis(r.into_inner().heartbeat_interval_ms.max(100)),
            Err(e) => {
                // One line when the coordinator goes away, then a reminder every 30 s, not a
                // line per retry.
                let now = std::time::Instant::now();
                if unreachable_since.is_none_or(|t| now.duration_since(t) >= QUIET) {
                    tracing::warn!(error = %e.message(), "cannot register with the coordinator; retrying every second");
                    unreachable_since = Some(now);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tracing::info!(worker = options.worker_id, "registered");
        unreachable_since = None;
        options.registered.store(true, Ordering::Relaxed);
        let lost = Arc::new(AtomicBool::new(false));
        if let Some(old) = beats.take() {
            tokio::task::JoinHandle::abort(&old);
        }
        // Heartbeats go on during a drain: the running tasks keep their leases.
        beats = Some(tokio::spawn(heartbeats(
            ctx.upload_opened.clone(),
            client.clone(),
            options.worker_id.clone(),
            running.clone(),
            lost.clone(),
            heartbeat_every,
        )));
        acquire_loop(&client, &ctx, &options, &slots, &running, &lost, &drain).await;
        options.registered.store(false, Ordering::Relaxed);
    }
    let all = options.slots as u32;
    if tokio::time::timeout(options.grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        // Out of grace: stop the tasks; they report themselves handed back and are requeued.
        tracing::info!("grace period over: handing back the running tasks");
        for attempt in running.lock().await.values() {
            attempt.cancel.store(true, Ordering::Relaxed);
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), slots.acquire_many(all)).await;
    }
    // Handed-back attempts abort their uploads in the background: finish that before exit.
    zoopipe_common::storage::wait_for_aborts(Duration::from_secs(10)).await;
    if let Some(beats) = beats {
        beats.abort();
    }
}

async fn heartbeats(
    upload_opened: Arc<tokio::sync::Notify>,
    mut client: Client,
    worker_id: String,
    running: Running,
    lost: Arc<AtomicBool>,
    every: Duration,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = upload_opened.notified() => {}
        }
        let tasks = running
            .lock()
            .await
            .iter()
            .map(|((job_id, index), attempt)| v1::RunningTask {
                job_id: job_id.clone(),
                index: *index,
                fencing_token: attempt.token,
                rows_read: Progress::get(&attempt.progress.rows_read),
                rows_invalid: Progress::get(&attempt.progress.rows_invalid),
                bytes_read: Progress::get(&attempt.progress.bytes_read),
                uploads: attempt
                    .opened
                    .lock()
                    .map(|o| {
                        o.iter()
                            .map(|(url, upload_id)| v1::OpenUpload {
                                url: url.clone(),
                                upload_id: upload_id.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        // A hung call must not stall the beats after it: each gets one period to answer.
        let beat = client.heartbeat(v1::HeartbeatRequest {
            worker_id: worker_id.clone(),
            running: tasks,
        });
        let answer = tokio::time::timeout(every.max(Duration::from_secs(1)), beat)
            .await
            .unwrap_or_else(|_| {
                Err(tonic::Status::deadline_exceeded(
                    "the coordinator did not answer the heartbeat in time",
                ))
            });
        match answer {
            Ok(response) => {
                // Cancelled jobs and attempts that lost their lease stop at their next batch.
                let running = running.lock().await;
                for stop in response.into_inner().stop {
                    if let Some(attempt) = running.get(&(stop.job_id.clone(), stop.index)) {
                        tracing::info!(job = stop.job_id, task = stop.index, "stopping task");
                        attempt.cancel.store(true, Ordering::Relaxed);
                    }
                }
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                tracing::warn!(message = status.message(), "lease lost; registering again");
                lost.store(true, Ordering::Relaxed);
                return;
            }
            Err(status) => tracing::warn!(message = status.message(), "heartbeat failed"),
        }
    }
}

async fn acquire_loop(
    client: &Client,
    ctx: &TaskContext,
    options: &WorkerOptions,
    slots: &Arc<Semaphore>,
    running: &Running,
    lost: &Arc<AtomicBool>,
    drain: &Arc<Drain>,
) {
    let mut configs: HashMap<String, Arc<JobConfig>> = HashMap::new();
    while !lost.load(Ordering::Relaxed) && !drain.requested() {
        // Wait for at least one free slot before asking for work.
        let Ok(first) = slots.clone().acquire_owned().await else {
            return;
        };
        let free = slots.available_permits() as u32 + 1;
        drop(first);
        let mut client_ = client.clone();
        let request = client_.acquire_task(v1::AcquireTaskRequest {
            worker_id: options.worker_id.clone(),
            free_slots: free,
        });
        // A drain interrupts the long poll (tasks claimed meanwhile requeue when our lease ends).
        let response = tokio::select! {
            r = request => r,
            _ = drain.notify.notified() => return,
        };
        let response = match response {
            Ok(r) => r.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => return, // register again
            Err(status) => {
                tracing::warn!(message = status.message(), "acquire failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for task in response.tasks {
            let config = match configs.get(&task.job_id) {
                Some(c) => c.clone(),
                None => match job_config(&task.job_id, response.jobs.get(&task.job_id)) {
                    Ok(c) => {
                        let c = Arc::new(c);
                        configs.insert(task.job_id.clone(), c.clone());
                        c
                    }
                    Err(message) => {
                        report_failure(client.clone(), &task, FailureKind::Fatal, message).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let cancel = Arc::new(AtomicBool::new(false));
            let opened = Opened::default();
            let progress = Arc::new(Progress::default());
            running.lock().await.insert(
                (task.job_id.clone(), task.index),
                Attempt {
                    token: task.fencing_token,
                    cancel: cancel.clone(),
                    opened: opened.clone(),
                    progress: progress.clone(),
                },
            );
            let ctx = TaskContext {
                cancel,
                opened,
                progress,
                ..ctx.clone()
            };
            let (client, running, drain) = (client.clone(), running.clone(), drain.clone());
            let worker_id = options.worker_id.clone();
            tokio::spawn(async move {
                run_task(client, ctx, config, task.clone(), &drain, &worker_id).await;
                running
                    .lock()
                    .await
                    .remove(&(task.job_id.clone(), task.index));
                drop(permit);
            });
        }
    }
}

/// Line offsets asked of the coordinator. An unanswered question is an unknown offset (the
/// task's error rows are then renumbered at commit), never a failed task.
fn line_offsets(client: Client) -> zoopipe_engine::task::LineOffsets {
    Arc::new(move |job_id, index| {
        let mut client = client.clone();
        Box::pin(async move {
            let mut request = tonic::Request::new(v1::LineOffsetRequest { job_id, index });
            request.set_timeout(Duration::from_secs(2));
            match client.line_offset(request).await {
                Ok(answer) => answer.into_inner().lines.into(),
                Err(status) if status.code() == tonic::Code::Unimplemented => LineOffset::Never,
                Err(status) => {
                    tracing::debug!(message = status.message(), "line offset not answered");
                    LineOffset::NotYet
                }
            }
        })
    })
}

fn job_config(job_id: &str, spec: Option<&v1::JobSpec>) -> Result<JobConfig, String> {
    let spec = spec.cloned().ok_or("the coordinator sent no job spec")?;
    let spec = JobSpec::try_from(spec).map_err(|e| e.to_string())?;
    JobConfig::new(job_id.to_string(), spec).map_err(|e| e.to_string())
}

async fn run_task(
    mut client: Client,
    ctx: TaskContext,
    config: Arc<JobConfig>,
    proto: v1::Task,
    drain: &Drain,
    worker_id: &str,
) {
    let task = match Task::try_from(proto.clone()) {
        Ok(t) => t,
        Err(e) => return report_failure(client, &proto, FailureKind::Fatal, e.to_string()).await,
    };
    tracing::info!(
        job = proto.job_id,
        task = task.index,
        attempt = proto.attempt,
        "running"
    );
    let started = std::time::Instant::now();
    let assignment = Assignment {
        job_id: proto.job_id.clone(),
        task,
        attempt: proto.attempt,
        token: proto.fencing_token,
        config,
    };
    let outcome = attempt(ctx, &assignment, || drain.requested()).await;
    METRICS
        .task_seconds
        .observe(started.elapsed().as_secs_f64());
    match outcome {
        AttemptOutcome::Completed(mut result) => {
            result.worker = worker_id.to_string();
            METRICS.rows_read.inc_by(result.rows_read);
            METRICS.rows_invalid.inc_by(result.rows_invalid);
            METRICS.bytes_read.inc_by(result.bytes_read);
            METRICS.bytes_written.inc_by(result.bytes_written);
            let request = v1::CompleteTaskRequest {
                worker_id: worker_id.to_string(),
                job_id: proto.job_id.clone(),
                fencing_token: proto.fencing_token,
                result: Some(result.as_ref().into()),
            };
            // The coordinator or etcd may be briefly away: keep reporting until it answers.
            let mut answer = client.complete_task(request.clone()).await;
            for _ in 0..REPORT_RETRIES {
                match &answer {
                    Err(status) if transient(status) => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        answer = client.complete_task(request.clone()).await;
                    }
                    _ => break,
                }
            }
            match answer {
                Ok(r) if r.get_ref().accepted => METRICS.attempt("committed"),
                Ok(_) => {
                    METRICS.attempt("refused");
                    tracing::warn!(
                        job = proto.job_id,
                        task = proto.index,
                        "result refused: the task ran elsewhere"
                    )
                }
                Err(status) => {
                    tracing::warn!(message = status.message(), "could not report a result")
                }
            }
        }
        AttemptOutcome::Failed {
            kind: FailureKind::HandedBack,
            ..
        } => {
            METRICS.attempt("handed_back");
            let message = "handed back: the worker is shutting down".to_string();
            report_failure(client, &proto, FailureKind::HandedBack, message).await
        }
        AttemptOutcome::Failed { kind, error } => {
            METRICS.attempt("failed");
            if let Some(kind) = storage_error_kind(&error) {
                METRICS.storage_error(kind);
            }
            report_failure(client, &proto, kind, error.to_string()).await
        }
    }
}

/// Storage failures by kind, for the `storage_errors` metric.
fn storage_error_kind(e: &zoopipe_common::Error) -> Option<&'static str> {
    use zoopipe_common::Error;
    match e {
        Error::NotFound { .. } => Some("not_found"),
        Error::AccessDenied { .. } => Some("denied"),
        Error::Transient { .. } => Some("transient"),
        Error::Io { .. } => Some("io"),
        _ => None,
    }
}

async fn report_failure(mut client: Client, task: &v1::Task, kind: FailureKind, message: String) {
    tracing::warn!(
        job = task.job_id,
        task = task.index,
        ?kind,
        message,
        "task failed"
    );
    let request = v1::FailTaskRequest {
        worker_id: String::new(),
        job_id: task.job_id.clone(),
        index: task.index,
        fencing_token: task.fencing_token,
        kind: zoopipe_proto::convert::failure_kind_to(kind),
        message,
    };
    for _ in 0..REPORT_RETRIES {
        match client.fail_task(request.clone()).await {
            Err(status) if transient(&status) => tokio::time::sleep(Duration::from_secs(1)).await,
            Err(status) => {
                tracing::warn!(message = status.message(), "could not report a failure");
                return;
            }
            Ok(_) => return,
        }
    }
}
