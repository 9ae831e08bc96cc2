"""The printed table, BENCHMARKS.md and the SVG chart, from one run's results."""
from chart import svg
from targets import targets

EARLIER = """## Earlier measurements (before this suite)

Kept for the record; the suite above supersedes them. Both scripts are still in `bench/`.

- `bench/redis_throughput.sh` (Redis 7.0, 2026-11-23): 5,000 no-op tasks, one host, `--concurrency 8`, worker =
  release `rust-echo-worker` (one process per task): 1,320-1,390 tasks/s wall (3.6-3.8 s, including start-up and the
  final empty read); `XADD` -> the worker's first line on an idle host, median of 100: 2.4-2.6 ms (p90 3.0-3.8 ms;
  about 1.5 ms of it is bash's own start-up).
- `bench/amqp_throughput.sh` (RabbitMQ 3.10.8, 2026-11-23, load average 2-3 from other builds): 5,000 no-op tasks,
  one host, `--concurrency 8` (prefetch 8), `rust-echo-worker`: 1,000-1,040 tasks/s wall (4.8-5.0 s, including the
  final empty 0.5 s claim), 1,120-1,170 tasks/s first to last success; `basic.publish` -> the worker's first line
  on an idle host, median of 100: 3.7 ms (p90 5.7-6.1 ms).
- Before the suite, on this machine: sqlite pool mode, 5,001 no-op tasks in 0.92 s (about 5,400/s), 18 MB RSS;
  sqlite spawn mode about 1,100/s against a threaded direct-spawn loop of about 1,500/s.
"""


def f0(x):
    return "-" if x is None else f"{x:,.0f}"


def f2(x):
    return "-" if x is None else f"{x:.2f}"


def f3(x):
    return "-" if x is None else f"{x:.3f}"


def mb(kb):
    return "-" if kb is None else f"{kb / 1024:.1f} MB"


def md_table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def text_table(head, rows):
    cols = list(zip(*([head] + [[str(c) for c in r] for r in rows]))) if rows else [[h] for h in head]
    w = [max(len(x) for x in c) for c in cols]
    line = lambda r: "  ".join(str(c).ljust(w[i]) for i, c in enumerate(r))  # noqa: E731
    return "\n".join([line(head), line(["-" * x for x in w])] + [line(r) for r in rows])


def other(runs):
    v = sorted(r.get("other_load_pct", 0) for r in runs)
    if not v:
        return ""
    return (f"Other load on the machine during these runs (not the host, its workers, the broker or the "
            f"harness): median {v[len(v) // 2]:.0f}%, at most {v[-1]:.0f}% of its cores.")


