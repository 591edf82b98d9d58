#!/usr/bin/env python3
"""Medians of loadtest/compare.sh results, roomcast vs Bun, as a Markdown table.
With two more arguments (labels A B), any two labelled sets instead (loadtest/ab.sh: old new)."""
import glob, json, os, random, statistics, sys

out = sys.argv[1]
pair = tuple(sys.argv[2:4]) if len(sys.argv) >= 4 else None
runs = {}
for p in glob.glob(os.path.join(out, "*.json")):
    name = os.path.basename(p)[:-5]
    sc, label, _ = name.rsplit("-", 2)
    runs.setdefault((sc, label), []).append(json.load(open(p)))

METRICS = {
    "connect": [("connect_rate_per_s", "connections/s", True), ("server_cpu_us_per_connection", "server CPU µs/conn", False),
                ("rss_per_connection_bytes", "RSS B/conn", False), ("handshake_p99_ms", "handshake p99 ms", False)],
    "massconnect": [("all_connected_secs", "s until all have their connect frame", False),
                    ("server_cpu_us_per_connection", "server CPU µs/conn", False),
                    ("handshake_p99_ms", "handshake p99 ms", False), ("connect_failed", "failed", False)],
    "fanout": [("delivered_per_s", "delivered msg/s", True), ("latency_p99_ms", "p99 ms (burst)", False),
               ("server_cpu_us_per_frame", "server CPU µs/frame", False), ("lost", "lost", False)],
    "broadcast": [("delivered_per_s", "delivered msg/s", True), ("server_cpu_us_per_frame", "server CPU µs/frame", False), ("lost", "lost", False)],
    "unicast": [("api_req_per_s", "send_to_client req/s", True), ("latency_p99_ms", "p99 ms", False), ("lost", "lost", False)],
    "users": [("delivered_per_s", "delivered msg/s", True), ("api_req_per_s", "req/s", True),
              ("server_cpu_us_per_frame", "server CPU µs/frame", False), ("latency_p99_ms", "p99 ms", False), ("lost", "lost", False)],
    "joinstorm": [("delivered_per_s", "notices/s", True), ("storm_secs", "seconds to all notices", False), ("lost", "lost", False)],
    "paced": [("latency_p50_ms", "p50 ms", False), ("latency_p99_ms", "p99 ms", False), ("lost", "lost", False)],
    "churn": [("lost", "lost", False), ("notices_missing", "notices missing", False), ("notices_duplicated", "notices duplicated", False),
              ("churn_sessions", "churn sessions", True), ("latency_p99_ms", "p99 ms", False)],
    "scale": [("delivered_per_s", "delivered msg/s", True), ("server_cpu_us_per_frame", "server CPU µs/frame", False)],
}
heads = (f"{pair[0]} (median)", f"{pair[1]} (median)", f"{pair[1]} / {pair[0]}") if pair else ("Bun (median)", "roomcast (median)", "roomcast / Bun")
print(f"| scenario | metric | {heads[0]} | {heads[1]} | {heads[2]} | runs |")
# (for "scale" the two columns are roomcast --shards 1 and roomcast with the default 2 shards)
print("| --- | --- | --- | --- | --- | --- |")
for sc, metrics in METRICS.items():
    a_label, b_label = pair or (("roomcast1", "roomcast") if sc == "scale" else ("bun", "roomcast"))
    a, b = runs.get((sc, a_label), []), runs.get((sc, b_label), [])
    if not a and not b:
        continue
    for key, title, _higher_better in metrics:
        va = [r[key] for r in a if key in r]
        vb = [r[key] for r in b if key in r]
        ma = statistics.median(va) if va else None
        mb = statistics.median(vb) if vb else None
        ratio = f"{mb / ma:.2f}x" if ma and mb is not None and ma != 0 else "-"
        fmt = lambda v: "-" if v is None else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}")
        name = f"{sc} ({a_label} vs {b_label})" if sc == "scale" else sc
        print(f"| {name} | {title} | {fmt(ma)} | {fmt(mb)} | {ratio} | {len(va)}/{len(vb)} |")

# Round by round (the same round number ran back to back, on the same machine state): the
# median of the per-round ratios and a 95% bootstrap interval for it, where there are enough.
PAIRED = {"connect": "server_cpu_us_per_connection", "massconnect": "server_cpu_us_per_connection",
          "fanout": "server_cpu_us_per_frame", "broadcast": "server_cpu_us_per_frame"}
lines = []
for sc, key in PAIRED.items():
    a_label, b_label = pair or ("bun", "roomcast")
    by_round = lambda label: {os.path.basename(p)[:-5].rsplit("-", 1)[1]: json.load(open(p)).get(key)
                              for p in glob.glob(os.path.join(out, f"{sc}-{label}-*.json"))}
    a, b = by_round(a_label), by_round(b_label)
    ratios = [b[r] / a[r] for r in a if a[r] and b.get(r) is not None]
    if len(ratios) < 5:
        continue
    rng = random.Random(1)
    boot = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
    lines.append(f"{sc}: {key} {b_label} / {a_label}, median of {len(ratios)} per-round ratios "
                 f"{statistics.median(ratios):.2f}x (95% interval {boot[50]:.2f}-{boot[1949]:.2f})")
if lines:
    print()
    print("\n".join(lines))
