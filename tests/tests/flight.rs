//! `zoopipectl errors` over Arrow Flight with real processes: two coordinator replicas (the rows
//! are read through the follower, which must answer from etcd without the leader's job table),
//! two workers, etcd (started by scripts/test.sh) and the S3 server. The rows printed must be
//! exactly the job's invalid input rows, with their line numbers and original values, and an
//! independent Flight client must read the same count.

use arrow_flight::{FlightClient, Ticket};
use futures::TryStreamExt;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use zoopipe_tests::fleet::{Proc, bin, free_port, log, start_coordinator, wait_leading};
use zoopipe_tests::*;

/// A leader, a follower and two workers given both URLs.
struct Replicas {
    both: String,
    follower: String,
    _procs: Vec<Proc>,
}

fn replicated_fleet() -> Replicas {
    let (a, b) = (free_port(), free_port());
    let prefix = format!("/zoopipe-flight-test/{}-{a}", std::process::id());
    let mut procs = vec![start_coordinator(a, &prefix)];
    wait_leading(a);
    procs.push(start_coordinator(b, &prefix));
    let both = format!("http://127.0.0.1:{a},http://127.0.0.1:{b}");
    for i in 0..2 {
        let worker = Command::new(bin("zoopipe-worker"))
            .args(["--coordinator", &both, "--slots", "1"])
            .args(["--id", &format!("w{i}-{a}")])
            // Slow enough that the job is still running when first asked for its errors.
            .env("ZOOPIPE_WORKER_BATCH_DELAY_MS", "100")
            .stdout(Stdio::null())
            .stderr(log(&format!("worker{i}"), a))
            .spawn()
            .expect("worker starts");
        procs.push(Proc(worker));
    }
    Replicas {
        both,
        follower: format!("http://127.0.0.1:{b}"),
        _procs: procs,
    }
}

/// The invalid input rows, by (source URL, line): their original values.
type Expected = BTreeMap<(String, u64), [String; 8]>;

/// `files` CSVs of `rows_each` users on S3; every 7th row overall is invalid.
fn users_on_s3(files: usize, rows_each: usize) -> (String, String, Expected) {
    let (raw, lake) = (unique("raw"), unique("lake"));
    s3::create_bucket(&raw);
    s3::create_bucket(&lake);
    let (rows, bad) = users(files * rows_each);
    let mut expected = Expected::new();
    for (f, chunk) in rows.chunks(rows_each).enumerate() {
        s3::put(&raw, &format!("in/users-{f:02}.csv"), csv_bytes(chunk));
    }
    for (i, _) in bad {
        let source = format!("s3://{raw}/in/users-{:02}.csv", i / rows_each);
        // Line 1 is the header.
        let line = (i % rows_each) as u64 + 2;
        expected.insert((source, line), rows[i].clone());
    }
    (raw, lake, expected)
}

fn errors_cmd(url: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["errors"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--coordinator", url]);
    run(&all)
}

fn jsonl(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// Rows read with arrow-flight directly, as any Flight client would.
fn flight_rows(url: &str, job: &str, limit: u64) -> usize {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Channel::from_shared(url.to_string())
            .unwrap()
            .connect()
            .await
            .expect("connect to the coordinator");
        let mut client = FlightClient::new(channel);
        let ticket = serde_json::json!({"job_id": job, "limit": limit}).to_string();
        let batches: Vec<_> = client
            .do_get(Ticket::new(ticket))
            .await
            .expect("do_get")
            .try_collect()
            .await
            .expect("batches");
        let schema = batches.first().map(|b| b.schema()).expect("a batch");
        for name in ["source", "line", "row", "error_type", "errors", "values"] {
            assert!(schema.field_with_name(name).is_ok(), "no column {name}");
        }
        batches.iter().map(|b| b.num_rows()).sum()
    })
}

