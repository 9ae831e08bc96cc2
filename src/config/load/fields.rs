//! The validation context: typed field getters that report every problem (with line and field path)
//! instead of stopping at the first, plus path helpers.

use super::super::Problem;
use super::super::expand::{Env, Expansion, scalar_text};
use super::super::locate::{Lines, index_path, key_path, line_of};
use serde_yaml::{Mapping, Value};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

pub(super) struct Ctx<'a> {
    pub lines: Lines,
    pub problems: Vec<Problem>,
    pub exp: Expansion,
    /// The config file's folder (absolute).
    pub base: PathBuf,
    pub env: Env<'a>,
}

/// A field's value; an explicit `null` (`key:` with nothing after it) counts as absent.
pub(super) fn get<'v>(m: &'v Mapping, key: &str) -> Option<&'v Value> {
    m.get(key).filter(|v| !v.is_null())
}

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

impl Ctx<'_> {
    /// Records a problem at `field`, unless that field's `${...}` expansion already failed.
    pub fn problem(&mut self, field: &str, message: impl Into<String>) {
        if self.exp.failed.contains(field) {
            return;
        }
        self.problems.push(Problem {
            line: line_of(&self.lines, field),
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn wrong_type(&mut self, field: &str, expected: &str, v: &Value) {
        self.problem(field, format!("expected {expected}, found {}", kind(v)));
    }

    /// Reports every key of `m` (at `path`) that is not in `allowed`.
    pub fn check_keys(&mut self, m: &Mapping, path: &str, allowed: &[&str]) {
        for k in m.keys() {
            let Value::String(k) = k else {
                let field = key_path(path, &scalar_text(k));
                self.problem(&field, "keys must be strings");
                continue;
            };
            if allowed.contains(&k.as_str()) || (path.is_empty() && k.starts_with("x-")) {
                continue;
            }
            let hint = match allowed.iter().min_by_key(|a| distance(a, k)) {
                Some(close) if distance(close, k) <= 2 => format!("did you mean `{close}`?"),
                _ => format!("expected one of: {}", allowed.join(", ")),
            };
            let field = key_path(path, k);
            self.problem(&field, format!("unknown key `{k}` ({hint})"));
        }
    }

    /// The mapping at `path.key`, its keys checked against `allowed` (`None`: free-form).
    pub fn mapping<'v>(
        &mut self,
        m: &'v Mapping,
        path: &str,
        key: &str,
        allowed: Option<&[&str]>,
    ) -> Option<&'v Mapping> {
        let field = key_path(path, key);
        match get(m, key)? {
            Value::Mapping(inner) => {
                if let Some(allowed) = allowed {
                    self.check_keys(inner, &field, allowed);
                }
                Some(inner)
            }
            other => {
                self.wrong_type(&field, "a mapping", other);
                None
            }
        }
    }

    /// A string (a number is taken as its text: `id: 42`).
    pub fn string(&mut self, m: &Mapping, path: &str, key: &str) -> Option<String> {
        let field = key_path(path, key);
        match get(m, key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            other => {
                self.wrong_type(&field, "a string", other);
                None
            }
        }
    }

    /// Any number, integer or float. A string is accepted only where it came from `${...}`.
    pub fn number(&mut self, m: &Mapping, path: &str, key: &str) -> Option<f64> {
        let field = key_path(path, key);
        let v = get(m, key)?;
        let n = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) if self.exp.expanded.contains(&field) => s.trim().parse().ok(),
            _ => None,
        };
        if n.is_none() {
            self.wrong_type(&field, "a number", v);
        }
        n
    }

    /// A number of seconds: `> 0`, or `>= 0` with `allow_zero`.
    pub fn secs(
        &mut self,
        m: &Mapping,
        path: &str,
        key: &str,
        allow_zero: bool,
    ) -> Option<Duration> {
        let n = self.number(m, path, key)?;
        let field = key_path(path, key);
        if n < 0.0 || (n == 0.0 && !allow_zero) {
            let bound = if allow_zero {
                "must not be negative"
            } else {
                "must be greater than 0"
            };
            self.problem(&field, format!("{bound} (found {n})"));
            return None;
        }
        match Duration::try_from_secs_f64(n) {
            Ok(d) => Some(d),
            Err(_) => {
                self.problem(&field, format!("{n} is not a usable number of seconds"));
                None
            }
        }
    }

    /// A whole number `>= min`. A string is accepted only where it came from `${...}`.
    pub fn uint(&mut self, m: &Mapping, path: &str, key: &str, min: u64) -> Option<u64> {
        let field = key_path(path, key);
        let v = get(m, key)?;
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) if self.exp.expanded.contains(&field) => s.trim().parse().ok(),
            _ => None,
        };
        match n {
            None => {
                let neg = matches!(v, Value::Number(n) if n.as_i64().is_some_and(|i| i < 0));
                let what = if neg {
                    "a non-negative whole number"
                } else {
                    "a whole number"
                };
                self.wrong_type(&field, what, v);
                None
            }
            Some(n) if n < min => {
                self.problem(&field, format!("must be at least {min} (found {n})"));
                None
            }
            Some(n) => Some(n),
        }
    }

    pub fn u32(&mut self, m: &Mapping, path: &str, key: &str, min: u64) -> Option<u32> {
        let n = self.uint(m, path, key, min)?;
        let r = u32::try_from(n).ok();
        if r.is_none() {
            self.problem(&key_path(path, key), format!("{n} is too large"));
        }
        r
    }

    pub fn usize(&mut self, m: &Mapping, path: &str, key: &str, min: u64) -> Option<usize> {
        let n = self.uint(m, path, key, min)?;
        let r = usize::try_from(n).ok();
        if r.is_none() {
            self.problem(&key_path(path, key), format!("{n} is too large"));
        }
        r
    }

    /// A boolean. A string `true`/`false` is accepted only where it came from `${...}`.
    pub fn boolean(&mut self, m: &Mapping, path: &str, key: &str) -> Option<bool> {
        let field = key_path(path, key);
        let v = get(m, key)?;
        let b = match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) if self.exp.expanded.contains(&field) => s.trim().parse().ok(),
            _ => None,
        };
        if b.is_none() {
            self.wrong_type(&field, "true or false", v);
        }
        b
    }

    /// A list of strings, each with its index. Items of another type are reported and left out.
    pub fn str_list(&mut self, m: &Mapping, path: &str, key: &str) -> Option<Vec<(usize, String)>> {
        let field = key_path(path, key);
        let items = match get(m, key)? {
            Value::Sequence(items) => items,
            other => {
                self.wrong_type(&field, "a list of strings", other);
                return None;
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push((i, s.clone())),
                Value::Number(n) => out.push((i, n.to_string())),
                other => self.wrong_type(&index_path(&field, i), "a string", other),
            }
        }
        Some(out)
    }

    /// `p` resolved against the config file's folder (`.` components dropped; nothing needs to exist).
    pub fn resolve(&self, p: &str) -> PathBuf {
        let joined = self.base.join(p);
        let mut out = PathBuf::new();
        for c in joined.components() {
            if c != Component::CurDir {
                out.push(c);
            }
        }
        out
    }

    /// Finds an executable `name` on the `PATH` of the environment closure; absolute.
    pub fn which(&self, name: &str) -> Option<PathBuf> {
        let path = (self.env)("PATH")?;
        std::env::split_paths(&path)
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|dir| dir.join(name))
            .find(|cand| is_executable(cand))
            .map(|cand| std::path::absolute(&cand).unwrap_or(cand))
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A YAML value as JSON (for `metadata` and adapter settings). Tags are dropped; non-string keys become
/// their text; a non-finite float is an error.
pub(super) fn to_json(v: &Value) -> Result<serde_json::Value, String> {
    Ok(match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u.into()
            } else if let Some(i) = n.as_i64() {
                i.into()
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(serde_json::Value::Number)
                    .ok_or_else(|| format!("{n} cannot be represented in JSON"))?
            }
        }
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Sequence(items) => items.iter().map(to_json).collect::<Result<_, _>>()?,
        Value::Mapping(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                out.insert(scalar_text(k), to_json(v)?);
            }
            serde_json::Value::Object(out)
        }
        Value::Tagged(t) => to_json(&t.value)?,
    })
}

/// Whether `s` is a Python identifier (ASCII or Unicode letters, digits, `_`; not starting with a digit).
pub(super) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// Levenshtein distance, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
