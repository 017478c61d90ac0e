//! Security: TLS, mutual TLS for workers, bearer tokens with roles, and no secret in any log.

use std::process::Command;
use zoopipe_tests::fleet::*;
use zoopipe_tests::*;

#[test]
fn tls_tokens_and_roles_guard_the_api_and_secrets_stay_out_of_logs() {
    const CLIENT_TOKEN: &str = "client-token-5f1c9e";
    const WORKER_TOKEN: &str = "worker-token-8a7d2b";
    const AWS_SECRET: &str = "aws-secret-3c6e0f91";
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    certificates(dir.path());
    std::fs::write(
        dir.path().join("tokens"),
        format!("# role per token\n{CLIENT_TOKEN} client\n{WORKER_TOKEN} worker\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("client-token"), format!("{CLIENT_TOKEN}\n")).unwrap();
    std::fs::write(dir.path().join("worker-token"), WORKER_TOKEN).unwrap();
    let port = free_port();
    let prefix = format!("/zoopipe-fleet-test/{}-{port}-tls", std::process::id());
    let secret_env = [("AWS_SECRET_ACCESS_KEY", AWS_SECRET), ("RUST_LOG", "debug")];
    let (cert, key, ca, tokens) = (
        path("server.pem"),
        path("server.key"),
        path("ca.pem"),
        path("tokens"),
    );
    let tls = [
        "--http",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
        "--tokens-file",
        &tokens,
    ];
    let _coordinator = start_coordinator_with(port, &prefix, &etcd(), &tls, &secret_env);
    wait_leading(port);
    let url = format!("https://127.0.0.1:{port}");
    // Mutual TLS: the worker proves itself with its client certificate, no token.
    let (worker_cert, worker_key) = (path("worker.pem"), path("worker.key"));
    let mtls = [
        "--http",
        "127.0.0.1:0",
        "--tls-ca",
        &ca,
        "--tls-cert",
        &worker_cert,
        "--tls-key",
        &worker_key,
    ];
    let _worker = start_worker(&url, "worker-tls", port, &mtls, &secret_env);
    let job = users_job(1, 500);
    let submit = |token: Option<&str>, ca: bool, url: &str| {
        let mut args = vec![
            "submit".to_string(),
            "--input".into(),
            format!("s3://{}/in/", job.raw),
            "--output".into(),
            format!("s3://{}/users/", job.lake),
            "--schema".into(),
            repo_file("examples/users.schema.json"),
            "--coordinator".into(),
            url.to_string(),
            "--wait".into(),
            "--json".into(),
        ];
        if ca {
            args.extend(["--tls-ca".into(), path("ca.pem")]);
        }
        if let Some(t) = token {
            args.extend(["--token-file".into(), path(t)]);
        }
        let out = Command::new(zoopipectl())
            .args(&args)
            .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
            .output()
            .unwrap();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    // No token, a worker's token, no TLS: refused with one clear line each.
    let (code, _, err) = submit(None, true, &url);
    assert_ne!(code, Some(0));
    assert!(err.contains("bearer token is required"), "{err}");
    let (code, _, err) = submit(Some("worker-token"), true, &url);
    assert_ne!(code, Some(0));
    assert!(err.contains("cannot use the job API"), "{err}");
    let (code, _, err) = submit(
        Some("client-token"),
        false,
        &format!("http://127.0.0.1:{port}"),
    );
    assert_ne!(code, Some(0), "plain text to a TLS port");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // The client's token over TLS: the job runs on the mTLS worker.
    let (code, out, err) = submit(Some("client-token"), true, &url);
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["state"], "succeeded", "{report:#}");
    assert_eq!(report["total_processed"], 500);
    // Secrets never reach logs, reports or outputs.
    let mut seen = vec![out, err];
    for name in [format!("coordinator-{port}"), format!("worker-tls-{port}")] {
        let log = std::env::temp_dir().join(format!("zoopipe-{name}.log"));
        seen.push(std::fs::read_to_string(log).unwrap());
    }
    for key in s3::list(&job.lake, "users") {
        if key.ends_with(".json") || key.ends_with(".jsonl") {
            seen.push(String::from_utf8_lossy(&s3::get(&job.lake, &key)).into_owned());
        }
    }
    assert!(
        seen[2].contains("DEBUG"),
        "the coordinator logged at debug level"
    );
    for text in &seen {
        for secret in [CLIENT_TOKEN, WORKER_TOKEN, AWS_SECRET] {
            assert!(!text.contains(secret), "a secret leaked: {secret}");
        }
    }
}

#[test]
fn the_coordinator_reaches_etcd_over_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (client, peer) = (free_port(), free_port());
    let (ca, server_cert, server_key) = (path("ca.pem"), path("server.pem"), path("server.key"));
    let _etcd = start_etcd_with(
        &dir.path().join("etcd"),
        client,
        peer,
        "https",
        &[
            "--cert-file",
            &server_cert,
            "--key-file",
            &server_key,
            "--trusted-ca-file",
            &ca,
            "--client-cert-auth",
        ],
    );
    let endpoint = format!("https://127.0.0.1:{client}");
    let port = free_port();
    let prefix = format!("/zoopipe-fleet-test/{}-{port}-etcd-tls", std::process::id());

    // Without a client certificate etcd refuses us: one line, and the coordinator exits.
    let refused = Command::new(bin("zoopipe-coordinator"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--http",
            "127.0.0.1:0",
        ])
        .args([
            "--etcd",
            &endpoint,
            "--etcd-ca",
            &ca,
            "--etcd-prefix",
            &prefix,
        ])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = text(&refused.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&endpoint), "{err}");

    // With one, the fleet runs a job with its state in that etcd.
    let (cert, key) = (path("worker.pem"), path("worker.key"));
    let _coordinator = start_coordinator_with(
        port,
        &prefix,
        &endpoint,
        &[
            "--http",
            "127.0.0.1:0",
            "--etcd-ca",
            &ca,
            "--etcd-cert",
            &cert,
            "--etcd-key",
            &key,
        ],
        &[],
    );
    let url = format!("http://127.0.0.1:{port}");
    let _worker = start_worker(
        &url,
        "worker-etcd-tls",
        port,
        &["--http", "127.0.0.1:0"],
        &[],
    );
    let out_dir = dir.path().join("out");
    let report = run_ok(&[
        "submit",
        "--input",
        &repo_file("examples/users.csv"),
        "--output",
        &format!("{}/", out_dir.display()),
        "--schema",
        &repo_file("examples/users.schema.json"),
        "--coordinator",
        &url,
        "--wait",
    ]);
    assert_eq!(report["state"], "succeeded", "{report:#}");
    let total = report["total_processed"].as_u64().unwrap();
    assert!(total > 0);
    assert_eq!(
        total,
        report["total_valid"].as_u64().unwrap() + report["total_errors"].as_u64().unwrap()
    );
    assert!(out_dir.join("_SUCCESS").exists());
}
