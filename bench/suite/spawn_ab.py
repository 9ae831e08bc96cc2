"""Spawn mode of two host binaries against the floor, interleaved (issue 16's comparison with a recorded
commit): the trivial binary, 8 at a time, each host run between two floor runs.

    bench/out/venv/bin/python bench/suite/spawn_ab.py --old <old release binary> [--adapter sqlite] [--rounds 2]

The new binary is target/release/workerhost (or WORKERHOST_BIN). Build the old one in a worktree:
`git worktree add /tmp/old <commit> && CARGO_TARGET_DIR=/tmp/old/target cargo build --release -p workerhost`
(run from /tmp/old)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import common  # noqa: E402
from common import ECHO  # noqa: E402
from throughput import drain_run, floor  # noqa: E402


def one(tag, binary, kind, n):
    common.BIN = binary
    import brokers
    brokers.BIN = binary
    folder = os.path.join(common.OUT, "spawn-ab")
    os.makedirs(folder, exist_ok=True)
    f1 = floor([ECHO], 8, n)
    r = drain_run(kind, folder, f"ab-{kind}", "echo", 8, n)
    f2 = floor([ECHO], 8, n)
    pair = (f1["per_s"] + f2["per_s"]) / 2
    print(f"{tag:4} {kind}: {r['per_s']:.0f}/s = {100 * r['per_s'] / pair:.1f}% of the floor ({pair:.0f}/s); "
          f"host {r['host_cpu_ms_per_task']:.3f}, workers {r['workers_cpu_ms_per_task']:.3f}, "
          f"machine {r['machine_cpu_ms_per_task']:.3f} ms/task", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--old", required=True)
    p.add_argument("--adapter", default="sqlite")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--tasks", type=int, default=6000)
    a = p.parse_args()
    new = common.BIN
    for _ in range(a.rounds):
        one("new", new, a.adapter, a.tasks)
        one("old", a.old, a.adapter, a.tasks)


if __name__ == "__main__":
    main()
