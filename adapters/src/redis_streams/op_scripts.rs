//! The Lua scripts of the section 8 operations on Redis. Each runs atomically on the server, so a host
//! claiming or settling meanwhile never sees half of one. They are rare (an operator's command, a depth
//! sample every few seconds), so they are sent whole (`EVAL`), not loaded by hash.
//!
//! Keys: the stream, `<stream>:dead` (dead letters), `<stream>:index` (task id -> entry id),
//! `<stream>:cancel` (ids of running tasks with a cancel pending), `<stream>:paused` (paused types),
//! `<stream>:parked` (entries of paused types taken out of the stream until their type is resumed), and
//! `<stream>:result:<id>` (named in the scripts from the prefix in ARGV).

/// Task id and type of a `task` field (nil, nil when it is not an envelope).
const ENVELOPE: &str = r#"
local function envelope(task)
  if not task then return nil, nil end
  local ok, env = pcall(cjson.decode, task)
  if not ok or type(env) ~= 'table' then return nil, nil end
  local id, ty = env['id'], env['type']
  if type(id) == 'number' then id = string.format('%d', id) end
  if type(id) ~= 'string' then id = nil end
  if type(ty) ~= 'string' then ty = nil end
  return id, ty
end
"#;

/// Cancel. KEYS: stream, result key, index, cancel set, parked, scheduled hash, due set. ARGV: group, task id, result ttl ms, host, now
/// (RFC 3339). Returns {'done'} (queued: removed, a `cancelled` result stored), {'requested'} (running:
/// its host learns it at its next renewal), {'finished', status} or {'missing'}.
pub(super) const CANCEL: &str = r#"
local stored = redis.call('GET', KEYS[2])
if stored then
  local ok, doc = pcall(cjson.decode, stored)
  local st = (ok and type(doc) == 'table' and doc['status']) or 'finished'
  return {'finished', st}
end
local function store_cancelled(ty, attempts)
  local doc = cjson.encode({id = ARGV[2], type = ty or '', status = 'cancelled',
    error = {message = 'cancelled before it ran', outcome = 'cancelled'},
    attempts = attempts, host = ARGV[4], started_at = ARGV[5], finished_at = ARGV[5], duration_ms = 0})
  redis.call('SET', KEYS[2], doc, 'PX', ARGV[3])
end
local scheduled = redis.call('HGET', KEYS[6], ARGV[2])
if scheduled then
  local _, ty = envelope(scheduled)
  local ok, env = pcall(cjson.decode, scheduled)
  local attempts = (ok and type(env) == 'table' and tonumber(env['attempts'])) or 0
  redis.call('HDEL', KEYS[6], ARGV[2])
  redis.call('ZREM', KEYS[7], ARGV[2])
  store_cancelled(ty, attempts)
  return {'done'}
end
local eid = redis.call('HGET', KEYS[3], ARGV[2])
local from = KEYS[1]
if eid and string.sub(eid, 1, 7) == 'parked:' then
  from = KEYS[5]
  eid = string.sub(eid, 8)
end
local f = eid and entry(from, eid)
if not f then return {'missing'} end
if from == KEYS[1] and pending(KEYS[1], ARGV[1], eid) then
  redis.call('SADD', KEYS[4], ARGV[2])
  return {'requested'}
end
local _, ty = envelope(field(f, 'task'))
store_cancelled(ty, tonumber(field(f, 'deliveries')) or 0)
redis.call('XDEL', from, eid)
redis.call('HDEL', KEYS[3], ARGV[2])
return {'done'}
"#;

/// Dead-letter retry. KEYS: stream, dead, index. ARGV: result key prefix, 'ids' or 'all', type filter
/// ('' = any), then the ids. Every dead letter retried is added to the stream again with its `task` field
/// only (attempts start over), indexed, its result deleted, and its dead-letter entry removed.
/// 'ids' is all or nothing: returns {'missing', id} or {'notdead', id, status} and changes nothing, else
/// {'ok', n}.
pub(super) const DEAD_RETRY: &str = r#"
local want, order = {}, {}
for i = 4, #ARGV do want[ARGV[i]] = true; table.insert(order, ARGV[i]) end
local found = {}
for _, e in ipairs(redis.call('XRANGE', KEYS[2], '-', '+')) do
  local task = field(e[2], 'task')
  local id, ty = envelope(task)
  if id and (ARGV[2] == 'all' or want[id]) and (ARGV[3] == '' or ARGV[3] == ty) then
    found[id] = found[id] or {}
    table.insert(found[id], {e[1], task})
  end
end
if ARGV[2] == 'ids' then
  for _, id in ipairs(order) do
    if not found[id] then
      local stored = redis.call('GET', ARGV[1] .. id)
      if stored then
        local ok, doc = pcall(cjson.decode, stored)
        return {'notdead', id, (ok and type(doc) == 'table' and doc['status']) or 'finished'}
      end
      local eid = redis.call('HGET', KEYS[3], id)
      if eid and (string.sub(eid, 1, 7) == 'parked:' or entry(KEYS[1], eid)) then return {'notdead', id, 'queued or running'} end
      return {'missing', id}
    end
  end
