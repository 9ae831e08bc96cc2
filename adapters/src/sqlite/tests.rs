use super::*;
use crate::{ClaimSlot, Queue, RevokeReason, TaskStatus, rfc3339_ms};
use serde_json::{Value, json};
use std::collections::HashSet;
use tempfile::TempDir;

fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("db").join("tasks.db")
}

fn open(dir: &TempDir, host: &str, lease_ms: u64) -> SqliteSource {
    let lease = Duration::from_millis(lease_ms);
    let poll_interval = Duration::from_millis(50);
    let (path, host_id) = (db_path(dir), host.into());
    SqliteSource::open(SqliteOptions {
        path,
        host_id,
        lease,
        poll_interval,
    })
    .expect("open")
}

fn raw_conn(dir: &TempDir) -> Connection {
    Connection::open(db_path(dir)).expect("raw open")
}

fn raw_error(dir: &TempDir, id: &str) -> String {
    let sql = "SELECT error FROM tasks WHERE id = ?1";
    raw_conn(dir)
        .query_row(sql, [id], |r| r.get(0))
        .expect("error column")
}

/// Writes a file of an older schema (`sql` sets its `user_version`), opens it and checks that it was
/// migrated to [`SCHEMA_VERSION`].
fn open_old_version(dir: &TempDir, sql: &str) -> SqliteSource {
    let path = db_path(dir);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    Connection::open(&path)
        .expect("old file")
        .execute_batch(sql)
        .expect("old schema");
    let s = open(dir, "h1", 60_000);
    let v: i64 = raw_conn(dir)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(v, SCHEMA_VERSION);
    s
}

fn env(id: &str, ty: &str) -> Envelope {
    let params = json!({ "n": id }).as_object().cloned().unwrap_or_default();
    Envelope::new(id, ty, params)
}

fn req(slots: &[(&[&str], usize)]) -> ClaimRequest {
    let slot = |(types, max): &(&[&str], usize)| {
        let types = types.iter().map(|t| t.to_string()).collect();
        ClaimSlot { types, max: *max }
    };
    ClaimRequest {
        slots: slots.iter().map(slot).collect(),
        known_types: Vec::new(),
        limit: None,
    }
}

fn doc(id: &str, status: &str, host: &str, result: Value) -> ResultDocument {
    ResultDocument {
        id: id.into(),
        task_type: "T".into(),
        status: crate::ResultStatus::parse(status).expect("a result status"),
        result: (status == "succeeded").then(|| result.clone()),
        error: (status == "dead").then_some(result),
        attempts: 1,
        worker: Some("w".into()),
        host: host.into(),
        started_at: rfc3339_ms(0),
        finished_at: rfc3339_ms(1),
        duration_ms: 1,
        correlation_id: None,
        usage: None,
    }
}

fn ids(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(|d| d.lease.task_id.clone()).collect()
}

async fn claim(s: &SqliteSource, types: &[&str], max: usize) -> Vec<Delivery> {
    s.claim(&req(&[(types, max)])).await.expect("claim")
}

/// The leases of `revoked`, each of which must have been lost (the sqlite adapter knows no other reason).
fn lost(revoked: Vec<Revoked>) -> Vec<Lease> {
    revoked
        .into_iter()
        .map(|r| {
            assert_eq!(r.reason, RevokeReason::Lost, "{r:?}");
            r.lease
        })
        .collect()
}

async fn state(s: &SqliteSource, id: &str) -> TaskStatus {
    s.status(id).await.expect("status").expect("known task")
}

async fn submit_all(s: &SqliteSource, tasks: &[(&str, &str)]) {
    for (id, ty) in tasks {
        s.submit(&env(id, ty)).await.expect("submit");
    }
}

fn is_lost<T>(r: Result<T, AdapterError>) -> bool {
    matches!(r, Err(AdapterError::LeaseLost { .. }))
}

