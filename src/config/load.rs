//! Reading a config file: parse, expand `${...}`, validate everything (every problem at once, each with
//! its line and field path), resolve paths and apply defaults.
//!
//! Judgement calls where the spec is silent:
//! - `version` may be absent (then `1.0`); `"1.0"`, `"1"`, `1.0` and `1` are accepted.
//! - Top-level keys starting with `x-` are ignored, so YAML anchors can live there (`x-common: &common`).
//!   Merge keys (`<<: *common`) are applied.
//! - A number or boolean field also accepts a string when that string came from `${...}`
//!   (`concurrency: ${WORKERS:-4}`); a literal string there (`timeout: "abc"`) is a problem.
//! - `task_manager` may omit `type` (then `sqlite`); `url` is required for `type: http`.
//!   `task_manager.max_deliveries` is the default for every worker's `max_deliveries`, below
//!   `defaults.max_deliveries` and the worker's own, above `max_retries + 3`.
//! - `defaults.env` is merged into each worker's `env` (the worker's entries win).
//! - An observer's `timeout` defaults to 10 seconds.

mod fields;
mod schedules;
mod worker;

use super::expand::{Env, expand_tree};
use super::locate::{key_path, locate};
use super::{Config, ConfigError, HostConfig, ObserverConfig, Problem, TaskManagerConfig};
use fields::{Ctx, get, kind, to_json};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const TOP_KEYS: &[&str] = &[
    "version",
    "host",
    "task_manager",
    "defaults",
    "workers",
    "observers",
    "schedules",
];
const HOST_KEYS: &[&str] = &[
    "id",
    "concurrency",
    "shutdown_grace_seconds",
    "kill_grace_seconds",
    "http",
    "logging",
];
/// Every task manager key any adapter takes (sections 2, 4 and 4a); checked as one set.
const TM_KEYS: &[&str] = &[
    "type",
    "path",
    "url",
    "api_key",
    "stream",
    "group",
    "consumer",
    "queue",
    "queue_type",
    "declare",
    "prefetch",
    "dead_letter_queue",
    "dead_letter_exchange",
    "consumer_timeout_ms",
    "result_exchange",
    "result_routing_key",
    "table",
    "channel",
    "lease_seconds",
    "max_deliveries",
    "result_ttl_seconds",
    "block_ms",
    "poll_interval",
    "poll_interval_ms",
    "claim_sort_by",
    "claim_sort_order",
    "claim_timeout_seconds",
    "register_task_types",
    "schema",
    "notify",
    "max_connections",
];
const TM_TYPES: &[&str] = &["sqlite", "redis", "amqp", "http", "postgres"];
const OBSERVER_KEYS: &[&str] = &["type", "url", "command", "events", "timeout"];
const EVENTS: &[&str] = &[
    "task_received",
    "task_started",
    "task_retrying",
    "task_succeeded",
    "task_failed",
    "task_timed_out",
    "task_dead_lettered",
    "worker_unhealthy",
];

/// Reads and resolves the config file at `path`, with the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let message = if e.kind() == std::io::ErrorKind::NotFound {
            // Name the folder looked in: a relative default is relative to where the host was started.
            let abs = std::env::current_dir()
                .map(|d| d.join(path))
                .unwrap_or_else(|_| path.to_path_buf());
            let folder = abs
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            format!(
                "no config file `{}` in {folder} (choose one with --config or WORKERHOST_CONFIG)",
                path.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            )
        } else {
            format!("cannot read the config file: {e}")
        };
        ConfigError {
            file: path.to_path_buf(),
            problems: vec![Problem {
                line: None,
                field: String::new(),
                message,
            }],
        }
    })?;
    load_str(&text, path, &|name| std::env::var(name).ok())
}

