#!/usr/bin/env bash
# Backed tables against real object stores (issue 16): `faascache-bench backed` for OpenStack
# Swift through its S3 API, Swift's native API, and moto, each in one run against a fresh
# cluster (coordinator + SERVERS servers, --replicas REPLICAS) whose servers get the store's
# credentials from the environment, as functions' nodes would.
#
#   scripts/bench-faas.sh [OUT_DIR]        (default bench/results/faas-<date>)
#   STORES="swift-s3 swift moto"  SERVERS=2  REPLICAS=1  POLL=block  ROUNDS=1  DRAIN=400
#   SIZES=1000,16000,128000,1000000,8000000  MEMORY=1GiB  WARM=$MEMORY
#
# Steady state: each server faults its whole log in at start (--warm-ahead $WARM) and the
# script waits for that before measuring, as a server that has run for a while has its log
# memory resident. WARM=64MiB (the server's default) measures a freshly started server.
#
# Needs release builds: cargo build --release -p faascache -p faascache-bench
# (binaries from $CARGO_TARGET_DIR/release, default target/release); starts Swift and moto
# through scripts/swift.sh and scripts/moto.sh (installed by them or .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
STORES=${STORES:-"swift-s3 swift moto"}
SERVERS=${SERVERS:-2}
REPLICAS=${REPLICAS:-1}
POLL=${POLL:-block}
ROUNDS=${ROUNDS:-1}
DRAIN=${DRAIN:-400}
MEMORY=${MEMORY:-1GiB}
WARM=${WARM:-$MEMORY}
SIZES=${SIZES:-1000,16000,128000,1000000,8000000}
out=${1:-bench/results/faas-$(date -u +%Y-%m-%d)}
mkdir -p "$out"
bin=${CARGO_TARGET_DIR:-target}/release
[ -x "$bin/faascache" ] && [ -x "$bin/faascache-bench" ] || { echo "build first: cargo build --release -p faascache -p faascache-bench" >&2; exit 1; }
work=$(mktemp -d)
cleanup() {
  for p in $(cat "$work"/*.pid 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
wait_file() { for _ in $(seq 400); do [ -s "$1" ] && return 0; sleep 0.05; done; echo "timed out waiting for $1" >&2; exit 1; }

cluster_up() { # NAME
  local d="$work/$1"
  mkdir -p "$d"
  "$bin/faascache" coordinator --listen tcp:host=127.0.0.1,port=0 --storage "file:$d/coord" \
    --poll block --locator-file "$d/coordinator.locator" >/dev/null 2>"$d/coordinator.log" &
  echo $! > "$d/coordinator.pid"; cp "$d/coordinator.pid" "$work/$1-coordinator.pid"
  wait_file "$d/coordinator.locator"
  for n in $(seq "$SERVERS"); do
    "$bin/faascache" server --coordinator "$(cat "$d/coordinator.locator")" \
      --listen tcp:host=127.0.0.1,port=0 --memory "$MEMORY" --warm-ahead "$WARM" --poll "$POLL" \
      --no-pin --replicas "$REPLICAS" --locator-file "$d/server-$n.run" >/dev/null 2>"$d/server-$n.log" &
    echo $! > "$work/$1-server-$n.pid"
    wait_file "$d/server-$n.run"
  done
  wait_warm "$1"
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
wait_warm() { # NAME: until every server's resident memory stops growing (its warm-up is done)
  local last=-1 now
  for _ in $(seq 600); do
    now=0
    for f in "$work/$1"-server-*.pid; do now=$((now + $(rss_kib "$(cat "$f")"))); done
    [ "$now" -eq "$last" ] && { echo "servers warm: $((now / 1024)) MiB resident" >&2; return 0; }
    last=$now; sleep 0.5
  done
  echo "servers still warming after 300 s" >&2
}
cluster_down() { # NAME
  for p in $(cat "$work/$1"-*.pid); do kill "$p" 2>/dev/null || true; done
  sleep 1
  for p in $(cat "$work/$1"-*.pid); do kill -9 "$p" 2>/dev/null || true; done
  rm -f "$work/$1"-*.pid
}

bash scripts/swift.sh start >/dev/null
bash scripts/moto.sh start >/dev/null
eval "$(bash scripts/swift.sh env)"
eval "$(bash scripts/moto.sh env)"
for s in $STORES; do
  case "$s" in
    swift-s3) url="s3://$FAASCACHE_SWIFT_CONTAINER/bench"
      vars=(AWS_ACCESS_KEY_ID="$ST_USER" AWS_SECRET_ACCESS_KEY="$ST_KEY" AWS_REGION=us-east-1
            AWS_ENDPOINT_URL="$FAASCACHE_SWIFT_S3_ENDPOINT") ;;
    swift) url="swift://$FAASCACHE_SWIFT_CONTAINER/bench"; vars=() ;;
    moto) url="s3://$FAASCACHE_MOTO_BUCKET/bench"
      vars=(AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
            AWS_ENDPOINT_URL="$FAASCACHE_MOTO_ENDPOINT") ;;
    *) echo "unknown store $s (swift-s3, swift, moto)" >&2; exit 2 ;;
  esac
  echo "== $s ($url); load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/faas.md"
  (
    if [ ${#vars[@]} -gt 0 ]; then export "${vars[@]}"; fi
    cluster_up "$s"
    "$bin/faascache-bench" backed --dir "$work/$s" --faas-store "$url" --faas-sizes "$SIZES" \
      --faas-rounds "$ROUNDS" --faas-drain-objects "$DRAIN" 2> >(tee "$out/faas-$s.err" >&2) \
      | tee -a "$out/faas.md"
    cluster_down "$s"
  )
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/faas.md"
done
echo "results in $out/faas.md"
