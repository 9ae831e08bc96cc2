//! `workerhost status ID` against Redis: the stored result, else the index and the pending list.

use super::RedisSource;
use super::parse::{self, text};
use crate::{AdapterError, ResultDocument, TaskState, TaskStatus};

impl RedisSource {
    /// See [`crate::Queue::status`] on [`RedisSource`].
    pub(super) async fn lookup(&self, id: &str) -> Result<Option<TaskStatus>, AdapterError> {
        let mut get = redis::cmd("GET");
        get.arg(self.s.keys.result(id));
        if let Some(raw) = text(&self.query(&get).await?) {
            let doc: ResultDocument = serde_json::from_str(&raw).map_err(|e| {
                AdapterError::Backend(format!(
                    "task {id}: stored result is not a result document: {e}"
                ))
            })?;
            return Ok(Some(TaskStatus {
                id: id.to_string(),
                task_type: doc.task_type.clone(),
                status: doc.status.into(),
                deliveries: 0,
                result: Some(doc),
                ..TaskStatus::default()
            }));
        }
        if let Some(env) = self.scheduled(id).await? {
            return Ok(Some(TaskStatus {
                id: id.to_string(),
                task_type: env.task_type,
                status: TaskState::Scheduled,
                run_at: env.run_at,
                attempts: env.attempts,
                last_error: env.last_error,
                ..TaskStatus::default()
            }));
        }
        let mut hget = redis::cmd("HGET");
        hget.arg(&self.s.keys.index).arg(id);
        let Some(entry) = text(&self.query(&hget).await?) else {
            return Ok(None);
        };
        if let Some(parked) = entry.strip_prefix("parked:") {
            // Its type is paused: the entry waits in `<stream>:parked` until `resume`.
            return self.parked_status(id, parked).await;
        }
        self.in_stream(id, &entry).await
    }

    /// A task whose entry `entry` is in the stream: running while some host holds it, else queued.
    async fn in_stream(&self, id: &str, entry: &str) -> Result<Option<TaskStatus>, AdapterError> {
        let Some(fields) = self.entry(&self.s.keys.stream, entry).await? else {
            return Ok(None);
        };
        let fields = Some(fields);
        let mut pending = redis::cmd("XPENDING");
        pending
            .arg(&self.s.keys.stream)
            .arg(&self.s.group)
            .arg(entry)
            .arg(entry)
            .arg(1);
        let pel = match self.query(&pending).await {
            Ok(v) => parse::items(v).into_iter().next().map(parse::items),
            Err(AdapterError::Backend(_)) => None, // no group yet: nobody has read it
            Err(e) => return Err(e),
        };
        let count = pel
            .as_ref()
            .and_then(|p| p.get(3))
            .and_then(text)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let d = parse::delivery(entry, fields, count);
        Ok(Some(TaskStatus {
            id: id.to_string(),
            task_type: d
                .envelope
                .as_ref()
                .map(|e| e.task_type.clone())
                .unwrap_or_default(),
            status: if pel.is_some() {
                TaskState::Running
            } else {
                TaskState::Queued
            },
            deliveries: if pel.is_some() {
                d.deliveries
            } else {
                d.deliveries - 1
            },
            result: None,
            ..TaskStatus::default()
        }))
    }
}
