//! Descendants of a task that left its process group (`setsid`, a double fork): found and killed when
//! the task ends and when it times out, so that nothing a task started outlives it.
//!
//! The host is a *child subreaper* (`PR_SET_CHILD_SUBREAPER`, [`become_subreaper`]): a process whose
//! parent dies is reparented to the host instead of to init, so an escapee stays findable as a child of
//! the host. Which task it belongs to is read from its environment: every leader gets a unique
//! `WORKERHOST_RUN` token ([`super::leader::TOKEN_VAR`]), which what it starts inherits
//! (`/proc/<pid>/environ` is the environment the process was started with).
//!
//! Why this way. The alternatives: the process group or session does not survive `setsid`, which is the
//! very escape; walking `/proc/<host>/task/*/children` needs `CONFIG_PROC_CHILDREN`, which these machines
//! lack; cgroups (`cgroup.kill`) are ruled out here. A scan of all of `/proc` at every task end would
//! cost about as much as a process start, so the scan is narrowed: pids are handed out in increasing
//! order, and a task's descendants were all created after its leader, so only the pids between the
//! leader's and the last one allocated (`/proc/sys/kernel/ns_last_pid`) can be them, minus the other
//! leaders the host is running and those started after it and reaped since (known, never read). Under
//! load that leaves few `stat` reads, often none; after a pid wrap, or for a range too wide (a long task
//! on a busy machine), the whole of `/proc` is listed.
//!
//! What it cannot see: a descendant that leaves the group *and* wipes its environment (`env -i`) while
//! its parent is still alive. Its own descendants are still found (by ancestry from a marked process).

use super::child::{self, SpawnError, Spawned, Spec};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock, TryLockError};
use std::time::{Duration, Instant};

/// The leaders the host started: those not reaped yet, and the last ones reaped.
static LEADERS: Mutex<Option<Leaders>> = Mutex::new(None);

#[derive(Default)]
struct Leaders {
    /// Started and not reaped yet: pid -> start number (counting up).
    live: HashMap<i32, u64>,
    /// Reaped, pid -> start number; those started more than [`RANGE_MAX`] starts ago are dropped now and
    /// then (a sweep only asks about leaders started after its own).
    reaped_at: HashMap<i32, u64>,
    started: u64,
}

impl Leaders {
    fn start_number(&self, pid: i32) -> Option<u64> {
        self.live
            .get(&pid)
            .or_else(|| self.reaped_at.get(&pid))
            .copied()
    }

    /// Whether `pid` is known not to be an escapee of the leader started as number `of`: a live
    /// leader, or (in a range without a pid wrap, where each pid was handed out once since that leader
    /// started) a leader started after it and reaped since. Those are most of a narrowed range under
    /// load, and each would otherwise cost a failed `open` of `/proc/<pid>/stat`.
    fn excludes(&self, pid: i32, of: Option<u64>, narrowed: bool) -> bool {
        self.live.contains_key(&pid)
            || (narrowed && of.is_some_and(|o| self.reaped_at.get(&pid).is_some_and(|&n| n > o)))
    }
}

fn leaders() -> std::sync::MutexGuard<'static, Option<Leaders>> {
    LEADERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Held shared by every start from `clone` until its pid is in [`LEADERS`]. A sweep reaps the host's
/// unknown dead children only if it can take it exclusively at once: a just-started leader that died
/// before it was registered is never reaped from under its owner, starts on several threads do not wait
/// for one another, and a sweep never waits for a start (it leaves the zombies to a later sweep).
/// Killing needs no lock: what a sweep kills carries its own task's token, which no leader being
/// started carries (see [`super::leader::next_token`]).
static STARTING: RwLock<()> = RwLock::new(());

/// A narrowed scan reads at most this many pids; wider ranges list `/proc` instead.
const RANGE_MAX: i32 = 4096;

/// Makes this process a child subreaper; call once at start, before any worker is started.
pub fn become_subreaper() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(
            "cannot become a child subreaper ({e}): escaped worker processes go to init"
        );
    }
}

/// Starts `spec` and records its pid as a live leader, in one step.
pub fn spawn_registered(spec: &Spec) -> Result<Spawned, SpawnError> {
    let _starting = STARTING.read().unwrap_or_else(|p| p.into_inner());
    let s = child::spawn(spec)?;
    let mut g = leaders();
    let l = g.get_or_insert_with(Leaders::default);
    l.started += 1;
    l.live.insert(s.pid.as_raw(), l.started);
    Ok(s)
}

/// The leader `pid` has been reaped.
pub fn forget(pid: Pid) {
    let mut g = leaders();
    let Some(l) = g.as_mut() else { return };
    let Some(n) = l.live.remove(&pid.as_raw()) else {
        return;
    };
    l.reaped_at.insert(pid.as_raw(), n);
    let keep = RANGE_MAX as usize;
    if l.reaped_at.len() > 2 * keep {
        let oldest = l.started.saturating_sub(keep as u64);
        l.reaped_at.retain(|_, m| *m > oldest);
    }
}

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy)]
struct Stat {
    ppid: i32,
    zombie: bool,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses; it ends at the last ')'.
    let (_, rest) = text.rsplit_once(')')?;
    let mut f = rest.split_whitespace();
    let state = f.next()?;
    let ppid = f.next()?.parse().ok()?;
    Some(Stat {
        ppid,
        zombie: state == "Z" || state == "X",
    })
}