end
local n = 0
for id, list in pairs(found) do
  local newest = list[#list]
  local new = redis.call('XADD', KEYS[1], '*', 'task', newest[2])
  redis.call('HSET', KEYS[3], id, new)
  redis.call('DEL', ARGV[1] .. id)
  for _, e in ipairs(list) do redis.call('XDEL', KEYS[2], e[1]) end
  n = n + 1
end
return {'ok', n}
"#;

/// Dead-letter purge. KEYS: dead. ARGV: result key prefix, last entry id to consider ('+' = all), type
/// filter ('' = any). Deletes the dead letters (and their stored results); returns how many.
pub(super) const DEAD_PURGE: &str = r#"
local n = 0
for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', ARGV[2])) do
  local id, ty = envelope(field(e[2], 'task'))
  if ARGV[3] == '' or ARGV[3] == ty then
    redis.call('XDEL', KEYS[1], e[1])
    if id then redis.call('DEL', ARGV[1] .. id) end
    n = n + 1
  end
end
return n
"#;

/// Depth. KEYS: stream, dead, parked, paused, scheduled hash. ARGV: group. Returns a flat list of
/// {type, state, count, first entry id} (state: queued, running, dead) and then {'paused', type}... as
/// separate rows. Entries after the group's last-delivered id are queued; the others are pending
/// (settled entries are deleted, handed-back ones re-added). Parked entries count as queued.
pub(super) const DEPTH: &str = r#"
local last = '0-0'
local groups = redis.pcall('XINFO', 'GROUPS', KEYS[1])
if type(groups) == 'table' and not groups.err then
  for _, g in ipairs(groups) do
    if field(g, 'name') == ARGV[1] then last = field(g, 'last-delivered-id') end
  end
end
local function after(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am > bm or (am == bm and as > bs)
end
local rows, first = {}, {}
local function add(ty, state, eid)
  local k = ty .. '\0' .. state
  if not rows[k] then rows[k] = {ty, state, 0, eid} end
  rows[k][3] = rows[k][3] + 1
end
for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  local _, ty = envelope(field(e[2], 'task'))
  if after(e[1], last) then add(ty or '', 'queued', e[1]) else add(ty or '', 'running', e[1]) end
end
for _, e in ipairs(redis.call('XRANGE', KEYS[3], '-', '+')) do
  local _, ty = envelope(field(e[2], 'task'))
  add(ty or '', 'parked', field(e[2], 'since') or e[1])
end
for _, e in ipairs(redis.call('XRANGE', KEYS[2], '-', '+')) do
  local _, ty = envelope(field(e[2], 'task'))
  add(ty or '', 'dead', e[1])
end
for _, task in ipairs(redis.call('HVALS', KEYS[5])) do
  local _, ty = envelope(task)
  add(ty or '', 'scheduled', '')
end
local out = {}
for _, r in pairs(rows) do table.insert(out, r) end
for _, t in ipairs(redis.call('SMEMBERS', KEYS[4])) do table.insert(out, {t, 'paused', 0, ''}) end
return out
"#;

/// Parks a just-claimed entry of a paused type. KEYS: stream, parked, index, paused. ARGV: group,
/// consumer, entry id, task id, type. The entry is added to the parked stream (with `since`: its original
/// entry id, for the oldest-task age) and acked and deleted from the stream. Returns 1; 0 when it is not
/// ours; 2 when the type is no longer paused (a host's view of the paused set may be a moment old: a
/// resume in between must not leave the entry parked), and the caller runs it.
pub(super) const PARK: &str = r#"
if pending(KEYS[1], ARGV[1], ARGV[3]) ~= ARGV[2] then return 0 end
if redis.call('SISMEMBER', KEYS[4], ARGV[5]) == 0 then return 2 end
local f = entry(KEYS[1], ARGV[3])
if f then
  local args = {}
  for i = 1, #f, 2 do
    if f[i] ~= 'since' then table.insert(args, f[i]); table.insert(args, f[i + 1]) end
  end
  table.insert(args, 'since'); table.insert(args, field(f, 'since') or ARGV[3])
  local new = redis.call('XADD', KEYS[2], '*', unpack(args))
  if redis.call('HGET', KEYS[3], ARGV[4]) == ARGV[3] then redis.call('HSET', KEYS[3], ARGV[4], 'parked:' .. new) end
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return 1
"#;

/// Resume: un-parks every parked entry of a type. KEYS: stream, parked, index, paused. ARGV: type.
/// Returns how many went back to the stream.
pub(super) const RESUME: &str = r#"
redis.call('SREM', KEYS[4], ARGV[1])
local n = 0
for _, e in ipairs(redis.call('XRANGE', KEYS[2], '-', '+')) do
  local task = field(e[2], 'task')
  local id, ty = envelope(task)
  if ty == ARGV[1] then
    local args = {}
    for i = 1, #e[2], 2 do table.insert(args, e[2][i]); table.insert(args, e[2][i + 1]) end
    local new = redis.call('XADD', KEYS[1], '*', unpack(args))
    if id and redis.call('HGET', KEYS[3], id) == 'parked:' .. e[1] then redis.call('HSET', KEYS[3], id, new) end
    redis.call('XDEL', KEYS[2], e[1])
    n = n + 1
  end
end
return n
"#;

/// A script with the shared helpers, for `EVAL`.
pub(super) fn body(script: &str) -> String {
    format!("{}{ENVELOPE}{script}", super::scripts::COMMON)
}
