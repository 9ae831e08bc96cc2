//! The one module of the workspace that may use `unsafe` (the workspace lint is `unsafe_code = "deny"`
//! rather than `forbid` only so that this module can allow it). Kept as one file, over the ~400 lines of
//! the others, so that every `unsafe` line of the workspace is audited in one place. It starts a
//! worker's process and reaps it, which the safe APIs of std, tokio, nix and rustix cannot do the way
//! the host needs:
//!
//! - **What runs in the child before `exec`**: its process group, its stdio, its working directory, its
//!   resource limits, its user, and its parent-death signal. These cannot be set from the host after the
//!   start (the worker could fork first). Limits and user hold for everything the worker starts; the
//!   parent-death signal is the leader's own (it does not survive a fork, and `exec` of a setuid or
//!   file-capability binary clears it): what the leader leaves behind when the host is SIGKILLed goes to
//!   init, and only the subreaper sweep of a living host (`escapees.rs`) catches it. cgroups would close
//!   that gap; these machines do not delegate them.
//! - **How the child is made**: `clone(CLONE_VM | CLONE_VFORK)`, as glibc's `posix_spawn` does, not
//!   `fork`. std's `CommandExt::pre_exec` forces a real `fork` (copying the host's page tables, then
//!   copy-on-write faults in the host), and an exec shim adds a second `exec` to every start; measured
//!   against the plain `posix_spawn` that the host used before (docs/isolation.md, "Why not pre_exec"),
//!   both cost far more than the 5% of the spawn floor that process isolation may cost. A `CLONE_VM`
//!   child runs on the host's memory while the host's thread waits, so what it does is limited as for
//!   any code between fork and exec, and more: only async-signal-safe system calls, no allocation, no
//!   lock, no unwinding, and nothing written to memory but its own stack, the one failure word the
//!   parent reads back, and errno (in the thread-local storage it shares with the waiting parent thread,
//!   which reads errno only after a failed clone). Every value it needs (C strings, pointer arrays, descriptors, limits, ids) is
//!   prepared by the parent beforehand. The parent blocks all signals around the `clone`, so that no
//!   handler of the host can run on the child's stack; the child resets the handlers to their defaults
//!   before it unblocks them, just before `exec`.
//! - **Waiting without a thread**: [`watch`] registers a pidfd with the runtime (tokio's registration is
//!   `unsafe` only because it trusts the descriptor to stay open, which an owned `OwnedFd` guarantees).
//! - **Reaping with usage**: [`wait4`], which returns the `struct rusage` that neither std nor nix expose;
//!   the host reports each attempt's CPU time and peak memory from it.

#![allow(unsafe_code)]

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::resource::{Resource, rlim_t, setrlimit};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::unistd::{Gid, Pid, Uid};
use std::ffi::{CString, c_char, c_int, c_void};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};

/// At most this many limits (memory, CPU, files, processes).
const MAX_LIMITS: usize = 4;
/// The child's stack while it runs before `exec` (a few system calls; far more than enough).
const CHILD_STACK: usize = 64 * 1024;

/// A child stack: pages from mmap(2) (not zeroed by us: the kernel maps zero pages as they are
/// touched, and the child touches a few), below them one PROT_NONE guard page, so that an overflow
/// faults instead of writing over the host's heap. glibc's `posix_spawn` maps its child stack the same
/// way.
struct ChildStack {
    base: *mut c_void,
    len: usize,
}

thread_local! {
    /// This thread's child stack, mapped at its first start and kept: a start holds its thread until
    /// the child has exec'd or exited (`CLONE_VFORK`), so no two children of one thread ever run on it
    /// at once. Mapping and unmapping one per start cost three system calls and, in a host with several
    /// threads, a TLB shootdown (an interrupt to every core running the host) at each unmap.
    static STACK: std::cell::RefCell<Option<ChildStack>> = const { std::cell::RefCell::new(None) };
}

impl ChildStack {
    fn new() -> Result<ChildStack, nix::errno::Errno> {
        // SAFETY: sysconf(3) reads a constant of the system.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = CHILD_STACK + page;
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(nix::errno::Errno::last());
        }
        let stack = ChildStack { base, len };
        // SAFETY: the lowest page of our own mapping becomes inaccessible (the stack grows down to it).
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(nix::errno::Errno::last());
        }
        Ok(stack)
    }

    /// The (16-byte aligned) top, where the child starts: the stack grows down.
    fn top(&self) -> *mut u8 {
        let end = self.base.cast::<u8>().wrapping_add(self.len);
        end.wrapping_sub(end as usize % 16)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once; the child that ran on it has exec'd or exited.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// Limits and user for a child, computed in the parent.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChildSetup {
    limits: [Option<(Resource, rlim_t, rlim_t)>; MAX_LIMITS],
    /// Run as this user and group (the host is root), with no supplementary groups (setgroups(0)).
    user: Option<(Uid, Gid)>,
}

