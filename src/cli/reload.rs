//! What `workerhost run` does besides the loop: signals (SIGTERM/SIGINT stop, a second one forces,
//! SIGHUP reloads), the reload itself (workers, their environments, schedules), `--watch`, and the
//! sweep of venvs a reload left unused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use workerhost::registry::Registry;
use workerhost::setup::Environments;

/// What SIGHUP reloads: the worker registry (and the managed environments) and the schedules.
pub(super) struct Reloadable {
    pub(super) registry: Arc<std::sync::RwLock<Arc<Registry>>>,
    pub(super) schedules: tokio::sync::watch::Sender<workerhost::schedule::Schedules>,
    pub(super) envs: Arc<Environments>,
    pub(super) config_path: std::path::PathBuf,
    pub(super) concurrency: usize,
}

pub(super) async fn handle_signals(
    stop: CancellationToken,
    kill: CancellationToken,
    forced: Arc<AtomicBool>,
    reloadable: Arc<Reloadable>,
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
                // A reload may install requirements for a while: signals are still heard meanwhile.
                let r = reloadable.clone();
                tokio::spawn(async move { r.reload().await });
                continue;
            }
        };
        seen += 1;
        if seen == 1 {
            tracing::info!(
                signal = name,
                "stopping: no new tasks; in-flight tasks may finish (send again to stop at once)"
            );
            workerhost::notify::stopping();
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

impl Reloadable {
    fn current(&self) -> Arc<Registry> {
        match self.registry.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// SIGHUP: re-reads the config, provisions the managed environments that are not in sync (a venv in
    /// use is built anew beside it), and swaps the worker registry and the schedules. An invalid config
    /// keeps both as they were. One reload at a time.
    async fn reload(&self) {
        let _one = self.envs.lock().await;
        workerhost::notify::reloading();
        self.reload_inner().await;
        workerhost::notify::ready();
    }

    async fn reload_inner(&self) {
        let mut cfg = match workerhost::config::load(&self.config_path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reload rejected, keeping the current workers and schedules: {e}");
                return;
            }
        };
        let current = self.current();
        let prepared = self.envs.prepare(&mut cfg.workers, &current).await;
        drop(current);
        let Ok(mut guard) = self.registry.write() else {
            return;
        };
        match Registry::build(
            &cfg.workers,
            self.concurrency,
            cfg.host.kill_grace,
            Some(&guard),
        ) {
            Ok(new) => {
                let (added, removed, changed) = registry_diff(&guard, &new);
                self.envs.hold(&new, &prepared.failed);
                tracing::info!(
                    workers = new.workers().len(),
                    added = %added.join(", "),
                    removed = %removed.join(", "),
                    changed = %changed.join(", "),
                    new_venv = %prepared.swapped.join(", "),
                    not_set_up = %prepared.failed.join(", "),
                    "worker registry reloaded: removed workers finish their in-flight tasks and take no more (host, task manager and observer settings apply at restart)"
                );
                *guard = Arc::new(new);
                let names: Vec<&str> = cfg.schedules.iter().map(|s| s.name.as_str()).collect();
                tracing::info!(schedules = %names.join(", "), "schedules reloaded");
                self.schedules.send_replace(Arc::new(cfg.schedules.clone()));
            }
            Err(e) => tracing::error!("reload rejected, keeping the current workers: {e}"),
        }
    }
}

/// Removes the venvs that reloads swapped out, once no task uses them.
pub(super) async fn sweep_envs(envs: Arc<Environments>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        envs.sweep();
    }
}

/// `run --watch`: the config file and the managed workers' requirements files changed → reload;
/// a pool worker's project_path changed → its processes are replaced.
pub(super) async fn watch(r: Arc<Reloadable>, stop: CancellationToken) {
    use std::collections::HashMap;
    use workerhost::setup::watch::{Debounced, POLL, file_print, tree_print};
    let config_print = |reg: &Registry| -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        file_print(&r.config_path).hash(&mut h);
        for w in reg.workers() {
            if let Some(e) = &w.config.environment {
                file_print(&e.requirements).hash(&mut h);
            }
        }
        h.finish()
    };
    let pool_print = |w: &workerhost::registry::WorkerEntry| -> Option<u64> {
        if w.config.mode != workerhost::config::Mode::Pool {
            return None;
        }
        let dir = w.config.project_path.as_ref()?;
        let skip: Vec<std::path::PathBuf> = w
            .config
            .environment
            .iter()
            .map(|e| e.venv.clone())
            .collect();
        Some(tree_print(dir, &skip))
    };
    let mut cfg_seen = Debounced::new(config_print(&r.current()));
    let mut pools: HashMap<String, Debounced> = HashMap::new();
    for w in r.current().workers() {
        if let Some(now) = pool_print(w) {
            pools.insert(w.config.name.clone(), Debounced::new(now));
        }
    }
    tracing::info!(config = %r.config_path.display(), "watching the config file, the requirements files and the pool workers' project_path for changes");
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        let reg = r.current();
        if cfg_seen.changed(config_print(&reg)) {
            tracing::info!("watch: the config file or a requirements file changed: reloading");
            drop(reg);
            r.reload().await;
            cfg_seen = Debounced::new(config_print(&r.current()));
            continue;
        }
        for w in reg.workers() {
            let Some(now) = pool_print(w) else {
                continue;
            };
            let seen = pools
                .entry(w.config.name.clone())
                .or_insert_with(|| Debounced::new(now));
            if seen.changed(now) {
                let idle = w.runner.recycle();
                tracing::info!(worker = %w.config.name, idle_ended = idle, "watch: project_path changed: the pool's processes are replaced (busy ones after their task)");
            }
        }
    }
}

/// Names of the workers a reload adds, removes and changes.
fn registry_diff(old: &Registry, new: &Registry) -> (Vec<String>, Vec<String>, Vec<String>) {
    let names = |r: &Registry| -> Vec<String> {
        r.workers().iter().map(|w| w.config.name.clone()).collect()
    };
    let added = names(new)
        .into_iter()
        .filter(|n| old.by_name(n).is_none())
        .collect();
    let removed = names(old)
        .into_iter()
        .filter(|n| new.by_name(n).is_none())
        .collect();
    let changed = new
        .workers()
        .iter()
        .filter(|w| {
            old.by_name(&w.config.name)
                .is_some_and(|o| o.config != w.config)
        })
        .map(|w| w.config.name.clone())
        .collect();
    (added, removed, changed)
}
