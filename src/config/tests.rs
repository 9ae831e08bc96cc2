use super::*;
use std::path::Path;

mod paths_env;
mod schedules;
mod schema;
mod task_manager;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

const CFG: &str = "/srv/app/workerhost_config.yaml";

fn ok_with(text: &str, env: &[(&str, &str)]) -> Config {
    match load_str(text, Path::new(CFG), &env_of(env)) {
        Ok(c) => c,
        Err(e) => panic!("expected the config to load:\n{e}"),
    }
}

fn errors(text: &str, env: &[(&str, &str)]) -> ConfigError {
    match load_str(text, Path::new(CFG), &env_of(env)) {
        Ok(_) => panic!("expected the config to be rejected"),
        Err(e) => e,
    }
}

/// `(line, field)` of every problem, with the messages for failure output.
fn spots(e: &ConfigError) -> Vec<(Option<usize>, &str)> {
    e.problems
        .iter()
        .map(|p| (p.line, p.field.as_str()))
        .collect()
}

const SEED: &str = r#"# workerhost_config.yaml
version: "1.0"

task_manager:
  type: "http"
  url: "https://api.prismq.nomoos.cz/api"
  api_key: "${TASKMANAGER_API_KEY}"

workers:
  - name: "PrismQ.IdeaInspiration.Source.Video.YouTube.VideoScraper"
    project_path: "./Source/Video/YouTube/Video"
    venv_python: "./Source/Video/YouTube/Video/venv/bin/python"
    module: "src.workers.video_scraper"
    function: "main"
    task_types:
      - "PrismQ.YouTube.VideoScrape"
    timeout: 300
    max_retries: 3
"#;

#[test]
fn seed_config_loads_unchanged() {
    let c = ok_with(SEED, &[("TASKMANAGER_API_KEY", "sekrit")]);
    assert_eq!(c.version, "1.0");
    assert_eq!(c.path, Path::new(CFG));
    let TaskManagerSettings::Http(settings) = &c.task_manager else {
        panic!("expected the http task manager, got {:?}", c.task_manager);
    };
    let (kind, url) = (c.task_manager.kind(), &settings.url);
    assert_eq!(kind, "http");
    assert_eq!(url.as_deref(), Some("https://api.prismq.nomoos.cz/api"));
    assert_eq!(settings.api_key, "sekrit");
    assert_eq!(c.workers.len(), 1);
    let w = &c.workers[0];
    assert_eq!(
        w.name,
        "PrismQ.IdeaInspiration.Source.Video.YouTube.VideoScraper"
    );
    assert_eq!(
        w.kind,
        WorkerKind::Python {
            interpreter: "/srv/app/Source/Video/YouTube/Video/venv/bin/python".into(),
            module: "src.workers.video_scraper".into(),
            function: Some("main".into()),
        }
    );
    assert_eq!(
        w.project_path.as_deref(),
        Some(Path::new("/srv/app/Source/Video/YouTube/Video"))
    );
    assert_eq!(w.task_types, ["PrismQ.YouTube.VideoScrape"]);
    assert_eq!(w.timeout, Duration::from_secs(300));
    assert_eq!((w.max_retries, w.max_deliveries), (3, 6));
    assert_eq!(w.retry, RetryPolicy::default());
    assert_eq!(w.max_output_bytes, DEFAULT_MAX_OUTPUT_BYTES);
    assert_eq!((w.mode, w.pool_size, w.concurrency), (Mode::Spawn, 1, None));
    assert_eq!(c.host.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.host.kill_grace, Duration::from_secs(5));
    assert!(c.host.id.is_none() && c.host.concurrency.is_none() && c.host.listen.is_none());
}

#[test]
fn seed_config_without_the_key_names_the_variable() {
    let e = errors(SEED, &[]);
    assert_eq!(spots(&e), [(Some(7), "task_manager.api_key")]);
    assert_eq!(
        e.problems[0].message,
        "environment variable TASKMANAGER_API_KEY is not set (no default given)"
    );
}

const EXAMPLE: &str = r#"version: "1.0"
host:
  id: ${HOSTNAME:-}              # optional; empty or absent: hostname-pid
  concurrency: 8                 # tasks in flight across all workers
  shutdown_grace_seconds: 30
  http: { listen: "127.0.0.1:8080" }   # "off" disables the server
  logging: { level: info, format: text }
task_manager:
  type: sqlite                   # sqlite (default) | redis | amqp | http | postgres
  path: ./workerhost.db          # sqlite
  # url: redis://127.0.0.1:6379/0        stream: workerhost:tasks   group: workerhost
  # url: amqp://guest:guest@127.0.0.1:5672/%2f   queue: workerhost.tasks
  # url: https://tasks.example/api       api_key: "${TASKMANAGER_API_KEY}"
defaults:                        # every worker inherits these unless it sets its own
  timeout: 300                   # seconds; host-enforced
  max_retries: 3
  retry: { base_delay_seconds: 5.0, backoff_multiplier: 2.0, max_delay_seconds: 300, jitter: true }
