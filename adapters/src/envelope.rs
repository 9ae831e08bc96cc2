//! The documents every adapter moves: the task envelope in, the result document out.

use crate::text::{REASON_MAX, cap_owned, utf8_problem};
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
        let bad = |field: &'static str, problem: String| EnvelopeError::BadField {
            id: id.clone(),
            field,
            problem,
        };
        let run_at = match m.remove("run_at") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                parse_rfc3339(&s).map_err(|e| bad("run_at", format!("is not RFC 3339: {e}")))?,
            ),
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
                return Err(bad(
                    "traceparent",
                    format!("must be a W3C traceparent string, not {other}"),
                ));
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

/// How a task ended, as its result document says (`status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultStatus {
    Succeeded,
    Dead,
    Cancelled,
}

impl ResultStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Succeeded => "succeeded",
            ResultStatus::Dead => "dead",
            ResultStatus::Cancelled => "cancelled",
        }
    }

    /// The status named `s` (`succeeded`, `dead`, `cancelled`).
    pub fn parse(s: &str) -> Option<ResultStatus> {
        [
            ResultStatus::Succeeded,
            ResultStatus::Dead,
            ResultStatus::Cancelled,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// Where a task is, as `workerhost status` and the task managers that keep states answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    #[default]
    Queued,
    Scheduled,
    Running,
    Succeeded,
    Dead,
    Cancelled,
}

impl TaskState {
    pub const ALL: [TaskState; 6] = [
        TaskState::Queued,
        TaskState::Scheduled,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Dead,
        TaskState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Scheduled => "scheduled",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Dead => "dead",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// The state named `s` (as stored: `queued`, `running`, ...).
    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether the task has its outcome (and so a result document).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Dead | TaskState::Cancelled
        )
    }
}

impl From<ResultStatus> for TaskState {
    fn from(s: ResultStatus) -> TaskState {
        match s {
            ResultStatus::Succeeded => TaskState::Succeeded,
            ResultStatus::Dead => TaskState::Dead,
            ResultStatus::Cancelled => TaskState::Cancelled,
        }
    }
}

macro_rules! shown_as_str {
    ($t:ty) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        /// Compares with the stored text (`state == "running"`).
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}
shown_as_str!(ResultStatus);
shown_as_str!(TaskState);

/// The outcome of a task as it is stored, published or reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultDocument {
    pub id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    pub status: ResultStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    pub host: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// What the last attempt's process used (spawn mode), section 9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// An attempt's resource usage: CPU time (user, system) and peak resident memory of the worker's process
/// and the descendants it waited for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub cpu_user_ms: u64,
    pub cpu_system_ms: u64,
    pub max_rss_kb: u64,
}

impl ResultDocument {
    pub fn succeeded(&self) -> bool {
        self.status == ResultStatus::Succeeded
    }

    /// The short, readable form of `error` (its `message` when it is an object), for dead-letter fields,
    /// columns and the status page: at most [`REASON_MAX`] bytes (the whole error stays in `error`).
    /// `None` without an error.
    pub fn error_message(&self) -> Option<String> {
        let m = match self.error.as_ref()? {
            Value::Object(m) => match m.get("message") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => Value::Object(m.clone()).to_string(),
            },
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Some(cap_owned(m, REASON_MAX))
    }
}

