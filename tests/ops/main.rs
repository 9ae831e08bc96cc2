//! Operating the host: real HTTP requests to a running `workerhost` for every endpoint and status
//! code, metrics checked after known task outcomes, observer hooks against real receivers, SIGHUP
//! reload under load, the status page in headless Chromium, and the deployment files.

mod browser;
mod deploy;
mod endpoints;
mod hooks;
mod operate;
mod page;
mod prom;
mod reload;
#[path = "../support/mod.rs"]
mod support;
mod systemd;

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;
use support::*;

/// A shell worker: records `id attempt` in runs.log; ids starting with `fail` exit 2 with an error,
/// `flaky` fail their first attempt, `slow` sleep `$SLEEP_S` (default 3) seconds, `hang` sleep 60 s.
pub const WORKER_SH: &str = r#"read -r doc
echo "$WORKERHOST_TASK_ID $WORKERHOST_ATTEMPT" >> runs.log
case "$WORKERHOST_TASK_ID" in
  fail*) echo '{"success": false, "error": {"message": "quota exceeded <for real>", "retry_possible": false}}'; exit 2 ;;
  flaky*) if [ "$WORKERHOST_ATTEMPT" = 1 ]; then echo "flaked" >&2; exit 1; fi ;;
  slow*) sleep "${SLEEP_S:-3}" ;;
  hang*) sleep 60 ;;
esac
printf '{"success": true, "result": {"worker": "%s", "version": "%s"}}\n' "$WORKERHOST_WORKER" "${VERSION:-}"
"#;

/// A command worker entry running `w.sh`.
pub fn sh_worker(name: &str, types: &str, extra: &str) -> String {
    format!(
        "  - name: \"{name}\"\n    command: [\"/bin/sh\", \"./w.sh\"]\n    project_path: .\n    task_types: [{types}]\n{extra}"
    )
}

/// Writes `w.sh` and a config with a fast sqlite queue, the given `host.http` flow mapping (or none),
/// `observers:` items and workers.
pub fn ops_config(p: &Project, http: Option<&str>, observers: &str, workers: &str) -> PathBuf {
    p.write("w.sh", WORKER_SH);
    let http = http.map(|h| format!("  http: {h}\n")).unwrap_or_default();
    let observers = if observers.is_empty() {
        String::new()
    } else {
        format!("observers:\n{observers}")
    };
    let text = format!(
        "version: \"1.0\"\nhost:\n  shutdown_grace_seconds: 10\n{http}task_manager:\n  type: sqlite\n  path: ./queue.db\n  lease_seconds: 2\n  poll_interval_ms: 20\ndefaults:\n  timeout: 20\n  max_retries: 2\n  retry: {{ base_delay_seconds: 0.01, backoff_multiplier: 2.0, max_delay_seconds: 0.05, jitter: false }}\n{observers}workers:\n{workers}"
    );
    p.write("workerhost_config.yaml", &text)
}

/// `target/test-output/ops/` (made if missing), where the page tests keep their screenshots.
pub fn output_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"));
    let dir = target.join("test-output/ops");
    std::fs::create_dir_all(&dir).expect("mkdir test-output");
    dir
}

/// A running host, killed when dropped (a failing test leaves no process behind).
pub struct Running {
    pub child: Child,
    pub port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Running {
    pub fn get(&self, path: &str) -> HttpResponse {
        http_get(self.port, path, &[]).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        http_get(self.port, path, headers).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// SIGTERM, then the exit code within `limit`.
    pub fn stop(&mut self, limit: Duration) -> Option<i32> {
        signal(&self.child, nix::sys::signal::Signal::SIGTERM);
        wait_child(&mut self.child, limit).code()
    }
}

/// Starts `workerhost run --listen 127.0.0.1:<free port>` and waits until `/health` answers.
pub fn start_host(p: &Project, extra_args: &[&str], env: &[(&str, &str)]) -> Running {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["run", "--listen", listen.as_str()];
    args.extend_from_slice(extra_args);
    let child = p.spawn_host_logged(&args, env);
    let mut r = Running { child, port };
    let up = wait_until(Duration::from_secs(20), || {
        http_get(port, "/health", &[]).is_ok() || r.child.try_wait().ok().flatten().is_some()
    });
    assert!(
        up && r.child.try_wait().ok().flatten().is_none(),
        "the host did not come up: {}",
        p.host_log()
    );
    r
}

/// Enqueues a task of any type (through `submit --any-type`, so configs that lack the type work).
pub fn submit_any(p: &Project, task_type: &str, id: &str) {
    let out = p.run(&["submit", "--type", task_type, "--id", id, "--any-type"]);
    assert!(out.status.success(), "submit failed: {}", text(&out.stderr));
}

/// Waits until every id has a final status (`succeeded` or `dead`); returns the statuses.
pub fn wait_final(p: &Project, ids: &[&str], limit: Duration) -> Vec<serde_json::Value> {
    let mut done = Vec::new();
    let ok = wait_until(limit, || {
        done = ids.iter().filter_map(|id| p.status(id)).collect();
        done.len() == ids.len()
            && done
                .iter()
                .all(|s| s["status"] == "succeeded" || s["status"] == "dead")
    });
    assert!(ok, "tasks did not finish: {done:?}\n{}", p.host_log());
    done
}
