//! The `task_manager:` settings of the sqlite adapter.

use crate::settings::Problem;
use crate::settings::de::Seconds;
use serde::Deserialize;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

/// `type: sqlite` (the default task manager).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The database file (created if missing); the config loader makes it absolute, relative to the
    /// config file's folder. Default `./workerhost.db`.
    pub path: PathBuf,
    /// How long a claim or a renewal holds a task (default 30 s).
    pub lease_seconds: Seconds,
    /// How often an idle host looks for tasks when no change of the file wakes it, in seconds...
    pub poll_interval: Option<Seconds>,
    /// ... or in milliseconds (wins over `poll_interval`). Default 100 ms.
    pub poll_interval_ms: Option<std::num::NonZeroU64>,
    /// Default `max_deliveries` of every worker.
    pub max_deliveries: Option<NonZeroU32>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            path: PathBuf::from("./workerhost.db"),
            lease_seconds: Seconds::secs(30),
            poll_interval: None,
            poll_interval_ms: None,
            max_deliveries: None,
        }
    }
}

impl Settings {
    pub fn lease(&self) -> Duration {
        self.lease_seconds.0
    }

    /// The wait between claims of an idle host.
    pub fn poll_interval(&self) -> Duration {
        match (self.poll_interval_ms, self.poll_interval) {
            (Some(ms), _) => Duration::from_millis(ms.get()),
            (None, Some(s)) => s.0,
            (None, None) => Duration::from_millis(100),
        }
    }

    /// Checks what the types alone do not; every problem, each naming its field.
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.path.as_os_str().is_empty() {
            out.push(Problem::new("path", "must not be empty"));
        }
        out
    }
}
