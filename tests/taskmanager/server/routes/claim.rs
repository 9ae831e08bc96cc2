//! `POST /tasks/claim` as the service's `task_claim` handler answers, and the hostile answers the double
//! can give instead.

// As in the parent: the helpers return the error answer itself.
#![allow(clippy::result_large_err)]

use super::super::{Hostile, State, Task, TaskManager};
use super::{body_of, err, gate, ok, required};
use axum::extract::State as Shared;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

fn sort_key(t: &Task, by: &str) -> (u64, u64) {
    match by {
        "attempts" => (u64::from(t.attempts), t.id),
        // Every task of the double has priority 0.
        "priority" => (0, t.id),
        _ => (t.id, t.id),
    }
}

pub(super) async fn claim(Shared(tm): Shared<TaskManager>, h: HeaderMap, raw: String) -> Response {
    if let Some(r) = gate(&tm, &h, "POST /tasks/claim".into()) {
        return r;
    }
    let b = match body_of(&raw)
        .and_then(|b| required(&b, &["worker_id", "task_type_id"]).map(|()| b))
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    // PHP's intval: numbers and numeric strings.
    let type_id = b["task_type_id"]
        .as_u64()
        .or_else(|| {
            b["task_type_id"]
                .as_str()
                .and_then(|s| s.trim().parse().ok())
        })
        .unwrap_or(0);
    if type_id == 0 {
        return err(400, "task_type_id must be a positive integer");
    }
    let sort_by = b["sort_by"].as_str().unwrap_or("created_at").to_string();
    if !["created_at", "priority", "id", "attempts"].contains(&sort_by.as_str()) {
        return err(
            400,
            "Invalid sort_by field. Allowed values: created_at, priority, id, attempts",
        );
    }
    let desc = match b["sort_order"]
        .as_str()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("ASC") => false,
        Some("DESC") => true,
        Some(_) => return err(400, "Invalid sort_order. Allowed values: ASC, DESC"),
    };
    let worker = b["worker_id"].as_str().unwrap_or("").trim().to_string();
    // The answer is decided under the lock; an empty one is then held `empty_claim_delay`.
    let delay = {
        let mut s = tm.lock();
        let timeout = s.claim_timeout();
        let hostile = s.hostile.front().cloned();
        let mut candidates: Vec<&mut Task> = s
            .tasks
            .iter_mut()
            .filter(|t| {
                t.type_id == type_id
                    && (t.status == State::Pending
                        || (t.status == State::Claimed
                            && t.claimed_at.is_some_and(|c| c.elapsed() > timeout)))
            })
            .collect();
        candidates.sort_by_key(|t| sort_key(t, &sort_by));
        if desc {
            candidates.reverse();
        }
        if let Some(t) = candidates.into_iter().next() {
            t.claim(&worker);
            let params: Value = serde_json::from_str(&t.params).unwrap_or(Value::Null);
            let data = json!({"id": t.id, "type": t.type_name, "params": params, "attempts": t.attempts,
                              "priority": 0, "message": "Task claimed successfully"});
            let id = t.id;
            if hostile.is_some() {
                s.hostile.pop_front();
            }
            return match hostile {
                None => ok(data),
                Some(hostile) => hostile_answer(hostile, id),
            };
        }
        s.empty_claim_delay
    };
    tokio::time::sleep(delay).await;
    // "No available tasks" is thrown inside the transaction, which is then rolled back twice: the second
    // rollback's PDOException is what the client sees. An unknown type id takes the same way.
    err(500, "There is no active transaction")
}

fn hostile_answer(h: Hostile, id: u64) -> Response {
    let html =
        |body: String| (StatusCode::OK, [("content-type", "text/html")], body).into_response();
    match h {
        Hostile::Html => html(
            "<html><body>Warning: mysqli::query(): MySQL server has gone away</body></html>".into(),
        ),
        Hostile::Empty => html(String::new()),
        Hostile::NoId => ok(json!({"type": "T", "params": {"a": 1}, "attempts": 1})),
        Hostile::Deep => {
            let depth = 100_000;
            html(format!(
                "{{\"success\": true, \"data\": {}{}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            ))
        }
        Hostile::BadParams => ok(json!({"id": id, "type": "T", "params": 7, "attempts": 1})),
    }
}
