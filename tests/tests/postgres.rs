//! The PostgreSQL source against a real server (started by scripts/test.sh with scram
//! authentication): types and exact values read back by pyarrow, one snapshot while other
//! transactions move money between rows (embedded and on a 3-worker fleet, with a coordinator
//! failover), value ranges of a query, incremental runs, and every bad input in one line.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use zoopipe_tests::fleet::{self, Fleet};
use zoopipe_tests::{python, run, run_ok, text};

fn password() -> String {
    std::env::var("ZOOPIPE_TEST_PG_PASSWORD")
        .expect("ZOOPIPE_TEST_PG_PASSWORD is not set: run the tests with scripts/test.sh")
}

fn port() -> String {
    std::env::var("ZOOPIPE_TEST_PG_PORT").expect("ZOOPIPE_TEST_PG_PORT (scripts/test.sh)")
}

/// The test server's URL, with the password in it.
fn url() -> String {
    format!(
        "postgresql://postgres:{}@127.0.0.1:{}/postgres",
        password(),
        port()
    )
}

/// The same without a password (a fleet's processes bring their own).
fn url_without_password() -> String {
    format!("postgresql://postgres@127.0.0.1:{}/postgres", port())
}

/// A table name unique to this test run.
fn table(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .expect("the test database answers");
    tokio::spawn(connection);
    client
}

/// Run SQL statements on the test server.
fn sql(statements: &str) {
    runtime().block_on(async {
        connect()
            .await
            .batch_execute(statements)
            .await
            .unwrap_or_else(|e| panic!("{statements}: {e:?}"));
    });
}

/// One text value from the test server.
fn sql_value(query: &str) -> String {
    runtime().block_on(async {
        let row = connect().await.query_one(query, &[]).await.unwrap();
        row.get::<_, String>(0)
    })
}

/// `accounts` with `rows` rows of balance 100, filled so that updates land on other pages.
fn accounts(rows: u64) -> String {
    let name = table("accounts");
    sql(&format!(
        "CREATE TABLE {name} (id int8 PRIMARY KEY, balance int8 NOT NULL, note text) WITH (fillfactor = 100);
         INSERT INTO {name} SELECT g, 100, repeat('x', 60) FROM generate_series(1, {rows}) g;"
    ));
    name
}

/// Move money between random rows of `name` in transactions until stopped: the total never
/// changes, but rows keep moving to new pages (a reader without one snapshot sees some twice
/// and misses others). Returns the stop flag and how many transfers were made.
fn transfers(name: &str, rows: u64) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let name = name.to_string();
    let handle = std::thread::spawn(move || {
        runtime().block_on(async move {
            let client = connect().await;
            let mut made = 0u64;
            let mut seed = 12345u64;
            let mut next = |n: u64| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) % n + 1
            };
            while !flag.load(Ordering::Relaxed) {
                let (a, b, amount) = (next(rows), next(rows), next(50));
                client
                    .batch_execute(&format!(
                        "BEGIN; UPDATE {name} SET balance = balance - {amount} WHERE id = {a};
                         UPDATE {name} SET balance = balance + {amount} WHERE id = {b}; COMMIT;"
                    ))
                    .await
                    .unwrap();
                made += 1;
            }
            made
        })
    });
    (stop, handle)
}

/// Ids (sorted) and the total balance of an exported folder, read by pyarrow.
fn ids_and_total(dir: &Path) -> (Vec<u64>, u64) {
    let out = python(
        "import sys, pyarrow.parquet as pq, pyarrow.compute as pc\n\
         t = pq.read_table(sys.argv[1])\n\
         ids = sorted(t.column('id').to_pylist())\n\
         print(pc.sum(t.column('balance')).as_py())\n\
         print(' '.join(map(str, ids)))",
        &[&dir.to_string_lossy()],
    );
    let mut lines = out.lines();
    let total = lines.next().unwrap().trim().parse().unwrap();
    let ids = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(|i| i.parse().unwrap())
        .collect();
    (ids, total)
}

