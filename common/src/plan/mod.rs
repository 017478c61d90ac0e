//! Planning: input URLs become tasks. CSV/JSONL files are cut into byte ranges of about the
//! partition size, Parquet into runs of row groups, Arrow IPC into runs of record batches;
//! compressed files (and CSV declared multiline) are read whole; small files are packed
//! together. Task `index` orders outputs: `part-00042` holds rows after `part-00041`'s.

mod sample;

pub use crate::format::compression::open_decoder;

use crate::format::{Compression, Format, detect, ipc, parquet};
use crate::report::RangeReport;
use crate::schema::CompiledSchema;
use crate::spec::JobConfig;
use crate::storage::{InputObject, ObjectUrl, Pin, ReadCounter, Storage};
use crate::{Error, Result};
use futures::StreamExt;
use sample::{
    SAMPLE_BYTES, csv_header, infer_text_schema, json_columns, parquet_schema, read_head,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

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
    /// The object as planned: every read of the task must find it so.
    #[serde(default, skip_serializing_if = "Pin::is_empty")]
    pub pin: Pin,
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
    /// A slice of a database table or query (the split's `url` names the database).
    Sql(crate::sql::SqlSlice),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub index: u32,
    pub splits: Vec<Split>,
}

/// What opening one object costs, in bytes of reading (a request's latency, as Spark's
/// `openCostInBytes`): packing weighs each small object as its size plus this, so ten thousand
/// tiny objects do not land in one task. A task fetches its small objects 64 at a time
/// (`task::prefetch`), so an open costs it a fraction of a request's latency: 256 KiB (about
/// 5 ms of reading at 50 MB/s) keeps a task's share of opens near its share of bytes.
const OPEN_COST: u64 = 256 * 1024;

/// Whether a text object is read whole by one task and planning needs nothing from it: with
/// a schema given (nothing to infer), a CSV with a header line (its task reads the header),
/// or JSON lines (their columns are the schema's). Planning then makes no request for it,
/// which for ten thousand small objects is ten thousand GETs fewer.
fn read_whole_without_head(
    job: &JobConfig,
    object: &InputObject,
    format: Format,
    compression: Compression,
    partition_size: u64,
) -> bool {
    // Small and plain: its task holds it in memory (fetched ahead), header line and all.
    let whole = object.size <= partition_size.min(SMALL_OBJECT) && compression == Compression::None;
    let readable = match format {
        Format::Csv => job.spec.csv.header,
        Format::Jsonl => !crate::format::json::may_be_array(object.url.file_name()),
        _ => false,
    };
    job.schema.is_some() && whole && readable
}

/// Objects up to this size are read whole into memory by their task (fetched ahead while the
/// task parses earlier ones).
pub const SMALL_OBJECT: u64 = 4 * 1024 * 1024;

/// Heads of text inputs read at once during planning (up to 1 MiB each).
const HEADS_AHEAD: usize = 16;
/// Parquet/Arrow footers read at once during planning: small reads, where the latency of each
/// request is the cost (ten thousand footers 16 at a time at 25 ms each would take 16 s).
const FOOTERS_AHEAD: usize = 64;

/// The smallest task `min_tasks` cuts input into: below it, the per-task cost outweighs the
/// parallelism.
const MIN_SPLIT: u64 = 8 * 1024 * 1024;

pub struct Plan {
    pub tasks: Vec<Task>,
    pub inputs: Vec<InputObject>,
    /// A database input: what it reads, and the snapshot every task must see.
    pub database: Option<DatabasePlan>,
}

pub struct DatabasePlan {
    /// `postgresql://user@host:port/db table public.users` (never a password).
    pub relation: String,
    pub snapshot: crate::sql::Snapshot,
}

