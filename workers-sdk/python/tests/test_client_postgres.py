"""The Python client on the postgres task manager (the real server on 127.0.0.1:5432, a schema of its own
per test): rows equal to `workerhost submit`'s, and `connection=` inside the caller's transaction."""

import os

import pytest

from producer_support import Host, same_result, unique
from workerhost_sdk.client import Client, DuplicateId, UnknownTask

psycopg = pytest.importorskip("psycopg") if os.environ.get("CI") != "true" else __import__("psycopg")
URL = "postgresql://postgres@127.0.0.1:5432/postgres"
COLUMNS = "type, params, correlation_id, status, priority, attempts, deliveries, result, error, lease_owner"


@pytest.fixture
def host(tmp_path):
    schema = unique("wh_client_")
    h = Host(tmp_path, {"type": "postgres", "url": URL, "schema": schema})
    h.schema = schema
    h.cli("migrate")
    yield h
    with psycopg.connect(URL, autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def rows(schema, prefix, with_run_at):
    cols = COLUMNS + (", run_at" if with_run_at else "")
    with psycopg.connect(URL) as c:
        return c.execute(f"SELECT {cols} FROM {schema}.tasks WHERE id LIKE %s ORDER BY id",
                         (prefix + "%",)).fetchall()


def test_rows_and_outcomes_match_workerhost_submit(host):
    at = "2031-05-06T07:08:09.123Z"
    host.submit("Echo", {"b": 1, "a": [1, "x"], "u": "\u00fc"}, "--id", "cli0")
    host.submit("Echo", {"k": 1}, "--id", "cli1", "--at", at, "--priority", "4")
    client = Client.from_config(host.config)
    client.submit("Echo", {"b": 1, "a": [1, "x"], "u": "\u00fc"}, id="py0")
    client.submit("Echo", {"k": 1}, id="py1", at=at, priority=4)
    assert len(rows(host.schema, "py", False)) == 2
    assert rows(host.schema, "py", False) == rows(host.schema, "cli", False)
    assert rows(host.schema, "py1", True) == rows(host.schema, "cli1", True)
    with pytest.raises(DuplicateId):
        client.submit("Echo", {"k": 2}, id="py0")
    host.burst()
    a, b = client.result("cli0", timeout=10), client.result("py0", timeout=10)
    assert a["status"] == "succeeded" and a["result"] == {"echo": {"b": 1, "a": [1, "x"], "u": "\u00fc"}}
    assert same_result(a, b), (a, b)
    assert client.status("py1")["status"] == "scheduled"


def test_submit_inside_the_callers_transaction(host):
    client = Client.from_config(host.config)
    with psycopg.connect(URL) as conn:
        gone = client.submit("Echo", {"order": "rolled back"}, connection=conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.rollback()
        kept = client.submit("Echo", {"order": "committed"}, connection=conn)
        with pytest.raises(UnknownTask):
            client.status(kept)  # not visible to others before the commit
        conn.commit()
    with pytest.raises(UnknownTask):
        client.status(gone)
    ids = [client.submit("Echo", {"n": n}) for n in range(100)]
    host.burst()
    assert client.result(kept, timeout=10)["result"] == {"echo": {"order": "committed"}}
    for n, tid in enumerate(ids):
        assert client.result(tid, timeout=10)["result"] == {"echo": {"n": n}}
    with pytest.raises(UnknownTask):
        client.status(gone)
