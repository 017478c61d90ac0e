//! The gRPC services over the fleet: `JobService` for clients, `WorkerService` for workers.
//! A replica that does not lead forwards every call to the leader (`forward_to_leader!`).

use crate::fleet::{Fleet, LONG_POLL, TaskStatus, unavailable};
use crate::forward_to_leader;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;
use zoopipe_common::report::{JobState, TaskResult};
use zoopipe_proto::convert::state_to;
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
        forward_to_leader!(self.0, JobServiceClient, submit_job, request);
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
        let submitted = self.0.submit(spec, request.force).instrument(span).await?;
        Ok(Response::new(submitted))
    }

    async fn get_job(
        &self,
        request: Request<v1::GetJobRequest>,
    ) -> Result<Response<v1::GetJobResponse>, Status> {
        forward_to_leader!(self.0, JobServiceClient, get_job, request);
        let id = request.into_inner().job_id;
        let jobs = self.0.jobs.lock().await;
        let job = jobs
            .get(&id)
            .ok_or_else(|| Status::not_found(format!("no job {id}")))?;
        let mut report = job.report.clone();
        if !job.ended() {
            for slot in job.slots.values() {
                if let TaskStatus::Done(r) = &slot.status {
                    report.add(r);
                }
            }
        }
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
        if !self.0.jobs.lock().await.contains_key(&id) {
            return Err(Status::not_found(format!("no job {id}")));
        }
        let (tx, rx) = mpsc::channel(4);
        let fleet = self.0.clone();
        tokio::spawn(async move {
            loop {
                let (progress, ended) = {
                    let jobs = fleet.jobs.lock().await;
                    match jobs.get(&id) {
                        Some(job) => (job.progress(), job.ended()),
                        None => return,
                    }
                };
                if tx.send(Ok(progress)).await.is_err() || ended {
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
        forward_to_leader!(self.0, JobServiceClient, list_jobs, request);
        let jobs = self.0.jobs.lock().await;
        Ok(Response::new(v1::ListJobsResponse {
            jobs: jobs.values().map(|j| (&j.report).into()).collect(),
        }))
    }

    async fn cancel_job(
        &self,
        request: Request<v1::CancelJobRequest>,
    ) -> Result<Response<v1::CancelJobResponse>, Status> {
        forward_to_leader!(self.0, JobServiceClient, cancel_job, request);
        let id = request.into_inner().job_id;
        let mut jobs = self.0.jobs.lock().await;
        let job = jobs
            .get_mut(&id)
            .ok_or_else(|| Status::not_found(format!("no job {id}")))?;
        if job.report.state == JobState::Committing {
            return Err(Status::failed_precondition(format!(
                "job {id} is committing its output and can no longer be cancelled"
            )));
        }
        self.0
            .end_job(job, JobState::Cancelled, "cancelled by a user".into())
            .await;
        Ok(Response::new(v1::CancelJobResponse {
            state: state_to(job.report.state),
        }))
    }
}

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
            .map_err(unavailable)?;
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
            .map_err(unavailable)?;
        self.0
            .workers
            .lock()
            .await
            .insert(r.worker_id.clone(), lease);
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
            let waiting = self.0.work.notified();
            let out = self.0.take_tasks(&r.worker_id, lease, r.free_slots).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if !out.tasks.is_empty() || left.is_zero() {
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
        let lease = self.lease(&r.worker_id).await?;
        let alive = self.0.state.keep_alive(lease).await.map_err(unavailable)?;
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
        let mut jobs = self.0.jobs.lock().await;
        let mut stop = Vec::new();
        for task in r.running {
            let current = jobs.get_mut(&task.job_id).and_then(|j| {
                let ended = j.ended();
                j.slots
                    .get_mut(&task.index)
                    .filter(|_| !ended)
                    .map(|s| &mut s.status)
            });
            match current {
                Some(TaskStatus::Running {
                    token,
                    uploads,
                    started,
                    ..
                }) if *token == task.fencing_token => {
                    *started = true;
                    *uploads = task
                        .uploads
                        .iter()
                        .map(|u| (u.url.clone(), u.upload_id.clone()))
                        .collect();
                }
                // Cancelled or failed job, or an attempt that lost its task: stop it.
                _ => stop.push(task),
            }
        }
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
        let accepted = self.0.complete(&r.job_id, r.fencing_token, result).await?;
        Ok(Response::new(v1::CompleteTaskResponse { accepted }))
    }

    async fn fail_task(
        &self,
        request: Request<v1::FailTaskRequest>,
    ) -> Result<Response<v1::FailTaskResponse>, Status> {
        forward_to_leader!(self.0, WorkerServiceClient, fail_task, request);
        let r = request.into_inner();
        self.0
            .fail(&r.job_id, r.index, r.fencing_token, r.retryable, r.message)
            .await;
        Ok(Response::new(v1::FailTaskResponse {}))
    }
}
