//! Integration tests of the `postgres` task manager: the built `workerhost` binary against a real
//! PostgreSQL: the machine's at 127.0.0.1:5432 (trust auth) with a schema of its own per test, or a
//! private cluster (`initdb` + `pg_ctl` on a free port in a temp dir) for the tests that stop it or
//! terminate its backends. Without a reachable server the shared-server tests print a notice and pass,
//! except under `CI=true`, where they fail.

mod faults;
mod flow;
#[path = "../support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

/// A schema of its own on a server, dropped with everything in it when the test ends.
pub struct Db {
    pub port: u16,
    pub schema: String,
}

impl Db {
    /// A schema on the machine's server, or `None` (after a notice) when it is down and CI is not set.
    pub fn shared(test: &str) -> Option<Db> {
        let up = std::net::TcpStream::connect("127.0.0.1:5432").is_ok();
        service_or_skip("PostgreSQL at 127.0.0.1:5432", up).then(|| Db::on(5432, test))
    }

    pub fn on(port: u16, test: &str) -> Db {
        Db {
            port,
            schema: format!(
                "wh_it_{test}_{}_{:06x}",
                std::process::id(),
                rand::random::<u32>() & 0xff_ffff
            ),
        }
    }

    fn database(&self) -> &'static str {
        if self.port == 5432 {
            "test"
        } else {
            "postgres"
        }
    }

    /// The connection URL, with a password that trust auth ignores (it must never show in logs).
    pub fn url(&self) -> String {
        format!(
            "postgresql://postgres:pw-never-shown@127.0.0.1:{}/{}",
            self.port,
            self.database()
        )
    }

    /// The `task_manager:` body for `Project::config_with` (`lease_seconds: 2` unless `extra` sets it).
    pub fn tm(&self, extra: &str) -> String {
        let lease = if extra.contains("lease_seconds") {
            ""
        } else {
            "  lease_seconds: 2\n"
        };
        format!(
            "  type: postgres\n  url: \"{}\"\n  schema: {}\n{lease}{extra}",
            self.url(),
            self.schema
        )
    }

    /// Runs SQL through psql (`{s}` is the schema); the rows, fields separated by `|`. Panics on error.
    pub fn q(&self, sql: &str) -> Vec<String> {
        let out = self.psql(sql);
        assert!(out.0, "psql failed: {}\n{sql}", out.1);
        out.2
    }

    /// (ok, stderr, rows) of one psql run.
    pub fn psql(&self, sql: &str) -> (bool, String, Vec<String>) {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(["-p", &self.port.to_string(), "-d", self.database(), "-c"])
            .arg(sql.replace("{s}", &self.schema))
            .output()
            .expect("psql must be installed (apt-get install postgresql-client)");
        (
            out.status.success(),
            text(&out.stderr),
            text(&out.stdout).lines().map(str::to_string).collect(),
        )
    }

    pub fn one(&self, sql: &str) -> String {
        self.q(sql).into_iter().next().unwrap_or_default()
    }

    pub fn count(&self, filter: &str) -> usize {
        self.one(&format!("SELECT count(*) FROM {{s}}.tasks WHERE {filter}"))
            .parse()
            .unwrap_or(usize::MAX)
    }

    /// `n` tasks of type `T` with ids `<prefix>0..`, enqueued in one transaction.
    pub fn enqueue_many(&self, prefix: &str, n: usize) -> Vec<String> {
        self.q(&format!(
            "SELECT {{s}}.enqueue(p_type => 'T', p_id => '{prefix}' || i) FROM generate_series(0, {}) i",
            n - 1
        ));
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = self.psql("DROP SCHEMA IF EXISTS {s} CASCADE");
    }
}

