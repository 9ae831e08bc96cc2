//! Waking an idle host as soon as another process commits to the database (`workerhost submit`, a
//! `sqlite3` shell, another host settling), instead of at its next poll.
//!
//! Every commit in WAL mode writes the `-wal` file (a rollback-journal database writes the file itself),
//! so an inotify watch on the database's folder, filtered by those two names, tells when something may
//! have changed. A small thread waits on it and bumps a counter. It only shortens waits: the poll interval
//! still bounds them, so a folder that inotify cannot watch (some network file systems) falls back to
//! polling.

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::ffi::OsString;
use std::io::PipeWriter;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Changes seen so far, and a way to wait for the next one.
#[derive(Default)]
struct Changes {
    count: AtomicU64,
    notify: Notify,
}

/// An inotify watch on the database's folder, for the database file and its WAL. Dropping it ends the
/// watching thread.
pub(super) struct Watch {
    changes: Arc<Changes>,
    _stop: PipeWriter,
}

impl Watch {
    /// `None` when the folder cannot be watched.
    pub fn new(db: &Path) -> Option<Watch> {
        let name = db.file_name()?.to_os_string();
        let dir = match db.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        let flags = AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO;
        if let Err(e) = ino.add_watch(dir, flags) {
            tracing::debug!(dir = %dir.display(), error = %e, "cannot watch the sqlite folder; polling only");
            return None;
        }
        let (stop_rx, stop_tx) = std::io::pipe().ok()?;
        let mut wal = name.clone();
        wal.push("-wal");
        let names = [name, wal];
        let changes = Arc::new(Changes::default());
        let seen = changes.clone();
        std::thread::Builder::new()
            .name("sqlite-watch".into())
            .spawn(move || {
                let mut fds = [
                    PollFd::new(ino.as_fd(), PollFlags::POLLIN),
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
                    if take(&ino, &names) {
                        seen.count.fetch_add(1, Ordering::SeqCst);
                        seen.notify.notify_waiters();
                    }
                }
            })
            .ok()?;
        Some(Watch {
            changes,
            _stop: stop_tx,
        })
    }

    /// A mark to wait from: changes after it end [`Watch::changed`].
    pub fn mark(&self) -> u64 {
        self.changes.count.load(Ordering::SeqCst)
    }

    /// Waits until the database changed after `mark`, at most `max`.
    pub async fn changed(&self, mark: u64, max: Duration) {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let next = self.changes.notify.notified();
            let mut next = std::pin::pin!(next);
            next.as_mut().enable();
            if self.mark() != mark {
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
