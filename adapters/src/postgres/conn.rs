//! What the postgres adapter connects with, made from its [`Settings`] when it opens, and keeping the
//! password out of every log line and message.

use super::settings::Settings;
use crate::AdapterError;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::config::SslMode;

/// Used when `url` is absent or empty: the local server, database `postgres`.
pub const DEFAULT_URL: &str = "postgresql://postgres@127.0.0.1:5432/postgres";
/// Where the local server's socket is when `url` names no host (`postgresql:///app`), as for libpq.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
/// The settings as the adapter uses them.
#[derive(Clone)]
pub struct Conn {
    /// The connection settings, parsed from `url` (URL or key=value form).
    pub pg: tokio_postgres::Config,
    /// `url` with the password replaced by `***`: what logs and errors show.
    pub shown: String,
    /// The password as written (and as read), to scrub from client messages that might quote it.
    password: Vec<String>,
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
        let Parsed {
            mut pg,
            shown,
            password,
        } = parse_url(url)
            .map_err(|problem| AdapterError::Invalid(format!("task_manager.url {problem}")))?;
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
        scrub_with(msg, &self.password)
    }
}

/// A `url` as the client reads it, with what may be shown of it.
struct Parsed {
    pg: tokio_postgres::Config,
    shown: String,
    password: Vec<String>,
}

/// Reads `url` (URL or key=value form); the problem, with the password hidden, if it is not one the
/// client can connect with.
fn parse_url(url: &str) -> Result<Parsed, String> {
    let parsed = tokio_postgres::Config::from_str(url);
    let password = password_of(url, parsed.as_ref().ok());
    let shown = scrub_with(&redact(url), &password);
    let mut pg =
        parsed.map_err(|e| format!("{shown}: {}", scrub_with(&error_chain(&e), &password)))?;
    if pg.get_hosts().is_empty() {
        // As libpq does (Debian's build): no host is the local server's socket.
        pg.host(DEFAULT_SOCKET_DIR);
    }
    Ok(Parsed {
        pg,
        shown,
        password,
    })
}

/// The problem with a `url` (see [`parse_url`]), for the config's validation.
pub fn url_problem(url: &str) -> Option<String> {
    parse_url(url).err()
}

/// `postgresql://u:secret@h/db` → `postgresql://u:***@h/db`; `host=h password=secret` →
/// `host=h password=***`. Errs on the side of hiding: in the URL form the user part ends at the *last*
/// `@` (a password may hold `/`, `?`, `#` or `@` unencoded, and the client accepts them), and a
/// key=value string that cannot be read is hidden from its first `password` on.
pub fn redact(url: &str) -> String {
    if let Some(scheme_end) = url.find("://").map(|i| i + 3) {
        let rest = &url[scheme_end..];
        let mut out = match rest.rfind('@') {
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
        let mut from = 0;
        while let Some(i) = out[from..].find("password=").map(|i| from + i) {
            let start = i + "password=".len();
            let end = out[start..].find('&').map_or(out.len(), |e| start + e);
            out.replace_range(start..end, "***");
            from = start + 3;
        }
        return out;
    }
    key_value_redacted(url)
}

/// The key=value form with the value of every `password` key replaced, read as libpq reads it (values
/// quoted with `'`, backslash escapes); what cannot be read is hidden from its first `password` on.
fn key_value_redacted(s: &str) -> String {
    match key_values(s) {
        Some(pairs) => {
            let mut out = s.to_string();
            for (key, value) in pairs.into_iter().rev() {
                if &s[key.clone()] == "password" {
                    out.replace_range(value, "***");
                }
            }
            out
        }
        None => match s.find("password") {
            Some(i) => format!("{}password=***", &s[..i]),
            None => s.to_string(),
        },
    }
}

/// The byte ranges of each key and its value (quotes included) in a key=value string; `None` if it is
/// not one.
fn key_values(s: &str) -> Option<Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>> {
    let b = s.as_bytes();
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut pairs = Vec::new();
    let mut i = skip_ws(0);
    while i < b.len() {
        let k0 = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = k0..i;
        i = skip_ws(i);
        if b.get(i) != Some(&b'=') || key.is_empty() {
            return None;
        }
        i = skip_ws(i + 1);
        let v0 = i;
        if b.get(i) == Some(&b'\'') {
            i += 1;
            loop {
                match b.get(i) {
                    None => return None,
                    Some(b'\\') => i += 2,
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
        }
        let end = i.min(b.len());
        pairs.push((key, v0..end));
        i = skip_ws(end);
    }
    Some(pairs)
}

/// The password as written in `url`, in either form, and as the client reads it.
fn password_of(url: &str, parsed: Option<&tokio_postgres::Config>) -> Vec<String> {
    let mut out: Vec<String> = crate::redact::secrets(url, false);
    if !url.contains("://")
        && let Some(pairs) = key_values(url)
    {
        for (k, v) in pairs {
            if &url[k] == "password" {
                out.push(url[v].trim_matches('\'').to_string());
            }
        }
    }
    if let Some(p) = parsed.and_then(|c| c.get_password()) {
        out.push(String::from_utf8_lossy(p).into_owned());
    }
    out.retain(|p| !p.is_empty());
    out.sort_by_key(|p| std::cmp::Reverse(p.len()));
    out.dedup();
    out
}

/// An error with its causes, `a: b: c` (the client's own message is often only the first: "invalid
/// connection string", "error connecting to server").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !out.contains(&more) {
            out = format!("{out}: {more}");
        }
        cause = c.source();
    }
    out
}

