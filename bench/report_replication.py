#!/usr/bin/env python3
"""Turns the raw JSON lines of bench/replication.sh into bench/results/replication.{md,json} (medians)."""
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
            key = r["mode"] if r["bench"] == "writes" else f"sync{r['sessions']}"
            runs[(r["bench"], key)].append(r)


def med(bench, key, field):
    vals = [r[field] for r in runs.get((bench, key), []) if r.get(field) is not None]
    return statistics.median(vals) if vals else None


def n(bench, key):
    return len(runs.get((bench, key), []))


def row(label, ours, ref, unit, target, better, strict=False):
    """One result; `strict`: the target is `ratio > target` rather than `ratio >= target`."""
    if ours is None or ref is None or not ref:
        return None
    return {
        "case": label,
        "ours": round(ours, 1),
        "reference": round(ref, 1),
        "unit": unit,
        "ratio": round(ours / ref, 3),
        "target": target,
        "better": better,
        "_strict": strict,
    }


results = [
    row("sync writes, 8 writers, 1 KiB: minimumReplicas 1 (1 slave) vs unreplicated",
        med("writes", "min1", "msgs_per_sec"), med("writes", "none", "msgs_per_sec"), "msgs/s", 0.8, "higher"),
    row("sync writes, 8 writers, 1 KiB: minimumReplicas 2 (2 slaves) vs unreplicated (informational)",
        med("writes", "min2", "msgs_per_sec"), med("writes", "none", "msgs_per_sec"), "msgs/s", 0.7, "higher"),
    row("initial sync, 1 empty slave: 4 sessions vs 1 session",
        med("sync", "sync4", "mb_per_sec"), med("sync", "sync1", "mb_per_sec"), "MB/s", 1.0, "higher", strict=True),
]
# Latency of a synchronous write (lower is better), replicated against unreplicated.
for mode, label in (("min1", "minimumReplicas 1"), ("min2", "minimumReplicas 2")):
    for key in ("p50_us", "p99_us"):
        results.append(row(f"sync write latency {key[:3]}, 8 writers: {label} vs unreplicated",
                           med("writes", mode, key), med("writes", "none", key), "us", None, "lower"))
results = [r for r in results if r is not None]
strict = {r["case"]: r.pop("_strict") for r in results}

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
sync_bytes = next((r["bytes"] for r in runs.get(("sync", "sync1"), [])), None)
sync_size = "" if sync_bytes is None else f" ({sync_bytes / 2**30:.2f} GiB of sealed files)"
lines = [
    "# Replication benchmark",
    "",
    f"Command: `{command}`  ",
    f"Machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}, file system {fs}.  ",
    "Every node (master, slaves) in one process, each with its own directory on the same file system",
    "and its own runtime, over loopback. Every figure is the median of the runs, all cases in the same",
    "invocation, interleaved.",
    "",
    "- **Writes**: 8 threads of `Store::add_message` (1 KiB body, `sync`), after a 1 s warm-up with the",
    "  slaves live; with replication on, a write returns once it is on the master's disk and on",
    "  `minimumReplicas` slaves' disks. The reference is the same store unreplicated. The",
    "  minimumReplicas 2 target is informational.",
    f"- **Initial sync**: a master journal of 32 MiB files{sync_size}, built once, copied to an empty",
    "  slave directory by `initial_sync` with 1 and with 4 transfer sessions of 1 MiB chunks, rounds",
    "  alternating 1/4/1/4; the slave directory is deleted (and everything synced) before each round.",
    "  MB = 10^6 bytes. The page cache cannot be dropped here: every round reads the master's files",
    "  from the page cache, alike.",
    "",
    "| case | kahadb-rs | reference | unit | ratio | target | met |",
    "|---|---:|---:|---|---:|---:|---|",
]
for r in results:
    t = r["target"]
    if t is None:
        shown, met = "", ""
    elif strict[r["case"]]:
        shown, met = f"> {t}", "yes" if r["ratio"] > t else "**no**"
    elif r["better"] == "lower":
        shown, met = f"≤ {t}", "yes" if r["ratio"] <= t else "**no**"
    else:
        shown, met = f"≥ {t}", "yes" if r["ratio"] >= t else "**no**"
    lines.append(f"| {r['case']} | {r['ours']} | {r['reference']} | {r['unit']} | {r['ratio']} | {shown} | {met} |")
lines += ["", "Raw medians per case:", ""]
lines += ["| writes | msgs/s | p50 µs | p99 µs | records per master batch | runs |", "|---|---:|---:|---:|---:|---:|"]
for mode, label in (("none", "unreplicated"), ("min1", "minimumReplicas 1, 1 slave"), ("min2", "minimumReplicas 2, 2 slaves")):
    if not n("writes", mode):
        continue
    cells = [med("writes", mode, k) for k in ("msgs_per_sec", "p50_us", "p99_us")]
    per_batch = med("writes", mode, "per_batch")
    lines.append(f"| {label} | {cells[0]:.0f} | {cells[1]:.0f} | {cells[2]:.0f} | {per_batch:.2f} | {n('writes', mode)} |")
lines += ["", "| initial sync | MB/s | seconds | runs |", "|---|---:|---:|---:|"]
for sessions in (1, 4):
    key = f"sync{sessions}"
    if not n("sync", key):
        continue
    lines.append(f"| {sessions} session{'s' if sessions > 1 else ''} | {med('sync', key, 'mb_per_sec'):.0f} | "
                 f"{med('sync', key, 'seconds'):.2f} | {n('sync', key)} |")
notes_path = out + ".notes.md"
if os.path.exists(notes_path):
    lines += ["", open(notes_path).read().strip()]
with open(out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
