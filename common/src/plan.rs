//! Planning: input URLs become tasks. CSV/JSONL files are cut into byte ranges of about the
//! partition size, Parquet into runs of row groups, Arrow IPC into runs of record batches;
//! compressed files (and CSV declared multiline) are read whole; small files are packed
//! together. Task `index` orders outputs: `part-00042` holds rows after `part-00041`'s.

use crate::format::csv::{CsvRecords, read_header};
use crate::format::json::JsonLines;
use crate::format::{Compression, Format, detect, ipc, parquet};
use crate::report::RangeReport;
use crate::schema::{CompiledSchema, infer_from_text};
use crate::spec::JobConfig;
use crate::storage::{InputObject, ObjectReader, ObjectUrl, ReadCounter, Storage};
use crate::{Error, Result};
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::sync::Arc;

/// Bytes sampled from the first input to infer types when no schema is given.
const SAMPLE_BYTES: u64 = 1024 * 1024;
const SAMPLE_ROWS: usize = 1000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub url: String,
    pub size: u64,
    pub format: Format,
    #[serde(default)]
    pub compression: Compression,
    /// Column names: the CSV header read at planning, or the JSON keys to extract.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    pub kind: SplitKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SplitKind {
    /// The whole object, start to end.
    Whole,
    /// Records starting in `[start, end)` of a CSV/JSONL object.
    Bytes { start: u64, end: u64 },
    /// Row groups `[start, end)` of a Parquet object.
    RowGroups { start: usize, end: usize },
    /// Record batches `[start, end)` of an Arrow IPC file; `first_row` is the file-wide index
    /// of the first row of batch `start`.
    Batches {
        start: usize,
        end: usize,
        first_row: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub index: u32,
    pub splits: Vec<Split>,
}

pub struct Plan {
    pub tasks: Vec<Task>,
    pub inputs: Vec<InputObject>,
}