/// Expand inputs, read what planning needs (CSV headers, Parquet footers, IPC footers), infer
/// the schema when none was given, and cut the work into tasks.
pub async fn plan_job(storage: &Storage, job: &mut JobConfig) -> Result<Plan> {
    if let Some(url) = job.spec.database_input() {
        let url = url.to_string();
        return plan_database(job, &url).await;
    }
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
    let total: u64 = inputs.iter().map(|i| i.size + OPEN_COST).sum();
    let mut partition_size = job.spec.partition_size.max(1);
    if let Some(slots) = job.spec.min_tasks.filter(|n| *n > 1).map(u64::from) {
        // One task per slot at least, when there is enough input to be worth splitting.
        partition_size = partition_size.min((total / slots).max(MIN_SPLIT));
        // And whole rounds of them: 3 tasks on 2 slots leave one slot idle for the last third
        // of the job.
        let rounds = total.div_ceil(partition_size).div_ceil(slots);
        let balanced = total.div_ceil(rounds * slots);
        if balanced >= MIN_SPLIT {
            partition_size = partition_size.min(balanced);
        }
    }
    let mut planner = Planner {
        partition_size,
        tasks: Vec::new(),
        pack: Vec::new(),
        pack_bytes: 0,
    };
    let mut schema = job.schema.clone();
    let kinds = inputs
        .iter()
        .map(|object| {
            let (detected, compression) = detect(object.url.file_name());
            let format = job.spec.input_format.or(detected).ok_or_else(|| {
                Error::config(format!(
                    "{}: cannot tell the format from the name; pass --input-format",
                    object.url
                ))
            })?;
            Ok((format, compression))
        })
        .collect::<Result<Vec<_>>>()?;
    // The heads of text inputs (CSV headers, JSON keys, the sample for inference) are read a
    // few at a time, in order: ten thousand small objects are not ten thousand GETs in a row.
    // (A plain loop, not iterator adapters: their closures would make the planning future
    // not `Send` for callers that spawn it.)
    // Parquet and Arrow footers likewise: ten thousand small Parquet files are not ten
    // thousand footer reads in a row either.
    let mut wanted = Vec::new();
    let mut parquet_wanted = Vec::new();
    let mut ipc_wanted = Vec::new();
    let mut head_free = Vec::with_capacity(inputs.len());
    for (object, (format, compression)) in inputs.iter().zip(&kinds) {
        let free = read_whole_without_head(job, object, *format, *compression, partition_size);
        head_free.push(free);
        match format {
            Format::Csv | Format::Jsonl if !free => {
                wanted.push(read_head(storage, object, *compression, SAMPLE_BYTES));
            }
            Format::Parquet => {
                let store = storage.store(&object.url)?;
                let mut file =
                    parquet::ObjectFile::new(store, &object.url, object.size, counter.clone())
                        .pinned(object.pin.clone());
                parquet_wanted.push(async move { parquet::row_groups(&mut file).await });
            }
            Format::Arrow => {
                let store = storage.store(&object.url)?;
                let (object, counter) = (object.clone(), counter.clone());
                ipc_wanted.push(async move {
                    ipc::read_footer(
                        store.as_ref(),
                        &object.url,
                        object.size,
                        &counter,
                        &object.pin,
                    )
                    .await
                });
            }
            _ => {}
        }
    }
    let mut heads = futures::stream::iter(wanted).buffered(HEADS_AHEAD);
    let mut parquet_footers = futures::stream::iter(parquet_wanted).buffered(FOOTERS_AHEAD);
    let mut ipc_footers = futures::stream::iter(ipc_wanted).buffered(FOOTERS_AHEAD);
    let unread =
        |url: &str| Error::config(format!("{url}: its footer was not read (a planning bug)"));
    for ((object, &(format, compression)), free) in inputs.iter().zip(&kinds).zip(head_free) {
        let url = object.url.to_string();
        let split = |columns: Option<Vec<String>>, kind| Split {
            url: url.clone(),
            size: object.size,
            format,
            compression,
            columns,
            kind,
            pin: object.pin.clone(),
        };
        match format {
            // Nothing to learn from its head: the task reads its CSV header itself.
            Format::Csv | Format::Jsonl if free => {
                let columns = match format {
                    Format::Csv => None,
                    _ => json_columns(&[], true, schema.as_deref(), false).into(),
                };
                planner.add_small(
                    split(columns, SplitKind::Whole),
                    object.size > planner.partition_size,
                );
            }
            Format::Csv | Format::Jsonl => {
                let (head, at_eof) = heads.next().await.ok_or_else(|| {
                    Error::config(format!("{url}: its head was not read (a planning bug)"))
                })??;
                let (columns, is_array) = match format {
                    Format::Csv => {
                        let (names, _) =
                            csv_header(storage, object, compression, &head, at_eof, job).await?;
                        (names, false)
                    }
                    _ => {
                        // Only a `.json` document may be one array; JSONL is a value per line.
                        let is_array = crate::format::json::may_be_array(&url)
                            && head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
                        (
                            json_columns(&head, at_eof, schema.as_deref(), is_array),
                            is_array,
                        )
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
                let groups = parquet_footers.next().await.ok_or_else(|| unread(&url))??;
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
                let footer = ipc_footers.next().await.ok_or_else(|| unread(&url))??;
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
                    let store = storage.store(&object.url)?;
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
    drop((heads, parquet_footers, ipc_footers));
    // Without a schema, columns come from the inputs; inputs that are all empty name none, and
    // a part without columns is a file no reader opens.
    let schema = schema.filter(|s| !s.fields().is_empty()).ok_or_else(|| {
        Error::config(format!(
            "{}: no columns to write (the input is empty); pass --schema to write its columns",
            inputs
                .first()
                .map_or_else(|| "the input".to_string(), |i| i.url.to_string())
        ))
    })?;
    refuse_unwritable(&schema, job, inputs.first().map(|i| i.url.to_string()))?;
    job.schema = Some(schema);
    Ok(Plan {
        tasks: planner.tasks,
        inputs,
        database: None,
    })
}

/// A database input: one snapshot, slices of the table or query, the table's types as the
/// schema unless one was given. Each slice is a task of its own.
async fn plan_database(job: &mut JobConfig, url: &str) -> Result<Plan> {
    let spec = &job.spec;
    let request = crate::sql::SqlRequest {
        table: spec.table.first().cloned(),
        query: spec.query.clone(),
        partition_column: spec.partition_column.clone(),
        since_column: spec.since_column.clone(),
        since: spec.since.clone(),
        until: spec.until.clone(),
        partition_size: spec.partition_size,
        min_tasks: spec.min_tasks,
    };
    let planned = crate::sql::plan_sql(url, &request).await?;
    // The range this run exports is fixed now: a new snapshot reads the same one.
    job.spec.until = planned.high_water.clone();
    let schema = match &job.schema {
        Some(given) => given.clone(),
        None => Arc::new(CompiledSchema::from_arrow(&planned.schema)),
    };
    refuse_unwritable(&schema, job, Some(planned.relation.clone()))?;
    job.schema = Some(schema);
    let tasks = planned
        .slices
        .into_iter()
        .zip(planned.sizes)
        .enumerate()
        .map(|(index, (slice, size))| Task {
            index: index as u32,
            splits: vec![Split {
                url: url.to_string(),
                size,
                // Rows arrive typed, as from an Arrow file.
                format: Format::Arrow,
                compression: Compression::None,
                columns: None,
                kind: SplitKind::Sql(slice),
                pin: Pin::default(),
            }],
        })
        .collect();
    Ok(Plan {
        tasks,
        inputs: Vec::new(),
        database: Some(DatabasePlan {
            relation: planned.relation,
            snapshot: planned.snapshot,
        }),
    })
}

/// Types the output cannot hold are refused now, naming the column, not at write time.
fn refuse_unwritable(
    schema: &CompiledSchema,
    job: &JobConfig,
    input: Option<String>,
) -> Result<()> {
    for field in schema.arrow_schema().fields() {
        if let Some(why) = crate::format::write::unwritable(field.data_type(), job.output.format) {
            return Err(Error::config(format!(
                "{}: column '{}' ({}) is {why}; choose another --format, or give a --schema",
                input.as_deref().unwrap_or("the input"),
                field.name(),
                field.data_type(),
            )));
        }
    }
    Ok(())
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
        let weight = split.size + OPEN_COST;
        if alone || (!self.pack.is_empty() && self.pack_bytes + weight > self.partition_size) {
            self.flush_pack();
        }
        if alone {
            self.push_task(vec![split]);
            return;
        }
        self.pack_bytes += weight;
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

/// The lines of `url` before byte `start`, if the counted `ranges` cover `[0, start)` without
/// a gap (while a job runs, some are not counted yet): what a range starting at `start` adds
/// to its own line numbers.
pub fn lines_before<'a>(
    ranges: impl IntoIterator<Item = &'a RangeReport>,
    url: &str,
    start: u64,
) -> Option<u64> {
    let mut before: Vec<&RangeReport> = ranges
        .into_iter()
        .filter(|r| r.url == url && r.start < start)
        .collect();
    before.sort_by_key(|r| r.start);
    let (mut at, mut lines) = (0, 0);
    for r in before {
        if r.start != at {
            return None;
        }
        at = r.end;
        lines += r.outcome.lines;
    }
    (at == start).then_some(lines)
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
