#!/usr/bin/env python3
"""Peer implementations of the ZooPipe benchmark jobs (validated conversion to Parquet).

    python bench/peers.py --engine duckdb|polars --threads T --input X.csv|X.jsonl|X.parquet --out-dir D
    python bench/peers.py --engine duckdb|polars --threads T --input X.csv --out-dir D --no-schema

The validation job, identical in both engines (and meant to match `zoopipectl run`
with bench/users.schema.json):
  * read the input: CSV and JSONL with every column as text (no type inference;
    a JSON number or bool becomes its JSON text, `"abc"` stays abc), Parquet
    with its own types;
  * cast (text columns only; a typed column of the target type is used as is):
    user_id -> UUID (kept as its text), age -> int64,
    signup_ts -> timestamp UTC, score -> float64, is_active -> bool
    (pydantic's lax words: true/false, 1/0, yes/no, on/off, t/f, y/n,
    case-insensitive); a failed cast makes the row invalid, it is never dropped;
  * check: not-null for all columns, age 0..120, username length 3..20 and
    ^[a-z0-9]+$, email ^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$, country in the 8 codes,
    score 0..1000;
  * write valid rows, typed, to D/valid.parquet (zstd) and invalid rows as their
    input values (text for text input) plus a `reason` column (';'-joined failing
    fields) to D/errors.parquet (zstd);
  * print one JSON line {"engine", "threads", "format", "schema", "rows_read",
    "rows_valid", "rows_invalid"} and exit non-zero unless valid + invalid == read.

Both engines read the input once: DuckDB materialises the checked rows into a
temporary table (it may spill to D/.duckdb_tmp) and copies the two outputs out
of it; Polars runs the two sinks and the row count as one plan
(pl.collect_all), so the common scan is shared.

--no-schema (CSV only): convert to D/data.parquet (zstd) with the engine's own
type inference, no checks; valid = rows written, invalid = 0.

Object storage (Polars, validation job only; bench/small_files.sh): --input may be a URL
such as 's3://bucket/prefix/*.csv' (a glob over many objects) and --out-dir a URL prefix;
--storage-options '{"aws_endpoint_url": ..., ...}' (JSON) is passed to the scan and to the
sinks as Polars' storage_options, with credential_provider=None (the keys given are the
credentials). With an output URL, valid / invalid come from the plan's own count (the
caller reads the footers back), not from local Parquet footers.
"""
import argparse
import json
import os
import sys

COLUMNS = ["user_id", "username", "email", "age", "signup_ts", "country", "score", "is_active"]
# Columns whose typed value differs from the text (errors keep the text).
CAST_COLS = ["age", "signup_ts", "score", "is_active"]
COUNTRIES = ["US", "DE", "FR", "GB", "ES", "IT", "JP", "BR"]
EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
USERNAME_RE = r"^[a-z0-9]+$"
UUID_RE = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# RFC 3339 / ISO-8601 with offset or Z, optional fraction (Polars needs a format;
# inferring one from the first value is slower and fails if that row is bad).
TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%#z"
TRUE_WORDS = ["true", "1", "yes", "on", "t", "y"]
FALSE_WORDS = ["false", "0", "no", "off", "f", "n"]


def input_format(path):
    low = path.lower()
    if low.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if low.endswith(".parquet"):
        return "parquet"
    return "csv"


