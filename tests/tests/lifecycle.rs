//! The one job lifecycle, walked in both modes: `zoopipectl run` (embedded, in-memory store)
//! and a real fleet (coordinator, workers, etcd). Each scenario runs the same job both ways and
//! expects the same outcome: the re-read of a file whose quoted newlines cross a partition
//! boundary, a task that keeps failing, the error-rate gate, overwrite, and cancel.

use std::process::{Command, Output, Stdio};
use std::time::Duration;
use zoopipe_tests::fleet::*;
use zoopipe_tests::*;

/// Where a job runs.
enum Mode {
    Embedded { env: Vec<(String, String)> },
    Fleet(Fleet),
}

impl Mode {
    fn name(&self) -> &'static str {
        match self {
            Self::Embedded { .. } => "embedded",
            Self::Fleet(_) => "fleet",
        }
    }

    /// The job to its end, as `run` or `submit --wait`: exit status and report.
    fn run(&self, args: &[&str]) -> (Output, serde_json::Value) {
        let mut command = Command::new(zoopipectl());
        match self {
            Self::Embedded { env } => {
                command.arg("run").args(args).envs(env.iter().cloned());
            }
            Self::Fleet(f) => {
                command
                    .arg("submit")
                    .args(args)
                    .args(["--coordinator", &f.url, "--wait"]);
            }
        }
        let out = command.args(["--json"]).output().expect("zoopipectl runs");
        let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out, report)
    }
}

fn both(env: &[(&str, &str)]) -> Vec<Mode> {
    let owned = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vec![
        Mode::Embedded { env: owned },
        Mode::Fleet(fleet_with(2, 0, &etcd(), env)),
    ]
}

fn published(bucket: &str, prefix: &str) -> Vec<String> {
    s3::list(bucket, prefix)
        .into_iter()
        .filter(|n| n.contains("part-") || n.ends_with("_SUCCESS"))
        .collect()
}

#[test]
fn a_file_whose_quoted_newlines_cross_ranges_is_read_again_whole_in_both_modes() {
    for mode in both(&[]) {
        let raw = unique("raw");
        let lake = unique("lake");
        s3::create_bucket(&raw);
        s3::create_bucket(&lake);
        s3::put(&raw, "notes.csv", quoted_newlines_csv(3000));
        let (out, report) = mode.run(&[
            "--input",
            &format!("s3://{raw}/notes.csv"),
            "--output",
            &format!("s3://{lake}/notes/"),
            "--format",
            "jsonl",
            "--partition-size",
            "16KiB",
        ]);
        let m = mode.name();
        assert!(out.status.success(), "{m}: {}", text(&out.stderr));
        assert_eq!(report["total_processed"], 3000, "{m}: {report:#}");
        assert_eq!(report["total_errors"], 0, "{m}");
        // One task remains for the file, and its rows are every record, in order.
        assert_eq!(report["partitions"]["total"], 1, "{m}: {report:#}");
        let mut ids = Vec::new();
        let names = s3::list(&lake, "notes");
        for name in names.iter().filter(|n| n.starts_with("notes/part-")) {
            for line in text(&s3::get(&lake, name)).lines() {
                let row: serde_json::Value = serde_json::from_str(line).unwrap();
                ids.push(row["id"].to_string());
            }
        }
        assert_eq!(
            ids,
            (0..3000).map(|i| i.to_string()).collect::<Vec<_>>(),
            "{m}"
        );
    }
}

