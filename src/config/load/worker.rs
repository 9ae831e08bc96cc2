//! `defaults:` and `workers:`: each worker resolved with every default applied, then the checks across
//! workers (duplicate names, a task type claimed twice).

use super::super::locate::{index_path, key_path};
use super::super::schema::{self, keys};
use super::super::{Environment, Mode, WorkerConfig, WorkerKind};
use super::defaults::{Defaults, env_map, limits, names, retry, user};
use super::fields::{Ctx, get, is_identifier, kind, to_json};
use serde_yaml::{Mapping, Value};
use std::collections::HashMap;

/// Reads `workers:` and runs the checks across workers.
pub(super) fn workers(ctx: &mut Ctx, root: &Mapping, d: &Defaults) -> Vec<WorkerConfig> {
    let items = match get(root, "workers") {
        None => return Vec::new(),
        Some(Value::Sequence(items)) => items,
        Some(other) => {
            let msg = format!("expected a list of workers, found {}", kind(other));
            ctx.problem("workers", msg);
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut claimed: HashMap<String, (String, usize)> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = index_path("workers", i);
        let Value::Mapping(m) = item else {
            ctx.problem(
                &path,
                format!("expected a worker (a mapping), found {}", kind(item)),
            );
            continue;
        };
        ctx.check_keys(m, &path, keys::<schema::Worker>());
        let name = ctx.string(m, &path, "name").unwrap_or_default();
        if name.is_empty() {
            ctx.problem(
                &key_path(&path, "name"),
                "every worker needs a non-empty `name`",
            );
        } else if let Some(first) = names.get(&name) {
            let msg = format!("duplicate worker name `{name}` (also workers[{first}])");
            ctx.problem(&key_path(&path, "name"), msg);
        } else {
            names.insert(name.clone(), i);
        }
        let types = ctx.str_list(m, &path, "task_types");
        let tt_path = key_path(&path, "task_types");
        match &types {
            None if get(m, "task_types").is_none() => {
                ctx.problem(
                    &tt_path,
                    "every worker needs `task_types` (a list of task type names)",
                );
            }
            Some(t) if t.is_empty() => ctx.problem(&tt_path, "must list at least one task type"),
            _ => {}
        }
        for (j, t) in types.iter().flatten() {
            let field = index_path(&tt_path, *j);
            if t.is_empty() {
                ctx.problem(&field, "a task type name must not be empty");
            } else if let Some((other, k)) = claimed.get(t) {
                let msg = if *k == i {
                    format!("task type `{t}` is listed twice")
                } else {
                    format!(
                        "task type `{t}` is claimed by two workers: `{other}` (workers[{k}]) and `{name}` (workers[{i}])"
                    )
                };
                ctx.problem(&field, msg);
            } else {
                claimed.insert(t.clone(), (name.clone(), i));
            }
        }
        let task_types = types
            .unwrap_or_default()
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        if let Some(w) = worker(ctx, m, &path, d, name, task_types) {
            out.push(w);
        }
    }
    out
}

/// One worker's own fields, defaults applied. `None` when it cannot be built (its problems are recorded).
fn worker(
    ctx: &mut Ctx,
    m: &Mapping,
    path: &str,
    d: &Defaults,
    name: String,
    task_types: Vec<String>,
) -> Option<WorkerConfig> {
    let kind = worker_kind(ctx, m, path);
    let max_retries = ctx.u32(m, path, "max_retries", 0).unwrap_or(d.max_retries);
    let mut env = d.env.clone();
    env.extend(env_map(ctx, m, path).unwrap_or_default());
    let mode = match ctx.string(m, path, "mode").as_deref() {
        None | Some("spawn") => Mode::Spawn,
        Some("pool") => Mode::Pool,
        Some(other) => {
            let msg = format!("unknown mode `{other}` (expected spawn or pool)");
            ctx.problem(&key_path(path, "mode"), msg);
            Mode::Spawn
        }
    };
    if mode == Mode::Pool && matches!(kind, Some(WorkerKind::Remote { .. })) {
        ctx.problem(
            &key_path(path, "mode"),
            "a remote (`url`) worker cannot run in pool mode",
        );
    }
    let metadata = match get(m, "metadata").map(to_json) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            ctx.problem(&key_path(path, "metadata"), e);
            None
        }
    };
    let project_path = ctx.string(m, path, "project_path").map(|p| ctx.resolve(&p));
    let timeout = ctx.secs(m, path, "timeout", false).unwrap_or(d.timeout);
    let max_deliveries = ctx.u32(m, path, "max_deliveries", 1).or(d.max_deliveries);
    let retry = retry(ctx, m, path, &d.retry);
    let concurrency = ctx.usize(m, path, "concurrency", 1).or(d.concurrency);
    let max_output_bytes = ctx.usize(m, path, "max_output_bytes", 1);
    let env_passthrough = names(ctx, m, path, "env_passthrough");
    let pool_size = ctx.usize(m, path, "pool_size", 1).unwrap_or(1);
    let max_tasks_per_process = ctx.uint(m, path, "max_tasks_per_process", 1);
    let description = ctx.string(m, path, "description");
    let limits = limits(ctx, m, path).over(d.limits);
    let retry_on_resource_limit = ctx.boolean(m, path, "retry_on_resource_limit");
    let user = match get(m, "user") {
        Some(_) => user(ctx, m, path),
        None => d.user.clone(),
    };
    let environment = environment(ctx, m, path, kind.as_ref(), project_path.as_deref());
    // Every field is read (and its problems recorded) before giving up on a worker without a kind.
    Some(WorkerConfig {
        name,
        kind: kind?,
        project_path,
        task_types,
        timeout,
        max_retries,
        max_deliveries: max_deliveries.unwrap_or(max_retries.saturating_add(3)),
        retry,
        concurrency,
        max_output_bytes: max_output_bytes.unwrap_or(d.max_output_bytes),
        env,
        env_passthrough: env_passthrough.unwrap_or_else(|| d.env_passthrough.clone()),
        mode,
        pool_size,
        max_tasks_per_process,
        description,
        metadata,
        limits,
        retry_on_resource_limit: retry_on_resource_limit.unwrap_or(d.retry_on_resource_limit),
        user,
        config_path: path.to_string(),
        environment,
    })
}

