//! A newcomer's first hour: specs run from any directory, a submit from the repository root,
//! and a coordinator without S3 credentials says it is the one refused.

use std::process::Command;
use zoopipe_tests::fleet::*;
use zoopipe_tests::*;

#[test]
fn a_spec_runs_from_any_directory_its_paths_relative_to_the_spec() {
    let project = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join("data")).unwrap();
    std::fs::copy(
        repo_file("examples/users.csv"),
        project.path().join("data/users.csv"),
    )
    .unwrap();
    std::fs::copy(
        repo_file("examples/users.schema.json"),
        project.path().join("users.schema.json"),
    )
    .unwrap();
    std::fs::write(
        project.path().join("job.yaml"),
        "inputs: [data/users.csv]\noutput: out/\nschema: users.schema.json\nerrors: bad/\n",
    )
    .unwrap();
    let out = Command::new(zoopipectl())
        .args([
            "run",
            &project.path().join("job.yaml").to_string_lossy(),
            "--json",
        ])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["total_processed"], 42, "{report:#}");
    // Outputs land beside the spec, not in the current directory.
    assert!(project.path().join("out/_SUCCESS").exists());
    assert!(project.path().join("bad").is_dir());
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
}

#[test]
fn submit_from_the_repository_root_sends_paths_the_fleet_can_read() {
    let f = fleet(1, 0);
    let out_dir = tempfile::tempdir().unwrap();
    // The coordinator and the worker run elsewhere (their working directory is not this one).
    let out = Command::new(zoopipectl())
        .args([
            "submit",
            "examples/job.yaml",
            "--output",
            &format!("{}/users/", out_dir.path().display()),
            "--errors",
            &format!("{}/errors/", out_dir.path().display()),
            "--coordinator",
            &f.url,
            "--wait",
            "--json",
        ])
        .current_dir(repo_file(""))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["total_processed"], 42, "{report:#}");
    assert!(out_dir.path().join("users/_SUCCESS").exists());

    // A local path the coordinator cannot see is refused with a line that says why.
    let o = run(&[
        "submit",
        "--input",
        "/nowhere/on/this/machine.csv",
        "--output",
        &format!("{}/x/", out_dir.path().display()),
        "--coordinator",
        &f.url,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let message = text(&o.stderr);
    assert!(
        message.contains("not found on the coordinator's machine")
            && message.contains("/nowhere/on/this/machine.csv"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
}

#[test]
fn a_coordinator_without_s3_credentials_is_named_as_the_one_refused() {
    // s3s-fs checks signatures (moto does not): the coordinator signs with a wrong secret.
    let var = |k: &str| std::env::var(k).expect("run through scripts/test.sh");
    let root = std::path::PathBuf::from(var("ZOOPIPE_TEST_S3S_ROOT"));
    let bucket = unique("creds");
    std::fs::create_dir(root.join(&bucket)).unwrap();
    std::fs::write(
        root.join(&bucket).join("users.csv"),
        csv_bytes(&users(10).0),
    )
    .unwrap();
    let endpoint = var("ZOOPIPE_TEST_S3S_ENDPOINT");
    let key = var("ZOOPIPE_TEST_S3S_KEY");
    let port = free_port();
    let prefix = format!("/zoopipe-fleet-test/{}-{port}-creds", std::process::id());
    let _coordinator = start_coordinator_with(
        port,
        &prefix,
        &etcd(),
        &[],
        &[
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
            ("ZOOPIPE_S3_MAX_RETRIES", "0"),
        ],
    );
    wait_leading(port);
    let o = run(&[
        "submit",
        "--input",
        &format!("s3://{bucket}/users.csv"),
        "--output",
        &format!("s3://{bucket}/out/"),
        "--coordinator",
        &format!("http://127.0.0.1:{port}"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let message = text(&o.stderr);
    assert!(
        message.contains("the coordinator was refused") && message.contains("own environment"),
        "{message}"
    );
    assert!(!message.contains("not-the-secret"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
}
