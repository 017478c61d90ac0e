//! Leader election between coordinator replicas, through one etcd key.
//!
//! A candidate creates `<prefix>/leader` under its own lease in a create-if-absent
//! transaction; the key's create_revision is the new leader's **epoch**, and every state
//! write (`EtcdState::fenced`) compares it, so a deposed leader cannot write. The leader
//! keeps its lease alive; if it cannot for a whole TTL (etcd unreachable, process frozen) it
//! steps down, as etcd will have handed the key to another replica by then. A leader that
//! shuts down revokes its lease so the standby takes over at once.

use crate::state::{EtcdState, Result};
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Who leads: stored as the leader key's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    pub id: String,
    /// Where the leader's gRPC API answers (followers forward calls there).
    pub address: String,
}

/// What a candidate learns from one try.
pub enum Campaign {
    /// Elected: the lease that holds the key, and the epoch.
    Won { lease: i64, epoch: i64 },
    /// Someone else leads (None while nobody does, e.g. between two leaders).
    Lost(Option<LeaderInfo>),
}

/// One election round: become the leader if nobody is.
pub async fn try_lead(state: &EtcdState, me: &LeaderInfo, ttl_s: i64) -> Result<Campaign> {
    let mut client = state.client();
    let key = state.leader_key();
    let lease = client.lease_grant(ttl_s, None).await?.id();
    let value = serde_json::to_vec(me).unwrap_or_default();
    let txn = Txn::new()
        .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.clone(),
            value,
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key, None)]);
    let response = client.txn(txn).await?;
    if response.succeeded() {
        // The put is the transaction's only write: the header revision is its create_revision.
        let epoch = response.header().map(|h| h.revision()).unwrap_or_default();
        return Ok(Campaign::Won { lease, epoch });
    }
    let _ = client.lease_revoke(lease).await;
    let leader = response.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(get) => get
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice::<LeaderInfo>(kv.value()).ok()),
        _ => None,
    });
    Ok(Campaign::Lost(leader))
}

/// Keep the leader's lease alive; returns when leadership is lost: the lease expired, could
/// not be renewed for a whole TTL, or a write found another leader.
pub async fn hold(state: &EtcdState, lease: i64, ttl_s: i64) {
    let ttl = Duration::from_secs(ttl_s.max(1) as u64);
    let every = ttl / 3;
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = state.deposed() => return,
        }
        if state.epoch() <= 0 {
            return;
        }
        match keep_alive(state, lease).await {
            Ok(true) => renewed = Instant::now(),
            Ok(false) => {
                tracing::warn!("leader lease expired: stepping down");
                return;
            }
            Err(e) => {
                if renewed.elapsed() >= ttl {
                    tracing::warn!(error = %e, "leader lease not renewed for a whole TTL: stepping down");
                    return;
                }
                tracing::warn!(error = %e, "cannot renew the leader lease yet");
            }
        }
    }
}

async fn keep_alive(state: &EtcdState, lease: i64) -> Result<bool> {
    let attempt = async {
        let (mut keeper, mut stream) = state.client().lease_keep_alive(lease).await?;
        keeper.keep_alive().await?;
        stream.message().await
    };
    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
        Ok(Ok(Some(response))) => Ok(response.ttl() > 0),
        Ok(Ok(None)) => Ok(false),
        Ok(Err(etcd_client::Error::LeaseKeepAliveError(message)))
            if message.contains("not found") =>
        {
            Ok(false)
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(crate::state::StateError::Unreachable {
            endpoints: "etcd".into(),
            message: "lease keep-alive timed out".into(),
        }),
    }
}

/// Give leadership up now (shutdown): the standby need not wait for the lease to expire.
pub async fn resign(state: &EtcdState, lease: i64) {
    state.set_epoch(0);
    let _ = tokio::time::timeout(Duration::from_secs(2), state.client().lease_revoke(lease)).await;
}

/// The current leader, as stored (for followers to forward to).
pub async fn current(state: &EtcdState) -> Option<LeaderInfo> {
    let response = state.client().get(state.leader_key(), None).await.ok()?;
    let kv = response.kvs().first()?;
    serde_json::from_slice(kv.value()).ok()
}
