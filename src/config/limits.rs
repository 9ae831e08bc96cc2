//! `limits:`, `retry_on_resource_limit:` and `user:` (section 9), under `defaults:` or a worker.
//!
//! Limits are kernel resource limits (`setrlimit`) set on the worker's process before it executes, so
//! they hold for everything it starts. No cgroups: these machines do not delegate a subtree to the host.

use serde::Serialize;
use std::path::PathBuf;

/// The limits in force for one worker; `None`: not limited (the host's own limits apply).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Address space, MiB (`RLIMIT_AS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// CPU time, seconds (`RLIMIT_CPU`: soft = this, SIGXCPU; hard = this + 5 s, SIGKILL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<u64>,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
    /// Processes of the worker's user (`RLIMIT_NPROC`; meaningful with `user:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<u64>,
}

/// Seconds between the soft CPU limit (SIGXCPU) and the hard one (SIGKILL).
pub const CPU_HARD_EXTRA_SECONDS: u64 = 5;

impl Limits {
    /// `self`'s fields where set, else `inherit`'s (a worker's `limits:` refines the defaults').
    pub fn over(self, inherit: Limits) -> Limits {
        Limits {
            memory_mb: self.memory_mb.or(inherit.memory_mb),
            cpu_seconds: self.cpu_seconds.or(inherit.cpu_seconds),
            open_files: self.open_files.or(inherit.open_files),
            processes: self.processes.or(inherit.processes),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// `user:`: the worker runs as this user and its primary group (the host runs as root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Its home directory: the worker's `HOME`.
    #[serde(skip)]
    pub home: PathBuf,
}

impl RunAs {
    /// Looks `name` up in the user database. The error says what is wrong, for the config problem.
    pub fn resolve(name: &str) -> Result<RunAs, String> {
        let user = match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => u,
            Ok(None) => return Err(format!("no user `{name}` on this machine")),
            Err(e) => return Err(format!("cannot look up user `{name}`: {e}")),
        };
        let me = nix::unistd::geteuid();
        if !me.is_root() && me != user.uid {
            return Err(format!(
                "running workers as `{name}` needs the host to run as root (it runs as uid {me})"
            ));
        }
        Ok(RunAs {
            name: name.to_string(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
        })
    }
}