#[tokio::test]
async fn open_creates_schema_in_wal_mode_and_reopens() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 30_000);
    assert_eq!(
        (s.kind(), s.idle_wait()),
        ("sqlite", Duration::from_millis(50))
    );
    s.ping().await.expect("ping");
    drop(s);
    open(&dir, "h1", 30_000)
        .ping()
        .await
        .expect("ping after reopen");
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
    let sql = "SELECT status, enqueued_at FROM tasks WHERE id = 'h'";
    let (status, at): (String, i64) = c
        .query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("row");
    assert_eq!(status, "queued");
    assert!((now_ms() - at).abs() < 60_000, "enqueued_at {at}");
    c.pragma_update(None, "user_version", 99).expect("bump");
    let (path, host_id, lease) = (db_path(&dir), "h".into(), Duration::from_secs(1));
    let newer = SqliteSource::open(SqliteOptions {
        path,
        host_id,
        lease,
        poll_interval: lease,
    });
    assert!(
        matches!(newer, Err(AdapterError::Backend(m)) if m.contains("tasks.db") && m.contains("99"))
    );
}

#[tokio::test]
async fn claim_respects_slot_max_types_and_fifo() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 30_000);
    let tasks = [
        ("a1", "A"),
        ("b1", "B"),
        ("a2", "A"),
        ("c1", "C"),
        ("a3", "A"),
        ("b2", "B"),
    ];
    submit_all(&s, &tasks).await;
    let got = s
        .claim(&req(&[(&["A"], 2), (&["C", "B"], 2), (&["A"], 0)]))
        .await
        .expect("claim");
    assert_eq!(ids(&got), ["a1", "a2", "b1", "c1"]);
    for d in &got {
        assert_eq!((d.deliveries, d.lease.receipt.as_str()), (1, "1"));
        let e = d.envelope.as_ref().expect("valid envelope");
        assert_eq!(
            (&e.id, &e.params["n"]),
            (&d.lease.task_id, &json!(d.lease.task_id))
        );
    }
    let st = state(&s, "a1").await;
    assert_eq!(
        (st.status.as_str(), st.deliveries, st.result),
        ("running", 1, None)
    );
    assert!(claim(&s, &["D"], 5).await.is_empty());
    assert_eq!(ids(&claim(&s, &["A", "B", "C"], 10).await), ["a3", "b2"]);
    assert!(claim(&s, &["A", "B", "C"], 10).await.is_empty());
    assert!(s.status("nope").await.expect("status").is_none());
}

