//! Pool mode: long-lived worker processes that read one JSON task per line and answer one JSON result
//! per line, so the interpreter start-up is paid once per process, not once per task.
//!
//! Each process runs in its own process group. A process that dies, times out, answers garbage, or has
//! served `max_tasks_per_process` tasks is retired (its whole group killed) and replaced on demand; each
//! replacement is counted in the worker's `restarts` (exported as `workerhost_worker_restarts_total`).

use super::group::{self, Group, StartError};
use super::launch::Launch;
use super::leader::Leader;
use super::output::{Serving, Tail, drain_stderr};
use super::{Attempt, Job, Outcome, ProgressSink, classify};
use crate::config::WorkerConfig;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use workerhost_sdk::{LogLine, TaskDocument};

/// The processes of one pool-mode worker.
pub struct Pool {
    worker: String,
    launch: Launch,
    idle: Mutex<Vec<PoolProcess>>,
    /// At most `pool_size` attempts (and so processes) at once.
    slots: Semaphore,
    restarts: Arc<AtomicU64>,
    kill_grace: Duration,
    /// Bumped by [`Pool::recycle`]: a process started before goes when its task ends.
    generation: AtomicU64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("worker", &self.worker)
            .field("idle", &self.idle_count())
            .finish()
    }
}

struct PoolProcess {
    child: Leader,
    group: Group,
    /// Marks the process and what it starts, for [`Group::sweep`].
    token: u64,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    served: u64,
    /// The pool's generation when it started.
    generation: u64,
    /// The task being served, for the stderr reader.
    serving: Arc<Mutex<Serving>>,
}

impl Drop for PoolProcess {
    fn drop(&mut self) {
        // The group goes with the process, and what left the group: nothing a pool worker started
        // outlives it.
        self.group.kill();
        self.group.sweep(self.token);
    }
}

/// What came back on a process's stdout for one task.
enum Read {
    Line(Vec<u8>),
    Eof,
    TooLong,
    TimedOut,
    Killed,
}

impl Pool {
    pub fn new(
        worker: &WorkerConfig,
        launch: Launch,
        restarts: Arc<AtomicU64>,
        kill_grace: Duration,
    ) -> Pool {
        Pool {
            worker: worker.name.clone(),
            launch,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(worker.pool_size.max(1)),
            restarts,
            kill_grace,
            generation: AtomicU64::new(0),
        }
    }

    /// Ends the idle processes now and the busy ones when their task ends, so that the next tasks get
    /// fresh processes (`run --watch` after a change to the worker's code). Returns how many were idle.
    pub fn recycle(&self) -> usize {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let idle = self
            .idle
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        let n = idle.len();
        for p in idle {
            self.retire(p, true);
        }
        n
    }

