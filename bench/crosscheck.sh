#!/usr/bin/env bash
# Cross-check faascache-bench against the peers' own load tools with the same settings,
# interleaved (tool, harness, tool, harness, ...) so machine drift hits both alike.
#
#   bench/crosscheck.sh            # needs peers running: scripts/peers.sh start
#
# Settings: client pinned to core $CORE (servers should be pinned elsewhere, e.g.
# REDIS_CORE=1 MEMCACHED_CORE=1 scripts/peers.sh start), blocking clients (redis-benchmark and
# memcaslap use epoll/libevent, i.e. they sleep in the kernel), 100 B values.
#   1  redis GET, 1 connection, no pipelining, one 16 B key        (redis-benchmark -t get)
#   2  redis GET, 1 connection, pipeline 16, 100k random 16 B keys  (redis-benchmark -P 16 -r 100000)
#   3  memcached 90 % get / 10 % set, 1 connection, 10k 30 B keys   (memcaslap, window 10k)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-${CARGO_TARGET_DIR:-target-bench}/release/faascache-bench}
CORE=${CORE:-0}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
OUT=${OUT:-$(mktemp -d)}
[ -x "$B" ] || { echo "build first: cargo build --release -p faascache-bench" >&2; exit 1; }
for t in redis-benchmark memcaslap python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done

json() { # json FILE FIELD...  -> first record's fields
  python3 - "$@" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["records"][0]
print(" ".join(f"{r[f]:.1f}" if isinstance(r[f], float) else str(r[f]) for f in sys.argv[2:]))
PY
}
rb() { # rb ARGS... -> "rps p50_us" of the GET line of redis-benchmark --csv
  taskset -c "$CORE" redis-benchmark -h 127.0.0.1 -p 6379 --csv "$@" 2>/dev/null |
    awk -F'","' '/^"GET"/ {gsub(/"/,"",$0); split($0,f,","); printf "%.0f %.1f\n", f[2], f[5]*1000}'
}
mcs() { # mcs -> TPS of memcaslap
  cat >"$OUT/mcs.cfg" <<'CFG'
key
30 30 1
value
100 100 1
cmd
0 0.1
1 0.9
CFG
  taskset -c "$CORE" memcaslap -s 127.0.0.1:11211 -T 1 -c 1 -F "$OUT/mcs.cfg" -t "${SECS}s" 2>/dev/null |
    awk '/^Run time/ {for (i=1;i<=NF;i++) if ($i=="TPS:") print $(i+1)}'
}

printf "%-5s %-42s %12s %10s\n" round case "ops/s" "p50 µs"
for r in $(seq "$ROUNDS"); do
  # case 1
  read -r rps p50 < <(rb -c 1 -n $((SECS * 8000)) -d 100 -t set,get -P 1)
  printf "%-5s %-42s %12s %10s\n" "$r" "1 redis-benchmark -c1 -P1 GET" "$rps" "$p50"
  "$B" readDist --driver redis://127.0.0.1:6379 --key-size 16 --value-size 100 --poll block \
    --duration "$SECS" --warmup 0.5 --client-core "$CORE" --quiet --json "$OUT/c1.json" >/dev/null 2>&1
  printf "%-5s %-42s %12s %10s\n" "$r" "1 faascache-bench readDist --poll block" $(json "$OUT/c1.json" ops_per_sec p50_us)
  # case 2
  [ "$r" = 1 ] && taskset -c "$CORE" redis-benchmark -h 127.0.0.1 -p 6379 -q -c 4 -P 64 -n 1000000 -d 100 -t set -r 100000 >/dev/null 2>&1
  read -r rps p50 < <(rb -c 1 -n $((SECS * 60000)) -d 100 -t get -P 16 -r 100000)
  printf "%-5s %-42s %12s %10s\n" "$r" "2 redis-benchmark -c1 -P16 -r100000 GET" "$rps" "$p50"
  "$B" readThroughput --driver redis://127.0.0.1:6379 --key-size 16 --keys 100000 --value-size 100 \
    --clients 1 --pipeline 16 --poll block --duration "$SECS" --warmup 0.5 --client-core "$CORE" \
    --quiet $([ "$r" = 1 ] || echo --no-load) --json "$OUT/c2.json" >/dev/null 2>&1
  printf "%-5s %-42s %12s %10s\n" "$r" "2 faascache-bench readThroughput -P16 block" $(json "$OUT/c2.json" ops_per_sec p50_us)
  # case 3
  printf "%-5s %-42s %12s %10s\n" "$r" "3 memcaslap -T1 -c1 90/10 get/set" "$(mcs)" "–"
  "$B" mix --driver memcached://127.0.0.1:11211 --read-fraction 0.9 --zipf 0 --keys 10000 --key-size 30 \
    --value-size 100 --poll block --duration "$SECS" --warmup 0.5 --client-core "$CORE" --quiet \
    --json "$OUT/c3.json" >/dev/null 2>&1
  printf "%-5s %-42s %12s %10s\n" "$r" "3 faascache-bench mix 0.9 uniform block" $(json "$OUT/c3.json" ops_per_sec p50_us)
done
echo "raw JSON in $OUT"
