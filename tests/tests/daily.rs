//! Daily jobs: `${date}` variables and the name + variables idempotency key.

use zoopipe_tests::fleet::*;
use zoopipe_tests::*;

#[test]
fn a_daily_job_runs_once_per_date_and_resumes_only_what_did_not_commit() {
    let f = fleet(1, 60);
    let (raw, lake) = (unique("raw"), unique("lake"));
    s3::create_bucket(&raw);
    s3::create_bucket(&lake);
    let (rows, _) = users(5 * 1500);
    let files: Vec<(String, Vec<u8>)> = rows
        .chunks(1500)
        .enumerate()
        .map(|(i, chunk)| (format!("in/2024-01-01/users-{i}.csv"), csv_bytes(chunk)))
        .collect();
    for (key, bytes) in &files {
        s3::put(&raw, key, bytes.clone());
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("daily.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: daily-users\ninputs: [\"s3://{raw}/in/${{date}}/*.csv\"]\n\
             output: s3://{lake}/users/date=${{date}}/\nschema: {}\nbatch_size: 250\n\
             partition_size: 100KiB\n",
            repo_file("examples/users.schema.json")
        ),
    )
    .unwrap();
    let submit = |extra: &[&str]| {
        let mut args = vec!["submit", spec.to_str().unwrap(), "--coordinator", &f.url];
        args.extend_from_slice(&["--var", "date=2024-01-01", "--wait", "--json"]);
        args.extend_from_slice(extra);
        run(&args)
    };
    // The last file vanishes once the job is planned (submit without --wait returns then):
    // its task, the last of five on one slow worker, fails, and with it the first run.
    let planned = run(&[
        "submit",
        spec.to_str().unwrap(),
        "--coordinator",
        &f.url,
        "--var",
        "date=2024-01-01",
    ]);
    assert!(planned.status.success(), "{}", text(&planned.stderr));
    let job_id = text(&planned.stdout).trim().to_string();
    let (last_key, last_bytes) = files.last().unwrap().clone();
    s3::delete(&raw, &last_key);
    let first = run(&["watch", &job_id, "--coordinator", &f.url, "--json"]);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stderr));
    let failed: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(failed["state"], "failed", "{failed:#}");
    assert!(
        !s3::list(&lake, "users").iter().any(|n| n.contains("part-")),
        "a failed run publishes nothing"
    );
    // The file is back: the same submission resumes and runs only the uncommitted tasks.
    s3::put(&raw, &last_key, last_bytes);
    let second = submit(&[]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    let message = text(&second.stderr);
    let (left, total) = message
        .split("resumed as job ")
        .nth(1)
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|rest| rest.split(" tasks left").next())
        .and_then(|counts| counts.split_once(" of "))
        .map(|(l, t)| (l.parse::<u64>().unwrap(), t.parse::<u64>().unwrap()))
        .unwrap_or_else(|| panic!("not resumed: {message}"));
    assert!(left >= 1 && left < total, "{message}");
    let report: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(report["state"], "succeeded", "{report:#}");
    assert_eq!(report["job_id"], failed["job_id"], "the same job, resumed");
    assert_eq!(report["total_processed"], rows.len() as u64, "{report:#}");
    let names = s3::list(&lake, "users/date=2024-01-01");
    assert!(names.iter().any(|n| n.ends_with("_SUCCESS")), "{names:?}");
    // Once succeeded, the same date is a no-op that prints the earlier report.
    let third = submit(&[]);
    assert!(third.status.success(), "{}", text(&third.stderr));
    assert!(
        text(&third.stderr).contains("already succeeded"),
        "{}",
        text(&third.stderr)
    );
    let again: serde_json::Value = serde_json::from_slice(&third.stdout).unwrap();
    assert_eq!(again["job_id"], report["job_id"]);
    assert_eq!(s3::list(&lake, "users/date=2024-01-01"), names);
}

#[test]
fn one_named_job_submitted_twice_at_once_runs_once() {
    // Two submits of one name at the same moment: one job, the other submit follows it (it
    // used to be refused at the output's claim, told to delete a running job's marker).
    let f = fleet(1, 0);
    let (raw, lake) = (unique("raw"), unique("lake"));
    s3::create_bucket(&raw);
    s3::create_bucket(&lake);
    let (rows, _) = users(3000);
    s3::put(&raw, "in/users.csv", csv_bytes(&rows));
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("twice.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: twice\ninputs: [\"s3://{raw}/in/\"]\noutput: s3://{lake}/users/\n\
             schema: {}\n",
            repo_file("examples/users.schema.json")
        ),
    )
    .unwrap();
    let submits: Vec<_> = (0..2)
        .map(|_| {
            let spec = spec.clone();
            let url = f.url.clone();
            std::thread::spawn(move || {
                run(&[
                    "submit",
                    spec.to_str().unwrap(),
                    "--coordinator",
                    &url,
                    "--wait",
                ])
            })
        })
        .collect();
    let outs: Vec<_> = submits.into_iter().map(|t| t.join().unwrap()).collect();
    for out in &outs {
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let parts = s3::list(&lake, "users")
        .into_iter()
        .filter(|n| n.contains("part-") && !n.contains("_errors"))
        .count();
    assert_eq!(parts, 1, "one job, one part");
}
