#!/usr/bin/env bash
# OpenStack Swift on loopback for FaaSCache's object-store tests (Debian's packages): one
# proxy with tempauth and s3api (the same store serves the Swift and S3 APIs), one account,
# container and object server on a plain directory, rings with 1 replica, memcached for tokens.
#
#   scripts/swift.sh install   apt-get the packages if missing (non-interactive)
#   scripts/swift.sh start     generate configs and rings in $SWIFT_DIR, start memcached and the
#                              four servers directly (no swift-init), wait for /healthcheck and a
#                              working login, create the test container; a no-op if running
#   scripts/swift.sh stop      stop them
#   scripts/swift.sh status    running? prints the endpoints
#   scripts/swift.sh env       the variables the tests and clients need (ST_AUTH, ST_USER, ...)
#
# Settings (environment): SWIFT_DIR=/tmp/faascache-swift  SWIFT_PORT=18080 (proxy; the storage
# servers use SWIFT_PORT-1880+{0,1,2} = 16200..16202)  SWIFT_MEMCACHED_PORT=11311
# SWIFT_TEST_CONTAINER=faascache-test. Users (tempauth; the same pairs are S3 access key /
# secret): test:tester / testing (admin of account test), test:reader / reading (no rights on
# the account's containers: for access-denied tests).
# Nothing under /etc/swift is used or changed: every server reads $SWIFT_DIR/etc (swift_dir).
set -euo pipefail

SWIFT_DIR=${SWIFT_DIR:-/tmp/faascache-swift}
SWIFT_PORT=${SWIFT_PORT:-18080}
ACCOUNT_PORT=$((SWIFT_PORT - 1880))
CONTAINER_PORT=$((SWIFT_PORT - 1879))
OBJECT_PORT=$((SWIFT_PORT - 1878))
MEMCACHED_PORT=${SWIFT_MEMCACHED_PORT:-11311}
CONTAINER=${SWIFT_TEST_CONTAINER:-faascache-test}
ETC="$SWIFT_DIR/etc"
SERVERS="account container object proxy"
PY=/usr/bin/python3

log() { echo "swift.sh: $*" >&2; }

installed() {
  [ -x /usr/bin/swift-proxy-server ] && [ -x /usr/bin/swift-object-server ] &&
    [ -x /usr/bin/swift-container-server ] && [ -x /usr/bin/swift-account-server ] &&
    command -v memcached >/dev/null 2>&1
}

install() {
  if installed; then log "swift already installed ($(dpkg-query -W -f='${Version}' swift-proxy))"; return 0; fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  log "installing swift with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends swift swift-proxy swift-object \
    swift-container swift-account python3-swiftclient memcached >/dev/null
  installed || { log "installed, but the swift servers or memcached are missing"; exit 1; }
  log "installed: swift $(dpkg-query -W -f='${Version}' swift-proxy)"
}

pidfile() { echo "$SWIFT_DIR/$1.pid"; }
alive() { [ -f "$(pidfile "$1")" ] && kill -0 "$(cat "$(pidfile "$1")")" 2>/dev/null; }
running() { for s in memcached $SERVERS; do alive "$s" || return 1; done; }

write_configs() {
  mkdir -p "$ETC" "$SWIFT_DIR/srv/d1" "$SWIFT_DIR/run"
  cat >"$ETC/swift.conf" <<CFG
[swift-hash]
swift_hash_path_suffix = faascache-test-suffix
swift_hash_path_prefix = faascache-test-prefix

[storage-policy:0]
name = Policy-0
default = yes
CFG
  local name port
  for name in account container object; do
    case $name in account) port=$ACCOUNT_PORT ;; container) port=$CONTAINER_PORT ;; object) port=$OBJECT_PORT ;; esac
    cat >"$ETC/$name-server.conf" <<CFG
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $port
workers = 0
devices = $SWIFT_DIR/srv
mount_check = false
swift_dir = $ETC
log_level = WARNING

[pipeline:main]
pipeline = $name-server

[app:$name-server]
use = egg:swift#$name
CFG
  done
  cat >"$ETC/proxy-server.conf" <<CFG
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $SWIFT_PORT
workers = 0
swift_dir = $ETC
log_level = WARNING

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl s3api tempauth copy slo dlo versioned_writes proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
user_test_reader = reading

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$MEMCACHED_PORT

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:tempurl]
use = egg:swift#tempurl
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
CFG
}

