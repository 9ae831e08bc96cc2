//! The operating endpoints of SPEC section 8 against a running host on sqlite: `GET /queue`, the POSTs
//! with their JSON errors, the token and loopback rules, and the queue gauges on `/metrics`.

use crate::support::*;
use crate::{ops_config, sh_worker, start_host, submit_any, wait_final};
use std::time::Duration;

/// Fails (non-retriable) while `broken` exists; ids starting with `hang` sleep 60 s.
pub const BREAKABLE_SH: &str = r#"read -r doc
echo "$WORKERHOST_TASK_ID $$" >> runs.log
case "$WORKERHOST_TASK_ID" in hang*) sleep 60 ;; esac
if [ -e broken ]; then echo '{"success": false, "error": {"message": "broken on purpose", "retry_possible": false}}'; exit 2; fi
echo '{"success": true, "result": {"ok": true}}'
"#;

pub fn post(port: u16, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http_send(port, "POST", path, headers, "").unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

fn status_of(p: &Project, id: &str) -> String {
    p.status(id)
        .and_then(|s| s["status"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn operating_endpoints_answer_json_and_change_the_queue() {
    let p = Project::new();
    ops_config(
        &p,
        None,
        "",
        &sh_worker("PrismQ.Ops.Operate", "T", "    max_retries: 0\n"),
    );
    p.write("w.sh", BREAKABLE_SH);
    p.write("broken", "");
    submit_any(&p, "T", "d1");
    let host = start_host(&p, &[], &[]);
    wait_final(&p, &["d1"], Duration::from_secs(30));

    let q = host.get("/queue");
    assert_eq!(q.status, 200, "{}", q.body);
    let t = q
        .json()
        .as_array()
        .and_then(|a| a.iter().find(|d| d["type"] == "T").cloned())
        .expect("T row");
    assert_eq!(
        (t["dead"].as_u64(), t["paused"].as_bool()),
        (Some(1), Some(false)),
        "{t}"
    );

    // Unknown ids and wrong states: JSON errors, nothing changed.
    let r = post(host.port, "/tasks/nope/cancel", &[]);
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("nope"))
    );
    let r = post(host.port, "/dead/nope/retry", &[]);
    assert_eq!(r.status, 404, "{}", r.body);
    let r = post(host.port, "/tasks/d1/cancel", &[]);
    assert_eq!(r.status, 409, "a dead task is finished: {}", r.body);
    let r = post(
        host.port,
        "/types/T/pause",
        &[("Origin", "http://evil.example")],
    );
    assert_eq!(r.status, 403, "a cross-site post is refused: {}", r.body);
    assert_eq!(status_of(&p, "d1"), "dead");

    // Pause, then a queued task waits; cancel it; resume; retry the dead one.
    let r = post(host.port, "/types/T/pause", &[]);
    assert_eq!(
        (r.status, r.json()["paused"].as_bool()),
        (200, Some(true)),
        "{}",
        r.body
    );
    submit_any(&p, "T", "q1");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        status_of(&p, "q1"),
        "queued",
        "a paused type is not claimed"
    );
    // The gauges come from a sample at most 5 s old.
    let mut metrics = String::new();
    let sampled = wait_until(Duration::from_secs(12), || {
        metrics = host.get("/metrics").body;
        metrics.contains("workerhost_queue_tasks{state=\"queued\",type=\"T\"} 1")
    });
    assert!(sampled, "{metrics}");
    assert!(
        metrics.contains("workerhost_queue_tasks{state=\"dead\",type=\"T\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("workerhost_queue_oldest_seconds{type=\"T\"}"),
        "{metrics}"
    );
    let r = post(host.port, "/tasks/q1/cancel", &[]);
    assert_eq!(
        (r.status, r.json()["cancel"].as_str()),
        (200, Some("done")),
        "{}",
        r.body
    );
    assert_eq!(status_of(&p, "q1"), "cancelled");
    let r = post(host.port, "/dead/q1/retry", &[]);
    assert_eq!(r.status, 409, "a cancelled task is not dead: {}", r.body);
    std::fs::remove_file(p.file("broken")).expect("fix");
    assert_eq!(post(host.port, "/types/T/resume", &[]).status, 200);
    let r = post(host.port, "/dead/d1/retry", &[]);
    assert_eq!(
        (r.status, r.json()["retried"].as_u64()),
        (200, Some(1)),
        "{}",
        r.body
    );
    let done = wait_final(&p, &["d1"], Duration::from_secs(20));
    assert_eq!(done[0]["status"], "succeeded");
    assert_eq!(
        status_of(&p, "q1"),
        "cancelled",
        "a cancelled task never runs"
    );
    assert!(
        !lines(&p.file("runs.log"))
            .iter()
            .any(|l| l.starts_with("q1 "))
    );
}

#[test]
fn state_changing_posts_need_the_token_or_a_loopback_listener() {
    let p = Project::new();
    ops_config(
        &p,
        Some("{ token: s3cret }"),
        "",
        &sh_worker("PrismQ.Ops.Token", "T", ""),
    );
    let host = start_host(&p, &[], &[]);
    let r = post(host.port, "/types/T/pause", &[]);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(host.get("/queue").status, 401);
    let r = post(host.port, "/types/T/pause?token=s3cret", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post(
        host.port,
        "/types/T/resume",
        &[("Authorization", "Bearer s3cret")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    drop(host);

    // Without a token, a listener beyond loopback serves the views but not the POSTs.
    let q = Project::new();
    ops_config(&q, None, "", &sh_worker("PrismQ.Ops.Open", "T", ""));
    let port = free_port();
    let mut child = q.spawn_host_logged(&["run", "--listen", &format!("0.0.0.0:{port}")], &[]);
    let up = wait_until(Duration::from_secs(20), || {
        http_get(port, "/health", &[]).is_ok()
    });
    assert!(up, "{}", q.host_log());
    assert_eq!(
        http_get(port, "/queue", &[]).map(|r| r.status).ok(),
        Some(200)
    );
    let r = post(port, "/types/T/pause", &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("host.http.token"))
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn cancel_of_a_running_task_kills_its_process_and_records_cancelled() {
    let p = Project::new();
    ops_config(&p, None, "", &sh_worker("PrismQ.Ops.Cancel", "T", ""));
    p.write("w.sh", BREAKABLE_SH);
    let host = start_host(&p, &[], &[]);
    submit_any(&p, "T", "hang1");
    let mut pid = None;
    let started = wait_until(Duration::from_secs(15), || {
        pid = lines(&p.file("runs.log"))
            .iter()
            .find_map(|l| l.strip_prefix("hang1 ")?.trim().parse::<i32>().ok());
        pid.is_some()
    });
    assert!(started, "{}", p.host_log());
    let pid = pid.expect("worker pid");
    assert!(pid_alive(pid));
    let t = std::time::Instant::now();
    let out = p.run(&["cancel", "hang1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("cancelled hang1"),
        "{}",
        text(&out.stdout)
    );
    // lease_seconds is 2: renewals every ~0.7 s, then the group is killed (kill grace) and recorded.
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(pid)),
        "the worker process is gone"
    );
    let st = p.status("hang1").expect("status");
    assert_eq!(st["status"], "cancelled", "{st}");
    assert_eq!(st["result"]["status"], "cancelled", "{st}");
    let out = p.run(&["cancel", "hang1"]);
    assert_eq!(out.status.code(), Some(1), "a finished task is left alone");
    let metrics = host.get("/metrics").body;
    assert!(
        metrics.contains(
            "workerhost_tasks_total{status=\"cancelled\",worker=\"PrismQ.Ops.Cancel\"} 1"
        ),
        "{metrics}"
    );
}
