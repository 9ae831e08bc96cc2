"""Producing tasks from Python (spec section 12): one `Client` for every task manager, enqueueing exactly
what `workerhost submit` enqueues.

    from workerhost_sdk.client import Client
    c = Client.from_config("workerhost_config.yaml")
    tid = c.submit("Report.Build", {"kind": "nightly"}, delay="30s")
    doc = c.result(tid, timeout=30)       # the result document; raises TimeoutError

The base package needs nothing outside the standard library (sqlite, http); Redis, RabbitMQ and PostgreSQL
need the extras `workerhost-sdk[redis]`, `[amqp]`, `[postgres]`; `from_config` needs PyYAML (`[yaml]`).
"""

import os
import shutil
import subprocess
import time

from . import config as _config
from .errors import (ClientError, DuplicateId, InvalidTask, NotSupported, Unreachable,  # noqa: F401
                     UnknownTask)
from .wire import Task

__all__ = ["Client", "ClientError", "NotSupported", "DuplicateId", "UnknownTask", "Unreachable",
           "InvalidTask"]

_KINDS = ("sqlite", "redis", "amqp", "http", "postgres")


def _backend(kind, settings, base):
    if kind == "sqlite":
        from .sqlite_tm import SqliteTM
        return SqliteTM(settings, base)
    if kind == "redis":
        from .redis_tm import RedisTM
        return RedisTM(settings, base)
    if kind == "postgres":
        from .postgres_tm import PostgresTM
        return PostgresTM(settings, base)
    if kind == "http":
        from .http_tm import HttpTM
        return HttpTM(settings, base)
    if kind == "amqp":
        from .amqp_tm import AmqpTM
        return AmqpTM(settings, base)
    raise ClientError(f"task_manager.type {kind!r}: expected one of {', '.join(_KINDS)}")


class Client:
    """A producer for one task manager. `settings` is the `task_manager:` mapping of a config (already
    expanded); relative sqlite paths resolve against `base` (the config file's folder)."""

    def __init__(self, settings=None, *, base=None, config_path=None, **kw):
        settings = dict(settings or {}, **kw)
        self.kind = str(settings.get("type") or "sqlite")
        self.config_path = config_path
        self._tm = _backend(self.kind, settings, base or os.getcwd())

    @classmethod
    def from_config(cls, path):
        """The task manager of the host's own config file (same `${VAR}` rules)."""
        settings, base = _config.load(path)
        return cls(settings, base=base, config_path=os.path.abspath(path))

    def submit(self, type, params=None, *, id=None, delay=None, at=None, priority=None,
               correlation_id=None, connection=None):
        """Enqueues one task and returns its id (the given one, or a new UUID; on http the service's)."""
        task = Task(type, params, id=id, delay=delay, at=at, priority=priority, correlation_id=correlation_id)
        if priority is not None and self.kind == "redis":
            raise NotSupported("priority is not supported with task_manager type redis: the redis task "
                               "manager reads its stream in order and keeps no priority (run_at is supported)")
        if connection is not None and self.kind != "postgres":
            raise NotSupported(f"connection= is for the postgres task manager, not {self.kind}")
        return self._tm.submit(task, connection=connection)

    def status(self, id):
        """A dict with at least `id` and `status` (`queued`, `scheduled`, `running`, `succeeded`, `dead`,
        `cancelled`), and `result` once settled. Unknown ids raise `UnknownTask`."""
        return self._tm.status(str(id))

    def result(self, id, timeout=30.0, poll=0.2):
        """Waits for the task's result document; raises the built-in `TimeoutError` after `timeout` s."""
        deadline = time.monotonic() + timeout
        delay = min(poll, 0.05)
        while True:
            doc = self._tm.result(str(id))
            if doc is not None:
                return doc
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"task {id}: no result within {timeout} s")
            time.sleep(min(delay, left))
            delay = min(delay * 2, poll)

    def cancel(self, id):
        """Cancels a task (section 8) through `workerhost cancel`, the host's own code path: it needs the
        `workerhost` binary (on PATH or `$WORKERHOST_BIN`) and a client made by `from_config`."""
        if self.kind in ("amqp", "http"):
            raise NotSupported(f"the {self.kind} task manager has no cancel")
        binary = os.environ.get("WORKERHOST_BIN") or shutil.which("workerhost")
        if not binary or not self.config_path:
            raise NotSupported("cancel runs `workerhost cancel`: it needs the workerhost binary (PATH or "
                               "WORKERHOST_BIN) and a client made with Client.from_config")
        p = subprocess.run([binary, "--config", self.config_path, "cancel", str(id)], capture_output=True,
                           text=True, timeout=60)
        if p.returncode != 0:
            raise ClientError(f"workerhost cancel {id}: {(p.stderr or p.stdout).strip()}")
        return (p.stdout or "").strip()

    def close(self):
        self._tm.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
