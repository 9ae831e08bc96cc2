use super::*;
use std::io::Read;
use std::time::{Duration, Instant};

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

fn sh(script: &str, setup: ChildSetup, cwd: Option<&str>) -> Result<Spawned, SpawnError> {
    spawn(&Spec {
        program: c("/bin/sh"),
        argv: vec![c("sh"), c("-c"), c(script)],
        env: vec![c("PATH=/usr/bin:/bin"), c("MARK=here")],
        cwd: cwd.map(c),
        setup,
    })
}

fn reap(pid: Pid) -> (ExitStatus, Rusage) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(r) = wait4(pid).expect("wait4") {
            return r;
        }
        assert!(Instant::now() < deadline, "child did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn stdout_of(s: Spawned) -> (String, ExitStatus, Rusage) {
    drop(s.stdin);
    let mut out = String::new();
    std::fs::File::from(s.stdout)
        .read_to_string(&mut out)
        .expect("read stdout");
    let (status, usage) = reap(s.pid);
    (out, status, usage)
}

#[test]
fn the_child_gets_its_group_env_cwd_limits_and_default_sigpipe() {
    let setup = ChildSetup::default()
        .limit(Resource::RLIMIT_NOFILE, 77, 77)
        .limit(Resource::RLIMIT_CPU, 9, 14);
    let script = "echo $MARK $(pwd) $(ulimit -n) $(ulimit -t) $(ps -o pgid= -p $$) $$; \
                  grep -E '^Sig(Ign|Blk)' /proc/self/status";
    let s = sh(script, setup, Some("/tmp")).expect("spawn");
    let pid = s.pid;
    let (out, status, _) = stdout_of(s);
    assert!(status.success(), "{status:?} {out}");
    let first: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(&first[..4], ["here", "/tmp", "77", "9"], "{out}");
    assert_eq!(first[4], first[5], "own process group: {out}");
    assert_eq!(first[5], pid.to_string());
    // Nothing blocked, and SIGPIPE (ignored in the host, as in every Rust program) at its default.
    assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
    let ignored = out
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:\t"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .expect("SigIgn line");
    assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "{out}");
}

#[test]
fn wait4_reports_cpu_and_memory() {
    let s = sh(
        "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done",
        ChildSetup::default(),
        None,
    )
    .expect("spawn");
    let (_, status, usage) = stdout_of(s);
    assert!(status.success());
    assert!(usage.user_us + usage.system_us > 0, "{usage:?}");
    assert!(usage.max_rss_kb > 100, "{usage:?}");
}

#[test]
fn failures_name_their_stage() {
    let e = sh("true", ChildSetup::default(), Some("/nonexistent/dir")).expect_err("no cwd");
    assert_eq!(e.stage, Stage::WorkingDirectory);
    assert_eq!(e.error.raw_os_error(), Some(libc::ENOENT));
    let e = spawn(&Spec {
        program: c("/nonexistent/program"),
        argv: vec![c("program")],
        env: Vec::new(),
        cwd: None,
        setup: ChildSetup::default(),
    })
    .expect_err("no program");
    assert_eq!(e.stage, Stage::Exec);
    assert_eq!(e.error.raw_os_error(), Some(libc::ENOENT));
}

#[test]
fn the_parent_death_signal_is_sigkill() {
    // /proc does not show it; a child of the child reads its own through prctl via python.
    let py = "/root/.pyenv/versions/3.11.7/bin/python3";
    if !std::path::Path::new(py).exists() {
        return;
    }
    let s = spawn(&Spec {
        program: c(py),
        argv: vec![
            c("python3"),
            c("-c"),
            c(
                "import ctypes,ctypes.util; l=ctypes.CDLL(None); v=ctypes.c_int(); \
               l.prctl(2, ctypes.byref(v), 0, 0, 0); print(v.value)",
            ),
        ],
        env: Vec::new(),
        cwd: None,
        setup: ChildSetup::default(),
    })
    .expect("spawn");
    let (out, status, _) = stdout_of(s);
    assert!(status.success());
    assert_eq!(out.trim(), "9");
}
