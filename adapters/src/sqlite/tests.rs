use super::*;
use std::collections::HashSet;
use tempfile::TempDir;

fn open(dir: &TempDir, host: &str, lease_ms: u64) -> SqliteSource {
    SqliteSource::open(SqliteOptions {
        path: dir.path().join("db").join("tasks.db"),
        host_id: host.into(),
        lease: Duration::from_millis(lease_ms),
        poll_interval: Duration::from_millis(50),
    })
    .expect("open")
}

fn raw_conn(dir: &TempDir) -> Connection {
    Connection::open(dir.path().join("db").join("tasks.db")).expect("raw open")
}

fn env(id: &str, ty: &str) -> Envelope {
    let mut params = serde_json::Map::new();
    params.insert("n".into(), json!(id));
    Envelope {
        id: id.into(),
        task_type: ty.into(),
        params,
        correlation_id: None,
    }
}

fn req(slots: &[(&[&str], usize)]) -> ClaimRequest {
    ClaimRequest {
        slots: slots
            .iter()
            .map(|(types, max)| ClaimSlot {
                types: types.iter().map(|t| t.to_string()).collect(),
                max: *max,
            })
            .collect(),
        known_types: Vec::new(),
    }
}

fn doc(id: &str, status: &str, host: &str, result: Value) -> ResultDocument {
    ResultDocument {
        id: id.into(),
        task_type: "T".into(),
        status: status.into(),
        result: (status == "succeeded").then(|| result.clone()),
        error: (status == "dead").then_some(result),
        attempts: 1,
        worker: Some("w".into()),
        host: host.into(),
        started_at: rfc3339_ms(0),
        finished_at: rfc3339_ms(1),
        duration_ms: 1,
        correlation_id: None,
    }
}

fn ids(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(|d| d.lease.task_id.clone()).collect()
}

async fn submit_all(s: &SqliteSource, tasks: &[(&str, &str)]) {
    for (id, ty) in tasks {
        s.submit(&env(id, ty)).await.expect("submit");
    }
}

#[tokio::test]
async fn open_creates_schema_in_wal_mode_and_reopens() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 30_000);
    assert_eq!(s.kind(), "sqlite");
    assert_eq!(s.idle_wait(), Duration::from_millis(50));
    s.ping().await.expect("ping");
    drop(s);
    let again = open(&dir, "h1", 30_000);
    again.ping().await.expect("ping after reopen");
    let c = raw_conn(&dir);
    let v: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    let mode: String = c
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .expect("mode");
    assert_eq!((v, mode.as_str()), (SCHEMA_VERSION, "wal"));
    // a hand insert with only the essentials gets defaults
    c.execute("INSERT INTO tasks (id, type) VALUES ('h', 'T')", [])
        .expect("insert");
    let (status, at): (String, i64) = c
        .query_row(
            "SELECT status, enqueued_at FROM tasks WHERE id = 'h'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");
    assert_eq!(status, "queued");
    assert!((now_ms() - at).abs() < 60_000, "enqueued_at {at}");
    c.pragma_update(None, "user_version", 99).expect("bump");
    let err = SqliteSource::open(SqliteOptions {
        path: dir.path().join("db").join("tasks.db"),
        host_id: "h".into(),
        lease: Duration::from_secs(1),
        poll_interval: Duration::from_secs(1),
    });
    assert!(
        matches!(err, Err(AdapterError::Backend(m)) if m.contains("tasks.db") && m.contains("99"))
    );
}

