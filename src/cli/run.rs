//! `workerhost run`: the host itself, with signals: SIGTERM/SIGINT stop gracefully, a second one forces,
//! SIGHUP reloads the worker registry.

use super::reload::{Reloadable, handle_signals, sweep_envs, watch};
use super::{RunArgs, Usage, load};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use workerhost::host::{Host, HostOptions};
use workerhost::http::HttpState;
use workerhost::metrics::Metrics;
use workerhost::observers::{Hooks, LogObserver, Observer, Observers, StatusBoard};
use workerhost::registry::Registry;
use workerhost::settings::{self, Flags, Settings};
use workerhost::setup::Environments;

/// Sets up logging to stderr: text or one JSON object a line. `RUST_LOG` overrides the level.
pub fn init_logging(level: &str, json: bool) {
    // The AMQP client logs its login frame (with the password) at trace level: never go below debug
    // for it, whatever the level asked for.
    const CAP: &str =
        "lapin=debug,amq_protocol=debug,amq_protocol_tcp=debug,amq_protocol_types=debug";
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| level.to_string());
    let spec = if spec.contains("trace") {
        format!("{spec},{CAP}")
    } else {
        spec
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: a log file, journald or a log shipper gets plain text
        // (and formatting the escape codes was a measurable share of the host's CPU per task).
        .with_ansi(std::io::stderr().is_terminal())
        // By default a failed log write is reported with `eprintln!`, which panics when stderr itself is
        // the broken pipe (a log shipper gone): a host must go on running tasks without its log.
        .log_internal_errors(false);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.with_target(false).try_init()
    };
}

pub fn resolve_settings(
    args: &RunArgs,
    cfg: &workerhost::config::Config,
) -> anyhow::Result<Settings> {
    let flags = Flags {
        concurrency: args.concurrency.map(|c| c as usize),
        listen: args.listen.clone(),
        log_level: args.log_level.clone(),
        log_format: args.log_format.clone(),
        host_id: args.worker_id.clone(),
    };
    settings::resolve(&flags, &cfg.host, &|k| std::env::var(k).ok()).map_err(|e| Usage(e).into())
}

/// How long observer hooks may go on delivering queued events after the host stopped.
const HOOK_DRAIN: Duration = Duration::from_secs(5);

/// The operations side of a running host: metrics, the status board, the configured hooks.
struct Ops {
    metrics: Arc<Metrics>,
    board: Arc<StatusBoard>,
    hooks: Hooks,
}

impl Ops {
    fn start(cfg: &workerhost::config::Config) -> anyhow::Result<Ops> {
        let base = cfg.path.parent().unwrap_or(Path::new("/"));
        let hooks = Hooks::start(&cfg.observers, base).map_err(anyhow::Error::msg)?;
        let metrics = Arc::new(Metrics::new(hooks.counters.clone())?);
        workerhost::metrics::install(metrics.clone());
        Ok(Ops {
            metrics,
            board: Arc::new(StatusBoard::new(50)),
            hooks,
        })
    }

    /// Log, metrics and status first, then the configured hooks.
    fn observers(&self) -> Observers {
        let mut list: Vec<Arc<dyn Observer>> = vec![
            Arc::new(LogObserver),
            self.metrics.clone(),
            self.board.clone(),
        ];
        list.extend(self.hooks.observers.iter().cloned());
        Observers::new(list)
    }
}

/// Binds the HTTP endpoints before anything else starts, so a taken port fails the start (exit 1).
async fn bind_http(
    listen: &str,
    has_token: bool,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    if listen == "off" {
        return Ok(None);
    }
    let l = workerhost::http::bind(listen).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot serve the HTTP endpoints on {listen}: {e} (set host.http.listen, --listen or WORKERHOST_LISTEN to a free address, or to off)"
        )
    })?;
    let addr = l
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| listen.to_string());
    let loopback = l.local_addr().is_ok_and(|a| a.ip().is_loopback());
    if !loopback && !has_token {
        tracing::warn!(listen = %addr, "the HTTP endpoints listen beyond loopback without host.http.token: anyone who reaches this address can read them");
    }
    tracing::info!(listen = %addr, "HTTP endpoints: /health /workers /workers/{{name}}/health /metrics /");
    Ok(Some(l))
}

