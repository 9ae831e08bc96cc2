#!/usr/bin/env bash
# AMQP (RabbitMQ) task manager figures, reproducible: (1) tasks per second for N no-op tasks through one
# host with a trivial binary worker (the release rust-echo-worker) at concurrency 8; (2) time from
# basic.publish to the worker's start on an idle host, median of 100. Uses the RabbitMQ at $AMQP_URL
# (default the machine's, guest/guest) with a unique queue, deleted afterwards. Publishing uses
# bench/amqp_client.py (standard-library Python, no client library needed).
#   bench/amqp_throughput.sh            # N=5000
#   N=20000 bench/amqp_throughput.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-5000}"
URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
QUEUE="bench.amqp.$$"
OUT="bench/out/amqp-$$"
CLIENT="$PWD/bench/amqp_client.py"

cargo build --release -q -p workerhost -p example-rust-worker
BIN="$PWD/target/release/workerhost"
WORKER="$PWD/target/release/rust-echo-worker"
mkdir -p "$OUT"
cleanup() {
  [ -n "${HOST_PID:-}" ] && kill "$HOST_PID" 2>/dev/null && wait "$HOST_PID" 2>/dev/null || true
  python3 "$CLIENT" "$URL" "$QUEUE" delete || true
}
trap cleanup EXIT

cat > "$OUT/start.sh" <<'W'
#!/bin/bash
echo "$WORKERHOST_TASK_ID $EPOCHREALTIME" >> starts.log
read -r doc
echo '{"success": true}'
W
chmod +x "$OUT/start.sh"
cat > "$OUT/workerhost_config.yaml" <<YAML
version: "1.0"
host:
  concurrency: 8
  http: { listen: "off" }
task_manager:
  type: amqp
  url: "$URL"
  queue: "$QUEUE"
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

# (1) throughput: publish N tasks (one connection, pipelined), then one host in --burst mode drains them.
"$BIN" --config workerhost_config.yaml check >/dev/null   # declares the queue
queued=$(python3 "$CLIENT" "$URL" "$QUEUE" publish "$N" demo.reverse)
t0=$(date +%s.%N)
"$BIN" --config workerhost_config.yaml --burst --log-format json 2>host-burst.log
t1=$(date +%s.%N)
python3 - "$N" "$queued" "$t0" "$t1" <<'PY'
import datetime, json, sys
n, queued, t0, t1 = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
p = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
done = []
for line in open("host-burst.log"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") == "task_succeeded":
        done.append(p(e["timestamp"]))
wall = t1 - t0
print(f"throughput: {n} tasks queued ({queued} counted by the broker), {len(done)} succeeded")
print(f"  wall (process start to exit, incl. start-up and the final empty 0.5 s claim): {wall:.2f} s = {n / wall:.0f} tasks/s")
if len(done) > 1:
    span = max(done) - min(done)
    print(f"  first to last success (host log): {span:.2f} s = {(len(done) - 1) / span:.0f} tasks/s")
PY

# (2) latency: an idle host (waiting in its claim); 100 publishes, one at a time, from one open connection;
# the worker's first line writes bash's $EPOCHREALTIME (no fork).
: > starts.log
"$BIN" --config workerhost_config.yaml 2>host-idle.log &
HOST_PID=$!
sleep 1.5
python3 "$CLIENT" "$URL" "$QUEUE" latency bench.start starts.log
