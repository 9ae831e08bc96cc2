//! A test TaskManager that answers as the PrismQ service does today (SPEC section 4a), quirks included:
//! every body is served as `text/html`, ids are numbers here and strings there, an empty queue is HTTP
//! 500 "There is no active transaction", a bad key is 401, a claim older than the claim timeout can be
//! taken by another worker (and the first worker's complete is then 403), a failure is requeued by the
//! server while attempts < 3, and 429 with `Retry-After` can be switched on.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const KEY: &str = "test-key-5ecret";

#[derive(Debug, Clone)]
pub struct Task {
    pub id: u64,
    pub type_id: u64,
    pub type_name: String,
    pub params: Value,
    pub status: String,
    pub attempts: u32,
    pub claimed_by: Option<String>,
    pub claimed_at: Option<Instant>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub progress: Vec<(i64, Option<String>)>,
    pub completions: Vec<String>,
}

#[derive(Default)]
pub struct Inner {
    pub types: Vec<(u64, String)>,
    pub tasks: Vec<Task>,
    pub claim_timeout: Duration,
    /// Answer the next N requests with 429.
    pub throttle: u32,
    pub throttled: u32,
    pub forbidden_completes: u32,
    pub registered: Vec<String>,
    /// Hold every "nothing to do" answer this long after deciding it, as a loaded service would: the
    /// host's other requests (a complete that requeues) can land before the answer arrives.
    pub empty_claim_delay: Duration,
}

#[derive(Clone, Default)]
pub struct TaskManager(pub Arc<Mutex<Inner>>);

impl TaskManager {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().expect("lock")
    }

    pub fn add_type(&self, name: &str) -> u64 {
        let mut s = self.lock();
        let id = 100 + s.types.len() as u64;
        s.types.push((id, name.to_string()));
        id
    }

    pub fn add_task(&self, type_name: &str, params: Value) -> u64 {
        let mut s = self.lock();
        let type_id = s
            .types
            .iter()
            .find(|t| t.1 == type_name)
            .map(|t| t.0)
            .expect("type");
        let id = 1 + s.tasks.len() as u64;
        s.tasks.push(Task {
            id,
            type_id,
            type_name: type_name.into(),
            params,
            status: "pending".into(),
            attempts: 0,
            claimed_by: None,
            claimed_at: None,
            result: None,
            error: None,
            progress: Vec::new(),
            completions: Vec::new(),
        });
        id
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
        t.claimed_by = Some(worker.into());
        t.claimed_at = Some(Instant::now());
        t.attempts += 1;
    }
}

