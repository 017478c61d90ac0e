//! Job commit. Every task's parts were uploaded but not completed; here the winners become
//! visible, error lines are renumbered where ranges did not know their first line, single-file
//! targets are assembled, stale objects (with `overwrite`) are removed, and `_report.json`
//! then `_SUCCESS` are written last — a reader that sees `_SUCCESS` sees exactly one part per task.

use crate::lifecycle::Outcomes;
use crate::merge::{finalize_errors, merge_output};
use crate::task::TaskContext;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutPayload};
use std::collections::BTreeSet;
use zoopipe_common::plan::line_bases;
use zoopipe_common::report::{JobReport, Manifest, ManifestPart};
use zoopipe_common::spec::{JobConfig, OutputTarget};
use zoopipe_common::storage::{ObjectUrl, Storage};
use zoopipe_common::{Error, Result};

const SUCCESS: &str = "_SUCCESS";
const REPORT: &str = "_report.json";
const MANIFEST: &str = "_manifest.json";

/// Refuse to write into an output that already holds data, unless `overwrite` is set.
pub async fn check_output_free(storage: &Storage, job: &JobConfig) -> Result<()> {
    if job.spec.overwrite {
        return Ok(());
    }
    // Both looked at together (each is a request's latency on a real store), and reported
    // in order: the output first.
    let (output, errors) = futures::join!(
        existing_objects(storage, &job.output),
        existing_objects(storage, &job.errors)
    );
    for (target, found) in [(&job.output, output), (&job.errors, errors)] {
        let (blocking, total) = found?;
        if let Some(first) = blocking.first() {
            return Err(Error::config(format!(
                "{} already exists{} (pass --overwrite to replace it)",
                target.url,
                if target.single_file {
                    String::new()
                } else {
                    format!(" and holds {total} object(s), e.g. {first}")
                }
            )));
        }
    }
    Ok(())
}

/// What blocks writing into `target` (everything but a failed run's `_report.json` and the
/// job's own ownership marker), and how many objects it holds in all (as a listing shows).
async fn existing_objects(
    storage: &Storage,
    target: &OutputTarget,
) -> Result<(Vec<String>, usize)> {
    if target.single_file {
        let store = storage.store(&target.url)?;
        return match store.head(&target.url.path()).await {
            Ok(_) => Ok((vec![target.url.to_string()], 1)),
            Err(object_store::Error::NotFound { .. }) => {
                // A HEAD cannot tell a missing object from a missing bucket; a listing can, in
                // one request (the first page of an empty prefix).
                let mut listing = store.list(Some(&target.url.path()));
                match listing.next().await {
                    Some(Err(e)) => Err(Error::from_store(&target.url.to_string(), e)),
                    _ => Ok((Vec::new(), 0)),
                }
            }
            Err(e) => Err(Error::from_store(&target.url.to_string(), e)),
        };
    }
    let all = storage.list_prefix(&target.url).await?;
    let total = all.len();
    let blocking = all
        .into_iter()
        .filter(|o| o.url.file_name() != REPORT && o.url.file_name() != crate::ownership::OWNER)
        .map(|o| o.url.to_string())
        .collect();
    Ok((blocking, total))
}

/// With `max_error_rate`, the reason to fail a job whose results hold too many invalid rows.
pub fn error_rate_exceeded(
    job: &JobConfig,
    results: &crate::lifecycle::Outcomes,
) -> Option<String> {
    let limit = job.spec.max_error_rate?;
    let processed: u64 = results.values().map(|r| r.rows_read).sum();
    let invalid: u64 = results.values().map(|r| r.rows_invalid).sum();
    let rate = if processed == 0 {
        0.0
    } else {
        invalid as f64 / processed as f64
    };
    (rate > limit).then(|| {
        format!(
            "{invalid} of {processed} rows are invalid ({:.2}%), above max_error_rate {:.2}%: nothing was committed",
            rate * 100.0,
            limit * 100.0
        )
    })
}

/// Refuse a job whose output would overwrite its own input.
pub fn check_inputs_outside_output(
    job: &JobConfig,
    inputs: &[zoopipe_common::storage::InputObject],
) -> Result<()> {
    for target in [&job.output, &job.errors] {
        let out = target.url.to_string();
        for input in inputs {
            let name = input.url.to_string();
            let inside = if target.single_file {
                name == out
            } else {
                name.starts_with(&out)
            };
            if inside {
                return Err(Error::config(format!(
                    "input {name} is inside the output {out}: choose another output"
                )));
            }
        }
    }
    Ok(())
}

