//! The job spec: what users write in `job.yaml` (or pass as `zoopipectl run` flags), and the
//! resolved [`JobConfig`] every task is executed against.

use crate::format::write::WriteOptions;
use crate::format::{CsvOptions, Format, detect};
use crate::schema::CompiledSchema;
use crate::storage::ObjectUrl;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub const DEFAULT_PARTITION_SIZE: u64 = 128 * 1024 * 1024;
pub const DEFAULT_BATCH_SIZE: usize = 64 * 1024;

/// A job as users write it (YAML or JSON). Field names are the README's.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// A daily job's name: with `vars`, its idempotency key in the fleet (a job that already
    /// succeeded is not run again; one that failed resumes with the tasks that did not commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The `${name}` variables the spec was filled with (recorded for the idempotency key).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// W3C `traceparent` of the job's span (set by the coordinator): every task attempt's
    /// span is its child, so one job is one trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_parent: Option<String>,
    /// Input URLs: objects, prefixes ending in `/`, or globs.
    #[serde(alias = "input", deserialize_with = "one_or_many")]
    pub inputs: Vec<String>,
    /// A database input (`postgresql://…`): the tables to export. Several tables make one job
    /// each, writing to `<output>/<table>/` (`JobSpec::per_table`).
    #[serde(
        default,
        alias = "tables",
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub table: Vec<String>,
    /// A database input: a query whose rows to export (one task, or `partition_column` ranges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Split a table or query by value ranges of this numeric, date or timestamp column, with
    /// bounds found at planning (otherwise a table is split into ctid page ranges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_column: Option<String>,
    /// Incremental loads of a named job: each successful run records the largest value of this
    /// column it exported, and the next run exports only rows above it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_column: Option<String>,
    /// The first lower bound of `since_column` (or a backfill's): rows above it are exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The upper bound of `since_column` (rows at or below it): set by planning to the
    /// largest value under the job's snapshot, so a new snapshot (failover) exports the same
    /// range and the run's mark is known wherever it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Input format; from each file's extension when absent.
    #[serde(default)]
    pub input_format: Option<Format>,
    #[serde(default)]
    pub csv: CsvOptions,
    /// Output prefix (ends with `/`: part files) or single object (`.../users.parquet`).
    pub output: String,
    /// Output format; from the output file's extension when absent, else Parquet.
    #[serde(default)]
    pub format: Option<Format>,
    #[serde(default)]
    pub write: WriteOptions,
    /// JSON Schema: a file path (relative to the spec file) or the schema itself. None = infer.
    #[serde(default)]
    pub schema: Option<SchemaSource>,
    /// Where invalid rows go (prefix or single object). Default: `<output>/_errors/`.
    #[serde(default)]
    pub errors: Option<String>,
    /// Format of error outputs when `errors` is a prefix. Default JSONL.
    #[serde(default)]
    pub error_format: Option<Format>,
    /// Target bytes of input per task.
    #[serde(default = "default_partition_size", with = "size_text")]
    pub partition_size: u64,
    /// Cut the input into at least this many tasks when it is big enough (never below 8 MiB a
    /// task), so every worker slot gets work: `zoopipectl run` sets its `--workers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tasks: Option<u32>,
    /// Rows per Arrow batch inside a task.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Replace whatever the output already holds (otherwise a non-empty output is refused).
    #[serde(default)]
    pub overwrite: bool,
    /// Attempts per task for retryable failures.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Fail the job before commit when invalid rows exceed this share (0.0–1.0) of all rows.
    #[serde(default)]
    pub max_error_rate: Option<f64>,
}

