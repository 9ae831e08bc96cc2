"""Helpers: worker modules written to a temp folder and run as real subprocesses of the interpreter
running the tests (the venv's, which has the SDK installed), the way the host runs them."""

import json
import os
import queue
import subprocess
import sys
import textwrap
import threading

import pytest

PYTHON = sys.executable
TIMEOUT = 30


def clean_env(mode=None, **extra):
    """The environment of a worker process: this one minus buffering overrides, plus the mode."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "WORKERHOST_MODE"}
    if mode is not None:
        env["WORKERHOST_MODE"] = mode
    env.update(extra)
    return env


class Workers:
    """Writes worker modules into a folder and runs them there."""

    def __init__(self, folder):
        self.folder = folder

    def module(self, name, source):
        path = self.folder / (name + ".py")
        path.write_text(textwrap.dedent(source))
        return name

    def argv(self, module, how="function"):
        if how == "function":
            # What the host runs for `module:` + `function: handle`.
            return [PYTHON, "-c", "from %s import handle; handle()" % module]
        if how == "-m":
            return [PYTHON, "-m", module]
        raise ValueError(how)

    def spawn(self, module, stdin, how="function", mode="spawn", env=None):
        """Runs one task in spawn mode; returns the CompletedProcess (text stdout/stderr)."""
        if isinstance(stdin, dict):
            stdin = json.dumps(stdin)
        return subprocess.run(
            self.argv(module, how), input=stdin, capture_output=True, text=True, cwd=str(self.folder),
            env=env if env is not None else clean_env(mode), timeout=TIMEOUT,
        )

    def pool(self, module, how="function", env=None):
        return PoolProcess(self.argv(module, how), self.folder, env if env is not None else clean_env("pool"))


def result_of(proc):
    """The single result document of a spawn-mode run: stdout must be exactly one JSON line."""
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, "stdout must be one result line, got %r (stderr: %s)" % (proc.stdout, proc.stderr)
    return json.loads(lines[0])


class PoolProcess:
    """A pool-mode worker process: send task lines, receive result lines (with a timeout each)."""

    def __init__(self, argv, cwd, env):
        self.stderr_path = cwd / ("pool-stderr-%d.log" % id(self))
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            argv, cwd=str(cwd), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, bufsize=0,
        )
        self.lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in iter(self.proc.stdout.readline, b""):
            self.lines.put(line.decode("utf-8"))
        self.lines.put(None)

    def send(self, doc):
        line = doc if isinstance(doc, str) else json.dumps(doc)
        self.proc.stdin.write((line + "\n").encode("utf-8"))
        self.proc.stdin.flush()

    def recv(self, timeout=TIMEOUT):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no result line within %ss; stderr: %s" % (timeout, self.stderr()))
        assert line is not None, "the pool process closed stdout; stderr: %s" % self.stderr()
        assert line.endswith("\n")
        return json.loads(line)

    def call(self, doc):
        self.send(doc)
        return self.recv()

    def nothing_pending(self, wait=0.3):
        try:
            line = self.lines.get(timeout=wait)
        except queue.Empty:
            return True
        raise AssertionError("unexpected output line %r" % (line,))

    def close(self, timeout=TIMEOUT):
        """Closes stdin and returns the exit code."""
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self.proc.wait(timeout=timeout)

    def stderr(self):
        self._stderr.flush()
        return self.stderr_path.read_text()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(timeout=TIMEOUT)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if not pipe.closed:
                pipe.close()
        self._stderr.close()


@pytest.fixture
def workers(tmp_path):
    return Workers(tmp_path)


@pytest.fixture
def pool(workers):
    started = []

    def start(module, how="function", env=None):
        p = workers.pool(module, how, env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


def task(id="t1", type="test.task", params=None, attempt=1, **extra):
    doc = {"id": id, "type": type, "params": params if params is not None else {}, "attempt": attempt}
    doc.update(extra)
    return doc


# The worker used by most subprocess tests: the action comes from params.
BEHAVIOURS = '''
import json, os, sys, time
from workerhost_sdk import worker, RetriableError, FatalError

STATE = {"served": 0}

class QuotaError(FatalError):
    pass

@worker
def handle(params, task):
    STATE["served"] += 1
    action = params.get("action", "echo")
    print("handler running", task.id, action)          # must land on stderr
    if action == "echo":
        return {"params": params, "id": task.id, "type": task.type, "attempt": task.attempt,
                "correlation_id": task.correlation_id, "pid": os.getpid(), "served": STATE["served"]}
    if action == "retriable":
        raise RetriableError("rate limited", details={"retry_after": 30})
    if action == "fatal":
        raise QuotaError("quota exceeded")
    if action == "timeout":
        raise TimeoutError("upstream took too long")
    if action == "crash":
        return {"x": 1 / 0}
    if action == "interrupt":
        raise KeyboardInterrupt
    if action == "exit":
        sys.exit(params["code"])
    if action == "progress":
        task.progress(10, "started")
        task.progress(55.5)
        task.progress(250, "clamped")
        return {"done": True}
    if action == "log":
        task.log("slow API", level="warning")
        return {}
    if action == "noisy":
        print("a print")
        sys.stdout.write("a write\\n")
        sys.__stdout__.write("to the original sys.stdout\\n")
        sys.__stdout__.flush()
        os.write(1, b"raw fd 1\\n")
        os.system("echo from a child process")
        return {"clean": True}
    if action == "read-stdin":
        return {"stdin": sys.stdin.read()}
    if action == "return":
        return params["value"]
    if action == "return-set":
        return {"s": {1, 2}}
    if action == "return-nan":
        return {"x": float("nan")}
    if action == "sleep":
        task.progress(1, "sleeping")
        time.sleep(params["seconds"])
        return {}
    raise ValueError("unknown action %r" % action)

if __name__ == "__main__":
    handle()
'''
