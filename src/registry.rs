//! Task type → worker. Built whole from a [`Config`](crate::config::Config) and swapped atomically on
//! reload; a worker that survives a reload keeps its capacity permits and counters, so tasks in flight
//! across a reload are still counted against its cap.

use crate::config::{Mode, WorkerConfig, WorkerKind};
use crate::runner::Pool;
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
    /// Pool mode: the worker's long-lived processes.
    pub pool: Option<Arc<Pool>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.idle_count())
            .finish()
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    workers: Vec<Arc<WorkerEntry>>,
    by_type: HashMap<String, Arc<WorkerEntry>>,
}

impl Registry {
    /// Builds the registry. `host_concurrency` caps workers without a cap of their own (a pool-mode
    /// worker is also capped by its `pool_size`). Counters and permits of workers with the same name and
    /// cap in `previous` are carried over, and so is the process pool of an unchanged worker.
    pub fn build(
        workers: &[WorkerConfig],
        host_concurrency: usize,
        kill_grace: Duration,
        previous: Option<&Registry>,
    ) -> Result<Registry, String> {
        let mut reg = Registry::default();
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
            let is_pool = w.mode == Mode::Pool && !matches!(w.kind, WorkerKind::Remote { .. });
            let pool = match old {
                Some(o) if o.config == *w => o.pool.clone(),
                _ if is_pool => Some(Arc::new(Pool::new(w, stats.restarts.clone(), kill_grace))),
                _ => None,
            };
            let entry = Arc::new(WorkerEntry {
                config: w.clone(),
                permits,
                stats,
                pool,
            });
            for t in &w.task_types {
                if let Some(other) = reg.by_type.insert(t.clone(), entry.clone()) {
                    return Err(format!(
                        "task type {t} is claimed by two workers: {} and {}",
                        other.config.name, w.name
                    ));
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
