//! Every message survives common type → proto → bytes → proto → common type unchanged, and bad
//! wire data is refused rather than defaulted.

use prost::Message;
use std::collections::BTreeMap;
use zoopipe_common::format::csv::RangeOutcome;
use zoopipe_common::format::write::{Codec, WriteOptions};
use zoopipe_common::format::{Compression, CsvOptions, Format};
use zoopipe_common::plan::{Split, SplitKind, Task};
use zoopipe_common::report::{
    JobReport, JobState, PartInfo, Partitions, RangeReport, TaskResult, TaskSummary,
};
use zoopipe_common::spec::{JobSpec, SchemaSource};
use zoopipe_common::storage::StagedObject;
use zoopipe_proto::convert::task_to;
use zoopipe_proto::v1;

fn wire<M: Message + Default>(m: &M) -> M {
    M::decode(m.encode_to_vec().as_slice()).expect("decodes")
}

#[test]
fn job_spec_round_trips() {
    let spec = JobSpec {
        name: Some("daily-events".into()),
        vars: [("date".to_string(), "2024-01-01".to_string())].into(),
        trace_parent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        inputs: vec!["s3://raw/2024-01-01/*.csv".into(), "/data/x.jsonl".into()],
        input_format: Some(Format::Csv),
        csv: CsvOptions {
            header: false,
            delimiter: b';',
            quote: b'\'',
            escape: Some(b'\\'),
            multiline: true,
        },
        output: "s3://lake/users/".into(),
        format: Some(Format::Arrow),
        write: WriteOptions {
            compression: Codec::Zstd,
            row_group_size: 1000,
            csv_header: false,
        },
        schema: Some(SchemaSource::Inline(
            serde_json::json!({"type": "object", "properties": {"a": {"type": "integer"}}}),
        )),
        errors: Some("s3://lake/errors/".into()),
        error_format: Some(Format::Parquet),
        partition_size: 64 << 20,
        min_tasks: Some(8),
        batch_size: 4096,
        overwrite: true,
        max_attempts: 7,
        max_error_rate: Some(0.05),
        table: vec!["public.users".into()],
        query: Some("select 1".into()),
        partition_column: Some("id".into()),
        since_column: Some("updated_at".into()),
        since: Some("2024-01-01".into()),
        until: Some("2024-01-02".into()),
    };
    let back = JobSpec::try_from(wire(&v1::JobSpec::try_from(&spec).unwrap())).unwrap();
    assert_eq!(back, spec);
    let no_schema = JobSpec {
        schema: None,
        input_format: None,
        format: None,
        errors: None,
        ..spec.clone()
    };
    assert_eq!(
        JobSpec::try_from(wire(&v1::JobSpec::try_from(&no_schema).unwrap())).unwrap(),
        no_schema
    );
    // A schema path cannot travel: the client must load it.
    let path = JobSpec {
        schema: Some(SchemaSource::Path("s.json".into())),
        ..spec
    };
    assert!(
        v1::JobSpec::try_from(&path)
            .unwrap_err()
            .to_string()
            .contains("s.json")
    );
}

#[test]
fn tasks_round_trip_with_every_split_kind() {
    let split = |kind, columns| Split {
        url: "s3://raw/a.csv".into(),
        size: 123_456,
        format: Format::Csv,
        compression: Compression::Gzip,
        columns,
        kind,
        pin: zoopipe_common::storage::Pin {
            e_tag: Some("\"9b2cf535f27731c974343645a3985328\"".into()),
            version: None,
        },
    };
    let task = Task {
        index: 42,
        splits: vec![
            split(SplitKind::Whole, Some(vec!["a".into(), "b".into()])),
            split(SplitKind::Bytes { start: 10, end: 99 }, Some(vec![])),
            split(SplitKind::RowGroups { start: 2, end: 5 }, None),
            split(
                SplitKind::Batches {
                    start: 1,
                    end: 3,
                    first_row: 777,
                },
                None,
            ),
            split(
                SplitKind::Sql(zoopipe_common::sql::SqlSlice {
                    relation: "table public.users, pages 0..64".into(),
                    select: "SELECT \"id\" FROM public.users WHERE ctid < '(64,0)'::tid".into(),
                    snapshot: Some("00000003-0000001B-1".into()),
                }),
                None,
            ),
        ],
    };
    let proto = wire(&task_to("job-1", &task, 3, 9_001));
    assert_eq!(
        (proto.job_id.as_str(), proto.attempt, proto.fencing_token),
        ("job-1", 3, 9_001)
    );
    assert_eq!(Task::try_from(proto).unwrap(), task);
}