/// `actual` ids equal `expected`, or a short account of how they differ.
fn assert_ids(actual: &[u64], expected: impl Iterator<Item = u64>) {
    let expected: Vec<u64> = expected.collect();
    if actual != expected.as_slice() {
        let first = actual.iter().zip(&expected).position(|(a, e)| a != e);
        panic!(
            "{} ids where {} were expected; first difference at {first:?}: {:?} vs {:?}",
            actual.len(),
            expected.len(),
            first.map(|i| &actual[i..(i + 5).min(actual.len())]),
            first.map(|i| &expected[i..(i + 5).min(expected.len())]),
        );
    }
}

fn assert_one_snapshot(dir: &Path, rows: u64) {
    let (ids, total) = ids_and_total(dir);
    assert_ids(&ids, 1..=rows);
    assert_eq!(total, rows * 100, "the total of one instant");
}

#[test]
fn types_and_exact_values_read_back_by_pyarrow() {
    let name = table("typed");
    let mood = format!("{name}_mood");
    let positive = format!("{name}_positive");
    sql(&format!(
        "CREATE TYPE {mood} AS ENUM ('sad', 'ok', 'happy');
         CREATE DOMAIN {positive} AS int4 CHECK (VALUE > 0);
         CREATE TABLE {name} (
            id int8 PRIMARY KEY, small int2, mid {positive}, f4 real, f8 float8, amount numeric(10,2),
            loose numeric, name text, code char(3), label varchar(20), flag bool, day date,
            at timestamp, at_utc timestamptz, clock time, uid uuid, doc jsonb, raw json,
            blob bytea, span interval, tags text[], scores int4[], feeling {mood});
         INSERT INTO {name}
         SELECT g, (g % 300)::int2, g, g * 0.5, g * 0.25, g * 1.25 + 0.01, g / 8.0,
                'name ' || g, 'c' || (g % 10), 'l' || g, g % 2 = 0, date '2024-01-01' + g,
                timestamp '2024-01-01 00:00' + g * interval '1 minute',
                timestamptz '2024-01-01 00:00+00' + g * interval '1 hour',
                time '08:00' + g * interval '1 second',
                md5(g::text)::uuid, jsonb_build_object('n', g), '{{\"k\": 1}}',
                decode(lpad(to_hex(g), 8, '0'), 'hex'),
                make_interval(months => g % 13, days => g % 7, secs => g),
                ARRAY['t' || g, NULL], ARRAY[g::int4, (g * 2)::int4], 'happy'
         FROM generate_series(1, 5000) g;
         INSERT INTO {name} (id) VALUES (0);"
    ));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let report = run_ok(&[
        "run",
        "--input",
        &url(),
        "--table",
        &name,
        "--output",
        &format!("{}/", out.display()),
        "--partition-size",
        "128KiB",
    ]);
    assert_eq!(report["state"], "succeeded", "{report:#}");
    assert_eq!(report["total_processed"], 5001);
    assert_eq!(report["total_errors"], 0, "{report:#}");
    assert!(
        report["partitions"]["total"].as_u64().unwrap() > 2,
        "{report:#}"
    );
    let inputs = report["inputs"].to_string();
    assert!(inputs.contains(&format!("public.{name}")), "{inputs}");
    assert!(!inputs.contains(&password()), "{inputs}");

    let shown = python(
        r#"
import sys, pyarrow.parquet as pq, pyarrow.compute as pc
t = pq.read_table(sys.argv[1]).sort_by("id")
for f in t.schema:
    print(f.name, f.type)
print("amount_sum", pc.sum(t["amount"]).as_py())
print("loose_sum", pc.sum(t["loose"]).as_py())
r = t.slice(7, 1).to_pylist()[0]
print("row7", r["small"], r["mid"], r["f4"], r["code"], r["flag"], r["day"], r["at"], r["at_utc"].isoformat(), r["clock"], r["uid"], r["doc"], r["blob"].hex(), r["span"], r["tags"], r["scores"], r["feeling"])
r0 = t.slice(0, 1).to_pylist()[0]
print("nulls", sum(1 for k, v in r0.items() if v is None))
"#,
        &[&out.to_string_lossy()],
    );
    let expected_types = [
        "id int64",
        "small int16",
        "mid int32",
        "f4 float",
        "f8 double",
        "amount decimal128(10, 2)",
        "loose decimal128(38, 18)",
        "name string",
        "code string",
        "label string",
        "flag bool",
        "day date32[day]",
        "at timestamp[us]",
        "at_utc timestamp[us, tz=UTC]",
        "clock time64[us]",
        "uid string",
        "doc string",
        "raw string",
        "blob binary",
        "span struct<months: int32, days: int32, microseconds: int64>",
        "tags list<item: string>",
        "scores list<item: int32>",
        "feeling string",
    ];
    for t in expected_types {
        assert!(shown.lines().any(|l| l == t), "{t} missing in:\n{shown}");
    }
    // Exact decimal sums, as the database computes them.
    let amount = sql_value(&format!("SELECT sum(amount)::text FROM {name}"));
    let loose = sql_value(&format!(
        "SELECT sum(loose)::numeric(38,18)::text FROM {name}"
    ));
    assert!(
        shown.contains(&format!("amount_sum {amount}")),
        "{amount}\n{shown}"
    );
    assert!(
        shown.contains(&format!("loose_sum {loose}")),
        "{loose}\n{shown}"
    );
    let row7 = sql_value(&format!(
        "SELECT concat_ws(' ', small, mid, f4, rpad(code::text, 3), case when flag then 'True' else 'False' end, day,
                to_char(at, 'YYYY-MM-DD HH24:MI:SS'),
                to_char(at_utc AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || '+00:00',
                clock, uid, '{{''n'': 7}}', encode(blob, 'hex'),
                '{{''months'': 7, ''days'': 0, ''microseconds'': 7000000}}',
                '[''t7'', None]', '[7, 14]', feeling) FROM {name} WHERE id = 7"
    ));
    // `doc` is jsonb text as PostgreSQL writes it; the rest compares as Python prints values.
    let row7 = row7.replace("{'n': 7}", "{\"n\": 7}");
    assert!(shown.contains(&format!("row7 {row7}")), "{row7}\n{shown}");
    assert!(shown.contains("nulls 22"), "NULLs kept: {shown}");
}

