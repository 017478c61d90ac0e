#!/usr/bin/env bash
# Coordinator stress benchmark: a throwaway etcd on loopback, one coordinator (in-process, the
# real election, state and gRPC service code) and fake workers that finish tasks instantly.
#   bench/stress.sh                          # 100,000 tasks, 1,000 workers
#   bench/stress.sh --tasks 20000 --workers 200
set -euo pipefail
cd "$(dirname "$0")/.."
command -v etcd >/dev/null || { echo "etcd is not installed (apt-get install etcd-server)" >&2; exit 1; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
client=$(port); peer=$(port); data=$(mktemp -d)
etcd --name stress --data-dir "$data" \
  --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
  --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --initial-cluster "stress=http://127.0.0.1:$peer" --logger zap --log-level error >/dev/null 2>&1 &
etcd_pid=$!
trap 'kill $etcd_pid 2>/dev/null || true; wait $etcd_pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$client/health" >/dev/null && break; sleep 0.1; done
echo "etcd $(etcd --version | head -1 | awk '{print $3}') on 127.0.0.1:$client (fsync on, default settings); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
RUST_LOG=error ZOOPIPE_BENCH_ETCD="http://127.0.0.1:$client" \
  cargo bench -q -p zoopipe-coordinator --bench stress -- "$@"
