"""The task managers as the benchmarks use them: a unique queue each, bulk enqueue, a count of the
results stored, one submit and the wait for its result (latency), and clean-up."""
import json
import os
import sqlite3
import subprocess
import time
import urllib.parse

import amqp
import psycopg
import redis

from common import BIN, RUN_ID, listener_pid

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
PG_URL = os.environ.get("PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PARAMS = {"text": "abc"}


def _loopback(url):
    host = urllib.parse.urlparse(url).hostname or "127.0.0.1"
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        raise SystemExit(f"benchmarks only talk to loopback addresses, not {host}")
    return url


def task_json(tid, ttype):
    return json.dumps({"id": tid, "type": ttype, "params": PARAMS})


def _fewer_rows_counter(scalar, table, enqueued):
    """The finished tasks of a table-backed task manager, counted on the smaller side: the finished rows
    until half are done, then the unfinished ones (the count reads every row it counts, and it runs in the
    database being measured). `enqueued()` is read at each count: a counter may be made before (more)
    tasks are enqueued. Both ways are exact; only their cost differs."""
    finished = f"SELECT count(*) FROM {table} WHERE status IN ('succeeded', 'dead')"
    unfinished = f"SELECT count(*) FROM {table} WHERE status IN ('queued', 'scheduled', 'running')"
    seen = [0]

    def done():
        n = enqueued()
        seen[0] = n - scalar(unfinished) if seen[0] > n / 2 else scalar(finished)
        return seen[0]
    return done


class Sqlite:
    kind = "sqlite"

    def __init__(self, name, folder):
        self.path = os.path.join(folder, f"{name}.db")
        self.enqueued = 0

    def tm_yaml(self, results=True):
        return f'task_manager:\n  type: sqlite\n  path: "{self.path}"\n'

    def broker_pid(self):
        return None

    def prepare(self, config):
        """`workerhost submit` creates the file and its schema; its task is removed again."""
        subprocess.run([BIN, "--config", config, "submit", "--any-type", "--type", "bench.init", "--id", "init"],
                       check=True, capture_output=True, timeout=30)
        with self._db() as db:
            db.execute("DELETE FROM tasks WHERE id = 'init'")

    def _db(self):
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 10000")
        return _Closing(db)

    def enqueue(self, n, ttype, prefix="t"):
        now = int(time.time() * 1000)
        params = json.dumps(PARAMS)
        rows = [(f"{prefix}{i}", ttype, params, now) for i in range(n)]
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO tasks (id, type, params, status, enqueued_at) VALUES (?, ?, ?, 'queued', ?)", rows)
            db.execute("COMMIT")
        self.enqueued += n

    def counter(self):
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        return _fewer_rows_counter(lambda q: db.execute(q).fetchone()[0], "tasks", lambda: self.enqueued)

    def failed(self):
        with self._db() as db:
            return db.execute("SELECT count(*) FROM tasks WHERE status = 'dead'").fetchone()[0]

    def latency_client(self):
        return SqliteLatency(self.path)

    def cleanup(self):
        for suffix in ("", "-wal", "-shm"):
            try:
                os.remove(self.path + suffix)
            except FileNotFoundError:
                pass


class _Closing:
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        return self.db

    def __exit__(self, *exc):
        self.db.close()


class SqliteLatency:
    def __init__(self, path):
        self.db = sqlite3.connect(path, timeout=10, isolation_level=None)
        # As `workerhost submit` commits (WAL, synchronous NORMAL). Python's default, FULL, adds an fsync of
        # the WAL to every INSERT: about 1 ms here, all of it the client's.
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.params = json.dumps(PARAMS)

    def submit(self, tid, ttype):
        t0 = time.monotonic()
        self.db.execute("INSERT INTO tasks (id, type, params, status, enqueued_at) VALUES (?, ?, ?, 'queued', ?)",
                        (tid, ttype, self.params, int(time.time() * 1000)))
        return t0

    def wait(self, tid, timeout=10.0):
        deadline = time.monotonic() + timeout
        q = "SELECT status FROM tasks WHERE id = ?"
        while True:
            row = self.db.execute(q, (tid,)).fetchone()
            if row and row[0] in ("succeeded", "dead"):
                return time.monotonic(), row[0] == "succeeded"
            if time.monotonic() > deadline:
                raise RuntimeError(f"no result for {tid} within {timeout} s")
            time.sleep(0.0002)

    def close(self):
        self.db.close()


class Redis:
    kind = "redis"

    def __init__(self, name, folder=None):
        self.url = _loopback(REDIS_URL)
        self.stream = f"bench:{RUN_ID}:{name}"
        self.r = redis.Redis.from_url(self.url)
        self.enqueued = 0

    def tm_yaml(self, results=True):
        return (f'task_manager:\n  type: redis\n  url: "{self.url}"\n  stream: "{self.stream}"\n'
                f"  result_ttl_seconds: 900\n")

    def broker_pid(self):
        return listener_pid(urllib.parse.urlparse(self.url).port or 6379)

    def prepare(self, config):
        pass

    def enqueue(self, n, ttype, prefix="t"):
        p = self.r.pipeline(transaction=False)
        for i in range(n):
            p.xadd(self.stream, {"task": task_json(f"{prefix}{i}", ttype)})
            if i % 2000 == 1999:
                p.execute()
        p.execute()
        self.enqueued += n

    def counter(self):
        r = redis.Redis.from_url(self.url)

        def done():
            return self.enqueued - r.xlen(self.stream)
        return done

    def failed(self):
        return self.r.xlen(self.stream + ":dead")

    def latency_client(self):
        return RedisLatency(self)

    def cleanup(self):
        keys = list(self.r.scan_iter(match=self.stream + "*", count=5000))
        for i in range(0, len(keys), 1000):
            self.r.unlink(*keys[i:i + 1000])


class RedisLatency:
    def __init__(self, b):
        self.b = b
        self.r = redis.Redis.from_url(b.url)

    def submit(self, tid, ttype):
        t0 = time.monotonic()
        self.r.xadd(self.b.stream, {"task": task_json(tid, ttype)})
        return t0

    def wait(self, tid, timeout=10.0):
        key = f"{self.b.stream}:result:{tid}"
        deadline = time.monotonic() + timeout
        while True:
            v = self.r.get(key)
            if v is not None:
                return time.monotonic(), b'"succeeded"' in v
            if time.monotonic() > deadline:
                raise RuntimeError(f"no result for {tid} within {timeout} s")
            time.sleep(0.0002)

    def close(self):
        self.r.close()


def amqp_connect():
    u = urllib.parse.urlparse(_loopback(AMQP_URL))
    vhost = urllib.parse.unquote(u.path[1:]) if len(u.path) > 1 else "/"
    c = amqp.Connection(host=f"{u.hostname}:{u.port or 5672}", userid=u.username or "guest",
                        password=urllib.parse.unquote(u.password or "guest"), virtual_host=vhost)
    c.connect()
    return c


class Amqp:
    kind = "amqp"

    def __init__(self, name, folder=None):
        self.url = _loopback(AMQP_URL)
        self.queue = f"bench.{RUN_ID}.{name}"
        self.results = self.queue + ".results"
        self.conn = amqp_connect()
        self.ch = self.conn.channel()
        self.enqueued = 0

    def tm_yaml(self, results=True):
        y = f'task_manager:\n  type: amqp\n  url: "{self.url}"\n  queue: "{self.queue}"\n'
        if results:
            y += f'  result_exchange: "{self.results}"\n'
        return y

    def broker_pid(self):
        return listener_pid(urllib.parse.urlparse(self.url).port or 5672)

    def prepare(self, config):
        """The results exchange and its queue; `workerhost check` declares the task queues as the host does."""
        self.ch.exchange_declare(self.results, "fanout", durable=False, auto_delete=False)
        self.ch.queue_declare(self.results, durable=False, auto_delete=False)
        self.ch.queue_bind(self.results, self.results, "")
        subprocess.run([BIN, "--config", config, "check"], check=True, capture_output=True, timeout=30)

    def count(self, queue):
        return self.ch.queue_declare(queue, passive=True).message_count

    def enqueue(self, n, ttype, prefix="t"):
        before = self.count(self.queue)
        for i in range(n):
            msg = amqp.Message(task_json(f"{prefix}{i}", ttype), content_type="application/json", delivery_mode=2)
            self.ch.basic_publish(msg, exchange="", routing_key=self.queue)
        deadline = time.monotonic() + 60
        while self.count(self.queue) < before + n:
            if time.monotonic() > deadline:
                raise RuntimeError("the broker did not take every published task within 60 s")
            time.sleep(0.05)
        self.enqueued += n

    def counter(self):
        ch = amqp_connect().channel()

        def done():
            return ch.queue_declare(self.results, passive=True).message_count
        return done

    def failed(self):
        try:
            return self.count(self.queue + ".dead")
        except amqp.exceptions.NotFound:
            self.ch = self.conn.channel()
            return 0

    def purge_results(self):
        self.ch.queue_purge(self.results)

    def latency_client(self):
        return AmqpLatency(self)

    def cleanup(self):
        ch = amqp_connect().channel()
        for q in (self.queue, self.queue + ".dead", self.results):
            try:
                ch.queue_delete(q)
            except amqp.exceptions.AMQPError:
                ch = ch.connection.channel()
        try:
            ch.exchange_delete(self.results)
        except amqp.exceptions.AMQPError:
            pass
        ch.connection.close()
        self.conn.close()


class AmqpLatency:
    """Publishes each task with `reply_to` a private queue; the host publishes the result there."""

    def __init__(self, b):
        self.b = b
        self.conn = amqp_connect()
        self.ch = self.conn.channel()
        self.reply = self.ch.queue_declare("", exclusive=True, auto_delete=True).queue
        self.got = {}
        self.ch.basic_consume(self.reply, callback=self._on_reply, no_ack=True)

    def _on_reply(self, msg):
        self.got[msg.properties.get("correlation_id")] = (time.monotonic(), b'"succeeded"' in msg.body)

    def submit(self, tid, ttype):
        msg = amqp.Message(task_json(tid, ttype), content_type="application/json", delivery_mode=2,
                           reply_to=self.reply, correlation_id=tid)
        t0 = time.monotonic()
        self.ch.basic_publish(msg, exchange="", routing_key=self.b.queue)
        return t0

    def wait(self, tid, timeout=10.0):
        deadline = time.monotonic() + timeout
        while tid not in self.got:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no result for {tid} within {timeout} s")
            try:
                self.conn.drain_events(timeout=min(left, 1.0))
            except TimeoutError:
                pass
        return self.got.pop(tid)

    def close(self):
        self.conn.close()


class Postgres:
    """A schema of its own on the machine's PostgreSQL (trust auth), dropped afterwards."""
    kind = "postgres"

    def __init__(self, name, folder=None):
        self.url = _loopback(PG_URL)
        self.schema = ("bench_" + RUN_ID + "_" + name).replace("-", "_").replace(".", "_").lower()[:50]
        self.enqueued = 0

    def tm_yaml(self, results=True):
        return f'task_manager:\n  type: postgres\n  url: "{self.url}"\n  schema: {self.schema}\n'

    def broker_pid(self):
        return listener_pid(urllib.parse.urlparse(self.url).port or 5432)

    def prepare(self, config):
        """`workerhost migrate` creates the schema."""
        subprocess.run([BIN, "--config", config, "migrate"], check=True, capture_output=True, timeout=60)

    def _conn(self):
        return psycopg.connect(self.url, autocommit=True)

    def enqueue(self, n, ttype, prefix="t"):
        with self._conn() as c:
            c.execute(f"INSERT INTO {self.schema}.tasks (id, type, params) "
                      "SELECT %s || i, %s, %s::jsonb FROM generate_series(0, %s) i",
                      (prefix, ttype, json.dumps(PARAMS), n - 1))
        self.enqueued += n

    def counter(self):
        c = self._conn()
        return _fewer_rows_counter(lambda q: c.execute(q).fetchone()[0], f"{self.schema}.tasks", lambda: self.enqueued)

    def failed(self):
        with self._conn() as c:
            return c.execute(f"SELECT count(*) FROM {self.schema}.tasks WHERE status = 'dead'").fetchone()[0]

    def latency_client(self):
        return PostgresLatency(self)

    def cleanup(self):
        with self._conn() as c:
            c.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


class PostgresLatency:
    """Enqueues with `<schema>.enqueue(...)` (autocommit: the NOTIFY goes out at commit) and polls the row."""

    def __init__(self, b):
        self.b = b
        self.c = psycopg.connect(b.url, autocommit=True)
        self.enqueue = f"SELECT {b.schema}.enqueue(p_type => %s, p_params => %s::jsonb, p_id => %s)"
        self.poll = f"SELECT status FROM {b.schema}.tasks WHERE id = %s"
        self.params = json.dumps(PARAMS)

    def submit(self, tid, ttype):
        t0 = time.monotonic()
        self.c.execute(self.enqueue, (ttype, self.params, tid))
        return t0

    def wait(self, tid, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            row = self.c.execute(self.poll, (tid,)).fetchone()
            if row and row[0] in ("succeeded", "dead"):
                return time.monotonic(), row[0] == "succeeded"
            if time.monotonic() > deadline:
                raise RuntimeError(f"no result for {tid} within {timeout} s")
            time.sleep(0.0002)

    def close(self):
        self.c.close()


BACKENDS = {"sqlite": Sqlite, "redis": Redis, "amqp": Amqp, "postgres": Postgres}
