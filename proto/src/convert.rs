//! Conversions between `zoopipe.v1` messages and zoopipe-common's types. Every conversion from
//! the wire is checked (an unknown enum value or a missing required message is an error, never
//! a silent default), and every round trip is lossless (see the tests).

use crate::v1;
use std::collections::BTreeMap;
use zoopipe_common::error::FailureKind;
use zoopipe_common::format::csv::RangeOutcome;
use zoopipe_common::format::write::{Codec, WriteOptions};
use zoopipe_common::format::{Compression, CsvOptions, Format};
use zoopipe_common::plan::{Split, SplitKind, Task};
use zoopipe_common::report::{
    JobReport, JobState, PartInfo, Partitions, RangeReport, TaskResult, TaskSummary, WorkerTotals,
};
use zoopipe_common::spec::{JobSpec, SchemaSource};
use zoopipe_common::storage::StagedObject;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

type Result<T> = std::result::Result<T, ConvertError>;

fn invalid(field: &'static str, message: impl Into<String>) -> ConvertError {
    ConvertError::Invalid {
        field,
        message: message.into(),
    }
}

// ---------------------------------------------------------------- enums

pub fn format_to(f: Option<Format>) -> i32 {
    (match f {
        None => v1::Format::Unspecified,
        Some(Format::Csv) => v1::Format::Csv,
        Some(Format::Jsonl) => v1::Format::Jsonl,
        Some(Format::Parquet) => v1::Format::Parquet,
        Some(Format::Arrow) => v1::Format::Arrow,
    }) as i32
}

pub fn format_from(field: &'static str, value: i32) -> Result<Option<Format>> {
    match v1::Format::try_from(value)
        .map_err(|_| invalid(field, format!("unknown format {value}")))?
    {
        v1::Format::Unspecified => Ok(None),
        v1::Format::Csv => Ok(Some(Format::Csv)),
        v1::Format::Jsonl => Ok(Some(Format::Jsonl)),
        v1::Format::Parquet => Ok(Some(Format::Parquet)),
        v1::Format::Arrow => Ok(Some(Format::Arrow)),
    }
}

fn required_format(field: &'static str, value: i32) -> Result<Format> {
    format_from(field, value)?.ok_or(ConvertError::Missing(field))
}

fn compression_to(c: Compression) -> i32 {
    (match c {
        Compression::None => v1::Compression::None,
        Compression::Gzip => v1::Compression::Gzip,
        Compression::Zstd => v1::Compression::Zstd,
    }) as i32
}

fn compression_from(value: i32) -> Result<Compression> {
    match v1::Compression::try_from(value)
        .map_err(|_| invalid("split.compression", format!("unknown compression {value}")))?
    {
        v1::Compression::None => Ok(Compression::None),
        v1::Compression::Gzip => Ok(Compression::Gzip),
        v1::Compression::Zstd => Ok(Compression::Zstd),
    }
}

fn codec_to(c: Codec) -> i32 {
    (match c {
        Codec::Snappy => v1::Codec::Snappy,
        Codec::Zstd => v1::Codec::Zstd,
        Codec::Lz4 => v1::Codec::Lz4,
        Codec::None => v1::Codec::None,
    }) as i32
}

fn codec_from(value: i32) -> Result<Codec> {
    match v1::Codec::try_from(value)
        .map_err(|_| invalid("write.compression", format!("unknown codec {value}")))?
    {
        v1::Codec::Snappy => Ok(Codec::Snappy),
        v1::Codec::Zstd => Ok(Codec::Zstd),
        v1::Codec::Lz4 => Ok(Codec::Lz4),
        v1::Codec::None => Ok(Codec::None),
    }
}

pub fn state_to(s: JobState) -> i32 {
    (match s {
        JobState::Pending => v1::JobState::Pending,
        JobState::Running => v1::JobState::Running,
        JobState::Committing => v1::JobState::Committing,
        JobState::Succeeded => v1::JobState::Succeeded,
        JobState::Failed => v1::JobState::Failed,
        JobState::Cancelled => v1::JobState::Cancelled,
    }) as i32
}

