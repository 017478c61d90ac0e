#!/usr/bin/env bash
# ZooPipe benchmark: zoopipectl vs DuckDB vs Polars on the same files, same run.
#
#   bench/run.sh [--rows N] [--threads "1 2"] [--repeat 3] [--keep] [--seed S]
#                [--scenarios "csv jsonl parquet noschema"]   (also: csv_errors)
#                [--engines "zoopipe duckdb polars"] [--no-build] [--bin PATH]
#
# From a fresh clone: creates bench/.venv (duckdb, polars, pydantic[email], pyarrow,
# numpy), builds target/release/zoopipectl, generates bench/data/users_N.csv and
# the same rows as users_N.jsonl and users_N.parquet once (reused while N, seed and
# the generators are unchanged), runs every engine `repeat` times per scenario and
# thread count, prints one markdown table and writes it to bench/RESULTS.md.
# Scenarios: csv, jsonl, parquet (-> Parquet, validated with users.schema.json),
# noschema (CSV -> Parquet, inferred types), csv_errors (not in the default list: the
# csv job on bench/data/users_N_inv25.csv, 25 % invalid rows; with csv in the same run,
# our error-heavy / clean rows/s ratio is printed against the 0.7x target).
# --keep leaves the last outputs in bench/data/out_*/. --bin benchmarks another
# zoopipectl binary (e.g. a snapshot).
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
ORIG_ARGS=("$@")

ROWS=10000000
THREADS="1 2"
REPEAT=3
KEEP=""
SEED=42
INVALID_RATE=0.02
# Scenario csv_errors: the same generator, seed and N, this invalid rate, its own cached file
# (bench/data/users_N<ERRORS_SUFFIX>.csv with its .meta).
ERRORS_RATE=0.25
ERRORS_SUFFIX=_inv25
ENGINES="zoopipe duckdb polars"
SCENARIOS="csv jsonl parquet noschema"
BUILD=1
BIN="$ROOT/target/release/zoopipectl"

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --keep) KEEP=--keep; shift ;;
    --seed) SEED="$2"; shift 2 ;;
    --engines) ENGINES="$2"; shift 2 ;;
    --scenarios) SCENARIOS="$2"; shift 2 ;;
    --bin) BIN="$(realpath "$2")"; BUILD=0; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$ROWS" =~ ^[0-9]+$ && "$REPEAT" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --rows/--repeat must be positive integers" >&2; exit 2; }

. "$BENCH/lib.sh"

# 1. Python venv with the peers and the generators' needs.
ensure_venv

# 2. Build ours. A failed build is reported and the peers still run.
if [[ " $ENGINES " == *" zoopipe "* && $BUILD == 1 ]]; then
  log "cargo build --release -p zoopipectl"
  if ! (cd "$ROOT" && cargo build --release -p zoopipectl); then
    log "WARNING: cargo build failed; zoopipe will be skipped (or an old binary used if present)"
  fi
fi

# 3. Data, generated once per (N, seed, invalid rate, generator version); the same rows as
# JSONL and Parquet (make_formats.py) for the scenarios that need them. csv_errors reads a
# second CSV, 25 % invalid (ensure_csv sets CSV and META: the clean ones are set last).
CSV_ERRORS=""
if [[ " $SCENARIOS " == *" csv_errors "* ]]; then
  ensure_csv "$ROWS" "$SEED" "$ERRORS_RATE" "$ERRORS_SUFFIX"
  CSV_ERRORS="$CSV"
fi
ensure_csv "$ROWS" "$SEED" "$INVALID_RATE"
JSONL="${CSV%.csv}.jsonl"
PARQUET="${CSV%.csv}.parquet"
[[ " $SCENARIOS " != *" jsonl "* ]] || JSONL="$(ensure_format jsonl)"
[[ " $SCENARIOS " != *" parquet "* ]] || PARQUET="$(ensure_format parquet)"

# 4. Time every engine; bench.py prints the table and writes RESULTS.md.
cd "$ROOT"
exec "$PY" "$BENCH/bench.py" --csv "$CSV" --jsonl "$JSONL" --parquet "$PARQUET" \
  ${CSV_ERRORS:+--csv-errors "$CSV_ERRORS" --errors-rate "$ERRORS_RATE"} \
  --scenarios "$SCENARIOS" --rows "$ROWS" --threads "$THREADS" \
  --repeat "$REPEAT" --engines "$ENGINES" $KEEP --zoopipe-bin "$BIN" --python "$PY" \
  --command-line "bench/run.sh${ORIG_ARGS[*]:+$(printf ' %q' "${ORIG_ARGS[@]}")}"
