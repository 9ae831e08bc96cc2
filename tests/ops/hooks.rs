//! Observer hooks against real receivers: a webhook server in the test (a plain TcpListener) and a
//! command that records its stdin. Each gets exactly the events it asked for; a webhook that hangs
//! never delays a task.

use crate::prom;
use crate::support::*;
use crate::{ops_config, sh_worker, start_host, submit_any, wait_final};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
enum Mode {
    /// Answer 500 to the first `n` requests, then 200.
    FailFirst(usize),
    /// Read the request and never answer (until the test ends).
    Hang,
}

/// One request the receiver got: the body as JSON, its content type, and the status it answered.
#[derive(Debug, Clone)]
struct Got {
    doc: Value,
    content_type: String,
    answered: Option<u16>,
}

struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Receiver {
    fn start(mode: Mode) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicUsize::new(0));
        let (g, s) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (g, s, seen) = (g.clone(), s.clone(), seen.clone());
                        std::thread::spawn(move || serve(stream, mode, &g, &s, &seen));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Receiver { port, got, stop }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().expect("lock").clone()
    }

    /// The documents answered 200, as (event, task_id).
    fn delivered(&self) -> Vec<(String, String)> {
        self.got()
            .iter()
            .filter(|g| g.answered == Some(200))
            .map(|g| (s(&g.doc["event"]), s(&g.doc["task_id"])))
            .collect()
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

fn serve(
    mut stream: TcpStream,
    mode: Mode,
    got: &Mutex<Vec<Got>>,
    stop: &AtomicBool,
    seen: &AtomicUsize,
) {
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let (head_end, length) = loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..i]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (i + 4, length);
        }
    };
    while raw.len() < head_end + length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let doc: Value =
        serde_json::from_slice(&raw[head_end..head_end + length]).unwrap_or(Value::Null);
    let n = seen.fetch_add(1, Ordering::SeqCst);
    let answer = match mode {
        Mode::FailFirst(k) if n < k => Some(500),
        Mode::FailFirst(_) => Some(200),
        Mode::Hang => None,
    };
    got.lock().expect("lock").push(Got {
        doc,
        content_type,
        answered: answer,
    });
    match answer {
        Some(code) => {
            let reason = if code == 200 {
                "OK"
            } else {
                "Internal Server Error"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        None => {
            // Hold the connection open without a word, for as long as the test runs (at most 2 min).
            let end = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn webhook_and_command_observers_get_exactly_the_filtered_events() {
    let p = Project::new();
    let hook = Receiver::start(Mode::FailFirst(1));
    p.write(
        "record.sh",
        "printf '%s ' \"$WORKERHOST_EVENT\" >> command-events.log\ncat >> command-events.log\n",
    );
    let observers = format!(
        "  - type: webhook\n    url: http://127.0.0.1:{}/hook\n    events: [task_failed, task_dead_lettered]\n    timeout: 5\n  - type: command\n    command: [\"/bin/sh\", \"./record.sh\"]\n    events: [task_succeeded, task_retrying]\n",
        hook.port
    );
    ops_config(
        &p,
        Some("{ listen: \"off\" }"),
        &observers,
        &sh_worker("PrismQ.Ops.Hooked", "T", ""),
    );
    for id in ["ok1", "ok2", "flaky1", "fail1"] {
        submit_any(&p, "T", id);
    }
    let mut host = p.spawn_host_logged(&["--burst"], &[]);
    let st = wait_child(&mut host, Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "{}", p.host_log());

    // The webhook: only fail1's two events, in order; the first try was answered 500 and retried.
    assert_eq!(
        hook.delivered(),
        vec![
            ("task_failed".to_string(), "fail1".to_string()),
            ("task_dead_lettered".to_string(), "fail1".to_string())
        ],
        "{:?}",
        hook.got()
    );
    let got = hook.got();
    assert_eq!(got.len(), 3, "one retry after the 500: {got:?}");
    assert_eq!(got[0].answered, Some(500));
    assert_eq!(got[0].doc, got[1].doc, "the retry sends the same event");
    let e = &got[1].doc;
    assert_eq!(got[1].content_type, "application/json");
    for field in ["at", "host", "error"] {
        assert!(e[field].is_string(), "{field} in {e}");
    }
    assert_eq!(e["type"], "T");
    assert_eq!(e["worker"], "PrismQ.Ops.Hooked");
    assert_eq!(e["attempt"], 1);
    assert_eq!(e["outcome"], "fatal");
    assert!(e["duration_ms"].is_u64(), "{e}");
    assert!(s(&e["error"]).contains("quota exceeded"), "{e}");

    // The command: one run per event, the event on stdin and its name in WORKERHOST_EVENT.
    let mut seen: Vec<(String, String)> = lines(&p.file("command-events.log"))
        .iter()
        .map(|l| {
            let (name, json) = l.split_once(' ').expect("name and json");
            let doc: Value = serde_json::from_str(json).expect("event json");
            assert_eq!(doc["event"], name, "WORKERHOST_EVENT matches the document");
            (name.to_string(), s(&doc["task_id"]))
        })
        .collect();
    seen.sort();
    let want: Vec<(String, String)> = [
        ("task_retrying", "flaky1"),
        ("task_succeeded", "flaky1"),
        ("task_succeeded", "ok1"),
        ("task_succeeded", "ok2"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(seen, want);
}

#[test]
fn a_hanging_webhook_never_delays_tasks() {
    let p = Project::new();
    let hook = Receiver::start(Mode::Hang);
    let observers = format!(
        "  - type: webhook\n    url: http://127.0.0.1:{}/hook\n    timeout: 60\n",
        hook.port
    );
    ops_config(&p, None, &observers, &sh_worker("ops.w", "T", ""));
    let ids: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    for id in &ids {
        submit_any(&p, "T", id);
    }
    let started = Instant::now();
    let mut host = start_host(&p, &["--log-level", "warn"], &[]);
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    wait_final(&p, &refs, Duration::from_secs(30));
    let took = started.elapsed();
    assert!(
        refs.iter()
            .all(|id| p.status(id).is_some_and(|s| s["status"] == "succeeded")),
        "every task succeeded"
    );
    // All 40 finished while the hook still sat on its very first event.
    let got = hook.got();
    assert_eq!(
        got.len(),
        1,
        "the hook is stuck on its first request: {got:?}"
    );
    assert_eq!(got[0].answered, None);
    assert!(
        took < Duration::from_secs(20),
        "40 quick tasks took {took:?}"
    );
    eprintln!("40 tasks with a hanging webhook: {took:?} from the host's start");
    let m = prom::checked(&host.get("/metrics").body).expect("metrics");
    let hook_events = |result: &str| {
        m.value(
            "workerhost_observer_events_total",
            &[("observer", "webhook[0]"), ("result", result)],
        )
    };
    assert_eq!(hook_events("delivered"), Some(0.0));
    assert_eq!(
        hook_events("dropped"),
        Some(0.0),
        "40 tasks' events fit the queue"
    );

    // Stopping does not wait for the hook's 60 s timeout either: queued events get a few seconds.
    let t = Instant::now();
    assert_eq!(host.stop(Duration::from_secs(30)), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(12),
        "stopping took {:?}",
        t.elapsed()
    );
    assert!(
        p.host_log()
            .contains("observer hooks did not finish delivering"),
        "{}",
        p.host_log()
    );
}