pub fn failure_kind_to(kind: FailureKind) -> i32 {
    (match kind {
        FailureKind::Transient => v1::FailureKind::Transient,
        FailureKind::Fatal => v1::FailureKind::Fatal,
        FailureKind::HandedBack => v1::FailureKind::HandedBack,
        FailureKind::Lost => v1::FailureKind::Lost,
    }) as i32
}

/// An unknown or unspecified kind is fatal: a failure no one can classify is not retried.
pub fn failure_kind_from(value: i32) -> FailureKind {
    match v1::FailureKind::try_from(value) {
        Ok(v1::FailureKind::Transient) => FailureKind::Transient,
        Ok(v1::FailureKind::HandedBack) => FailureKind::HandedBack,
        Ok(v1::FailureKind::Lost) => FailureKind::Lost,
        _ => FailureKind::Fatal,
    }
}

pub fn state_from(value: i32) -> Result<JobState> {
    match v1::JobState::try_from(value)
        .map_err(|_| invalid("state", format!("unknown job state {value}")))?
    {
        v1::JobState::Pending => Ok(JobState::Pending),
        v1::JobState::Running => Ok(JobState::Running),
        v1::JobState::Committing => Ok(JobState::Committing),
        v1::JobState::Succeeded => Ok(JobState::Succeeded),
        v1::JobState::Failed => Ok(JobState::Failed),
        v1::JobState::Cancelled => Ok(JobState::Cancelled),
    }
}

fn byte(field: &'static str, value: u32) -> Result<u8> {
    u8::try_from(value).map_err(|_| invalid(field, format!("{value} is not one byte")))
}

fn size(field: &'static str, value: u64) -> Result<usize> {
    usize::try_from(value).map_err(|_| invalid(field, format!("{value} is too large")))
}

// ---------------------------------------------------------------- job spec

impl TryFrom<&JobSpec> for v1::JobSpec {
    type Error = ConvertError;

    /// The schema must be inline (clients load schema files before sending).
    fn try_from(s: &JobSpec) -> Result<Self> {
        let schema_json = match &s.schema {
            None => String::new(),
            Some(SchemaSource::Inline(v)) => v.to_string(),
            Some(SchemaSource::Path(p)) => {
                return Err(invalid(
                    "schema",
                    format!("{p}: load the schema file before sending the spec"),
                ));
            }
        };
        Ok(v1::JobSpec {
            inputs: s.inputs.clone(),
            input_format: format_to(s.input_format),
            csv: Some(v1::CsvOptions {
                header: s.csv.header,
                delimiter: s.csv.delimiter.into(),
                quote: s.csv.quote.into(),
                escape: s.csv.escape.map(u32::from),
                multiline: s.csv.multiline,
            }),
            output: s.output.clone(),
            format: format_to(s.format),
            write: Some(v1::WriteOptions {
                compression: codec_to(s.write.compression),
                row_group_size: s.write.row_group_size as u64,
                csv_header: s.write.csv_header,
            }),
            schema_json,
            errors: s.errors.clone(),
            error_format: format_to(s.error_format),
            partition_size: s.partition_size,
            batch_size: s.batch_size as u64,
            overwrite: s.overwrite,
            max_attempts: s.max_attempts,
            max_error_rate: s.max_error_rate,
            name: s.name.clone(),
            vars: s.vars.clone().into_iter().collect(),
            trace_parent: s.trace_parent.clone(),
            min_tasks: s.min_tasks,
            table: s.table.clone(),
            query: s.query.clone(),
            partition_column: s.partition_column.clone(),
            since_column: s.since_column.clone(),
            since: s.since.clone(),
            until: s.until.clone(),
        })
    }
}

impl TryFrom<v1::JobSpec> for JobSpec {
    type Error = ConvertError;

