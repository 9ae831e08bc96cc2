"""bench/run's harness: every section of issue 8 in one run on this machine, then the table, BENCHMARKS.md
and BENCHMARKS.svg (a --quick run writes them under bench/out/ instead)."""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import psycopg  # noqa: E402
import redis  # noqa: E402

from brokers import PG_URL, REDIS_URL, amqp_connect  # noqa: E402
import common  # noqa: E402
from common import OUT, ROOT, RUN_ID, WORKER_PY, log, loadavg, machine_busy_ms, wait_quiet  # noqa: E402
from depth import depth_section  # noqa: E402
from instructions import instructions_section  # noqa: E402
from latency_memory import latency_section, memory_section  # noqa: E402
from peers import peers_section  # noqa: E402
from report import render  # noqa: E402
from throughput import pool_section, scaleout_section, spawn_section  # noqa: E402
from timing import timing_section  # noqa: E402

SECTIONS = {
    "spawn": ("1. Spawn floor vs spawn mode", spawn_section),
    "pool": ("2. Pool mode", pool_section),
    "latency": ("3. Latency", latency_section),
    "memory": ("4. Memory", memory_section),
    "scaleout": ("5. Scale-out", scaleout_section),
    "peers": ("6. Peers", peers_section),
    "instructions": ("7. Host instructions per task (callgrind)", instructions_section),
    "depth": ("8. Queue depth with a large history", depth_section),
    "time": ("9. Time in the queue", timing_section),
}


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    r = redis.Redis.from_url(REDIS_URL)
    redis_version = r.info("server").get("redis_version")
    r.close()
    c = amqp_connect()
    rabbit = c.server_properties.get("version")
    c.close()
    try:
        with psycopg.connect(PG_URL, connect_timeout=5) as pg:
            postgres = pg.execute("SHOW server_version").fetchone()[0]
    except psycopg.Error:
        postgres = None
    dirty = " (with uncommitted changes)" if sh("git", "status", "--porcelain", "--untracked-files=no") else ""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30),
        "kernel": platform.release(), "rustc": sh("rustc", "--version"),
        "python": sh(WORKER_PY, "--version"), "redis": redis_version,
        "rabbitmq": rabbit.decode() if isinstance(rabbit, bytes) else rabbit, "postgres": postgres,
        "commit": sh("git", "rev-parse", "--short", "HEAD") + dirty,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small counts; writes the report under bench/out/")
    ap.add_argument("--only", default="", help="comma-separated sections: " + " ".join(SECTIONS))
    ap.add_argument("--adapters", default="", help="comma-separated task managers to run (sqlite redis amqp postgres)")
    ap.add_argument("--render", default="", metavar="RESULTS_JSON",
                    help="measure nothing: write BENCHMARKS.md and BENCHMARKS.svg again from a run's results.json")
    args = ap.parse_args()
    if args.render:
        with open(args.render) as f:
            res = json.load(f)
        _, md, svg = render(res)
        for name, text in (("BENCHMARKS.md", md), ("BENCHMARKS.svg", svg)):
            with open(os.path.join(ROOT, name), "w") as f:
                f.write(text)
        log(f"wrote BENCHMARKS.md and BENCHMARKS.svg from {args.render}")
        return
    only = [s for s in args.only.split(",") if s] or list(SECTIONS)
    for s in only:
        if s not in SECTIONS:
            raise SystemExit(f"unknown section {s}; known: {' '.join(SECTIONS)}")
    if args.adapters:
        common.ADAPTERS[:] = [a for a in common.ADAPTERS if a in args.adapters.split(",")]
    folder = os.path.join(OUT, f"run-{RUN_ID}")
    os.makedirs(folder, exist_ok=True)
    results = {"machine": machine(), "quick": args.quick, "sections": {}, "load": {}}
    log(f"workerhost benchmarks, run {RUN_ID}{' (quick)' if args.quick else ''}: {results['machine']['cpu']}, "
        f"{results['machine']['cores']} cores, load {loadavg()}")
    t0, busy0 = time.monotonic(), machine_busy_ms()
    for key in only:
        title, fn = SECTIONS[key]
        waited, busy = wait_quiet()
        log(f"{title} (waited {waited:.0f} s for a quiet machine: {busy:.0f}% busy)")
        before = loadavg()
        s0 = time.monotonic()
        results["sections"][key] = fn(folder, args.quick)
        results["load"][key] = {"before": before, "after": loadavg(), "seconds": round(time.monotonic() - s0, 1),
                                "waited_s": waited, "busy_at_start_pct": busy}
    elapsed = time.monotonic() - t0
    results["elapsed_s"] = round(elapsed, 1)
    results["machine_busy_pct"] = round(100 * (machine_busy_ms() - busy0) / (elapsed * 1000 * os.cpu_count()), 1)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    table, md, svg = render(results)
    print(table)
    full = not args.quick and only == list(SECTIONS) and not args.adapters
    dest = ROOT if full else folder
    with open(os.path.join(dest, "BENCHMARKS.md"), "w") as f:
        f.write(md)
    with open(os.path.join(dest, "BENCHMARKS.svg"), "w") as f:
        f.write(svg)
    log(f"wrote {os.path.relpath(os.path.join(dest, 'BENCHMARKS.md'), ROOT)} and BENCHMARKS.svg next to it; "
        f"raw figures in {os.path.relpath(folder, ROOT)}/results.json ({elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()
