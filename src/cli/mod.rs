//! Subcommands. Each returns the process exit code: 0 clean, 1 runtime failure, 2 bad usage or invalid
//! config, 130 after a second signal (`exec`: the protocol code of the final outcome).

mod cancel;
mod commands;
mod dead;
mod docs;
mod operate;
mod pause;
mod queue;
mod reload;
mod run;
mod setup;
mod when;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use workerhost::config::{self, Config, ConfigError};

/// `workerhost --version`: the crate version and the commit it was built from (see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("WORKERHOST_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "workerhost",
    version = VERSION,
    about = "Runs tasks from a task manager in isolated per-worker processes."
)]
pub struct Cli {
    /// Config file [default: $WORKERHOST_CONFIG, else ./workerhost_config.yaml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host (the default).
    Run(RunArgs),
    /// Validate the config, probe every worker, connect to the task manager.
    Check,
    /// Create or upgrade the postgres task manager's schema, and nothing else.
    Migrate,
    /// Enqueue a task; prints its id.
    Submit(SubmitArgs),
    /// Run one task through the proxy without a queue; print the result document; exit with its code.
    Exec(TaskArgs),
    /// List the worker registry.
    Workers {
        /// One JSON array (what `/workers` shows, without the counters).
        #[arg(long)]
        json: bool,
    },
    /// Make the managed workers' venvs (`python` + `requirements`) where missing or drifted.
    Setup(setup::SetupArgs),
    /// Show a task's state and result.
    Status {
        /// The task id.
        id: String,
    },
    /// Print a shell completion script (needs no config): `source <(workerhost completions bash)`.
    Completions {
        #[arg(value_enum)]
        shell: docs::Shell,
    },
    /// Print the man page (roff, needs no config): `workerhost man | man -l -`.
    Man {
        /// A subcommand's own page (workerhost-SUB(1)).
        subcommand: Option<String>,
    },
    /// Print the JSON Schema (draft 2020-12) of the config file (needs no config).
    Schema,
    /// List the configured schedules with their next three ticks.
    Schedules,
    /// Cancel a queued, scheduled or running task (a finished one is left as it is: exit 1).
    Cancel {
        /// The task id.
        id: String,
    },
    /// Dead letters: list, retry, purge.
    #[command(subcommand)]
    Dead(dead::DeadCommand),
    /// Queue depth per task type: queued, scheduled, running, dead, paused, oldest due age.
    Queue {
        #[arg(long)]
        json: bool,
    },
    /// Stop every host from claiming a task type (running tasks finish).
    Pause {
        #[arg(value_name = "TYPE")]
        task_type: String,
    },
    /// Let hosts claim a paused task type again.
    Resume {
        #[arg(value_name = "TYPE")]
        task_type: String,
    },
}

#[derive(Debug, Args, Default, Clone, PartialEq)]
pub struct RunArgs {
    /// Process until nothing can be claimed and nothing is in flight, then exit 0.
    #[arg(long)]
    pub burst: bool,
    /// Tasks in flight across all workers.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    /// HTTP listen address, or `off`.
    #[arg(long, value_name = "ADDR|off")]
    pub listen: Option<String>,
    /// error, warn, info, debug or trace (or a tracing filter).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    #[arg(long, value_name = "text|json", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// This host's id (host.id); a random suffix is added per start.
    #[arg(long, value_name = "ID")]
    pub worker_id: Option<String>,
    /// Run `workerhost setup` first; a worker whose setup fails is not started.
    #[arg(long)]
    pub setup: bool,
    /// Development: reload on a config file change, recycle a pool worker's processes when its
    /// project_path changes.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Args, Clone)]
pub struct TaskArgs {
    /// The task type.
    #[arg(long = "type", value_name = "TYPE")]
    pub task_type: String,
    /// Params as a JSON object, or @FILE to read them from a file.
    #[arg(long, value_name = "JSON|@FILE")]
    pub params: Option<String>,
    /// The task id [default: a random UUID].
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// submit: enqueue even if no worker in this config handles the type (another host's may).
    #[arg(long)]
    pub any_type: bool,
    /// A W3C trace context the task's spans continue (00-<trace id>-<span id>-<flags>).
    #[arg(long, value_name = "TRACEPARENT")]
    pub traceparent: Option<String>,
}

/// `submit`: a task, and when (and how urgently) it should run.
#[derive(Debug, Args, Clone)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub task: TaskArgs,
    /// Run it no sooner than this long from now: 30s, 5m, 2h, 1d (or plain seconds).
    #[arg(
        long,
        value_name = "30s|5m|2h",
        allow_hyphen_values = true,
        conflicts_with = "at"
    )]
    pub delay: Option<String>,
    /// Run it no sooner than this instant (RFC 3339, e.g. 2026-12-01T10:00:00Z).
    #[arg(long, value_name = "RFC3339", allow_hyphen_values = true)]
    pub at: Option<String>,
    /// Higher runs first (default 0).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub priority: Option<i32>,
}

