//! Opens the configured task manager.

use crate::config::{Config, TaskManagerConfig};
use workerhost_adapters::Source;
use workerhost_adapters::sqlite::{SqliteOptions, SqliteSource};

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("task manager type {0:?} is not available in this build yet (supported: sqlite)")]
    Unsupported(String),
    #[error(transparent)]
    Adapter(#[from] workerhost_adapters::AdapterError),
}

/// Opens the task manager of `cfg`; `host_id` owns the leases this process takes.
pub fn open(cfg: &Config, host_id: &str) -> Result<Source, OpenError> {
    match &cfg.task_manager {
        TaskManagerConfig::Sqlite {
            path,
            lease,
            poll_interval,
        } => Ok(Source::Sqlite(SqliteSource::open(SqliteOptions {
            path: path.clone(),
            host_id: host_id.to_string(),
            lease: *lease,
            poll_interval: *poll_interval,
        })?)),
        TaskManagerConfig::Other { kind, .. } => Err(OpenError::Unsupported(kind.clone())),
    }
}

/// The lease the host renews, from the config (default 30 s).
pub fn lease_of(cfg: &Config) -> std::time::Duration {
    match &cfg.task_manager {
        TaskManagerConfig::Sqlite { lease, .. } => *lease,
        TaskManagerConfig::Other { .. } => std::time::Duration::from_secs(30),
    }
}
