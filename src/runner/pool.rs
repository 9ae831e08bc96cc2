//! Pool mode: long-lived worker processes that read one JSON task per line and answer one JSON result
//! per line, so the interpreter start-up is paid once per process, not once per task.
//!
//! Each process runs in its own process group. A process that dies, times out, answers garbage, or has
//! served `max_tasks_per_process` tasks is retired (its whole group killed) and replaced on demand; each
//! replacement is counted in the worker's `restarts`.

use super::output::{Tail, drain_lines, parse_result};
use super::spawn::command_for;
use super::{Attempt, Outcome, ProgressSink};
use crate::config::WorkerConfig;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use workerhost_sdk::TaskDocument;

/// The processes of one pool-mode worker.
pub struct Pool {
    worker: String,
    idle: Mutex<Vec<PoolProcess>>,
    /// At most `pool_size` attempts (and so processes) at once.
    slots: Semaphore,
    restarts: Arc<AtomicU64>,
    kill_grace: Duration,
}

/// What the stderr reader needs to attribute lines: the task being served and its stderr tail.
#[derive(Default)]
struct Current {
    task_id: Option<String>,
    tail: Tail,
}

struct PoolProcess {
    child: Child,
    pgid: Pid,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    served: u64,
    current: Arc<Mutex<Current>>,
}

impl Drop for PoolProcess {
    fn drop(&mut self) {
        // The group goes with the process: nothing a pool worker started outlives it.
        let _ = killpg(self.pgid, Signal::SIGKILL);
    }
}

enum Read {
    Line(Vec<u8>),
    Eof,
    TooLong,
    TimedOut,
    Killed,
}

impl Pool {
    pub fn new(worker: &WorkerConfig, restarts: Arc<AtomicU64>, kill_grace: Duration) -> Pool {
        Pool {
            worker: worker.name.clone(),
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(worker.pool_size.max(1)),
            restarts,
            kill_grace,
        }
    }

    /// Processes alive and idle right now.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    async fn start(
        &self,
        cfg: &WorkerConfig,
        progress: &ProgressSink,
    ) -> Result<PoolProcess, String> {
        let mut cmd = command_for(cfg, None);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let program = cmd.as_std().get_program().to_string_lossy().into_owned();
        let mut child = super::spawn::start(cmd)
            .await
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
            .ok_or("the process exited before it could be tracked")?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the process has no stdio pipes".into());
        };
        let current = Arc::new(Mutex::new(Current::default()));
        tokio::spawn(drain_stderr(
            stderr,
            current.clone(),
            self.worker.clone(),
            progress.clone(),
        ));
        Ok(PoolProcess {
            child,
            pgid,
            stdin,
            stdout: BufReader::new(stdout),
            served: 0,
            current,
        })
    }

    /// Runs one attempt on an idle process (starting one if none is idle).
    pub async fn run(
        &self,
        cfg: &WorkerConfig,
        doc: &TaskDocument,
        kill: &CancellationToken,
        progress: &ProgressSink,
    ) -> Attempt {
        let started = Instant::now();
        let Ok(_slot) = self.slots.acquire().await else {
            return Attempt::ended(Outcome::Interrupted, started, String::new(), None);
        };
        let reused = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut p = match reused {
            Some(p) => p,
            None => match self.start(cfg, progress).await {
                Ok(p) => p,
                Err(reason) => {
                    return Attempt::ended(
                        Outcome::SpawnError { reason },
                        started,
                        String::new(),
                        None,
                    );
                }
            },
        };
        if let Ok(mut c) = p.current.lock() {
            c.task_id = Some(doc.id.clone());
            c.tail = Tail::default();
        }
        let mut line = serde_json::to_vec(doc).unwrap_or_default();
        line.push(b'\n');
        let wrote = async {
            p.stdin.write_all(&line).await?;
            p.stdin.flush().await
        }
        .await;
        let read = if wrote.is_err() {
            Read::Eof
        } else {
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
        };
        let (outcome, logs, keep) = match read {
            Read::Line(buf) => match parse_result(&buf) {
                Ok(r) if r.id.as_deref() != Some(doc.id.as_str()) => (
                    Outcome::ProtocolError {
                        reason: format!(
                            "pool worker answered for task {:?} while serving {}",
                            r.id, doc.id
                        ),
                    },
                    Vec::new(),
                    false,
                ),
                Ok(mut r) => {
                    let logs = std::mem::take(&mut r.logs);
                    let outcome = if r.success {
                        Outcome::Succeeded {
                            result: r.result.take().unwrap_or(Value::Null),
                        }
                    } else {
                        Outcome::Failed {
                            retriable: r.is_retriable(),
                            error: r
                                .error
                                .as_ref()
                                .and_then(|e| serde_json::to_value(e).ok())
                                .unwrap_or_else(|| "success: false without an error".into()),
                        }
                    };
                    (outcome, logs, true)
                }
                Err(reason) => (Outcome::ProtocolError { reason }, Vec::new(), false),
            },
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
                let (code, signal) = match status {
                    Ok(Ok(s)) => (s.code(), s.signal()),
                    _ => (None, None),
                };
                (
                    Outcome::Crashed {
                        exit_code: code,
                        signal,
                    },
                    Vec::new(),
                    false,
                )
            }
            Read::TimedOut => {
                self.stop_group(&mut p).await;
                (Outcome::Timeout { by_host: true }, Vec::new(), false)
            }
            Read::Killed => (Outcome::Interrupted, Vec::new(), false),
        };
        let tail = p
            .current
            .lock()
            .map(|mut c| {
                c.task_id = None;
                c.tail.text()
            })
            .unwrap_or_default();
        p.served += 1;
        let limit_reached = cfg.max_tasks_per_process.is_some_and(|m| p.served >= m);
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
            let _ = killpg(p.pgid, Signal::SIGKILL);
            let _ = p.child.wait().await;
        });
    }

    async fn stop_group(&self, p: &mut PoolProcess) {
        let _ = killpg(p.pgid, Signal::SIGTERM);
        if tokio::time::timeout(self.kill_grace, p.child.wait())
            .await
            .is_err()
        {
            let _ = killpg(p.pgid, Signal::SIGKILL);
        }
        // Whatever is left of the group goes too.
        let _ = killpg(p.pgid, Signal::SIGKILL);
    }
}

/// Logs a pool process's stderr with the task it is serving, and keeps that task's tail.
async fn drain_stderr(
    stderr: tokio::process::ChildStderr,
    current: Arc<Mutex<Current>>,
    worker: String,
    progress: ProgressSink,
) {
    drain_lines(stderr, |line| {
        let serving = current.lock().ok().and_then(|c| c.task_id.clone());
        if let Some(id) = &serving
            && progress.offer(id, &line)
        {
            return;
        }
        let task_id = match current.lock() {
            Ok(mut c) => {
                c.tail.push(line.clone());
                c.task_id.clone().unwrap_or_default()
            }
            Err(_) => String::new(),
        };
        tracing::info!(target: "workerhost::worker", task_id = %task_id, worker = %worker, "stderr: {line}");
    })
    .await
}
