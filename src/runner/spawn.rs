//! Spawn mode: one fresh process per attempt, in its own process group, so that a timeout or a shutdown
//! can kill the worker together with everything it started.

use super::group;
use super::output::{Serving, drain_stderr, read_capped};
use super::{Attempt, Outcome, ProgressSink, classify};
use crate::config::{WorkerConfig, WorkerKind};
use std::ffi::OsString;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use workerhost_sdk::TaskDocument;

/// Variables of the host's own environment that every worker gets; everything else (API keys, tokens)
/// stays in the host unless the worker lists it in `env_passthrough`.
const BASE_ENV: &[&str] = &["PATH", "HOME", "LANG", "TZ"];

/// The program and arguments of a process worker (python or command; a remote worker has none).
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    program: OsString,
    args: Vec<String>,
}

impl Launch {
    /// `None` for a remote worker (and for an empty argv, which config validation rules out).
    pub fn of(kind: &WorkerKind) -> Option<Launch> {
        match kind {
            WorkerKind::Python {
                interpreter,
                module,
                function,
            } => {
                let args = match function {
                    Some(f) => vec!["-c".into(), format!("from {module} import {f}; {f}()")],
                    None => vec!["-m".into(), module.clone()],
                };
                Some(Launch {
                    program: interpreter.clone().into_os_string(),
                    args,
                })
            }
            WorkerKind::Command { argv } => {
                let (program, args) = argv.split_first()?;
                Some(Launch {
                    program: program.into(),
                    args: args.to_vec(),
                })
            }
            WorkerKind::Remote { .. } => None,
        }
    }

    /// The command line, working directory and environment for `worker`: for one attempt (`doc`), or
    /// for a pool process (`None`), which learns each task from its stdin line instead of its
    /// environment. All three pipes are set up.
    pub fn command(&self, worker: &WorkerConfig, doc: Option<&TaskDocument>) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
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
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

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
    pub async fn run(
        &self,
        worker: &WorkerConfig,
        doc: &TaskDocument,
        kill: &CancellationToken,
        progress: &ProgressSink,
    ) -> Attempt {
        let started = Instant::now();
        let cmd = self.launch.command(worker, Some(doc));
        let serving = Mutex::new(Serving {
            task_id: Some(doc.id.clone()),
            ..Serving::default()
        });
        let (mut child, group) = match group::start(cmd).await {
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
                _ = tokio::time::sleep(worker.timeout) => Ended::TimedOut,
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
            // The leader is gone: whatever it left running in its group goes too (a worker must not leave
            // orphans behind, and an orphan holding stdout open would keep us waiting for EOF).
            group.kill();
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
                Ok(stdout) => classify::of_exit(status, &stdout, || {
                    let s = serving.lock().ok()?;
                    s.tail.last_line().map(str::to_string)
                }),
            },
        };
        let mut a = attempt(outcome, started, &serving, status.and_then(|s| s.code()));
        a.logs = logs;
        a
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
