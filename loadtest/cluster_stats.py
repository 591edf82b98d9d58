#!/usr/bin/env python3
"""Summarizes a cluster run from the sampler's file (cluster-sample.sh), the load tester's
phase lines (`phase hold|send|sent UNIX_NANOS` in RUN.log) and its JSON (RUN.json).

Usage: cluster_stats.py OUT NODES CLIENTS RUN...   (prints markdown, writes OUT/summary.md and
the figures as OUT/stats.json: {run: {name: value}})

Per run: what the load tester measured; during its hold phase (clients connected and bound,
nothing sent) the memory per connection (nodes' RSS, the kernel's Slab, all used memory,
each over the first sample, taken before any client connected) and Redis's idle cost (CPU,
commands/s, per node); during its sends, Redis's CPU and commands per send."""
import json
import math
import statistics as st
import sys

out, nodes, clients, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
TICK = 100.0  # clock ticks per second (/proc/PID/stat)


def samples():
    rows = []
    for line in open(f"{out}/samples.txt"):
        f = line.split()
        if len(f) not in (nodes + 8, nodes + 10):
            continue  # a line cut short when the sampler was stopped
        v = [float(x) for x in f] + [float("nan")] * (nodes + 10 - len(f))  # (older samplers: no CPU of nodes)
        rows.append({"t": v[0], "node_rss": sum(v[1:nodes + 1]), "redis_rss": v[nodes + 1],
                     "ticks": v[nodes + 2], "cmds": v[nodes + 3], "slab": v[nodes + 4],
                     "used": v[nodes + 5], "tcp_inuse": v[nodes + 6], "tcp_mem": v[nodes + 7],
                     "node_ticks": v[nodes + 8], "lt_ticks": v[nodes + 9]})
    return rows


def phases(name):
    """The load tester's phase lines, from its log (RUN.log), or the copy kept with stored
    results (RUN.txt, or phases.txt)."""
    for path in (f"{out}/{name}.log", f"{out}/{name}.txt", f"{out}/phases.txt"):
        try:
            lines = open(path).read().splitlines()
        except OSError:
            continue
        return {f[1]: int(f[2]) / 1e9 for f in (x.split() for x in lines) if len(f) == 3 and f[0] == "phase"}
    return {}


def window(rows, a, b):
    w = [r for r in rows if a <= r["t"] <= b]
    return w if len(w) >= 2 else []


def rate(w, key):
    """Per second between the first and last samples in w that have the figure (a sample
    whose Redis read failed has nan commands)."""
    w = [x for x in w if not math.isnan(x[key])]
    return (w[-1][key] - w[0][key]) / (w[-1]["t"] - w[0]["t"]) if len(w) >= 2 else float("nan")


rows = samples()
lines = [f"# {nodes} nodes + 1 Redis, {clients:,} clients", ""]
lines += ["| run | connected | connect/s | binds/s | delivered | lost | delivered msg/s | p50 / p99 ms | notices expected / missing / dup |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
for name in runs:
    try:
        r = json.load(open(f"{out}/{name}.json"))
    except (OSError, ValueError):
        lines.append(f"| {name} | (no result: see {name}.log) | | | | | | | |")
        continue
    notices = (f"{r['notices_expected']:,} / {r.get('notices_missing')} / {r.get('notices_duplicated')}"
               if "notices_expected" in r else "-")
    binds = f"{r['binds_per_s']:,.0f}" if "binds_per_s" in r else "-"
    lines.append(f"| {name} | {r.get('connected'):,} | {r.get('connect_rate_per_s', 0):,.0f} | {binds} | "
                 f"{r.get('delivered', 0):,} | {r.get('lost')} | {r.get('delivered_per_s', 0):,.0f} | "
                 f"{r.get('latency_p50_ms')} / {r.get('latency_p99_ms')} | {notices} |")
lines.append("")
figures = {}
for name in runs:
    p = phases(name)
    if not rows or "hold" not in p or "send" not in p:
        continue
    hold = window(rows, p["hold"], p["send"])
    if not hold:
        continue
    try:
        r = json.load(open(f"{out}/{name}.json"))
    except (OSError, ValueError):
        r = {}
    # The baseline: the last sample before this run's first connection (older load testers
    # print no start: the first sample of all, taken before any run).
    before = [x for x in rows if x["t"] < p.get("start", 0)]
    base = before[-1] if before else rows[0]
    conns = r.get("connected") or clients
    med = lambda k: st.median(x[k] for x in hold)  # noqa: E731
    per = lambda k: (med(k) - base[k]) * 1024 / conns  # noqa: E731
    cpu = rate(hold, "ticks") / TICK * 100
    ops = rate(hold, "cmds")
    f = figures.setdefault(name, {})
    f.update(node_rss_per_conn=per("node_rss"), slab_per_conn=per("slab"), used_per_conn=per("used"),
             redis_idle_cpu_pct=cpu, redis_idle_cmds_per_s=ops, redis_rss_mib=med("redis_rss") / 1024,
             nodes_idle_cpu_pct=rate(hold, "node_ticks") / TICK * 100,
             loadtest_idle_cpu_pct=rate(hold, "lt_ticks") / TICK * 100)
    lines.append(f"{name}, hold ({hold[-1]['t'] - hold[0]['t']:.0f} s, {med('tcp_inuse'):,.0f} TCP sockets in use): "
                 f"per connection {per('node_rss'):,.0f} B of node RSS ({per('node_rss') * clients / nodes / 1048576:,.1f} MiB per node), "
                 f"{per('slab'):,.0f} B of kernel Slab, {(med('tcp_mem') - base['tcp_mem']) * 4096 / conns:,.0f} B of TCP buffers, "
                 f"{per('used'):,.0f} B of MemTotal - MemAvailable (which leaves out reclaimable Slab; both ends of each loopback connection and the load tester count in all three); "
                 f"Redis idle: {cpu:.1f} % of a core, {ops:,.0f} commands/s ({ops / nodes:,.1f} per node), RSS {med('redis_rss') / 1024:,.1f} MiB; "
                 f"the idle nodes (heartbeat pings to every client every ping_interval): {rate(hold, 'node_ticks') / TICK * 100:.0f} % of a core, "
                 f"the load tester answering them {rate(hold, 'lt_ticks') / TICK * 100:.0f} %")
    if "sent" in p:
        send = window(rows, p["send"], p["sent"])
        calls = r.get("api_calls") or 0
        if send and calls:
            busy = (send[-1]["ticks"] - send[0]["ticks"]) / TICK / (send[-1]["t"] - send[0]["t"])
            f.update(redis_send_cpu_pct=busy * 100, redis_us_per_send=busy * (p["sent"] - p["send"]) * 1e6 / calls,
                     redis_send_cmds_per_s=rate(send, "cmds"), sends_per_s=calls / (p["sent"] - p["send"]),
                     delivered_per_s=r.get("delivered_per_s"), lost=r.get("lost"))
            lines.append(f"{name}, sends ({p['sent'] - p['send']:.0f} s, {calls:,} calls): Redis {busy * 100:.1f} % of a core, "
                         f"{busy * (p['sent'] - p['send']) * 1e6 / calls:,.1f} µs of Redis CPU per send, "
                         f"{rate(send, 'cmds'):,.0f} commands/s")
    lines.append("")
open(f"{out}/summary.md", "w").write("\n".join(lines) + "\n")
json.dump(figures, open(f"{out}/stats.json", "w"), indent=1)
print("\n".join(lines))
