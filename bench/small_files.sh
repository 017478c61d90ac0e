#!/usr/bin/env bash
# Many small objects on S3: zoopipectl beside Polars on the same prefix of a loopback S3 server.
#
#   bench/small_files.sh [--objects "1000 10000"] [--threads "1 2"] [--repeat 3] [--seed S]
#                        [--engines "zoopipe polars"] [--server localbucket|moto]
#                        [--output-to s3|local] [--no-build] [--bin PATH] [--results FILE]
#
# Installs boto3 and the S3 server (localbucket, or moto[server] with --server moto) into
# bench/.venv if missing, builds zoopipectl and starts the server on a free loopback port:
# localbucket (default) as `localbucket --host 127.0.0.1 --port PORT DIR`, DIR a temporary
# directory, with TCP_NODELAY set; it has no DeleteObjects, so zoopipectl gets
# AWS_DISABLE_BULK_DELETE=true. moto: bench/s3_server.py as bench/s3.sh (~340 requests/s, too
# slow for the target). For each object count N it uploads the users rows of gen_users.py (2 %
# invalid) as N CSV objects of ~4 KB (header in each) under s3://bench/small-N/ and the same
# rows as one object s3://bench/one-N/users.csv, then times `zoopipectl run --input
# s3://bench/small-N/ --output s3://bench/out-zoopipe/ --schema bench/users.schema.json
# --compression zstd --workers T` and Polars (`pl.scan_csv("s3://bench/small-N/*.csv",
# storage_options=...)` + the checks of run.sh, via bench/peers.py), on both layouts, `repeat`
# times each. Prints a markdown table (objects/s, rows/s, tasks, peak RSS, ratio to Polars) and
# our many-object / one-object time ratio, and writes them to the `small_files` section of
# RESULTS.md (--results FILE: of FILE instead, e.g. for a smoke run). Exits 1 if the engines
# disagree on the counts. Stops the server at the end. --bin PATH: time that zoopipectl (no build).
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
ORIG_ARGS=("$@")
OBJECTS="1000 10000"
THREADS="1 2"
REPEAT=3
SEED=42
INVALID_RATE=0.02
ENGINES="zoopipe polars"
SERVER=localbucket
OUTPUT_TO=s3
BUILD=1
BIN="$ROOT/target/release/zoopipectl"
RESULTS="$BENCH/RESULTS.md"
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --objects) OBJECTS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --engines) ENGINES="$2"; shift 2 ;;
    --server) SERVER="$2"; shift 2 ;;
    --output-to) OUTPUT_TO="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --bin) BIN="$(realpath "$2")"; BUILD=0; shift 2 ;;
    --results) RESULTS="$(realpath "$2")"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "small_files.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$OBJECTS" =~ ^[1-9][0-9]*( +[1-9][0-9]*)*$ && "$THREADS" =~ ^[1-9][0-9]*( +[1-9][0-9]*)*$ \
   && "$REPEAT" =~ ^[1-9][0-9]*$ ]] \
  || { echo "small_files.sh: --objects, --threads (one or more) and --repeat must be positive integers" >&2; exit 2; }
[[ "$OUTPUT_TO" == s3 || "$OUTPUT_TO" == local ]] \
  || { echo "small_files.sh: --output-to is s3 or local" >&2; exit 2; }
[[ "$SERVER" == localbucket || "$SERVER" == moto ]] \
  || { echo "small_files.sh: --server is localbucket or moto" >&2; exit 2; }

. "$BENCH/lib.sh"

if [[ $SERVER == moto ]]; then
  ensure_venv "moto.server:moto[server]" "boto3:boto3"
else
  ensure_venv "localbucket:localbucket" "boto3:boto3"
fi
if [[ " $ENGINES " == *" zoopipe "* && $BUILD == 1 ]]; then
  log "cargo build --release -p zoopipectl"
  if ! (cd "$ROOT" && cargo build --release -p zoopipectl); then
    log "WARNING: cargo build failed; zoopipe will be skipped (or an old binary used if present)"
  fi
fi
mkdir -p "$DATA"

cd "$ROOT"
"$PY" "$BENCH/small_files.py" --objects "$OBJECTS" --threads "$THREADS" --repeat "$REPEAT" \
  --seed "$SEED" --invalid-rate "$INVALID_RATE" --engines "$ENGINES" --server "$SERVER" \
  --output-to "$OUTPUT_TO" --python "$PY" --bin "$BIN" --results "$RESULTS" \
  --command-line "bench/small_files.sh${ORIG_ARGS[*]:+$(printf ' %q' "${ORIG_ARGS[@]}")}" &
child=$!
# small_files.py stops the server on exit and on SIGTERM; pass our signals on to it.
trap 'kill -TERM $child 2>/dev/null || true; wait $child 2>/dev/null || true' EXIT INT TERM
wait $child
