"""In-process tests of the public API: the decorator, Task, and the mapping of outcomes."""

import io
import json
import sys

import pytest

import workerhost_sdk
from workerhost_sdk import FatalError, RetriableError, Task, worker


def test_public_names():
    for name in ("worker", "run", "Task", "RetriableError", "FatalError", "WorkerError", "__version__"):
        assert hasattr(workerhost_sdk, name), name
    assert issubclass(RetriableError, workerhost_sdk.WorkerError)
    assert issubclass(FatalError, workerhost_sdk.WorkerError)
    assert (workerhost_sdk.EXIT_SUCCESS, workerhost_sdk.EXIT_RETRIABLE, workerhost_sdk.EXIT_FATAL,
            workerhost_sdk.EXIT_TIMEOUT, workerhost_sdk.EXIT_INTERRUPTED) == (0, 1, 2, 3, 130)


def test_called_with_arguments_it_is_the_plain_function():
    @worker
    def handle(params, task):
        """Doubles n."""
        return {"n": params["n"] * 2, "id": task.id}

    assert handle({"n": 2}, Task(id="x")) == {"n": 4, "id": "x"}
    assert handle(params={"n": 1}, task=Task()) == {"n": 2, "id": "test"}
    assert handle.__name__ == "handle"
    assert handle.__doc__ == "Doubles n."
    assert handle.__wrapped__ is handle.func


def test_decorator_with_parentheses():
    @worker()
    def handle(params, task):
        return {"ok": True}

    assert isinstance(handle, workerhost_sdk.Worker)
    assert handle.run_task({"id": "1", "type": "t"}) == ({"success": True, "result": {"ok": True}}, 0)


def test_exceptions_of_the_plain_call_propagate():
    @worker
    def handle(params, task):
        raise FatalError("bad")

    with pytest.raises(FatalError):
        handle({}, Task())


def test_task_defaults_and_document():
    t = Task()
    assert (t.id, t.type, t.params, t.attempt, t.correlation_id) == ("test", "test", {}, 1, None)
    assert t.document["id"] == "test"
    assert "Task(id='test'" in repr(t)


def run(handler, doc=None, **kw):
    doc = doc if doc is not None else {"id": "t1", "type": "x", "params": kw}
    return worker(handler).run_task(doc, stream=io.StringIO())


def test_outcome_mapping():
    def ok(params, task):
        return {"a": 1}

    def retriable(params, task):
        raise RetriableError("later", details={"retry_after": 5})

    class QuotaError(FatalError):
        pass

    def fatal(params, task):
        raise QuotaError("quota exceeded")

    def typed(params, task):
        raise FatalError("nope", error_type="BadInput")

    def timeout(params, task):
        raise TimeoutError("slow")

    def crash(params, task):
        return {}["missing"]

    def interrupted(params, task):
        raise KeyboardInterrupt

    assert run(ok) == ({"success": True, "result": {"a": 1}}, 0)

    doc, code = run(retriable)
    assert code == 1
    assert doc == {"success": False, "error": {"retry_after": 5, "type": "RetriableError", "message": "later",
                                               "retry_possible": True}}

    doc, code = run(fatal)
    assert code == 2
    assert doc["error"] == {"type": "QuotaError", "message": "quota exceeded", "retry_possible": False}
    assert doc["retriable"] is False

    assert run(typed)[0]["error"]["type"] == "BadInput"

    doc, code = run(timeout)
    assert code == 3 and doc["error"]["type"] == "TimeoutError" and doc["error"]["retry_possible"] is True

    doc, code = run(crash)
    assert code == 1
    assert doc["error"]["type"] == "KeyError"
    assert doc["error"]["message"] == "'missing'"
    assert "Traceback" in doc["error"]["traceback"] and "in crash" in doc["error"]["traceback"]
    assert "retriable" not in doc

    doc, code = run(interrupted)
    assert code == 130 and doc["error"]["type"] == "KeyboardInterrupt"


def test_a_chained_deliberate_error_carries_the_traceback_of_its_cause():
    def handler(params, task):
        try:
            {}["k"]
        except KeyError as e:
            raise RetriableError("lookup failed") from e

    doc, code = run(handler)
    assert code == 1
    assert "KeyError" in doc["error"]["traceback"]


def test_asyncio_timeout_is_a_timeout():
    import asyncio

    def handler(params, task):
        raise asyncio.TimeoutError()

    assert run(handler)[1] == 3


def test_sys_exit_in_a_handler_is_reported_not_obeyed():
    def handler(params, task):
        sys.exit(params["code"])

    assert run(handler, code=2)[1] == 2
    assert run(handler, code=0)[1] == 1
    assert run(handler, code=3)[1] == 3
    doc, code = run(handler, code="bye")
    assert code == 1 and "sys.exit('bye')" in doc["error"]["message"]


def test_return_values():
    def returning(params, task):
        return params["value"]

    assert run(returning, value={"k": "v"})[0]["result"] == {"k": "v"}
    assert run(returning, value=None) == ({"success": True, "result": {}}, 0)
    assert run(returning, value=[1, 2])[0]["result"] == {"value": [1, 2]}
    assert run(returning, value="text")[0]["result"] == {"value": "text"}
    assert run(returning, value=0)[0]["result"] == {"value": 0}
    assert run(returning, value=(1, 2))[0]["result"] == {"value": [1, 2]}