#[test]
fn a_task_that_keeps_failing_fails_the_job_naming_it_after_max_attempts_in_both_modes() {
    for mode in both(&[("ZOOPIPE_FAULT_FAIL_TASK", "1")]) {
        let job = users_job(3, 300); // three files of ~50 KB: one task each at 64 KiB
        let (out, report) = mode.run(&[
            "--input",
            &format!("s3://{}/in/", job.raw),
            "--output",
            &format!("s3://{}/users/", job.lake),
            "--schema",
            &repo_file("examples/users.schema.json"),
            "--max-attempts",
            "3",
            "--partition-size",
            "64KiB",
        ]);
        let m = mode.name();
        assert_eq!(out.status.code(), Some(1), "{m}: {}", text(&out.stderr));
        assert_eq!(report["state"], "failed", "{m}: {report:#}");
        let message = report["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("task 1 (s3://")
                && message.contains("/in/users-0")
                && message.contains("after 3 attempts")
                && message.contains("ZOOPIPE_FAULT_FAIL_TASK"),
            "{m}: the message names the partition, its attempts and last error: {message}"
        );
        assert!(message.contains("nothing was committed"), "{m}: {message}");
        assert_eq!(published(&job.lake, "users"), Vec::<String>::new(), "{m}");
        assert_eq!(wait_no_open_uploads(&job.lake), 0, "{m}");
    }
}

#[test]
fn the_error_rate_gate_publishes_nothing_in_both_modes() {
    for mode in both(&[]) {
        let job = users_job(2, 700); // one row in seven is invalid: ~14 %
        let (out, report) = mode.run(&[
            "--input",
            &format!("s3://{}/in/", job.raw),
            "--output",
            &format!("s3://{}/users/", job.lake),
            "--schema",
            &repo_file("examples/users.schema.json"),
            "--max-error-rate",
            "0.05",
        ]);
        let m = mode.name();
        assert_eq!(out.status.code(), Some(1), "{m}: {}", text(&out.stderr));
        assert_eq!(report["state"], "failed", "{m}: {report:#}");
        assert!(
            report["message"]
                .as_str()
                .unwrap_or_default()
                .contains("above max_error_rate"),
            "{m}: {report:#}"
        );
        assert_eq!(report["total_errors"], job.invalid as u64, "{m}");
        assert_eq!(published(&job.lake, "users"), Vec::<String>::new(), "{m}");
        assert_eq!(
            s3::list(&job.lake, "users"),
            ["users/_report.json"],
            "{m}: nothing but the report"
        );
    }
}

#[test]
fn overwrite_replaces_every_earlier_part_in_both_modes() {
    for mode in both(&[]) {
        let job = users_job(4, 500);
        let args = |partition: &'static str| {
            vec![
                "--input".to_string(),
                format!("s3://{}/in/", job.raw),
                "--output".to_string(),
                format!("s3://{}/users/", job.lake),
                "--schema".to_string(),
                repo_file("examples/users.schema.json"),
                "--partition-size".to_string(),
                partition.to_string(),
            ]
        };
        let first = args("16KiB");
        let first: Vec<&str> = first.iter().map(String::as_str).collect();
        let (out, report) = mode.run(&first);
        let m = mode.name();
        assert!(out.status.success(), "{m}: {}", text(&out.stderr));
        let earlier_parts = report["partitions"]["total"].as_u64().unwrap();
        assert!(earlier_parts > 1, "{m}: {report:#}");
        // Into an output that holds data: refused, unless --overwrite.
        let (out, _) = mode.run(&first);
        assert_eq!(out.status.code(), Some(2), "{m}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("--overwrite"), "{m}");
        let second = args("128MiB");
        let mut second: Vec<&str> = second.iter().map(String::as_str).collect();
        second.push("--overwrite");
        let (out, report) = mode.run(&second);
        assert!(out.status.success(), "{m}: {}", text(&out.stderr));
        assert_eq!(report["partitions"]["total"], 1, "{m}: {report:#}");
        assert_eq!(
            output_ids(&job.lake),
            job.valid,
            "{m}: exactly one run's rows, no stale parts"
        );
    }
}

#[test]
fn cancel_commits_nothing_in_both_modes() {
    // Embedded: Ctrl-C (SIGINT) on `zoopipectl run`.
    let job = users_job(4, 2000);
    let child = Command::new(zoopipectl())
        .args([
            "run",
            "--input",
            &format!("s3://{}/in/", job.raw),
            "--output",
            &format!("s3://{}/users/", job.lake),
            "--schema",
            &repo_file("examples/users.schema.json"),
            "--batch-size",
            "250",
            "--workers",
            "2",
            "--json",
        ])
        .env("ZOOPIPE_WORKER_BATCH_DELAY_MS", "200")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["state"], "cancelled", "{report:#}");
    assert!(
        report["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nothing was committed"),
        "{report:#}"
    );
    assert_eq!(published(&job.lake, "users"), Vec::<String>::new());
    assert_eq!(wait_no_open_uploads(&job.lake), 0);

    // The fleet: `zoopipectl cancel`.
    let f = fleet(2, 200);
    let job = users_job(4, 2000);
    let id = job.submit(&f);
    std::thread::sleep(Duration::from_millis(900));
    let cancelled = run(&["cancel", &id, "--coordinator", &f.url]);
    assert!(cancelled.status.success(), "{}", text(&cancelled.stderr));
    let report = wait_ended(&f, &id, Duration::from_secs(30));
    assert_eq!(report["state"], "cancelled", "{report:#}");
    assert_eq!(wait_no_open_uploads(&job.lake), 0);
    assert_eq!(published(&job.lake, "users"), Vec::<String>::new());
}

