"""Section 6: the in-process Python queues users pick instead, on the same brokers in the same run.
Each drains pre-enqueued no-op jobs whose results are stored (Huey: its Redis result hash; Celery: the
Redis result backend; PgQueuer: its per-job status log in PostgreSQL), timed like workerhost: steady rate
from 10% to 100% of the results.

The PostgreSQL peer is PgQueuer (issue 13 names PgQueuer or procrastinate; both install cleanly from PyPI
here and both keep each job's outcome in the database). PgQueuer because it is the faster of the two, so
workerhost's ">= 2x" is measured against the stronger PostgreSQL queue: in trials on this machine's
PostgreSQL (5,000 no-op jobs, async concurrency 16, cargo builds running beside them) PgQueuer 1.6.0 drained
about 1,000-2,400 jobs/s and procrastinate 3.10.0 about 100-140 (a fetch and a finish function call per
job, one job at a time). What each keeps: procrastinate the job's row, status 'succeeded'; PgQueuer a row
per job in its log table, status 'successful' (the queue row is deleted); neither stores a return value
(bench/peers/pgqueuer_app.py). PgQueuer runs as one process with async concurrency 16
(`max_concurrent_tasks` 16, `batch_size` 8, the largest batch it allows with 16): in the same trials two
processes were slower (concurrency 16 each: about 1,100-1,250 jobs/s; 8 each: about 600)."""
import asyncio
import importlib
import os
import subprocess
import sys
import time
import urllib.parse

import psycopg
import redis

from brokers import AMQP_URL, PG_URL, REDIS_URL, _loopback, amqp_connect
from common import ADAPTERS, OUT, RUN_ID, Meter, ROOT, drain, listener_pid, log

PEERS = os.path.join(ROOT, "bench", "peers")
VENV_BIN = os.path.dirname(sys.executable)


def _env(extra):
    env = dict(os.environ, PYTHONPATH=PEERS, BENCH_REDIS_URL=REDIS_URL, **extra)
    return env


def _killpg(p, sig):
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:  # the whole group has exited already
        pass


def _run_consumer(argv, env, counter, n, log_path, broker_pid):
    meter = Meter(broker_pid)
    with open(log_path, "wb") as logf:
        started = time.monotonic()
        p = subprocess.Popen(argv, env=env, cwd=PEERS, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)

        def done():
            # A consumer that died (it cannot start here, a wrong option) fails the run at once instead
            # of after the drain's timeout.
            if p.poll() is not None:
                name = " ".join(os.path.basename(a) for a in argv[:2])
                raise RuntimeError(f"{name} exited ({p.returncode}) with {counter()} of {n} done: see {log_path}")
            return counter()
        try:
            t = drain(done, n, started, 600, interval=0.02)
            m = meter.read()
        finally:
            _killpg(p, 15)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _killpg(p, 9)
                p.wait(timeout=10)
    t.pop("end", None)
    return {**t, "machine_cpu_ms_per_task": round(m["machine_ms"] / n, 4),
            "broker_cpu_ms_per_task": round(m["broker_ms"] / n, 4)}


def huey_run(n, workers, kind):
    name = f"bench{RUN_ID}{kind}"
    env = _env({"BENCH_HUEY_NAME": name})
    os.environ.update(BENCH_HUEY_NAME=name, BENCH_REDIS_URL=REDIS_URL)
    sys.path.insert(0, PEERS)
    app = importlib.reload(importlib.import_module("huey_app"))
    r = redis.Redis.from_url(REDIS_URL)
    try:
        for _ in range(n):
            app.noop()
        counter = lambda: app.huey.storage.result_store_size()  # noqa: E731
        argv = [os.path.join(VENV_BIN, "huey_consumer"), "huey_app.huey", "-w", str(workers), "-k", kind, "-n"]
        res = _run_consumer(argv, env, counter, n, os.path.join(OUT, f"peer-huey-{kind}.log"),
                            listener_pid(6379))
    finally:
        app.huey.storage.flush_all()
        r.close()
    return {"peer": f"Huey ({workers} {kind}{'es' if kind == 'process' else 's'})", "broker": "redis", **res}


