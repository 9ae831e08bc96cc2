//! A started worker process (the leader of its own process group), as the host holds it: its pipes
//! (tokio's types), its exit status *and resource usage* once it ends, and the guarantee that it does not
//! outlive the host nor its handle.
//!
//! Processes start through [`super::child::spawn`] (the audited `unsafe` module), from a thread that
//! lives as long as the host: the calling runtime thread when starts are rare, one of the spawner
//! threads when they follow each other closely. (The kernel's parent-death signal fires when the
//! *thread* that started the child exits; tokio's blocking-pool threads end after ~10 s idle, so starts
//! never go there.)
//!
//! The leader is reaped here, with `wait4`, not by tokio: that is where the `rusage` comes from. Its exit
//! is noticed through a pidfd registered with the runtime, so waiting costs no thread and no polling.

use super::child::{self, Rusage, SpawnError, Spawned, Spec, Stage};
use super::escapees;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::fd::OwnedFd;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};

/// A running (or exited, not yet reaped) worker process.
#[derive(Debug)]
pub struct Leader {
    pid: Pid,
    /// The token in its environment (and its descendants'): how its escapees are recognised.
    token: u64,
    pidfd: Option<AsyncFd<OwnedFd>>,
    reaped: Option<(ExitStatus, Rusage)>,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

/// The environment variable that marks a leader and everything it starts.
pub const TOKEN_VAR: &str = "WORKERHOST_RUN";

/// A fresh token for the next leader: this host's pid in the high half, a counter in the low one, so
/// that it is unique within this host's life and never equal to a token this host itself inherited
/// (a host started by another host's worker carries that host's token, and so does a child of ours
/// between `clone` and `exec`).
pub fn next_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    (u64::from(std::process::id()) << 32) | (NEXT.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
}

/// Starts closer together than this go to the spawner threads.
const CLOSE_STARTS: Duration = Duration::from_millis(2);

impl Leader {
    /// Starts `spec`, whose environment carries `TOKEN_VAR=token`.
    ///
    /// Starting blocks the calling thread until the child has exec'd (0.1-0.5 ms here). When starts are
    /// rare (an idle host, slow workers) that happens right here, which saves two thread switches (CPU
    /// and latency); when they follow each other closely it happens on a spawner thread, so that the
    /// runtime's thread is not held up for a large share of its time.
    pub async fn start(spec: Spec, token: u64) -> Result<Leader, SpawnError> {
        static BASE: OnceLock<Instant> = OnceLock::new();
        static LAST_US: AtomicU64 = AtomicU64::new(0);
        let now = BASE.get_or_init(Instant::now).elapsed();
        let now_us = u64::try_from(now.as_micros()).unwrap_or(u64::MAX);
        let last_us = LAST_US.swap(now_us, Ordering::Relaxed);
        let spawned = if now_us.saturating_sub(last_us) >= CLOSE_STARTS.as_micros() as u64 {
            escapees::spawn_registered(&spec)?
        } else {
            on_spawner_thread(spec).await?
        };
        Leader::adopt(spawned, token)
    }

    fn adopt(s: Spawned, token: u64) -> Result<Leader, SpawnError> {
        let start = |error: std::io::Error| SpawnError {
            stage: Stage::Start,
            error,
        };
        let pid = s.pid;
        let mut leader = Leader {
            pid,
            token,
            pidfd: None,
            reaped: None,
            stdin: None,
            stdout: None,
            stderr: None,
        };
        // From here on, dropping `leader` kills and reaps the process.
        let raw = rustix::process::Pid::from_raw(pid.as_raw())
            .ok_or_else(|| start(std::io::Error::other("pid 0")))?;
        let pidfd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty())
            .map_err(|e| start(e.into()))?;
        leader.pidfd = Some(child::watch(pidfd).map_err(start)?);
        leader.stdin =
            Some(ChildStdin::from_std(std::process::ChildStdin::from(s.stdin)).map_err(start)?);
        leader.stdout =
            Some(ChildStdout::from_std(std::process::ChildStdout::from(s.stdout)).map_err(start)?);
        leader.stderr =
            Some(ChildStderr::from_std(std::process::ChildStderr::from(s.stderr)).map_err(start)?);
        Ok(leader)
    }

