#!/usr/bin/env bash
# Issue 17's numbers for `faascache gateway`, in one run: GET (hit) and PUT latency of
# 1 KB … 8 MB objects through the gateway beside OpenStack Swift (boto3 against the gateway's
# S3 API and Swift's s3api, python-swiftclient against the gateway's Swift API and Swift's
# native API), wrk with presigned GET URLs against the gateway and Swift's s3api (latency with
# one connection, throughput with many), the Rust client straight to the cluster (the 1 KB
# baseline), and the issue's targets with met / not met.
#
#   scripts/bench-gateway.sh [OUT.md]       (default bench/results/gateway-<date>/gateway.md)
#
# Starts Swift (scripts/swift.sh start), a cluster (`faascache cluster up --servers $SERVERS
# --replicas $REPLICAS --poll $POLL --memory $MEMORY`, Swift's ST_* credentials in its
# environment, as scripts/gateway-tests.sh does) and two gateways on it: one with the default
# --threads (2) on 127.0.0.1:$GW_PORT and one with --threads 1 on $((GW_PORT + 1)) for the
# one-core throughput (pinned to CPU 0 with taskset; its wrk runs on the other CPUs). Creates the Swift containers $BUCKET (read through the gateway: its
# backed table is made on first use) and $BUCKET-direct (read from Swift directly). Everything
# shares this machine's cores: the load average before and after each part is in the report.
#
# Needs: cargo build --release -p faascache -p faascache-bench (binaries from
# $CARGO_TARGET_DIR/release, default target/release); a venv with boto3 and python-swiftclient
# (GATEWAY_VENV, default target/gateway-venv as scripts/gateway-tests.sh makes it; created here
# like it does if missing); wrk (Debian's package; apt-get installed if missing).
# Settings: SERVERS=2 REPLICAS=1 POLL=block MEMORY=1GiB GW_PORT=18190 BUCKET=gwbench
#   SIZES=1000,16000,128000,1000000,8000000 ITERS_SCALE=1 (boto3/swiftclient iterations:
#   200 ≤ 128 KB, 50 ≤ 1 MB, 20 above, times this) WRK_SIZES=$SIZES WRK_DURATION=8s
#   WRK_CONNECTIONS=32 WRK_THREADS=2 RUST_OPS=3000
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SERVERS=${SERVERS:-2}
REPLICAS=${REPLICAS:-1}
POLL=${POLL:-block}
MEMORY=${MEMORY:-1GiB}
GW_PORT=${GW_PORT:-18190}
GW1_PORT=$((GW_PORT + 1))
BUCKET=${BUCKET:-gwbench}
SIZES=${SIZES:-1000,16000,128000,1000000,8000000}
ITERS_SCALE=${ITERS_SCALE:-1}
WRK_SIZES=${WRK_SIZES:-$SIZES}
WRK_DURATION=${WRK_DURATION:-8s}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-32}
WRK_THREADS=${WRK_THREADS:-2}
RUST_OPS=${RUST_OPS:-3000}
VENV=${GATEWAY_VENV:-$ROOT/target/gateway-venv}
PYTHON=${PYTHON:-python3}
out=${1:-bench/results/gateway-$(date -u +%Y-%m-%d)/gateway.md}
bin=${CARGO_TARGET_DIR:-target}/release