impl ChildSetup {
    /// Adds a limit (soft, hard); limits past the fourth are ignored (there are four kinds).
    pub fn limit(mut self, resource: Resource, soft: u64, hard: u64) -> ChildSetup {
        if let Some(slot) = self.limits.iter_mut().find(|s| s.is_none()) {
            *slot = Some((resource, soft as rlim_t, hard as rlim_t));
        }
        self
    }

    /// Runs the worker as `uid`/`gid`.
    pub fn user(mut self, uid: Uid, gid: Gid) -> ChildSetup {
        self.user = Some((uid, gid));
        self
    }
}

/// One process to start: everything already in the form the child needs.
#[derive(Debug)]
pub struct Spec {
    /// The executable, a path (the parent resolved a bare name against `PATH`).
    pub program: CString,
    /// `argv`, `argv[0]` included.
    pub argv: Vec<CString>,
    /// The whole environment, `NAME=value` each.
    pub env: Vec<CString>,
    pub cwd: Option<CString>,
    pub setup: ChildSetup,
}

/// The step of the start that failed, so that the error names the real cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Making the pipes or the process itself (the host's own resources).
    Start,
    /// Entering the working directory (`project_path`).
    WorkingDirectory,
    /// Setting a resource limit (`limits:`).
    Limits,
    /// Becoming `user:`.
    User,
    /// Arming the parent-death signal, or the host died during the start.
    ParentDeath,
    /// Executing the program.
    Exec,
}

/// A start that failed, at `stage`.
#[derive(Debug)]
pub struct SpawnError {
    pub stage: Stage,
    pub error: std::io::Error,
}

/// A started process: its pid (it is this process's child, to be reaped with [`wait4`]) and the host's
/// ends of its stdin, stdout and stderr.
#[derive(Debug)]
pub struct Spawned {
    pub pid: Pid,
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// What the child reads: pointers into the parent's memory, valid while the parent waits in `clone`.
struct ChildArgs {
    program: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    cwd: *const c_char,
    /// The child's ends of stdin, stdout, stderr (all >= 3, so `dup2` onto 0..2 clobbers none).
    fds: [RawFd; 3],
    setup: ChildSetup,
    /// The host's pid: if the child's parent is no longer this once the parent-death signal is armed,
    /// the host died in between and the signal would never come.
    parent: Pid,
    /// 0, or the failed stage (high half) and errno (low half), written by the child before `_exit`.
    failure: AtomicU64,
}

/// Starts `spec` in its own process group with piped stdio and the parent-death signal SIGKILL.
///
/// The parent-death signal fires when the *thread* that started the child exits: call this only from
/// threads that live as long as the host (its runtime thread, or a spawner thread).
pub fn spawn(spec: &Spec) -> Result<Spawned, SpawnError> {
    let start = |e: nix::Error| SpawnError {
        stage: Stage::Start,
        error: e.into(),
    };
    let (in_r, in_w) = pipe().map_err(start)?;
    let (out_r, out_w) = pipe().map_err(start)?;
    let (err_r, err_w) = pipe().map_err(start)?;
    let argv = nul_terminated(&spec.argv);
    let envp = nul_terminated(&spec.env);
    let args = ChildArgs {
        program: spec.program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: spec.cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        fds: [in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
        setup: spec.setup,
        parent: nix::unistd::getpid(),
        failure: AtomicU64::new(0),
    };
    let top = STACK.with_borrow_mut(|slot| -> Result<*mut u8, nix::Error> {
        if slot.is_none() {
            *slot = Some(ChildStack::new()?);
        }
        Ok(slot.as_ref().map_or(std::ptr::null_mut(), ChildStack::top))
    });
    let top = top.map_err(start)?;
    // No host signal handler may run in the child (it would run on the host's memory): block them all
    // for the duration of the clone; the child resets handlers before it unblocks.
    let mut old = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    )
    .map_err(start)?;
    // SAFETY: `child_main` runs on this thread's `STACK` (kept for the thread's life) with a pointer to
    // `args`; both outlive the call, because with CLONE_VFORK this thread is suspended until the child
    // has exec'd or exited. The child only makes async-signal-safe system calls (see `child_main`) and
    // writes nothing of ours but `args.failure`.
    let pid = unsafe {
        libc::clone(
            child_main,
            top.cast::<c_void>(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&args as *const ChildArgs).cast_mut().cast::<c_void>(),
        )
    };
    let clone_errno = std::io::Error::last_os_error();
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    if pid < 0 {
        return Err(SpawnError {
            stage: Stage::Start,
            error: clone_errno,
        });
    }
    let pid = Pid::from_raw(pid);
    let failure = args.failure.load(Ordering::Acquire);
    if failure != 0 {
        // The child has already called _exit: reap it now so it leaves no zombie.
        while let Err(nix::errno::Errno::EINTR) = nix::sys::wait::waitpid(pid, None) {}
        return Err(SpawnError {
            stage: stage_of(failure >> 32),
            error: std::io::Error::from_raw_os_error((failure & 0xffff_ffff) as i32),
        });
    }
    drop((in_r, out_w, err_w));
    Ok(Spawned {
        pid,
        stdin: in_w,
        stdout: out_r,
        stderr: err_r,
    })
}

/// A close-on-exec pipe whose ends are both >= 3 (a host started with a closed stdin/stdout/stderr
/// would otherwise get 0..2 back, and the child's `dup2` onto 0..2 could clobber one end with another).
fn pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    Ok((above_stdio(r)?, above_stdio(w)?))
}