def tables(res):
    """(title, header, rows, note) per section that ran."""
    s = res["sections"]
    out = []
    if "spawn" in s:
        rows = []
        for w in s["spawn"]:
            fl = w["floor"]
            rows.append([w["label"], f"direct spawn loop ({w['parallel']} threads), mean of runs", f0(fl["per_s"]), "100%", "-",
                         f3(fl["cpu_ms_per_task"]) + " (the loop's own)", "-", "-"])
            for r in w["runs"]:
                rows.append([w["label"], f"workerhost, {r['adapter']} (floor beside it {f0(r['floor_per_s'])})", f0(r["per_s"]),
                             f"{100 * r['of_floor']:.1f}%",
                             f3(r["overhead_ms_per_task"]), f3(r["host_cpu_ms_per_task"]),
                             f3(r["broker_cpu_ms_per_task"]), f3(r["machine_cpu_ms_per_task"])])
        out.append(("1. Spawn floor vs spawn mode (one process per task, same parallelism)",
                    ["worker", "runner", "tasks/s", "of floor", "overhead ms/task", "host CPU ms/task",
                     "broker CPU ms/task", "machine CPU ms/task"], rows,
                    f"{s['spawn'][0]['tasks']:,} and {s['spawn'][-1]['tasks']:,} tasks per run, concurrency "
                    f"{s['spawn'][0]['parallel']}. " + other([r for w in s["spawn"] for r in w["runs"]])))
    if "pool" in s:
        rows = [[r["adapter"], r["concurrency"], f0(r["per_s"]), f0(r["per_s_wall"]), f3(r["host_cpu_ms_per_task"]),
                 f3(r["workers_cpu_ms_per_task"]), f3(r["broker_cpu_ms_per_task"]), f3(r["machine_cpu_ms_per_task"])]
                for r in s["pool"]]
        out.append(("2. Pool mode: no-op Python SDK worker, results stored",
                    ["broker", "concurrency", "tasks/s", "tasks/s incl. start-up", "host CPU ms/task",
                     "workers CPU ms/task", "broker CPU ms/task", "machine CPU ms/task"], rows,
                    f"{s['pool'][0]['tasks']:,} tasks per run; pool_size = concurrency. " + other(s["pool"])))
    if "latency" in s:
        lat = s["latency"]
        rows = [["(none: started directly; mean of before and after)", m, f3(v["median_ms"]), f3(v["p95_ms"]),
                 f3(v["min_ms"])]
                for m, v in lat["floor"].items()]
        rows += [[r["adapter"], r["mode"], f3(r["median_ms"]), f3(r["p95_ms"]), f3(r["min_ms"])] for r in lat["runs"]]
        out.append(("3. Latency: submit -> result visible, idle host",
                    ["task manager", "mode", "median ms", "p95 ms", "min ms"], rows,
                    "spawn = rust-echo-worker, spawn-py = the venv Python JSON worker, pool = the Python SDK "
                    f"worker in pool mode; {lat['runs'][0]['n'] if lat['runs'] else 0} tasks each (spawn-py fewer)."))
    if "memory" in s:
        m = s["memory"]
        rows = [["idle (started, nothing queued)", mb(m["idle_kb"])],
                [f"while draining {m['drain_tasks']:,} (max)", mb(m["draining_max_kb"])],
                ["idle after that", mb(m["after_drain_kb"])]]
        rows += [[f"soak of {m['soak_tasks']:,}: after {k}", mb(v)] for k, v in m["soak_kb"].items()]
        rows += [["soak max", mb(m["soak_max_kb"])], ["idle after the soak", mb(m["after_soak_kb"])]]
        out.append(("4. Host memory (RSS): Redis, pool mode, concurrency 8", ["when", "host RSS"], rows,
                    f"soak rate {f0(m['soak_per_s'])} tasks/s."))
    if "scaleout" in s:
        base = {r["adapter"]: r["per_s"] for r in s["scaleout"] if r["hosts"] == 1}
        rows = [[r["adapter"], r["hosts"], f0(r["per_s"]), f"{r['per_s'] / base[r['adapter']]:.2f}x",
                 f3(r["host_cpu_ms_per_task"]), f3(r["machine_cpu_ms_per_task"])] for r in s["scaleout"]]
        out.append(("5. Scale-out: hosts on one broker (pool mode, concurrency 8 each)",
                    ["broker", "hosts", "tasks/s", "vs one host", "host CPU ms/task (all hosts)",
                     "machine CPU ms/task"], rows,
                    f"{s['scaleout'][0]['tasks']:,} tasks per run. " + other(s["scaleout"])))
    if "peers" in s:
        best = {}
        for r in s.get("pool", []):
            best[r["adapter"]] = max(best.get(r["adapter"], 0), r["per_s"])
        rows = []
        for r in s["peers"]:
            ours = best.get(r["broker"])
            rows.append([r["peer"], r["broker"], f0(r["per_s"]), f3(r["machine_cpu_ms_per_task"]), f0(ours),
                         f"{ours / r['per_s']:.2f}x" if ours else "-"])
        out.append(("6. Peers: in-process Python queues on the same brokers (no-op jobs, results stored)",
                    ["peer", "broker", "jobs/s", "machine CPU ms/job", "workerhost pool (best) tasks/s",
                     "workerhost / peer"], rows,
                    f"{s['peers'][0]['tasks'] if s['peers'] else 0:,} jobs per run."))
    return out