log() { echo "bench-gateway.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

[ -x "$bin/faascache" ] && [ -x "$bin/faascache-bench" ] ||
  die "build first: cargo build --release -p faascache -p faascache-bench ($bin)"
"$bin/faascache" gateway --help >/dev/null 2>&1 || die "$bin/faascache has no gateway subcommand"
if ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk (Debian)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null || die "cannot install wrk"
fi
if [ ! -x "$VENV/bin/python" ]; then
  log "creating a venv in $VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV" || die "$PYTHON -m venv failed (apt-get install python3-venv)"
fi
"$VENV/bin/python" -c 'import boto3, swiftclient' 2>/dev/null ||
  "$VENV/bin/python" -m pip install -q boto3 python-swiftclient
"$VENV/bin/python" -c 'import boto3, swiftclient' || die "boto3 / python-swiftclient missing in $VENV"
[ -x "$VENV/bin/swift" ] || die "the swift CLI (python-swiftclient) is missing in $VENV"
command -v taskset >/dev/null 2>&1 || die "taskset (util-linux) is missing"
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (the one-core gateway is pinned to CPU 0, wrk to the rest)"
py=("$VENV/bin/python" "$ROOT/bench/python/gateway_bench.py")

scripts/swift.sh start >/dev/null
eval "$(scripts/swift.sh env)"
export ST_AUTH ST_USER ST_KEY # the servers' and the gateways' store credentials (not AWS_*)
SWIFT_URL=$FAASCACHE_SWIFT_S3_ENDPOINT
GW_URL=http://127.0.0.1:$GW_PORT
GW1_URL=http://127.0.0.1:$GW1_PORT

work=$(mktemp -d "${TMPDIR:-/tmp}/faascache-bench-gateway.XXXXXX")
D=$work/cluster
UP_PID="" GW_PID="" GW1_PID=""
cleanup() {
  local rc=$?
  for p in $GW_PID $GW1_PID $UP_PID; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  "$bin/faascache" cluster down --dir "$D" >/dev/null 2>&1 || true
  if [ "$rc" != 0 ]; then log "failed (exit $rc); logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# CPU seconds (user + system) a process has used so far.
cpu_s() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu_sum() { local t=0 p; for p in "$@"; do t=$(awk -v a="$t" -v b="$(cpu_s "$p")" 'BEGIN{print a+b}'); done; echo "$t"; }
# Busy CPU seconds of the whole machine so far.
machine_busy_s() { awk '/^cpu /{printf "%.2f", ($2+$3+$4+$7+$8) / 100; exit}' /proc/stat; }

start_gateway() { # PORT THREADS LOGFILE [CPU] -> pid on stdout (CPU: pinned there, all its threads)
  local pin=()
  if [ -n "${4:-}" ]; then pin=(taskset -c "$4"); fi
  "${pin[@]}" "$bin/faascache" gateway --listen "127.0.0.1:$1" --dir "$D" --threads "$2" >"$3" 2>&1 &
  local pid=$! code
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$3" >&2; die "the gateway on port $1 exited"; }
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/" || true)
    case $code in [1-5][0-9][0-9]) echo "$pid"; return 0 ;; esac
    sleep 0.1
  done
  tail -n 30 "$3" >&2; die "the gateway did not answer on port $1 in 30 s"
}

log "cluster: $SERVERS servers, --replicas $REPLICAS, --poll $POLL, --memory $MEMORY"
"$bin/faascache" cluster up --dir "$D" --servers "$SERVERS" --replicas "$REPLICAS" --poll "$POLL" \
  --memory "$MEMORY" >"$work/up.log" 2>&1 &
UP_PID=$!
for _ in $(seq 600); do
  [ -s "$D/coordinator.locator" ] && break
  kill -0 "$UP_PID" 2>/dev/null || { tail -n 30 "$work/up.log" >&2; die "cluster up exited"; }
  sleep 0.1
done
[ -s "$D/coordinator.locator" ] || { tail -n 30 "$work/up.log" >&2; die "the cluster was not up in 60 s"; }
server_pids=()
for n in $(seq "$SERVERS"); do
  for _ in $(seq 100); do [ -s "$D/pids/server-$n.pid" ] && break; sleep 0.1; done
  [ -s "$D/pids/server-$n.pid" ] || die "no pid file for server $n in $D/pids"
  server_pids+=("$(cat "$D/pids/server-$n.pid")")
done
GW_PID=$(start_gateway "$GW_PORT" 2 "$work/gateway.log")
GW1_PID=$(start_gateway "$GW1_PORT" 1 "$work/gateway1.log" 0)

swift_cli() { "$VENV/bin/swift" -A "$ST_AUTH" -U "$ST_USER" -K "$ST_KEY" "$@"; }
swift_cli post "$BUCKET" || die "cannot create the Swift container $BUCKET"
swift_cli post "$BUCKET-direct" || die "cannot create the Swift container $BUCKET-direct"

cat >"$work/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK p50_us=%d p99_us=%d req_s=%.1f requests=%d bytes=%d status_errors=%d socket_errors=%d\n",
    latency:percentile(50), latency:percentile(99), summary.requests / (summary.duration / 1e6),
    summary.requests, summary.bytes, e.status, e.connect + e.read + e.write + e.timeout))
end
LUA
field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<<"$2"; }
human() { awk -v s="$1" 'BEGIN{ if (s % 1000000 == 0) printf "%d MB", s/1000000; else if (s % 1000 == 0) printf "%d KB", s/1000; else printf "%d B", s }'; }

