//! The `task_manager:` settings of the amqp adapter.

use crate::settings::Problem;
use crate::settings::de::{Seconds, Text};
use serde::Deserialize;
use std::num::NonZeroU32;
use std::time::Duration;

/// `queue_type`: how the queue is declared (`x-queue-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    Classic,
    Quorum,
}

pub(super) const DEFAULT_URL: &str = "amqp://127.0.0.1:5672/%2f";

/// `type: amqp`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Default `amqp://127.0.0.1:5672/%2f`.
    pub url: Option<Text>,
    /// The queue consumed and published to (default `workerhost.tasks`).
    pub queue: Text,
    /// `None`: declared without `x-queue-type` (the broker's default, classic on 3.x).
    pub queue_type: Option<QueueType>,
    /// Declare the queue (durable) if missing; `false`: use it as declared (passive check only).
    pub declare: bool,
    /// basic.qos prefetch; default: the host's free capacity at the first claim.
    pub prefetch: Option<u16>,
    /// Where dead letters are published when the queue has no dead-letter exchange
    /// (default `<queue>.dead`, declared durable); see [`Settings::dead_letter_queue`].
    #[serde(rename = "dead_letter_queue")]
    pub dead_letter_queue_name: Option<Text>,
    /// The queue's `x-dead-letter-exchange`, when it has one: dead letters are then
    /// `basic.nack(requeue=false)`ed and the broker routes them.
    pub dead_letter_exchange: Option<Text>,
    /// Every result document is also published to this exchange (persistent), with
    /// `result_routing_key` (default: the queue name).
    pub result_exchange: Option<Text>,
    pub result_routing_key: Option<Text>,
    /// `x-consumer-timeout` of the consumer, in ms (brokers 3.11.15+). Default: the longest a delivery
    /// can stay unacknowledged on the host, plus a minute (set when the adapter is opened).
    pub consumer_timeout_ms: Option<u64>,
    /// How often the host renews its leases (every third of this): acks have no lease, so this only
    /// paces a no-op. Default 30 s.
    pub lease_seconds: Seconds,
    /// Default `max_deliveries` of every worker.
    pub max_deliveries: Option<NonZeroU32>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            url: None,
            queue: "workerhost.tasks".into(),
            queue_type: None,
            declare: true,
            prefetch: None,
            dead_letter_queue_name: None,
            dead_letter_exchange: None,
            result_exchange: None,
            result_routing_key: None,
            consumer_timeout_ms: None,
            lease_seconds: Seconds::secs(30),
            max_deliveries: None,
        }
    }
}

/// Longest name AMQP allows (a short string).
const MAX_NAME: usize = 255;

impl Settings {
    /// The URL connected to (`url`, or the local default).
    pub fn url(&self) -> &str {
        crate::settings::de::url_or(self.url.as_ref(), DEFAULT_URL)
    }

    pub fn lease(&self) -> Duration {
        self.lease_seconds.0
    }

    /// `dead_letter_queue`, default `<queue>.dead`.
    pub fn dead_letter_queue(&self) -> String {
        self.dead_letter_queue_name
            .as_ref()
            .map_or_else(|| format!("{}.dead", self.queue), Text::to_string)
    }

    /// Checks what the types alone do not; every problem, each naming its field.
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.prefetch == Some(0) {
            out.push(Problem::new(
                "prefetch",
                "expected a number from 1 to 65535",
            ));
        }
        if self.consumer_timeout_ms == Some(0) {
            out.push(Problem::new(
                "consumer_timeout_ms",
                "must be at least 1 (found 0)",
            ));
        }
        let dead = self.dead_letter_queue();
        for (k, v) in [
            ("queue", Some(self.queue.as_str())),
            ("dead_letter_queue", Some(dead.as_str())),
            ("dead_letter_exchange", self.dead_letter_exchange.as_deref()),
            ("result_exchange", self.result_exchange.as_deref()),
            ("result_routing_key", self.result_routing_key.as_deref()),
        ] {
            if v.is_some_and(|v| v.len() > MAX_NAME) {
                out.push(Problem::new(k, "expected at most 255 bytes"));
            }
        }
        for (k, v) in [("queue", self.queue.as_str()), ("dead_letter_queue", &dead)] {
            if v.is_empty() {
                out.push(Problem::new(k, "must not be empty"));
            }
        }
        out
    }

    /// The routing key of published results.
    pub fn result_key(&self) -> &str {
        self.result_routing_key.as_deref().unwrap_or(&self.queue)
    }
}
