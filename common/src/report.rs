//! Counters: what one task did ([`TaskResult`]) and what the job did ([`JobReport`]), which is
//! the merge of its committed task results. Field names follow ZooPipe's report.

use crate::format::csv::RangeOutcome;
use crate::storage::StagedObject;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One written part (output or errors), not yet published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartInfo {
    pub url: String,
    pub rows: u64,
    pub bytes: u64,
    /// How to publish (or discard) it: upload id and parts, or a temp file.
    pub staged: StagedObject,
}

impl PartInfo {
    pub fn new(staged: StagedObject, rows: u64) -> Self {
        Self {
            url: staged.url().to_string(),
            rows,
            bytes: staged.bytes(),
            staged,
        }
    }
}

/// One published object as `_manifest.json` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestPart {
    pub url: String,
    pub rows: u64,
    pub bytes: u64,
    /// CRC-32 (IEEE) of the object's bytes, as 8 hex digits.
    pub crc32: String,
}

impl ManifestPart {
    pub fn new(staged: &StagedObject, rows: u64) -> Self {
        Self {
            url: staged.url().to_string(),
            rows,
            bytes: staged.bytes(),
            crc32: format!("{:08x}", staged.crc32()),
        }
    }
}

/// `_manifest.json`: every committed part, written just before `_SUCCESS`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub job_id: String,
    pub outputs: Vec<ManifestPart>,
    pub error_outputs: Vec<ManifestPart>,
}

/// How one byte range of a CSV/JSONL file lined up, for the boundary check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RangeReport {
    pub url: String,
    pub start: u64,
    pub end: u64,
    pub outcome: RangeOutcome,
}

/// What one attempt of one task produced: counters and its unpublished parts. Plain data,
/// so it can be sent to whoever commits the job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub index: u32,
    pub attempt: u32,
    pub rows_read: u64,
    pub rows_valid: u64,
    pub rows_invalid: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub duration_s: f64,
    pub errors_by_field: BTreeMap<String, u64>,
    pub errors_by_type: BTreeMap<String, u64>,
    pub output: Option<PartInfo>,
    pub error_part: Option<PartInfo>,
    /// Byte ranges read (CSV/JSONL splits), for the boundary check and line numbering.
    pub ranges: Vec<RangeReport>,
    /// The error part numbers lines from the start of a range whose first line is not yet
    /// known; the commit renumbers it once the earlier ranges have reported their line counts.
    pub error_lines_relative: bool,
    /// Which worker ran it (empty in the embedded mode).
    #[serde(default)]
    pub worker: String,
}

impl TaskResult {
    /// Why this result's counts do not add up, if they do not: every row read is valid or
    /// invalid, and the parts hold exactly those rows. `None` when they balance.
    pub fn imbalance(&self) -> Option<String> {
        if self.rows_read != self.rows_valid + self.rows_invalid {
            return Some(format!(
                "{} rows read but {} valid + {} invalid",
                self.rows_read, self.rows_valid, self.rows_invalid
            ));
        }
        let written = self.output.as_ref().map_or(0, |p| p.rows);
        if written != self.rows_valid {
            return Some(format!(
                "{} valid rows but {written} in the output part",
                self.rows_valid
            ));
        }
        let errors = self.error_part.as_ref().map_or(0, |p| p.rows);
        if errors != self.rows_invalid {
            return Some(format!(
                "{} invalid rows but {errors} in the error part",
                self.rows_invalid
            ));
        }
        None
    }

