"""The task envelope exactly as `workerhost submit` writes it (the adapters' serde layout): compact JSON,
keys `id, type, params, correlation_id?, run_at?, priority?` in that order, params with sorted keys (serde_json's
map), `run_at` as RFC 3339 UTC with milliseconds."""

import datetime as _dt
import json
import re
import time
import uuid

from .errors import InvalidTask

_UNITS = {"ms": 1, "": 1000, "s": 1000, "sec": 1000, "secs": 1000, "m": 60000, "min": 60000,
          "mins": 60000, "h": 3600000, "d": 86400000}
_DELAY = re.compile(r"^([0-9.]+)\s*([a-z]*)$")


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def now_ms():
    return int(time.time() * 1000)


def delay_ms(delay):
    """`30`, `2.5`, `"30s"`, `"5m"`, `"2h"`, `"1d"`, `"1500ms"` as milliseconds (as `submit --delay`)."""
    if isinstance(delay, bool):
        raise InvalidTask(f"delay {delay!r}: expected seconds or a duration like 30s, 5m, 2h or 1d")
    if isinstance(delay, (int, float)):
        if delay < 0:
            raise InvalidTask(f"delay {delay!r}: a delay must not be negative")
        return round(delay * 1000)
    m = _DELAY.match(str(delay).strip())
    if not m or m.group(2) not in _UNITS:
        raise InvalidTask(f"delay {delay!r}: expected a duration like 30s, 5m, 2h or 1d")
    try:
        n = float(m.group(1))
    except ValueError:
        raise InvalidTask(f"delay {delay!r}: expected a duration like 30s, 5m, 2h or 1d") from None
    return round(n * _UNITS[m.group(2)])


def at_ms(at):
    """An aware `datetime` or an RFC 3339 string as milliseconds since the epoch."""
    if isinstance(at, _dt.datetime):
        if at.tzinfo is None:
            raise InvalidTask("at: a datetime needs a time zone (an aware datetime)")
        return (at - _EPOCH) // _dt.timedelta(milliseconds=1)
    if isinstance(at, str):
        text = at.strip().replace("z", "Z")
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            d = _dt.datetime.fromisoformat(text)
        except ValueError:
            raise InvalidTask(f"at {at!r}: not an RFC 3339 date-time") from None
        if d.tzinfo is None:
            raise InvalidTask(f"at {at!r}: an RFC 3339 date-time needs an offset or Z")
        return at_ms(d)
    raise InvalidTask(f"at {at!r}: expected an aware datetime or an RFC 3339 string")


def rfc3339_ms(ms):
    d = _EPOCH + _dt.timedelta(milliseconds=ms)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


class Task:
    """One task to enqueue: what `workerhost submit` builds from its flags."""

    def __init__(self, task_type, params, id=None, delay=None, at=None, priority=None, correlation_id=None):
        if not isinstance(task_type, str) or not task_type:
            raise InvalidTask("a task needs a non-empty type")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise InvalidTask(f"task type {task_type}: params must be a dict (a JSON object)")
        if id is not None and (not isinstance(id, str) or not id):
            raise InvalidTask("id must be a non-empty string")
        if delay is not None and at is not None:
            raise InvalidTask("give delay or at, not both")
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)
                                     or not -2**31 <= priority < 2**31):
            raise InvalidTask(f"priority {priority!r}: expected a whole number (32-bit)")
        if correlation_id is not None and not isinstance(correlation_id, str):
            raise InvalidTask("correlation_id must be a string")
        self.id_given = id is not None
        self.id = id if id is not None else str(uuid.uuid4())
        self.type = task_type
        self.params = params
        self.correlation_id = correlation_id
        self.run_at = None
        if delay is not None:
            self.run_at = now_ms() + delay_ms(delay)
        elif at is not None:
            self.run_at = at_ms(at)
        self.priority = priority or 0
        self.timed = delay is not None or at is not None

    def params_json(self):
        return json.dumps(self.params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def envelope_json(self):
        out = '{"id":' + json.dumps(self.id, ensure_ascii=False) + ',"type":' + json.dumps(
            self.type, ensure_ascii=False) + ',"params":' + self.params_json()
        if self.correlation_id is not None:
            out += ',"correlation_id":' + json.dumps(self.correlation_id, ensure_ascii=False)
        if self.run_at is not None:
            out += ',"run_at":"' + rfc3339_ms(self.run_at) + '"'
        if self.priority:
            out += ',"priority":' + str(self.priority)
        return out + "}"

    def is_scheduled(self, now=None):
        return self.run_at is not None and self.run_at > (now_ms() if now is None else now)
