//! What a running host does with the environments it manages: `run --setup` holds back a worker whose
//! setup failed; a reload (SIGHUP, `run --watch`) provisions what drifted, a venv in use in a new
//! folder beside it (`<venv>.<tag>`), probed before the worker is swapped to it; the old one is removed
//! once no task uses it, and the configured `venv_python` path is left pointing at the new one (the venv
//! folder becomes a symlink `<venv> -> <venv>.<tag>`).

use super::{
    Dependencies, Outcome, build_beside, dependencies, remove_venv, retarget, setup, sibling,
};
use crate::config::WorkerConfig;
use crate::registry::{Registry, WorkerEntry};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Semaphore;

/// A venv swapped out by a reload, waiting until the tasks that run on it have finished.
#[derive(Debug)]
struct Retiring {
    worker: String,
    /// The entry whose tasks use the old venv.
    old: Weak<WorkerEntry>,
    /// The old venv folder (the configured one, or an earlier `<venv>.<tag>`).
    old_dir: PathBuf,
    /// The configured venv folder (from `venv_python`).
    configured: PathBuf,
    new_dir: PathBuf,
}

/// The host's view of its managed environments.
#[derive(Debug, Default)]
pub struct Environments {
    /// Worker → the venv folder it runs from when that is not the configured one (after a swap).
    active: Mutex<HashMap<String, PathBuf>>,
    /// Workers held back (setup failed): their semaphore and the permits taken from it.
    held: Mutex<HashMap<String, (Arc<Semaphore>, usize)>>,
    retiring: Mutex<Vec<Retiring>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

/// What [`Environments::prepare`] did.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Workers whose environment could not be made (held back when they had none to run on).
    pub failed: Vec<String>,
    /// Workers swapped to a new venv.
    pub swapped: Vec<String>,
}

impl Environments {
    /// Serialises reloads (a reload may install for a while).
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.reloading.lock().await
    }

    /// `run --setup`: set up every managed worker in place (nothing runs yet); returns the outcomes.
    pub async fn setup_at_start(&self, workers: &[WorkerConfig]) -> Vec<Outcome> {
        super::setup_all(workers, false).await
    }

    /// Before a reload's registry is built: points each managed worker of `workers` at the venv it runs
    /// from, then provisions what is not in sync. A venv the `current` registry is using is built anew
    /// beside it and the worker swapped to it only when that worked (else the worker keeps its current
    /// config); one nothing uses (missing, held back, new worker) is set up in place.
    pub async fn prepare(&self, workers: &mut [WorkerConfig], current: &Registry) -> Prepared {
        let mut out = Prepared::default();
        for w in workers.iter_mut() {
            if w.environment.is_none() {
                continue;
            }
            let configured = w.clone();
            if let Some(dir) = self.active_dir(&w.name) {
                retarget(w, &dir);
            }
            let state = dependencies(w);
            if state.state == Dependencies::InSync {
                continue;
            }
            let cur = current.by_name(&w.name);
            let held = self.is_held(&w.name);
            let in_use = cur.is_some() && !held && state.state == Dependencies::Drifted;
            if !in_use {
                match setup(&configured, false).await {
                    Ok(r) => {
                        if let Some(r) = r {
                            tracing::info!(worker = %w.name, "reload: {}", r.detail);
                        }
                        *w = configured;
                        self.set_active(&w.name, None);
                    }
                    Err(e) => {
                        tracing::error!("reload: setup failed, the worker is not started: {e}");
                        out.failed.push(w.name.clone());
                    }
                }
                continue;
            }
            let Some(cur) = cur else { continue };
            tracing::info!(worker = %w.name, "reload: {}; building a new venv beside the one in use", state.detail);
            let in_use = w
                .environment
                .as_ref()
                .map(|e| e.venv.clone())
                .unwrap_or_default();
            match build_beside(&configured, &in_use).await {
                Ok(moved) => {
                    let (Some(old), Some(new)) = (&w.environment, &moved.environment) else {
                        continue;
                    };
                    tracing::info!(worker = %w.name, venv = %new.venv.display(), "reload: new venv built and probed; new tasks run on it, running ones finish on {}", old.venv.display());
                    self.push_retiring(Retiring {
                        worker: w.name.clone(),
                        old: Arc::downgrade(cur),
                        old_dir: old.venv.clone(),
                        configured: configured
                            .environment
                            .as_ref()
                            .map(|e| e.venv.clone())
                            .unwrap_or_default(),
                        new_dir: new.venv.clone(),
                    });
                    self.set_active(&w.name, Some(new.venv.clone()));
                    out.swapped.push(w.name.clone());
                    *w = moved;
                }
                Err(e) => {
                    tracing::error!("reload: the worker keeps its current venv and config: {e}");
                    *w = cur.config.clone();
                }
            }
        }
        out
    }

    fn active_dir(&self, worker: &str) -> Option<PathBuf> {
        self.active
            .lock()
            .ok()
            .and_then(|a| a.get(worker).cloned())
            .filter(|d| d.exists())
    }

    fn set_active(&self, worker: &str, dir: Option<PathBuf>) {
        if let Ok(mut a) = self.active.lock() {
            match dir {
                Some(d) => a.insert(worker.to_string(), d),
                None => a.remove(worker),
            };
        }
    }

    fn push_retiring(&self, r: Retiring) {
        if let Ok(mut list) = self.retiring.lock() {
            list.push(r);
        }
    }

    pub fn is_held(&self, worker: &str) -> bool {
        self.held.lock().is_ok_and(|h| h.contains_key(worker))
    }

    /// After a registry was built: the `failed` workers take no tasks (their types stay known, so their
    /// tasks wait in the queue), and a held worker no longer failing takes tasks again.
    pub fn hold(&self, reg: &Registry, failed: &[String]) {
        let Ok(mut held) = self.held.lock() else {
            return;
        };
        let released: Vec<String> = held
            .keys()
            .filter(|n| !failed.contains(n))
            .cloned()
            .collect();
        for name in released {
            if let Some(e) = reg.by_name(&name) {
                e.stats
                    .held
                    .store(false, std::sync::atomic::Ordering::Relaxed);
            }
            if let Some((sem, n)) = held.remove(&name)
                && reg
                    .by_name(&name)
                    .is_some_and(|e| Arc::ptr_eq(&e.permits, &sem))
            {
                sem.add_permits(n);
            }
        }
        for name in failed {
            let Some(e) = reg.by_name(name) else {
                continue;
            };
            e.stats
                .held
                .store(true, std::sync::atomic::Ordering::Relaxed);
            match held.get_mut(name) {
                Some((sem, n)) if Arc::ptr_eq(sem, &e.permits) => {
                    *n += e.permits.forget_permits(usize::MAX);
                }
                _ => {
                    let n = e.permits.forget_permits(usize::MAX);
                    held.insert(name.clone(), (e.permits.clone(), n));
                }
            }
        }
    }

    /// Removes the swapped-out venvs no task uses any more; returns how many are still in use.
    pub fn sweep(&self) -> usize {
        let done: Vec<Retiring> = {
            let Ok(mut list) = self.retiring.lock() else {
                return 0;
            };
            let (done, keep): (Vec<_>, Vec<_>) =
                list.drain(..).partition(|r| r.old.strong_count() == 0);
            *list = keep;
            done
        };
        for r in &done {
            match finish(&r.configured, &r.old_dir, &r.new_dir) {
                Ok(()) => tracing::info!(
                    worker = %r.worker,
                    "the old venv {} is no longer used: removed; {} -> {}",
                    r.old_dir.display(),
                    r.configured.display(),
                    r.new_dir.display()
                ),
                Err(e) => tracing::warn!(
                    worker = %r.worker,
                    "cannot retire the old venv {}: {e}",
                    r.old_dir.display()
                ),
            }
        }
        self.retiring.lock().map(|l| l.len()).unwrap_or(0)
    }
}

