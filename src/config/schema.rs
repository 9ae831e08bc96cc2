//! The config file's shape, once: the structs here give the loader its key tables (the field lists of
//! their derived `Deserialize`, through [`keys`]) and `workerhost schema` its JSON Schema (their derived
//! `JsonSchema`), so a key the loader takes is a key the schema has. The loader itself walks the YAML
//! tree (it reports every problem with its line); these structs are never deserialized for real.
//!
//! Field types say what the loader's getters take: `Text` (a string, or a number taken as its text),
//! whole numbers with their minimum, seconds (`> 0`, or `>= 0` where zero is allowed), booleans, lists.
//! `task_manager:` is the adapters' own settings structs ([`TaskManagerSettings::json_schema`]).
//!
//! `${VAR}`: the loader expands before it types, so a number, boolean or one-of-a-list field also takes
//! a string that holds `${` (the schema cannot know what it expands to; the loader checks that). Free
//! text takes it as it is.

use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use workerhost_adapters::TaskManagerSettings;
use workerhost_adapters::settings::de::Text;

pub use workerhost_adapters::settings::de::keys;

/// A workerhost config file (`workerhost_config.yaml`). Top-level keys starting with `x-` are ignored
/// (a place for YAML anchors).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "workerhost config",
    // An empty file is a config too (every default).
    extend("type" = ["object", "null"], "patternProperties" = { "^x-": true })
)]
#[allow(dead_code)]
pub struct File {
    /// The format's version: "1.0" (absent: "1.0").
    #[serde(default)]
    #[schemars(schema_with = "version_schema")]
    version: Option<Value>,
    host: Option<Host>,
    /// Where tasks come from; `type` (default sqlite) picks the adapter.
    #[serde(default)]
    #[schemars(schema_with = "task_manager_schema")]
    task_manager: Option<Value>,
    /// What every worker inherits unless it sets its own.
    defaults: Option<Defaults>,
    workers: Option<Vec<Worker>>,
    /// Who hears about task events (webhook or command).
    observers: Option<Vec<Observer>>,
    /// Tasks enqueued on a cron schedule.
    schedules: Option<Vec<Schedule>>,
}

/// `host:`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct Host {
    /// This host's id (default: hostname-pid; a random suffix is added per start).
    id: Option<Text>,
    /// Tasks in flight across all workers.
    #[schemars(range(min = 1))]
    concurrency: Option<u64>,
    /// How long a stopping host waits for running tasks (default 30).
    #[schemars(range(min = 0))]
    shutdown_grace_seconds: Option<f64>,
    /// Between SIGTERM and SIGKILL of a worker (default 5).
    #[schemars(range(min = 0))]
    kill_grace_seconds: Option<f64>,
    http: Option<Http>,
    logging: Option<Logging>,
}

/// `host.http:`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct Http {
    /// The address of /health, /metrics and the API, like 127.0.0.1:8080, or "off".
    listen: Option<Text>,
    /// A bearer token the API asks for (empty: none).
    token: Option<Text>,
}

/// `host.logging:`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct Logging {
    /// A tracing filter: error, warn, info, debug, trace, or directives like `workerhost=debug`.
    level: Option<Text>,
    format: Option<LogFormat>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum LogFormat {
    Text,
    Json,
}

