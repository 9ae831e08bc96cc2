//! The PrismQ TaskManager HTTP API, coded to how the service really answers (SPEC section 4a):
//! bodies may come as `text/html`, ids as strings or numbers, an empty queue is HTTP 500 "There is no
//! active transaction" (or 404), a lost claim is 403 on complete, 429 carries `Retry-After`.
//!
//! The service has no heartbeat and no "unclaim": renewing is a no-op, and a task handed back on
//! shutdown returns when the service's own claim timeout expires.

use crate::{
    AdapterError, ClaimRequest, Consumer, Delivery, Envelope, Lease, Malformed, Queue,
    ResultDocument, Revoked, TaskStatus,
};
mod progress;
mod retry_after;

use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Connection settings, from `task_manager:` in the config.
#[derive(Debug, Clone)]
pub struct Options {
    /// Base URL, including `/api`.
    pub url: String,
    pub api_key: String,
    pub host_id: String,
    pub poll_interval: Duration,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub register_task_types: bool,
    /// Every task type some worker handles; resolved to the service's numeric ids.
    pub task_types: Vec<String>,
}

impl Options {
    /// Reads the adapter's keys from `task_manager:` (typed JSON; seconds as numbers).
    pub fn from_settings(
        url: String,
        host_id: String,
        settings: &Map<String, Value>,
        task_types: Vec<String>,
    ) -> Options {
        let s = |k: &str| settings.get(k).and_then(Value::as_str).map(str::to_string);
        Options {
            url: url.trim_end_matches('/').to_string(),
            api_key: s("api_key").unwrap_or_default(),
            host_id,
            poll_interval: settings
                .get("poll_interval")
                .and_then(Value::as_f64)
                .filter(|v| *v > 0.0)
                .map(Duration::from_secs_f64)
                .unwrap_or(Duration::from_secs(5)),
            sort_by: s("claim_sort_by"),
            sort_order: s("claim_sort_order"),
            register_task_types: settings
                .get("register_task_types")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            task_types,
        }
    }
}

pub struct HttpSource {
    opts: Options,
    client: reqwest::Client,
    /// Task type name → the service's id; types that failed to resolve are retried on later claims.
    type_ids: Mutex<HashMap<String, String>>,
    /// After a 429, no request before this instant.
    not_before: Mutex<Option<Instant>>,
    /// Rotates the first type tried, so claims spread over the types.
    rotate: Mutex<usize>,
}

/// An answer of the service: the status and the parsed body (whatever its content type said).
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<Duration>,
}

impl Answer {
    fn error_text(&self) -> String {
        self.body
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| self.body.to_string())
    }

    fn data(&self) -> Option<&Value> {
        self.body.get("data").filter(|d| !d.is_null())
    }

    /// "Nothing to do": the 500 "There is no active transaction" quirk, a 404, or a success without a task.
    fn is_empty_queue(&self) -> bool {
        self.status == 404
            || (self.status == 500 && self.error_text().contains("no active transaction"))
    }
}

