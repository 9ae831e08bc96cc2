"""The `sqlite` task manager: the host's own file and schema (version 4), written the way the sqlite
adapter's `submit` writes (one INSERT, `ON CONFLICT (id) DO NOTHING`), in WAL mode with a busy timeout so
it is safe beside running hosts. A file without the schema is refused: the host (or `workerhost check`)
creates it, so the two can never disagree about it."""

import json
import os
import sqlite3

from .errors import ClientError, DuplicateId, Unreachable, UnknownTask
from .wire import now_ms

SCHEMA_VERSION = 4
_INSERT = ("INSERT INTO tasks (id, type, params, correlation_id, status, enqueued_at, run_at, priority, "
           "attempts, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, NULL) ON CONFLICT (id) DO NOTHING")
_STATUS = "SELECT id, type, status, deliveries, result, run_at, attempts, last_error FROM tasks WHERE id = ?"
_SETTLED = ("succeeded", "dead", "cancelled")


class SqliteTM:
    kind = "sqlite"

    def __init__(self, settings, base):
        path = settings.get("path") or "./workerhost.db"
        self.path = path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))
        self._conn = None

    def _db(self):
        if self._conn is not None:
            return self._conn
        if not os.path.exists(self.path):
            raise Unreachable(f"sqlite task manager {self.path}: no such file; start a host or run "
                              "`workerhost check` once to create it")
        try:
            c = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
            c.execute("PRAGMA busy_timeout = 5000")
            version = c.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as e:
            raise Unreachable(f"sqlite task manager {self.path}: {e}") from None
        if version != SCHEMA_VERSION:
            c.close()
            raise ClientError(
                f"sqlite task manager {self.path}: schema version {version}, this client writes version "
                f"{SCHEMA_VERSION}; start a host of the matching workerhost (it migrates the file)")
        self._conn = c
        return c

    def submit(self, task, connection=None):
        now = now_ms()
        status = "scheduled" if task.is_scheduled(now) else "queued"
        try:
            cur = self._db().execute(_INSERT, (task.id, task.type, task.params_json(), task.correlation_id,
                                               status, now, task.run_at, task.priority))
        except sqlite3.Error as e:
            raise ClientError(f"sqlite task manager {self.path}: task {task.id}: {e}") from None
        if cur.rowcount == 0:
            raise DuplicateId(f"task {task.id} already exists")
        return task.id

    def status(self, id):
        try:
            row = self._db().execute(_STATUS, (id,)).fetchone()
        except sqlite3.Error as e:
            raise ClientError(f"sqlite task manager {self.path}: task {id}: {e}") from None
        if row is None:
            raise UnknownTask(f"no task {id}")
        tid, ttype, status, deliveries, result, run_at, attempts, last_error = row
        if status == "scheduled" and (run_at is None or run_at <= now_ms()):
            status = "queued"
        out = {"id": tid, "type": ttype, "status": status, "deliveries": deliveries,
               "attempts": attempts}
        if status == "scheduled" and run_at is not None:
            out["run_at_ms"] = run_at
        if last_error is not None:
            out["last_error"] = last_error
        if status in _SETTLED and result:
            try:
                out["result"] = json.loads(result)
            except ValueError:
                raise ClientError(f"task {id}: the stored result is not JSON") from None
        return out

    def result(self, id):
        st = self.status(id)
        return st.get("result")

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None
