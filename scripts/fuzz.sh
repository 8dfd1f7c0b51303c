#!/usr/bin/env bash
# Runs every cargo-fuzz target for a short time (default 20 s each).
#
#   scripts/fuzz.sh [SECONDS]
#
# Needs a nightly toolchain (cargo-fuzz uses sanitizer flags) and cargo-fuzz, which this
# script installs with `cargo install` when missing. Targets, one fuzz crate per layer so each
# builds only what it tests: server/fuzz (segment decoder, backup decoders),
# transport/protocol/fuzz (RPC header, payload reader, backup messages), transport/zk/fuzz
# (ZooKeeper packets) and transport/fuzz (datagram packets and endpoint, locators).
# A crash leaves its input under <crate>/fuzz/artifacts/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
if ! rustup toolchain list 2>/dev/null | grep -q nightly; then
  echo "fuzz.sh: no nightly toolchain here; cargo-fuzz needs one (rustup toolchain install nightly --profile minimal)" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install --locked cargo-fuzz
fi
# One target directory for the four fuzz workspaces, so the crates they share (the protocol,
# the transport, their dependencies) are built with the sanitizer once, not four times.
fuzz_target=${FUZZ_TARGET_DIR:-$PWD/target/fuzz}
status=0
for crate in server transport/protocol transport/zk transport; do
  # Not inside `for ... in $(...)`, where a failure would go unnoticed.
  targets=$(cd "$crate" && cargo +nightly fuzz list)
  [ -n "$targets" ] || { echo "fuzz.sh: $crate/fuzz lists no targets" >&2; exit 1; }
  for target in $targets; do
    echo "fuzz.sh: $crate/$target for ${secs}s" >&2
    if ! (cd "$crate" && cargo +nightly fuzz run --target-dir "$fuzz_target" "$target" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -n 3); then
      echo "fuzz.sh: $crate/$target FAILED" >&2
      status=1
    fi
  done
done
exit $status
