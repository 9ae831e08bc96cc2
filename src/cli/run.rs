//! `workerhost run`: the host itself, with signals: SIGTERM/SIGINT stop gracefully, a second one forces,
//! SIGHUP reloads the worker registry.

use super::{RunArgs, Usage, load};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use workerhost::host::{Host, HostOptions};
use workerhost::observers::{LogObserver, Observers};
use workerhost::registry::Registry;
use workerhost::runner::SpawnRunner;
use workerhost::settings::{self, Flags, Settings};

/// Sets up logging to stderr: text or one JSON object a line. `RUST_LOG` overrides the level.
pub fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
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

pub async fn run(config_path: &Path, args: RunArgs) -> anyhow::Result<u8> {
    let cfg = load(config_path)?;
    let s = resolve_settings(&args, &cfg)?;
    init_logging(&s.log_level, s.json_logs);
    let host_id = settings::unique_host_id(&s.host_name);
    let source = workerhost::source::open(&cfg, &host_id).await?;
    let registry = Registry::build(&cfg.workers, s.concurrency, None).map_err(Usage)?;
    if s.listen != "off" {
        tracing::info!(listen = %s.listen, "the HTTP endpoints are not served by this build yet");
    }
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
        Observers::new(vec![Arc::new(LogObserver)]),
        SpawnRunner {
            kill_grace: cfg.host.kill_grace,
        },
        HostOptions {
            host_id,
            concurrency: s.concurrency,
            shutdown_grace: cfg.host.shutdown_grace,
            lease: workerhost::source::lease_of(&cfg),
            burst: args.burst,
        },
    );
    let stop = CancellationToken::new();
    let kill = CancellationToken::new();
    let forced = Arc::new(AtomicBool::new(false));
    let signals = tokio::spawn(handle_signals(
        stop.clone(),
        kill.clone(),
        forced.clone(),
        host.registry_handle(),
        config_path.to_path_buf(),
        s.concurrency,
    ));
    host.run(stop, kill).await;
    signals.abort();
    if forced.load(Ordering::SeqCst) {
        tracing::warn!("stopped by a second signal");
        return Ok(130);
    }
    tracing::info!("workerhost stopped");
    Ok(0)
}

async fn handle_signals(
    stop: CancellationToken,
    kill: CancellationToken,
    forced: Arc<AtomicBool>,
    registry: Arc<std::sync::RwLock<Arc<Registry>>>,
    config_path: std::path::PathBuf,
    concurrency: usize,
) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let mut seen = 0;
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => {
                reload(&registry, &config_path, concurrency);
                continue;
            }
        };
        seen += 1;
        if seen == 1 {
            tracing::info!(
                signal = name,
                "stopping: no new tasks; in-flight tasks may finish (send again to stop at once)"
            );
            stop.cancel();
        } else {
            tracing::warn!(
                signal = name,
                "second signal: killing in-flight tasks and handing them back"
            );
            forced.store(true, Ordering::SeqCst);
            stop.cancel();
            kill.cancel();
        }
    }
}

/// SIGHUP: re-reads the config and swaps the worker registry. An invalid config keeps the old registry.
fn reload(registry: &std::sync::RwLock<Arc<Registry>>, path: &Path, concurrency: usize) {
    let cfg = match workerhost::config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload rejected, keeping the current workers: {e}");
            return;
        }
    };
    let Ok(mut guard) = registry.write() else {
        return;
    };
    match Registry::build(&cfg.workers, concurrency, Some(&guard)) {
        Ok(new) => {
            tracing::info!(
                workers = new.workers().len(),
                "worker registry reloaded (host and task manager settings apply at restart)"
            );
            *guard = Arc::new(new);
        }
        Err(e) => tracing::error!("reload rejected, keeping the current workers: {e}"),
    }
}
