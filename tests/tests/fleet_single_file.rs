//! A fleet job with a single-file output (`users.parquet`): the coordinator assembles it inside
//! S3 at commit, and a coordinator that dies in the middle of that commit is replaced by one
//! that finishes it with exactly the right object.

use zoopipe_tests::fleet::*;
use zoopipe_tests::*;

/// The committed single file holds exactly the clean run's rows, in input order, and its
/// manifest entry describes it.
fn assert_single_file(f: &Fleet, job: &UsersJob, id: &str) {
    let watched = run(&["watch", id, "--coordinator", &f.url, "--json"]);
    assert!(watched.status.success(), "{}", text(&watched.stderr));
    let report: serde_json::Value = serde_json::from_slice(&watched.stdout).unwrap();
    assert_eq!(report["state"], "succeeded", "{report:#}");
    assert!(
        report["partitions"]["total"].as_u64().unwrap() >= 3,
        "{report:#}"
    );
    let lake = &job.lake;
    let bytes = s3::get(lake, "out/users.parquet");
    let batches: Vec<_> = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(bytes.clone()),
    )
    .unwrap()
    .build()
    .unwrap()
    .map(|b| b.unwrap())
    .collect();
    assert_eq!(column_text(&batches, "user_id"), job.valid);
    let errors = text(&s3::get(lake, "out/users_errors.jsonl"));
    assert_eq!(errors.lines().count(), job.invalid);
    let manifest: serde_json::Value =
        serde_json::from_slice(&s3::get(lake, "out/_users.parquet.manifest.json")).unwrap();
    assert_eq!(
        manifest["outputs"][0]["crc32"],
        format!("{:08x}", crc32fast::hash(&bytes))
    );
    let names = s3::list(lake, "out/");
    assert!(
        names.contains(&"out/_users.parquet.SUCCESS".to_string()),
        "{names:?}"
    );
    assert!(
        names.iter().all(|n| !n.contains("_zoopipe_staging")),
        "staging cleaned: {names:?}"
    );
    assert_eq!(wait_no_open_uploads(lake), 0);
}

#[test]
fn a_single_file_output_is_assembled_by_the_coordinator() {
    let f = fleet(3, 0);
    let job = users_job(3, 1500);
    let id = job.submit_single_file(&f.url);
    assert_single_file(&f, &job, &id);
}

#[test]
fn a_coordinator_dying_mid_commit_is_replaced_and_the_commit_completes() {
    // After the object is assembled (parts still staged), and after the manifest is written
    // (staging not yet removed): the two places where a commit holds half-finished state.
    for point in ["commit-assembled", "commit-manifest"] {
        let mut f = fleet(2, 0);
        f.coordinator_with_env(&[("ZOOPIPE_FAULT_EXIT_AT", point)]);
        let job = users_job(3, 1500);
        let id = job.submit_single_file(&f.url);
        let status = f.wait_coordinator_exit(point);
        assert_eq!(status.code(), Some(137), "{point}");
        let names = s3::list(&job.lake, "out/");
        assert!(
            !names.contains(&"out/_users.parquet.SUCCESS".to_string()),
            "{point}: {names:?}"
        );
        f.coordinator = Some(start_coordinator(f.port, &f.prefix));
        assert_single_file(&f, &job, &id);
    }
}
