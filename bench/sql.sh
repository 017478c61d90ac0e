#!/usr/bin/env bash
# PostgreSQL table -> Parquet: zoopipectl beside ConnectorX on the same table, same run.
#
#   bench/sql.sh [--rows N] [--threads "1 2"] [--repeat 3] [--engines "zoopipe connectorx"]
#                [--no-build] [--bin PATH]
#
# Installs postgresql from Debian if missing (apt-get) and connectorx into bench/.venv, builds
# target/release/zoopipectl, starts a throwaway PostgreSQL cluster under target/bench-pg-*
# (loopback, scram password, bench settings), generates table bench_sql (N rows of mixed types,
# server-side with generate_series), then times `zoopipectl run --input postgresql://...
# --table bench_sql --output DIR/ --compression zstd --workers T` and ConnectorX
# (`read_sql(..., partition_on="id", partition_num=T, return_type="arrow")` + pyarrow
# `write_table(..., compression="zstd")`) `repeat` times at each thread count. Prints a markdown
# table (wall, rows/s, MB/s of the heap, peak RSS, ratio to ConnectorX) and writes it to the
# `sql` section of RESULTS.md. --rows takes several counts ("1000000 10000000"): the table is
# regenerated for each, to see how peak RSS grows with the table. Stops the cluster at the end.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
ORIG_ARGS=("$@")

ROWS=10000000
THREADS="1 2"
REPEAT=3
ENGINES="zoopipe connectorx"
BUILD=1
BIN="$ROOT/target/release/zoopipectl"

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --engines) ENGINES="$2"; shift 2 ;;
    --bin) BIN="$(realpath "$2")"; BUILD=0; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "sql.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$ROWS" =~ ^[1-9][0-9]*( +[1-9][0-9]*)*$ && "$REPEAT" =~ ^[1-9][0-9]*$ ]] \
  || { echo "sql.sh: --rows (one or more counts) and --repeat must be positive integers" >&2; exit 2; }
[[ "$THREADS" =~ ^[1-9][0-9]*( +[1-9][0-9]*)*$ ]] \
  || { echo "sql.sh: --threads must be positive integers, e.g. \"1 2\"" >&2; exit 2; }

. "$BENCH/lib.sh"

# 1. Python venv: the usual peers plus ConnectorX (pyarrow, already there, writes its Parquet
# and reads both engines' row counts back).
ensure_venv "connectorx:connectorx"

# 2. Build ours. A failed build is reported and ConnectorX still runs.
if [[ " $ENGINES " == *" zoopipe "* && $BUILD == 1 ]]; then
  log "cargo build --release -p zoopipectl"
  if ! (cd "$ROOT" && cargo build --release -p zoopipectl); then
    log "WARNING: cargo build failed; zoopipe will be skipped (or an old binary used if present)"
  fi
fi

# 3. PostgreSQL from Debian, installed only when missing (as scripts/test.sh does).
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [[ -z "$pg_bin" || ! -x "$pg_bin/initdb" ]]; then
  log "installing postgresql"
  sudo_=""; [[ "$(id -u)" == 0 ]] || sudo_=sudo
  $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq postgresql >/dev/null
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi

# 4. A throwaway cluster under target/, password (scram) authentication on loopback. initdb
# refuses to run as root: as root the cluster runs as the postgres user. Bench settings: the
# data is generated, so no durability (fsync, synchronous_commit, full_page_writes off;
# wal_level=minimal lets CREATE TABLE AS skip the WAL); no autovacuum during the runs (the
# table is vacuumed and frozen after loading); no JIT, whose compile cost depends on each
# engine's query cost estimate rather than on the engine.
mkdir -p "$ROOT/target"
pg_port=$(free_port)
pg_dir=$(mktemp -d "$ROOT/target/bench-pg-XXXXXX")
pg_log="$ROOT/target/bench-postgres.log"
pg_pass="zoopipe-bench-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
printf '%s' "$pg_pass" >"$pg_dir.pw"
as_pg=()
if [[ "$(id -u)" == 0 ]]; then
  chown postgres "$pg_dir" "$pg_dir.pw"; chmod 755 "$pg_dir"
  as_pg=(runuser -u postgres --)
fi
pg_pid=""
stop_pg() {
  if [[ -n "$pg_pid" ]]; then
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" stop -m fast >/dev/null 2>&1 || kill "$pg_pid" 2>/dev/null || true
    wait "$pg_pid" 2>/dev/null || true
  fi
  rm -rf "$pg_dir" "$pg_dir.pw"
}
trap stop_pg EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
log "initdb $pg_dir/data (PostgreSQL $("$pg_bin/postgres" --version | awk '{print $NF}'))"
if ! "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=scram-sha-256 \
    --pwfile="$pg_dir.pw" -E UTF8 --no-locale >"$pg_log" 2>&1; then
  cat "$pg_log" >&2
  exit 1
fi
"${as_pg[@]}" "$pg_bin/postgres" -D "$pg_dir/data" -p "$pg_port" -k "$pg_dir" \
  -c listen_addresses=127.0.0.1 -c max_connections=50 \
  -c shared_buffers=1GB -c maintenance_work_mem=1GB -c work_mem=64MB \
  -c max_wal_size=16GB -c checkpoint_timeout=1h -c wal_level=minimal -c max_wal_senders=0 \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
  -c autovacuum=off -c jit=off >>"$pg_log" 2>&1 &
pg_pid=$!
for _ in $(seq 300); do
  "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && break
  kill -0 "$pg_pid" 2>/dev/null || { tail -20 "$pg_log" >&2; log "postgres did not start (see $pg_log)"; exit 1; }
  sleep 0.1
done
"$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" || { log "postgres did not start (see $pg_log)"; exit 1; }
log "postgres on 127.0.0.1:$pg_port (data in $pg_dir, log $pg_log)"

# 5. Generate the table and time both engines; sql.py prints the table and writes RESULTS.md.
# The password goes by environment, so that no command line printed or quoted carries it.
cd "$ROOT"
BENCH_PG_PASSWORD="$pg_pass" "$PY" "$BENCH/sql.py" \
  --host 127.0.0.1 --port "$pg_port" --psql "$pg_bin/psql" \
  --rows "$ROWS" --threads "$THREADS" --repeat "$REPEAT" --engines "$ENGINES" --bin "$BIN" \
  --command-line "bench/sql.sh${ORIG_ARGS[*]:+$(printf ' %q' "${ORIG_ARGS[@]}")}"
