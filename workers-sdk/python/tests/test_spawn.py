"""Spawn mode through real processes: one task document on stdin, one result on stdout, the exit code."""

import json
import signal
import subprocess
import time

import pytest

from conftest import BEHAVIOURS, TIMEOUT, clean_env, result_of, task


@pytest.fixture
def behaviours(workers):
    return workers.module("behaviours", BEHAVIOURS)


@pytest.mark.parametrize("how", ["function", "-m"])
@pytest.mark.parametrize("mode", ["spawn", None])
def test_success_both_invocations(workers, behaviours, how, mode):
    doc = task(params={"action": "echo", "k": [1, "two"]}, attempt=2, correlation_id="c0ffee")
    proc = workers.spawn(behaviours, doc, how=how, env=clean_env(mode))
    assert proc.returncode == 0, proc.stderr
    assert result_of(proc) == {"success": True, "result": {
        "params": {"action": "echo", "k": [1, "two"]}, "id": "t1", "type": "test.task", "attempt": 2,
        "correlation_id": "c0ffee", "pid": result_of(proc)["result"]["pid"], "served": 1}}
    assert "handler running t1 echo" in proc.stderr


def test_retriable_error(workers, behaviours):
    proc = workers.spawn(behaviours, task(params={"action": "retriable"}))
    assert proc.returncode == 1
    doc = result_of(proc)
    assert doc == {"success": False, "error": {"retry_after": 30, "type": "RetriableError",
                                               "message": "rate limited", "retry_possible": True}}


def test_fatal_error(workers, behaviours):
    proc = workers.spawn(behaviours, task(params={"action": "fatal"}))
    assert proc.returncode == 2
    doc = result_of(proc)
    assert doc["error"] == {"type": "QuotaError", "message": "quota exceeded", "retry_possible": False}
    assert doc["retriable"] is False


def test_timeout_error(workers, behaviours):
    proc = workers.spawn(behaviours, task(params={"action": "timeout"}))
    assert proc.returncode == 3
    assert result_of(proc)["error"]["type"] == "TimeoutError"


def test_unexpected_exception_carries_the_traceback(workers, behaviours):
    proc = workers.spawn(behaviours, task(params={"action": "crash"}))
    assert proc.returncode == 1
    error = result_of(proc)["error"]
    assert error["type"] == "ZeroDivisionError"
    assert error["retry_possible"] is True
    assert "behaviours.py" in error["traceback"] and "in handle" in error["traceback"]
    assert "ZeroDivisionError" in proc.stderr  # readable by hand too


def test_keyboard_interrupt_in_the_handler(workers, behaviours):
    proc = workers.spawn(behaviours, task(params={"action": "interrupt"}))
    assert proc.returncode == 130
    assert result_of(proc)["error"]["type"] == "KeyboardInterrupt"


def test_sigint_while_the_handler_runs(workers, behaviours):
    p = subprocess.Popen(workers.argv(behaviours), cwd=str(workers.folder), env=clean_env("spawn"),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(json.dumps(task(params={"action": "sleep", "seconds": 60})).encode())
        p.stdin.close()
        deadline = time.monotonic() + TIMEOUT
        seen = b""
        while b'"progress"' not in seen and time.monotonic() < deadline:
            seen += p.stderr.readline()
        assert b'{"progress": 1, "message": "sleeping"}' in seen
        p.send_signal(signal.SIGINT)
        p.wait(timeout=TIMEOUT)
        out = p.stdout.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()
    assert p.returncode == 130
    assert json.loads(out)["error"]["type"] == "KeyboardInterrupt"


@pytest.mark.parametrize("code,expected", [(2, 2), (3, 3), (0, 1), (7, 1)])
def test_sys_exit_in_the_handler(workers, behaviours, code, expected):
    proc = workers.spawn(behaviours, task(params={"action": "exit", "code": code}))
    assert proc.returncode == expected
    assert result_of(proc)["error"]["type"] == "SystemExit"


@pytest.mark.parametrize("stdin,message", [
    ("", "not JSON"),
    ("{not json", "not JSON"),
    ("[1]", "JSON object"),
    ('{"id": "1", "params": {}}', "type must be a string"),
    ('{"id": "1", "type": "t", "params": "x"}', "params must be an object"),
])
def test_stdin_that_is_not_a_task_is_non_retriable(workers, behaviours, stdin, message):
    proc = workers.spawn(behaviours, stdin)
    assert proc.returncode == 2
    doc = result_of(proc)
    assert doc["success"] is False and doc["retriable"] is False
    assert doc["error"]["type"] == "InvalidTask" and message in doc["error"]["message"]


def test_stdout_stays_clean(workers, behaviours):
    proc = workers.spawn(behaviours, task(params={"action": "noisy"}))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"success": True, "result": {"clean": True}}
    for text in ("a print", "a write", "to the original sys.stdout", "raw fd 1", "from a child process"):
        assert text in proc.stderr, text


def test_import_time_prints_do_not_reach_stdout(workers):
    module = workers.module("chatty", '''
        from workerhost_sdk import worker
        print("loading the model...")

        @worker
        def handle(params, task):
            return {"ok": True}
    ''')
    proc = workers.spawn(module, task())
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {"success": True, "result": {"ok": True}}
    assert "loading the model..." in proc.stderr


def test_progress_lines_on_stderr(workers, behaviours):
    proc = workers.spawn(behaviours, task(params={"action": "progress"}))
    assert proc.returncode == 0
    progress = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith('{"progress"')]
    assert progress == [{"progress": 10, "message": "started"}, {"progress": 55.5},
                        {"progress": 100, "message": "clamped"}]
    assert '"progress"' not in proc.stdout


def test_logs_in_the_result(workers, behaviours):
    proc = workers.spawn(behaviours, task(params={"action": "log"}))
    assert result_of(proc) == {"success": True, "result": {},
                               "logs": [{"level": "warning", "message": "slow API"}]}


@pytest.mark.parametrize("value,code,result", [
    ({"a": 1}, 0, {"a": 1}),
    (None, 0, {}),
    ([1, 2], 0, {"value": [1, 2]}),
    ("s", 0, {"value": "s"}),
])
def test_return_values(workers, behaviours, value, code, result):
    proc = workers.spawn(behaviours, task(params={"action": "return", "value": value}))
    assert proc.returncode == code
    assert result_of(proc)["result"] == result


@pytest.mark.parametrize("action", ["return-set", "return-nan"])
def test_unencodable_results(workers, behaviours, action):
    proc = workers.spawn(behaviours, task(params={"action": action}))
    assert proc.returncode == 2
    doc = result_of(proc)
    assert doc["error"]["type"] == "ResultNotSerializable" and doc["retriable"] is False


def test_unknown_mode(workers, behaviours):
    proc = workers.spawn(behaviours, task(), mode="sideways")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "expected spawn or pool" in proc.stderr


def test_run_function(workers):
    module = workers.module("plain", '''
        import workerhost_sdk

        def handle(params, task):
            return {"sum": sum(params["xs"])}

        if __name__ == "__main__":
            workerhost_sdk.run(handle)
    ''')
    proc = workers.spawn(module, task(params={"xs": [1, 2, 3]}), how="-m")
    assert proc.returncode == 0
    assert result_of(proc) == {"success": True, "result": {"sum": 6}}


def test_utf8_in_and_out(workers, behaviours):
    proc = workers.spawn(behaviours, task(params={"action": "echo", "text": "żółw 🐢"}))
    assert proc.returncode == 0
    assert proc.stdout.isascii()
    assert result_of(proc)["result"]["params"]["text"] == "żółw 🐢"
