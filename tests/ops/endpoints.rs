//! Every endpoint and status code against a running host: `/health` 200 and 503, `/workers`,
//! `/workers/{name}/health` 200, 503 and 404 for dotted names, 401 without the token, `/metrics` after
//! known task outcomes, and how the listen address is chosen.

use crate::prom;
use crate::support::*;
use crate::{Running, ops_config, sh_worker, start_host, submit_any, wait_final};
use serde_json::Value;
use std::time::Duration;

fn by_name<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|w| w["name"] == name))
        .unwrap_or_else(|| panic!("{name} not in {list}"))
}

#[test]
fn health_workers_and_worker_health_answer_with_the_right_codes() {
    let p = Project::new();
    std::fs::create_dir(p.file("gone")).expect("mkdir");
    let workers = [
        sh_worker("PrismQ.Ops.Good", "T", "    description: the good one\n"),
        "  - name: PrismQ.Ops.Broken\n    command: [\"./missing-binary\"]\n    task_types: [B]\n"
            .to_string(),
        "  - name: PrismQ.Ops.Gone\n    command: [\"/bin/sh\", \"../w.sh\"]\n    project_path: ./gone\n    task_types: [G]\n"
            .to_string(),
    ]
    .concat();
    ops_config(&p, None, "", &workers);
    let mut host = start_host(&p, &[], &[]);

    let h = host.get("/health");
    assert_eq!(h.status, 200, "{}", h.body);
    assert!(
        h.header("content-type")
            .unwrap_or("")
            .starts_with("application/json")
    );
    let doc = h.json();
    assert_eq!(doc["status"], "ok");
    assert_eq!(
        doc["task_manager"],
        serde_json::json!({"type": "sqlite", "connected": true})
    );
    assert_eq!(doc["workers"], 3);
    assert_eq!(doc["in_flight"], 0);
    assert!(doc["uptime_seconds"].is_u64());

    let list = host.get("/workers");
    assert_eq!(list.status, 200);
    let list = list.json();
    assert_eq!(list.as_array().map(Vec::len), Some(3));
    let good = by_name(&list, "PrismQ.Ops.Good");
    assert_eq!(good["task_types"], serde_json::json!(["T"]));
    assert_eq!(good["mode"], "spawn");
    assert_eq!(good["kind"], "command");
    assert_eq!(good["description"], "the good one");
    assert_eq!(
        (
            good["in_flight"].as_u64(),
            good["succeeded"].as_u64(),
            good["failed"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
    assert!(good["last_error"].is_null());

    // Known outcomes show up in the worker's counters; a running task is in flight.
    submit_any(&p, "T", "ok1");
    submit_any(&p, "T", "fail1");
    wait_final(&p, &["ok1", "fail1"], Duration::from_secs(20));
    submit_any(&p, "T", "slow1");
    assert!(
        wait_until(
            Duration::from_secs(10),
            || host.get("/health").json()["in_flight"] == 1
        ),
        "slow1 never showed as in flight"
    );
    let wh = host.get("/workers/PrismQ.Ops.Good/health");
    assert_eq!(wh.status, 200, "{}", wh.body);
    let wh = wh.json();
    assert_eq!(wh["status"], "ok");
    assert_eq!(wh["name"], "PrismQ.Ops.Good");
    assert_eq!(
        (
            wh["succeeded"].as_u64(),
            wh["failed"].as_u64(),
            wh["in_flight"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert!(
        wh["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("quota exceeded")),
        "{wh}"
    );
    assert!(
        wh["last_error_at"].is_string() && wh["last_success_at"].is_string(),
        "{wh}"
    );
    let checks = wh["checks"].as_array().expect("checks");
    assert!(
        checks
            .iter()
            .any(|c| c["check"] == "binary" && c["ok"] == true),
        "{wh}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c["check"] == "project_path" && c["ok"] == true),
        "{wh}"
    );

    let broken = host.get("/workers/PrismQ.Ops.Broken/health");
    assert_eq!(broken.status, 503, "{}", broken.body);
    let broken = broken.json();
    assert_eq!(broken["status"], "unhealthy");
    assert!(
        broken["checks"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["ok"] == false
                && c["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("missing-binary")))),
        "{broken}"
    );

    // project_path disappears while the host runs: the worker turns unhealthy.
    assert_eq!(host.get("/workers/PrismQ.Ops.Gone/health").status, 200);
    std::fs::remove_dir(p.file("gone")).expect("rmdir");
    let gone = host.get("/workers/PrismQ.Ops.Gone/health");
    assert_eq!(gone.status, 503, "{}", gone.body);
    assert!(gone.body.contains("is not a directory"), "{}", gone.body);

    let unknown = host.get("/workers/No.Such.Worker/health");
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("No.Such.Worker"))
    );
    let nowhere = host.get("/no/such/page");
    assert_eq!(nowhere.status, 404);
    assert!(nowhere.json()["error"].is_string());

    assert_eq!(
        host.stop(Duration::from_secs(20)),
        Some(0),
        "{}",
        p.host_log()
    );
    assert_eq!(p.status("slow1").expect("slow1")["status"], "succeeded");
}

#[test]
fn health_is_503_degraded_while_the_task_manager_is_unreachable() {
    let p = Project::new();
    ops_config(&p, None, "", &sh_worker("ops.w", "T", ""));
    let mut host = start_host(&p, &[], &[]);
    assert_eq!(host.get("/health").status, 200);
    // Another process holds the database's write lock: the host's claims fail (busy), as they would
    // with a broker that does not answer.
    let conn = rusqlite::Connection::open(p.file("queue.db")).expect("open");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy_timeout");
    conn.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let mut last = None;
    let degraded = wait_until(Duration::from_secs(30), || {
        let r = host.get("/health");
        let down = r.status == 503;
        last = Some(r);
        down
    });
    let r = last.expect("an answer");
    assert!(degraded, "never degraded: {} {}", r.status, r.body);
    let doc = r.json();
    assert_eq!(doc["status"], "degraded");
    assert_eq!(doc["task_manager"]["connected"], false);
    let m = prom::checked(&host.get("/metrics").body).expect("metrics parse");
    assert_eq!(m.value("workerhost_task_manager_up", &[]), Some(0.0));

    conn.execute_batch("COMMIT").expect("unlock");
    assert!(
        wait_until(Duration::from_secs(30), || host.get("/health").status
            == 200),
        "never recovered: {}",
        p.host_log()
    );
    let m = prom::checked(&host.get("/metrics").body).expect("metrics parse");
    assert_eq!(m.value("workerhost_task_manager_up", &[]), Some(1.0));
    assert_eq!(host.stop(Duration::from_secs(20)), Some(0));
}

#[test]
fn a_token_guards_everything_but_health() {
    let p = Project::new();
    ops_config(
        &p,
        Some("{ token: \"${OPS_TOKEN}\" }"),
        "",
        &sh_worker("PrismQ.Ops.Good", "T", ""),
    );
    let mut host = start_host(&p, &[], &[("OPS_TOKEN", "s3cret-t0ken")]);
    assert_eq!(host.get("/health").status, 200, "/health needs no token");
    for path in [
        "/workers",
        "/metrics",
        "/",
        "/workers/PrismQ.Ops.Good/health",
        "/workers/nope/health",
    ] {
        let r = host.get(path);
        assert_eq!(r.status, 401, "{path} without a token: {}", r.body);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{path}");
        assert!(r.json()["error"].is_string());
        let wrong = host.get_with(path, &[("Authorization", "Bearer s3cret-t0kem")]);
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
    }
    let auth = [("Authorization", "Bearer s3cret-t0ken")];
    assert_eq!(host.get_with("/workers", &auth).status, 200);
    assert_eq!(host.get_with("/metrics", &auth).status, 200);
    assert_eq!(
        host.get_with("/workers/PrismQ.Ops.Good/health", &auth)
            .status,
        200
    );
    assert_eq!(host.get_with("/workers/nope/health", &auth).status, 404);
    let page = host.get("/?token=s3cret-t0ken");
    assert_eq!(
        page.status, 200,
        "the status page takes the token as a query parameter too"
    );
    assert!(page.body.contains("PrismQ.Ops.Good"));
    assert!(
        page.body
            .contains("/workers/PrismQ.Ops.Good/health?token=s3cret-t0ken"),
        "links keep the token"
    );
    assert_eq!(host.stop(Duration::from_secs(20)), Some(0));
}

#[test]
fn metrics_count_known_outcomes_and_parse_strictly() {
    let p = Project::new();
    let workers = [
        sh_worker("ops.main", "T", "    env: { SLEEP_S: \"3.5\" }\n"),
        sh_worker("ops.slow", "S", "    timeout: 1\n    max_retries: 0\n"),
    ]
    .concat();
    ops_config(&p, None, "", &workers);
    let ids = ["ok1", "ok2", "ok3", "flaky1", "fail1"];
    for id in ids {
        submit_any(&p, "T", id);
    }
    submit_any(&p, "S", "hang1");
    let mut host = start_host(&p, &["--log-level", "warn"], &[]);
    let all = ["ok1", "ok2", "ok3", "flaky1", "fail1", "hang1"];
    let st = wait_final(&p, &all, Duration::from_secs(60));
    let status_of = |id: &str| st[all.iter().position(|x| *x == id).unwrap_or(0)]["status"].clone();
    assert_eq!(status_of("flaky1"), "succeeded");
    assert_eq!(status_of("fail1"), "dead");
    assert_eq!(status_of("hang1"), "dead");

    submit_any(&p, "T", "slow1");
    let mut text = String::new();
    let running = wait_until(Duration::from_secs(10), || {
        text = host.get("/metrics").body;
        text.contains("workerhost_tasks_in_flight{worker=\"ops.main\"} 1")
    });
    assert!(running, "the in-flight gauge never showed slow1:\n{text}");
    wait_final(&p, &["slow1"], Duration::from_secs(20));

    let r = host.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.header("content-type")
    );
    let m = prom::checked(&r.body).unwrap_or_else(|e| panic!("{e}\n{}", r.body));
    let v = |name: &str, labels: &[(&str, &str)]| {
        m.value(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{}", r.body))
    };
    // The standard process family every exporter has: this host's own memory and start time.
    assert!(v("process_resident_memory_bytes", &[]) > 1_000_000.0);
    assert!(v("process_start_time_seconds", &[]) > 1_600_000_000.0);
    let tasks = "workerhost_tasks_total";
    assert_eq!(
        v(tasks, &[("worker", "ops.main"), ("status", "succeeded")]),
        5.0
    );
    assert_eq!(v(tasks, &[("worker", "ops.main"), ("status", "dead")]), 1.0);
    assert_eq!(v(tasks, &[("worker", "ops.slow"), ("status", "dead")]), 1.0);
    assert_eq!(
        v(tasks, &[("worker", "ops.slow"), ("status", "succeeded")]),
        0.0
    );
    let att = "workerhost_task_attempts_total";
    assert_eq!(
        v(att, &[("worker", "ops.main"), ("outcome", "succeeded")]),
        5.0
    );
    assert_eq!(
        v(att, &[("worker", "ops.main"), ("outcome", "failed")]),
        1.0
    );
    assert_eq!(v(att, &[("worker", "ops.main"), ("outcome", "fatal")]), 1.0);
    assert_eq!(
        v(att, &[("worker", "ops.slow"), ("outcome", "timeout")]),
        1.0
    );
    let dur = "workerhost_task_duration_seconds";
    assert_eq!(v(&format!("{dur}_count"), &[("worker", "ops.main")]), 7.0);
    assert_eq!(v(&format!("{dur}_count"), &[("worker", "ops.slow")]), 1.0);
    let slow_sum = v(&format!("{dur}_sum"), &[("worker", "ops.slow")]);
    assert!(
        (1.0..10.0).contains(&slow_sum),
        "the timed-out attempt ran about 1 s: {slow_sum}"
    );
    // slow1 ran 3.5 s: it is in the 5 s bucket and not in the 2.5 s one.
    let main = [("worker", "ops.main")];
    let bucket = |le: &str| v(&format!("{dur}_bucket"), &[main[0], ("le", le)]);
    assert_eq!(bucket("2.5"), 6.0);
    assert_eq!(bucket("5"), 7.0);
    assert_eq!(bucket("3600"), 7.0);
    assert_eq!(v("workerhost_tasks_in_flight", &main), 0.0);
    assert_eq!(v("workerhost_task_manager_up", &[]), 1.0);
    assert_eq!(v("workerhost_lost_leases_total", &[]), 0.0);
    assert_eq!(v("workerhost_worker_restarts_total", &main), 0.0);
    assert_eq!(
        v(
            "workerhost_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    for (family, kind) in [
        (tasks, "counter"),
        (att, "counter"),
        (dur, "histogram"),
        ("workerhost_tasks_in_flight", "gauge"),
        ("workerhost_task_manager_up", "gauge"),
        ("workerhost_worker_restarts_total", "counter"),
        ("workerhost_lost_leases_total", "counter"),
    ] {
        let f = m
            .family(family)
            .unwrap_or_else(|| panic!("no family {family}"));
        assert_eq!(f.kind, kind, "{family}");
        assert!(f.help.is_some(), "{family} has no HELP");
    }
    assert_eq!(host.stop(Duration::from_secs(20)), Some(0));
}

#[test]
fn a_taken_port_fails_the_start_with_exit_1() {
    let p = Project::new();
    ops_config(&p, None, "", &sh_worker("ops.w", "T", ""));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let mut child = p.spawn_host_logged(&["run", "--listen", &addr], &[]);
    let st = wait_child(&mut child, Duration::from_secs(20));
    assert_eq!(st.code(), Some(1), "{}", p.host_log());
    let log = p.host_log();
    assert!(
        log.contains(&format!("cannot serve the HTTP endpoints on {addr}")),
        "{log}"
    );
}

#[test]
fn the_listen_address_comes_from_flag_file_or_environment_and_off_serves_nothing() {
    let p = Project::new();
    ops_config(&p, None, "", &sh_worker("ops.w", "T", ""));
    // No flag, nothing in the file: WORKERHOST_LISTEN applies.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = p.spawn_host_logged(&["run"], &[("WORKERHOST_LISTEN", listen.as_str())]);
    let mut host = Running { child, port };
    assert!(
        wait_until(Duration::from_secs(20), || http_get(port, "/health", &[])
            .is_ok_and(|r| r.status == 200)),
        "{}",
        p.host_log()
    );
    assert_eq!(host.stop(Duration::from_secs(20)), Some(0));

    // --listen off beats the environment: the host runs and serves nothing.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = p.spawn_host_logged(
        &["run", "--listen", "off"],
        &[("WORKERHOST_LISTEN", listen.as_str())],
    );
    let mut host = Running { child, port };
    assert!(wait_until(Duration::from_secs(20), || p
        .host_log()
        .contains("workerhost starting")));
    submit_any(&p, "T", "ok-off");
    wait_final(&p, &["ok-off"], Duration::from_secs(20));
    assert!(
        http_get(port, "/health", &[]).is_err(),
        "nothing listens with --listen off"
    );
    assert_eq!(host.stop(Duration::from_secs(20)), Some(0));
}
