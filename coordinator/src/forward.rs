//! Followers forward every call to the leader, so clients and workers may talk to any replica
//! (a Kubernetes Service spreads them over all of them).

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

/// A lazily connected channel to the leader's advertised address.
pub fn channel(address: &str, tls: Option<&ClientTlsConfig>) -> Result<Channel, Status> {
    let bad =
        |e: &dyn std::fmt::Display| Status::internal(format!("leader address {address}: {e}"));
    let mut endpoint = Endpoint::from_shared(address.to_string())
        .map_err(|e| bad(&e))?
        .connect_timeout(std::time::Duration::from_secs(3));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.clone()).map_err(|e| bad(&e))?;
    }
    Ok(endpoint.connect_lazy())
}

/// Marks a forwarded call: a replica that is not the leader either never forwards it again
/// (two replicas with stale views must not bounce a call between them).
const FORWARDED: &str = "zoopipe-forwarded";

/// The same call for the leader: message and metadata (auth, trace context) travel on.
pub fn request<T>(incoming: Request<T>) -> Result<Request<T>, Status> {
    if incoming.metadata().contains_key(FORWARDED) {
        return Err(Status::unavailable(
            "the coordinator this call was forwarded to no longer leads; retry shortly",
        ));
    }
    let (mut metadata, _, message) = incoming.into_parts();
    metadata.insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    Ok(Request::from_parts(metadata, Default::default(), message))
}

/// How long a follower keeps a call while the leader it forwards to cannot be reached: a
/// leader that died is replaced within its lease's TTL and an election.
pub const LEADER_GONE_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The call rebuilt from its parts, to send (again) to the leader.
pub fn rebuilt<T: Clone>(metadata: &tonic::metadata::MetadataMap, message: &T) -> Request<T> {
    Request::from_parts(metadata.clone(), Default::default(), message.clone())
}

/// The leader could not be reached (it died): the call never ran there, so it may go to
/// whoever leads next. Only a transport failure (a status made here from a connection error,
/// which carries its source), never an `Unavailable` the leader answered itself (its etcd
/// away): that call may have done something, and retrying would repeat it.
pub fn leader_unreachable(status: &Status) -> bool {
    status.code() == tonic::Code::Unavailable && std::error::Error::source(status).is_some()
}

/// In a service method: when this replica does not lead, send the call to the leader and
/// return its answer (`forward_to_leader!(fleet, ClientType, method, request[, wait])`).
/// While the leader cannot be reached the call waits for the next one (another replica, or
/// this one, which then answers it), up to `wait` (`LEADER_GONE_WAIT` for zoopipectl's calls),
/// instead of failing a client during a failover.
#[macro_export]
macro_rules! forward_to_leader {
    ($fleet:expr, $client:ident, $method:ident, $request:ident) => {
        // Workers fail over across replicas and retry on their own: answered at once.
        $crate::forward_to_leader!(
            $fleet,
            $client,
            $method,
            $request,
            std::time::Duration::ZERO
        );
    };
    ($fleet:expr, $client:ident, $method:ident, $request:ident, $wait:expr) => {
        // A method that reads nothing of its request (`list_jobs`) leaves it unused.
        #[allow(unused_variables)]
        let $request = match $fleet.leader_channel().await? {
            None => $request,
            Some(leader) => {
                let deadline = std::time::Instant::now() + $wait;
                let (metadata, extensions, message) = $request.into_parts();
                let mut leader = Some(leader);
                loop {
                    let Some(channel) = leader.take() else {
                        // This replica leads now: the call is answered here.
                        break tonic::Request::from_parts(metadata, extensions, message);
                    };
                    let outgoing =
                        $crate::forward::request($crate::forward::rebuilt(&metadata, &message))?;
                    match $client::new(channel).$method(outgoing).await {
                        Err(status)
                            if $crate::forward::leader_unreachable(&status)
                                && std::time::Instant::now() < deadline =>
                        {
                            // Who leads now, riding out an election until the deadline.
                            leader = loop {
                                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                                match $fleet.leader_channel().await {
                                    Ok(next) => break next,
                                    Err(_) if std::time::Instant::now() < deadline => {}
                                    Err(status) => return Err(status),
                                }
                            };
                        }
                        answer => return answer,
                    }
                }
            }
        };
    };
}
