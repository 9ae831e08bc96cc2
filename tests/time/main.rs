//! Integration tests of section 7 (time): `submit --delay|--at|--priority` and their refusals, schedules
//! run once across hosts sharing a task manager, delayed tasks and priorities, retries that wait in the
//! task manager instead of holding a slot. The built binary against the real sqlite file and the
//! machine's Redis (a unique stream per test; skipped with a notice when Redis is down, except under
//! `CI=true`).

mod delayed;
mod retries;
mod schedules;
mod submit;
#[path = "../support/mod.rs"]
mod support;

use std::process::{Child, Stdio};
use support::*;

pub const SHARED_REDIS: &str = "redis://127.0.0.1:6379/0";

/// A unique Redis stream; every key starting with its name is deleted when dropped.
pub struct Stream {
    pub name: String,
}

impl Stream {
    /// A stream on the machine's Redis, or `None` (after a notice) when it is down and CI is not set.
    pub fn shared(test: &str) -> Option<Stream> {
        let up = redis::Client::open(SHARED_REDIS)
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok();
        service_or_skip("redis at 127.0.0.1:6379", up).then(|| Stream {
            name: format!(
                "wh-test:{test}:{}:{:06x}",
                std::process::id(),
                rand::random::<u32>() & 0xff_ffff
            ),
        })
    }

    pub fn con(&self) -> redis::Connection {
        redis::Client::open(SHARED_REDIS)
            .and_then(|c| c.get_connection())
            .expect("connect to redis")
    }

    /// The `task_manager:` body for `Project::config_with`.
    pub fn tm(&self) -> String {
        format!(
            "  type: redis\n  url: \"{SHARED_REDIS}\"\n  stream: \"{}\"\n  lease_seconds: 2\n  block_ms: 200\n",
            self.name
        )
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let mut c = self.con();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.name))
            .query(&mut c)
            .unwrap_or_default();
        for k in keys {
            let _: Result<i64, _> = redis::cmd("DEL").arg(k).query(&mut c);
        }
    }
}

/// A shell worker for type `T` that records `<task id> <attempt>` in `runs.log` and succeeds.
pub fn recording_worker(p: &Project) -> String {
    p.write(
        "w.sh",
        "read -r doc\necho \"$WORKERHOST_TASK_ID $WORKERHOST_ATTEMPT\" >> runs.log\nprintf '{\"success\": true, \"result\": {}}\\n'\n",
    );
    "  - name: sh\n    command: [\"/bin/sh\", \"./w.sh\"]\n    project_path: .\n    task_types: [T]\n".to_string()
}

/// A host of `p`'s config with its stderr in `log` (a file in the project).
pub fn host_logged(p: &Project, log: &str, args: &[&str]) -> Running {
    let f = std::fs::File::create(p.file(log)).expect("log file");
    Running(
        p.cmd(args)
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("spawn host"),
    )
}

/// What a host started with [`host_logged`] wrote.
pub trait Logs {
    fn host_log_named(&self, log: &str) -> String;
}

impl Logs for Project {
    fn host_log_named(&self, log: &str) -> String {
        std::fs::read_to_string(self.file(log)).unwrap_or_default()
    }
}

/// Stops a host with SIGTERM and waits for it.
pub fn stop(mut host: Running) -> std::process::ExitStatus {
    let child: &mut Child = &mut host.0;
    signal(child, nix::sys::signal::Signal::SIGTERM);
    wait_child(child, std::time::Duration::from_secs(20))
}