/// `python` + `requirements` (section 10): only for a Python worker whose `venv_python` is a venv's
/// `bin/<interpreter>`; `requirements` is relative to `project_path` (else the config's folder).
fn environment(
    ctx: &mut Ctx,
    m: &Mapping,
    path: &str,
    kind: Option<&WorkerKind>,
    project_path: Option<&std::path::Path>,
) -> Option<Environment> {
    let python = ctx.string(m, path, "python");
    let requirements = ctx.string(m, path, "requirements");
    let Some(requirements) = requirements else {
        if python.is_some() {
            ctx.problem(
                &key_path(path, "python"),
                "`python` needs `requirements` (the file `workerhost setup` installs into the venv)",
            );
        }
        return None;
    };
    let field = key_path(path, "requirements");
    if requirements.is_empty() {
        ctx.problem(&field, "must not be empty");
        return None;
    }
    let name = std::path::Path::new(&requirements)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !(name.ends_with(".txt") || name == "pyproject.toml") {
        let msg =
            format!("`{requirements}` is neither a requirements file (*.txt) nor a pyproject.toml");
        ctx.problem(&field, msg);
        return None;
    }
    let interpreter = match kind {
        Some(WorkerKind::Python { interpreter, .. }) => interpreter,
        Some(_) => {
            let msg = "`requirements` is for a Python worker (`venv_python` + `module`): the host makes the venv that holds `venv_python`";
            ctx.problem(&field, msg);
            return None;
        }
        None => return None,
    };
    // `<venv>/bin/<python>`: the venv is two levels up.
    let venv = interpreter
        .parent()
        .filter(|bin| bin.file_name().is_some_and(|b| b == "bin"))
        .and_then(|bin| bin.parent())
        .filter(|v| v.parent().is_some());
    let Some(venv) = venv else {
        let msg = format!(
            "with `requirements`, `venv_python` must be a venv's interpreter (like ./.venv/bin/python), not `{}`",
            interpreter.display()
        );
        ctx.problem(&key_path(path, "venv_python"), msg);
        return None;
    };
    let python = match python {
        None => "python3".to_string(),
        Some(p) if p.is_empty() => {
            ctx.problem(&key_path(path, "python"), "must not be empty");
            return None;
        }
        Some(p) if p.contains('/') => ctx.resolve(&p).to_string_lossy().into_owned(),
        Some(p) => p,
    };
    let requirements = match project_path {
        Some(dir) => dir.join(&requirements),
        None => ctx.resolve(&requirements),
    };
    Some(Environment {
        python,
        requirements,
        venv: venv.to_path_buf(),
    })
}

