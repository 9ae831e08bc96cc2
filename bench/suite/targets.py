"""The targets of issue 8, and issue 13's speed targets for PostgreSQL, checked against one run's figures.
A row is there only when the figures it needs are in the run."""

# Issue 8's idle latency target for pool mode is 1.5 ms; issue 13 gives PostgreSQL its own, 2 ms.
POOL_LATENCY_MS = {"postgres": 2.0}


def pool_latency_limit(adapter):
    return POOL_LATENCY_MS.get(adapter, 1.5)


def _yes(ok):
    return "yes" if ok else "**no**"


def targets(res):
    s = res["sections"]
    rows = []
    if "spawn" in s:
        for w in s["spawn"]:
            runs = w["runs"]
            measured = ", ".join(f"{r['adapter']} {100 * r['of_floor']:.1f}%" for r in runs)
            rows.append([f"spawn mode >= 95% of the direct-spawn floor ({w['label']}, floor "
                         f"{w['floor']['per_s']:,.0f}/s)", measured, _yes(all(r["of_floor"] >= 0.95 for r in runs))])
        allr = [r for w in s["spawn"] for r in w["runs"]]
        worst = max(allr, key=lambda r: r["host_cpu_ms_per_task"])
        rows.append(["spawn mode: host CPU < 0.3 ms a task",
                     "at most %.3f ms (%s, %s)" % (worst["host_cpu_ms_per_task"], worst["adapter"], worst["worker"]),
                     _yes(worst["host_cpu_ms_per_task"] < 0.3)])
    best = {}
    if "pool" in s:
        for r in s["pool"]:
            if r["per_s"] > best.get(r["adapter"], {}).get("per_s", 0):
                best[r["adapter"]] = r
        for kind, label in (("redis", "Redis"), ("amqp", "RabbitMQ")):
            if kind in best:
                b = best[kind]
                rows.append([f"pool mode >= 5,000 tasks/s with results stored, {label}",
                             f"{b['per_s']:,.0f}/s (concurrency {b['concurrency']})", _yes(b["per_s"] >= 5000)])
        pg16 = [r for r in s["pool"] if r["adapter"] == "postgres" and r["concurrency"] == 16]
        if pg16:
            b = max(pg16, key=lambda r: r["per_s"])
            rows.append(["PostgreSQL pool mode, concurrency 16: >= 5,000 tasks/s with results stored (issue 13)",
                         f"{b['per_s']:,.0f}/s", _yes(b["per_s"] >= 5000)])
        if "postgres" in best and "redis" in best:
            pg, rd = best["postgres"], best["redis"]
            ratio = pg["per_s"] / rd["per_s"]
            rows.append(["PostgreSQL pool mode (best) >= 0.8x Redis's (best) in the same run (issue 13)",
                         f"{ratio:.2f}x ({pg['per_s']:,.0f}/s at concurrency {pg['concurrency']} vs "
                         f"{rd['per_s']:,.0f}/s at concurrency {rd['concurrency']})", _yes(ratio >= 0.8)])
    if "peers" in s and "redis" in best:
        huey = [p for p in s["peers"] if p["peer"].startswith("Huey")]
        if huey:
            h = max(huey, key=lambda p: p["per_s"])
            ratio = best["redis"]["per_s"] / h["per_s"]
            rows.append(["pool mode > 2x Huey's rate (same Redis)",
                         f"{ratio:.2f}x ({best['redis']['per_s']:,.0f} vs {h['per_s']:,.0f}/s, {h['peer']})",
                         _yes(ratio > 2)])
    if "peers" in s and "postgres" in best:
        pgp = [p for p in s["peers"] if p["broker"] == "postgres"]
        if pgp:
            h = max(pgp, key=lambda p: p["per_s"])
            ours = best["postgres"]
            ratio = ours["per_s"] / h["per_s"]
            rows.append(["PostgreSQL pool mode (best) >= 2x the PostgreSQL peer's rate (same database; issue 13)",
                         f"{ratio:.2f}x ({ours['per_s']:,.0f} vs {h['per_s']:,.0f}/s, {h['peer']})",
                         _yes(ratio >= 2)])
    if "latency" in s:
        lat = s["latency"]
        pool = [r for r in lat["runs"] if r["mode"] == "pool"]
        for label, runs in (("", [r for r in pool if r["adapter"] != "postgres"]),
                            (", PostgreSQL (issue 13)", [r for r in pool if r["adapter"] == "postgres"])):
            if runs:
                limit = pool_latency_limit(runs[0]["adapter"])
                rows.append([f"idle latency, pool mode{label}: median <= {limit:g} ms",
                             ", ".join(f"{r['adapter']} {r['median_ms']:.2f} ms" for r in runs),
                             _yes(all(r["median_ms"] <= limit for r in runs))])
        for mode, label in (("spawn", "trivial binary"), ("spawn-py", "venv Python")):
            runs = [r for r in lat["runs"] if r["mode"] == mode]
            fl = lat["floor"].get(mode)
            if runs and fl:
                limit = fl["median_ms"] + 1
                rows.append([f"idle latency, spawn mode ({label}): median <= floor + 1 ms = {limit:.2f} ms",
                             ", ".join(f"{r['adapter']} {r['median_ms']:.2f} ms" for r in runs),
                             _yes(all(r["median_ms"] <= limit for r in runs))])
    if "memory" in s:
        m = s["memory"]
        rows.append(["host RSS idle <= 20 MB", f"{m['idle_kb'] / 1024:.1f} MB", _yes(m["idle_kb"] <= 20 * 1024)])
        rows.append([f"host RSS while draining {m['drain_tasks']:,} <= 60 MB", f"{m['draining_max_kb'] / 1024:.1f} MB",
                     _yes(m["draining_max_kb"] <= 60 * 1024)])
        a, z = m["soak_kb"]["25%"], m["soak_kb"]["100%"]
        rows.append([f"host RSS flat over a {m['soak_tasks']:,}-task soak (25% -> 100% within 2 MB)",
                     f"{a / 1024:.1f} -> {z / 1024:.1f} MB (max {m['soak_max_kb'] / 1024:.1f} MB)",
                     _yes(z - a <= 2048)])
    return rows