# wrk_row LABEL PID(gateway or "-") URL SIZE [CPUS]: one latency run (-t1 -c1) and one
# throughput run; wrk pinned to CPUS if given.
wrk_row() {
  local label=$1 pid=$2 url=$3 size=$4 lat tput c0 s0 m0 c1 s1 m1 secs gw srv mach rps pin=()
  if [ -n "${5:-}" ]; then pin=(taskset -c "$5"); fi
  lat=$("${pin[@]}" wrk -t1 -c1 -d"$WRK_DURATION" --timeout 10s -s "$work/report.lua" "$url" | grep '^WRK') ||
    die "wrk failed against $label"
  c0=$([ "$pid" = - ] && echo 0 || cpu_s "$pid"); s0=$(cpu_sum "${server_pids[@]}"); m0=$(machine_busy_s)
  tput=$("${pin[@]}" wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"$WRK_DURATION" --timeout 10s -s "$work/report.lua" "$url" | grep '^WRK') ||
    die "wrk failed against $label"
  c1=$([ "$pid" = - ] && echo 0 || cpu_s "$pid"); s1=$(cpu_sum "${server_pids[@]}"); m1=$(machine_busy_s)
  for r in "$lat" "$tput"; do
    [ "$(field status_errors "$r")" = 0 ] || die "$label: HTTP errors from wrk: $r"
    [ "$(field requests "$r")" -gt 0 ] || die "$label: wrk made no requests: $r"
  done
  secs=${WRK_DURATION%s}
  gw=$([ "$pid" = - ] && echo "—" || awk -v a="$c0" -v b="$c1" -v t="$secs" 'BEGIN{printf "%.2f", (b-a)/t}')
  srv=$(awk -v a="$s0" -v b="$s1" -v t="$secs" 'BEGIN{printf "%.2f", (b-a)/t}')
  mach=$(awk -v a="$m0" -v b="$m1" -v t="$secs" 'BEGIN{printf "%.2f", (b-a)/t}')
  rps=$(field req_s "$tput")
  echo "| $(human "$size") | $label | $(field p50_us "$lat") | $(field p99_us "$lat") | $(field req_s "$lat") | $(field p50_us "$tput") | $(field p99_us "$tput") | $rps | $(awk -v r="$rps" -v s="$size" 'BEGIN{printf "%.1f", r*s/1e6}') | $gw | $srv | $mach | $(field socket_errors "$lat")/$(field socket_errors "$tput") |"
}

mkdir -p "$(dirname "$out")"
json=${out%.md}.json
{
  echo "# The S3/Swift gateway against Swift ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- server client transport || echo +), $(date -u '+%Y-%m-%d %H:%M') UTC)"
  echo
  echo "Machine: $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r);"
  echo "Swift, the cluster ($SERVERS servers, --replicas $REPLICAS, servers --poll $POLL, --memory $MEMORY),"
  echo "both gateways and the clients all share these cores. Load average at the start: $(load)."
  echo
  echo "## boto3 and python-swiftclient (one request at a time)"
  echo
  echo "\`gateway_bench.py clients --gateway $GW_URL --swift $SWIFT_URL --gw-bucket $BUCKET --swift-bucket $BUCKET-direct --sizes $SIZES --iters-scale $ITERS_SCALE\`"
  echo "(gateway: default --threads 2). Load before: $(load)."
  echo
} | tee "$out"
"${py[@]}" clients --gateway "$GW_URL" --swift "$SWIFT_URL" --gw-bucket "$BUCKET" \
  --swift-bucket "$BUCKET-direct" --sizes "$SIZES" --iters-scale "$ITERS_SCALE" --json "$json" | tee -a "$out"
ratio_ok=$("$VENV/bin/python" - "$json" <<'PY'
import json, sys
r = {(x["target"], x["size"], x["op"]): x["p50_ms"] for x in json.load(open(sys.argv[1]))}
sizes = sorted({s for (_, s, _) in r if s <= 1_000_000})
bad = [s for s in sizes if r[("gw-s3", s, "GET")] / r[("swift-s3", s, "GET")] > 0.1]
print("met" if not bad else "not met at " + ", ".join(f"{s} B" for s in bad))
PY
)

{
  echo
  echo "Load after: $(load)."
  echo
  echo "## The Rust client straight to the cluster (1 KB baseline)"
  echo
  echo "\`faascache-bench readDist --dir CLUSTER --value-size 1000 --ops $RUST_OPS --poll busy|block\`: one"
  echo "1000 B value (30 B key) in a plain table of the same cluster, read repeatedly. The gateway's"
  echo "own client waits adaptively (spins up to 200 µs, then blocks), which for a 1 KB hit is"
  echo "spinning: \`busy\` is its row. Load before: $(load)."
  echo
  echo "| driver | variant | poll | load | clients×pipe | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | ops/s (offered) | server CPU | runs (p50 spread) | errors/misses |"
  echo "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
} | tee -a "$out"
declare -A rust_p50
for cpoll in busy block; do
  row=$("$bin/faascache-bench" readDist --dir "$D" --poll "$cpoll" --value-size 1000 --ops "$RUST_OPS" --quiet 2>"$work/readdist-$cpoll.err" |
    grep -E '^\| faascache') || { cat "$work/readdist-$cpoll.err" >&2; die "readDist --poll $cpoll failed"; }
  echo "$row" | tee -a "$out"
  rust_p50[$cpoll]=$(awk -F'|' '{gsub(/ /, "", $7); print $7}' <<<"$row")
