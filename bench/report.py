#!/usr/bin/env python3
"""Turns the JSON lines `bench/run.sh` collects into the markdown section appended to RESULTS.md.

    report.py RESULTS.jsonl --command CMD --duration SECS --elapsed SECS --fd-limit N [--note TEXT]
    report.py --criterion < cargo-bench-output      (prints one JSON line per criterion benchmark)

Added latency = the percentile through a proxy minus the same percentile reached directly at the same
load; ratios compare Tollgate with the baseline proxy and with LiteLLM. Standard library only.
"""
import argparse
import datetime
import json
import os
import platform
import re
import sys

TG_OFF, TG_ON = "tollgate (features off)", "tollgate (all on)"
ORDER = ["direct", "baseline", TG_OFF, TG_ON, "litellm"]


def criterion():
    # Lines like "policy/local_acquire_settle  time:   [1.2 µs 1.3 µs 1.4 µs]"
    name = None
    unit = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
    for line in sys.stdin:
        m = re.match(r"^(\S.*?)\s+time:\s+\[(.*)\]", line)
        if not m:
            if line.strip() and not line.startswith(" ") and "time:" not in line:
                name = line.strip()
            m2 = re.match(r"^\s+time:\s+\[(.*)\]", line)
            if not (m2 and name):
                continue
            bench, parts = name, m2.group(1).split()
        else:
            bench, parts = m.group(1).strip(), m.group(2).split()
        mid = float(parts[2]) * unit.get(parts[3], 1.0)
        print(json.dumps({"kind": "micro", "name": bench, "ns": mid}))


