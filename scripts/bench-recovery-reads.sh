#!/usr/bin/env bash
# Reads on a node while its backup serves a recovery (issue 15), before vs during, same run.
#
# A coordinator and two servers, X (server-1) and V (server-2), `--replicas 1`: V's only
# possible backup is X, so every replica of V is on X. `faascache-bench recoveryReads` fills V
# with FILL_MB MiB of 1000 B objects, then a third server Y (server-3) joins (a second recovery
# master, and a backup for what X recovers), reads one object on X in a tight loop
# (client POLL: busy = spinning, non-blocking socket) for BEFORE seconds, SIGKILLs V and reads on
# through the detection, the replay (X's backup serves every segment of V; X and Y replay one
# half each) and AFTER seconds after; it prints p50/p99/p99.9/max per phase.
#
#   scripts/bench-recovery-reads.sh [OUT_DIR]      (default bench/results/recovery-reads-<date>)
#   FILL_MB=300  POLL=busy  SERVER_POLL=block  BEFORE=5  AFTER=2
#   SERVER_BIN=DIR   directory of the `faascache` binary run as coordinator and servers (default:
#                    the bench's release dir), e.g. an older build's, to compare servers with one
#                    bench client
#
# Needs release builds: cargo build --release -p faascache -p faascache-bench
# (binaries from $CARGO_TARGET_DIR/release, default target/release).
set -euo pipefail
cd "$(dirname "$0")/.."
FILL_MB=${FILL_MB:-300}
POLL=${POLL:-busy}
SERVER_POLL=${SERVER_POLL:-block}
BEFORE=${BEFORE:-5}
AFTER=${AFTER:-2}
out=${1:-bench/results/recovery-reads-$(date -u +%Y-%m-%d)}
mkdir -p "$out"
bin=${CARGO_TARGET_DIR:-target}/release
sbin=${SERVER_BIN:-$bin}
[ -x "$sbin/faascache" ] && [ -x "$bin/faascache-bench" ] || { echo "build first: cargo build --release -p faascache -p faascache-bench" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}" $(cat "$work"/*.pid 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
wait_file() { for _ in $(seq 200); do [ -s "$1" ] && return 0; sleep 0.05; done; echo "timed out waiting for $1" >&2; exit 1; }
mem=$(( FILL_MB * 3 + 256 ))MiB

"$sbin/faascache" coordinator --listen tcp:host=127.0.0.1,port=0 --storage "file:$work/coord" \
  --poll block --locator-file "$work/coordinator.locator" >/dev/null 2>"$work/coordinator.log" &
pids+=($!)
wait_file "$work/coordinator.locator"
coord=$(cat "$work/coordinator.locator")
server() { # N
  "$sbin/faascache" server --coordinator "$coord" --listen tcp:host=127.0.0.1,port=0 \
    --memory "$mem" --poll "$SERVER_POLL" --no-pin --replicas 1 \
    --locator-file "$work/server-$1.run" >/dev/null 2>"$work/server-$1.log" &
  pids+=($!)
  echo $! > "$work/server-$1.pid"
  wait_file "$work/server-$1.run"
}
server 1
server 2
# Y joins once V is full (so that none of V's replicas is on Y): the bench prints "filled" on
# stderr, then waits for 3 masters up before it reads; Y is started by a watcher of that line.
(
  while ! grep -q '^filled' "$out/recoveryReads.err" 2>/dev/null; do sleep 0.2; done
  server 3
  echo "server-3 (Y) up" >&2
) &
watcher=$!
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); client poll $POLL, servers poll $SERVER_POLL, fill $FILL_MB MiB; servers $sbin/faascache"
"$bin/faascache-bench" recoveryReads --coordinator "$coord" --poll "$POLL" \
  --recovery-reader "$(cat "$work/server-1.run")" --recovery-victim "$(cat "$work/server-2.run")" \
  --recovery-victim-pid "$(cat "$work/server-2.pid")" --recovery-fill-mb "$FILL_MB" \
  --recovery-wait-masters 3 --recovery-before "$BEFORE" --recovery-after "$AFTER" --value-size 1000 --key-size 30 \
  2> >(tee "$out/recoveryReads.err" >&2) | tee "$out/recoveryReads.md"
wait "$watcher" 2>/dev/null || true
grep -h 'recovered tablets\|recovery complete\|partition recovered' "$work"/*.log | sed 's/\x1b\[[0-9;]*m//g' > "$out/recovery-log.txt" || true
cat "$out/recovery-log.txt"
echo "results in $out; load after: $(cut -d' ' -f1-3 /proc/loadavg)"
