#!/usr/bin/env python3
"""Write the rows of the benchmark CSV as JSONL and as Parquet (deterministic).

    python bench/make_formats.py IN.csv [--jsonl OUT.jsonl] [--parquet OUT.parquet]

Both outputs hold exactly the CSV's rows, in the same order; an empty CSV field
becomes null. Needs polars (streaming: memory stays bounded at 10 M rows).

JSONL, one object per line, typed as a producer would write it:
  * user_id, username, email, signup_ts, country: JSON strings;
  * age: a JSON integer when the text is one (`-5`, `200` stay numbers and fail
    the range check), else a JSON string (`"abc"`, which fails the int cast);
  * score: the CSV text as a JSON number when it is one, else a string;
  * is_active: true / false, else a string.
So every defect of the CSV survives, and the same rows are valid or invalid
under pydantic's semantics (lax mode also accepts "42" for an int; no value here
relies on that).

Parquet (written by pyarrow), zstd, 262 144 rows per row group, typed:
  user_id, username, email, country: string; age: int64; signup_ts:
  timestamp[us, UTC]; score: float64; is_active: bool.
A value that does not fit its type (age `abc`) is null there, which still makes
the row invalid (every field is required and not nullable), so the counts of
valid / invalid rows are the same as for the CSV.

The CSV must not contain `"` or `\\` (the generator never writes them): the JSON
strings are assembled without escaping, and this is checked.
"""
import argparse
import os
import sys
import time

import polars as pl

COLUMNS = ["user_id", "username", "email", "age", "signup_ts", "country", "score", "is_active"]
STRING_COLS = ["user_id", "username", "email", "signup_ts", "country"]
ROW_GROUP = 262_144
JSON_NUMBER = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
JSON_INT = r"^-?(0|[1-9][0-9]*)$"


def scan(csv):
    return pl.scan_csv(csv, has_header=True, infer_schema=False, empty_string_is_null=True)


def json_string(c):
    return pl.when(pl.col(c).is_null()).then(pl.lit("null")).otherwise(
        pl.concat_str([pl.lit('"'), pl.col(c), pl.lit('"')]))


def json_literal_or_string(c, bare):
    """The text as a bare JSON literal where `bare` holds, else as a JSON string (null → null)."""
    return pl.when(pl.col(c).is_null()).then(pl.lit("null")).when(bare).then(pl.col(c)).otherwise(
        pl.concat_str([pl.lit('"'), pl.col(c), pl.lit('"')]))


def write_jsonl(csv, out):
    bad = scan(csv).select(
        pl.any_horizontal([pl.col(c).str.contains(r'["\\\x00-\x1f]').fill_null(False)
                           for c in COLUMNS]).sum()).collect().item()
    if bad:
        sys.exit(f"make_formats: {bad} rows hold '\"', '\\' or control characters; "
                 "this writer does not escape them")
    value = {c: json_string(c) for c in STRING_COLS}
    value["age"] = json_literal_or_string("age", pl.col("age").str.contains(JSON_INT))
    value["score"] = json_literal_or_string("score", pl.col("score").str.contains(JSON_NUMBER))
    value["is_active"] = json_literal_or_string("is_active", pl.col("is_active").is_in(["true", "false"]))
    parts = []
    for i, c in enumerate(COLUMNS):
        parts.append(pl.lit(("{" if i == 0 else ",") + f'"{c}":'))
        parts.append(value[c])
    parts.append(pl.lit("}"))
    line = pl.concat_str(parts).alias("line")
    tmp = out + ".tmp"
    # One column, never quoted: each row is written as the line itself.
    scan(csv).select(line).sink_csv(tmp, include_header=False, quote_style="never",
                                     maintain_order=True)
    os.replace(tmp, out)


def write_parquet(csv, out):
    typed = scan(csv).select(
        pl.col("user_id"), pl.col("username"), pl.col("email"),
        pl.col("age").cast(pl.Int64, strict=False),
        pl.col("signup_ts").str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%#z", time_zone="UTC",
                                            time_unit="us", strict=False),
        pl.col("country"),
        pl.col("score").cast(pl.Float64, strict=False),
        pl.when(pl.col("is_active") == "true").then(True)
          .when(pl.col("is_active") == "false").then(False).cast(pl.Boolean).alias("is_active"),
    )
    tmp = out + ".polars.tmp"
    typed.sink_parquet(tmp, compression="zstd", row_group_size=ROW_GROUP, maintain_order=True)
    # Polars writes large_string (64-bit offsets); most producers (pyarrow, Spark, DuckDB)
    # write plain string. Rewrite with pyarrow, batch by batch, as string.
    import pyarrow as pa
    import pyarrow.parquet as pq
    src = pq.ParquetFile(tmp)
    schema = pa.schema([pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) else f.type)
                        for f in src.schema_arrow])
    tmp2 = out + ".tmp"
    with pq.ParquetWriter(tmp2, schema, compression="zstd") as w:
        for batch in src.iter_batches(batch_size=ROW_GROUP):
            w.write_batch(batch.cast(schema), row_group_size=ROW_GROUP)
    os.remove(tmp)
    os.replace(tmp2, out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--jsonl")
    ap.add_argument("--parquet")
    a = ap.parse_args(argv)
    for fn, out in ((write_jsonl, a.jsonl), (write_parquet, a.parquet)):
        if out:
            t0 = time.perf_counter()
            fn(a.csv, out)
            print(f"make_formats: {out} ({os.path.getsize(out) / 1e6:.1f} MB) in "
                  f"{time.perf_counter() - t0:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