/// Resolves config `text`. `path` names the file in messages and its folder is the base for relative
/// paths (it need not exist); `env` looks up environment variables (for `${VAR}` and `PATH`).
pub fn load_str(text: &str, path: &Path, env: Env) -> Result<Config, ConfigError> {
    let fail = |problems: Vec<Problem>| ConfigError {
        file: path.to_path_buf(),
        problems,
    };
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let mut root: Value = serde_yaml::from_str(text).map_err(|e| {
        fail(vec![Problem {
            line: e.location().map(|l| l.line()),
            field: String::new(),
            message: format!("YAML syntax: {e}"),
        }])
    })?;
    if let Err(e) = root.apply_merge() {
        let line = e.location().map(|l| l.line());
        let message = format!("YAML merge (`<<`): {e}");
        return Err(fail(vec![Problem {
            line,
            field: String::new(),
            message,
        }]));
    }
    let exp = expand_tree(&mut root, env, &base);
    let mut ctx = Ctx {
        lines: locate(text),
        problems: Vec::new(),
        exp,
        base,
        env,
    };
    for (field, message) in std::mem::take(&mut ctx.exp.problems) {
        let line = super::locate::line_of(&ctx.lines, &field);
        ctx.problems.push(Problem {
            line,
            field,
            message,
        });
    }
    let empty = Mapping::new();
    let root = match &root {
        Value::Mapping(m) => m,
        Value::Null => &empty,
        other => {
            let message = format!(
                "expected a mapping (version, task_manager, workers, ...), found {}",
                kind(other)
            );
            ctx.problem("", message);
            &empty
        }
    };
    ctx.check_keys(root, "", TOP_KEYS);
    let version = version(&mut ctx, root);
    let host = host(&mut ctx, root);
    let (task_manager, tm_max_deliveries) = task_manager(&mut ctx, root);
    let defaults = worker::defaults(&mut ctx, root, tm_max_deliveries);
    let workers = worker::workers(&mut ctx, root, &defaults);
    let observers = observers(&mut ctx, root);
    let schedules = schedules::schedules(&mut ctx, root);
    if !ctx.problems.is_empty() {
        let mut problems = ctx.problems;
        problems.sort_by_key(|p| p.line.unwrap_or(0));
        return Err(fail(problems));
    }
    Ok(Config {
        path: file,
        version,
        host,
        task_manager,
        workers,
        observers,
        schedules,
    })
}

fn version(ctx: &mut Ctx, root: &Mapping) -> String {
    let ok = match get(root, "version") {
        None => true,
        Some(Value::String(s)) => s == "1.0" || s == "1",
        Some(Value::Number(n)) => n.as_f64() == Some(1.0),
        Some(_) => false,
    };
    if !ok {
        ctx.problem(
            "version",
            "unsupported version (this host reads version \"1.0\")",
        );
    }
    "1.0".to_string()
}

fn host(ctx: &mut Ctx, root: &Mapping) -> HostConfig {
    let empty = Mapping::new();
    let m = ctx
        .mapping(root, "", "host", Some(HOST_KEYS))
        .unwrap_or(&empty);
    let p = "host";
    let http = ctx
        .mapping(m, p, "http", Some(&["listen", "token"]))
        .unwrap_or(&empty);
    let listen = ctx.string(http, "host.http", "listen");
    if let Some(l) = listen.as_deref().filter(|l| *l != "off") {
        let port_ok = l
            .rsplit_once(':')
            .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            let msg = format!("`{l}` is not an address like 127.0.0.1:8080 (or \"off\")");
            ctx.problem("host.http.listen", msg);
        }
    }
    let logging = ctx
        .mapping(m, p, "logging", Some(&["level", "format"]))
        .unwrap_or(&empty);
    let log_format = ctx.string(logging, "host.logging", "format");
    if let Some(f) = log_format
        .as_deref()
        .filter(|f| !matches!(*f, "text" | "json"))
    {
        ctx.problem(
            "host.logging.format",
            format!("unknown log format `{f}` (expected text or json)"),
        );
    }
    HostConfig {
        id: ctx.string(m, p, "id").filter(|s| !s.is_empty()),
        concurrency: ctx.usize(m, p, "concurrency", 1),
        shutdown_grace: ctx
            .secs(m, p, "shutdown_grace_seconds", true)
            .unwrap_or(Duration::from_secs(30)),
        listen,
        token: ctx
            .string(http, "host.http", "token")
            .filter(|t| !t.trim().is_empty()),
        log_level: ctx.string(logging, "host.logging", "level"),
        log_format,
        kill_grace: ctx
            .secs(m, p, "kill_grace_seconds", true)
            .unwrap_or(Duration::from_secs(5)),
    }
}

