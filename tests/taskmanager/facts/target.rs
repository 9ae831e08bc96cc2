//! Where the facts are checked (the double, or a real service) and a small client for it.

use crate::server::{self, KEY, TaskManager};
use serde_json::{Value, json};

/// Where the facts are checked: the double (with its knobs) or a real service.
pub(super) struct Target {
    pub url: String,
    pub key: String,
    pub double: Option<TaskManager>,
    pub http: reqwest::Client,
}

/// One answer: status, content type, `Retry-After`, and the body (JSON, or the text as a string).
#[derive(Debug)]
pub(super) struct Answer {
    pub status: u16,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Answer {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

impl Target {
    pub fn new() -> Target {
        workerhost::tls::install_ring();
        let http = reqwest::Client::new();
        match (
            std::env::var("WORKERHOST_TEST_PRISMQ_URL"),
            std::env::var("WORKERHOST_TEST_PRISMQ_KEY"),
        ) {
            (Ok(url), Ok(key)) => Target {
                url: url.trim_end_matches('/').to_string(),
                key,
                double: None,
                http,
            },
            _ => {
                let tm = TaskManager::default();
                Target {
                    url: server::start(tm.clone()),
                    key: KEY.into(),
                    double: Some(tm),
                    http,
                }
            }
        }
    }

    /// The double's knobs, or None (after a notice) against a real service.
    pub fn knobs(&self, what: &str) -> Option<&TaskManager> {
        if self.double.is_none() {
            eprintln!("SKIPPED against a real service: needs the double's {what}");
        }
        self.double.as_ref()
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
        key: &str,
    ) -> Answer {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("X-API-Key", key);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header("content-type").unwrap_or_default();
        let retry_after = header("retry-after");
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            content_type,
            retry_after,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, None, &self.key).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(
            reqwest::Method::POST,
            path,
            Some(&body.to_string()),
            &self.key,
        )
        .await
    }

    /// Registers a task type with a name unique to this run; returns (name, numeric id).
    pub async fn new_type(&self, stem: &str) -> (String, u64) {
        let name = format!("Facts.{stem}.{}", workerhost_adapters::now_ms());
        let r = self
            .post(
                "/task-types/register",
                json!({"name": name, "version": "1.0.0", "param_schema": {"type": "object"}}),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        let got = self.get(&format!("/task-types/{name}")).await;
        (name, number(&got.data()["items"][0]["id"]))
    }

    pub async fn create(&self, type_name: &str, params: Value) -> Answer {
        self.post("/tasks", json!({"type": type_name, "params": params}))
            .await
    }

    pub async fn claim(&self, worker: &str, type_id: u64) -> Answer {
        self.post(
            "/tasks/claim",
            json!({"worker_id": worker, "task_type_id": type_id}),
        )
        .await
    }

    pub async fn complete(&self, id: u64, body: Value) -> Answer {
        self.post(&format!("/tasks/{id}/complete"), body).await
    }

    pub async fn item(&self, id: u64) -> Value {
        let a = self.get(&format!("/tasks/{id}")).await;
        assert_eq!(a.status, 200, "{a:?}");
        a.data()["items"][0].clone()
    }
}

/// An id as either form, for comparing.
pub(super) fn number(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not an id: {v}"))
}

pub(super) fn unique_params() -> Value {
    json!({"n": workerhost_adapters::now_ms(), "r": rand_u32()})
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}