#[tokio::test]
async fn claim_respects_slot_max_types_and_fifo() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 30_000);
    submit_all(
        &s,
        &[
            ("a1", "A"),
            ("b1", "B"),
            ("a2", "A"),
            ("c1", "C"),
            ("a3", "A"),
            ("b2", "B"),
        ],
    )
    .await;
    let got = s
        .claim(&req(&[(&["A"], 2), (&["C", "B"], 2), (&["A"], 0)]))
        .await
        .expect("claim");
    assert_eq!(ids(&got), ["a1", "a2", "b1", "c1"]);
    for d in &got {
        assert_eq!((d.deliveries, d.lease.receipt.as_str()), (1, "1"));
        let e = d.envelope.as_ref().expect("valid envelope");
        assert_eq!(
            (e.id.as_str(), &e.params["n"]),
            (d.lease.task_id.as_str(), &json!(d.lease.task_id))
        );
    }
    let st = s.status("a1").await.expect("status").expect("known");
    assert_eq!(
        (st.status.as_str(), st.deliveries, st.result),
        ("running", 1, None)
    );
    assert_eq!(
        ids(&s.claim(&req(&[(&["D"], 5)])).await.expect("claim")),
        Vec::<String>::new()
    );
    let rest = s
        .claim(&req(&[(&["A", "B", "C"], 10)]))
        .await
        .expect("claim");
    assert_eq!(ids(&rest), ["a3", "b2"]);
    assert!(
        s.claim(&req(&[(&["A", "B", "C"], 10)]))
            .await
            .expect("claim")
            .is_empty()
    );
    assert!(s.status("nope").await.expect("status").is_none());
}

#[tokio::test]
async fn expired_lease_is_taken_over_and_old_holder_is_fenced() {
    let dir = TempDir::new().expect("tempdir");
    let (h1, h2) = (open(&dir, "h1", 200), open(&dir, "h2", 200));
    submit_all(&h1, &[("t1", "T"), ("t2", "T")]).await;
    let first = h1.claim(&req(&[(&["T"], 2)])).await.expect("claim");
    assert_eq!(ids(&first), ["t1", "t2"]);
    assert!(
        h2.claim(&req(&[(&["T"], 5)]))
            .await
            .expect("claim")
            .is_empty(),
        "live lease was stolen"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let taken = h2.claim(&req(&[(&["T"], 5)])).await.expect("claim");
    assert_eq!(ids(&taken), ["t1", "t2"]);
    assert!(
        taken
            .iter()
            .all(|d| d.deliveries == 2 && d.lease.receipt == "2")
    );

    // t1: the old holder settles first, then the new one; t2: the new holder settles first.
    let lost = h1
        .settle(&first[0].lease, &doc("t1", "succeeded", "h1", json!("old")))
        .await;
    assert!(matches!(lost, Err(AdapterError::LeaseLost { id }) if id == "t1"));
    assert_eq!(
        h1.status("t1")
            .await
            .expect("status")
            .expect("known")
            .status,
        "running"
    );
    assert_eq!(
        h1.renew(&[first[0].lease.clone()]).await.expect("renew"),
        [first[0].lease.clone()]
    );
    h2.settle(&taken[0].lease, &doc("t1", "succeeded", "h2", json!("new")))
        .await
        .expect("settle");
    h2.settle(
        &taken[1].lease,
        &doc("t2", "dead", "h2", json!({"message": "boom"})),
    )
    .await
    .expect("settle");
    let lost = h1
        .settle(&first[1].lease, &doc("t2", "succeeded", "h1", json!("old")))
        .await;
    assert!(matches!(lost, Err(AdapterError::LeaseLost { .. })));
    assert!(
        matches!(
            h2.settle(&taken[1].lease, &doc("t2", "succeeded", "h2", json!(1)))
                .await,
            Err(AdapterError::LeaseLost { .. })
        ),
        "settled twice"
    );

    let t1 = h1.status("t1").await.expect("status").expect("known");
    let r1 = t1.result.expect("result");
    assert_eq!(
        (t1.status.as_str(), r1.result, r1.host.as_str()),
        ("succeeded", Some(json!("new")), "h2")
    );
    let t2 = h1.status("t2").await.expect("status").expect("known");
    assert_eq!((t2.status.as_str(), t2.deliveries), ("dead", 2));
    assert_eq!(t2.result.expect("result").host, "h2");
    let err: String = raw_conn(&dir)
        .query_row("SELECT error FROM tasks WHERE id = 't2'", [], |r| r.get(0))
        .expect("row");
    assert_eq!(err, "boom");
    assert!(
        h2.claim(&req(&[(&["T"], 5)]))
            .await
            .expect("claim")
            .is_empty(),
        "settled task delivered again"
    );
}

#[tokio::test]
async fn renew_keeps_a_task_past_its_first_lease() {
    let dir = TempDir::new().expect("tempdir");
    let (h1, h2) = (open(&dir, "h1", 300), open(&dir, "h2", 300));
    submit_all(&h1, &[("t", "T")]).await;
    let d = h1.claim(&req(&[(&["T"], 1)])).await.expect("claim");
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            h1.renew(&[d[0].lease.clone()])
                .await
                .expect("renew")
                .is_empty(),
            "renewal refused"
        );
        assert!(
            h2.claim(&req(&[(&["T"], 1)]))
                .await
                .expect("claim")
                .is_empty(),
            "renewed task taken over"
        );
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        ids(&h2.claim(&req(&[(&["T"], 1)])).await.expect("claim")),
        ["t"]
    );
    let bogus = Lease {
        task_id: "t".into(),
        receipt: "x".into(),
    };
    assert_eq!(
        h1.renew(&[d[0].lease.clone(), bogus.clone()])
            .await
            .expect("renew"),
        [d[0].lease.clone(), bogus]
    );
}

