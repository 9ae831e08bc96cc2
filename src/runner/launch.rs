//! What a worker process is started as: program, arguments, working directory, environment, and the
//! limits and user of section 9, all turned into the [`Spec`] that [`super::child::spawn`] executes.

use super::Outcome;
use super::child::{ChildSetup, Spec};
use super::leader::TOKEN_VAR;
use crate::config::{CPU_HARD_EXTRA_SECONDS, Limits, WorkerConfig, WorkerKind};
use nix::sys::resource::Resource;
use nix::unistd::{Gid, Uid};
use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Variables of the host's own environment that every worker gets; everything else (API keys, tokens)
/// stays in the host unless the worker lists it in `env_passthrough`.
const BASE_ENV: &[&str] = &["PATH", "HOME", "LANG", "TZ"];

/// The exit code of the host's Python wrapper when the worker's `module` or `function` cannot be
/// imported (section 3: a spawn error). A worker's own code never runs before it, so a worker's own exit
/// codes are not confused with it unless the worker itself exits 121.
pub const IMPORT_FAILED: i32 = 121;

/// The environment every process of `worker` starts with (the task's own variables come on top): the
/// host's [`BASE_ENV`] and the worker's `env_passthrough`, the `user:`'s home and name, the worker's
/// `env:`, and `WORKERHOST_WORKER`. `check` probes a worker's module with the same.
pub fn worker_env(worker: &WorkerConfig) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = BTreeMap::new();
    for name in BASE_ENV
        .iter()
        .copied()
        .chain(worker.env_passthrough.iter().map(String::as_str))
    {
        if let Some(v) = std::env::var_os(name) {
            env.insert(name.into(), v);
        }
    }
    if let Some(u) = &worker.user {
        env.insert("HOME".into(), u.home.clone().into_os_string());
        env.insert("USER".into(), u.name.clone().into());
        env.insert("LOGNAME".into(), u.name.clone().into());
    }
    env.extend(worker.env.iter().map(|(k, v)| (k.into(), v.into())));
    env.insert("WORKERHOST_WORKER".into(), worker.name.clone().into());
    env
}

/// The program and arguments of a process worker (python or command; a remote worker has none).
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    program: OsString,
    args: Vec<String>,
    /// A Python worker's `module` and `function`, for the message of an import failure.
    python: Option<(String, Option<String>)>,
}

impl Launch {
    /// `None` for a remote worker (and for an empty argv, which config validation rules out).
    pub fn of(kind: &WorkerKind) -> Option<Launch> {
        match kind {
            WorkerKind::Python {
                interpreter,
                module,
                function,
            } => {
                // The import is guarded: failing to import is told apart from the worker's own
                // failures by the exit code, not by reading stderr.
                let code = IMPORT_FAILED;
                let script = match function {
                    Some(f) => format!(
                        "import sys\ntry:\n    from {module} import {f}\nexcept Exception as e:\n    sys.stderr.write('cannot import %s from %s: %s: %s\\n' % ({f:?}, {module:?}, type(e).__name__, e))\n    sys.exit({code})\n{f}()\n"
                    ),
                    None => format!(
                        "import importlib.util, runpy, sys\ntry:\n    found = importlib.util.find_spec({module:?}) is not None\nexcept Exception as e:\n    found = False\nif not found:\n    sys.stderr.write('cannot find module %s\\n' % {module:?})\n    sys.exit({code})\nsys.argv[0] = {module:?}\nrunpy.run_module({module:?}, run_name='__main__', alter_sys=True)\n"
                    ),
                };
                Some(Launch {
                    program: interpreter.clone().into_os_string(),
                    args: vec!["-c".into(), script],
                    python: Some((module.clone(), function.clone())),
                })
            }
            WorkerKind::Command { argv } => {
                let (program, args) = argv.split_first()?;
                Some(Launch {
                    program: program.into(),
                    args: args.to_vec(),
                    python: None,
                })
            }
            WorkerKind::Remote { .. } => None,
        }
    }