#[test]
fn one_snapshot_while_transfers_run_embedded() {
    let rows = 20_000;
    let name = accounts(rows);
    let (stop, handle) = transfers(&name, rows);
    std::thread::sleep(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("accounts");
    let output = std::process::Command::new(zoopipe_tests::zoopipectl())
        .args(["run", "--input", &url(), "--table", &name, "--output"])
        .arg(format!("{}/", out.display()))
        .args(["--partition-size", "64KiB", "--batch-size", "500", "--json"])
        .env("ZOOPIPE_WORKER_BATCH_DELAY_MS", "20")
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let made = handle.join().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        report["partitions"]["total"].as_u64().unwrap() >= 10,
        "many ctid ranges: {report:#}"
    );
    assert!(made > 20, "transfers ran meanwhile ({made})");
    assert_one_snapshot(&out, rows);
}

#[test]
fn partition_column_splits_a_query_by_value_ranges() {
    let rows = 30_000;
    let name = accounts(rows);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("even");
    let report = run_ok(&[
        "run",
        "--input",
        &url(),
        "--query",
        &format!("SELECT id, balance FROM {name} WHERE id % 2 = 0"),
        "--partition-column",
        "id",
        "--workers",
        "4",
        "--output",
        &format!("{}/", out.display()),
    ]);
    assert_eq!(report["state"], "succeeded", "{report:#}");
    assert_eq!(
        report["partitions"]["total"], 4,
        "one range per worker: {report:#}"
    );
    let (ids, total) = ids_and_total(&out);
    assert_ids(&ids, (1..=rows / 2).map(|i| i * 2));
    assert_eq!(total, rows / 2 * 100);
    // Parts follow the value ranges: ids ascend from part to part.
    let firsts = python(
        "import sys, glob, pyarrow.parquet as pq\n\
         for p in sorted(glob.glob(sys.argv[1] + '/part-*.parquet')):\n\
         \x20   t = pq.read_table(p)\n\
         \x20   print(min(t.column('id').to_pylist()) if t.num_rows else '')",
        &[&out.to_string_lossy()],
    );
    let firsts: Vec<u64> = firsts
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(firsts.windows(2).all(|w| w[0] < w[1]), "{firsts:?}");
    // A history table's `infinity` end dates: the ranges are cut between the finite values,
    // and the infinite ones land in the last range (rows an Arrow date cannot hold: error rows).
    let history = dir.path().join("history");
    let report = run_ok(&[
        "run",
        "--input",
        &url(),
        "--query",
        &format!(
            "SELECT id, CASE WHEN id % 100 = 0 THEN 'infinity'::date \
             ELSE date '2024-01-01' + (id % 1000)::int END AS valid_to FROM {name}"
        ),
        "--partition-column",
        "valid_to",
        "--workers",
        "4",
        "--output",
        &format!("{}/", history.display()),
    ]);
    assert_eq!(report["state"], "succeeded", "{report:#}");
    assert_eq!(report["partitions"]["total"], 4, "{report:#}");
    assert_eq!(report["total_processed"], rows, "{report:#}");
    assert_eq!(report["total_errors"], rows / 100, "{report:#}");
}

