//! The Arrow Flight ticket of `zoopipectl errors` (served by `zoopipe-coordinator`): the JSON
//! `{"job_id": "...", "limit": N}`, so any Flight client can ask for a job's error rows.

use serde::{Deserialize, Serialize};
use tonic::Status;

/// What a ticket asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorsTicket {
    pub job_id: String,
    /// At most this many rows; 0 (the default) means all of them.
    #[serde(default)]
    pub limit: u64,
}

impl ErrorsTicket {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, Status> {
        let ticket: Self = serde_json::from_slice(bytes).map_err(|e| {
            Status::invalid_argument(format!(
                "the ticket must be JSON like {{\"job_id\": \"...\", \"limit\": 20}}: {e}"
            ))
        })?;
        // Job ids are `YYYYMMDD-HHMMSS-xxxxxxxx`; anything else must not reach an etcd key.
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if ticket.job_id.is_empty() || !ticket.job_id.chars().all(valid) {
            return Err(Status::invalid_argument(format!(
                "'{}' is not a job id",
                ticket.job_id
            )));
        }
        Ok(ticket)
    }
}
