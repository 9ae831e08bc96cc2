//! Spawn mode: one fresh process per attempt, in its own process group, so that a timeout or a shutdown
//! can kill the worker together with everything it started.

use super::output::{Tail, drain_stderr, parse_result, read_capped};
use super::{Attempt, Outcome, ProgressSink};
use crate::config::{WorkerConfig, WorkerKind};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use workerhost_sdk::{LogLine, TaskDocument, WorkerResult, exit};

/// Variables of the host's own environment that every worker gets; everything else (API keys, tokens)
/// stays in the host unless the worker lists it in `env_passthrough`.
const BASE_ENV: &[&str] = &["PATH", "HOME", "LANG", "TZ"];

/// Runs attempts as fresh processes.
#[derive(Debug, Clone)]
pub struct SpawnRunner {
    /// Between SIGTERM and SIGKILL when a timed-out process group is stopped.
    pub kill_grace: Duration,
}

/// The command line, working directory and environment for `worker`: for one attempt (`doc`), or for a
/// pool process (`None`), which learns each task from its stdin line instead of its environment.
pub fn command_for(worker: &WorkerConfig, doc: Option<&TaskDocument>) -> Command {
    let mut cmd = match &worker.kind {
        WorkerKind::Python {
            interpreter,
            module,
            function,
        } => {
            let mut c = Command::new(interpreter);
            match function {
                Some(f) => c.arg("-c").arg(format!("from {module} import {f}; {f}()")),
                None => c.arg("-m").arg(module),
            };
            c
        }
        WorkerKind::Remote { url } => {
            // Not a process: the host routes remote workers elsewhere. Starting "false" makes any
            // misrouting visible as a failure rather than a hang.
            tracing::error!(worker = %worker.name, url = %url, "remote worker reached the spawn runner");
            Command::new("false")
        }
        WorkerKind::Command { argv } => {
            // Validation guarantees a non-empty argv.
            let mut c = Command::new(argv.first().map(String::as_str).unwrap_or("false"));
            c.args(argv.iter().skip(1));
            c
        }
    };
    if let Some(dir) = &worker.project_path {
        cmd.current_dir(dir);
    }
    cmd.env_clear();
    for name in BASE_ENV
        .iter()
        .copied()
        .chain(worker.env_passthrough.iter().map(String::as_str))
    {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    cmd.envs(&worker.env);
    cmd.env("WORKERHOST_WORKER", &worker.name);
    match doc {
        Some(doc) => cmd
            .env("WORKERHOST_TASK_ID", &doc.id)
            .env("WORKERHOST_TASK_TYPE", &doc.task_type)
            .env("WORKERHOST_ATTEMPT", doc.attempt.to_string())
            .env("WORKERHOST_MODE", "spawn"),
        None => cmd.env("WORKERHOST_MODE", "pool"),
    };
    cmd
}

impl SpawnRunner {
    /// Runs one attempt. `kill` is the host's forced-stop signal: the process group is killed at once
    /// and the attempt ends [`Outcome::Interrupted`].
    pub async fn run(
        &self,
        worker: &WorkerConfig,
        doc: &TaskDocument,
        kill: &CancellationToken,
        progress: &ProgressSink,
    ) -> Attempt {
        let started = Instant::now();
        let mut cmd = command_for(worker, Some(doc));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let tail = Mutex::new(Tail::default());
        let program = cmd.as_std().get_program().to_string_lossy().into_owned();
        let mut child = match start(cmd).await {
            Ok(c) => c,
            Err(e) => {
                return attempt(
                    Outcome::SpawnError {
                        reason: format!("cannot start {program}: {e}"),
                    },
                    started,
                    &tail,
                    None,
                );
            }
        };
        let Some(pgid) = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
        else {
            return attempt(
                Outcome::SpawnError {
                    reason: "the process exited before it could be tracked".into(),
                },
                started,
                &tail,
                None,
            );
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
                drain_stderr(e, &tail, &doc.id, &worker.name, progress).await;
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
                signal_group(pgid, Signal::SIGKILL);
            }
            r
        };
        let wait = async {
            let ended = tokio::select! {
                status = child.wait() => Ended::Exited(status),
                _ = tokio::time::sleep(worker.timeout) => Ended::TimedOut,
                _ = kill.cancelled() => Ended::Killed,
            };
            let status = match &ended {
                Ended::Exited(s) => s.as_ref().ok().copied(),
                Ended::TimedOut => {
                    self.stop_group(&mut child, pgid).await;
                    None
                }
                Ended::Killed => {
                    signal_group(pgid, Signal::SIGKILL);
                    let _ = child.wait().await;
                    None
                }
            };
            // The leader is gone: whatever it left running in its group goes too (a worker must not leave
            // orphans behind, and an orphan holding stdout open would keep us waiting for EOF).
            signal_group(pgid, Signal::SIGKILL);
            (ended, status)
        };
        // Once the process is gone, an unfinished stdin write is dropped (it can only fail now).
        let (_, out, (ended, status)) = tokio::join!(drain, read, alongside(feed, wait));

        let (outcome, logs) = match ended {
            Ended::TimedOut => (Outcome::Timeout { by_host: true }, Vec::new()),
            Ended::Killed => (Outcome::Interrupted, Vec::new()),
            Ended::Exited(_) => match out {
                Err(_) => (
                    Outcome::ProtocolError {
                        reason: format!(
                            "stdout exceeded max_output_bytes ({max} bytes); process killed"
                        ),
                    },
                    Vec::new(),
                ),
                Ok(stdout) => classify(status, &stdout, &tail),
            },
        };
        let mut a = attempt(outcome, started, &tail, status.and_then(|s| s.code()));
        a.logs = logs;
        a
    }

    /// SIGTERM to the group, up to `kill_grace` for it to go, then SIGKILL to whatever is left.
    async fn stop_group(&self, child: &mut Child, pgid: Pid) {
        signal_group(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + self.kill_grace;
        let mut leader_done = false;
        while Instant::now() < deadline {
            if !leader_done {
                leader_done = matches!(child.try_wait(), Ok(Some(_)));
            }
            // Once the leader is reaped, an empty group answers ESRCH.
            if leader_done && killpg(pgid, None) == Err(Errno::ESRCH) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        signal_group(pgid, Signal::SIGKILL);
        let _ = child.wait().await;
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

/// Starts closer together than this go to the blocking pool.
const CLOSE_STARTS: Duration = Duration::from_millis(2);

/// Starts `cmd`. Starting a process blocks the calling thread until the child has exec'd (vfork
/// semantics: 0.1-0.5 ms here). When starts are rare (an idle host, slow workers) that happens right
/// here, which saves two thread switches (CPU and latency); when they follow each other closely it
/// happens on the blocking pool, so that the runtime's thread is not held up for a large share of its time.
pub(super) async fn start(mut cmd: Command) -> std::io::Result<Child> {
    static BASE: OnceLock<Instant> = OnceLock::new();
    static LAST_US: AtomicU64 = AtomicU64::new(0);
    let now = BASE.get_or_init(Instant::now).elapsed();
    let now_us = u64::try_from(now.as_micros()).unwrap_or(u64::MAX);
    let last_us = LAST_US.swap(now_us, Ordering::Relaxed);
    if now_us.saturating_sub(last_us) >= CLOSE_STARTS.as_micros() as u64 {
        return cmd.spawn();
    }
    match tokio::task::spawn_blocking(move || cmd.spawn()).await {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(e)),
    }
}

enum Ended {
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
    Killed,
}

fn signal_group(pgid: Pid, sig: Signal) {
    // ESRCH: the group is already empty.
    let _ = killpg(pgid, sig);
}

/// The attempt, with the stderr tail collected so far.
fn attempt(
    outcome: Outcome,
    started: Instant,
    tail: &Mutex<Tail>,
    exit_code: Option<i32>,
) -> Attempt {
    let stderr_tail = tail.lock().map(|t| t.text()).unwrap_or_default();
    Attempt::ended(outcome, started, stderr_tail, exit_code)
}

/// The outcome table of the protocol, for a process that exited on its own, with the `logs` the worker
/// returned (if its stdout held a result document).
fn classify(
    status: Option<ExitStatus>,
    stdout: &[u8],
    tail: &Mutex<Tail>,
) -> (Outcome, Vec<LogLine>) {
    let Some(status) = status else {
        let crashed = Outcome::Crashed {
            exit_code: None,
            signal: None,
        };
        return (crashed, Vec::new());
    };
    let mut parsed = parse_result(stdout);
    let logs = parsed
        .as_mut()
        .map(|r| std::mem::take(&mut r.logs))
        .unwrap_or_default();
    (outcome_of_exit(status, parsed, tail), logs)
}

fn outcome_of_exit(
    status: ExitStatus,
    parsed: Result<WorkerResult, String>,
    tail: &Mutex<Tail>,
) -> Outcome {
    // The worker's own error, else the last stderr line, else a fallback.
    let reported_error = |fallback: String| -> Value {
        if let Ok(r) = &parsed
            && let Some(e) = &r.error
        {
            return serde_json::to_value(e).unwrap_or(Value::String(fallback));
        }
        let last = tail
            .lock()
            .ok()
            .and_then(|t| t.last_line().map(str::to_string));
        Value::String(last.unwrap_or(fallback))
    };
    match status.code() {
        Some(exit::SUCCESS) => match parsed {
            Ok(r) if r.success => Outcome::Succeeded {
                result: r.result.unwrap_or(Value::Null),
            },
            Ok(r) => Outcome::Failed {
                retriable: r.is_retriable(),
                error: r
                    .error
                    .as_ref()
                    .and_then(|e| serde_json::to_value(e).ok())
                    .unwrap_or_else(|| Value::String("success: false without an error".into())),
            },
            Err(reason) => Outcome::ProtocolError { reason },
        },
        Some(exit::RETRIABLE) => Outcome::Failed {
            error: reported_error("exit code 1".into()),
            retriable: true,
        },
        Some(exit::FATAL) => Outcome::Failed {
            error: reported_error("exit code 2".into()),
            retriable: false,
        },
        Some(exit::TIMEOUT) => Outcome::Timeout { by_host: false },
        Some(code) => Outcome::Crashed {
            exit_code: Some(code),
            signal: None,
        },
        None => Outcome::Crashed {
            exit_code: None,
            signal: status.signal(),
        },
    }
}
