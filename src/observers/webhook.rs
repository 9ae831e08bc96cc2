//! The webhook hook: POSTs the event document as JSON. Each try has the hook's `timeout`; a connection
//! error, a timeout, a 5xx, 408 or 429 is retried up to [`RETRIES`] times with doubling waits; any other
//! 4xx is given up at once (the receiver refused the event itself).

use super::Event;
use std::time::Duration;

/// Retries after the first try.
pub const RETRIES: u32 = 3;
/// The first wait between tries; it doubles, capped at [`MAX_BACKOFF`].
pub const BASE_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct WebhookSink {
    client: reqwest::Client,
    url: String,
}

impl WebhookSink {
    pub fn new(url: &str, timeout: Duration) -> Result<WebhookSink, String> {
        let client = crate::tls::client_builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("workerhost/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the webhook client for {url}: {e}"))?;
        Ok(WebhookSink {
            client,
            url: url.to_string(),
        })
    }

    pub async fn deliver(&self, e: &Event) -> Result<(), String> {
        let body = serde_json::to_vec(e).map_err(|err| err.to_string())?;
        let mut wait = BASE_BACKOFF;
        let mut last = String::new();
        for attempt in 0..=RETRIES {
            if attempt > 0 {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_BACKOFF);
            }
            let sent = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    let s = r.status();
                    last = format!("{} answered {s}", self.url);
                    let retry = s.is_server_error() || s.as_u16() == 408 || s.as_u16() == 429;
                    if !retry {
                        return Err(last);
                    }
                }
                Err(err) => last = format!("POST {}: {err}", self.url),
            }
        }
        Err(format!("{last} (gave up after {} tries)", RETRIES + 1))
    }
}
