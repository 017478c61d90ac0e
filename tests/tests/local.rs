//! `zoopipectl run` on local files: every input and output format, schema validation and
//! error routing, byte-range splitting, single-file merges and clear failures.

use std::path::Path;
use zoopipe_tests::*;

fn schema() -> String {
    repo_file("examples/users.schema.json")
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn valid_rows(rows: &[[String; 8]], bad: &[(usize, &str)]) -> Vec<[String; 8]> {
    let bad: std::collections::HashSet<usize> = bad.iter().map(|b| b.0).collect();
    rows.iter()
        .enumerate()
        .filter(|(i, _)| !bad.contains(i))
        .map(|(_, r)| r.clone())
        .collect()
}

/// Every file under `dir`, relative, sorted.
fn walk(dir: &Path) -> Vec<String> {
    fn go(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                go(base, &path, out);
            } else {
                out.push(
                    path.strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    go(dir, dir, &mut out);
    out.sort();
    out
}

fn assert_counts(report: &serde_json::Value, processed: usize, errors: usize) {
    assert_eq!(report["state"], "succeeded", "{report:#}");
    assert_eq!(report["total_processed"], processed as u64, "{report:#}");
    assert_eq!(report["total_errors"], errors as u64, "{report:#}");
    assert_eq!(
        report["total_valid"],
        (processed - errors) as u64,
        "{report:#}"
    );
}

#[test]
fn csv_to_parquet_validates_types_and_routes_every_invalid_row() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, bad) = users(700);
    let input = dir.path().join("users.csv");
    write_csv(&input, &rows);
    let out = dir.path().join("out");
    let report = run_ok(&[
        "run",
        "--input",
        &s(&input),
        "--output",
        &format!("{}/", s(&out)),
        "--schema",
        &schema(),
    ]);
    assert_counts(&report, 700, bad.len());
    assert!(out.join("_SUCCESS").exists());
    assert!(out.join("_report.json").exists());
    // Nothing but the parts, the errors and the markers: no temp files, no staging folders.
    let files = walk(&out);
    assert!(
        files.iter().all(|f| f.starts_with("part-")
            || f.starts_with("_errors/part-")
            || f == "_SUCCESS"
            || f == "_report.json"
            || f == "_manifest.json"),
        "{files:?}"
    );
    // `_manifest.json` lists every part with its rows, size and CRC-32, all true.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap();
    let listed: Vec<&serde_json::Value> = manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .chain(manifest["error_outputs"].as_array().unwrap())
        .collect();
    assert_eq!(
        listed.len(),
        parts(&out).len() + parts(&out.join("_errors")).len()
    );
    let mut manifest_rows = 0;
    for part in listed {
        let path = part["url"]
            .as_str()
            .unwrap()
            .strip_prefix("file://")
            .unwrap();
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(part["bytes"], bytes.len() as u64, "{part}");
        assert_eq!(
            part["crc32"],
            format!("{:08x}", crc32fast::hash(&bytes)),
            "{part}"
        );
        manifest_rows += part["rows"].as_u64().unwrap();
    }
    assert_eq!(manifest_rows, 700);

    let batches: Vec<_> = parts(&out).iter().flat_map(|p| read_parquet(p)).collect();
    let schema = batches[0].schema();
    assert_eq!(
        schema.field_with_name("age").unwrap().data_type(),
        &arrow::datatypes::DataType::Int64
    );
    assert_eq!(
        schema.field_with_name("score").unwrap().data_type(),
        &arrow::datatypes::DataType::Float64
    );
    assert_eq!(
        schema.field_with_name("is_active").unwrap().data_type(),
        &arrow::datatypes::DataType::Boolean
    );
    assert!(matches!(
        schema.field_with_name("signup_ts").unwrap().data_type(),
        arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == "UTC" || tz.as_ref() == "+00:00"
    ));
    let good = valid_rows(&rows, &bad);
    assert_eq!(
        column_text(&batches, "user_id"),
        good.iter().map(|r| r[0].clone()).collect::<Vec<_>>()
    );
    assert_eq!(
        column_text(&batches, "age"),
        good.iter().map(|r| r[3].clone()).collect::<Vec<_>>()
    );

    let errors = error_rows(&out);
    assert_eq!(errors.len(), bad.len());
    for (e, (row, field)) in errors.iter().zip(&bad) {
        assert_eq!(e["line"], (*row + 2) as u64, "{e}");
        assert!(e["source"].as_str().unwrap().ends_with("users.csv"), "{e}");
        let reasons = e["errors"].as_array().unwrap();
        assert!(
            reasons.iter().any(|r| r["field"] == *field),
            "{e} should blame {field}"
        );
        assert!(
            ["coercion", "constraint"].contains(&reasons[0]["type"].as_str().unwrap()),
            "{e}"
        );
        assert_eq!(e["values"]["user_id"], rows[*row][0], "{e}");
    }
}

#[test]
fn every_input_format_gives_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, bad) = users(3000);
    let good = valid_rows(&rows, &bad);
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    write_csv(&inputs.join("u.csv"), &rows);
    let csv_bytes = std::fs::read(inputs.join("u.csv")).unwrap();
    std::fs::write(inputs.join("u.csv.gz"), gzip(&csv_bytes)).unwrap();
    std::fs::write(inputs.join("u.jsonl"), jsonl_bytes(&rows)).unwrap();
    std::fs::write(inputs.join("u.jsonl.zst"), zstd_bytes(&jsonl_bytes(&rows))).unwrap();
    std::fs::write(inputs.join("u.json"), json_array_bytes(&rows)).unwrap();
    write_parquet(&inputs.join("u.parquet"), &text_batch(&rows), 500);
    write_arrow(&inputs.join("u.arrow"), &text_batch(&rows), 400);

    for name in [
        "u.csv",
        "u.csv.gz",
        "u.jsonl",
        "u.jsonl.zst",
        "u.json",
        "u.parquet",
        "u.arrow",
    ] {
        let out = dir.path().join(format!("out-{name}"));
        // Small partitions: CSV/JSONL split by bytes, Parquet by row groups, Arrow by batches.
        let report = run_ok(&[
            "run",
            "--input",
            &s(&inputs.join(name)),
            "--output",
            &format!("{}/", s(&out)),
            "--schema",
            &schema(),
            "--partition-size",
            "40KiB",
        ]);
        assert_counts(&report, rows.len(), bad.len());
        let batches: Vec<_> = parts(&out).iter().flat_map(|p| read_parquet(p)).collect();
        assert_eq!(
            column_text(&batches, "user_id"),
            good.iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
            "{name}"
        );
        let scores: Vec<f64> = column_text(&batches, "score")
            .iter()
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(
            scores,
            good.iter()
                .map(|r| r[6].parse::<f64>().unwrap())
                .collect::<Vec<_>>(),
            "{name}"
        );
        let errors = error_rows(&out);
        assert_eq!(errors.len(), bad.len(), "{name}");
        // Line numbers for text formats, row indexes for the others; always in file order.
        for (e, (row, _)) in errors.iter().zip(&bad) {
            match name {
                "u.csv" | "u.csv.gz" => assert_eq!(e["line"], (*row + 2) as u64, "{name}: {e}"),
                "u.jsonl" | "u.jsonl.zst" => {
                    assert_eq!(e["line"], (*row + 1) as u64, "{name}: {e}")
                }
                _ => assert_eq!(e["row"], *row as u64, "{name}: {e}"),
            }
        }
        let tasks = report["partitions"]["total"].as_u64().unwrap();
        if ["u.csv", "u.jsonl", "u.parquet", "u.arrow"].contains(&name) {
            assert!(
                tasks > 1,
                "{name} should have been split, got {tasks} task(s)"
            );
        } else {
            assert_eq!(tasks, 1, "{name} cannot be split");
        }
    }
}

