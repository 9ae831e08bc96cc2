//! What the postgres adapter connects with, made from its [`Settings`] when it opens, and keeping the
//! password out of every log line and message.

use super::settings::Settings;
use crate::AdapterError;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::config::SslMode;

/// Used when `url` is absent or empty: the local server, database `postgres`.
pub const DEFAULT_URL: &str = "postgresql://postgres@127.0.0.1:5432/postgres";
/// The settings as the adapter uses them.
#[derive(Clone)]
pub struct Conn {
    /// The connection settings, parsed from `url` (URL or key=value form).
    pub pg: tokio_postgres::Config,
    /// `url` with the password replaced by `***`: what logs and errors show.
    pub shown: String,
    /// The password as written, to scrub from client messages that might quote it.
    password: Option<String>,
    /// Every object of workerhost lives in this schema (default `workerhost`).
    pub schema: String,
    /// How long a claim or renewal holds a task (`lease_seconds`, default 30 s).
    pub lease: Duration,
    /// The fallback poll (`poll_interval_ms`, default 1000).
    pub poll_interval: Duration,
    /// LISTEN for the enqueue trigger's NOTIFY (default true; false for poolers in transaction mode).
    pub notify: bool,
    /// The pool's size (`max_connections`, default 4); the LISTEN connection comes on top.
    pub max_connections: usize,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("url", &self.shown)
            .field("schema", &self.schema)
            .field("lease", &self.lease)
            .field("poll_interval", &self.poll_interval)
            .field("notify", &self.notify)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl Conn {
    /// Parses `url` (URL or key=value form) of settings that [`Settings::validate`] accepted.
    pub fn new(s: &Settings) -> Result<Conn, AdapterError> {
        let url = crate::settings::de::url_or(s.url.as_ref(), DEFAULT_URL);
        let password = password_of(url);
        let shown = redact(url);
        let mut pg = tokio_postgres::Config::from_str(url).map_err(|e| {
            AdapterError::Invalid(format!(
                "task_manager.url {shown}: {}",
                scrub_with(&e.to_string(), password.as_deref())
            ))
        })?;
        if pg.get_hosts().is_empty() {
            return Err(AdapterError::Invalid(format!(
                "task_manager.url {shown}: no host given"
            )));
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(5));
        }
        if pg.get_application_name().is_none() {
            pg.application_name("workerhost");
        }
        pg.keepalives_idle(Duration::from_secs(30));
        Ok(Conn {
            pg,
            shown,
            password,
            schema: s.schema.to_string(),
            lease: s.lease(),
            poll_interval: Duration::from_millis(s.poll_interval_ms.get()),
            notify: s.notify,
            max_connections: s.max_connections.get() as usize,
        })
    }

    /// Whether the connection must be encrypted (`sslmode=require`); `prefer` (the default) and
    /// `disable` connect in plain text.
    pub fn tls_required(&self) -> bool {
        self.pg.get_ssl_mode() == SslMode::Require
    }

    /// The channel the enqueue trigger notifies: `<schema>_tasks`.
    pub fn channel(&self) -> String {
        format!("{}_tasks", self.schema)
    }

    /// Removes the password from a message that may quote it (a client library's error).
    pub fn scrub(&self, msg: &str) -> String {
        scrub_with(msg, self.password.as_deref())
    }
}