#[tokio::test]
async fn release_requeues_without_counting_a_delivery() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 30_000);
    submit_all(&s, &[("t", "T")]).await;
    let first = s.claim(&req(&[(&["T"], 1)])).await.expect("claim");
    s.release(&first[0].lease).await.expect("release");
    let st = s.status("t").await.expect("status").expect("known");
    assert_eq!((st.status.as_str(), st.deliveries), ("queued", 0));
    let again = s.claim(&req(&[(&["T"], 1)])).await.expect("claim");
    assert_eq!(
        (again[0].deliveries, again[0].lease.receipt.as_str()),
        (1, "2")
    );
    assert!(matches!(
        s.release(&first[0].lease).await,
        Err(AdapterError::LeaseLost { .. })
    ));
    assert!(matches!(
        s.settle(&first[0].lease, &doc("t", "succeeded", "h1", json!(1)))
            .await,
        Err(AdapterError::LeaseLost { .. })
    ));
    s.settle(&again[0].lease, &doc("t", "succeeded", "h1", json!(1)))
        .await
        .expect("settle");
    assert!(matches!(
        s.release(&again[0].lease).await,
        Err(AdapterError::LeaseLost { .. })
    ));
    let bad = doc("t", "running", "h1", json!(1));
    assert!(matches!(
        s.settle(&again[0].lease, &bad).await,
        Err(AdapterError::Invalid(_))
    ));
}

#[tokio::test]
async fn duplicate_submit_is_refused() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 30_000);
    s.submit(&env("x", "A")).await.expect("submit");
    assert!(
        matches!(s.submit(&env("x", "B")).await, Err(AdapterError::Duplicate { id }) if id == "x")
    );
    assert_eq!(
        s.status("x")
            .await
            .expect("status")
            .expect("known")
            .task_type,
        "A"
    );
    assert!(matches!(
        s.submit(&env("", "B")).await,
        Err(AdapterError::Invalid(_))
    ));
}

