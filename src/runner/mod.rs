//! How one attempt runs. A [`Runner`] (spawn, pool or remote; built once per worker by the
//! [registry](crate::registry)) starts the worker, feeds it the task document and collects its answer;
//! [`classify`] turns that answer into an [`Outcome`], in one place for all three. A runner never
//! retries: what happens next is the [verdict](crate::proxy)'s business.
//!
//! - [`spawn`]: a fresh process per attempt; [`pool`]: long-lived processes, one JSON line each way;
//!   [`remote`]: an HTTP POST.
//! - [`group`]: starting and stopping process groups (also used by the command observer);
//!   [`output`]: reading a worker's stdout and stderr without trusting them.

pub mod child;
pub mod classify;
pub mod escapees;
pub mod group;
pub mod launch;
pub mod leader;
mod outcome;
pub mod output;
mod pool;
mod remote;
mod spawn;

use crate::config::WorkerConfig;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use workerhost_sdk::TaskDocument;

pub use launch::Launch;
pub use outcome::{Attempt, Outcome, OutcomeKind, Usage};
pub use pool::Pool;
pub use remote::RemoteRunner;
pub use spawn::SpawnRunner;

/// How a worker's attempts run; held by its registry entry.
#[derive(Debug, Clone)]
pub enum Runner {
    /// A fresh process per attempt.
    Spawn(SpawnRunner),
    /// Long-lived processes (shared by every task of the worker, carried across reloads).
    Pool(Arc<Pool>),
    /// An HTTP endpoint.
    Remote(RemoteRunner),
}

/// A worker whose runner cannot be built.
#[derive(Debug, Clone, thiserror::Error)]
#[error("worker {worker}: {reason}")]
pub struct RunnerError {
    pub worker: String,
    pub reason: String,
}

impl Runner {
    /// The runner for `worker`. `restarts` counts replaced pool processes; remote workers share `http`.
    pub fn for_worker(
        worker: &WorkerConfig,
        kill_grace: Duration,
        restarts: Arc<AtomicU64>,
        http: impl FnOnce() -> reqwest::Client,
    ) -> Result<Runner, RunnerError> {
        if let crate::config::WorkerKind::Remote { url } = &worker.kind {
            return Ok(Runner::Remote(RemoteRunner::new(http(), url.clone())));
        }
        let launch = Launch::of(&worker.kind).ok_or_else(|| RunnerError {
            worker: worker.name.clone(),
            reason: "no program to start (empty command)".into(),
        })?;
        Ok(match worker.mode {
            crate::config::Mode::Pool => {
                Runner::Pool(Arc::new(Pool::new(worker, launch, restarts, kill_grace)))
            }
            crate::config::Mode::Spawn => Runner::Spawn(SpawnRunner { launch, kill_grace }),
        })
    }

    /// A pool's processes are replaced (idle ones now, busy ones after their task); other runners start
    /// a process per attempt anyway. Returns how many idle processes were ended.
    pub fn recycle(&self) -> usize {
        match self {
            Runner::Pool(p) => p.recycle(),
            _ => 0,
        }
    }

    /// Runs one attempt ([`Job`]). Each runner's future is boxed: inline, every task's future would be
    /// as large as the largest of the three (the remote runner's HTTP client future), and it is moved
    /// when the task is spawned.
    pub async fn run(&self, job: Job<'_>) -> Attempt {
        match self {
            Runner::Spawn(s) => Box::pin(s.run(job)).await,
            Runner::Pool(p) => Box::pin(p.run(job)).await,
            Runner::Remote(r) => Box::pin(r.run(job)).await,
        }
    }
}

/// What one attempt runs with: the worker, the task document (this attempt's number and traceparent in
/// it), `kill` (the host's forced stop: the attempt ends at once, [`Outcome::Interrupted`]) and where
/// progress lines on stderr go.
#[derive(Clone, Copy)]
pub struct Job<'a> {
    pub worker: &'a WorkerConfig,
    pub doc: &'a TaskDocument,
    pub kill: &'a CancellationToken,
    pub progress: &'a ProgressSink,
}

/// A worker's progress report: a stderr line `{"progress": 40, "message": "..."}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub task_id: String,
    pub percent: f64,
    pub message: Option<String>,
}

/// Where progress lines go: a function that takes each report as it is read, in order, and must not
/// block (the task manager's adapter queues or throttles it). Being called in line, it has every
/// report of an attempt before the attempt ends, so none can overtake the task's outcome.
#[derive(Clone, Default)]
pub struct ProgressSink(Option<Arc<dyn Fn(Progress) + Send + Sync>>);

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ProgressSink")
            .field(&self.0.is_some())
            .finish()
    }
}

impl ProgressSink {
    pub fn new(to: impl Fn(Progress) + Send + Sync + 'static) -> ProgressSink {
        ProgressSink(Some(Arc::new(to)))
    }

    /// Whether `line` is a progress line; if so it is forwarded (when a sink is connected).
    pub fn offer(&self, task_id: &str, line: &str) -> bool {
        let t = line.trim();
        if !t.starts_with('{') || !t.contains("\"progress\"") {
            return false;
        }
        let Ok(Value::Object(m)) = serde_json::from_str::<Value>(t) else {
            return false;
        };
        let Some(percent) = m.get("progress").and_then(Value::as_f64) else {
            return false;
        };
        if let Some(to) = &self.0 {
            to(Progress {
                task_id: task_id.to_string(),
                percent,
                message: m.get("message").and_then(Value::as_str).map(str::to_string),
            });
        }
        true
    }
}