def run_duckdb(inp, out_dir, threads, fmt):
    import duckdb

    con = duckdb.connect(config={"threads": threads})
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"SET temp_directory = '{os.path.join(out_dir, '.duckdb_tmp')}'")

    def q(s):
        return "'" + s.replace("'", "''") + "'"

    def inlist(words):
        return ", ".join(q(w) for w in words)

    all_text = "{" + ", ".join(f"{q(c)}: 'VARCHAR'" for c in COLUMNS) + "}"
    if fmt == "csv":
        reader = (f"read_csv({q(inp)}, header = true, all_varchar = true, auto_detect = false, "
                  f"columns = {all_text})")
    elif fmt == "jsonl":
        # Every value as text: a JSON number/bool becomes its JSON text, "abc" stays abc.
        reader = f"read_json({q(inp)}, format = 'newline_delimited', columns = {all_text})"
    else:
        reader = f"read_parquet({q(inp)})"
    src_types = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
                 if row[0] in COLUMNS}
    missing = [c for c in COLUMNS if c not in src_types]
    if missing:
        raise SystemExit(f"peers.py: input lacks columns {missing}")
    text_src = {c for c, t in src_types.items() if t == "VARCHAR"}

    def cast(c, target):
        # From text: TRY_CAST (NULL when it does not parse). From a typed column
        # (Parquet) of the target type this is the column itself.
        return f"raw_{c}" if src_types[c] == target else f"TRY_CAST(raw_{c} AS {target})"

    if "is_active" in text_src:
        is_active = (f"CASE WHEN lower(raw_is_active) IN ({inlist(TRUE_WORDS)}) THEN true "
                     f"WHEN lower(raw_is_active) IN ({inlist(FALSE_WORDS)}) THEN false END")
    else:
        is_active = cast("is_active", "BOOLEAN")
    raw = ", ".join(f"{c} AS raw_{c}" for c in COLUMNS)
    # Errors keep the input's value of every column: its text for text columns (a failed cast
    # is NULL in the typed one), the typed value when the input column was typed already.
    keep_raw = [c for c in CAST_COLS if c in text_src]
    con.execute(f"""
        CREATE TEMP TABLE t AS
        WITH src AS (
            SELECT {raw} FROM {reader}
        ), typed AS (
            SELECT *,
                raw_user_id AS user_id,
                TRY_CAST(raw_user_id AS UUID) AS uuid,
                raw_username AS username,
                raw_email AS email,
                {cast("age", "BIGINT")} AS age,
                {cast("signup_ts", "TIMESTAMP WITH TIME ZONE")} AS signup_ts,
                raw_country AS country,
                {cast("score", "DOUBLE")} AS score,
                {is_active} AS is_active
            FROM src
        )
        , checked AS (
            SELECT *, concat_ws(';',
                CASE WHEN uuid IS NULL THEN 'user_id' END,
                CASE WHEN username IS NULL OR length(username) NOT BETWEEN 3 AND 20
                          OR NOT regexp_full_match(username, {q(USERNAME_RE)}) THEN 'username' END,
                CASE WHEN email IS NULL OR NOT regexp_full_match(email, {q(EMAIL_RE)}) THEN 'email' END,
                CASE WHEN age IS NULL OR age NOT BETWEEN 0 AND 120 THEN 'age' END,
                CASE WHEN signup_ts IS NULL THEN 'signup_ts' END,
                CASE WHEN country IS NULL OR country NOT IN ({inlist(COUNTRIES)}) THEN 'country' END,
                CASE WHEN score IS NULL OR NOT (score BETWEEN 0 AND 1000) THEN 'score' END,
                CASE WHEN is_active IS NULL THEN 'is_active' END
            ) AS reason
            FROM typed
        )
        -- Keep the raw text of the cast columns only for invalid rows (the
        -- NULLs of valid rows cost next to nothing in the table).
        SELECT user_id, username, email, age, signup_ts, country, score, is_active, reason
            {"".join(f", CASE WHEN reason <> '' THEN raw_{c} END AS raw_{c}" for c in keep_raw)}
        FROM checked
    """)
    rows_read = con.execute("SELECT count(*) FROM t").fetchone()[0]
    typed_cols = ", ".join(COLUMNS)
    raw_cols = ", ".join(f"raw_{c} AS {c}" if c in keep_raw else c for c in COLUMNS)
    valid = con.execute(
        f"COPY (SELECT {typed_cols} FROM t WHERE reason = '') "
        f"TO {q(os.path.join(out_dir, 'valid.parquet'))} (FORMAT parquet, COMPRESSION zstd)"
    ).fetchone()[0]
    invalid = con.execute(
        f"COPY (SELECT {raw_cols}, reason FROM t WHERE reason <> '') "
        f"TO {q(os.path.join(out_dir, 'errors.parquet'))} (FORMAT parquet, COMPRESSION zstd)"
    ).fetchone()[0]
    con.close()
    return rows_read, valid, invalid


def is_url(path):
    return "://" in path


