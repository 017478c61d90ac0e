#!/usr/bin/env bash
# ZooPipe benchmark: zoopipectl vs DuckDB vs Polars on the same CSV -> validated Parquet job.
#
#   bench/run.sh [--rows N] [--threads "1 2"] [--repeat 3] [--keep] [--seed S]
#                [--engines "zoopipe duckdb polars"] [--no-build]
#
# From a fresh clone: creates bench/.venv (duckdb, polars, pydantic[email], pyarrow,
# numpy), builds target/release/zoopipectl, generates bench/data/users_N.csv once
# (reused while N, seed and the generator are unchanged), runs every engine
# `repeat` times per thread count, prints a markdown table and writes it to
# bench/RESULTS.md. --keep leaves the last run's outputs in bench/data/out_*/.
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
ENGINES="zoopipe duckdb polars"
BUILD=1

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --keep) KEEP=--keep; shift ;;
    --seed) SEED="$2"; shift 2 ;;
    --engines) ENGINES="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$ROWS" =~ ^[0-9]+$ && "$REPEAT" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --rows/--repeat must be positive integers" >&2; exit 2; }

log() { printf '[bench] %s\n' "$*" >&2; }

# 1. Python venv with the peers and the generator's needs.
VENV="$BENCH/.venv"
PY="$VENV/bin/python"
PKGS=(duckdb polars "pydantic[email]" pyarrow numpy)
if ! [[ -x "$PY" ]] || ! "$PY" -c 'import duckdb, polars, pydantic, email_validator, pyarrow, numpy' 2>/dev/null; then
  log "setting up $VENV"
  python3 -m venv "$VENV"
  "$PY" -m pip install --quiet --upgrade pip
  "$PY" -m pip install --quiet "${PKGS[@]}"
fi

# 2. Build ours. A failed build is reported and the peers still run.
BIN="$ROOT/target/release/zoopipectl"
if [[ " $ENGINES " == *" zoopipe "* && $BUILD == 1 ]]; then
  log "cargo build --release -p zoopipectl"
  if ! (cd "$ROOT" && cargo build --release -p zoopipectl); then
    log "WARNING: cargo build failed; zoopipe will be skipped (or an old binary used if present)"
  fi
fi

# 3. Data, generated once per (N, seed, invalid rate, generator version).
DATA="$BENCH/data"
CSV="$DATA/users_${ROWS}.csv"
META="$CSV.meta"
mkdir -p "$DATA"
WANT_META="rows=$ROWS seed=$SEED invalid_rate=$INVALID_RATE gen=$(sha256sum "$BENCH/gen_users.py" | cut -c1-16)"
if [[ -f "$CSV" && -f "$META" && "$(cat "$META")" == "$WANT_META" ]]; then
  log "reusing $CSV ($(du -h "$CSV" | cut -f1))"
else
  log "generating $CSV ($ROWS rows, seed $SEED)"
  rm -f "$META"
  "$PY" "$BENCH/gen_users.py" "$ROWS" "$CSV" --seed "$SEED" --invalid-rate "$INVALID_RATE"
  printf '%s\n' "$WANT_META" > "$META"
fi

# 4. Time every engine; bench.py prints the table and writes RESULTS.md.
cd "$ROOT"
exec "$PY" "$BENCH/bench.py" --input "$CSV" --rows "$ROWS" --threads "$THREADS" \
  --repeat "$REPEAT" --engines "$ENGINES" $KEEP --zoopipe-bin "$BIN" --python "$PY" \
  --command-line "bench/run.sh${ORIG_ARGS[*]:+$(printf ' %q' "${ORIG_ARGS[@]}")}"
