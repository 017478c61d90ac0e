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

/// In a service method: when this replica does not lead, send the call to the leader and
/// return its answer (`forward_to_leader!(fleet, ClientType, method, request)`).
#[macro_export]
macro_rules! forward_to_leader {
    ($fleet:expr, $client:ident, $method:ident, $request:ident) => {
        if let Some(leader) = $fleet.leader_channel().await? {
            return $client::new(leader)
                .$method($crate::forward::request($request)?)
                .await;
        }
    };
}
