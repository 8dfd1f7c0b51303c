#!/usr/bin/env bash
# Peer servers for the FaaSCache benchmark harness (Redis and memcached on loopback).
#
#   scripts/peers.sh install            apt-get the peers if missing (non-interactive)
#   scripts/peers.sh start [redis|memcached|all]
#   scripts/peers.sh stop  [redis|memcached|all]
#   scripts/peers.sh status
#   scripts/peers.sh versions
#
# "start" installs first when a binary is missing. Settings (environment):
#   PEERS_DIR=/tmp/faascache-peers   pid files, logs, redis working dir
#   REDIS_PORT=6379  MEMCACHED_PORT=11211  HOST=127.0.0.1
#   MEMCACHED_THREADS=1              memcached worker threads (-t); 1 = one server core, like Redis
#   MEMCACHED_MEM_MB=1024            memcached memory limit (-m)
#   REDIS_MAXMEMORY=0                0 = unlimited
#   REDIS_IO_THREADS=1               Redis io-threads (1 = the single command thread does I/O)
#   REDIS_CORE=  MEMCACHED_CORE=     if set, pin the server with `taskset -c CORE`
#
# "Best documented settings" used (recorded by the harness from the command lines):
#   Redis: persistence off (save "", appendonly no), protected-mode yes on loopback, no client
#     timeout, tcp-backlog 511, TCP_NODELAY is always on in Redis, latency monitor off, daemonized.
#   memcached: -U 0 (no UDP), -c 4096 connections, -t threads, -m memory, -B ascii (text protocol
#     used by the harness), no large-page preallocation (not available in the VM).
set -euo pipefail

PEERS_DIR=${PEERS_DIR:-/tmp/faascache-peers}
HOST=${HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
MEMCACHED_PORT=${MEMCACHED_PORT:-11211}
MEMCACHED_THREADS=${MEMCACHED_THREADS:-1}
MEMCACHED_MEM_MB=${MEMCACHED_MEM_MB:-1024}
REDIS_MAXMEMORY=${REDIS_MAXMEMORY:-0}
REDIS_IO_THREADS=${REDIS_IO_THREADS:-1}
REDIS_CORE=${REDIS_CORE:-}
MEMCACHED_CORE=${MEMCACHED_CORE:-}

log() { echo "peers.sh: $*" >&2; }

need_install() {
  command -v redis-server >/dev/null 2>&1 || return 0
  command -v redis-cli >/dev/null 2>&1 || return 0
  command -v redis-benchmark >/dev/null 2>&1 || return 0
  command -v memcached >/dev/null 2>&1 || return 0
  # libmemcached-tools: Debian names the binaries memcstat/memcslap ... (older: memstat/memslap)
  command -v memcstat >/dev/null 2>&1 || command -v memstat >/dev/null 2>&1 || return 0
  return 1
}

install() {
  if ! need_install; then log "peers already installed"; return 0; fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  log "installing redis-server memcached redis-tools libmemcached-tools with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # --no-install-recommends: no systemd units we do not use; policy-rc.d keeps Debian from
  # auto-starting the packaged services (we start our own instances with our own flags).
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ] && [ -z "$sudo" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created=1
  fi
  $sudo apt-get install -y -qq --no-install-recommends \
    redis-server redis-tools memcached libmemcached-tools >/dev/null
  if [ "$created" = 1 ]; then rm -f "$policy"; fi
}

pinned() { # pinned CORE cmd...
  local core=$1; shift
  if [ -n "$core" ]; then taskset -c "$core" "$@"; else "$@"; fi
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_port() { # wait_port PORT
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  log "port $1 did not open"; return 1
}

start_redis() {
  local pid="$PEERS_DIR/redis.pid"
  if alive "$pid"; then log "redis already running (pid $(cat "$pid"))"; return 0; fi
  mkdir -p "$PEERS_DIR/redis"
  pinned "$REDIS_CORE" redis-server \
    --bind "$HOST" --port "$REDIS_PORT" --protected-mode yes \
    --save "" --appendonly no \
    --daemonize yes --pidfile "$pid" --dir "$PEERS_DIR/redis" \
    --logfile "$PEERS_DIR/redis.log" --loglevel warning \
    --timeout 0 --tcp-backlog 511 --databases 1 \
    --maxmemory "$REDIS_MAXMEMORY" --io-threads "$REDIS_IO_THREADS" \
    --latency-monitor-threshold 0
  for _ in $(seq 1 100); do [ -s "$pid" ] && break; sleep 0.05; done
  wait_port "$REDIS_PORT"
  log "redis started on $HOST:$REDIS_PORT pid $(cat "$pid")${REDIS_CORE:+ pinned to core $REDIS_CORE}"
}

start_memcached() {
  local pid="$PEERS_DIR/memcached.pid"
  if alive "$pid"; then log "memcached already running (pid $(cat "$pid"))"; return 0; fi
  mkdir -p "$PEERS_DIR"
  local user_args=()
  if [ "$(id -u)" = 0 ]; then user_args=(-u root); fi
  pinned "$MEMCACHED_CORE" memcached -d -P "$pid" "${user_args[@]}" \
    -l "$HOST" -p "$MEMCACHED_PORT" -U 0 -t "$MEMCACHED_THREADS" \
    -m "$MEMCACHED_MEM_MB" -c 4096 -B ascii >>"$PEERS_DIR/memcached.log" 2>&1
  for _ in $(seq 1 100); do [ -s "$pid" ] && break; sleep 0.05; done
  wait_port "$MEMCACHED_PORT"
  log "memcached started on $HOST:$MEMCACHED_PORT pid $(cat "$pid") threads $MEMCACHED_THREADS${MEMCACHED_CORE:+ pinned to core $MEMCACHED_CORE}"
}

stop_one() { # stop_one NAME
  local pid="$PEERS_DIR/$1.pid"
  if alive "$pid"; then
    local p; p=$(cat "$pid")
    kill "$p"
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    log "$1 stopped (pid $p)"
  else
    log "$1 not running"
  fi
  rm -f "$pid"
}

status() {
  local rc=0
  for n in redis memcached; do
    local pid="$PEERS_DIR/$n.pid"
    if alive "$pid"; then
      local p; p=$(cat "$pid")
      echo "$n: running pid $p cmd: $(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null)"
    else
      echo "$n: stopped"; rc=3
    fi
  done
  return $rc
}

versions() {
  command -v redis-server >/dev/null && redis-server --version || echo "redis-server: not installed"
  command -v memcached >/dev/null && memcached -V || echo "memcached: not installed"
  command -v redis-benchmark >/dev/null && echo "redis-benchmark: $(redis-benchmark --version 2>/dev/null || echo present)"
  for t in memcslap memslap memaslap memcaslap memtier_benchmark; do
    command -v $t >/dev/null && echo "$t: $(command -v $t)"
  done
  return 0
}

cmd=${1:-status}
which=${2:-all}
case "$cmd" in
  install) install; versions ;;
  start)
    if need_install; then install; fi
    case "$which" in
      redis) start_redis ;; memcached) start_memcached ;;
      all) start_redis; start_memcached ;;
      *) log "unknown peer $which"; exit 2 ;;
    esac
    versions ;;
  stop)
    case "$which" in
      redis|memcached) stop_one "$which" ;;
      all) stop_one redis; stop_one memcached ;;
      *) log "unknown peer $which"; exit 2 ;;
    esac ;;
  status) status ;;
  versions) versions ;;
  -h|--help|help) sed -n '2,24p' "$0" ;;
  *) log "usage: $0 install|start|stop|status|versions [redis|memcached|all]"; exit 2 ;;
esac
