//! The Lua scripts that make each step atomic on the server, called by hash (`EVALSHA`; loaded with
//! `SCRIPT LOAD` the first time Redis answers `NOSCRIPT`).
//!
//! Every script that changes an entry first checks, in the same atomic step, that the entry is still in the
//! group's pending list **under this consumer**: that is the fence. A host whose entry was taken over by
//! another host's `XAUTOCLAIM` gets 0 back and reports the lease lost.

/// Helpers shared by the scripts (prepended to each).
pub(super) const COMMON: &str = r#"
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
"#;

/// Takeover of entries idle past the lease. KEYS: stream. ARGV: group, consumer, min idle ms, cursor, count,
/// then this host's own in-flight entry ids. Returns `{cursor, {{id, fields, deliveries}...}, {deleted ids}}`.
/// An entry this host already runs (its renewals failed for a while) is not handed out twice: its delivery
/// count is put back and it is left out of the answer.
const TAKEOVER: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'0-0', {}, {}} end
local own = {}
for i = 6, #ARGV do own[ARGV[i]] = true end
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out, deleted = {}, r[3] or {}
for _, e in ipairs(r[2]) do
  local id = e[1]
  local _, n = pending(KEYS[1], ARGV[1], id)
  if not e[2] or #e[2] == 0 then
    redis.call('XACK', KEYS[1], ARGV[1], id)
    table.insert(deleted, id)
  elseif own[id] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'RETRYCOUNT', math.max(n - 1, 0), 'JUSTID')
  else
    table.insert(out, {id, e[2], n})
  end
end
return {r[1], out, deleted}
"#;

/// Renewal: re-claims each entry still held by this consumer (idle reset to 0, delivery count unchanged).
/// KEYS: stream. ARGV: group, consumer, entry ids. Returns the ids that are no longer ours.
const RENEW: &str = r#"
local lost = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local who = pending(KEYS[1], ARGV[1], id)
  local ok = false
  if who == ARGV[2] then
    ok = #redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'JUSTID') > 0
  end
  if not ok then table.insert(lost, id) end
end
return lost
"#;

/// Settling. KEYS: stream, dead-letter stream, result key, index. ARGV: group, consumer, entry id, status,
/// result document, ttl ms, error message, attempts, task text if the entry is gone, task id.
/// Returns 1 (recorded), 2 (this very document was already recorded: a retry after a lost reply), 0 (lost:
/// another consumer holds it, settled it or handed it back), 3 (recorded although the entry is gone without a
/// trace — pending nowhere, not in the stream, no result, not re-added: a Redis without persistence restarted
/// or the stream was deleted — so nobody else can hold the task).
const SETTLE: &str = r#"
local who = pending(KEYS[1], ARGV[1], ARGV[3])
local gone = false
if who ~= ARGV[2] then
  local stored = redis.call('GET', KEYS[3])
  if stored == ARGV[5] then return 2 end
  if stored or who or entry(KEYS[1], ARGV[3]) then return 0 end
  local cur = redis.call('HGET', KEYS[4], ARGV[10])
  if cur and cur ~= ARGV[3] and entry(KEYS[1], cur) then return 0 end
  gone = true
end
local task = field(entry(KEYS[1], ARGV[3]), 'task') or ARGV[9]
if ARGV[4] == 'dead' then
  redis.call('XADD', KEYS[2], '*', 'task', task, 'error', ARGV[7], 'attempts', ARGV[8])
end
redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[6])
if redis.call('HGET', KEYS[4], ARGV[10]) == ARGV[3] then redis.call('HDEL', KEYS[4], ARGV[10]) end
if gone then return 3 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return 1
"#;

/// Hand-back on shutdown: the same fields are added again as a new entry (delivered at once to any waiting
/// host) carrying `deliveries` = the deliveries before this one, so a hand-back does not count; the old
/// entry is acked and deleted. KEYS: stream, index. ARGV: group, consumer, entry id, task id.
/// Returns the new entry id, or 0 when the entry is no longer ours.
const RELEASE: &str = r#"
local who, n = pending(KEYS[1], ARGV[1], ARGV[3])
if who ~= ARGV[2] then return 0 end
local f = entry(KEYS[1], ARGV[3])
local new = ''
if f then
  local args = {}
  for i = 1, #f, 2 do
    if f[i] ~= 'deliveries' then
      table.insert(args, f[i])
      table.insert(args, f[i + 1])
    end
  end
  local prior = (tonumber(field(f, 'deliveries')) or 0) + n - 1
  if prior > 0 then
    table.insert(args, 'deliveries')
    table.insert(args, tostring(prior))
  end
  if #args > 0 then
    new = redis.call('XADD', KEYS[1], '*', unpack(args))
    if redis.call('HGET', KEYS[2], ARGV[4]) == ARGV[3] then redis.call('HSET', KEYS[2], ARGV[4], new) end
  end
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return new
"#;

/// Enqueue with a duplicate check. KEYS: stream, result key, index, scheduled hash. ARGV: task id, task
/// JSON. Returns the entry id, or nil when a task with this id is scheduled, queued, running or has a
/// result.
const SUBMIT: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then return false end
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old and (string.sub(old, 1, 7) == 'parked:' or entry(KEYS[1], old)) then return false end
local id = redis.call('XADD', KEYS[1], '*', 'task', ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], id)
return id
"#;

/// Removes this host's consumer from the group when it holds nothing. KEYS: stream. ARGV: group, consumer.
const CLOSE: &str = r#"
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if type(p) == 'table' and not p.err and p[1] == nil then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"#;

/// Removes consumers of hosts long gone (nothing pending, idle longer than ARGV[2] ms). Atomic, so a
/// consumer that reads an entry meanwhile is never deleted with it. KEYS: stream. ARGV: group, min idle.
const SWEEP: &str = r#"
local cs = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if type(cs) ~= 'table' or cs.err then return 0 end
local n = 0
for _, c in ipairs(cs) do
  local name = field(c, 'name')
  local idle = tonumber(field(c, 'idle'))
  if name and tonumber(field(c, 'pending')) == 0 and idle and idle > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    n = n + 1
  end
end
return n
"#;

/// A script and its SHA-1, by which it is called (`EVALSHA`).
pub(super) struct Lua {
    pub body: String,
    pub sha: String,
}

impl Lua {
    fn new(body: &str) -> Lua {
        let body = format!("{COMMON}{body}");
        let sha = redis::Script::new(&body).get_hash().to_string();
        Lua { body, sha }
    }
}

/// Every script, ready to send.
pub(super) struct Scripts {
    pub takeover: Lua,
    pub renew: Lua,
    pub settle: Lua,
    pub release: Lua,
    pub submit: Lua,
    pub close: Lua,
    pub sweep: Lua,
    pub submit_due: Lua,
    pub move_due: Lua,
    pub defer: Lua,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            takeover: Lua::new(TAKEOVER),
            renew: Lua::new(RENEW),
            settle: Lua::new(SETTLE),
            release: Lua::new(RELEASE),
            submit: Lua::new(SUBMIT),
            close: Lua::new(CLOSE),
            sweep: Lua::new(SWEEP),
            submit_due: Lua::new(super::due::SUBMIT_DUE),
            move_due: Lua::new(super::due::MOVE_DUE),
            defer: Lua::new(super::due::DEFER),
        }
    }

    pub fn all(&self) -> [&Lua; 10] {
        [
            &self.takeover,
            &self.renew,
            &self.settle,
            &self.release,
            &self.submit,
            &self.close,
            &self.sweep,
            &self.submit_due,
            &self.move_due,
            &self.defer,
        ]
    }
}
