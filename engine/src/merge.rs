//! Assembly at commit: parts merged into one object — inside S3 where it can (`merge_copy`),
//! otherwise streamed through here (Parquet row groups copied under one footer, CSV with one
//! header, JSONL and Arrow concatenated) — and staged error rows rewritten with their final
//! line numbers into their final parts or file.

use crate::commit::ErrorPart;
use crate::merge_copy::merge_by_copy;
use crate::task::TaskContext;
use object_store::ObjectStoreExt;
use std::io::{BufRead, BufReader, Read, Write};
use zoopipe_common::errors_out::{ErrorRow, ErrorWriter, shift_lines};
use zoopipe_common::format::Format;
use zoopipe_common::format::parquet::concat;
use zoopipe_common::format::parquet::{ObjectFile, ParquetRows, row_groups};
use zoopipe_common::report::ManifestPart;
use zoopipe_common::spec::JobConfig;
use zoopipe_common::storage::assemble::can_assemble;
use zoopipe_common::storage::{
    ObjectReader, ObjectUrl, ReadCounter, StagedObject, StagedWriter, is_unsupported,
};
use zoopipe_common::{Error, Result};

/// Rows per write when re-encoding staged error rows.
const ERROR_CHUNK: usize = 8192;

/// One of our own staged objects: where it is, its store and its size.
fn staged_object(
    ctx: &TaskContext,
    url: &str,
) -> Result<(
    ObjectUrl,
    std::sync::Arc<dyn object_store::ObjectStore>,
    u64,
)> {
    let parsed = ObjectUrl::parse(url)?;
    let store = ctx.storage.store(&parsed)?;
    let size = ctx
        .runtime
        .block_on(store.head(&parsed.path()))
        .map_err(|e| Error::from_store(url, e))?
        .size;
    Ok((parsed, store, size))
}

fn reader(ctx: &TaskContext, url: &str) -> Result<ObjectReader> {
    let (parsed, store, size) = staged_object(ctx, url)?;
    Ok(ObjectReader::spawn(
        &ctx.runtime,
        store,
        parsed.path(),
        url.to_string(),
        0,
        size,
        size,
        Default::default(),
        Default::default(), // our own part, read once at the commit: nothing to pin
    ))
}

fn download(ctx: &TaskContext, url: &str) -> Result<std::fs::File> {
    let mut file = tempfile::tempfile().map_err(|e| Error::io("creating a temp file", e))?;
    std::io::copy(&mut reader(ctx, url)?, &mut file)
        .map_err(|e| Error::io(format!("downloading {url}"), e))?;
    Ok(file)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::config(format!("commit step failed: {e}")))?
}

/// Merge the committed parts (in task order) into the single output object and publish it.
/// On S3 the object is assembled inside the store (`merge_copy`); elsewhere, or where S3
/// cannot, the parts stream through this process. The parts stay (in the staging prefix,
/// removed once the manifest is written) so that a commit interrupted after this can run again.
pub async fn merge_output(
    ctx: &TaskContext,
    job: &JobConfig,
    parts: &[ManifestPart],
) -> Result<StagedObject> {
    let storage = &ctx.storage;
    let target = &job.output.url;
    let mut merged = None;
    if can_assemble(storage, target) {
        match merge_by_copy(storage, job, parts).await {
            Ok(Some(assembled)) => {
                tracing::info!(
                    url = %target,
                    parts = parts.len(),
                    copied_bytes = assembled.copied_bytes,
                    uploaded_bytes = assembled.uploaded_bytes,
                    "single-file output assembled inside the store"
                );
                merged = Some(assembled.staged);
            }
            Ok(None) => {}
            Err(e) if is_unsupported(&e) => {
                tracing::warn!(url = %target, error = %e, "merging by streaming instead");
            }
            Err(e) => return Err(e),
        }
    }
    let merged = match merged {
        Some(merged) => merged,
        None => {
            let urls: Vec<String> = parts.iter().map(|p| p.url.clone()).collect();
            stream_parts(ctx, job, &urls).await?
        }
    };
    merged.publish(storage).await?;
    Ok(merged)
}