#[tokio::test]
async fn expired_lease_is_taken_over_and_old_holder_is_fenced() {
    let dir = TempDir::new().expect("tempdir");
    let (h1, h2) = (open(&dir, "h1", 200), open(&dir, "h2", 200));
    submit_all(&h1, &[("t1", "T"), ("t2", "T")]).await;
    let first = claim(&h1, &["T"], 2).await;
    assert_eq!(ids(&first), ["t1", "t2"]);
    assert!(
        claim(&h2, &["T"], 5).await.is_empty(),
        "live lease was stolen"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let taken = claim(&h2, &["T"], 5).await;
    assert_eq!(ids(&taken), ["t1", "t2"]);
    assert!(
        taken
            .iter()
            .all(|d| d.deliveries == 2 && d.lease.receipt == "2")
    );

    // t1: the old holder settles first, then the new one; t2: the new holder settles first.
    let old = |id: &str| doc(id, "succeeded", "h1", json!("old"));
    assert!(is_lost(h1.settle(&first[0].lease, &old("t1")).await));
    assert_eq!(state(&h1, "t1").await.status, "running");
    let old_lease = first[0].lease.clone();
    assert_eq!(
        lost(
            h1.renew(std::slice::from_ref(&old_lease))
                .await
                .expect("renew")
        ),
        [old_lease]
    );
    let new = doc("t1", "succeeded", "h2", json!("new"));
    h2.settle(&taken[0].lease, &new).await.expect("settle");
    let dead = doc("t2", "dead", "h2", json!({"message": "boom"}));
    h2.settle(&taken[1].lease, &dead).await.expect("settle");
    assert!(is_lost(h1.settle(&first[1].lease, &old("t2")).await));
    assert!(
        is_lost(h2.settle(&taken[1].lease, &new).await),
        "settled twice"
    );

    let t1 = state(&h1, "t1").await;
    assert_eq!((t1.status.as_str(), t1.result), ("succeeded", Some(new)));
    let t2 = state(&h1, "t2").await;
    assert_eq!(
        (t2.status.as_str(), t2.deliveries, t2.result),
        ("dead", 2, Some(dead))
    );
    assert_eq!(raw_error(&dir, "t2"), "boom");
    assert!(
        claim(&h2, &["T"], 5).await.is_empty(),
        "settled task delivered again"
    );
}

#[tokio::test]
async fn renew_keeps_a_task_past_its_first_lease() {
    let dir = TempDir::new().expect("tempdir");
    let (h1, h2) = (open(&dir, "h1", 300), open(&dir, "h2", 300));
    submit_all(&h1, &[("t", "T")]).await;
    let lease = claim(&h1, &["T"], 1).await[0].lease.clone();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let lost = h1.renew(std::slice::from_ref(&lease)).await.expect("renew");
        assert!(lost.is_empty(), "renewal refused");
        assert!(
            claim(&h2, &["T"], 1).await.is_empty(),
            "renewed task taken over"
        );
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(ids(&claim(&h2, &["T"], 1).await), ["t"]);
    let bogus = Lease {
        task_id: "t".into(),
        receipt: "x".into(),
    };
    let both = [lease, bogus];
    assert_eq!(lost(h1.renew(&both).await.expect("renew")), both);
}

#[tokio::test]
async fn release_requeues_without_counting_a_delivery() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 30_000);
    submit_all(&s, &[("t", "T")]).await;
    let first = claim(&s, &["T"], 1).await.remove(0).lease;
    s.release(&first).await.expect("release");
    let st = state(&s, "t").await;
    assert_eq!((st.status.as_str(), st.deliveries), ("queued", 0));
    let again = claim(&s, &["T"], 1).await.remove(0);
    assert_eq!((again.deliveries, again.lease.receipt.as_str()), (1, "2"));
    let ok = doc("t", "succeeded", "h1", json!(1));
    assert!(is_lost(s.release(&first).await));
    assert!(is_lost(s.settle(&first, &ok).await));
    // A result whose status is not an outcome cannot even be made: the type refuses it.
    let mut running = serde_json::to_value(&ok).expect("json");
    running["status"] = json!("running");
    let refused = serde_json::from_value::<ResultDocument>(running);
    assert!(refused.is_err(), "{refused:?}");
    s.settle(&again.lease, &ok).await.expect("settle");
    assert!(is_lost(s.release(&again.lease).await));
}

#[tokio::test]
async fn duplicate_submit_is_refused() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 30_000);
    s.submit(&env("x", "A")).await.expect("submit");
    let dup = s.submit(&env("x", "B")).await;
    assert!(matches!(dup, Err(AdapterError::Duplicate { id }) if id == "x"));
    assert_eq!(state(&s, "x").await.task_type, "A");
    assert!(matches!(
        s.submit(&env("", "B")).await,
        Err(AdapterError::Invalid(_))
    ));
}

