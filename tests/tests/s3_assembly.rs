//! Single-file outputs on S3 are assembled inside the store (UploadPartCopy of the committed
//! parts' byte ranges), against the real S3 server scripts/test.sh starts (moto): the object is
//! byte for byte what streaming the parts gives, its manifest CRC-32 is the object's, an
//! independent reader (pyarrow) reads it, and the data did not pass through zoopipectl.

use std::io::Write;
use std::process::Command;
use zoopipe_common::storage::assemble::{MIN_PART, Piece, assemble};
use zoopipe_common::storage::{ObjectUrl, Storage};
use zoopipe_tests::*;

/// `rows` lines of `id,name,blob` where blob is 64 pseudo-random hex digits: hardly
/// compressible, so Parquet parts stay above S3's 5 MiB minimum part size.
fn wide_csv(rows: u64) -> Vec<u8> {
    let mut out = b"id,name,blob\n".to_vec();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..rows {
        let mut blob = String::with_capacity(64);
        for _ in 0..4 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            blob.push_str(&format!("{state:016x}"));
        }
        writeln!(out, "{i},user{i},{blob}").unwrap();
    }
    out
}

/// Run with `-v` and return (report, stderr).
fn run_logged(args: &[&str]) -> (serde_json::Value, String) {
    let mut all = args.to_vec();
    all.extend(["--json", "-v"]);
    let out = run(&all);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "zoopipectl {args:?} failed:\n{stderr}"
    );
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

/// The numbers in the coordinator's "assembled inside the store" line.
fn assembly_counts(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr
        .lines()
        .find(|l| l.contains("assembled inside the store"))?;
    let field = |name: &str| -> Option<u64> {
        let rest = &line[line.find(&format!("{name}="))? + name.len() + 1..];
        rest.split_whitespace().next()?.parse().ok()
    };
    Some((field("copied_bytes")?, field("uploaded_bytes")?))
}

/// Rows of a Parquet or Arrow IPC file as pyarrow counts them (an independent reader).
fn pyarrow_rows(path: &std::path::Path) -> u64 {
    let python = std::env::var("ZOOPIPE_TEST_PYTHON").expect(
        "ZOOPIPE_TEST_PYTHON is not set: run the tests with scripts/test.sh (it installs pyarrow)",
    );
    let out = Command::new(python)
        .args([
            "-c",
            "import sys, pyarrow.parquet as pq, pyarrow.ipc as ipc\n\
             p = sys.argv[1]\n\
             t = pq.read_table(p) if p.endswith('.parquet') else ipc.open_file(p).read_all()\n\
             print(t.num_rows)",
        ])
        .arg(path)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "pyarrow: {}", text(&out.stderr));
    let printed = text(&out.stdout);
    printed.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn single_file_outputs_are_assembled_inside_s3_byte_for_byte() {
    let lake = unique("lake");
    s3::create_bucket(&lake);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("wide.csv");
    let rows = 200_000;
    std::fs::write(&input, wide_csv(rows)).unwrap();
    let input = input.to_str().unwrap();
    for format in ["csv", "jsonl", "parquet", "arrow"] {
        let key = format!("out/wide.{format}");
        let common = ["--partition-size", "7MiB", "--compression", "none"];
        let mut args = vec!["run", "--input", input, "--output"];
        let target = format!("s3://{lake}/{key}");
        args.push(&target);
        args.extend(common);
        let (report, stderr) = run_logged(&args);
        assert_eq!(report["total_processed"], rows, "{format}: {report:#}");
        assert!(
            report["partitions"]["total"].as_u64().unwrap() >= 3,
            "{report:#}"
        );

        // The same job to a local file merges by streaming the parts: the bytes must agree.
        let local = dir.path().join(format!("local.{format}"));
        let mut args = vec!["run", "--input", input, "--output", local.to_str().unwrap()];
        args.extend(common);
        run_ok(&args);
        let assembled = s3::get(&lake, &key);
        assert!(
            assembled == std::fs::read(&local).unwrap(),
            "{format}: the assembled object differs from the streamed merge"
        );

        // The data went from object to object inside S3, not through zoopipectl.
        let (copied, uploaded) = assembly_counts(&stderr)
            .unwrap_or_else(|| panic!("{format}: no assembly line in\n{stderr}"));
        assert_eq!(copied + uploaded, assembled.len() as u64, "{format}");
        assert!(
            uploaded < 64 * 1024 && copied > assembled.len() as u64 * 9 / 10,
            "{format}: {copied} bytes copied, {uploaded} uploaded"
        );

        let manifest: serde_json::Value = serde_json::from_slice(&s3::get(
            &lake,
            &format!("out/_wide.{format}.manifest.json"),
        ))
        .unwrap();
        assert_eq!(
            manifest["outputs"][0]["crc32"],
            format!("{:08x}", crc32fast::hash(&assembled)),
            "{format}"
        );
        assert_eq!(manifest["outputs"][0]["bytes"], assembled.len() as u64);
        if format == "parquet" || format == "arrow" {
            let copy = dir.path().join(format!("from-s3.{format}"));
            std::fs::write(&copy, &assembled).unwrap();
            assert_eq!(pyarrow_rows(&copy), rows);
        }
    }
    let names = s3::list(&lake, "");
    assert!(
        names.iter().all(|n| !n.contains("_zoopipe_staging")),
        "{names:?}"
    );
    assert_eq!(s3::open_uploads(&lake), 0);
}

