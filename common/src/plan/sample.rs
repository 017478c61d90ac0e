//! Sampling the head of an input at planning: CSV headers, JSON keys, and the types inferred
//! from a sample when no schema is given.

use crate::format::csv::{CsvRecords, read_header};
use crate::format::json::JsonLines;
use crate::format::{Compression, Format, open_decoder, parquet};
use crate::schema::{CompiledSchema, infer_from_text};
use crate::spec::JobConfig;
use crate::storage::{InputObject, ObjectReader, ReadCounter, Storage};
use crate::{Error, Result};
use object_store::ObjectStoreExt;
use std::collections::BTreeSet;
use std::io::Read;
use std::sync::Arc;

/// Bytes sampled from the first input to infer types when no schema is given.
pub(super) const SAMPLE_BYTES: u64 = 1024 * 1024;
const SAMPLE_ROWS: usize = 1000;
/// A UTF-8 byte order mark, which some exports put before the first byte of text.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The first bytes of an object (decompressed when needed); `true` when that is all of it.
pub(super) async fn read_head(
    storage: &Storage,
    object: &InputObject,
    compression: Compression,
    max: u64,
) -> Result<(Vec<u8>, bool)> {
    let store = storage.store(&object.url)?;
    let url = object.url.to_string();
    if object.size == 0 {
        return Ok((Vec::new(), true));
    }
    if compression == Compression::None {
        let end = object.size.min(max);
        let bytes = store
            .get_range(&object.url.path(), 0..end)
            .await
            .map_err(|e| Error::from_store(&url, e))?;
        let bytes = bytes.strip_prefix(BOM).unwrap_or(&bytes);
        return Ok((bytes.to_vec(), end == object.size));
    }
    let runtime = tokio::runtime::Handle::current();
    let object = object.clone();
    tokio::task::spawn_blocking(move || {
        let raw = ObjectReader::spawn(
            &runtime,
            store,
            object.url.path(),
            url.clone(),
            0,
            object.size.min(max),
            object.size,
            Default::default(),
            object.pin.clone(),
        );
        let mut decoded = open_decoder(raw, compression);
        let mut head = Vec::new();
        let n = (&mut decoded)
            .take(max)
            .read_to_end(&mut head)
            .map_err(|e| Error::corrupt(&url, format!("cannot decompress: {e}")))?;
        if head.starts_with(BOM) {
            head.drain(..BOM.len());
        }
        Ok((head, (n as u64) < max))
    })
    .await
    .map_err(|e| Error::config(format!("planner task failed: {e}")))?
}

/// Column names of a CSV object, reading more of its head when the header is long.
pub(super) async fn csv_header(
    storage: &Storage,
    object: &InputObject,
    compression: Compression,
    head: &[u8],
    at_eof: bool,
    job: &JobConfig,
) -> Result<(Vec<String>, u64)> {
    let opts = &job.spec.csv;
    let refused = |why: &str| Error::corrupt(object.url.to_string(), why);
    if let Some(found) = read_header(head, at_eof, opts).map_err(refused)? {
        return with_schema_names(found, job);
    }
    let (bigger, at_eof) = read_head(storage, object, compression, 64 * SAMPLE_BYTES).await?;
    let found = read_header(&bigger, at_eof, opts)
        .map_err(refused)?
        .ok_or_else(|| refused("the first record is longer than 64 MiB"))?;
    with_schema_names(found, job)
}

/// Without a header, columns take the schema's field names in order.
fn with_schema_names(found: (Vec<String>, u64), job: &JobConfig) -> Result<(Vec<String>, u64)> {
    let (mut names, end) = found;
    if !job.spec.csv.header
        && let Some(schema) = &job.schema
    {
        for (name, field) in names.iter_mut().zip(schema.fields()) {
            *name = field.name.clone();
        }
    }
    Ok((names, end))
}

/// Keys to extract from JSON objects: the schema's fields, or every key seen in the sample.
pub(super) fn json_columns(
    head: &[u8],
    at_eof: bool,
    schema: Option<&CompiledSchema>,
    is_array: bool,
) -> Vec<String> {
    if let Some(schema) = schema {
        return schema.fields().iter().map(|f| f.name.clone()).collect();
    }
    let mut keys: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut add = |object: &serde_json::Map<String, serde_json::Value>| {
        for key in object.keys() {
            if seen.insert(key.clone()) {
                keys.push(key.clone());
            }
        }
    };
    let complete = complete_lines(head, at_eof);
    if is_array {
        if let Ok(serde_json::Value::Array(items)) = serde_json::from_slice(head) {
            items
                .iter()
                .take(SAMPLE_ROWS)
                .filter_map(|v| v.as_object())
                .for_each(&mut add);
        } else if let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(head) {
            add(&object);
        } else {
            // A long array: sample the objects we can parse one by one after the '['.
            let mut stream =
                serde_json::Deserializer::from_slice(&head[1..]).into_iter::<serde_json::Value>();
            while let Some(Ok(v)) = stream.next() {
                if let Some(o) = v.as_object() {
                    add(o);
                }
            }
        }
    } else {
        for line in complete.split(|b| *b == b'\n').take(SAMPLE_ROWS) {
            if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice(line.trim_ascii()) {
                add(&o);
            }
        }
    }
    keys
}

fn complete_lines(head: &[u8], at_eof: bool) -> &[u8] {
    if at_eof {
        return head;
    }
    match memchr::memrchr(b'\n', head) {
        Some(i) => &head[..=i],
        None => &[],
    }
}

pub(super) fn infer_text_schema(
    format: Format,
    head: &[u8],
    at_eof: bool,
    columns: &[String],
    job: &JobConfig,
    is_array: bool,
) -> Result<CompiledSchema> {
    let complete = complete_lines(head, at_eof);
    let names: Arc<[String]> = columns.to_vec().into();
    let sample = match format {
        Format::Csv => {
            let mut reader = CsvRecords::new(
                complete,
                &job.spec.csv,
                names,
                "sample".into(),
                0,
                1,
                None,
                job.spec.csv.header,
                SAMPLE_ROWS,
            );
            reader.next_batch()?
        }
        _ if is_array => {
            let mut first = None;
            let _ = crate::format::json::read_array(
                head,
                names,
                Vec::new(),
                "sample".into(),
                SAMPLE_ROWS,
                |b| {
                    first.get_or_insert(b);
                    Err(Error::Cancelled)
                },
            );
            first
        }
        _ => {
            let mut reader =
                JsonLines::new(complete, names, "sample".into(), 0, 1, None, SAMPLE_ROWS);
            reader.next_batch()?
        }
    };
    let schema = match sample {
        Some(s) => infer_from_text(&s.batch),
        None => arrow::datatypes::Schema::new(
            columns
                .iter()
                .map(|c| arrow::datatypes::Field::new(c, arrow::datatypes::DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ),
    };
    Ok(CompiledSchema::from_arrow(&schema))
}

pub(super) async fn parquet_schema(
    storage: &Storage,
    object: &InputObject,
    counter: &ReadCounter,
) -> Result<arrow::datatypes::Schema> {
    use ::parquet::arrow::ParquetRecordBatchStreamBuilder;
    let store = storage.store(&object.url)?;
    let file = parquet::ObjectFile::new(store, &object.url, object.size, counter.clone());
    let url = object.url.to_string();
    let builder = ParquetRecordBatchStreamBuilder::new(file)
        .await
        .map_err(|e| parquet::parquet_error(&url, e))?;
    Ok(builder.schema().as_ref().clone())
}