def celery_run(n, broker, concurrency):
    prefix = f"bench:{RUN_ID}:celery-{broker}:"
    queue = f"bench.{RUN_ID}.celery-{broker}"
    broker_url = REDIS_URL if broker == "redis" else AMQP_URL.replace("%2f", "%2F")
    extra = {"BENCH_PREFIX": prefix, "BENCH_QUEUE": queue, "BENCH_BROKER": broker_url}
    env = _env(extra)
    os.environ.update(extra, BENCH_REDIS_URL=REDIS_URL)
    sys.path.insert(0, PEERS)
    app = importlib.reload(importlib.import_module("celery_app"))
    r = redis.Redis.from_url(REDIS_URL)
    pattern = prefix + "celery-task-meta-*"
    try:
        with app.app.producer_or_acquire() as producer:
            for _ in range(n):
                app.noop.apply_async(producer=producer, ignore_result=False)

        def counter():
            return sum(1 for _ in r.scan_iter(match=pattern, count=10000))
        argv = [os.path.join(VENV_BIN, "celery"), "-A", "celery_app", "worker", "-c", str(concurrency),
                "-P", "prefork", "-Q", queue, "--without-gossip", "--without-mingle", "--without-heartbeat",
                "-l", "WARNING"]
        port = 6379 if broker == "redis" else 5672
        res = _run_consumer(argv, env, counter, n, os.path.join(OUT, f"peer-celery-{broker}.log"), listener_pid(port))
    finally:
        keys = list(r.scan_iter(match=prefix + "*", count=10000))
        for i in range(0, len(keys), 1000):
            r.unlink(*keys[i:i + 1000])
        if broker == "amqp":
            ch = amqp_connect().channel()
            for q in (queue,):
                ch.queue_delete(q)
            ch.exchange_delete(queue)
            ch.connection.close()
        app.app.close()
        r.close()
    return {"peer": f"Celery (prefork, {concurrency} processes)", "broker": broker, **res}


def pgqueuer_run(n, concurrency, batch):
    """PgQueuer in a schema of its own (created by PgQueuer's install, dropped afterwards, whatever
    happened) with a NOTIFY channel of its own; finished jobs counted from its log table."""
    schema = f"bench_{RUN_ID}_pgqueuer".lower()
    url = _loopback(PG_URL)
    extra = {"PGQUEUER_SCHEMA": schema, "PGQUEUER_CHANNEL": f"{schema}_ch", "BENCH_PG_URL": url}
    env = _env(extra)
    os.environ.update(extra)
    sys.path.insert(0, PEERS)
    c = psycopg.connect(url, autocommit=True)
    try:
        app = importlib.reload(importlib.import_module("pgqueuer_app"))
        asyncio.run(app.install_and_enqueue(n))
        log_table = f"{schema}.pgqueuer_log"
        q = f"SELECT count(*) FROM {log_table} WHERE status IN ('successful', 'exception')"

        def counter():
            return c.execute(q).fetchone()[0]
        argv = [sys.executable, os.path.join(PEERS, "pgqueuer_app.py"), str(concurrency), str(batch)]
        res = _run_consumer(argv, env, counter, n, os.path.join(OUT, "peer-pgqueuer.log"),
                            listener_pid(urllib.parse.urlparse(url).port or 5432))
        res["failed"] = c.execute(f"SELECT count(*) FROM {log_table} WHERE status = 'exception'").fetchone()[0]
    finally:
        c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        c.close()
    return {"peer": f"PgQueuer (async, concurrency {concurrency})", "broker": "postgres", **res}


def peers_section(folder, quick):
    n = 1000 if quick else 5000
    out = []
    runs = [("redis", lambda: huey_run(n, 2, "thread")), ("redis", lambda: huey_run(n, 2, "process")),
            ("redis", lambda: celery_run(n, "redis", 2)), ("amqp", lambda: celery_run(n, "amqp", 2)),
            ("postgres", lambda: pgqueuer_run(n, 16, 8))]
    for broker, run in runs:
        if broker not in ADAPTERS:  # --adapters leaves it out
            continue
        try:
            r = run()
        except Exception as e:  # a peer that cannot run here is reported, not fatal
            log(f"  peer failed: {e!r}")
            continue
        log(f"  {r['peer']} on {r['broker']}: {r['per_s']:.0f} jobs/s")
        out.append(r)
    return out