#[test]
fn bad_inputs_fail_in_one_line_without_secrets() {
    let name = accounts(10);
    let role = table("reader");
    sql(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'role-secret-1';
         CREATE TABLE {name}_geo (id int8, at point);"
    ));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    let wrong = format!(
        "postgresql://postgres:not-the-password-9@127.0.0.1:{}/postgres",
        port()
    );
    let closed = format!(
        "postgresql://postgres:{}@127.0.0.1:{}/postgres",
        password(),
        fleet::free_port()
    );
    let no_rights = format!(
        "postgresql://{role}:role-secret-1@127.0.0.1:{}/postgres",
        port()
    );
    let good = url();
    let geo = format!("{name}_geo");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--input", &wrong, "--table", &name],
            "password authentication failed",
        ),
        (vec!["--input", &closed, "--table", &name], "cannot reach"),
        (
            vec!["--input", &no_rights, "--table", &name],
            "permission denied",
        ),
        (
            vec!["--input", &good, "--table", "no_such_table_here"],
            "no_such_table_here does not exist",
        ),
        (
            vec![
                "--input",
                &good,
                "--table",
                &name,
                "--partition-column",
                "nope",
            ],
            "column nope does not exist",
        ),
        (
            vec!["--input", &good, "--table", &geo],
            "column 'at': type point is not supported",
        ),
        (vec!["--input", &good, "--query", "SELEC 1"], "syntax error"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["run"];
        all.extend(args.iter().copied());
        let target = format!("{}/", out.display());
        all.extend(["--output", &target]);
        let result = run(&all);
        let stderr = text(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line for {args:?}: {stderr}");
        assert!(lines[0].contains(expected), "{args:?}: {stderr}");
        for secret in [password().as_str(), "not-the-password-9", "role-secret-1"] {
            assert!(!stderr.contains(secret), "a secret in: {stderr}");
        }
        assert!(!out.exists(), "nothing written for {args:?}");
    }
    // No password anywhere: said so, not "cannot reach".
    let bare = std::process::Command::new(zoopipe_tests::zoopipectl())
        .args([
            "run",
            "--input",
            &url_without_password(),
            "--table",
            &name,
            "--output",
        ])
        .arg(format!("{}/", out.display()))
        .env_remove("PGPASSWORD")
        .env("PGPASSFILE", dir.path().join("no-such-pgpass"))
        .output()
        .unwrap();
    let stderr = text(&bare.stderr);
    assert_eq!(bare.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("none was found"), "{stderr}");
}

