#!/usr/bin/env bash
# make bench-journal: appends of 1 KiB records, side by side in one run, on one file system:
#   kahadb-rs from Rust, kahadb-rs through JNI, ActiveMQ's own Java Journal (6.x), and fio's
#   fdatasync limit. Median of RUNS (default 5). Writes bench/results/journal.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-5}
SYNC_RECORDS=${SYNC_RECORDS:-20000}
ASYNC_RECORDS=${ASYNC_RECORDS:-400000}
SCRATCH=${BENCH_DIR:-$ROOT/target/bench-scratch}
RAW=$ROOT/target/bench-journal-raw.jsonl
mkdir -p "$SCRATCH" bench/results
: >"$RAW"

echo "bench-journal: building"
cargo build --release >/dev/null
cargo bench --bench journal_bench --no-run >/dev/null 2>&1
(cd java && mvn -B -ntp -q test-compile -Dkahadb.native.dir="$ROOT/target/release" \
   && mvn -B -ntp -q dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$ROOT/target/bench-classpath.txt")
CP="$ROOT/java/target/classes:$ROOT/java/target/test-classes:$(cat "$ROOT/target/bench-classpath.txt")"
JAVA_OPTS=(-Xms512m -Xmx512m -XX:+UseG1GC -Dorg.slf4j.simpleLogger.defaultLogLevel=warn)

records_for() { [[ $1 == async1 ]] && echo "$ASYNC_RECORDS" || echo "$SYNC_RECORDS"; }
# Each measurement starts with nothing dirty in the page cache (the previous one's writeback
# would otherwise land on the next one's clock), and with clean caches where that is allowed.
settle() { sync; if [[ -w /proc/sys/vm/drop_caches ]]; then echo 1 >/proc/sys/vm/drop_caches; fi; }

for run in $(seq 1 "$RUNS"); do
  echo "bench-journal: run $run of $RUNS"
  for case in sync1 sync8 async1; do
    n=$(records_for $case)
    for prealloc in zeros sparse; do
      settle
      cargo bench -q --bench journal_bench -- --case $case --records "$n" --prealloc $prealloc \
        --dir "$SCRATCH/rust" 2>/dev/null >>"$RAW"
    done
    for impl in kahadb activemq; do
      rm -rf "$SCRATCH/java"
      settle
      java "${JAVA_OPTS[@]}" -cp "$CP" dev.kahadb.bench.JournalBench \
        --impl $impl --case $case --records "$n" --size 1024 --dir "$SCRATCH/java" >>"$RAW"
    done
  done
  # The disk's own limit: 4 KiB writes, each followed by fdatasync, overwriting a laid-out file.
  rm -f "$SCRATCH/fio.dat"
  settle
  fio --name=fdatasync --filename="$SCRATCH/fio.dat" --size=64m --bs=4k --rw=write \
      --ioengine=sync --fdatasync=1 --overwrite=1 --numjobs=1 --time_based --runtime=5 \
      --output-format=json 2>/dev/null \
    | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; s=j["sync"]["lat_ns"].get("percentile",{}); print(json.dumps({"impl":"fio","case":"sync1","ops_per_sec":j["write"]["iops"],"p50_us":s.get("50.000000",0)/1000,"p99_us":s.get("99.000000",0)/1000}))' >>"$RAW"
  rm -f "$SCRATCH/fio.dat"
done

python3 bench/report_journal.py "$RAW" bench/results/journal "make bench-journal (RUNS=$RUNS SYNC_RECORDS=$SYNC_RECORDS ASYNC_RECORDS=$ASYNC_RECORDS)"
rm -rf "$SCRATCH"
