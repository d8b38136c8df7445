#!/usr/bin/env python3
"""Turns the raw JSON lines of bench/failover.sh into bench/results/failover.{md,json} (medians)."""
import json
import os
import platform
import statistics
import subprocess
import sys
from collections import defaultdict

raw, out, command = sys.argv[1], sys.argv[2], sys.argv[3]
rounds = defaultdict(list)
summaries = defaultdict(list)
with open(raw) as f:
    for line in f:
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            (summaries if r.get("summary") else rounds)[r["case"]].append(r)

OURS, REF = "kahadb-rs", "kahadb"
if not rounds[OURS]:
    sys.exit("report_failover: no kahadb-rs round in " + raw)


def values(case, field, start=None):
    """Per round: field, or field minus start (a phase between two moments)."""
    vals = []
    for r in rounds[case]:
        if r.get(field) is None or (start and r.get(start) is None):
            continue
        vals.append(r[field] - (r[start] if start else 0))
    return vals


def stats(case, field, start=None):
    v = values(case, field, start)
    if not v:
        return None
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def setting(case, name):
    return next((s[name] for s in summaries[case] if name in s), None)


def total(case, field):
    return sum(s[field] for s in summaries[case]) if summaries[case] else None


session_ms = setting(OURS, "session_timeout_ms")
lock_ms = setting(REF, "lock_acquire_sleep_interval_ms")
target_ms = session_ms + 1000
pause_ms = rounds[OURS][0]["pause_ms"]
body = rounds[OURS][0]["body_bytes"]

results = []
for label, field in (("kill → new master's broker up", "broker_up_ms"),
                     ("kill → first send acknowledged by the new master", "first_ack_ms")):
    o, r = stats(OURS, field), stats(REF, field)
    row = {
        "case": label,
        "ours": round(o["median"], 1),
        "reference": round(r["median"], 1) if r else None,
        "unit": "ms",
        "ratio": round(o["median"] / r["median"], 3) if r else None,
        "target": None,
        "better": "lower",
        "ours_min": round(o["min"], 1),
        "ours_max": round(o["max"], 1),
        "reference_min": round(r["min"], 1) if r else None,
        "reference_max": round(r["max"], 1) if r else None,
        "rounds": o["n"],
        "reference_rounds": r["n"] if r else 0,
    }
    if field == "first_ack_ms":
        row["target_ms"] = target_ms
        row["met"] = o["median"] <= target_ms
    row["session_timeout_ms"] = session_ms
    row["reference_lock_acquire_sleep_interval_ms"] = lock_ms
    results.append(row)
lost_ours, lost_ref = total(OURS, "lost"), total(REF, "lost")
results.append({
    "case": "acknowledged messages lost (drained and compared at the end of each block)",
    "ours": lost_ours,
    "reference": lost_ref,
    "unit": "messages",
    "ratio": None,
    "target": 0,
    "better": "lower",
    "ours_acknowledged": total(OURS, "acked"),
    "reference_acknowledged": total(REF, "acked"),
    "met": lost_ours == 0,
})

with open(out + ".json", "w") as f:
    json.dump(results, f, indent=2, ensure_ascii=False)
    f.write("\n")

cpu = "unknown"
try:
    with open("/proc/cpuinfo") as c:
        cpu = next(l.split(":", 1)[1].strip() for l in c if l.startswith("model name"))
except (OSError, StopIteration):
    pass
loads = [r["loadavg"] for c in (OURS, REF) for r in rounds[c] if r.get("loadavg") is not None]
blocks = max(r["block"] for r in rounds[OURS])


def fmt(v):
    return "" if v is None else f"{v:.0f}"


def fmt_ratio(v):
    return "" if v is None else f"{v:.2f}"


