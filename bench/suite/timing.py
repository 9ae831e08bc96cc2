"""Section 9 (time in the queue, issue 14): (a) 10,000 tasks all due in the same second drain at the rate
of as many tasks queued at once (pool mode, concurrency 8), on the task managers that hold a due time by
a column (sqlite, postgres); (b) a worker that fails every task with a 5 s backoff beside a healthy one:
the healthy worker's rate with and without the failing stream (retries wait in the task manager). Redis
keeps due tasks in a sorted set of envelopes, which this harness does not write by hand: not measured."""
import os
import sqlite3
import time

from brokers import BACKENDS
from common import WORKER_PY, WORKERS, Host, drain, log, write
from configs import host_config


def schedule_all(b, due_ms):
    """Turns every queued task of `b` into a scheduled one due at `due_ms` (ms since the epoch)."""
    if b.kind == "sqlite":
        db = sqlite3.connect(b.path, timeout=10, isolation_level=None)
        db.execute("UPDATE tasks SET status = 'scheduled', run_at = ? WHERE status = 'queued'", (due_ms,))
        db.close()
    elif b.kind == "postgres":
        with b._conn() as c:
            c.execute(f"UPDATE {b.schema}.tasks SET status = 'scheduled', "
                      f"run_at = to_timestamp({due_ms / 1000.0}) WHERE status = 'queued'")
    else:
        raise ValueError(b.kind)


def due_run(kind, folder, n, scheduled):
    """`n` tasks queued while the host is idle, or `n` tasks made due in the same instant (scheduled
    before the host starts, due 4 s later): the drain rate from the moment they can run."""
    name = f"due-{kind}-{'sched' if scheduled else 'now'}"
    os.makedirs(os.path.join(folder, name), exist_ok=True)
    b = BACKENDS[kind](name, os.path.join(folder, name))
    cfg = host_config(folder, name, b, "pool", 8)
    try:
        b.prepare(cfg)
        if scheduled:
            b.enqueue(n, "noop")
            due_ms = int(time.time() * 1000) + 4000
            schedule_all(b, due_ms)
        h = Host(cfg, "0").start()
        try:
            h.wait_ready()
            if scheduled:
                wait = due_ms / 1000.0 - time.time()
                if wait > 0:
                    time.sleep(wait)
                t0 = time.monotonic()
            else:
                time.sleep(1.0)
                t0 = time.monotonic()
                b.enqueue(n, "noop")
            r = drain(b.counter(), n, t0, 300)
        finally:
            h.stop()
    finally:
        b.cleanup()
    return {"adapter": kind, "scheduled": scheduled, "tasks": n, "per_s": r["per_s"]}


def mixed_config(folder, name, b, failing):
    fail = (f'  - name: failing\n    venv_python: "{WORKER_PY}"\n    project_path: "{WORKERS}"\n'
            f"    module: fail_sdk\n    function: handle\n    task_types: [fail]\n    mode: pool\n    pool_size: 4\n"
            f"    max_retries: 3\n    retry: {{ base_delay_seconds: 5, backoff_multiplier: 2.0, jitter: false }}\n"
            if failing else "")
    text = ('version: "1.0"\nhost:\n  concurrency: 8\n  shutdown_grace_seconds: 10\n  http: { listen: "off" }\n'
            + b.tm_yaml(True) + "workers:\n"
            + f'  - name: pool\n    venv_python: "{WORKER_PY}"\n    project_path: "{WORKERS}"\n'
            f"    module: noop_sdk\n    function: handle\n    task_types: [noop]\n    mode: pool\n    pool_size: 8\n"
            + fail)
    return write(os.path.join(folder, name, "workerhost_config.yaml"), text)


def healthy_done(b):
    """Counts the healthy worker's stored results only (the failing stream's are not counted)."""
    if b.kind == "sqlite":
        db = sqlite3.connect(b.path, timeout=10, isolation_level=None)
        return lambda: db.execute(
            "SELECT count(*) FROM tasks WHERE type = 'noop' AND status = 'succeeded'").fetchone()[0]
    c = b._conn()
    sql = f"SELECT count(*) FROM {b.schema}.tasks WHERE type = 'noop' AND status = 'succeeded'"
    return lambda: c.execute(sql).fetchone()[0]


def failing_run(kind, folder, n, failing):
    name = f"failing-{kind}-{'with' if failing else 'without'}"
    os.makedirs(os.path.join(folder, name), exist_ok=True)
    b = BACKENDS[kind](name, os.path.join(folder, name))
    cfg = mixed_config(folder, name, b, failing)
    try:
        b.prepare(cfg)
        if failing:
            b.enqueue(200, "fail", prefix="f")
        h = Host(cfg, "0").start()
        try:
            h.wait_ready()
            time.sleep(2.0 if failing else 0.5)  # the failing stream's first attempts are waiting by now
            base = b.enqueued
            t0 = time.monotonic()
            b.enqueue(n, "noop")
            r = drain(healthy_done(b), n, t0, 300)
        finally:
            h.stop()
    finally:
        b.cleanup()
    return {"adapter": kind, "failing_stream": failing, "tasks": n, "per_s": r["per_s"], "enqueued_before": base}


def timing_section(folder, quick):
    n = 2000 if quick else 10000
    due = []
    for kind in ("sqlite", "postgres"):
        for scheduled in (False, True):
            r = due_run(kind, folder, n, scheduled)
            log(f"  {kind:8} {n} tasks {'due in one second' if scheduled else 'queued at once'}: {r['per_s']:.0f}/s")
            due.append(r)
    failing = []
    for kind in ("sqlite", "postgres"):
        for f in (False, True):
            r = failing_run(kind, folder, n, f)
            log(f"  {kind:8} healthy worker {'with' if f else 'without'} a failing stream: {r['per_s']:.0f}/s")
            failing.append(r)
    return {"due": due, "failing": failing}
