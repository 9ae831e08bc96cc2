//! What the queue-operating verbs (`cancel`, `dead`, `queue`, `pause`, `resume`) share: opening the task
//! manager quietly and turning an operation's refusal into the right exit code.

use super::{Usage, load};
use std::path::Path;
use workerhost::config::Config;
use workerhost::settings::unique_host_id;
use workerhost_adapters::Source;
use workerhost_adapters::ops::OpsError;

/// The config and its task manager, with warnings-only logging.
pub(super) async fn open(path: &Path) -> anyhow::Result<(Config, Source)> {
    super::run::init_logging("warn", false);
    let cfg = load(path)?;
    let source = workerhost::source::open(&cfg, &unique_host_id("ops")).await?;
    Ok((cfg, source))
}

/// "Not supported by this task manager" is bad usage (exit 2); everything else is a failure (exit 1).
pub(super) fn failure(e: OpsError) -> anyhow::Error {
    match e {
        OpsError::NotSupported { .. } => Usage(e.to_string()).into(),
        e => e.into(),
    }
}

/// Every task type some worker of the config handles.
pub(super) fn config_types(cfg: &Config) -> Vec<String> {
    let mut t: Vec<String> = cfg
        .workers
        .iter()
        .flat_map(|w| w.task_types.iter().cloned())
        .collect();
    t.sort();
    t.dedup();
    t
}

/// `--older-than 7d`: a whole number with a unit (s, m, h, d, w).
pub(super) fn parse_age(raw: &str) -> Result<std::time::Duration, Usage> {
    let bad = || {
        Usage(format!(
            "--older-than {raw:?}: expected a whole number and a unit, e.g. 90s, 30m, 12h, 7d, 2w"
        ))
    };
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    n.checked_mul(secs)
        .map(std::time::Duration::from_secs)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::parse_age;

    #[test]
    fn ages() {
        assert_eq!(parse_age("7d").map(|d| d.as_secs()).ok(), Some(604_800));
        assert_eq!(parse_age("90s").map(|d| d.as_secs()).ok(), Some(90));
        for bad in [
            "",
            "7",
            "d",
            "7x",
            "-1d",
            "1.5h",
            "7 d",
            "99999999999999999999w",
        ] {
            let e = parse_age(bad).err().map(|e| e.0).unwrap_or_default();
            assert!(e.contains("--older-than"), "{bad:?}: {e}");
        }
    }
}
