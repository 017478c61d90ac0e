//! The fleet's control plane: the engine's job lifecycle over etcd (`state`), the leader
//! election among replicas (`leader`, `election`), recovery after failovers and outages
//! (`recovery`), and the gRPC services clients and workers call (`api`, `flight`).
//! It does not run tasks: workers do, with `zoopipe_engine::task`.

pub mod api;
pub mod auth;
mod election;
pub mod fleet;
pub mod flight;
pub(crate) mod forward;
pub mod leader;
pub mod ops;
mod recovery;
pub mod state;
mod status;
pub mod tls;