fn above_stdio(fd: OwnedFd) -> nix::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let new = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: `new` is a descriptor fcntl just created and nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(new) })
}

/// The pointer array `execve` wants: one pointer per string, then NULL.
fn nul_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

fn stage_code(stage: Stage) -> u64 {
    match stage {
        Stage::Start => 1,
        Stage::WorkingDirectory => 2,
        Stage::Limits => 3,
        Stage::User => 4,
        Stage::ParentDeath => 5,
        Stage::Exec => 6,
    }
}

fn stage_of(code: u64) -> Stage {
    match code {
        2 => Stage::WorkingDirectory,
        3 => Stage::Limits,
        4 => Stage::User,
        5 => Stage::ParentDeath,
        6 => Stage::Exec,
        _ => Stage::Start,
    }
}

/// The child, between clone and exec. Each call is one system call (async-signal-safe); nothing
/// allocates, locks or unwinds (`nix` and `libc` calls return errors, they do not panic).
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `ChildArgs`, alive and unchanged while the parent waits.
    let a = unsafe { &*(arg as *const ChildArgs) };
    // An atomic store to the parent's failure word: the only memory of the parent the child writes.
    let fail = |stage: Stage, errno: i32| -> c_int {
        a.failure.store(
            (stage_code(stage) << 32) | (errno as u32 as u64),
            Ordering::Release,
        );
        // SAFETY: _exit(2) ends the child without running the host's atexit handlers or destructors.
        unsafe { libc::_exit(127) }
    };
    // errno is read from this thread's TLS (shared with the suspended parent thread: no CLONE_SETTLS);
    // reading it is a plain load.
    let errno = || nix::errno::Errno::last_raw();
    // SAFETY (this whole block): plain system calls on values the parent prepared; see each comment.
    unsafe {
        // sigaction(2): every handler the host installed goes back to the default (an ignored signal
        // stays ignored, except SIGPIPE, which Rust programs ignore and workers expect at its default).
        // (glibc's SIGRTMAX() reads a static: no lock.)
        for sig in 1..libc::SIGRTMAX() + 1 {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue; // SIGKILL, SIGSTOP, glibc's internal signals
            }
            let ignored = old.sa_sigaction == libc::SIG_IGN && sig != libc::SIGPIPE;
            if old.sa_sigaction != libc::SIG_DFL && !ignored {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        // setpgid(2): its own process group, so that the host can signal all of it at once.
        if libc::setpgid(0, 0) != 0 {
            return fail(Stage::Start, errno());
        }
        // dup2(2): the pipes onto 0, 1, 2 (clearing close-on-exec there; the originals close at exec).
        for (target, fd) in a.fds.iter().enumerate() {
            if libc::dup2(*fd, target as c_int) < 0 {
                return fail(Stage::Start, errno());
            }
        }
    }
    // setrlimit(2): the limits, while the child still has the host's privileges (a root host may set a
    // hard limit above its own; after the change of user the worker could not). nix's wrapper fills a
    // `libc::rlimit` on the stack and calls `libc::setrlimit`: no allocation, no lock.
    for (resource, soft, hard) in a.setup.limits.iter().flatten() {
        if let Err(e) = setrlimit(*resource, *soft, *hard) {
            return fail(Stage::Limits, e as i32);
        }
    }
    // setgroups(2), setgid(2), setuid(2): groups before the uid (after setuid the process may no longer
    // change them). The raw calls, as glibc's wrappers would signal the host's other threads, which in
    // a CLONE_VM child are not the child's.
    if let Some((uid, gid)) = a.setup.user {
        let g = gid.as_raw();
        // SAFETY: plain system calls on integers (and a null list: no supplementary groups at all).
        let r = unsafe {
            if libc::syscall(
                libc::SYS_setgroups,
                0 as libc::c_long,
                std::ptr::null::<libc::gid_t>(),
            ) != 0
                || libc::syscall(libc::SYS_setgid, g) != 0
                || libc::syscall(libc::SYS_setuid, uid.as_raw()) != 0
            {
                -1
            } else {
                0
            }
        };
        if r != 0 {
            return fail(Stage::User, errno());
        }
    }
    // chdir(2): the working directory, after the change of user, so that a worker never starts in a
    // directory its user could not enter (and an unreadable `project_path` is reported as such).
    // SAFETY: `a.cwd` is the parent's NUL-terminated path (or null: stay).
    if !a.cwd.is_null() && unsafe { libc::chdir(a.cwd) } != 0 {
        return fail(Stage::WorkingDirectory, errno());
    }
    // prctl(2) PR_SET_PDEATHSIG: after the change of user, because changing credentials clears it.
    // nix's wrapper is `libc::prctl` on constants: no allocation, no lock.
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        return fail(Stage::ParentDeath, e as i32);
    }
    // getppid(2) (nix's wrapper is the bare call): if the host died between clone and prctl, the child was already reparented and the
    // signal will never come; then the worker must not start at all.
    if nix::unistd::getppid() != a.parent {
        return fail(Stage::ParentDeath, libc::ESRCH);
    }
    // SAFETY: sigprocmask(2) on a local set, then execve(2) with the parent's NUL-terminated arrays.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(a.program, a.argv, a.envp);
    }
    // An execve that fails for want of memory (under `memory_mb`) or of processes (the user is at its
    // `processes` limit: RLIMIT_NPROC counts per user) failed because of a limit, not the program.
    let e = errno();
    let limited = a.setup.limits.iter().flatten().any(|(r, _, _)| {
        (e == libc::ENOMEM && *r == Resource::RLIMIT_AS)
            || (e == libc::EAGAIN && *r == Resource::RLIMIT_NPROC)
    });
    fail(if limited { Stage::Limits } else { Stage::Exec }, e)
}

