#!/usr/bin/env bash
# Cluster benchmarks (issue 4): one coordinator and one server on 127.0.0.1, the server's
# dispatch thread on core 1, the client on core 0, both spinning (or both blocking with
# POLL=block), then readDist, writeDist, echo (to the master), readThroughput (pipelined) and
# multiRead_oneMaster through the FaaSCache client, 100 B values, 30 B keys, medians of RUNS runs.
#
#   scripts/bench-cluster.sh [OUT_DIR]        (default bench/results/cluster-<date>)
#
# Needs release builds: cargo build --release -p faascache -p faascache-bench
set -euo pipefail
cd "$(dirname "$0")/.."
POLL=${POLL:-spin}
RUNS=${RUNS:-5}
DURATION=${DURATION:-2}
out=${1:-bench/results/cluster-$(date -u +%Y-%m-%d)}
mkdir -p "$out"
bin=target/release
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
wait_file() { for _ in $(seq 100); do [ -s "$1" ] && return 0; sleep 0.1; done; echo "timed out waiting for $1" >&2; exit 1; }

"$bin/faascache" coordinator --listen tcp:host=127.0.0.1,port=0 --storage "file:$dir/coordinator" \
  --poll block --locator-file "$dir/coordinator.run" 2>"$dir/coordinator.log" &
pids+=($!)
wait_file "$dir/coordinator.run"
coord=$(cat "$dir/coordinator.run")
taskset -c 1 "$bin/faascache" server --coordinator "$coord" --listen tcp:host=127.0.0.1,port=0 \
  --memory 1GiB --poll "$POLL" --no-pin --locator-file "$dir/server.run" 2>"$dir/server.log" &
pids+=($!)
wait_file "$dir/server.run"
echo "$coord" > "$dir/coordinator.locator"
client_poll=busy; [ "$POLL" = block ] && client_poll=block
common=(--dir "$dir" --client-core 0 --poll "$client_poll" --runs "$RUNS" --duration "$DURATION" --warmup 0.5 --value-size 100 --key-size 30)
echo "cluster: $coord; server $(cat "$dir/server.run") on core 1 ($POLL); client on core 0 ($client_poll); load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin/faascache-bench" readDist "${common[@]}" --json "$out/readDist.json"
"$bin/faascache-bench" writeDist "${common[@]}" --json "$out/writeDist.json"
"$bin/faascache-bench" echo "${common[@]}" --echo-sizes 100 --json "$out/echo.json"
"$bin/faascache-bench" readThroughput "${common[@]}" --pipeline 64 --json "$out/readThroughput.json"
"$bin/faascache-bench" multiRead_oneMaster "${common[@]}" --json "$out/multiRead.json"
echo "results in $out; load after: $(cut -d' ' -f1-3 /proc/loadavg)"
