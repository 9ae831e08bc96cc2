//! `defaults:` and the per-field readers a worker shares with it (retry, limits, user, env, lists of
//! names): each reads one key of a mapping, reports what is wrong with its line and field, and falls
//! back to what the worker inherits.

use super::super::locate::key_path;
use super::super::schema::{self, keys};
use super::super::{DEFAULT_MAX_OUTPUT_BYTES, Limits, RetryPolicy, RunAs};
use super::fields::{Ctx, kind};
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// What every worker inherits.
pub(super) struct Defaults {
    pub(super) timeout: Duration,
    pub(super) max_retries: u32,
    pub(super) max_deliveries: Option<u32>,
    pub(super) retry: RetryPolicy,
    pub(super) max_output_bytes: usize,
    pub(super) concurrency: Option<usize>,
    pub(super) env: BTreeMap<String, String>,
    pub(super) env_passthrough: Vec<String>,
    pub(super) limits: Limits,
    pub(super) retry_on_resource_limit: bool,
    pub(super) user: Option<RunAs>,
}

/// Reads `defaults:`. `tm_max_deliveries` (`task_manager.max_deliveries`) is the fallback for
/// `max_deliveries` before `max_retries + 3`.
pub(super) fn defaults(ctx: &mut Ctx, root: &Mapping, tm_max_deliveries: Option<u32>) -> Defaults {
    let empty = Mapping::new();
    let m = ctx
        .mapping(root, "", "defaults", Some(keys::<schema::Defaults>()))
        .unwrap_or(&empty);
    let p = "defaults";
    Defaults {
        timeout: ctx
            .secs(m, p, "timeout", false)
            .unwrap_or(Duration::from_secs(300)),
        max_retries: ctx.u32(m, p, "max_retries", 0).unwrap_or(3),
        max_deliveries: ctx.u32(m, p, "max_deliveries", 1).or(tm_max_deliveries),
        retry: retry(ctx, m, p, &RetryPolicy::default()),
        max_output_bytes: ctx
            .usize(m, p, "max_output_bytes", 1)
            .unwrap_or(DEFAULT_MAX_OUTPUT_BYTES),
        concurrency: ctx.usize(m, p, "concurrency", 1),
        env: env_map(ctx, m, p).unwrap_or_default(),
        env_passthrough: names(ctx, m, p, "env_passthrough").unwrap_or_default(),
        limits: limits(ctx, m, p),
        retry_on_resource_limit: ctx
            .boolean(m, p, "retry_on_resource_limit")
            .unwrap_or(false),
        user: user(ctx, m, p),
    }
}

/// `limits:` under `path` (each a whole number of at least 1).
pub(super) fn limits(ctx: &mut Ctx, m: &Mapping, path: &str) -> Limits {
    let Some(l) = ctx.mapping(m, path, "limits", Some(keys::<schema::Limits>())) else {
        return Limits::default();
    };
    let p = key_path(path, "limits");
    Limits {
        memory_mb: ctx.uint(l, &p, "memory_mb", 1),
        cpu_seconds: ctx.uint(l, &p, "cpu_seconds", 1),
        open_files: ctx.uint(l, &p, "open_files", 1),
        processes: ctx.uint(l, &p, "processes", 1),
    }
}

/// `user:` under `path`, looked up now (an unknown user, or a host that is not root, is a problem).
pub(super) fn user(ctx: &mut Ctx, m: &Mapping, path: &str) -> Option<RunAs> {
    let name = ctx.string(m, path, "user")?;
    match RunAs::resolve(&name) {
        Ok(u) => Some(u),
        Err(e) => {
            ctx.problem(&key_path(path, "user"), e);
            None
        }
    }
}

/// `retry:` under `path`, each field falling back to `inherit`'s.
pub(super) fn retry(ctx: &mut Ctx, m: &Mapping, path: &str, inherit: &RetryPolicy) -> RetryPolicy {
    let Some(r) = ctx.mapping(m, path, "retry", Some(keys::<schema::Retry>())) else {
        return inherit.clone();
    };
    let p = key_path(path, "retry");
    let multiplier = ctx.number(r, &p, "backoff_multiplier");
    if multiplier.is_some_and(|x| !x.is_finite() || x <= 0.0) {
        ctx.problem(
            &key_path(&p, "backoff_multiplier"),
            "must be a number greater than 0",
        );
    }
    RetryPolicy {
        base_delay: ctx
            .secs(r, &p, "base_delay_seconds", true)
            .unwrap_or(inherit.base_delay),
        multiplier: multiplier.unwrap_or(inherit.multiplier),
        max_delay: ctx
            .secs(r, &p, "max_delay_seconds", true)
            .unwrap_or(inherit.max_delay),
        jitter: ctx.boolean(r, &p, "jitter").unwrap_or(inherit.jitter),
        in_host_max: ctx
            .secs(r, &p, "in_host_max_seconds", true)
            .unwrap_or(inherit.in_host_max),
    }
}

/// `env:`: names to strings (numbers and booleans are taken as their text).
pub(super) fn env_map(ctx: &mut Ctx, m: &Mapping, path: &str) -> Option<BTreeMap<String, String>> {
    let e = ctx.mapping(m, path, "env", None)?;
    let p = key_path(path, "env");
    let mut out = BTreeMap::new();
    for (k, v) in e {
        let Value::String(k) = k else {
            ctx.problem(&p, "variable names must be strings");
            continue;
        };
        let field = key_path(&p, k);
        if k.is_empty() || k.contains(['=', '\0']) {
            ctx.problem(
                &field,
                format!("`{k}` is not a valid environment variable name"),
            );
        }
        match v {
            Value::String(s) => {
                out.insert(k.clone(), s.clone());
            }
            Value::Number(n) => {
                out.insert(k.clone(), n.to_string());
            }
            Value::Bool(b) => {
                out.insert(k.clone(), b.to_string());
            }
            other => ctx.problem(&field, format!("expected a string, found {}", kind(other))),
        }
    }
    Some(out)
}

pub(super) fn names(ctx: &mut Ctx, m: &Mapping, path: &str, key: &str) -> Option<Vec<String>> {
    Some(
        ctx.str_list(m, path, key)?
            .into_iter()
            .map(|(_, s)| s)
            .collect(),
    )
}
