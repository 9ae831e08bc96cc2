#!/bin/sh
# demo.shell.info: a workerhost worker in POSIX sh (no bash-isms, no jq). It answers with facts about the
# machine and the task document it received, to show the protocol in its plainest form.
#
# Spawn mode (the default): read the task document from stdin to the end, write one result line to
# stdout, exit 0 (success), 1 (retriable failure) or 2 (non-retriable failure). Debug output and progress
# lines go to stderr.
# Pool mode (WORKERHOST_MODE=pool, set by the host for `mode: pool`): one task per line in, one result per
# line out carrying the task's "id", until stdin ends.
#
# Params: {"fail": "retry"} fails retriably, {"fail": "fatal"} non-retriably.
#
# Real shell workers with structured params should use jq; this one only pattern-matches, so it reads the
# task id with awk (the first "id" key, which is where the host puts it) and embeds the task document in
# its result as it came.

# answer DOCUMENT: prints the result for one task document and returns the protocol's exit code.
answer() {
  doc=$1
  id=''
  id_field=''
  if [ "${WORKERHOST_MODE:-spawn}" = pool ]; then
    id=$(printf '%s\n' "$doc" | awk 'match($0, /"id"[ \t]*:[ \t]*"[^"\\]*"/) {
      s = substr($0, RSTART, RLENGTH); sub(/^"id"[ \t]*:[ \t]*"/, "", s); sub(/"$/, "", s); print s; exit }')
    if [ -n "$id" ]; then id_field="\"id\": \"$id\", "; else id_field='"id": null, '; fi
  fi
  case $doc in
    '{'*'}') [ "${WORKERHOST_MODE:-spawn}" != pool ] || [ -n "$id" ] || {
      printf '{"id": null, "success": false, "error": "not a task document (no string id)", "retriable": false}\n'
      return 2
    } ;;
    *)
      printf '{%s"success": false, "error": "not a task document (expected a JSON object)", "retriable": false}\n' "$id_field"
      return 2 ;;
  esac
  case $doc in
    *'"fail"'*'"retry"'*)
      echo "asked to fail (retriable)" >&2
      printf '{%s"success": false, "error": {"type": "Asked", "message": "failing as asked", "retry_possible": true}}\n' "$id_field"
      return 1 ;;
    *'"fail"'*)
      echo "asked to fail (non-retriable)" >&2
      printf '{%s"success": false, "error": {"type": "Asked", "message": "failing as asked", "retry_possible": false}, "retriable": false}\n' "$id_field"
      return 2 ;;
  esac
  echo '{"progress": 50, "message": "looking around"}' >&2
  bytes=$(printf '%s' "$doc" | wc -c | tr -d ' ')
  printf '{%s"success": true, "result": {"task": %s, "bytes": %s, "system": "%s", "pid": %s, "mode": "%s"}, "logs": [{"level": "info", "message": "answered from sh"}]}\n' \
    "$id_field" "$doc" "$bytes" "$(uname -s)" "$$" "${WORKERHOST_MODE:-spawn}"
  return 0
}

# trim TEXT: TEXT without leading and trailing whitespace.
trim() {
  t=${1#"${1%%[![:space:]]*}"}
  printf '%s' "${t%"${t##*[![:space:]]}"}"
}

case ${WORKERHOST_MODE:-spawn} in
  pool)
    while IFS= read -r line || [ -n "$line" ]; do
      line=$(trim "$line")
      [ -n "$line" ] || continue
      answer "$line" || true
    done
    exit 0 ;;
  spawn)
    echo "shell worker: task ${WORKERHOST_TASK_ID:-(by hand)}" >&2
    task=$(cat)
    answer "$(trim "$task")"
    exit $? ;;
  *)
    echo "shell worker: WORKERHOST_MODE=$WORKERHOST_MODE: expected spawn or pool" >&2
    exit 2 ;;
esac