/// Expand inputs, read what planning needs (CSV headers, Parquet footers, IPC footers), infer
/// the schema when none was given, and cut the work into tasks.
pub async fn plan_job(storage: &Storage, job: &mut JobConfig) -> Result<Plan> {
    let mut inputs: Vec<InputObject> = Vec::new();
    let mut seen = BTreeSet::new();
    for text in &job.spec.inputs {
        for object in storage.list_inputs(text).await? {
            if seen.insert(object.url.to_string()) {
                inputs.push(object);
            }
        }
    }
    let counter: ReadCounter = Default::default();
    let mut planner = Planner {
        partition_size: job.spec.partition_size,
        tasks: Vec::new(),
        pack: Vec::new(),
        pack_bytes: 0,
    };
    let mut schema = job.schema.clone();
    for object in &inputs {
        let (detected, compression) = detect(object.url.file_name());
        let format = job.spec.input_format.or(detected).ok_or_else(|| {
            Error::config(format!(
                "{}: cannot tell the format from the name; pass --input-format",
                object.url
            ))
        })?;
        let url = object.url.to_string();
        let split = |columns: Option<Vec<String>>, kind| Split {
            url: url.clone(),
            size: object.size,
            format,
            compression,
            columns,
            kind,
        };
        match format {
            Format::Csv | Format::Jsonl => {
                let (head, at_eof) = read_head(storage, object, compression, SAMPLE_BYTES).await?;
                let (columns, is_array) = match format {
                    Format::Csv => {
                        let (names, _) =
                            csv_header(storage, object, compression, &head, at_eof, job).await?;
                        (names, false)
                    }
                    _ => {
                        let is_array =
                            head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
                        (json_columns(&head, at_eof, schema.as_deref()), is_array)
                    }
                };
                // Infer from the first file that has columns (an empty file says nothing).
                if schema.is_none() && !columns.is_empty() {
                    schema = Some(Arc::new(infer_text_schema(
                        format, &head, at_eof, &columns, job, is_array,
                    )?));
                }
                let whole = compression != Compression::None
                    || is_array
                    || (format == Format::Csv && job.spec.csv.multiline);
                if whole || object.size <= planner.partition_size {
                    planner.add_small(
                        split(Some(columns), SplitKind::Whole),
                        whole && object.size > planner.partition_size,
                    );
                } else {
                    let n = object.size.div_ceil(planner.partition_size);
                    let step = object.size.div_ceil(n);
                    let splits = (0..n)
                        .map(|i| {
                            let start = i * step;
                            let end = ((i + 1) * step).min(object.size);
                            split(Some(columns.clone()), SplitKind::Bytes { start, end })
                        })
                        .collect();
                    planner.add_own_tasks(splits);
                }
            }
            Format::Parquet => {
                let store = storage.store(&object.url)?;
                let mut file =
                    parquet::ObjectFile::new(store, &object.url, object.size, counter.clone());
                let groups = parquet::row_groups(&mut file).await?;
                if schema.is_none() {
                    schema = Some(Arc::new(CompiledSchema::from_arrow(
                        &parquet_schema(storage, object, &counter).await?,
                    )));
                }
                let runs = runs_by_bytes(
                    &groups.iter().map(|g| g.1).collect::<Vec<_>>(),
                    planner.partition_size,
                );
                if runs.len() <= 1 {
                    planner.add_small(
                        split(
                            None,
                            SplitKind::RowGroups {
                                start: 0,
                                end: groups.len(),
                            },
                        ),
                        false,
                    );
                } else {
                    planner.add_own_tasks(
                        runs.into_iter()
                            .map(|(start, end)| split(None, SplitKind::RowGroups { start, end }))
                            .collect(),
                    );
                }
            }
            Format::Arrow => {
                let store = storage.store(&object.url)?;
                let footer =
                    ipc::read_footer(store.as_ref(), &object.url, object.size, &counter).await?;
                if schema.is_none() {
                    schema = Some(Arc::new(CompiledSchema::from_arrow(&footer.schema)));
                }
                let sizes: Vec<u64> = footer.batches.iter().map(ipc::block_len).collect();
                let runs = runs_by_bytes(&sizes, planner.partition_size);
                if runs.len() <= 1 {
                    planner.add_small(
                        split(
                            None,
                            SplitKind::Batches {
                                start: 0,
                                end: sizes.len(),
                                first_row: 0,
                            },
                        ),
                        false,
                    );
                } else {
                    let rows =
                        ipc::batch_rows(store.as_ref(), &object.url, &footer, &counter).await?;
                    let splits = runs
                        .into_iter()
                        .map(|(start, end)| {
                            let first_row = rows[..start].iter().sum();
                            split(
                                None,
                                SplitKind::Batches {
                                    start,
                                    end,
                                    first_row,
                                },
                            )
                        })
                        .collect();
                    planner.add_own_tasks(splits);
                }
            }
        }
    }
    planner.flush_pack();
    job.schema = Some(schema.unwrap_or_else(|| {
        Arc::new(CompiledSchema::from_arrow(
            &arrow::datatypes::Schema::empty(),
        ))
    }));
    Ok(Plan {
        tasks: planner.tasks,
        inputs,
    })
}

struct Planner {
    partition_size: u64,
    tasks: Vec<Task>,
    pack: Vec<Split>,
    pack_bytes: u64,
}

impl Planner {
    fn push_task(&mut self, splits: Vec<Split>) {
        let index = self.tasks.len() as u32;
        self.tasks.push(Task { index, splits });
    }

    fn flush_pack(&mut self) {
        if !self.pack.is_empty() {
            let splits = std::mem::take(&mut self.pack);
            self.pack_bytes = 0;
            self.push_task(splits);
        }
    }

    /// A file read by one task; packed with its neighbours while the pack stays under the
    /// partition size (`alone`: big unsplittable files get a task to themselves).
    fn add_small(&mut self, split: Split, alone: bool) {
        if alone || self.pack_bytes + split.size > self.partition_size {
            self.flush_pack();
        }
        if alone {
            self.push_task(vec![split]);
            return;
        }
        self.pack_bytes += split.size;
        self.pack.push(split);
    }

    /// Pieces of one big file, a task each.
    fn add_own_tasks(&mut self, splits: Vec<Split>) {
        self.flush_pack();
        for split in splits {
            self.push_task(vec![split]);
        }
    }
}

/// Group consecutive units (row groups, batches) into runs of about `target` bytes.
fn runs_by_bytes(sizes: &[u64], target: u64) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, size) in sizes.iter().enumerate() {
        if i > start && bytes + size > target {
            runs.push((start, i));
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() || sizes.is_empty() {
        runs.push((start, sizes.len()));
    }
    runs
}

/// The first bytes of an object (decompressed when needed); `true` when that is all of it.
async fn read_head(
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
        );
        let mut decoded = open_decoder(raw, compression);
        let mut head = Vec::new();
        let n = (&mut decoded)
            .take(max)
            .read_to_end(&mut head)
            .map_err(|e| Error::corrupt(&url, format!("cannot decompress: {e}")))?;
        Ok((head, (n as u64) < max))
    })
    .await
    .map_err(|e| Error::config(format!("planner task failed: {e}")))?
}

