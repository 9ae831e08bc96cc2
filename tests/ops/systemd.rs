//! The systemd readiness protocol, read from a notify socket the test makes (as systemd would): READY
//! only once `/health` answers, RELOADING then READY around SIGHUP, WATCHDOG pings at half of
//! `$WATCHDOG_USEC`, STOPPING at SIGTERM.

use crate::support::{Project, free_port, http_get, signal, wait_child};
use crate::{ops_config, sh_worker};
use nix::sys::signal::Signal;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// Reads datagrams until one contains `want` (returning every message seen), or panics after `limit`.
fn read_until(sock: &UnixDatagram, want: &str, limit: Duration) -> Vec<String> {
    let end = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let hit = msg.lines().any(|l| l == want);
            seen.push(msg);
            if hit {
                return seen;
            }
        }
    }
    panic!("no {want} within {limit:?}; saw {seen:?}");
}

#[test]
fn the_host_tells_systemd_ready_reloading_watchdog_and_stopping() {
    let p = Project::new();
    ops_config(&p, None, "", &sh_worker("sd.main", "\"sd.T\"", ""));
    let sock_path = p.file("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let sock_env = sock_path.display().to_string();
    let mut child = p.spawn_host_logged(
        &["run", "--listen", &listen],
        &[("NOTIFY_SOCKET", &sock_env), ("WATCHDOG_USEC", "400000")],
    );

    let first = read_until(&sock, "READY=1", Duration::from_secs(20));
    // READY means the endpoints are up: /health answers at once, without waiting.
    let health = http_get(port, "/health", &[]).expect("/health right after READY=1");
    assert_eq!(health.status, 200, "{first:?}");

    // Pings every 200 ms (half of 400 ms).
    read_until(&sock, "WATCHDOG=1", Duration::from_secs(5));
    read_until(&sock, "WATCHDOG=1", Duration::from_secs(5));

    signal(&child, Signal::SIGHUP);
    let reload = read_until(&sock, "RELOADING=1", Duration::from_secs(10));
    let reloading = reload.last().cloned().unwrap_or_default();
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    read_until(&sock, "READY=1", Duration::from_secs(10));

    signal(&child, Signal::SIGTERM);
    read_until(&sock, "STOPPING=1", Duration::from_secs(10));
    let status = wait_child(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", p.host_log());
}

#[test]
fn no_watchdog_pings_when_watchdog_pid_names_another_process() {
    let p = Project::new();
    ops_config(&p, None, "", &sh_worker("sd.other", "\"sd.O\"", ""));
    let sock_path = p.file("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let sock_env = sock_path.display().to_string();
    let mut child = p.spawn_host_logged(
        &["run", "--listen", "off"],
        &[
            ("NOTIFY_SOCKET", &sock_env),
            ("WATCHDOG_USEC", "100000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    read_until(&sock, "READY=1", Duration::from_secs(20));
    // A second of pings would be ~20 messages at 50 ms; none may come.
    let end = Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            assert!(!msg.contains("WATCHDOG=1"), "{msg}");
        }
    }
    signal(&child, Signal::SIGTERM);
    wait_child(&mut child, Duration::from_secs(20));
}
