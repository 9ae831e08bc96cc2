"""Sections 3 (submit -> result on an idle host) and 4 (host RSS idle, draining, over a soak)."""
import json
import os
import subprocess
import time

from brokers import BACKENDS
from common import ADAPTERS, ECHO, FLOOR, Host, WORKERS, drain, log, rss_kb, summary_ms
from configs import PY_SPAWN_ARGV, host_config


def floor_latency(argv, n, cwd=None):
    cmd = [FLOOR, "latency", str(n)]
    if cwd:
        cmd += ["--cwd", cwd]
    return json.loads(subprocess.run(cmd + ["--", *argv], capture_output=True, text=True, check=True,
                                     timeout=600).stdout)


def measure_latency(kind, folder, mode, n, gap=0.01, warmup=10):
    """`n` tasks one at a time, `gap` apart, on an otherwise idle host: the time from just before the
    submit to the moment the client sees the stored result."""
    name = f"lat-{kind}-{mode}"
    os.makedirs(os.path.join(folder, name), exist_ok=True)
    b = BACKENDS[kind](name, os.path.join(folder, name))
    worker = {"spawn": "echo", "spawn-py": "py", "pool": "pool"}[mode]
    cfg = host_config(folder, name, b, worker, 2, results=False)
    host = None
    try:
        b.prepare(cfg)
        host = Host(cfg, "0").start()
        host.wait_ready()
        time.sleep(0.5)
        c = b.latency_client()
        ms, failed = [], 0
        for i in range(warmup + n):
            time.sleep(gap)
            tid = f"lat{i}"
            t0 = c.submit(tid, "noop")
            t1, ok = c.wait(tid)
            if i >= warmup:
                ms.append((t1 - t0) * 1000)
                failed += not ok
        c.close()
        cpu = host.stop()
    finally:
        if host:
            host.kill()
        b.cleanup()
    r = {"adapter": kind, "mode": mode, **summary_ms(ms), "failed": failed, "host_cpu_ms": cpu}
    return r


def latency_section(folder, quick):
    n = 40 if quick else 200
    log(f"  latency floor: rust-echo-worker started directly, {n} one at a time")
    def floors():
        return {"spawn": floor_latency([ECHO], n), "spawn-py": floor_latency(PY_SPAWN_ARGV, max(20, n // 4), WORKERS)}

    before = floors()
    out = {"floor": before, "runs": []}
    for kind in [k for k in ADAPTERS if k in ("sqlite", "redis", "amqp", "postgres")]:
        for mode in ("spawn", "spawn-py", "pool"):
            r = measure_latency(kind, folder, mode, n if mode != "spawn-py" else max(20, n // 4))
            log(f"  {kind:6} {mode:5}: median {r['median_ms']:.2f} ms, p95 {r['p95_ms']:.2f} ms")
            out["runs"].append(r)
    # The floor is measured before and after the hosts; the mean of the two is the reference.
    after = floors()
    out["floor_runs"] = {"before": before, "after": after}
    out["floor"] = {m: {k: round((before[m][k] + after[m][k]) / 2, 3) for k in ("median_ms", "p95_ms", "min_ms")}
                    for m in before}
    return out


def memory_section(folder, quick):
    """One host on Redis, pool mode, concurrency 8: RSS idle, while draining 10,000 tasks, and through a
    soak of 100,000 (sampled as it goes), then idle again."""
    drain_n, soak_n = (2000, 20000) if quick else (10000, 100000)
    name = "mem-redis"
    os.makedirs(os.path.join(folder, name), exist_ok=True)
    b = BACKENDS["redis"](name)
    cfg = host_config(folder, name, b, "pool", 8)
    host = None
    try:
        host = Host(cfg, "0").start()
        host.wait_ready()
        time.sleep(1.0)
        idle = rss_kb(host.pid)
        samples = []

        def sample(_now, done):
            samples.append((done, rss_kb(host.pid)))

        counter = b.counter()
        b.enqueue(drain_n, "noop", prefix="d")
        drain(counter, b.enqueued, time.monotonic(), 300, interval=0.02, on_sample=sample)
        draining = max(s[1] for s in samples)
        time.sleep(1.0)
        after_drain = rss_kb(host.pid)
        samples.clear()
        base = b.enqueued
        chunk = soak_n // 10
        t0 = time.monotonic()
        for k in range(10):
            b.enqueue(chunk, "noop", prefix=f"s{k}-")
        d = drain(counter, b.enqueued, t0, 900, interval=0.05, on_sample=sample)
        soak = [(done - base, rss) for done, rss in samples if done >= base]
        time.sleep(2.0)
        after_soak = rss_kb(host.pid)
        cpu = host.stop()
        failed = b.failed()
    finally:
        if host:
            host.kill()
        b.cleanup()

    def at(frac):
        target = frac * soak_n
        return next((rss for done, rss in soak if done >= target), soak[-1][1] if soak else 0)

    r = {
        "idle_kb": idle, "draining_max_kb": draining, "drain_tasks": drain_n, "after_drain_kb": after_drain,
        "soak_tasks": soak_n, "soak_per_s": d["per_s"], "failed": failed, "host_cpu_ms": cpu,
        "soak_kb": {f"{int(f * 100)}%": at(f) for f in (0.1, 0.25, 0.5, 0.75, 1.0)},
        "soak_max_kb": max((s[1] for s in soak), default=0), "after_soak_kb": after_soak,
    }
    log(f"  RSS idle {idle / 1024:.1f} MB, draining {draining / 1024:.1f} MB, soak "
        + " ".join(f"{k} {v / 1024:.1f}" for k, v in r["soak_kb"].items()) + f" MB, after {after_soak / 1024:.1f} MB")
    return r
