//! The `task_manager:` settings of the postgres adapter (section 4b).

use crate::settings::Problem;
use crate::settings::de::{Seconds, Text};
use serde::Deserialize;
use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

/// Longest schema name accepted: the NOTIFY channel `<schema>_tasks` must stay within 63 bytes.
const MAX_SCHEMA: usize = 50;

/// `type: postgres`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `postgresql://...` or the key=value form; default the local server, database `postgres`. Shown
    /// with the password hidden everywhere.
    pub url: Option<Text>,
    /// Every object of workerhost lives in this schema (default `workerhost`).
    pub schema: Text,
    /// How long a claim or renewal holds a task (default 30 s, at least 1).
    pub lease_seconds: Seconds,
    /// The fallback poll (default 1000).
    pub poll_interval_ms: NonZeroU64,
    /// LISTEN for the enqueue trigger's NOTIFY (default true; false for poolers in transaction mode).
    pub notify: bool,
    /// The pool's size (default 4, at most 1000); the LISTEN connection comes on top.
    pub max_connections: NonZeroU32,
    /// Default `max_deliveries` of every worker.
    pub max_deliveries: Option<NonZeroU32>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            url: None,
            schema: "workerhost".into(),
            lease_seconds: Seconds::secs(30),
            poll_interval_ms: NonZeroU64::MIN.saturating_add(999),
            notify: true,
            max_connections: NonZeroU32::MIN.saturating_add(3),
            max_deliveries: None,
        }
    }
}

impl Settings {
    pub fn lease(&self) -> Duration {
        self.lease_seconds.0
    }

    /// Checks what the types alone do not; every problem, each naming its field.
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        // (A build without the postgres client cannot read a url; it refuses `type: postgres` anyway.)
        #[cfg(feature = "postgres")]
        if let Some(url) = self.url.as_ref().filter(|u| !u.trim().is_empty())
            && let Some(problem) = super::conn::url_problem(url)
        {
            out.push(Problem::new("url", problem));
        }
        if !schema_ok(&self.schema) {
            out.push(Problem::new(
                "schema",
                format!(
                    "`{}` must be lower-case letters, digits and _ (not starting with a digit or pg_, not an SQL reserved word), at most {MAX_SCHEMA} bytes",
                    self.schema
                ),
            ));
        }
        if self.lease_seconds.0 < Duration::from_secs(1) {
            out.push(Problem::new(
                "lease_seconds",
                "expected a number of seconds, at least 1",
            ));
        }
        if self.max_connections.get() > 1000 {
            out.push(Problem::new(
                "max_connections",
                "expected a number from 1 to 1000",
            ));
        }
        out
    }
}

/// Lower-case letters, digits and `_`, not starting with a digit: usable unquoted in SQL and in the
/// channel name (`LISTEN workerhost_tasks` from psql works as typed).
fn schema_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SCHEMA
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with("pg_")
        && !RESERVED.contains(&s)
}

/// PostgreSQL's reserved key words (those it allows as no table or schema name unquoted), from its
/// documentation's appendix C: `schema: select` would break every statement.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];
