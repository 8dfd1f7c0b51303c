#!/usr/bin/env bash
# The write-back crash test, many times: a coordinator and three servers (--replicas 2) with a
# write-back table on moto's S3 server; the owner is killed with SIGKILL while it holds dirty
# objects; after recovery every key's last acknowledged value must be in the store.
#
#   scripts/crash-writeback.sh [RUNS]        (default 20; one process per run, counted)
#   PROFILE=release scripts/crash-writeback.sh  (default: the debug test build)
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
profile=(); [ "${PROFILE:-debug}" = release ] && profile=(--release)
cargo test "${profile[@]}" -p faascache --test backed_crash --no-run >/dev/null 2>&1 || {
  echo "error: the test does not build: run cargo test -p faascache --test backed_crash" >&2; exit 2; }
pass=0
for i in $(seq 1 "$runs"); do
  if out=$(CRASH_RUNS=1 FAASCACHE_REQUIRE=moto cargo test "${profile[@]}" -p faascache --test backed_crash \
      -- --nocapture 2>&1); then
    pass=$((pass + 1))
    echo "run $i: pass $(grep -E '^run 0: (killing|after)' <<<"$out" | tr '\n' ' ')"
  else
    echo "run $i: FAIL"; grep -E 'panicked|keys lack|^run ' <<<"$out" | head -5
  fi
done
echo "crash-writeback: $pass of $runs runs passed"
[ "$pass" = "$runs" ]
