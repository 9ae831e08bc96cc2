#!/bin/sh
# Creates each Python example's own virtualenv, <example>/venv, with the real interpreter:
# `pip install -r requirements.txt` and the SDK from ../workers-sdk/python. Idempotent: a venv whose
# interpreter, requirements and SDK sources are unchanged since its last setup is left alone; otherwise
# it is made again from scratch (so a removed requirement does not linger).
#
#   examples/setup-venvs.sh [example ...]        # default: every Python example
#
# WORKERHOST_PYTHON  the interpreter to use (default: the real one behind python3, not a pyenv shim)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
sdk=$(cd "$here/../workers-sdk/python" && pwd)

py=${WORKERHOST_PYTHON:-}
if [ -z "$py" ]; then
  py=$(python3 -c 'import sys; print(sys.executable)') || {
    echo "setup-venvs: python3 is required" >&2
    exit 1
  }
fi

if [ "$#" -eq 0 ]; then
  set -- python-sdk-worker python-sdk-worker-legacy
fi

for example in "$@"; do
  dir="$here/$example"
  venv="$dir/venv"
  stamp="$venv/.workerhost-setup"
  [ -f "$dir/requirements.txt" ] || { echo "setup-venvs: $dir/requirements.txt is missing" >&2; exit 1; }
  want="$py $(cat "$dir/requirements.txt" "$sdk/pyproject.toml" "$sdk"/workerhost_sdk/*.py | cksum)"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] &&
    (cd / && "$venv/bin/python" -c 'import workerhost_sdk') >/dev/null 2>&1; then
    echo "== $example: venv up to date"
    continue
  fi
  echo "== $example: creating $venv"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  pip="$venv/bin/python -m pip --disable-pip-version-check -q"
  (cd "$dir" && $pip install -r requirements.txt)
  $pip install "$sdk"
  printf '%s\n' "$want" > "$stamp"
done
