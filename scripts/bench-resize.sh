#!/usr/bin/env bash
# Resize latency (issue 18, docs/benchmarks.md §13.2): a local coordinator and one server with
# --memory BASE+step --max-memory BASE+1GiB, for steps of 8 MiB, 64 MiB, 512 MiB and 1 GiB; a
# shrink to BASE, then a grow back to BASE+step, each timed by the server (`faascache resize
# --json`), with the log
#   empty   — no data;
#   clean   — 80 % full of clean objects of a write-back table backed by moto (written through
#             the cache, flushed): the shrink evicts what does not fit;
#   live    — 80 % of BASE live in a plain table, every other key written twice (half of each
#             segment of the first pass dead): the shrink must clean, moving live data; its rate
#             in MB/s is reported.
#
#   scripts/bench-resize.sh [OUT.md]          (release build; moto from scripts/moto.sh)
#
# Settings: BASE (default 1GiB), VALUE (value bytes, 65536), ROUNDS (3 per empty cell),
# HEAVY_ROUNDS (1 per clean or live cell).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${1:-/dev/stdout}
BASE=${BASE:-1GiB}
ROUNDS=${ROUNDS:-3}
cargo build -q --release -p faascache
BIN=${FAASCACHE_BIN:-$ROOT/target/release/faascache}
DIR=$(mktemp -d /tmp/faascache-bench-resize.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

bytes() { python3 -c "import sys; u={'KiB':1<<10,'MiB':1<<20,'GiB':1<<30}; s=sys.argv[1]; print(int(s[:-3])*u[s[-3:]])" "$1"; }
BASE_B=$(bytes "$BASE")
MAX_B=$((BASE_B + (1 << 30)))

bash scripts/moto.sh start >/dev/null
eval "$(bash scripts/moto.sh env)"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_ENDPOINT_URL="$FAASCACHE_MOTO_ENDPOINT"

start_cluster() {
  "$BIN" coordinator --listen tcp:host=127.0.0.1,port=0 --locator-file "$DIR/coord" >"$DIR/coord.log" 2>&1 &
  PIDS+=($!)
  while [ ! -s "$DIR/coord" ]; do sleep 0.05; done
  COORD=$(cat "$DIR/coord")
  "$BIN" server --coordinator "$COORD" --listen tcp:host=127.0.0.1,port=0 --locator-file "$DIR/server" \
    --memory "$1" --max-memory "$MAX_B" --replicas 0 --poll block --no-pin >"$DIR/server.log" 2>&1 &
  PIDS+=($!)
  while [ ! -s "$DIR/server" ]; do sleep 0.05; done
}
stop_cluster() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); rm -f "$DIR/coord" "$DIR/server"; }
resize() { "$BIN" resize 1 "$1" --coordinator "$COORD" --json; }
us() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['server_us'])" "$1"; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
median() { python3 -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }

# Write objects of VALUE bytes to TABLE with keys PREFIX0..N-1 (every STRIDE-th, default 1)
# through `faascache shell`.
fill() {
  python3 - "$1" "$2" "$3" "${4:-1}" "${VALUE:-65536}" <<'EOF' | "$BIN" shell --coordinator "$COORD" >/dev/null
import sys
table, prefix, n, stride, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
v = "x" * size
for i in range(0, n, stride):
    print(f"put {table} {prefix}{i} {v}")
EOF
}

{
echo "| data | step | shrink (ms, median of rounds) | evicted | moved (MiB) | moved MB/s | grow back (µs, median) |"
echo "|---|---|---:|---:|---:|---:|---:|"
for data in empty clean live; do
  rounds=$ROUNDS
  [ "$data" = empty ] || rounds=${HEAVY_ROUNDS:-1}
  for step in 8MiB 64MiB 512MiB 1GiB; do
    STEP_B=$(bytes "$step")
    grows=(); shrinks=(); ev=0; mv=0; rate=()
    for r in $(seq "$rounds"); do
      start_cluster "$((BASE_B + STEP_B))"
      n=$(( (BASE_B + STEP_B) * 8 / 10 / ${VALUE:-65536} ))
      case $data in
        clean)
          # 80 % of the log clean: the shrink evicts what does not fit in BASE.
          url="s3://$FAASCACHE_MOTO_BUCKET/bench-resize-$$-$r-$step"
          "$BIN" table create c --backing "$url" --coordinator "$COORD" >/dev/null
          fill c k "$n"
          "$BIN" flush c --coordinator "$COORD" --timeout 600s >/dev/null ;;
        live)
          # 80 % of BASE live in a plain table, every other key written twice: half of each
          # segment of the first pass is dead, so freeing memory means moving the other half.
          "$BIN" table create p --coordinator "$COORD" >/dev/null
          n=$(( BASE_B * 8 / 10 / ${VALUE:-65536} ))
          fill p k "$n"; fill p k "$n" 2 ;;
      esac
      s=$(resize "$BASE_B") || { echo "shrink refused ($data $step)" >&2; stop_cluster; continue; }
      shrinks+=("$(python3 -c "print($(us "$s")/1000)")")
      ev=$(field "$s" evicted_objects); mv=$(field "$s" relocated_bytes)
      rate+=("$(python3 -c "print(round($mv/max($(us "$s"),1), 1))")")
      g=$(resize "$((BASE_B + STEP_B))")
      grows+=("$(us "$g")")
      stop_cluster
    done
    [ ${#shrinks[@]} -gt 0 ] || { echo "| $data | $step | refused | | | | |"; continue; }
    echo "| $data | $step | $(median "${shrinks[@]}") | $ev | $((mv >> 20)) | $(median "${rate[@]}") | $(median "${grows[@]}") |"
  done
done
} > "$OUT"
