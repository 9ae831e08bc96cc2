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

mod defaults;
mod fields;
mod schedules;
mod task_manager;
mod worker;

use super::expand::{Env, expand_tree};
use super::locate::{key_path, locate};
use super::schema::{self, keys};
use super::{Config, ConfigError, HostConfig, ObserverConfig, Problem};
use fields::{Ctx, get, kind};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

// The key tables are the field lists of the structs that also make the JSON Schema (`super::schema`);
// the event names are `EventKind`'s, which the schema derives from too.
fn events() -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        crate::observers::EventKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect()
    })
}

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
/// Long on purpose: one pass over the top-level sections, each a call, collecting every problem
/// before it answers (the loader's contract: all mistakes at once).
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
    ctx.check_keys(root, "", keys::<schema::File>());
    let version = version(&mut ctx, root);
    let host = host(&mut ctx, root);
    let task_manager = task_manager::task_manager(&mut ctx, root);
    let tm_max_deliveries = task_manager.as_ref().and_then(|t| t.max_deliveries());
    let defaults = defaults::defaults(&mut ctx, root, tm_max_deliveries);
    let workers = worker::workers(&mut ctx, root, &defaults);
    let observers = observers(&mut ctx, root);
    let schedules = schedules::schedules(&mut ctx, root);
    let task_manager = match task_manager {
        Some(t) if ctx.problems.is_empty() => t,
        _ => {
            let mut problems = ctx.problems;
            if problems.is_empty() {
                // A problem under a failed `${...}` is not repeated; this is never reached without one.
                problems.push(Problem {
                    line: None,
                    field: "task_manager".into(),
                    message: "the task manager settings cannot be read".into(),
                });
            }
            problems.sort_by_key(|p| p.line.unwrap_or(0));
            return Err(fail(problems));
        }
    };
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
        .mapping(root, "", "host", Some(keys::<schema::Host>()))
        .unwrap_or(&empty);
    let p = "host";
    let http = ctx
        .mapping(m, p, "http", Some(keys::<schema::Http>()))
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
        .mapping(m, p, "logging", Some(keys::<schema::Logging>()))
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
        ctx.check_keys(m, &path, keys::<schema::Observer>());
        let events = ctx.str_list(m, &path, "events").map(|list| {
            for (j, e) in &list {
                if !events().contains(&e.as_str()) {
                    let field = super::locate::index_path(&key_path(&path, "events"), *j);
                    ctx.problem(
                        &field,
                        format!(
                            "unknown event `{e}` (expected one of: {})",
                            events().join(", ")
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
