//! The double's routes, each answering as the service's handler does (CustomHandlers.php and the
//! data-driven query endpoints of seed_endpoints.sql).

// The helpers return the error answer itself (`Err(Response)`), as the handlers send it; its size does not
// matter in a test double.
#![allow(clippy::result_large_err)]

use super::{MAX_ATTEMPTS, State, Task, TaskManager, now_text};
use axum::Router;
use axum::extract::{Path, State as Shared};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

mod claim;

use claim::claim;

pub fn app(tm: TaskManager) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/task-types/{name}", get(get_type))
        .route("/api/task-types/register", post(register))
        .route("/api/tasks/claim", post(claim))
        .route("/api/tasks/{id}/complete", post(complete))
        .route("/api/tasks/{id}/progress", post(progress))
        .route("/api/tasks", post(create))
        .route("/api/tasks/{id}", get(show))
        .fallback(not_found)
        .with_state(tm)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A routed answer: JSON with `application/json`.
fn routed(code: StatusCode, body: Value) -> Response {
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(data: Value) -> Response {
    routed(
        StatusCode::OK,
        json!({"success": true, "message": "Success", "data": data, "timestamp": unix_now()}),
    )
}

fn err(code: u16, msg: &str) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    routed(
        code,
        json!({"success": false, "error": msg, "timestamp": unix_now()}),
    )
}

/// A validation error: `details` lists the messages.
fn invalid(details: &[&str]) -> Response {
    routed(
        StatusCode::BAD_REQUEST,
        json!({"success": false, "error": "Validation failed", "details": details, "timestamp": unix_now()}),
    )
}