/// What `workerhost status ID` prints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    pub status: TaskState,
    pub deliveries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultDocument>,
    /// When a `scheduled` task is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<Stamp>,
    /// Attempts recorded so far (a retry waiting in the task manager); 0 when none or unknown.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub attempts: u32,
    /// The error of the last recorded attempt, while a retry waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_valid_and_names_what_is_wrong() {
        let e = Envelope::parse(br#"{"id":"1","type":"T","params":{"a":1}}"#).expect("valid");
        assert_eq!(e.task_type, "T");
        assert_eq!(e.params["a"], 1);
        assert!(
            Envelope::parse(b"nope")
                .expect_err("invalid")
                .to_string()
                .contains("not JSON")
        );
        assert!(
            Envelope::parse(br#"{"type":"T"}"#)
                .expect_err("invalid")
                .to_string()
                .contains("missing field `id`")
        );
        assert!(
            Envelope::parse(br#"{"id":"7","params":{}}"#)
                .expect_err("invalid")
                .to_string()
                .contains("task 7: missing field `type`")
        );
        assert!(
            Envelope::parse(br#"{"id":"7","type":"T","params":[1]}"#)
                .expect_err("invalid")
                .to_string()
                .contains("params")
        );
        // ids arrive as numbers from some task managers
        assert_eq!(
            Envelope::parse(br#"{"id":42,"type":"T"}"#)
                .expect("valid")
                .id,
            "42"
        );
    }

    /// Issue 16: ids with a NUL or of 128 KiB were blamed on the worker; invalid UTF-8 was "repaired".
    #[test]
    fn ids_types_and_bytes_that_cannot_be_a_task_are_malformed() {
        let long = "i".repeat(NAME_MAX + 1);
        let cases = [
            (
                format!(r#"{{"id":"{long}","type":"T"}}"#),
                "field `id` is 1025 bytes long (at most 1024)",
            ),
            (
                r#"{"id":"a\u0000b","type":"T"}"#.to_string(),
                "field `id` holds a control character ('\\0' at byte 1)",
            ),
            (
                r#"{"id":"a\nb","type":"T"}"#.to_string(),
                "control character",
            ),
            (
                format!(r#"{{"id":"7","type":"{long}"}}"#),
                "task 7: field `type` is 1025 bytes long",
            ),
            (
                r#"{"id":"7","type":"T\u0007"}"#.to_string(),
                "task 7: field `type` holds a control character",
            ),
        ];
        for (raw, want) in &cases {
            let err = Envelope::parse(raw.as_bytes()).expect_err(want).to_string();
            assert!(err.contains(want), "{err}");
            assert!(err.len() < 200, "the reason does not copy the value: {err}");
        }
        let at_limit = format!(r#"{{"id":"{}","type":"T"}}"#, "i".repeat(NAME_MAX));
        assert_eq!(
            Envelope::parse(at_limit.as_bytes())
                .expect("1024 bytes is fine")
                .id
                .len(),
            NAME_MAX
        );
        // Non-ASCII text is fine; bytes that are not UTF-8 are not.
        assert_eq!(
            Envelope::parse("{\"id\":\"é\",\"type\":\"T\"}".as_bytes())
                .expect("utf-8")
                .id,
            "é"
        );
        let err = Envelope::parse(b"{\"id\":\"1\",\"type\":\"T\",\"params\":{\"s\":\"\xff\xfe\"}}")
            .expect_err("not UTF-8")
            .to_string();
        assert_eq!(err, "message is not UTF-8 (invalid byte at offset 36)");
    }

    #[test]
    fn salvage_reads_a_usable_id_and_type_only() {
        assert_eq!(
            salvage(br#"{"id":"p1","type":"T","params":"a string"}"#),
            (Some("p1".into()), Some("T".into()))
        );
        assert_eq!(salvage(br#"{"id":3}"#), (Some("3".into()), None));
        assert_eq!(salvage(br#"{"id":"a\u0000","type":7}"#), (None, None));
        assert_eq!(salvage(b"not json"), (None, None));
        let m = crate::Malformed::new(
            br#"{"id":"p1","type":"T","params":"x"}"#,
            "r".repeat(10_000),
        );
        assert_eq!(m.task_type.as_deref(), Some("T"));
        assert!(m.reason.len() <= crate::text::REASON_MAX);
        let m = crate::Malformed::new(&vec![b'x'; 100_000], "reason");
        assert!(m.raw.len() <= crate::text::REASON_MAX && m.raw.ends_with("… [cut: 100000 bytes]"));
    }

    #[test]
    fn a_traceparent_is_kept_through_a_round_trip() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let raw = format!(r#"{{"id":"1","type":"T","traceparent":"{tp}"}}"#);
        let e = Envelope::parse(raw.as_bytes()).expect("valid");
        assert_eq!(e.traceparent.as_deref(), Some(tp));
        let back = serde_json::to_value(&e).expect("serializes");
        assert_eq!(back["traceparent"], tp);
        assert_eq!(Envelope::from_value(back).expect("round trip"), e);
        let none = serde_json::to_value(Envelope::new("2", "T", Map::new())).expect("serializes");
        assert!(none.get("traceparent").is_none(), "absent when not set");
        let err =
            Envelope::parse(br#"{"id":"1","type":"T","traceparent":5}"#).expect_err("a number");
        assert!(err.to_string().contains("`traceparent`"), "{err}");
    }

    #[test]
    fn run_at_and_priority_are_validated_by_name() {
        let e = Envelope::parse(
            br#"{"id":"1","type":"T","run_at":"2026-12-01T10:00:00Z","priority":5}"#,
        )
        .expect("valid");
        assert_eq!(e.run_at, Some(Stamp(1_796_119_200_000)));
        assert_eq!(e.priority, 5);
        assert!(e.is_scheduled(0));
        assert!(!e.is_scheduled(1_796_119_200_000));
        let back = serde_json::to_value(&e).expect("serializes");
        assert_eq!(back["run_at"], "2026-12-01T10:00:00.000Z");
        assert_eq!(Envelope::from_value(back).expect("round trip"), e);
        for (raw, field) in [
            (r#"{"id":"1","type":"T","run_at":"soon"}"#, "`run_at`"),
            (r#"{"id":"1","type":"T","run_at":17}"#, "`run_at`"),
            (r#"{"id":"1","type":"T","priority":"high"}"#, "`priority`"),
            (r#"{"id":"1","type":"T","priority":1.5}"#, "`priority`"),
            (
                r#"{"id":"1","type":"T","priority":99999999999}"#,
                "`priority`",
            ),
            (r#"{"id":"1","type":"T","attempts":-1}"#, "`attempts`"),
        ] {
            let err = Envelope::parse(raw.as_bytes()).expect_err(raw).to_string();
            assert!(
                err.contains(field) && err.contains("task 1"),
                "{raw}: {err}"
            );
        }
        // a plain envelope serializes as before: no new fields appear
        let plain = Envelope::new("2", "T", Map::new());
        assert_eq!(
            serde_json::to_string(&plain).expect("serializes"),
            r#"{"id":"2","type":"T","params":{}}"#
        );
    }

    #[test]
    fn error_message_is_the_short_readable_form() {
        let doc = |error: Option<Value>| ResultDocument {
            id: "t".into(),
            task_type: "T".into(),
            status: ResultStatus::Dead,
            result: None,
            error,
            attempts: 1,
            worker: None,
            host: "h".into(),
            started_at: String::new(),
            finished_at: String::new(),
            duration_ms: 0,
            correlation_id: None,
            usage: None,
        };
        let cases = [
            (Some(json!({"type": "X", "message": "boom"})), Some("boom")),
            (Some(json!({"message": 7})), Some("7")),
            (Some(json!({"type": "X"})), Some(r#"{"type":"X"}"#)),
            (Some(json!("plain")), Some("plain")),
            (Some(json!(3)), Some("3")),
            (None, None),
        ];
        let long = doc(Some(json!({"message": "e".repeat(5_000_000)})))
            .error_message()
            .unwrap_or_default();
        assert!(long.len() <= REASON_MAX && long.ends_with("… [cut: 5000000 bytes]"));
        for (error, want) in cases {
            assert_eq!(
                doc(error.clone()).error_message().as_deref(),
                want,
                "{error:?}"
            );
        }
    }
}
