#!/usr/bin/env bash
# A private ZooKeeper for FaaSCache's coordinator high availability (Debian's `zookeeper`).
#
#   scripts/zk.sh install     apt-get zookeeper if missing (non-interactive; needs java, pulled in)
#   scripts/zk.sh start       start one standalone server in $ZK_DIR on 127.0.0.1:$ZK_PORT
#   scripts/zk.sh stop        stop it
#   scripts/zk.sh status      is it running? prints the zk: address
#
# Settings (environment): ZK_DIR=/tmp/faascache-zk  ZK_PORT=2181  ZK_TICK_MS=500
# (tickTime bounds session timeouts to 2..20 ticks; the coordinator asks for 4 s).
# The tests do not use this script's server: each starts its own (on another port if its first
# choice is taken); FAASCACHE_ZK_JAR overrides the jar path they look for.
set -euo pipefail

ZK_DIR=${ZK_DIR:-/tmp/faascache-zk}
ZK_PORT=${ZK_PORT:-2181}
ZK_TICK_MS=${ZK_TICK_MS:-500}
ZK_JAR=/usr/share/java/zookeeper.jar
SLF4J_JAR=/usr/share/java/slf4j-simple.jar

log() { echo "zk.sh: $*" >&2; }

install() {
  if [ -f "$ZK_JAR" ] && command -v java >/dev/null 2>&1; then
    log "zookeeper already installed ($ZK_JAR)"; return 0
  fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  log "installing zookeeper with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # The `zookeeper` package is the jars and scripts only (no service; that is `zookeeperd`).
  $sudo apt-get install -y -qq --no-install-recommends zookeeper >/dev/null
  [ -f "$ZK_JAR" ] || { log "installed, but $ZK_JAR is missing"; exit 1; }
  log "installed: $(dpkg-query -W -f='${Package} ${Version}' zookeeper)"
}

pidfile() { echo "$ZK_DIR/zookeeper.pid"; }

running() { [ -f "$(pidfile)" ] && kill -0 "$(cat "$(pidfile)")" 2>/dev/null; }

start() {
  [ -f "$ZK_JAR" ] || install
  if running; then log "already running (pid $(cat "$(pidfile)"))"; status; return 0; fi
  mkdir -p "$ZK_DIR/data"
  cat >"$ZK_DIR/zoo.cfg" <<CFG
tickTime=$ZK_TICK_MS
initLimit=10
syncLimit=5
dataDir=$ZK_DIR/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok
CFG
  local cp="$ZK_JAR"
  [ -f "$SLF4J_JAR" ] && cp="$cp:$SLF4J_JAR"
  nohup java -Xmx256m -cp "$cp" org.apache.zookeeper.server.quorum.QuorumPeerMain \
    "$ZK_DIR/zoo.cfg" >"$ZK_DIR/zookeeper.log" 2>&1 </dev/null &
  echo $! >"$(pidfile)"
  for _ in $(seq 1 100); do
    # Ready when it answers `ruok` with `imok` (an open port alone is not enough).
    if [ "$( (exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT" && printf ruok >&3 && timeout 2 cat <&3) 2>/dev/null)" = imok ]; then
      status; return 0
    fi
    running || { log "zookeeper exited; see $ZK_DIR/zookeeper.log"; exit 1; }
    sleep 0.2
  done
  log "zookeeper did not open port $ZK_PORT in 20 s; see $ZK_DIR/zookeeper.log"; exit 1
}

stop() {
  if running; then kill "$(cat "$(pidfile)")"; log "stopped"; else log "not running"; fi
  rm -f "$(pidfile)"
}

status() {
  if running; then echo "running: zk:127.0.0.1:$ZK_PORT (pid $(cat "$(pidfile)"), dir $ZK_DIR)";
  else echo "not running"; return 1; fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
