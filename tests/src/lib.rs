//! Helpers for the end-to-end tests: run the real `zoopipectl`, generate inputs in every
//! format, and read outputs back with independent readers (arrow/parquet/csv/serde_json).

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

pub mod fleet;
pub mod s3;

/// The `zoopipectl` built next to this test executable.
pub fn zoopipectl() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("zoopipectl");
    assert!(
        bin.exists(),
        "{} is missing: run the suite with scripts/test.sh (it builds the binaries first)",
        bin.display()
    );
    bin
}

/// Run `zoopipectl ARGS` and return its output.
pub fn run(args: &[&str]) -> Output {
    run_env(&[], args)
}

/// `run` with these environment variables set.
pub fn run_env(env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(zoopipectl())
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("zoopipectl runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Run and require success, returning the parsed JSON report (`--json`).
pub fn run_ok(args: &[&str]) -> serde_json::Value {
    run_ok_env(&[], args)
}

/// `run_ok` with these environment variables set.
pub fn run_ok_env(env: &[(&str, &str)], args: &[&str]) -> serde_json::Value {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--json");
    let out = run_env(env, &all);
    assert!(
        out.status.success(),
        "zoopipectl {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("report is JSON")
}

pub fn repo_file(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

pub const HEADER: [&str; 8] = [
    "user_id",
    "username",
    "email",
    "age",
    "signup_ts",
    "country",
    "score",
    "is_active",
];
const COUNTRIES: [&str; 8] = ["US", "DE", "FR", "GB", "ES", "IT", "JP", "BR"];

/// Deterministic users; every 7th row (i % 7 == 3) is invalid in one field, which the
/// returned list names: (row index, field).
pub fn users(n: usize) -> (Vec<[String; 8]>, Vec<(usize, &'static str)>) {
    let mut rows = Vec::with_capacity(n);
    let mut bad = Vec::new();
    for i in 0..n {
        let mut row = [
            format!("{:08x}-0000-4000-8000-{:012x}", i, i * 7919),
            format!("user{i}"),
            format!("user{i}@example.com"),
            (18 + i % 80).to_string(),
            format!(
                "2024-{:02}-{:02}T{:02}:30:00Z",
                1 + i % 12,
                1 + i % 28,
                i % 24
            ),
            COUNTRIES[i % 8].to_string(),
            format!("{}.{:02}", i % 1000, i % 100),
            if i % 2 == 0 { "true" } else { "false" }.to_string(),
        ];
        if i % 7 == 3 {
            let field = match (i / 7) % 5 {
                0 => {
                    row[3] = "abc".into();
                    "age"
                }
                1 => {
                    row[2] = "no-at-sign".into();
                    "email"
                }
                2 => {
                    row[3] = "130".into();
                    "age"
                }
                3 => {
                    row[5] = "XX".into();
                    "country"
                }
                _ => {
                    row[1] = "UPPER".into();
                    "username"
                }
            };
            bad.push((i, field));
        }
        rows.push(row);
    }
    (rows, bad)
}

/// A name unique to this process and moment (buckets, prefixes).
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Users as CSV bytes with a header.
pub fn csv_bytes(rows: &[[String; 8]]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(HEADER).expect("header");
    for r in rows {
        w.write_record(r).expect("row");
    }
    w.into_inner().expect("csv bytes")
}

pub fn write_csv(path: &Path, rows: &[[String; 8]]) {
    let mut w = csv::Writer::from_path(path).expect("csv");
    w.write_record(HEADER).expect("header");
    for r in rows {
        w.write_record(r).expect("row");
    }
    w.flush().expect("flush");
}

fn json_object(r: &[String; 8]) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    for (k, v) in HEADER.iter().zip(r) {
        // Numbers and booleans as JSON scalars when they look like them, as real feeds do.
        let value = match *k {
            "age" => v
                .parse::<i64>()
                .map(serde_json::Value::from)
                .unwrap_or_else(|_| v.clone().into()),
            "score" => v
                .parse::<f64>()
                .map(serde_json::Value::from)
                .unwrap_or_else(|_| v.clone().into()),
            "is_active" => serde_json::Value::Bool(v == "true"),
            _ => v.clone().into(),
        };
        o.insert(k.to_string(), value);
    }
    serde_json::Value::Object(o)
}

/// `id,note` with `n` rows, every third note spanning three lines inside quotes: ranges of
/// this file cut through quoted newlines.
pub fn quoted_newlines_csv(n: usize) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["id", "note"]).unwrap();
    for i in 0..n {
        let note = if i % 3 == 0 {
            format!("line one of {i}\nline two, \"quoted\"\nline three")
        } else {
            format!("plain {i}")
        };
        w.write_record([i.to_string(), note]).unwrap();
    }
    w.into_inner().unwrap()
}

pub fn jsonl_bytes(rows: &[[String; 8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        serde_json::to_writer(&mut out, &json_object(r)).expect("json");
        out.push(b'\n');
    }
    out
}

pub fn json_array_bytes(rows: &[[String; 8]]) -> Vec<u8> {
    let items: Vec<_> = rows.iter().map(json_object).collect();
    serde_json::to_vec_pretty(&items).expect("json")
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

pub fn zstd_bytes(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 1).expect("zstd")
}

/// Typed batches (age Int64 where it parses, else the row is left as text in a Utf8 copy).
/// Parquet/Arrow inputs carry the raw text columns so invalid values survive as data.
pub fn text_batch(rows: &[[String; 8]]) -> RecordBatch {
    let fields: Vec<Field> = HEADER
        .iter()
        .map(|h| Field::new(*h, DataType::Utf8, true))
        .collect();
    let columns: Vec<ArrayRef> = (0..8)
        .map(|c| {
            Arc::new(
                rows.iter()
                    .map(|r| Some(r[c].as_str()))
                    .collect::<StringArray>(),
            ) as ArrayRef
        })
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch")
}

/// A typed version of valid rows: age Int64, score Float64, is_active Boolean.
pub fn typed_batch(rows: &[[String; 8]]) -> RecordBatch {
    let s = |c: usize| {
        Arc::new(
            rows.iter()
                .map(|r| Some(r[c].as_str()))
                .collect::<StringArray>(),
        ) as ArrayRef
    };
    let columns: Vec<ArrayRef> = vec![
        s(0),
        s(1),
        s(2),
        Arc::new(
            rows.iter()
                .map(|r| r[3].parse::<i64>().ok())
                .collect::<Int64Array>(),
        ),
        s(4),
        s(5),
        Arc::new(
            rows.iter()
                .map(|r| r[6].parse::<f64>().ok())
                .collect::<Float64Array>(),
        ),
        Arc::new(
            rows.iter()
                .map(|r| Some(r[7] == "true"))
                .collect::<BooleanArray>(),
        ),
    ];
    let types = [
        DataType::Utf8,
        DataType::Utf8,
        DataType::Utf8,
        DataType::Int64,
        DataType::Utf8,
        DataType::Utf8,
        DataType::Float64,
        DataType::Boolean,
    ];
    let fields: Vec<Field> = HEADER
        .iter()
        .zip(types)
        .map(|(h, t)| Field::new(*h, t, true))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch")
}

pub fn write_parquet(path: &Path, batch: &RecordBatch, rows_per_group: usize) {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows_per_group))
        .build();
    let file = std::fs::File::create(path).expect("create");
    let mut w =
        parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).expect("writer");
    w.write(batch).expect("write");
    w.close().expect("close");
}

