//! The adapter against the real RabbitMQ at 127.0.0.1:5672 (guest/guest). A missing broker fails these
//! tests; it never skips them. Each test uses its own queues and deletes them.

use super::*;
use crate::{ClaimSlot, now_ms, rfc3339_ms};
use lapin::options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use serde_json::{Map, Value, json};

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

struct Broker {
    conn: Connection,
    ch: lapin::Channel,
    queues: Vec<String>,
}

impl Broker {
    async fn new(queue: &str) -> Broker {
        let conn = Connection::connect(URL, ConnectionProperties::default())
            .await
            .expect("RabbitMQ must run at 127.0.0.1:5672 (guest/guest) for these tests; see ../shared/SERVICES.md");
        let ch = conn.create_channel().await.expect("channel");
        Broker {
            conn,
            ch,
            queues: vec![queue.to_string(), format!("{queue}.dead")],
        }
    }

    async fn get(&self, queue: &str) -> Option<lapin::message::BasicGetMessage> {
        let opts = BasicGetOptions { no_ack: true };
        self.ch.basic_get(queue.into(), opts).await.expect("get")
    }

    async fn count(&self, queue: &str) -> u32 {
        let opts = QueueDeclareOptions::durable().passive();
        let q = self
            .ch
            .queue_declare(queue.into(), opts, FieldTable::default());
        q.await.expect("declare passive").message_count()
    }

    async fn cleanup(mut self) {
        for q in std::mem::take(&mut self.queues) {
            let _ = self
                .ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = self.conn.close(200, "done".into()).await;
    }
}

/// A test that failed before `cleanup` still deletes its queues (on a thread of its own: this runs
/// inside the test's runtime).
impl Drop for Broker {
    fn drop(&mut self) {
        let queues = std::mem::take(&mut self.queues);
        if queues.is_empty() {
            return;
        }
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(conn) = Connection::connect(URL, ConnectionProperties::default()).await
                else {
                    return;
                };
                if let Ok(ch) = conn.create_channel().await {
                    for q in queues {
                        let opts = QueueDeleteOptions::default();
                        let _ = ch.queue_delete(q.as_str().into(), opts).await;
                    }
                }
                let _ = conn.close(200, "done".into()).await;
            });
        })
        .join();
    }
}

fn unique(name: &str) -> String {
    format!("wh-unit-{name}-{}-{}", std::process::id(), now_ms())
}

/// Options for `settings` (a JSON object of `task_manager:` keys) at `url`.
fn options(settings: Map<String, Value>, url: &str, host_id: String) -> Options {
    let mut settings: Settings = serde_json::from_value(Value::Object(settings)).expect("settings");
    settings.url = Some(url.into());
    Options { host_id, settings }
}

async fn source(queue: &str, extra: Value) -> AmqpSource {
    let mut settings = Map::new();
    settings.insert("queue".into(), queue.into());
    if let Value::Object(m) = extra {
        settings.extend(m);
    }
    let opts = options(settings, URL, format!("unit-{queue}"));
    AmqpSource::connect(opts).await.expect("connect")
}

fn req(n: usize) -> ClaimRequest {
    ClaimRequest {
        slots: vec![ClaimSlot {
            types: vec!["T".into()],
            max: n,
        }],
        known_types: vec!["T".into()],
        limit: None,
    }
}

fn envelope(id: &str) -> Envelope {
    Envelope::new(id, "T", Map::new())
}

fn doc(id: &str, status: &str) -> ResultDocument {
    let now = rfc3339_ms(now_ms());
    ResultDocument {
        id: id.into(),
        task_type: "T".into(),
        status: crate::ResultStatus::parse(status).expect("a result status"),
        result: (status == "succeeded").then(|| json!({"ok": true})),
        error: (status == "dead").then(|| json!({"message": "boom", "outcome": "failed"})),
        attempts: 3,
        worker: Some("w".into()),
        host: "h".into(),
        started_at: now.clone(),
        finished_at: now,
        duration_ms: 1,
        correlation_id: None,
        usage: None,
    }
}