/// The assembler's part-size rules on their own: inline bytes, ranges under 5 MiB, a range
/// that must top up the buffer first, a range copied whole, empty ranges.
#[test]
fn pieces_of_any_size_assemble_into_valid_parts() {
    let lake = unique("lake");
    s3::create_bucket(&lake);
    let mib = 1024 * 1024;
    let source: Vec<u8> = (0..12 * mib).map(|i| (i * 7 + i / 4099) as u8).collect();
    s3::put(&lake, "src/a.bin", source.clone());
    let url = |key: &str| ObjectUrl::parse(&format!("s3://{lake}/{key}")).unwrap();
    let range = |start: usize, end: usize| Piece::Range {
        url: url("src/a.bin"),
        range: start as u64..end as u64,
        crc32: crc32fast::hash(&source[start..end]),
    };
    let pieces = vec![
        Piece::Inline(bytes::Bytes::from_static(b"HEAD")),
        range(0, mib),                     // small: buffered
        range(mib, 11 * mib),              // tops the buffer up to 5 MiB, copies the rest
        range(3, 3),                       // empty
        range(2 * mib, 2 * mib + 5 * mib), // exactly 5 MiB, buffer empty: copied
        range(100, 200),                   // small, last
        Piece::Inline(bytes::Bytes::from_static(b"TAIL")),
    ];
    let mut expected = b"HEAD".to_vec();
    expected.extend_from_slice(&source[..mib]);
    expected.extend_from_slice(&source[mib..11 * mib]);
    expected.extend_from_slice(&source[2 * mib..7 * mib]);
    expected.extend_from_slice(&source[100..200]);
    expected.extend_from_slice(b"TAIL");

    let _ = rustls::crypto::ring::default_provider().install_default();
    let storage = Storage::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let target = url("out/joined.bin");
    let assembled = runtime
        .block_on(assemble(&storage, &target, pieces))
        .expect("assembled");
    // Nothing is visible before the upload is completed.
    assert!(s3::list(&lake, "out/").is_empty());
    runtime
        .block_on(assembled.staged.publish(&storage))
        .expect("published");
    let got = s3::get(&lake, "out/joined.bin");
    assert!(got == expected, "assembled bytes differ");
    assert_eq!(assembled.staged.bytes(), expected.len() as u64);
    assert_eq!(assembled.staged.crc32(), crc32fast::hash(&expected));
    // Copied: the 10 MiB range less the top-up (5 MiB − "HEAD" − 1 MiB buffered), then the
    // 5 MiB range. The rest went through us.
    let top_up = MIN_PART - 4 - mib as u64;
    assert_eq!(
        assembled.copied_bytes,
        10 * mib as u64 - top_up + 5 * mib as u64
    );
    assert_eq!(
        assembled.uploaded_bytes,
        expected.len() as u64 - assembled.copied_bytes
    );
    assert_eq!(s3::open_uploads(&lake), 0);
}