/// A private cluster of the machine's PostgreSQL binaries, on a free port in a temp dir, owned by the
/// `postgres` user when the tests run as root (initdb refuses root). Stopped when dropped.
pub struct PrivatePg {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl PrivatePg {
    /// `None` (after a notice) when the server binaries are missing and CI is not set.
    pub fn start() -> Option<PrivatePg> {
        let bin = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .find(|b| b.join("initdb").exists())
        });
        let bin = match bin {
            Some(b) => b,
            None => {
                service_or_skip(
                    "PostgreSQL server binaries under /usr/lib/postgresql",
                    false,
                );
                return None;
            }
        };
        let pg = PrivatePg {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            bin,
        };
        if is_root() {
            let st = Command::new("chown")
                .arg("-R")
                .arg("postgres")
                .arg(pg.dir.path())
                .status()
                .expect("chown");
            assert!(st.success(), "chown postgres {}", pg.dir.path().display());
        }
        let data = pg.dir.path().join("data");
        pg.as_postgres(&format!(
            "{} -D {} -A trust -U postgres",
            pg.bin.join("initdb").display(),
            data.display()
        ));
        pg.start_again();
        Some(pg)
    }

    fn as_postgres(&self, cmd: &str) {
        let mut c = if is_root() {
            let mut c = Command::new("su");
            c.args(["postgres", "-s", "/bin/sh", "-c", cmd]);
            c
        } else {
            let mut c = Command::new("/bin/sh");
            c.args(["-c", cmd]);
            c
        };
        let out = c.stdin(Stdio::null()).output().expect("run as postgres");
        assert!(
            out.status.success(),
            "{cmd}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    fn pg_ctl(&self, args: &str) {
        self.as_postgres(&format!(
            "{} -D {} {args}",
            self.bin.join("pg_ctl").display(),
            self.dir.path().join("data").display()
        ));
    }

    /// Starts the cluster (again) on its port; returns when it accepts connections.
    pub fn start_again(&self) {
        let d = self.dir.path().display();
        self.pg_ctl(&format!(
            "-w -l {d}/log -o '-p {} -k {d} -c listen_addresses=127.0.0.1 -c fsync=off' start",
            self.port
        ));
    }

    /// A fast shutdown: every connection is closed.
    pub fn stop(&self) {
        self.pg_ctl("-w -m fast stop");
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let d = self.dir.path().join("data");
        let cmd = format!(
            "{} -D {} -m immediate stop",
            self.bin.join("pg_ctl").display(),
            d.display()
        );
        let _ = if is_root() {
            Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", &cmd])
                .output()
        } else {
            Command::new("/bin/sh").args(["-c", &cmd]).output()
        };
    }
}

/// A shell worker (no interpreter start-up) for type `T` that logs `id attempt` to `runs.log` and sleeps
/// `sleep` seconds.
pub fn shell_worker(p: &Project, sleep: &str) -> String {
    p.write(
        "w.sh",
        &format!(
            "read -r doc\necho \"$WORKERHOST_TASK_ID $WORKERHOST_ATTEMPT\" >> runs.log\nsleep {sleep}\nprintf '{{\"success\": true, \"result\": {{\"pid\": %s}}}}\\n' $$\n"
        ),
    );
    "  - name: sh\n    command: [\"/bin/sh\", \"./w.sh\"]\n    project_path: .\n    task_types: [T]\n".to_string()
}

/// How many times each task ran, from `runs.log`.
pub fn counts(p: &Project) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for l in lines(&p.file("runs.log")) {
        let id = l.split_whitespace().next().unwrap_or("").to_string();
        *m.entry(id).or_insert(0) += 1;
    }
    m
}

/// A running host whose stderr is collected by a thread (a full pipe would stall it).
pub struct Host {
    /// Killed when dropped.
    pub child: Running,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Host {
    pub fn spawn(p: &Project, args: &[&str]) -> Host {
        let mut child = p.spawn_host(args);
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(err) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                    let mut l = log.lock().expect("log");
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        Host { child, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// SIGTERM, waits for the exit; returns the exit code and the log.
    pub fn stop(&mut self) -> (Option<i32>, String) {
        signal(&self.child, nix::sys::signal::Signal::SIGTERM);
        let st = wait_child(&mut self.child, Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(50));
        (st.code(), self.log())
    }

    pub fn kill9(&mut self) {
        signal(&self.child, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Whether the tests run as root (the owner of `/proc/self` is the process's effective user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `workerhost migrate`, which must succeed.
pub fn migrate(p: &Project) {
    let out = p.run(&["migrate"]);
    assert!(
        out.status.success(),
        "migrate: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
