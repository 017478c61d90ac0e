//! The ZooPipe Fleet wire protocol: generated `zoopipe.v1` messages, clients and servers, and
//! lossless conversions to and from the serde types the data plane uses (`convert`).

pub mod client;
pub mod convert;
pub mod flight;

/// Generated code for package `zoopipe.v1`.
pub mod v1 {
    tonic::include_proto!("zoopipe.v1");
}

pub use convert::ConvertError;