def header(res):
    m = res["machine"]
    loads = [v for v in res["load"].values()]
    lo = min((min(v["before"][0], v["after"][0]) for v in loads), default=0)
    hi = max((max(v["before"][0], v["after"][0]) for v in loads), default=0)
    return (f"{m['date']}, commit {m['commit']}: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GiB, Linux "
            f"{m['kernel']}; {m['rustc']}; {m['python']}; Redis {m['redis']}; RabbitMQ {m['rabbitmq']}. Whole run "
            f"{res['elapsed_s'] / 60:.1f} min; the machine was {res['machine_busy_pct']}% busy on average over it; "
            f"1-minute load average between {lo:.2f} and {hi:.2f} at section boundaries.")


def render(res):
    ts = tables(res)
    tg = targets(res)
    text = ["", "workerhost benchmarks: " + header(res), ""]
    for title, head, rows, note in ts:
        text += [title, text_table(head, rows), note, ""]
    if tg:
        text += ["Targets (issue 8)", text_table(["target", "measured", "met"], tg), ""]
    md = ["# Benchmarks", "",
          "Generated by `bench/run` (one command: builds, prepares the bench-only venvs under `bench/out/`, runs every",
          "section below in one run on one machine, then writes this file and [BENCHMARKS.svg](BENCHMARKS.svg)).",
          "`bench/run --quick` is a smoke run; `--only spawn,latency` runs some sections. Raw figures of each run:",
          "`bench/out/run-*/results.json`.", "", "**Machine and run:** " + header(res), "",
          "![chart](BENCHMARKS.svg)", ""]
    if tg:
        md += ["## Targets (issue 8)", "", md_table(["target", "measured", "met"], tg), ""]
    for title, head, rows, note in ts:
        md += [f"## {title}", "", md_table(head, rows), "", note, ""]
    md += [METHOD, "", EARLIER]
    return "\n".join(text), "\n".join(md), svg(res)


METHOD = """## How it is measured

- Every task is a no-op. Tasks are enqueued first (sqlite: one transaction; Redis: pipelined `XADD`; RabbitMQ:
  persistent publishes to the durable queue the host declares), then the host is started (`workerhost run
  --log-format json --log-level info`; HTTP off) and stopped with SIGTERM once every result is stored. Each run
  uses its own sqlite file, stream or queue, deleted afterwards. Only loopback addresses.
- **tasks/s** is the steady rate: from the moment 10% of the results are stored to the moment all are, polled every
  10-20 ms from outside (sqlite: `count(*)` of settled rows; Redis: entries left in the stream, which settling
  deletes; RabbitMQ: messages in a queue bound to `result_exchange`, where the host publishes every result).
  "incl. start-up" counts from the host's start instead.
- **Spawn floor**: `spawn-floor` (bench/floor) starts the same worker the way the host does (argv, cleared
  environment plus the same variables, its own process group, piped stdio, the task document on stdin, stdout
  read to EOF) from N threads in a tight loop, run before and after the three hosts (the mean is the floor).
  **overhead ms/task** = 1000/rate(host) - 1000/rate(floor): the machine time each task costs more than the floor.
- **host CPU** is the host's own user + system time from its stop line (`workerhost stopped cpu_user_ms=..
  cpu_sys_ms=..`: getrusage of the host process, never its workers); **workers CPU** its reaped and live child
  processes; **broker CPU** the Redis or RabbitMQ server process; **machine CPU** everything on the machine
  (/proc/stat), which includes the benchmark's own client and anything else running meanwhile.
- **Latency**: one task at a time, 10 ms apart (the host is idle, waiting in its claim), timed from just before
  the submit (sqlite `INSERT`, `XADD`, `basic.publish` with `reply_to`) to the moment the client sees the stored
  result (sqlite row polled every 0.2 ms, Redis result key polled every 0.2 ms, RabbitMQ reply consumed), after
  10 warm-up tasks. The spawn floor is `spawn-floor latency`: the same worker started directly, one at a time.
- Each section starts once the machine has been quiet for a second (under 20% busy; at most 90 s of waiting),
  but the machine is shared: the notes under the tables give the other load measured during the runs.
- **Peers** run from a bench-only venv (`bench/requirements.txt`, installed into `bench/out/venv`, never a
  project dependency) on the same Redis and RabbitMQ: Huey (`huey_consumer -w 2`, threads and processes) and
  Celery (prefork, 2 processes, results in Redis); their jobs return a value so that a result is stored, as
  workerhost stores one. The ratio compares workerhost's best pool-mode rate on the same broker."""
