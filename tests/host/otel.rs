//! OpenTelemetry (section 11): a task submitted with a `traceparent` is exported as a task span (the
//! traceparent's child) and one span per attempt (the task span's children) to an OTLP/HTTP endpoint
//! this test runs, with protobuf bodies; each attempt's worker saw `TRACEPARENT` naming its attempt span.

use crate::support::{Project, text};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::sync::{Arc, Mutex};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// Spans received, with the content type of the request that carried them.
type Received = Arc<Mutex<Vec<(String, Span)>>>;

/// A small OTLP/HTTP collector on a free loopback port: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`. Returns its base URL (what `OTEL_EXPORTER_OTLP_ENDPOINT` names).
fn collector() -> (String, Received) {
    let received: Received = Arc::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let sink = received.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = axum::Router::new().route(
                "/v1/traces",
                axum::routing::post(
                    move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                        let sink = sink.clone();
                        async move {
                            let kind = headers
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string();
                            let req = ExportTraceServiceRequest::decode(body).expect("protobuf");
                            let mut got = sink.lock().expect("lock");
                            for rs in req.resource_spans {
                                for ss in rs.scope_spans {
                                    for s in ss.spans {
                                        got.push((kind.clone(), s));
                                    }
                                }
                            }
                            (
                                [("content-type", "application/x-protobuf")],
                                ExportTraceServiceResponse::default().encode_to_vec(),
                            )
                        }
                    },
                ),
            );
            let _ = axum::serve(listener, app).await;
        });
    });
    (url, received)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attr(s: &Span, key: &str) -> Option<String> {
    let v = s.attributes.iter().find(|kv| kv.key == key)?;
    match v.value.as_ref()?.value.as_ref()? {
        AnyValue::StringValue(x) => Some(x.clone()),
        AnyValue::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

#[test]
fn a_task_with_a_traceparent_exports_task_and_attempt_spans_in_that_trace() {
    let (endpoint, received) = collector();
    let p = Project::new();
    // Fails its first attempt (exit 1: retriable), succeeds the second; records what it was handed.
    p.write(
        "worker.sh",
        "#!/bin/sh\ncat > \"doc-$WORKERHOST_ATTEMPT.json\"\necho \"$WORKERHOST_ATTEMPT $TRACEPARENT\" >> seen.txt\n\
         [ \"$WORKERHOST_ATTEMPT\" = 1 ] && exit 1\necho '{\"success\": true, \"result\": {}}'\n",
    );
    let script = p.file("worker.sh");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    p.config(
        "",
        "  - name: traced\n    command: [\"./worker.sh\"]\n    task_types: [demo.trace]",
    );
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let out = p.run(&[
        "submit",
        "--type",
        "demo.trace",
        "--id",
        "t1",
        "--params",
        "{}",
        "--traceparent",
        &traceparent,
    ]);
    assert!(out.status.success(), "submit: {}", text(&out.stderr));
    let bad = p.run(&[
        "submit",
        "--type",
        "demo.trace",
        "--traceparent",
        "00-xyz-01",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));

    let out = p
        .cmd(&["--burst"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SDK_DISABLED")
        .output()
        .expect("run host");
    assert!(out.status.success(), "host: {}", text(&out.stderr));
    assert_eq!(p.status("t1").expect("status")["status"], "succeeded");

    // Flushed at shutdown: everything is there once the host has exited.
    let spans = received.lock().expect("lock").clone();
    assert!(
        spans
            .iter()
            .all(|(kind, _)| kind.starts_with("application/x-protobuf")),
        "{:?}",
        spans.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    let spans: Vec<Span> = spans.into_iter().map(|(_, s)| s).collect();
    let tasks: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "process demo.trace")
        .collect();
    let attempts: Vec<&Span> = spans.iter().filter(|s| s.name == "attempt").collect();
    assert_eq!(tasks.len(), 1, "{spans:#?}");
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    let task = tasks[0];
    for s in &spans {
        assert_eq!(hex(&s.trace_id), TRACE, "every span continues the trace");
    }
    assert_eq!(hex(&task.parent_span_id), PARENT, "the task span's parent");
    assert_eq!(attr(task, "messaging.message.id").as_deref(), Some("t1"));
    assert_eq!(
        attr(task, "messaging.system").as_deref(),
        Some("workerhost")
    );
    assert_eq!(
        attr(task, "workerhost.task.type").as_deref(),
        Some("demo.trace")
    );
    assert_eq!(attr(task, "workerhost.worker").as_deref(), Some("traced"));
    assert_eq!(
        attr(task, "workerhost.outcome").as_deref(),
        Some("succeeded")
    );

    let seen = std::fs::read_to_string(p.file("seen.txt")).expect("seen.txt");
    let seen: Vec<(&str, &str)> = seen.lines().filter_map(|l| l.split_once(' ')).collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (n, outcome) in [("1", "failed"), ("2", "succeeded")] {
        let a = attempts
            .iter()
            .find(|s| attr(s, "workerhost.attempt").as_deref() == Some(n))
            .unwrap_or_else(|| panic!("no span of attempt {n}: {attempts:#?}"));
        assert_eq!(
            a.parent_span_id, task.span_id,
            "attempt {n}'s parent is the task span"
        );
        assert_eq!(
            attr(a, "workerhost.outcome").as_deref(),
            Some(outcome),
            "attempt {n}"
        );
        assert_eq!(attr(a, "messaging.message.id").as_deref(), Some("t1"));
        // The worker of this attempt was handed this attempt's span as its parent.
        let expect = format!("00-{TRACE}-{}-01", hex(&a.span_id));
        let (_, tp) = seen
            .iter()
            .find(|(k, _)| *k == n)
            .unwrap_or_else(|| panic!("attempt {n} not seen: {seen:?}"));
        assert_eq!(*tp, expect, "TRACEPARENT of attempt {n}");
        let doc: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(p.file(&format!("doc-{n}.json"))).expect("doc"),
        )
        .expect("task document");
        assert_eq!(
            doc["traceparent"], expect,
            "the task document's traceparent"
        );
    }
}

#[test]
fn without_an_endpoint_the_envelopes_traceparent_reaches_the_worker_unchanged() {
    let p = Project::new();
    p.write(
        "worker.sh",
        "#!/bin/sh\ncat > /dev/null\necho \"$TRACEPARENT\" > seen.txt\necho '{\"success\": true}'\n",
    );
    std::fs::set_permissions(
        p.file("worker.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    p.config(
        "",
        "  - name: traced\n    command: [\"./worker.sh\"]\n    task_types: [demo.trace]",
    );
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let out = p.run(&[
        "submit",
        "--type",
        "demo.trace",
        "--id",
        "t2",
        "--traceparent",
        &traceparent,
    ]);
    assert!(out.status.success(), "submit: {}", text(&out.stderr));
    let out = p
        .cmd(&["--burst"])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .output()
        .expect("run host");
    assert!(out.status.success(), "host: {}", text(&out.stderr));
    let seen = std::fs::read_to_string(p.file("seen.txt")).expect("seen.txt");
    assert_eq!(seen.trim(), traceparent);
}
