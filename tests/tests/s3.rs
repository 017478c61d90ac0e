//! `zoopipectl run` against a real S3-compatible server on loopback (moto, started by
//! scripts/test.sh): globbed inputs, part and single-file outputs, and clear failures.

use std::process::Command;
use std::time::{Duration, Instant};
use zoopipe_tests::*;

fn parquet_rows(bytes: Vec<u8>) -> Vec<arrow::array::RecordBatch> {
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(
        bytes,
    ))
    .unwrap()
    .build()
    .unwrap()
    .map(|b| b.unwrap())
    .collect()
}

#[test]
fn globbed_s3_csv_to_s3_parquet_parts() {
    let (raw, lake) = (unique("raw"), unique("lake"));
    s3::create_bucket(&raw);
    s3::create_bucket(&lake);
    let (rows, bad) = users(3000);
    let mut expected = Vec::new();
    let mut bad_total = 0;
    for (i, chunk) in rows.chunks(1000).enumerate() {
        s3::put(&raw, &format!("2024-01-01/users-{i}.csv"), csv_bytes(chunk));
        expected.extend(
            chunk
                .iter()
                .enumerate()
                .filter(|(j, _)| (i * 1000 + j) % 7 != 3)
                .map(|(_, r)| r[0].clone()),
        );
        bad_total += chunk
            .iter()
            .enumerate()
            .filter(|(j, _)| (i * 1000 + j) % 7 == 3)
            .count();
    }
    assert_eq!(bad_total, bad.len());
    s3::put(&raw, "2024-01-01/notes.txt", b"not an input".to_vec());
    s3::put(&raw, "2024-01-02/users-9.csv", csv_bytes(&rows[..10]));

    let report = run_ok(&[
        "run",
        "--input",
        &format!("s3://{raw}/2024-01-01/*.csv"),
        "--output",
        &format!("s3://{lake}/users/"),
        "--schema",
        &repo_file("examples/users.schema.json"),
        "--partition-size",
        "40KiB",
        "--workers",
        "3",
    ]);
    assert_eq!(report["state"], "succeeded");
    assert_eq!(report["inputs"].as_array().unwrap().len(), 3, "{report:#}");
    assert_eq!(report["total_processed"], 3000);
    assert_eq!(report["total_errors"], bad.len() as u64);
    assert!(report["partitions"]["total"].as_u64().unwrap() >= 3);

    let names = s3::list(&lake, "users");
    assert!(names.contains(&"users/_SUCCESS".to_string()), "{names:?}");
    assert!(
        names.contains(&"users/_report.json".to_string()),
        "{names:?}"
    );
    let part_names: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("users/part-"))
        .collect();
    assert_eq!(
        part_names.len() as u64,
        report["partitions"]["total"].as_u64().unwrap()
    );
    let batches: Vec<_> = part_names
        .iter()
        .flat_map(|n| parquet_rows(s3::get(&lake, n)))
        .collect();
    assert_eq!(column_text(&batches, "user_id"), expected);
    let errors: usize = names
        .iter()
        .filter(|n| n.starts_with("users/_errors/"))
        .map(|n| {
            String::from_utf8(s3::get(&lake, n))
                .unwrap()
                .lines()
                .count()
        })
        .sum();
    assert_eq!(errors, bad.len());
    let stored: serde_json::Value =
        serde_json::from_slice(&s3::get(&lake, "users/_report.json")).unwrap();
    assert_eq!(stored["total_valid"], report["total_valid"]);
}