fn default_partition_size() -> u64 {
    DEFAULT_PARTITION_SIZE
}
fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}
fn default_max_attempts() -> u32 {
    4
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum SchemaSource {
    Path(String),
    Inline(serde_json::Value),
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Sizes as numbers of bytes or text like `64MiB`, `128 MB`, `1GiB`.
pub mod size_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum NumOrText {
            Num(u64),
            Text(String),
        }
        match NumOrText::deserialize(d)? {
            NumOrText::Num(n) => Ok(n),
            NumOrText::Text(t) => super::parse_size(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// Parse `64MiB`, `128MB`, `1 GiB`, `1000` into bytes.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let size: bytesize::ByteSize = text
        .trim()
        .parse()
        .map_err(|e| format!("'{text}' is not a size like 64MiB: {e}"))?;
    if size.as_u64() == 0 {
        return Err(format!("'{text}': size must be positive"));
    }
    Ok(size.as_u64())
}

impl JobSpec {
    /// Read a YAML or JSON spec file (`${date}` is today, UTC); relative schema paths are
    /// resolved against its folder.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_file_with(path, &crate::spec_vars::with_defaults(&[]))
    }

    /// Read a spec file, filling its `${name}` variables from `vars` first.
    pub fn from_file_with(path: &Path, vars: &BTreeMap<String, String>) -> Result<Self> {
        let raw = std::fs::read_to_string(path)
            .map_err(|e| Error::config(format!("{}: {e}", path.display())))?;
        let mut used = BTreeMap::new();
        let text = crate::spec_vars::substitute(&raw, vars, &mut used)
            .map_err(|e| Error::config(format!("{}: {e}", path.display())))?;
        let mut spec: JobSpec = serde_norway::from_str(&text)
            .map_err(|e| Error::config(format!("{}: {e}", path.display())))?;
        spec.vars.extend(used);
        // Paths in a spec are relative to the spec file, as in kustomize and compose, so a
        // spec runs the same from any directory.
        let dir = path.parent().unwrap_or(Path::new(""));
        spec.rebase_local_paths(dir);
        Ok(spec)
    }

    /// Where an incremental job's mark is kept: its name, and its table when it names one
    /// (each table of a multi-table export has its own).
    pub fn mark_name(&self) -> Option<String> {
        let name = self.name.as_ref()?;
        self.since_column.as_ref()?;
        Some(match self.table.first() {
            Some(table) if self.table.len() == 1 => format!("{name}/{table}"),
            _ => name.clone(),
        })
    }

    /// The database input, if the job reads one (`postgresql://` or `postgres://`).
    pub fn database_input(&self) -> Option<&str> {
        self.inputs
            .iter()
            .map(String::as_str)
            .find(|i| crate::sql::is_sql_url(i))
    }

    /// One spec per table when a database input names several: each table goes to
    /// `<output>/<table>/` (errors to its `_errors/`), a named job gets one name per table.
    /// `${table}` in the output (or errors) is the table's name: `s3://lake/raw/${table}.parquet`.
    pub fn per_table(&self) -> Vec<JobSpec> {
        if self.table.is_empty() {
            return vec![self.clone()];
        }
        let several = self.table.len() > 1;
        self.table
            .iter()
            .map(|table| {
                let mut spec = self.clone();
                let folder = table.replace(['"', '/'], "");
                spec.table = vec![table.clone()];
                spec.output = table_location(&self.output, &folder, several);
                spec.errors = self
                    .errors
                    .as_deref()
                    .map(|e| table_location(e, &folder, several));
                if let Some(value) = spec.vars.get_mut("table") {
                    *value = folder.clone();
                } else if several {
                    spec.name = self.name.as_ref().map(|n| format!("{n}/{folder}"));
                }
                spec
            })
            .collect()
    }

    /// Every local path (inputs, output, errors, schema file) that is relative becomes
    /// relative to `base`; URLs and absolute paths stay as they are.
    pub fn rebase_local_paths(&mut self, base: &Path) {
        let rebase = |location: &mut String| {
            if !location.contains("://") && Path::new(location.as_str()).is_relative() {
                *location = base.join(location.as_str()).to_string_lossy().into_owned();
            }
        };
        self.inputs.iter_mut().for_each(rebase);
        rebase(&mut self.output);
        if let Some(errors) = self.errors.as_mut() {
            rebase(errors);
        }
        if let Some(SchemaSource::Path(p)) = self.schema.as_mut() {
            rebase(p);
        }
    }

    /// Every local path made absolute (from the current directory): a spec sent to a fleet is
    /// read by other processes, which have other working directories.
    pub fn absolutize_local_paths(&mut self) -> Result<()> {
        let cwd = std::env::current_dir()
            .map_err(|e| Error::config(format!("the current directory: {e}")))?;
        self.rebase_local_paths(&cwd);
        Ok(())
    }

    /// Load the schema it names (file or inline); `None` when types are to be inferred.
    pub fn load_schema(&self) -> Result<Option<CompiledSchema>> {
        match &self.schema {
            None => Ok(None),
            Some(SchemaSource::Inline(v)) => Ok(Some(CompiledSchema::from_json_schema(v)?)),
            Some(SchemaSource::Path(p)) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| Error::config(format!("schema {p}: {e}")))?;
                CompiledSchema::from_json_str(&text)
                    .map(Some)
                    .map_err(|e| Error::config(format!("schema {p}: {e}")))
            }
        }
    }
}

/// Where one table of several goes: `${table}` filled in, else a folder of its own.
fn table_location(location: &str, table: &str, several: bool) -> String {
    if location.contains("${table}") {
        location.replace("${table}", table)
    } else if several {
        format!("{}/{table}/", location.trim_end_matches('/'))
    } else {
        location.to_string()
    }
}