/// `msg` without any of `secrets` (the longest first; those under 3 bytes would hide too much else).
fn scrub_with(msg: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|p| p.len() >= 3)
        .fold(msg.to_string(), |m, p| m.replace(p.as_str(), "***"))
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
    fn passwords_with_odd_characters_or_keys_never_show() {
        for (url, secret) in [
            (
                "host=127.0.0.1 user=nouser dbname=password_db password=Hunter2Secret",
                "Hunter2Secret",
            ),
            (
                "host=h user=password_admin password=Hunter2Secret",
                "Hunter2Secret",
            ),
            ("host=h password='Hunter2\\'Secret' dbname=d", "Secret"),
            ("host=h password = 'a b Hunter2' dbname=d", "Hunter2"),
            (
                "postgresql://nouser:Hunter2/Secret@127.0.0.1:5432/test",
                "Hunter2",
            ),
            (
                "postgresql://nouser:Hunter2#Secret@127.0.0.1:5432/test",
                "Hunter2",
            ),
            (
                "postgresql://nouser:Hunter2?Secret@127.0.0.1:5432/test",
                "Hunter2",
            ),
            (
                "postgresql://nouser:Hun@ter2Secret@127.0.0.1:5432/test",
                "ter2Secret",
            ),
            (
                "postgresql://h/db?password=Hunter2Secret&password=Other2Secret",
                "Secret",
            ),
            ("host=h password='Hunter2Secret", "Hunter2Secret"),
        ] {
            let shown = redact(url);
            assert!(!shown.contains(secret), "{url} shown as {shown}");
            if let Ok(c) = parse(url, json!({})) {
                assert!(!c.shown.contains(secret), "{url} shown as {}", c.shown);
                assert!(!format!("{c:?}").contains(secret));
            }
        }
        assert_eq!(
            redact("host=h user=password_admin password=x dbname=password_db"),
            "host=h user=password_admin password=*** dbname=password_db"
        );
        assert_eq!(
            redact("postgresql://u:p/q@h:5432/db?sslmode=disable"),
            "postgresql://u:***@h:5432/db?sslmode=disable"
        );
        // A string that is not a connection string names the reason, not only "invalid".
        let e = parse("host=h port=notaport password=Hunter2Secret", json!({})).expect_err("port");
        assert!(e.to_string().contains("port"), "{e}");
        assert!(!e.to_string().contains("Hunter2Secret"), "{e}");
    }

    #[test]
    fn a_bad_url_is_a_problem_of_the_url_field_with_its_reason() {
        for (url, reason) in [
            ("postgresql://app:Hunter2Secret@h/db?bogus=1", "bogus"),
            (
                "postgresql://app:Hunter2Secret@h/db?sslmode=verify-full",
                "sslmode",
            ),
            ("host=h port=notaport password=Hunter2Secret", "port"),
            ("postgresql://app:Hunter2Secret@h:99999/db", "port"),
        ] {
            let s: Settings = serde_json::from_value(json!({ "url": url })).expect("settings");
            let problems = s.validate();
            let p = problems.first().map(|p| p.to_string()).unwrap_or_default();
            assert!(
                p.contains("url") && p.contains(reason),
                "{url}: {problems:?}"
            );
            assert!(!p.contains("Hunter2Secret"), "{p}");
        }
    }

    #[test]
    fn no_host_is_the_local_socket() {
        let c = parse("postgresql:///app", json!({})).expect("a socket url");
        assert_eq!(
            c.pg.get_hosts(),
            [tokio_postgres::config::Host::Unix(
                DEFAULT_SOCKET_DIR.into()
            )]
        );
    }

    #[test]
    fn bad_settings_name_the_field() {
        for (m, field) in [
            (json!({"schema": "Bad-Name"}), "schema"),
            (json!({"schema": "pg_x"}), "schema"),
            (json!({"schema": "select"}), "schema"),
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
