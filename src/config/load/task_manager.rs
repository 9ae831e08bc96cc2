//! `task_manager:`. The adapter's own settings struct types, defaults and checks it
//! (`workerhost_adapters::settings`); this module only finds every problem's line and reports them all at
//! once: it checks the keys against those of every adapter, deserializes each of the named adapter's
//! keys on its own (every field has a default), then all of them together, then runs its `validate`.

use super::super::locate::key_path;
use super::fields::{Ctx, to_json};
use serde_json::{Map as JsonMap, Value as Json};
use serde_yaml::{Mapping, Value};
use workerhost_adapters::TaskManagerSettings;
use workerhost_adapters::settings::KINDS;

const P: &str = "task_manager";

/// The task manager's settings; `None` when there were problems (all of them recorded in `ctx`).
pub(super) fn task_manager(ctx: &mut Ctx, root: &Mapping) -> Option<TaskManagerSettings> {
    let empty = Mapping::new();
    let m = ctx.mapping(root, "", P, None).unwrap_or(&empty);
    let kind = ctx
        .string(m, P, "type")
        .unwrap_or_else(|| "sqlite".to_string());
    let Some(keys) = TaskManagerSettings::keys(&kind) else {
        let msg = format!(
            "unknown task manager type `{kind}` (expected {})",
            KINDS.join(", ")
        );
        ctx.problem(&key_path(P, "type"), msg);
        return None;
    };
    // A key of another adapter is let through (and ignored), as one file may serve several types
    // (`type: ${WORKERHOST_TM_TYPE}` with `url`, `path` and `api_key` all set); a key of none is a problem.
    let mut allowed = vec!["type"];
    allowed.extend(
        KINDS
            .iter()
            .filter_map(|k| TaskManagerSettings::keys(k))
            .flatten(),
    );
    allowed.sort_unstable();
    allowed.dedup();
    ctx.check_keys(m, P, &allowed);
    let mut fields = JsonMap::new();
    let mut ok = true;
    for (k, v) in m {
        let Value::String(k) = k else { continue };
        if k == "type" || v.is_null() || !keys.contains(&k.as_str()) {
            continue;
        }
        match field(ctx, &kind, k, v) {
            Ok(value) => {
                fields.insert(k.clone(), value);
            }
            Err(message) => {
                ctx.problem(&key_path(P, k), message);
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    fields.insert("type".into(), Json::String(kind));
    let mut settings = match serde_json::from_value::<TaskManagerSettings>(Json::Object(fields)) {
        Ok(s) => s,
        Err(e) => {
            ctx.problem(P, e.to_string());
            return None;
        }
    };
    let problems = settings.validate();
    for p in &problems {
        ctx.problem(&key_path(P, &p.field), p.message.clone());
    }
    settings.resolve_paths(|p| ctx.resolve(&p.to_string_lossy()));
    problems.is_empty().then_some(settings)
}

/// One key's value as the adapter takes it, or what is wrong with it. A string that came from `${...}`
/// is tried as written and, failing that, typed as YAML would type it unquoted, so that
/// `lease_seconds: ${LEASE:-30}` is a number while `api_key: ${KEY}` stays the text it expanded to.
fn field(ctx: &Ctx, kind: &str, key: &str, v: &Value) -> Result<Json, String> {
    let alone = |value: &Json| {
        let mut one = JsonMap::new();
        one.insert("type".into(), Json::String(kind.to_string()));
        one.insert(key.to_string(), value.clone());
        serde_json::from_value::<TaskManagerSettings>(Json::Object(one)).map_err(|e| e.to_string())
    };
    let value = to_json(v)?;
    let first = alone(&value);
    let expanded = ctx.exp.expanded.contains(&key_path(P, key));
    match (first, v) {
        (Ok(_), _) => Ok(value),
        (Err(_), Value::String(s)) if expanded => {
            let typed = match serde_yaml::from_str::<Value>(s) {
                Ok(t @ (Value::Number(_) | Value::Bool(_))) => to_json(&t)?,
                _ => value,
            };
            alone(&typed).map(|_| typed)
        }
        (Err(e), _) => Err(e),
    }
}
