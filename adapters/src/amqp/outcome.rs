//! Recording an outcome on AMQP: the result published where it goes (`reply_to`, `result_exchange`), a
//! dead letter published with headers that say why (each bounded, so that it always fits a frame), then
//! the message acked.

use super::inner::Inner;
use super::link::Link;
use super::message::{Msg, error_message, short};
use crate::ResultDocument;
use crate::text::{REASON_MAX, cap};
use lapin::BasicProperties;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde_json::Value;

impl Inner {
    /// Publishes the outcome where it goes, then acks (or nacks a dead letter to the DLX).
    pub async fn finish(&self, l: &Link, m: &Msg, doc: &ResultDocument) -> Result<(), String> {
        let body = serde_json::to_vec(doc).map_err(|e| e.to_string())?;
        let mut headers = FieldTable::default();
        headers.insert("x-task-id".into(), bounded(&doc.id));
        headers.insert(
            "x-status".into(),
            LongString::from(doc.status.as_str()).into(),
        );
        let mut props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_headers(headers);
        let correlation = m.props.correlation_id().clone().or_else(|| {
            let c = doc.correlation_id.as_deref().or(m
                .envelope
                .as_ref()
                .ok()?
                .correlation_id
                .as_deref());
            c.and_then(short)
        });
        if let Some(c) = correlation {
            props = props.with_correlation_id(c);
        }
        let reply_to = m.props.reply_to().as_ref();
        if let Some(reply_to) = reply_to.filter(|r| !r.as_str().is_empty())
            && !l
                .publish("", reply_to.as_str(), true, &body, props.clone())
                .await?
        {
            tracing::warn!(task_id = %doc.id, reply_to = %reply_to, "the reply_to queue does not exist (its client is gone?); the result was not delivered there");
        }
        if let Some(x) = &self.s.result_exchange {
            l.publish(x, self.s.result_key(), false, &body, props)
                .await?;
        }
        if !doc.succeeded() {
            if self.s.dead_letter_exchange.is_some() {
                let opts = BasicNackOptions {
                    multiple: false,
                    requeue: false,
                };
                return match m.acker.nack(opts).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err("the channel closed before the nack".into()),
                    Err(e) => Err(e.to_string()),
                };
            }
            let props = self.dead_props(m, doc);
            if !l
                .publish("", &self.s.dead_letter_queue(), true, &m.body, props)
                .await?
            {
                return Err(format!(
                    "dead-letter queue {} does not exist",
                    self.s.dead_letter_queue()
                ));
            }
        }
        match m.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the channel closed before the ack".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The original message's properties plus headers that say why it is dead. Every header added is
    /// at most [`REASON_MAX`] bytes; when the message's own headers would make the header frame too big
    /// for the broker (see [`HEADERS_MAX`]), they are left out (`x-headers-dropped` says so), so that the
    /// message always leaves the queue: a dead letter the broker refuses would close the connection and
    /// come back, forever.
    pub fn dead_props(&self, m: &Msg, doc: &ResultDocument) -> BasicProperties {
        let mut ours = FieldTable::default();
        let mut put = |k: &str, v: AMQPValue| {
            ours.insert(k.into(), v);
        };
        put("x-error", bounded(&error_message(doc)));
        let detail = doc.error.as_ref().map(Value::to_string).unwrap_or_default();
        put("x-error-detail", bounded(&detail));
        let outcome = doc
            .error
            .as_ref()
            .and_then(|e| e.get("outcome"))
            .and_then(Value::as_str);
        put("x-outcome", bounded(outcome.unwrap_or("failed")));
        put(
            "x-attempts",
            AMQPValue::LongLongInt(i64::from(doc.attempts)),
        );
        put(
            "x-deliveries",
            AMQPValue::LongLongInt(i64::from(m.deliveries)),
        );
        put("x-task-id", bounded(&doc.id));
        put("x-host", bounded(&doc.host));
        put("x-original-queue", bounded(&self.s.queue));
        put("x-dead-lettered-at", bounded(&doc.finished_at));
        let own = m.props.headers().clone().unwrap_or_default();
        let own_size = table_size(&own);
        let h = if own_size + table_size(&ours) > HEADERS_MAX {
            tracing::warn!(task_id = %crate::text::cap(&doc.id, 256), bytes = own_size, "the message's own headers are too big to dead-letter with it; they are left out");
            ours.insert(
                "x-headers-dropped".into(),
                bounded(&format!(
                    "the message's own headers ({own_size} bytes) were too big to keep"
                )),
            );
            ours
        } else {
            let mut h = own;
            for (k, v) in ours.inner() {
                h.insert(k.clone(), v.clone());
            }
            h
        };
        m.props.clone().with_headers(h).with_delivery_mode(2)
    }
}

/// Longest header table a dead letter or result carries, in encoded bytes: well inside RabbitMQ's
/// smallest default frame (131,072 bytes), with room for the other properties.
pub const HEADERS_MAX: usize = 96 * 1024;

/// A header value of at most [`REASON_MAX`] bytes.
fn bounded(s: &str) -> AMQPValue {
    LongString::from(cap(s, REASON_MAX).into_owned()).into()
}

/// The encoded size of a header table (AMQP 0-9-1 field table), near enough to stay under a frame.
pub fn table_size(t: &FieldTable) -> usize {
    4 + t
        .inner()
        .iter()
        .map(|(k, v)| 1 + k.as_str().len() + value_size(v))
        .sum::<usize>()
}

fn value_size(v: &AMQPValue) -> usize {
    1 + match v {
        AMQPValue::LongString(s) => 4 + s.as_bytes().len(),
        AMQPValue::ShortString(s) => 1 + s.as_str().len(),
        AMQPValue::ByteArray(b) => 4 + b.as_slice().len(),
        AMQPValue::FieldTable(t) => table_size(t),
        AMQPValue::FieldArray(a) => 4 + a.as_slice().iter().map(value_size).sum::<usize>(),
        // numbers, booleans, timestamps, decimals, void
        _ => 8,
    }
}
