#!/usr/bin/env python3
"""Turns the raw JSON lines of bench/broker.sh into bench/results/broker.{md,json} (medians)."""
import json
import os
import platform
import statistics
import subprocess
import sys
from collections import defaultdict

raw, out, command = sys.argv[1], sys.argv[2], sys.argv[3]
runs = defaultdict(list)
with open(raw) as f:
    for line in f:
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            runs[(r["store"], r["case"])].append(r)


def med(store, case, key):
    vals = [r[key] for r in runs.get((store, case), []) if r.get(key) is not None]
    return statistics.median(vals) if vals else None


# (label, case, key, unit, target, better)
rows = [
    ("1 producer, synchronous sends", "send1", "msgs_per_sec", "msgs/s", 1.0, "higher"),
    ("8 producers, synchronous sends", "send8", "msgs_per_sec", "msgs/s", 1.5, "higher"),
    ("1 consumer draining the queue", "consume", "msgs_per_sec", "msgs/s", 1.0, "higher"),
    ("restart after a clean stop", "restart", "restart_clean_ms", "ms", 1.0, "lower"),
    ("restart after SIGKILL", "restart", "restart_kill_ms", "ms", 0.5, "lower"),
    ("restart with the index deleted (rebuild from the journal)", "restart", "restart_rebuild_ms", "ms", 0.2, "lower"),
    ("resident memory per pending message (broker process)", "restart", "bytes_per_pending", "bytes", None, "lower"),
]
results = []
for label, case, key, unit, target, better in rows:
    o, r = med("kahadb-rs", case, key), med("kahadb", case, key)
    if o is None or r is None or not r:
        continue
    results.append({
        "case": label,
        "ours": round(o, 1),
        "reference": round(r, 1),
        "unit": unit,
        "ratio": round(o / r, 3),
        "target": target,
        "better": better,
    })
with open(out + ".json", "w") as f:
    json.dump(results, f, indent=2)
    f.write("\n")

cpu = "unknown"
try:
    with open("/proc/cpuinfo") as c:
        cpu = next(l.split(":", 1)[1].strip() for l in c if l.startswith("model name"))
except (OSError, StopIteration):
    pass
fs = subprocess.run(["df", "-T", "."], capture_output=True, text=True).stdout.splitlines()[-1].split()[1]
lines = [
    "# Broker benchmark: ActiveMQ on kahadb-rs vs ActiveMQ on its own KahaDB",
    "",
    f"Command: `{command}`  ",
    f"Machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}, file system {fs}.  ",
    "ActiveMQ Classic 6.3.1 broker in its own JVM (-Xmx1g), JMS clients over tcp on loopback, 1 KiB",
    "persistent BytesMessages on one queue. Reference: `KahaDBPersistenceAdapter` with its defaults.",
    "Every figure is the median of the runs; both stores ran interleaved in the same invocation.",
    "Ratio = kahadb-rs / KahaDB; for times and memory lower is better, so the target is a maximum.",
    "",
    "| case | kahadb-rs | KahaDB | unit | ratio | target | met |",
    "|---|---:|---:|---|---:|---:|---|",
]
for r in results:
    t = r["target"]
    if t is None:
        met, tt = "", ""
    elif r["better"] == "higher":
        met, tt = ("yes" if r["ratio"] >= t else "**no**"), f"≥ {t}"
    else:
        met, tt = ("yes" if r["ratio"] <= t else "**no**"), f"≤ {t}"
    lines.append(f"| {r['case']} | {r['ours']} | {r['reference']} | {r['unit']} | {r['ratio']} | {tt} | {met} |")
lines += ["", "Runs per store and case:", ""]
for (store, case) in sorted(runs):
    lines.append(f"- {store} {case}: {len(runs[(store, case)])}")
notes_path = out + ".notes.md"
if os.path.exists(notes_path):
    lines += ["", open(notes_path).read().strip()]
with open(out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
