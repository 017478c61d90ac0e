#!/usr/bin/env bash
# Fleet scale-out: the CSV -> validated Parquet job on a real fleet on this machine,
# 1 worker process vs 2 (each `--slots 1`), same file, same run.
#
#   bench/fleet.sh [--rows N] [--workers "1 2"] [--repeat 3] [--seed S] [--embedded]
#                  [--no-build] [--bin-dir DIR]
#
# Builds the workspace binaries (cargo build --release --bins), installs etcd from
# Debian (etcd-server) if missing, reuses or generates bench/data/users_N.csv, then
# (bench/fleet.py) starts etcd and zoopipe-coordinator on free loopback ports, and per
# worker count starts that many zoopipe-worker processes and times
# `zoopipectl submit JOB.yaml --coordinator URL --wait`. Every process it started is
# stopped at the end (also on error or Ctrl-C). --embedded also times
# `zoopipectl run --workers N` on the same file. Writes the `fleet` section of RESULTS.md.
# --bin-dir DIR: use the three binaries in DIR (no build), e.g. a snapshot build.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
ORIG_ARGS=("$@")
ROWS=10000000
WORKERS="1 2"
REPEAT=3
SEED=42
INVALID_RATE=0.02
BUILD=1
EMBEDDED=""
BIN_DIR="$ROOT/target/release"
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --embedded) EMBEDDED=--embedded; shift ;;
    --no-build) BUILD=0; shift ;;
    --bin-dir) BIN_DIR="$(realpath "$2")"; BUILD=0; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "fleet.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
. "$BENCH/lib.sh"

if ! command -v etcd >/dev/null 2>&1; then
  log "installing etcd-server"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq etcd-server >/dev/null
fi
ensure_venv
if [[ $BUILD == 1 ]]; then
  log "cargo build --release --bins"
  (cd "$ROOT" && cargo build --release --bins)
fi
ensure_csv "$ROWS" "$SEED" "$INVALID_RATE"

cd "$ROOT"
"$PY" "$BENCH/fleet.py" --csv "$CSV" --rows "$ROWS" --workers "$WORKERS" --repeat "$REPEAT" $EMBEDDED --bin-dir "$BIN_DIR" \
  --command-line "bench/fleet.sh${ORIG_ARGS[*]:+$(printf ' %q' "${ORIG_ARGS[@]}")}" &
child=$!
# fleet.py stops what it started on exit and on SIGTERM; pass our signals on to it.
trap 'kill -TERM $child 2>/dev/null || true; wait $child 2>/dev/null || true' EXIT INT TERM
wait $child
