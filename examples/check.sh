#!/bin/sh
# Smoke check of the examples: sets up the Python examples' venvs (`workerhost setup` with the repository's
# workerhost_config.yaml; $WORKERHOST names the binary, default target/release/workerhost), then runs each
# example by hand the way its README shows (`echo '{"id":"1",...}' | worker`) and checks the exit code
# and the result line. Exit 0 when every check passes.
#
#   examples/check.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
W=${WORKERHOST:-$here/../target/release/workerhost}
[ -x "$W" ] || (cd "$here/.." && cargo build --release --locked -p workerhost) || exit 1
"$W" setup --config "$(cd "$here/.." && pwd)/workerhost_config.yaml" || exit 1

failures=0
out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT

# check NAME DIR EXPECTED_EXIT COMMAND TEXT...: runs COMMAND (a shell line) in DIR; its exit code must be
# EXPECTED_EXIT and its stdout must contain every TEXT.
check() {
  name=$1 dir=$2 want=$3 cmd=$4
  shift 4
  (cd "$here/$dir" && sh -c "$cmd") >"$out" 2>"$err"
  got=$?
  ok=yes
  [ "$got" -eq "$want" ] || ok=no
  for text in "$@"; do
    grep -qF -- "$text" "$out" || ok=no
  done
  if [ "$ok" = yes ]; then
    echo "ok    $name"
  else
    failures=$((failures + 1))
    echo "FAIL  $name: exit $got (want $want)"
    sed 's/^/      stdout: /' "$out"
    tail -n 5 "$err" | sed 's/^/      stderr: /'
  fi
}

# Each spawn-mode result must be exactly one line.
one_line() {
  [ "$(wc -l <"$out" | tr -d ' ')" = 1 ] || { failures=$((failures + 1)); echo "FAIL  $1: stdout is not one line"; }
}

check "python-sdk-worker: bump" python-sdk-worker 0 \
  "echo '{\"id\":\"1\",\"type\":\"demo.semver.bump\",\"params\":{\"version\":\"1.2.3\",\"part\":\"minor\"}}' | venv/bin/python -c 'from semver_worker import handle; handle()'" \
  '"success": true' '"version": "1.3.0"' '"semver": "3.0.2"'
one_line "python-sdk-worker: bump"

check "python-sdk-worker: invalid version is non-retriable" python-sdk-worker 2 \
  "echo '{\"id\":\"2\",\"type\":\"demo.semver.bump\",\"params\":{\"version\":\"x.y\"}}' | venv/bin/python -m semver_worker" \
  '"InvalidVersion"' '"retry_possible": false'
one_line "python-sdk-worker: invalid version"

check "python-sdk-worker: pool mode" python-sdk-worker 0 \
  "printf '%s\n' '{\"id\":\"a\",\"type\":\"demo.semver.bump\",\"params\":{\"version\":\"1.2\"}}' '{\"id\":\"b\",\"type\":\"demo.semver.bump\",\"params\":{\"version\":\"2.0.0\",\"part\":\"major\"}}' | WORKERHOST_MODE=pool venv/bin/python -m semver_worker" \
  '{"id": "a", "success": true' '"version": "1.2.1"' '{"id": "b", "success": true' '"version": "3.0.0"'

check "python-sdk-worker-legacy: bump with semver 2" python-sdk-worker-legacy 0 \
  "echo '{\"id\":\"1\",\"type\":\"demo.semver.bump-legacy\",\"params\":{\"version\":\"1.2.3\",\"part\":\"minor\"}}' | venv/bin/python -c 'from legacy_worker import handle; handle()'" \
  '"success": true' '"version": "1.3.0"' '"semver": "2.13.0"'
one_line "python-sdk-worker-legacy: bump"

check "the semver 3 worker in the semver 2 venv fails (the conflict)" python-sdk-worker 1 \
  "echo '{\"id\":\"3\",\"type\":\"demo.semver.bump\",\"params\":{\"version\":\"1.2.3\"}}' | ../python-sdk-worker-legacy/venv/bin/python -m semver_worker" \
  "has no attribute 'Version'"

check "shell-worker: info" shell-worker 0 \
  "echo '{\"id\":\"1\",\"type\":\"demo.shell.info\",\"params\":{\"who\":\"me\"}}' | ./worker.sh" \
  '"success": true' '"who":"me"'
one_line "shell-worker: info"

check "shell-worker: retriable failure" shell-worker 1 \
  "echo '{\"id\":\"2\",\"type\":\"demo.shell.info\",\"params\":{\"fail\":\"retry\"}}' | ./worker.sh" \
  '"success": false' '"retry_possible": true'

check "shell-worker: pool mode under dash" shell-worker 0 \
  "printf '%s\n' '{\"id\":\"a\",\"type\":\"demo.shell.info\",\"params\":{}}' '{\"id\":\"b\",\"type\":\"demo.shell.info\",\"params\":{\"fail\":\"no\"}}' | WORKERHOST_MODE=pool $(command -v dash || echo sh) ./worker.sh" \
  '{"id": "a", "success": true' '{"id": "b", "success": false' '"retriable": false'

if [ "$failures" -ne 0 ]; then
  echo "== examples/check.sh: $failures failed"
  exit 1
fi
echo "== examples/check.sh: all passed"