def run_polars(inp, out_dir, threads, fmt, storage_options=None):
    # The thread pool size is fixed when polars is first imported.
    os.environ["POLARS_MAX_THREADS"] = str(threads)
    import polars as pl

    # Object storage: the same options for the scan and (for an output URL) the sinks.
    cloud = {"storage_options": storage_options, "credential_provider": None} if storage_options else {}
    src_cloud = cloud if is_url(inp) else {}
    out_cloud = cloud if is_url(out_dir) else {}
    if fmt == "csv":
        lf = pl.scan_csv(inp, has_header=True, infer_schema=False, empty_string_is_null=True, **src_cloud)
    elif fmt == "jsonl":
        # Every value as text: a JSON number/bool becomes its JSON text, "abc" stays abc.
        lf = pl.scan_ndjson(inp, schema={c: pl.String for c in COLUMNS}, **src_cloud)
    else:
        lf = pl.scan_parquet(inp, **src_cloud)
    src = lf.collect_schema()
    missing = [c for c in COLUMNS if c not in src]
    if missing:
        raise SystemExit(f"peers.py: input lacks columns {missing}")
    lf = lf.select(COLUMNS)
    s = {c: pl.col(c) for c in COLUMNS}

    def cast(c, target, from_text):
        if src[c] == target:
            return s[c]
        if src[c] == pl.String:
            return from_text
        return s[c].cast(target, strict=False)

    low = s["is_active"].str.to_lowercase()
    utc = pl.Datetime("us", "UTC")
    typed = {
        "user_id": pl.when(s["user_id"].str.contains(UUID_RE)).then(s["user_id"]),
        "username": s["username"],
        "email": s["email"],
        "age": cast("age", pl.Int64, s["age"].cast(pl.Int64, strict=False)),
        "signup_ts": cast("signup_ts", utc, s["signup_ts"].str.to_datetime(
            TS_FORMAT, time_zone="UTC", time_unit="us", strict=False)),
        "country": s["country"],
        "score": cast("score", pl.Float64, s["score"].cast(pl.Float64, strict=False)),
        "is_active": cast("is_active", pl.Boolean,
                          pl.when(low.is_in(TRUE_WORDS)).then(True)
                            .when(low.is_in(FALSE_WORDS)).then(False)
                            .otherwise(None).cast(pl.Boolean)),
    }
    t = {c: pl.col("_t_" + c) for c in COLUMNS}
    checks = {
        "user_id": t["user_id"].is_null(),
        "username": t["username"].is_null()
                    | ~t["username"].str.len_chars().is_between(3, 20)
                    | ~t["username"].str.contains(USERNAME_RE),
        "email": t["email"].is_null() | ~t["email"].str.contains(EMAIL_RE),
        "age": t["age"].is_null() | ~t["age"].is_between(0, 120),
        "signup_ts": t["signup_ts"].is_null(),
        "country": t["country"].is_null() | ~t["country"].is_in(COUNTRIES),
        "score": t["score"].is_null() | ~t["score"].is_between(0.0, 1000.0),
        "is_active": t["is_active"].is_null(),
    }
    reason = pl.concat_str(
        [pl.when(cond.fill_null(True)).then(pl.lit(name)) for name, cond in checks.items()],
        separator=";", ignore_nulls=True,
    ).alias("reason")
    checked = (
        lf.with_columns([e.alias("_t_" + c) for c, e in typed.items()])
          .with_columns(reason)
    )
    valid_lf = checked.filter(pl.col("reason") == "").select([t[c].alias(c) for c in COLUMNS])
    # Errors: the input's values (text, or typed for typed input) + reason.
    err_lf = checked.filter(pl.col("reason") != "").select(COLUMNS + ["reason"])
    if is_url(out_dir):
        valid_path = out_dir.rstrip("/") + "/valid.parquet"
        err_path = out_dir.rstrip("/") + "/errors.parquet"
    else:
        valid_path = os.path.join(out_dir, "valid.parquet")
        err_path = os.path.join(out_dir, "errors.parquet")
    count_lf = checked.select(
        pl.len().alias("read"), (pl.col("reason") == "").sum().alias("valid")
    )
    _, _, counts = pl.collect_all([
        valid_lf.sink_parquet(valid_path, compression="zstd", lazy=True, **out_cloud),
        err_lf.sink_parquet(err_path, compression="zstd", lazy=True, **out_cloud),
        count_lf,
    ], engine="streaming")
    rows_read = int(counts["read"][0])
    if is_url(out_dir):
        valid = int(counts["valid"][0])
        return rows_read, valid, rows_read - valid
    # Count what was actually written, from the Parquet footers.
    import pyarrow.parquet as pq
    valid = pq.ParquetFile(valid_path).metadata.num_rows
    invalid = pq.ParquetFile(err_path).metadata.num_rows
    return rows_read, valid, invalid