/// Points `configured` at `new_dir` (a relative symlink, swapped in by a rename) and removes the old
/// venv's folder.
fn finish(configured: &Path, old_dir: &Path, new_dir: &Path) -> std::io::Result<()> {
    let new_real = std::fs::canonicalize(new_dir)?;
    let meta = std::fs::symlink_metadata(configured).ok();
    let is_link = meta.as_ref().is_some_and(|m| m.file_type().is_symlink());
    let mut old_real = None;
    if old_dir == configured {
        if is_link {
            old_real = std::fs::canonicalize(configured).ok();
        } else if meta.is_some() {
            let retired = sibling(configured, "retired");
            remove_venv(&retired)?;
            std::fs::rename(configured, &retired)?;
            old_real = Some(retired);
        }
    } else {
        old_real = Some(old_dir.to_path_buf());
    }
    // A real folder at `configured` that is not the old venv was put there by hand: leave it.
    let configured_free = match std::fs::symlink_metadata(configured) {
        Err(_) => true,
        Ok(m) => m.file_type().is_symlink(),
    };
    if configured_free && let Some(name) = new_dir.file_name() {
        let tmp = sibling(configured, "link-tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(name, &tmp)?;
        std::fs::rename(&tmp, configured)?;
    }
    if let Some(old) = old_real
        && std::fs::canonicalize(&old).is_ok_and(|o| o != new_real)
    {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finishing_a_swap_links_the_configured_folder_and_removes_the_old_one() {
        let t = tempfile::tempdir().expect("tempdir");
        let venv = t.path().join(".venv");
        let a = t.path().join(".venv.aaaaaaaa");
        let b = t.path().join(".venv.bbbbbbbb");
        std::fs::create_dir_all(venv.join("bin")).expect("mkdir");
        std::fs::create_dir_all(a.join("bin")).expect("mkdir");
        // First swap: the configured folder was the real venv.
        finish(&venv, &venv, &a).expect("finish");
        assert!(std::fs::symlink_metadata(&venv).is_ok_and(|m| m.file_type().is_symlink()));
        assert_eq!(
            std::fs::canonicalize(&venv).ok(),
            std::fs::canonicalize(&a).ok()
        );
        assert!(!sibling(&venv, "retired").exists());
        // Second swap, from the linked folder: the link moves, the old target goes.
        std::fs::create_dir_all(b.join("bin")).expect("mkdir");
        finish(&venv, &a, &b).expect("finish");
        assert_eq!(
            std::fs::canonicalize(&venv).ok(),
            std::fs::canonicalize(&b).ok()
        );
        assert!(!a.exists());
        // A host that started on the link swaps away from the configured path itself.
        std::fs::create_dir_all(a.join("bin")).expect("mkdir");
        finish(&venv, &venv, &a).expect("finish");
        assert_eq!(
            std::fs::canonicalize(&venv).ok(),
            std::fs::canonicalize(&a).ok()
        );
        assert!(!b.exists());
    }
}
