//! Remote workers (`url:` instead of a process): the host POSTs the task document and classifies the
//! answer: 2xx with a result document is the result, 4xx is non-retriable, 5xx or a connection error is
//! retriable, and the worker's `timeout` holds.

use super::output::parse_result;
use super::{Attempt, Outcome};
use crate::config::WorkerConfig;
use serde_json::Value;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use workerhost_sdk::TaskDocument;

/// Shares one HTTP client (connection pool) across all remote workers.
#[derive(Debug, Clone, Default)]
pub struct RemoteRunner {
    client: reqwest::Client,
}

/// A response body is read up to this many bytes past `max_output_bytes` before it is refused.
fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    text.trim().to_string()
}

impl RemoteRunner {
    pub async fn run(
        &self,
        cfg: &WorkerConfig,
        url: &str,
        doc: &TaskDocument,
        kill: &CancellationToken,
    ) -> Attempt {
        let started = Instant::now();
        let call = async {
            let resp = self
                .client
                .post(url)
                .header("X-Workerhost-Task-Id", &doc.id)
                .json(doc)
                .send()
                .await?;
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
            Err(_) => Outcome::Timeout { by_host: true },
            Ok(Err(e)) => Outcome::Failed {
                error: Value::String(format!("cannot reach remote worker: {}", e.without_url())),
                retriable: true,
            },
            Ok(Ok((_, None))) => Outcome::ProtocolError {
                reason: format!(
                    "response body exceeded max_output_bytes ({} bytes)",
                    cfg.max_output_bytes
                ),
            },
            Ok(Ok((status, Some(body)))) => classify(status, &body),
        };
        Attempt::ended(outcome, started, String::new(), None)
    }
}

fn classify(status: reqwest::StatusCode, body: &[u8]) -> Outcome {
    let parsed = parse_result(body);
    let error_of = |fallback: String| match &parsed {
        Ok(r) => r
            .error
            .as_ref()
            .and_then(|e| serde_json::to_value(e).ok())
            .unwrap_or(Value::String(fallback)),
        Err(_) => Value::String(fallback),
    };
    if !status.is_success() {
        let fallback = format!("HTTP {status}: {}", preview(body));
        return Outcome::Failed {
            retriable: !status.is_client_error(),
            error: error_of(fallback),
        };
    }
    let error = error_of("success: false without an error".into());
    match parsed {
        Ok(r) if r.success => Outcome::Succeeded {
            result: r.result.unwrap_or(Value::Null),
        },
        Ok(r) => Outcome::Failed {
            retriable: r.is_retriable(),
            error,
        },
        Err(reason) => Outcome::ProtocolError { reason },
    }
}
