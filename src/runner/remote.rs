//! Remote workers (`url:` instead of a process): the host POSTs the task document and
//! [`classify::of_http`] reads the answer (2xx with a result document is the result, 4xx is
//! non-retriable, 5xx or a connection error is retriable); the worker's `timeout` holds.

use super::{Attempt, Job, Outcome, classify};
use std::time::Instant;
use workerhost_sdk::ErrorField;

/// One remote worker's endpoint, on an HTTP client (connection pool) shared by all remote workers.
#[derive(Debug, Clone)]
pub struct RemoteRunner {
    client: reqwest::Client,
    url: String,
}

impl RemoteRunner {
    pub fn new(client: reqwest::Client, url: String) -> RemoteRunner {
        RemoteRunner { client, url }
    }

    pub async fn run(&self, job: Job<'_>) -> Attempt {
        let Job {
            worker: cfg,
            doc,
            kill,
            ..
        } = job;
        let started = Instant::now();
        let call = async {
            let mut req = self
                .client
                .post(&self.url)
                .header("X-Workerhost-Task-Id", &doc.id);
            if let Some(tp) = &doc.traceparent {
                req = req.header("traceparent", tp);
            }
            let resp = req.json(doc).send().await?;
            let status = resp.status();
            let mut body = Vec::new();
            let mut resp = resp;
            while let Some(chunk) = resp.chunk().await? {
                body.extend_from_slice(&chunk);
                if body.len() > cfg.max_output_bytes {
                    return Ok((status, None));
                }
            }
            Ok::<_, reqwest::Error>((status, Some(body)))
        };
        let answer = tokio::select! {
            r = tokio::time::timeout(cfg.timeout, call) => r,
            _ = kill.cancelled() => return Attempt::ended(Outcome::Interrupted, started, String::new(), None),
        };
        let outcome = match answer {
            Err(_) => Outcome::host_timeout(cfg),
            Ok(Err(e)) => Outcome::Failed {
                error: ErrorField::Message(format!(
                    "cannot reach remote worker: {}",
                    e.without_url()
                )),
                retriable: true,
            },
            Ok(Ok((_, None))) => Outcome::ProtocolError {
                reason: format!(
                    "response body exceeded max_output_bytes ({} bytes)",
                    cfg.max_output_bytes
                ),
            },
            Ok(Ok((status, Some(body)))) => classify::of_http(status, &body),
        };
        Attempt::ended(outcome, started, String::new(), None)
    }
}
