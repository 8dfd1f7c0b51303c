#!/usr/bin/env bash
# The durability crash test, many times (issue "Durability"): each run starts a coordinator and
# three servers (--replicas 1), two writers record every acknowledged write, one master is
# killed with SIGKILL after a random delay, and every acknowledged write must read back with its
# value and version. Zero lost writes is the only pass.
#
#   scripts/crash-loop.sh [RUNS] [SEED]      (default 20 runs, seed from the clock)
#   PROFILE=debug scripts/crash-loop.sh      (reuse the debug test build instead of --release)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
seed=${2:-$(date +%s%N)}
echo "crash loop: $runs runs, base seed $seed (rerun one with CRASH_SEED=<seed> CRASH_RUNS=1)"
profile=(--release); [ "${PROFILE:-release}" = debug ] && profile=()
CRASH_RUNS=$runs CRASH_SEED=$seed cargo test "${profile[@]}" -p faascache --test cluster_durability \
  crash_of_a_master_loses_no_acknowledged_write -- --nocapture 2>&1 | grep -E '^seed|test result|panicked|lost'
