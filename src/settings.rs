//! Settings that the command line, the config file and the environment can all set, resolved in the
//! order flag > config file > environment variable > default.

use crate::config::HostConfig;

/// Values given on the command line (`None`: not given).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub concurrency: Option<usize>,
    pub listen: Option<String>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    pub host_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub concurrency: usize,
    /// `off` disables the HTTP server.
    pub listen: String,
    pub log_level: String,
    pub json_logs: bool,
    /// The configured id (or hostname-pid), without the per-start suffix.
    pub host_name: String,
}

pub const DEFAULT_CONCURRENCY: usize = 8;
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Resolves every setting; an environment variable that does not parse is an error naming it.
pub fn resolve(
    flags: &Flags,
    file: &HostConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, String> {
    let env_nonempty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let concurrency = match (flags.concurrency, file.concurrency) {
        (Some(c), _) | (None, Some(c)) => c,
        (None, None) => match env_nonempty("WORKERHOST_CONCURRENCY") {
            Some(v) => v.trim().parse::<usize>().map_err(|_| {
                format!("WORKERHOST_CONCURRENCY={v:?} is not a positive whole number")
            })?,
            None => DEFAULT_CONCURRENCY,
        },
    };
    if concurrency == 0 {
        return Err("concurrency must be at least 1".into());
    }
    let pick = |flag: &Option<String>, file: &Option<String>, var: &str, default: &str| {
        flag.clone()
            .or_else(|| file.clone())
            .or_else(|| env_nonempty(var))
            .unwrap_or_else(|| default.to_string())
    };
    let listen = pick(
        &flags.listen,
        &file.listen,
        "WORKERHOST_LISTEN",
        DEFAULT_LISTEN,
    );
    let log_level = pick(
        &flags.log_level,
        &file.log_level,
        "WORKERHOST_LOG_LEVEL",
        "info",
    );
    let log_format = pick(
        &flags.log_format,
        &file.log_format,
        "WORKERHOST_LOG_FORMAT",
        "text",
    );
    let json_logs = match log_format.as_str() {
        "json" => true,
        "text" => false,
        other => return Err(format!("log format must be text or json, not {other:?}")),
    };
    let host_name = flags
        .host_id
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| file.id.clone())
        .or_else(|| env_nonempty("WORKERHOST_HOST_ID"))
        .unwrap_or_else(default_host_name);
    Ok(Settings {
        concurrency,
        listen,
        log_level,
        json_logs,
        host_name,
    })
}

/// `hostname-pid`, the default host name.
pub fn default_host_name() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "host".into());
    format!("{host}-{}", std::process::id())
}

/// This start's unique id: the host name plus a random suffix, so that a restarted host never inherits,
/// and never settles, the leases of its previous life.
pub fn unique_host_id(host_name: &str) -> String {
    format!("{host_name}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| v.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn flag_beats_file_beats_env_beats_default() {
        let env = env_of(&[
            ("WORKERHOST_CONCURRENCY", "3"),
            ("WORKERHOST_LOG_LEVEL", "debug"),
        ]);
        let mut file = HostConfig::default();
        let none = Flags::default();
        assert_eq!(
            resolve(&none, &file, &|_| None).map(|s| s.concurrency),
            Ok(8)
        );
        assert_eq!(resolve(&none, &file, &env).map(|s| s.concurrency), Ok(3));
        file.concurrency = Some(5);
        assert_eq!(resolve(&none, &file, &env).map(|s| s.concurrency), Ok(5));
        let flags = Flags {
            concurrency: Some(7),
            ..Flags::default()
        };
        assert_eq!(resolve(&flags, &file, &env).map(|s| s.concurrency), Ok(7));
        assert_eq!(
            resolve(&none, &file, &env).map(|s| s.log_level),
            Ok("debug".to_string())
        );
    }

    #[test]
    fn a_bad_environment_value_is_named() {
        let env = env_of(&[("WORKERHOST_CONCURRENCY", "many")]);
        let err = resolve(&Flags::default(), &HostConfig::default(), &env).expect_err("must fail");
        assert!(err.contains("WORKERHOST_CONCURRENCY"), "{err}");
    }

    #[test]
    fn host_ids_are_unique_per_start() {
        assert_ne!(unique_host_id("h"), unique_host_id("h"));
        assert!(unique_host_id("box-1").starts_with("box-1-"));
    }
}
