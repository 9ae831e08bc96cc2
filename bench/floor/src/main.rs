//! The direct-spawn floor: starts a worker the way the host does (argv, cleared environment plus the
//! host's variables, own process group, piped stdio, one task document on stdin, stdout read to EOF),
//! with no task manager and no host in between.
//!
//! ```text
//! spawn-floor throughput PARALLEL COUNT [--cwd DIR] [--env K=V]... -- ARGV...
//! spawn-floor latency COUNT [--cwd DIR] [--env K=V]... -- ARGV...
//! ```
//!
//! `throughput` runs COUNT tasks from PARALLEL threads (a tight loop each) and prints
//! `{"tasks":..,"seconds":..,"per_s":..,"failures":..}`. `latency` runs COUNT tasks one at a time, 20 ms
//! apart (an idle machine between runs), and prints the median and p95 in ms of start to result.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Spec {
    argv: Vec<String>,
    cwd: Option<String>,
    env: Vec<(String, String)>,
}

impl Spec {
    /// One run of the worker; `true` when its stdout holds a successful result.
    fn run(&self, i: usize) -> bool {
        let id = format!("f{i}");
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]).env_clear();
        for k in ["PATH", "HOME", "LANG", "TZ"] {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("WORKERHOST_WORKER", "floor")
            .env("WORKERHOST_TASK_ID", &id)
            .env("WORKERHOST_TASK_TYPE", "noop")
            .env("WORKERHOST_ATTEMPT", "1")
            .env("WORKERHOST_MODE", "spawn")
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(d) = &self.cwd {
            cmd.current_dir(d);
        }
        let Ok(mut child) = cmd.spawn() else {
            return false;
        };
        let doc = format!(r#"{{"id":"{id}","type":"noop","params":{{"text":"abc"}},"attempt":1}}"#);
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(doc.as_bytes());
        }
        let mut out = Vec::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_end(&mut out);
        }
        let mut err = Vec::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_end(&mut err);
        }
        let ok = child.wait().map(|s| s.success()).unwrap_or(false);
        let text = String::from_utf8_lossy(&out);
        ok && (text.contains("\"success\": true") || text.contains("\"success\":true"))
    }
}

/// This process's own CPU time (user + system, all threads; not its children's), in ms.
fn own_cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name; in clock ticks.
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) * 10
}

fn usage() -> ! {
    eprintln!("usage: spawn-floor throughput PARALLEL COUNT [--cwd DIR] [--env K=V]... -- ARGV...");
    eprintln!("       spawn-floor latency COUNT [--cwd DIR] [--env K=V]... -- ARGV...");
    std::process::exit(2)
}

fn num(s: Option<&String>) -> usize {
    s.and_then(|s| s.parse().ok()).unwrap_or_else(|| usage())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().cloned().unwrap_or_default();
    let fixed = match mode.as_str() {
        "throughput" => 2,
        "latency" => 1,
        _ => usage(),
    };
    let nums: Vec<usize> = (1..=fixed).map(|i| num(args.get(i))).collect();
    let mut spec = Spec {
        argv: Vec::new(),
        cwd: None,
        env: Vec::new(),
    };
    let mut rest = args.iter().skip(1 + fixed);
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--cwd" => spec.cwd = rest.next().cloned(),
            "--env" => {
                let kv = rest.next().cloned().unwrap_or_default();
                let (k, v) = kv.split_once('=').unwrap_or_else(|| usage());
                spec.env.push((k.to_string(), v.to_string()));
            }
            "--" => {
                spec.argv = rest.by_ref().cloned().collect();
            }
            _ => usage(),
        }
    }
    if spec.argv.is_empty() {
        usage();
    }
    if mode == "throughput" {
        let (parallel, count) = (nums[0].max(1), nums[1]);
        let next = AtomicUsize::new(0);
        let failures = AtomicUsize::new(0);
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..parallel {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            return;
                        }
                        if !spec.run(i) {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let secs = t0.elapsed().as_secs_f64();
        println!(
            r#"{{"tasks":{count},"seconds":{secs:.4},"per_s":{:.1},"failures":{},"cpu_ms":{}}}"#,
            count as f64 / secs,
            failures.load(Ordering::Relaxed),
            own_cpu_ms()
        );
    } else {
        let count = nums[0].max(1);
        let mut ms = Vec::with_capacity(count);
        let mut failures = 0;
        for i in 0..count {
            std::thread::sleep(Duration::from_millis(20));
            let t0 = Instant::now();
            if !spec.run(i) {
                failures += 1;
            }
            ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        let p = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
        println!(
            r#"{{"count":{count},"median_ms":{:.3},"p95_ms":{:.3},"min_ms":{:.3},"failures":{failures}}}"#,
            p(0.5),
            p(0.95),
            ms[0]
        );
    }
}