    fn try_from(p: v1::JobSpec) -> Result<Self> {
        let csv = p.csv.ok_or(ConvertError::Missing("spec.csv"))?;
        let write = p.write.ok_or(ConvertError::Missing("spec.write"))?;
        let schema = if p.schema_json.is_empty() {
            None
        } else {
            let value = serde_json::from_str(&p.schema_json)
                .map_err(|e| invalid("spec.schema_json", e.to_string()))?;
            Some(SchemaSource::Inline(value))
        };
        Ok(JobSpec {
            inputs: p.inputs,
            input_format: format_from("spec.input_format", p.input_format)?,
            csv: CsvOptions {
                header: csv.header,
                delimiter: byte("csv.delimiter", csv.delimiter)?,
                quote: byte("csv.quote", csv.quote)?,
                escape: csv.escape.map(|e| byte("csv.escape", e)).transpose()?,
                multiline: csv.multiline,
            },
            output: p.output,
            format: format_from("spec.format", p.format)?,
            write: WriteOptions {
                compression: codec_from(write.compression)?,
                row_group_size: size("write.row_group_size", write.row_group_size)?,
                csv_header: write.csv_header,
            },
            schema,
            errors: p.errors,
            error_format: format_from("spec.error_format", p.error_format)?,
            partition_size: p.partition_size,
            batch_size: size("spec.batch_size", p.batch_size)?,
            overwrite: p.overwrite,
            max_attempts: p.max_attempts,
            max_error_rate: p.max_error_rate,
            name: p.name,
            vars: p.vars.into_iter().collect(),
            trace_parent: p.trace_parent,
            min_tasks: p.min_tasks,
            table: p.table,
            query: p.query,
            partition_column: p.partition_column,
            since_column: p.since_column,
            since: p.since,
            until: p.until,
        })
    }
}

// ---------------------------------------------------------------- tasks

impl From<&Split> for v1::Split {
    fn from(s: &Split) -> Self {
        let kind = match &s.kind {
            SplitKind::Whole => v1::split::Kind::Whole(v1::WholeObject {}),
            SplitKind::Bytes { start, end } => v1::split::Kind::Bytes(v1::ByteRange {
                start: *start,
                end: *end,
            }),
            SplitKind::RowGroups { start, end } => v1::split::Kind::RowGroups(v1::UnitRange {
                start: *start as u64,
                end: *end as u64,
                first_row: 0,
            }),
            SplitKind::Batches {
                start,
                end,
                first_row,
            } => v1::split::Kind::Batches(v1::UnitRange {
                start: *start as u64,
                end: *end as u64,
                first_row: *first_row,
            }),
            SplitKind::Sql(slice) => v1::split::Kind::Sql(v1::SqlSlice {
                relation: slice.relation.clone(),
                select: slice.select.clone(),
                snapshot: slice.snapshot.clone(),
            }),
        };
        v1::Split {
            url: s.url.clone(),
            size: s.size,
            format: format_to(Some(s.format)),
            compression: compression_to(s.compression),
            columns: s.columns.clone().unwrap_or_default(),
            has_columns: s.columns.is_some(),
            etag: s.pin.e_tag.clone(),
            version: s.pin.version.clone(),
            kind: Some(kind),
        }
    }
}

impl TryFrom<v1::Split> for Split {
    type Error = ConvertError;

    fn try_from(p: v1::Split) -> Result<Self> {
        let kind = match p.kind.ok_or(ConvertError::Missing("split.kind"))? {
            v1::split::Kind::Whole(_) => SplitKind::Whole,
            v1::split::Kind::Bytes(b) => SplitKind::Bytes {
                start: b.start,
                end: b.end,
            },
            v1::split::Kind::RowGroups(u) => SplitKind::RowGroups {
                start: size("split.row_groups", u.start)?,
                end: size("split.row_groups", u.end)?,
            },
            v1::split::Kind::Batches(u) => SplitKind::Batches {
                start: size("split.batches", u.start)?,
                end: size("split.batches", u.end)?,
                first_row: u.first_row,
            },
            v1::split::Kind::Sql(q) => SplitKind::Sql(zoopipe_common::sql::SqlSlice {
                relation: q.relation,
                select: q.select,
                snapshot: q.snapshot,
            }),
        };
        Ok(Split {
            url: p.url,
            size: p.size,
            format: required_format("split.format", p.format)?,
            compression: compression_from(p.compression)?,
            columns: p.has_columns.then_some(p.columns),
            kind,
            pin: zoopipe_common::storage::Pin {
                e_tag: p.etag,
                version: p.version,
            },
        })
    }
}

/// A task as sent to a worker: which job, which attempt, and the attempt's fencing token.
pub fn task_to(job_id: &str, task: &Task, attempt: u32, fencing_token: u64) -> v1::Task {
    v1::Task {
        job_id: job_id.to_string(),
        index: task.index,
        attempt,
        fencing_token,
        splits: task.splits.iter().map(v1::Split::from).collect(),
    }
}

