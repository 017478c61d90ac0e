//! The fleet coordinator: the engine's one job lifecycle over the etcd store, plus what only
//! a fleet has: registered workers and their heartbeats (`api`), the leader election
//! (`election`) and recovery after a failover or an etcd outage (`recovery`).

use crate::leader::LeaderInfo;
use crate::state::EtcdState;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use zoopipe_common::storage::Storage;
use zoopipe_engine::lifecycle::Lifecycle;
use zoopipe_proto::v1;

/// How long `AcquireTask` waits for work before returning empty.
pub(crate) const LONG_POLL: Duration = Duration::from_secs(10);

/// This replica's part in the election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not leading, and no leader known (starting up, or between two leaders).
    Candidate,
    /// Elected and its state reloaded: serves every call itself.
    Leader,
    /// Another replica leads: calls are forwarded there.
    Follower(LeaderInfo),
    /// Shutting down: resigned, and campaigns no more.
    Resigned,
}

pub struct Fleet {
    pub(crate) state: EtcdState,
    pub(crate) lifecycle: Arc<Lifecycle>,
    /// Registered workers and their leases.
    pub(crate) workers: Mutex<HashMap<String, i64>>,
    /// Each registered worker's task slots (for `min_tasks`: a task per slot).
    pub(crate) slots: std::sync::Mutex<HashMap<String, u32>>,
    /// When each worker's last heartbeat came.
    pub(crate) heartbeats: std::sync::Mutex<HashMap<String, Instant>>,
    /// Each job's spec as sent to workers with its tasks (converted once).
    pub(crate) wire_specs: std::sync::Mutex<HashMap<String, v1::JobSpec>>,
    pub(crate) lease_ttl_s: i64,
    pub(crate) me: LeaderInfo,
    pub(crate) role: std::sync::RwLock<Role>,
    /// The lease holding the leader key while this replica leads (0 otherwise).
    pub(crate) leader_lease: AtomicI64,
    /// A channel to the current leader, for forwarding (address, channel).
    pub(crate) to_leader: std::sync::Mutex<Option<(String, tonic::transport::Channel)>>,
    /// TLS for forwarding to the leader (when the replicas serve TLS).
    pub(crate) forward_tls: Option<tonic::transport::ClientTlsConfig>,
    /// How long an ended job stays in etcd (`recovery::sweep`).
    pub(crate) retention: std::sync::RwLock<Duration>,
}

impl Fleet {
    pub fn new(
        state: EtcdState,
        lease_ttl_s: i64,
        me: LeaderInfo,
        forward_tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Arc<Self> {
        let lifecycle = Lifecycle::new(Arc::new(state.clone()), Storage::new());
        Arc::new(Self {
            forward_tls,
            state,
            lifecycle,
            workers: Mutex::new(HashMap::new()),
            slots: std::sync::Mutex::new(HashMap::new()),
            heartbeats: std::sync::Mutex::new(HashMap::new()),
            wire_specs: std::sync::Mutex::new(HashMap::new()),
            lease_ttl_s,
            me,
            role: std::sync::RwLock::new(Role::Candidate),
            leader_lease: AtomicI64::new(0),
            to_leader: std::sync::Mutex::new(None),
            retention: std::sync::RwLock::new(Duration::from_secs(7 * 86_400)),
        })
    }

    /// How long ended jobs stay in etcd (default 7 days).
    pub fn set_retention(&self, keep: Duration) {
        if let Ok(mut r) = self.retention.write() {
            *r = keep;
        }
    }

    pub(crate) fn retention(&self) -> Duration {
        self.retention
            .read()
            .map(|r| *r)
            .unwrap_or(Duration::from_secs(7 * 86_400))
    }

    /// Task slots of the workers registered now.
    pub async fn total_slots(&self) -> u32 {
        let workers = self.workers.lock().await;
        let Ok(slots) = self.slots.lock() else {
            return 0;
        };
        workers.keys().filter_map(|w| slots.get(w)).sum()
    }

    /// Jobs by state, tasks of unfinished jobs by state, and registered workers: for metrics.
    pub async fn counts(
        &self,
    ) -> (
        std::collections::BTreeMap<String, i64>,
        std::collections::BTreeMap<String, i64>,
        i64,
    ) {
        let (jobs, tasks) = self.lifecycle.counts().await;
        let workers = self.workers.lock().await.len() as i64;
        (jobs, tasks, workers)
    }

    /// The job's spec as workers receive it with its tasks.
    pub(crate) fn wire_spec(
        &self,
        job_id: &str,
        spec: &zoopipe_common::spec::JobSpec,
    ) -> Result<v1::JobSpec, tonic::Status> {
        let mut cache = self
            .wire_specs
            .lock()
            .map_err(|_| tonic::Status::internal("spec cache lock poisoned"))?;
        if let Some(found) = cache.get(job_id) {
            return Ok(found.clone());
        }
        let converted =
            v1::JobSpec::try_from(spec).map_err(|e| tonic::Status::internal(e.to_string()))?;
        cache.insert(job_id.to_string(), converted.clone());
        Ok(converted)
    }
}