#[test]
fn several_tables_are_several_jobs_each_to_its_own_object() {
    let (a, b) = (accounts(300), accounts(500));
    let dir = tempfile::tempdir().unwrap();
    let output = format!("{}/lake/${{table}}.parquet", dir.path().display());
    let result = run(&[
        "run",
        "--input",
        &url(),
        "--table",
        &a,
        "--table",
        &b,
        "--output",
        &output,
        "--quiet",
    ]);
    assert!(result.status.success(), "{}", text(&result.stderr));
    for (table, rows) in [(&a, 300), (&b, 500)] {
        let file = dir.path().join("lake").join(format!("{table}.parquet"));
        let (ids, total) = ids_and_total(&file);
        assert_ids(&ids, 1..=rows);
        assert_eq!(total, rows * 100);
    }
}

/// A fleet whose coordinator and workers take the database password from their environment.
fn database_fleet(workers: usize, batch_delay_ms: u64) -> Fleet {
    let password = password();
    let env = [("PGPASSWORD", password.as_str())];
    let mut f = fleet::fleet_with(workers, batch_delay_ms, &fleet::etcd(), &env);
    f.coordinator_with_env(&env);
    f
}

fn restart_coordinator_with_password(f: &mut Fleet) {
    drop(f.coordinator.take());
    std::thread::sleep(Duration::from_millis(500));
    let password = password();
    f.coordinator = Some(fleet::start_coordinator_with(
        f.port,
        &f.prefix,
        &fleet::etcd(),
        &[],
        &[("PGPASSWORD", password.as_str())],
    ));
}

#[test]
fn fleet_exports_one_snapshot_through_a_coordinator_failover() {
    let rows = 20_000;
    let name = accounts(rows);
    let mut f = database_fleet(3, 40);
    let (stop, handle) = transfers(&name, rows);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet");
    // The client's password stays with the client: the fleet uses its own PGPASSWORD.
    let submitted = run(&[
        "submit",
        "--input",
        &url(),
        "--table",
        &name,
        "--output",
        &format!("{}/", out.display()),
        "--partition-size",
        "64KiB",
        "--batch-size",
        "100",
        "--coordinator",
        &f.url,
    ]);
    assert!(submitted.status.success(), "{}", text(&submitted.stderr));
    assert!(
        text(&submitted.stderr).contains("not sent to the fleet"),
        "{}",
        text(&submitted.stderr)
    );
    let job = text(&submitted.stdout).trim().to_string();
    // Some tasks finish under the first snapshot; then the coordinator dies with it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = run(&["status", &job, "--coordinator", &f.url, "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
        let done = status["tasks"].as_array().map_or(0, Vec::len);
        assert_eq!(status["state"], "running", "still running: {status:#}");
        if done >= 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no task finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    restart_coordinator_with_password(&mut f);
    let report = fleet::wait_ended(&f, &job, Duration::from_secs(120));
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    assert_eq!(report["state"], "succeeded", "{report:#}");
    let full = run(&["report", &job, "--coordinator", &f.url, "--json"]);
    let full: serde_json::Value = serde_json::from_slice(&full.stdout).unwrap();
    assert!(
        full["snapshots"].as_u64().unwrap_or(0) >= 2,
        "the report says the job took a new snapshot: {full:#}"
    );
    assert_one_snapshot(&out, rows);

    // The password is nowhere: not in logs, reports or etcd.
    let secret = password();
    for name in ["coordinator", "worker0", "worker1", "worker2"] {
        let log = std::env::temp_dir().join(format!("zoopipe-{name}-{}.log", f.port));
        if let Ok(content) = std::fs::read_to_string(&log) {
            assert!(!content.contains(&secret), "password in {}", log.display());
        }
    }
    let report_file = std::fs::read_to_string(out.join("_report.json")).unwrap();
    assert!(!report_file.contains(&secret));
    let stored = python(
        "import sys, json, base64, urllib.request\n\
         key = sys.argv[2].encode()\n\
         end = key[:-1] + bytes([key[-1] + 1])\n\
         body = json.dumps({'key': base64.b64encode(key).decode(), 'range_end': base64.b64encode(end).decode()}).encode()\n\
         r = json.load(urllib.request.urlopen(sys.argv[1] + '/v3/kv/range', body))\n\
         print(sum(1 for kv in r.get('kvs', [])))\n\
         print(''.join(base64.b64decode(kv['value']).decode('utf-8', 'replace') for kv in r.get('kvs', [])))",
        &[&fleet::etcd(), &f.prefix],
    );
    assert!(
        stored
            .lines()
            .next()
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
            > 0,
        "the job is in etcd"
    );
    assert!(stored.contains(&url_without_password()) || stored.contains("127.0.0.1"));
    assert!(!stored.contains(&secret), "password in etcd");
}

