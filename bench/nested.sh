#!/usr/bin/env bash
# Nested JSONL -> Parquet with validation (pydantic Order: list of Item structs, Optional
# Address, dict[str, int], Literal, Decimal): zoopipectl beside Polars (read_ndjson with an
# explicit schema + the same checks) and DuckDB (read_json with explicit columns + the same
# checks), at 1 and 2 threads, in one run. Prints a markdown table (wall, MB/s, rows/s, peak
# RSS, counts, ratio to the best peer).
#
#   bench/nested.sh [--rows N] [--threads "1 2"] [--repeat 3] [--no-build]
set -euo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
. "$BENCH/lib.sh"
BUILD=1
ARGS=()
for arg in "$@"; do
  if [[ "$arg" == --no-build ]]; then BUILD=0; else ARGS+=("$arg"); fi
done
ensure_venv
if [[ $BUILD == 1 ]]; then
  log "cargo build --release -p zoopipectl"
  (cd "$ROOT" && cargo build --release -p zoopipectl)
fi
"$PY" "$BENCH/nested.py" "${ARGS[@]}"
