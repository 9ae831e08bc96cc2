//! Typed `task_manager:` settings: one struct per adapter, each in that adapter's own `settings.rs`, and
//! [`TaskManagerSettings`], the enum the config holds (tagged by `type`).
//!
//! Each struct deserializes with its defaults and rejects unknown keys; `validate` checks what the types
//! alone cannot and names the field of every problem. The settings of every adapter exist in every
//! build (they need no client library), so a config is checked the same everywhere; only opening an
//! adapter needs its cargo feature ([`crate::open`]). The config loader (in the host) reports each
//! key's problem with its file and line, all at once: it deserializes one key at a time (every field has
//! a default), then the whole, then validates.

pub mod de;

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One problem with one `task_manager:` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, e.g. `stream` (the loader shows `task_manager.stream`).
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(field: &str, message: impl Into<String>) -> Problem {
        Problem {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "task_manager.{}: {}", self.field, self.message)
    }
}

/// `task_manager:` as the config holds it: the adapter named by `type`, with its settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TaskManagerSettings {
    Sqlite(crate::sqlite::Settings),
    Redis(crate::redis_streams::Settings),
    Amqp(crate::amqp::Settings),
    Http(crate::http_api::Settings),
    Postgres(crate::postgres::Settings),
}

/// Every `type` there is. Each loads and validates in every build; opening one needs its cargo feature.
pub const KINDS: &[&str] = &["sqlite", "redis", "amqp", "http", "postgres"];

/// The `type`s this build can open (its cargo features).
pub const OPENABLE: &[&str] = &[
    #[cfg(feature = "sqlite")]
    "sqlite",
    #[cfg(feature = "redis")]
    "redis",
    #[cfg(feature = "amqp")]
    "amqp",
    #[cfg(feature = "http")]
    "http",
    #[cfg(feature = "postgres")]
    "postgres",
];

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            TaskManagerSettings::Sqlite($s) => $e,
            TaskManagerSettings::Redis($s) => $e,
            TaskManagerSettings::Amqp($s) => $e,
            TaskManagerSettings::Http($s) => $e,
            TaskManagerSettings::Postgres($s) => $e,
        }
    };
}

impl TaskManagerSettings {
    /// The keys `type: kind` takes besides `type` (`None`: no such type).
    pub fn keys(kind: &str) -> Option<&'static [&'static str]> {
        Some(match kind {
            "sqlite" => de::keys::<crate::sqlite::Settings>(),
            "redis" => de::keys::<crate::redis_streams::Settings>(),
            "amqp" => de::keys::<crate::amqp::Settings>(),
            "http" => de::keys::<crate::http_api::Settings>(),
            "postgres" => de::keys::<crate::postgres::Settings>(),
            _ => return None,
        })
    }

    /// `task_manager.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            TaskManagerSettings::Sqlite(_) => "sqlite",
            TaskManagerSettings::Redis(_) => "redis",
            TaskManagerSettings::Amqp(_) => "amqp",
            TaskManagerSettings::Http(_) => "http",
            TaskManagerSettings::Postgres(_) => "postgres",
        }
    }

    /// Every problem the types alone do not catch, each naming its key.
    pub fn validate(&self) -> Vec<Problem> {
        each!(self, s => s.validate())
    }

    /// The lease the host renews every third of (`lease_seconds`, default 30 s).
    pub fn lease(&self) -> Duration {
        each!(self, s => s.lease())
    }

    /// `max_deliveries`: the default of every worker's own.
    pub fn max_deliveries(&self) -> Option<u32> {
        each!(self, s => s.max_deliveries.map(|n| n.get()))
    }

    /// How long the task manager itself lets a claim stand without a heartbeat, where that is its own
    /// setting rather than a lease the host renews (the http adapter's `claim_timeout_seconds`).
    pub fn claim_timeout(&self) -> Option<Duration> {
        match self {
            TaskManagerSettings::Http(s) => Some(s.claim_timeout_seconds.0),
            _ => None,
        }
    }

    /// Makes relative paths absolute (the sqlite file, against the config file's folder).
    pub fn resolve_paths(&mut self, resolve: impl Fn(&Path) -> PathBuf) {
        if let TaskManagerSettings::Sqlite(s) = self {
            s.path = resolve(&s.path);
        }
    }
}

#[cfg(feature = "schema")]
impl TaskManagerSettings {
    /// The JSON Schema of `task_manager:` as the config loader reads it: `type` (absent: `sqlite`)
    /// picks the adapter whose settings type every key; a key of another adapter is let through
    /// untyped (one file may serve several types), a key of none is refused. Each adapter's part is
    /// its settings struct's derived schema.
    pub fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        use schemars::JsonSchema;
        use serde_json::{Map, Value, json};
        let parts: [(&str, schemars::Schema); 5] = [
            ("sqlite", crate::sqlite::Settings::json_schema(generator)),
            (
                "redis",
                crate::redis_streams::Settings::json_schema(generator),
            ),
            ("amqp", crate::amqp::Settings::json_schema(generator)),
            ("http", crate::http_api::Settings::json_schema(generator)),
            (
                "postgres",
                crate::postgres::Settings::json_schema(generator),
            ),
        ];
        let mut keys = Map::new();
        keys.insert(
            "type".into(),
            json!({
                "description": "The task manager (default sqlite).",
                "enum": KINDS,
            }),
        );
        let mut cases = Vec::new();
        for (kind, part) in parts {
            let mut part = part.to_value();
            if let Value::Object(o) = &mut part {
                // The union below refuses unknown keys; `type` and other adapters' keys pass here.
                o.remove("additionalProperties");
                o.remove("title");
                o.insert("description".into(), json!(format!("type: {kind}")));
                if let Some(Value::Object(props)) = o.get("properties") {
                    for (k, v) in props {
                        let description = v.get("description").cloned().unwrap_or(json!(""));
                        keys.entry(k.clone())
                            .or_insert_with(|| json!({ "description": description }));
                    }
                }
            }
            let when = if kind == "sqlite" {
                json!({ "anyOf": [
                    { "not": { "required": ["type"] } },
                    { "properties": { "type": { "const": kind } }, "required": ["type"] }
                ] })
            } else {
                json!({ "properties": { "type": { "const": kind } }, "required": ["type"] })
            };
            cases.push(json!({ "if": when, "then": part }));
        }
        let mut out = Map::new();
        out.insert("type".into(), json!("object"));
        out.insert("properties".into(), Value::Object(keys));
        out.insert("additionalProperties".into(), json!(false));
        out.insert("allOf".into(), Value::Array(cases));
        schemars::Schema::from(out)
    }
}
