"""The workerhost worker protocol (spawn mode and pool mode) around one handler function.

Wire format (see ../../../shared/SPEC.md section 3 and workers-sdk/rust/src/lib.rs):

- task document: ``{"id", "type", "params", "attempt", "correlation_id"?, "traceparent"?}``
- result document: ``{"success": true, "result": {...}}`` or ``{"success": false, "error": {"type",
  "message", "traceback"?, "retry_possible"}, "retriable"?: false}``, plus ``"logs"`` when the handler
  logged, plus ``"id"`` in pool mode.
- exit codes (spawn mode): 0 success, 1 retriable failure, 2 non-retriable, 3 the worker's own timeout,
  130 interrupted.
- progress: a line ``{"progress": 40, "message": "..."}`` on stderr.
"""

from __future__ import annotations

import functools
import io
import json
import os
import sys
import threading
from collections.abc import Mapping

EXIT_SUCCESS = 0
EXIT_RETRIABLE = 1
EXIT_FATAL = 2
EXIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130

MODE_ENV = "WORKERHOST_MODE"

# A traceback longer than this keeps only its end (the part that names the failing line).
MAX_TRACEBACK_CHARS = 16000


class WorkerError(Exception):
    """A failure the handler raises on purpose. The base class is retriable; prefer the two below.

    ``error_type`` names the failure in the result (default: the class name, so ``class
    QuotaError(FatalError)`` reports ``"QuotaError"``); ``details`` (a dict of JSON values) is merged
    into the result's error object.
    """

    retriable = True

    def __init__(self, message="", *, error_type=None, details=None):
        super().__init__(message)
        self.message = str(message)
        self.error_type = error_type
        self.details = dict(details) if details else {}


class RetriableError(WorkerError):
    """Worth retrying (rate limit, network hiccup): exit 1; the host retries up to ``max_retries``."""

    retriable = True


class FatalError(WorkerError):
    """Will fail again (bad params, missing resource): exit 2, ``retry_possible: false``; never retried."""

    retriable = False


class InvalidTask(ValueError):
    """The input is not a task document. ``task_id`` is its id when one could be read."""

    def __init__(self, message, task_id=None):
        super().__init__(message)
        self.task_id = task_id


class Task:
    """One task as the handler sees it: ``id``, ``type``, ``params``, ``attempt``, ``correlation_id``,
    ``traceparent`` (the W3C trace context of this attempt, or None: make your spans its children).

    ``document`` is the whole task document as received (extra keys included). Build one by hand in
    unit tests: ``Task(params={"x": 1})``.
    """

    __slots__ = ("id", "type", "params", "attempt", "correlation_id", "traceparent", "document", "logs",
                 "_stream", "_lock")

    def __init__(self, id="test", type="test", params=None, attempt=1, correlation_id=None,
                 document=None, stream=None, traceparent=None):
        self.id = id
        self.type = type
        self.params = {} if params is None else params
        self.attempt = attempt
        self.correlation_id = correlation_id
        self.traceparent = traceparent
        self.document = document if document is not None else {
            "id": id, "type": type, "params": self.params, "attempt": attempt,
            "correlation_id": correlation_id,
        }
        self.logs = []
        self._stream = stream
        self._lock = threading.Lock()

    def progress(self, percent, message=None):
        """Reports progress: writes ``{"progress": percent, "message": message}`` as one line to stderr.

        ``percent`` is a number, clamped to 0..100 (an integral value is written as an integer, any
        other rounded to 2 decimals); ``message`` is optional. The host forwards it to the task manager
        where the task manager supports progress; elsewhere it is a log line. Thread-safe.
        """
        if isinstance(percent, bool) or not isinstance(percent, (int, float)):
            raise TypeError("percent must be a number, not %s" % type(percent).__name__)
        if percent != percent:
            raise ValueError("percent must be a number, not NaN")
        value = min(100, max(0, percent))
        if isinstance(value, float):
            value = int(value) if value.is_integer() else round(value, 2)
        line = {"progress": value}
        if message is not None:
            line["message"] = str(message)
        text = json.dumps(line) + "\n"
        stream = self._stream if self._stream is not None else sys.stderr
        with self._lock:
            stream.write(text)
            stream.flush()

    def log(self, message, level="info"):
        """Adds a line to the result's ``logs``; the host forwards it to its own log with the task id."""
        with self._lock:
            self.logs.append({"level": str(level), "message": str(message)})

    def __repr__(self):
        return "Task(id=%r, type=%r, attempt=%r)" % (self.id, self.type, self.attempt)


