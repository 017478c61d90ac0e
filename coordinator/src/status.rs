//! The one mapping from our errors to gRPC status codes. Handlers never build a `Status` from
//! an error by hand: they call `.into_status()` (or `map_err(IntoStatus::into_status)`).

use crate::state::StateError;
use tonic::Status;
use zoopipe_common::Error;
use zoopipe_engine::lifecycle::{CancelError, StoreError, SubmitError};

pub(crate) trait IntoStatus {
    fn into_status(self) -> Status;
}

impl IntoStatus for Error {
    fn into_status(self) -> Status {
        let message = self.to_string();
        match self {
            Error::NotFound { .. } => Status::not_found(message),
            Error::AccessDenied { .. } => Status::permission_denied(message),
            e if e.is_retryable() => Status::unavailable(message),
            _ => Status::internal(message),
        }
    }
}

impl IntoStatus for StoreError {
    fn into_status(self) -> Status {
        match self {
            // Worth a retry by the caller: etcd comes back, or the call goes to the new leader.
            StoreError::Unavailable(_) | StoreError::NotLeader => {
                Status::unavailable(self.to_string())
            }
            StoreError::JobExists(_) => Status::already_exists(self.to_string()),
            StoreError::Corrupt { .. } => Status::internal(self.to_string()),
        }
    }
}

impl IntoStatus for StateError {
    fn into_status(self) -> Status {
        StoreError::from(self).into_status()
    }
}

impl IntoStatus for SubmitError {
    fn into_status(self) -> Status {
        match self {
            SubmitError::Invalid(e) => Status::invalid_argument(e.to_string()),
            SubmitError::Precondition(e) => Status::failed_precondition(seen_from_coordinator(e)),
            SubmitError::Store(e) => e.into_status(),
            SubmitError::Concurrent => Status::aborted(SubmitError::Concurrent.to_string()),
        }
    }
}

impl IntoStatus for CancelError {
    fn into_status(self) -> Status {
        match self {
            CancelError::NotFound(_) => Status::not_found(self.to_string()),
            CancelError::Committing(_) => Status::failed_precondition(self.to_string()),
            CancelError::Unrecorded(..) => Status::aborted(self.to_string()),
        }
    }
}

impl IntoStatus for zoopipe_proto::ConvertError {
    fn into_status(self) -> Status {
        Status::invalid_argument(self.to_string())
    }
}

/// A planning failure as the user of `zoopipectl submit` must read it: it happened in the
/// coordinator, with the coordinator's files and credentials, not the client's.
fn seen_from_coordinator(e: Error) -> String {
    match &e {
        Error::NotFound { url } if url.starts_with("file://") => format!(
            "{url}: not found on the coordinator's machine (in a fleet job, local paths are read \
             by the coordinator and the workers, not by zoopipectl: use s3://, or a filesystem \
             every machine mounts at the same path)"
        ),
        Error::AccessDenied { .. } => format!(
            "the coordinator was refused: {e} (the coordinator and every worker need S3 \
             credentials in their own environment; zoopipectl's are never sent)"
        ),
        _ => e.to_string(),
    }
}