    /// The leader's pid, which is also its process group's id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    pub fn token(&self) -> u64 {
        self.token
    }

    /// Sends `sig` to the leader's whole process group (an empty group is not an error).
    pub fn signal_group(&self, sig: Signal) {
        let _ = killpg(self.pid, sig);
    }

    /// The exit status, if the leader has exited (reaping it then).
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        if let Some((status, _)) = self.reaped {
            return Ok(Some(status));
        }
        match child::wait4(self.pid)? {
            Some(r) => {
                self.reaped = Some(r);
                escapees::forget(self.pid);
                Ok(Some(r.0))
            }
            None => Ok(None),
        }
    }

    /// Waits for the leader to exit and reaps it.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(s);
            }
            let Some(fd) = &self.pidfd else {
                return Err(std::io::Error::other("no pidfd"));
            };
            // A pidfd becomes readable when its process exits.
            let mut ready = fd.readable().await?;
            ready.clear_ready();
        }
    }

    /// What the leader used (and the descendants it waited for), once it is reaped.
    pub fn usage(&self) -> Option<Rusage> {
        self.reaped.map(|(_, u)| u)
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if self.reaped.is_some() {
            return;
        }
        // The group goes with its handle: nothing outlives the attempt that started it.
        let _ = killpg(self.pid, Signal::SIGKILL);
        if matches!(self.try_wait(), Ok(Some(_))) {
            return;
        }
        // SIGKILLed: it ends within moments; reap it off this thread.
        let pid = self.pid;
        reaper().send(pid).ok();
    }
}

/// The thread that reaps leaders dropped before they were waited for (one blocking `wait4` each).
fn reaper() -> mpsc::Sender<Pid> {
    static TX: OnceLock<Mutex<mpsc::Sender<Pid>>> = OnceLock::new();
    let tx = TX.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Pid>();
        let spawned = std::thread::Builder::new()
            .name("workerhost-reaper".into())
            .spawn(move || {
                for pid in rx {
                    let _ = nix::sys::wait::waitpid(pid, None);
                    escapees::forget(pid);
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the reaper thread: {e}");
        }
        Mutex::new(tx)
    });
    match tx.lock() {
        Ok(t) => t.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

type Job = (
    Spec,
    tokio::sync::oneshot::Sender<Result<Spawned, SpawnError>>,
);

/// How many spawner threads start processes side by side. A start holds its thread until the child
/// has exec'd (vfork semantics, 0.1-0.5 ms), so one thread made close starts queue behind each other:
/// spawn mode ran at 62-66% of the spawn floor with one thread against 75% for tokio's blocking pool,
/// whose threads cannot be used (they end when idle, and the parent-death signal with them).
const SPAWNERS: usize = 4;

/// Starts `spec` on a spawner thread: [`SPAWNERS`] threads, started at the first close start and alive
/// as long as the host, so that the parent-death signal of what they start fires only when the host
/// dies. They take jobs from one queue: a start goes to whichever thread is free.
async fn on_spawner_thread(spec: Spec) -> Result<Spawned, SpawnError> {
    static TX: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let tx = TX.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for n in 0..SPAWNERS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("workerhost-spawner-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job, not while starting it.
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((spec, reply)) = job else { return };
                        let _ = reply.send(escapees::spawn_registered(&spec));
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start spawner thread {n}: {e}");
            }
        }
        Mutex::new(tx)
    });
    let (reply, answer) = tokio::sync::oneshot::channel();
    let sent = match tx.lock() {
        Ok(t) => t.send((spec, reply)),
        Err(p) => p.into_inner().send((spec, reply)),
    };
    let gone = || SpawnError {
        stage: Stage::Start,
        error: std::io::Error::other("the spawner thread is gone"),
    };
    if sent.is_err() {
        return Err(gone());
    }
    answer.await.unwrap_or_else(|_| Err(gone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host started by another host's worker inherits that host's `WORKERHOST_RUN`: its own tokens
    /// must never equal it, or its sweep could take its own child (between clone and exec it carries the
    /// host's environment) for an escapee.
    #[test]
    fn tokens_carry_this_hosts_pid_and_do_not_repeat() {
        let (a, b) = (next_token(), next_token());
        assert_ne!(a, b);
        assert_eq!(a >> 32, u64::from(std::process::id()));
        assert_eq!(b >> 32, u64::from(std::process::id()));
    }

    /// Starts on the spawner threads run side by side and each child gets its own stack use: many
    /// concurrent starts all come up and exit cleanly.
    #[tokio::test(flavor = "current_thread")]
    async fn close_starts_on_the_spawner_threads_all_succeed() {
        let program = std::ffi::CString::new("/bin/true").expect("path");
        let starts = (0..32).map(|_| {
            on_spawner_thread(Spec {
                program: program.clone(),
                argv: vec![program.clone()],
                env: Vec::new(),
                cwd: None,
                setup: child::ChildSetup::default(),
            })
        });
        let spawned = futures_util::future::join_all(starts).await;
        for s in spawned {
            let s = s.expect("started");
            let status = nix::sys::wait::waitpid(s.pid, None).expect("reaped");
            assert!(
                matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)),
                "{status:?}"
            );
            escapees::forget(s.pid);
        }
    }
}