/// A database input reads one table or one query, alone; its password (if the URL has one)
/// stays in this process: the spec keeps the URL without it.
fn check_database_input(spec: &mut JobSpec) -> Result<()> {
    let sql_fields = !spec.table.is_empty()
        || spec.query.is_some()
        || spec.partition_column.is_some()
        || spec.since_column.is_some();
    let Some(position) = spec.inputs.iter().position(|i| crate::sql::is_sql_url(i)) else {
        if sql_fields {
            return Err(Error::config(
                "table, query, partition_column and since_column need a postgresql:// input",
            ));
        }
        return Ok(());
    };
    if spec.inputs.len() > 1 {
        return Err(Error::config(
            "a database input is read alone: give one postgresql:// URL and no other input",
        ));
    }
    spec.inputs[position] = crate::sql::remember_password(&spec.inputs[position])?;
    match (spec.table.len(), &spec.query) {
        (0, None) => Err(Error::config(format!(
            "{}: name what to export with --table NAME or --query SQL",
            spec.inputs[position]
        ))),
        (n, Some(_)) if n > 0 => Err(Error::config("give either --table or --query, not both")),
        (n, _) if n > 1 => Err(Error::config(
            "several tables make several jobs: split the spec with JobSpec::per_table first",
        )),
        _ if spec.since.is_some() && spec.since_column.is_none() => {
            Err(Error::config("--since needs --since-column"))
        }
        _ => Ok(()),
    }
}

/// Where one kind of output goes.
#[derive(Clone, Debug)]
pub struct OutputTarget {
    /// The prefix that gets part files, or the single object.
    pub url: ObjectUrl,
    pub format: Format,
    /// True when `url` names one object that the parts are merged into at commit.
    pub single_file: bool,
}

impl OutputTarget {
    fn resolve(text: &str, format: Option<Format>, default: Format) -> Result<Self> {
        let url = ObjectUrl::parse(text)?;
        if url.is_prefix() {
            return Ok(Self {
                url,
                format: format.unwrap_or(default),
                single_file: false,
            });
        }
        match (detect(url.file_name()).0, format) {
            (Some(ext), Some(given)) if ext != given => Err(Error::config(format!(
                "{text}: the extension says {ext} but the format is {given}"
            ))),
            (Some(ext), _) => Ok(Self {
                url,
                format: ext,
                single_file: true,
            }),
            (None, _) if url.file_name().contains('.') => Err(Error::config(format!(
                "{text}: unknown output extension (use .parquet, .csv, .jsonl or .arrow for one file, or end the URL with '/' for part files)"
            ))),
            // No extension at all: a prefix the user forgot to end with '/'.
            (None, given) => Ok(Self {
                url: url.with_key(format!("{}/", url.key())),
                format: given.unwrap_or(default),
                single_file: false,
            }),
        }
    }

    /// Where task `index`'s part goes before commit.
    pub fn part_url(&self, job_id: &str, index: u32) -> ObjectUrl {
        let name = format!("part-{index:05}.{}", self.format.extension());
        if self.single_file {
            self.staging(job_id).join(&name)
        } else {
            self.url.join(&name)
        }
    }

    /// A hidden prefix for parts that are merged or rewritten at commit.
    pub fn staging(&self, job_id: &str) -> ObjectUrl {
        let base = if self.single_file {
            self.url.parent()
        } else {
            self.url.clone()
        };
        base.join(&format!("_zoopipe_staging/{job_id}/"))
    }

    /// Where `_report.json` / `_SUCCESS` style markers go: `name` in the prefix, or beside the single file.
    pub fn marker(&self, name: &str) -> ObjectUrl {
        if self.single_file {
            let file = self.url.file_name();
            self.url
                .parent()
                .join(&format!("_{file}.{}", name.trim_start_matches('_')))
        } else {
            self.url.join(name)
        }
    }
}

/// A validated job, ready to plan and run.
#[derive(Clone)]
pub struct JobConfig {
    pub job_id: String,
    pub spec: JobSpec,
    pub output: OutputTarget,
    pub errors: OutputTarget,
    /// None until planning has inferred it (no schema given).
    pub schema: Option<Arc<CompiledSchema>>,
}