/// Defines a struct with the keys a worker inherits from `defaults:` after its own (`Defaults` and
/// `Worker` list them once, here). Every such struct is a mapping that refuses unknown keys.
macro_rules! inheriting {
    ($(#[$meta:meta])* pub struct $name:ident { $($own:tt)* }) => {
        #[derive(Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        $(#[$meta])*
        pub struct $name {
            $($own)*
            /// Seconds a task may run (default 300).
            #[schemars(extend("exclusiveMinimum" = 0))]
            timeout: Option<f64>,
            /// Retries after the first attempt (default 3).
            #[schemars(range(min = 0))]
            max_retries: Option<u32>,
            /// Deliveries before a task is dead-lettered (default max_retries + 3).
            #[schemars(range(min = 1))]
            max_deliveries: Option<u32>,
            retry: Option<Retry>,
            /// Bytes of a worker's stdout kept (default 16 MiB).
            #[schemars(range(min = 1))]
            max_output_bytes: Option<u64>,
            /// Tasks of one worker at once.
            #[schemars(range(min = 1))]
            concurrency: Option<u64>,
            /// Environment variables set for the workers (a worker's own win).
            env: Option<BTreeMap<String, Scalar>>,
            /// Host environment variables handed to the workers.
            env_passthrough: Option<Vec<Text>>,
            limits: Option<Limits>,
            /// Retry a task whose worker hit a resource limit (default false).
            retry_on_resource_limit: Option<bool>,
            /// Run the workers as this user (the host runs as root).
            user: Option<Text>,
        }
    };
}

inheriting! {
    /// `defaults:`.
    pub struct Defaults {}
}

/// `retry:`: exponential backoff between attempts.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct Retry {
    #[schemars(range(min = 0))]
    base_delay_seconds: Option<f64>,
    #[schemars(extend("exclusiveMinimum" = 0))]
    backoff_multiplier: Option<f64>,
    #[schemars(range(min = 0))]
    max_delay_seconds: Option<f64>,
    jitter: Option<bool>,
    /// A retry waiting longer than this (default 1) waits in the task manager, not in the host.
    #[schemars(range(min = 0))]
    in_host_max_seconds: Option<f64>,
}

/// `limits:`: kernel resource limits of the worker's process.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct Limits {
    /// Address space, MiB.
    #[schemars(range(min = 1))]
    memory_mb: Option<u64>,
    /// CPU time, seconds.
    #[schemars(range(min = 1))]
    cpu_seconds: Option<u64>,
    /// Open file descriptors.
    #[schemars(range(min = 1))]
    open_files: Option<u64>,
    /// Processes of the worker's user.
    #[schemars(range(min = 1))]
    processes: Option<u64>,
}

inheriting! {
    /// One worker: a Python function (`venv_python` + `module`), any program (`command`) or a remote
    /// worker (`url`), exactly one of them.
    #[schemars(extend("oneOf" = [
        { "required": ["venv_python", "module"] },
        { "required": ["command"] },
        { "required": ["url"] }
    ]))]
    pub struct Worker {
        /// Unique among the workers.
        name: Text,
        description: Option<Text>,
        /// Anything; shown by `workerhost workers` and /workers.
        metadata: Option<Value>,
        /// The worker's working directory (relative to the config file).
        project_path: Option<Text>,
        /// The Python interpreter: a path, or a bare name looked up on PATH.
        venv_python: Option<Text>,
        /// A dotted Python module name.
        module: Option<Text>,
        /// `workerhost setup`: the interpreter the worker's venv is made with (a path or a name on PATH).
        python: Option<Text>,
        /// `workerhost setup`: a requirements file (*.txt) or pyproject.toml installed into the venv of
        /// `venv_python` (relative to `project_path`).
        requirements: Option<Text>,
        /// The function the SDK calls (a Python identifier).
        function: Option<Text>,
        /// An argv list (never a shell command line).
        #[schemars(length(min = 1))]
        command: Option<Vec<Text>>,
        /// A remote worker: http:// or https://.
        url: Option<Text>,
        /// The task types this worker runs (each claimed by one worker).
        #[schemars(length(min = 1))]
        task_types: Vec<Text>,
        mode: Option<Mode>,
        /// Processes of a pool worker (default 1).
        #[schemars(range(min = 1))]
        pool_size: Option<u64>,
        /// A pool process is replaced after this many tasks.
        #[schemars(range(min = 1))]
        max_tasks_per_process: Option<u64>,
    }
}