/// An id as the service sends it: a string or a number.
fn id_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl HttpSource {
    pub async fn connect(opts: Options) -> Result<HttpSource, AdapterError> {
        if opts.api_key.is_empty() {
            return Err(AdapterError::Invalid(
                "task_manager.api_key is empty: the TaskManager API needs a key".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| AdapterError::Backend(format!("cannot build the HTTP client: {e}")))?;
        let source = HttpSource {
            opts,
            client,
            type_ids: Mutex::new(HashMap::new()),
            not_before: Mutex::new(None),
            rotate: Mutex::new(0),
        };
        if let Err(e) = source.resolve_types().await {
            // A service that is down at start is not fatal: claims retry and /health shows it.
            tracing::warn!(error = %e, "cannot resolve task types yet");
        }
        Ok(source)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, AdapterError> {
        let wait = self
            .not_before
            .lock()
            .ok()
            .and_then(|n| *n)
            .map(|t| t.saturating_duration_since(Instant::now()));
        if let Some(w) = wait.filter(|w| !w.is_zero()) {
            tokio::time::sleep(w).await;
        }
        let url = format!("{}{path}", self.opts.url);
        let mut req = self
            .client
            .request(method, &url)
            .header("X-API-Key", &self.opts.api_key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            AdapterError::Unavailable(format!(
                "TaskManager at {}: {}",
                self.opts.url,
                e.without_url()
            ))
        })?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(Duration::from_secs_f64);
        let text = resp.text().await.unwrap_or_default();
        // Bodies arrive as text/html too: parse whatever came.
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let answer = Answer {
            status,
            body,
            retry_after,
        };
        match status {
            401 => Err(AdapterError::Backend(format!(
                "the TaskManager at {} rejected the API key (401): check task_manager.api_key",
                self.opts.url
            ))),
            429 => {
                let d = answer.retry_after.unwrap_or(self.opts.poll_interval);
                if let Ok(mut n) = self.not_before.lock() {
                    *n = Some(Instant::now() + d);
                }
                Err(AdapterError::Unavailable(format!(
                    "the TaskManager asked to slow down (429); retrying after {} ms",
                    d.as_millis()
                )))
            }
            _ => Ok(answer),
        }
    }

    /// Resolves every task type to its id, registering missing ones when allowed. Returns the types
    /// that could not be resolved.
    pub async fn resolve_types(&self) -> Result<Vec<String>, AdapterError> {
        let mut unresolved = Vec::new();
        for name in &self.opts.task_types {
            if self
                .type_ids
                .lock()
                .map(|m| m.contains_key(name))
                .unwrap_or(false)
            {
                continue;
            }
            match self.resolve_type(name).await? {
                Some(id) => {
                    if let Ok(mut m) = self.type_ids.lock() {
                        m.insert(name.clone(), id);
                    }
                }
                None => {
                    tracing::warn!(task_type = %name, "task type is unknown to the TaskManager and could not be registered");
                    unresolved.push(name.clone());
                }
            }
        }
        Ok(unresolved)
    }

    async fn resolve_type(&self, name: &str) -> Result<Option<String>, AdapterError> {
        let path = format!("/task-types/{}", urlencode(name));
        let found = |a: &Answer| {
            id_of(
                a.data()
                    .and_then(|d| d.get("items"))
                    .and_then(|i| i.get(0))
                    .and_then(|t| t.get("id")),
            )
        };
        let a = self.call(reqwest::Method::GET, &path, None).await?;
        if let Some(id) = found(&a) {
            return Ok(Some(id));
        }
        if !self.opts.register_task_types {
            return Ok(None);
        }
        let reg = json!({"name": name, "version": "1.0.0", "param_schema": {"type": "object"}});
        let r = self
            .call(reqwest::Method::POST, "/task-types/register", Some(reg))
            .await?;
        if !(200..300).contains(&r.status) {
            tracing::warn!(task_type = %name, status = r.status, error = %r.error_text(), "registering the task type failed");
            return Ok(None);
        }
        tracing::info!(task_type = %name, "registered the task type with the TaskManager");
        let a = self.call(reqwest::Method::GET, &path, None).await?;
        Ok(found(&a).or_else(|| id_of(r.data().and_then(|d| d.get("id")))))
    }

    /// One claim for one type id: Some(delivery), or None when its queue is empty.
    async fn claim_one(
        &self,
        type_name: &str,
        type_id: &str,
    ) -> Result<Option<Delivery>, AdapterError> {
        let mut body = json!({"worker_id": self.opts.host_id, "task_type_id": type_id.parse::<i64>().map(Value::from).unwrap_or(Value::from(type_id))});
        if let Some(s) = &self.opts.sort_by {
            body["sort_by"] = json!(s);
        }
        if let Some(s) = &self.opts.sort_order {
            body["sort_order"] = json!(s);
        }
        let a = self
            .call(reqwest::Method::POST, "/tasks/claim", Some(body))
            .await?;
        if a.is_empty_queue() {
            return Ok(None);
        }
        if !(200..300).contains(&a.status) {
            return Err(AdapterError::Unavailable(format!(
                "claim answered HTTP {}: {}",
                a.status,
                a.error_text()
            )));
        }
        let Some(task) = a.data().filter(|d| d.is_object()) else {
            return Ok(None);
        };
        let Some(id) = id_of(task.get("id")) else {
            return Ok(None);
        };
        let deliveries = task
            .get("attempts")
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .map(|n| n as u32)
            .unwrap_or(0)
            .max(1);
        let raw = task.to_string();
        let params = match task.get("params") {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            // Some deployments store params as a JSON string.
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(m)) => Ok(m),
                _ => Err("params is a string that is not a JSON object".to_string()),
            },
            Some(_) => Err("params is not an object".to_string()),
        };
        let task_type = task
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .unwrap_or(type_name)
            .to_string();
        let envelope = params
            .map(|params| Envelope::new(id.clone(), task_type, params))
            .map_err(|reason| Malformed {
                raw,
                reason: format!("task {id}: {reason}"),
            });
        Ok(Some(Delivery {
            lease: Lease {
                task_id: id,
                receipt: String::new(),
            },
            envelope,
            deliveries,
        }))
    }
}

