//! The `task_manager:` settings of the amqp adapter, and keeping credentials out of logs.

use crate::AdapterError;
use serde_json::{Map, Value};

/// `queue_type`: how the queue is declared (`x-queue-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    Classic,
    Quorum,
}

/// Typed settings; every other key of `task_manager:` (`lease_seconds`, ...) is ignored here.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The queue consumed and published to (default `workerhost.tasks`).
    pub queue: String,
    /// `None`: declared without `x-queue-type` (the broker's default, classic on 3.x).
    pub queue_type: Option<QueueType>,
    /// Declare the queue (durable) if missing; `false`: use it as declared (passive check only).
    pub declare: bool,
    /// basic.qos prefetch; default: the host's free capacity at the first claim.
    pub prefetch: Option<u16>,
    /// Where dead letters are published when the queue has no dead-letter exchange
    /// (default `<queue>.dead`, declared durable).
    pub dead_letter_queue: String,
    /// The queue's `x-dead-letter-exchange`, when it has one: dead letters are then
    /// `basic.nack(requeue=false)`ed and the broker routes them.
    pub dead_letter_exchange: Option<String>,
    /// Every result document is also published to this exchange (persistent), with
    /// `result_routing_key` (default: the queue name).
    pub result_exchange: Option<String>,
    pub result_routing_key: Option<String>,
    /// `x-consumer-timeout` of the consumer, in ms (brokers 3.11.15+).
    pub consumer_timeout_ms: Option<u64>,
}

/// Longest name AMQP allows (a short string).
const MAX_NAME: usize = 255;

impl Settings {
    pub fn parse(m: &Map<String, Value>) -> Result<Settings, AdapterError> {
        let bad = |k: &str, want: &str| {
            AdapterError::Invalid(format!("task_manager.{k}: expected {want}"))
        };
        let string = |k: &str| -> Result<Option<String>, AdapterError> {
            match m.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(k, "a string")),
            }
        };
        let uint = |k: &str| -> Result<Option<u64>, AdapterError> {
            match m.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| bad(k, "a whole number")),
            }
        };
        let queue = string("queue")?.unwrap_or_else(|| "workerhost.tasks".into());
        let queue_type = match string("queue_type")?.as_deref() {
            None => None,
            Some("classic") => Some(QueueType::Classic),
            Some("quorum") => Some(QueueType::Quorum),
            Some(other) => {
                return Err(AdapterError::Invalid(format!(
                    "task_manager.queue_type: `{other}` is not classic or quorum"
                )));
            }
        };
        let declare = match m.get("declare") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("declare", "true or false")),
        };
        let prefetch = match uint("prefetch")? {
            None => None,
            Some(n) if (1..=u64::from(u16::MAX)).contains(&n) => Some(n as u16),
            Some(_) => return Err(bad("prefetch", "a number from 1 to 65535")),
        };
        let dead_letter_queue =
            string("dead_letter_queue")?.unwrap_or_else(|| format!("{queue}.dead"));
        let s = Settings {
            dead_letter_queue,
            dead_letter_exchange: string("dead_letter_exchange")?,
            result_exchange: string("result_exchange")?,
            result_routing_key: string("result_routing_key")?,
            consumer_timeout_ms: uint("consumer_timeout_ms")?,
            queue,
            queue_type,
            declare,
            prefetch,
        };
        for (k, v) in [
            ("queue", Some(&s.queue)),
            ("dead_letter_queue", Some(&s.dead_letter_queue)),
            ("dead_letter_exchange", s.dead_letter_exchange.as_ref()),
            ("result_exchange", s.result_exchange.as_ref()),
            ("result_routing_key", s.result_routing_key.as_ref()),
        ] {
            if v.is_some_and(|v| v.len() > MAX_NAME) {
                return Err(bad(k, "at most 255 bytes"));
            }
        }
        if s.queue.is_empty() || s.dead_letter_queue.is_empty() {
            return Err(AdapterError::Invalid(
                "task_manager.queue and dead_letter_queue must not be empty".into(),
            ));
        }
        Ok(s)
    }

    /// The routing key of published results.
    pub fn result_key(&self) -> &str {
        self.result_routing_key.as_deref().unwrap_or(&self.queue)
    }
}

/// `amqp://user:pass@host/vhost` → `amqp://user:***@host/vhost`: what logs and errors show.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    let shown = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None => userinfo.to_string(),
    };
    format!("{}{shown}{}", &url[..scheme_end], &rest[at..])
}

/// The password of `url`, as written in it (percent-encoded), when it has one.
fn password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    Some(&userinfo[userinfo.find(':')? + 1..]).filter(|p| !p.is_empty())
}

/// Removes the URL and its password from a message that may quote them (a client library's error).
pub fn scrub(msg: &str, url: &str) -> String {
    let mut out = msg.replace(url, &redact(url));
    if let Some(p) = password(url) {
        out = out.replace(&format!(":{p}@"), ":***@");
        if p.len() >= 6 {
            out = out.replace(p, "***");
        }
    }
    out
}