/// Whether `pid`'s environment holds `TOKEN_VAR=token`.
fn carries(pid: i32, token: u64) -> bool {
    let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let want = format!("{}={token}", super::leader::TOKEN_VAR);
    env.split(|b| *b == 0).any(|entry| entry == want.as_bytes())
}

fn last_pid() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The pids that may be descendants of a leader started as `since`, and whether they are the narrowed
/// range (`true`: every pid handed out since, in order, without a wrap) or the whole of `/proc`.
fn candidates(since: i32) -> (Vec<i32>, bool) {
    if let Some(last) = last_pid()
        && last >= since
        && last - since <= RANGE_MAX
    {
        return ((since + 1..=last).collect(), true);
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return (Vec::new(), false);
    };
    let all = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (all, false)
}

/// Kills what is left of the task whose leader was `leader` (its pid) with `token`: the processes
/// reparented to the host that carry the token, and every descendant of those. Returns how many were
/// killed. Zombies among the host's unknown children are reaped on the way.
pub fn sweep(leader: Pid, token: u64) -> usize {
    let host = std::process::id() as i32;
    let (pids, narrowed) = candidates(leader.as_raw());
    // Taken before the children are read: a child registered after this cannot be a zombie seen here.
    let no_start = match STARTING.try_write() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    };
    let stats: HashMap<i32, Stat> = {
        let g = leaders();
        let of = g.as_ref().and_then(|l| l.start_number(leader.as_raw()));
        let known = |p: &i32| g.as_ref().is_some_and(|l| l.excludes(*p, of, narrowed));
        pids.into_iter()
            .filter(|p| *p != host && !known(p))
            .filter_map(|p| Some((p, stat(p)?)))
            .collect()
    };
    let mut doomed: HashSet<i32> = HashSet::new();
    let mut orphans = Vec::new();
    for (&pid, s) in &stats {
        if s.ppid != host {
            continue;
        }
        if s.zombie {
            // An unknown child of the host that has died: an escapee that ended by itself (or, while a
            // start is under way, perhaps that start's leader: left for a later sweep then).
            if no_start.is_some() {
                let _ = child::wait4(Pid::from_raw(pid));
            }
        } else if carries(pid, token) {
            doomed.insert(pid);
            orphans.push(pid);
        }
    }
    drop(no_start);
    if doomed.is_empty() {
        return 0;
    }
    // Their descendants, whatever their environment: to a fixed point over the parent links.
    loop {
        let before = doomed.len();
        for (&pid, s) in &stats {
            if !s.zombie && doomed.contains(&s.ppid) {
                doomed.insert(pid);
            }
        }
        if doomed.len() == before {
            break;
        }
    }
    for &pid in &doomed {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    tracing::info!(
        count = doomed.len(),
        "killed processes that left their task's process group"
    );
    reap_later(doomed.iter().copied().collect());
    doomed.len()
}

/// Reaps the killed processes as they become (or already are) children of the host, off the caller's
/// thread: a killed escapee's own children are reparented to the host only once it is gone.
fn reap_later(pids: Vec<i32>) {
    let spawned = std::thread::Builder::new()
        .name("workerhost-sweep".into())
        .spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut left = pids;
            while !left.is_empty() && Instant::now() < deadline {
                left.retain(|&pid| match child::wait4(Pid::from_raw(pid)) {
                    Ok(Some(_)) => false,
                    Ok(None) => true,
                    // Not (yet) our child: done once it no longer exists.
                    Err(_) => std::path::Path::new(&format!("/proc/{pid}")).exists(),
                });
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start a thread to reap killed processes: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only leaders are skipped unread: live ones, and in a narrowed range those started after the
    /// swept leader and reaped since; an older reaped leader's pid may have been handed out again.
    #[test]
    fn a_sweep_skips_live_leaders_and_newer_reaped_ones_only() {
        let mut l = Leaders::default();
        for (pid, n) in [(100, 1), (101, 2), (102, 3), (103, 4)] {
            l.live.insert(pid, n);
        }
        for pid in [100, 101, 103] {
            let n = l.live.remove(&pid).expect("live");
            l.reaped_at.insert(pid, n);
        }
        let of = l.start_number(101);
        assert_eq!(of, Some(2));
        assert!(l.excludes(102, of, true), "live");
        assert!(l.excludes(103, of, true), "started after 101, reaped");
        assert!(
            !l.excludes(100, of, true),
            "started before 101: its pid may be anyone's now"
        );
        assert!(!l.excludes(104, of, true), "unknown");
        assert!(
            !l.excludes(103, of, false),
            "the whole of /proc: no order to rely on"
        );
        assert!(l.excludes(102, of, false), "live, wherever it is");
    }
}
