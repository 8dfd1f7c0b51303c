#!/usr/bin/env bash
# The whole comparison in one command (issue 6): builds FaaSCache and the harness, installs Redis
# and memcached if missing (Debian packages), then runs `faascache-bench compare`, which starts a
# private FaaSCache cluster (coordinator + 1 server, `--replicas 0`, pinned to --server-core),
# restarts each peer fresh and pinned to the same core, runs every test on each system in the
# same run, and writes bench/results/<UTC date>/ (results.json, results.md, SVG plots).
#
#   scripts/bench-compare.sh [faascache-bench compare options, e.g. --runs 3 --tests readDist,memory]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p faascache -p faascache-bench
scripts/peers.sh install
exec target/release/faascache-bench compare "$@"
