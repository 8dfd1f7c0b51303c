#!/usr/bin/env bash
# The FaaS evaluation (issue 20), short form with assertions: `faascache-bench faas --quick`.
# Real functions (bench/faas/functions/) in OpenWhisk action proxies, each sandbox in a memory
# cgroup, one tenant per function at 16 KB and 1 MB inputs, a few seconds per backend: Swift
# direct (S3 API), the FaaSCache gateway in front of Swift, the Python client straight to the
# cluster, Redis in front of Swift. Every output is read back from Swift and its SHA-256 checked
# against what the function returned and what gen_inputs.py expects; any failed invocation, any
# mismatch, an empty cell or a cached backend (gateway, Python client) with under 50 % of its
# reads hitting the cache fails the run. With --faas-agent the cached backends run the node agent
# (`faascache agent`) beside their first server and the invoker sends it every sandbox's events;
# an event that failed or a sandbox the agent did not count fails the run too (the agent costs
# no measurable time: 44-67 s with it, 52 s without, on 2 cores at load 3-5.5). A few minutes
# on a 2-core machine.
#
#   scripts/faas-eval.sh [OUT.json]          (default $CARGO_TARGET_DIR/faas-quick.json)
#
# Builds the release binaries (cargo build --release -p faascache -p faascache-bench; a no-op
# when current) unless FAAS_BIN_DIR names a directory holding both; installs Swift
# (scripts/swift.sh install) and the functions' venv (scripts/faas-functions.sh install) when
# missing. Under CI=true a backend skipped for a missing package (the faascache or redis Python
# modules, redis-server) fails the run. Extra arguments for faascache-bench: FAAS_ARGS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
die() { echo "faas-eval.sh: $*" >&2; exit 1; }
[ -f bench/faas/runtime/actionproxy.py ] && [ -x scripts/faas-functions.sh ] && [ -f bench/faas/gen_inputs.py ] ||
  die "the harness's Python side (bench/faas/runtime/actionproxy.py, gen_inputs.py, scripts/faas-functions.sh) is missing"
if [ -n "${FAAS_BIN_DIR:-}" ]; then
  bin=$FAAS_BIN_DIR
else
  cargo build --release -q -p faascache -p faascache-bench
  bin=$CARGO_TARGET_DIR/release
fi
[ -x "$bin/faascache" ] && [ -x "$bin/faascache-bench" ] || die "no faascache / faascache-bench in $bin"
command -v swift-proxy-server >/dev/null 2>&1 || scripts/swift.sh install
scripts/faas-functions.sh install
python=$(scripts/faas-functions.sh python)
out=${1:-$CARGO_TARGET_DIR/faas-quick.json}
mkdir -p "$(dirname "$out")"
echo "faas-eval.sh: load before: $(cut -d' ' -f1-3 /proc/loadavg)"
# shellcheck disable=SC2086 # FAAS_ARGS is a list of arguments
"$bin/faascache-bench" faas --quick --faas-agent --json "$out" --faas-python "$python" --faas-bin "$bin/faascache" ${FAAS_ARGS:-}
if [ "${CI:-}" = true ] && grep -q '"backend [a-z]* skipped' "$out"; then
  grep -o '"backend [a-z]* skipped[^"]*"' "$out" >&2
  die "CI=true: every backend must run"
fi
echo "faas-eval.sh: results in $out (trace ${out%.json}.trace.json, plots ${out%.json}.cdf.svg, .cache.svg, .agent.svg)"
