//! The adapter against the machine's PostgreSQL (127.0.0.1:5432, trust auth), each test in a schema of
//! its own that is dropped afterwards. Without a reachable server the tests print a notice and pass,
//! except under `CI=true`, where they fail.

use super::*;
use crate::{ClaimSlot, Consumer, Queue};
use serde_json::{Map, Value, json};
use std::time::Instant;

mod ops;

const URL: &str = "postgresql://postgres@127.0.0.1:5432/test";

fn server_up() -> bool {
    let up = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5432".parse().expect("addr"),
        Duration::from_secs(1),
    )
    .is_ok();
    if !up {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "PostgreSQL at 127.0.0.1:5432 is not reachable and CI=true"
        );
        eprintln!("SKIPPED: PostgreSQL at 127.0.0.1:5432 is not reachable");
    }
    up
}

/// A unique schema, dropped (with everything in it) when the test ends, pass or fail.
struct Schema {
    name: String,
}

/// The adapter's settings from `task_manager:` keys (a JSON object), at the test server.
fn settings_at(keys: Value) -> Settings {
    let mut s: Settings = serde_json::from_value(keys).expect("settings");
    s.url = Some(URL.into());
    s
}

impl Schema {
    fn new(test: &str) -> Schema {
        Schema {
            name: format!("wh_t_{test}_{}_{:06x}", std::process::id(), rand_suffix()),
        }
    }

    async fn open(&self, host: &str, extra: Value) -> PostgresSource {
        let mut settings =
            json!({"schema": self.name, "lease_seconds": 2, "poll_interval_ms": 60000});
        if let (Some(m), Value::Object(e)) = (settings.as_object_mut(), extra) {
            m.extend(e);
        }
        PostgresSource::open(Options {
            host_id: format!("{host}-{}", rand_suffix()),
            settings: settings_at(settings),
            migrate: true,
        })
        .await
        .expect("open the postgres adapter")
    }