workers:
  - name: "PrismQ.IdeaInspiration.Source.Video.YouTube.VideoScraper"
    project_path: "./Source/Video/YouTube/Video"     # working directory
    venv_python: "./Source/Video/YouTube/Video/venv/bin/python"
    module: "src.workers.video_scraper"
    function: "main"             # optional: without it the module is run as `python -m module`
    task_types: ["PrismQ.YouTube.VideoScrape"]
    timeout: 300
    max_retries: 3
    concurrency: 2               # optional per-worker cap
    env: { API_BASE: "${API_BASE}" }
  - name: "Thumbnailer"
    command: ["./bin/thumbnailer", "--fast"]          # any binary, argv list, never a shell
    task_types: ["Image.Thumbnail"]
"#;

#[test]
fn section_2_example_loads() {
    let c = ok_with(EXAMPLE, &[("API_BASE", "https://api.example")]);
    assert_eq!(c.host.id, None, "empty ${{HOSTNAME:-}} means no id");
    assert_eq!(c.host.concurrency, Some(8));
    assert_eq!(c.host.listen.as_deref(), Some("127.0.0.1:8080"));
    assert_eq!(c.host.log_level.as_deref(), Some("info"));
    assert_eq!(c.host.log_format.as_deref(), Some("text"));
    let TaskManagerSettings::Sqlite(tm) = &c.task_manager else {
        panic!("expected sqlite");
    };
    let (path, lease, poll_interval) = (&tm.path, &tm.lease(), &tm.poll_interval());
    assert_eq!(path, Path::new("/srv/app/workerhost.db"));
    assert_eq!(
        (*lease, *poll_interval),
        (Duration::from_secs(30), Duration::from_millis(100))
    );
    let [scraper, thumb] = &c.workers[..] else {
        panic!("two workers")
    };
    assert_eq!(scraper.concurrency, Some(2));
    assert_eq!(
        scraper.env.get("API_BASE").map(String::as_str),
        Some("https://api.example")
    );
    assert_eq!(
        thumb.kind,
        WorkerKind::Command {
            argv: vec!["/srv/app/bin/thumbnailer".into(), "--fast".into()]
        }
    );
    assert_eq!(thumb.timeout, Duration::from_secs(300));
    assert_eq!((thumb.max_retries, thumb.max_deliveries), (3, 6));

    let c = ok_with(EXAMPLE, &[("API_BASE", "x"), ("HOSTNAME", "box1")]);
    assert_eq!(c.host.id.as_deref(), Some("box1"));
}

#[test]
fn every_mistake_is_reported_with_line_and_field() {
    let text = r#"version: "1.0"
host:
  concurency: 4
workers:
  - name: a
    command: ["./a"]
    task_types: [A]
    timeout: "abc"
  - name: b
    venv_python: /usr/bin/python3
    module: "src.workers.9bad"
    task_types: [B]
"#;
    let e = errors(text, &[]);
    assert_eq!(
        spots(&e),
        [
            (Some(3), "host.concurency"),
            (Some(8), "workers[0].timeout"),
            (Some(11), "workers[1].module")
        ],
        "{e}"
    );
    assert!(
        e.problems[0]
            .message
            .contains("did you mean `concurrency`?"),
        "{e}"
    );
    assert!(
        e.problems[1]
            .message
            .contains("expected a number, found a string"),
        "{e}"
    );
    assert!(
        e.problems[2].message.contains("dotted Python module name"),
        "{e}"
    );
}

#[test]
fn display_names_file_line_and_field() {
    let text = "workers:\n  - name: a\n    command: [./a]\n    task_types: [A]\n    timeout: 0\n";
    let rendered = errors(text, &[]).to_string();
    assert!(
        rendered.starts_with(&format!("invalid config {CFG} (1 problem):")),
        "{rendered}"
    );
    assert!(
        rendered.contains(&format!(
            "{CFG}:5: workers[0].timeout: must be greater than 0"
        )),
        "{rendered}"
    );
}

#[test]
fn a_task_type_claimed_twice_names_both_workers() {
    let text = "workers:\n  - name: one\n    command: [a]\n    task_types: [T, U]\n  - name: two\n    command: [b]\n    task_types: [V, T]\n";
    let e = errors(text, &[]);
    assert_eq!(spots(&e), [(Some(7), "workers[1].task_types[1]")]);
    let msg = &e.problems[0].message;
    assert!(
        msg.contains("`one`") && msg.contains("`two`") && msg.contains("`T`"),
        "{msg}"
    );
}

#[test]
fn duplicate_names_and_worker_kinds() {
    let text = r#"workers:
  - name: w
    command: [a]
    task_types: [A]
  - name: w
    task_types: [B]
  - name: both
    command: [c]
    url: https://x.example/run
    task_types: [C]
  - name: py
    venv_python: /usr/bin/python3
    module: m
    function: "not-ok"
    task_types: []
"#;
    let e = errors(text, &[]);
    assert_eq!(
        spots(&e),
        [
            (Some(5), "workers[1].name"),
            (Some(5), "workers[1]"),
            (Some(7), "workers[2]"),
            (Some(14), "workers[3].function"),
            (Some(15), "workers[3].task_types"),
        ],
        "{e}"
    );
}

