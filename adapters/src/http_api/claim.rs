//! Claiming: task types resolved to the service's ids (registered when allowed, at the first claim of
//! `run`, never by `check`, `submit` or `status`), claims spread over the types with free capacity, and
//! every claim answer read defensively. An answer that is not a task is logged as an error with the
//! start of its body and counted; when it still names a task id, that task is handed to the host as
//! malformed (it is reported failed, so it does not come back every claim timeout).

use super::HttpSource;
use super::client::{Answer, body_start, count_of, id_of, urlencode};
use crate::{AdapterError, ClaimRequest, Delivery, Envelope, Lease, Malformed};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::Ordering;

/// Task type names and the service's ids for them.
#[derive(Default)]
pub(super) struct Types {
    ids: Mutex<HashMap<String, String>>,
    /// Types already warned about, so an unknown type is logged once, not every poll.
    warned: Mutex<HashSet<String>>,
    /// Rotates the first type tried, so claims spread over the types.
    rotate: Mutex<usize>,
}

impl Types {
    pub fn known(&self) -> HashMap<String, String> {
        self.ids.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn insert(&self, name: &str, id: String) {
        if let Ok(mut m) = self.ids.lock() {
            m.insert(name.to_string(), id);
        }
    }

    /// True the first time per type.
    fn first_warning(&self, name: &str) -> bool {
        self.warned
            .lock()
            .map(|mut w| w.insert(name.to_string()))
            .unwrap_or(true)
    }

    fn next_start(&self) -> usize {
        self.rotate
            .lock()
            .map(|mut r| {
                *r = r.wrapping_add(1);
                *r
            })
            .unwrap_or(0)
    }
}

/// How a type name resolved.
pub(super) enum Resolved {
    Id(String),
    /// The service does not know it (200 with no items), and it was not registered.
    Unknown,
}

/// A 404 where the service answers 200: the request did not reach the API's router.
pub(super) fn missing_api(url: &str, path: &str) -> AdapterError {
    AdapterError::Backend(format!(
        "GET {url}{path} answered 404: is task_manager.url missing /api? (the TaskManager answers an unknown task type with 200 and no items, never 404)"
    ))
}

/// The answer of a `GET` that must succeed: a 404 is a wrong URL ([`missing_api`]), any other failure
/// the service being unavailable.
pub(super) fn get_answered(a: &Answer, url: &str, path: &str) -> Result<(), AdapterError> {
    if a.status == 404 {
        return Err(missing_api(url, path));
    }
    if !a.ok() {
        return Err(AdapterError::Unavailable(format!(
            "GET {path} answered HTTP {}: {}",
            a.status,
            a.error_text()
        )));
    }
    Ok(())
}

impl HttpSource {
    /// Resolves every task type not resolved yet; registers the missing ones when `register` (and the
    /// settings allow it). Returns the names still unresolved.
    pub(super) async fn resolve_types(&self, register: bool) -> Result<Vec<String>, AdapterError> {
        let known = self.types.known();
        let mut unresolved = Vec::new();
        for name in self
            .opts
            .task_types
            .iter()
            .filter(|n| !known.contains_key(*n))
        {
            match self
                .resolve_type(name, register && self.opts.register_task_types)
                .await?
            {
                Resolved::Id(id) => self.types.insert(name, id),
                Resolved::Unknown => unresolved.push(name.clone()),
            }
        }
        Ok(unresolved)
    }

    async fn resolve_type(&self, name: &str, register: bool) -> Result<Resolved, AdapterError> {
        let path = format!("/task-types/{}", urlencode(name));
        let found = |a: &Answer| id_of(a.first_item().and_then(|t| t.get("id")));
        let a = self.api.call(reqwest::Method::GET, &path, None).await?;
        if let Some(id) = found(&a) {
            return Ok(Resolved::Id(id));
        }
        get_answered(&a, &self.api.url, &path)?;
        if !register {
            return Ok(Resolved::Unknown);
        }
        let reg = json!({"name": name, "version": "1.0.0", "param_schema": {"type": "object"}});
        let r = self
            .api
            .call(reqwest::Method::POST, "/task-types/register", Some(&reg))
            .await?;
        if !r.ok() {
            tracing::warn!(task_type = %name, status = r.status, error = %r.error_text(), "registering the task type failed");
            return Ok(Resolved::Unknown);
        }
        tracing::info!(task_type = %name, "registered the task type with the TaskManager");
        let a = self.api.call(reqwest::Method::GET, &path, None).await?;
        Ok(found(&a)
            .or_else(|| id_of(r.data().and_then(|d| d.get("id"))))
            .map_or(Resolved::Unknown, Resolved::Id))
    }

