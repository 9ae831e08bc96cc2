"""An example workerhost worker in plain Python (standard library only).

Run by hand:
    echo '{"id":"1","type":"demo.echo","params":{"message":"hi"}}' | python3 -c "from echo_worker import main; main()"

Protocol: one JSON task on stdin, one JSON result on stdout, debug output on stderr,
exit 0 success, 1 retriable failure, 2 non-retriable failure, 3 timeout.
"""
import json
import os
import sys


def main():
    try:
        task = json.load(sys.stdin)
    except ValueError as e:
        print(json.dumps({"success": False, "error": f"stdin is not JSON: {e}", "retriable": False}))
        sys.exit(2)
    params = task.get("params") or {}
    print(f"echo worker got task {task.get('id')} attempt {task.get('attempt')}", file=sys.stderr)
    if "fail" in params:
        # A failure the host should retry.
        print(json.dumps({"success": False, "error": str(params["fail"])}))
        sys.exit(1)
    result = {
        "echo": params,
        "task_id": task.get("id"),
        "pid": os.getpid(),
        "python": sys.version.split()[0],
    }
    print(json.dumps({"success": True, "result": result,
                      "logs": [{"level": "info", "message": "echoed %d params" % len(params)}]}))


if __name__ == "__main__":
    main()