/// `workerhost run`. Long on purpose: it is the host's start and stop in order, read top to bottom
/// (config, setup, registry, HTTP, scheduler, signals, the loop, then everything stopped in reverse);
/// each step is a call, and splitting the sequence would only scatter it.
pub async fn run(config_path: &Path, args: RunArgs) -> anyhow::Result<u8> {
    let cfg = load(config_path)?;
    let s = resolve_settings(&args, &cfg)?;
    init_logging(&s.log_level, s.json_logs);
    let host_id = settings::unique_host_id(&s.host_name);
    let source = workerhost::source::open(&cfg, &host_id).await?;
    let envs = Arc::new(Environments::default());
    let not_set_up = if args.setup {
        setup_at_start(&envs, &cfg).await
    } else {
        Vec::new()
    };
    let registry = Registry::build(&cfg.workers, s.concurrency, cfg.host.kill_grace, None)
        .map_err(|e| Usage(e.to_string()))?;
    envs.hold(&registry, &not_set_up);
    let listener = bind_http(&s.listen, cfg.host.token.is_some()).await?;
    let ops = Ops::start(&cfg)?;
    tracing::info!(
        host = %host_id,
        config = %cfg.path.display(),
        task_manager = cfg.task_manager.kind(),
        workers = cfg.workers.len(),
        concurrency = s.concurrency,
        burst = args.burst,
        "workerhost starting"
    );
    let host = Host::new(
        source,
        registry,
        ops.observers(),
        HostOptions {
            host_id: host_id.clone(),
            concurrency: s.concurrency,
            shutdown_grace: cfg.host.shutdown_grace,
            lease: cfg.task_manager.lease(),
            burst: args.burst,
        },
    );
    let stop = CancellationToken::new();
    let kill = CancellationToken::new();
    let forced = Arc::new(AtomicBool::new(false));
    ops.board.attach(host.state.clone());
    let http_stop = CancellationToken::new();
    let server = listener.map(|l| serve_http(l, &host, &ops, &cfg, &host_id, &http_stop));
    let (schedules_tx, schedules_rx) = tokio::sync::watch::channel(Arc::new(cfg.schedules.clone()));
    if !cfg.schedules.is_empty()
        && !matches!(cfg.task_manager.kind(), "sqlite" | "redis" | "postgres")
    {
        tracing::warn!(
            task_manager = cfg.task_manager.kind(),
            "this task manager does not refuse duplicate task ids: every host with these schedules enqueues each tick; run them on one host only"
        );
    }
    let scheduler = tokio::spawn(workerhost::schedule::run(
        host.source(),
        schedules_rx,
        stop.clone(),
    ));
    let reloader = Arc::new(Reloadable {
        registry: host.registry_handle(),
        schedules: schedules_tx,
        envs: envs.clone(),
        config_path: config_path.to_path_buf(),
        concurrency: s.concurrency,
    });
    let signals = tokio::spawn(handle_signals(
        stop.clone(),
        kill.clone(),
        forced.clone(),
        reloader.clone(),
    ));
    let sweeper = tokio::spawn(sweep_envs(envs.clone()));
    let watcher = args
        .watch
        .then(|| tokio::spawn(watch(reloader.clone(), stop.clone())));
    let watchdog = CancellationToken::new();
    workerhost::notify::spawn_watchdog(watchdog.clone());
    workerhost::notify::ready();
    host.run(stop, kill).await;
    workerhost::notify::stopping();
    watchdog.cancel();
    signals.abort();
    scheduler.abort();
    sweeper.abort();
    if let Some(w) = watcher {
        w.abort();
    }
    // Every task has ended: a venv swapped out by a reload is no longer used.
    envs.sweep();
    http_stop.cancel();
    if let Some(server) = server {
        stop_http(server).await;
    }
    ops.hooks.drain(HOOK_DRAIN).await;
    if forced.load(Ordering::SeqCst) {
        tracing::warn!("stopped by a second signal");
        return Ok(130);
    }
    let (user_ms, sys_ms) = own_cpu_ms();
    tracing::info!(
        cpu_user_ms = user_ms,
        cpu_sys_ms = sys_ms,
        "workerhost stopped"
    );
    Ok(0)
}

/// `run --setup`: provisions every managed worker first; returns the workers whose setup failed (they
/// are held back: not started, their tasks wait in the queue).
async fn setup_at_start(envs: &Environments, cfg: &workerhost::config::Config) -> Vec<String> {
    let mut not_set_up = Vec::new();
    for o in envs.setup_at_start(&cfg.workers).await {
        let secs = o.elapsed.as_secs_f64();
        match o.result {
            Ok(r) => tracing::info!(worker = %o.worker, seconds = secs, "setup: {}", r.detail),
            Err(e) => {
                tracing::error!(
                    seconds = secs,
                    "setup failed, the worker is not started (its tasks wait in the queue): {e}"
                );
                not_set_up.push(o.worker);
            }
        }
    }
    not_set_up
}

/// Starts the HTTP endpoints on `listener` with a view of the host's state.
fn serve_http(
    listener: tokio::net::TcpListener,
    host: &Host,
    ops: &Ops,
    cfg: &workerhost::config::Config,
    host_id: &str,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let state = HttpState {
        host: host.state.clone(),
        registry: host.registry_handle(),
        metrics: ops.metrics.clone(),
        board: ops.board.clone(),
        host_id: host_id.to_string(),
        task_manager: cfg.task_manager.kind().to_string(),
        token: cfg.host.token.clone(),
        source: host.source(),
        depth: Arc::new(workerhost::depth::DepthSampler::new(host.source())),
        loopback: listener.local_addr().is_ok_and(|a| a.ip().is_loopback()),
    };
    tokio::spawn(workerhost::http::serve(
        listener,
        Arc::new(state),
        stop.clone(),
    ))
}

/// Waits (at most 2 s) for the HTTP server to end after its stop.
async fn stop_http(server: tokio::task::JoinHandle<std::io::Result<()>>) {
    match tokio::time::timeout(Duration::from_secs(2), server).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the HTTP server failed"),
        Err(_) => tracing::warn!("the HTTP server did not stop within 2 s"),
        _ => {}
    }
}

/// The host's own CPU time (not its workers'), for the stop line: benchmarks read it.
fn own_cpu_ms() -> (u64, u64) {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let ms = |t: nix::sys::time::TimeVal| {
                (t.tv_sec() as u64) * 1000 + (t.tv_usec() as u64) / 1000
            };
            (ms(u.user_time()), ms(u.system_time()))
        }
        Err(_) => (0, 0),
    }
}
