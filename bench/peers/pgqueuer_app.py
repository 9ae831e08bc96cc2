"""The PgQueuer peer: a no-op async entrypoint on the benchmark's PostgreSQL, in the schema named by
PGQUEUER_SCHEMA (PgQueuer reads its PGQUEUER_* variables itself) and on the NOTIFY channel named by
PGQUEUER_CHANNEL, both unique to the run.

Run as a script it is the worker: `python pgqueuer_app.py CONCURRENCY BATCH` starts one PgQueuer process
through the library's own runner (`pgqueuer.run`, on uvloop as `pgq run` does) with `max_concurrent_tasks`
= CONCURRENCY and `batch_size` = BATCH (PgQueuer requires max_concurrent_tasks >= 2 x batch_size). The `pgq
run` console script is not used: in pgqueuer 1.6.0 with the typer that pip picks for it (0.29), it fails
on its own --log-level option ('str' object has no attribute 'name') before starting.

"Results kept" for PgQueuer: it has no store for return values. A finished job's row leaves the queue
table and PgQueuer writes one row per job to its log table (`pgqueuer_log`, a logged table by default:
durability 'durable'), status 'successful' or 'exception'. Those rows stay; they are what the harness
counts."""
import logging
import os
import sys
from contextlib import asynccontextmanager

import psycopg
import pgqueuer
from pgqueuer import PgQueuer
from pgqueuer.db import PsycopgDriver
from pgqueuer.domain.settings import db_settings
from pgqueuer.queries import Queries

# The settings are read from the environment once per process; the harness changes them between runs.
db_settings.cache_clear()
ENTRYPOINT = "noop"


async def _connect():
    return await psycopg.AsyncConnection.connect(os.environ["BENCH_PG_URL"], autocommit=True)


@asynccontextmanager
async def factory():
    conn = await _connect()
    pgq = PgQueuer(PsycopgDriver(conn))

    @pgq.entrypoint(ENTRYPOINT)
    async def noop(job) -> None:
        return None

    try:
        yield pgq
    finally:
        await conn.close()


async def install_and_enqueue(n, chunk=1000):
    """Creates the schema and PgQueuer's objects in it, then enqueues `n` no-op jobs (PgQueuer's own
    batch enqueue, `chunk` a statement)."""
    conn = await _connect()
    try:
        q = Queries(PsycopgDriver(conn))
        await q.install()
        for i in range(0, n, chunk):
            k = min(chunk, n - i)
            await q.enqueue([ENTRYPOINT] * k, [None] * k, [0] * k)
    finally:
        await conn.close()


def main():
    import uvloop

    logging.basicConfig(level=logging.WARNING)
    concurrency, batch = int(sys.argv[1]), int(sys.argv[2])
    uvloop.run(pgqueuer.run(factory, max_concurrent_tasks=concurrency, batch_size=batch))


if __name__ == "__main__":
    main()