pub fn write_arrow(path: &Path, batch: &RecordBatch, rows_per_batch: usize) {
    let file = std::fs::File::create(path).expect("create");
    let mut w = arrow::ipc::writer::FileWriter::try_new(file, &batch.schema()).expect("writer");
    let mut offset = 0;
    while offset < batch.num_rows() {
        let len = rows_per_batch.min(batch.num_rows() - offset);
        w.write(&batch.slice(offset, len)).expect("write");
        offset += len;
    }
    w.finish().expect("finish");
}

/// Every file in `dir` whose name starts with `part-`, sorted.
pub fn parts(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("output dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("part-"))
        })
        .collect();
    v.sort();
    v
}

pub fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).expect("open parquet");
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet footer")
        .build()
        .expect("reader")
        .map(|b| b.expect("batch"))
        .collect()
}

pub fn read_arrow(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).expect("open arrow");
    arrow::ipc::reader::FileReader::try_new(file, None)
        .expect("arrow footer")
        .map(|b| b.expect("batch"))
        .collect()
}

/// One column of batches as strings (arrow's display formatting), nulls as "".
pub fn column_text(batches: &[RecordBatch], name: &str) -> Vec<String> {
    let options = arrow::util::display::FormatOptions::default();
    let mut out = Vec::new();
    for b in batches {
        let col = b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("column {name} in {:?}", b.schema()));
        let f = arrow::util::display::ArrayFormatter::try_new(col.as_ref(), &options)
            .expect("formatter");
        for i in 0..col.len() {
            out.push(if col.is_null(i) {
                String::new()
            } else {
                f.value(i).to_string()
            });
        }
    }
    out
}

