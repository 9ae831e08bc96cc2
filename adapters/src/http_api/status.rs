//! The queue side: `workerhost submit` (`POST /tasks`) and `workerhost status` (`GET /tasks/{id}`), read
//! as the service answers: an unknown id is 200 with no items (so: no such task), the error is in
//! `error_message`, `claimed_by` is the host that ran it, times are the database's DATETIME text.

use super::HttpSource;
use super::claim::{get_answered, missing_api};
use super::client::{Answer, count_of, id_of, urlencode};
use crate::{AdapterError, Envelope, ResultDocument, ResultStatus, TaskState, TaskStatus};
use serde_json::{Value, json};

impl HttpSource {
    pub(super) async fn create(&self, envelope: &Envelope) -> Result<String, AdapterError> {
        if envelope.params.is_empty() {
            return Err(AdapterError::Invalid(
                "the TaskManager requires non-empty params (a JSON object with at least one key)"
                    .into(),
            ));
        }
        let mut body = json!({"type": envelope.task_type, "params": envelope.params});
        // Kept where the TaskManager keeps extra fields (and handed back with the claimed task).
        if let Some(tp) = &envelope.traceparent {
            body["traceparent"] = json!(tp);
        }
        let a = self
            .api
            .call(reqwest::Method::POST, "/tasks", Some(&body))
            .await?;
        if !a.ok() {
            return Err(create_error(&a, &envelope.task_type));
        }
        let data = a.data();
        let id = id_of(data.and_then(|d| d.get("id"))).ok_or_else(|| {
            AdapterError::Backend(format!(
                "the TaskManager created the task but sent no id: {}",
                super::client::body_start(&a.body)
            ))
        })?;
        if data.and_then(|d| d.get("deduplicated")) == Some(&Value::Bool(true)) {
            let status = data
                .and_then(|d| d.get("status"))
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            tracing::warn!(
                "the TaskManager already had this task (same type and params): id {id}, status {status}; it was not created again"
            );
        }
        Ok(id)
    }

    pub(super) async fn read_status(&self, id: &str) -> Result<Option<TaskStatus>, AdapterError> {
        let path = format!("/tasks/{}", urlencode(id));
        let a = self.api.call(reqwest::Method::GET, &path, None).await?;
        get_answered(&a, &self.api.url, &path)?;
        a.first_item().map(|item| status_of(item, id)).transpose()
    }
}

fn create_error(a: &Answer, task_type: &str) -> AdapterError {
    match a.status {
        404 if a.json => AdapterError::Invalid(format!(
            "the TaskManager does not know task type {task_type:?} (404); `workerhost run` registers the types of its config (register_task_types)"
        )),
        404 => missing_api("", "/tasks (POST)"),
        400 => {
            let details = a
                .body
                .get("details")
                .map(|d| format!(" {d}"))
                .unwrap_or_default();
            AdapterError::Invalid(format!(
                "the TaskManager refused the task: {}{details}",
                a.error_text()
            ))
        }
        s => AdapterError::Backend(format!(
            "creating the task answered HTTP {s}: {}",
            a.error_text()
        )),
    }
}

/// One `GET /tasks/{id}` item as `workerhost status` shows it.
fn status_of(item: &Value, asked: &str) -> Result<TaskStatus, AdapterError> {
    let text = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
    let (status, outcome) = match text("status").as_deref().unwrap_or("") {
        "pending" => (TaskState::Queued, None),
        "claimed" => (TaskState::Running, None),
        "completed" => (TaskState::Succeeded, Some(ResultStatus::Succeeded)),
        "failed" => (TaskState::Dead, Some(ResultStatus::Dead)),
        other => {
            return Err(AdapterError::Backend(format!(
                "task {asked}: the TaskManager answered an unknown status {other:?}"
            )));
        }
    };
    let attempts = count_of(item.get("attempts")).unwrap_or(0);
    let settled = outcome.is_some();
    let id = id_of(item.get("id")).unwrap_or_else(|| asked.to_string());
    let task_type = text("type").unwrap_or_default();
    let started = text("claimed_at");
    let finished = text("completed_at");
    let duration_ms = match (
        started.as_deref().and_then(datetime_ms),
        finished.as_deref().and_then(datetime_ms),
    ) {
        (Some(s), Some(f)) if f >= s => u64::try_from(f - s).unwrap_or(0),
        _ => 0,
    };
    let result = outcome.map(|outcome| ResultDocument {
        id: id.clone(),
        task_type: task_type.clone(),
        status: outcome,
        // `result` is an object, or the JSON text of one.
        result: match item.get("result") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                Some(serde_json::from_str(s).unwrap_or(Value::String(s.clone())))
            }
            Some(v) => Some(v.clone()),
        },
        error: text("error_message").map(Value::String),
        attempts,
        // The service knows the host (`claimed_by` is its worker_id), not which of its workers ran it.
        worker: None,
        host: text("claimed_by").unwrap_or_default(),
        started_at: started.as_deref().map(iso).unwrap_or_default(),
        finished_at: finished.as_deref().map(iso).unwrap_or_default(),
        duration_ms,
        correlation_id: None,
        usage: None,
    });
    // A failure the service put back to pending: the attempts so far and the last error.
    let waiting = !settled && attempts > 0;
    Ok(TaskStatus {
        id,
        task_type,
        deliveries: attempts,
        result,
        attempts: if waiting { attempts } else { 0 },
        last_error: if waiting { text("error_message") } else { None },
        status,
        ..TaskStatus::default()
    })
}

/// `YYYY-MM-DD HH:MM:SS` (MariaDB's DATETIME text) as ISO 8601 with a `T`. The zone is the database's,
/// which the API does not say, so none is claimed.
fn iso(text: &str) -> String {
    text.trim().replacen(' ', "T", 1)
}

/// Milliseconds of a DATETIME text on its own clock (for durations: both ends share the zone).
fn datetime_ms(text: &str) -> Option<i64> {
    let t = text.trim();
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    if t.len() < 19 {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, min, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || min > 59 || s > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + min) * 60_000 + s * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_give_durations() {
        assert_eq!(datetime_ms("1970-01-01 00:00:01"), Some(1000));
        assert_eq!(datetime_ms("2000-03-01 00:00:00"), Some(951_868_800_000));
        let a = datetime_ms("2025-12-31 23:59:58").expect("a");
        let b = datetime_ms("2026-01-01 00:00:03").expect("b");
        assert_eq!(b - a, 5000);
        assert_eq!(datetime_ms("yesterday"), None);
        assert_eq!(datetime_ms("2025-13-01 00:00:00"), None);
    }

    #[test]
    fn an_item_shows_error_message_host_and_duration() {
        let item = json!({"id": 5, "type": "T", "status": "failed", "attempts": "3", "claimed_by": "host-1",
            "result": null, "error_message": "boom", "claimed_at": "2026-01-01 10:00:00",
            "completed_at": "2026-01-01 10:00:28"});
        let s = status_of(&item, "5").expect("a known status");
        assert_eq!((s.status.as_str(), s.deliveries), ("dead", 3));
        let r = s.result.expect("settled");
        assert_eq!(r.error, Some(json!("boom")));
        assert_eq!(r.host, "host-1");
        assert_eq!(r.worker, None);
        assert_eq!(r.duration_ms, 28_000);
        assert_eq!(r.started_at, "2026-01-01T10:00:00");
        let item = json!({"id": "6", "status": "completed", "result": "{\"a\":1}"});
        assert_eq!(
            status_of(&item, "6")
                .expect("a known status")
                .result
                .and_then(|r| r.result),
            Some(json!({"a": 1}))
        );
    }
}
