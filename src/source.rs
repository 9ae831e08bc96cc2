//! Opens the configured task manager.

use crate::config::{Config, TaskManagerConfig};
use std::time::Duration;
use workerhost_adapters::Source;
use workerhost_adapters::sqlite::{SqliteOptions, SqliteSource};
use workerhost_adapters::{amqp, http_api, postgres, redis_streams};

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "task manager type {0:?} is not available in this build (supported: sqlite, redis, amqp, http, postgres)"
    )]
    Unsupported(String),
    #[error(transparent)]
    Adapter(#[from] workerhost_adapters::AdapterError),
}

/// Opens the task manager of `cfg`; `host_id` owns the leases this process takes. A postgres schema is
/// created or upgraded here.
pub async fn open(cfg: &Config, host_id: &str) -> Result<Source, OpenError> {
    open_with(cfg, host_id, true).await
}

/// [`open`], where `migrate: false` leaves a postgres schema as it is (`check` reports it, `migrate`
/// applies it itself).
pub async fn open_with(cfg: &Config, host_id: &str, migrate: bool) -> Result<Source, OpenError> {
    match &cfg.task_manager {
        TaskManagerConfig::Sqlite {
            path,
            lease,
            poll_interval,
        } => {
            let opts = SqliteOptions {
                path: path.clone(),
                host_id: host_id.to_string(),
                lease: *lease,
                poll_interval: *poll_interval,
            };
            // Opening creates the file and schema: blocking work, off the runtime.
            let s = tokio::task::spawn_blocking(move || SqliteSource::open(opts))
                .await
                .map_err(|e| OpenError::Unsupported(format!("sqlite open task failed: {e}")))??;
            Ok(Source::Sqlite(s))
        }
        TaskManagerConfig::Other {
            kind,
            url,
            settings,
        } => {
            let url = url.clone().unwrap_or_default();
            match kind.as_str() {
                "redis" => Ok(Source::Redis(
                    redis_streams::RedisSource::connect(redis_streams::Options {
                        url,
                        host_id: host_id.to_string(),
                        settings: settings.clone(),
                    })
                    .await?,
                )),
                "amqp" => Ok(Source::Amqp(
                    amqp::AmqpSource::connect(amqp::Options {
                        url,
                        host_id: host_id.to_string(),
                        settings: with_consumer_timeout(settings, cfg),
                    })
                    .await?,
                )),
                "http" => {
                    let mut types: Vec<String> = cfg
                        .workers
                        .iter()
                        .flat_map(|w| w.task_types.iter().cloned())
                        .collect();
                    types.sort();
                    let opts =
                        http_api::Options::from_settings(url, host_id.to_string(), settings, types);
                    Ok(Source::Http(http_api::HttpSource::connect(opts).await?))
                }
                "postgres" => Ok(Source::Postgres(
                    postgres::PostgresSource::open(postgres::Options {
                        url,
                        host_id: host_id.to_string(),
                        settings: settings.clone(),
                        migrate,
                    })
                    .await?,
                )),
                other => Err(OpenError::Unsupported(other.to_string())),
            }
        }
    }
}

/// The lease the host renews, from the config (`lease_seconds`, default 30 s).
pub fn lease_of(cfg: &Config) -> Duration {
    match &cfg.task_manager {
        TaskManagerConfig::Sqlite { lease, .. } => *lease,
        TaskManagerConfig::Other { settings, .. } => settings
            .get("lease_seconds")
            .and_then(|v| v.as_f64())
            .filter(|s| *s > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(Duration::from_secs(30)),
    }
}

/// The amqp adapter's `consumer_timeout_ms` (the consumer's `x-consumer-timeout`), unless set: the longest
/// a delivery can stay unacknowledged here (every attempt of the slowest worker with its kill grace and
/// the longest retry waits), plus a minute.
fn with_consumer_timeout(
    settings: &serde_json::Map<String, serde_json::Value>,
    cfg: &Config,
) -> serde_json::Map<String, serde_json::Value> {
    let mut s = settings.clone();
    if !s.contains_key("consumer_timeout_ms") {
        let worst = cfg
            .workers
            .iter()
            .map(|w| {
                let attempts = u128::from(w.max_retries) + 1;
                (w.timeout + cfg.host.kill_grace).as_millis() * attempts
                    + w.retry.max_delay.as_millis() * u128::from(w.max_retries)
            })
            .max()
            .unwrap_or(0);
        let ms = u64::try_from(worst + 60_000).unwrap_or(u64::MAX);
        s.insert("consumer_timeout_ms".into(), ms.into());
    }
    s
}
