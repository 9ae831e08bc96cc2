//! `Queue::wait_result`: what a producer without a host waits with.

use super::*;

#[tokio::test]
async fn waits_until_another_host_settles_then_times_out_on_an_unsettled_task() {
    let dir = TempDir::new().expect("tempdir");
    let producer = open(&dir, "producer", 30_000);
    let host = open(&dir, "h1", 30_000);
    producer.submit(&env("w1", "T")).await.expect("submit");
    producer.submit(&env("w2", "T")).await.expect("submit");
    let got = claim(&host, &["T"], 1).await;
    assert_eq!(ids(&got), ["w1"]);
    let lease = got[0].lease.clone();
    let settle = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        host.settle(&lease, &doc("w1", "succeeded", "h1", json!({"ok": 1})))
            .await
            .expect("settle");
    };
    let wait = producer.wait_result("w1", Duration::from_secs(10), Duration::from_millis(50));
    let (waited, ()) = tokio::join!(wait, settle);
    let doc = waited.expect("wait").expect("a result within the timeout");
    assert_eq!((doc.id.as_str(), doc.status.as_str()), ("w1", "succeeded"));
    assert_eq!(doc.result, Some(json!({"ok": 1})));
    let none = producer
        .wait_result("w2", Duration::from_millis(200), Duration::from_millis(50))
        .await
        .expect("wait");
    assert!(none.is_none(), "a queued task has no result");
}
