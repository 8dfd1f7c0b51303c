#!/usr/bin/env bash
# moto's S3 server on loopback: a second, light S3 implementation for the object-store tests.
#
#   scripts/moto.sh install   pip install 'moto[server]' if moto_server is missing (into a venv
#                             under $MOTO_DIR when the system pip refuses)
#   scripts/moto.sh start     start moto_server on 127.0.0.1:$MOTO_PORT, wait until it answers,
#                             create the test bucket; a no-op if running
#   scripts/moto.sh stop      stop it
#   scripts/moto.sh status    running? prints the endpoint
#   scripts/moto.sh env       the variables the tests need
#
# Settings (environment): MOTO_DIR=/tmp/faascache-moto  MOTO_PORT=15000
# MOTO_TEST_BUCKET=faascache-test. moto accepts any access key and secret (it checks no
# signatures), so wrong-credential tests run against Swift's s3api only.
set -euo pipefail

MOTO_DIR=${MOTO_DIR:-/tmp/faascache-moto}
MOTO_PORT=${MOTO_PORT:-15000}
BUCKET=${MOTO_TEST_BUCKET:-faascache-test}
VENV="$MOTO_DIR/venv"

log() { echo "moto.sh: $*" >&2; }

server_bin() {
  if [ -x "$VENV/bin/moto_server" ]; then echo "$VENV/bin/moto_server"; return 0; fi
  command -v moto_server 2>/dev/null
}

install() {
  if server_bin >/dev/null && "$(server_bin)" --help >/dev/null 2>&1; then
    log "moto already installed ($(server_bin))"; return 0
  fi
  log "installing moto[server] with pip"
  if python3 -m pip install -q 'moto[server]' 2>"$MOTO_DIR.pip.log" && command -v moto_server >/dev/null; then
    :
  else
    log "system pip refused or failed ($(tail -n 1 "$MOTO_DIR.pip.log" 2>/dev/null)); using a venv in $VENV"
    mkdir -p "$MOTO_DIR"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
      apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
      python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install -q 'moto[server]'
  fi
  rm -f "$MOTO_DIR.pip.log"
  server_bin >/dev/null || { log "installed, but moto_server is missing"; exit 1; }
  log "installed: $(server_bin)"
}

pidfile() { echo "$MOTO_DIR/moto.pid"; }
running() { [ -f "$(pidfile)" ] && kill -0 "$(cat "$(pidfile)")" 2>/dev/null; }
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true; }

start() {
  server_bin >/dev/null || install
  mkdir -p "$MOTO_DIR"
  exec 9>"$MOTO_DIR/.lock"
  flock 9  # concurrent starts (test binaries) wait for the first
  if ! running; then
    nohup "$(server_bin)" -H 127.0.0.1 -p "$MOTO_PORT" >"$MOTO_DIR/moto.log" 2>&1 </dev/null 9>&- &
    echo $! >"$(pidfile)"
  fi
  local code=""
  for _ in $(seq 1 150); do
    running || { log "moto_server exited; its log:"; tail -n 20 "$MOTO_DIR/moto.log" >&2; exit 1; }
    code=$(http_code "http://127.0.0.1:$MOTO_PORT/")
    [ "$code" = 200 ] && break
    sleep 0.2
  done
  [ "$code" = 200 ] || { log "moto_server did not answer on port $MOTO_PORT in 30 s; see $MOTO_DIR/moto.log"; exit 1; }
  # moto checks no signature: an unsigned PUT creates the bucket (200, or 409 if it exists).
  code=$(http_code -X PUT "http://127.0.0.1:$MOTO_PORT/$BUCKET")
  case $code in 200|409) ;; *) log "cannot create bucket $BUCKET (HTTP $code)"; exit 1 ;; esac
  status
}

stop() {
  if running; then
    local pid; pid=$(cat "$(pidfile)")
    kill "$pid"
    # Wait for it to exit (and free its port): a `start` may follow.
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    log "stopped"
  else
    log "not running"
  fi
  rm -f "$(pidfile)"
}

status() {
  if running; then echo "running: moto S3 on http://127.0.0.1:$MOTO_PORT (pid $(cat "$(pidfile)"), dir $MOTO_DIR)";
  else echo "not running"; return 1; fi
}

env_vars() {
  cat <<ENV
export FAASCACHE_MOTO_ENDPOINT=http://127.0.0.1:$MOTO_PORT
export FAASCACHE_MOTO_BUCKET=$BUCKET
ENV
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) env_vars ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