    /// Every unpublished object of this attempt.
    pub fn staged(&self) -> impl Iterator<Item = &StagedObject> {
        self.output
            .iter()
            .chain(&self.error_part)
            .map(|p| &p.staged)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Running,
    Committing,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    /// Succeeded, failed or cancelled: nothing more happens to the job.
    pub fn ended(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Partitions {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub retried: u64,
}

/// What one worker did for a job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerTotals {
    pub tasks: u64,
    pub rows_read: u64,
    pub rows_invalid: u64,
    pub bytes_read: u64,
    pub duration_s: f64,
}

/// Per-task line of the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSummary {
    pub index: u32,
    pub attempts: u32,
    pub rows_read: u64,
    pub rows_invalid: u64,
    pub duration_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    pub job_id: String,
    pub state: JobState,
    pub total_processed: u64,
    pub total_valid: u64,
    pub total_errors: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub duration_s: f64,
    pub items_per_second: f64,
    pub partitions: Partitions,
    pub outputs: Vec<String>,
    pub error_outputs: Vec<String>,
    pub errors_by_field: BTreeMap<String, u64>,
    pub errors_by_type: BTreeMap<String, u64>,
    pub inputs: Vec<String>,
    pub started_at: String,
    pub finished_at: String,
    /// Why the job failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub tasks: Vec<TaskSummary>,
    /// Totals per worker ("embedded" for `zoopipectl run`).
    #[serde(default)]
    pub workers: BTreeMap<String, WorkerTotals>,
    /// A database input: the snapshots the job read under. One is the rule; two or more mean
    /// a snapshot was lost (failover, database restart) and every task read again under the
    /// last, so the output holds one snapshot's rows.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub snapshots: u32,
    /// The largest `since_column` value exported: the next incremental run starts above it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_water: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl JobReport {
    pub fn new(job_id: &str) -> Self {
        Self {
            job_id: job_id.to_string(),
            state: JobState::Pending,
            total_processed: 0,
            total_valid: 0,
            total_errors: 0,
            bytes_read: 0,
            bytes_written: 0,
            duration_s: 0.0,
            items_per_second: 0.0,
            partitions: Partitions::default(),
            outputs: Vec::new(),
            error_outputs: Vec::new(),
            errors_by_field: BTreeMap::new(),
            errors_by_type: BTreeMap::new(),
            inputs: Vec::new(),
            started_at: String::new(),
            finished_at: String::new(),
            message: None,
            tasks: Vec::new(),
            workers: BTreeMap::new(),
            snapshots: 0,
            high_water: None,
        }
    }

    /// Add one committed task result.
    pub fn add(&mut self, r: &TaskResult) {
        self.total_processed += r.rows_read;
        self.total_valid += r.rows_valid;
        self.total_errors += r.rows_invalid;
        self.bytes_read += r.bytes_read;
        self.bytes_written += r.bytes_written;
        for (k, v) in &r.errors_by_field {
            *self.errors_by_field.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &r.errors_by_type {
            *self.errors_by_type.entry(k.clone()).or_default() += v;
        }
        let name = if r.worker.is_empty() {
            "embedded"
        } else {
            r.worker.as_str()
        };
        let totals = self.workers.entry(name.to_string()).or_default();
        totals.tasks += 1;
        totals.rows_read += r.rows_read;
        totals.rows_invalid += r.rows_invalid;
        totals.bytes_read += r.bytes_read;
        totals.duration_s += r.duration_s;
        self.tasks.push(TaskSummary {
            index: r.index,
            attempts: r.attempt,
            rows_read: r.rows_read,
            rows_invalid: r.rows_invalid,
            duration_s: r.duration_s,
        });
    }

    /// The invariant every report keeps: nothing lost, nothing counted twice.
    pub fn balanced(&self) -> bool {
        self.total_processed == self.total_valid + self.total_errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(rows: u64) -> PartInfo {
        PartInfo::new(
            StagedObject::Multipart {
                url: "s3://b/k".into(),
                upload_id: "u".into(),
                parts: Vec::new(),
                bytes: 0,
                crc32: 0,
            },
            rows,
        )
    }

    #[test]
    fn a_result_balances_only_when_every_row_is_in_one_part() {
        let mut r = TaskResult {
            rows_read: 10,
            rows_valid: 7,
            rows_invalid: 3,
            output: Some(part(7)),
            error_part: Some(part(3)),
            ..TaskResult::default()
        };
        assert_eq!(r.imbalance(), None);
        r.rows_read = 11;
        assert!(r.imbalance().unwrap().contains("11 rows read"));
        r.rows_read = 10;
        r.output = Some(part(6));
        assert!(r.imbalance().unwrap().contains("6 in the output part"));
        r.output = Some(part(7));
        r.error_part = None;
        assert!(r.imbalance().unwrap().contains("0 in the error part"));
    }
}