#[test]
fn defaults_are_inherited_and_overridden() {
    let text = r#"task_manager: { type: redis, url: "redis://127.0.0.1:6379/0", max_deliveries: 9 }
defaults:
  timeout: 12.5
  max_retries: 1
  retry: { base_delay_seconds: 1, jitter: false }
  max_output_bytes: 1000
  env_passthrough: [HOME_API]
  concurrency: 3
  env: { SHARED: 1, OVER: base }
workers:
  - name: inherits
    command: [a]
    task_types: [A]
  - name: overrides
    command: [b]
    task_types: [B]
    timeout: 7
    max_retries: 5
    max_deliveries: 2
    retry: { max_delay_seconds: 9 }
    max_output_bytes: 10
    env_passthrough: []
    concurrency: 1
    env: { OVER: mine }
    mode: pool
    pool_size: 4
    max_tasks_per_process: 100
    description: the second
    metadata: { owner: team, tags: [x, 1] }
"#;
    let c = ok_with(text, &[]);
    let [a, b] = &c.workers[..] else {
        panic!("two workers")
    };
    assert_eq!(a.timeout, Duration::from_millis(12500));
    assert_eq!((a.max_retries, a.max_deliveries), (1, 9));
    let retry = RetryPolicy {
        base_delay: Duration::from_secs(1),
        jitter: false,
        ..RetryPolicy::default()
    };
    assert_eq!(a.retry, retry);
    assert_eq!((a.max_output_bytes, a.concurrency), (1000, Some(3)));
    assert_eq!(a.env_passthrough, ["HOME_API"]);
    assert_eq!(a.env.get("SHARED").map(String::as_str), Some("1"));
    assert_eq!(b.timeout, Duration::from_secs(7));
    assert_eq!((b.max_retries, b.max_deliveries), (5, 2));
    assert_eq!(
        b.retry,
        RetryPolicy {
            max_delay: Duration::from_secs(9),
            ..retry
        }
    );
    assert_eq!((b.max_output_bytes, b.concurrency), (10, Some(1)));
    assert!(b.env_passthrough.is_empty());
    assert_eq!(b.env.get("OVER").map(String::as_str), Some("mine"));
    assert_eq!(b.env.get("SHARED").map(String::as_str), Some("1"));
    assert_eq!(
        (b.mode, b.pool_size, b.max_tasks_per_process),
        (Mode::Pool, 4, Some(100))
    );
    assert_eq!(b.description.as_deref(), Some("the second"));
    assert_eq!(
        b.metadata,
        Some(serde_json::json!({"owner": "team", "tags": ["x", 1]}))
    );
    assert_eq!(c.task_manager.kind(), "redis");
}

#[test]
fn remote_workers_observers_and_versions() {
    let text = r#"version: 1.0
host: { id: box, http: { listen: "off" }, kill_grace_seconds: 2 }
workers:
  - name: r
    url: https://workers.example/run
    task_types: [R]
observers:
  - type: webhook
    url: https://hooks.example/workerhost
    events: [task_failed, task_dead_lettered]
  - type: command
    command: ["./notify.sh"]
"#;
    let c = ok_with(text, &[]);
    assert_eq!(
        c.workers[0].kind,
        WorkerKind::Remote {
            url: "https://workers.example/run".into()
        }
    );
    assert_eq!(c.host.listen.as_deref(), Some("off"));
    assert_eq!(c.host.kill_grace, Duration::from_secs(2));
    assert!(
        matches!(&c.observers[0], ObserverConfig::Webhook { events: Some(e), .. } if e.len() == 2)
    );
    assert!(
        matches!(&c.observers[1], ObserverConfig::Command { argv, events: None, .. } if argv == &["/srv/app/notify.sh"])
    );
    let e = errors(
        "version: \"2\"\ntask_manager: { type: mongo }\nmode: x\n",
        &[],
    );
    assert_eq!(
        spots(&e),
        [
            (Some(1), "version"),
            (Some(2), "task_manager.type"),
            (Some(3), "mode")
        ]
    );
}

#[test]
fn syntax_errors_and_missing_files() {
    let e = errors("workers:\n  - name: a\n   bad: [\n", &[]);
    assert_eq!(e.problems.len(), 1);
    assert!(e.problems[0].line.is_some(), "{e}");
    let missing = Path::new("/nonexistent/workerhost_config.yaml");
    let e = match load(missing) {
        Ok(_) => panic!("a missing file must fail"),
        Err(e) => e,
    };
    assert!(
        e.to_string()
            .contains("/nonexistent/workerhost_config.yaml"),
        "{e}"
    );
}