/// The `line` column of error-row batches, as numbers.
pub fn error_lines(batches: &[RecordBatch]) -> Vec<u64> {
    column_text(batches, "line")
        .iter()
        .map(|l| l.parse().expect("a line number"))
        .collect()
}

/// The file lines (the header is line 1) of the invalid rows `users` names.
pub fn bad_lines(bad: &[(usize, &str)]) -> Vec<u64> {
    bad.iter().map(|(r, _)| (*r + 2) as u64).collect()
}

pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("read jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// All error rows of a job's default error output.
pub fn error_rows(out_dir: &Path) -> Vec<serde_json::Value> {
    let dir = out_dir.join("_errors");
    if !dir.exists() {
        return Vec::new();
    }
    parts(&dir).iter().flat_map(|p| read_jsonl(p)).collect()
}

use arrow::array::Array;

/// Run a Python snippet with the test venv's interpreter (pyarrow, the independent reader)
/// and return what it printed; `args` become `sys.argv[1:]`.
pub fn python(code: &str, args: &[&str]) -> String {
    let python = std::env::var("ZOOPIPE_TEST_PYTHON").expect(
        "ZOOPIPE_TEST_PYTHON is not set: run the tests with scripts/test.sh (it installs pyarrow)",
    );
    let out = Command::new(python)
        .args(["-c", code])
        .args(args)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "python: {}", text(&out.stderr));
    text(&out.stdout)
}

/// Rewrite a Parquet file's footer so its `num_rows` says `footer_rows` while its row groups
/// keep theirs (a file seen in the wild: footer 0, row group 6).
pub fn set_footer_rows(path: &Path, footer_rows: i64) {
    use parquet::file::metadata::{
        FileMetaData, ParquetMetaData, ParquetMetaDataReader, ParquetMetaDataWriter,
    };
    let bytes = std::fs::read(path).unwrap();
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&bytes::Bytes::from(bytes.clone()))
        .unwrap();
    let footer_len =
        u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
    let body = &bytes[..bytes.len() - 8 - footer_len as usize];
    let file = metadata.file_metadata();
    let changed = FileMetaData::new(
        file.version(),
        footer_rows,
        file.created_by().map(str::to_string),
        file.key_value_metadata().cloned(),
        file.schema_descr_ptr(),
        file.column_orders().cloned(),
    );
    let rewritten = ParquetMetaData::new(changed, metadata.row_groups().to_vec());
    let mut out = body.to_vec();
    ParquetMetaDataWriter::new(&mut out, &rewritten)
        .finish()
        .unwrap();
    std::fs::write(path, out).unwrap();
}
