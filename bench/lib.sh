# Shared by bench/run.sh, bench/fleet.sh and bench/s3.sh (sourced, not run).
# Expects BENCH (this directory) and ROOT (the repo) to be set.

log() { printf '[bench] %s\n' "$*" >&2; }

VENV="$BENCH/.venv"
PY="$VENV/bin/python"
DATA="$BENCH/data"

# The Python venv with the peers, the generators' needs and (extra) packages; created or
# completed only when an import fails. ensure_venv [IMPORT:PIP-SPEC ...]
ensure_venv() {
  local imports="duckdb, polars, pydantic, email_validator, pyarrow, numpy"
  local pkgs=(duckdb polars "pydantic[email]" pyarrow numpy)
  local extra
  for extra in "$@"; do
    imports+=", ${extra%%:*}"
    pkgs+=("${extra#*:}")
  done
  if ! [[ -x "$PY" ]] || ! "$PY" -c "import $imports" 2>/dev/null; then
    log "setting up $VENV (${pkgs[*]})"
    [[ -x "$PY" ]] || python3 -m venv "$VENV"
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet "${pkgs[@]}"
  fi
}

# bench/data/users_N.csv, generated once per (N, seed, invalid rate, generator version).
# ensure_csv ROWS SEED INVALID_RATE [SUFFIX]; sets CSV and META. SUFFIX names another file,
# bench/data/users_N<SUFFIX>.csv (run.sh: `_inv25` for the 25 %-invalid data of csv_errors).
ensure_csv() {
  local rows="$1" seed="$2" rate="$3" suffix="${4:-}"
  CSV="$DATA/users_${rows}${suffix}.csv"
  META="$CSV.meta"
  mkdir -p "$DATA"
  local want="rows=$rows seed=$seed invalid_rate=$rate gen=$(sha256sum "$BENCH/gen_users.py" | cut -c1-16)"
  if [[ -f "$CSV" && -f "$META" && "$(cat "$META")" == "$want" ]]; then
    log "reusing $CSV ($(du -h "$CSV" | cut -f1))"
  else
    log "generating $CSV ($rows rows, seed $seed, invalid rate $rate)"
    rm -f "$META"
    "$PY" "$BENCH/gen_users.py" "$rows" "$CSV" --seed "$seed" --invalid-rate "$rate"
    printf '%s\n' "$want" > "$META"
  fi
}

# The same rows as the CSV in another format (make_formats.py), regenerated when the CSV or
# the converter changes. ensure_format jsonl|parquet (after ensure_csv); prints the path.
ensure_format() {
  local kind="$1" out="${CSV%.csv}.$1"
  local want
  want="$(cat "$META") fmt=$(sha256sum "$BENCH/make_formats.py" | cut -c1-16)"
  if [[ -f "$out" && -f "$out.meta" && "$(cat "$out.meta")" == "$want" ]]; then
    log "reusing $out ($(du -h "$out" | cut -f1))"
  else
    log "writing $out from $CSV"
    rm -f "$out.meta"
    "$PY" "$BENCH/make_formats.py" "$CSV" "--$kind" "$out" >&2
    printf '%s\n' "$want" > "$out.meta"
  fi
  printf '%s\n' "$out"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