#[test]
fn every_output_format_as_parts_and_as_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, bad) = users(2000);
    let good = valid_rows(&rows, &bad);
    let input = dir.path().join("users.csv");
    write_csv(&input, &rows);
    let ids: Vec<String> = good.iter().map(|r| r[0].clone()).collect();
    for format in ["parquet", "csv", "jsonl", "arrow"] {
        for single in [false, true] {
            let target = if single {
                s(&dir.path().join(format!("one-{format}/users.{format}")))
            } else {
                format!("{}/", s(&dir.path().join(format!("parts-{format}"))))
            };
            let schema = schema();
            let mut args = vec![
                "run",
                "--input",
                input.to_str().unwrap(),
                "--output",
                &target,
                "--schema",
                &schema,
                "--partition-size",
                "30KiB",
            ];
            if !single {
                args.extend(["--format", format]);
            }
            let report = run_ok(&args);
            assert_counts(&report, rows.len(), bad.len());
            let files = if single {
                vec![std::path::PathBuf::from(&target)]
            } else {
                parts(Path::new(&target))
            };
            assert!(!single || report["outputs"].as_array().unwrap().len() == 1);
            let got: Vec<String> = match format {
                "parquet" => column_text(
                    &files
                        .iter()
                        .flat_map(|f| read_parquet(f))
                        .collect::<Vec<_>>(),
                    "user_id",
                ),
                "arrow" => column_text(
                    &files.iter().flat_map(|f| read_arrow(f)).collect::<Vec<_>>(),
                    "user_id",
                ),
                "jsonl" => files
                    .iter()
                    .flat_map(|f| read_jsonl(f))
                    .map(|v| v["user_id"].as_str().unwrap().to_string())
                    .collect(),
                _ => files
                    .iter()
                    .flat_map(|f| {
                        let mut r = csv::Reader::from_path(f).unwrap();
                        assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), HEADER);
                        r.records()
                            .map(|x| x.unwrap()[0].to_string())
                            .collect::<Vec<_>>()
                    })
                    .collect(),
            };
            assert_eq!(got, ids, "{format} single={single}");
        }
    }
    // Single-file outputs put their errors beside them, in one file.
    let errors = read_jsonl(&dir.path().join("one-csv/users_errors.jsonl"));
    assert_eq!(errors.len(), bad.len());
}

