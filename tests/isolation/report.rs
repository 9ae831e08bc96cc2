//! What a user sees of section 9: the limits in `workers` and `/workers/{name}/health`, usage in
//! `/metrics`, and health that says one thing (`healthy` agrees with `status`; `/health` names the
//! unhealthy workers).

use crate::support::*;
use std::time::Duration;

#[test]
fn limits_usage_and_health_are_reported() {
    let p = Project::new();
    python_worker(&p, "w", "print(json.dumps({'success': True}))");
    let good = py_entry(
        "w",
        "w",
        "T",
        "    limits: { memory_mb: 512, cpu_seconds: 60 }\n",
    );
    let broken = py_entry("broken", "w", "B", "    max_retries: 0\n")
        .replace("project_path: .", "project_path: ./missing");
    p.config("", &format!("{good}{broken}"));

    let out = p.run(&["workers"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("limits: memory_mb=512 cpu_seconds=60"),
        "{}",
        text(&out.stdout)
    );

    p.submit("T", "t1", "{}");
    p.submit("B", "b1", "{}");
    let port = free_port();
    let _host = p.spawn_host(&["run", "--listen", &format!("127.0.0.1:{port}")]);
    let done = |id: &str, want: &str| p.status(id).is_some_and(|d| d["status"] == want);
    assert!(
        wait_until(Duration::from_secs(30), || done("t1", "succeeded")
            && done("b1", "dead")),
        "tasks did not finish: {:?} {:?}",
        p.status("t1"),
        p.status("b1")
    );

    let w = http_get(port, "/workers/w/health", &[]).expect("GET");
    let doc = w.json();
    assert_eq!(w.status, 200, "{doc}");
    assert_eq!(doc["limits"]["memory_mb"], 512);
    assert_eq!(doc["limits"]["cpu_seconds"], 60);
    assert_eq!(doc["healthy"], true);

    let b = http_get(port, "/workers/broken/health", &[]).expect("GET");
    let doc = b.json();
    assert_eq!(b.status, 503, "{doc}");
    assert_eq!(doc["status"], "unhealthy");
    assert_eq!(doc["healthy"], false, "healthy agrees with status: {doc}");

    let h = http_get(port, "/health", &[]).expect("GET");
    let doc = h.json();
    assert_eq!(
        h.status, 200,
        "a worker's trouble does not change /health's code: {doc}"
    );
    assert_eq!(
        doc["unhealthy_workers"],
        serde_json::json!(["broken"]),
        "{doc}"
    );

    let m = http_get(port, "/metrics", &[]).expect("GET").body;
    assert!(
        m.lines()
            .any(|l| l.starts_with("workerhost_task_cpu_seconds_total{")
                && l.contains("mode=\"user\"")
                && l.contains("worker=\"w\"")),
        "{m}"
    );
    assert!(
        m.lines()
            .any(|l| l.starts_with("workerhost_task_max_rss_bytes_count{worker=\"w\"} 1")),
        "{m}"
    );
}