# --- No schema: convert CSV -> Parquet (zstd) with the engine's own type inference. ---

def convert_duckdb(inp, out_dir, threads):
    import duckdb

    con = duckdb.connect(config={"threads": threads})
    con.execute("SET preserve_insertion_order = false")
    path = os.path.join(out_dir, "data.parquet").replace("'", "''")
    src = inp.replace("'", "''")
    # read_csv's sniffer samples 20 480 rows to pick the types.
    n = con.execute(f"COPY (SELECT * FROM read_csv('{src}')) TO '{path}' "
                    "(FORMAT parquet, COMPRESSION zstd)").fetchone()[0]
    con.close()
    return n, n, 0


def convert_polars(inp, out_dir, threads):
    os.environ["POLARS_MAX_THREADS"] = str(threads)
    import polars as pl
    import pyarrow.parquet as pq

    path = os.path.join(out_dir, "data.parquet")
    # Types from the first 10 000 rows (about the 1 MiB zoopipectl samples; Polars'
    # default of 100 rows would pick int64 for `age` and fail on "abc"); date-times parsed.
    pl.scan_csv(inp, infer_schema_length=10_000, try_parse_dates=True).sink_parquet(
        path, compression="zstd", engine="streaming")
    n = pq.ParquetFile(path).metadata.num_rows
    return n, n, 0


def main(argv=None):
    ap = argparse.ArgumentParser(description="ZooPipe benchmark peers (DuckDB / Polars)")
    ap.add_argument("--engine", required=True, choices=["duckdb", "polars"])
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--format", choices=["csv", "jsonl", "parquet"],
                    help="input format (default: from the extension)")
    ap.add_argument("--no-schema", action="store_true",
                    help="no validation: convert the CSV to Parquet with inferred types")
    ap.add_argument("--storage-options", metavar="JSON",
                    help="Polars storage_options (a JSON object) for URL inputs / outputs (s3://...)")
    a = ap.parse_args(argv)
    storage_options = json.loads(a.storage_options) if a.storage_options else None
    if (is_url(a.input) or is_url(a.out_dir)) and (a.engine != "polars" or a.no_schema):
        ap.error("URL inputs / outputs are only implemented for --engine polars with a schema")
    if not is_url(a.out_dir):
        os.makedirs(a.out_dir, exist_ok=True)
    inp = a.input if is_url(a.input) else os.path.abspath(a.input)
    out_dir = a.out_dir if is_url(a.out_dir) else os.path.abspath(a.out_dir)
    fmt = a.format or input_format(inp)
    if a.no_schema:
        if fmt != "csv":
            ap.error("--no-schema is only implemented for CSV input")
        fn = convert_duckdb if a.engine == "duckdb" else convert_polars
        rows_read, valid, invalid = fn(inp, out_dir, a.threads)
    else:
        if a.engine == "duckdb":
            rows_read, valid, invalid = run_duckdb(inp, out_dir, a.threads, fmt)
        else:
            rows_read, valid, invalid = run_polars(inp, out_dir, a.threads, fmt, storage_options)
    print(json.dumps({"engine": a.engine, "threads": a.threads, "format": fmt,
                      "schema": not a.no_schema, "rows_read": rows_read,
                      "rows_valid": valid, "rows_invalid": invalid}), flush=True)
    if valid + invalid != rows_read:
        print(f"peers.py: count mismatch: valid {valid} + invalid {invalid} != read {rows_read}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
