//! The connection's work queue: calls queue up and one blocking-pool thread at a time runs them in
//! order, so calls made together (a settle and the claim that follows it) cost one hop to the blocking
//! pool, not one each, and never wait on each other's lock there.
//!
//! Writes that are queued together also share one transaction (group commit): each runs in a savepoint
//! of it, so one that fails is rolled back alone, and no caller hears of its write before the
//! transaction that holds it has committed. Under load this turns a settle and the claim after it, or
//! the settles of several tasks that finished together, into one commit: on WAL, most of a small write
//! transaction's cost is taking the write lock and appending the commit to the log, not the statements.

use rusqlite::{Connection, ffi};
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

/// Hands a committed (`None`) or rolled-back (`Some(error)`) write's outcome to its caller.
type Deliver = Box<dyn FnOnce(Option<&rusqlite::Error>) + Send>;

enum Job {
    /// Runs as it is, outside any transaction of ours (reads, and calls that begin their own).
    Plain(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Runs inside a transaction of the queue's.
    Write(Box<dyn WriteJob>),
}

/// A write and the channel its caller waits on.
trait WriteJob: Send {
    /// Runs the write. `Err(())`: it failed and has told its caller; its changes must be rolled back.
    fn run(self: Box<Self>, c: &Connection) -> Result<Deliver, ()>;
    /// The transaction could not begin: the write never runs and its caller hears why.
    fn fail(self: Box<Self>, e: &rusqlite::Error);
}

struct Write<T, F> {
    f: F,
    tx: tokio::sync::oneshot::Sender<rusqlite::Result<T>>,
}

impl<T, F> WriteJob for Write<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
{
    fn run(self: Box<Self>, c: &Connection) -> Result<Deliver, ()> {
        let Write { f, tx } = *self;
        match f(c) {
            Ok(v) => Ok(Box::new(move |failed: Option<&rusqlite::Error>| {
                let _ = tx.send(match failed {
                    None => Ok(v),
                    Some(e) => Err(copy(e)),
                });
            })),
            Err(e) => {
                let _ = tx.send(Err(e));
                Err(())
            }
        }
    }

    fn fail(self: Box<Self>, e: &rusqlite::Error) {
        let _ = self.tx.send(Err(copy(e)));
    }
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// A thread is draining the queue.
    running: bool,
}

pub(super) struct Serial {
    conn: Arc<Mutex<Connection>>,
    queue: Arc<Mutex<Queue>>,
}

impl Serial {
    pub fn new(conn: Connection) -> Serial {
        Serial {
            conn: Arc::new(Mutex::new(conn)),
            queue: Arc::default(),
        }
    }

    /// Runs `f` on the connection, after what was queued before it. `None`: it panicked.
    pub async fn run<T, F>(&self, f: F) -> Option<rusqlite::Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.push(Job::Plain(Box::new(move |c| {
            let _ = tx.send(f(c));
        })));
        rx.await.ok()
    }

    /// Runs `f` inside an IMMEDIATE transaction, shared with the writes queued next to it; its result is
    /// handed over once that transaction has committed (or as the error that kept it from committing).
    /// `f` must not begin or end transactions itself. `None`: it panicked.
    pub async fn write<T, F>(&self, f: F) -> Option<rusqlite::Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.push(Job::Write(Box::new(Write { f, tx })));
        rx.await.ok()
    }

    fn push(&self, job: Job) {
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.jobs.push_back(job);
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            let (queue, conn) = (self.queue.clone(), self.conn.clone());
            tokio::task::spawn_blocking(move || drain(&queue, &conn));
        }
    }
}

