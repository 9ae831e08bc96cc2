//! Settling: the final outcome goes to `POST /tasks/{id}/complete` (after any progress still pending for
//! the task), and the answer is read as the service means it. A claim that is gone is final, never
//! retried: 403 (another worker holds it), 400 "Task is not in claimed state" (completed already, or back
//! to pending after the claim timeout) and 404 (the task was deleted) each drop the outcome and free the
//! slot. Only 5xx and connection errors are worth retrying.

use super::HttpSource;
use super::client::{Answer, urlencode};
use crate::{AdapterError, Lease, ResultDocument, Settled};
use serde_json::{Value, json};

/// The `error` string the service wants: a readable message, never an object (it would store "Array").
pub(super) fn error_string(doc: &ResultDocument) -> String {
    match &doc.error {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(m)) => {
            let msg = m.get("message").and_then(Value::as_str).unwrap_or("failed");
            match m.get("outcome").and_then(Value::as_str) {
                Some(o) => format!("{msg} ({o}, {} attempts)", doc.attempts),
                None => msg.to_string(),
            }
        }
        Some(other) => other.to_string(),
        None => "failed".into(),
    }
}

fn body_of(host_id: &str, doc: &ResultDocument) -> Value {
    let mut body = json!({"worker_id": host_id, "success": doc.succeeded()});
    if doc.succeeded() {
        body["result"] = match &doc.result {
            Some(Value::Object(m)) => Value::Object(m.clone()),
            Some(other) => json!({"value": other}),
            None => json!({}),
        };
    } else {
        body["error"] = Value::String(error_string(doc));
    }
    body
}

/// What a complete's answer means for the outcome. A failure the service puts back itself answers
/// `data.status` "pending (retry)" (section 4a): the task is not dead.
fn read_answer(task_id: &str, a: &Answer) -> Result<Settled, AdapterError> {
    let lost = |why: &str| {
        tracing::warn!(task_id, status = a.status, error = %a.error_text(), "complete refused: {why}");
        AdapterError::LeaseLost {
            id: task_id.to_string(),
        }
    };
    match a.status {
        200..=299 => Ok(
            match a
                .data()
                .and_then(|d| d.get("status"))
                .and_then(Value::as_str)
            {
                Some(s) if s.starts_with("pending") => Settled::RerunByTaskManager,
                _ => Settled::Recorded,
            },
        ),
        403 => Err(lost("another worker holds the claim now")),
        400 if a.error_text().contains("not in claimed state") => Err(lost(
            "the task is no longer claimed (an earlier complete was accepted, or the claim timed out and it went back to pending)",
        )),
        404 => Err(AdapterError::Refused {
            id: task_id.to_string(),
            reason: format!(
                "the TaskManager no longer has the task (404: {}); was it deleted?",
                a.error_text()
            ),
        }),
        408 | 500..=599 => Err(AdapterError::Unavailable(format!(
            "complete of task {task_id} answered HTTP {}: {}",
            a.status,
            a.error_text()
        ))),
        s => Err(AdapterError::Refused {
            id: task_id.to_string(),
            reason: format!("complete answered HTTP {s}: {}", a.error_text()),
        }),
    }
}

impl HttpSource {
    pub(super) async fn complete(
        &self,
        lease: &Lease,
        doc: &ResultDocument,
    ) -> Result<Settled, AdapterError> {
        let id = &lease.task_id;
        // The newest progress first, and none of this task's progress in flight during the complete.
        let (_gate, unsent) = self.throttle.finish(id).await;
        if let Some(r) = unsent {
            super::progress::send(&self.api, id, &r).await;
        }
        let path = format!("/tasks/{}/complete", urlencode(id));
        let a = self
            .api
            .call(
                reqwest::Method::POST,
                &path,
                Some(&body_of(&self.api.host_id, doc)),
            )
            .await?;
        read_answer(id, &a)
    }

    /// There is no "unclaim" in the API: the task returns when the service's claim timeout expires.
    pub(super) async fn hand_back(&self, lease: &Lease) {
        let _ = self.throttle.finish(&lease.task_id).await;
        tracing::info!(task_id = %lease.task_id, "the TaskManager has no unclaim; the task returns after its claim timeout");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, error: &str) -> Answer {
        Answer {
            status,
            body: json!({"success": false, "error": error}),
            json: true,
        }
    }

    #[test]
    fn a_gone_claim_is_final_and_only_server_trouble_is_retried() {
        let lost = |a: &Answer| matches!(read_answer("1", a), Err(AdapterError::LeaseLost { .. }));
        let refused = |a: &Answer| matches!(read_answer("1", a), Err(AdapterError::Refused { .. }));
        let retried = |a: &Answer| matches!(read_answer("1", a), Err(AdapterError::Unavailable(_)));
        assert_eq!(
            read_answer("1", &answer(200, "")).ok(),
            Some(Settled::Recorded)
        );
        let requeued = Answer {
            status: 200,
            body: json!({"success": true, "data": {"id": "1", "status": "pending (retry)"}}),
            json: true,
        };
        assert_eq!(
            read_answer("1", &requeued).ok(),
            Some(Settled::RerunByTaskManager)
        );
        // Whatever else the service puts there is no claim that it reruns the task.
        for data in [
            json!(null),
            json!([1]),
            json!({"status": 7}),
            json!({"status": "completed"}),
        ] {
            let odd = Answer {
                status: 200,
                body: json!({"success": true, "data": data}),
                json: true,
            };
            assert_eq!(
                read_answer("1", &odd).ok(),
                Some(Settled::Recorded),
                "{data}"
            );
        }
        assert!(lost(&answer(403, "Task is claimed by another worker")));
        assert!(lost(&answer(400, "Task is not in claimed state")));
        assert!(refused(&answer(404, "Task not found")));
        assert!(refused(&answer(400, "Missing required field: success")));
        assert!(retried(&answer(500, "Failed to complete task")));
        assert!(retried(&answer(503, "")));
    }
}
