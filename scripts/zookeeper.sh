#!/usr/bin/env bash
# A ZooKeeper server for the tests and the demo (ZooKeeper 3.9.5 from Maven Central, see
# scripts/zookeeper/pom.xml).
#
#   scripts/zookeeper.sh classpath        resolves the server's classpath once into
#                                         target/zookeeper/classpath.txt (quiet, idempotent)
#   scripts/zookeeper.sh start DIR PORT   runs a standalone server on 127.0.0.1:PORT with its data
#                                         and config in DIR, in the foreground (exec: the caller's
#                                         pid is the server's; SIGTERM stops it)
#
# Environment: ZK_TICK_MS (default 200: sessions of 0.4 s to 4 s can be negotiated), ZK_LOG_LEVEL
# (default warn).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cp_file="$root/target/zookeeper/classpath.txt"
pom="$root/scripts/zookeeper/pom.xml"

resolve_classpath() {
  if [[ -s $cp_file && $cp_file -nt $pom ]]; then
    local missing=0 jar
    IFS=: read -ra jars <"$cp_file" || true
    for jar in "${jars[@]}"; do [[ -f $jar ]] || missing=1; done
    ((missing)) || return 0
  fi
  mkdir -p "$(dirname "$cp_file")"
  local log
  if ! log=$(mvn -B -ntp -q -Dstyle.color=never -f "$pom" dependency:build-classpath \
      -Dmdep.outputFile="$cp_file.tmp" 2>&1); then
    echo "$log" >&2
    echo "zookeeper.sh: resolving the ZooKeeper classpath failed" >&2
    exit 1
  fi
  mv "$cp_file.tmp" "$cp_file"
}

case "${1:-}" in
  classpath)
    resolve_classpath
    ;;
  start)
    [[ $# -eq 3 ]] || { echo "usage: $0 start DIR PORT" >&2; exit 2; }
    dir=$2 port=$3
    resolve_classpath
    mkdir -p "$dir/data"
    cfg="$dir/zoo.cfg"
    cat >"$cfg" <<CFG
tickTime=${ZK_TICK_MS:-200}
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok
CFG
    exec java -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
      -Dzookeeper.jmx.log4j.disable=true -Dorg.slf4j.simpleLogger.defaultLogLevel="${ZK_LOG_LEVEL:-warn}" \
      -cp "$(cat "$cp_file")" org.apache.zookeeper.server.ZooKeeperServerMain "$cfg"
    ;;
  *)
    echo "usage: $0 classpath | start DIR PORT" >&2
    exit 2
    ;;
esac
