"""The `postgres` task manager: `<schema>.enqueue(...)`, the function the host's migration creates (it is
what `psql` users call too). With `connection=` the call runs on the caller's psycopg 3 connection inside
its open transaction (committed or rolled back by the caller: a rollback means the task never existed).
Needs the `[postgres]` extra."""

import datetime as _dt
import re

from .errors import ClientError, DuplicateId, NotSupported, Unreachable, UnknownTask

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


class PostgresTM:
    kind = "postgres"

    def __init__(self, settings, base):
        try:
            import psycopg
        except ImportError:
            raise NotSupported("the postgres task manager needs psycopg 3: "
                               "pip install 'workerhost-sdk[postgres]'") from None
        self._pg = psycopg
        self.url = settings.get("url") or ""
        self.schema = settings.get("schema") or "workerhost"
        if not _SCHEMA.match(self.schema):
            raise ClientError(f"task_manager.schema {self.schema!r}: expected a lower-case SQL name")
        self._conn = None

    def _own(self):
        if self._conn is None or self._conn.closed:
            try:
                self._conn = self._pg.connect(self.url, autocommit=True, connect_timeout=5,
                                              application_name="workerhost-client")
            except self._pg.OperationalError as e:
                raise Unreachable(f"postgres task manager: {_scrub(str(e))}") from None
        return self._conn

    def _run(self, what, sql, args, connection=None):
        conn = connection if connection is not None else self._own()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchone()
        except self._pg.errors.UniqueViolation:
            raise DuplicateId(f"{what} already exists") from None
        except self._pg.errors.UndefinedFunction:
            raise ClientError(f"postgres task manager: no {self.schema}.enqueue function: run "
                              "`workerhost migrate` (or start a host) first") from None
        except self._pg.errors.UndefinedTable:
            raise ClientError(f"postgres task manager: no {self.schema}.tasks table: run "
                              "`workerhost migrate` (or start a host) first") from None
        except self._pg.OperationalError as e:
            raise Unreachable(f"postgres task manager: {what}: {_scrub(str(e))}") from None
        except self._pg.Error as e:
            raise ClientError(f"postgres task manager: {what}: {e}") from None

    def submit(self, task, connection=None):
        run_at = None if task.run_at is None else _EPOCH + _dt.timedelta(milliseconds=task.run_at)
        from psycopg.types.json import Jsonb
        row = self._run(
            f"task {task.id}",
            f"SELECT {self.schema}.enqueue(p_type => %s, p_params => %s, p_id => %s, p_run_at => %s, "
            "p_priority => %s, p_correlation_id => %s)",
            (task.type, Jsonb(task.params), task.id, run_at, task.priority, task.correlation_id),
            connection,
        )
        return row[0]

    def status(self, id):
        row = self._run(
            f"task {id}",
            "SELECT id, type, CASE WHEN status = 'scheduled' AND run_at <= now() THEN 'queued' ELSE status END, "
            f"deliveries, result, run_at, attempts, error FROM {self.schema}.tasks WHERE id = %s",
            (id,),
        )
        if row is None:
            raise UnknownTask(f"no task {id}")
        tid, ttype, status, deliveries, result, run_at, attempts, error = row
        out = {"id": tid, "type": ttype, "status": status, "deliveries": deliveries, "attempts": attempts}
        if status == "scheduled":
            out["run_at"] = run_at.isoformat()
        if error is not None and status not in ("succeeded", "dead", "cancelled"):
            out["last_error"] = error
        if result is not None:
            out["result"] = result
        return out

    def result(self, id):
        return self.status(id).get("result")

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _scrub(text):
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)
