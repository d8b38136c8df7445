#!/usr/bin/env bash
# make bench-replication: journal-level replication over loopback, every node (master, slaves)
# in a directory of its own, all in one run:
#   writes  8 writer threads of synchronous 1 KiB store writes for WRITE_SECONDS (default 5):
#           unreplicated, minimumReplicas 1 with one slave, minimumReplicas 2 with two slaves
#   sync    initial sync of a SYNC_GIB (default 1) GiB journal to an empty slave directory with
#           1 and with 4 transfer sessions, alternating 1/4/1/4...
# Medians of RUNS (default 5). Writes bench/results/replication.{md,json}.
# (WRITE_SECONDS rather than SECONDS: bash's SECONDS counts up on its own.)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-5}
WRITE_SECONDS=${WRITE_SECONDS:-5}
SYNC_GIB=${SYNC_GIB:-1}
SCRATCH=${BENCH_DIR:-$ROOT/target/bench-replication-scratch}
RAW=$ROOT/target/bench-replication-raw.jsonl
mkdir -p "$SCRATCH" bench/results
: >"$RAW"

echo "bench-replication: building"
# Built once and run directly: the whole run measures one binary, whatever happens to the tree.
BIN=$(cargo bench --bench replication_bench --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "replication_bench" and m.get("executable"):
        print(m["executable"])')
[[ -x $BIN ]] || { echo "bench-replication: the benchmark did not build" >&2; exit 1; }
BENCH=("$BIN" --bench)
# Each measurement starts with nothing dirty in the page cache (the previous one's writeback
# would otherwise land on the next one's clock). Caches are not dropped: the initial syncs read
# the master's files from the page cache, every round alike.
settle() { sync; }

for run in $(seq 1 "$RUNS"); do
  for mode in none min1 min2; do
    echo "bench-replication: writes, run $run of $RUNS: $mode (${WRITE_SECONDS} s)"
    settle
    "${BENCH[@]}" --case writes --mode $mode --seconds "$WRITE_SECONDS" --dir "$SCRATCH/writes" >>"$RAW"
  done
done

# One process builds the master's journal once and runs every round of the initial sync against
# it (the master's files stay in the page cache for all of them); it reports its own progress.
echo "bench-replication: initial sync of $SYNC_GIB GiB, $RUNS rounds of 1 and 4 sessions"
settle
"${BENCH[@]}" --case sync --gib "$SYNC_GIB" --runs "$RUNS" --dir "$SCRATCH/sync" >>"$RAW"

python3 bench/report_replication.py "$RAW" bench/results/replication \
  "make bench-replication (RUNS=$RUNS WRITE_SECONDS=$WRITE_SECONDS SYNC_GIB=$SYNC_GIB)"
rm -rf "$SCRATCH"
