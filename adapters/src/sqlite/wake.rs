//! Waking an idle host as soon as another process commits to the database (`workerhost submit`, a
//! `sqlite3` shell, another host settling), instead of at its next poll.
//!
//! Every commit in WAL mode writes the `-wal` file (a rollback-journal database writes the file itself),
//! so an inotify watch on the database's folder, filtered by those two names, tells when something may
//! have changed. The watch exists only while the host waits (so a busy host's own commits wake nobody);
//! a small thread reads it and bumps a counter. It only shortens waits: the poll interval still bounds
//! them, so a folder that inotify cannot watch (some network file systems) falls back to polling.

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::ffi::OsString;
use std::io::PipeWriter;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// What the thread and the waiters share.
struct Shared {
    ino: Inotify,
    /// Changes to the database seen so far.
    count: AtomicU64,
    notify: Notify,
}

/// An inotify instance for the database's folder. Dropping it ends the reading thread.
pub(super) struct Watch {
    shared: Arc<Shared>,
    dir: PathBuf,
    _stop: PipeWriter,
}

/// The watch is on while this lives.
pub(super) struct Armed<'a> {
    watch: &'a Watch,
    wd: WatchDescriptor,
    mark: u64,
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        let _ = self.watch.shared.ino.rm_watch(self.wd);
    }
}

impl Watch {
    /// `None` when inotify or the thread cannot be had.
    pub fn new(db: &Path) -> Option<Watch> {
        let name = db.file_name()?.to_os_string();
        let dir = match db.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        let (stop_rx, stop_tx) = std::io::pipe().ok()?;
        let mut wal = name.clone();
        wal.push("-wal");
        let names = [name, wal];
        let shared = Arc::new(Shared {
            ino,
            count: AtomicU64::new(0),
            notify: Notify::new(),
        });
        let seen = shared.clone();
        std::thread::Builder::new()
            .name("sqlite-watch".into())
            .spawn(move || {
                let mut fds = [
                    PollFd::new(seen.ino.as_fd(), PollFlags::POLLIN),
                    PollFd::new(stop_rx.as_fd(), PollFlags::POLLIN),
                ];
                loop {
                    if poll(&mut fds, PollTimeout::NONE).is_err() {
                        continue; // EINTR
                    }
                    // The other end is dropped (or broken): the source is gone.
                    if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                        return;
                    }
                    if take(&seen.ino, &names) {
                        seen.count.fetch_add(1, Ordering::SeqCst);
                        seen.notify.notify_waiters();
                    }
                }
            })
            .ok()?;
        Some(Watch {
            shared,
            dir,
            _stop: stop_tx,
        })
    }

    /// Starts watching; changes from now on end [`Watch::changed`]. `None` when the folder cannot be
    /// watched.
    pub fn arm(&self) -> Option<Armed<'_>> {
        let flags = AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO;
        match self.shared.ino.add_watch(&self.dir, flags) {
            Ok(wd) => Some(Armed {
                watch: self,
                wd,
                mark: self.shared.count.load(Ordering::SeqCst),
            }),
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "cannot watch the sqlite folder; polling");
                None
            }
        }
    }
}

impl Armed<'_> {
    /// Waits until the database changed since the watch was armed, at most `max`.
    pub async fn changed(&self, max: Duration) {
        let shared = &self.watch.shared;
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let next = shared.notify.notified();
            let mut next = std::pin::pin!(next);
            next.as_mut().enable();
            if shared.count.load(Ordering::SeqCst) != self.mark {
                return;
            }
            tokio::select! {
                _ = next => {}
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }
}

/// Reads every queued event; whether one concerns the database (or events were lost).
fn take(ino: &Inotify, names: &[OsString; 2]) -> bool {
    let mut ours = false;
    loop {
        match ino.read_events() {
            Ok(events) => {
                ours |= events.iter().any(|e| {
                    e.name.as_ref().is_some_and(|n| names.contains(n))
                        || e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW)
                });
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return ours, // EAGAIN: all read
        }
    }
}
