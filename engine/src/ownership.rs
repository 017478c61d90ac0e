//! One job at a time per output. A job claims its output (and its error output, when that lies
//! elsewhere) by creating a marker object with a conditional write (`If-None-Match: *` on S3,
//! create-new on local files) before it plans; a second job finds the marker and is refused
//! with a line naming the job that holds it. The marker goes when the job ends, whatever the
//! outcome. Embedded runs and fleet jobs claim the same way, so they also keep out of each
//! other's way. On a store without conditional writes the claim is a plain write: two jobs
//! started at the same moment are then not kept apart (a warning says so).

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use zoopipe_common::spec::{JobConfig, OutputTarget};
use zoopipe_common::storage::{ObjectUrl, Storage};
use zoopipe_common::{Error, Result};

/// The marker's name in an output prefix (`_` keeps it out of every listing of inputs).
pub const OWNER: &str = "_zoopipe_owner.json";

#[derive(Serialize, Deserialize)]
struct Owner {
    job_id: String,
    since: String,
}

/// The outputs a job writes into: its output, and its error output unless that lies inside it.
fn targets(job: &JobConfig) -> Vec<&OutputTarget> {
    let output = job.output.url.to_string();
    let mut targets = vec![&job.output];
    let errors = job.errors.url.to_string();
    if job.output.single_file || !errors.starts_with(&output) {
        targets.push(&job.errors);
    }
    targets
}

/// Claim every output of `job`; `Err` names the job that holds one. A claim this job already
/// holds (a resumed or recovered job) is kept.
pub async fn claim(storage: &Storage, job: &JobConfig) -> Result<()> {
    let mut claimed: Vec<ObjectUrl> = Vec::new();
    for target in targets(job) {
        let marker = target.marker(OWNER);
        match claim_one(storage, job, target, &marker).await {
            Ok(()) => claimed.push(marker),
            Err(e) => {
                for marker in &claimed {
                    let _ = release_one(storage, job, marker).await;
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

async fn claim_one(
    storage: &Storage,
    job: &JobConfig,
    target: &OutputTarget,
    marker: &ObjectUrl,
) -> Result<()> {
    let store = storage.store(marker)?;
    let owner = Owner {
        job_id: job.job_id.clone(),
        since: chrono::Utc::now().to_rfc3339(),
    };
    let body = serde_json::to_vec(&owner).map_err(|e| Error::config(e.to_string()))?;
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let name = marker.to_string();
    match store
        .put_opts(&marker.path(), PutPayload::from(body.clone()), create)
        .await
    {
        Ok(_) => Ok(()),
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => {
            match holder(storage, marker).await? {
                Some(held) if held.job_id == job.job_id => Ok(()),
                Some(held) => Err(Error::config(format!(
                    "{} is in use by job {} (since {}): one job writes an output at a time; \
                     if that job no longer runs, delete {name}",
                    target.url, held.job_id, held.since
                ))),
                // Gone meanwhile (that job just ended): try once more.
                None => Box::pin(claim_one(storage, job, target, marker)).await,
            }
        }
        Err(object_store::Error::NotImplemented { .. }) => {
            tracing::warn!(
                marker = name,
                "this store has no conditional writes: two jobs started into one output at \
                 the same moment are not kept apart"
            );
            store
                .put(&marker.path(), PutPayload::from(body))
                .await
                .map(|_| ())
                .map_err(|e| Error::from_store(&name, e))
        }
        // A write refused as "not found" can only mean the bucket is missing.
        Err(object_store::Error::NotFound { .. }) => Err(Error::config(format!(
            "{}: bucket does not exist",
            target.url
        ))),
        Err(e) => Err(Error::from_store(&name, e)),
    }
}

async fn holder(storage: &Storage, marker: &ObjectUrl) -> Result<Option<Owner>> {
    let store = storage.store(marker)?;
    let name = marker.to_string();
    match store.get(&marker.path()).await {
        Ok(found) => {
            let bytes = found
                .bytes()
                .await
                .map_err(|e| Error::from_store(&name, e))?;
            Ok(Some(serde_json::from_slice(&bytes).unwrap_or(Owner {
                job_id: "(unreadable marker)".into(),
                since: "?".into(),
            })))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::from_store(&name, e)),
    }
}

/// Give up every claim this job holds (its end, whatever the outcome).
pub async fn release(storage: &Storage, job: &JobConfig) {
    for target in targets(job) {
        let marker = target.marker(OWNER);
        if let Err(e) = release_one(storage, job, &marker).await {
            tracing::warn!(marker = %marker, error = %e, "cannot remove the output's owner marker");
        }
    }
}

async fn release_one(storage: &Storage, job: &JobConfig, marker: &ObjectUrl) -> Result<()> {
    // Only our own: a marker another job holds now is not ours to remove.
    if holder(storage, marker)
        .await?
        .is_some_and(|held| held.job_id == job.job_id)
    {
        let store = storage.store(marker)?;
        match store.delete(&marker.path()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::from_store(&marker.to_string(), e)),
        }
    }
    Ok(())
}
