"""The Python client on the http task manager, against a recording stand-in for the TaskManager API
(section 4a's answers: string ids on create, numeric ids and JSON-text results on GET, 404 for an unknown
type, 200 with no items for an unknown id): it sends exactly the requests `workerhost submit` and
`workerhost status` send. The Rust suite (tests/taskmanager) runs the host itself against its full double."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from producer_support import Host
from workerhost_sdk.client import Client, ClientError, InvalidTask, NotSupported, UnknownTask

KEY = "k-123"


class TaskManager(BaseHTTPRequestHandler):
    tasks = {}
    seen = []

    def log_message(self, *a):
        pass

    def _send(self, code, doc, ctype="application/json"):
        raw = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _auth(self):
        if self.headers.get("X-API-Key") != KEY:
            self._send(401, {"error": "Unauthorized", "message": "bad key", "timestamp": "x"}, "text/html")
            return False
        return True

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
        self.seen.append(("POST", self.path, body))
        if not self._auth():
            return
        if self.path != "/api/tasks":
            return self._send(404, {"success": False, "error": "no route"})
        if body["type"] != "Echo":
            return self._send(404, {"success": False, "error": "Task type not found", "timestamp": 1})
        tid = len(self.tasks) + 1
        self.tasks[tid] = {"id": tid, "type": body["type"], "params": body["params"], "status": "completed",
                           "attempts": 1, "claimed_by": "h1", "result": json.dumps({"echo": body["params"]}),
                           "error_message": None, "claimed_at": "2026-12-01 10:00:00",
                           "completed_at": "2026-12-01 10:00:01"}
        self._send(200, {"success": True, "message": "Success", "data": {"id": str(tid), "status": "pending"},
                         "timestamp": 1})

    def do_GET(self):
        self.seen.append(("GET", self.path, None))
        if not self._auth():
            return
        tid = self.path.rsplit("/", 1)[-1]
        item = self.tasks.get(int(tid)) if tid.isdigit() else None
        items = [item] if item else []
        self._send(200, {"success": True, "data": {"items": items, "count": len(items)}, "timestamp": 1})


@pytest.fixture
def api():
    TaskManager.tasks, TaskManager.seen = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), TaskManager)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/api"
    server.shutdown()


def test_requests_match_workerhost_submit(tmp_path, api, monkeypatch):
    monkeypatch.setenv("TM_KEY", KEY)
    host = Host(tmp_path, {"type": "http", "url": api, "api_key": "${TM_KEY}"})
    params = {"b": [1, 2], "a": "\u00e9"}
    cli_id = host.submit("Echo", params)
    cli_seen = list(TaskManager.seen)
    client = Client.from_config(host.config)
    py_id = client.submit("Echo", params)
    assert (cli_id, py_id) == ("1", "2")
    posts = [s for s in TaskManager.seen if s[0] == "POST"]
    assert len(posts) == 2 and posts[0] == posts[1] == ("POST", "/api/tasks", {"type": "Echo", "params": params})
    assert [s for s in cli_seen if s[0] == "POST"] == posts[:1]
    doc = client.result(py_id, timeout=5)
    assert (doc["id"], doc["status"], doc["result"]) == ("2", "succeeded", {"echo": params})
    assert client.status(cli_id)["status"] == "succeeded"
    with pytest.raises(UnknownTask):
        client.status("99")
    with pytest.raises(InvalidTask, match="does not know task type"):
        client.submit("Other", {"a": 1})
    with pytest.raises(InvalidTask, match="non-empty params"):
        client.submit("Echo", {})
    for kw in ({"id": "x"}, {"delay": 5}, {"priority": 1}, {"correlation_id": "c"}):
        with pytest.raises(NotSupported):
            client.submit("Echo", {"a": 1}, **kw)
    with pytest.raises(NotSupported):
        client.cancel(py_id)
    with pytest.raises(ClientError, match="API key"):
        Client({"type": "http", "url": api, "api_key": "wrong"}).submit("Echo", {"a": 1})
