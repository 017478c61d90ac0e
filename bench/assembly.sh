#!/usr/bin/env bash
# Single-file outputs on S3: the parts assembled inside S3 (UploadPartCopy, as shipped) versus
# streamed through zoopipectl (ZOOPIPE_S3_SERVER_SIDE_COPY=false), on moto over loopback.
#
#   bench/assembly.sh [--rows N] [--formats "parquet csv"] [--partition-size 32MiB]
#                     [--workers 2] [--repeat 3] [--seed S] [--no-build] [--bin PATH]
#
# Installs moto[server] and boto3 into bench/.venv if missing, builds zoopipectl, reuses or
# generates bench/data/users_N.csv (default 2 M rows, ~212 MB), and for each format times
# `zoopipectl run --input s3://bench/users.csv --output s3://bench/out/users.FORMAT` both ways,
# counting from the server's request log what the merge downloaded, uploaded and copied.
# Writes the `assembly` section of RESULTS.md.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
ORIG_ARGS=("$@")
ROWS=2000000
FORMATS="parquet csv"
PARTITION=32MiB
WORKERS=2
REPEAT=3
SEED=42
INVALID_RATE=0.02
BUILD=1
BIN="$ROOT/target/release/zoopipectl"
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --formats) FORMATS="$2"; shift 2 ;;
    --partition-size) PARTITION="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --bin) BIN="$(realpath "$2")"; BUILD=0; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "assembly.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
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
"$PY" "$BENCH/assembly.py" --csv "$CSV" --rows "$ROWS" --formats "$FORMATS" --partition-size "$PARTITION" \
  --workers "$WORKERS" --repeat "$REPEAT" --python "$PY" --bin "$BIN" \
  --command-line "bench/assembly.sh${ORIG_ARGS[*]:+$(printf ' %q' "${ORIG_ARGS[@]}")}" &
child=$!
# assembly.py stops the server on exit and on SIGTERM; pass our signals on to it.
trap 'kill -TERM $child 2>/dev/null || true; wait $child 2>/dev/null || true' EXIT INT TERM
wait $child
