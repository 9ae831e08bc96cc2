"""Section 8's depth query with a large history: 1,000,000 finished rows and 1,000 queued in sqlite and in
PostgreSQL, the depth statement timed as the host runs it (the SQL is read from the adapters' source, so
the bench measures the code, not a copy), its plan shown, and `workerhost queue --json` timed whole."""
import glob
import os
import re
import sqlite3
import statistics
import subprocess
import time

import psycopg

from brokers import PG_URL, _loopback
from common import BIN, ROOT, log


def depth_sql(adapter):
    """The `DEPTH` constant of the adapter's source (a Rust string literal without escapes)."""
    for path in glob.glob(os.path.join(ROOT, "adapters", "src", adapter, "**", "*.rs"), recursive=True) + \
            glob.glob(os.path.join(ROOT, "adapters", "src", f"{adapter}.rs")):
        with open(path) as f:
            m = re.search(r'const DEPTH: &str = "(.*?)";', f.read(), re.S)
        if m:
            return m.group(1)
    raise SystemExit(f"no DEPTH statement in adapters/src/{adapter}")


def timed(run, n=50):
    run()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        run()
        samples.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(statistics.median(samples), 3), "max_ms": round(max(samples), 3)}


def cli_ms(config, n=10):
    cmd = [BIN, "--config", config, "queue", "--json"]
    subprocess.run(cmd, check=True, capture_output=True)
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        samples.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(samples), 1)


def sqlite_run(folder, finished, queued):
    d = os.path.join(folder, "depth-sqlite")
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(d, "workerhost_config.yaml")
    with open(cfg, "w") as f:
        f.write("version: \"1.0\"\ntask_manager: { type: sqlite, path: ./q.db }\nworkers:\n"
                "  - name: w\n    command: [\"/bin/true\"]\n    task_types: [T0, T1, T2, T3, T4]\n")
    db = os.path.join(d, "q.db")
    for p in glob.glob(db + "*"):
        os.remove(p)
    subprocess.run([BIN, "--config", cfg, "submit", "--type", "T0", "--id", "seed"], check=True, capture_output=True)
    c = sqlite3.connect(db)
    c.executemany("INSERT INTO tasks (id, type, params, status, enqueued_at, finished_at) "
                  "VALUES (?, ?, '{}', 'succeeded', 0, 0)", ((f"f{i}", f"T{i % 5}") for i in range(finished)))
    c.executemany("INSERT INTO tasks (id, type, params, status, enqueued_at) VALUES (?, ?, '{}', 'queued', 0)",
                  ((f"q{i}", f"T{i % 5}") for i in range(queued)))
    c.commit()
    c.execute("ANALYZE")
    sql = depth_sql("sqlite")
    plan = "; ".join(r[3] for r in c.execute("EXPLAIN QUERY PLAN " + sql))
    t = timed(lambda: c.execute(sql).fetchall())
    c.close()
    return {"adapter": "sqlite", "plan": plan, **t, "cli_ms": cli_ms(cfg)}


def postgres_run(folder, finished, queued):
    d = os.path.join(folder, "depth-postgres")
    os.makedirs(d, exist_ok=True)
    schema = f"wh_bench_depth_{os.getpid()}"
    url = _loopback(PG_URL)
    cfg = os.path.join(d, "workerhost_config.yaml")
    with open(cfg, "w") as f:
        f.write(f"version: \"1.0\"\ntask_manager: {{ type: postgres, url: \"{url}\", schema: {schema} }}\n"
                "workers:\n  - name: w\n    command: [\"/bin/true\"]\n    task_types: [T0, T1, T2, T3, T4]\n")
    subprocess.run([BIN, "--config", cfg, "migrate"], check=True, capture_output=True)
    c = psycopg.connect(url, autocommit=True)
    try:
        c.execute(f"INSERT INTO {schema}.tasks (id, type, status, finished_at) SELECT 'f' || g, 'T' || (g % 5), "
                  f"'succeeded', now() FROM generate_series(1, {finished}) g")
        c.execute(f"INSERT INTO {schema}.tasks (id, type, status) SELECT 'q' || g, 'T' || (g % 5), 'queued' "
                  f"FROM generate_series(1, {queued}) g")
        c.execute(f"ANALYZE {schema}.tasks")
        sql = depth_sql("postgres").replace("{s}", schema)
        plan = "; ".join(r[0].strip() for r in c.execute("EXPLAIN " + sql).fetchall()
                         if "Scan" in r[0] or "Aggregate" in r[0])
        t = timed(lambda: c.execute(sql).fetchall())
        cli = cli_ms(cfg)
    finally:
        c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        c.close()
    return {"adapter": "postgres", "plan": plan, **t, "cli_ms": cli}


def depth_section(folder, quick):
    finished, queued = (100_000, 1_000) if quick else (1_000_000, 1_000)
    runs = []
    for fn in (sqlite_run, postgres_run):
        r = fn(folder, finished, queued)
        r["finished_rows"], r["queued_rows"] = finished, queued
        log(f"  depth {r['adapter']}: {r['median_ms']} ms median, {r['max_ms']} ms max; plan: {r['plan']}")
        runs.append(r)
    return runs