#[tokio::test]
async fn malformed_rows_come_back_as_malformed() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 30_000);
    let c = raw_conn(&dir);
    c.execute_batch(
        "INSERT INTO tasks (id, type, params) VALUES ('m1', 'T', '[1, 2]');
         INSERT INTO tasks (id, type, params) VALUES ('ok', 'T', '{\"a\": 1}');
         INSERT INTO tasks (id, type, params) VALUES ('m2', 'T', 'not json');
         INSERT INTO tasks (id, type, params) VALUES ('m3', 'T', x'00ff');",
    )
    .expect("insert");
    let got = s.claim(&req(&[(&["T"], 10)])).await.expect("claim");
    assert_eq!(ids(&got), ["m1", "ok", "m2", "m3"]);
    let bad = |i: usize| got[i].envelope.as_ref().expect_err("malformed").clone();
    assert!(
        bad(0).reason.contains("not a JSON object") && bad(0).raw.contains("\"m1\""),
        "{:?}",
        bad(0)
    );
    assert!(
        bad(2).reason.contains("not JSON") && bad(2).raw.contains("not json"),
        "{:?}",
        bad(2)
    );
    assert!(bad(3).reason.contains("not JSON"), "{:?}", bad(3));
    assert_eq!(got[1].envelope.as_ref().expect("valid").params["a"], 1);
    s.settle(
        &got[0].lease,
        &doc("m1", "dead", "h1", json!("params is not a JSON object")),
    )
    .await
    .expect("settle");
    assert_eq!(
        s.status("m1").await.expect("status").expect("known").status,
        "dead"
    );
}

#[tokio::test]
async fn unknown_types_are_dead_lettered() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 30_000);
    submit_all(&s, &[("z1", "Z"), ("a1", "A")]).await;
    let mut r = req(&[(&["A"], 10)]);
    assert_eq!(ids(&s.claim(&r).await.expect("claim")), ["a1"]);
    assert_eq!(
        s.status("z1").await.expect("status").expect("known").status,
        "queued",
        "swept without known_types"
    );
    submit_all(&s, &[("z2", "Z")]).await;
    r.known_types = vec!["A".into()];
    assert!(s.claim(&r).await.expect("claim").is_empty());
    for id in ["z1", "z2"] {
        let st = s.status(id).await.expect("status").expect("known");
        assert_eq!((st.status.as_str(), st.deliveries), ("dead", 0));
        let doc = st.result.expect("result");
        assert_eq!(
            doc.error,
            Some(json!({"message": "no worker handles type Z", "outcome": "unknown_type"}))
        );
        assert_eq!(
            (
                doc.status.as_str(),
                doc.attempts,
                doc.worker,
                doc.host.as_str()
            ),
            ("dead", 0, None, "h1")
        );
        assert_eq!(
            (
                doc.id.as_str(),
                doc.task_type.as_str(),
                doc.started_at.len()
            ),
            (id, "Z", 24)
        );
    }
    let err: String = raw_conn(&dir)
        .query_row("SELECT error FROM tasks WHERE id = 'z2'", [], |r| r.get(0))
        .expect("row");
    assert_eq!(err, "no worker handles type Z");
    assert_eq!(
        s.status("a1").await.expect("status").expect("known").status,
        "running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_hosts_never_share_a_task() {
    let dir = TempDir::new().expect("tempdir");
    let (first, second) = (open(&dir, "h1", 30_000), open(&dir, "h2", 30_000));
    for i in 0..200 {
        first
            .submit(&env(&format!("t{i}"), "T"))
            .await
            .expect("submit");
    }
    let drain = |s: SqliteSource, max: usize| {
        tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let got = s.claim(&req(&[(&["T"], max)])).await.expect("claim");
                if got.is_empty() {
                    return seen;
                }
                assert!(got.len() <= max);
                for d in got {
                    s.settle(&d.lease, &doc(&d.lease.task_id, "succeeded", "h", json!(1)))
                        .await
                        .expect("settle");
                    seen.push(d.lease.task_id);
                }
            }
        })
    };
    let (a, b) = (drain(first, 3), drain(second, 2));
    let (a, b) = (a.await.expect("h1"), b.await.expect("h2"));
    let (sa, sb): (HashSet<_>, HashSet<_>) = (a.iter().collect(), b.iter().collect());
    assert_eq!(
        (sa.len(), sb.len()),
        (a.len(), b.len()),
        "a host got a task twice"
    );
    assert!(
        sa.is_disjoint(&sb),
        "both hosts got {:?}",
        sa.intersection(&sb).collect::<Vec<_>>()
    );
    assert_eq!(a.len() + b.len(), 200);
    assert!(
        !a.is_empty() && !b.is_empty(),
        "one host did everything: {} / {}",
        a.len(),
        b.len()
    );
}