/// The same error again, for each write of a transaction that could not commit.
fn copy(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, msg) => {
            rusqlite::Error::SqliteFailure(*code, msg.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            ffi::Error::new(ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

fn drain(queue: &Mutex<Queue>, conn: &Mutex<Connection>) {
    let mut c = conn.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        // Everything queued by now; the writes at its front share a transaction.
        let mut jobs = {
            let mut q = queue.lock().unwrap_or_else(PoisonError::into_inner);
            if q.jobs.is_empty() {
                q.running = false;
                return;
            }
            std::mem::take(&mut q.jobs)
        };
        while let Some(job) = jobs.pop_front() {
            match job {
                // A panicking call rolled its transaction back while unwinding: the connection is
                // usable, and the calls queued after it still run. Its caller sees its channel closed.
                Job::Plain(f) => {
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut c)));
                }
                Job::Write(w) => {
                    let mut group = vec![w];
                    while let Some(Job::Write(_)) = jobs.front() {
                        let Some(Job::Write(w)) = jobs.pop_front() else {
                            break;
                        };
                        group.push(w);
                    }
                    write_group(&c, group);
                }
            }
        }
    }
}

/// One IMMEDIATE transaction for `group`, a savepoint for each write in it when there are several.
fn write_group(c: &Connection, group: Vec<Box<dyn WriteJob>>) {
    if let Err(e) = sql(c, "BEGIN IMMEDIATE") {
        // Not begun (the file is busy beyond the timeout): each write is told, none runs.
        for w in group {
            w.fail(&e);
        }
        return;
    }
    // Alone, a write needs no savepoint: the transaction is its own.
    let alone = group.len() == 1;
    let mut done: Vec<Deliver> = Vec::with_capacity(group.len());
    // SQLite rolls a transaction back by itself after some errors (a full disk, an I/O error): the writes
    // done in it are then undone and those still to run are refused, never run outside it.
    let mut undone: Option<rusqlite::Error> = None;
    for w in group {
        if undone.is_none() && c.is_autocommit() {
            undone = Some(rolled_back());
        }
        if let Some(e) = &undone {
            w.fail(e);
            continue;
        }
        if !alone && let Err(e) = sql(c, "SAVEPOINT w") {
            w.fail(&e);
            continue;
        }
        // A panic is a failed write whose caller sees its channel closed.
        match std::panic::catch_unwind(AssertUnwindSafe(|| w.run(c))).unwrap_or(Err(())) {
            Ok(deliver) => {
                if !alone {
                    let _ = sql(c, "RELEASE w");
                }
                done.push(deliver);
            }
            Err(()) if alone => {
                let _ = sql(c, "ROLLBACK");
            }
            Err(()) => {
                let _ = sql(c, "ROLLBACK TO w");
                let _ = sql(c, "RELEASE w");
            }
        }
    }
    let failed = match undone {
        Some(e) => Some(e),
        None if done.is_empty() => None,
        None if c.is_autocommit() => Some(rolled_back()),
        None => sql(c, "COMMIT").err(),
    };
    if (failed.is_some() || done.is_empty()) && !c.is_autocommit() {
        let _ = sql(c, "ROLLBACK");
    }
    for deliver in done {
        deliver(failed.as_ref());
    }
}

fn rolled_back() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        ffi::Error::new(ffi::SQLITE_ABORT),
        Some("the transaction was rolled back by an earlier error".into()),
    )
}