#[tokio::test]
async fn malformed_rows_come_back_as_malformed() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 30_000);
    raw_conn(&dir)
        .execute_batch(
            "INSERT INTO tasks (id, type, params) VALUES ('m1', 'T', '[1, 2]');
             INSERT INTO tasks (id, type, params) VALUES ('ok', 'T', '{\"a\": 1}');
             INSERT INTO tasks (id, type, params) VALUES ('m2', 'T', 'not json');
             INSERT INTO tasks (id, type, params) VALUES ('m3', 'T', x'00ff');
             INSERT INTO tasks (id, type, params) VALUES ('m4', 'T', CAST(x'7b2273223a22fffe227d' AS TEXT));
             INSERT INTO tasks (id, type, params) VALUES ('m5' || char(0) || 'x', 'T', '{}');",
        )
        .expect("insert");
    let got = claim(&s, &["T"], 10).await;
    assert_eq!(ids(&got)[..4], ["m1", "ok", "m2", "m3"]);
    let bad = |i: usize| got[i].envelope.clone().expect_err("malformed");
    let (m1, m2, m3) = (bad(0), bad(2), bad(3));
    assert!(
        m1.reason.contains("not a JSON object") && m1.raw.contains("\"m1\""),
        "{m1:?}"
    );
    assert!(
        m2.reason.contains("not JSON") && m2.raw.contains("not json"),
        "{m2:?}"
    );
    // Issue 16: bytes that are not UTF-8 are never "repaired" (`{"s":"\xff\xfe"}` reached the worker
    // as `{"s":"��"}`); an id with a NUL is malformed, not the worker's failure.
    assert!(m3.reason.contains("column `params` is not UTF-8"), "{m3:?}");
    let m4 = bad(4);
    assert_eq!(
        m4.reason,
        "task m4: column `params` is not UTF-8 (invalid byte at offset 6)"
    );
    let m5 = bad(5);
    assert!(
        m5.reason.contains("`id` holds a control character"),
        "{m5:?}"
    );
    assert_eq!(
        m1.task_type.as_deref(),
        Some("T"),
        "the readable type is kept"
    );
    assert_eq!(got[1].envelope.as_ref().expect("valid").params["a"], 1);
    let dead = doc("m1", "dead", "h1", json!("params is not a JSON object"));
    s.settle(&got[0].lease, &dead).await.expect("settle");
    assert_eq!(state(&s, "m1").await.status, "dead");
    assert_eq!(raw_error(&dir, "m1"), "params is not a JSON object");
}

#[tokio::test]
async fn queued_tasks_of_unknown_types_are_handed_to_the_host() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 30_000);
    submit_all(&s, &[("zr", "Z")]).await;
    assert_eq!(ids(&claim(&s, &["Z"], 1).await), ["zr"]);
    submit_all(&s, &[("z1", "Z"), ("a1", "A")]).await;
    assert_eq!(ids(&claim(&s, &["A"], 10).await), ["a1"]);
    assert_eq!(
        state(&s, "z1").await.status,
        "queued",
        "swept without known_types"
    );
    // Types on both sides of the known one in index order, an empty type, and one with many tasks.
    submit_all(&s, &[("z2", "Z"), ("a2", "A"), ("b1", "B"), ("x1", "0")]).await;
    raw_conn(&dir)
        .execute("INSERT INTO tasks (id, type) VALUES ('e1', '')", [])
        .expect("insert");
    let mut r = req(&[(&["A"], 10)]);
    r.known_types = vec!["A".into()];
    let got = s.claim(&r).await.expect("claim");
    let mut swept: Vec<_> = ids(&got).into_iter().filter(|id| id != "a2").collect();
    swept.sort();
    assert_eq!(swept, ["b1", "e1", "x1", "z1", "z2"]);
    assert!(
        ids(&got).contains(&"a2".to_string()),
        "the known type is claimed as usual"
    );
    // Leased to this host like any claim (the host dead-letters them, fenced by the token).
    for d in got.iter().filter(|d| d.lease.task_id == "z1") {
        assert_eq!(state(&s, "z1").await.status, "running");
        assert_eq!(d.envelope.as_ref().expect("envelope").task_type, "Z");
    }
    // No sweep again before SWEEP_EVERY_MS: the rest stays queued meanwhile.
    submit_all(&s, &[("z3", "Z")]).await;
    assert!(s.claim(&r).await.expect("claim").is_empty());
    assert_eq!(state(&s, "z3").await.status, "queued");
    assert_eq!(state(&s, "zr").await.status, "running");
}