/// An early exit of the security middleware: `text/html`, no `success`, an ISO 8601 timestamp.
fn early(code: StatusCode, body: Value) -> Response {
    (
        code,
        [("content-type", "text/html; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

/// Key check and rate limiting, in front of every route but /health. Records the request.
fn gate(tm: &TaskManager, headers: &HeaderMap, what: String) -> Option<Response> {
    let mut s = tm.lock();
    s.requests.push(what);
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(super::KEY) {
        return Some(early(
            StatusCode::UNAUTHORIZED,
            json!({"error": "Unauthorized", "message": "Invalid or missing API key", "timestamp": now_text().replace(' ', "T") + "+00:00"}),
        ));
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        s.throttled += 1;
        let after = if s.retry_after.is_empty() {
            "1".to_string()
        } else {
            s.retry_after.clone()
        };
        let number = after
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or(json!(after));
        let mut r = early(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": "Too Many Requests", "message": format!("Rate limit exceeded. Please try again in {after} seconds."),
                   "retry_after": number, "limit": 100, "window": 60, "timestamp": now_text().replace(' ', "T") + "+00:00"}),
        );
        if let Ok(v) = HeaderValue::from_str(&after) {
            r.headers_mut().insert("retry-after", v);
        }
        return Some(r);
    }
    None
}

/// `getRequestBody`: a body that is not JSON is a 400 before anything else.
fn body_of(raw: &str) -> Result<Value, Response> {
    serde_json::from_str(raw).map_err(|_| err(400, "Invalid JSON in request body"))
}

/// `required_fields`: missing (or `""`) is a 400 naming the first one.
fn required(b: &Value, fields: &[&str]) -> Result<(), Response> {
    for f in fields {
        if b.get(f)
            .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
        {
            return Err(err(400, &format!("Missing required field: {f}")));
        }
    }
    Ok(())
}

async fn not_found(uri: Uri) -> Response {
    if uri.path().starts_with("/api/") {
        err(404, "Endpoint not found")
    } else {
        // The web server's own page: the request never reached the API.
        (
            StatusCode::NOT_FOUND,
            [("content-type", "text/html")],
            "<html><body><h1>Not Found</h1></body></html>",
        )
            .into_response()
    }
}

async fn health() -> Response {
    ok(json!({"status": "healthy", "timestamp": now_text()}))
}

async fn get_type(
    Shared(tm): Shared<TaskManager>,
    h: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(r) = gate(&tm, &h, format!("GET /task-types/{name}")) {
        return r;
    }
    let s = tm.lock();
    let items: Vec<Value> = s
        .types
        .iter()
        .filter(|t| t.1 == name)
        .map(|(id, n)| json!({"id": id, "name": n, "version": "1.0.0", "param_schema": {"type": "object"}, "is_active": 1}))
        .collect();
    ok(json!({"count": items.len(), "items": items}))
}

async fn register(Shared(tm): Shared<TaskManager>, h: HeaderMap, raw: String) -> Response {
    if let Some(r) = gate(&tm, &h, "POST /task-types/register".into()) {
        return r;
    }
    let b = match body_of(&raw)
        .and_then(|b| required(&b, &["name", "version", "param_schema"]).map(|()| b))
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (Some(name), Some(_)) = (b["name"].as_str(), b["param_schema"].get("type")) else {
        return err(400, "param_schema must be a JSON schema with a type");
    };
    let existed = tm.lock().types.iter().any(|t| t.1 == name);
    let id = tm.add_type(name);
    tm.lock().registered.push(name.to_string());
    if existed {
        ok(json!({"id": id, "name": name, "version": b["version"], "updated": true}))
    } else {
        ok(json!({"id": id.to_string(), "name": name, "version": b["version"], "created": true}))
    }
}

async fn create(Shared(tm): Shared<TaskManager>, h: HeaderMap, raw: String) -> Response {
    if let Some(r) = gate(&tm, &h, "POST /tasks".into()) {
        return r;
    }
    let b = match body_of(&raw).and_then(|b| required(&b, &["type", "params"]).map(|()| b)) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (Some(name), Some(params)) = (b["type"].as_str(), b["params"].as_object()) else {
        return invalid(&["Task parameters are required"]);
    };
    if params.is_empty() {
        return invalid(&["Task parameters are required"]);
    }
    let text = Value::Object(params.clone()).to_string();
    let mut s = tm.lock();
    if !s.types.iter().any(|t| t.1 == name) {
        return err(404, "Task type not found");
    }
    // Deduplication: the same type and the same JSON text, whatever the task's state.
    if let Some(t) = s
        .tasks
        .iter()
        .find(|t| t.type_name == name && t.params == text)
    {
        return ok(
            json!({"id": t.id, "status": t.status.as_str(), "deduplicated": true,
                         "message": "Task already exists (deduplicated)"}),
        );
    }
    let id = s.insert(name, text);
    ok(
        json!({"id": id.to_string(), "type": name, "status": "pending", "dedupe_key": format!("{id:064x}"),
              "message": "Task created successfully"}),
    )
}

/// The task a path names, as the handlers look it up (`WHERE id = ?`: a non-number finds nothing).
fn find<'a>(tasks: &'a mut [Task], id: &str) -> Option<&'a mut Task> {
    let id: u64 = id.trim().parse().ok()?;
    tasks.iter_mut().find(|t| t.id == id)
}

/// The claim checks `complete` and `progress` share: gone 404, not claimed 400, someone else's 403.
fn holder_check(t: Option<&Task>, worker: &str) -> Result<(), (u16, &'static str)> {
    let Some(t) = t else {
        return Err((404, "Task not found"));
    };
    if t.status != State::Claimed {
        return Err((400, "Task is not in claimed state"));
    }
    if t.claimed_by.as_deref() != Some(worker) {
        return Err((403, "Task is claimed by another worker"));
    }
    Ok(())
}