impl TryFrom<v1::Task> for Task {
    type Error = ConvertError;

    fn try_from(p: v1::Task) -> Result<Self> {
        Ok(Task {
            index: p.index,
            splits: p
                .splits
                .into_iter()
                .map(Split::try_from)
                .collect::<Result<_>>()?,
        })
    }
}

// ---------------------------------------------------------------- results

impl From<&StagedObject> for v1::StagedObject {
    fn from(s: &StagedObject) -> Self {
        let kind = match s {
            StagedObject::Multipart {
                upload_id, parts, ..
            } => v1::staged_object::Kind::Multipart(v1::MultipartUpload {
                upload_id: upload_id.clone(),
                parts: parts.clone(),
            }),
            StagedObject::Temp { temp, .. } => {
                v1::staged_object::Kind::Temp(v1::TempObject { temp: temp.clone() })
            }
        };
        v1::StagedObject {
            url: s.url().to_string(),
            bytes: s.bytes(),
            kind: Some(kind),
            crc32: s.crc32(),
        }
    }
}

impl TryFrom<v1::StagedObject> for StagedObject {
    type Error = ConvertError;

    fn try_from(p: v1::StagedObject) -> Result<Self> {
        Ok(match p.kind.ok_or(ConvertError::Missing("staged.kind"))? {
            v1::staged_object::Kind::Multipart(m) => StagedObject::Multipart {
                url: p.url,
                upload_id: m.upload_id,
                parts: m.parts,
                bytes: p.bytes,
                crc32: p.crc32,
            },
            v1::staged_object::Kind::Temp(t) => StagedObject::Temp {
                url: p.url,
                temp: t.temp,
                bytes: p.bytes,
                crc32: p.crc32,
            },
        })
    }
}

impl From<&PartInfo> for v1::Part {
    fn from(p: &PartInfo) -> Self {
        v1::Part {
            url: p.url.clone(),
            rows: p.rows,
            bytes: p.bytes,
            staged: Some((&p.staged).into()),
        }
    }
}

impl TryFrom<v1::Part> for PartInfo {
    type Error = ConvertError;

    fn try_from(p: v1::Part) -> Result<Self> {
        Ok(PartInfo {
            url: p.url,
            rows: p.rows,
            bytes: p.bytes,
            staged: p
                .staged
                .ok_or(ConvertError::Missing("part.staged"))?
                .try_into()?,
        })
    }
}

