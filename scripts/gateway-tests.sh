#!/usr/bin/env bash
# The gateway's real-client suite (server/gateway/tests/clients): boto3, the AWS CLI,
# python-swiftclient and the `swift` CLI, an unmodified boto3+Pillow function and hostile HTTP,
# against `faascache gateway` and against OpenStack Swift's own s3api and native API (the
# reference): each comparing test records normalized outcomes per target and asserts they are
# equal (conftest.py lists the normalizations; the records land in target/gateway-records/).
#
#   scripts/gateway-tests.sh [PYTEST ARGS...]
#
# Starts Swift (scripts/swift.sh start), a local cluster (`faascache cluster up`, Swift's
# credentials ST_AUTH/ST_USER/ST_KEY in its environment) and `faascache gateway --listen
# 127.0.0.1:GATEWAY_PORT --dir D` with the same environment, runs pytest with GATEWAY_URL,
# SWIFT_S3_URL, SWIFT_AUTH_URL, FAASCACHE_DIR and FAASCACHE_BIN, and stops the cluster and the
# gateway on exit (Swift is left running, as the cargo tests leave it).
#
# Settings (environment): GATEWAY_VENV (default target/gateway-venv), PYTHON (default python3,
# >= 3.9), FAASCACHE_BIN (default: `cargo build -q -p faascache`, target/debug/faascache, the
# build CI already has), GATEWAY_PORT (default 18090), GATEWAY_CLUSTER_ARGS (default
# "--servers 3 --memory 512MiB --write-back-limit 256MiB --poll block"). Under CI=true a skipped
# test fails the run (conftest.py). Without GATEWAY_URL, `pytest server/gateway/tests/clients`
# runs against Swift alone (reference records only).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
VENV=${GATEWAY_VENV:-$ROOT/target/gateway-venv}
PORT=${GATEWAY_PORT:-18090}
CLUSTER_ARGS=${GATEWAY_CLUSTER_ARGS:---servers 3 --memory 512MiB --write-back-limit 256MiB --poll block}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

log() { echo "gateway-tests.sh: $*" >&2; }

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || {
  log "$PYTHON is $("$PYTHON" --version 2>&1); the suite needs CPython >= 3.9"; exit 1; }

. "$ROOT/scripts/lib/venv.sh"
make_venv "$VENV"
if ! "$VENV/bin/python" -c 'import boto3, awscli, swiftclient, pytest, PIL, requests' 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q boto3 awscli python-swiftclient pytest Pillow requests
fi

if [ -z "${FAASCACHE_BIN:-}" ]; then
  log "building the faascache binary"
  cargo build -q -p faascache
  FAASCACHE_BIN=$CARGO_TARGET_DIR/debug/faascache
fi
export FAASCACHE_BIN
if ! "$FAASCACHE_BIN" gateway --help >/dev/null 2>&1; then
  log "error: $FAASCACHE_BIN has no 'gateway' subcommand yet (faascache gateway --listen ADDR --dir DIR);"
  log "       the suite needs it. Against Swift alone: $VENV/bin/python -m pytest server/gateway/tests/clients"
  exit 1
fi

scripts/swift.sh start >/dev/null
eval "$(scripts/swift.sh env)"
export ST_AUTH ST_USER ST_KEY
SWIFT_S3_URL=$FAASCACHE_SWIFT_S3_ENDPOINT
SWIFT_AUTH_URL=$ST_AUTH

WORK=$(mktemp -d "${TMPDIR:-/tmp}/faascache-gateway-tests.XXXXXX")
D=$WORK/cluster
UP_PID="" GW_PID=""
cleanup() {
  local rc=$?
  if [ -n "$GW_PID" ]; then kill "$GW_PID" 2>/dev/null || true; wait "$GW_PID" 2>/dev/null || true; fi
  if [ -n "$UP_PID" ]; then kill "$UP_PID" 2>/dev/null || true; wait "$UP_PID" 2>/dev/null || true; fi
  "$FAASCACHE_BIN" cluster down --dir "$D" >/dev/null 2>&1 || true
  if [ "$rc" != 0 ]; then
    log "failed (exit $rc); logs kept in $WORK (gateway.log, up.log, cluster/logs/)"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting a cluster in $D ($CLUSTER_ARGS)"
# shellcheck disable=SC2086
"$FAASCACHE_BIN" cluster up --dir "$D" $CLUSTER_ARGS >"$WORK/up.log" 2>&1 &
UP_PID=$!
for _ in $(seq 1 600); do
  [ -s "$D/coordinator.locator" ] && break
  kill -0 "$UP_PID" 2>/dev/null || { log "cluster up exited:"; tail -n 30 "$WORK/up.log" >&2; exit 1; }
  sleep 0.1
done
[ -s "$D/coordinator.locator" ] || { log "the cluster was not up in 60 s:"; tail -n 30 "$WORK/up.log" >&2; exit 1; }

log "starting the gateway on 127.0.0.1:$PORT"
"$FAASCACHE_BIN" gateway --listen "127.0.0.1:$PORT" --dir "$D" >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
up=""
for _ in $(seq 1 300); do
  kill -0 "$GW_PID" 2>/dev/null || { log "the gateway exited:"; tail -n 30 "$WORK/gateway.log" >&2; exit 1; }
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/" || true)
  case $code in [1-5][0-9][0-9]) up=1; break ;; esac
  sleep 0.1
done
[ -n "$up" ] || { log "the gateway did not answer on 127.0.0.1:$PORT in 30 s:"; tail -n 30 "$WORK/gateway.log" >&2; exit 1; }

export GATEWAY_URL=http://127.0.0.1:$PORT SWIFT_S3_URL SWIFT_AUTH_URL FAASCACHE_DIR=$D
export PYTHONDONTWRITEBYTECODE=1
log "pytest: gateway $GATEWAY_URL, reference Swift $SWIFT_S3_URL"
t0=$(date +%s)
set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider -q -rs server/gateway/tests/clients "$@"
rc=$?
set -e
log "pytest finished in $(( $(date +%s) - t0 )) s (exit $rc); records in target/gateway-records/"
exit $rc
