//! The `redis` task manager: one stream read through a consumer group.
//!
//! - Each entry has a field `task` holding the envelope (and, after a hand-back, `deliveries`: how many
//!   deliveries came before this entry). The group (default `workerhost`) is created at id 0 with
//!   `MKSTREAM` when missing, so entries already in the stream are read. The consumer name is the host id,
//!   unique per host start.
//! - A claim first takes over entries idle longer than the lease (`XAUTOCLAIM`, counting their delivery
//!   count from the pending list), then reads new ones: without blocking on the shared connection (where it
//!   travels with the settle that freed the slot), and only when that finds nothing, with a short blocking
//!   `XREADGROUP` on a connection of its own (a blocked read on the shared connection would stall renewals
//!   and settles). It never reads more than the host can start.
//! - Renewal re-claims each in-flight entry to this consumer (`XCLAIM ... JUSTID`, idle back to 0), but only
//!   an entry still held by this consumer: one taken over by another host is reported lost, never taken
//!   back. Settling, hand-back and renewal are Lua scripts that check ownership in the same atomic step
//!   (see [`scripts`]).
//! - Settling stores the result document at `<stream>:result:<task id>` (with `result_ttl_seconds`), for
//!   dead tasks too, and a dead letter in `<stream>:dead` (fields `task`, `error`, `attempts`), then acks
//!   and deletes the entry, so the stream does not grow.
//! - `submit` adds the entry and remembers the task id in the hash `<stream>:index` (task id -> entry id),
//!   which `status` uses to tell queued from running; tasks added by hand have no index entry and show in
//!   `status` only once they have a result.

mod due;
mod op_scripts;
mod ops;
mod parse;
mod scripts;
mod settings;
mod status;
#[cfg(test)]
mod tests;

use crate::ops::{Cancelled, DeadFilter, DeadLetter, DeadSelection, OpsError, TypeDepth};
use crate::{
    AdapterError, ClaimRequest, Consumer, Delivery, Envelope, Lease, Queue, ResultDocument,
    RevokeReason, Revoked, Settled, TaskStatus,
};
use parse::{Redactor, text};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, RedisError, Value};
use scripts::{Lua, Scripts};
pub use settings::{MAX_BLOCK_MS, Settings};
use std::collections::HashSet;
use std::sync::atomic::AtomicI64;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often the pending list is scanned for entries of dead hosts, at most (less when the lease is short).
const TAKEOVER_EVERY: Duration = Duration::from_secs(1);
/// How often consumers of hosts long gone are removed from the group.
const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// A consumer with nothing pending and idle this long belongs to a host that is gone.
const SWEEP_IDLE_MS: u64 = 3_600_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the adapter is opened with.
#[derive(Debug, Clone)]
pub struct Options {
    pub host_id: String,
    pub settings: Settings,
}

/// Key names derived from the stream name.
struct Keys {
    stream: String,
    dead: String,
    index: String,
    /// Sorted set: task id scored by due time (ms), for tasks not due yet (see [`due`]).
    due: String,
    /// Hash: task id -> envelope JSON of each task in `due`.
    scheduled: String,
}

impl Keys {
    fn result(&self, task_id: &str) -> String {
        format!("{}:result:{task_id}", self.stream)
    }
}

struct Takeover {
    cursor: String,
    next: Instant,
    next_sweep: Instant,
}

/// The `redis` task manager; see the module docs.
pub struct RedisSource {
    /// Boxed: the adapters share one enum, which should stay small.
    s: Box<State>,
}

struct State {
    /// Renewals, settles, submits: short commands on one multiplexed, self-reconnecting connection.
    conn: ConnectionManager,
    /// The blocking `XREADGROUP` only.
    reader: ConnectionManager,
    keys: Keys,
    group: String,
    consumer: String,
    cfg: Settings,
    red: Redactor,
    scripts: Scripts,
    /// Entry ids this host holds (claimed, not yet settled or handed back).
    inflight: Mutex<HashSet<String>>,
    takeover: tokio::sync::Mutex<Takeover>,
    /// The paused types and when they were read (see [`ops::PAUSED_EVERY`]).
    paused: Mutex<Option<(Instant, HashSet<String>)>>,
    /// Task ids whose renewal said "cancelled": their settle clears the pending cancel.
    cancelled: Mutex<HashSet<String>>,
    /// When due tasks are next moved into the stream (ms since the epoch; see [`due`]).
    next_due: AtomicI64,
}

