//! Tasks that are not due yet (section 7): a sorted set `<stream>:due` (task id scored by its due time in
//! ms) beside the stream, and the hash `<stream>:scheduled` (task id -> envelope JSON).
//!
//! Any host moves due tasks into the stream with one Lua script ([`MOVE_DUE`]). A script runs atomically
//! on the server: two hosts moving at once cannot move a task twice (the second finds it gone from the
//! set), and a host that dies mid-call cannot lose one (the script runs whole or not at all, whatever
//! becomes of the client). The mover does not spin: it runs when the earliest due time it last saw has come,
//! and otherwise at most every [`DUE_POLL_MS`] (tasks scheduled by other processes may be earlier); a
//! blocking read never waits past that moment. With 100,000 tasks due tomorrow an idle host makes one
//! O(log n) call a second.
//!
//! A retry that waits in the task manager ([`crate::Consumer::requeue`]) and an entry added to the stream
//! by hand with a future `run_at` are both moved from the stream to the set by [`DEFER`], fenced like
//! settling.

use super::RedisSource;
use crate::{AdapterError, Envelope, Lease, Stamp, now_ms};
use redis::Value;
use std::sync::atomic::Ordering;

/// How often a host looks for due tasks at most, when it knows of none due sooner.
pub(super) const DUE_POLL_MS: i64 = 1_000;
/// Tasks moved per script call (the next claim moves more at once).
const MOVE_LIMIT: usize = 1_000;

/// Enqueue of a task not due yet, with the duplicate checks of `SUBMIT`. KEYS: stream, result key, index,
/// scheduled hash, due set. ARGV: task id, task JSON, due ms. Returns 1, or nil for a duplicate id.
pub(super) const SUBMIT_DUE: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then return false end
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old and (string.sub(old, 1, 7) == 'parked:' or entry(KEYS[1], old)) then return false end
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
return 1
"#;

/// Moves every task due by ARGV[1] (ms), at most ARGV[2], into the stream. KEYS: stream, due set,
/// scheduled hash, index. Returns `{moved, earliest due time left or -1}`.
pub(super) const MOVE_DUE: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local t = redis.call('HGET', KEYS[3], id)
  if t then
    local e = redis.call('XADD', KEYS[1], '*', 'task', t)
    redis.call('HSET', KEYS[4], id, e)
    redis.call('HDEL', KEYS[3], id)
  end
  redis.call('ZREM', KEYS[2], id)
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {#ids, first[2] or '-1'}
"#;

/// Moves a delivered entry (still held by this consumer) to the due set. KEYS: stream, due set, scheduled
/// hash, index. ARGV: group, consumer, entry id, task id, task JSON, due ms. Returns 1, or 0 when the
/// entry is no longer ours.
pub(super) const DEFER: &str = r#"
local who = pending(KEYS[1], ARGV[1], ARGV[3])
if who ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[4])
if redis.call('HGET', KEYS[4], ARGV[4]) == ARGV[3] then redis.call('HDEL', KEYS[4], ARGV[4]) end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return 1
"#;

impl RedisSource {
    /// Moves due tasks into the stream when the earliest known due time has come or the poll interval
    /// passed; otherwise does nothing (no round trip).
    pub(super) async fn move_due(&self) -> Result<(), AdapterError> {
        let now = now_ms();
        if now < self.s.next_due.load(Ordering::Relaxed) {
            return Ok(());
        }
        let k = &self.s.keys;
        let mut c = self.eval(
            &self.s.scripts.move_due,
            &[&k.stream, &k.due, &k.scheduled, &k.index],
        );
        c.arg(now).arg(MOVE_LIMIT);
        let reply = super::parse::items(self.query(&c).await?);
        let num = |v: Option<&Value>| -> Option<i64> {
            v.and_then(super::parse::text)
                .and_then(|t| t.parse::<f64>().ok())
                .map(|f| f as i64)
        };
        let moved = num(reply.first()).unwrap_or(0);
        let earliest = num(reply.get(1)).filter(|t| *t >= 0);
        let next = if moved as usize >= MOVE_LIMIT {
            now
        } else {
            earliest.map_or(now + DUE_POLL_MS, |t| t.min(now + DUE_POLL_MS))
        };
        self.s.next_due.store(next, Ordering::Relaxed);
        if moved > 0 {
            tracing::debug!(moved, "due tasks moved into the stream");
        }
        Ok(())
    }

    /// How long a blocking read may wait before the mover must run again (at least 1 ms: `BLOCK 0`
    /// would wait for ever).
    pub(super) fn block_for(&self, block_ms: u64) -> u64 {
        let until = self.s.next_due.load(Ordering::Relaxed) - now_ms();
        block_ms.min(u64::try_from(until).unwrap_or(0).max(1))
    }

    /// Lowers the next mover run to `due` (a task this process scheduled).
    fn due_at(&self, due: Stamp) {
        self.s.next_due.fetch_min(due.0, Ordering::Relaxed);
    }

    /// Enqueues a task whose `run_at` is still ahead.
    pub(super) async fn submit_due(
        &self,
        env: &Envelope,
        json: String,
        due: Stamp,
    ) -> Result<(), AdapterError> {
        let k = &self.s.keys;
        let result_key = k.result(&env.id);
        let mut c = self.eval(
            &self.s.scripts.submit_due,
            &[&k.stream, &result_key, &k.index, &k.scheduled, &k.due],
        );
        c.arg(&env.id).arg(json).arg(due.0);
        match self.query(&c).await? {
            Value::Nil => Err(AdapterError::Duplicate { id: env.id.clone() }),
            _ => {
                self.due_at(due);
                Ok(())
            }
        }
    }

    /// Moves a delivered entry back to the due set, due at `task.run_at` (now when absent).
    pub(super) async fn defer(&self, lease: &Lease, task: &Envelope) -> Result<(), AdapterError> {
        let json = serde_json::to_string(task)
            .map_err(|e| AdapterError::Invalid(format!("task {}: {e}", task.id)))?;
        let due = task.run_at.unwrap_or_else(Stamp::now);
        let k = &self.s.keys;
        let mut c = self.eval(
            &self.s.scripts.defer,
            &[&k.stream, &k.due, &k.scheduled, &k.index],
        );
        c.arg(&self.s.group)
            .arg(&self.s.consumer)
            .arg(&lease.receipt)
            .arg(&task.id)
            .arg(json)
            .arg(due.0);
        match self.fenced(lease, c).await? {
            Some(_) => {
                self.due_at(due);
                Ok(())
            }
            None => Err(AdapterError::LeaseLost {
                id: lease.task_id.clone(),
            }),
        }
    }

    /// A scheduled task's envelope, if `id` is one.
    pub(super) async fn scheduled(&self, id: &str) -> Result<Option<Envelope>, AdapterError> {
        let mut c = redis::cmd("HGET");
        c.arg(&self.s.keys.scheduled).arg(id);
        let Some(raw) = super::parse::text(&self.query(&c).await?) else {
            return Ok(None);
        };
        Envelope::parse(raw.as_bytes())
            .map(Some)
            .map_err(|e| AdapterError::Backend(format!("task {id}: scheduled entry: {e}")))
    }
}
