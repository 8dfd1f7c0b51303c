#!/usr/bin/env bash
# The node agent's reference Python client (server/agent/python/faascache_agent.py, standard
# library only) against a real `faascache agent` process: builds the binary, makes a venv with
# pytest, runs server/agent/python.
#
#   scripts/agent-python.sh [PYTEST ARGS...]
#
# Settings (environment): AGENT_VENV (default $CARGO_TARGET_DIR/agent-venv), PYTHON (default
# python3), CARGO_TARGET_DIR (default target/). `.ci/run` runs this script.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=${AGENT_VENV:-$CARGO_TARGET_DIR/agent-venv}

log() { echo "agent-python.sh: $*" >&2; }

. "$ROOT/scripts/lib/venv.sh"
make_venv "$VENV"
"$VENV/bin/python" -m pytest --version >/dev/null 2>&1 || "$VENV/bin/python" -m pip install -q pytest

log "building the faascache binary"
cargo build -q -p faascache
export FAASCACHE_BIN=$CARGO_TARGET_DIR/debug/faascache

cd server/agent/python
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