/// Python (`venv_python` + `module`), command (`command`) or remote (`url`): exactly one.
///
/// `venv_python` given as a bare name (no `/`, e.g. `python3`) is looked up on the `PATH` of the
/// loader's environment and stored absolute; not finding it is a problem. This is an extension, so that
/// examples work without a virtualenv. A path with a `/` resolves against the config file's folder and
/// need not exist yet (`workerhost check` probes it). A little over 80 lines: the three kinds side by
/// side, so that their mutual exclusion reads in one place.
fn worker_kind(ctx: &mut Ctx, m: &Mapping, path: &str) -> Option<WorkerKind> {
    let python = get(m, "venv_python").is_some() || get(m, "module").is_some();
    let command = get(m, "command").is_some();
    let url = get(m, "url").is_some();
    match u8::from(python) + u8::from(command) + u8::from(url) {
        0 => {
            let msg = "a worker needs `venv_python` + `module` (a Python worker), `command` (any program) or `url` (a remote worker)";
            ctx.problem(path, msg);
            return None;
        }
        1 => {}
        _ => {
            let msg = "a worker takes only one of `venv_python` + `module`, `command` and `url`";
            ctx.problem(path, msg);
            return None;
        }
    }
    if !python && get(m, "function").is_some() {
        ctx.problem(
            &key_path(path, "function"),
            "`function` needs `module` (a Python worker)",
        );
    }
    if url {
        let url = ctx.string(m, path, "url")?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            ctx.problem(
                &key_path(path, "url"),
                format!("`{url}` is not an http:// or https:// URL"),
            );
            return None;
        }
        return Some(WorkerKind::Remote { url });
    }
    if command {
        return command_argv(ctx, m, path, "command").map(|argv| WorkerKind::Command { argv });
    }
    let interpreter = ctx.string(m, path, "venv_python");
    let module = ctx.string(m, path, "module");
    let function = ctx.string(m, path, "function");
    let (Some(interpreter), Some(module)) = (interpreter, module) else {
        let missing = if get(m, "module").is_none() {
            "module"
        } else {
            "venv_python"
        };
        let msg = format!(
            "a Python worker needs both `venv_python` and `module`; `{missing}` is missing"
        );
        ctx.problem(path, msg);
        return None;
    };
    let mut ok = true;
    if module.is_empty() || !module.split('.').all(is_identifier) {
        let msg =
            format!("`{module}` is not a dotted Python module name (like `src.workers.scraper`)");
        ctx.problem(&key_path(path, "module"), msg);
        ok = false;
    }
    if let Some(f) = function.as_deref().filter(|f| !is_identifier(f)) {
        let msg = format!("`{f}` is not a Python identifier (a function name like `main`)");
        ctx.problem(&key_path(path, "function"), msg);
        ok = false;
    }
    let interpreter = if interpreter.contains('/') {
        ctx.resolve(&interpreter)
    } else if interpreter.is_empty() {
        ctx.problem(&key_path(path, "venv_python"), "must not be empty");
        return None;
    } else if let Some(found) = ctx.which(&interpreter) {
        found
    } else {
        let msg = format!("`{interpreter}` was not found on PATH (give a path to the interpreter)");
        ctx.problem(&key_path(path, "venv_python"), msg);
        return None;
    };
    ok.then_some(WorkerKind::Python {
        interpreter,
        module,
        function,
    })
}

/// An argv list (never a shell command line); `argv[0]` with a `/` resolved against the config's folder.
pub(super) fn command_argv(
    ctx: &mut Ctx,
    m: &Mapping,
    path: &str,
    key: &str,
) -> Option<Vec<String>> {
    let field = key_path(path, key);
    if let Some(Value::String(s)) = get(m, key) {
        let msg = format!(
            "expected a list (an argv, never a shell command line), e.g. [\"{}\"]",
            s.split_whitespace().collect::<Vec<_>>().join("\", \"")
        );
        ctx.problem(&field, msg);
        return None;
    }
    let mut argv: Vec<String> = ctx
        .str_list(m, path, key)?
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    match argv.first_mut() {
        None => {
            ctx.problem(&field, "must not be empty: the first item is the program");
            None
        }
        Some(first) if first.is_empty() => {
            ctx.problem(&index_path(&field, 0), "the program must not be empty");
            None
        }
        Some(first) => {
            if first.contains('/') {
                *first = ctx.resolve(first).to_string_lossy().into_owned();
            }
            Some(argv)
        }
    }
}
