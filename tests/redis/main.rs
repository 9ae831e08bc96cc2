//! Integration tests of the `redis` task manager: the built `workerhost` binary against a real Redis (the
//! machine's at 127.0.0.1:6379 with a unique stream per test, or a private `redis-server` for tests that
//! stop it). Without a reachable Redis the tests print a notice and pass, except under `CI=true`, where
//! they fail.

mod faults;
mod flow;
mod ops;
#[path = "../support/mod.rs"]
mod support;

use serde_json::Value;
use std::collections::HashMap;
use support::*;

pub const SHARED: &str = "redis://127.0.0.1:6379/0";

/// A unique stream; every key starting with its name is deleted when dropped.
pub struct Stream {
    pub name: String,
    pub url: String,
}

impl Stream {
    /// A stream on the machine's Redis, or `None` (after a notice) when it is down and CI is not set.
    pub fn shared(test: &str) -> Option<Stream> {
        let up = redis::Client::open(SHARED)
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok();
        service_or_skip("redis at 127.0.0.1:6379", up).then(|| Stream::on(SHARED, test))
    }

    pub fn on(url: &str, test: &str) -> Stream {
        Stream {
            name: format!(
                "wh-test:{test}:{}:{:06x}",
                std::process::id(),
                rand::random::<u32>() & 0xff_ffff
            ),
            url: url.to_string(),
        }
    }

    pub fn con(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection())
            .expect("connect to redis")
    }

    /// The `task_manager:` body for `Project::config_with`.
    pub fn tm(&self, extra: &str) -> String {
        format!(
            "  type: redis\n  url: \"{}\"\n  stream: \"{}\"\n  lease_seconds: 2\n  block_ms: 200\n{extra}",
            self.url, self.name
        )
    }

    /// `XADD <stream> * field value ...` by hand.
    pub fn xadd(&self, fields: &[(&str, &str)]) -> String {
        let mut c = redis::cmd("XADD");
        c.arg(&self.name).arg("*");
        for (k, v) in fields {
            c.arg(*k).arg(*v);
        }
        c.query(&mut self.con()).expect("XADD")
    }

    pub fn task(&self, id: &str, task_type: &str) -> String {
        let t = serde_json::json!({"id": id, "type": task_type, "params": {}}).to_string();
        self.xadd(&[("task", &t)])
    }

    pub fn len(&self, suffix: &str) -> usize {
        redis::cmd("XLEN")
            .arg(format!("{}{suffix}", self.name))
            .query(&mut self.con())
            .expect("XLEN")
    }

    /// Entries in the group's pending list (0 without a group).
    pub fn pending(&self) -> usize {
        let v: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
            .arg(&self.name)
            .arg("workerhost")
            .query(&mut self.con());
        match v {
            Ok(redis::Value::Array(a)) => match a.first() {
                Some(redis::Value::Int(n)) => *n as usize,
                _ => 0,
            },
            _ => 0,
        }
    }

    /// The dead letters, as field maps.
    pub fn dead(&self) -> Vec<HashMap<String, String>> {
        let v: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(format!("{}:dead", self.name))
            .arg("-")
            .arg("+")
            .query(&mut self.con())
            .expect("XRANGE");
        v.into_iter().map(|(_, m)| m).collect()
    }

    /// The stored result document of a task.
    pub fn result(&self, id: &str) -> Option<Value> {
        let raw: Option<String> = redis::cmd("GET")
            .arg(format!("{}:result:{id}", self.name))
            .query(&mut self.con())
            .ok()?;
        serde_json::from_str(&raw?).ok()
    }

    pub fn all_succeeded(&self, ids: impl Iterator<Item = String>) -> bool {
        ids.into_iter()
            .all(|id| self.result(&id).is_some_and(|r| r["status"] == "succeeded"))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let Ok(mut c) = redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection())
        else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.name))
            .query(&mut c)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut c);
        }
    }
}

/// A shell worker (no interpreter start-up) for type `T` that logs `id attempt host-pid` to `runs.log`
/// and sleeps `sleep` seconds.
pub fn shell_worker(p: &Project, sleep: &str) -> String {
    p.write(
        "w.sh",
        &format!(
            "read -r doc\necho \"$WORKERHOST_TASK_ID $WORKERHOST_ATTEMPT $PPID\" >> runs.log\nsleep {sleep}\nprintf '{{\"success\": true, \"result\": {{\"pid\": %s}}}}\\n' $$\n"
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

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// SIGTERM, waits for the exit; returns the exit code and the log.
    pub fn stop(&mut self) -> (Option<i32>, String) {
        signal(&self.child, nix::sys::signal::Signal::SIGTERM);
        let st = wait_child(&mut self.child, std::time::Duration::from_secs(20));
        std::thread::sleep(std::time::Duration::from_millis(50));
        (st.code(), self.log())
    }

    pub fn kill9(&mut self) {
        signal(&self.child, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
