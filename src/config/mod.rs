//! YAML in, a validated and fully resolved [`Config`] out: paths absolute, defaults applied, `${VAR}`
//! expanded. Everything downstream trusts it and never looks at the YAML again.

mod expand;
mod limits;
mod load;
mod locate;
pub mod schedule;
pub mod schema;
#[cfg(test)]
mod tests;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use limits::{CPU_HARD_EXTRA_SECONDS, Limits, RunAs};
pub use load::{load, load_str};
pub use schedule::ScheduleConfig;
pub use workerhost_adapters::TaskManagerSettings;

/// Every problem found in one config file. Displayed one problem a line, each naming file, line and field.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render(.file, .problems))]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

/// One problem: where (line, dotted field path such as `workers[1].timeout`) and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

fn render(file: &Path, problems: &[Problem]) -> String {
    let mut out = format!(
        "invalid config {} ({} problem{}):",
        file.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&file.display().to_string());
        if let Some(l) = p.line {
            out.push_str(&format!(":{l}"));
        }
        if !p.field.is_empty() {
            out.push_str(&format!(": {}", p.field));
        }
        out.push_str(&format!(": {}", p.message));
    }
    out
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was loaded from (absolute).
    pub path: PathBuf,
    pub version: String,
    pub host: HostConfig,
    /// The adapter named by `task_manager.type`, with its typed settings (paths absolute).
    pub task_manager: TaskManagerSettings,
    pub workers: Vec<WorkerConfig>,
    pub observers: Vec<ObserverConfig>,
    /// `schedules:` (section 7).
    pub schedules: Vec<ScheduleConfig>,
}

/// `host:`. Fields that the command line and environment may also set are `Option` here: `None` means
/// "not in the file", so that flag > file > environment > default can be applied by [`crate::settings`].
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    pub id: Option<String>,
    pub concurrency: Option<usize>,
    pub shutdown_grace: Duration,
    /// `Some("off")` disables the server.
    pub listen: Option<String>,
    /// `host.http.token`: when set (non-empty), every endpoint but `/health` wants
    /// `Authorization: Bearer <token>`.
    pub token: Option<String>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    /// How long a timed-out process group gets between SIGTERM and SIGKILL (spec: 5 s).
    pub kill_grace: Duration,
}

/// Retry policy: `base * multiplier^(attempt-1)`, capped at `max_delay`, with full jitter when on.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub base_delay: Duration,
    pub multiplier: f64,
    pub max_delay: Duration,
    pub jitter: bool,
    /// A retry waiting longer than this goes back to the task manager as a scheduled task (where the
    /// task manager can hold a due time), freeing its slot and lease; shorter waits stay in the host.
    pub in_host_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_delay: Duration::from_secs(5),
            multiplier: 2.0,
            max_delay: Duration::from_secs(300),
            jitter: true,
            in_host_max: Duration::from_secs(1),
        }
    }
}

/// How a worker is started.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerKind {
    /// `venv_python -c "from module import function; function()"`, or `-m module` without a function.
    Python {
        /// Absolute path, or a bare name that was found on PATH (absolute then).
        interpreter: PathBuf,
        module: String,
        function: Option<String>,
    },
    /// An argv list, never a shell. `argv[0]` is absolute after resolution when it contained a `/`;
    /// a bare name is kept and looked up on PATH at spawn time.
    Command { argv: Vec<String> },
    /// `url: https://...`: the host POSTs the task document there instead of starting a process.
    Remote { url: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Spawn,
    Pool,
}

/// One worker with every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    pub name: String,
    pub kind: WorkerKind,
    /// Working directory (absolute), if set.
    pub project_path: Option<PathBuf>,
    pub task_types: Vec<String>,
    pub timeout: Duration,
    pub max_retries: u32,
    /// Default `max_retries + 3`.
    pub max_deliveries: u32,
    pub retry: RetryPolicy,
    /// Per-worker cap on tasks in flight; `None`: only the host's cap applies.
    pub concurrency: Option<usize>,
    pub max_output_bytes: usize,
    /// Expanded `env:` entries.
    pub env: BTreeMap<String, String>,
    /// Host variables passed through by name.
    pub env_passthrough: Vec<String>,
    pub mode: Mode,
    pub pool_size: usize,
    pub max_tasks_per_process: Option<u64>,
    pub description: Option<String>,
    pub metadata: Option<Value>,
    /// `limits:` in force (the worker's over the defaults').
    pub limits: Limits,
    /// Whether a `resource_limit` outcome is retried (default: no).
    pub retry_on_resource_limit: bool,
    /// `user:`: run the worker as this user.
    pub user: Option<RunAs>,
    /// Where it is in the config file (`workers[2]`), for messages that name a field.
    pub config_path: String,
    /// `python` + `requirements`: a venv the host provisions (`workerhost setup`, section 10).
    pub environment: Option<Environment>,
}

/// A worker environment the host manages: the venv that holds `venv_python`, made with `python`, with
/// `requirements` installed into it.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    /// The interpreter that creates the venv: absolute when it was given as a path, else a name looked
    /// up on `PATH` when `setup` runs (default `python3`).
    pub python: String,
    /// `requirements.txt` (installed with `-r`) or `pyproject.toml` (its project is installed), absolute.
    pub requirements: PathBuf,
    /// The venv's folder: `venv_python` without its `bin/<name>` (absolute).
    pub venv: PathBuf,
}

#[derive(Debug, Clone)]
pub enum ObserverConfig {
    Webhook {
        url: String,
        events: Option<Vec<String>>,
        timeout: Duration,
    },
    Command {
        argv: Vec<String>,
        events: Option<Vec<String>>,
        timeout: Duration,
    },
}

/// Default `max_output_bytes`: 16 MiB.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 16 * 1024 * 1024;
