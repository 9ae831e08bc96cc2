//! Processes in their own process group: the one place that starts a worker (or an observer's command)
//! so that it can be stopped together with everything it started, and that stops it.
//!
//! Spawn and pool mode start their workers through [`start_worker`] (a [`Leader`]: parent-death signal,
//! limits, user, usage; see [`super::leader`]); the command observer starts its command through
//! [`start`]. All stop through [`Group::stop`] (SIGTERM, a grace period, SIGKILL) or [`Group::kill`]
//! (SIGKILL at once); [`Group::sweep`] then kills what of a worker left its group.

use super::child::{Spec, Stage};
use super::escapees;
use super::leader::{self, Leader};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The process group a started child leads (its pgid is its pid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group(Pid);

impl Group {
    /// Sends `sig` to every process of the group. An empty group (ESRCH) is not an error.
    pub fn signal(self, sig: Signal) {
        let _ = killpg(self.0, sig);
    }

    /// SIGKILL to the whole group, at once.
    pub fn kill(self) {
        self.signal(Signal::SIGKILL);
    }

    /// SIGTERM to the group, up to `grace` for the leader and the rest of the group to go, then SIGKILL
    /// to whatever is left; the leader is reaped either way.
    pub async fn stop(self, child: &mut Leader, grace: Duration) {
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        let mut leader_done = false;
        while Instant::now() < deadline {
            if !leader_done {
                leader_done = matches!(child.try_wait(), Ok(Some(_)));
            }
            // Once the leader is reaped, an empty group answers ESRCH.
            if leader_done && killpg(self.0, None) == Err(Errno::ESRCH) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        let _ = child.wait().await;
    }

    /// Kills the processes `leader` started that left this group (reparented to the host, marked with
    /// its token), and their descendants; call once the group itself is gone. Returns how many.
    pub fn sweep(self, token: u64) -> usize {
        escapees::sweep(self.0, token)
    }

    /// [`Group::sweep`], then again while members of the group (killed already) are still dying, for
    /// up to [`DYING_WAIT`]: a process that is dying lets go of its memory, environment included,
    /// before its children are handed to the host, so an escapee whose parent stayed in the group can
    /// only be recognised once that parent is dead. An empty group (the usual case) costs one sweep.
    pub async fn sweep_all(self, token: u64) -> usize {
        let mut killed = self.sweep(token);
        let deadline = Instant::now() + DYING_WAIT;
        while killpg(self.0, None).is_ok() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
            killed += self.sweep(token);
        }
        killed
    }
}

/// How long a task's end waits for the killed members of its group to die (see [`Group::sweep_all`]).
const DYING_WAIT: Duration = Duration::from_millis(500);

/// Starts closer together than this go to the blocking pool.
const CLOSE_STARTS: Duration = Duration::from_millis(2);

/// A process that could not be started: which step failed names the real cause.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start {program}: {source}")]
    Program {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {program}: {reason}")]
    Invalid { program: String, reason: String },
    #[error("cannot enter the working directory {dir} (project_path): {source}")]
    WorkingDirectory {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set the worker's limits (limits:): {source}")]
    Limits {
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run the worker as user `{user}` (user:): {source}")]
    User {
        user: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {program}: the host is exiting ({source})")]
    ParentDeath {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// Starts a worker process for `worker` as the leader of a new process group, marked with `token`.
/// Dropping the [`Leader`] kills its group.
pub async fn start_worker(
    launch: &super::Launch,
    worker: &crate::config::WorkerConfig,
    doc: Option<&workerhost_sdk::TaskDocument>,
) -> Result<(Leader, Group, u64), StartError> {
    let token = leader::next_token();
    let program = launch.program();
    let spec: Spec = launch
        .spec(worker, doc, token)
        .map_err(|reason| StartError::Invalid {
            program: program.clone(),
            reason,
        })?;
    let child = Leader::start(spec, token).await.map_err(|e| {
        let source = e.error;
        match e.stage {
            Stage::WorkingDirectory => StartError::WorkingDirectory {
                dir: worker
                    .project_path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                source,
            },
            Stage::Limits => StartError::Limits { source },
            Stage::User => StartError::User {
                user: worker
                    .user
                    .as_ref()
                    .map(|u| u.name.clone())
                    .unwrap_or_default(),
                source,
            },
            Stage::ParentDeath => StartError::ParentDeath { program, source },
            Stage::Start | Stage::Exec => StartError::Program { program, source },
        }
    })?;
    let group = Group(child.pid());
    Ok((child, group, token))
}

/// Starts `cmd` as the leader of a new process group (killed on drop), and returns it with its group.
///
/// Starting a process blocks the calling thread until the child has exec'd (vfork semantics: 0.1-0.5 ms
/// here). When starts are rare (an idle host, slow workers) that happens right here, which saves two
/// thread switches (CPU and latency); when they follow each other closely it happens on the blocking
/// pool, so that the runtime's thread is not held up for a large share of its time.
pub async fn start(mut cmd: Command) -> Result<(Child, Group), StartError> {
    cmd.process_group(0).kill_on_drop(true);
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    spawn(cmd)
        .await
        .map_err(|source| StartError::Program { program, source })
}

async fn spawn(mut cmd: Command) -> std::io::Result<(Child, Group)> {
    static BASE: OnceLock<Instant> = OnceLock::new();
    static LAST_US: AtomicU64 = AtomicU64::new(0);
    let now = BASE.get_or_init(Instant::now).elapsed();
    let now_us = u64::try_from(now.as_micros()).unwrap_or(u64::MAX);
    let last_us = LAST_US.swap(now_us, Ordering::Relaxed);
    let child = if now_us.saturating_sub(last_us) >= CLOSE_STARTS.as_micros() as u64 {
        cmd.spawn()?
    } else {
        match tokio::task::spawn_blocking(move || cmd.spawn()).await {
            Ok(r) => r?,
            Err(e) => return Err(std::io::Error::other(e)),
        }
    };
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(|id| Group(Pid::from_raw(id)))
        .ok_or_else(|| std::io::Error::other("the process exited before it could be tracked"))?;
    Ok((child, group))
}