/// Registers `pidfd` (readable once its process has exited) with the current runtime.
pub fn watch(pidfd: OwnedFd) -> std::io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is a valid open descriptor; the `AsyncFd` owns it from here on, so it stays
    // open and the same for the registration's whole life, and `as_raw_fd` always returns it.
    let r = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
    };
    r.map_err(std::io::Error::from)
}

/// What a reaped process used, from its `struct rusage` (it and the descendants it waited for).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rusage {
    pub user_us: u64,
    pub system_us: u64,
    /// Peak resident set size, KiB (Linux reports `ru_maxrss` in KiB).
    pub max_rss_kb: u64,
}

/// Reaps `pid` if it has exited (`WNOHANG`): its exit status and usage, or `None` while it runs.
/// An error is `ECHILD` (not our child, or already reaped).
pub fn wait4(pid: Pid) -> std::io::Result<Option<(ExitStatus, Rusage)>> {
    let mut status: c_int = 0;
    // SAFETY: `rusage` is plain old data for which all-zero bytes are a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers point to live, writable locals of the right types for the call.
        let r = unsafe { libc::wait4(pid.as_raw(), &mut status, libc::WNOHANG, &mut ru) };
        if r == 0 {
            return Ok(None);
        }
        if r == pid.as_raw() {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let us = |t: libc::timeval| (t.tv_sec.max(0) as u64) * 1_000_000 + (t.tv_usec.max(0) as u64);
    let usage = Rusage {
        user_us: us(ru.ru_utime),
        system_us: us(ru.ru_stime),
        max_rss_kb: ru.ru_maxrss.max(0) as u64,
    };
    Ok(Some((ExitStatus::from_raw(status), usage)))
}

#[cfg(test)]
mod tests;
