//! Placeholder for the amqp adapter: replaced by the real implementation.

use crate::{
    AdapterError, ClaimRequest, Delivery, Envelope, Lease, ResultDocument, TaskSource, TaskStatus,
};
use serde_json::{Map, Value};
use std::time::Duration;

/// Connection settings, from `task_manager:` in the config.
#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub host_id: String,
    /// Every other key of `task_manager:` (typed JSON values; seconds as numbers).
    pub settings: Map<String, Value>,
}

pub struct AmqpSource;

impl AmqpSource {
    pub async fn connect(_opts: Options) -> Result<AmqpSource, AdapterError> {
        Err(AdapterError::Backend(
            "the amqp adapter is not built yet".into(),
        ))
    }
}

fn missing() -> AdapterError {
    AdapterError::Backend("the amqp adapter is not built yet".into())
}

impl TaskSource for AmqpSource {
    fn kind(&self) -> &'static str {
        "amqp"
    }
    async fn claim(&self, _req: &ClaimRequest) -> Result<Vec<Delivery>, AdapterError> {
        Err(missing())
    }
    async fn renew(&self, _leases: &[Lease]) -> Result<Vec<Lease>, AdapterError> {
        Err(missing())
    }
    async fn settle(&self, _lease: &Lease, _doc: &ResultDocument) -> Result<(), AdapterError> {
        Err(missing())
    }
    async fn release(&self, _lease: &Lease) -> Result<(), AdapterError> {
        Err(missing())
    }
    async fn submit(&self, _envelope: &Envelope) -> Result<(), AdapterError> {
        Err(missing())
    }
    async fn status(&self, _id: &str) -> Result<Option<TaskStatus>, AdapterError> {
        Err(missing())
    }
    async fn ping(&self) -> Result<(), AdapterError> {
        Err(missing())
    }
    fn idle_wait(&self) -> Duration {
        Duration::from_millis(100)
    }
}
