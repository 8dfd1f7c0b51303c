#!/usr/bin/env bash
# The crash tests, many times. Each run starts a coordinator and three servers (--replicas 1)
# and kills one master with SIGKILL after a random delay:
#   durability    two writers record every acknowledged write; every one must read back with
#                 its value and version (zero lost writes is the only pass);
#   exactly-once  six clients increment their own counters through the crash; every
#                 acknowledged increment must count exactly once (returned values 1, 2, 3, ...
#                 with no gap, the stored value the last one). It prints how many retries the
#                 recovery master answered from recovered completion records.
#
#   scripts/crash-loop.sh [RUNS] [SEED] [durability|exactly-once|all]
#                                            (default 20 runs, seed from the clock, all)
#   PROFILE=debug scripts/crash-loop.sh      (reuse the debug test build instead of --release)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
seed=${2:-$(date +%s%N)}
which=${3:-all}
case "$which" in
  durability|exactly-once|all) ;;
  *) echo "error: unknown crash test '$which': use durability, exactly-once or all" >&2; exit 2 ;;
esac
echo "crash loop: $runs runs of $which, base seed $seed (rerun one with CRASH_SEED=<seed> CRASH_RUNS=1)"
profile=(--release); [ "${PROFILE:-release}" = debug ] && profile=()
if [ "$which" != exactly-once ]; then
  CRASH_RUNS=$runs CRASH_SEED=$seed cargo test "${profile[@]}" -p faascache --test cluster_durability \
    crash_of_a_master_loses_no_acknowledged_write -- --nocapture 2>&1 | grep -E '^seed|test result|panicked|lost'
fi
if [ "$which" != durability ]; then
  CRASH_RUNS=$runs CRASH_SEED=$seed cargo test "${profile[@]}" -p faascache --test cluster_exactly_once \
    increments_retried_around_a_master_crash_count_once -- --nocapture 2>&1 | grep -E '^seed|test result|panicked|exactly once'
fi
