//! The documents every adapter moves: the task envelope in, the result document out.

pub use crate::result::{ResultDocument, ResultStatus, TaskState, TaskStatus, Usage};
use crate::text::utf8_problem;
use crate::time::{Stamp, parse_rfc3339};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A task as every task manager carries it: `{"id", "type", "params", "correlation_id"?, "run_at"?,
/// "priority"?, "traceparent"?}`, plus what a retry sent back through the queue carries (`attempts`,
/// `last_error`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    #[serde(default)]
    pub params: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Not started before this instant (RFC 3339 in the JSON); `None`: at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<Stamp>,
    /// Higher runs first, where the task manager orders by it; default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    /// Attempts already made and recorded (a retry that went back to the task manager); 0 for a new task.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub attempts: u32,
    /// The error of the last recorded attempt, kept while a retry waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// A W3C trace context (`00-<trace id>-<parent span id>-<flags>`) the task's spans continue; kept
    /// with the task by every task manager (on AMQP also the message's `traceparent` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// Longest task id or type, in bytes. Ids and types are also free of control characters (NUL, newline,
/// ...): they travel into keys, headers, file names and log lines.
pub const NAME_MAX: usize = 1024;

/// Why `s` cannot be a task's id or type; `None` when it can.
pub fn name_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must be a non-empty string".into());
    }
    if s.len() > NAME_MAX {
        return Some(format!("is {} bytes long (at most {NAME_MAX})", s.len()));
    }
    let (at, c) = s.char_indices().find(|(_, c)| c.is_control())?;
    Some(format!("holds a control character ({:?} at byte {at})", c))
}

/// What can still be read of a message that is not a valid envelope, for its dead letter: its `id`
/// (a string or a number) and `type`, each only when usable as one (see [`name_problem`]).
pub fn salvage(raw: &[u8]) -> (Option<String>, Option<String>) {
    // Read through invalid UTF-8 elsewhere in the message: a usable id or type is valid text itself.
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&String::from_utf8_lossy(raw)) else {
        return (None, None);
    };
    let usable = |s: String| name_problem(&s).is_none().then_some(s);
    let id = match m.get("id") {
        Some(Value::String(s)) => usable(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let task_type = match m.get("type") {
        Some(Value::String(s)) => usable(s.clone()),
        _ => None,
    };
    (id, task_type)
}

/// The `id` and `type` of an envelope object, each checked with [`name_problem`].
fn take_names(m: &mut Map<String, Value>) -> Result<(String, String), EnvelopeError> {
    let id = match m.remove("id") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(EnvelopeError::BadId),
        None => return Err(EnvelopeError::MissingId),
    };
    if let Some(problem) = name_problem(&id) {
        return Err(EnvelopeError::BadName {
            id: None,
            field: "id",
            problem,
        });
    }
    let task_type = match m.remove("type") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(_) => return Err(EnvelopeError::BadType { id }),
        None => return Err(EnvelopeError::MissingType { id }),
    };
    if let Some(problem) = name_problem(&task_type) {
        return Err(EnvelopeError::BadName {
            id: Some(id),
            field: "type",
            problem,
        });
    }
    Ok((id, task_type))
}

/// `run_at`, `priority` and `attempts` of an envelope object (absent or null: none, 0, 0).
fn take_schedule(
    m: &mut Map<String, Value>,
    id: &str,
) -> Result<(Option<Stamp>, i32, u32), EnvelopeError> {
    let bad = |field: &'static str, problem: String| EnvelopeError::BadField {
        id: id.to_string(),
        field,
        problem,
    };
    let run_at = match m.remove("run_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(parse_rfc3339(&s).map_err(|e| bad("run_at", format!("is not RFC 3339: {e}")))?)
        }
        Some(other) => {
            return Err(bad(
                "run_at",
                format!("must be an RFC 3339 date-time string, not {other}"),
            ));
        }
    };
    let priority = match m.remove("priority") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => {
            n.as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .ok_or_else(|| {
                    bad(
                        "priority",
                        format!("must be a whole number (32-bit), not {n}"),
                    )
                })?
        }
        Some(other) => {
            return Err(bad(
                "priority",
                format!("must be a whole number, not {other}"),
            ));
        }
    };
    let attempts = match m.remove("attempts") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|a| u32::try_from(a).ok())
            .ok_or_else(|| bad("attempts", format!("must be a count, not {n}")))?,
        Some(other) => return Err(bad("attempts", format!("must be a count, not {other}"))),
    };
    Ok((run_at, priority, attempts))
}

