"""The `redis` task manager: the same atomic Lua scripts as the Redis adapter's `submit` (XADD of
`task = <envelope JSON>` plus the id index `<stream>:index`, with its duplicate checks); a task not due yet
goes to `<stream>:scheduled` + `<stream>:due` as the adapter holds delayed tasks. Needs the `[redis]` extra.
Keep the scripts byte-identical to adapters/src/redis_streams/{scripts,due}.rs (a test compares them)."""

import json

from .errors import ClientError, DuplicateId, NotSupported, Unreachable, UnknownTask

COMMON = r"""
local function pending(stream, group, id)
  local p = redis.pcall('XPENDING', stream, group, id, id, 1)
  if type(p) ~= 'table' or p.err or p[1] == nil then return nil, 0 end
  return p[1][2], tonumber(p[1][4])
end
local function entry(stream, id)
  local e = redis.call('XRANGE', stream, id, id)
  if e[1] == nil then return nil end
  return e[1][2]
end
local function field(f, name)
  if not f then return nil end
  for i = 1, #f, 2 do
    if f[i] == name then return f[i + 1] end
  end
  return nil
end
"""

SUBMIT = r"""
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then return false end
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old and (string.sub(old, 1, 7) == 'parked:' or entry(KEYS[1], old)) then return false end
local id = redis.call('XADD', KEYS[1], '*', 'task', ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], id)
return id
"""

SUBMIT_DUE = r"""
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then return false end
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old and (string.sub(old, 1, 7) == 'parked:' or entry(KEYS[1], old)) then return false end
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
return 1
"""


class RedisTM:
    kind = "redis"

    def __init__(self, settings, base):
        try:
            import redis
        except ImportError:
            raise NotSupported("the redis task manager needs the redis library: "
                               "pip install 'workerhost-sdk[redis]'") from None
        self._redis = redis
        self.url = settings.get("url") or "redis://127.0.0.1:6379/0"
        self.stream = settings.get("stream") or "workerhost:tasks"
        self.group = settings.get("group") or "workerhost"
        self._r = redis.Redis.from_url(self.url, socket_connect_timeout=5, socket_timeout=10)
        self._submit = self._r.register_script(COMMON + SUBMIT)
        self._submit_due = self._r.register_script(COMMON + SUBMIT_DUE)

    def _key(self, name):
        return f"{self.stream}:{name}"

    def _call(self, what, fn):
        try:
            return fn()
        except self._redis.ConnectionError as e:
            raise Unreachable(f"redis task manager: {what}: {e}") from None
        except self._redis.RedisError as e:
            raise ClientError(f"redis task manager: {what}: {e}") from None

    def submit(self, task, connection=None):
        body = task.envelope_json()
        result_key = self._key("result:" + task.id)
        if task.is_scheduled():
            keys = [self.stream, result_key, self._key("index"), self._key("scheduled"), self._key("due")]
            got = self._call(f"task {task.id}", lambda: self._submit_due(keys=keys, args=[task.id, body, task.run_at]))
        else:
            keys = [self.stream, result_key, self._key("index"), self._key("scheduled")]
            got = self._call(f"task {task.id}", lambda: self._submit(keys=keys, args=[task.id, body]))
        if got is None:
            raise DuplicateId(f"task {task.id} already exists (scheduled, queued, running or with a result)")
        return task.id

    def result(self, id):
        raw = self._call(f"task {id}", lambda: self._r.get(self._key("result:" + id)))
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ClientError(f"task {id}: the stored result is not JSON") from None

    def status(self, id):
        doc = self.result(id)
        if doc is not None:
            return {"id": id, "type": doc.get("type"), "status": doc.get("status"), "result": doc}
        sched = self._call(f"task {id}", lambda: self._r.hget(self._key("scheduled"), id))
        if sched is not None:
            env = json.loads(sched)
            return {"id": id, "type": env.get("type"), "status": "scheduled", "run_at": env.get("run_at")}
        entry = self._call(f"task {id}", lambda: self._r.hget(self._key("index"), id))
        if entry is None:
            raise UnknownTask(f"no task {id}")
        entry = entry.decode()
        if entry.startswith("parked:"):
            return {"id": id, "status": "queued", "paused": True}
        found = self._call(f"task {id}", lambda: self._r.xrange(self.stream, entry, entry))
        if not found:
            raise UnknownTask(f"no task {id} (its stream entry {entry} is gone)")
        try:
            pel = self._r.xpending_range(self.stream, self.group, min=entry, max=entry, count=1)
        except self._redis.ResponseError:
            pel = []  # no group yet: nobody has read it
        env = json.loads(found[0][1].get(b"task", b"{}"))
        return {"id": id, "type": env.get("type"), "status": "running" if pel else "queued"}

    def close(self):
        self._r.close()