#[test]
fn overwriting_a_single_file_output_leaves_no_stale_error_rows_in_both_modes() {
    for mode in both(&[]) {
        let job = users_job(1, 700); // one row in seven is invalid
        let clean = unique("clean");
        s3::create_bucket(&clean);
        // The same rows without the invalid ones: a clean second run.
        let valid: Vec<[String; 8]> = users(700)
            .0
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % 7 != 3)
            .map(|(_, r)| r)
            .collect();
        s3::put(&clean, "in/users.csv", csv_bytes(&valid));
        let m = mode.name();
        let target = format!("s3://{}/out/users.parquet", job.lake);
        let schema = repo_file("examples/users.schema.json");
        let (out, report) = mode.run(&[
            "--input",
            &format!("s3://{}/in/", job.raw),
            "--output",
            &target,
            "--schema",
            &schema,
        ]);
        assert!(out.status.success(), "{m}: {}", text(&out.stderr));
        assert!(report["total_errors"].as_u64().unwrap() > 0, "{m}");
        assert!(s3::list(&job.lake, "out").contains(&"out/users_errors.jsonl".to_string()));
        let (out, report) = mode.run(&[
            "--input",
            &format!("s3://{clean}/in/"),
            "--output",
            &target,
            "--schema",
            &schema,
            "--overwrite",
        ]);
        assert!(out.status.success(), "{m}: {}", text(&out.stderr));
        assert_eq!(report["total_errors"], 0, "{m}: {report:#}");
        let names = s3::list(&job.lake, "out");
        assert!(
            !names.contains(&"out/users_errors.jsonl".to_string()),
            "{m}: the first run's error rows went with it: {names:?}"
        );
    }
}

#[test]
fn a_second_job_into_a_busy_output_is_refused_naming_the_running_job_in_both_modes() {
    let slow = [("ZOOPIPE_WORKER_BATCH_DELAY_MS", "150")];
    // Embedded: job A runs in the background while B tries the same output.
    let a = users_job(4, 2000);
    let b = users_job(1, 100);
    let output = format!("s3://{}/users/", a.lake);
    let schema = repo_file("examples/users.schema.json");
    let running = Command::new(zoopipectl())
        .args([
            "run",
            "--input",
            &format!("s3://{}/in/", a.raw),
            "--output",
            &output,
        ])
        .args([
            "--schema",
            &schema,
            "--batch-size",
            "250",
            "--workers",
            "1",
            "--json",
        ])
        .envs(slow)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let input = format!("s3://{}/in/", b.raw);
    for overwrite in [false, true] {
        let mut args = vec!["run", "--input", &input, "--output", &output];
        if overwrite {
            args.push("--overwrite");
        }
        let o = run(&args);
        let message = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "overwrite={overwrite}: {message}");
        assert!(message.contains("is in use by job "), "{message}");
        assert_eq!(message.lines().count(), 1, "{message}");
    }
    let done = running.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", text(&done.stderr));
    let report: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(
        output_ids(&a.lake),
        a.valid,
        "only job A's rows: {report:#}"
    );
    // Once A has ended, the output is free again (for an overwrite).
    let o = run(&["run", "--input", &input, "--output", &output, "--overwrite"]);
    assert!(o.status.success(), "{}", text(&o.stderr));

    // The fleet: B is refused naming A's job id, whether submitted to the fleet or run here.
    let f = fleet_with(2, 150, &etcd(), &[]);
    let a = users_job(4, 2000);
    let id = a.submit(&f);
    std::thread::sleep(Duration::from_millis(500));
    let output = format!("s3://{}/users/", a.lake);
    let o = run(&[
        "submit",
        "--input",
        &input,
        "--output",
        &output,
        "--coordinator",
        &f.url,
    ]);
    let message = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{message}");
    assert!(
        message.contains(&format!("is in use by job {id}")),
        "{message}"
    );
    let o = run(&["run", "--input", &input, "--output", &output, "--overwrite"]);
    let message = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{message}");
    assert!(
        message.contains(&format!("is in use by job {id}")),
        "{message}"
    );
    let report = a.assert_exact(&f, &id);
    assert_eq!(report["state"], "succeeded");
    assert!(
        !s3::list(&a.lake, "users")
            .iter()
            .any(|n| n.contains("_zoopipe_owner")),
        "the claim goes with the job"
    );
}

#[test]
fn a_local_input_rewritten_during_run_fails_it_in_one_line_naming_the_file() {
    // Embedded, local files: the ETag the planner saw (inode, mtime, size) pins every read.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("users.csv");
    let (rows, _) = users(8000);
    std::fs::write(&input, csv_bytes(&rows)).unwrap();
    let out = format!("{}/", dir.path().join("out").to_string_lossy());
    let child = Command::new(zoopipectl())
        .args(["run", "--input", &input.to_string_lossy(), "--output", &out])
        .args([
            "--partition-size",
            "64KiB",
            "--batch-size",
            "250",
            "--workers",
            "1",
            "-q",
        ])
        .env("ZOOPIPE_WORKER_BATCH_DELAY_MS", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let mut rewritten = std::fs::read(&input).unwrap();
    rewritten.reverse();
    std::fs::write(&input, rewritten).unwrap();
    let done = child.wait_with_output().unwrap();
    let stderr = text(&done.stderr);
    assert_eq!(done.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("users.csv") && stderr.contains("changed since the job was planned"),
        "{stderr}"
    );
    assert!(
        parts(&dir.path().join("out")).is_empty(),
        "nothing published"
    );
}
