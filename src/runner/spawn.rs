//! Spawn mode: one fresh process per attempt, in its own process group, so that a timeout or a shutdown
//! can kill the worker together with everything it started.

use super::group;
use super::launch::Launch;
use super::output::{Serving, drain_stderr, read_capped};
use super::{Attempt, Job, Outcome, Usage, classify};
use crate::config::WorkerConfig;
use std::process::ExitStatus;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use workerhost_sdk::TaskDocument;

/// Runs attempts as fresh processes.
#[derive(Debug, Clone)]
pub struct SpawnRunner {
    pub launch: Launch,
    /// Between SIGTERM and SIGKILL when a timed-out process group is stopped.
    pub kill_grace: Duration,
}

enum Ended {
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
    Killed,
}

impl SpawnRunner {
    /// Runs one attempt. `kill` is the host's forced-stop signal: the process group is killed at once
    /// and the attempt ends [`Outcome::Interrupted`].
    ///
    /// The timeout holds from the start to the end of the output, whatever holds the pipes: when the
    /// leader ends (or is stopped), its group is killed and so is what left the group
    /// ([`group::Group::sweep`]); output still open `kill_grace` + 1 s after the timeout is abandoned.
    ///
    /// Long on purpose: feeding stdin, draining stderr, reading stdout and waiting borrow the same child
    /// and run joined in this one task (no task per pipe), which keeps them in one function.
    pub async fn run(&self, job: Job<'_>) -> Attempt {
        let Job {
            worker,
            doc,
            kill,
            progress,
        } = job;
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + worker.timeout;
        let serving = Mutex::new(Serving {
            task_id: Some(doc.id.clone()),
            ..Serving::default()
        });
        let (mut child, group, token) =
            match group::start_worker(&self.launch, worker, Some(doc)).await {
                Ok(c) => c,
                Err(e) => {
                    let reason = e.to_string();
                    return attempt(Outcome::SpawnError { reason }, started, &serving, None);
                }
            };

        // stdin: one document, then EOF. A worker that exits without reading gives EPIPE: not our problem.
        // Feeding stdin, reading stdout and stderr and waiting all run in this task (no task per pipe).
        let stdin = child.stdin.take();
        let payload = serde_json::to_vec(doc).unwrap_or_default();
        let feed = async move {
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(&payload).await;
                let _ = stdin.shutdown().await;
            }
        };
        let stderr = child.stderr.take();
        let drain = async {
            if let Some(e) = stderr {
                drain_stderr(e, &serving, &worker.name, progress).await;
            }
        };
        let max = worker.max_output_bytes;
        let stdout = child.stdout.take();
        let read = async move {
            let Some(o) = stdout else {
                return Ok(Vec::new());
            };
            let r = read_capped(o, max).await;
            if r.is_err() {
                group.kill();
            }
            r
        };
        let wait = async {
            let ended = tokio::select! {
                status = child.wait() => Ended::Exited(status),
                _ = tokio::time::sleep_until(deadline) => Ended::TimedOut,
                _ = kill.cancelled() => Ended::Killed,
            };
            let status = match &ended {
                Ended::Exited(s) => s.as_ref().ok().copied(),
                Ended::TimedOut => {
                    group.stop(&mut child, self.kill_grace).await;
                    None
                }
                Ended::Killed => {
                    group.kill();
                    let _ = child.wait().await;
                    None
                }
            };
            // The leader is gone: whatever it left running goes too, in its group or not (a worker
            // must not leave orphans behind, and one holding stdout open would keep us waiting).
            group.kill();
            group.sweep_all(token).await;
            (ended, status, child.usage())
        };
        // Once the process is gone, an unfinished stdin write is dropped (it can only fail now).
        let joined = async { tokio::join!(drain, read, alongside(feed, wait)) };
        let abandon = deadline + self.kill_grace + Duration::from_secs(1);
        let (out, ended, status, usage) = match tokio::time::timeout_at(abandon, joined).await {
            Ok((_, out, (ended, status, usage))) => (out, ended, status, usage),
            Err(_) => {
                // The leader is reaped, but something unseen still holds its output open.
                group.kill();
                group.sweep_all(token).await;
                (Ok(Vec::new()), Ended::TimedOut, None, None)
            }
        };

        let (outcome, logs) = outcome_of(worker, doc, ended, out, status, &serving);
        let usage = usage.map(Usage::from);
        let last_line = || serving.lock().ok()?.tail.last_line().map(str::to_string);
        let limit_line = serving
            .lock()
            .ok()
            .and_then(|s| s.tail.limit_line().map(str::to_string));
        let outcome = outcome.under_limits(&worker.limits, usage.as_ref(), limit_line.as_deref());
        let outcome = self.launch.import_failure(outcome, last_line());
        let mut a = attempt(outcome, started, &serving, status.and_then(|s| s.code()));
        a.logs = logs;
        a.usage = usage;
        a
    }
}

/// What the attempt came to, from how the process ended and what it wrote.
fn outcome_of(
    worker: &WorkerConfig,
    doc: &TaskDocument,
    ended: Ended,
    out: Result<Vec<u8>, super::output::Overflow>,
    status: Option<std::process::ExitStatus>,
    serving: &Mutex<Serving>,
) -> (Outcome, Vec<workerhost_sdk::LogLine>) {
    match ended {
        Ended::TimedOut => (Outcome::host_timeout(worker), Vec::new()),
        Ended::Killed => (Outcome::Interrupted, Vec::new()),
        Ended::Exited(_) => match out {
            Err(_) => (
                Outcome::ProtocolError {
                    reason: format!(
                        "stdout exceeded max_output_bytes ({} bytes); process killed",
                        worker.max_output_bytes
                    ),
                },
                Vec::new(),
            ),
            Ok(stdout) => {
                if let Some(before) = super::output::before_result(&stdout) {
                    tracing::debug!(task_id = %doc.id, worker = %worker.name,
                        "stdout before the result (debug output belongs on stderr): {before}");
                }
                classify::of_exit(status, &stdout, || {
                    let s = serving.lock().ok()?;
                    s.tail.last_line().map(str::to_string)
                })
            }
        },
    }
}

/// Polls `side` while `main` runs and returns `main`'s output; `side` is dropped unfinished if `main` ends
/// first.
async fn alongside<T>(side: impl Future<Output = ()>, main: impl Future<Output = T>) -> T {
    let mut side = std::pin::pin!(side);
    let mut main = std::pin::pin!(main);
    let mut side_done = false;
    std::future::poll_fn(|cx| {
        if !side_done {
            side_done = side.as_mut().poll(cx).is_ready();
        }
        main.as_mut().poll(cx)
    })
    .await
}

/// The attempt, with the stderr tail collected so far.
fn attempt(
    outcome: Outcome,
    started: Instant,
    serving: &Mutex<Serving>,
    exit_code: Option<i32>,
) -> Attempt {
    let stderr_tail = serving.lock().map(|s| s.tail.text()).unwrap_or_default();
    Attempt::ended(outcome, started, stderr_tail, exit_code)
}