#[tokio::test]
async fn a_sweep_takes_at_most_its_limit() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 30_000);
    let n = usize::try_from(SWEEP_LIMIT).expect("limit") + 50;
    let conn = raw_conn(&dir);
    for i in 0..n {
        conn.execute(
            "INSERT INTO tasks (id, type) VALUES (?1, 'Z')",
            [format!("z{i}")],
        )
        .expect("insert");
    }
    let mut r = req(&[(&["A"], 10)]);
    r.known_types = vec!["A".into()];
    let got = s.claim(&r).await.expect("claim");
    assert_eq!(got.len(), n - 50);
    assert_eq!(ids(&got)[0], "z0", "oldest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_hosts_never_share_a_task() {
    let dir = TempDir::new().expect("tempdir");
    let (first, second) = (open(&dir, "h1", 30_000), open(&dir, "h2", 30_000));
    // Both connections are open before any claim, so neither host waits out the other's start.
    first.ping().await.expect("h1 open");
    second.ping().await.expect("h2 open");
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
                let got = claim(&s, &["T"], max).await;
                if got.is_empty() {
                    return seen;
                }
                assert!(got.len() <= max);
                for d in got {
                    let ok = doc(&d.lease.task_id, "succeeded", "h", json!(1));
                    s.settle(&d.lease, &ok).await.expect("settle");
                    seen.push(d.lease.task_id);
                }
                // A task takes time: without it, on a loaded machine one host can drain all 200
                // before the other's first claim, and the test would prove nothing about sharing.
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
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
    let both: Vec<_> = sa.intersection(&sb).collect();
    assert!(both.is_empty(), "both hosts got {both:?}");
    assert_eq!(a.len() + b.len(), 200);
    assert!(
        !a.is_empty() && !b.is_empty(),
        "one host did all: {} / {}",
        a.len(),
        b.len()
    );
}

#[tokio::test]
async fn an_idle_wait_ends_when_another_process_enqueues() {
    let dir = TempDir::new().expect("tempdir");
    let (path, host_id) = (db_path(&dir), "h1".into());
    let poll_interval = Duration::from_secs(30);
    let s = SqliteSource::open(SqliteOptions {
        path,
        host_id,
        lease: Duration::from_secs(30),
        poll_interval,
    })
    .expect("open");
    assert!(claim(&s, &["T"], 1).await.is_empty());
    // Nothing changes: the wait lasts (here cut short by the test).
    let quiet = tokio::time::timeout(Duration::from_millis(300), s.wait_for_tasks()).await;
    assert!(quiet.is_err(), "woke without a change");
    // Another connection (as `workerhost submit` would) commits a task: the wait ends long before the
    // poll interval.
    let started = std::time::Instant::now();
    let waiting = s.wait_for_tasks();
    let insert = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        raw_conn(&dir)
            .execute("INSERT INTO tasks (id, type) VALUES ('n', 'T')", [])
            .expect("insert");
    };
    let (woke, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(10), waiting),
        insert
    );
    assert!(woke.is_ok(), "the wait did not end after the insert");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(ids(&claim(&s, &["T"], 1).await), vec!["n".to_string()]);
}

#[tokio::test]
async fn a_commit_between_the_claim_and_the_wait_is_not_missed() {
    let dir = TempDir::new().expect("tempdir");
    let s = SqliteSource::open(SqliteOptions {
        path: db_path(&dir),
        host_id: "h1".into(),
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_secs(30),
    })
    .expect("open");
    assert!(claim(&s, &["T"], 1).await.is_empty());
    // The task lands after the empty claim but before the host starts waiting (the watch is not on yet):
    // the wait must end at once, not after the 30 s poll interval.
    raw_conn(&dir)
        .execute("INSERT INTO tasks (id, type) VALUES ('late', 'T')", [])
        .expect("insert");
    let woke = tokio::time::timeout(Duration::from_secs(10), s.wait_for_tasks()).await;
    assert!(woke.is_ok(), "a task committed before the wait was missed");
    assert_eq!(ids(&claim(&s, &["T"], 1).await), vec!["late".to_string()]);
}

/// The section 8 operations.
mod ops;
mod time;
mod wait;

#[tokio::test]
async fn a_traceparent_is_kept_with_the_task() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 30_000);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut e = env("tp1", "T");
    e.traceparent = Some(tp.into());
    s.submit(&e).await.expect("submit");
    s.submit(&env("plain", "T")).await.expect("submit");
    let got = claim(&s, &["T"], 2).await;
    let tps: Vec<Option<String>> = got
        .iter()
        .map(|d| d.envelope.as_ref().expect("envelope").traceparent.clone())
        .collect();
    assert_eq!(tps, [Some(tp.to_string()), None]);
}
