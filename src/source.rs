//! Opens the configured task manager: what the adapters need to know about this host's workers, then
//! [`workerhost_adapters::open`].

use crate::config::Config;
use workerhost_adapters::{AdapterError, OpenContext, Source};

/// Opens the task manager of `cfg`; `host_id` owns the leases this process takes. A postgres schema is
/// created or upgraded here.
pub async fn open(cfg: &Config, host_id: &str) -> Result<Source, AdapterError> {
    open_with(cfg, host_id, true).await
}

/// [`open`], where `migrate: false` leaves a postgres schema as it is (`check` reports it, `migrate`
/// applies it itself).
pub async fn open_with(cfg: &Config, host_id: &str, migrate: bool) -> Result<Source, AdapterError> {
    let mut task_types: Vec<String> = cfg
        .workers
        .iter()
        .flat_map(|w| w.task_types.iter().cloned())
        .collect();
    task_types.sort();
    let cx = OpenContext {
        host_id: host_id.to_string(),
        task_types,
        longest_delivery: longest_delivery(cfg),
        migrate,
    };
    workerhost_adapters::open(&cfg.task_manager, &cx).await
}

/// The longest a delivery can stay unsettled here: every attempt of the slowest worker with its kill
/// grace, and the longest retry waits.
fn longest_delivery(cfg: &Config) -> std::time::Duration {
    cfg.workers
        .iter()
        .map(|w| {
            let attempts = w.max_retries.saturating_add(1);
            let runs = w.timeout.saturating_add(cfg.host.kill_grace);
            runs.saturating_mul(attempts)
                .saturating_add(w.retry.max_delay.saturating_mul(w.max_retries))
        })
        .max()
        .unwrap_or_default()
}