head, ack = results[0], results[1]
met = "**met**" if ack["met"] else "**not met**"
lines = [
    "# Failover benchmark: kahadb-rs cluster vs ActiveMQ shared-storage master/slave",
    "",
    f"Command: `{command}`  ",
    f"Machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}.  ",
    f"Load average (1 min) at the kills: {min(loads):.1f} to {max(loads):.1f}, median "
    f"{statistics.median(loads):.1f}.  " if loads else "Load average: not sampled.  ",
    f"{head['rounds']} kills of the kahadb-rs master and {head['reference_rounds']} of the reference's, in {blocks} "
    f"{'alternating blocks' if blocks > 1 else 'block'} of the same invocation; every node and broker a JVM of its own "
    "on loopback.",
    "",
    f"- **kahadb-rs**: three HA launchers (`minimumReplicas` 1) and a ZooKeeper server, ZooKeeper",
    f"  session timeout **{session_ms} ms** (the most the test server allows). Each round waits for a",
    "  master with two live slaves, kills it with SIGKILL, then restarts the killed node and waits",
    "  until it is a live slave again.",
    "- **Reference**: ActiveMQ Classic's shared-storage master/slave, two broker JVMs on one stock",
    "  KahaDB directory; the one without the directory's lock waits in ActiveMQ's `SharedFileLocker`,",
    f"  lock-acquire retry interval set to **{lock_ms} ms** (`setLockAcquireSleepInterval`; ActiveMQ's",
    "  default is 10 s). Each round kills the broker that runs and starts it again (it then waits on",
    "  the lock).",
    f"- **Client**, the same for both: one JMS producer sending numbered persistent {body}-byte",
    f"  messages synchronously, {pause_ms} ms apart, on a `failover:` URL listing every broker",
    "  (`randomize=false&initialReconnectDelay=50&maxReconnectDelay=100`).",
    "- Times run from just before the SIGKILL. *Broker up*: the new master's broker has started",
    "  (its log line, read as it is written). *First ack*: the first send acknowledged after the kill",
    "  by the new master (the send in flight at the kill, resent by the failover transport).",
    "",
    "| figure | kahadb-rs median | min | max | reference median | min | max | ratio of medians |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
]
for r in results[:2]:
    lines.append(f"| {r['case']} (ms) | {fmt(r['ours'])} | {fmt(r['ours_min'])} | {fmt(r['ours_max'])} | "
                 f"{fmt(r['reference'])} | {fmt(r['reference_min'])} | {fmt(r['reference_max'])} | "
                 f"{fmt_ratio(r['ratio'])} |")
lines += [
    "",
    f"**Target**: median kill → first acknowledged send ≤ session timeout + 1 s = {target_ms} ms: {met} "
    f"({ack['ours']:.0f} ms). The ratio to the reference is informational.",
    "",
    "Where the time goes, medians of the per-round phases (ms):",
    "",
    "| phase | kahadb-rs | reference |",
    "|---|---:|---:|",
]
phases = [
    ("kill → a new master elected (kahadb-rs: its \"became master\" line; reference: lock acquired)",
     "elected_ms", None, "elected_ms", None),
    ("elected → one live slave under it (minimumReplicas 1: no send is acknowledged before)",
     "slave_live_ms", "elected_ms", None, None),
    ("elected → broker up", "broker_up_ms", "elected_ms", "broker_up_ms", "elected_ms"),
    ("broker up → first acknowledged send (client reconnect, resend)", "first_ack_ms", "broker_up_ms",
     "first_ack_ms", "broker_up_ms"),
    ("killed node restarted → back (kahadb-rs: live slave again; reference: waiting on the lock)",
     "rejoin_ms", None, "rejoin_ms", None),
]
for label, of, os_, rf, rs in phases:
    o = stats(OURS, of, os_)
    r = stats(REF, rf, rs) if rf else None
    lines.append(f"| {label} | {fmt(o['median'] if o else None)} | {fmt(r['median'] if r else None) or 'n/a'} |")

lines += ["", "Every acknowledged message, drained at the end of each block and compared:", "",
          "| | kahadb-rs | reference |", "|---|---:|---:|"]
for label, field in (("sends acknowledged", "acked"), ("distinct messages received", "received"),
                     ("**acknowledged and lost**", "lost"), ("received twice", "duplicates"),
                     ("sends that failed (not acknowledged)", "failed_sends")):
    lines.append(f"| {label} | {total(OURS, field)} | {total(REF, field) if summaries[REF] else ''} |")
split = total(OURS, "split_brains")
lines.append(f"| moments two kahadb-rs brokers ran at once (sampled every 5 ms) | {split} | n/a |")

lines += ["", "Every round (ms from the kill; load average at the kill):", "",
          "| store | block | round | killed → new master | elected | broker up | first ack | back | load |",
          "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
for case in (OURS, REF):
    for r in rounds[case]:
        stale = " (a)" if r.get("stale_ack") else ""
        lines.append(f"| {case} | {r['block']} | {r['round']} | {r['killed']} → {r['new_master']} | "
                     f"{r['elected_ms']:.0f} | {r['broker_up_ms']:.0f} | {r['first_ack_ms']:.0f}{stale} | "
                     f"{r['rejoin_ms']:.0f} | {r['loadavg']} |")
if any(r.get("stale_ack") for c in (OURS, REF) for r in rounds[c]):
    lines += ["", "(a) an acknowledgement from the killed master was read after the kill; the first one after the "
              "new master's election is counted."]

notes_path = out + ".notes.md"
if os.path.exists(notes_path):
    lines += ["", open(notes_path).read().strip()]
with open(out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
