//! The queue depth as the host sees it: one query to the task manager, at most as often as asked
//! (`/metrics` asks for a sample no older than [`METRICS_MAX_AGE`]), shared by the gauges, `GET /queue`
//! and the status page.

use std::sync::Arc;
use std::time::{Duration, Instant};
use workerhost_adapters::Queue;
use workerhost_adapters::Source;
use workerhost_adapters::ops::{OpsError, TypeDepth, with_known_types};

/// The gauges are sampled from the task manager at most this often (SPEC section 8).
pub const METRICS_MAX_AGE: Duration = Duration::from_secs(5);
/// A sample that takes longer than this is given up (the task manager is slow or unreachable).
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why there is no sample.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DepthError {
    /// The task manager cannot tell (amqp, http): no gauges, and `GET /queue` says so.
    #[error("{0}")]
    NotSupported(String),
    #[error("{0}")]
    Failed(String),
}

type Sample = (Instant, Result<Vec<TypeDepth>, DepthError>);

pub struct DepthSampler {
    source: Arc<Source>,
    last: tokio::sync::Mutex<Option<Sample>>,
}

impl DepthSampler {
    pub fn new(source: Arc<Source>) -> DepthSampler {
        DepthSampler {
            source,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// A sample no older than `max_age` (taken now if the last one is older), with a row for every
    /// type of `known`. Concurrent callers share one query.
    pub async fn get(
        &self,
        max_age: Duration,
        known: &[String],
    ) -> Result<Vec<TypeDepth>, DepthError> {
        let mut last = self.last.lock().await;
        let fresh = last.as_ref().is_some_and(|(at, _)| at.elapsed() <= max_age);
        if !fresh {
            let sample = match tokio::time::timeout(SAMPLE_TIMEOUT, self.source.depth()).await {
                Ok(Ok(d)) => Ok(d),
                Ok(Err(e @ OpsError::NotSupported { .. })) => {
                    Err(DepthError::NotSupported(e.to_string()))
                }
                Ok(Err(e)) => Err(DepthError::Failed(e.to_string())),
                Err(_) => Err(DepthError::Failed(format!(
                    "the task manager did not answer the depth query within {} s",
                    SAMPLE_TIMEOUT.as_secs()
                ))),
            };
            *last = Some((Instant::now(), sample));
        }
        match last.as_ref().map(|(_, s)| s.clone()) {
            Some(Ok(d)) => Ok(with_known_types(d, known)),
            Some(Err(e)) => Err(e),
            None => Err(DepthError::Failed("no sample".into())),
        }
    }
}
