#!/usr/bin/env bash
# S3 efficiency: the CSV -> validated Parquet job with input and output on S3 (moto on
# loopback), S3 requests counted by type, against the same job on local files.
#
#   bench/s3.sh [--rows N] [--workers 2] [--repeat 3] [--seed S] [--no-build] [--bin PATH]
#
# Installs moto[server] and boto3 into bench/.venv if missing, builds zoopipectl, reuses or
# generates bench/data/users_N.csv (default 10 M rows, ~1.06 GB), starts moto's S3 server
# on a free loopback port (bench/s3_server.py: moto_server plus a per-request log with
# Range header and byte counts), uploads the CSV to s3://bench/users.csv and times
# `zoopipectl run --input s3://bench/users.csv --output s3://bench/out/ --schema ...` with
# AWS_ENDPOINT_URL / AWS_ACCESS_KEY_ID=testing / AWS_SECRET_ACCESS_KEY=testing /
# AWS_REGION=us-east-1, then the same job on local files. Stops the server at the end.
# Writes the `s3` section of RESULTS.md. moto keeps objects in memory: ~2-3x the CSV in RAM.
# --bin PATH: time that zoopipectl (no build), e.g. a snapshot build.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
ORIG_ARGS=("$@")
ROWS=10000000
WORKERS=2
REPEAT=3
SEED=42
INVALID_RATE=0.02
BUILD=1
BIN="$ROOT/target/release/zoopipectl"
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --bin) BIN="$(realpath "$2")"; BUILD=0; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "s3.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
. "$BENCH/lib.sh"

ensure_venv "moto.server:moto[server]" "boto3:boto3"
if [[ $BUILD == 1 ]]; then
  log "cargo build --release -p zoopipectl"
  (cd "$ROOT" && cargo build --release -p zoopipectl)
fi
ensure_csv "$ROWS" "$SEED" "$INVALID_RATE"

cd "$ROOT"
"$PY" "$BENCH/s3.py" --csv "$CSV" --rows "$ROWS" --workers "$WORKERS" --repeat "$REPEAT" --python "$PY" --bin "$BIN" \
  --command-line "bench/s3.sh${ORIG_ARGS[*]:+$(printf ' %q' "${ORIG_ARGS[@]}")}" &
child=$!
# s3.py stops the server on exit and on SIGTERM; pass our signals on to it.
trap 'kill -TERM $child 2>/dev/null || true; wait $child 2>/dev/null || true' EXIT INT TERM
wait $child
