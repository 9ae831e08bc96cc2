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

mod consume;
mod due;
mod op_scripts;
mod ops;
mod parse;
mod scripts;
mod settings;
mod status;
#[cfg(test)]
mod tests;

use crate::AdapterError;
use parse::Redactor;
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
                    stream: cfg.stream.to_string(),
                },
                group: cfg.group.to_string(),
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
}
