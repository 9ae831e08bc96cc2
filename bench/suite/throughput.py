"""Sections 1 (spawn floor vs spawn mode), 2 (pool mode) and 5 (scale-out): drain pre-enqueued tasks."""
import json
import os
import subprocess

from brokers import BACKENDS
from common import ADAPTERS, FLOOR, ECHO, WORKERS, Host, Meter, drain, log, loadavg
from configs import PY_SPAWN_ARGV, host_config


def drain_run(kind, folder, name, worker, concurrency, n, hosts=1, timeout=600):
    """Enqueues `n` tasks, starts `hosts` hosts, waits until every result is stored, stops them.
    Returns tasks/s and CPU per task: the hosts' own (their stop lines), their workers', the broker's,
    and the whole machine's (which includes everything else running meanwhile)."""
    b = BACKENDS[kind](f"{name}", os.path.join(folder, name))
    os.makedirs(os.path.join(folder, name), exist_ok=True)
    cfg = host_config(folder, name, b, worker, concurrency, results=True)
    try:
        b.prepare(cfg)
        b.enqueue(n, "noop")
        meter = Meter(b.broker_pid())
        hs = [Host(cfg, f"{i}").start() for i in range(hosts)]
        try:
            t = drain(b.counter(), n, hs[0].started, timeout)
            workers_ms = sum(h.workers_cpu_ms() for h in hs)
            m = meter.read()
        finally:
            cpus = [h.stop() for h in hs]
        failed = b.failed()
    finally:
        for h in locals().get("hs", []):
            h.kill()
        b.cleanup()
    host_ms = sum(c or 0 for c in cpus)
    r = {
        "adapter": kind, "worker": worker, "concurrency": concurrency, "hosts": hosts, **t,
        "failed": failed,
        "host_cpu_ms": host_ms, "host_cpu_ms_per_task": round(host_ms / n, 4),
        "workers_cpu_ms_per_task": round(workers_ms / n, 4),
        "broker_cpu_ms_per_task": round(m["broker_ms"] / n, 4),
        "machine_cpu_ms_per_task": round(m["machine_ms"] / n, 4),
        "other_load_pct": other_load(m, host_ms, workers_ms, t["wall_s"]),
    }
    r.pop("end", None)
    return r


def other_load(m, host_ms, workers_ms, wall_s):
    """The share of the machine (all cores) busy with something else than the host, its workers, the broker
    and this harness while the run lasted: other people's builds and tests on a shared machine."""
    other = m["machine_ms"] - host_ms - workers_ms - m["broker_ms"] - m["bench_ms"]
    return round(max(0.0, 100 * other / (wall_s * 1000 * (os.cpu_count() or 1))), 1)


def floor(argv, parallel, n, cwd=None):
    cmd = [FLOOR, "throughput", str(parallel), str(n)]
    if cwd:
        cmd += ["--cwd", cwd]
    out = subprocess.run(cmd + ["--", *argv], capture_output=True, text=True, check=True, timeout=900).stdout
    r = json.loads(out)
    r["cpu_ms_per_task"] = round(r["cpu_ms"] / n, 4)
    return r


def spawn_section(folder, quick):
    """The same worker started by a tight loop (the floor) and by workerhost on each task manager, at the
    same parallelism."""
    parallel = 8
    plan = [
        ("echo", "trivial binary (rust-echo-worker)", [ECHO], None, 1000 if quick else 6000),
        ("py", "venv Python JSON worker", PY_SPAWN_ARGV, WORKERS, 120 if quick else 1200),
    ]
    out = []
    for worker, label, argv, cwd, n in plan:
        log(f"  spawn floor: {label}, {n} tasks, {parallel} at a time (load {loadavg()[0]:.2f})")
        # Each host run sits between two floor runs and is compared with their mean: the machine is
        # shared, and its speed drifts over minutes.
        floors = [floor(argv, parallel, n, cwd)]
        runs = []
        for kind in [k for k in ADAPTERS if k in ("sqlite", "redis", "amqp", "postgres")]:
            r = drain_run(kind, folder, f"spawn-{worker}-{kind}", worker, parallel, n)
            floors.append(floor(argv, parallel, n, cwd))
            pair = (floors[-2]["per_s"] + floors[-1]["per_s"]) / 2
            r["floor_per_s"] = round(pair, 1)
            r["of_floor"] = round(r["per_s"] / pair, 4)
            r["overhead_ms_per_task"] = round(1000 / r["per_s"] - 1000 / pair, 4)
            log(f"  {kind:6} spawn {worker}: {r['per_s']:.0f} tasks/s = {100 * r['of_floor']:.1f}% of the floor "
                f"({pair:.0f}/s), host CPU {r['host_cpu_ms_per_task']:.3f} ms/task")
            runs.append(r)
        per_s = sum(f["per_s"] for f in floors) / len(floors)
        cpu = sum(f["cpu_ms_per_task"] for f in floors) / len(floors)
        log(f"  floor {label}: " + " / ".join(f"{f['per_s']:.0f}" for f in floors) + " tasks/s")
        out.append({"worker": worker, "label": label, "parallel": parallel, "tasks": n,
                    "floor": {"per_s": round(per_s, 1), "runs": floors, "cpu_ms_per_task": round(cpu, 4)},
                    "runs": runs})
    return out


def pool_section(folder, quick):
    """The no-op Python SDK worker in pool mode (pool_size = concurrency), results stored. The embedded
    queue too: issue 8's targets name Redis and RabbitMQ, but it is what a user starts on."""
    n = 3000 if quick else 20000
    out = []
    for kind in [k for k in ADAPTERS if k in ("sqlite", "redis", "amqp", "postgres")]:
        for c in (2, 4, 8, 16):
            r = drain_run(kind, folder, f"pool-{kind}-{c}", "pool", c, n)
            log(f"  {kind:6} pool c={c:<2}: {r['per_s']:.0f} tasks/s, host CPU {r['host_cpu_ms_per_task']:.3f} ms/task, "
                f"machine {r['machine_cpu_ms_per_task']:.3f} ms/task")
            out.append(r)
    return out


def scaleout_section(folder, quick):
    """One host, then two hosts (the same config each: pool mode, concurrency 8) on one broker."""
    n = 4000 if quick else 30000
    out = []
    for kind in [k for k in ADAPTERS if k in ("redis", "amqp", "postgres")]:
        for hosts in (1, 2):
            r = drain_run(kind, folder, f"scale-{kind}-{hosts}", "pool", 8, n, hosts=hosts)
            log(f"  {kind:6} {hosts} host(s): {r['per_s']:.0f} tasks/s")
            out.append(r)
    return out