async fn complete(
    Shared(tm): Shared<TaskManager>,
    h: HeaderMap,
    Path(id): Path<String>,
    raw: String,
) -> Response {
    if let Some(r) = gate(&tm, &h, format!("POST /tasks/{id}/complete")) {
        return r;
    }
    let b = match body_of(&raw) {
        Ok(b) => b,
        Err(r) => return r,
    };
    // `isset`: present and not null.
    for f in ["worker_id", "success"] {
        if b.get(f).is_none_or(Value::is_null) {
            return err(400, &format!("Missing required field: {f}"));
        }
    }
    let worker = b["worker_id"].as_str().unwrap_or("").trim().to_string();
    let mut s = tm.lock();
    let t = find(&mut s.tasks, &id);
    if let Err((code, msg)) = holder_check(t.as_deref(), &worker) {
        s.refused_completes.push(code);
        return err(code, msg);
    }
    let Some(t) = find(&mut s.tasks, &id) else {
        return err(404, "Task not found");
    };
    let success = match &b["success"] {
        Value::Bool(v) => *v,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(v) => !v.is_empty() && v != "0",
        _ => true,
    };
    t.completions.push(worker);
    t.completed_at = Some(now_text());
    // `$result ? json_encode($result) : null`: an empty object is falsy in PHP.
    t.result = b
        .get("result")
        .filter(|r| !(r.is_null() || r.as_object().is_some_and(|m| m.is_empty())))
        .cloned();
    // PHP puts an array into the text column as "Array".
    t.error_message = match b.get("error") {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) => Some(e.clone()),
        Some(Value::Array(_) | Value::Object(_)) => Some("Array".into()),
        Some(other) => Some(other.to_string()),
    };
    let status = if success {
        t.status = State::Completed;
        "completed"
    } else if t.attempts < MAX_ATTEMPTS {
        t.status = State::Pending;
        t.claimed_by = None;
        t.claimed_at = None;
        t.claimed_at_text = None;
        "pending (retry)"
    } else {
        t.status = State::Failed;
        "failed"
    };
    ok(json!({"id": id, "status": status, "message": "Task completed"}))
}

async fn progress(
    Shared(tm): Shared<TaskManager>,
    h: HeaderMap,
    Path(id): Path<String>,
    raw: String,
) -> Response {
    if let Some(r) = gate(&tm, &h, format!("POST /tasks/{id}/progress")) {
        return r;
    }
    let b = match body_of(&raw).and_then(|b| required(&b, &["worker_id", "progress"]).map(|()| b)) {
        Ok(b) => b,
        Err(r) => return r,
    };
    // The endpoint's validation: an integer (not 50.5, not "70") in 0..=100.
    let Some(value) = b["progress"].as_i64().filter(|p| (0..=100).contains(p)) else {
        return invalid(&["Progress must be between 0 and 100"]);
    };
    let worker = b["worker_id"].as_str().unwrap_or("").trim().to_string();
    let mut s = tm.lock();
    let t = find(&mut s.tasks, &id);
    if let Err((code, msg)) = holder_check(t.as_deref(), &worker) {
        return err(code, msg);
    }
    let Some(t) = find(&mut s.tasks, &id) else {
        return err(404, "Task not found");
    };
    t.progress_value = value;
    t.progress
        .push((value, b["message"].as_str().map(|m| m.trim().to_string())));
    ok(json!({"id": id, "progress": value, "message": "Task progress updated successfully"}))
}

async fn show(Shared(tm): Shared<TaskManager>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = gate(&tm, &h, format!("GET /tasks/{id}")) {
        return r;
    }
    let mut s = tm.lock();
    let items: Vec<Value> = find(&mut s.tasks, &id)
        .map(|t| {
            json!({
                "id": t.id, "type": t.type_name, "status": t.status.as_str(),
                "params": serde_json::from_str::<Value>(&t.params).unwrap_or(Value::Null),
                "result": t.result, "error_message": t.error_message, "priority": 0,
                "progress": t.progress_value, "attempts": t.attempts, "claimed_by": t.claimed_by,
                "claimed_at": t.claimed_at_text, "completed_at": t.completed_at, "created_at": t.created_at,
            })
        })
        .into_iter()
        .collect();
    ok(json!({"items": items, "count": items.len()}))
}