/// Percent-encodes a path segment (task type names contain dots, which are fine, but not spaces).
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The `error` string the service wants: a readable message, never an object.
fn error_string(doc: &ResultDocument) -> String {
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

impl Consumer for HttpSource {
    fn kind(&self) -> &'static str {
        "http"
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Delivery>, AdapterError> {
        let ids: HashMap<String, String> =
            self.type_ids.lock().map(|m| m.clone()).unwrap_or_default();
        if ids.len() < self.opts.task_types.len() {
            self.resolve_types().await?;
        }
        let ids: HashMap<String, String> =
            self.type_ids.lock().map(|m| m.clone()).unwrap_or_default();
        let start = self
            .rotate
            .lock()
            .map(|mut r| {
                *r = r.wrapping_add(1);
                *r
            })
            .unwrap_or(0);
        let mut out = Vec::new();
        for slot in &req.slots {
            let types: Vec<&String> = slot.types.iter().filter(|t| ids.contains_key(*t)).collect();
            if types.is_empty() {
                continue;
            }
            let mut empty = vec![false; types.len()];
            let mut got = 0;
            let mut i = start;
            // Round-robin over the slot's types until it is full or every type is empty.
            while got < slot.max && out.len() < req.total() && empty.iter().any(|e| !e) {
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

    async fn renew(&self, _leases: &[Lease]) -> Result<Vec<Revoked>, AdapterError> {
        // The service has no heartbeat: a claim lasts its claim timeout (see `workerhost check`).
        Ok(Vec::new())
    }

    async fn settle(&self, lease: &Lease, doc: &ResultDocument) -> Result<(), AdapterError> {
        let mut body = json!({"worker_id": self.opts.host_id, "success": doc.succeeded()});
        if doc.succeeded() {
            body["result"] = match &doc.result {
                Some(Value::Object(m)) => Value::Object(m.clone()),
                Some(other) => json!({"value": other}),
                None => json!({}),
            };
        } else {
            body["error"] = Value::String(error_string(doc));
        }
        let path = format!("/tasks/{}/complete", urlencode(&lease.task_id));
        let a = self.call(reqwest::Method::POST, &path, Some(body)).await?;
        match a.status {
            200..=299 => Ok(()),
            403 => Err(AdapterError::LeaseLost {
                id: lease.task_id.clone(),
            }),
            s if s >= 500 => Err(AdapterError::Unavailable(format!(
                "complete answered HTTP {s}: {}",
                a.error_text()
            ))),
            s => Err(AdapterError::Backend(format!(
                "complete of task {} answered HTTP {s}: {}",
                lease.task_id,
                a.error_text()
            ))),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), AdapterError> {
        // No unclaim in the API: the task returns when the service's claim timeout expires.
        tracing::info!(task_id = %lease.task_id, "the TaskManager has no unclaim; the task returns after its claim timeout");
        Ok(())
    }

    async fn ping(&self) -> Result<(), AdapterError> {
        let health = self.call(reqwest::Method::GET, "/health", None).await?;
        if health.status >= 500 {
            return Err(AdapterError::Unavailable(format!(
                "GET /health answered HTTP {}",
                health.status
            )));
        }
        // /health needs no key: resolving the types proves the key (401 is an error naming it).
        let unresolved = self.resolve_types().await?;
        if !unresolved.is_empty() {
            return Err(AdapterError::Backend(format!(
                "task types unknown to the TaskManager: {} (register_task_types is {})",
                unresolved.join(", "),
                self.opts.register_task_types
            )));
        }
        Ok(())
    }

    fn idle_wait(&self) -> Duration {
        // With jitter, so many hosts do not poll in lockstep.
        self.opts
            .poll_interval
            .mul_f64(0.75 + rand_fraction() * 0.5)
    }

    fn wants_progress(&self) -> bool {
        true
    }

    async fn progress(
        &self,
        task_id: &str,
        percent: f64,
        message: Option<&str>,
    ) -> Result<(), AdapterError> {
        let mut body = json!({"worker_id": self.opts.host_id, "progress": percent.clamp(0.0, 100.0).round() as i64});
        if let Some(m) = message {
            body["message"] = json!(m);
        }
        let a = self
            .call(
                reqwest::Method::POST,
                &format!("/tasks/{}/progress", urlencode(task_id)),
                Some(body),
            )
            .await?;
        if (200..300).contains(&a.status) {
            Ok(())
        } else {
            Err(AdapterError::Backend(format!(
                "progress answered HTTP {}: {}",
                a.status,
                a.error_text()
            )))
        }
    }
}

impl Queue for HttpSource {
    async fn submit(&self, envelope: &Envelope) -> Result<(), AdapterError> {
        self.enqueue(envelope).await.map(|_| ())
    }

    async fn enqueue(&self, envelope: &Envelope) -> Result<String, AdapterError> {
        if envelope.params.is_empty() {
            return Err(AdapterError::Invalid(
                "the TaskManager requires non-empty params (a JSON object with at least one key)"
                    .into(),
            ));
        }
        let body = json!({"type": envelope.task_type, "params": envelope.params});
        let a = self
            .call(reqwest::Method::POST, "/tasks", Some(body))
            .await?;
        if !(200..300).contains(&a.status) {
            return Err(AdapterError::Backend(format!(
                "creating the task answered HTTP {}: {}",
                a.status,
                a.error_text()
            )));
        }
        id_of(a.data().and_then(|d| {
            d.get("id").or_else(|| {
                d.get("items")
                    .and_then(|i| i.get(0))
                    .and_then(|t| t.get("id"))
            })
        }))
        .ok_or_else(|| {
            AdapterError::Backend(format!(
                "the TaskManager created the task but sent no id: {}",
                a.body
            ))
        })
    }

    async fn status(&self, id: &str) -> Result<Option<TaskStatus>, AdapterError> {
        let a = self
            .call(
                reqwest::Method::GET,
                &format!("/tasks/{}", urlencode(id)),
                None,
            )
            .await?;
        if a.status == 404 {
            return Ok(None);
        }
        let Some(item) = a
            .data()
            .and_then(|d| d.get("items"))
            .and_then(|i| i.get(0))
            .or_else(|| a.data())
        else {
            return Ok(None);
        };
        let text = |k: &str| {
            item.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let status = match text("status").as_str() {
            "pending" => "queued",
            "claimed" => "running",
            "completed" => "succeeded",
            "failed" => "dead",
            other => other,
        }
        .to_string();
        let attempts = item
            .get("attempts")
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .unwrap_or(0) as u32;
        let settled = status == "succeeded" || status == "dead";
        Ok(Some(TaskStatus {
            id: id_of(item.get("id")).unwrap_or_else(|| id.to_string()),
            task_type: text("type"),
            result: settled.then(|| ResultDocument {
                id: id.to_string(),
                task_type: text("type"),
                status: status.clone(),
                result: item.get("result").filter(|v| !v.is_null()).cloned(),
                error: item.get("error").filter(|v| !v.is_null()).cloned(),
                attempts,
                worker: item
                    .get("claimed_by")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                host: String::new(),
                started_at: text("claimed_at"),
                finished_at: text("completed_at"),
                duration_ms: 0,
                correlation_id: None,
                usage: None,
            }),
            status,
            deliveries: attempts,
            ..TaskStatus::default()
        }))
    }
}

/// A fraction in [0, 1) from the clock, enough to spread polls (no rand dependency here).
fn rand_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}