fn result() -> TaskResult {
    let staged = StagedObject::Multipart {
        url: "s3://lake/users/part-00042.parquet".into(),
        upload_id: "upload-xyz".into(),
        parts: vec!["\"etag1\"".into(), "\"etag2\"".into()],
        bytes: 9_999,
        crc32: 0xdead_beef,
    };
    let temp = StagedObject::Temp {
        url: "file:///out/_errors/part-00042.jsonl".into(),
        temp: "file:///out/_errors/_zoopipe_staging/tmp-1/part-00042.jsonl".into(),
        bytes: 12,
        crc32: 7,
    };
    TaskResult {
        index: 42,
        attempt: 2,
        rows_read: 100,
        rows_valid: 97,
        rows_invalid: 3,
        bytes_read: 5_000,
        bytes_written: 10_011,
        duration_s: 1.25,
        errors_by_field: BTreeMap::from([("age".to_string(), 2), ("email".to_string(), 1)]),
        errors_by_type: BTreeMap::from([("coercion".to_string(), 3)]),
        output: Some(PartInfo::new(staged, 97)),
        error_part: Some(PartInfo::new(temp, 3)),
        ranges: vec![RangeReport {
            url: "s3://raw/a.csv".into(),
            start: 128,
            end: 256,
            outcome: RangeOutcome {
                first_record: 130,
                end: 260,
                lines: 9,
            },
        }],
        error_lines_relative: true,
        worker: "w-7".into(),
    }
}

#[test]
fn task_results_round_trip_with_staged_parts() {
    let r = result();
    assert_eq!(
        TaskResult::try_from(wire(&v1::TaskResult::from(&r))).unwrap(),
        r
    );
    let bare = TaskResult {
        output: None,
        error_part: None,
        ranges: vec![],
        ..r
    };
    assert_eq!(
        TaskResult::try_from(wire(&v1::TaskResult::from(&bare))).unwrap(),
        bare
    );
}

#[test]
fn job_reports_round_trip() {
    let mut report = JobReport::new("job-7");
    report.add(&result());
    report.state = JobState::Failed;
    report.partitions = Partitions {
        total: 4,
        succeeded: 3,
        failed: 1,
        retried: 2,
    };
    report.outputs = vec!["s3://lake/users/part-00000.parquet".into()];
    report.error_outputs = vec!["s3://lake/users/_errors/part-00000.jsonl".into()];
    report.inputs = vec!["s3://raw/a.csv".into()];
    report.started_at = "2026-11-24T10:00:00Z".into();
    report.finished_at = "2026-11-24T10:01:00Z".into();
    report.message = Some("task 3 failed: boom".into());
    report.tasks.push(TaskSummary {
        index: 3,
        attempts: 4,
        rows_read: 0,
        rows_invalid: 0,
        duration_s: 0.5,
    });
    report.duration_s = 60.0;
    report.items_per_second = 1.5;
    assert_eq!(
        JobReport::try_from(wire(&v1::JobReport::from(&report))).unwrap(),
        report
    );
}

#[test]
fn bad_wire_data_is_refused() {
    let mut p = v1::TaskResult::from(&result());
    if let Some(out) = p.output.as_mut() {
        out.staged = None;
    }
    assert!(
        TaskResult::try_from(p)
            .unwrap_err()
            .to_string()
            .contains("part.staged")
    );
    let mut s = v1::Split::from(&Split {
        url: "x".into(),
        size: 1,
        format: Format::Parquet,
        compression: Compression::None,
        columns: None,
        kind: SplitKind::Whole,
        pin: Default::default(),
    });
    s.format = 99;
    assert!(
        Split::try_from(s.clone())
            .unwrap_err()
            .to_string()
            .contains("unknown format")
    );
    s.format = v1::Format::Unspecified as i32;
    assert!(
        Split::try_from(s)
            .unwrap_err()
            .to_string()
            .contains("split.format")
    );
    let mut r = v1::JobReport::from(&JobReport::new("j"));
    r.state = 42;
    assert!(JobReport::try_from(r).is_err());
}