/// Wrap a raw byte stream in the right decompressor.
pub fn open_decoder<R: Read + Send + 'static>(
    raw: R,
    compression: Compression,
) -> Box<dyn Read + Send> {
    match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
            raw,
        ))),
        Compression::Zstd => match zstd::stream::read::Decoder::new(raw) {
            Ok(d) => Box::new(d),
            Err(e) => Box::new(FailingReader(Some(e))),
        },
    }
}

struct FailingReader(Option<std::io::Error>);

impl Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| std::io::Error::other("decoder failed")))
    }
}

/// Column names of a CSV object, reading more of its head when the header is long.
async fn csv_header(
    storage: &Storage,
    object: &InputObject,
    compression: Compression,
    head: &[u8],
    at_eof: bool,
    job: &JobConfig,
) -> Result<(Vec<String>, u64)> {
    let opts = &job.spec.csv;
    if let Some(found) = read_header(head, at_eof, opts) {
        return with_schema_names(found, job);
    }
    let (bigger, at_eof) = read_head(storage, object, compression, 64 * SAMPLE_BYTES).await?;
    let found = read_header(&bigger, at_eof, opts).ok_or_else(|| {
        Error::corrupt(
            object.url.to_string(),
            "the first record is longer than 64 MiB",
        )
    })?;
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
fn json_columns(head: &[u8], at_eof: bool, schema: Option<&CompiledSchema>) -> Vec<String> {
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
    if head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        if let Ok(serde_json::Value::Array(items)) = serde_json::from_slice(head) {
            items
                .iter()
                .take(SAMPLE_ROWS)
                .filter_map(|v| v.as_object())
                .for_each(&mut add);
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

fn infer_text_schema(
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
            let _ =
                crate::format::json::read_array(head, names, "sample".into(), SAMPLE_ROWS, |b| {
                    first.get_or_insert(b);
                    Err(Error::Cancelled)
                });
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

async fn parquet_schema(
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

/// Files whose byte ranges did not meet at record boundaries: a quoted newline crossed a
/// split, so those ranges' rows cannot be trusted and the file must be read whole.
pub fn misaligned_files(ranges: &[RangeReport]) -> BTreeSet<String> {
    let mut bad = BTreeSet::new();
    for (url, ranges) in by_file(ranges) {
        let mut previous_end: Option<u64> = None;
        for r in ranges {
            if r.outcome.first_record >= r.end {
                continue; // no record starts in this range
            }
            if let Some(end) = previous_end
                && end != r.outcome.first_record
            {
                bad.insert(url.clone());
                break;
            }
            previous_end = Some(r.outcome.end);
        }
    }
    bad
}

/// Line number of the first record of every range (by url and range start), from the line
/// counts the earlier ranges of the same file reported.
pub fn line_bases(ranges: &[RangeReport]) -> HashMap<(String, u64), u64> {
    let mut bases = HashMap::new();
    for (url, ranges) in by_file(ranges) {
        let mut line = 1;
        for r in ranges {
            bases.insert((url.clone(), r.start), line);
            line += r.outcome.lines;
        }
    }
    bases
}

fn by_file(ranges: &[RangeReport]) -> BTreeMap<String, Vec<&RangeReport>> {
    let mut files: BTreeMap<String, Vec<&RangeReport>> = BTreeMap::new();
    for r in ranges {
        files.entry(r.url.clone()).or_default().push(r);
    }
    for list in files.values_mut() {
        list.sort_by_key(|r| r.start);
    }
    files
}

/// The URL of a split, parsed.
pub fn split_url(split: &Split) -> Result<ObjectUrl> {
    ObjectUrl::parse(&split.url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_group_units_up_to_the_target() {
        assert_eq!(runs_by_bytes(&[10, 10, 10, 10], 20), vec![(0, 2), (2, 4)]);
        assert_eq!(runs_by_bytes(&[50, 5, 5], 20), vec![(0, 1), (1, 3)]);
        assert_eq!(runs_by_bytes(&[], 20), vec![(0, 0)]);
    }
}