/// A job planned as it runs meets its later inputs only after it started: an output its own
/// listing would reach (under an input's prefix, holding objects: an `--overwrite` of an earlier
/// run) is refused now, as planning everything at once would have. `Ok(Some(refusal))` names
/// the object; `Err` is the store's.
pub async fn check_listing_avoids_output(
    storage: &Storage,
    job: &JobConfig,
) -> Result<Option<Error>> {
    for (target, what) in [(&job.output, "output"), (&job.errors, "error output")] {
        for input in &job.spec.inputs {
            let found =
                zoopipe_common::storage::first_listed_inside(storage, input, &target.url).await?;
            if let Some(object) = found {
                return Ok(Some(Error::config(format!(
                    "input {object} is inside the {what} {}: choose another output",
                    target.url
                ))));
            }
        }
    }
    Ok(None)
}

/// Make the job's parts visible and assemble its outputs. On failure the report comes back
/// with what had been counted, so the caller can record the failure.
pub async fn commit(
    ctx: &TaskContext,
    job: &JobConfig,
    outcomes: Outcomes,
    mut report: JobReport,
) -> Result<JobReport, (Error, JobReport)> {
    let storage = &ctx.storage;
    // An old `_SUCCESS` must not vouch for a mix of old and new parts.
    if job.spec.overwrite
        && let Err(e) = delete(storage, &job.output.marker(SUCCESS)).await
    {
        return Err((e, report));
    }
    for result in outcomes.values() {
        report.add(result);
        if result.attempt > 1 {
            report.partitions.retried += 1;
        }
    }
    report.partitions.succeeded = outcomes.len() as u64;
    // The manifest is this commit's journal: a coordinator that died after writing it left
    // every output in place, and its successor only finishes the cleanup. Before it, every
    // step is repeatable: parts publish idempotently and the staging prefixes (with the parts
    // of single-file targets and the staged error parts) stay until the manifest is written.
    let manifest = match earlier_manifest(storage, job).await {
        Ok(Some(manifest)) => {
            tracing::info!(
                job = job.job_id,
                "resuming a commit that wrote its manifest"
            );
            manifest
        }
        Ok(None) => match place_outputs(ctx, job, &outcomes).await {
            Ok(manifest) => manifest,
            Err(e) => return Err((e, report)),
        },
        Err(e) => return Err((e, report)),
    };
    zoopipe_common::fault::crash_point("commit-manifest");
    report.outputs = manifest.outputs.iter().map(|p| p.url.clone()).collect();
    report.error_outputs = manifest
        .error_outputs
        .iter()
        .map(|p| p.url.clone())
        .collect();
    // Both cleaned together (the same prefix once: a single-file output and its errors file
    // share it), each to its end even if the other fails.
    let (output, errors) = (
        job.output.staging(&job.job_id),
        job.errors.staging(&job.job_id),
    );
    let (cleaned, also) = futures::join!(delete_prefix(storage, &output), async {
        if errors == output {
            Ok(())
        } else {
            delete_prefix(storage, &errors).await
        }
    });
    if let Err(e) = cleaned.and(also) {
        return Err((e, report));
    }
    if job.spec.overwrite
        && let Err(e) = remove_stale(storage, job, &report).await
    {
        return Err((e, report));
    }
    Ok(report)
}