/// Merge by reading every part and writing the object (Arrow IPC, local files, fallbacks).
async fn stream_parts(
    ctx: &TaskContext,
    job: &JobConfig,
    parts: &[String],
) -> Result<StagedObject> {
    let (ctx, parts) = (ctx.clone(), parts.to_vec());
    let target = job.output.url.clone();
    let format = job.output.format;
    let header = job.spec.write.csv_header;
    let schema = job
        .schema
        .as_ref()
        .map(|s| s.arrow_schema())
        .ok_or_else(|| Error::config("the job has no schema: plan it first"))?;
    blocking(move || {
        let mut sink = StagedWriter::start(&ctx.runtime, &ctx.storage, &target)?;
        match format {
            Format::Parquet => {
                let files = parts
                    .iter()
                    .map(|p| download(&ctx, p))
                    .collect::<Result<Vec<_>>>()?;
                sink = concat(&files, &parts, sink)?;
            }
            Format::Csv | Format::Jsonl => {
                for (i, part) in parts.iter().enumerate() {
                    let mut input = BufReader::new(reader(&ctx, part)?);
                    if format == Format::Csv && header && i > 0 {
                        input
                            .skip_until(b'\n')
                            .map_err(|e| Error::io(format!("reading {part}"), e))?;
                    }
                    std::io::copy(&mut input, &mut sink)
                        .map_err(|e| Error::io(format!("merging {part}"), e))?;
                }
            }
            Format::Arrow => {
                let mut writer = arrow::ipc::writer::FileWriter::try_new(sink, &schema)
                    .map_err(|e| encode(&e))?;
                for part in &parts {
                    let batches =
                        arrow::ipc::reader::FileReader::try_new(download(&ctx, part)?, None)
                            .map_err(|e| Error::corrupt(part, e))?;
                    for batch in batches {
                        writer
                            .write(&batch.map_err(|e| Error::corrupt(part, e))?)
                            .map_err(|e| encode(&e))?;
                    }
                }
                writer.finish().map_err(|e| encode(&e))?;
                sink = writer.into_inner().map_err(|e| encode(&e))?;
            }
        }
        sink.flush().map_err(|e| Error::io("merging", e))?;
        sink.finish()
    })
    .await
}

fn encode(e: &dyn std::fmt::Display) -> Error {
    Error::Encode {
        context: "merging Arrow parts".into(),
        message: e.to_string(),
    }
}

/// Turn each task's committed error part into its final form. Parts that were written in
/// place are kept; staged ones (JSONL, Parquet or Arrow) are renumbered by `line_offset` and written to their
/// final part, or all appended into the single errors object. Returns the final URLs.
pub(crate) async fn finalize_errors(
    ctx: &TaskContext,
    job: &JobConfig,
    parts: &[ErrorPart],
) -> Result<Vec<ManifestPart>> {
    let staging = job.errors.staging(&job.job_id).to_string();
    let target = job.errors.clone();
    let (ctx2, parts) = (ctx.clone(), parts.to_vec());
    let job_id = job.job_id.clone();
    let options = job.spec.write.clone();
    if !target.single_file {
        // Every staged part becomes a part of its own: independent, so a few at a time (an
        // error-heavy job renumbers hundreds of MB of them).
        return blocking(move || {
            finalize_parts(&ctx2, &target, &options, &staging, &job_id, &parts)
        })
        .await;
    }
    // One errors object: every part appended in task order.
    blocking(move || {
        let ctx = ctx2;
        let mut outputs = Vec::new();
        let mut merged: Option<ErrorWriter> = None;
        let mut merged_rows = 0;
        for ErrorPart {
            part, line_offset, ..
        } in &parts
        {
            if !part.url.starts_with(&staging) {
                outputs.push(part.clone());
                continue;
            }
            if merged.is_none() {
                let sink = StagedWriter::start(&ctx.runtime, &ctx.storage, &target.url)?;
                merged = Some(ErrorWriter::new(target.format, sink, &options)?);
            }
            if let Some(writer) = merged.as_mut() {
                copy_error_part(&ctx, &part.url, *line_offset, writer)?;
                merged_rows += part.rows;
            }
        }
        if let Some(w) = merged {
            let staged = w.finish()?;
            ctx.runtime.block_on(staged.publish(&ctx.storage))?;
            outputs.push(ManifestPart::new(&staged, merged_rows));
        }
        Ok(outputs)
    })
    .await
}

