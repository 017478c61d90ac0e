//! The gRPC services over the fleet: `JobService` for clients, `WorkerService` for workers.
//! A replica that does not lead forwards every call to the leader (`forward_to_leader!`).

use crate::fleet::{Fleet, LONG_POLL};
use crate::forward_to_leader;
use crate::status::IntoStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;
use zoopipe_common::report::TaskResult;
use zoopipe_engine::lifecycle::{
    AttemptProgress, JobProgress, RunningAttempt, SubmitOutcome, Submitted,
};
use zoopipe_proto::convert::{failure_kind_from, state_to, task_to};
use zoopipe_proto::v1;
use zoopipe_proto::v1::job_service_client::JobServiceClient;
use zoopipe_proto::v1::worker_service_client::WorkerServiceClient;

/// The client-facing service.
pub struct JobApi(pub Arc<Fleet>);

#[tonic::async_trait]
impl v1::job_service_server::JobService for JobApi {
    async fn submit_job(
        &self,
        request: Request<v1::SubmitJobRequest>,
    ) -> Result<Response<v1::SubmitJobResponse>, Status> {
        forward_to_leader!(
            self.0,
            JobServiceClient,
            submit_job,
            request,
            crate::forward::LEADER_GONE_WAIT
        );
        // The job's span continues the client's trace; task attempts will be its children.
        let span = tracing::info_span!("submit_job", job = tracing::field::Empty);
        if let Some(parent) = request
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
        {
            zoopipe_common::logging::set_parent(&span, parent);
        }
        let request = request.into_inner();
        let spec = request
            .spec
            .ok_or_else(|| Status::invalid_argument("spec is missing"))?;
        let mut spec =
            zoopipe_common::spec::JobSpec::try_from(spec).map_err(IntoStatus::into_status)?;
        // At least a task per worker slot of the fleet as it is now, when the input is big
        // enough (as `run` does with its --workers).
        if spec.min_tasks.is_none() {
            let slots = self.0.total_slots().await;
            spec.min_tasks = (slots > 1).then_some(slots);
        }
        let submitted = self
            .0
            .lifecycle
            .submit(spec, request.force)
            .instrument(span)
            .await
            .map_err(IntoStatus::into_status)?;
        Ok(Response::new(submitted_to(submitted)))
    }

    async fn get_job(
        &self,
        request: Request<v1::GetJobRequest>,
    ) -> Result<Response<v1::GetJobResponse>, Status> {
        forward_to_leader!(
            self.0,
            JobServiceClient,
            get_job,
            request,
            crate::forward::LEADER_GONE_WAIT
        );
        let id = request.into_inner().job_id;
        let report = self
            .0
            .lifecycle
            .report(&id)
            .await
            .ok_or_else(|| Status::not_found(format!("no job {id}")))?;
        Ok(Response::new(v1::GetJobResponse {
            report: Some((&report).into()),
        }))
    }

    type WatchJobStream =
        std::pin::Pin<Box<dyn Stream<Item = Result<v1::JobProgress, Status>> + Send + 'static>>;

