//! The connection's work queue: calls queue up and one blocking-pool thread at a time runs them in
//! order, so calls made together (a settle and the claim that follows it) cost one hop to the blocking
//! pool, not one each, and never wait on each other's lock there.

use rusqlite::Connection;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

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
        let job: Job = Box::new(move |c| {
            let _ = tx.send(f(c));
        });
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.jobs.push_back(job);
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            let (queue, conn) = (self.queue.clone(), self.conn.clone());
            tokio::task::spawn_blocking(move || drain(&queue, &conn));
        }
        rx.await.ok()
    }
}

fn drain(queue: &Mutex<Queue>, conn: &Mutex<Connection>) {
    let mut c = conn.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let job = {
            let mut q = queue.lock().unwrap_or_else(PoisonError::into_inner);
            match q.jobs.pop_front() {
                Some(j) => j,
                None => {
                    q.running = false;
                    return;
                }
            }
        };
        // A panicking call rolled its transaction back while unwinding: the connection is usable, and
        // the calls queued after it still run. Its caller sees its result channel closed.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut c)));
    }
}