done

{
  echo
  echo "## wrk with presigned GET URLs (boto3, 1 h), objects cached on the gateway"
  echo
  echo "Latency: \`wrk -t1 -c1 -d$WRK_DURATION\`; throughput: \`wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION\` (both"
  echo "\`--timeout 10s\`, a Lua \`done\` hook printing wrk's percentiles). CPU columns: cores used"
  echo "during the throughput run by the gateway process, the cluster's servers, and the whole"
  echo "machine (of $(nproc)). Load before: $(load)."
  echo
  echo "| size | target | c1 p50 µs | c1 p99 µs | c1 req/s | c$WRK_CONNECTIONS p50 µs | c$WRK_CONNECTIONS p99 µs | c$WRK_CONNECTIONS req/s | MB/s | gateway cores | servers cores | machine cores | socket errors (c1/c$WRK_CONNECTIONS) |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
} | tee -a "$out"
run=$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
declare -A gw_c1 gw1_tput
for size in ${WRK_SIZES//,/ }; do
  url_gw=$("${py[@]}" presign --endpoint "$GW_URL" --bucket "$BUCKET" --key "wrk-$run-$size" --size "$size")
  url_sw=$("${py[@]}" presign --endpoint "$SWIFT_URL" --bucket "$BUCKET-direct" --key "wrk-$run-$size" --size "$size")
  row=$(wrk_row "gateway (--threads 2)" "$GW_PID" "$url_gw" "$size"); echo "$row" | tee -a "$out"
  gw_c1[$size]=$(awk -F'|' '{gsub(/ /, "", $4); print $4}' <<<"$row")
  if [ "$size" = 1000 ]; then
    url_gw1=$("${py[@]}" presign --endpoint "$GW1_URL" --bucket "$BUCKET" --key "wrk1-$run-$size" --size "$size")
    others=$([ "$(nproc)" = 2 ] && echo 1 || echo "1-$(($(nproc) - 1))")
    row=$(wrk_row "gateway (--threads 1, on CPU 0; wrk on CPU $others)" "$GW1_PID" "$url_gw1" "$size" "$others")
    echo "$row" | tee -a "$out"
    gw1_tput[$size]=$(awk -F'|' '{gsub(/ /, "", $9); print $9}' <<<"$row")
    gw1_cores=$(awk -F'|' '{gsub(/ /, "", $11); print $11}' <<<"$row")
  fi
  row=$(wrk_row "Swift s3api" - "$url_sw" "$size"); echo "$row" | tee -a "$out"
done

{
  echo
  echo "Load after: $(load)."
  echo
  echo "## Targets (issue 17)"
  echo
  echo "- gateway hit ≤ 1/10 of Swift's GET p50 at ≤ 1 MB through boto3 (gateway S3 vs Swift s3api): **$ratio_ok**"
  if [ -n "${gw_c1[1000]:-}" ]; then
    # Against the faster of the Rust client's two rows: under load a spinning client can lose
    # its core and come out slower than a blocking one.
    best=$(printf '%s\n' "${rust_p50[busy]}" "${rust_p50[block]}" | sort -g | head -1)
    added=$(awk -v g="${gw_c1[1000]}" -v r="$best" 'BEGIN{printf "%.1f", g - r}')
    verdict=$(awk -v a="$added" 'BEGIN{print (a <= 100 ? "met" : "not met")}')
    echo "- the gateway adds ≤ 100 µs p50 over the native client at 1 KB (wrk -c1 ${gw_c1[1000]} µs − the faster Rust client row $best µs (busy ${rust_p50[busy]}, block ${rust_p50[block]}) = $added µs): **$verdict**"
    verdict=$(awk -v r="${gw1_tput[1000]}" 'BEGIN{print (r >= 20000 ? "met" : "not met")}')
    per_core=$(awk -v r="${gw1_tput[1000]}" -v c="$gw1_cores" 'BEGIN{printf "%.0f", (c > 0 ? r / c : 0)}')
    echo "- one gateway core ≥ 20 K GET/s of 1 KB (--threads 1, the gateway pinned to CPU 0, wrk -c$WRK_CONNECTIONS on the other CPU(s) with the servers and whatever else runs there: ${gw1_tput[1000]} req/s, the gateway using $gw1_cores cores, $per_core req/s per gateway CPU-second): **$verdict**"
  else
    echo "- the 1 KB wrk rows were not run (WRK_SIZES=$WRK_SIZES): the other two targets are not evaluated"
  fi
} | tee -a "$out"

swift_cli delete "$BUCKET" >/dev/null 2>&1 || log "could not empty $BUCKET"
swift_cli delete "$BUCKET-direct" >/dev/null 2>&1 || log "could not empty $BUCKET-direct"
log "report in $out (summaries in $json)"
