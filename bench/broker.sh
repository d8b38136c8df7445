#!/usr/bin/env bash
# make bench-broker: the same ActiveMQ broker (6.x, tcp, 1 KiB persistent messages) on ActiveMQ's
# own KahaDBPersistenceAdapter and on kahadb-rs, interleaved in one run:
#   send1    1 producer, synchronous sends            (SEND_MESSAGES)
#   send8    8 producers, synchronous sends, one queue (SEND_MESSAGES)
#   consume  one consumer draining CONSUME_MESSAGES
#   restart  RESTART_MESSAGES pending: restart after a clean stop, after SIGKILL, and with the
#            index deleted; resident memory with them pending
# Medians of RUNS (default 5) for the small cases and LARGE_RUNS (default 3) for restart.
# Writes bench/results/broker.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-5}
LARGE_RUNS=${LARGE_RUNS:-3}
SEND_MESSAGES=${SEND_MESSAGES:-10000}
CONSUME_MESSAGES=${CONSUME_MESSAGES:-100000}
RESTART_MESSAGES=${RESTART_MESSAGES:-1000000}
SCRATCH=${BENCH_DIR:-$ROOT/target/bench-broker-scratch}
RAW=$ROOT/target/bench-broker-raw.jsonl
mkdir -p "$SCRATCH" bench/results
: >"$RAW"

echo "bench-broker: building"
cargo build --release >/dev/null
(cd java && mvn -B -ntp -q test-compile -Dkahadb.native.dir="$ROOT/target/release" \
   && mvn -B -ntp -q dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$ROOT/target/bench-classpath.txt")
CP="$ROOT/java/target/classes:$ROOT/java/target/test-classes:$(cat "$ROOT/target/bench-classpath.txt")"
JAVA=(java -Xmx512m -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$CP" dev.kahadb.bench.BrokerBench)
settle() { sync; if [[ -w /proc/sys/vm/drop_caches ]]; then echo 1 >/proc/sys/vm/drop_caches; fi; }

for run in $(seq 1 "$RUNS"); do
  echo "bench-broker: run $run of $RUNS"
  for case in send1 send8 consume; do
    n=$SEND_MESSAGES; [[ $case == consume ]] && n=$CONSUME_MESSAGES
    for store in kahadb kahadb-rs; do
      settle
      "${JAVA[@]}" driver --store $store --case $case --messages "$n" --dir "$SCRATCH/$store" >>"$RAW"
    done
  done
done
for run in $(seq 1 "$LARGE_RUNS"); do
  echo "bench-broker: restart run $run of $LARGE_RUNS"
  for store in kahadb kahadb-rs; do
    settle
    "${JAVA[@]}" driver --store $store --case restart --messages "$RESTART_MESSAGES" --dir "$SCRATCH/$store" >>"$RAW"
  done
done

python3 bench/report_broker.py "$RAW" bench/results/broker \
  "make bench-broker (RUNS=$RUNS LARGE_RUNS=$LARGE_RUNS SEND_MESSAGES=$SEND_MESSAGES CONSUME_MESSAGES=$CONSUME_MESSAGES RESTART_MESSAGES=$RESTART_MESSAGES)"
rm -rf "$SCRATCH"