/// A failure that maps to exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

pub async fn dispatch(cli: Cli) -> u8 {
    let config_path = config_path(cli.config.as_deref());
    let top_level_run_flags = cli.run != RunArgs::default();
    let result = match cli.command {
        None => run::run(&config_path, cli.run).await,
        Some(Command::Run(args)) => run::run(&config_path, merge(cli.run, args)).await,
        Some(_) if top_level_run_flags => Err(Usage(
            "--burst, --concurrency, --listen, --log-level, --log-format, --worker-id, --setup and --watch belong to `run`".into(),
        )
        .into()),
        Some(Command::Check) => commands::check(&config_path).await,
        Some(Command::Migrate) => commands::migrate(&config_path).await,
        Some(Command::Submit(t)) => commands::submit(&config_path, t).await,
        Some(Command::Exec(t)) => commands::exec(&config_path, t).await,
        Some(Command::Workers { json }) => commands::workers(&config_path, json),
        Some(Command::Setup(a)) => setup::setup(&config_path, a).await,
        Some(Command::Status { id }) => commands::status(&config_path, &id).await,
        Some(Command::Completions { shell }) => docs::completions(shell),
        Some(Command::Man { subcommand }) => docs::man(subcommand.as_deref()),
        Some(Command::Schema) => docs::schema(),
        Some(Command::Schedules) => commands::schedules(&config_path),
        Some(Command::Cancel { id }) => cancel::cancel(&config_path, &id).await,
        Some(Command::Dead(cmd)) => dead::dead(&config_path, cmd).await,
        Some(Command::Queue { json }) => queue::queue(&config_path, json).await,
        Some(Command::Pause { task_type }) => pause::set_paused(&config_path, &task_type, true).await,
        Some(Command::Resume { task_type }) => {
            pause::set_paused(&config_path, &task_type, false).await
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("workerhost: {e:#}");
            if e.downcast_ref::<ConfigError>().is_some() || e.downcast_ref::<Usage>().is_some() {
                2
            } else {
                1
            }
        }
    }
}

/// `workerhost --burst run --concurrency 2`: flags after `run` win over flags before it.
fn merge(before: RunArgs, after: RunArgs) -> RunArgs {
    RunArgs {
        burst: before.burst || after.burst,
        concurrency: after.concurrency.or(before.concurrency),
        listen: after.listen.or(before.listen),
        log_level: after.log_level.or(before.log_level),
        log_format: after.log_format.or(before.log_format),
        worker_id: after.worker_id.or(before.worker_id),
        setup: before.setup || after.setup,
        watch: before.watch || after.watch,
    }
}

/// `--config` > `$WORKERHOST_CONFIG` > `./workerhost_config.yaml`.
fn config_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| {
            std::env::var_os("WORKERHOST_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from("workerhost_config.yaml"))
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Ok(config::load(path)?)
}

/// `--params`: a JSON object, or `@FILE`.
fn parse_params(raw: Option<&str>) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let Some(raw) = raw else {
        return Ok(serde_json::Map::new());
    };
    let text = match raw.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read --params file {file}"))
            .map_err(|e| Usage(format!("{e:#}")))?,
        None => raw.to_string(),
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(Usage("--params must be a JSON object".into()).into()),
        Err(e) => Err(Usage(format!("--params is not valid JSON: {e}")).into()),
    }
}