#[test]
fn incremental_runs_export_only_rows_above_the_last_mark() {
    let name = table("events");
    sql(&format!(
        "CREATE TABLE {name} (id int8 PRIMARY KEY, updated_at timestamptz NOT NULL, what text);
         INSERT INTO {name} SELECT g, timestamptz '2024-01-01 00:00+00' + g * interval '1 minute', 'e' || g
         FROM generate_series(1, 1000) g;"
    ));
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = format!("daily-{name}");
    let export = |folder: &str, extra: &[&str]| -> (serde_json::Value, Vec<u64>) {
        let out = dir.path().join(folder);
        let mut args = vec![
            "run".to_string(),
            "--input".into(),
            url(),
            "--table".into(),
            name.clone(),
            "--name".into(),
            job.clone(),
            "--since-column".into(),
            "updated_at".into(),
            "--output".into(),
            format!("{}/", out.display()),
            "--json".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let result = std::process::Command::new(zoopipe_tests::zoopipectl())
            .args(&args)
            .env("ZOOPIPE_STATE_DIR", state.path())
            .output()
            .unwrap();
        assert!(result.status.success(), "{}", text(&result.stderr));
        let report: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
        let ids = if report["total_processed"] == 0 {
            Vec::new()
        } else {
            let listed = python(
                "import sys, pyarrow.parquet as pq\n\
                 print(' '.join(map(str, sorted(pq.read_table(sys.argv[1]).column('id').to_pylist()))))",
                &[&out.to_string_lossy()],
            );
            listed
                .split_whitespace()
                .map(|i| i.parse().unwrap())
                .collect()
        };
        (report, ids)
    };
    let (first, ids) = export("run1", &[]);
    assert_ids(&ids, 1..=1000);
    assert_eq!(first["high_water"], "2024-01-01 16:40:00+00", "{first:#}");

    sql(&format!(
        "INSERT INTO {name} SELECT g, timestamptz '2024-01-01 00:00+00' + g * interval '1 minute', 'e' || g
         FROM generate_series(1001, 1500) g;"
    ));
    let (second, ids) = export("run2", &[]);
    assert_ids(&ids, 1001..=1500);
    assert_eq!(second["high_water"], "2024-01-02 01:00:00+00", "{second:#}");

    let (third, ids) = export("run3", &[]);
    assert!(ids.is_empty(), "nothing new: {third:#}");
    assert_eq!(third["state"], "succeeded");

    // A backfill from a chosen bound; the mark follows it.
    let (backfill, ids) = export("backfill", &["--since", "2024-01-01 20:00:00+00"]);
    assert_ids(&ids, 1201..=1500);
    assert_eq!(backfill["high_water"], "2024-01-02 01:00:00+00");
}

#[test]
fn a_schema_validates_database_rows_as_it_validates_file_rows() {
    let name = table("people");
    sql(&format!(
        "CREATE TABLE {name} (id int8, email text, age int4, balance numeric(12,2), joined date);
         INSERT INTO {name} SELECT g, CASE WHEN g % 10 = 0 THEN 'not-an-email' ELSE 'u' || g || '@example.com' END,
                CASE WHEN g % 25 = 0 THEN -1 ELSE 20 + g % 50 END, g * 10.5, date '2020-01-01' + g
         FROM generate_series(1, 1000) g;"
    ));
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("person.schema.json");
    // As pydantic writes it for: id: int; email: EmailStr-like pattern; age: int = Field(ge=0);
    // balance: Decimal = Field(max_digits=10, decimal_places=1); joined: date.
    std::fs::write(
        &schema,
        serde_json::json!({
            "title": "Person", "type": "object",
            "properties": {
                "id": {"title": "Id", "type": "integer"},
                "email": {"title": "Email", "type": "string", "pattern": "^[^@]+@[^@]+$"},
                "age": {"title": "Age", "type": "integer", "minimum": 0},
                "balance": {"title": "Balance", "anyOf": [{"type": "number"}, {"type": "string"}]},
                "joined": {"title": "Joined", "type": "string", "format": "date"}
            },
            "required": ["id", "email", "age", "balance", "joined"]
        })
        .to_string(),
    )
    .unwrap();
    let out = dir.path().join("people");
    let report = run_ok(&[
        "run",
        "--input",
        &url(),
        "--table",
        &name,
        "--schema",
        &schema.to_string_lossy(),
        "--output",
        &format!("{}/", out.display()),
    ]);
    // Every 10th email is bad, every 25th age; every 50th row fails both.
    assert_eq!(report["total_processed"], 1000, "{report:#}");
    assert_eq!(report["total_errors"], 100 + 40 - 20, "{report:#}");
    assert_eq!(report["errors_by_field"]["email"], 100, "{report:#}");
    assert_eq!(report["errors_by_field"]["age"], 40, "{report:#}");
    let errors = zoopipe_tests::error_rows(&out);
    let row_50 = errors
        .iter()
        .find(|e| e["values"]["id"] == "50" || e["values"]["id"] == 50)
        .unwrap_or_else(|| panic!("the error row of id 50: {errors:?}"));
    let reasons = row_50["errors"].to_string();
    assert!(reasons.contains("String should match pattern"), "{reasons}");
    assert!(
        reasons.contains("Input should be greater than or equal to 0"),
        "{reasons}"
    );
    assert!(
        row_50["source"]
            .as_str()
            .unwrap()
            .contains(&format!("public.{name}")),
        "{row_50}"
    );
    let types = python(
        "import sys, pyarrow.parquet as pq\nprint(pq.read_schema(sys.argv[1] + '/part-00000.parquet'))",
        &[&out.to_string_lossy()],
    );
    assert!(types.contains("joined: date32"), "{types}");
    assert!(types.contains("age: int64"), "{types}");
}

#[test]
fn sslmodes_mean_what_they_mean_in_libpq() {
    // scripts/test.sh serves TLS with a self-signed certificate for "localhost".
    let cert = std::env::var("ZOOPIPE_TEST_PG_TLS_CERT")
        .expect("ZOOPIPE_TEST_PG_TLS_CERT (scripts/test.sh makes the certificate)");
    let query = "SELECT ssl::text AS tls FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let export = |host: &str, params: &str| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tls");
        let input = format!(
            "postgresql://postgres:{}@{host}:{}/postgres?{params}",
            password(),
            port()
        );
        let result = run(&[
            "run",
            "--input",
            &input,
            "--query",
            query,
            "--format",
            "jsonl",
            "--output",
            &format!("{}/", out.display()),
            "--quiet",
        ]);
        let rows = if out.exists() {
            zoopipe_tests::parts(&out)
                .iter()
                .flat_map(|p| zoopipe_tests::read_jsonl(p))
                .collect::<Vec<_>>()
        } else {
            Vec::new()
        };
        (result, rows)
    };
    for (host, params) in [
        ("127.0.0.1", "sslmode=require".to_string()),
        (
            "localhost",
            format!("sslmode=verify-full&sslrootcert={cert}"),
        ),
        ("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={cert}")),
    ] {
        let (result, rows) = export(host, &params);
        assert!(
            result.status.success(),
            "{params}: {}",
            text(&result.stderr)
        );
        assert_eq!(
            rows,
            [serde_json::json!({"tls": "true"})],
            "{params}: encrypted"
        );
    }
    let (plain, rows) = export("127.0.0.1", "sslmode=disable");
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    assert_eq!(rows, [serde_json::json!({"tls": "false"})]);
    // verify-full checks the name; without a root certificate it refuses to guess.
    for (params, expected) in [
        (
            format!("sslmode=verify-full&sslrootcert={cert}"),
            "not valid for name \"127.0.0.1\"",
        ),
        (
            "sslmode=verify-full".to_string(),
            "needs the server's root certificate",
        ),
    ] {
        let (result, _) = export("127.0.0.1", &params);
        let stderr = text(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{params}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{params}: {stderr}");
        assert!(!stderr.contains(&password()), "{stderr}");
    }
}

