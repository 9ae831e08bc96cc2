"""Pool mode through real processes: one task per line in, one result per line out, the process stays up."""

import json
import time

import pytest

from conftest import BEHAVIOURS, clean_env, task


@pytest.fixture
def behaviours(workers):
    return workers.module("behaviours", BEHAVIOURS)


@pytest.mark.parametrize("how", ["function", "-m"])
def test_one_process_serves_many_tasks_one_line_each(pool, behaviours, how):
    p = pool(behaviours, how)
    pids = set()
    for i in range(1, 6):
        # Each answer must arrive while stdin is still open: one flushed line per task.
        answer = p.call(task(id="t%d" % i, params={"action": "echo", "i": i}, attempt=i, correlation_id="c%d" % i))
        assert answer["id"] == "t%d" % i
        assert answer["success"] is True
        result = answer["result"]
        assert (result["params"]["i"], result["attempt"], result["correlation_id"]) == (i, i, "c%d" % i)
        assert result["served"] == i  # module state survives between tasks
        pids.add(result["pid"])
    assert len(pids) == 1 and p.proc.pid in pids
    assert p.close() == 0


def test_failures_never_end_the_process(pool, behaviours):
    p = pool(behaviours)
    answer = p.call(task(id="r", params={"action": "retriable"}))
    assert answer == {"id": "r", "success": False, "error": {
        "retry_after": 30, "type": "RetriableError", "message": "rate limited", "retry_possible": True}}

    answer = p.call(task(id="f", params={"action": "fatal"}))
    assert answer["id"] == "f" and answer["retriable"] is False
    assert answer["error"]["type"] == "QuotaError" and answer["error"]["retry_possible"] is False

    answer = p.call(task(id="c", params={"action": "crash"}))
    assert answer["id"] == "c" and "retriable" not in answer
    assert answer["error"]["type"] == "ZeroDivisionError" and "Traceback" in answer["error"]["traceback"]

    # No exit code per task in pool mode: the worker's own timeout is a retriable failure.
    answer = p.call(task(id="to", params={"action": "timeout"}))
    assert answer["error"]["type"] == "TimeoutError" and "retriable" not in answer

    answer = p.call(task(id="x", params={"action": "exit", "code": 2}))
    assert answer["id"] == "x" and answer["retriable"] is False

    answer = p.call(task(id="n", params={"action": "return-set"}))
    assert answer["id"] == "n" and answer["error"]["type"] == "ResultNotSerializable"
    assert answer["retriable"] is False

    answer = p.call(task(id="ok", params={"action": "echo"}))
    assert answer["success"] is True and answer["result"]["served"] == 7
    assert p.close() == 0


def test_lines_that_are_not_tasks(pool, behaviours):
    p = pool(behaviours)
    answer = p.call("this is not json")
    assert answer["id"] is None and answer["success"] is False and answer["retriable"] is False
    assert isinstance(answer["error"], str) and "not JSON" in answer["error"]

    assert p.call("[1, 2, 3]")["id"] is None
    # An id that can be read is echoed, so the host can match the answer to its task.
    answer = p.call('{"id": "no-type"}')
    assert answer["id"] == "no-type" and answer["retriable"] is False and "type" in answer["error"]

    p.send("")
    p.send("   ")
    assert p.nothing_pending()  # blank lines are not answered

    assert p.call(task(id="after", params={"action": "echo"}))["success"] is True
    assert p.close() == 0


def test_eof_ends_the_process_with_0(pool, behaviours):
    p = pool(behaviours)
    started = time.monotonic()
    assert p.close() == 0
    assert time.monotonic() - started < 10


def test_stdout_stays_clean(pool, behaviours):
    p = pool(behaviours)
    assert p.call(task(id="a", params={"action": "noisy"})) == {"id": "a", "success": True,
                                                                 "result": {"clean": True}}
    assert p.call(task(id="b", params={"action": "noisy"}))["id"] == "b"
    assert p.close() == 0
    stderr = p.stderr()
    for text in ("a print", "a write", "to the original sys.stdout", "raw fd 1", "from a child process"):
        assert stderr.count(text) == 2, text


def test_a_handler_reading_stdin_does_not_eat_the_next_task(pool, behaviours):
    p = pool(behaviours)
    p.send(json.dumps(task(id="reader", params={"action": "read-stdin"})) + "\n"
           + json.dumps(task(id="next", params={"action": "echo"})))
    first, second = p.recv(), p.recv()
    assert first == {"id": "reader", "success": True, "result": {"stdin": ""}}
    assert second["id"] == "next" and second["success"] is True
    assert p.close() == 0


def test_progress_and_logs(pool, behaviours):
    p = pool(behaviours)
    assert p.call(task(id="p", params={"action": "progress"}))["success"] is True
    answer = p.call(task(id="l", params={"action": "log"}))
    assert answer["logs"] == [{"level": "warning", "message": "slow API"}]
    assert p.close() == 0
    progress = [json.loads(line) for line in p.stderr().splitlines() if line.startswith('{"progress"')]
    assert progress == [{"progress": 10, "message": "started"}, {"progress": 55.5},
                        {"progress": 100, "message": "clamped"}]


def test_logs_do_not_leak_into_the_next_task(pool, behaviours):
    p = pool(behaviours)
    assert "logs" in p.call(task(id="l", params={"action": "log"}))
    assert "logs" not in p.call(task(id="e", params={"action": "echo"}))
    assert p.close() == 0


def test_keyboard_interrupt_answers_then_exits_130(pool, behaviours):
    p = pool(behaviours)
    answer = p.call(task(id="i", params={"action": "interrupt"}))
    assert answer["id"] == "i" and answer["error"]["type"] == "KeyboardInterrupt"
    assert p.proc.wait(timeout=10) == 130


def test_mode_is_read_case_insensitively(pool, behaviours):
    p = pool(behaviours, env=clean_env("POOL"))
    assert p.call(task(id="a"))["id"] == "a"
    assert p.close() == 0
