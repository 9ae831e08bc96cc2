#!/usr/bin/env bash
# Redis task manager figures, reproducible: (1) tasks per second for N no-op tasks through one host with a
# trivial binary worker (the release rust-echo-worker) at concurrency 8; (2) time from XADD to the worker's
# start on an idle host, median of 100. Uses the Redis at $REDIS_URL (default the machine's) with a
# unique stream, deleted afterwards.
#   bench/redis_throughput.sh            # N=5000
#   N=20000 bench/redis_throughput.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-5000}"
REDIS_HOST="${REDIS_HOST:-127.0.0.1}"
REDIS_PORT="${REDIS_PORT:-6379}"
URL="redis://$REDIS_HOST:$REDIS_PORT/0"
STREAM="bench:$$"
OUT="bench/out/redis-$$"
rcli() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"; }

cargo build --release -q -p workerhost -p example-rust-worker
BIN="$PWD/target/release/workerhost"
WORKER="$PWD/target/release/rust-echo-worker"
mkdir -p "$OUT"
cleanup() {
  [ -n "${HOST_PID:-}" ] && kill "$HOST_PID" 2>/dev/null && wait "$HOST_PID" 2>/dev/null || true
  rcli --scan --pattern "$STREAM*" | xargs -r redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" DEL >/dev/null
}
trap cleanup EXIT

cat > "$OUT/start.sh" <<'SH'
#!/bin/bash
echo "$WORKERHOST_TASK_ID $EPOCHREALTIME" >> starts.log
read -r doc
echo '{"success": true}'
SH
chmod +x "$OUT/start.sh"
cat > "$OUT/workerhost_config.yaml" <<YAML
version: "1.0"
host:
  concurrency: 8
  http: { listen: "off" }
  logging: { level: warn }
task_manager:
  type: redis
  url: "$URL"
  stream: "$STREAM"
  block_ms: 100
workers:
  - name: echo
    command: ["$WORKER"]
    task_types: [demo.reverse]
  - name: start
    command: ["./start.sh"]
    project_path: .
    task_types: [bench.start]
YAML
cd "$OUT"

# (1) throughput: enqueue N tasks (one pipelined batch), then one host in --burst mode drains them.
python3 - "$N" "$STREAM" <<'PY' | rcli --pipe >/dev/null
import json, sys
n, stream = int(sys.argv[1]), sys.argv[2]
out = sys.stdout.buffer
for i in range(1, n + 1):
    args = ["XADD", stream, "*", "task", json.dumps({"id": f"t{i}", "type": "demo.reverse", "params": {"text": "abc"}})]
    out.write(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args))
PY
rcli XGROUP CREATE "$STREAM" workerhost 0 MKSTREAM >/dev/null 2>&1 || true
t0=$(date +%s.%N)
"$BIN" --config workerhost_config.yaml --burst 2>host-burst.log
t1=$(date +%s.%N)
left=$(rcli XLEN "$STREAM")
ok=$(rcli --scan --pattern "$STREAM:result:*" | wc -l)
# The host's own view: first task started to last finished, from the result documents.
span=$(rcli --scan --pattern "$STREAM:result:*" | head -n 100000 | xargs -n 500 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" MGET \
  | python3 -c '
import sys, json, datetime
p = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
docs = [json.loads(l) for l in sys.stdin if l.startswith("{")]
print("%.3f" % (max(p(d["finished_at"]) for d in docs) - min(p(d["started_at"]) for d in docs)))')
python3 - "$N" "$t0" "$t1" "$span" "$ok" "$left" <<'PY'
import sys
n, t0, t1, span, ok, left = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
wall = t1 - t0
print(f"throughput: {n} tasks, {ok} results, {left} left in the stream")
print(f"  wall (process start to exit, incl. start-up and the final empty 100 ms read): {wall:.2f} s = {n / wall:.0f} tasks/s")
print(f"  first start to last finish (result documents): {span:.2f} s = {n / span:.0f} tasks/s")
PY

# (2) latency: an idle host (blocked in XREADGROUP, block_ms 1000); 100 XADDs, one at a time, from one open
# connection; the worker's first line writes bash's $EPOCHREALTIME (no fork).
sed -i 's/block_ms: 100/block_ms: 1000/' workerhost_config.yaml
: > starts.log
"$BIN" --config workerhost_config.yaml 2>host-idle.log &
HOST_PID=$!
sleep 1.5
python3 - "$REDIS_HOST" "$REDIS_PORT" "$STREAM" <<'PY'
import json, os, socket, statistics, sys, time
host, port, stream = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port))
def cmd(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    s.sendall(out)
    return s.recv(4096)
def starts():
    try:
        return dict(l.split() for l in open("starts.log") if l.strip())
    except FileNotFoundError:
        return {}
lat = []
for i in range(100):
    tid = f"lat{i}"
    task = json.dumps({"id": tid, "type": "bench.start", "params": {}})
    time.sleep(0.2)  # idle again: the host is back in its blocking read
    t0 = time.time()
    cmd("XADD", stream, "*", "task", task)
    deadline = t0 + 10
    while tid not in (st := starts()):
        if time.time() > deadline:
            sys.exit(f"task {tid} never started")
        time.sleep(0.002)
    lat.append((float(st[tid]) - t0) * 1000)
lat.sort()
print(f"latency XADD -> worker start, 100 tasks on an idle host: median {statistics.median(lat):.2f} ms, "
      f"p90 {lat[89]:.2f} ms, min {lat[0]:.2f} ms, max {lat[-1]:.2f} ms")
PY
