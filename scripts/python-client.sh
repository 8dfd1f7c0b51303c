#!/usr/bin/env bash
# The Python client (client/python): build and install it the way a user does
# (pip builds the wheel from client/python, maturin through pip's build isolation; the wheel is
# left in $CARGO_TARGET_DIR/wheels for scripts/faas-functions.sh), then run its pytest suite
# against a local cluster (`faascache cluster up`, started by the suite's conftest.py).
#
#   scripts/python-client.sh [PYTEST ARGS...]
#
# Settings (environment): PY_CLIENT_VENV (default target/python-client-venv), PYTHON (default
# python3, at least 3.9), CARGO_TARGET_DIR (default target/: maturin's build shares it).
# Under CI=true a skipped test fails the run (conftest.py). `.ci/run` runs this script.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
VENV=${PY_CLIENT_VENV:-$ROOT/target/python-client-venv}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

log() { echo "python-client.sh: $*" >&2; }

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || {
  log "$PYTHON is $("$PYTHON" --version 2>&1); the client needs CPython >= 3.9"; exit 1; }

. "$ROOT/scripts/lib/venv.sh"
make_venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q maturin pytest

log "building the faascache binary (the tests' cluster)"
cargo build -q -p faascache
export FAASCACHE_BIN=$CARGO_TARGET_DIR/debug/faascache

log "pip wheel client/python (into $CARGO_TARGET_DIR/wheels, for the FaaS functions' suite too), pip install it"
t0=$(date +%s)
mkdir -p "$CARGO_TARGET_DIR/wheels"
rm -f "$CARGO_TARGET_DIR"/wheels/faascache-*.whl
"$VENV/bin/python" -m pip wheel -q --no-deps -w "$CARGO_TARGET_DIR/wheels" client/python
"$VENV/bin/python" -m pip install -q --force-reinstall --no-deps "$CARGO_TARGET_DIR"/wheels/faascache-*.whl
log "built and installed in $(( $(date +%s) - t0 )) s"

# From the repository root the `faascache` that imports is the installed one (no such folder here).
"$VENV/bin/python" -c 'import faascache, sys; print("python-client.sh: faascache", faascache.__version__, "on Python", sys.version.split()[0], file=sys.stderr)'
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q -rs client/python/tests "$@"
