#!/usr/bin/env bash
# Many small objects on S3: zoopipectl beside Polars on the same prefix of a loopback S3 server.
#
#   bench/small_files.sh [--objects "1000 10000"] [--threads "1 2"] [--repeat 3] [--seed S]
#                        [--engines "zoopipe polars"] [--server s3s-fs|localbucket|moto]
#                        [--output-to s3|local] [--latency-ms N] [--no-build] [--bin PATH]
#                        [--results FILE]
#
# Installs boto3 (and localbucket or moto[server] with --server localbucket|moto) into
# bench/.venv if missing, builds zoopipectl and starts the server on a free loopback port:
# s3s-fs (default; a Rust S3 server, installed into target/s3s if missing as scripts/test.sh
# does) as `s3s-fs --host 127.0.0.1 --port PORT --access-key bench-key --secret-key
# bench-secret-key DIR`, DIR a temporary directory, with LD_PRELOAD=target/bench/nodelay.so
# (bench/nodelay.c, compiled with gcc when missing or older) setting TCP_NODELAY on its
# sockets: without it each small GET waits ~40 ms for a delayed ACK. It logs no requests
# (the S3 requests column says "not logged"). localbucket (one Python process, ~1,000 small
# GETs/s on 2 cores) as `localbucket --host 127.0.0.1 --port PORT DIR` with TCP_NODELAY; it has
# no DeleteObjects, so zoopipectl gets AWS_DISABLE_BULK_DELETE=true. moto: bench/s3_server.py
# as bench/s3.sh (~340 requests/s, too slow for the target). For each object count N it
# uploads the users rows of gen_users.py (2 % invalid) as N CSV objects of ~4 KB (header in
# each) under s3://bench/small-N/ and the same rows as one object s3://bench/one-N/users.csv,
# then times `zoopipectl run --input s3://bench/small-N/ --output s3://lake/out-zoopipe/
# --schema bench/users.schema.json --compression zstd --workers T` and Polars
# (`pl.scan_csv("s3://bench/small-N/*.csv", storage_options=...)` + the checks of run.sh, via
# bench/peers.py), on both layouts, `repeat` times each. Prints a markdown table (objects/s,
# rows/s, tasks, peak RSS, ratio to Polars) and our many-object / one-object time ratio, and
# writes them to the `small_files` section of RESULTS.md (--results FILE: of FILE instead, e.g.
# for a smoke run). Exits 1 if the engines disagree on the counts. Stops the server at the end.
# --bin PATH: time that zoopipectl (no build). --latency-ms N (default 0: off): both engines reach
# the server through bench/latency_proxy.py, a loopback proxy adding N ms to every request as a
# real object store's first-byte latency does (loopback answers in well under 1 ms); boto3's
# uploads and cleanup (not timed) go to the server directly; the results say so.
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
SERVER=s3s-fs
OUTPUT_TO=s3
BUILD=1
BIN="$ROOT/target/release/zoopipectl"
RESULTS="$BENCH/RESULTS.md"
LATENCY_MS=0
usage() { sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --objects) OBJECTS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --engines) ENGINES="$2"; shift 2 ;;
    --server) SERVER="$2"; shift 2 ;;
    --output-to) OUTPUT_TO="$2"; shift 2 ;;
    --latency-ms) LATENCY_MS="$2"; shift 2 ;;
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
[[ "$LATENCY_MS" =~ ^[0-9]+$ ]] \
  || { echo "small_files.sh: --latency-ms must be a whole number of milliseconds (0: no proxy)" >&2; exit 2; }
[[ "$OUTPUT_TO" == s3 || "$OUTPUT_TO" == local ]] \
  || { echo "small_files.sh: --output-to is s3 or local" >&2; exit 2; }
[[ "$SERVER" == s3s-fs || "$SERVER" == localbucket || "$SERVER" == moto ]] \
  || { echo "small_files.sh: --server is s3s-fs, localbucket or moto" >&2; exit 2; }

. "$BENCH/lib.sh"

S3S="$ROOT/target/s3s/bin/s3s-fs"
NODELAY_SO="$ROOT/target/bench/nodelay.so"
if [[ $SERVER == moto ]]; then
  ensure_venv "moto.server:moto[server]" "boto3:boto3"
elif [[ $SERVER == localbucket ]]; then
  ensure_venv "localbucket:localbucket" "boto3:boto3"
else
  ensure_venv "boto3:boto3"
  # s3s-fs as scripts/test.sh builds it (same version, features and place: one copy for both).
  if [[ ! -x "$S3S" ]]; then
    log "building s3s-fs 0.14.1 (the S3 server) into target/s3s"
    cargo install --quiet --locked s3s-fs@0.14.1 --features binary --root "$ROOT/target/s3s"
  fi
  # The TCP_NODELAY shim preloaded into s3s-fs (see bench/nodelay.c).
  if [[ ! -f "$NODELAY_SO" || "$BENCH/nodelay.c" -nt "$NODELAY_SO" ]]; then
    log "gcc bench/nodelay.c -> target/bench/nodelay.so"
    mkdir -p "$ROOT/target/bench"
    gcc -O2 -shared -fPIC -o "$NODELAY_SO" "$BENCH/nodelay.c" -ldl
  fi
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
  --output-to "$OUTPUT_TO" --latency-ms "$LATENCY_MS" --python "$PY" --bin "$BIN" --results "$RESULTS" \
  --s3s-bin "$S3S" --nodelay-so "$NODELAY_SO" \
  --command-line "bench/small_files.sh${ORIG_ARGS[*]:+$(printf ' %q' "${ORIG_ARGS[@]}")}" &
child=$!
# small_files.py stops the server on exit and on SIGTERM; pass our signals on to it.
trap 'kill -TERM $child 2>/dev/null || true; wait $child 2>/dev/null || true' EXIT INT TERM
wait $child