def f(x, nd=3):
    return "—" if x is None else f"{x:.{nd}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def main():
    if "--criterion" in sys.argv:
        return criterion()
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--command", default="bench/run.sh")
    ap.add_argument("--duration", default="10")
    ap.add_argument("--elapsed", default="0")
    ap.add_argument("--fd-limit", default="")
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    rows, meta = [], []
    for line in open(a.results):
        line = line.strip()
        if not line:
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        (meta if "kind" in r else rows).append(r)
    out = []
    w = out.append
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = os.cpu_count()
    w("")
    w(f"## {now} — `{a.command.strip()}`")
    w("")
    w(f"Machine: {cpu} cores ({platform.machine()}), {mem_gib()} GiB; every process (load driver, fake upstream, "
      f"proxies, Redis, ClickHouse) on it. {a.duration} s per row unless noted; run took {int(a.elapsed) // 60} min.")
    w("Paths: **direct** = the fake upstream (`fake-upstream`); **baseline** = `baseline-proxy`, a bare hyper 1 reverse "
      "proxy (keep-alive pool, TCP_NODELAY); **tollgate (features off)** = key auth against an in-memory store, no "
      "limits, usage events to in-memory SQLite without fsync; **tollgate (all on)** = key auth, keys and every quota "
      "in Redis (rpm, tpm, parallel, three budgets), usage events spooled with fsync and shipped to ClickHouse; "
      "**litellm** = `litellm[proxy]` from PyPI, 2 workers, no database, capped rates and in-flight requests (256). "
      "Latencies in ms, open loop from each request's scheduled start; *added* = via the proxy minus direct at the same load.")
    if a.note:
        w("")
        w(f"**Note:** {a.note}")
    for m in meta:
        if m["kind"] == "note":
            w("")
            w(f"Note: {m['text']}")

    def by(scen):
        return [r for r in rows if r["scenario"] == scen]

    def direct_for(scen, mode):
        for r in rows:
            if r["scenario"] == scen and r["label"] == "direct" and r["mode"] == mode:
                return r
        return None

    def sub(x, y):
        return None if x is None or y is None else x - y

    def table(scen, title, stream=False):
        rs = by(scen)
        if not rs:
            return
        w("")
        w(f"### {title}")
        w("")
        if stream:
            w("| path | load | achieved rps | TTFT p50 | TTFT p99 | last byte p50 | last byte p99 | errors | added TTFT p50 | added TTFT p99 | added last byte p50 | added last byte p99 |")
            w("|---|---|---|---|---|---|---|---|---|---|---|---|")
        else:
            w("| path | load | achieved rps | p50 | p90 | p99 | p99.9 | errors | added p50 | added p99 |")
            w("|---|---|---|---|---|---|---|---|---|---|")
        modes = []
        for r in rs:
            if r["mode"] not in modes:
                modes.append(r["mode"])
        for mode in modes:
            d = direct_for(scen, mode)
            for label in ORDER:
                for r in rs:
                    if r["label"] != label or r["mode"] != mode:
                        continue
                    if stream:
                        w(f"| {label} | {mode} | {r['achieved']:.0f} | {f(r['ttfb_p50'])} | {f(r['ttfb_p99'])} | {f(r['p50'])} | "
                          f"{f(r['p99'])} | {r['errors']} | "
                          + " | ".join(f(sub(r[k], d[k]) if d and label != 'direct' else None) for k in ("ttfb_p50", "ttfb_p99", "p50", "p99"))
                          + " |")
                    else:
                        add = [f(sub(r[k], d[k]) if d and label != "direct" else None) for k in ("p50", "p99")]
                        w(f"| {label} | {mode} | {r['achieved']:.0f} | {f(r['p50'])} | {f(r['p90'])} | {f(r['p99'])} | "
                          f"{f(r['p999'])} | {r['errors']} | {add[0]} | {add[1]} |")

    table("chat", "Non-streaming chat, small body (OpenAI in, OpenAI out)")
    srch = {r["label"]: r for r in by("search")}
    if srch:
        w("")
        w("### Highest rate under a p99 bound (non-streaming chat; rate grown by half until a step fails, then bisected; under 0.1% errors)")
        w("")
        w("| path | bound | max rps | p50 there | p99 there | ÷ baseline | ÷ LiteLLM |")
        w("|---|---|---|---|---|---|---|")
        base = srch.get("baseline", {}).get("rate")
        lite = srch.get("litellm", {}).get("rate")
        for label in ORDER:
            r = srch.get(label)
            if r:
                bound = r["mode"].replace("max rate, ", "")
                w(f"| {label} | {bound} | {r['rate']:.0f} | {f(r['p50'])} | {f(r['p99'])} | {ratio(r['rate'], base)} | {ratio(r['rate'], lite)} |")
    table("stream", "Streaming chat, 50 chunks 1 ms apart (TTFT = first body byte)", stream=True)
    table("anthropic", "Anthropic translation: OpenAI in, Anthropic Messages out (direct and baseline speak Anthropic to the fake)")
    table("anthropic-stream", "Anthropic translation, streaming (Anthropic SSE re-framed as OpenAI chunks)", stream=True)
    table("large", "100k-token prompt (about 400 KB body)")

    res = {m["label"]: m for m in meta if m["kind"] == "resources"}
    starts = {m["label"]: m for m in meta if m["kind"] == "startup"}
    streams = {m["label"]: m for m in meta if m["kind"] == "streams"}
    cpus = {m["label"]: m for m in meta if m["kind"] == "cpu"}
    cgs = {m["label"]: m for m in meta if m["kind"] == "callgrind"}
    if res or streams or cpus or cgs:
        n = next(iter(streams.values()))["n"] if streams else 0
        w("")
        w("### Resources and CPU")
        w("")
        w(f"| path | start-up to first served request | idle RSS | RSS with {n} open streams | streams opened (failed) | "
          "CPU per request at 1000 rps (/proc) | instructions per request (callgrind) |")
        w("|---|---|---|---|---|---|---|")
        for label in ORDER[1:]:
            r, s, c, g, st = res.get(label, {}), streams.get(label), cpus.get(label), cgs.get(label), starts.get(label)
            if not (r or s or c or g):
                continue
            start = f"{r['startup_ms']} ms" if "startup_ms" in r else "—"
            if st:
                start += f" (best of 3 restarts: {st['best_ms']} ms)"
            idle = f"{r['idle_kib'] / 1024:.1f} MiB" if r.get("idle_kib") else "—"
            srss = f"{s['rss_kib'] / 1024:.1f} MiB" if s else "—"
            sopen = f"{s['open']} ({s['failed']})" if s else "—"
            cms = f"{1000 * c['cpu_s'] / c['requests']:.3f} ms" if c and c["requests"] else "—"
            ins = f"{g['instructions'] / g['requests']:,.0f}" if g and g["requests"] else "—"
            w(f"| {label} | {start} | {idle} | {srss} | {sopen} | {cms} | {ins} |")
        if streams:
            w("")
            w(f"Open streams: the fake holds each stream open with a chunk a second; RSS read once all had their first byte. "
              f"File descriptor limit here: {a.fd_limit} (each stream needs two in a proxy).")
        if cpus:
            w("CPU per request: user + system time of the proxy process (and LiteLLM's workers) over a run at the rate, "
              "divided by the requests answered; Redis and ClickHouse are not included.")
            deps = next((m for m in meta if m["kind"] == "cpu_deps"), None)
            c = cpus.get(TG_ON)
            if deps and c and c["requests"]:
                w(f"Meanwhile, for {TG_ON}: Redis spent {1000 * deps['redis_s'] / c['requests']:.3f} ms and ClickHouse "
                  f"{1000 * deps['clickhouse_s'] / c['requests']:.3f} ms of CPU per request (whole processes, same run).")

    micro = [m for m in meta if m["kind"] == "micro"]
    if micro:
        w("")
        w("### Microbenchmarks (criterion, `cargo bench -p tollgate-bench --bench hot_path`)")
        w("")
        w("| benchmark | time per iteration |")
        w("|---|---|")
        for m in micro:
            ns = m["ns"]
            t = f"{ns:.0f} ns" if ns < 10_000 else f"{ns / 1000:.1f} µs"
            w(f"| {m['name']} | {t} |")

    usage = [m for m in meta if m["kind"] == "usage"]
    if usage:
        w("")
        w("### Usage pipeline (`usage-throughput`: events -> queue -> spool -> shipper -> ClickHouse)")
        w("")
        w("| events | fsync | batch | spooled | in ClickHouse | sustained | record() on the request path | dropped |")
        w("|---|---|---|---|---|---|---|---|")
        for m in usage:
            w(m["row"])

    # Targets (issue 6), all features on.
    w("")
    w("### Targets (all features on)")
    w("")
    w("| target | measured | met |")
    w("|---|---|---|")

    def row(name, val, ok):
        w(f"| {name} | {val} | {'yes' if ok else ('—' if ok is None else 'no')} |")

    on_1000 = next((r for r in by("chat") if r["label"] == TG_ON and r["mode"].startswith("1000 ")), None)
    d_1000 = direct_for("chat", "1000 rps open")
    if on_1000 and d_1000 and on_1000["p99"] is not None:
        added = on_1000["p99"] - d_1000["p99"]
        row("added p99 <= 0.5 ms at 1,000 RPS", f"{added:.3f} ms", added <= 0.5)
    on_max, base_max, lite_max = (srch.get(k, {}).get("rate") for k in (TG_ON, "baseline", "litellm"))
    if on_max and base_max:
        row("max RPS >= 80% of baseline", f"{on_max:.0f} vs {base_max:.0f} ({100 * on_max / base_max:.0f}%)", on_max >= 0.8 * base_max)
    if on_max and lite_max:
        row(">= 50× LiteLLM's max RPS", f"{on_max / lite_max:.0f}×", on_max >= 50 * lite_max)
    r = res.get(TG_ON)
    if r and r.get("idle_kib"):
        row("idle RSS <= 30 MB", f"{r['idle_kib'] / 1024:.1f} MiB", r["idle_kib"] / 1024 <= 30)
    s = streams.get(TG_ON)
    if s:
        # Projection to 10,000 streams: idle RSS plus the measured cost per open stream.
        idle = (r or {}).get("idle_kib", 0)
        per = (s["rss_kib"] - idle) / max(s["open"], 1)
        projected = (idle + per * 10000) / 1024
        ok = s["failed"] == 0 and s["rss_kib"] / 1024 <= 256 and projected <= 256
        row("10,000 open streams <= 256 MB",
            f"{s['rss_kib'] / 1024:.1f} MiB with {s['open']} open ({s['failed']} refused); "
            f"{per:.0f} KiB per stream, {projected:.0f} MiB projected at 10,000", ok)
    if r and "startup_ms" in r:
        best = min(r["startup_ms"], starts.get(TG_ON, {}).get("best_ms", r["startup_ms"]))
        row("start-up <= 100 ms", f"{best} ms", best <= 100)
    c = cpus.get(TG_ON)
    if c and c["requests"]:
        ms = 1000 * c["cpu_s"] / c["requests"]
        row("CPU < 0.1 ms per request", f"{ms:.3f} ms", ms < 0.1)
    print("\n".join(out))


def mem_gib():
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024 / 1024)
    except OSError:
        pass
    return "?"


if __name__ == "__main__":
    main()