#[test]
fn errors_prints_exactly_the_invalid_rows_of_a_committed_job_from_any_replica() {
    let fleet = replicated_fleet();
    // 60 KiB partitions split each ~190 KB file into ranges, so most error parts are
    // renumbered at commit: the line numbers below check that too.
    let (raw, lake, expected) = users_on_s3(2, 1500);
    let submitted = run(&[
        "submit",
        "--input",
        &format!("s3://{raw}/in/"),
        "--output",
        &format!("s3://{lake}/users/"),
        "--schema",
        &repo_file("examples/users.schema.json"),
        "--batch-size",
        "250",
        "--partition-size",
        "60KiB",
        "--coordinator",
        &fleet.both,
    ]);
    assert!(submitted.status.success(), "{}", text(&submitted.stderr));
    let job = text(&submitted.stdout).trim().to_string();

    // Still running: nothing is committed, so there is nothing to read yet.
    let early = errors_cmd(&fleet.follower, &[&job]);
    assert_eq!(early.status.code(), Some(2), "{}", text(&early.stderr));
    let message = text(&early.stderr);
    assert!(message.contains("not committed yet"), "{message}");
    assert_eq!(message.trim().lines().count(), 1, "{message}");

    let watched = run(&["watch", &job, "--coordinator", &fleet.both, "--json"]);
    assert!(watched.status.success(), "{}", text(&watched.stderr));
    let report: serde_json::Value = serde_json::from_slice(&watched.stdout).unwrap();
    assert_eq!(report["state"], "succeeded", "{report:#}");
    let total = report["total_errors"].as_u64().unwrap();
    assert_eq!(total, expected.len() as u64);

    // Every row, through the follower: each one an invalid input row with its values.
    let all = jsonl(&errors_cmd(
        &fleet.follower,
        &[&job, "--format", "jsonl", "--limit", "0"],
    ));
    assert_eq!(all.len() as u64, total);
    let mut seen = std::collections::BTreeSet::new();
    for row in &all {
        let source = row["source"].as_str().unwrap().to_string();
        let line = row["line"].as_u64().expect("CSV rows have a line");
        let input = expected
            .get(&(source.clone(), line))
            .unwrap_or_else(|| panic!("{source}:{line} is not an invalid input row: {row}"));
        for (name, value) in HEADER.iter().zip(input) {
            assert_eq!(row["values"][name], value.as_str(), "{name} of {row}");
        }
        assert!(!row["errors"].as_array().unwrap().is_empty(), "{row}");
        assert!(seen.insert((source, line)), "{row} printed twice");
    }

    let five = jsonl(&errors_cmd(
        &fleet.both,
        &[&job, "--format", "jsonl", "--limit", "5"],
    ));
    assert_eq!(five.len(), 5);
    assert_eq!(five[..], all[..5]);

    // CSV: a header and every row.
    let csv_out = errors_cmd(&fleet.follower, &[&job, "--format", "csv"]);
    assert!(csv_out.status.success(), "{}", text(&csv_out.stderr));
    let mut reader = csv::Reader::from_reader(&csv_out.stdout[..]);
    assert_eq!(&reader.headers().unwrap()[0], "source");
    assert_eq!(reader.records().count() as u64, total);

    // The default table: a header, 20 rows, and a note saying how many there are.
    let table = errors_cmd(&fleet.follower, &[&job]);
    assert!(table.status.success(), "{}", text(&table.stderr));
    let shown = text(&table.stdout);
    for column in ["source", "type", "field", "message", "values"] {
        assert!(shown.contains(column), "{shown}");
    }
    assert!(shown.contains("line "), "{shown}");
    assert!(
        text(&table.stderr).contains(&format!("20 of {total} invalid rows shown")),
        "{}",
        text(&table.stderr)
    );

    // An independent Flight client reads the same rows.
    assert_eq!(flight_rows(&fleet.follower, &job, 0) as u64, total);
    assert_eq!(flight_rows(&fleet.follower, &job, 7), 7);

    // Error parts written as Parquet read back as the same rows.
    let parquet_job = text(
        &run(&[
            "submit",
            "--input",
            &format!("s3://{raw}/in/"),
            "--output",
            &format!("s3://{lake}/users-pq/"),
            "--error-format",
            "parquet",
            "--schema",
            &repo_file("examples/users.schema.json"),
            "--coordinator",
            &fleet.both,
        ])
        .stdout,
    )
    .trim()
    .to_string();
    let watched = run(&["watch", &parquet_job, "--coordinator", &fleet.both]);
    assert!(watched.status.success(), "{}", text(&watched.stderr));
    let from_parquet = jsonl(&errors_cmd(
        &fleet.follower,
        &[&parquet_job, "--format", "jsonl"],
    ));
    assert_eq!(from_parquet, all);

    // An unknown job: exit 2 and one clear line.
    let unknown = errors_cmd(&fleet.follower, &["20000101-000000-deadbeef"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown.stderr));
    let message = text(&unknown.stderr);
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(
        message.contains("no job 20000101-000000-deadbeef"),
        "{message}"
    );
}
