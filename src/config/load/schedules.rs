//! `schedules:` (section 7): each entry's cron expression and time zone are parsed here, so that a bad
//! one is a config error with file, line and field like any other.

use super::super::locate::{index_path, key_path};
use super::super::schedule::{ScheduleConfig, parse_cron, parse_timezone};
use super::super::schema::{self, keys};
use super::fields::{Ctx, get, kind, to_json};
use serde_yaml::{Mapping, Value};
use std::collections::HashSet;

pub(super) fn schedules(ctx: &mut Ctx, root: &Mapping) -> Vec<ScheduleConfig> {
    let items = match get(root, "schedules") {
        None => return Vec::new(),
        Some(Value::Sequence(items)) => items,
        Some(other) => {
            let msg = format!("expected a list of schedules, found {}", kind(other));
            ctx.problem("schedules", msg);
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let path = index_path("schedules", i);
        let Value::Mapping(m) = item else {
            let msg = format!("expected a schedule (a mapping), found {}", kind(item));
            ctx.problem(&path, msg);
            continue;
        };
        if let Some(Value::String(name)) = get(m, "name")
            && !names.insert(name.clone())
        {
            let msg = format!("schedule name `{name}` is used twice (tick ids must differ)");
            ctx.problem(&key_path(&path, "name"), msg);
        }
        out.extend(schedule(ctx, m, &path));
    }
    out
}

fn schedule(ctx: &mut Ctx, m: &Mapping, path: &str) -> Option<ScheduleConfig> {
    ctx.check_keys(m, path, keys::<schema::Schedule>());
    let field = |k: &str| key_path(path, k);
    let name = ctx.string(m, path, "name");
    match name.as_deref() {
        None => ctx.problem(
            path,
            "a schedule needs `name` (it starts each tick's task id)",
        ),
        Some(n) if n.trim().is_empty() || n.contains(char::is_whitespace) => ctx.problem(
            &field("name"),
            format!("`{n}` is not a name (no spaces, not empty)"),
        ),
        _ => {}
    }
    let cron_text = ctx.string(m, path, "cron");
    let cron = match cron_text.as_deref() {
        None => {
            ctx.problem(path, "a schedule needs `cron` (e.g. \"0 3 * * *\")");
            None
        }
        Some(c) => parse_cron(c)
            .map_err(|e| ctx.problem(&field("cron"), e))
            .ok(),
    };
    let timezone_name = ctx
        .string(m, path, "timezone")
        .unwrap_or_else(|| "UTC".to_string());
    let timezone = parse_timezone(&timezone_name)
        .map_err(|e| ctx.problem(&field("timezone"), e))
        .ok();
    let task_type = ctx.string(m, path, "type").filter(|t| !t.is_empty());
    if task_type.is_none() {
        ctx.problem(
            path,
            "a schedule needs `type` (the task type each tick enqueues)",
        );
    }
    let params = match get(m, "params").map(to_json) {
        None => Some(serde_json::Map::new()),
        Some(Ok(serde_json::Value::Object(p))) => Some(p),
        Some(Ok(_)) => {
            ctx.problem(&field("params"), "expected a mapping (the task's params)");
            None
        }
        Some(Err(e)) => {
            ctx.problem(&field("params"), e);
            None
        }
    };
    Some(ScheduleConfig {
        name: name?,
        cron_text: cron_text?,
        cron: cron?,
        timezone_name,
        timezone: timezone?,
        task_type: task_type?,
        params: params?,
    })
}
