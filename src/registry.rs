//! Task type → worker. Built whole from a [`Config`](crate::config::Config) and swapped atomically on
//! reload; a worker that survives a reload keeps its capacity permits and counters, so tasks in flight
//! across a reload are still counted against its cap.

use crate::config::WorkerConfig;
use crate::stats::WorkerStats;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// One worker as the host runs it.
#[derive(Debug)]
pub struct WorkerEntry {
    pub config: WorkerConfig,
    /// Per-worker cap on tasks in flight.
    pub permits: Arc<Semaphore>,
    pub stats: Arc<WorkerStats>,
}

#[derive(Debug, Default)]
pub struct Registry {
    workers: Vec<Arc<WorkerEntry>>,
    by_type: HashMap<String, Arc<WorkerEntry>>,
}

impl Registry {
    /// Builds the registry. `host_concurrency` caps workers without a cap of their own. Counters and
    /// permits of workers with the same name and cap in `previous` are carried over.
    pub fn build(
        workers: &[WorkerConfig],
        host_concurrency: usize,
        previous: Option<&Registry>,
    ) -> Result<Registry, String> {
        let mut reg = Registry::default();
        for w in workers {
            let cap = w.concurrency.unwrap_or(host_concurrency).max(1);
            let old = previous.and_then(|p| p.by_name(&w.name));
            let (permits, stats) = match old {
                Some(o) if o.config.concurrency.unwrap_or(host_concurrency).max(1) == cap => {
                    (o.permits.clone(), o.stats.clone())
                }
                Some(o) => (Arc::new(Semaphore::new(cap)), o.stats.clone()),
                None => (Arc::new(Semaphore::new(cap)), Arc::default()),
            };
            let entry = Arc::new(WorkerEntry {
                config: w.clone(),
                permits,
                stats,
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