/// `spawn` (a process per task, the default) or `pool` (long-lived processes).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Mode {
    Spawn,
    Pool,
}

/// An environment value: a string (a number or boolean is taken as its text).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum Scalar {
    Text(String),
    Number(f64),
    Bool(bool),
}

/// One observer.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("allOf" = [
    { "if": { "properties": { "type": { "const": "webhook" } }, "required": ["type"] },
      "then": { "required": ["url"] } },
    { "if": { "properties": { "type": { "const": "command" } }, "required": ["type"] },
      "then": { "required": ["command"] } }
]))]
#[allow(dead_code)]
pub struct Observer {
    #[serde(rename = "type")]
    kind: ObserverType,
    /// A webhook's address (http:// or https://).
    url: Option<Text>,
    /// A command observer's argv.
    #[schemars(length(min = 1))]
    command: Option<Vec<Text>>,
    /// The events it hears (default: all).
    events: Option<Vec<crate::observers::EventKind>>,
    /// Seconds one notification may take (default 10).
    #[schemars(extend("exclusiveMinimum" = 0))]
    timeout: Option<f64>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ObserverType {
    Webhook,
    Command,
}

/// One schedule: each tick enqueues a task of `type` with `params`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct Schedule {
    /// Unique, no spaces: it starts each tick's task id.
    name: Text,
    /// 5 or 6 fields, or an alias such as @hourly.
    cron: Text,
    /// An IANA time zone (default UTC).
    timezone: Option<Text>,
    /// The task type each tick enqueues.
    #[serde(rename = "type")]
    task_type: Text,
    /// The task's params (a mapping).
    params: Option<BTreeMap<String, Value>>,
}

fn version_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "enum": ["1.0", "1", 1] })
}

fn task_manager_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    TaskManagerSettings::json_schema(generator)
}

/// `$defs` name of the `${VAR}` string.
const PLACEHOLDER: &str = "placeholder";

/// The JSON Schema (draft 2020-12) of the config file: `workerhost schema`.
pub fn schema() -> Value {
    let mut root = schemars::schema_for!(File).to_value();
    let defs = root
        .as_object_mut()
        .map(|o| o.entry("$defs").or_insert_with(|| json!({})));
    if let Some(Value::Object(defs)) = defs {
        defs.insert(
            PLACEHOLDER.into(),
            json!({
                "description": "A ${VAR} placeholder; the loader types what it expands to.",
                "type": "string",
                "pattern": "\\$\\{"
            }),
        );
    }
    allow_placeholders(&mut root);
    root
}

/// Where the schema types a value as a number, boolean or one of a list, a `${...}` string is let
/// through too (see the module's docs). `if` conditions are left as they are: they test the value.
fn allow_placeholders(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                if k != "if" && k != "properties" && k != "$defs" {
                    allow_placeholders(child);
                } else if k != "if"
                    && let Value::Object(m) = child
                {
                    m.values_mut().for_each(allow_placeholders);
                }
            }
            let typed = match o.get("type") {
                Some(Value::String(t)) => matches!(t.as_str(), "integer" | "number" | "boolean"),
                Some(Value::Array(ts)) => {
                    !ts.iter().any(|t| t == "string")
                        && ts
                            .iter()
                            .any(|t| matches!(t.as_str(), Some("integer" | "number" | "boolean")))
                }
                _ => false,
            };
            if typed || o.contains_key("enum") || o.contains_key("const") {
                let mut inner = std::mem::take(o);
                for k in ["description", "title", "default"] {
                    if let Some(x) = inner.remove(k) {
                        o.insert(k.into(), x);
                    }
                }
                let refer = format!("#/$defs/{PLACEHOLDER}");
                o.insert(
                    "anyOf".into(),
                    json!([Value::Object(inner), { "$ref": refer }]),
                );
            }
        }
        Value::Array(items) => items.iter_mut().for_each(allow_placeholders),
        _ => {}
    }
}