#[test]
fn split_csv_keeps_true_line_numbers_in_error_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, bad) = users(20000);
    let input = dir.path().join("users.csv");
    write_csv(&input, &rows);
    let out = dir.path().join("out");
    // Error rows are numbered by their task once the ranges before it are counted, or (when
    // they are not in time: forced here by the fault variable) renumbered at commit.
    for (errors_format, offsets) in [
        ("jsonl", ""),
        ("parquet", ""),
        ("arrow", ""),
        ("jsonl", "line-offset"),
        ("parquet", "line-offset"),
        ("arrow", "line-offset"),
    ] {
        let report = run_ok_env(
            &[("ZOOPIPE_FAULT_UNANSWERED", offsets)],
            &[
                "run",
                "--input",
                &s(&input),
                "--output",
                &format!("{}/", s(&out)),
                "--schema",
                &schema(),
                "--partition-size",
                "64KiB",
                "--workers",
                "3",
                "--overwrite",
                "--error-format",
                errors_format,
            ],
        );
        assert!(report["partitions"]["total"].as_u64().unwrap() > 10);
        assert_counts(&report, rows.len(), bad.len());
        let lines: Vec<u64> = if errors_format == "jsonl" {
            error_rows(&out)
                .iter()
                .map(|e| e["line"].as_u64().unwrap())
                .collect()
        } else {
            let read = if errors_format == "arrow" {
                read_arrow
            } else {
                read_parquet
            };
            let batches: Vec<_> = parts(&out.join("_errors"))
                .iter()
                .flat_map(|p| read(p))
                .collect();
            error_lines(&batches)
        };
        assert_eq!(lines, bad_lines(&bad), "{errors_format} {offsets}");
    }
}

#[test]
fn quoted_newlines_across_partition_boundaries_are_read_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("notes.csv");
    std::fs::write(&input, quoted_newlines_csv(3000)).unwrap();
    let out = dir.path().join("out");
    let report = run_ok(&[
        "run",
        "--input",
        &s(&input),
        "--output",
        &format!("{}/", s(&out)),
        "--partition-size",
        "16KiB",
    ]);
    assert_counts(&report, 3000, 0);
    let batches: Vec<_> = parts(&out).iter().flat_map(|p| read_parquet(p)).collect();
    assert_eq!(
        column_text(&batches, "id"),
        (0..3000).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    assert!(column_text(&batches, "note")[0].contains("line two, \"quoted\"\nline three"));
}