/// Publish every winner's parts, assemble single-file targets, finalize error parts, and
/// write `_manifest.json` listing the results.
async fn place_outputs(
    ctx: &TaskContext,
    job: &JobConfig,
    outcomes: &Outcomes,
) -> Result<Manifest> {
    let storage = &ctx.storage;
    let ranges: Vec<_> = outcomes.values().flat_map(|r| r.ranges.clone()).collect();
    let bases = line_bases(&ranges);
    let mut error_parts = Vec::new();
    let mut output_parts: Vec<ManifestPart> = Vec::new();
    for result in outcomes.values() {
        let first_range = result.ranges.first().map(|r| (r.url.clone(), r.start));
        let line_offset = match (result.error_lines_relative, first_range) {
            (true, Some(key)) => bases.get(&key).copied().unwrap_or(1) - 1,
            _ => 0,
        };
        if let Some(output) = &result.output {
            output_parts.push(ManifestPart::new(&output.staged, output.rows));
        }
        if let Some(errors) = &result.error_part {
            error_parts.push(ErrorPart {
                index: result.index,
                part: ManifestPart::new(&errors.staged, errors.rows),
                line_offset,
            });
        }
    }
    // Publish every part (a few at a time). Owned values keep the future `Send` for servers.
    let staged: Vec<_> = outcomes
        .values()
        .flat_map(|r| r.staged())
        .cloned()
        .collect();
    futures::stream::iter(staged)
        .map(|s| {
            let storage = storage.clone();
            async move { s.publish(&storage).await }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    let outputs = if job.output.single_file {
        let merged = merge_output(ctx, job, &output_parts).await?;
        zoopipe_common::fault::crash_point("commit-assembled");
        vec![ManifestPart::new(
            &merged,
            output_parts.iter().map(|p| p.rows).sum(),
        )]
    } else {
        output_parts
    };
    let manifest = Manifest {
        job_id: job.job_id.clone(),
        outputs,
        error_outputs: finalize_errors(ctx, job, &error_parts).await?,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::config(e.to_string()))?;
    put(storage, &job.output.marker(MANIFEST), Bytes::from(text)).await?;
    Ok(manifest)
}

/// The manifest an earlier, interrupted commit of this same job wrote, if any.
async fn earlier_manifest(storage: &Storage, job: &JobConfig) -> Result<Option<Manifest>> {
    let url = job.output.marker(MANIFEST);
    let store = storage.store(&url)?;
    let bytes = match store.get(&url.path()).await {
        Ok(found) => found
            .bytes()
            .await
            .map_err(|e| Error::from_store(&url.to_string(), e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::from_store(&url.to_string(), e)),
    };
    // Another job's manifest (an output being overwritten) or an unreadable one: not ours.
    Ok(serde_json::from_slice::<Manifest>(&bytes)
        .ok()
        .filter(|m| m.job_id == job.job_id))
}

/// A task's committed error part and how its line numbers must shift.
#[derive(Clone)]
pub(crate) struct ErrorPart {
    pub index: u32,
    pub part: ManifestPart,
    pub line_offset: u64,
}

/// With `overwrite`: everything under the output prefixes that this job did not write goes.
async fn remove_stale(storage: &Storage, job: &JobConfig, report: &JobReport) -> Result<()> {
    let keep: BTreeSet<String> = report
        .outputs
        .iter()
        .chain(&report.error_outputs)
        .cloned()
        .chain([
            job.output.marker(REPORT).to_string(),
            job.output.marker(MANIFEST).to_string(),
            job.output.marker(crate::ownership::OWNER).to_string(),
            job.errors.marker(crate::ownership::OWNER).to_string(),
        ])
        .collect();
    for target in [&job.output, &job.errors] {
        if target.single_file {
            // A single file this run did not write (no invalid rows this time) is an earlier
            // run's: left in place it would contradict this run's report.
            if !keep.contains(&target.url.to_string()) {
                delete(storage, &target.url).await?;
            }
            continue;
        }
        for object in storage.list_prefix(&target.url).await? {
            let name = object.url.to_string();
            if !keep.contains(&name) {
                delete(storage, &object.url).await?;
            }
        }
    }
    Ok(())
}

/// Write the report where the output is (also for failed jobs: it says what was not committed).
pub async fn write_report(storage: &Storage, job: &JobConfig, report: &JobReport) -> Result<()> {
    let text = serde_json::to_vec_pretty(report).map_err(|e| Error::config(e.to_string()))?;
    put(storage, &job.output.marker(REPORT), Bytes::from(text)).await
}

/// The report of a job that ends without its commit, beside the output, unless the output is
/// an earlier run's published one (its `_SUCCESS` is there): an `--overwrite` job cancelled or
/// failed leaves that output whole, its report included.
pub async fn write_unpublished_report(
    storage: &Storage,
    job: &JobConfig,
    report: &JobReport,
) -> Result<()> {
    let success = job.output.marker(SUCCESS);
    let store = storage.store(&success)?;
    match store.head(&success.path()).await {
        Ok(_) => Ok(()),
        Err(object_store::Error::NotFound { .. }) => write_report(storage, job, report).await,
        Err(e) => Err(Error::from_store(&success.to_string(), e)),
    }
}

/// The last step: report, then `_SUCCESS`.
pub async fn publish(storage: &Storage, job: &JobConfig, report: &JobReport) -> Result<()> {
    write_report(storage, job, report).await?;
    put(storage, &job.output.marker(SUCCESS), Bytes::new()).await
}

async fn put(storage: &Storage, url: &ObjectUrl, data: Bytes) -> Result<()> {
    let store = storage.store(url)?;
    store
        .put(&url.path(), PutPayload::from(data))
        .await
        .map(|_| ())
        .map_err(|e| Error::from_store(&url.to_string(), e))
}

async fn delete(storage: &Storage, url: &ObjectUrl) -> Result<()> {
    let store = storage.store(url)?;
    match store.delete(&url.path()).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::from_store(&url.to_string(), e)),
    }
}

pub(crate) async fn delete_prefix(storage: &Storage, prefix: &ObjectUrl) -> Result<()> {
    // A few at a time: one request's latency each.
    futures::stream::iter(storage.list_prefix(prefix).await?)
        .map(|object| async move { delete(storage, &object.url).await })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    if prefix.is_local() {
        // Local staging leaves empty folders behind; remove them quietly.
        let dir = format!("/{}", prefix.key());
        let _ = std::fs::remove_dir_all(&dir);
        if let Some(parent) = std::path::Path::new(&dir).parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
    Ok(())
}