    /// `outcome` as a spawn error when it is the import wrapper's exit ([`IMPORT_FAILED`]) of a Python
    /// worker; `why` is the wrapper's message (its last stderr line), for the reason only.
    pub fn import_failure(&self, outcome: Outcome, why: Option<String>) -> Outcome {
        let Some((module, function)) = &self.python else {
            return outcome;
        };
        if !matches!(
            outcome,
            Outcome::Crashed {
                exit_code: Some(IMPORT_FAILED),
                ..
            }
        ) {
            return outcome;
        }
        let what = match function {
            Some(f) => format!("cannot import `{f}` from module `{module}`"),
            None => format!("cannot find module `{module}`"),
        };
        let reason = match why {
            Some(w) => format!("{what} ({w})"),
            None => what,
        };
        Outcome::SpawnError { reason }
    }

    /// The program as configured (for messages).
    pub fn program(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    /// What to start for `worker`: for one attempt (`doc`: its id, type and attempt in the environment),
    /// or for a pool process (`None`), which learns each task from its stdin line instead. `token`
    /// marks the process and all it starts (see [`super::escapees`]).
    pub fn spec(
        &self,
        worker: &WorkerConfig,
        doc: Option<&workerhost_sdk::TaskDocument>,
        token: u64,
    ) -> Result<Spec, String> {
        let mut env = worker_env(worker);
        let mut set = |k: &str, v: String| env.insert(k.into(), v.into());
        match doc {
            Some(doc) => {
                set("WORKERHOST_TASK_ID", doc.id.clone());
                set("WORKERHOST_TASK_TYPE", doc.task_type.clone());
                set("WORKERHOST_ATTEMPT", doc.attempt.to_string());
                if let Some(tp) = &doc.traceparent {
                    set("TRACEPARENT", tp.clone());
                }
                set("WORKERHOST_MODE", "spawn".into());
            }
            None => {
                set("WORKERHOST_MODE", "pool".into());
            }
        }
        set(TOKEN_VAR, token.to_string());
        let program = resolve(&self.program, env.get(OsStr::new("PATH")));
        let c = |bytes: Vec<u8>, what: &str| {
            CString::new(bytes).map_err(|_| format!("{what} contains a NUL byte"))
        };
        let mut argv = vec![c(self.program.as_bytes().to_vec(), "the program")?];
        for a in &self.args {
            argv.push(c(a.as_bytes().to_vec(), "an argument")?);
        }
        let mut envp = Vec::with_capacity(env.len());
        for (k, v) in env {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envp.push(c(kv, "an environment variable")?);
        }
        let cwd = match &worker.project_path {
            Some(d) => Some(c(d.as_os_str().as_bytes().to_vec(), "project_path")?),
            None => None,
        };
        Ok(Spec {
            program: c(program.into_os_string().into_vec(), "the program")?,
            argv,
            env: envp,
            cwd,
            setup: setup(worker),
        })
    }
}

/// The limits and user of `worker`, for the child.
pub fn setup(worker: &WorkerConfig) -> ChildSetup {
    let Limits {
        memory_mb,
        cpu_seconds,
        open_files,
        processes,
    } = worker.limits;
    let mut s = ChildSetup::default();
    if let Some(mb) = memory_mb {
        let bytes = mb.saturating_mul(1024 * 1024);
        s = s.limit(Resource::RLIMIT_AS, bytes, bytes);
    }
    if let Some(secs) = cpu_seconds {
        s = s.limit(
            Resource::RLIMIT_CPU,
            secs,
            secs.saturating_add(CPU_HARD_EXTRA_SECONDS),
        );
    }
    if let Some(n) = open_files {
        s = s.limit(Resource::RLIMIT_NOFILE, n, n);
    }
    if let Some(n) = processes {
        s = s.limit(Resource::RLIMIT_NPROC, n, n);
    }
    if let Some(u) = &worker.user {
        s = s.user(Uid::from_raw(u.uid), Gid::from_raw(u.gid));
    }
    s
}

/// A bare program name (no `/`) looked up on `path` (the worker's `PATH`), as `execvp` would; a name
/// found nowhere is kept, and its `exec` fails with "No such file or directory".
fn resolve(program: &OsStr, path: Option<&OsString>) -> PathBuf {
    if program.as_bytes().contains(&b'/') {
        return PathBuf::from(program);
    }
    let search = path
        .map(OsString::as_os_str)
        .unwrap_or(OsStr::new("/usr/bin:/bin"));
    std::env::split_paths(search)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
        .unwrap_or_else(|| PathBuf::from(program))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
