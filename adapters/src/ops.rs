//! Operating the queue (SPEC section 8): cancel a task, list / retry / purge dead letters, read the queue
//! depth, pause and resume a task type. The documents these verbs answer with live here, shared by the
//! CLI, the HTTP endpoints, the status page and the depth gauges.
//!
//! The verbs themselves are methods of [`crate::Queue`]; a task manager that cannot do one of them answers
//! [`OpsError::NotSupported`] (the CLI exits 2).

use crate::AdapterError;
use serde::Serialize;

/// Why an operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// This task manager has no way to do it.
    #[error("{verb} is not supported by this task manager")]
    NotSupported { verb: &'static str },
    #[error("no task with id {id}")]
    NotFound { id: String },
    /// A retry of a task that is not dead.
    #[error("task {id} is not dead (it is {status}): only dead tasks can be retried")]
    NotDead { id: String, status: String },
    /// A cancel of a task that has already finished.
    #[error("task {id} has already finished ({status}); it is left as it is")]
    Finished { id: String, status: String },
    #[error(transparent)]
    Adapter(#[from] AdapterError),
}

impl OpsError {
    pub fn not_supported(verb: &'static str) -> OpsError {
        OpsError::NotSupported { verb }
    }
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cancelled {
    /// The task was queued or scheduled: it is `cancelled` now and will never run.
    Done,
    /// The task is running: its host learns it at its next lease renewal, kills the process group and
    /// records `cancelled` (unless the task's own outcome is recorded first: exactly one wins).
    Requested,
}

/// One dead letter, as `dead list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    pub attempts: u32,
    pub error: Option<String>,
    /// When it was dead-lettered, RFC 3339 UTC (`None` where the task manager does not know).
    pub at: Option<String>,
}

/// Which dead letters a list, retry or purge covers.
#[derive(Debug, Clone, Default)]
pub struct DeadFilter {
    pub task_type: Option<String>,
    /// At most this many (list; newest first).
    pub limit: Option<usize>,
    /// Only those dead-lettered before this instant (ms since the epoch; purge `--older-than`).
    pub before_ms: Option<i64>,
}

impl DeadFilter {
    /// Whether a dead letter of `task_type` dead-lettered at `at_ms` passes the type and age filters.
    pub fn admits(&self, task_type: &str, at_ms: Option<i64>) -> bool {
        self.task_type.as_deref().is_none_or(|t| t == task_type)
            && self
                .before_ms
                .is_none_or(|b| at_ms.is_some_and(|at| at < b))
    }
}

/// The depth of one task type, as `queue --json` and `GET /queue` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct TypeDepth {
    #[serde(rename = "type")]
    pub task_type: String,
    pub queued: u64,
    pub scheduled: u64,
    pub running: u64,
    pub dead: u64,
    pub paused: bool,
    /// Age in seconds of the oldest queued task that is due (`None`: nothing queued).
    pub oldest_seconds: Option<f64>,
}

impl TypeDepth {
    pub fn new(task_type: &str) -> TypeDepth {
        TypeDepth {
            task_type: task_type.to_string(),
            ..TypeDepth::default()
        }
    }
}

/// Which dead letters a retry puts back.
#[derive(Debug, Clone)]
pub enum DeadSelection {
    /// These ids; if one is unknown or not dead, nothing changes.
    Ids(Vec<String>),
    /// Every dead letter (of the filter's type).
    All(DeadFilter),
}

/// The row of `task_type` in `depth`, added (with zeros) if missing.
pub fn row_of<'a>(depth: &'a mut Vec<TypeDepth>, task_type: &str) -> &'a mut TypeDepth {
    let i = match depth.iter().position(|d| d.task_type == task_type) {
        Some(i) => i,
        None => {
            depth.push(TypeDepth::new(task_type));
            depth.len() - 1
        }
    };
    &mut depth[i]
}

/// Adds a row for every type of `known` missing from `depth` and sorts by type, so every type of the
/// config shows (with zeros) beside any other type that has tasks.
pub fn with_known_types(mut depth: Vec<TypeDepth>, known: &[String]) -> Vec<TypeDepth> {
    for t in known {
        if !depth.iter().any(|d| &d.task_type == t) {
            depth.push(TypeDepth::new(t));
        }
    }
    depth.sort_by(|a, b| a.task_type.cmp(&b.task_type));
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_known_types() {
        let f = DeadFilter {
            task_type: Some("A".into()),
            limit: None,
            before_ms: Some(100),
        };
        assert!(f.admits("A", Some(99)));
        assert!(!f.admits("A", Some(100)));
        assert!(!f.admits("A", None));
        assert!(!f.admits("B", Some(1)));
        assert!(DeadFilter::default().admits("B", None));
        let d = with_known_types(vec![TypeDepth::new("z")], &["a".into(), "z".into()]);
        let names: Vec<&str> = d.iter().map(|d| d.task_type.as_str()).collect();
        assert_eq!(names, ["a", "z"]);
    }
}