def parse_task(data, stream=None):
    """Parses a task document (str, bytes or an already decoded dict) into a :class:`Task`.

    Raises :class:`InvalidTask`. ``id`` must be a string (an integer is accepted and converted, for
    hand-written tests), ``type`` a string, ``params`` an object (absent or null: ``{}``), ``attempt``
    an integer (default 1), ``correlation_id`` a string or absent, ``traceparent`` a string or absent
    (absent: the ``TRACEPARENT`` environment variable a spawned worker gets, if set).
    """
    if isinstance(data, Mapping):
        doc = data
    else:
        try:
            if isinstance(data, (bytes, bytearray)):
                data = bytes(data).decode("utf-8-sig")
            doc = json.loads(data)
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError both are ValueErrors
            raise InvalidTask("not JSON: %s" % e) from None
    if not isinstance(doc, Mapping):
        raise InvalidTask("a task document is a JSON object, got %s" % _json_kind(doc))
    task_id = doc.get("id")
    if isinstance(task_id, bool) or not isinstance(task_id, (str, int)):
        raise InvalidTask("id must be a string")
    task_id = str(task_id)
    task_type = doc.get("type")
    if not isinstance(task_type, str):
        raise InvalidTask("type must be a string", task_id)
    params = doc.get("params")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise InvalidTask("params must be an object, got %s" % _json_kind(params), task_id)
    attempt = doc.get("attempt")
    if attempt is None:
        attempt = 1
    elif isinstance(attempt, bool) or not isinstance(attempt, int):
        raise InvalidTask("attempt must be an integer", task_id)
    correlation_id = doc.get("correlation_id")
    if correlation_id is not None and not isinstance(correlation_id, str):
        raise InvalidTask("correlation_id must be a string", task_id)
    traceparent = doc.get("traceparent")
    if traceparent is None:
        traceparent = os.environ.get("TRACEPARENT") or None
    elif not isinstance(traceparent, str):
        raise InvalidTask("traceparent must be a string", task_id)
    return Task(task_id, task_type, params, attempt, correlation_id, document=dict(doc), stream=stream,
                traceparent=traceparent)


