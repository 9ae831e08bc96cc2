"""The Python client on the redis task manager (the real server on 127.0.0.1:6379, a stream of its own per
test): the entries and delayed tasks it writes are byte for byte those of `workerhost submit`."""

import json
import os
from pathlib import Path

import pytest

from producer_support import REPO, Host, same_result, unique
from workerhost_sdk.client import Client, DuplicateId, NotSupported, UnknownTask
from workerhost_sdk.client import redis_tm

redis = pytest.importorskip("redis") if os.environ.get("CI") != "true" else __import__("redis")
URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def stream():
    name = unique("wh-client-test:")
    yield name
    r = redis.Redis.from_url(URL)
    keys = list(r.scan_iter(match=name + "*"))
    if keys:
        r.delete(*keys)


def entries(r, stream, id_prefix):
    out = []
    for _, fields in r.xrange(stream):
        raw = fields[b"task"].decode()
        if json.loads(raw)["id"].startswith(id_prefix):
            out.append(raw.replace('"id":"' + json.loads(raw)["id"] + '"', '"id":"X"'))
    return out


def scheduled(r, stream, id_prefix):
    h = r.hgetall(stream + ":scheduled")
    return sorted((v.decode().replace('"id":"' + k.decode() + '"', '"id":"X"'), r.zscore(stream + ":due", k))
                  for k, v in h.items() if k.decode().startswith(id_prefix))


def test_entries_and_outcomes_match_workerhost_submit(tmp_path, stream):
    host = Host(tmp_path, {"type": "redis", "url": URL, "stream": stream})
    cases = [({"b": [1, 2], "a": "\u00e9"}, [], {}),
             ({"k": 1}, ["--at", "2031-01-02T03:04:05.678Z"], {"at": "2031-01-02T03:04:05.678Z"})]
    for i, (params, flags, _) in enumerate(cases):
        host.submit("Echo", params, "--id", f"cli{i}", *flags)
    client = Client.from_config(host.config)
    for i, (params, _, kw) in enumerate(cases):
        client.submit("Echo", params, id=f"py{i}", **kw)
    r = redis.Redis.from_url(URL)
    assert len(entries(r, stream, "py")) == 1 and entries(r, stream, "py") == entries(r, stream, "cli")
    assert len(scheduled(r, stream, "py")) == 1 and scheduled(r, stream, "py") == scheduled(r, stream, "cli")
    assert r.hexists(stream + ":index", "py0") and r.hexists(stream + ":index", "cli0")
    with pytest.raises(DuplicateId):
        client.submit("Echo", {"k": 2}, id="py0")
    with pytest.raises(DuplicateId):
        client.submit("Echo", {"k": 2}, id="py1")
    with pytest.raises(NotSupported, match="priority"):
        client.submit("Echo", {"k": 2}, priority=1)
    assert client.status("py1")["status"] == "scheduled"
    assert client.status("py0")["status"] == "queued"
    with pytest.raises(UnknownTask):
        client.status("nope")

    host.burst()
    a, b = client.result("cli0", timeout=10), client.result("py0", timeout=10)
    assert a["status"] == "succeeded" and a["result"] == {"echo": cases[0][0]}
    assert same_result(a, b), (a, b)
    assert client.status("py0")["status"] == "succeeded"


def test_hundred_tasks_then_their_results(tmp_path, stream):
    host = Host(tmp_path, {"type": "redis", "url": URL, "stream": stream})
    client = Client.from_config(host.config)
    ids = [client.submit("Echo", {"n": n}) for n in range(100)]
    host.burst()
    for n, tid in enumerate(ids):
        doc = client.result(tid, timeout=10)
        assert (doc["status"], doc["result"]) == ("succeeded", {"echo": {"n": n}})


def test_scripts_are_the_adapters_own():
    """The Lua the client sends is the adapter's, so a change there fails here until both agree."""
    src = (Path(REPO) / "adapters/src/redis_streams/scripts.rs").read_text()
    due = (Path(REPO) / "adapters/src/redis_streams/due.rs").read_text()
    for text, source in ((redis_tm.COMMON, src), (redis_tm.SUBMIT, src), (redis_tm.SUBMIT_DUE, due)):
        assert 'r#"' + text + '"#' in source, text[:60]
