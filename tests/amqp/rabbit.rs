//! The machine's RabbitMQ (127.0.0.1:5672, guest/guest), driven from the tests: unique queues (and vhosts
//! for the tests that cut connections), deleted afterwards. A broker that cannot be reached fails the test,
//! never skips it.

use crate::support::*;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A name no other test (or test run) uses.
pub fn unique(name: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("wh-test-{name}-{}-{t}-{n}", std::process::id())
}

/// `rabbitmqctl ARGS`; panics when it fails.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl must be installed (these tests run as root next to the broker)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

pub struct Rabbit {
    rt: tokio::runtime::Runtime,
    url: String,
    vhost: Option<String>,
    conn: Mutex<Option<(Connection, Channel)>>,
    queues: Mutex<Vec<String>>,
}

impl Rabbit {
    /// The default vhost `/`.
    pub fn new() -> Rabbit {
        Rabbit::make("amqp://guest:guest@127.0.0.1:5672/%2f".into(), None)
    }

    /// A vhost of its own (so that closing its connections touches no other test).
    pub fn with_vhost() -> Rabbit {
        let vhost = unique("vh");
        rabbitmqctl(&["add_vhost", &vhost]);
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
        let url = format!("amqp://guest:guest@127.0.0.1:5672/{vhost}");
        Rabbit::make(url, Some(vhost))
    }

    fn make(url: String, vhost: Option<String>) -> Rabbit {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let r = Rabbit {
            rt,
            url,
            vhost,
            conn: Mutex::new(None),
            queues: Mutex::new(Vec::new()),
        };
        r.channel();
        r
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn vhost(&self) -> &str {
        self.vhost.as_deref().unwrap_or("/")
    }

    /// The test's own channel, reconnected when a test closed the connections under it.
    fn channel(&self) -> Channel {
        let mut c = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((conn, ch)) = c.as_ref()
            && conn.status().connected()
            && ch.status().connected()
        {
            return ch.clone();
        }
        let (conn, ch) = self.rt.block_on(async {
            let conn = Connection::connect(&self.url, ConnectionProperties::default())
                .await
                .unwrap_or_else(|e| {
                    panic!("RabbitMQ is not reachable at 127.0.0.1:5672 (guest/guest): {e}; start it as ../shared/SERVICES.md says")
                });
            let ch = conn.create_channel().await.expect("channel");
            (conn, ch)
        });
        *c = Some((conn, ch.clone()));
        ch
    }

    /// A unique queue name, deleted (with its `.dead`) when the test ends.
    pub fn queue(&self, name: &str) -> String {
        let q = unique(name);
        let mut qs = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        qs.push(q.clone());
        qs.push(format!("{q}.dead"));
        q
    }

    /// A durable queue for replies (survives the connection cuts some tests make).
    pub fn reply_queue(&self) -> String {
        let q = self.queue("replies");
        let ch = self.channel();
        self.rt
            .block_on(ch.queue_declare(
                q.as_str().into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            ))
            .expect("declare reply queue");
        q
    }

    pub fn publish(&self, queue: &str, body: &[u8], props: BasicProperties) {
        let ch = self.channel();
        self.rt
            .block_on(async {
                ch.basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    body,
                    props.with_delivery_mode(2),
                )
                .await?
                .await
            })
            .expect("publish");
    }

    /// Publishes task envelopes `{"id", "type", "params"}`.
    pub fn publish_tasks(&self, queue: &str, task_type: &str, ids: &[String]) {
        for id in ids {
            let body = serde_json::json!({"id": id, "type": task_type, "params": {}});
            self.publish(
                queue,
                body.to_string().as_bytes(),
                BasicProperties::default(),
            );
        }
    }

    /// Takes one message (acked at once), if any.
    pub fn get(&self, queue: &str) -> Option<(Vec<u8>, BasicProperties)> {
        let ch = self.channel();
        let opts = BasicGetOptions { no_ack: true };
        self.rt
            .block_on(ch.basic_get(queue.into(), opts))
            .expect("basic.get")
            .map(|m| (m.delivery.data, m.delivery.properties))
    }