make_rings() {
  # One process with Swift's RingBuilder (~0.8 s) instead of nine swift-ring-builder calls.
  [ -f "$ETC/object.ring.gz" ] && [ -f "$ETC/account.ring.gz" ] && [ -f "$ETC/container.ring.gz" ] && return 0
  "$PY" - "$ETC" "$ACCOUNT_PORT" "$CONTAINER_PORT" "$OBJECT_PORT" <<'PY'
import sys
from swift.common.ring import RingBuilder
etc, ports = sys.argv[1], dict(zip(("account", "container", "object"), map(int, sys.argv[2:5])))
for name, port in ports.items():
    b = RingBuilder(10, 1, 1)
    b.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": port,
               "device": "d1", "weight": 100, "meta": ""})
    b.rebalance()
    b.save(f"{etc}/{name}.builder")
    b.get_ring().save(f"{etc}/{name}.ring.gz")
PY
}

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true; }

token_and_url() {
  curl -s -D - -o /dev/null --max-time 5 -H 'X-Auth-User: test:tester' -H 'X-Auth-Key: testing' \
    "http://127.0.0.1:$SWIFT_PORT/auth/v1.0" | tr -d '\r'
}

start_one() { # name command...
  local name=$1; shift
  if alive "$name"; then return 0; fi
  nohup "$@" >"$SWIFT_DIR/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$(pidfile "$name")"
}

start() {
  installed || install
  mkdir -p "$SWIFT_DIR"
  exec 9>"$SWIFT_DIR/.lock"
  flock 9  # concurrent starts (test binaries) wait for the first
  if running && [ "$(http_code "http://127.0.0.1:$SWIFT_PORT/healthcheck")" = 200 ]; then
    log "already running"; status; return 0
  fi
  write_configs
  make_rings
  # memcached first: tempauth keeps its tokens there (without it /auth/v1.0 answers 503).
  local as_root=()
  if [ "$(id -u)" = 0 ]; then as_root=(-u root); fi  # memcached refuses root without -u
  start_one memcached memcached -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 64 -t 1 "${as_root[@]}"
  for s in account container object proxy; do
    start_one "$s" /usr/bin/swift-$s-server "$ETC/$s-server.conf" -v
  done
  local ok=""
  for _ in $(seq 1 150); do
    for s in memcached $SERVERS; do
      alive "$s" || { log "$s exited; its log:"; tail -n 20 "$SWIFT_DIR/$s.log" >&2; exit 1; }
    done
    if [ "$(http_code "http://127.0.0.1:$SWIFT_PORT/healthcheck")" = 200 ] &&
      token_and_url | grep -qi '^x-auth-token:'; then ok=1; break; fi
    sleep 0.2
  done
  [ -n "$ok" ] || { log "the proxy did not answer /healthcheck and /auth/v1.0 in 30 s; see $SWIFT_DIR/*.log"; exit 1; }
  local hdrs token url code
  hdrs=$(token_and_url)
  token=$(echo "$hdrs" | awk -F': ' 'tolower($1)=="x-auth-token"{print $2}')
  url=$(echo "$hdrs" | awk -F': ' 'tolower($1)=="x-storage-url"{print $2}')
  for _ in $(seq 1 50); do
    code=$(http_code -X PUT -H "X-Auth-Token: $token" "$url/$CONTAINER")
    case $code in 201|202) break ;; esac
    sleep 0.2  # the account is auto-created by the first write; the servers may still be warming
  done
  case $code in 201|202) ;; *) log "cannot create container $CONTAINER (HTTP $code); see $SWIFT_DIR/*.log"; exit 1 ;; esac
  status
}

stop() {
  local any="" pids=()
  for s in proxy object container account memcached; do
    if alive "$s"; then pids+=("$(cat "$(pidfile "$s")")"); kill "${pids[-1]}" && any=1; fi
  done
  # Wait for them to exit (and free their ports) before saying so: a `start` may follow.
  for _ in $(seq 1 50); do
    local left=""
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left=1; done
    [ -z "$left" ] && break
    sleep 0.2
  done
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && kill -9 "$p"; done
  for s in proxy object container account memcached; do rm -f "$(pidfile "$s")"; done
  if [ -n "$any" ]; then log "stopped"; else log "not running"; fi
}

status() {
  if running; then
    echo "running: swift on http://127.0.0.1:$SWIFT_PORT (auth http://127.0.0.1:$SWIFT_PORT/auth/v1.0, S3 API on the same port), dir $SWIFT_DIR"
  else
    echo "not running"; return 1
  fi
}

env_vars() {
  cat <<ENV
export ST_AUTH=http://127.0.0.1:$SWIFT_PORT/auth/v1.0
export ST_USER=test:tester
export ST_KEY=testing
export FAASCACHE_SWIFT_S3_ENDPOINT=http://127.0.0.1:$SWIFT_PORT
export FAASCACHE_SWIFT_CONTAINER=$CONTAINER
export FAASCACHE_SWIFT_READER_USER=test:reader
export FAASCACHE_SWIFT_READER_KEY=reading
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