#[test]
fn local_file_to_one_s3_object_and_back() {
    let lake = unique("lake");
    s3::create_bucket(&lake);
    let dir = tempfile::tempdir().unwrap();
    let (rows, bad) = users(2500);
    let input = dir.path().join("users.csv");
    write_csv(&input, &rows);
    let report = run_ok(&[
        "run",
        "--input",
        input.to_str().unwrap(),
        "--output",
        &format!("s3://{lake}/clean/users.parquet"),
        "--errors",
        &format!("s3://{lake}/errors/users_errors.parquet"),
        "--schema",
        &repo_file("examples/users.schema.json"),
        "--partition-size",
        "32KiB",
    ]);
    assert_eq!(
        report["outputs"],
        serde_json::json!([format!("s3://{lake}/clean/users.parquet")])
    );
    let batches = parquet_rows(s3::get(&lake, "clean/users.parquet"));
    assert_eq!(
        batches.iter().map(|b| b.num_rows()).sum::<usize>(),
        rows.len() - bad.len()
    );
    let errors = parquet_rows(s3::get(&lake, "errors/users_errors.parquet"));
    assert_eq!(error_lines(&errors), bad_lines(&bad));
    // No staging objects remain.
    let names = s3::list(&lake, "");
    assert!(
        names.iter().all(|n| !n.contains("_zoopipe_staging")),
        "{names:?}"
    );

    // And back: the single object as input, to local JSONL.
    let out = dir.path().join("back");
    let report = run_ok(&[
        "run",
        "--input",
        &format!("s3://{lake}/clean/users.parquet"),
        "--output",
        &format!("{}/", out.display()),
        "--format",
        "jsonl",
    ]);
    assert_eq!(report["total_processed"], (rows.len() - bad.len()) as u64);
    assert_eq!(report["total_errors"], 0);
}