/// The task manager, and `task_manager.max_deliveries` (a default for the workers).
fn task_manager(ctx: &mut Ctx, root: &Mapping) -> (TaskManagerConfig, Option<u32>) {
    let empty = Mapping::new();
    let m = ctx
        .mapping(root, "", "task_manager", Some(TM_KEYS))
        .unwrap_or(&empty);
    let p = "task_manager";
    let kind = ctx
        .string(m, p, "type")
        .unwrap_or_else(|| "sqlite".to_string());
    if !TM_TYPES.contains(&kind.as_str()) {
        let msg = format!(
            "unknown task manager type `{kind}` (expected {})",
            TM_TYPES.join(", ")
        );
        ctx.problem("task_manager.type", msg);
    }
    // Every key is type-checked, whichever adapter reads it; adapters get typed JSON values.
    let mut settings = serde_json::Map::new();
    for (k, v) in m {
        let Value::String(k) = k else { continue };
        let typed: Option<serde_json::Value> = match k.as_str() {
            "type" | "url" => continue,
            "lease_seconds" | "result_ttl_seconds" | "claim_timeout_seconds" | "poll_interval" => {
                ctx.secs(m, p, k, false).map(|d| d.as_secs_f64().into())
            }
            "prefetch"
            | "block_ms"
            | "poll_interval_ms"
            | "consumer_timeout_ms"
            | "max_connections" => ctx.uint(m, p, k, 1).map(Into::into),
            "max_deliveries" => ctx.u32(m, p, k, 1).map(Into::into),
            "declare" | "register_task_types" | "notify" => ctx.boolean(m, p, k).map(Into::into),
            _ if TM_KEYS.contains(&k.as_str()) => ctx.string(m, p, k).map(Into::into),
            _ => to_json(v).ok(),
        };
        if let Some(t) = typed {
            settings.insert(k.clone(), t);
        }
    }
    let url = ctx.string(m, p, "url");
    if kind == "http" && url.is_none() {
        ctx.problem(
            p,
            "`url` is required for the http task manager (the API base URL, ending in /api)",
        );
    }
    let max_deliveries = settings
        .get("max_deliveries")
        .and_then(|v| v.as_u64())
        .and_then(|n| u32::try_from(n).ok());
    if kind != "sqlite" {
        return (
            TaskManagerConfig::Other {
                kind,
                url,
                settings,
            },
            max_deliveries,
        );
    }
    let secs = |k: &str| {
        settings
            .get(k)
            .and_then(|v| v.as_f64())
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
    };
    let poll_interval = match settings.get("poll_interval_ms").and_then(|v| v.as_u64()) {
        Some(ms) => Duration::from_millis(ms),
        None => secs("poll_interval").unwrap_or(Duration::from_millis(100)),
    };
    let sqlite = TaskManagerConfig::Sqlite {
        path: ctx.resolve(
            settings
                .get("path")
                .and_then(|v| v.as_str())
                .unwrap_or("./workerhost.db"),
        ),
        lease: secs("lease_seconds").unwrap_or(Duration::from_secs(30)),
        poll_interval,
    };
    (sqlite, max_deliveries)
}

fn observers(ctx: &mut Ctx, root: &Mapping) -> Vec<ObserverConfig> {
    let items = match get(root, "observers") {
        None => return Vec::new(),
        Some(Value::Sequence(items)) => items,
        Some(other) => {
            ctx.problem(
                "observers",
                format!("expected a list of observers, found {}", kind(other)),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = super::locate::index_path("observers", i);
        let Value::Mapping(m) = item else {
            ctx.problem(
                &path,
                format!("expected an observer (a mapping), found {}", kind(item)),
            );
            continue;
        };
        ctx.check_keys(m, &path, OBSERVER_KEYS);
        let events = ctx.str_list(m, &path, "events").map(|list| {
            for (j, e) in &list {
                if !EVENTS.contains(&e.as_str()) {
                    let field = super::locate::index_path(&key_path(&path, "events"), *j);
                    ctx.problem(
                        &field,
                        format!(
                            "unknown event `{e}` (expected one of: {})",
                            EVENTS.join(", ")
                        ),
                    );
                }
            }
            list.into_iter().map(|(_, e)| e).collect::<Vec<_>>()
        });
        let timeout = ctx
            .secs(m, &path, "timeout", false)
            .unwrap_or(Duration::from_secs(10));
        match ctx.string(m, &path, "type").as_deref() {
            Some("webhook") => {
                let Some(url) = ctx.string(m, &path, "url") else {
                    ctx.problem(&path, "a webhook observer needs `url`");
                    continue;
                };
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    ctx.problem(
                        &key_path(&path, "url"),
                        format!("`{url}` is not an http:// or https:// URL"),
                    );
                }
                out.push(ObserverConfig::Webhook {
                    url,
                    events,
                    timeout,
                });
            }
            Some("command") => {
                if get(m, "command").is_none() {
                    ctx.problem(&path, "a command observer needs `command` (an argv list)");
                } else if let Some(argv) = worker::command_argv(ctx, m, &path, "command") {
                    out.push(ObserverConfig::Command {
                        argv,
                        events,
                        timeout,
                    });
                }
            }
            Some(other) => {
                let msg = format!("unknown observer type `{other}` (expected webhook or command)");
                ctx.problem(&key_path(&path, "type"), msg);
            }
            None => ctx.problem(&path, "an observer needs `type` (webhook or command)"),
        }
    }
    out
}
