"""What every section shares: paths, the host process, CPU and memory readings, completion polling."""
import json
import os
import re
import signal
import statistics
import subprocess
import time

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("WORKERHOST_BIN") or os.path.join(ROOT, "target", "release", "workerhost")
FLOOR = os.path.join(ROOT, "target", "release", "spawn-floor")
ECHO = os.path.join(ROOT, "target", "release", "rust-echo-worker")
WORKERS = os.path.join(ROOT, "bench", "workers")
WORKER_PY = os.path.join(ROOT, "bench", "out", "worker-venv", "bin", "python")
OUT = os.path.join(ROOT, "bench", "out")
TICK = os.sysconf("SC_CLK_TCK")
ADAPTERS = ["sqlite", "redis", "amqp", "postgres"]
RUN_ID = "%x" % (int(time.time()) % 0xFFFFFF) + "%x" % os.getpid()


def log(msg):
    print(msg, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def machine_busy_ms():
    """CPU time spent by everything on the machine (all cores, not idle or iowait), in ms."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    busy = sum(parts[:8]) - parts[3] - parts[4]
    return busy * 1000 / TICK


def wait_quiet(max_wait=90.0, busy_pct=20.0):
    """Waits (at most `max_wait` s) for a second in which the machine is less than `busy_pct`% busy, so that
    a section does not start in the middle of somebody else's build. Returns the seconds waited and the
    busy share of the last second."""
    t0 = time.monotonic()
    while True:
        b0 = machine_busy_ms()
        time.sleep(1.0)
        busy = 100 * (machine_busy_ms() - b0) / (1000 * (os.cpu_count() or 1))
        waited = time.monotonic() - t0
        if busy < busy_pct or waited >= max_wait:
            return round(waited, 1), round(busy, 1)


def proc_cpu_ms(pid, children=False):
    """A process's own CPU (user + system) in ms; with `children`, plus its reaped children's."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            after = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    own = int(after[11]) + int(after[12])
    if children:
        own += int(after[13]) + int(after[14])
    return own * 1000 / TICK


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def child_pids(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except FileNotFoundError:
        pass
    return out


def broker_cpu_ms(pid):
    """The broker's CPU (user + system) in ms. PostgreSQL serves each connection from a process of its own,
    a child of the one listening, so there the children count too: live ones and those that exited."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            forks = f.read().strip() == "postgres"
    except FileNotFoundError:
        return 0.0
    if not forks:
        return proc_cpu_ms(pid)
    return proc_cpu_ms(pid, children=True) + sum(proc_cpu_ms(c) for c in child_pids(pid))


def listener_pid(port):
    """The pid of the process listening on 127.0.0.1:`port` (the broker), or None."""
    try:
        text = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"pid=(\d+)", text)
    return int(m.group(1)) if m else None


def pct(values, q):
    v = sorted(values)
    if not v:
        return float("nan")
    i = min(len(v) - 1, max(0, int(round(q * len(v) + 0.5)) - 1))
    return v[i]


def summary_ms(values):
    return {
        "n": len(values),
        "median_ms": round(statistics.median(values), 3) if values else None,
        "p95_ms": round(pct(values, 0.95), 3) if values else None,
        "min_ms": round(min(values), 3) if values else None,
    }


class Host:
    """One `workerhost` process (run mode, JSON logs), stopped with SIGTERM by the caller."""

    def __init__(self, config, tag, args=()):
        self.config = config
        self.log_path = os.path.join(os.path.dirname(config), f"host-{tag}.log")
        self.args = list(args)
        self.proc = None
        self.started = None

    def start(self):
        self.logf = open(self.log_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [BIN, "--config", self.config, "--log-format", "json", "--log-level", "info", *self.args],
            stdout=subprocess.DEVNULL, stderr=self.logf, cwd=os.path.dirname(self.config),
        )
        return self

    @property
    def pid(self):
        return self.proc.pid

    def wait_ready(self, timeout=10.0):
        """Until the host logged that it started (it connects to its task manager before that)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"workerhost exited early: see {self.log_path}")
            with open(self.log_path, "rb") as f:
                if b"workerhost starting" in f.read():
                    return
            time.sleep(0.02)
        raise RuntimeError(f"workerhost did not start within {timeout} s: see {self.log_path}")

    def workers_cpu_ms(self):
        """CPU of its worker processes: reaped ones (spawn mode) and live ones (pool mode)."""
        own = proc_cpu_ms(self.pid)
        total = proc_cpu_ms(self.pid, children=True)
        live = sum(proc_cpu_ms(c) for c in child_pids(self.pid))
        return total - own + live

    def stop(self, timeout=60.0):
        """SIGTERM, then the stop line: returns the host's own CPU ms (user + system)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.logf.close()
        return stop_cpu_ms(self.log_path)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def stop_cpu_ms(log_path):
    cpu = None
    with open(log_path, "rb") as f:
        for line in f:
            if b"workerhost stopped" not in line:
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            cpu = e.get("cpu_user_ms", 0) + e.get("cpu_sys_ms", 0)
    return cpu


def count_events(log_path, event):
    needle = f'"event":"{event}"'.encode()
    with open(log_path, "rb") as f:
        return sum(1 for line in f if needle in line)


def drain(done, total, started, timeout, interval=0.01, on_sample=None):
    """Polls `done()` until it reaches `total`. Returns the timing of the drain: wall from `started` (the
    host's start) and the steady rate between 10% and 100% of the tasks (start-up excluded).

    `done()` may cost the system under test (a `count(*)` of PostgreSQL's or SQLite's finished rows reads
    thousands of rows), so the poll slows down while the end is far: it waits a twentieth of the time the
    remaining tasks should take at the rate so far (at most 0.25 s), and `interval` once the end is near.
    Only the end needs the fine poll: the 10% mark records the count it saw, not 10% exactly."""
    deadline = time.monotonic() + timeout
    t10 = n10 = None
    t0 = n0 = None
    n = 0
    while True:
        now = time.monotonic()
        n = done()
        if on_sample:
            on_sample(now, n)
        if n0 is None:
            t0, n0 = now, n
        if t10 is None and n >= 0.1 * total:
            t10, n10 = now, n
        if n >= total:
            break
        if now > deadline:
            raise RuntimeError(f"only {n} of {total} tasks done after {timeout:.0f} s")
        wait = interval
        if on_sample is None and n > n0 and now > t0:
            eta = (total - n) / ((n - n0) / (now - t0))
            wait = min(0.25, max(interval, eta / 20))
        time.sleep(wait)
    end = time.monotonic()
    wall = end - started
    steady = (total - n10) / (end - t10) if end > t10 and total > n10 else total / wall
    return {"tasks": total, "wall_s": round(wall, 3), "per_s_wall": round(total / wall, 1),
            "per_s": round(steady, 1), "end": end}


class Meter:
    """Machine, broker and bench CPU over one measured stretch."""

    def __init__(self, broker_pid=None):
        self.broker_pid = broker_pid
        self.m0 = machine_busy_ms()
        self.b0 = broker_cpu_ms(broker_pid) if broker_pid else 0.0
        self.s0 = proc_cpu_ms(os.getpid())

    def read(self):
        return {
            "machine_ms": machine_busy_ms() - self.m0,
            "broker_ms": (broker_cpu_ms(self.broker_pid) - self.b0) if self.broker_pid else 0.0,
            "bench_ms": proc_cpu_ms(os.getpid()) - self.s0,
        }


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path
