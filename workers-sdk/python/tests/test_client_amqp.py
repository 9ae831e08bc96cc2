"""The Python client on the amqp task manager (the real RabbitMQ on 127.0.0.1:5672, a queue of its own per
test): the message it publishes is `workerhost submit`'s, and results come back on its reply_to queue."""

import json
import os

import pytest

from producer_support import Host, unique
from workerhost_sdk.client import Client, NotSupported

pika = pytest.importorskip("pika") if os.environ.get("CI") != "true" else __import__("pika")
URL = "amqp://guest:guest@127.0.0.1:5672/%2f"


@pytest.fixture
def queue():
    name = unique("wh-client-test.")
    yield name
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    ch = conn.channel()
    for q in (name, name + ".dead", name + ".retry"):
        ch.queue_delete(q)
    conn.close()


def take(queue_name, count):
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    ch = conn.channel()
    got = []
    for _ in range(count):
        method, props, body = ch.basic_get(queue_name, auto_ack=True)
        assert method is not None, f"{queue_name}: fewer than {count} messages"
        got.append((props, body))
    conn.close()
    return got


def test_message_matches_workerhost_submit_and_results_come_back(tmp_path, queue):
    host = Host(tmp_path, {"type": "amqp", "url": URL, "queue": queue})
    params = {"b": [1, 2], "a": "\u00e9"}
    host.submit("Echo", params, "--id", "cli0")
    client = Client.from_config(host.config)
    client.submit("Echo", params, id="py0")
    (p1, b1), (p2, b2) = take(queue, 2)
    assert b1.decode().replace('"cli0"', '"X"') == b2.decode().replace('"py0"', '"X"')
    for k in ("content_type", "delivery_mode", "correlation_id"):
        assert getattr(p1, k) == getattr(p2, k), k
    assert (p1.message_id, p2.message_id) == ("cli0", "py0")
    assert p2.reply_to and p2.delivery_mode == 2
    with pytest.raises(NotSupported):
        client.status("py0")
    with pytest.raises(NotSupported, match="due time"):
        client.submit("Echo", {"k": 1}, delay=5)

    ids = [client.submit("Echo", {"n": n}) for n in range(100)]
    cli = host.submit("Echo", {"n": 0})
    host.burst()
    docs = [client.result(tid, timeout=20) for tid in ids]
    assert [d["result"] for d in docs] == [{"echo": {"n": n}} for n in range(100)]
    assert [d["id"] for d in docs] == ids
    assert cli not in client._tm._results  # only what this client sent comes back to it
    assert {d["status"] for d in docs} == {"succeeded"}


def test_correlation_id_is_the_message_property(tmp_path, queue):
    host = Host(tmp_path, {"type": "amqp", "url": URL, "queue": queue})
    host.submit("Echo", {"warm": 1})  # the host side declares the queue
    take(queue, 1)
    client = Client.from_config(host.config)
    client.submit("Echo", {"a": 1}, id="c1", correlation_id="order-7")
    client.submit("Echo", {"a": 1}, id="c2")
    (p1, b1), (p2, b2) = take(queue, 2)
    assert p1.correlation_id == "order-7" and p2.correlation_id is None
    assert json.loads(b1)["correlation_id"] == "order-7" and "correlation_id" not in json.loads(b2)
