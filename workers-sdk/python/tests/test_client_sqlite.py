"""The Python client on the sqlite task manager: the rows it writes are the rows `workerhost submit`
writes, the host runs them alike, and results, statuses, cancel and errors come back as documented."""

import sqlite3

import pytest

from producer_support import Host, same_result
from workerhost_sdk.client import (Client, ClientError, DuplicateId, NotSupported, Unreachable,
                                   UnknownTask)

# (params, CLI flags, client keywords): the same task both ways.
CASES = [
    ({"b": 1, "a": [1, "x", None], "u": "\u00fc\u20ac", "n": {"z": True, "y": 2.5}}, [], {}),
    ({"k": "later"}, ["--at", "2031-05-06T07:08:09.123Z", "--priority", "7"],
     {"at": "2031-05-06T07:08:09.123Z", "priority": 7}),
    ({"k": "due"}, ["--at", "2020-01-01T00:00:00.250+01:00", "--priority", "-2"],
     {"at": "2020-01-01T00:00:00.250+01:00", "priority": -2}),
]
COLUMNS = ("type, params, correlation_id, status, deliveries, lease_owner, lease_until, lease_token, result, "
           "error, finished_at, cancel_requested, run_at, priority, attempts, last_error")


@pytest.fixture
def host(tmp_path):
    return Host(tmp_path, {"type": "sqlite", "path": "./queue.db"})


def rows(path, prefix):
    with sqlite3.connect(path) as c:
        return c.execute(f"SELECT {COLUMNS} FROM tasks WHERE id LIKE ? ORDER BY id", (prefix + "%",)).fetchall()


def test_rows_and_outcomes_match_workerhost_submit(host):
    for i, (params, flags, _) in enumerate(CASES):
        assert host.submit("Echo", params, "--id", f"cli{i}", *flags) == f"cli{i}"
    client = Client.from_config(host.config)
    for i, (params, _, kw) in enumerate(CASES):
        assert client.submit("Echo", params, id=f"py{i}", **kw) == f"py{i}"
    db = host.folder / "queue.db"
    made = rows(db, "py")
    assert len(made) == len(CASES)
    assert made == rows(db, "cli")
    assert [r[3] for r in made] == ["queued", "scheduled", "queued"]

    host.burst()
    for i in (0, 2):
        a, b = client.result(f"cli{i}", timeout=5), client.result(f"py{i}", timeout=5)
        assert a["status"] == "succeeded" and a["result"] == {"echo": CASES[i][0]}
        assert same_result(a, b), (a, b)
    assert _only_times_differ(db)
    assert client.status("py1")["status"] == client.status("cli1")["status"] == "scheduled"


def _only_times_differ(db):
    drop = (COLUMNS.split(", ").index("lease_owner"), COLUMNS.split(", ").index("lease_until"),
            COLUMNS.split(", ").index("result"), COLUMNS.split(", ").index("finished_at"))
    strip = [[v for j, v in enumerate(r) if j not in drop] for r in rows(db, "py")]
    return strip == [[v for j, v in enumerate(r) if j not in drop] for r in rows(db, "cli")]


def test_hundred_tasks_then_their_results(host):
    host.cli("check", check=False)
    host.submit("Echo", {"warm": 1})  # creates the file with the host's schema
    client = Client.from_config(host.config)
    ids = [client.submit("Echo", {"n": n}) for n in range(100)]
    assert len(set(ids)) == 100
    assert client.status(ids[0])["status"] == "queued"
    host.burst()
    for n, tid in enumerate(ids):
        doc = client.result(tid, timeout=10)
        assert (doc["id"], doc["status"], doc["result"]) == (tid, "succeeded", {"echo": {"n": n}})


def test_errors_status_and_cancel(host, monkeypatch):
    host.submit("Echo", {"warm": 1})
    client = Client.from_config(host.config)
    client.submit("Echo", {"a": 1}, id="dup")
    with pytest.raises(DuplicateId, match="dup"):
        client.submit("Echo", {"a": 2}, id="dup")
    assert issubclass(DuplicateId, ClientError) and issubclass(NotSupported, ClientError)
    with pytest.raises(UnknownTask):
        client.status("nope")
    with pytest.raises(TimeoutError):
        client.result("dup", timeout=0.3)
    with pytest.raises(NotSupported):
        client.submit("Echo", {"a": 1}, connection=object())
    with pytest.raises(ClientError, match="delay"):
        client.submit("Echo", {"a": 1}, delay="soon")
    later = client.submit("Echo", {"a": 3}, delay="1h")
    assert client.status(later)["status"] == "scheduled"
    monkeypatch.setenv("WORKERHOST_BIN", host.bin)
    client.cancel(later)
    assert client.status(later)["status"] == "cancelled"
    with pytest.raises(Unreachable, match="no such file"):
        Client({"type": "sqlite", "path": str(host.folder / "missing.db")}).submit("Echo", {})


def test_from_config_expands_variables_and_resolves_the_path(tmp_path, monkeypatch):
    host = Host(tmp_path, {"type": "sqlite", "path": "${QUEUE_FILE:-./queue.db}"})
    host.submit("Echo", {"warm": 1})
    monkeypatch.chdir("/")
    c = Client.from_config(host.config)
    assert c._tm.path == str(tmp_path / "queue.db")
    assert c.status(c.submit("Echo", {"x": 1}))["status"] == "queued"
    monkeypatch.setenv("QUEUE_FILE", str(tmp_path / "other.db"))
    assert Client.from_config(host.config)._tm.path == str(tmp_path / "other.db")
    (tmp_path / "bad.yaml").write_text("task_manager:\n  type: sqlite\n  path: ${NOT_SET_ANYWHERE_X}\n")
    with pytest.raises(ClientError, match="NOT_SET_ANYWHERE_X"):
        Client.from_config(tmp_path / "bad.yaml")
