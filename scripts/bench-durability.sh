#!/usr/bin/env bash
# Durability benchmarks (issue "Durability"), all in one run on this machine:
#
# 1. Durable write latency (100 B values, 30 B keys, one client) at R = 0, 1, 2, 3 beside read
#    latency and the echo RPC to a server process: a coordinator and 4 servers on 127.0.0.1, one
#    table with one tablet, `--replicas R` on every server. POLL (default block) is the servers'
#    polling mode; on 2 cores, 4 spinning servers would starve each other.
# 2. Recovery: a master holding RECOVERY_MB (default 1024) MiB of 1 KB objects is killed with
#    SIGKILL; the time until a client reads again, the coordinator's recovery time and the replay
#    rate per recovery master (from the logs), with 3 servers and --replicas 1.
#
#   scripts/bench-durability.sh [OUT_DIR]      (default bench/results/durability-<date>)
#   ONLY=latency|recovery  RUNS=5  DURATION=2  POLL=block  RECOVERY_MB=1024
#
# Needs release builds: cargo build --release -p faascache -p faascache-bench
set -euo pipefail
cd "$(dirname "$0")/.."
POLL=${POLL:-block}
RUNS=${RUNS:-5}
DURATION=${DURATION:-2}
RECOVERY_MB=${RECOVERY_MB:-1024}
ONLY=${ONLY:-}
out=${1:-bench/results/durability-$(date -u +%Y-%m-%d)}
mkdir -p "$out"
bin=target/release
[ -x "$bin/faascache" ] && [ -x "$bin/faascache-bench" ] || { echo "build first: cargo build --release -p faascache -p faascache-bench" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
wait_file() { for _ in $(seq 200); do [ -s "$1" ] && return 0; sleep 0.05; done; echo "timed out waiting for $1" >&2; exit 1; }

start_cluster() { # servers replicas memory; sets d
  local n=$1 r=$2 mem=$3
  d=$work/c$RANDOM
  mkdir -p "$d"
  "$bin/faascache" coordinator --listen tcp:host=127.0.0.1,port=0 --storage "file:$d/coord" \
    --poll block --locator-file "$d/coordinator.locator" >/dev/null 2>"$d/coordinator.log" &
  pids+=($!)
  wait_file "$d/coordinator.locator"
  for i in $(seq 1 "$n"); do
    "$bin/faascache" server --coordinator "$(cat "$d/coordinator.locator")" \
      --listen tcp:host=127.0.0.1,port=0 --memory "$mem" --poll "$POLL" --no-pin \
      --replicas "$r" --locator-file "$d/server-$i.run" >/dev/null 2>"$d/server-$i.log" &
    pids+=($!)
    echo $! > "$d/server-$i.pid"
  done
  for i in $(seq 1 "$n"); do wait_file "$d/server-$i.run"; done
}
stop_cluster() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; pids=(); sleep 0.3; }

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); servers poll $POLL"
if [ -z "$ONLY" ] || [ "$ONLY" = latency ]; then
  for r in 0 1 2 3; do
    start_cluster 4 "$r" 256MiB
    common=(--dir "$d" --poll block --runs "$RUNS" --duration "$DURATION" --warmup 0.5 --value-size 100 --key-size 30 --quiet)
    "$bin/faascache-bench" writeDist "${common[@]}" --json "$out/writeDist-R$r.json" | tail -n +3
    if [ "$r" = 0 ]; then
      "$bin/faascache-bench" readDist "${common[@]}" --json "$out/readDist.json" | tail -n +3
      "$bin/faascache-bench" echo "${common[@]}" --echo-sizes 100 --json "$out/echo.json" | tail -n +3
    fi
    stop_cluster
  done
fi
if [ -z "$ONLY" ] || [ "$ONLY" = recovery ]; then
  mem=$(( RECOVERY_MB * 3 ))MiB
  start_cluster 3 1 "$mem"
  coord=$(cat "$d/coordinator.locator")
  n=$(( RECOVERY_MB * 1024 ))
  echo "recovery: loading $n objects of 1000 B (+30 B keys) = $RECOVERY_MB MiB into one master"
  # The benchmark's table with one tablet: all of it on one master.
  "$bin/faascache" table create faascache-bench --span 1 --coordinator "$coord" >/dev/null
  "$bin/faascache-bench" readDistRandom --dir "$d" --keys "$n" --value-size 1000 --key-size 30 \
    --runs 1 --duration 0.2 --quiet > /dev/null
  # The master with the most objects.
  victim=""; best=-1
  for i in 1 2 3; do
    objs=$("$bin/faascache" status --coordinator "$coord" 2>/dev/null | awk -v loc="$(cat "$d/server-$i.run")" '$NF==loc {print $7}')
    objs=${objs:-0}
    if [ "$objs" -gt "$best" ]; then best=$objs; victim=$i; fi
  done
  echo "killing server-$victim ($best objects); load $(cut -d' ' -f1-3 /proc/loadavg)"
  kill -9 "$(cat "$d/server-$victim.pid")"
  t0=$(date +%s.%N)
  "$bin/faascache-bench" readDistRandom --dir "$d" --keys "$n" --value-size 1000 --key-size 30 --no-load \
     --runs 1 --duration 1 --timeout-ms 600000 --quiet > "$out/recovery-read.txt" 2>&1 || true
  t1=$(date +%s.%N)
  grep -h 'recovered tablets\|recovery complete\|partition recovered' "$d"/*.log | sed 's/\x1b\[[0-9;]*m//g' > "$out/recovery-log.txt" || true
  echo "first reads after the kill took $(echo "$t1 - $t0" | bc) s (includes 1 s of reading)"
  cat "$out/recovery-log.txt"
  stop_cluster
fi
echo "results in $out; load after: $(cut -d' ' -f1-3 /proc/loadavg)"