/// `postgresql://u:secret@h/db` → `postgresql://u:***@h/db`; `host=h password=secret` →
/// `host=h password=***`.
pub fn redact(url: &str) -> String {
    if let Some(scheme_end) = url.find("://").map(|i| i + 3) {
        let rest = &url[scheme_end..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let mut out = match rest[..authority_end].rfind('@') {
            Some(at) => {
                let userinfo = &rest[..at];
                let shown = match userinfo.find(':') {
                    Some(colon) => format!("{}:***", &userinfo[..colon]),
                    None => userinfo.to_string(),
                };
                format!("{}{shown}{}", &url[..scheme_end], &rest[at..])
            }
            None => url.to_string(),
        };
        // `?password=...` in the query string.
        if let Some(i) = out.find("password=") {
            let end = out[i..].find('&').map_or(out.len(), |e| i + e);
            out.replace_range(i + "password=".len()..end, "***");
        }
        return out;
    }
    key_value_redacted(url)
}

/// The key=value form with the value of `password` replaced (quoted values included).
fn key_value_redacted(s: &str) -> String {
    let Some(i) = s.find("password") else {
        return s.to_string();
    };
    let after = &s[i + "password".len()..];
    let Some(eq) = after.find('=') else {
        return s.to_string();
    };
    if !after[..eq].trim().is_empty() {
        return s.to_string();
    }
    let value_start = i + "password".len() + eq + 1;
    let rest = &s[value_start..];
    let lead = rest.len() - rest.trim_start().len();
    let v = &rest[lead..];
    let len = if let Some(q) = v.strip_prefix('\'') {
        q.find('\'').map_or(v.len(), |e| e + 2)
    } else {
        v.find(char::is_whitespace).unwrap_or(v.len())
    };
    format!("{}***{}", &s[..value_start + lead], &v[len..])
}

/// The password as written in `url`, in either form.
fn password_of(url: &str) -> Option<String> {
    let from_url = || crate::redact::secrets(url, false).into_iter().next();
    let from_kv = || {
        let i = url.find("password=")? + "password=".len();
        let v = url[i..].trim_start_matches('\'');
        let end = v.find(['\'', ' ', '&']).unwrap_or(v.len());
        Some(v[..end].to_string())
    };
    from_url()
        .filter(|p| !p.is_empty())
        .or_else(|| from_kv().filter(|p| !p.is_empty()))
}

fn scrub_with(msg: &str, password: Option<&str>) -> String {
    match password {
        Some(p) if p.len() >= 3 => msg.replace(p, "***"),
        _ => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};

    /// What opening does with `url` and the other keys (a JSON object): deserialize each key as the
    /// config loader does (naming it), validate, connect settings.
    fn parse(url: &str, m: Value) -> Result<Conn, AdapterError> {
        let mut all = match m {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        for (k, v) in &all {
            let one = json!({ k.as_str(): v });
            serde_json::from_value::<Settings>(one)
                .map_err(|e| AdapterError::Invalid(format!("task_manager.{k}: {e}")))?;
        }
        all.insert("url".into(), url.into());
        let s: Settings = serde_json::from_value(Value::Object(all))
            .map_err(|e| AdapterError::Invalid(e.to_string()))?;
        if let Some(p) = s.validate().into_iter().next() {
            return Err(AdapterError::Invalid(p.to_string()));
        }
        Conn::new(&s)
    }

    #[test]
    fn defaults_and_both_url_forms() {
        let s = parse("", json!({})).expect("defaults");
        assert_eq!(s.schema, "workerhost");
        assert_eq!(s.lease, Duration::from_secs(30));
        assert_eq!(s.poll_interval, Duration::from_millis(1000));
        assert!(s.notify);
        assert_eq!(s.max_connections, 4);
        assert_eq!(s.channel(), "workerhost_tasks");
        assert!(!s.tls_required());
        let kv = parse(
            "host=127.0.0.1 port=5432 user=app password='s3cr et' dbname=app sslmode=require",
            json!({"schema": "jobs", "notify": false, "max_connections": 2}),
        )
        .expect("key=value");
        assert!(kv.tls_required());
        assert_eq!(kv.pg.get_dbname(), Some("app"));
        assert!(!kv.notify);
        assert_eq!(
            kv.shown,
            "host=127.0.0.1 port=5432 user=app password=*** dbname=app sslmode=require"
        );
        assert!(!format!("{kv:?}").contains("s3cr"));
    }

    #[test]
    fn the_password_never_shows() {
        let u = "postgresql://app:hunter22@127.0.0.1:5432/app?sslmode=require";
        let s = parse(u, json!({})).expect("url");
        assert_eq!(
            s.shown,
            "postgresql://app:***@127.0.0.1:5432/app?sslmode=require"
        );
        assert!(!format!("{s:?}").contains("hunter22"));
        assert_eq!(s.scrub("auth failed for hunter22"), "auth failed for ***");
        assert_eq!(
            redact("postgres://h/db?user=a&password=xyz&sslmode=disable"),
            "postgres://h/db?user=a&password=***&sslmode=disable"
        );
        let e = parse("postgresql://app:hunter22@h/db?sslmode=bogus", json!({}))
            .expect_err("bad sslmode");
        assert!(e.to_string().contains("app:***@h"), "{e}");
        assert!(!e.to_string().contains("hunter22"), "{e}");
    }

    #[test]
    fn bad_settings_name_the_field() {
        for (m, field) in [
            (json!({"schema": "Bad-Name"}), "schema"),
            (json!({"schema": "pg_x"}), "schema"),
            (json!({"notify": "yes"}), "notify"),
            (json!({"max_connections": 0}), "max_connections"),
            (json!({"poll_interval_ms": 0}), "poll_interval_ms"),
            (json!({"lease_seconds": 0.5}), "lease_seconds"),
        ] {
            let e = parse("", m).expect_err(field);
            assert!(e.to_string().contains(field), "{e}");
        }
    }
}