#[test]
fn missing_bucket_and_dead_endpoint_fail_fast_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = format!("{}/", dir.path().join("out").display());
    let o = run(&[
        "run",
        "--input",
        "s3://no-such-bucket-zoopipe/x.csv",
        "--output",
        &out,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("s3://no-such-bucket-zoopipe/x.csv"), "{err}");

    // A missing output bucket is named before anything runs, for part files and single files.
    let input = dir.path().join("in.csv");
    write_csv(&input, &users(10).0);
    for output in [
        "s3://no-such-bucket-zoopipe/users/",
        "s3://no-such-bucket-zoopipe/users.parquet",
    ] {
        let o = run(&[
            "run",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output,
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
        let err = text(&o.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains(output) && err.contains("bucket does not exist"),
            "{err}"
        );
    }

    let started = Instant::now();
    let o = Command::new(zoopipectl())
        .args(["run", "--input", "s3://bucket/x.csv", "--output", &out])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("s3://bucket/x.csv"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_failed_job_leaves_no_object_and_no_open_upload() {
    let (raw, lake) = (unique("raw"), unique("lake"));
    s3::create_bucket(&raw);
    s3::create_bucket(&lake);
    let (rows, _) = users(2000);
    s3::put(&raw, "in/a.csv", csv_bytes(&rows));
    let dir = tempfile::tempdir().unwrap();
    let damaged = dir.path().join("b.parquet");
    write_parquet(&damaged, &text_batch(&rows), 500);
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[8..400].iter_mut().for_each(|b| *b = 0xff);
    s3::put(&raw, "in/b.parquet", bytes);
    let o = run(&[
        "run",
        "--input",
        &format!("s3://{raw}/in/"),
        "--output",
        &format!("s3://{lake}/out/"),
        "--partition-size",
        "20KiB",
        "--workers",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("b.parquet"), "{}", text(&o.stderr));
    assert_eq!(s3::list(&lake, "out"), ["out/_report.json"]);
    // Give the background aborts of the failing attempt a moment, then nothing may be open.
    let deadline = Instant::now() + Duration::from_secs(5);
    while s3::open_uploads(&lake) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s3::open_uploads(&lake), 0);
}

#[test]
fn small_objects_fetched_ahead_keep_their_order_and_their_pins() {
    // One task of 200 small objects: their GETs overlap (fetched ahead), their rows do not
    // move, and an object rewritten after planning still fails the job in one line.
    let (raw, lake) = (unique("raw"), unique("lake"));
    s3::create_bucket(&raw);
    s3::create_bucket(&lake);
    let expected = s3::put_small_csvs(&raw, "small/", 200, 40);
    let report = run_ok(&[
        "run",
        "--input",
        &format!("s3://{raw}/small/"),
        "--output",
        &format!("s3://{lake}/out/"),
        "--format",
        "jsonl",
        "--workers",
        "1",
        "--partition-size",
        "1GiB",
    ]);
    assert_eq!(report["partitions"]["total"], 1, "{report:#}");
    assert_eq!(report["total_processed"], 8000, "{report:#}");
    let part = String::from_utf8(s3::get(&lake, "out/part-00000.jsonl")).unwrap();
    let ids: Vec<String> = part
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
        .collect();
    assert_eq!(ids, expected, "rows in object order");

    let child = Command::new(zoopipectl())
        .args(["run", "--input", &format!("s3://{raw}/small/"), "--output"])
        .arg(format!("s3://{lake}/again/"))
        .args([
            "--workers",
            "1",
            "--partition-size",
            "1GiB",
            "--batch-size",
            "40",
        ])
        .env("ZOOPIPE_WORKER_BATCH_DELAY_MS", "20")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    s3::put(
        &raw,
        "small/obj-00190.csv",
        b"id,name\n1,rewritten\n".to_vec(),
    );
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("obj-00190.csv changed since the job was planned"),
        "{stderr}"
    );
    let left = s3::list(&lake, "again/");
    assert!(
        !left
            .iter()
            .any(|n| n.contains("part-") || n.ends_with("_SUCCESS")),
        "nothing published: {left:?}"
    );
}

#[test]
fn tasks_run_while_a_long_listing_goes_on_and_every_row_lands_once_in_order() {
    // 2,500 small objects weigh (with the open cost of each) more than two rounds of two
    // workers' 64 MiB partitions: the first tasks run while the later listing pages are
    // planned, and the output is the one a planning of everything at once would give.
    let input = s3::small_csvs(2500, 2);
    let args = input.command("run", &["--workers", "2", "--json"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = zoopipe_tests::run_env(&[("RUST_LOG", "zoopipe_engine=info")], &args);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("planning=true"),
        "planned as it ran: {stderr}"
    );
    assert!(stderr.contains("planning done"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["total_processed"], 5000, "{report:#}");
    assert_eq!(report["total_valid"], 5000, "every row valid: {report:#}");
    assert_eq!(report["inputs"].as_array().map(Vec::len), Some(2500));
    let tasks = report["partitions"]["total"].as_u64().unwrap();
    assert!((9..=11).contains(&tasks), "{report:#}");
    assert_eq!(
        s3::part_ids(&input.lake, "out/"),
        input.ids,
        "every row once, in order"
    );
}

/// The `user_id` of each JSON line, in order.
fn user_ids(jsonl: &str) -> Vec<String> {
    jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["user_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn small_parquet_and_arrow_objects_are_fetched_ahead_in_order() {
    // 150 small Parquet files (several row groups each) and as many Arrow files (several
    // record batches each), one task per kind: planning reads their footers a few at a time,
    // the task fetches whole objects ahead and reads them from memory. Every row once, in
    // object order, and each object's bytes fetched once for the task.
    let (raw, lake) = (unique("raw"), unique("lake"));
    s3::create_bucket(&raw);
    s3::create_bucket(&lake);
    let dir = tempfile::tempdir().unwrap();
    let (rows, _) = users(150 * 30);
    let mut object_bytes = [0u64; 2];
    for (f, chunk) in rows.chunks(30).enumerate() {
        let batch = text_batch(chunk);
        let pq = dir.path().join(format!("{f}.parquet"));
        write_parquet(&pq, &batch, 7);
        let ipc = dir.path().join(format!("{f}.arrow"));
        write_arrow(&ipc, &batch, 11);
        for (i, (path, key)) in [
            (pq, format!("pq/obj-{f:04}.parquet")),
            (ipc, format!("ipc/obj-{f:04}.arrow")),
        ]
        .into_iter()
        .enumerate()
        {
            let bytes = std::fs::read(path).unwrap();
            object_bytes[i] += bytes.len() as u64;
            s3::put(&raw, &key, bytes);
        }
    }
    let expected: Vec<String> = rows.iter().map(|r| r[0].clone()).collect();
    for (i, (prefix, ext)) in [("pq", "parquet"), ("ipc", "arrow")]
        .into_iter()
        .enumerate()
    {
        let report = run_ok(&[
            "run",
            "--input",
            &format!("s3://{raw}/{prefix}/*.{ext}"),
            "--output",
            &format!("s3://{lake}/{prefix}-out/"),
            "--format",
            "jsonl",
            "--workers",
            "1",
            "--partition-size",
            "1GiB",
        ]);
        assert_eq!(report["partitions"]["total"], 1, "{report:#}");
        assert_eq!(report["total_processed"], rows.len(), "{report:#}");
        let read = report["bytes_read"].as_u64().unwrap();
        assert!(
            read >= object_bytes[i] && read < object_bytes[i] * 2,
            "{prefix}: {read} bytes read for {} bytes of objects",
            object_bytes[i]
        );
        let part =
            String::from_utf8(s3::get(&lake, &format!("{prefix}-out/part-00000.jsonl"))).unwrap();
        assert_eq!(user_ids(&part), expected, "{prefix}: rows in object order");
    }
    // A partition size below the files' size cuts each into runs of row groups or batches,
    // several tasks per file: each reads its own run, every row once, in order.
    for (prefix, ext) in [("pq", "parquet"), ("ipc", "arrow")] {
        let report = run_ok(&[
            "run",
            "--input",
            &format!("s3://{raw}/{prefix}/obj-000*.{ext}"),
            "--output",
            &format!("s3://{lake}/{prefix}-runs/"),
            "--format",
            "jsonl",
            "--workers",
            "2",
            "--partition-size",
            "1KiB",
        ]);
        let tasks = report["partitions"]["total"].as_u64().unwrap();
        assert!(tasks > 10, "{prefix}: {tasks} tasks for 10 files");
        let mut ids = Vec::new();
        for part in 0..tasks {
            let text = String::from_utf8(s3::get(
                &lake,
                &format!("{prefix}-runs/part-{part:05}.jsonl"),
            ))
            .unwrap();
            ids.extend(user_ids(&text));
        }
        assert_eq!(ids, expected[..300], "{prefix}: rows of runs in order");
    }
}

#[test]
fn with_a_schema_each_small_csv_header_is_read_by_its_task() {
    // Planning makes no request for CSVs read whole when a schema is given: each task reads
    // its objects' header lines itself, so columns in another order (in small objects fetched
    // ahead and in a bigger one streamed), a header-only object and an empty one all come out
    // right.
    let (raw, lake) = (unique("raw"), unique("lake"));
    s3::create_bucket(&raw);
    s3::create_bucket(&lake);
    let mut expected = Vec::new();
    for f in 0..30 {
        let mut text = if f % 2 == 0 { "id,name\n" } else { "name,id\n" }.to_string();
        for r in 0..20 {
            let id = f * 20 + r;
            if f % 2 == 0 {
                text.push_str(&format!("{id},n{id}\n"));
            } else {
                text.push_str(&format!("n{id},{id}\n"));
            }
            expected.push(format!("{id}:n{id}"));
        }
        s3::put(&raw, &format!("mixed/obj-{f:03}.csv"), text.into_bytes());
    }
    // One too big to be fetched ahead (over 4 MiB): its task streams it, header first.
    let mut big = String::from("name,id\n");
    let mut id = 600;
    while big.len() < 5 * 1024 * 1024 {
        big.push_str(&format!("n{id},{id}\n"));
        expected.push(format!("{id}:n{id}"));
        id += 1;
    }
    s3::put(&raw, "mixed/obj-050.csv", big.into_bytes());
    s3::put(&raw, "mixed/obj-100.csv", b"id,name\n".to_vec());
    s3::put(&raw, "mixed/obj-101.csv", Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("s.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","properties":{"id":{"type":"integer"},"name":{"type":"string"}},"required":["id","name"]}"#,
    )
    .unwrap();
    let report = run_ok(&[
        "run",
        "--input",
        &format!("s3://{raw}/mixed/"),
        "--output",
        &format!("s3://{lake}/out/"),
        "--schema",
        &schema.to_string_lossy(),
        "--format",
        "jsonl",
        "--workers",
        "1",
        "--partition-size",
        "1GiB",
    ]);
    assert_eq!(report["total_processed"], expected.len(), "{report:#}");
    assert_eq!(report["total_errors"], 0, "{report:#}");
    let part = String::from_utf8(s3::get(&lake, "out/part-00000.jsonl")).unwrap();
    let rows: Vec<String> = part
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!("{}:{}", v["id"], v["name"].as_str().unwrap())
        })
        .collect();
    assert_eq!(rows, expected);
}
