"""Section 7: the host's own instructions per task, counted by `valgrind --tool=callgrind`.

CPU time per task depends on what else the cores are doing; instruction counts do not (the same binary,
inputs and environment give the same count whatever the machine's load). Comparing the two tells whether
the host does more work per task in some setting or the same work more slowly."""
import os
import re
import shutil
import subprocess

from brokers import BACKENDS
from common import BIN, log
from configs import host_config


def _collected(cfg):
    """Instructions of one `workerhost --burst` (the host process only: workers are not traced)."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", BIN, "--config", cfg, "--burst",
         "--log-format", "json"],
        capture_output=True, text=True, timeout=1200)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or not m:
        raise RuntimeError(f"callgrind run failed ({out.returncode}): {out.stderr[-2000:]}")
    return int(m.group(1))


def _run(kind, folder, name, worker, n):
    b = BACKENDS[kind](name, os.path.join(folder, name))
    os.makedirs(os.path.join(folder, name), exist_ok=True)
    cfg = host_config(folder, name, b, worker, 8, results=True)
    try:
        b.prepare(cfg)
        if n:
            b.enqueue(n, "noop")
        return _collected(cfg)
    finally:
        b.cleanup()


def instructions_section(folder, quick):
    if not shutil.which("valgrind"):
        log("  valgrind is not installed: section skipped")
        return {"skipped": "valgrind is not installed"}
    plan = [("echo", "trivial binary (rust-echo-worker)", 100 if quick else 1000),
            ("py", "venv Python JSON worker", 40 if quick else 300)]
    runs = []
    for kind in ("sqlite", "redis"):
        empty = _run(kind, folder, f"instr-empty-{kind}", "echo", 0)
        for worker, label, n in plan:
            total = _run(kind, folder, f"instr-{worker}-{kind}", worker, n)
            per = (total - empty) / n
            log(f"  {kind:6} {worker}: {per / 1000:,.0f}k instructions a task ({n} tasks; start-up and stop "
                f"{empty / 1e6:.1f}M)")
            runs.append({"adapter": kind, "worker": worker, "label": label, "tasks": n, "total": total,
                         "empty": empty, "per_task": round(per)})
    return {"runs": runs}