    /// A plain client of our own, as an application would have.
    async fn app(&self) -> tokio_postgres::Client {
        let (c, conn) = tokio_postgres::connect(URL, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        c
    }

    fn q(&self, sql: &str) -> String {
        sql.replace("{s}", &self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc"])
            .arg(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .output();
    }
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() & 0xff_ffff) as u32
}

fn req(slots: &[(&[&str], usize)], limit: usize) -> ClaimRequest {
    ClaimRequest {
        slots: slots
            .iter()
            .map(|(types, max)| ClaimSlot {
                types: types.iter().map(|t| t.to_string()).collect(),
                max: *max,
            })
            .collect(),
        known_types: Vec::new(),
        limit: Some(limit),
    }
}

fn env(id: &str, t: &str) -> Envelope {
    Envelope::new(id, t, Map::new())
}

fn doc(id: &str, status: &str) -> ResultDocument {
    ResultDocument {
        id: id.into(),
        task_type: "T".into(),
        status: crate::ResultStatus::parse(status).expect("a result status"),
        result: Some(json!({"ok": true})),
        error: (status != "succeeded").then(|| json!({"message": "boom"})),
        attempts: 2,
        worker: Some("w".into()),
        host: "h".into(),
        started_at: "2026-01-01T00:00:00.000Z".into(),
        finished_at: "2026-01-01T00:00:01.000Z".into(),
        duration_ms: 1000,
        correlation_id: None,
        usage: None,
    }
}

fn ids(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(|d| d.lease.task_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_take_due_tasks_by_priority_then_age_within_each_slot() {
    if !server_up() {
        return;
    }
    let s = Schema::new("order");
    let a = s.open("a", json!({})).await;
    let app = s.app().await;
    app.batch_execute(&s.q(
        "SELECT {s}.enqueue(p_type => 'T', p_id => 'low-old');
         SELECT {s}.enqueue(p_type => 'T', p_id => 'low-new');
         SELECT {s}.enqueue(p_type => 'T', p_id => 'high', p_priority => 5);
         SELECT {s}.enqueue(p_type => 'T', p_id => 'later', p_priority => 9, p_run_at => now() + interval '1 hour');
         SELECT {s}.enqueue(p_type => 'U', p_id => 'u1');
         SELECT {s}.enqueue(p_type => 'Unknown', p_id => 'nobody');
         INSERT INTO {s}.paused_types (type) VALUES ('P');
         INSERT INTO {s}.tasks (id, type, params) VALUES ('p1', 'P', '{}');",
    ))
    .await
    .expect("enqueue");
    let st = a.status("later").await.expect("status").expect("known");
    assert_eq!(st.status, "scheduled");
    // Slot T may take 2, slot U 5, the host 10: the due T tasks by priority then age, never `later`.
    let got = a
        .claim(&req(&[(&["T"], 2), (&["U", "P"], 5)], 10))
        .await
        .expect("claim");
    let mut got = ids(&got);
    got.sort();
    assert_eq!(got, ["high", "low-old", "u1"]);
    let next = a.claim(&req(&[(&["T"], 5)], 1)).await.expect("claim");
    assert_eq!(ids(&next), ["low-new"], "the overall limit holds");
    assert!(
        a.claim(&req(&[(&["T", "U", "P"], 5)], 5))
            .await
            .expect("claim")
            .is_empty()
    );
    for (id, want) in [
        ("nobody", "queued"),
        ("p1", "queued"),
        ("later", "scheduled"),
    ] {
        let st = a.status(id).await.expect("status").expect("known");
        assert_eq!(st.status, want, "{id}");
    }
    a.close().await;
}

/// A slot of several types takes the best of all of them (one ordered scan per type, then the slot's
/// best `max`); what it looked at but did not take is claimable by the next claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_of_several_types_takes_the_best_across_them() {
    if !server_up() {
        return;
    }
    let s = Schema::new("slots");
    let a = s.open("a", json!({})).await;
    let app = s.app().await;
    app.batch_execute(&s.q(
        "SELECT {s}.enqueue(p_type => 'A', p_id => 'a-old', p_priority => 1);
         SELECT {s}.enqueue(p_type => 'A', p_id => 'a-new', p_priority => 1);
         SELECT {s}.enqueue(p_type => 'B', p_id => 'b-high', p_priority => 9);
         SELECT {s}.enqueue(p_type => 'B', p_id => 'b-low', p_priority => 0);",
    ))
    .await
    .expect("enqueue");
    let mut got = ids(&a.claim(&req(&[(&["A", "B"], 2)], 2)).await.expect("claim"));
    got.sort();
    assert_eq!(got, ["a-old", "b-high"]);
    let next = a.claim(&req(&[(&["B", "A"], 1)], 1)).await.expect("claim");
    assert_eq!(ids(&next), ["a-new"], "priority 1 before priority 0");
    let last = a.claim(&req(&[(&["A", "B"], 5)], 5)).await.expect("claim");
    assert_eq!(
        ids(&last),
        ["b-low"],
        "a row looked at and left is free again"
    );
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_over_lease_cannot_be_settled_or_renewed_by_its_old_holder() {
    if !server_up() {
        return;
    }
    let s = Schema::new("fence");
    let a = s.open("a", json!({"lease_seconds": 1})).await;
    let b = s.open("b", json!({"lease_seconds": 1})).await;
    a.submit(&env("t1", "T")).await.expect("submit");
    let da = a.claim(&req(&[(&["T"], 1)], 1)).await.expect("claim");
    assert_eq!(ids(&da), ["t1"]);
    assert_eq!(da[0].deliveries, 1);
    // While A's lease is valid, B gets nothing.
    assert!(
        b.claim(&req(&[(&["T"], 1)], 1))
            .await
            .expect("claim")
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let db = b.claim(&req(&[(&["T"], 1)], 1)).await.expect("claim");
    assert_eq!(ids(&db), ["t1"], "B takes over the expired lease");
    assert_eq!(db[0].deliveries, 2, "the redelivery counts");
    let lost = a.renew(&[da[0].lease.clone()]).await.expect("renew");
    assert_eq!(lost, [Revoked::lost(da[0].lease.clone())]);
    let err = a
        .settle(&da[0].lease, &doc("t1", "dead"))
        .await
        .expect_err("fenced");
    assert!(matches!(err, AdapterError::LeaseLost { .. }), "{err}");
    b.settle(&db[0].lease, &doc("t1", "succeeded"))
        .await
        .expect("settle");
    // Settling again (an answer lost on the way) is recognised as already recorded.
    b.settle(&db[0].lease, &doc("t1", "succeeded"))
        .await
        .expect("settle twice");
    let st = b.status("t1").await.expect("status").expect("known");
    assert_eq!(st.status, "succeeded");
    assert_eq!(st.result.expect("result").host, "h");
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_keeps_a_task_and_a_hand_back_does_not_count() {
    if !server_up() {
        return;
    }
    let s = Schema::new("renew");
    let a = s.open("a", json!({"lease_seconds": 1})).await;
    let b = s.open("b", json!({"lease_seconds": 1})).await;
    for i in 0..3 {
        a.submit(&env(&format!("r{i}"), "T")).await.expect("submit");
    }
    let held = a.claim(&req(&[(&["T"], 3)], 3)).await.expect("claim");
    assert_eq!(held.len(), 3);
    let leases: Vec<Lease> = held.iter().map(|d| d.lease.clone()).collect();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(a.renew(&leases).await.expect("renew").is_empty());
        assert!(
            b.claim(&req(&[(&["T"], 3)], 3))
                .await
                .expect("claim")
                .is_empty()
        );
    }
    for l in &leases {
        a.release(l).await.expect("release");
    }
    let again = b.claim(&req(&[(&["T"], 3)], 3)).await.expect("claim");
    assert_eq!(again.len(), 3);
    assert!(
        again.iter().all(|d| d.deliveries == 1),
        "a hand-back does not count: {:?}",
        again.iter().map(|d| d.deliveries).collect::<Vec<_>>()
    );
    let err = a.release(&leases[0]).await.expect_err("not ours any more");
    assert!(matches!(err, AdapterError::LeaseLost { .. }));
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_in_a_transaction_is_seen_at_commit_and_wakes_an_idle_host() {
    if !server_up() {
        return;
    }
    let s = Schema::new("tx");
    // The poll is a minute: only NOTIFY can end the waits below in time.
    let a = s.open("a", json!({})).await;
    // The first wait starts listening and returns (a start of listening wakes once).
    tokio::time::timeout(Duration::from_secs(10), a.wait_for_tasks())
        .await
        .expect("first wait");
    let mut app = s.app().await;
    let tx = app.transaction().await.expect("begin");
    let row = tx
        .query_one(
            &s.q("SELECT {s}.enqueue(p_type => 'T', p_params => '{\"a\": 1}'::jsonb, p_correlation_id => 'c1')"),
            &[],
        )
        .await
        .expect("enqueue");
    let id: String = row.get(0);
    assert!(!id.is_empty(), "a generated id");
    tx.execute(
        &s.q("INSERT INTO {s}.tasks (id, type, params) VALUES ('plain', 'T', '{}')"),
        &[],
    )
    .await
    .expect("insert");
    assert!(
        a.claim(&req(&[(&["T"], 5)], 5))
            .await
            .expect("claim")
            .is_empty(),
        "not before commit"
    );
    let waiter = tokio::spawn(async move {
        let t = Instant::now();
        a.wait_for_tasks().await;
        (a, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx.commit().await.expect("commit");
    let (a, waited) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("woken by NOTIFY, not the minute-long poll")
        .expect("join");
    assert!(waited < Duration::from_secs(30), "{waited:?}");
    let got = a.claim(&req(&[(&["T"], 5)], 5)).await.expect("claim");
    let mut got_ids = ids(&got);
    got_ids.sort();
    let mut want = vec![id.clone(), "plain".to_string()];
    want.sort();
    assert_eq!(got_ids, want);
    let e = got
        .iter()
        .find(|d| d.lease.task_id == id)
        .and_then(|d| d.envelope.as_ref().ok())
        .expect("valid envelope");
    assert_eq!(e.params["a"], 1);
    assert_eq!(e.correlation_id.as_deref(), Some("c1"));
    // Rolled back: never there.
    let tx = app.transaction().await.expect("begin");
    tx.execute(
        &s.q("SELECT {s}.enqueue(p_type => 'T', p_id => 'gone')"),
        &[],
    )
    .await
    .expect("enqueue");
    tx.rollback().await.expect("rollback");
    assert!(a.status("gone").await.expect("status").is_none());
    assert!(
        a.claim(&req(&[(&["T"], 5)], 5))
            .await
            .expect("claim")
            .is_empty()
    );
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_comes_back_after_its_connection_is_terminated() {
    if !server_up() {
        return;
    }
    let s = Schema::new("relisten");
    let a = s.open("a", json!({})).await;
    tokio::time::timeout(Duration::from_secs(10), a.wait_for_tasks())
        .await
        .expect("first wait");
    let app = s.app().await;
    let listening = s.q(
        "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN {s}_tasks' AND pid <> pg_backend_pid()",
    );
    let n: i64 = app.query_one(&listening, &[]).await.expect("count").get(0);
    assert_eq!(n, 1, "one LISTEN connection");
    app.execute(
        &s.q("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN {s}_tasks'"),
        &[],
    )
    .await
    .expect("terminate");
    // The start of listening again wakes once; then a new enqueue must wake through the new connection.
    tokio::time::timeout(Duration::from_secs(10), a.wait_for_tasks())
        .await
        .expect("re-listened");
    let n: i64 = app.query_one(&listening, &[]).await.expect("count").get(0);
    assert_eq!(n, 1, "listening again");
    let wait = tokio::spawn(async move {
        a.wait_for_tasks().await;
        a
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.execute(&s.q("SELECT {s}.enqueue(p_type => 'T')"), &[])
        .await
        .expect("enqueue");
    let a = tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("woken through the new connection")
        .expect("join");
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notify_an_idle_host_polls() {
    if !server_up() {
        return;
    }
    let s = Schema::new("poll");
    let a = s
        .open("a", json!({"notify": false, "poll_interval_ms": 300}))
        .await;
    let t = Instant::now();
    a.wait_for_tasks().await;
    a.wait_for_tasks().await;
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "{:?}",
        t.elapsed()
    );
    let app = s.app().await;
    let n: i64 = app
        .query_one(
            &s.q("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN {s}%'"),
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0, "notify: false never LISTENs");
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_hosts_starting_together_migrate_once() {
    if !server_up() {
        return;
    }
    let s = Schema::new("migrate");
    let opens = (0..6).map(|i| {
        PostgresSource::open(Options {
            host_id: format!("h{i}"),
            settings: settings_at(json!({"schema": s.name})),
            migrate: true,
        })
    });
    let sources: Vec<PostgresSource> = futures_join(opens).await;
    let app = s.app().await;
    let rows = app
        .query(&s.q("SELECT version FROM {s}.migrations"), &[])
        .await
        .expect("migrations");
    assert_eq!(rows.len(), migrations::MIGRATIONS.len());
    let st = sources[0].schema_state().await.expect("state");
    assert_eq!(
        st,
        SchemaState::Current {
            version: migrations::latest()
        }
    );
    // An older schema is reported as such (here: one whose record of the latest version is gone).
    app.execute(
        &s.q("DELETE FROM {s}.migrations WHERE version = $1"),
        &[&migrations::latest()],
    )
    .await
    .expect("pretend older");
    assert_eq!(
        sources[0].schema_state().await.expect("state"),
        SchemaState::Older {
            have: migrations::latest() - 1,
            want: migrations::latest()
        }
    );
    app.batch_execute(&s.q("DROP SCHEMA {s} CASCADE"))
        .await
        .expect("drop");
    assert_eq!(
        sources[0].schema_state().await.expect("state"),
        SchemaState::Missing
    );
    for src in sources {
        src.close().await;
    }
}

/// Awaits every future concurrently (the test needs them racing, not in turn).
async fn futures_join<F>(fs: impl Iterator<Item = F>) -> Vec<PostgresSource>
where
    F: Future<Output = Result<PostgresSource, AdapterError>> + Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("join").expect("open"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_refused_and_settles_are_grouped() {
    if !server_up() {
        return;
    }
    let s = Schema::new("bad");
    let a = Arc::new(s.open("a", json!({})).await);
    let app = s.app().await;
    let e = app
        .execute(
            &s.q("INSERT INTO {s}.tasks (id, type, params) VALUES ('b', 'T', '[1]')"),
            &[],
        )
        .await
        .expect_err("params must be an object");
    assert!(format!("{e:?}").contains("params_is_an_object"), "{e:?}");
    let e = app
        .execute(&s.q("SELECT {s}.enqueue(p_type => '')"), &[])
        .await
        .expect_err("type must not be empty");
    assert!(format!("{e:?}").contains("type_not_empty"), "{e:?}");
    let dup = a.submit(&env("same", "T")).await;
    assert!(dup.is_ok());
    assert!(matches!(
        a.submit(&env("same", "T")).await,
        Err(AdapterError::Duplicate { .. })
    ));
    for i in 0..40 {
        a.submit(&env(&format!("g{i}"), "G")).await.expect("submit");
    }
    let held = a.claim(&req(&[(&["G"], 40)], 40)).await.expect("claim");
    assert_eq!(held.len(), 40);
    let settles = held.into_iter().map(|d| {
        let a = a.clone();
        tokio::spawn(async move {
            let id = d.lease.task_id.clone();
            a.settle(&d.lease, &doc(&id, "dead")).await
        })
    });
    let handles: Vec<_> = settles.collect();
    for h in handles {
        h.await.expect("join").expect("settled");
    }
    let row = app
        .query_one(
            &s.q("SELECT count(*), min(error), min(attempts) FROM {s}.tasks WHERE type = 'G' AND status = 'dead' AND result->>'status' = 'dead'"),
            &[],
        )
        .await
        .expect("count");
    assert_eq!(row.get::<_, i64>(0), 40);
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("boom"));
    assert_eq!(row.get::<_, Option<i32>>(2), Some(2));
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_keeps_run_at_priority_and_the_attempts_of_a_retry() {
    if !server_up() {
        return;
    }
    let s = Schema::new("submit");
    let a = s.open("a", json!({})).await;
    let later = Envelope {
        run_at: Some(crate::Stamp(crate::now_ms() + 3_600_000)),
        ..env("later", "T")
    };
    let retry = Envelope {
        run_at: Some(crate::Stamp(crate::now_ms() - 1000)),
        attempts: 2,
        last_error: Some("boom".into()),
        ..env("retry", "T")
    };
    let urgent = Envelope {
        priority: 7,
        ..env("urgent", "T")
    };
    for e in [&later, &retry, &urgent] {
        a.submit(e).await.expect("submit");
    }
    assert_eq!(
        a.status("later")
            .await
            .expect("status")
            .expect("known")
            .status,
        "scheduled"
    );
    assert_eq!(
        a.status("retry")
            .await
            .expect("status")
            .expect("known")
            .status,
        "queued"
    );
    let got = a.claim(&req(&[(&["T"], 5)], 1)).await.expect("claim");
    assert_eq!(ids(&got), ["urgent"], "the highest priority first");
    let got = a.claim(&req(&[(&["T"], 5)], 5)).await.expect("claim");
    assert_eq!(ids(&got), ["retry"], "`later` is not due");
    let e = got[0].envelope.as_ref().expect("valid");
    assert_eq!((e.attempts, e.last_error.as_deref()), (2, Some("boom")));
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requeued_retry_waits_scheduled_and_its_deliveries_start_again() {
    if !server_up() {
        return;
    }
    let s = Schema::new("requeue");
    let a = s.open("a", json!({})).await;
    a.submit(&env("q1", "T")).await.expect("submit");
    let d = a.claim(&req(&[(&["T"], 1)], 1)).await.expect("claim");
    assert_eq!(ids(&d), ["q1"]);
    let retry = Envelope {
        run_at: Some(crate::Stamp(crate::now_ms() + 600)),
        attempts: 1,
        last_error: Some("first try failed".into()),
        ..env("q1", "T")
    };
    a.requeue(&d[0].lease, &retry).await.expect("requeue");
    let st = a.status("q1").await.expect("status").expect("known");
    assert_eq!((st.status.as_str(), st.attempts), ("scheduled", 1));
    assert_eq!(st.last_error.as_deref(), Some("first try failed"));
    assert!(st.run_at.is_some());
    assert!(
        a.claim(&req(&[(&["T"], 1)], 1))
            .await
            .expect("claim")
            .is_empty()
    );
    let err = a
        .settle(&d[0].lease, &doc("q1", "succeeded"))
        .await
        .expect_err("fenced");
    assert!(matches!(err, AdapterError::LeaseLost { .. }));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let again = a.claim(&req(&[(&["T"], 1)], 1)).await.expect("claim");
    assert_eq!(ids(&again), ["q1"]);
    assert_eq!(again[0].deliveries, 1, "a requeue is a recorded outcome");
    let e = again[0].envelope.as_ref().expect("valid");
    assert_eq!(
        (e.attempts, e.last_error.as_deref()),
        (1, Some("first try failed"))
    );
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_is_kept_with_the_task() {
    if !server_up() {
        return;
    }
    let s = Schema::new("trace");
    let a = s.open("a", json!({})).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut e = env("tp1", "T");
    e.traceparent = Some(tp.into());
    a.submit(&e).await.expect("submit");
    let got = a.claim(&req(&[(&["T"], 1)], 1)).await.expect("claim");
    let env = got[0].envelope.as_ref().expect("envelope");
    assert_eq!(env.traceparent.as_deref(), Some(tp));
}