/// Our UploadPartCopy is signed exactly as botocore (the AWS CLI's signer, an independent
/// SigV4 implementation) signs the same request at the same instant. moto does not check
/// signatures, so this is what stands for S3's check here.
#[test]
fn upload_part_copy_is_signed_as_botocore_signs_it() {
    let storage = Storage::new();
    let target = ObjectUrl::parse("s3://zoopipe-signing/out/users.parquet").unwrap();
    let copier = storage.part_copier(&target).expect("S3 stores copy parts");
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let request = runtime
        .block_on(copier.signed_request(
            &object_store::path::Path::from("out/a b+c=d.parquet"),
            "upload/id+with=chars",
            2,
            &object_store::path::Path::from("out/_zoopipe_staging/job 1/part-00001.parquet"),
            &(5..6_000_000),
            time,
        ))
        .unwrap();
    let ours = request.headers()["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    // Give botocore the headers ours signed, less those it adds itself.
    let signed: Vec<&str> = ours
        .split("SignedHeaders=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .split(';')
        .collect();
    let headers: serde_json::Map<String, serde_json::Value> = request
        .headers()
        .iter()
        .filter(|(name, _)| {
            signed.contains(&name.as_str())
                && ![
                    "host",
                    "x-amz-date",
                    "x-amz-content-sha256",
                    "x-amz-security-token",
                ]
                .contains(&name.as_str())
        })
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().into()))
        .collect();
    let python = std::env::var("ZOOPIPE_TEST_PYTHON").expect("run through scripts/test.sh");
    let script = r#"
import datetime, json, os, sys
import botocore.auth
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
botocore.auth.get_current_datetime = lambda *a, **k: datetime.datetime(2026, 1, 1)
url, headers = sys.argv[1], json.loads(sys.argv[2])
request = AWSRequest(method="PUT", url=url, headers=headers, data=b"")
credentials = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
S3SigV4Auth(credentials, "s3", os.environ.get("AWS_REGION", "us-east-1")).add_auth(request)
print(request.headers["Authorization"])
"#;
    let out = Command::new(python)
        .args(["-c", script, &request.uri().to_string()])
        .arg(serde_json::Value::Object(headers).to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "botocore: {}", text(&out.stderr));
    let theirs = text(&out.stdout).trim().to_string();
    assert_eq!(ours, theirs, "request: {request:?}");
    assert!(signed.contains(&"x-amz-copy-source") && signed.contains(&"x-amz-copy-source-range"));
}

/// Against s3s-fs, which verifies every request's SigV4 signature (scripts/test.sh starts it):
/// the assembly's own signed UploadPartCopy requests are accepted and give the streamed
/// merge's bytes, and a wrong secret is refused in one line.
#[test]
fn assembly_passes_a_server_that_checks_signatures() {
    let var =
        |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name}: run scripts/test.sh"));
    let root = std::path::PathBuf::from(var("ZOOPIPE_TEST_S3S_ROOT"));
    let bucket = unique("signed");
    std::fs::create_dir(root.join(&bucket)).unwrap(); // s3s-fs keeps a bucket as a folder
    let env = [
        ("AWS_ENDPOINT_URL", var("ZOOPIPE_TEST_S3S_ENDPOINT")),
        ("AWS_ACCESS_KEY_ID", var("ZOOPIPE_TEST_S3S_KEY")),
        ("AWS_SECRET_ACCESS_KEY", var("ZOOPIPE_TEST_S3S_SECRET")),
    ];
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("wide.csv");
    std::fs::write(&input, wide_csv(150_000)).unwrap();
    let input = input.to_str().unwrap();
    let zoopipectl_with = |args: &[&str], env: &[(&str, String)]| {
        Command::new(zoopipectl())
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap()
    };
    for format in ["csv", "parquet"] {
        let target = format!("s3://{bucket}/out/wide.{format}");
        let args = [
            "run",
            "--input",
            input,
            "--output",
            &target,
            "--partition-size",
            "6MiB",
            "--json",
            "-v",
        ];
        let out = zoopipectl_with(&args, &env);
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{format}: {stderr}");
        let (copied, _) = assembly_counts(&stderr).unwrap_or_else(|| panic!("{stderr}"));
        assert!(copied > 0, "{format}: nothing copied\n{stderr}");
        let local = dir.path().join(format!("local.{format}"));
        run_ok(&[
            "run",
            "--input",
            input,
            "--output",
            local.to_str().unwrap(),
            "--partition-size",
            "6MiB",
        ]);
        let stored = std::fs::read(root.join(&bucket).join(format!("out/wide.{format}"))).unwrap();
        assert!(
            stored == std::fs::read(&local).unwrap(),
            "{format}: bytes differ"
        );
    }
    let mut wrong = env.clone();
    wrong[2].1 = "not-the-secret".into();
    let target = format!("s3://{bucket}/again/wide.csv");
    let out = zoopipectl_with(&["run", "--input", input, "--output", &target], &wrong);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("access denied"), "{err}");
}
