//! The `task_manager:` settings of the redis adapter.

use crate::settings::Problem;
use crate::settings::de::{Seconds, Text};
use serde::Deserialize;
use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

pub(super) const DEFAULT_URL: &str = "redis://127.0.0.1:6379/0";
/// `block_ms` above this is lowered: the host does not interrupt a claim to stop.
pub const MAX_BLOCK_MS: u64 = 10_000;

/// `type: redis`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Default `redis://127.0.0.1:6379/0`.
    pub url: Option<Text>,
    /// The stream read (default `workerhost:tasks`); the other keys are named after it.
    pub stream: Text,
    /// The consumer group (default `workerhost`).
    pub group: Text,
    /// Entries idle longer than this are taken over from their (dead) host (default 30 s).
    pub lease_seconds: Seconds,
    /// How long result documents are kept (default one day).
    pub result_ttl_seconds: Seconds,
    /// The longest blocking read when the stream is empty (default 1000; at most [`MAX_BLOCK_MS`]).
    pub block_ms: NonZeroU64,
    /// Default `max_deliveries` of every worker.
    pub max_deliveries: Option<NonZeroU32>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            url: None,
            stream: "workerhost:tasks".into(),
            group: "workerhost".into(),
            lease_seconds: Seconds::secs(30),
            result_ttl_seconds: Seconds::secs(86_400),
            block_ms: NonZeroU64::MIN.saturating_add(999),
            max_deliveries: None,
        }
    }
}

impl Settings {
    /// The URL connected to (`url`, or the local default).
    pub fn url(&self) -> &str {
        crate::settings::de::url_or(self.url.as_ref(), DEFAULT_URL)
    }

    pub fn lease(&self) -> Duration {
        self.lease_seconds.0
    }

    pub fn result_ttl(&self) -> Duration {
        self.result_ttl_seconds.0
    }

    /// `block_ms`, lowered to [`MAX_BLOCK_MS`].
    pub fn block_ms(&self) -> u64 {
        self.block_ms.get().min(MAX_BLOCK_MS)
    }

    /// Checks what the types alone do not; every problem, each naming its field.
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (k, v) in [("stream", &self.stream), ("group", &self.group)] {
            if v.is_empty() {
                out.push(Problem::new(k, "must be a non-empty string"));
            }
        }
        if self.lease_seconds.0.as_secs_f64() >= 1e9 {
            out.push(Problem::new("lease_seconds", "must be below 1e9 seconds"));
        }
        if self.result_ttl_seconds.0.as_secs_f64() >= 1e9 {
            out.push(Problem::new(
                "result_ttl_seconds",
                "must be below 1e9 seconds",
            ));
        }
        out
    }
}