/// Why a message is not a task envelope (kept in the dead letter as its reason).
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Bytes that are not UTF-8 are never "repaired": the task would run with other text than was sent.
    #[error("message is {0}")]
    NotUtf8(String),
    #[error("message is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("message is not a JSON object")]
    NotObject,
    #[error("missing field `id`")]
    MissingId,
    #[error("field `id` must be a non-empty string")]
    BadId,
    /// An id or type too long or with control characters; `id` is the task's id when it is usable.
    #[error("{}field `{field}` {problem}", id.as_deref().map(|i| format!("task {i}: ")).unwrap_or_default())]
    BadName {
        id: Option<String>,
        field: &'static str,
        problem: String,
    },
    #[error("task {id}: missing field `type`")]
    MissingType { id: String },
    #[error("task {id}: field `type` must be a non-empty string")]
    BadType { id: String },
    #[error("task {id}: field `params` must be an object")]
    BadParams { id: String },
    /// `run_at`, `priority`, `attempts`.
    #[error("task {id}: field `{field}` {problem}")]
    BadField {
        id: String,
        field: &'static str,
        problem: String,
    },
}

impl Envelope {
    /// A new task with no due time, priority 0 and no attempts yet.
    pub fn new(
        id: impl Into<String>,
        task_type: impl Into<String>,
        params: Map<String, Value>,
    ) -> Envelope {
        Envelope {
            id: id.into(),
            task_type: task_type.into(),
            params,
            correlation_id: None,
            run_at: None,
            priority: 0,
            attempts: 0,
            last_error: None,
            traceparent: None,
        }
    }

    /// Refuses, before it is queued, a task that every task manager would dead-letter as malformed: an
    /// id or type that cannot be one (see [`name_problem`]).
    pub fn check(&self) -> Result<(), crate::AdapterError> {
        for (field, value) in [("id", &self.id), ("type", &self.task_type)] {
            if let Some(problem) = name_problem(value) {
                return Err(crate::AdapterError::Invalid(format!(
                    "a task's {field} {problem}"
                )));
            }
        }
        Ok(())
    }

    /// Whether the task is not due yet at `now_ms`.
    pub fn is_scheduled(&self, now_ms: i64) -> bool {
        self.run_at.is_some_and(|t| t.0 > now_ms)
    }

    /// Parses and validates a message body. The error says what is wrong, for the dead letter.
    pub fn parse(raw: &[u8]) -> Result<Envelope, EnvelopeError> {
        if let Some(p) = utf8_problem(raw) {
            return Err(EnvelopeError::NotUtf8(p));
        }
        let v: Value = serde_json::from_slice(raw).map_err(EnvelopeError::NotJson)?;
        Self::from_value(v)
    }

    pub fn from_value(v: Value) -> Result<Envelope, EnvelopeError> {
        let Value::Object(mut m) = v else {
            return Err(EnvelopeError::NotObject);
        };
        let (id, task_type) = take_names(&mut m)?;
        let params = match m.remove("params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(p)) => p,
            Some(_) => return Err(EnvelopeError::BadParams { id }),
        };
        let correlation_id = match m.remove("correlation_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => Some(other.to_string()),
        };
        let (run_at, priority, attempts) = take_schedule(&mut m, &id)?;
        let last_error = match m.remove("last_error") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => Some(other.to_string()),
        };
        let traceparent = match m.remove("traceparent") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                return Err(EnvelopeError::BadField {
                    id,
                    field: "traceparent",
                    problem: format!("must be a W3C traceparent string, not {other}"),
                });
            }
        };
        Ok(Envelope {
            id,
            task_type,
            params,
            correlation_id,
            run_at,
            priority,
            attempts,
            last_error,
            traceparent,
        })
    }
}

#[cfg(test)]
mod tests;
