#!/usr/bin/env bash
# The FaaS harness's Python side (issue 20): the functions' venv, the same packages in every
# sandbox (like an OpenWhisk runtime image), and the functions' pytest suite.
#
#   scripts/faas-functions.sh install        make target/faas-venv and install the pinned packages
#                                            (+ the FaaSCache Python client, if a wheel is built)
#   scripts/faas-functions.sh test [ARGS..]  install, then pytest bench/faas/tests (starts moto,
#                                            a private redis-server if one is on PATH; Swift only
#                                            if `scripts/swift.sh status` says it runs)
#   scripts/faas-functions.sh python         print the venv's interpreter (the driver's PYTHON)
#
# Settings (environment): FAAS_VENV (default $CARGO_TARGET_DIR/faas-venv), PYTHON (default
# python3, >= 3.9), CARGO_TARGET_DIR (default target/), FAASCACHE_WHEEL (the client's wheel;
# default: the newest target/wheels/faascache-*.whl, which `maturin build` writes). Without a
# wheel the `faascache` store kind is unavailable (said once, not an error). Under CI=true a
# failed install fails, and so does a skipped test (bench/faas/tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=${FAAS_VENV:-$CARGO_TARGET_DIR/faas-venv}

# Pinned: the versions the harness was written and measured with (PyPI, December 2026).
PACKAGES=(
  Pillow==13.0.0
  boto3==1.44.18
  python-swiftclient==4.11.0
  redis==8.2.0
  hiredis==3.5.0  # redis-py's C parser: 8 MB GETs ~30 % faster, a fair Redis baseline
  numpy==2.4.6
  scikit-learn==1.9.1
  pytest==9.2.0
)

log() { echo "faas-functions.sh: $*" >&2; }

install() {
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || {
    log "$PYTHON is $("$PYTHON" --version 2>&1); the functions need CPython >= 3.9"; exit 1; }
  . "$ROOT/scripts/lib/venv.sh"
  make_venv "$VENV"
  local stamp="$VENV/.faas-packages" want
  want=$(printf '%s\n' "${PACKAGES[@]}")
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "packages already installed in $VENV"
  else
    log "installing ${PACKAGES[*]}"
    local t0; t0=$(date +%s)
    if "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PACKAGES[@]}"; then
      echo "$want" >"$stamp"
      log "installed in $(( $(date +%s) - t0 )) s"
    else
      log "pip install failed"
      exit 1  # under CI=true or not: the functions cannot run without these
    fi
  fi
  install_client
}

# The FaaSCache Python client is optional: only the `faascache` store kind needs it.
install_client() {
  local wheel=${FAASCACHE_WHEEL:-}
  if [ -z "$wheel" ]; then
    wheel=$(ls -t "$CARGO_TARGET_DIR"/wheels/faascache-*.whl 2>/dev/null | head -n 1 || true)
  fi
  if [ -z "$wheel" ] || [ ! -f "$wheel" ]; then
    if "$VENV/bin/python" -c 'import faascache' 2>/dev/null; then
      log "no FaaSCache client wheel; keeping the client already in the venv"; return 0
    fi
    log "no FaaSCache client wheel (target/wheels/faascache-*.whl, or FAASCACHE_WHEEL):" \
      "the 'faascache' store kind is unavailable (build one: CARGO_TARGET_DIR=target maturin build --release -m client/python/Cargo.toml)"
    return 0
  fi
  if "$VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"; then
    log "FaaSCache client installed from $wheel"
  elif [ "${CI:-}" = true ]; then
    log "cannot install $wheel (CI=true: failing)"; exit 1
  else
    log "cannot install $wheel: the 'faascache' store kind is unavailable"
  fi
}

case "${1:-}" in
  install) install ;;
  test)
    shift
    install
    scripts/moto.sh start >&2
    eval "$(scripts/moto.sh env)"
    export FAAS_PYTHON="$VENV/bin/python"
    exec nice -n 10 "$VENV/bin/python" -m pytest -p no:cacheprovider -q -rs bench/faas/tests "$@"
    ;;
  python)
    [ -x "$VENV/bin/python" ] || { log "no venv in $VENV: run $0 install"; exit 1; }
    echo "$VENV/bin/python"
    ;;
  *) echo "usage: $0 install|test [PYTEST ARGS...]|python" >&2; exit 2 ;;
esac
