//! Remote workers: the task document POSTed to a URL; 2xx result, 4xx non-retriable, 5xx and connection
//! errors retriable, the timeout holds.

use crate::support::*;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `extra` worker lines; `max_retries` is 2 unless `extra` sets it.
fn exec_remote(url: &str, extra: &str) -> (i32, Value) {
    let p = Project::new();
    let retries = if extra.contains("max_retries") {
        ""
    } else {
        "    max_retries: 2\n"
    };
    p.config(
        "",
        &format!("  - name: r\n    url: \"{url}\"\n    task_types: [T]\n{retries}{extra}"),
    );
    let out = p.run(&[
        "exec",
        "--type",
        "T",
        "--id",
        "r1",
        "--params",
        "{\"n\": 5}",
    ]);
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} / {}", text(&out.stdout), text(&out.stderr)));
    (out.status.code().unwrap_or(-1), doc)
}

#[test]
fn remote_workers_are_classified_by_status() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let base = http_stub(move |path, body| {
        c.fetch_add(1, Ordering::SeqCst);
        let task: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        match path {
            "/ok" => (
                200,
                format!(
                    r#"{{"success": true, "result": {{"doubled": {}}}}}"#,
                    task["params"]["n"].as_i64().unwrap_or(0) * 2
                ),
            ),
            "/bad" => (
                400,
                r#"{"success": false, "error": "invalid params"}"#.into(),
            ),
            "/down" => (503, "upstream down".into()),
            "/slow" => {
                std::thread::sleep(std::time::Duration::from_secs(5));
                (200, r#"{"success": true}"#.into())
            }
            _ => (200, "not a result".into()),
        }
    });
    let (code, doc) = exec_remote(&format!("{base}/ok"), "");
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["result"]["doubled"], 10);

    calls.store(0, Ordering::SeqCst);
    let (code, doc) = exec_remote(&format!("{base}/bad"), "");
    assert_eq!(code, 2, "{doc}");
    assert_eq!(doc["error"]["message"], "invalid params");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "4xx is not retried");

    calls.store(0, Ordering::SeqCst);
    let (code, doc) = exec_remote(&format!("{base}/down"), "");
    assert_eq!(code, 1, "{doc}");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "5xx is retried");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("503"))
    );

    let (code, doc) = exec_remote(
        &format!("{base}/slow"),
        "    timeout: 0.5\n    max_retries: 0\n",
    );
    assert_eq!(code, 3, "{doc}");

    let (code, doc) = exec_remote(&format!("{base}/garbage"), "");
    assert_eq!(code, 2, "{doc}");
    assert_eq!(doc["error"]["outcome"], "protocol_error");
}

#[test]
fn a_connection_error_is_retriable() {
    // A port nobody listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let (code, doc) = exec_remote(&format!("http://127.0.0.1:{port}/x"), "");
    assert_eq!(code, 1, "{doc}");
    assert_eq!(doc["attempts"], 3);
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot reach"))
    );
}
