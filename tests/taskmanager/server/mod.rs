//! A test TaskManager that answers as the PrismQ service really does (SPEC section 4a, "Facts observed on
//! the real service"; the service's source is Nomoos/PrismQ.Client `Backend/TaskManager`). Every quirk the
//! host must survive is here, each pinned by a test in `facts.rs`:
//! - early exits (401, 429) come as `text/html` without `success`; routed answers are JSON;
//! - unknown things are 200 with no items; ids are strings in some answers and numbers in others;
//! - an empty queue (and an unknown type id) is HTTP 500 "There is no active transaction";
//! - a claim older than the claim timeout can be taken again, by the same worker too, and every claim adds
//!   one to `attempts`; a failure is put back to pending while attempts < 3;
//! - complete answers 400 "Task is not in claimed state" once the task is not claimed, 403 only while another
//!   worker holds it, 404 for a task that is gone; a non-string `error` is stored as "Array".
//!
//! Knobs for fault injection: `claim_timeout`, `throttle` (429s with any `Retry-After` text), `hostile`
//! (claim answers the host cannot read), `empty_claim_delay`, `delete`.

mod routes;

use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const KEY: &str = "test-key-5ecret";

/// The service's `MAX_TASK_ATTEMPTS`: a failure is requeued while `attempts` is below it.
pub const MAX_ATTEMPTS: u32 = 3;

/// A task's `status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Claimed,
    Completed,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Claimed => "claimed",
            State::Completed => "completed",
            State::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Task {
    pub id: u64,
    pub type_id: u64,
    pub type_name: String,
    /// `params_json` as stored: the exact JSON text (deduplication compares it).
    pub params: String,
    pub status: State,
    pub attempts: u32,
    pub claimed_by: Option<String>,
    pub claimed_at: Option<Instant>,
    pub claimed_at_text: Option<String>,
    pub created_at: String,
    pub completed_at: Option<String>,
    /// `result_json`: an empty result is stored as NULL.
    pub result: Option<Value>,
    pub error_message: Option<String>,
    /// The `progress` column.
    pub progress_value: i64,
    /// Every accepted progress report, in order (the service keeps them in its history).
    pub progress: Vec<(i64, Option<String>)>,
    /// The worker of every accepted complete.
    pub completions: Vec<String>,
    /// Every claim's worker id, in order.
    pub claims: Vec<String>,
}

/// A claim answer the host cannot read as a task. The task is claimed all the same (the service marked
/// it claimed before the answer went wrong), so it comes back after the claim timeout.
#[derive(Debug, Clone)]
pub enum Hostile {
    /// 200 with an HTML page.
    Html,
    /// 200 with an empty body.
    Empty,
    /// 200 with `data` that has no id.
    NoId,
    /// 200 with a JSON body nested 100 000 deep.
    Deep,
    /// 200 with the task's id but `params` that are not an object.
    BadParams,
}

#[derive(Default)]
pub struct Inner {
    pub types: Vec<(u64, String)>,
    pub tasks: Vec<Task>,
    /// The service's claim timeout; zero means its default, 300 s.
    pub claim_timeout: Duration,
    /// Answer the next N keyed requests with 429 and this `Retry-After` text ("1" when empty).
    pub throttle: u32,
    pub retry_after: String,
    pub throttled: u32,
    /// Complete answers that were refused (400, 403 or 404), by status code.
    pub refused_completes: Vec<u16>,
    pub registered: Vec<String>,
    /// Hold every "nothing to do" answer this long after deciding it, as a loaded service would: the
    /// host's other requests (a complete that requeues) can land before the answer arrives.
    pub empty_claim_delay: Duration,
    /// The next claims that find a task answer like this (front first).
    pub hostile: VecDeque<Hostile>,
    /// Every request as `METHOD /path` (after /api), in order.
    pub requests: Vec<String>,
    /// The last id handed out (AUTO_INCREMENT: a deleted task's id is never reused).
    pub last_id: u64,
}

impl Inner {
    pub fn claim_timeout(&self) -> Duration {
        if self.claim_timeout.is_zero() {
            Duration::from_secs(300)
        } else {
            self.claim_timeout
        }
    }

    pub fn forbidden_completes(&self) -> usize {
        self.refused_completes.iter().filter(|c| **c == 403).count()
    }
}

#[derive(Clone, Default)]
pub struct TaskManager(pub Arc<Mutex<Inner>>);

/// The service's DATETIME text (`YYYY-MM-DD HH:MM:SS`, MariaDB's format; UTC here).
pub fn now_text() -> String {
    let iso = workerhost_adapters::now_rfc3339();
    iso.get(..19).unwrap_or(&iso).replace('T', " ")
}

impl TaskManager {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().expect("lock")
    }

    pub fn add_type(&self, name: &str) -> u64 {
        let mut s = self.lock();
        if let Some((id, _)) = s.types.iter().find(|t| t.1 == name) {
            return *id;
        }
        let id = 100 + s.types.len() as u64;
        s.types.push((id, name.to_string()));
        id
    }

    /// Creates a task as `POST /tasks` does (without deduplication): returns its id.
    pub fn add_task(&self, type_name: &str, params: Value) -> u64 {
        self.lock().insert(type_name, params.to_string())
    }

    pub fn task(&self, id: u64) -> Task {
        self.lock()
            .tasks
            .iter()
            .find(|t| t.id == id)
            .cloned()
            .expect("task")
    }

    /// Claims as another worker would (for the lost-claim test).
    pub fn steal(&self, id: u64, worker: &str) {
        let mut s = self.lock();
        let t = s.tasks.iter_mut().find(|t| t.id == id).expect("task");
        t.claim(worker);
    }

    /// Deletes a task, as an operator would on the service.
    pub fn delete(&self, id: u64) {
        self.lock().tasks.retain(|t| t.id != id);
    }
}

impl Inner {
    fn insert(&mut self, type_name: &str, params: String) -> u64 {
        let type_id = self
            .types
            .iter()
            .find(|t| t.1 == type_name)
            .map(|t| t.0)
            .expect("type");
        self.last_id += 1;
        let id = self.last_id;
        self.tasks.push(Task {
            id,
            type_id,
            type_name: type_name.into(),
            params,
            status: State::Pending,
            attempts: 0,
            claimed_by: None,
            claimed_at: None,
            claimed_at_text: None,
            created_at: now_text(),
            completed_at: None,
            result: None,
            error_message: None,
            progress_value: 0,
            progress: Vec::new(),
            completions: Vec::new(),
            claims: Vec::new(),
        });
        id
    }
}

impl Task {
    fn claim(&mut self, worker: &str) {
        self.status = State::Claimed;
        self.claimed_by = Some(worker.into());
        self.claimed_at = Some(Instant::now());
        self.claimed_at_text = Some(now_text());
        self.attempts += 1;
        self.claims.push(worker.into());
    }
}

/// Serves the TaskManager on a free loopback port from a background runtime; returns the base URL
/// (ending in /api).
pub fn start(tm: TaskManager) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let _ = axum::serve(listener, routes::app(tm)).await;
        });
    });
    format!("http://{addr}/api")
}