/// Claims until `n` deliveries arrived (a claim waits at most half a second).
async fn claim_n(s: &AmqpSource, n: usize) -> Vec<Delivery> {
    let mut out = Vec::new();
    for _ in 0..20 {
        out.extend(s.claim(&req(n - out.len())).await.expect("claim"));
        if out.len() >= n {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_respect_the_request_and_settled_tasks_leave_the_queue() {
    let q = unique("claim");
    let s = source(&q, json!({"prefetch": 3, "consumer_timeout_ms": 3_600_000})).await;
    let b = Broker::new(&q).await;
    for i in 0..4 {
        s.submit(&envelope(&format!("t{i}"))).await.expect("submit");
    }
    let first = claim_n(&s, 2).await;
    assert_eq!(first.len(), 2, "a claim never returns more than asked");
    let mut ids: Vec<&str> = first.iter().map(|d| d.lease.task_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["t0", "t1"], "oldest first");
    assert_eq!(first[0].deliveries, 1);
    for d in &first {
        s.settle(&d.lease, &doc(&d.lease.task_id, "succeeded"))
            .await
            .expect("settle");
    }
    let again = s.settle(&first[0].lease, &doc("t0", "succeeded")).await;
    assert!(
        matches!(again, Err(AdapterError::LeaseLost { .. })),
        "{again:?}"
    );
    let rest = claim_n(&s, 2).await;
    assert_eq!(rest.len(), 2);
    // A handed-back task comes again, flagged as redelivered.
    s.release(&rest[0].lease).await.expect("release");
    s.settle(&rest[1].lease, &doc("t3", "dead"))
        .await
        .expect("dead");
    let back = claim_n(&s, 1).await;
    assert_eq!(back[0].lease.task_id, rest[0].lease.task_id);
    assert_eq!(back[0].deliveries, 2);
    s.settle(&back[0].lease, &doc("t2", "succeeded"))
        .await
        .expect("settle");
    let dead = b.get(&format!("{q}.dead")).await.expect("a dead letter");
    let h = dead.delivery.properties.headers().clone().expect("headers");
    assert_eq!(
        h.inner().get("x-error"),
        Some(&AMQPValue::LongString("boom".into()))
    );
    assert_eq!(
        h.inner().get("x-attempts"),
        Some(&AMQPValue::LongLongInt(3))
    );
    assert!(
        matches!(s.status("t0").await, Err(AdapterError::Backend(m)) if m.contains("keeps no task status"))
    );
    s.stop_consuming().await;
    s.close().await;
    assert_eq!(b.count(&q).await, 0);
    b.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_dead_letter_exchange_dead_letters_are_nacked_to_it() {
    let q = unique("dlx");
    let s = source(&q, json!({"dead_letter_exchange": ""})).await;
    let b = Broker::new(&q).await;
    s.submit(&envelope("d1")).await.expect("submit");
    let d = claim_n(&s, 1).await;
    s.settle(&d[0].lease, &doc("d1", "dead"))
        .await
        .expect("dead");
    let mut dead = None;
    for _ in 0..50 {
        dead = b.get(&format!("{q}.dead")).await;
        if dead.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dead = dead.expect("the broker dead-lettered the message");
    let h = dead.delivery.properties.headers().clone().expect("headers");
    assert!(h.inner().contains_key("x-death"), "{h:?}");
    s.close().await;
    b.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_from_a_dead_channel_settles_the_redelivery() {
    let q = unique("reconnect");
    let s = source(&q, json!({})).await;
    let b = Broker::new(&q).await;
    s.submit(&envelope("r1")).await.expect("submit");
    let d = claim_n(&s, 1).await;
    assert_eq!(d.len(), 1);
    // The connection dies under the running task; the broker requeues the message.
    let l = s.inner.current().expect("link");
    l.close().await;
    let mut settled = false;
    for _ in 0..100 {
        match s.settle(&d[0].lease, &doc("r1", "succeeded")).await {
            Ok(_) => {
                settled = true;
                break;
            }
            Err(AdapterError::Unavailable(_)) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("settle: {e}"),
        }
    }
    assert!(settled, "the outcome was recorded after the reconnect");
    assert!(s.inner.generation.load(Ordering::SeqCst) >= 2);
    // Nothing left to run: the redelivery was settled, not handed out again.
    assert!(s.claim(&req(1)).await.expect("claim").is_empty());
    s.close().await;
    assert_eq!(b.count(&q).await, 0);
    b.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_hands_back_what_was_buffered() {
    let q = unique("stop");
    let s = source(&q, json!({"prefetch": 5})).await;
    let b = Broker::new(&q).await;
    for i in 0..5 {
        s.submit(&envelope(&format!("s{i}"))).await.expect("submit");
    }
    let d = claim_n(&s, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // the rest arrives in the buffer
    s.stop_consuming().await;
    assert!(s.claim(&req(4)).await.expect("claim").is_empty());
    s.settle(&d[0].lease, &doc("s0", "succeeded"))
        .await
        .expect("in-flight deliveries still settle");
    s.close().await;
    assert_eq!(b.count(&q).await, 4);
    b.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_problems_are_reported_as_such() {
    let q = unique("config");
    let b = Broker::new(&q).await;
    let connect = |settings: Value, url: &str| {
        let Value::Object(settings) = settings else {
            panic!("not an object")
        };
        AmqpSource::connect(options(settings, url, "unit".into()))
    };
    let missing = connect(json!({"queue": q, "declare": false}), URL).await;
    assert!(
        matches!(&missing, Err(AdapterError::Backend(m)) if m.contains("must exist with `declare: false`")),
        "{:?}",
        missing.err()
    );
    // Declared classic; asking for a quorum queue of the same name is refused with a hint.
    source(&q, json!({})).await.close().await;
    let other = connect(json!({"queue": q, "queue_type": "quorum"}), URL).await;
    assert!(
        matches!(&other, Err(AdapterError::Backend(m)) if m.contains("exists with other arguments")),
        "{:?}",
        other.err()
    );
    let bad = connect(
        json!({"queue": q}),
        "amqp://guest:wrong-secret@127.0.0.1:5672/%2f",
    )
    .await;
    let msg = bad.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("guest:***@"), "{msg}");
    assert!(!msg.contains("wrong-secret"), "{msg}");
    b.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_also_published_to_the_result_exchange() {
    use lapin::options::QueueBindOptions;
    let q = unique("results");
    let mut b = Broker::new(&q).await;
    let results = format!("{q}.results");
    b.queues.push(results.clone());
    let ch = &b.ch;
    ch.queue_declare(
        results.as_str().into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.queue_bind(
        results.as_str().into(),
        "amq.direct".into(),
        results.as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    let s = source(
        &q,
        json!({"result_exchange": "amq.direct", "result_routing_key": results}),
    )
    .await;
    let mut e = envelope("x1");
    e.correlation_id = Some("c-x1".into());
    s.submit(&e).await.expect("submit");
    let d = claim_n(&s, 1).await;
    let Ok(got) = &d[0].envelope else {
        panic!("valid envelope")
    };
    assert_eq!(got.correlation_id.as_deref(), Some("c-x1"));
    s.settle(&d[0].lease, &doc("x1", "succeeded"))
        .await
        .expect("settle");
    let m = b.get(&results).await.expect("a published result");
    let v: Value = serde_json::from_slice(&m.delivery.data).expect("json");
    assert_eq!(v["id"], "x1");
    assert_eq!(v["status"], "succeeded");
    assert_eq!(
        m.delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some("c-x1")
    );
    s.close().await;
    // A result exchange that does not exist is a configuration error at start.
    let missing = AmqpSource::connect(options(
        match json!({"queue": q, "result_exchange": format!("{q}-nope")}) {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        URL,
        "unit".into(),
    ))
    .await;
    assert!(
        matches!(missing, Err(AdapterError::Backend(_))),
        "{:?}",
        missing.err()
    );
    b.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_travels_in_the_body_and_is_read_from_the_header() {
    let q = unique("trace");
    let s = source(&q, json!({"consumer_timeout_ms": 3_600_000})).await;
    let b = Broker::new(&q).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut e = envelope("tp1");
    e.traceparent = Some(tp.into());
    s.submit(&e).await.expect("submit");
    // A producer that puts the context only in the standard header.
    let mut headers = FieldTable::default();
    headers.insert("traceparent".into(), AMQPValue::LongString(tp.into()));
    b.ch.basic_publish(
        "".into(),
        q.as_str().into(),
        lapin::options::BasicPublishOptions::default(),
        br#"{"id":"tp2","type":"T"}"#,
        lapin::BasicProperties::default().with_headers(headers),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
    let got = claim_n(&s, 2).await;
    assert_eq!(got.len(), 2);
    for d in &got {
        let env = d.envelope.as_ref().expect("an envelope");
        assert_eq!(env.traceparent.as_deref(), Some(tp), "{}", env.id);
        s.settle(&d.lease, &doc(&d.lease.task_id, "succeeded"))
            .await
            .expect("settle");
    }
    s.stop_consuming().await;
    s.close().await;
    b.cleanup().await;
}

/// Issue 16: a dead letter whose headers outgrew the broker's frame (131,072 bytes) closed the connection
/// (FRAME_ERROR) and came back forever. Every header added is bounded, and a message whose own headers
/// leave no room is still dead-lettered (its body whole, its own headers left out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_with_huge_values_still_leave_the_queue() {
    use lapin::options::BasicPublishOptions;
    let q = unique("huge");
    let s = source(&q, json!({})).await;
    let b = Broker::new(&q).await;
    let body = format!(r#"{{"id":"big","type":"{}"}}"#, "T".repeat(200_000));
    let mut own = FieldTable::default();
    own.insert(
        "x-app".into(),
        AMQPValue::LongString("a".repeat(100_000).into()),
    );
    let props = lapin::BasicProperties::default().with_headers(own);
    b.ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        body.as_bytes(),
        props,
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
    s.submit(&envelope("after")).await.expect("submit");
    let mut d = claim_n(&s, 2).await;
    assert_eq!(d.len(), 2);
    // A 300 KB message may reach the buffer after the small one behind it.
    d.sort_by_key(|d| d.lease.task_id != "big");
    let m = d[0]
        .envelope
        .as_ref()
        .expect_err("a 200 KB type is malformed");
    assert!(
        m.reason.contains("`type` is 200000 bytes long"),
        "{}",
        m.reason
    );
    assert!(m.raw.len() <= crate::text::REASON_MAX);
    // As the host would dead-letter it, with a huge message on top.
    let mut dead = doc("big", "dead");
    dead.error =
        Some(json!({"message": "m".repeat(1_000_000), "outcome": "malformed", "raw": m.raw}));
    s.settle(&d[0].lease, &dead).await.expect("dead-lettered");
    s.settle(&d[1].lease, &doc("after", "succeeded"))
        .await
        .expect("the task behind it settles");
    let got = b.get(&format!("{q}.dead")).await.expect("a dead letter");
    assert_eq!(got.delivery.data, body.as_bytes(), "the body is kept whole");
    let h = got.delivery.properties.headers().clone().expect("headers");
    for (k, v) in h.inner() {
        if let AMQPValue::LongString(v) = v {
            assert!(
                v.as_bytes().len() <= crate::text::REASON_MAX,
                "{k}: {} bytes",
                v.as_bytes().len()
            );
        }
    }
    assert!(
        h.inner().contains_key("x-headers-dropped"),
        "{:?}",
        h.inner().keys()
    );
    assert!(!h.inner().contains_key("x-app"));
    s.close().await;
    assert_eq!(b.count(&q).await, 0);
    b.cleanup().await;
}
