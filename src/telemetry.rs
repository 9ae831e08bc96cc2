//! OpenTelemetry (section 11): with `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, a span per task delivery and one per attempt are exported
//! over OTLP/HTTP with protobuf bodies; the other standard `OTEL_*` variables (`OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`) apply as the SDK reads them.
//!
//! A task whose envelope carries a W3C `traceparent` continues that trace: its task span is the
//! traceparent's child, each attempt span the task span's child, and the worker is handed the attempt's
//! context (`TRACEPARENT` in spawn mode, a `traceparent` field in pool lines and remote requests).
//! Without export the envelope's traceparent is handed on as it came.
//!
//! The spans are OpenTelemetry spans made here, not `tracing` spans: their parent is the task's, not the
//! host's call stack, and the host's log lines stay as they are. The exporter's HTTP client is reqwest's
//! blocking one (the SDK's batch processor runs on a thread of its own), so [`init`] and
//! [`Telemetry::shutdown`] run outside the async runtime (`main` calls them around it).

use crate::verdict::Verdict;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;
use workerhost_adapters::Envelope;

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Why the exporter could not be set up (the host then runs without it and says so).
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the OTLP HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("cannot set up the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The exporter while the host runs; [`Telemetry::shutdown`] flushes what is queued.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

/// Whether the environment asks for export.
pub fn wanted(env: &dyn Fn(&str) -> Option<String>) -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|k| env(k).is_some_and(|v| !v.trim().is_empty()))
        && !env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Starts the exporter when the environment asks for it (`Ok(None)`: it does not). Call it outside
/// the async runtime.
pub fn init() -> Result<Option<Telemetry>, TelemetryError> {
    if !wanted(&|k| std::env::var(k).ok()) {
        return Ok(None);
    }
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    crate::tls::install_ring();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(client)
        .build()?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("workerhost");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let _ = TRACER.set(opentelemetry::trace::TracerProvider::tracer(
        &provider,
        "workerhost",
    ));
    Ok(Some(Telemetry { provider }))
}

impl Telemetry {
    /// Ends export: the spans still queued are sent (bounded by the exporter's timeout).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(10)) {
            tracing::warn!(error = %e, "OpenTelemetry: not every span could be exported at shutdown");
        }
    }
}

/// The context a `traceparent` names (an invalid one: none, the task starts a trace of its own).
fn parent(traceparent: Option<&str>) -> Context {
    let Some(tp) = traceparent else {
        return Context::new();
    };
    let carrier = HashMap::from([("traceparent".to_string(), tp.to_string())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// The `traceparent` of the span in `cx`.
fn traceparent_of(cx: &Context) -> Option<String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    carrier.remove("traceparent")
}

/// The span of one delivery of a task (all its attempts on this host).
pub struct TaskSpan {
    /// `None`: no export; `incoming` is handed to the workers unchanged.
    cx: Option<Context>,
    incoming: Option<String>,
    attrs: Vec<KeyValue>,
}

/// Opens the task span of `task`, run by `worker`, as the child of the envelope's traceparent.
pub fn task(task: &Envelope, worker: &str) -> TaskSpan {
    let attrs = vec![
        KeyValue::new("messaging.system", "workerhost"),
        KeyValue::new("messaging.operation.type", "process"),
        KeyValue::new("messaging.message.id", task.id.clone()),
        KeyValue::new("messaging.destination.name", task.task_type.clone()),
        KeyValue::new("workerhost.task.type", task.task_type.clone()),
        KeyValue::new("workerhost.worker", worker.to_string()),
    ];
    let cx = TRACER.get().map(|tracer| {
        let parent = parent(task.traceparent.as_deref());
        let mut a = attrs.clone();
        if let Some(c) = &task.correlation_id {
            a.push(KeyValue::new(
                "messaging.message.conversation_id",
                c.clone(),
            ));
        }
        let span = tracer
            .span_builder(format!("process {}", task.task_type))
            .with_kind(SpanKind::Consumer)
            .with_attributes(a)
            .start_with_context(tracer, &parent);
        parent.with_span(span)
    });
    TaskSpan {
        cx,
        incoming: task.traceparent.clone(),
        attrs,
    }
}

impl TaskSpan {
    /// Opens attempt number `n`'s span, the task span's child.
    pub fn attempt(&self, n: u32) -> AttemptSpan {
        let (Some(cx), Some(tracer)) = (&self.cx, TRACER.get()) else {
            return AttemptSpan {
                cx: None,
                traceparent: self.incoming.clone(),
            };
        };
        let mut a = self.attrs.clone();
        a.push(KeyValue::new("workerhost.attempt", i64::from(n)));
        let span = tracer
            .span_builder("attempt")
            .with_kind(SpanKind::Internal)
            .with_attributes(a)
            .start_with_context(tracer, cx);
        let cx = cx.with_span(span);
        AttemptSpan {
            traceparent: traceparent_of(&cx),
            cx: Some(cx),
        }
    }

    /// Ends the task span with the delivery's verdict (`succeeded`, `retry_later`, `dead`,
    /// `cancelled`, `released`).
    pub fn end(self, verdict: &Verdict) {
        let outcome = match verdict {
            Verdict::Succeeded { .. } => "succeeded",
            Verdict::RetryAt { .. } => "retry_later",
            Verdict::Dead { .. } => "dead",
            Verdict::Cancelled => "cancelled",
            Verdict::Released => "released",
        };
        end(self.cx, outcome, outcome == "dead");
    }
}

/// The span of one attempt.
pub struct AttemptSpan {
    cx: Option<Context>,
    traceparent: Option<String>,
}

impl AttemptSpan {
    /// What the worker is handed: this attempt's context (or the envelope's, without export).
    pub fn traceparent(&self) -> Option<String> {
        self.traceparent.clone()
    }

    /// Ends the attempt span with its outcome (`succeeded`, `failed`, `timeout`, `crashed`, ...).
    pub fn end(self, outcome: &str) {
        end(self.cx, outcome, outcome != "succeeded");
    }
}

fn end(cx: Option<Context>, outcome: &str, error: bool) {
    let Some(cx) = cx else { return };
    let span = cx.span();
    span.set_attribute(KeyValue::new("workerhost.outcome", outcome.to_string()));
    if error {
        span.set_status(Status::error(outcome.to_string()));
    } else {
        span.set_status(Status::Ok);
    }
    span.end();
}

/// Whether `s` is a W3C traceparent this host continues (`00-<32 hex>-<16 hex>-<2 hex>`, ids not all
/// zero): `submit --traceparent` refuses any other.
pub fn valid_traceparent(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let hex = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    matches!(parts.as_slice(), [v, t, p, f]
        if hex(v, 2) && *v != "ff" && hex(t, 32) && hex(p, 16) && hex(f, 2)
            && t.bytes().any(|b| b != b'0') && p.bytes().any(|b| b != b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_checked_like_w3c_says() {
        assert!(valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(!valid_traceparent(bad), "{bad}");
        }
    }

    #[test]
    fn without_export_the_envelopes_traceparent_is_handed_on() {
        let mut e = Envelope::new("t1", "demo", Default::default());
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        e.traceparent = Some(tp.into());
        let span = task(&e, "w");
        let a = span.attempt(1);
        assert_eq!(a.traceparent().as_deref(), Some(tp));
        a.end("succeeded");
        span.end(&Verdict::Released);
    }
}
