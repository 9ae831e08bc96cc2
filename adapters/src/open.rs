//! Opening the configured task manager: settings in, a [`Source`] out.

use crate::{AdapterError, Source, TaskManagerSettings};
use std::time::Duration;

/// What opening needs to know about the host besides the adapter's own settings.
#[derive(Debug, Clone)]
pub struct OpenContext {
    /// This host start's unique id: it owns the leases this process takes.
    pub host_id: String,
    /// Every task type some worker handles, sorted (the http adapter resolves them to the service's ids).
    pub task_types: Vec<String>,
    /// The longest one delivery can stay unsettled on this host: every attempt of the slowest worker with
    /// its kill grace, plus the retry waits. The amqp adapter's default `consumer_timeout_ms` is this
    /// plus a minute.
    pub longest_delivery: Duration,
    /// Whether a postgres schema is created or upgraded on open (`false` for `workerhost check` and
    /// `workerhost migrate`, which report or migrate themselves).
    pub migrate: bool,
}

/// Connects to (or opens) the task manager `settings` names.
pub async fn open(
    settings: &TaskManagerSettings,
    cx: &OpenContext,
) -> Result<Source, AdapterError> {
    match settings {
        #[cfg(feature = "sqlite")]
        TaskManagerSettings::Sqlite(s) => {
            let opts = crate::sqlite::SqliteOptions {
                path: s.path.clone(),
                host_id: cx.host_id.clone(),
                lease: s.lease(),
                poll_interval: s.poll_interval(),
            };
            // Opening creates the file and schema: blocking work, off the runtime.
            let s = tokio::task::spawn_blocking(move || crate::sqlite::SqliteSource::open(opts))
                .await
                .map_err(|e| AdapterError::Backend(format!("sqlite open task failed: {e}")))??;
            Ok(Source::Sqlite(s))
        }
        #[cfg(feature = "redis")]
        TaskManagerSettings::Redis(s) => {
            let opts = crate::redis_streams::Options {
                host_id: cx.host_id.clone(),
                settings: s.clone(),
            };
            Ok(Source::Redis(
                crate::redis_streams::RedisSource::connect(opts).await?,
            ))
        }
        #[cfg(feature = "amqp")]
        TaskManagerSettings::Amqp(s) => {
            let mut settings = s.clone();
            if settings.consumer_timeout_ms.is_none() {
                let ms = cx.longest_delivery.as_millis() + 60_000;
                settings.consumer_timeout_ms = Some(u64::try_from(ms).unwrap_or(u64::MAX));
            }
            let opts = crate::amqp::Options {
                host_id: cx.host_id.clone(),
                settings,
            };
            Ok(Source::Amqp(crate::amqp::AmqpSource::connect(opts).await?))
        }
        #[cfg(feature = "http")]
        TaskManagerSettings::Http(s) => {
            let opts = crate::http_api::Options::new(s, cx.host_id.clone(), cx.task_types.clone());
            Ok(Source::Http(
                crate::http_api::HttpSource::connect(opts).await?,
            ))
        }
        #[cfg(feature = "postgres")]
        TaskManagerSettings::Postgres(s) => {
            let opts = crate::postgres::Options {
                host_id: cx.host_id.clone(),
                settings: s.clone(),
                migrate: cx.migrate,
            };
            Ok(Source::Postgres(
                crate::postgres::PostgresSource::open(opts).await?,
            ))
        }
        #[allow(unreachable_patterns)]
        other => Err(AdapterError::NotInBuild {
            kind: other.kind(),
            available: crate::settings::OPENABLE.join(", "),
        }),
    }
}
