//! Task type → worker entry (its config, its [`Runner`], its permits, its counters). Built whole from a
//! [`Config`](crate::config::Config) and swapped atomically on reload; a worker that survives a reload
//! keeps its capacity permits and counters, so tasks in flight across a reload are still counted against
//! its cap, and an unchanged worker keeps its runner (a pool keeps its processes).

use crate::config::{Mode, WorkerConfig};
use crate::runner::{Runner, RunnerError};
use crate::stats::WorkerStats;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// One worker as the host runs it.
#[derive(Debug)]
pub struct WorkerEntry {
    pub config: WorkerConfig,
    /// Per-worker cap on tasks in flight.
    pub permits: Arc<Semaphore>,
    pub stats: Arc<WorkerStats>,
    /// How its attempts run.
    pub runner: Runner,
}

/// Why a registry cannot be built from a list of workers.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("task type {task_type} is claimed by two workers: {first} and {second}")]
    TypeClaimedTwice {
        task_type: String,
        first: String,
        second: String,
    },
    #[error(transparent)]
    Runner(#[from] RunnerError),
}

#[derive(Debug, Default)]
pub struct Registry {
    workers: Vec<Arc<WorkerEntry>>,
    by_type: HashMap<String, Arc<WorkerEntry>>,
    /// The HTTP client of remote workers (made on first need, kept across reloads).
    http: Option<reqwest::Client>,
}

impl Registry {
    /// Builds the registry. `host_concurrency` caps workers without a cap of their own (a pool-mode
    /// worker is also capped by its `pool_size`). Counters and permits of workers with the same name and
    /// cap in `previous` are carried over, and so is the runner (a pool's processes) of an unchanged
    /// worker.
    pub fn build(
        workers: &[WorkerConfig],
        host_concurrency: usize,
        kill_grace: Duration,
        previous: Option<&Registry>,
    ) -> Result<Registry, RegistryError> {
        let mut reg = Registry {
            http: previous.and_then(|p| p.http.clone()),
            ..Registry::default()
        };
        for w in workers {
            let cap = cap_of(w, host_concurrency);
            let old = previous.and_then(|p| p.by_name(&w.name));
            let (permits, stats) = match old {
                Some(o) if cap_of(&o.config, host_concurrency) == cap => {
                    (o.permits.clone(), o.stats.clone())
                }
                Some(o) => (Arc::new(Semaphore::new(cap)), o.stats.clone()),
                None => (Arc::new(Semaphore::new(cap)), Arc::<WorkerStats>::default()),
            };
            let runner = match old {
                Some(o) if o.config == *w => o.runner.clone(),
                _ => Runner::for_worker(w, kill_grace, stats.restarts.clone(), || {
                    reg.http
                        .get_or_insert_with(|| {
                            crate::tls::install_ring();
                            reqwest::Client::new()
                        })
                        .clone()
                })?,
            };
            let entry = Arc::new(WorkerEntry {
                config: w.clone(),
                permits,
                stats,
                runner,
            });
            for t in &w.task_types {
                if let Some(other) = reg.by_type.insert(t.clone(), entry.clone()) {
                    return Err(RegistryError::TypeClaimedTwice {
                        task_type: t.clone(),
                        first: other.config.name.clone(),
                        second: w.name.clone(),
                    });
                }
            }
            reg.workers.push(entry);
        }
        Ok(reg)
    }

    pub fn for_type(&self, task_type: &str) -> Option<&Arc<WorkerEntry>> {
        self.by_type.get(task_type)
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<WorkerEntry>> {
        self.workers.iter().find(|w| w.config.name == name)
    }

    pub fn workers(&self) -> &[Arc<WorkerEntry>] {
        &self.workers
    }

    pub fn known_types(&self) -> Vec<String> {
        let mut t: Vec<String> = self.by_type.keys().cloned().collect();
        t.sort();
        t
    }
}

/// How many tasks of `w` may be in flight at once.
fn cap_of(w: &WorkerConfig, host_concurrency: usize) -> usize {
    let cap = w.concurrency.unwrap_or(host_concurrency);
    let cap = if w.mode == Mode::Pool {
        cap.min(w.pool_size)
    } else {
        cap
    };
    cap.max(1)
}