@pytest.mark.parametrize("value", [{1, 2}, float("nan"), object()])
def test_a_result_json_cannot_encode_is_non_retriable(value):
    def returning(params, task):
        return {"x": value}

    doc, code = run(returning)
    assert code == 2
    assert doc["retriable"] is False
    assert doc["error"]["type"] == "ResultNotSerializable"


def test_async_handler():
    async def handler(params, task):
        import asyncio

        await asyncio.sleep(0)
        return {"async": True}

    assert run(handler) == ({"success": True, "result": {"async": True}}, 0)


def test_prints_inside_the_handler_go_to_the_stream_not_stdout(capsys):
    def handler(params, task):
        print("hello from the handler")
        return {}

    stream = io.StringIO()
    worker(handler).run_task({"id": "1", "type": "t"}, stream=stream)
    assert "hello from the handler" in stream.getvalue()
    assert capsys.readouterr().out == ""


def test_logs_are_in_the_result():
    def handler(params, task):
        task.log("slow API", level="warning")
        task.log("done")
        return {}

    doc, _ = run(handler)
    assert doc["logs"] == [{"level": "warning", "message": "slow API"}, {"level": "info", "message": "done"}]


def test_progress_lines():
    stream = io.StringIO()
    t = Task(stream=stream)
    t.progress(40, "downloading")
    t.progress(12.5)
    t.progress(100.0)
    t.progress(-3)
    t.progress(250, message=7)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines == [
        {"progress": 40, "message": "downloading"},
        {"progress": 12.5},
        {"progress": 100},
        {"progress": 0},
        {"progress": 100, "message": "7"},
    ]
    assert isinstance(lines[2]["progress"], int)


def test_progress_rejects_what_is_not_a_number():
    t = Task(stream=io.StringIO())
    with pytest.raises(TypeError):
        t.progress("40")
    with pytest.raises(TypeError):
        t.progress(True)
    with pytest.raises(ValueError):
        t.progress(float("nan"))


@pytest.mark.parametrize("document,task_id", [
    ("not json", None),
    ("", None),
    ("[1, 2]", None),
    ('{"type": "t"}', None),
    ('{"id": true, "type": "t"}', None),
    ('{"id": "a"}', "a"),
    ('{"id": "a", "type": "t", "params": [1]}', "a"),
    ('{"id": "a", "type": "t", "attempt": "2"}', "a"),
    ('{"id": "a", "type": "t", "correlation_id": 5}', "a"),
    (b"\xff\xfe", None),
])
def test_invalid_task_documents(document, task_id):
    with pytest.raises(workerhost_sdk.InvalidTask) as e:
        workerhost_sdk._runner.parse_task(document)
    assert e.value.task_id == task_id
    doc, code = worker(lambda p, t: {}).run_task(document)
    assert code == 2 and doc["retriable"] is False and doc["error"]["type"] == "InvalidTask"


def test_lenient_task_documents():
    parse = workerhost_sdk._runner.parse_task
    t = parse('{"id": 7, "type": "t", "params": null, "attempt": null, "extra": 1}')
    assert (t.id, t.params, t.attempt, t.document["extra"]) == ("7", {}, 1, 1)
    t = parse(b'\xef\xbb\xbf{"id": "a", "type": "t", "attempt": 3, "correlation_id": "c"}')
    assert (t.id, t.attempt, t.correlation_id) == ("a", 3, "c")


def test_serve_pool_in_process():
    def handler(params, task):
        if params.get("fail"):
            raise FatalError("no")
        return {"n": params["n"]}

    lines = [
        json.dumps({"id": "a", "type": "t", "params": {"n": 1}}),
        "",
        "garbage",
        json.dumps({"id": "b", "type": "t", "params": {"fail": True}}),
        json.dumps({"id": "c", "type": "t", "params": {}}),
    ]
    task_in = io.BytesIO(("\n".join(lines) + "\n").encode())
    out = io.BytesIO()
    code = workerhost_sdk._runner.serve_pool(handler, task_in, out, io.StringIO())
    assert code == 0
    answers = [json.loads(line) for line in out.getvalue().decode().splitlines()]
    assert [a["id"] for a in answers] == ["a", None, "b", "c"]
    assert answers[0] == {"id": "a", "success": True, "result": {"n": 1}}
    assert answers[1]["retriable"] is False and isinstance(answers[1]["error"], str)
    assert answers[2]["retriable"] is False
    assert answers[3]["error"]["type"] == "KeyError" and "retriable" not in answers[3]


def test_unknown_mode_is_refused(capsys):
    assert worker(lambda p, t: {}).serve(mode="bogus") == 2
    assert "expected spawn or pool" in capsys.readouterr().err


def test_traceparent_from_the_document_else_the_environment(monkeypatch):
    from workerhost_sdk._runner import InvalidTask, parse_task as parse

    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    monkeypatch.delenv("TRACEPARENT", raising=False)
    assert parse('{"id": "a", "type": "t"}').traceparent is None
    assert parse(json.dumps({"id": "a", "type": "t", "traceparent": tp})).traceparent == tp
    other = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"
    monkeypatch.setenv("TRACEPARENT", other)
    assert parse('{"id": "a", "type": "t"}').traceparent == other
    assert parse(json.dumps({"id": "a", "type": "t", "traceparent": tp})).traceparent == tp
    with pytest.raises(InvalidTask):
        parse('{"id": "a", "type": "t", "traceparent": 7}')
    assert Task().traceparent is None
