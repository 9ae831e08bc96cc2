//! One request to the TaskManager and how its answer is read: the key header, bodies parsed whatever
//! their content type, 401 as an error naming the key, 429 as a pause (its `Retry-After` read by
//! [`retry_after`](super::retry_after)) that every later request honours and that ends at shutdown.

use super::retry_after;
use crate::AdapterError;
use serde_json::Value;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// How much of an unreadable body goes into a log line or an error.
const BODY_START: usize = 200;

/// The connection to one TaskManager.
pub(super) struct Api {
    /// Base URL including `/api`, without a trailing slash.
    pub url: String,
    key: String,
    /// This host start's id: the service's `worker_id` on every claim, complete and progress.
    pub host_id: String,
    http: reqwest::Client,
    /// After a 429, no request before this instant.
    not_before: Mutex<Option<Instant>>,
    /// Used when a 429 carries no readable `Retry-After`.
    fallback_wait: Duration,
    /// Cancelled when the host begins to stop: every wait of the adapter ends then.
    pub shutdown: CancellationToken,
}

/// An answer of the service: the status and the parsed body (whatever its content type said).
pub(super) struct Answer {
    pub status: u16,
    pub body: Value,
    /// Whether the body was JSON at all (an HTML error page or an empty body is not).
    pub json: bool,
}

impl Answer {
    /// The service's `error` text, or the start of whatever the body was.
    pub fn error_text(&self) -> String {
        match self.body.get("error").and_then(Value::as_str) {
            Some(e) => e.to_string(),
            None => body_start(&self.body),
        }
    }

    pub fn data(&self) -> Option<&Value> {
        self.body.get("data").filter(|d| !d.is_null())
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `data.items[0]` of a query endpoint (None for "200 with no items", the service's "not found").
    pub fn first_item(&self) -> Option<&Value> {
        self.data()?.get("items")?.get(0)
    }
}

/// The first [`BODY_START`] characters of a body, for logs.
pub(super) fn body_start(body: &Value) -> String {
    let text = match body {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut start: String = text.chars().take(BODY_START).collect();
    if start.len() < text.len() {
        start.push('…');
    }
    if start.is_empty() {
        "(empty body)".into()
    } else {
        start
    }
}

/// An id as the service sends it: a string or a number.
pub(super) fn id_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A count as the service sends it: a number or a numeric string.
pub(super) fn count_of(v: Option<&Value>) -> Option<u32> {
    let v = v?;
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// Percent-encodes a path segment (task type names contain dots, which are fine, but not spaces).
pub(super) fn urlencode(s: &str) -> String {
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

impl Api {
    pub fn new(
        url: &str,
        key: &str,
        host_id: &str,
        fallback_wait: Duration,
    ) -> Result<Api, AdapterError> {
        // reqwest has no rustls provider of its own here: ring, as every adapter (see the host's tls.rs).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| AdapterError::Backend(format!("cannot build the HTTP client: {e}")))?;
        Ok(Api {
            url: url.trim_end_matches('/').to_string(),
            key: key.to_string(),
            host_id: host_id.to_string(),
            http,
            not_before: Mutex::new(None),
            fallback_wait,
            shutdown: CancellationToken::new(),
        })
    }

    /// Waits out a 429's `Retry-After`, or less if shutdown begins meanwhile.
    async fn wait_turn(&self) {
        let wait = self
            .not_before
            .lock()
            .ok()
            .and_then(|n| *n)
            .map(|t| t.saturating_duration_since(Instant::now()));
        if let Some(w) = wait.filter(|w| !w.is_zero()) {
            tokio::select! {
                _ = tokio::time::sleep(w) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }

    /// One request; `Ok` for every answer but 401 and 429 (which are errors the caller passes on).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, AdapterError> {
        self.wait_turn().await;
        let url = format!("{}{path}", self.url);
        let mut req = self
            .http
            .request(method, &url)
            .header("X-API-Key", &self.key);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            AdapterError::Unavailable(format!("TaskManager at {}: {}", self.url, e.without_url()))
        })?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await.unwrap_or_default();
        // Bodies arrive as text/html too: parse whatever came. serde_json's recursion limit turns a
        // hostile 100k-deep body into a parse error here, not a stack overflow.
        let (body, json) = match serde_json::from_str::<Value>(&text) {
            Ok(v) => (v, true),
            Err(_) => (Value::String(text), false),
        };
        let answer = Answer { status, body, json };
        match status {
            401 => Err(AdapterError::Backend(format!(
                "the TaskManager at {} rejected the API key (401): check task_manager.api_key",
                self.url
            ))),
            429 => {
                let wait = self.pause(retry_after.as_deref(), &answer.body);
                Err(AdapterError::Unavailable(format!(
                    "the TaskManager asked to slow down (429); no request for {} ms",
                    wait.as_millis()
                )))
            }
            _ => Ok(answer),
        }
    }

    /// Like [`Api::call`], but abandoned when shutdown begins (`Ok(None)`): for claims, which must not
    /// hold up a stopping host. A claim the service granted meanwhile returns after its claim timeout,
    /// as a task handed back on shutdown does.
    pub async fn call_until_shutdown(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Answer>, AdapterError> {
        if self.shutdown.is_cancelled() {
            return Ok(None);
        }
        tokio::select! {
            a = self.call(method, path, body) => a.map(Some),
            _ = self.shutdown.cancelled() => Ok(None),
        }
    }

    /// Records a 429: no request before its `Retry-After` (header, else the body's `retry_after`, else
    /// the poll interval), clamped. Returns the wait.
    fn pause(&self, header: Option<&str>, body: &Value) -> Duration {
        let now = SystemTime::now();
        let from_body = || match body.get("retry_after") {
            Some(Value::Number(n)) => retry_after::parse(&n.to_string(), now),
            Some(Value::String(s)) => retry_after::parse(s, now),
            _ => None,
        };
        let wait = header
            .and_then(|h| retry_after::parse(h, now))
            .or_else(from_body)
            .unwrap_or(self.fallback_wait);
        if let Ok(mut n) = self.not_before.lock() {
            *n = Some(Instant::now() + wait);
        }
        wait
    }
}
