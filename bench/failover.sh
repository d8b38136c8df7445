#!/usr/bin/env bash
# make bench-failover: a JMS producer on a failover: URL (synchronous persistent 1 KiB sends)
# while the master broker is killed with SIGKILL, round after round, timed from the kill to the
# new master's broker up and to the producer's first acknowledged send:
#   kahadb-rs  three HA launchers (minimumReplicas 1) and ZooKeeper, session timeout SESSION_MS
#              (default 4000, the most the test ZooKeeper server allows); the killed node is
#              restarted and rejoins as a slave before the next round
#   kahadb     the reference: ActiveMQ Classic's shared-storage master/slave, two broker JVMs
#              on one stock KahaDB directory, the waiting one retrying the lock every
#              LOCK_INTERVAL_MS (default 1000; ActiveMQ's default is 10000)
# ROUNDS kills of each (default 10, or the first argument), in BLOCKS (default 2) alternating
# blocks kahadb-rs, kahadb, kahadb-rs, kahadb... Each block ends by draining the queue and
# checking that every acknowledged message arrived. Writes bench/results/failover.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-${1:-10}}
BLOCKS=${BLOCKS:-2}
SESSION_MS=${SESSION_MS:-4000}
LOCK_INTERVAL_MS=${LOCK_INTERVAL_MS:-1000}
SCRATCH=${BENCH_DIR:-$ROOT/target/bench-failover-scratch}
RAW=$ROOT/target/bench-failover-raw.jsonl
(( ROUNDS >= 1 && BLOCKS >= 1 )) || { echo "bench-failover: ROUNDS and BLOCKS must be at least 1" >&2; exit 2; }
(( BLOCKS <= ROUNDS )) || BLOCKS=$ROUNDS
mkdir -p "$SCRATCH" bench/results
: >"$RAW"

echo "bench-failover: building"
cargo build --release >/dev/null
bash scripts/zookeeper.sh classpath
(cd java && mvn -B -ntp -q test-compile -Dkahadb.native.dir="$ROOT/target/release" \
   && mvn -B -ntp -q dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$ROOT/target/bench-classpath.txt")
# The nodes' JVMs start again every round for minutes: they run from a copy of the classes (with
# the native library packed in them), whatever happens to java/target meanwhile.
CLASSES=$ROOT/target/bench-failover-classes
rm -rf "$CLASSES" && mkdir -p "$CLASSES"
cp -r java/target/classes "$CLASSES/main"
cp -r java/target/test-classes "$CLASSES/test"
CP="$CLASSES/main:$CLASSES/test:$(cat "$ROOT/target/bench-classpath.txt")"
JAVA=(java -Xmx512m -Dorg.slf4j.simpleLogger.defaultLogLevel=warn
      -Dorg.slf4j.simpleLogger.log.org.apache.activemq.transport.failover=error
      -Dkahadb.root="$ROOT" -cp "$CP" dev.kahadb.bench.FailoverBench)

for block in $(seq 1 "$BLOCKS"); do
  # ROUNDS spread over the blocks, the first ones taking the remainder.
  n=$(( ROUNDS / BLOCKS + (block <= ROUNDS % BLOCKS ? 1 : 0) ))
  echo "bench-failover: block $block of $BLOCKS: $n rounds of each"
  "${JAVA[@]}" driver --case kahadb-rs --block "$block" --rounds "$n" --session-ms "$SESSION_MS" \
    --dir "$SCRATCH/kahadb-rs" >>"$RAW"
  "${JAVA[@]}" driver --case kahadb --block "$block" --rounds "$n" --lock-interval-ms "$LOCK_INTERVAL_MS" \
    --dir "$SCRATCH/kahadb" >>"$RAW"
done

python3 bench/report_failover.py "$RAW" bench/results/failover \
  "make bench-failover (ROUNDS=$ROUNDS BLOCKS=$BLOCKS SESSION_MS=$SESSION_MS LOCK_INTERVAL_MS=$LOCK_INTERVAL_MS)"
rm -rf "$SCRATCH" "$CLASSES"
