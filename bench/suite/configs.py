"""Host configs for the benchmarks, and the workers they run."""
import os

from common import ECHO, WORKER_PY, WORKERS, write

PY_SPAWN_ARGV = [WORKER_PY, "-c", "from py_json import main; main()"]


def worker_yaml(worker, pool_size=None):
    """`echo`: the release rust-echo-worker (a trivial binary); `py`: a venv Python JSON worker (standard
    library only); `pool`: the no-op Python SDK worker in pool mode."""
    if worker == "echo":
        return f'  - name: echo\n    command: ["{ECHO}"]\n    task_types: [noop]\n'
    if worker == "py":
        return (f'  - name: py\n    venv_python: "{WORKER_PY}"\n    project_path: "{WORKERS}"\n'
                f"    module: py_json\n    function: main\n    task_types: [noop]\n")
    if worker == "pool":
        return (f'  - name: pool\n    venv_python: "{WORKER_PY}"\n    project_path: "{WORKERS}"\n'
                f"    module: noop_sdk\n    function: handle\n    task_types: [noop]\n"
                f"    mode: pool\n    pool_size: {pool_size}\n")
    raise ValueError(worker)


def host_config(folder, name, backend, worker, concurrency, results=True):
    text = (
        'version: "1.0"\n'
        "host:\n"
        f"  concurrency: {concurrency}\n"
        "  shutdown_grace_seconds: 10\n"
        '  http: { listen: "off" }\n'
        + backend.tm_yaml(results)
        + "workers:\n"
        + worker_yaml(worker, pool_size=concurrency)
    )
    return write(os.path.join(folder, name, "workerhost_config.yaml"), text)
