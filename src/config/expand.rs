//! `${...}` expansion in the string values of a parsed config (never in keys, never in comments: it runs
//! on the parsed tree, after YAML has dropped the comments).
//!
//! Syntax, in any string value:
//! - `${VAR}`: the environment variable `VAR`; unset is a problem
//!   (`environment variable VAR is not set (no default given)`). Set but empty expands to empty.
//! - `${VAR:-default}`: `VAR` when it is set and not empty, else `default`. The default may be empty
//!   (`${HOSTNAME:-}`) and may itself contain `${...}`; it is only evaluated when it is used.
//! - `${file:/path/to/secret}`: the file's content with one trailing newline (`\n` or `\r\n`) removed.
//!   A relative path is taken from the config file's folder; the path may contain `${VAR}`. A file that
//!   cannot be read is a problem naming it.
//! - `$$` is a literal `$`, so `$${VAR}` gives the literal text `${VAR}`. A `$` followed by anything other
//!   than `{` or `$` is kept as it is (`cost: $5`).
//!
//! Variable names are `[A-Za-z_][A-Za-z0-9_]*`. The environment comes in through a lookup closure, so that
//! tests never touch the process environment.

use super::locate::{index_path, key_path};
use serde_yaml::Value;
use std::collections::HashSet;
use std::iter::Peekable;
use std::path::Path;
use std::str::Chars;

/// Looks up an environment variable.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// What expanding a whole tree found.
#[derive(Debug, Default)]
pub(crate) struct Expansion {
    /// `(field path, message)` for every failed expansion.
    pub problems: Vec<(String, String)>,
    /// Paths of strings that contained an expansion: a number or boolean field accepts a string there
    /// (`timeout: ${TIMEOUT:-300}`).
    pub expanded: HashSet<String>,
    /// Paths whose expansion failed; later checks stay quiet about them.
    pub failed: HashSet<String>,
}

/// Expands every string value in `value` (recursively; mapping keys are left alone).
pub(crate) fn expand_tree(value: &mut Value, env: Env, base: &Path) -> Expansion {
    let mut out = Expansion::default();
    walk(value, "", env, base, &mut out);
    out
}

fn walk(value: &mut Value, path: &str, env: Env, base: &Path, out: &mut Expansion) {
    match value {
        Value::String(s) => {
            if !s.contains('$') {
                return;
            }
            match expand_str(s, env, base) {
                Ok(v) => {
                    *s = v;
                    out.expanded.insert(path.to_string());
                }
                Err(errors) => {
                    out.failed.insert(path.to_string());
                    for e in errors {
                        out.problems.push((path.to_string(), e));
                    }
                }
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &index_path(path, i), env, base, out);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => scalar_text(other),
                };
                walk(v, &key_path(path, &key), env, base, out);
            }
        }
        Value::Tagged(t) => walk(&mut t.value, path, env, base, out),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The text of a non-string mapping key, for paths.
pub(crate) fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "null".to_string(),
        _ => "?".to_string(),
    }
}

/// Expands one string. On failure, every problem found in it.
pub(crate) fn expand_str(s: &str, env: Env, base: &Path) -> Result<String, Vec<String>> {
    let mut errors = Vec::new();
    let mut chars = s.chars().peekable();
    let out = expand_until(&mut chars, false, env, base, &mut errors);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Expands until the end of input, or (with `in_braces`) until the `}` that closes the current `${`,
/// which is consumed.
fn expand_until(
    chars: &mut Peekable<Chars>,
    in_braces: bool,
    env: Env,
    base: &Path,
    errors: &mut Vec<String>,
) -> String {
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '}' if in_braces => return out,
            '$' => match chars.peek() {
                Some('$') => {
                    chars.next();
                    out.push('$');
                }
                Some('{') => {
                    chars.next();
                    out.push_str(&reference(chars, env, base, errors));
                }
                _ => out.push('$'),
            },
            c => out.push(c),
        }
    }
    if in_braces {
        errors.push("unterminated `${` (missing `}`)".to_string());
    }
    out
}

/// Reads one reference after its `${` and returns its value.
fn reference(
    chars: &mut Peekable<Chars>,
    env: Env,
    base: &Path,
    errors: &mut Vec<String>,
) -> String {
    let mut name = String::new();
    while let Some(&c) = chars.peek() {
        if c == '}' || c == ':' {
            break;
        }
        name.push(c);
        chars.next();
    }
    match chars.next() {
        None => {
            errors.push(format!("unterminated `${{{name}` (missing `}}`)"));
            String::new()
        }
        Some(':') if name == "file" => {
            let file = expand_until(chars, true, env, base, errors);
            read_secret(&file, base, errors)
        }
        Some(':') => {
            if chars.peek() != Some(&'-') {
                let rest: String = chars.take_while(|&c| c != '}').collect();
                errors.push(format!(
                    "unsupported expansion `${{{name}:{rest}}}` (use `${{VAR}}`, `${{VAR:-default}}` or `${{file:/path}}`)"
                ));
                return String::new();
            }
            chars.next();
            let mut default_errors = Vec::new();
            let default = expand_until(chars, true, env, base, &mut default_errors);
            if !valid_name(&name) {
                errors.push(invalid_name(&name));
                return String::new();
            }
            match env(&name) {
                Some(v) if !v.is_empty() => v,
                _ => {
                    errors.extend(default_errors);
                    default
                }
            }
        }
        Some(_) => {
            // The closing `}`.
            if !valid_name(&name) {
                errors.push(invalid_name(&name));
                return String::new();
            }
            env(&name).unwrap_or_else(|| {
                errors.push(format!(
                    "environment variable {name} is not set (no default given)"
                ));
                String::new()
            })
        }
    }
}

fn read_secret(file: &str, base: &Path, errors: &mut Vec<String>) -> String {
    if file.is_empty() {
        errors.push("`${file:...}` needs a path".to_string());
        return String::new();
    }
    let path = base.join(file);
    match std::fs::read_to_string(&path) {
        Ok(mut text) => {
            if text.ends_with("\r\n") {
                text.truncate(text.len() - 2);
            } else if text.ends_with('\n') {
                text.truncate(text.len() - 1);
            }
            text
        }
        Err(e) => {
            errors.push(format!("cannot read secret file {}: {e}", path.display()));
            String::new()
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn invalid_name(name: &str) -> String {
    format!("`${{{name}}}`: invalid environment variable name (expected letters, digits and `_`)")
}