/// `finalize_errors` for a prefix: each part renumbered into its final part, on up to four
/// threads; the results in the parts' order.
fn finalize_parts(
    ctx: &TaskContext,
    target: &zoopipe_common::spec::OutputTarget,
    options: &zoopipe_common::format::write::WriteOptions,
    staging: &str,
    job_id: &str,
    parts: &[ErrorPart],
) -> Result<Vec<ManifestPart>> {
    let one = |ErrorPart {
                   index,
                   part,
                   line_offset,
               }: &ErrorPart|
     -> Result<ManifestPart> {
        if !part.url.starts_with(staging) {
            return Ok(part.clone());
        }
        let dest = target.part_url(job_id, *index);
        let sink = StagedWriter::start(&ctx.runtime, &ctx.storage, &dest)?;
        let mut writer = ErrorWriter::new(target.format, sink, options)?;
        copy_error_part(ctx, &part.url, *line_offset, &mut writer)?;
        let staged = writer.finish()?;
        ctx.runtime.block_on(staged.publish(&ctx.storage))?;
        Ok(ManifestPart::new(&staged, part.rows))
    };
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let mut done: Vec<(usize, Result<ManifestPart>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let one = &one;
                scope.spawn(move || {
                    parts
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| i % threads == t)
                        .map(|(i, p)| (i, one(p)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join().unwrap_or_else(|_| {
                    vec![(
                        usize::MAX,
                        Err(Error::Io {
                            context: "renumbering error parts".into(),
                            source: std::io::Error::other("a thread panicked"),
                        }),
                    )]
                })
            })
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// A staged error part into `writer`, line numbers moved on by `offset`: column-wise when it
/// was staged in a columnar format (`task::errors`), else line by line.
fn copy_error_part(
    ctx: &TaskContext,
    url: &str,
    offset: u64,
    writer: &mut ErrorWriter,
) -> Result<()> {
    match zoopipe_common::format::detect(url).0 {
        Some(format @ (Format::Parquet | Format::Arrow)) => {
            copy_error_batches(ctx, url, format, offset, writer)
        }
        _ => copy_error_rows(ctx, url, offset, writer),
    }
}

/// A Parquet or Arrow error part, batch by batch, its `line` column shifted.
fn copy_error_batches(
    ctx: &TaskContext,
    url: &str,
    format: Format,
    offset: u64,
    writer: &mut ErrorWriter,
) -> Result<()> {
    if format == Format::Arrow {
        // An Arrow file is its stream after the magic and its padding (our writer's parts start
        // the stream with a continuation marker): read front to back in one GET, not a ranged
        // read per record batch.
        let mut input = BufReader::new(reader(ctx, url)?);
        let io = |e| Error::io(format!("reading {url}"), e);
        let mut magic = [0u8; 6];
        input.read_exact(&mut magic).map_err(io)?;
        loop {
            let head = input.fill_buf().map_err(io)?;
            let zeros = head.iter().take_while(|b| **b == 0).count();
            let done = zeros < head.len() || head.is_empty();
            input.consume(zeros);
            if done {
                break;
            }
        }
        let stream = arrow::ipc::reader::StreamReader::try_new(input, None)
            .map_err(|e| Error::corrupt(url, e))?;
        for batch in stream {
            let batch = batch.map_err(|e| Error::corrupt(url, e))?;
            writer.write_batch(&shift_lines(&batch, offset)?)?;
        }
        return Ok(());
    }
    let (parsed, store, size) = staged_object(ctx, url)?;
    let mut file = ObjectFile::new(store, &parsed, size, ReadCounter::default());
    let groups = ctx.runtime.block_on(row_groups(&mut file))?.len();
    let mut batches = ParquetRows::open(&ctx.runtime, file, 0..groups, ERROR_CHUNK)?;
    while let Some(batch) = batches.next_batch()? {
        writer.write_batch(&shift_lines(&batch.batch, offset)?)?;
    }
    Ok(())
}

fn copy_error_rows(
    ctx: &TaskContext,
    url: &str,
    offset: u64,
    writer: &mut ErrorWriter,
) -> Result<()> {
    let mut input = BufReader::new(reader(ctx, url)?);
    let mut chunk = Vec::with_capacity(ERROR_CHUNK);
    let mut line = Vec::new();
    let raw = writer.is_jsonl();
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(format!("reading {url}"), e))?;
        if n == 0 {
            break;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        // JSONL to JSONL: move the line number in the text, no parse and re-encode (error-heavy
        // jobs have hundreds of MB of these).
        if raw
            && chunk.is_empty()
            && let Some(shifted) = zoopipe_common::errors_out::shift_line(text, offset)
            && writer.write_json_line(&shifted)?
        {
            continue;
        }
        let mut row: ErrorRow = serde_json::from_slice(text).map_err(|e| Error::corrupt(url, e))?;
        row.line = row.line.map(|l| l + offset);
        chunk.push(row);
        if chunk.len() >= ERROR_CHUNK {
            writer.write(std::mem::take(&mut chunk))?;
        }
    }
    writer.write(chunk)
}