fn counts(map: &BTreeMap<String, u64>) -> std::collections::HashMap<String, u64> {
    map.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

fn sorted(map: std::collections::HashMap<String, u64>) -> BTreeMap<String, u64> {
    map.into_iter().collect()
}

impl From<&TaskResult> for v1::TaskResult {
    fn from(r: &TaskResult) -> Self {
        v1::TaskResult {
            index: r.index,
            attempt: r.attempt,
            rows_read: r.rows_read,
            rows_valid: r.rows_valid,
            rows_invalid: r.rows_invalid,
            bytes_read: r.bytes_read,
            bytes_written: r.bytes_written,
            duration_s: r.duration_s,
            errors_by_field: counts(&r.errors_by_field),
            errors_by_type: counts(&r.errors_by_type),
            output: r.output.as_ref().map(Into::into),
            error_part: r.error_part.as_ref().map(Into::into),
            ranges: r
                .ranges
                .iter()
                .map(|g| v1::RangeReport {
                    url: g.url.clone(),
                    start: g.start,
                    end: g.end,
                    first_record: g.outcome.first_record,
                    record_end: g.outcome.end,
                    lines: g.outcome.lines,
                })
                .collect(),
            error_lines_relative: r.error_lines_relative,
            worker: r.worker.clone(),
        }
    }
}

impl TryFrom<v1::TaskResult> for TaskResult {
    type Error = ConvertError;

    fn try_from(p: v1::TaskResult) -> Result<Self> {
        Ok(TaskResult {
            index: p.index,
            attempt: p.attempt,
            rows_read: p.rows_read,
            rows_valid: p.rows_valid,
            rows_invalid: p.rows_invalid,
            bytes_read: p.bytes_read,
            bytes_written: p.bytes_written,
            duration_s: p.duration_s,
            errors_by_field: sorted(p.errors_by_field),
            errors_by_type: sorted(p.errors_by_type),
            output: p.output.map(PartInfo::try_from).transpose()?,
            error_part: p.error_part.map(PartInfo::try_from).transpose()?,
            ranges: p
                .ranges
                .into_iter()
                .map(|g| RangeReport {
                    url: g.url,
                    start: g.start,
                    end: g.end,
                    outcome: RangeOutcome {
                        first_record: g.first_record,
                        end: g.record_end,
                        lines: g.lines,
                    },
                })
                .collect(),
            error_lines_relative: p.error_lines_relative,
            worker: p.worker,
        })
    }
}

impl From<&JobReport> for v1::JobReport {
    fn from(r: &JobReport) -> Self {
        v1::JobReport {
            job_id: r.job_id.clone(),
            state: state_to(r.state),
            total_processed: r.total_processed,
            total_valid: r.total_valid,
            total_errors: r.total_errors,
            bytes_read: r.bytes_read,
            bytes_written: r.bytes_written,
            duration_s: r.duration_s,
            items_per_second: r.items_per_second,
            partitions: Some(v1::Partitions {
                total: r.partitions.total,
                succeeded: r.partitions.succeeded,
                failed: r.partitions.failed,
                retried: r.partitions.retried,
            }),
            outputs: r.outputs.clone(),
            error_outputs: r.error_outputs.clone(),
            errors_by_field: counts(&r.errors_by_field),
            errors_by_type: counts(&r.errors_by_type),
            inputs: r.inputs.clone(),
            started_at: r.started_at.clone(),
            finished_at: r.finished_at.clone(),
            message: r.message.clone(),
            tasks: r
                .tasks
                .iter()
                .map(|t| v1::TaskSummary {
                    index: t.index,
                    attempts: t.attempts,
                    rows_read: t.rows_read,
                    rows_invalid: t.rows_invalid,
                    duration_s: t.duration_s,
                })
                .collect(),
            workers: r
                .workers
                .iter()
                .map(|(k, w)| {
                    let totals = v1::WorkerTotals {
                        tasks: w.tasks,
                        rows_read: w.rows_read,
                        rows_invalid: w.rows_invalid,
                        bytes_read: w.bytes_read,
                        duration_s: w.duration_s,
                    };
                    (k.clone(), totals)
                })
                .collect(),
            snapshots: r.snapshots,
            high_water: r.high_water.clone(),
        }
    }
}

impl TryFrom<v1::JobReport> for JobReport {
    type Error = ConvertError;

    fn try_from(p: v1::JobReport) -> Result<Self> {
        let partitions = p
            .partitions
            .ok_or(ConvertError::Missing("report.partitions"))?;
        Ok(JobReport {
            job_id: p.job_id,
            state: state_from(p.state)?,
            total_processed: p.total_processed,
            total_valid: p.total_valid,
            total_errors: p.total_errors,
            bytes_read: p.bytes_read,
            bytes_written: p.bytes_written,
            duration_s: p.duration_s,
            items_per_second: p.items_per_second,
            partitions: Partitions {
                total: partitions.total,
                succeeded: partitions.succeeded,
                failed: partitions.failed,
                retried: partitions.retried,
            },
            outputs: p.outputs,
            error_outputs: p.error_outputs,
            errors_by_field: sorted(p.errors_by_field),
            errors_by_type: sorted(p.errors_by_type),
            inputs: p.inputs,
            started_at: p.started_at,
            finished_at: p.finished_at,
            message: p.message,
            tasks: p
                .tasks
                .into_iter()
                .map(|t| TaskSummary {
                    index: t.index,
                    attempts: t.attempts,
                    rows_read: t.rows_read,
                    rows_invalid: t.rows_invalid,
                    duration_s: t.duration_s,
                })
                .collect(),
            workers: p
                .workers
                .into_iter()
                .map(|(k, w)| {
                    let totals = WorkerTotals {
                        tasks: w.tasks,
                        rows_read: w.rows_read,
                        rows_invalid: w.rows_invalid,
                        bytes_read: w.bytes_read,
                        duration_s: w.duration_s,
                    };
                    (k, totals)
                })
                .collect(),
            snapshots: p.snapshots,
            high_water: p.high_water,
        })
    }
}