impl JobConfig {
    pub fn new(job_id: String, mut spec: JobSpec) -> Result<Self> {
        if spec.inputs.is_empty() {
            return Err(Error::config("no input given"));
        }
        if spec.batch_size == 0 {
            return Err(Error::config("batch_size must be positive"));
        }
        if spec.write.row_group_size == 0 {
            return Err(Error::config("row_group_size must be positive"));
        }
        if let Some(rate) = spec.max_error_rate
            && !(0.0..=1.0).contains(&rate)
        {
            return Err(Error::config(format!(
                "max_error_rate {rate} must be between 0 and 1 (a share of rows)"
            )));
        }
        if spec.max_attempts == 0 {
            return Err(Error::config("max_attempts must be at least 1"));
        }
        // An escape equal to the quote means doubled quotes, which is how quotes are read
        // without an escape (csv-core's escape mode would read `""` otherwise).
        if spec.csv.escape == Some(spec.csv.quote) {
            spec.csv.escape = None;
        }
        spec.csv.check()?;
        let output = OutputTarget::resolve(&spec.output, spec.format, Format::Parquet)?;
        let errors = match &spec.errors {
            Some(e) => OutputTarget::resolve(e, spec.error_format, Format::Jsonl)?,
            None if output.single_file => {
                let stem = output
                    .url
                    .file_name()
                    .split('.')
                    .next()
                    .unwrap_or("output")
                    .to_string();
                let format = spec.error_format.unwrap_or(Format::Jsonl);
                OutputTarget {
                    url: output
                        .url
                        .parent()
                        .join(&format!("{stem}_errors.{}", format.extension())),
                    format,
                    single_file: true,
                }
            }
            None => OutputTarget {
                url: output.url.join("_errors/"),
                format: spec.error_format.unwrap_or(Format::Jsonl),
                single_file: false,
            },
        };
        if [Some(&spec.output), spec.errors.as_ref()]
            .into_iter()
            .flatten()
            .any(|l| l.contains("${table}"))
        {
            return Err(Error::config(
                "${table} in the output names each table of a database input: give --table",
            ));
        }
        check_database_input(&mut spec)?;
        for input in spec.inputs.iter().filter(|i| !crate::sql::is_sql_url(i)) {
            ObjectUrl::parse(input)?;
        }
        // `.tsv` inputs are tab-separated unless a delimiter was chosen.
        let is_tsv = |i: &String| {
            let lower = i.to_ascii_lowercase();
            [".tsv", ".tsv.gz", ".tsv.zst"]
                .iter()
                .any(|e| lower.ends_with(e))
        };
        if spec.csv.delimiter == b',' && spec.inputs.iter().all(is_tsv) {
            spec.csv.delimiter = b'\t';
        }
        let schema = spec.load_schema()?.map(Arc::new);
        Ok(Self {
            job_id,
            spec,
            output,
            errors,
            schema,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_spec_with_sizes_and_single_input() {
        let spec: JobSpec = serde_norway::from_str(
            "input: s3://raw/2024-01-01/*.csv\noutput: s3://lake/users/\npartition_size: 64MiB\ncsv:\n  delimiter: ';'\n",
        )
        .unwrap();
        assert_eq!(spec.inputs, ["s3://raw/2024-01-01/*.csv"]);
        assert_eq!(spec.partition_size, 64 * 1024 * 1024);
        assert_eq!(spec.csv.delimiter, b';');
        assert!(spec.csv.header);
        let bad = serde_norway::from_str::<JobSpec>("input: a\noutput: b\nbogus: 1\n");
        assert!(bad.unwrap_err().to_string().contains("bogus"));
    }

    #[test]
    fn the_shipped_database_export_spec_makes_one_job_per_table() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s/base/job/db-export.yaml");
        let vars = crate::spec_vars::with_defaults(&[("date".into(), "2024-05-01".into())]);
        let spec = JobSpec::from_file_with(&path, &vars).unwrap();
        let jobs = spec.per_table();
        assert_eq!(jobs.len(), 4);
        assert_eq!(jobs[1].table, ["orders"]);
        assert_eq!(jobs[1].output, "s3://data-lake/raw/orders/date=2024-05-01/");
        assert_eq!(
            jobs[1].vars["table"], "orders",
            "one idempotency key per table"
        );
        assert_eq!(jobs[1].name.as_deref(), Some("db-export"));
        for job in jobs {
            JobConfig::new("j".into(), job).unwrap();
        }
    }

    #[test]
    fn outputs_are_prefixes_or_single_files() {
        let spec: JobSpec =
            serde_norway::from_str("input: a.csv\noutput: s3://lake/users.parquet\n").unwrap();
        let job = JobConfig::new("j1".into(), spec).unwrap();
        assert!(job.output.single_file);
        assert_eq!(
            job.output.part_url("j1", 3).to_string(),
            "s3://lake/_zoopipe_staging/j1/part-00003.parquet"
        );
        assert_eq!(job.errors.url.to_string(), "s3://lake/users_errors.jsonl");
        assert_eq!(
            job.output.marker("_SUCCESS").to_string(),
            "s3://lake/_users.parquet.SUCCESS"
        );
        let spec: JobSpec =
            serde_norway::from_str("input: a.csv\noutput: s3://lake/users/\nformat: csv\n")
                .unwrap();
        let job = JobConfig::new("j1".into(), spec).unwrap();
        assert_eq!(
            job.output.part_url("j1", 42).to_string(),
            "s3://lake/users/part-00042.csv"
        );
        assert_eq!(job.errors.url.to_string(), "s3://lake/users/_errors/");
        assert_eq!(
            job.output.marker("_SUCCESS").to_string(),
            "s3://lake/users/_SUCCESS"
        );
    }
}
