"""The `http` task manager (the PrismQ TaskManager API, section 4a): `POST /tasks` creates, `GET /tasks/{id}`
reads, as `workerhost submit` and `workerhost status` do. The service assigns ids and has no delays,
priorities, correlation ids or cancel: asking for them raises `NotSupported`. Standard library only."""

import json
import urllib.error
import urllib.parse
import urllib.request

from .errors import ClientError, InvalidTask, NotSupported, Unreachable, UnknownTask

_STATUS = {"pending": "queued", "claimed": "running", "completed": "succeeded", "failed": "dead"}


class HttpTM:
    kind = "http"

    def __init__(self, settings, base):
        self.url = (settings.get("url") or "").rstrip("/")
        if not self.url:
            raise ClientError("task_manager.url: the http task manager needs the TaskManager's URL")
        self.key = settings.get("api_key") or ""

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"X-API-Key": self.key, "Content-Type": "application/json",
                                              "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            raise Unreachable(f"http task manager {self.url}: {method} {path}: {e}") from None
        try:
            doc = json.loads(raw or b"{}")
        except ValueError:
            doc = {"error": raw[:200].decode(errors="replace")}
        if status == 401:
            raise ClientError(f"the TaskManager at {self.url} rejected the API key (401): check task_manager.api_key")
        return status, doc if isinstance(doc, dict) else {}

    def submit(self, task, connection=None):
        if task.id_given:
            raise NotSupported("the http task manager assigns its own ids (submit returns it)")
        if task.timed or task.priority:
            raise NotSupported("the http task manager keeps no delay, at or priority")
        if task.correlation_id is not None:
            raise NotSupported("the http task manager keeps no correlation_id")
        if not task.params:
            raise InvalidTask("the TaskManager requires non-empty params (a JSON object with at least one key)")
        status, doc = self._call("POST", "/tasks", {"type": task.type, "params": task.params})
        if status == 404:
            raise InvalidTask(f"the TaskManager does not know task type {task.type!r} (404); `workerhost run` "
                              "registers the types of its config")
        if status >= 300 or not doc.get("success"):
            raise ClientError(f"creating the task answered HTTP {status}: {doc.get('error') or doc.get('message')}")
        tid = (doc.get("data") or {}).get("id")
        if tid is None:
            raise ClientError("the TaskManager created the task but sent no id")
        return str(tid)

    def _item(self, id):
        status, doc = self._call("GET", "/tasks/" + urllib.parse.quote(id, safe=""))
        if status >= 300:
            raise ClientError(f"GET /tasks/{id} answered HTTP {status}: {doc.get('error')}")
        items = (doc.get("data") or {}).get("items") or []
        if not items:
            raise UnknownTask(f"no task {id}")
        return items[0]

    def status(self, id):
        item = self._item(id)
        st = _STATUS.get(item.get("status"), item.get("status"))
        out = {"id": str(item.get("id", id)), "type": item.get("type"), "status": st,
               "attempts": item.get("attempts")}
        if st in ("succeeded", "dead"):
            res = item.get("result")
            if isinstance(res, str):
                try:
                    res = json.loads(res)
                except ValueError:
                    pass
            out["result"] = {"id": out["id"], "type": out["type"], "status": st, "result": res,
                             "error": item.get("error_message"), "host": item.get("claimed_by")}
        return out

    def result(self, id):
        return self.status(id).get("result")

    def close(self):
        pass