/// The service's bodies, served as text/html like the real one.
fn answer(code: StatusCode, body: Value) -> Response {
    (
        code,
        [("content-type", "text/html; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

fn ok(data: Value) -> Response {
    answer(
        StatusCode::OK,
        json!({"success": true, "message": "Success", "data": data, "timestamp": 1}),
    )
}

fn err(code: StatusCode, msg: &str) -> Response {
    answer(
        code,
        json!({"success": false, "error": msg, "timestamp": 1}),
    )
}

/// Key check and throttling, in front of every route but /health.
fn gate(tm: &TaskManager, headers: &HeaderMap) -> Option<Response> {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return Some(err(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: invalid API key",
        ));
    }
    let mut s = tm.lock();
    if s.throttle > 0 {
        s.throttle -= 1;
        s.throttled += 1;
        let mut r = err(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
        r.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        return Some(r);
    }
    None
}

/// Every POST needs a JSON body.
fn body_of(raw: &str) -> Option<Value> {
    serde_json::from_str(raw).ok()
}

fn bad_body() -> Response {
    err(StatusCode::BAD_REQUEST, "Invalid JSON body")
}

async fn health() -> Response {
    ok(json!({"status": "healthy"}))
}

async fn get_type(
    State(tm): State<TaskManager>,
    h: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(r) = gate(&tm, &h) {
        return r;
    }
    let s = tm.lock();
    match s.types.iter().find(|t| t.1 == name) {
        // ids as strings here, numbers elsewhere
        Some((id, n)) => ok(json!({"items": [{"id": id.to_string(), "name": n}]})),
        None => err(StatusCode::NOT_FOUND, "Task type not found"),
    }
}

async fn register(State(tm): State<TaskManager>, h: HeaderMap, raw: String) -> Response {
    if let Some(r) = gate(&tm, &h) {
        return r;
    }
    let Some(b) = body_of(&raw) else {
        return bad_body();
    };
    let (Some(name), Some(_)) = (b["name"].as_str(), b["param_schema"].get("type")) else {
        return err(
            StatusCode::BAD_REQUEST,
            "name and param_schema.type are required",
        );
    };
    let id = tm.add_type(name);
    tm.lock().registered.push(name.to_string());
    ok(json!({"id": id, "name": name}))
}

async fn claim(State(tm): State<TaskManager>, h: HeaderMap, raw: String) -> Response {
    if let Some(r) = gate(&tm, &h) {
        return r;
    }
    let Some(b) = body_of(&raw) else {
        return bad_body();
    };
    let type_id = b["task_type_id"]
        .as_u64()
        .or_else(|| b["task_type_id"].as_str().and_then(|s| s.parse().ok()));
    let worker = b["worker_id"].as_str().unwrap_or("").to_string();
    // The answer is decided under the lock; an empty one is then held `empty_claim_delay`.
    let delay = {
        let mut s = tm.lock();
        // The service's default claim timeout is 300 s.
        let timeout = if s.claim_timeout.is_zero() {
            Duration::from_secs(300)
        } else {
            s.claim_timeout
        };
        let found = s.tasks.iter_mut().find(|t| {
            Some(t.type_id) == type_id
                && (t.status == "pending"
                    || (t.status == "claimed"
                        && t.claimed_at.is_some_and(|c| c.elapsed() > timeout)))
        });
        if let Some(t) = found {
            t.status = "claimed".into();
            t.claimed_by = Some(worker);
            t.claimed_at = Some(Instant::now());
            t.attempts += 1;
            return ok(
                json!({"id": t.id.to_string(), "type": t.type_name, "params": t.params, "attempts": t.attempts, "priority": 0}),
            );
        }
        s.empty_claim_delay
    };
    tokio::time::sleep(delay).await;
    // The quirk: an empty queue is a 500.
    err(
        StatusCode::INTERNAL_SERVER_ERROR,
        "There is no active transaction",
    )
}

async fn complete(
    State(tm): State<TaskManager>,
    h: HeaderMap,
    Path(id): Path<u64>,
    raw: String,
) -> Response {
    if let Some(r) = gate(&tm, &h) {
        return r;
    }
    let Some(b) = body_of(&raw) else {
        return bad_body();
    };
    if b.get("error").is_some_and(|e| !e.is_string()) {
        return err(StatusCode::BAD_REQUEST, "error must be a string");
    }
    let worker = b["worker_id"].as_str().unwrap_or("").to_string();
    let mut s = tm.lock();
    let Some(t) = s.tasks.iter_mut().find(|t| t.id == id) else {
        return err(StatusCode::NOT_FOUND, "Task not found");
    };
    if t.status != "claimed" || t.claimed_by.as_deref() != Some(worker.as_str()) {
        s.forbidden_completes += 1;
        return err(StatusCode::FORBIDDEN, "Task is not claimed by this worker");
    }
    t.completions.push(worker);
    if b["success"].as_bool() == Some(true) {
        t.status = "completed".into();
        t.result = Some(b["result"].clone());
        ok(json!({"id": id, "status": "completed"}))
    } else {
        t.error = b["error"].as_str().map(str::to_string);
        t.claimed_by = None;
        if t.attempts < 3 {
            t.status = "pending".into();
            ok(json!({"id": id, "status": "pending (retry)"}))
        } else {
            t.status = "failed".into();
            ok(json!({"id": id, "status": "failed"}))
        }
    }
}

async fn progress(
    State(tm): State<TaskManager>,
    h: HeaderMap,
    Path(id): Path<u64>,
    raw: String,
) -> Response {
    if let Some(r) = gate(&tm, &h) {
        return r;
    }
    let Some(b) = body_of(&raw) else {
        return bad_body();
    };
    let mut s = tm.lock();
    let Some(t) = s.tasks.iter_mut().find(|t| t.id == id) else {
        return err(StatusCode::NOT_FOUND, "Task not found");
    };
    t.progress.push((
        b["progress"].as_i64().unwrap_or(-1),
        b["message"].as_str().map(str::to_string),
    ));
    ok(json!({"id": id}))
}

async fn create(State(tm): State<TaskManager>, h: HeaderMap, raw: String) -> Response {
    if let Some(r) = gate(&tm, &h) {
        return r;
    }
    let Some(b) = body_of(&raw) else {
        return bad_body();
    };
    let (Some(name), Some(params)) = (b["type"].as_str(), b["params"].as_object()) else {
        return err(StatusCode::BAD_REQUEST, "type and params are required");
    };
    if params.is_empty() {
        return err(StatusCode::BAD_REQUEST, "params must be a non-empty object");
    }
    if !tm.lock().types.iter().any(|t| t.1 == name) {
        return err(StatusCode::BAD_REQUEST, "Unknown task type");
    }
    let id = tm.add_task(name, Value::Object(params.clone()));
    ok(json!({"id": id}))
}

async fn show(State(tm): State<TaskManager>, h: HeaderMap, Path(id): Path<u64>) -> Response {
    if let Some(r) = gate(&tm, &h) {
        return r;
    }
    let s = tm.lock();
    match s.tasks.iter().find(|t| t.id == id) {
        None => err(StatusCode::NOT_FOUND, "Task not found"),
        Some(t) => ok(json!({"items": [{
            "id": t.id, "type": t.type_name, "status": t.status, "attempts": t.attempts,
            "params": t.params, "result": t.result, "error": t.error, "claimed_by": t.claimed_by,
        }]})),
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
            let app = Router::new()
                .route("/api/health", get(health))
                .route("/api/task-types/{name}", get(get_type))
                .route("/api/task-types/register", post(register))
                .route("/api/tasks/claim", post(claim))
                .route("/api/tasks/{id}/complete", post(complete))
                .route("/api/tasks/{id}/progress", post(progress))
                .route("/api/tasks", post(create))
                .route("/api/tasks/{id}", get(show))
                .with_state(tm);
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let _ = axum::serve(listener, app).await;
        });
    });
    format!("http://{addr}/api")
}