    /// Waits up to `limit` for a message.
    pub fn wait_get(&self, queue: &str, limit: Duration) -> Option<(Vec<u8>, BasicProperties)> {
        let end = Instant::now() + limit;
        loop {
            if let Some(m) = self.get(queue) {
                return Some(m);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Messages ready in `queue` (not counting unacknowledged ones).
    pub fn count(&self, queue: &str) -> u32 {
        let ch = self.channel();
        let opts = QueueDeclareOptions::durable().passive();
        self.rt
            .block_on(ch.queue_declare(queue.into(), opts, FieldTable::default()))
            .expect("passive declare")
            .message_count()
    }

    /// Ready plus unacknowledged messages, from `rabbitmqctl list_queues`.
    pub fn total(&self, queue: &str) -> u64 {
        let out = rabbitmqctl(&["list_queues", "-q", "-p", self.vhost(), "name", "messages"]);
        out.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                (f.next()? == queue).then(|| f.next()?.parse().ok())?
            })
            .next()
            .unwrap_or(0)
    }

    /// Closes every connection to this test's vhost (the host's too).
    pub fn close_connections(&self) {
        let vhost = self.vhost.as_deref().expect("only on a test vhost");
        rabbitmqctl(&["close_all_connections", "-p", vhost, "closed by a test"]);
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        if let Some(vhost) = &self.vhost {
            let _ = Command::new("rabbitmqctl")
                .args(["delete_vhost", vhost])
                .output();
            return;
        }
        let ch = self.channel();
        let queues = self.queues.lock().map(|q| q.clone()).unwrap_or_default();
        for q in queues {
            let _ = self
                .rt
                .block_on(ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()));
        }
    }
}

/// A message's header as text (strings) or JSON (numbers).
pub fn header(props: &BasicProperties, key: &str) -> Option<String> {
    use lapin::types::AMQPValue;
    let h = props.headers().as_ref()?;
    Some(match h.inner().get(key)? {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        other => format!("{other:?}"),
    })
}

pub fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("a JSON document")
}

/// The `task_manager:` body for `Project::config_with`.
pub fn amqp_tm(url: &str, queue: &str, extra: &str) -> String {
    format!("  type: amqp\n  url: {url}\n  queue: {queue}\n{extra}")
}

/// A shell worker for type `T` that logs `start ID ATTEMPT PID` and `done ID` around `body`
/// (shell code; `$doc` holds the task document) and answers `{"success": true, "result": {"got": doc}}`.
pub fn shell_worker(p: &Project, body: &str) -> String {
    p.write(
        "w.sh",
        &format!(
            "read -r doc\necho \"start $WORKERHOST_TASK_ID $WORKERHOST_ATTEMPT $$\" >> runs.log\n{body}\necho \"done $WORKERHOST_TASK_ID\" >> runs.log\nprintf '{{\"success\": true, \"result\": {{\"got\": %s}}}}\\n' \"$doc\"\n"
        ),
    );
    "  - name: sh\n    command: [\"/bin/sh\", \"./w.sh\"]\n    project_path: .\n    task_types: [T]\n".to_string()
}

/// `start`/`done` lines of runs.log: task id → how many times.
pub fn runs(p: &Project, what: &str) -> std::collections::HashMap<String, usize> {
    let mut m = std::collections::HashMap::new();
    for l in lines(&p.file("runs.log")) {
        let mut f = l.split_whitespace();
        if f.next() == Some(what)
            && let Some(id) = f.next()
        {
            *m.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    m
}

/// Worker pids of the `start` lines.
pub fn worker_pids(p: &Project) -> Vec<i32> {
    lines(&p.file("runs.log"))
        .iter()
        .filter(|l| l.starts_with("start "))
        .filter_map(|l| l.split_whitespace().nth(3)?.parse().ok())
        .collect()
}

/// A host whose stderr goes to `host.log` in the project (a pipe could fill up and block it).
pub fn spawn_logged(p: &Project, args: &[&str]) -> Child {
    let log = std::fs::File::create(p.file("host.log")).expect("host.log");
    p.cmd(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn host")
}

pub fn host_log(p: &Project) -> String {
    std::fs::read_to_string(p.file("host.log")).unwrap_or_default()
}
