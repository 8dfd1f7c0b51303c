#!/usr/bin/env bash
# Issue 19's numbers, in one run: get p50/p99 of 100 B and 16 KB values through the Python
# binding, redis-py against Redis and the Rust client (faascache-bench readDist) against the
# same one-server cluster, and a fresh interpreter's import + first-get time (also boto3 through
# `faascache gateway` on the same cluster).
#
#   scripts/bench-python-client.sh [OUT.md]      (default: bench/results/python-client-<date>.md)
#
# Needs: cargo build --release -p faascache -p faascache-bench; the venv of
# scripts/python-client.sh (it installs the package); Redis (scripts/peers.sh starts it).
# Settings: POLL=block (servers and Rust client), N=3000 gets per row, COLD=15 processes.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results/python-client-$(date -u +%Y-%m-%d).md}
POLL=${POLL:-block}
N=${N:-3000}
COLD=${COLD:-15}
VENV=${PY_CLIENT_VENV:-$PWD/target/python-client-venv}
bin=${CARGO_TARGET_DIR:-target}/release
[ -x "$bin/faascache" ] && [ -x "$bin/faascache-bench" ] || { echo "build first: cargo build --release -p faascache -p faascache-bench" >&2; exit 1; }
[ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import faascache' 2>/dev/null || { echo "install the package first: scripts/python-client.sh" >&2; exit 1; }
"$VENV/bin/python" -m pip install -q redis boto3
REDIS_PORT=${REDIS_PORT:-6379} scripts/peers.sh start redis >/dev/null
dir=$(mktemp -d)
trap '"$bin/faascache" cluster down --dir "$dir/c" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
# `cluster up` stays in the foreground (it supervises the cluster); its locator says it is up.
"$bin/faascache" cluster up --dir "$dir/c" --servers 1 --replicas 0 --poll "$POLL" >"$dir/up.log" 2>&1 &
for _ in $(seq 600); do [ -s "$dir/c/coordinator.locator" ] && break; sleep 0.05; done
[ -s "$dir/c/coordinator.locator" ] || { cat "$dir/up.log" >&2; echo "the cluster did not come up" >&2; exit 1; }
# boto3 through `faascache gateway` on the same cluster (the cold-start row): a plain table served
# as a bucket, signatures checked against a throw-away key.
GW_PORT=${GATEWAY_PORT:-18191}
AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret "$bin/faascache" gateway --dir "$dir/c" \
  --listen "127.0.0.1:$GW_PORT" --backing none --poll "$POLL" >"$dir/gateway.log" 2>&1 &
gw_pid=$!
trap 'kill $gw_pid 2>/dev/null || true; "$bin/faascache" cluster down --dir "$dir/c" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
for _ in $(seq 200); do grep -q "gateway listening" "$dir/gateway.log" && break; sleep 0.05; done
grep -q "gateway listening" "$dir/gateway.log" || { cat "$dir/gateway.log" >&2; echo "the gateway did not start" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
{
  echo "## Python client vs redis-py and the Rust client ($(git rev-parse --short HEAD), $(date -u +%H:%M) UTC, load $(cut -d' ' -f1-3 /proc/loadavg), servers --poll $POLL)"
  echo
  "$VENV/bin/python" bench/python/client_latency.py --dir "$dir/c" --redis-port "${REDIS_PORT:-6379}" --n "$N" --cold "$COLD" \
    --gateway "http://127.0.0.1:$GW_PORT" --gateway-key bench:bench-secret
  echo
  echo "# the Rust client on the same cluster (faascache-bench readDist --ops $N): --poll busy is"
  echo "# how the Python binding waits by default (adaptive: spins up to 200 µs, then blocks);"
  echo "# --poll block waits in the kernel, as redis-py does"
  echo "| driver | variant | poll | load | clients×pipe | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | ops/s (offered) | server CPU | runs (p50 spread) | errors/misses |"
  echo "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
  for cpoll in busy block; do
    for size in 100 16000; do
      "$bin/faascache-bench" readDist --dir "$dir/c" --poll "$cpoll" --value-size "$size" --ops "$N" 2>/dev/null | grep -E "^\| faascache"
    done
  done
} | tee "$out"