    /// Claims for the request's slots, round-robin over each slot's types until it is full or every
    /// type is empty. Ends early (with what it has) at shutdown.
    pub(super) async fn claim_all(
        &self,
        req: &ClaimRequest,
    ) -> Result<Vec<Delivery>, AdapterError> {
        if self.types.known().len() < self.opts.task_types.len() {
            for name in self.resolve_types(true).await? {
                if self.types.first_warning(&name) {
                    tracing::warn!(task_type = %name, register_task_types = self.opts.register_task_types,
                        "task type is unknown to the TaskManager and was not registered; its tasks are not claimed");
                }
            }
        }
        let ids = self.types.known();
        let start = self.types.next_start();
        let mut out = Vec::new();
        for slot in &req.slots {
            let types: Vec<&String> = slot.types.iter().filter(|t| ids.contains_key(*t)).collect();
            if types.is_empty() {
                continue;
            }
            let mut empty = vec![false; types.len()];
            let mut got = 0;
            let mut i = start;
            while got < slot.max && out.len() < req.total() && empty.iter().any(|e| !e) {
                if self.api.shutdown.is_cancelled() {
                    return Ok(out);
                }
                let k = i % types.len();
                i += 1;
                if empty[k] {
                    continue;
                }
                let name = types[k];
                match self.claim_one(name, &ids[name]).await {
                    Ok(Some(d)) => {
                        got += 1;
                        out.push(d);
                    }
                    Ok(None) => empty[k] = true,
                    Err(e) if out.is_empty() => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "claim failed; keeping the tasks already claimed");
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// One claim for one type id: Some(delivery), or None when its queue is empty (or the answer was
    /// unreadable and named no task).
    async fn claim_one(
        &self,
        type_name: &str,
        type_id: &str,
    ) -> Result<Option<Delivery>, AdapterError> {
        let id_value = type_id
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or(Value::from(type_id));
        let mut body = json!({"worker_id": self.api.host_id, "task_type_id": id_value});
        if let Some(s) = &self.opts.sort_by {
            body["sort_by"] = json!(s);
        }
        if let Some(s) = &self.opts.sort_order {
            body["sort_order"] = json!(s);
        }
        let Some(a) = self
            .api
            .call_until_shutdown(reqwest::Method::POST, "/tasks/claim", Some(&body))
            .await?
        else {
            return Ok(None);
        };
        match read_claim(&a, type_name) {
            Claim::Empty => Ok(None),
            Claim::Task(d) => Ok(Some(*d)),
            Claim::Fault(e) => Err(e),
            Claim::Unreadable { reason, task } => {
                self.unreadable.fetch_add(1, Ordering::Relaxed);
                tracing::error!(task_type = %type_name, status = a.status, body = %body_start(&a.body),
                    "the TaskManager's claim answer is not a task ({reason}); the service counts the task as claimed");
                Ok(task.map(|t| *t))
            }
        }
    }
}

/// What a claim answer says.
enum Claim {
    Empty,
    Task(Box<Delivery>),
    /// An error answer (the service or the way to it is in trouble).
    Fault(AdapterError),
    /// A 2xx that is not a task. `task`: a delivery to report failed, when a task id could be read.
    Unreadable {
        reason: String,
        task: Option<Box<Delivery>>,
    },
}

fn read_claim(a: &Answer, type_name: &str) -> Claim {
    // The 500 "There is no active transaction" quirk (also an unknown type id), or the older docs'
    // 404 as a JSON error. A 404 that is not the service's JSON means the URL is wrong.
    let no_task = (a.status == 500 && a.error_text().contains("no active transaction"))
        || (a.status == 404 && a.json && a.body.get("success") == Some(&Value::Bool(false)));
    if no_task {
        return Claim::Empty;
    }
    if a.status == 404 {
        return Claim::Fault(AdapterError::Backend(
            "POST /tasks/claim answered 404 without the service's JSON: is task_manager.url missing /api?".into(),
        ));
    }
    if !a.ok() {
        return Claim::Fault(AdapterError::Unavailable(format!(
            "claim answered HTTP {}: {}",
            a.status,
            a.error_text()
        )));
    }
    let unreadable = |reason: &str| Claim::Unreadable {
        reason: reason.to_string(),
        task: None,
    };
    if !a.json {
        return unreadable("the body is not JSON");
    }
    let Some(task) = a.data().filter(|d| d.is_object()) else {
        return unreadable("no `data` object");
    };
    let Some(id) = id_of(task.get("id")) else {
        return unreadable("`data` has no task id");
    };
    match envelope_of(task, &id, type_name) {
        Ok(env) => Claim::Task(Box::new(delivery(task, id, Ok(env)))),
        Err(reason) => Claim::Unreadable {
            reason: reason.clone(),
            task: Some(Box::new(delivery(
                task,
                id.clone(),
                Err(Malformed {
                    task_type: task
                        .get("type")
                        .and_then(Value::as_str)
                        .filter(|t| crate::envelope::name_problem(t).is_none())
                        .map(str::to_string),
                    ..Malformed::new(body_start(task).as_bytes(), format!("task {id}: {reason}"))
                }),
            ))),
        },
    }
}

fn delivery(task: &Value, id: String, envelope: Result<Envelope, Malformed>) -> Delivery {
    Delivery {
        lease: Lease {
            task_id: id,
            receipt: String::new(),
        },
        envelope,
        // The service's own count: every claim adds one, re-claims after its claim timeout included.
        deliveries: count_of(task.get("attempts")).unwrap_or(0).max(1),
    }
}

fn envelope_of(task: &Value, id: &str, type_name: &str) -> Result<Envelope, String> {
    let params = match task.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        // Some deployments store params as a JSON string.
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => m,
            _ => return Err("params is a string that is not a JSON object".into()),
        },
        Some(_) => return Err("params is not an object".into()),
    };
    let task_type = match task.get("type") {
        None | Some(Value::Null) => type_name.to_string(),
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        Some(_) => return Err("type is not a task type name".into()),
    };
    for (field, value) in [("id", id), ("type", task_type.as_str())] {
        if let Some(problem) = crate::envelope::name_problem(value) {
            return Err(format!("{field} {problem}"));
        }
    }
    let traceparent = match task.get("traceparent") {
        Some(Value::String(t)) if !t.trim().is_empty() => Some(t.clone()),
        _ => None,
    };
    Ok(Envelope {
        traceparent,
        ..Envelope::new(id, task_type, params)
    })
}

#[cfg(test)]
mod tests;