    async fn watch_job(
        &self,
        request: Request<v1::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        if let Some(leader) = self.0.leader_channel().await? {
            let stream = JobServiceClient::new(leader)
                .watch_job(crate::forward::request(request)?)
                .await?
                .into_inner();
            return Ok(Response::new(Box::pin(stream)));
        }
        let id = request.into_inner().job_id;
        if !self.0.lifecycle.contains(&id).await {
            return Err(Status::not_found(format!("no job {id}")));
        }
        let (tx, rx) = mpsc::channel(4);
        let fleet = self.0.clone();
        tokio::spawn(async move {
            loop {
                let Some(progress) = fleet.lifecycle.progress(&id).await else {
                    return;
                };
                let ended = progress.state.ended();
                if tx.send(Ok(progress_to(progress))).await.is_err() || ended {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_jobs(
        &self,
        request: Request<v1::ListJobsRequest>,
    ) -> Result<Response<v1::ListJobsResponse>, Status> {
        forward_to_leader!(
            self.0,
            JobServiceClient,
            list_jobs,
            request,
            crate::forward::LEADER_GONE_WAIT
        );
        let jobs = self.0.lifecycle.list().await;
        Ok(Response::new(v1::ListJobsResponse {
            jobs: jobs.iter().map(Into::into).collect(),
        }))
    }

    async fn cancel_job(
        &self,
        request: Request<v1::CancelJobRequest>,
    ) -> Result<Response<v1::CancelJobResponse>, Status> {
        forward_to_leader!(
            self.0,
            JobServiceClient,
            cancel_job,
            request,
            crate::forward::LEADER_GONE_WAIT
        );
        let id = request.into_inner().job_id;
        let state = self
            .0
            .lifecycle
            .cancel(&id)
            .await
            .map_err(IntoStatus::into_status)?;
        Ok(Response::new(v1::CancelJobResponse {
            state: state_to(state),
        }))
    }
}

/// How long one heartbeat may take (lease renewal and the job table each).
const HEARTBEAT_DEADLINE: Duration = Duration::from_secs(2);

/// The worker-facing service.
pub struct WorkerApi(pub Arc<Fleet>);

impl WorkerApi {
    /// The worker's lease: known here, or granted by an earlier leader and still alive in
    /// etcd (adopted, so its running tasks carry on across a failover).
    async fn lease(&self, worker: &str) -> Result<i64, Status> {
        if let Some(lease) = self.0.workers.lock().await.get(worker).copied() {
            return Ok(lease);
        }
        let adopted = self
            .0
            .state
            .worker_lease(worker)
            .await
            .map_err(IntoStatus::into_status)?;
        let lease = adopted
            .ok_or_else(|| Status::not_found(format!("worker {worker} is not registered")))?;
        tracing::info!(worker, "worker adopted from an earlier leader");
        self.0
            .workers
            .lock()
            .await
            .insert(worker.to_string(), lease);
        Ok(lease)
    }
}

#[tonic::async_trait]
impl v1::worker_service_server::WorkerService for WorkerApi {
    async fn register_worker(
        &self,
        request: Request<v1::RegisterWorkerRequest>,
    ) -> Result<Response<v1::RegisterWorkerResponse>, Status> {
        forward_to_leader!(self.0, WorkerServiceClient, register_worker, request);
        let r = request.into_inner();
        let lease = self
            .0
            .state
            .register_worker(&r.worker_id, self.0.lease_ttl_s)
            .await
            .map_err(IntoStatus::into_status)?;
        self.0
            .workers
            .lock()
            .await
            .insert(r.worker_id.clone(), lease);
        if let Ok(mut slots) = self.0.slots.lock() {
            slots.insert(r.worker_id.clone(), r.slots);
        }
        tracing::info!(worker = r.worker_id, slots = r.slots, "worker registered");
        let ttl_ms = self.0.lease_ttl_s as u64 * 1000;
        Ok(Response::new(v1::RegisterWorkerResponse {
            lease_ttl_ms: ttl_ms,
            heartbeat_interval_ms: ttl_ms / 4,
        }))
    }

    async fn acquire_task(
        &self,
        request: Request<v1::AcquireTaskRequest>,
    ) -> Result<Response<v1::AcquireTaskResponse>, Status> {
        forward_to_leader!(self.0, WorkerServiceClient, acquire_task, request);
        let r = request.into_inner();
        let lease = self.lease(&r.worker_id).await?;
        let deadline = Instant::now() + LONG_POLL;
        loop {
            let waiting = self.0.lifecycle.work_notified();
            let assigned = self
                .0
                .lifecycle
                .take_tasks(&r.worker_id, lease, r.free_slots)
                .await
                .map_err(IntoStatus::into_status)?;
            let left = deadline.saturating_duration_since(Instant::now());
            if !assigned.is_empty() || left.is_zero() {
                let mut out = v1::AcquireTaskResponse::default();
                for a in assigned {
                    let spec = self.0.wire_spec(&a.job_id, &a.config.spec)?;
                    out.tasks
                        .push(task_to(&a.job_id, &a.task, a.attempt, a.token));
                    out.jobs.insert(a.job_id, spec);
                }
                if !out.tasks.is_empty() && zoopipe_common::fault::fail_once("assign-answer") {
                    // The claims stand, the worker never hears of them (a reply lost on the way).
                    return Err(Status::unavailable(
                        "fault injected: the assignment is lost",
                    ));
                }
                return Ok(Response::new(out));
            }
            let _ = tokio::time::timeout(left, waiting).await;
        }
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        forward_to_leader!(self.0, WorkerServiceClient, heartbeat, request);
        let r = request.into_inner();
        let lease = tokio::time::timeout(HEARTBEAT_DEADLINE, self.lease(&r.worker_id))
            .await
            .map_err(|_| Status::unavailable("etcd did not answer in time; heartbeat again"))??;
        let alive = tokio::time::timeout(HEARTBEAT_DEADLINE, self.0.state.keep_alive(lease))
            .await
            .map_err(|_| {
                Status::unavailable("etcd did not renew the lease in time; heartbeat again")
            })?
            .map_err(IntoStatus::into_status)?;
        if !alive {
            self.0.workers.lock().await.remove(&r.worker_id);
            return Err(Status::not_found(format!(
                "worker {} lost its lease; register again",
                r.worker_id
            )));
        }
        if let Ok(mut heartbeats) = self.0.heartbeats.lock() {
            heartbeats.insert(r.worker_id.clone(), std::time::Instant::now());
        }
        let running = r
            .running
            .iter()
            .map(|t| RunningAttempt {
                job_id: t.job_id.clone(),
                index: t.index,
                token: t.fencing_token,
                uploads: t
                    .uploads
                    .iter()
                    .map(|u| (u.url.clone(), u.upload_id.clone()))
                    .collect(),
                so_far: AttemptProgress {
                    rows_read: t.rows_read,
                    rows_invalid: t.rows_invalid,
                    bytes_read: t.bytes_read,
                },
            })
            .collect();
        // A heartbeat answers within its deadline or not at all: a worker whose answer is late
        // beats again, rather than every worker's lease waiting on one slow call.
        let stop_at = tokio::time::timeout(HEARTBEAT_DEADLINE, self.0.lifecycle.heartbeat(running))
            .await
            .map_err(|_| Status::unavailable("the coordinator is busy; heartbeat again"))?;
        // Cancelled or failed job, or an attempt that lost its task: stop it.
        let stop = stop_at
            .into_iter()
            .filter_map(|i| r.running.get(i).cloned())
            .collect();
        Ok(Response::new(v1::HeartbeatResponse { stop }))
    }

    async fn complete_task(
        &self,
        request: Request<v1::CompleteTaskRequest>,
    ) -> Result<Response<v1::CompleteTaskResponse>, Status> {
        forward_to_leader!(self.0, WorkerServiceClient, complete_task, request);
        let r = request.into_inner();
        let result = TaskResult::try_from(
            r.result
                .ok_or_else(|| Status::invalid_argument("result is missing"))?,
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let accepted = self
            .0
            .lifecycle
            .complete(&r.job_id, r.fencing_token, result)
            .await
            .map_err(IntoStatus::into_status)?;
        Ok(Response::new(v1::CompleteTaskResponse { accepted }))
    }

    async fn fail_task(
        &self,
        request: Request<v1::FailTaskRequest>,
    ) -> Result<Response<v1::FailTaskResponse>, Status> {
        forward_to_leader!(self.0, WorkerServiceClient, fail_task, request);
        let r = request.into_inner();
        self.0
            .lifecycle
            .fail(
                &r.job_id,
                r.index,
                r.fencing_token,
                failure_kind_from(r.kind),
                r.message,
            )
            .await
            .map_err(IntoStatus::into_status)?;
        Ok(Response::new(v1::FailTaskResponse {}))
    }

    async fn line_offset(
        &self,
        request: Request<v1::LineOffsetRequest>,
    ) -> Result<Response<v1::LineOffsetResponse>, Status> {
        forward_to_leader!(self.0, WorkerServiceClient, line_offset, request);
        let r = request.into_inner();
        let lines = self.0.lifecycle.line_offset(&r.job_id, r.index).await;
        Ok(Response::new(v1::LineOffsetResponse { lines }))
    }
}

fn submitted_to(s: Submitted) -> v1::SubmitJobResponse {
    let outcome = match s.outcome {
        SubmitOutcome::Created => v1::SubmitOutcome::Created,
        SubmitOutcome::AlreadySucceeded => v1::SubmitOutcome::AlreadySucceeded,
        SubmitOutcome::AlreadyRunning => v1::SubmitOutcome::AlreadyRunning,
        SubmitOutcome::Resumed => v1::SubmitOutcome::Resumed,
    };
    v1::SubmitJobResponse {
        job_id: s.job_id,
        tasks: s.tasks,
        outcome: outcome as i32,
        tasks_to_run: s.tasks_to_run,
        planning: s.planning,
    }
}

fn progress_to(p: JobProgress) -> v1::JobProgress {
    v1::JobProgress {
        job_id: p.job_id,
        state: state_to(p.state),
        tasks_total: p.tasks_total,
        tasks_done: p.tasks_done,
        rows_read: p.rows_read,
        rows_invalid: p.rows_invalid,
        bytes_read: p.bytes_read,
        report: p.report.as_ref().map(Into::into),
        bytes_total: p.bytes_total,
    }
}
