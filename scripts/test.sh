#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, starts real S3-compatible
# servers (moto, s3s-fs), etcd and PostgreSQL on loopback, runs every test, and stops what it
# started.
#   scripts/test.sh            # everything
#   scripts/test.sh -- NAME    # extra arguments go to `cargo test` (and skip the deploy check)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv="$root/target/test-venv"
mkdir -p "$root/target"

# protoc (zoopipe-proto's build generates gRPC code with it), installed only when missing.
if ! command -v protoc >/dev/null 2>&1; then
  echo "installing protobuf-compiler" >&2
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq protobuf-compiler >/dev/null
fi

# etcd (the fleet's state store), from Debian, installed only when missing.
if ! command -v etcd >/dev/null 2>&1; then
  echo "installing etcd-server" >&2
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq etcd-server >/dev/null
fi

# PostgreSQL (the SQL source's tests), from Debian, installed only when missing.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
  echo "installing postgresql" >&2
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq postgresql >/dev/null
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi

# The Python S3 server, pyarrow (an independent reader of our Parquet) and pydantic (the oracle
# for validation), installed only when missing.
if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/python" -c 'import pyarrow, pydantic, email_validator' 2>/dev/null; then
  echo "installing moto (S3 server for tests), pyarrow and pydantic (the validation oracle) into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'moto[server]' pyarrow 'pydantic[email]>=2.12'
fi
export ZOOPIPE_TEST_PYTHON="$venv/bin/python"

# s3s-fs, an S3 server that verifies SigV4 signatures (moto does not): the single-file
# assembly's signed UploadPartCopy requests are checked against it. Built once into target/.
s3s="$root/target/s3s/bin/s3s-fs"
if [ ! -x "$s3s" ]; then
  echo "building s3s-fs (S3 server that checks signatures) into target/s3s" >&2
  cargo install --quiet --locked s3s-fs@0.14.1 --features binary --root "$root/target/s3s"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
log="$root/target/moto.log"
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!

# A throwaway single-node etcd; fast elections make 1 s leases possible in tests.
etcd_port=$(free_port); etcd_peer=$(free_port)
etcd_dir=$(mktemp -d "$root/target/etcd-XXXXXX")
etcd --name n1 --data-dir "$etcd_dir" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "n1=http://127.0.0.1:$etcd_peer" --heartbeat-interval 10 --election-timeout 100 \
  --logger zap --log-level warn >"$root/target/etcd.log" 2>&1 &
etcd_pid=$!
s3s_port=$(free_port)
s3s_root=$(mktemp -d "$root/target/s3s-root-XXXXXX")
"$s3s" --host 127.0.0.1 --port "$s3s_port" --access-key zoopipe-test --secret-key zoopipe-test-secret \
  "$s3s_root" >"$root/target/s3s.log" 2>&1 &
s3s_pid=$!
# A throwaway PostgreSQL cluster under target/ with password (scram) authentication, so a wrong
# password really fails. initdb refuses to run as root: as root it runs as the postgres user.
pg_port=$(free_port)
pg_dir=$(mktemp -d "$root/target/pg-XXXXXX")
pg_pass="zoopipe-pg-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
printf '%s' "$pg_pass" >"$pg_dir.pw"
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$pg_dir" "$pg_dir.pw"; chmod 755 "$pg_dir"
  as_pg=(runuser -u postgres --)
fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=scram-sha-256 --pwfile="$pg_dir.pw" \
  >"$root/target/pg-initdb.log" 2>&1
# TLS with a throwaway self-signed certificate for "localhost" (not a CA, as rustls wants of a
# server certificate): sslmode=require/verify-* are tested against it.
if ! command -v openssl >/dev/null 2>&1; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq openssl >/dev/null
fi
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost" -addext "basicConstraints=critical,CA:FALSE" \
  -keyout "$pg_dir/server.key" -out "$pg_dir/server.crt" >/dev/null 2>&1
chmod 600 "$pg_dir/server.key"
if [ "$(id -u)" = 0 ]; then chown postgres "$pg_dir/server.key" "$pg_dir/server.crt"; fi
pg_tls=(-c ssl=on -c "ssl_cert_file=$pg_dir/server.crt" -c "ssl_key_file=$pg_dir/server.key")
export ZOOPIPE_TEST_PG_TLS_CERT="$pg_dir/server.crt"
"${as_pg[@]}" "$pg_bin/postgres" -D "$pg_dir/data" -p "$pg_port" -k "$pg_dir" -c listen_addresses=127.0.0.1 \
  -c max_connections=200 "${pg_tls[@]}" >"$root/target/postgres.log" 2>&1 &
pg_pid=$!
stop_pg() { "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" stop -m fast >/dev/null 2>&1 || kill "$pg_pid" 2>/dev/null || true; }
trap 'kill $moto_pid $etcd_pid $s3s_pid 2>/dev/null || true; stop_pg; wait $moto_pid $etcd_pid $s3s_pid $pg_pid 2>/dev/null || true; rm -rf "$etcd_dir" "$s3s_root" "$pg_dir" "$pg_dir.pw"' EXIT
export ZOOPIPE_TEST_PG_BIN="$pg_bin" ZOOPIPE_TEST_PG_HOST=127.0.0.1 ZOOPIPE_TEST_PG_PORT="$pg_port"
export ZOOPIPE_TEST_PG_PASSWORD="$pg_pass"
python3 - "$pg_port" <<'PY'
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close(); sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("postgres did not start (see target/postgres.log)")
PY
export ZOOPIPE_TEST_S3S_ENDPOINT="http://127.0.0.1:$s3s_port" ZOOPIPE_TEST_S3S_ROOT="$s3s_root"
export ZOOPIPE_TEST_S3S_KEY=zoopipe-test ZOOPIPE_TEST_S3S_SECRET=zoopipe-test-secret
export ZOOPIPE_TEST_ETCD="http://127.0.0.1:$etcd_port"
python3 - "$port" <<'PY'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/"
for _ in range(100):
    try:
        urllib.request.urlopen(url, timeout=1); sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit("moto did not start")
PY
python3 - "$s3s_port" <<'PY'
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close(); sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("s3s-fs did not start")
PY
python3 - "$etcd_port" <<'PY'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/health"
for _ in range(100):
    try:
        if b"true" in urllib.request.urlopen(url, timeout=1).read(): sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
sys.exit("etcd did not start")
PY

export ZOOPIPE_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="$ZOOPIPE_TEST_S3_ENDPOINT"
unset AWS_PROFILE AWS_SESSION_TOKEN || true

# The Kubernetes manifests, offline: kustomize renders every overlay, kubernetes-validate,
# yamllint and checkov check them (skipped when only some tests are asked for).
if [ "$#" -eq 0 ]; then
  scripts/check-deploy.sh
fi

# No incremental caches: they double the size of target/ and CI builds from clean anyway.
export CARGO_INCREMENTAL=0
cargo build --workspace --bins
set -o pipefail
cargo test --workspace "$@" 2>&1 | tee "$root/target/test-output.log"
# One closing line that counts every test binary's results.
python3 - "$root/target/test-output.log" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
runs = re.findall(r"test result: \w+\. (\d+) passed; (\d+) failed", text)
print(f"{sum(int(p) for p, _ in runs)} passed, {sum(int(f) for _, f in runs)} failed")
PY
