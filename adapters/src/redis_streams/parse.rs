//! URL redaction, and reading Redis replies into deliveries.

use crate::{Delivery, Envelope, Lease, Malformed, ResultDocument};
use redis::Value;
use serde_json::{Map, Value as Json, json};

/// Hides the password of a URL in everything shown: `redis://user:***@host:6379/0`.
#[derive(Debug, Clone)]
pub(super) struct Redactor {
    pub shown: String,
    /// The password as written and percent-decoded, to scrub from error texts too.
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(url: &str) -> Redactor {
        Redactor {
            shown: crate::redact::shown(url, true),
            secrets: crate::redact::secrets(url, true),
        }
    }

    /// `text` with every occurrence of the password replaced (passwords shorter than 3 characters are
    /// only hidden in the URL: scrubbing them would garble every message).
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.secrets.iter().filter(|s| s.chars().count() >= 3) {
            out = out.replace(s.as_str(), "***");
        }
        out
    }
}

/// A reply element as text (bulk and simple strings, numbers).
pub(super) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

pub(super) fn items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    }
}

/// An entry's fields, in order: names as text, values as the bytes stored (a task that is not UTF-8 is
/// malformed, never "repaired").
pub(super) type Fields = Vec<(String, Vec<u8>)>;

/// The value of field `name`, if any.
pub(super) fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

/// The value of field `name` as text (lossy: for numbers and for what is only shown).
pub(super) fn field_text(fields: &Fields, name: &str) -> Option<String> {
    field(fields, name).map(|v| String::from_utf8_lossy(v).into_owned())
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        other => text(other).map(String::into_bytes),
    }
}

/// An entry's field/value list; `None` when the entry is gone (nil).
pub(super) fn fields(v: Value) -> Option<Fields> {
    if matches!(v, Value::Nil) {
        return None;
    }
    let flat: Vec<Vec<u8>> = items(v)
        .iter()
        .map(|x| bytes(x).unwrap_or_default())
        .collect();
    Some(
        flat.chunks(2)
            .map(|c| {
                let name = String::from_utf8_lossy(&c[0]).into_owned();
                (name, c.get(1).cloned().unwrap_or_default())
            })
            .collect(),
    )
}

/// The entries of an `XREADGROUP` reply: `(entry id, fields)`.
pub(super) fn read_reply(v: Value) -> Vec<(String, Option<Fields>)> {
    let mut out = Vec::new();
    for stream in items(v) {
        let mut parts = items(stream).into_iter();
        let (Some(_key), Some(entries)) = (parts.next(), parts.next()) else {
            continue;
        };
        for e in items(entries) {
            let mut e = items(e).into_iter();
            if let Some(id) = e.next().as_ref().and_then(text) {
                out.push((id, e.next().and_then(fields)));
            }
        }
    }
    out
}

/// A delivery from a stream entry. `pel_count` is the delivery count of the pending list; the entry's
/// own `deliveries` field (set when a host handed the task back) adds the deliveries before it.
pub(super) fn delivery(entry_id: &str, fields: Option<Fields>, pel_count: u32) -> Delivery {
    let fields = fields.unwrap_or_default();
    let prior = field_text(&fields, "deliveries")
        .and_then(|d| d.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let deliveries = pel_count.max(1).saturating_add(prior);
    let (envelope, task_id) = match field(&fields, "task") {
        None => {
            let raw: Map<String, Json> = fields
                .iter()
                .map(|(k, v)| (k.clone(), Json::String(String::from_utf8_lossy(v).into())))
                .collect();
            let raw = Json::Object(raw).to_string();
            let reason = format!("stream entry {entry_id} has no `task` field");
            (
                Err(Malformed::new(raw.as_bytes(), reason)),
                entry_id.to_string(),
            )
        }
        Some(raw) => match Envelope::parse(raw) {
            Ok(env) => {
                let id = env.id.clone();
                (Ok(env), id)
            }
            Err(reason) => {
                // Keep the task's own id when it has one, so that `status ID` finds the dead letter.
                let id = crate::envelope::salvage(raw)
                    .0
                    .unwrap_or_else(|| entry_id.to_string());
                let reason = format!("stream entry {entry_id}: {reason}");
                (Err(Malformed::new(raw, reason)), id)
            }
        },
    };
    Delivery {
        lease: Lease {
            task_id,
            receipt: entry_id.to_string(),
        },
        envelope,
        deliveries,
    }
}

/// The short error kept in the dead-letter entry's `error` field.
pub(super) fn error_message(doc: &ResultDocument) -> String {
    doc.error_message().unwrap_or_else(|| "dead".into())
}

/// What goes into the dead letter's `task` field when the entry itself is gone: the raw message the host
/// kept for malformed ones, else the envelope's id and type.
pub(super) fn fallback_task(doc: &ResultDocument) -> String {
    match doc.error.as_ref().and_then(|e| e.get("raw")) {
        Some(Json::String(raw)) => raw.clone(),
        _ => json!({"id": doc.id, "type": doc.task_type}).to_string(),
    }
}
