//! The result side of a task: how it ended ([`ResultDocument`], [`ResultStatus`], [`Usage`]) and where it
//! is ([`TaskState`], [`TaskStatus`]).

use crate::text::{REASON_MAX, cap_owned};
use crate::time::Stamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
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
    /// The result of a task cancelled before it ran (a cancel of a queued task): no attempt, no time.
    pub fn cancelled_unrun(
        id: &str,
        task_type: &str,
        attempts: u32,
        host: &str,
        why: &str,
    ) -> Self {
        let now = crate::rfc3339_ms(crate::now_ms());
        ResultDocument {
            id: id.to_string(),
            task_type: task_type.to_string(),
            status: ResultStatus::Cancelled,
            result: None,
            error: Some(serde_json::json!({"message": why, "outcome": "cancelled"})),
            attempts,
            worker: None,
            host: host.to_string(),
            started_at: now.clone(),
            finished_at: now,
            duration_ms: 0,
            correlation_id: None,
            usage: None,
        }
    }

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
