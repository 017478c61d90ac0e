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
use crate::storage::{InputListing, InputObject, ObjectUrl, Pin, ReadCounter, Storage};
use crate::{Error, Result};
use futures::StreamExt;
use sample::{
    SAMPLE_BYTES, csv_header, infer_text_schema, json_columns, parquet_schema, read_head,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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

/// Whether a text object is read whole by one task and planning needs nothing from it: plain
/// (not compressed) and no bigger than a partition, with a schema given (nothing to infer), a
/// CSV with a header line (its task reads the header), or JSON lines (their columns are the
/// schema's). Planning then makes no request for it: for ten thousand objects, ten thousand
/// GETs fewer before the first task can start. (Objects cut into ranges need the header now:
/// every range but the first is read without it.)
fn read_whole_without_head(
    job: &JobConfig,
    schema_given: bool,
    object: &InputObject,
    format: Format,
    compression: Compression,
    partition_size: u64,
) -> bool {
    // Its task reads it from the start, header line and all (small ones fetched ahead).
    let whole = object.size <= partition_size && compression == Compression::None;
    let readable = match format {
        Format::Csv => job.spec.csv.header,
        Format::Jsonl => !crate::format::json::may_be_array(object.url.file_name()),
        _ => false,
    };
    schema_given && whole && readable
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

/// Tasks planned after the first ones: the objects of the next listing pages.
pub struct PlanChunk {
    pub tasks: Vec<Task>,
    pub inputs: Vec<InputObject>,
    /// Every input is planned: no chunk follows.
    pub last: bool,
}

/// Expand inputs, read what planning needs (CSV headers, Parquet footers, IPC footers), infer
/// the schema when none was given, and cut all the work into tasks.
pub async fn plan_job(storage: &Storage, job: &mut JobConfig) -> Result<Plan> {
    let (mut plan, rest) = start_plan(storage, job).await?;
    if let Some(mut rest) = rest {
        while let Some(chunk) = rest.next().await? {
            plan.tasks.extend(chunk.tasks);
            plan.inputs.extend(chunk.inputs);
        }
    }
    Ok(plan)
}

/// Plan the first tasks of a job. Inputs small enough to list quickly (under two rounds of
/// the worker slots at the partition size) are planned whole, and nothing more comes back;
/// past that, the first tasks come back with an `ObjectPlanner` that plans the rest a listing
/// page at a time, so a million objects' tasks run while their listing goes on. The schema is
/// known (given, or inferred from the first files) and checked before this returns.
pub async fn start_plan(
    storage: &Storage,
    job: &mut JobConfig,
) -> Result<(Plan, Option<ObjectPlanner>)> {
    if let Some(url) = job.spec.database_input() {
        let url = url.to_string();
        return Ok((plan_database(job, &url).await?, None));
    }
    let mut planner = ObjectPlanner::new(storage.clone(), job.clone(), Vec::new(), 0);
    let slots = u64::from(job.spec.min_tasks.unwrap_or(1).max(1));
    let spec_size = job.spec.partition_size.max(1);
    let stream_after = spec_size.saturating_mul(slots).saturating_mul(2);
    let mut held = Vec::new();
    let mut total = 0u64;
    let mut listed_all = false;
    // (A listing already in memory, such as a local directory's, is planned at once.)
    while total < stream_after || planner.listing_in_hand() {
        match planner.list_more().await? {
            Some(batch) => {
                total += batch.iter().map(|i| i.size + OPEN_COST).sum::<u64>();
                held.extend(batch);
            }
            None => {
                listed_all = true;
                break;
            }
        }
    }
    let mut partition_size = spec_size;
    if listed_all && let Some(slots) = job.spec.min_tasks.filter(|n| *n > 1).map(u64::from) {
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
    planner.cut.partition_size = partition_size;
    planner.plan_objects(&held).await?;
    drop(held);
    // Without a schema, the columns come from the first inputs that have any.
    while !listed_all && planner.schema.is_none() {
        match planner.list_more().await? {
            Some(batch) => planner.plan_objects(&batch).await?,
            None => listed_all = true,
        }
    }
    if listed_all {
        planner.cut.flush_pack();
        planner.done = true;
    }
    // Inputs that are all empty name no columns, and a part without columns is a file no
    // reader opens.
    let first = planner.inputs.first().map(|i| i.url.to_string());
    let schema = planner
        .schema
        .clone()
        .filter(|s| !s.fields().is_empty())
        .ok_or_else(|| {
            Error::config(format!(
                "{}: no columns to write: the rows read to infer a schema name no field (an \
                 empty input, or JSON lines that hold no object with a member); pass --schema",
                first.as_deref().unwrap_or("the input")
            ))
        })?;
    refuse_unwritable(&schema, job, first)?;
    job.schema = Some(schema.clone());
    planner.job.schema = Some(schema);
    let plan = Plan {
        tasks: std::mem::take(&mut planner.cut.tasks),
        inputs: std::mem::take(&mut planner.inputs),
        database: None,
    };
    Ok((plan, (!planner.done).then_some(planner)))
}

/// Plans object inputs a listing page at a time (see `start_plan`), and resumes a job's
/// planning under a new coordinator (`resume`).
pub struct ObjectPlanner {
    storage: Storage,
    job: JobConfig,
    texts: std::vec::IntoIter<String>,
    listing: Option<InputListing>,
    /// Objects already planned (only kept when inputs may overlap, or planning resumed).
    seen: Option<HashSet<String>>,
    counter: ReadCounter,
    cut: Planner,
    schema: Option<Arc<CompiledSchema>>,
    /// A schema was given (or planning resumed with the one stored): nothing to infer.
    schema_given: bool,
    /// Objects planned since the last chunk.
    inputs: Vec<InputObject>,
    done: bool,
}

impl ObjectPlanner {
    fn new(storage: Storage, job: JobConfig, planned: Vec<String>, next_index: u32) -> Self {
        let texts = job.spec.inputs.clone();
        let seen = (texts.len() > 1 || !planned.is_empty()).then(|| planned.into_iter().collect());
        Self {
            storage,
            texts: texts.into_iter(),
            listing: None,
            seen,
            counter: Default::default(),
            cut: Planner {
                partition_size: job.spec.partition_size.max(1),
                tasks: Vec::new(),
                next_index,
                pack: Vec::new(),
                pack_bytes: 0,
            },
            schema: job.schema.clone(),
            schema_given: job.schema.is_some(),
            inputs: Vec::new(),
            done: false,
            job,
        }
    }

    /// Go on planning a job whose first tasks, up to `next_index`, are stored: the objects
    /// they read (`planned`) are skipped, the rest planned at the job's partition size with
    /// its stored schema.
    pub fn resume(
        storage: Storage,
        job: JobConfig,
        planned: impl IntoIterator<Item = String>,
        next_index: u32,
    ) -> Self {
        Self::new(storage, job, planned.into_iter().collect(), next_index)
    }

    /// The tasks of the next listing page(s); the last chunk says so, and `None` follows it.
    pub async fn next(&mut self) -> Result<Option<PlanChunk>> {
        if self.done {
            return Ok(None);
        }
        loop {
            match self.list_more().await? {
                Some(batch) => {
                    self.plan_objects(&batch).await?;
                    if !self.cut.tasks.is_empty() {
                        return Ok(Some(self.chunk(false)));
                    }
                }
                None => {
                    self.cut.flush_pack();
                    self.done = true;
                    return Ok(Some(self.chunk(true)));
                }
            }
        }
    }

    /// The index the next planned task will take.
    pub fn next_task(&self) -> u32 {
        self.cut.next_index
    }

    fn chunk(&mut self, last: bool) -> PlanChunk {
        PlanChunk {
            tasks: std::mem::take(&mut self.cut.tasks),
            inputs: std::mem::take(&mut self.inputs),
            last,
        }
    }

    /// Whether the rest of the listing is in memory (every input opened, the last listed).
    fn listing_in_hand(&self) -> bool {
        self.texts.len() == 0 && self.listing.as_ref().is_none_or(InputListing::in_hand)
    }

    /// The next listed objects not planned before, in order; `None` once all are listed.
    async fn list_more(&mut self) -> Result<Option<Vec<InputObject>>> {
        loop {
            let Some(listing) = self.listing.as_mut() else {
                let Some(text) = self.texts.next() else {
                    return Ok(None);
                };
                self.listing = Some(InputListing::open(&self.storage, &text).await?);
                continue;
            };
            let Some(batch) = listing.next_batch().await? else {
                self.listing = None;
                continue;
            };
            let fresh: Vec<InputObject> = match self.seen.as_mut() {
                Some(seen) => batch
                    .into_iter()
                    .filter(|o| seen.insert(o.url.to_string()))
                    .collect(),
                None => batch,
            };
            if !fresh.is_empty() {
                return Ok(Some(fresh));
            }
        }
    }

    /// Cut `objects` (in order, after every object planned before) into tasks; the last small
    /// ones may stay in the open pack for the next call.
    async fn plan_objects(&mut self, objects: &[InputObject]) -> Result<()> {
        self.inputs.extend_from_slice(objects);
        let Self {
            storage,
            job,
            cut: planner,
            schema,
            counter,
            schema_given,
            ..
        } = self;
        let (storage, job): (&Storage, &JobConfig) = (storage, job);
        let partition_size = planner.partition_size;
        let kinds = objects
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
        let mut head_free = Vec::with_capacity(objects.len());
        for (object, (format, compression)) in objects.iter().zip(&kinds) {
            let free = read_whole_without_head(
                job,
                *schema_given,
                object,
                *format,
                *compression,
                partition_size,
            );
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
        for ((object, &(format, compression)), free) in objects.iter().zip(&kinds).zip(head_free) {
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
                                csv_header(storage, object, compression, &head, at_eof, job)
                                    .await?;
                            (names, false)
                        }
                        _ => {
                            // Only a `.json` input may be one document (an array, or one
                            // object over several lines); JSONL is a value per line.
                            let is_array = crate::format::json::may_be_array(&url)
                                && crate::format::json::is_document(&head);
                            (
                                json_columns(&head, at_eof, schema.as_deref(), is_array),
                                is_array,
                            )
                        }
                    };
                    // Infer from the first file that has columns (an empty file says nothing).
                    if schema.is_none() && !columns.is_empty() {
                        *schema = Some(Arc::new(infer_text_schema(
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
                        *schema = Some(Arc::new(CompiledSchema::from_arrow(
                            &parquet_schema(storage, object, counter).await?,
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
                                .map(|(start, end)| {
                                    split(None, SplitKind::RowGroups { start, end })
                                })
                                .collect(),
                        );
                    }
                }
                Format::Arrow => {
                    let footer = ipc_footers.next().await.ok_or_else(|| unread(&url))??;
                    if schema.is_none() {
                        *schema = Some(Arc::new(CompiledSchema::from_arrow(&footer.schema)));
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
                            ipc::batch_rows(store.as_ref(), &object.url, &footer, counter).await?;
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
        drop((heads, parquet_footers, ipc_footers));
        Ok(())
    }
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
    /// The index the next task takes (tasks are numbered across chunks).
    next_index: u32,
    pack: Vec<Split>,
    pack_bytes: u64,
}

impl Planner {
    fn push_task(&mut self, splits: Vec<Split>) {
        let index = self.next_index;
        self.next_index += 1;
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
    use object_store::{ObjectStoreExt, PutPayload};

    /// 2,500 small CSV objects (one row each) under `memory://<bucket>/in/`, and a job over
    /// them at 64 MiB partitions for 2 worker slots.
    async fn many_objects(bucket: &str) -> (Storage, JobConfig, Vec<String>) {
        let storage = Storage::new();
        let store = storage
            .store(&ObjectUrl::parse(&format!("memory://{bucket}/")).unwrap())
            .unwrap();
        let mut urls = Vec::new();
        for i in 0..2500 {
            let key = format!("in/obj-{i:05}.csv");
            let body = format!("id\n{i}\n");
            store
                .put(&key.as_str().into(), PutPayload::from(body))
                .await
                .unwrap();
            urls.push(format!("memory://{bucket}/{key}"));
        }
        let spec: crate::spec::JobSpec = serde_json::from_value(serde_json::json!({
            "input": format!("memory://{bucket}/in/"),
            "output": format!("memory://{bucket}/out/"),
            "schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
            "partition_size": "64MiB",
            "min_tasks": 2,
        }))
        .unwrap();
        (storage, JobConfig::new("j".into(), spec).unwrap(), urls)
    }

    /// The objects tasks read, in task order, checking the tasks are numbered from `first`
    /// without a gap.
    fn objects_of(tasks: &[Task], first: u32) -> Vec<String> {
        for (n, task) in tasks.iter().enumerate() {
            assert_eq!(task.index, first + n as u32);
        }
        tasks
            .iter()
            .flat_map(|t| t.splits.iter().map(|s| s.url.clone()))
            .collect()
    }

    #[tokio::test]
    async fn a_long_listing_is_planned_a_page_at_a_time_every_object_once_in_order() {
        let (storage, mut job, urls) = many_objects("plan-pages").await;
        let (first, more) = start_plan(&storage, &mut job).await.unwrap();
        let mut more = more.expect("past two rounds of slots, planning goes on as tasks run");
        assert!(job.schema.is_some());
        assert!(
            !first.tasks.is_empty() && first.inputs.len() < urls.len(),
            "the first tasks come before the listing ends ({} of {} listed)",
            first.inputs.len(),
            urls.len()
        );
        let mut tasks = first.tasks;
        let mut inputs = first.inputs.len();
        let mut chunks = 0;
        while let Some(chunk) = more.next().await.unwrap() {
            chunks += 1;
            inputs += chunk.inputs.len();
            tasks.extend(chunk.tasks);
            if chunk.last {
                break;
            }
        }
        assert!(more.next().await.unwrap().is_none());
        assert!(chunks >= 2, "{chunks} chunks");
        assert_eq!(inputs, urls.len());
        assert_eq!(
            objects_of(&tasks, 0),
            urls,
            "every object once, in key order"
        );
        // Each task is about the partition size of (size + open cost): none is cut smaller
        // for the worker slots, as with a short listing.
        assert!(
            tasks.len() >= 9 && tasks.len() <= 11,
            "{} tasks",
            tasks.len()
        );

        // A new coordinator resuming after the first tasks skips what they read, numbers
        // on from them and plans the rest: together, every object once.
        let (first, more) = start_plan(&storage, &mut job).await.unwrap();
        let next = more.unwrap().next_task();
        assert_eq!(next as usize, first.tasks.len());
        let done = objects_of(&first.tasks, 0);
        let mut resumed = ObjectPlanner::resume(storage.clone(), job, done.clone(), next);
        let mut rest = Vec::new();
        while let Some(chunk) = resumed.next().await.unwrap() {
            rest.extend(chunk.tasks);
        }
        let mut all = done;
        all.extend(objects_of(&rest, next));
        assert_eq!(all, urls);
    }

    #[tokio::test]
    async fn a_listing_of_one_page_is_planned_at_once_whatever_its_size() {
        // One 12 MiB CSV under a prefix, 1 MiB partitions on 2 slots: far past two rounds,
        // but the listing ended with its first page, so the whole job is planned at once.
        let storage = Storage::new();
        let root = ObjectUrl::parse("memory://plan-one-page/").unwrap();
        let mut body = String::from("id\n");
        while body.len() < 12 * 1024 * 1024 {
            body.push_str("123456789\n");
        }
        let store = storage.store(&root).unwrap();
        store
            .put(&"in/big.csv".into(), PutPayload::from(body))
            .await
            .unwrap();
        let spec: crate::spec::JobSpec = serde_json::from_value(serde_json::json!({
            "input": "memory://plan-one-page/in/",
            "output": "memory://plan-one-page/out/",
            "schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
            "partition_size": "1MiB",
            "min_tasks": 2,
        }))
        .unwrap();
        let mut job = JobConfig::new("j".into(), spec).unwrap();
        let (plan, more) = start_plan(&storage, &mut job).await.unwrap();
        assert!(more.is_none(), "planned at once");
        assert!(plan.tasks.len() >= 12, "{} tasks", plan.tasks.len());
    }

    #[tokio::test]
    async fn a_short_listing_is_planned_at_once_a_task_per_slot_at_least() {
        let (storage, mut job, urls) = many_objects("plan-short").await;
        job.spec.partition_size = 1024 * 1024 * 1024;
        let (plan, more) = start_plan(&storage, &mut job).await.unwrap();
        assert!(more.is_none());
        // 2,500 x (about 256 KiB) under one partition, for 2 slots.
        assert!(plan.tasks.len() >= 2, "{}", plan.tasks.len());
        assert_eq!(objects_of(&plan.tasks, 0), urls);
    }

    #[test]
    fn runs_group_units_up_to_the_target() {
        assert_eq!(runs_by_bytes(&[10, 10, 10, 10], 20), vec![(0, 2), (2, 4)]);
        assert_eq!(runs_by_bytes(&[50, 5, 5], 20), vec![(0, 1), (1, 3)]);
        assert_eq!(runs_by_bytes(&[], 20), vec![(0, 0)]);
    }
}