    /// Processes alive and idle right now.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    async fn start(
        &self,
        cfg: &WorkerConfig,
        progress: &ProgressSink,
    ) -> Result<PoolProcess, StartError> {
        let (mut child, group, token) = group::start_worker(&self.launch, cfg, None).await?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(StartError::Invalid {
                program: self.launch.program(),
                reason: "the process has no stdio pipes".into(),
            });
        };
        let serving = Arc::new(Mutex::new(Serving::default()));
        let (s, worker, progress) = (serving.clone(), self.worker.clone(), progress.clone());
        tokio::spawn(async move { drain_stderr(stderr, &s, &worker, &progress).await });
        Ok(PoolProcess {
            child,
            group,
            token,
            stdin,
            stdout: BufReader::new(stdout),
            served: 0,
            generation: self.generation.load(Ordering::SeqCst),
            serving,
        })
    }

    /// Runs one attempt on an idle process (starting one if none is idle).
    pub async fn run(&self, job: Job<'_>) -> Attempt {
        let Job {
            worker: cfg,
            doc,
            kill,
            progress,
        } = job;
        let started = Instant::now();
        let Ok(_slot) = self.slots.acquire().await else {
            return Attempt::ended(Outcome::Interrupted, started, String::new(), None);
        };
        let reused = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut p = match reused {
            Some(p) => p,
            None => match self.start(cfg, progress).await {
                Ok(p) => p,
                Err(e) => {
                    let reason = e.to_string();
                    let outcome = Outcome::SpawnError { reason };
                    return Attempt::ended(outcome, started, String::new(), None);
                }
            },
        };
        if let Ok(mut s) = p.serving.lock() {
            s.task_id = Some(doc.id.clone());
            s.tail = Tail::default();
        }
        let read = exchange(&mut p, doc, cfg, kill).await;
        let (outcome, logs, keep) = self.judge(&mut p, read, doc, cfg).await;
        let usage = p.child.usage().map(super::Usage::from);
        let why = p
            .serving
            .lock()
            .ok()
            .and_then(|s| s.tail.last_line().map(str::to_string));
        let limit_line = p
            .serving
            .lock()
            .ok()
            .and_then(|s| s.tail.limit_line().map(str::to_string));
        let outcome = outcome.under_limits(&cfg.limits, usage.as_ref(), limit_line.as_deref());
        let outcome = self.launch.import_failure(outcome, why);
        let tail = p
            .serving
            .lock()
            .map(|mut s| {
                s.task_id = None;
                s.tail.text()
            })
            .unwrap_or_default();
        p.served += 1;
        let limit_reached = cfg.max_tasks_per_process.is_some_and(|m| p.served >= m)
            || p.generation != self.generation.load(Ordering::SeqCst);
        if keep && !limit_reached {
            if let Ok(mut idle) = self.idle.lock() {
                idle.push(p);
            }
        } else {
            self.retire(p, keep);
        }
        let mut a = Attempt::ended(outcome, started, tail, None);
        a.logs = logs;
        a
    }

    /// What the answer means, and whether the process may serve again. A timed-out process is stopped
    /// here; a dead one's exit status is the outcome.
    async fn judge(
        &self,
        p: &mut PoolProcess,
        read: Read,
        doc: &TaskDocument,
        cfg: &WorkerConfig,
    ) -> (Outcome, Vec<LogLine>, bool) {
        match read {
            Read::Line(buf) => classify::of_pool_line(&buf, &doc.id),
            Read::TooLong => (
                Outcome::ProtocolError {
                    reason: format!(
                        "result line exceeded max_output_bytes ({} bytes); process killed",
                        cfg.max_output_bytes
                    ),
                },
                Vec::new(),
                false,
            ),
            Read::Eof => {
                // The process died mid-task: how it died is the outcome.
                let status = tokio::time::timeout(Duration::from_secs(2), p.child.wait()).await;
                let (exit_code, signal) = match status {
                    Ok(Ok(s)) => (s.code(), s.signal()),
                    _ => (None, None),
                };
                let crashed = Outcome::Crashed { exit_code, signal };
                (crashed, Vec::new(), false)
            }
            Read::TimedOut => {
                p.group.stop(&mut p.child, self.kill_grace).await;
                // Whatever is left of the group goes too, and what left it.
                p.group.kill();
                p.group.sweep_all(p.token).await;
                (Outcome::host_timeout(cfg), Vec::new(), false)
            }
            Read::Killed => (Outcome::Interrupted, Vec::new(), false),
        }
    }

    /// Takes a process out of the pool. A healthy one (task limit) gets EOF on stdin and a moment to
    /// exit; anything else is killed with its group at once.
    fn retire(&self, mut p: PoolProcess, healthy: bool) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(worker = %self.worker, served = p.served, healthy, "retiring pool process");
        tokio::spawn(async move {
            if healthy {
                let _ = p.stdin.shutdown().await;
                let _ = tokio::time::timeout(Duration::from_secs(2), p.child.wait()).await;
            }
            // Drop kills the group; reap the leader.
            p.group.kill();
            let _ = p.child.wait().await;
        });
    }
}

/// Writes the task line and reads the answer line, within the worker's timeout.
async fn exchange(
    p: &mut PoolProcess,
    doc: &TaskDocument,
    cfg: &WorkerConfig,
    kill: &CancellationToken,
) -> Read {
    let mut line = serde_json::to_vec(doc).unwrap_or_default();
    line.push(b'\n');
    let wrote = async {
        p.stdin.write_all(&line).await?;
        p.stdin.flush().await
    }
    .await;
    if wrote.is_err() {
        return Read::Eof;
    }
    let max = cfg.max_output_bytes;
    let reading = async {
        let mut buf = Vec::new();
        match (&mut p.stdout)
            .take(max as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => Read::Eof,
            Ok(_) if buf.len() > max => Read::TooLong,
            Ok(_) if buf.last() != Some(&b'\n') => Read::Eof,
            Ok(_) => Read::Line(buf),
        }
    };
    tokio::select! {
        r = reading => r,
        _ = tokio::time::sleep(cfg.timeout) => Read::TimedOut,
        _ = kill.cancelled() => Read::Killed,
    }
}
