#!/usr/bin/env python3
"""Turns the raw JSON lines of bench/journal.sh into bench/results/journal.{md,json} (medians)."""
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
            runs[(r["impl"], r["case"])].append(r)


def med(impl, case, key="ops_per_sec"):
    vals = [r[key] for r in runs.get((impl, case), []) if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def n(impl, case):
    return len(runs.get((impl, case), []))


# (case label, ours impl, reference impl, case, target, better)
rows = [
    ("(a) 1 writer, sync: kahadb-rs (Rust) vs fio fdatasync limit", "kahadb-rust", "fio", "sync1", 0.9),
    ("(a) 1 writer, sync: kahadb-rs (Rust) vs ActiveMQ Journal", "kahadb-rust", "activemq", "sync1", 1.1),
    ("(a) 1 writer, sync: kahadb-rs (JNI) vs ActiveMQ Journal", "kahadb", "activemq", "sync1", 1.1),
    ("(b) 8 writers, sync: kahadb-rs (Rust) vs ActiveMQ Journal", "kahadb-rust", "activemq", "sync8", 2.0),
    ("(b) 8 writers, sync: kahadb-rs (JNI) vs ActiveMQ Journal", "kahadb", "activemq", "sync8", 2.0),
    ("(c) 1 writer, no sync: kahadb-rs (Rust) vs ActiveMQ Journal", "kahadb-rust", "activemq", "async1", 1.5),
    ("(c) 1 writer, no sync: kahadb-rs (JNI) vs ActiveMQ Journal", "kahadb", "activemq", "async1", 1.5),
]
results = []
for label, ours, ref, case, target in rows:
    o, r = med(ours, case), med(ref, case)
    if o is None or r is None:
        continue
    results.append({
        "case": label,
        "ours": round(o, 1),
        "reference": round(r, 1),
        "unit": "records/s",
        "ratio": round(o / r, 3),
        "target": target,
        "better": "higher",
    })
# The preallocation strategy, measured (docs/FORMAT.md): sparse files against the default zeros.
for case, label in (("sync1", "1 writer, sync"), ("sync8", "8 writers, sync"), ("async1", "1 writer, no sync")):
    o, r = med("kahadb-rust", case), med("kahadb-rust-sparse", case)
    if o is None or r is None:
        continue
    results.append({
        "case": f"preallocation, {label}: zeros (default) vs sparse files",
        "ours": round(o, 1),
        "reference": round(r, 1),
        "unit": "records/s",
        "ratio": round(o / r, 3),
        "target": None,
        "better": "higher",
    })
# Latency of a synchronous append (lower is better), Rust and JNI against ActiveMQ.
for impl, name in (("kahadb-rust", "Rust"), ("kahadb", "JNI")):
    for case, label in (("sync1", "1 writer"), ("sync8", "8 writers")):
        for key in ("p50_us", "p99_us"):
            o, r = med(impl, case, key), med("activemq", case, key)
            if o is None or r is None or not r:
                continue
            results.append({
                "case": f"sync append latency {key[:3]}, {label}: kahadb-rs ({name}) vs ActiveMQ Journal",
                "ours": round(o, 1),
                "reference": round(r, 1),
                "unit": "us",
                "ratio": round(o / r, 3),
                "target": None,
                "better": "lower",
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
    "# Journal append benchmark",
    "",
    f"Command: `{command}`  ",
    f"Machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}, file system {fs}.  ",
    "Records: 1 KiB. Every figure is the median of the runs; all implementations ran in the same",
    "invocation, interleaved, on the same file system. ActiveMQ = `org.apache.activemq.store.kahadb.disk.journal.Journal`",
    "from activemq-kahadb-store 6.3.1 with checksums on (KahaDB's default); fio = 1 job of 4 KiB writes,",
    "each followed by fdatasync, overwriting a laid-out file.",
    "",
    "| case | kahadb-rs | reference | unit | ratio | target | met |",
    "|---|---:|---:|---|---:|---:|---|",
]
for r in results:
    t = r["target"]
    met = "" if t is None else ("yes" if r["ratio"] >= t else "**no**")
    lines.append(f"| {r['case']} | {r['ours']} | {r['reference']} | {r['unit']} | {r['ratio']} | {'' if t is None else '≥ ' + str(t)} | {met} |")
lines += ["", "Raw medians per implementation (records/s, p50 µs, p99 µs, runs):", ""]
lines += ["| implementation | case | records/s | p50 µs | p99 µs | runs |", "|---|---|---:|---:|---:|---:|"]
for (impl, case) in sorted(runs):
    cells = [med(impl, case, k) for k in ("ops_per_sec", "p50_us", "p99_us")]
    cells = ["" if c is None else f"{c:.0f}" for c in cells]
    lines.append(f"| {impl} | {case} | {cells[0]} | {cells[1]} | {cells[2]} | {n(impl, case)} |")
notes_path = out + ".notes.md"
if os.path.exists(notes_path):
    lines += ["", open(notes_path).read().strip()]
with open(out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
