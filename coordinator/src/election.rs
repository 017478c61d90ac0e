//! This replica in the leader election: campaign, lead (reloading the job table from etcd),
//! follow (forwarding calls to the leader), resign at shutdown.

use crate::fleet::{Fleet, Role};
use crate::leader::{self, Campaign};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tonic::Status;

/// How long a call waits for an election under way before it is refused.
const ELECTION_WAIT: Duration = Duration::from_secs(10);

impl Fleet {
    pub fn role(&self) -> Role {
        self.role
            .read()
            .map(|r| r.clone())
            .unwrap_or(Role::Candidate)
    }

    /// Change role, unless this replica resigned (it never campaigns or leads again).
    pub(crate) fn set_role(&self, role: Role) {
        if let Ok(mut r) = self.role.write()
            && *r != Role::Resigned
        {
            *r = role;
        }
    }

    fn resigned(&self) -> bool {
        self.role() == Role::Resigned
    }

    /// Take part in the election until the process resigns: campaign, and once elected
    /// reload every job from etcd and lead until the lease is lost; then start over.
    pub async fn campaign(self: Arc<Self>) {
        let mut last_error = String::new();
        while !self.resigned() {
            let round = leader::try_lead(&self.state, &self.me, self.lease_ttl_s).await;
            match round {
                Ok(Campaign::Won { lease, .. }) if self.resigned() => {
                    // Shutting down while the round ran: hand the key over at once.
                    leader::resign(&self.state, lease).await;
                }
                Ok(Campaign::Won { lease, epoch }) => {
                    last_error.clear();
                    self.state.set_epoch(epoch);
                    self.leader_lease.store(lease, Ordering::SeqCst);
                    tracing::info!(epoch, id = self.me.id, "elected leader; reloading state");
                    self.workers.lock().await.clear();
                    match self.clone().recover().await {
                        Ok(jobs) => {
                            tracing::info!(jobs, epoch, "leading");
                            self.set_role(Role::Leader);
                            self.lifecycle.notify_work();
                            leader::hold(&self.state, lease, self.lease_ttl_s).await;
                        }
                        Err(e) => tracing::warn!(error = %e, "could not reload state"),
                    }
                    self.set_role(Role::Candidate);
                    self.state.set_epoch(0);
                    self.leader_lease.store(0, Ordering::SeqCst);
                    self.lifecycle.clear().await;
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
            Role::Resigned => "resigned (shutting down)".to_string(),
        };
        if reachable {
            (true, role)
        } else {
            (false, format!("etcd unreachable; {role}"))
        }
    }

    /// Shutdown: hand leadership over at once instead of after a lease TTL, and never
    /// campaign again.
    pub async fn resign(&self) {
        if let Ok(mut r) = self.role.write() {
            *r = Role::Resigned;
        }
        let lease = self.leader_lease.swap(0, Ordering::SeqCst);
        if lease != 0 {
            self.state.set_epoch(0);
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
                Role::Candidate | Role::Resigned => {
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
}
