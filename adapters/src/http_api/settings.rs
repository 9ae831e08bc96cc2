//! The `task_manager:` settings of the http adapter (SPEC section 4a).

use crate::settings::Problem;
use crate::settings::de::{Seconds, Text};
use serde::Deserialize;
use std::num::NonZeroU32;
use std::time::Duration;

/// `type: http`: the PrismQ TaskManager API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The API base URL, ending in `/api` (required).
    pub url: Option<Text>,
    /// Sent as `X-API-Key`; usually `${TASKMANAGER_API_KEY}`. Opening fails when it is empty.
    pub api_key: Text,
    /// How long an idle host waits between claims (default 5 s).
    pub poll_interval: Seconds,
    pub claim_sort_by: Option<Text>,
    pub claim_sort_order: Option<Text>,
    /// The service's own claim timeout (default 300 s): `workerhost check` warns about workers that may
    /// run longer, since the service has no heartbeat.
    pub claim_timeout_seconds: Seconds,
    /// Register task types the service does not know yet (default true).
    pub register_task_types: bool,
    /// How often the host renews its leases (every third of this): the service has no heartbeat, so this
    /// only paces a no-op. Default 30 s.
    pub lease_seconds: Seconds,
    /// Default `max_deliveries` of every worker.
    pub max_deliveries: Option<NonZeroU32>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            url: None,
            api_key: Text::default(),
            poll_interval: Seconds::secs(5),
            claim_sort_by: None,
            claim_sort_order: None,
            claim_timeout_seconds: Seconds::secs(300),
            register_task_types: true,
            lease_seconds: Seconds::secs(30),
            max_deliveries: None,
        }
    }
}

impl Settings {
    pub fn lease(&self) -> Duration {
        self.lease_seconds.0
    }

    /// Checks what the types alone do not; every problem, each naming its field.
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.url.as_deref().is_none_or(|u| u.trim().is_empty()) {
            out.push(Problem::new(
                "url",
                "`url` is required for the http task manager (the API base URL, ending in /api)",
            ));
        }
        out
    }
}