impl RedisSource {
    /// Prepares the connections (made lazily: a Redis that is down at start makes claims fail with
    /// [`AdapterError::Unavailable`] until it is back) and creates the group if it is missing.
    pub async fn connect(opts: Options) -> Result<RedisSource, AdapterError> {
        let cfg = opts.settings;
        if cfg.block_ms.get() > MAX_BLOCK_MS {
            tracing::warn!(
                block_ms = cfg.block_ms.get(),
                max = MAX_BLOCK_MS,
                "task_manager.block_ms lowered: a claim is not interrupted on shutdown"
            );
        }
        let url = cfg.url().to_string();
        let red = Redactor::new(&url);
        let bad = |e: RedisError| {
            AdapterError::Invalid(format!(
                "redis url {}: {}",
                red.shown,
                red.scrub(&e.to_string())
            ))
        };
        let client = redis::Client::open(url.as_str()).map_err(bad)?;
        let manager = |response: Duration| {
            let c = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(response))
                // One attempt per request: the host backs off and reports the task manager down itself.
                .set_number_of_retries(0);
            ConnectionManager::new_lazy_with_config(client.clone(), c).map_err(bad)
        };
        let conn = manager(RESPONSE_TIMEOUT)?;
        let reader = manager(Duration::from_millis(cfg.block_ms()) + RESPONSE_TIMEOUT)?;
        let now = Instant::now();
        let source = RedisSource {
            s: Box::new(State {
                conn,
                reader,
                keys: Keys {
                    dead: format!("{}:dead", cfg.stream),
                    index: format!("{}:index", cfg.stream),
                    due: format!("{}:due", cfg.stream),
                    scheduled: format!("{}:scheduled", cfg.stream),
                    stream: cfg.stream.clone(),
                },
                group: cfg.group.clone(),
                consumer: opts.host_id,
                cfg,
                red,
                scripts: Scripts::new(),
                inflight: Mutex::default(),
                paused: Mutex::default(),
                cancelled: Mutex::default(),
                takeover: tokio::sync::Mutex::new(Takeover {
                    cursor: "0-0".into(),
                    next: now,
                    next_sweep: now,
                }),
                next_due: AtomicI64::new(0),
            }),
        };
        match source.ensure_group().await {
            Err(AdapterError::Unavailable(e)) => {
                tracing::warn!(error = %e, "redis is not reachable yet; the host retries");
            }
            other => other?,
        }
        Ok(source)
    }

    /// A Redis error as an adapter error, with the password scrubbed.
    fn err(&self, e: &RedisError) -> AdapterError {
        let msg = format!(
            "redis at {}: {}",
            self.s.red.shown,
            self.s.red.scrub(&e.to_string())
        );
        let busy = matches!(
            e.code(),
            Some("LOADING" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN")
        );
        if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || busy {
            AdapterError::Unavailable(msg)
        } else {
            AdapterError::Backend(msg)
        }
    }

    async fn query(&self, cmd: &Cmd) -> Result<Value, AdapterError> {
        let mut c = self.s.conn.clone();
        match cmd.query_async::<Value>(&mut c).await {
            // The scripts are run by hash; a Redis that does not know them (restarted, flushed) learns them.
            Err(e) if e.code() == Some("NOSCRIPT") => {
                for lua in self.s.scripts.all() {
                    let mut load = redis::cmd("SCRIPT");
                    load.arg("LOAD").arg(&lua.body);
                    load.query_async::<Value>(&mut c)
                        .await
                        .map_err(|e| self.err(&e))?;
                }
                cmd.query_async::<Value>(&mut c)
                    .await
                    .map_err(|e| self.err(&e))
            }
            r => r.map_err(|e| self.err(&e)),
        }
    }

    /// A script call by hash (`EVALSHA`): the body is sent only when Redis does not know it yet.
    fn eval(&self, script: &Lua, keys: &[&str]) -> Cmd {
        let mut c = redis::cmd("EVALSHA");
        c.arg(&script.sha).arg(keys.len()).arg(keys);
        c
    }

    /// `XGROUP CREATE <stream> <group> 0 MKSTREAM`; an existing group is fine.
    async fn ensure_group(&self) -> Result<(), AdapterError> {
        let mut c = redis::cmd("XGROUP");
        c.arg("CREATE")
            .arg(&self.s.keys.stream)
            .arg(&self.s.group)
            .arg("0")
            .arg("MKSTREAM");
        let mut conn = self.s.conn.clone();
        match c.query_async::<Value>(&mut conn).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(self.err(&e)),
        }
    }

    fn paused_cache(&self) -> std::sync::MutexGuard<'_, Option<(Instant, HashSet<String>)>> {
        self.s.paused.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cancelled(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.s
            .cancelled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn inflight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.s
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes over entries idle past the lease (at most `want`), unless a scan ran a moment ago.
    async fn take_over(&self, want: usize) -> Result<Vec<Delivery>, AdapterError> {
        let mut t = self.s.takeover.lock().await;
        let now = Instant::now();
        if now >= t.next_sweep {
            t.next_sweep = now + SWEEP_EVERY;
            let idle = SWEEP_IDLE_MS.max(10 * self.s.cfg.lease().as_millis() as u64);
            let mut c = self.eval(&self.s.scripts.sweep, &[&self.s.keys.stream]);
            c.arg(&self.s.group).arg(idle);
            match self.query(&c).await {
                Ok(Value::Int(n)) if n > 0 => {
                    tracing::info!(
                        consumers = n,
                        "removed consumers of hosts long gone from the group"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "consumer sweep failed"),
            }
        }
        if now < t.next {
            return Ok(Vec::new());
        }
        let own: Vec<String> = self.inflight().iter().cloned().collect();
        let mut c = self.eval(&self.s.scripts.takeover, &[&self.s.keys.stream]);
        c.arg(&self.s.group)
            .arg(&self.s.consumer)
            .arg(self.s.cfg.lease().as_millis() as u64)
            .arg(&t.cursor)
            .arg(want)
            .arg(own);
        let reply = match self.query(&c).await {
            Err(AdapterError::Backend(m)) if m.contains("NOGROUP") => {
                self.ensure_group().await?;
                return Ok(Vec::new());
            }
            r => r?,
        };
        let mut parts = parse::items(reply).into_iter();
        let cursor = parts
            .next()
            .as_ref()
            .and_then(text)
            .unwrap_or_else(|| "0-0".into());
        let mut out = Vec::new();
        for e in parse::items(parts.next().unwrap_or(Value::Nil)) {
            let mut e = parse::items(e).into_iter();
            let (Some(id), fields, count) = (e.next().as_ref().and_then(text), e.next(), e.next())
            else {
                continue;
            };
            let count = count
                .as_ref()
                .and_then(text)
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let d = parse::delivery(&id, fields.and_then(parse::fields), count);
            tracing::info!(task_id = %d.lease.task_id, entry = %id, deliveries = d.deliveries, "took over a task whose lease expired");
            out.push(d);
        }
        let deleted: Vec<String> = parse::items(parts.next().unwrap_or(Value::Nil))
            .iter()
            .filter_map(text)
            .collect();
        if !deleted.is_empty() {
            tracing::warn!(entries = ?deleted, "pending entries deleted from the stream were dropped from the group");
        }
        // Scan on at once while there is more to scan or the page was full; otherwise rest a moment.
        let done = cursor == "0-0" && out.len() < want;
        t.cursor = cursor;
        t.next = if done {
            now + TAKEOVER_EVERY.min(self.s.cfg.lease() / 4)
        } else {
            now
        };
        Ok(out)
    }

    /// Reads up to `n` new entries, blocking up to `block_ms` when `block`.
    async fn read_new(&self, n: usize, block: bool) -> Result<Vec<Delivery>, AdapterError> {
        // First without blocking, on the shared connection: while tasks are queued this read travels with
        // the settle that freed the slot (one round trip and one wake-up for both). Only a read that
        // must wait goes to the reader's own connection, so that it stalls no settle or renewal.
        let ready = self.xread(n, None).await?;
        if !block || !ready.is_empty() {
            return Ok(ready);
        }
        self.xread(n, Some(self.block_for(self.s.cfg.block_ms())))
            .await
    }

    /// `XREADGROUP ... COUNT n [BLOCK ms] STREAMS <stream> >`.
    async fn xread(&self, n: usize, block_ms: Option<u64>) -> Result<Vec<Delivery>, AdapterError> {
        let mut c = redis::cmd("XREADGROUP");
        c.arg("GROUP")
            .arg(&self.s.group)
            .arg(&self.s.consumer)
            .arg("COUNT")
            .arg(n);
        if let Some(ms) = block_ms {
            c.arg("BLOCK").arg(ms);
        }
        c.arg("STREAMS").arg(&self.s.keys.stream).arg(">");
        let mut conn = match block_ms {
            Some(_) => self.s.reader.clone(),
            None => self.s.conn.clone(),
        };
        match c.query_async::<Value>(&mut conn).await {
            Ok(v) => Ok(parse::read_reply(v)
                .into_iter()
                .map(|(id, fields)| parse::delivery(&id, fields, 1))
                .collect()),
            // The stream or group is gone (deleted, or a Redis without persistence restarted).
            Err(e) if e.code() == Some("NOGROUP") => {
                self.ensure_group().await?;
                Ok(Vec::new())
            }
            Err(e) => Err(self.err(&e)),
        }
    }

    /// Runs a fenced script; `Ok(None)` means the entry is no longer ours.
    async fn fenced(&self, lease: &Lease, c: Cmd) -> Result<Option<Value>, AdapterError> {
        let v = self.query(&c).await?;
        self.inflight().remove(&lease.receipt);
        Ok(match v {
            Value::Int(0) => None,
            v => Some(v),
        })
    }
}

impl RedisSource {
    /// Records the outcome (see [`Consumer::settle`]); a `cancelled` one is stored like a success.
    async fn settle_entry(&self, lease: &Lease, doc: &ResultDocument) -> Result<(), AdapterError> {
        let json = serde_json::to_string(doc)
            .map_err(|e| AdapterError::Invalid(format!("task {}: result: {e}", lease.task_id)))?;
        let result_key = self.s.keys.result(&lease.task_id);
        let keys = [
            &*self.s.keys.stream,
            &self.s.keys.dead,
            &result_key,
            &self.s.keys.index,
        ];
        let mut c = self.eval(&self.s.scripts.settle, &keys);
        c.arg(&self.s.group)
            .arg(&self.s.consumer)
            .arg(&lease.receipt)
            .arg(doc.status.as_str())
            .arg(json)
            .arg(self.s.cfg.result_ttl().as_millis().max(1) as u64)
            .arg(parse::error_message(doc))
            .arg(doc.attempts)
            .arg(parse::fallback_task(doc))
            .arg(&lease.task_id);
        match self.fenced(lease, c).await? {
            Some(Value::Int(2)) => {
                tracing::debug!(task_id = %lease.task_id, "outcome was already recorded (retry after a lost reply)");
                Ok(())
            }
            Some(Value::Int(3)) => {
                tracing::warn!(task_id = %lease.task_id, stream = %self.s.keys.stream, "outcome recorded, but its stream entry is gone without a trace (Redis restarted without persistence, or the stream was deleted?): queued tasks may have been lost with it");
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(AdapterError::LeaseLost {
                id: lease.task_id.clone(),
            }),
        }
    }
}

impl Consumer for RedisSource {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Delivery>, AdapterError> {
        let want = req.total();
        if want == 0 {
            return Ok(Vec::new());
        }
        self.move_due().await?;
        let mut out = self.take_over(want).await?;
        if out.len() < want {
            // Block only when nothing was taken over: those must start now.
            match self.read_new(want - out.len(), out.is_empty()).await {
                Ok(more) => out.extend(more),
                Err(e) if out.is_empty() => return Err(e),
                Err(e) => tracing::warn!(error = %e, "cannot read new entries"),
            }
        }
        self.inflight()
            .extend(out.iter().map(|d| d.lease.receipt.clone()));
        // An entry added by hand with a `run_at` still ahead waits in the due set, not in a slot.
        let now = crate::now_ms();
        let mut ready = Vec::with_capacity(out.len());
        for d in out {
            match &d.envelope {
                Ok(env) if env.is_scheduled(now) => {
                    let env = env.clone();
                    if let Err(e) = self.defer(&d.lease, &env).await {
                        tracing::warn!(task_id = %env.id, error = %e, "cannot move a task that is not due yet to the due set; it is delivered again later");
                    }
                }
                _ => ready.push(d),
            }
        }
        Ok(self.park_paused(ready).await)
    }

    async fn renew(&self, leases: &[Lease]) -> Result<Vec<Revoked>, AdapterError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.eval(&self.s.scripts.renew, &[&self.s.keys.stream]);
        c.arg(&self.s.group).arg(&self.s.consumer);
        for l in leases {
            c.arg(&l.receipt);
        }
        let lost: HashSet<String> = parse::items(self.query(&c).await?)
            .iter()
            .filter_map(text)
            .collect();
        let mut revoked: Vec<Revoked> = leases
            .iter()
            .filter(|l| lost.contains(&l.receipt))
            .cloned()
            .map(Revoked::lost)
            .collect();
        // Held still: is a cancel pending for any? (Their leases stay renewed: they settle `cancelled`.)
        let held: Vec<&Lease> = leases
            .iter()
            .filter(|l| !lost.contains(&l.receipt))
            .collect();
        if !held.is_empty() {
            let ids: Vec<&str> = held.iter().map(|l| l.task_id.as_str()).collect();
            let pending = self.cancel_pending(&ids).await?;
            for (l, cancel) in held.into_iter().zip(pending) {
                if cancel {
                    self.cancelled().insert(l.task_id.clone());
                    revoked.push(Revoked {
                        lease: l.clone(),
                        reason: RevokeReason::Cancelled,
                    });
                }
            }
        }
        Ok(revoked)
    }

    async fn settle(&self, lease: &Lease, doc: &ResultDocument) -> Result<Settled, AdapterError> {
        self.record(lease, doc).await.map(|()| Settled::Recorded)
    }

    /// Hands the entry back: re-added as a new entry (so a waiting host gets it at once) carrying the
    /// deliveries before this one, then the old entry is acked and deleted. The task goes to the back of
    /// the stream.
    async fn release(&self, lease: &Lease) -> Result<(), AdapterError> {
        let keys = [&*self.s.keys.stream, &self.s.keys.index];
        let mut c = self.eval(&self.s.scripts.release, &keys);
        c.arg(&self.s.group)
            .arg(&self.s.consumer)
            .arg(&lease.receipt)
            .arg(&lease.task_id);
        match self.fenced(lease, c).await? {
            Some(_) => Ok(()),
            None => Err(AdapterError::LeaseLost {
                id: lease.task_id.clone(),
            }),
        }
    }

    /// The attempt is recorded by moving the entry to the due set (acked and deleted from the stream in
    /// the same script), carrying the attempts and the last error in the envelope.
    async fn requeue(&self, lease: &Lease, task: &Envelope) -> Result<(), AdapterError> {
        self.defer(lease, task).await
    }

    async fn ping(&self) -> Result<(), AdapterError> {
        self.query(&redis::cmd("PING")).await.map(drop)
    }

    /// The blocking read already waited `block_ms`.
    fn idle_wait(&self) -> Duration {
        Duration::from_millis(10)
    }

    async fn close(&self) {
        let mut c = self.eval(&self.s.scripts.close, &[&self.s.keys.stream]);
        c.arg(&self.s.group).arg(&self.s.consumer);
        if let Err(e) = self.query(&c).await {
            tracing::debug!(error = %e, "could not remove this host's consumer from the group");
        }
    }
}

impl Queue for RedisSource {
    async fn submit(&self, envelope: &Envelope) -> Result<(), AdapterError> {
        if envelope.id.is_empty() || envelope.task_type.is_empty() {
            return Err(AdapterError::Invalid(
                "a task needs a non-empty id and type".into(),
            ));
        }
        let json = serde_json::to_string(envelope)
            .map_err(|e| AdapterError::Invalid(format!("task {}: {e}", envelope.id)))?;
        if let Some(due) = envelope
            .run_at
            .filter(|_| envelope.is_scheduled(crate::now_ms()))
        {
            return self.submit_due(envelope, json, due).await;
        }
        let result_key = self.s.keys.result(&envelope.id);
        let keys = [
            &*self.s.keys.stream,
            &result_key,
            &self.s.keys.index,
            &self.s.keys.scheduled,
        ];
        let mut c = self.eval(&self.s.scripts.submit, &keys);
        c.arg(&envelope.id).arg(json);
        match self.query(&c).await? {
            Value::Nil => Err(AdapterError::Duplicate {
                id: envelope.id.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// The result document while it is kept; else, for tasks enqueued with `submit`, `queued` or
    /// `running` (in the pending list) with the delivery count. `deliveries` is 0 for settled tasks:
    /// Redis keeps only the result document once the entry is acked.
    async fn status(&self, id: &str) -> Result<Option<TaskStatus>, AdapterError> {
        self.lookup(id).await
    }

    async fn cancel(&self, id: &str) -> Result<Cancelled, OpsError> {
        self.op_cancel(id).await
    }
    async fn dead_list(&self, f: &DeadFilter) -> Result<Vec<DeadLetter>, OpsError> {
        self.op_dead_list(f).await
    }
    async fn dead_retry(&self, which: &DeadSelection) -> Result<u64, OpsError> {
        self.op_dead_retry(which).await
    }
    async fn dead_purge(&self, f: &DeadFilter) -> Result<u64, OpsError> {
        self.op_dead_purge(f).await
    }
    async fn depth(&self) -> Result<Vec<TypeDepth>, OpsError> {
        self.op_depth().await
    }
    async fn set_paused(&self, task_type: &str, paused: bool) -> Result<(), OpsError> {
        self.op_set_paused(task_type, paused).await
    }
}

impl RedisSource {
    /// Records the outcome (see [`Consumer::settle`]).
    async fn record(&self, lease: &Lease, doc: &ResultDocument) -> Result<(), AdapterError> {
        let r = self.settle_entry(lease, doc).await;
        if !matches!(r, Err(AdapterError::Unavailable(_)))
            && self.cancelled().remove(&lease.task_id)
        {
            self.cancel_done(&lease.task_id).await;
        }
        r
    }
}