#[test]
fn malformed_records_become_error_rows_never_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.csv");
    let mut bytes = b"id,name,age\n1,ann,30\n2,bob\n3,cy,40,extra\n".to_vec();
    bytes.extend_from_slice(b"4,d\xffe,50\n5,eve,60\n6,\"unterminated,70\n7,zed,1\n");
    std::fs::write(&input, &bytes).unwrap();
    let out = dir.path().join("out");
    let report = run_ok(&[
        "run",
        "--input",
        &s(&input),
        "--output",
        &format!("{}/", s(&out)),
    ]);
    assert_eq!(report["total_processed"], 6, "{report:#}");
    assert_eq!(report["total_valid"], 2, "{report:#}");
    assert_eq!(report["total_errors"], 4, "{report:#}");
    let errors = error_rows(&out);
    let kinds: Vec<(u64, String)> = errors
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["error_type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (3, "missing_column".to_string()),
            (4, "extra_column".into()),
            (5, "malformed_record".into()),
            (7, "malformed_record".into())
        ]
    );
    // JSONL: a line that does not parse is an error row too.
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, "{\"a\": 1}\n{not json\n[1,2]\n{\"a\": 2}\n").unwrap();
    let out = dir.path().join("out2");
    let report = run_ok(&[
        "run",
        "--input",
        &s(&input),
        "--output",
        &format!("{}/", s(&out)),
    ]);
    assert_eq!(
        (
            report["total_processed"].as_u64(),
            report["total_errors"].as_u64()
        ),
        (Some(4), Some(2))
    );
    let lines: Vec<u64> = error_rows(&out)
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 3]);
}

