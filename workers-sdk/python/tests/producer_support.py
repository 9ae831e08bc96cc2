"""Helpers of the producer-side tests: the built `workerhost` binary, a config with one SDK worker that
echoes its params, `workerhost submit` and a burst run of the host, against the real servers."""

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
ECHO_WORKER = '''
from workerhost_sdk import worker

@worker
def handle(params, task):
    if params.get("fail"):
        raise ValueError("asked to fail")
    return {"echo": params}
'''


def binary():
    """The built host binary (`$WORKERHOST_BIN`, else the workspace's debug build)."""
    path = os.environ.get("WORKERHOST_BIN") or str(REPO / "target" / "debug" / "workerhost")
    if not os.access(path, os.X_OK):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing: build it first (cargo build), CI=true never skips")
        pytest.skip(f"{path} is missing: build the workspace first (cargo build)")
    return path


def unique(prefix):
    return f"{prefix}{uuid.uuid4().hex[:10]}"


class Host:
    """A config file in `folder` for `task_manager` with the echo worker for type `Echo`."""

    def __init__(self, folder, task_manager):
        self.folder = Path(folder)
        self.bin = binary()
        (self.folder / "echo_worker.py").write_text(ECHO_WORKER)
        tm = "\n".join(f"  {k}: {json.dumps(v)}" for k, v in task_manager.items())
        self.config = self.folder / "workerhost_config.yaml"
        self.config.write_text(textwrap.dedent("""\
            version: "1.0"
            host:
              http: {{ listen: "off" }}
            task_manager:
            {tm}
            defaults:
              max_retries: 0
            workers:
              - name: echo
                project_path: "."
                venv_python: {python}
                module: echo_worker
                function: handle
                task_types: ["Echo"]
            """).format(tm=tm, python=json.dumps(sys.executable)))

    def cli(self, *args, check=True, timeout=120):
        p = subprocess.run([self.bin, "--config", str(self.config), *args], capture_output=True, text=True,
                           timeout=timeout, cwd=self.folder)
        if check and p.returncode != 0:
            raise AssertionError(f"workerhost {' '.join(args)} exited {p.returncode}: {p.stderr}{p.stdout}")
        return p

    def submit(self, task_type, params, *flags):
        return self.cli("submit", "--type", task_type, "--params", json.dumps(params), *flags).stdout.strip()

    def burst(self):
        """Runs the host until its queue is empty (`run --burst`)."""
        return self.cli("run", "--burst", timeout=300)


def same_result(a, b):
    """Two result documents equal but for what differs between any two runs (ids, times, host)."""
    drop = {"id", "host", "started_at", "finished_at", "duration_ms", "usage", "worker"}
    return {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