#[test]
fn a_lost_snapshot_is_replaced_and_every_task_read_again() {
    let rows = 20_000;
    let name = accounts(rows);
    let (stop, handle) = transfers(&name, rows);
    let app = format!("zp_lost_{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("accounts");
    let child = std::process::Command::new(zoopipe_tests::zoopipectl())
        .args(["run", "--input"])
        .arg(format!("{}?application_name={app}", url()))
        .args(["--table", &name, "--output"])
        .arg(format!("{}/", out.display()))
        .args([
            "--partition-size",
            "64KiB",
            "--batch-size",
            "100",
            "--workers",
            "2",
            "--json",
        ])
        .env("ZOOPIPE_WORKER_BATCH_DELAY_MS", "40")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The planner's transaction: idle in its transaction, its last statement a planning one
    // (tasks' connections run COPY). Cut it as a database restart or a proxy would.
    let holder = format!(
        "SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity
         WHERE application_name = '{app}' AND state = 'idle in transaction'
           AND query NOT LIKE 'COPY%' AND query NOT LIKE 'BEGIN%'"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    std::thread::sleep(Duration::from_millis(500));
    while sql_value(&holder) == "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot holder seen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        report["snapshots"].as_u64().unwrap_or(0) >= 2,
        "a new snapshot was taken: {report:#}"
    );
    assert_one_snapshot(&out, rows);
}

#[test]
fn times_and_dates_arrow_cannot_hold_are_error_rows_not_broken_text() {
    // `24:00:00` and dates past year 262142 are valid in PostgreSQL; Arrow's readers and
    // writers cannot print them (JSONL got "ERROR: Cast error" strings, CSV failed the job).
    let name = table("far");
    sql(&format!(
        "CREATE TABLE {name} (id int, d date, tm time);
         INSERT INTO {name} VALUES (1, '262143-12-31', '10:00'), (2, '2024-01-01', '24:00:00'),
           (3, '2024-01-01', '23:59:59.999999'), (4, '4713-01-01 BC', '00:00');"
    ));
    for format in ["jsonl", "csv"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let report = run_ok(&[
            "run",
            "--input",
            &url(),
            "--table",
            &name,
            "--format",
            format,
            "--output",
            &format!("{}/", out.display()),
        ]);
        assert_eq!(report["total_valid"], 2, "{format}: {report:#}");
        assert_eq!(report["total_errors"], 2, "{format}: {report:#}");
        let written: String = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("part-"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert!(!written.contains("ERROR"), "{format}: {written}");
        assert!(written.contains("23:59:59.999999"), "{format}: {written}");
    }
}
