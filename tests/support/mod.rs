//! Test support: the built binary, temp projects with configs, real Python venvs, waiting helpers.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_workerhost");

/// The real Python interpreter (never the pyenv shim on PATH, which costs ~75 ms a start).
pub fn real_python() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 must be installed to run these tests");
        assert!(out.status.success(), "python3 -c failed");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

/// One real virtualenv per test binary, made with `python3 -m venv`; returns its `bin/python`.
pub fn venv_python() -> PathBuf {
    static V: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    V.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let venv = dir.path().join("venv");
        let st = Command::new(real_python())
            .args(["-m", "venv", "--without-pip"])
            .arg(&venv)
            .status()
            .expect("python3 -m venv");
        assert!(st.success(), "python3 -m venv failed");
        let py = venv.join("bin/python");
        assert!(py.exists());
        (dir, py)
    })
    .1
    .clone()
}

/// A temp project folder with a config file and worker scripts.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        Project {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.file(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }

    /// Writes `workerhost_config.yaml` with a sqlite queue in the project and the given workers
    /// (YAML list items, indented by two spaces) and extra `host:` lines (indented by two spaces).
    pub fn config(&self, host: &str, workers: &str) -> PathBuf {
        self.config_with(
            "  type: sqlite\n  path: ./queue.db\n  lease_seconds: 2\n  poll_interval_ms: 20",
            host,
            workers,
        )
    }

    /// Like [`Project::config`] with the given `task_manager:` body (indented by two spaces).
    pub fn config_with(&self, task_manager: &str, host: &str, workers: &str) -> PathBuf {
        let text = format!(
            "version: \"1.0\"\nhost:\n  http: {{ listen: \"off\" }}\n{host}\ntask_manager:\n{task_manager}\ndefaults:\n  timeout: 20\n  max_retries: 2\n  retry: {{ base_delay_seconds: 0.01, backoff_multiplier: 2.0, max_delay_seconds: 0.05, jitter: false }}\nworkers:\n{workers}\n"
        );
        self.write("workerhost_config.yaml", &text)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config")
            .arg(self.file("workerhost_config.yaml"))
            .args(args)
            .current_dir(self.path())
            .env_remove("RUST_LOG")
            .env_remove("WORKERHOST_CONFIG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run workerhost")
    }

    pub fn submit(&self, task_type: &str, id: &str, params: &str) {
        let out = self.run(&[
            "submit", "--type", task_type, "--id", id, "--params", params,
        ]);
        assert!(out.status.success(), "submit failed: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), id);
    }

    /// `workerhost status ID` as JSON (None when unknown).
    pub fn status(&self, id: &str) -> Option<Value> {
        let out = self.run(&["status", id]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    pub fn spawn_host(&self, args: &[&str]) -> Running {
        Running(
            self.cmd(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn host"),
        )
    }
}

/// A spawned process that is killed when the test lets go of it, so a failing test never leaves a
/// host running (it would also hold the test's output pipe open).
pub struct Running(pub Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Polls `f` until it returns true or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    f()
}

/// Waits for a child with a limit; kills it and panics when the limit passes.
pub fn wait_child(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).expect("kill");
}

pub fn pid_alive(pid: i32) -> bool {
    // A zombie still "exists"; read its state to tell.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
    }
}

/// Lines of a file (empty when missing).
pub fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A Python worker script that behaves as `body` says; it records each run in `runs.log`.
pub fn python_worker(project: &Project, module: &str, body: &str) {
    let src = format!(
        "import json, os, sys, time, signal, subprocess\n\ndef main():\n    task = json.load(sys.stdin)\n    params = task.get('params') or {{}}\n    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'runs.log'), 'a') as f:\n        f.write(task['id'] + ' ' + str(task.get('attempt')) + '\\n')\n{}\n",
        indent(body, 4)
    );
    project.write(&format!("{module}.py"), &src);
}

fn indent(s: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    s.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A worker entry for `Project::config` running `module.main` with the test venv.
pub fn py_entry(name: &str, module: &str, task_type: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    project_path: .\n    venv_python: {}\n    module: {module}\n    function: main\n    task_types: [\"{task_type}\"]\n{extra}",
        venv_python().display()
    )
}

/// A minimal HTTP/1.1 server on a free loopback port, answering every request with `answer(path, body)`
/// = (status, body). Each request is handled on its own thread (so a hanging answer does not block the
/// others). Returns the base URL; the server lives until the test process ends.
pub fn http_stub(answer: impl Fn(&str, &str) -> (u16, String) + Send + Sync + 'static) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .to_string();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                let (status, text) = answer(&path, &String::from_utf8_lossy(&body));
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
            });
        }
    });
    format!("http://{addr}")
}

/// Whether a shared server the tests need is missing must fail the run (CI) or only skip the test.
/// Returns false (after printing a notice) when the caller should skip; panics under `CI=true`.
pub fn service_or_skip(name: &str, reachable: bool) -> bool {
    if reachable {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{name} is not reachable and CI=true: failing instead of skipping");
    }
    eprintln!("SKIPPED: {name} is not reachable (under CI=true this test fails)");
    false
}

/// A private `redis-server` on a free port in a temp dir, for tests that stop and restart it. Killed
/// when dropped.
pub struct PrivateRedis {
    pub port: u16,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts `redis-server --port N --save "" --appendonly no` plus `extra` arguments (later ones win,
    /// e.g. `--appendonly yes`).
    pub fn start(extra: &[&str]) -> PrivateRedis {
        let mut r = PrivateRedis {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        r.restart();
        r
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port and dir (after [`PrivateRedis::kill`]); waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let addr = self.addr();
        let up = wait_until(Duration::from_secs(10), || {
            use std::io::{Read, Write};
            let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
                return false;
            };
            let mut buf = [0u8; 64];
            s.write_all(b"PING\r\n").is_ok()
                && s.read(&mut buf).is_ok_and(|n| {
                    let reply = &buf[..n];
                    reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH")
                })
        });
        assert!(up, "private redis-server on {addr} did not start");
    }

    /// `kill -9` of the server.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Project {
    /// Like [`Project::spawn_host`], with the host's stderr in `host.log` (never a full pipe).
    pub fn spawn_host_logged(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        let log = std::fs::File::create(self.file("host.log")).expect("host.log");
        self.cmd(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn host")
    }

    /// What the host wrote to `host.log`.
    pub fn host_log(&self) -> String {
        std::fs::read_to_string(self.file("host.log")).unwrap_or_default()
    }
}

/// A port that was free a moment ago (the OS picks it; the listener is closed before returning).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// An HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `GET path` on 127.0.0.1:`port` over a plain TCP connection (HTTP/1.1, `Connection: close`), with
/// extra request headers.
pub fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> std::io::Result<HttpResponse> {
    http_send(port, "GET", path, headers, "")
}

/// `method path` with `body` (sent with a `Content-Length` when not empty), as [`http_get`].
pub fn http_send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<HttpResponse> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}
pub mod ops;
pub mod retries;
