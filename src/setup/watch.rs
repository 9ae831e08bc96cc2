//! `run --watch` (development): fingerprints of the config file, the managed workers' requirements and
//! the pool workers' code, polled every [`POLL`]. A change counts once it has held still for one poll
//! (an editor's save is several writes).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often `run --watch` looks.
pub const POLL: Duration = Duration::from_millis(500);
/// Files looked at under one folder, at most (a bigger tree is not a worker's code).
const MAX_ENTRIES: usize = 20_000;

/// A file's modification time and length, hashed (0 when it cannot be read).
pub fn file_print(p: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    if let Ok(m) = std::fs::metadata(p) {
        m.modified().ok().hash(&mut h);
        m.len().hash(&mut h);
    }
    h.finish()
}

/// The files that count as a worker's code: Python sources and extensions, and config files next to them
/// (not the logs, queues and data a worker writes into its own folder).
const CODE: &[&str] = &[
    "py", "pyi", "pyx", "pxd", "so", "pth", "toml", "cfg", "ini", "yaml", "yml",
];

/// Every code file's ([`CODE`]) path, modification time and length under `dir`, hashed. Skipped: folders
/// whose name starts with `.` (`.git`, `.venv`), `venv`, `__pycache__`, `node_modules`, and `skip` (the
/// worker's own venv wherever it is).
pub fn tree_print(dir: &Path, skip: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            seen += 1;
            if seen > MAX_ENTRIES {
                return h.finish();
            }
            let path = e.path();
            let Ok(ft) = e.file_type() else { continue };
            let name = e.file_name();
            let name = name.to_string_lossy();
            if ft.is_dir() {
                let skipped = name.starts_with('.')
                    || matches!(name.as_ref(), "venv" | "__pycache__" | "node_modules")
                    || skip.iter().any(|s| s == &path);
                if !skipped {
                    stack.push(path);
                }
                continue;
            }
            let code = Path::new(name.as_ref())
                .extension()
                .is_some_and(|x| CODE.iter().any(|c| x == *c));
            if !code {
                continue;
            }
            path.hash(&mut h);
            file_print(&path).hash(&mut h);
        }
    }
    h.finish()
}

/// A value that must hold still for one poll before its change counts.
#[derive(Debug)]
pub struct Debounced {
    settled: u64,
    last: u64,
}

impl Debounced {
    pub fn new(now: u64) -> Debounced {
        Debounced {
            settled: now,
            last: now,
        }
    }

    /// Feeds this poll's value; true once a change has held still for one poll.
    pub fn changed(&mut self, now: u64) -> bool {
        let still = now == self.last;
        self.last = now;
        if still && now != self.settled {
            self.settled = now;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_counts_once_it_holds_still() {
        let mut d = Debounced::new(1);
        assert!(!d.changed(1));
        assert!(!d.changed(2), "still moving");
        assert!(!d.changed(3), "still moving");
        assert!(d.changed(3), "held still for a poll");
        assert!(!d.changed(3), "counted once");
    }

    #[test]
    fn the_tree_print_sees_code_and_skips_venvs() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::write(t.path().join("w.py"), "a").expect("write");
        std::fs::write(t.path().join("queue.db"), "a").expect("write");
        std::fs::create_dir_all(t.path().join(".venv/lib")).expect("mkdir");
        let before = tree_print(t.path(), &[]);
        std::fs::write(t.path().join(".venv/lib/x.py"), "b").expect("write");
        assert_eq!(tree_print(t.path(), &[]), before);
        std::fs::write(t.path().join("queue.db"), "data the worker writes").expect("write");
        assert_eq!(tree_print(t.path(), &[]), before, "not code");
        std::fs::write(t.path().join("w.py"), "longer").expect("write");
        assert_ne!(tree_print(t.path(), &[]), before);
    }
}