def _json_kind(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _timeout_types():
    """The builtin TimeoutError plus asyncio's and concurrent.futures' (distinct before Python 3.11)."""
    types = [TimeoutError]
    for module_name in ("asyncio", "concurrent.futures"):
        module = sys.modules.get(module_name)
        extra = getattr(module, "TimeoutError", None) if module is not None else None
        if isinstance(extra, type) and extra not in types:
            types.append(extra)
    return tuple(types)


def _failure(error_type, message, retriable, traceback_text=None, details=None):
    error = dict(details) if details else {}
    error["type"] = error_type
    error["message"] = message
    if traceback_text:
        error["traceback"] = traceback_text
    error["retry_possible"] = bool(retriable)
    doc = {"success": False, "error": error}
    if not retriable:
        doc["retriable"] = False
    return doc


def _format_traceback(exc):
    import traceback

    tb = exc.__traceback__
    if tb is not None and tb.tb_frame.f_code is execute.__code__:
        tb = tb.tb_next  # start at the handler, not at the SDK's call of it
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "...\n" + text[-MAX_TRACEBACK_CHARS:]
    return text


def _message_of(exc):
    text = str(exc)
    return text if text else type(exc).__name__


def _await(value):
    """Runs a coroutine (an ``async def`` handler) to completion on a fresh event loop."""
    import asyncio

    async def wait():
        return await value

    return asyncio.run(wait())


def _success(value):
    if value is None:
        result = {}
    elif isinstance(value, dict):
        result = value
    elif isinstance(value, Mapping):
        result = dict(value)
    else:
        result = {"value": value}
    return {"success": True, "result": result}


def execute(func, task, stream=None):
    """Calls ``func(task.params, task)`` and maps what happens to ``(result document, exit code)``.

    While the handler runs, ``sys.stdout`` is ``stream`` (default: ``sys.stderr``), so prints never
    reach the result stream. Never raises (except for errors in this function itself).
    """
    out = stream if stream is not None else sys.stderr
    saved_stdout = sys.stdout
    sys.stdout = out
    traceback_text = None
    try:
        value = func(task.params, task)
        if hasattr(value, "__await__"):
            value = _await(value)
        doc, code = _success(value), EXIT_SUCCESS
    except WorkerError as e:
        if e.__cause__ is not None:
            traceback_text = _format_traceback(e)
        doc = _failure(e.error_type or type(e).__name__, e.message or type(e).__name__, e.retriable,
                       traceback_text, e.details)
        code = EXIT_RETRIABLE if e.retriable else EXIT_FATAL
    except KeyboardInterrupt:
        doc, code = _failure("KeyboardInterrupt", "interrupted", True), EXIT_INTERRUPTED
    except SystemExit as e:
        # sys.exit() inside a handler: the code decides the outcome; the process itself goes on.
        exit_code = e.code if isinstance(e.code, int) else (EXIT_SUCCESS if e.code is None else EXIT_RETRIABLE)
        message = "the handler called sys.exit(%r) instead of returning a result" % (e.code,)
        if exit_code == EXIT_FATAL:
            doc, code = _failure("SystemExit", message, False), EXIT_FATAL
        elif exit_code == EXIT_TIMEOUT:
            doc, code = _failure("SystemExit", message, True), EXIT_TIMEOUT
        else:
            doc, code = _failure("SystemExit", message, True), EXIT_RETRIABLE
    except BaseException as e:  # noqa: B902 - every other failure of the handler is reported, not raised
        traceback_text = _format_traceback(e)
        if isinstance(e, _timeout_types()):
            code = EXIT_TIMEOUT
        else:
            code = EXIT_RETRIABLE
        doc = _failure(type(e).__name__, _message_of(e), True, traceback_text)
        try:
            out.write(traceback_text)
            out.flush()
        except Exception:  # the traceback is in the result document anyway
            pass
    finally:
        sys.stdout = saved_stdout
    if task.logs:
        doc["logs"] = list(task.logs)
    return doc, code


def encode(doc):
    """One result document as one line of ASCII JSON, or a non-retriable failure saying why not."""
    try:
        return json.dumps(doc, allow_nan=False) + "\n", None
    except (TypeError, ValueError, RecursionError) as e:
        failure = _failure("ResultNotSerializable", "the handler's result is not JSON: %s" % e, False)
        if "id" in doc:
            failure = dict(id=doc["id"], **failure)
        return json.dumps(failure) + "\n", EXIT_FATAL


def _write(out, text):
    """Writes one line to a text or binary stream and flushes it."""
    if isinstance(out, io.TextIOBase):
        out.write(text)
    else:
        out.write(text.encode("ascii"))
    out.flush()


def serve_spawn(func, task_in, result_out, stream):
    """Spawn mode: one task document from ``task_in`` (read to EOF), one result to ``result_out``.

    Returns the exit code. ``task_in`` yields bytes or str; ``result_out`` takes bytes or str.
    """
    try:
        data = task_in.read()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    try:
        task = parse_task(data, stream)
    except InvalidTask as e:
        doc, code = _failure("InvalidTask", "stdin is not a task document: %s" % e, False), EXIT_FATAL
    else:
        doc, code = execute(func, task, stream)
    text, failed = encode(doc)
    if failed is not None:
        code = failed
    try:
        _write(result_out, text)
    except OSError as e:
        _note(stream, "cannot write the result: %s" % e)
        return EXIT_RETRIABLE
    return code


def serve_pool(func, task_in, result_out, stream):
    """Pool mode: one task per line from ``task_in``, one result per line (with ``"id"``) to
    ``result_out``, flushed each time, until ``task_in`` ends.

    Returns 0 at end of input, 130 when interrupted, 1 when the result stream is gone. A handler's
    exception never ends the loop. A line that is not a task is answered with ``"id"`` (the line's id
    when one could be read, else null), ``"success": false``, ``"error"`` (a string), ``"retriable":
    false``. Blank lines are skipped.
    """
    try:
        while True:
            line = task_in.readline()
            if not line:
                return EXIT_SUCCESS
            if not line.strip():
                continue
            try:
                task = parse_task(line, stream)
            except InvalidTask as e:
                doc = {"id": e.task_id, "success": False, "error": "not a task document: %s" % e,
                       "retriable": False}
                code = EXIT_FATAL
            else:
                result, code = execute(func, task, stream)
                doc = {"id": task.id}
                doc.update(result)
            text, _ = encode(doc)
            try:
                _write(result_out, text)
            except OSError as e:
                _note(stream, "cannot write the result: %s" % e)
                return EXIT_RETRIABLE
            if code == EXIT_INTERRUPTED:
                return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _note(stream, message):
    try:
        stream.write("workerhost_sdk: %s\n" % message)
        stream.flush()
    except Exception:
        pass


def _claim_stdio():
    """Takes the process's stdin and stdout for the protocol and keeps them away from everything else.

    Returns ``(task_in, result_out)``: private duplicates of fds 0 and 1 (not inherited by child
    processes). Then fd 1 becomes stderr and fd 0 becomes /dev/null, and ``sys.stdout`` becomes
    ``sys.stderr``: prints, C extensions and child processes write to stderr, and nothing but the SDK
    can read the task stream or write the result stream. Output a module printed at import time and
    did not flush lands on stderr too.
    """
    try:
        task_in = os.fdopen(os.dup(0), "rb")
        result_out = os.fdopen(os.dup(1), "wb")
    except OSError:
        # No usable fds (an embedded interpreter?): Python-level streams only.
        task_in, result_out = sys.stdin.buffer, sys.stdout.buffer
        sys.stdout = sys.stderr
        return task_in, result_out
    try:
        os.dup2(2, 1)
    except OSError:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    except OSError:
        pass
    original = sys.stdout
    sys.stdout = sys.stderr
    if original is not None:
        try:
            original.flush()  # anything still buffered goes to fd 1, which is stderr now
        except Exception:
            pass
    return task_in, result_out


def serve(func, mode=None):
    """Runs ``func`` as a worker on this process's stdin/stdout and returns the exit code (without
    exiting). ``mode``: ``"spawn"`` or ``"pool"``; default: ``$WORKERHOST_MODE``, unset means spawn.
    """
    mode = (mode if mode is not None else os.environ.get(MODE_ENV, "")).strip().lower() or "spawn"
    if mode not in ("spawn", "pool"):
        _note(sys.stderr, "%s=%r: expected spawn or pool" % (MODE_ENV, mode))
        return EXIT_FATAL
    stream = sys.stderr
    interactive = False
    try:
        interactive = os.isatty(0)
    except OSError:
        pass
    task_in, result_out = _claim_stdio()
    if interactive:
        if mode == "spawn":
            _note(stream, "reading one task document from stdin (end it with Ctrl-D)")
        else:
            _note(stream, "pool mode: one task document per line (Ctrl-D ends)")
    if mode == "pool":
        return serve_pool(func, task_in, result_out, stream)
    return serve_spawn(func, task_in, result_out, stream)


class Worker:
    """A handler ``func(params, task) -> dict`` made into a worker by :func:`worker`.

    - ``w()`` (no arguments) runs the worker on stdin/stdout and exits the process with the protocol's
      code (spawn or pool mode from ``$WORKERHOST_MODE``).
    - ``w(params, task)`` calls the plain function.
    - ``w.serve(mode=None)`` runs the worker and returns the exit code instead of exiting.
    - ``w.run_task(document)`` runs one task document (dict, str or bytes) in process and returns
      ``(result document, exit code)``, exactly what spawn mode would write and exit with.
    """

    def __init__(self, func):
        if not callable(func):
            raise TypeError("@worker needs a function, got %r" % (func,))
        self.func = func
        functools.update_wrapper(self, func)

    def __call__(self, *args, **kwargs):
        if not args and not kwargs:
            sys.exit(self.serve())
        return self.func(*args, **kwargs)

    def serve(self, mode=None):
        return serve(self.func, mode)

    def run_task(self, document, stream=None):
        try:
            task = parse_task(document, stream)
        except InvalidTask as e:
            return _failure("InvalidTask", "not a task document: %s" % e, False), EXIT_FATAL
        doc, code = execute(self.func, task, stream)
        text, failed = encode(doc)
        return json.loads(text), (code if failed is None else failed)

    def __repr__(self):
        return "<workerhost worker %s>" % getattr(self.func, "__qualname__", repr(self.func))


def worker(func=None):
    """Decorator: ``@worker`` (or ``@worker()``) on ``def handle(params, task) -> dict``.

    Returns: a :class:`Worker`. Results: a dict is the result; ``None`` becomes ``{}``; any other JSON
    value ``x`` becomes ``{"value": x}``; a value JSON cannot encode (a set, NaN, ...) is a non-retriable
    failure (``ResultNotSerializable``, exit 2). An ``async def`` handler is run with ``asyncio.run``.
    """
    if func is None:
        return Worker
    return Worker(func)


def run(func, mode=None):
    """Runs ``func(params, task)`` as a worker and exits: ``workerhost_sdk.run(handle)``."""
    sys.exit(serve(func, mode))