#[test]
fn failures_are_one_clear_line_with_useful_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = format!("{}/", s(&dir.path().join("out")));
    // Missing input.
    let o = run(&["run", "--input", "/nonexistent/users.csv", "--output", &out]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("/nonexistent/users.csv") && err.contains("not found"),
        "{err}"
    );
    // Unsupported schema keyword, refused with its JSON path before anything runs.
    let bad_schema = dir.path().join("bad.json");
    std::fs::write(
        &bad_schema,
        r#"{"type":"object","properties":{"tags":{"type":"string","not":{"const":"x"}}}}"#,
    )
    .unwrap();
    let input = dir.path().join("u.csv");
    write_csv(&input, &users(10).0);
    let o = run(&[
        "run",
        "--input",
        &s(&input),
        "--output",
        &out,
        "--schema",
        &s(&bad_schema),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("properties.tags"),
        "{}",
        text(&o.stderr)
    );
    assert!(!dir.path().join("out/_SUCCESS").exists());
    // A truncated Parquet file fails its task with a message naming it; nothing is committed.
    let pq = dir.path().join("broken.parquet");
    write_parquet(&pq, &text_batch(&users(100).0), 50);
    let bytes = std::fs::read(&pq).unwrap();
    std::fs::write(&pq, &bytes[..bytes.len() / 2]).unwrap();
    let o = run(&["run", "--input", &s(&pq), "--output", &out]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o.stderr).contains("broken.parquet"),
        "{}",
        text(&o.stderr)
    );
    assert!(!dir.path().join("out/_SUCCESS").exists());
    // With a good file before the broken one, the good task's part is discarded too: a failed
    // job leaves no part, no temp file, no `_SUCCESS` — only its report saying why.
    let damaged = dir.path().join("damaged.parquet");
    write_parquet(&damaged, &text_batch(&users(1000).0), 500);
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[8..400].iter_mut().for_each(|b| *b = 0xff); // data pages, not the footer
    std::fs::write(&damaged, &bytes).unwrap();
    let failed_out = dir.path().join("failed");
    let o = run(&[
        "run",
        "--input",
        &s(&input),
        "--input",
        &s(&damaged),
        "--output",
        &format!("{}/", s(&failed_out)),
        "--workers",
        "1",
        "--partition-size",
        "300",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let left: Vec<String> = walk(&failed_out);
    assert_eq!(left, ["_report.json"], "a failed job left {left:?}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(failed_out.join("_report.json")).unwrap()).unwrap();
    assert_eq!(report["state"], "failed");
    assert!(
        report["message"]
            .as_str()
            .unwrap()
            .contains("damaged.parquet"),
        "{report}"
    );
    // An output that already holds data is refused unless --overwrite.
    run_ok(&["run", "--input", &s(&input), "--output", &out]);
    let o = run(&["run", "--input", &s(&input), "--output", &out]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("--overwrite"),
        "{}",
        text(&o.stderr)
    );
    run_ok(&[
        "run",
        "--input",
        &s(&input),
        "--output",
        &out,
        "--overwrite",
    ]);
}

#[test]
fn job_spec_file_and_schema_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, bad) = users(300);
    let input = dir.path().join("users.csv");
    write_csv(&input, &rows);
    let spec = dir.path().join("job.yaml");
    std::fs::write(
        &spec,
        format!(
            "input: {}\noutput: {}/out/users.parquet\nschema: {}\nwrite:\n  compression: zstd\n  row_group_size: 100\n",
            s(&input), s(dir.path()), schema()
        ),
    )
    .unwrap();
    let report = run_ok(&["run", &s(&spec)]);
    assert_counts(&report, 300, bad.len());
    let meta = parquet::file::reader::SerializedFileReader::new(
        std::fs::File::open(dir.path().join("out/users.parquet")).unwrap(),
    )
    .unwrap();
    use parquet::file::reader::FileReader;
    assert!(meta.metadata().num_row_groups() >= 2);
    assert_eq!(
        meta.metadata().row_group(0).column(0).compression(),
        parquet::basic::Compression::ZSTD(Default::default())
    );

    // Inference (on clean rows: "abc" in a column rightly makes it a string), then the
    // inferred schema checks and runs.
    let clean = dir.path().join("clean.csv");
    write_csv(&clean, &valid_rows(&rows, &bad));
    let o = run(&["schema", "infer", &s(&clean)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let inferred: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let age = &inferred["properties"]["age"];
    let age_type = if age["anyOf"].is_array() {
        &age["anyOf"][0]["type"]
    } else {
        &age["type"]
    };
    assert_eq!(age_type, "integer", "{inferred:#}");
    let path = dir.path().join("inferred.json");
    std::fs::write(&path, &o.stdout).unwrap();
    let o = run(&["schema", "check", &s(&path)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("age"));
    let report = run_ok(&[
        "run",
        "--input",
        &s(&clean),
        "--output",
        &s(&dir.path().join("inferred/")),
        "--schema",
        &s(&path),
    ]);
    assert_eq!(report["total_errors"], 0);
    let o = run(&["schema", "check", &schema()]);
    assert!(
        o.status.success() && text(&o.stdout).contains("Timestamp"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn max_error_rate_fails_the_job_before_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, bad) = users(700); // one row in seven is invalid: ~14 %
    let input = dir.path().join("users.csv");
    write_csv(&input, &rows);
    let out = dir.path().join("strict");
    let o = run(&[
        "run",
        "--input",
        &s(&input),
        "--output",
        &format!("{}/", s(&out)),
        "--schema",
        &schema(),
        "--max-error-rate",
        "0.05",
        "--partition-size",
        "16KiB",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("max_error_rate"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(walk(&out), ["_report.json"], "nothing but the report");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_report.json")).unwrap()).unwrap();
    assert_eq!(report["state"], "failed");
    assert_eq!(report["total_errors"], bad.len() as u64);
    let lenient = dir.path().join("lenient");
    let report = run_ok(&[
        "run",
        "--input",
        &s(&input),
        "--output",
        &format!("{}/", s(&lenient)),
        "--schema",
        &schema(),
        "--max-error-rate",
        "0.2",
    ]);
    assert_counts(&report, 700, bad.len());
    // An --overwrite job failing over that published output leaves it whole, its report too.
    let contents = || -> Vec<(String, Vec<u8>)> {
        walk(&lenient)
            .into_iter()
            .map(|f| {
                let bytes = std::fs::read(lenient.join(&f)).unwrap();
                (f, bytes)
            })
            .collect()
    };
    let before = contents();
    let o = run(&[
        "run",
        "--input",
        &s(&input),
        "--output",
        &format!("{}/", s(&lenient)),
        "--schema",
        &schema(),
        "--max-error-rate",
        "0.05",
        "--overwrite",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(before == contents(), "the published output changed");
    let o = run(&[
        "run",
        "--input",
        &s(&input),
        "--output",
        &format!("{}/", s(&lenient)),
        "--max-error-rate",
        "5",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn the_progress_line_on_a_terminal_shows_rates_an_eta_and_the_commit_phase() {
    // `script` gives zoopipectl a terminal (the bar is hidden otherwise).
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("`script` (util-linux) is needed for this test");
    }
    let dir = tempfile::tempdir().unwrap();
    let (rows, _) = users(20_000);
    let input = dir.path().join("users.csv");
    write_csv(&input, &rows);
    let out = dir.path().join("out");
    let command = format!(
        "{} run --input {} --output {}/ --schema {} --partition-size 256KiB --workers 2",
        zoopipectl().display(),
        s(&input),
        s(&out),
        schema()
    );
    let session = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("ZOOPIPE_WORKER_BATCH_DELAY_MS", "100")
        .output()
        .unwrap();
    assert!(session.status.success(), "{}", text(&session.stderr));
    let screen = text(&session.stdout);
    for shown in [
        "rows/s",
        "B/s",
        "ETA",
        "tasks",
        "committing: publishing parts",
    ] {
        assert!(screen.contains(shown), "{shown:?} missing from:\n{screen}");
    }
}

#[test]
fn tasks_come_in_whole_rounds_of_the_worker_slots() {
    // About 2.6 partitions of input on 2 workers: 3 tasks would leave one worker idle for the
    // last third; planning cuts 4 instead. Every row still comes out once, in order.
    let dir = tempfile::tempdir().unwrap();
    let (rows, bad) = users(420_000);
    let input = dir.path().join("users.csv");
    write_csv(&input, &rows);
    let size = std::fs::metadata(&input).unwrap().len();
    let partition = size * 10 / 26;
    let out = dir.path().join("out");
    let report = run_ok(&[
        "run",
        "--input",
        &s(&input),
        "--output",
        &format!("{}/", s(&out)),
        "--schema",
        &schema(),
        "--format",
        "csv",
        "--partition-size",
        &partition.to_string(),
        "--workers",
        "2",
    ]);
    assert_counts(&report, rows.len(), bad.len());
    assert_eq!(report["partitions"]["total"], 4, "{size} bytes: {report:#}");
    let mut ids = Vec::new();
    for part in parts(&out) {
        let text = std::fs::read_to_string(part).unwrap();
        ids.extend(
            text.lines()
                .skip(1)
                .map(|l| l.split(',').next().unwrap().to_string()),
        );
    }
    let bad_rows: std::collections::HashSet<usize> = bad.iter().map(|(r, _)| *r).collect();
    let expected: Vec<String> = (0..rows.len())
        .filter(|r| !bad_rows.contains(r))
        .map(|r| rows[r][0].clone())
        .collect();
    assert_eq!(ids, expected);
}

#[test]
fn one_arrow_errors_file_gathers_every_range_with_true_lines() {
    // A single-file errors target in Arrow: every task's error rows are staged as Arrow and
    // appended in task order at commit, their lines moved on column-wise.
    let dir = tempfile::tempdir().unwrap();
    let (rows, bad) = users(20000);
    let input = dir.path().join("users.csv");
    write_csv(&input, &rows);
    let out = dir.path().join("out");
    let errors = dir.path().join("rejects.arrow");
    let report = run_ok(&[
        "run",
        "--input",
        &s(&input),
        "--output",
        &format!("{}/", s(&out)),
        "--errors",
        &s(&errors),
        "--schema",
        &schema(),
        "--partition-size",
        "64KiB",
        "--workers",
        "3",
    ]);
    assert!(report["partitions"]["total"].as_u64().unwrap() > 10);
    assert_counts(&report, rows.len(), bad.len());
    assert_eq!(error_lines(&read_arrow(&errors)), bad_lines(&bad));
}