fn sql(c: &Connection, s: &str) -> rusqlite::Result<()> {
    c.prepare_cached(s)?.execute([]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A queue on `conn` with table `t` (x < 100) and a count of its commits.
    fn queue(mut conn: Connection) -> (Arc<Serial>, Arc<AtomicUsize>) {
        conn.execute_batch("CREATE TABLE IF NOT EXISTS t (x INTEGER PRIMARY KEY CHECK (x < 100))")
            .expect("schema");
        let commits = Arc::new(AtomicUsize::new(0));
        let n = commits.clone();
        conn.commit_hook(Some(move || {
            n.fetch_add(1, Ordering::SeqCst);
            false
        }))
        .expect("hook");
        (Arc::new(Serial::new(conn)), commits)
    }

    fn rows(s: &Serial) -> Vec<i64> {
        let c = s.conn.lock().expect("conn");
        let mut st = c.prepare("SELECT x FROM t ORDER BY x").expect("select");
        st.query_map([], |r| r.get(0))
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    fn insert(c: &Connection, x: i64) -> rusqlite::Result<usize> {
        c.execute("INSERT INTO t (x) VALUES (?1)", [x])
    }

    // Holding the connection while the writes queue up is the point: it makes them one group.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_queued_together_share_one_commit_and_fail_alone() {
        let conn = Connection::open_in_memory().expect("open");
        let (s, commits) = queue(conn);
        // While the connection is held, the writes queue up behind it; then they run as one group.
        let held = s.conn.lock().expect("conn");
        let ok1 = tokio::spawn({
            let s = s.clone();
            async move { s.write(|c| insert(c, 1)).await }
        });
        let wait_queued = |n: usize| {
            let s = s.clone();
            async move {
                while s.queue.lock().expect("queue").jobs.len() < n {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        };
        wait_queued(1).await;
        // Its first statement succeeds, its second breaks the CHECK: the first must be undone too.
        let bad = tokio::spawn({
            let s = s.clone();
            async move { s.write(|c| insert(c, 2).and_then(|_| insert(c, 200))).await }
        });
        wait_queued(2).await;
        let panics = tokio::spawn({
            let s = s.clone();
            async move {
                s.write(|c| -> rusqlite::Result<()> {
                    insert(c, 4)?;
                    panic!("a bug in a write")
                })
                .await
            }
        });
        wait_queued(3).await;
        let ok3 = tokio::spawn({
            let s = s.clone();
            async move { s.write(|c| insert(c, 3)).await }
        });
        wait_queued(4).await;
        drop(held);
        let ok1 = ok1.await.expect("join");
        let bad = bad.await.expect("join");
        let panics = panics.await.expect("join");
        let ok3 = ok3.await.expect("join");
        assert!(matches!(ok1, Some(Ok(1))), "{ok1:?}");
        assert!(matches!(ok3, Some(Ok(1))), "{ok3:?}");
        let e = bad.expect("not a panic").expect_err("the CHECK fails");
        assert!(e.to_string().contains("CHECK"), "{e}");
        assert!(
            panics.is_none(),
            "a panicking write's caller sees its channel closed"
        );
        assert_eq!(rows(&s), vec![1, 3]);
        assert_eq!(
            commits.load(Ordering::SeqCst),
            1,
            "one transaction for the group"
        );

        // Alone, a write is its own transaction, and reads go around the write path.
        assert!(matches!(s.write(|c| insert(c, 5)).await, Some(Ok(1))));
        assert_eq!(commits.load(Ordering::SeqCst), 2);
        let bad = s.write(|c| insert(c, 6).and_then(|_| insert(c, 600))).await;
        assert!(matches!(bad, Some(Err(_))), "{bad:?}");
        assert_eq!(
            commits.load(Ordering::SeqCst),
            2,
            "rolled back, not committed"
        );
        let n = s.run(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)));
        assert!(matches!(n.await, Some(Ok(3))), "6 was rolled back");
    }

    #[tokio::test]
    async fn a_write_that_cannot_begin_hears_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q.db");
        let conn = Connection::open(&path).expect("open");
        conn.busy_timeout(Duration::from_millis(50))
            .expect("timeout");
        let (s, commits) = queue(conn);
        let other = Connection::open(&path).expect("open");
        other.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let e = s
            .write(|c| insert(c, 1))
            .await
            .expect("not a panic")
            .expect_err("the file is locked");
        assert_eq!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy),
            "{e}"
        );
        other.execute_batch("ROLLBACK").expect("unlock");
        assert!(matches!(s.write(|c| insert(c, 1)).await, Some(Ok(1))));
        assert_eq!(rows(&s), vec![1]);
        assert_eq!(commits.load(Ordering::SeqCst), 1);
    }
}
