//! `workerhost schema`: the JSON Schema has exactly the loader's keys, every example config of the
//! repository validates against it, and it refuses what the loader refuses (and takes what it takes).

use super::super::schema::{self, keys};
use super::env_of;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use workerhost_adapters::TaskManagerSettings;
use workerhost_adapters::settings::KINDS;

fn validator() -> jsonschema::Validator {
    let schema = schema::schema();
    if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
        panic!("the schema is not a valid draft 2020-12 schema: {e}");
    }
    match jsonschema::draft202012::new(&schema) {
        Ok(v) => v,
        Err(e) => panic!("the schema does not compile: {e}"),
    }
}

/// A YAML document as the JSON an editor validates (merge keys applied, as the loader does).
fn to_json(text: &str, what: &str) -> Value {
    let mut v: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => panic!("{what}: YAML: {e}"),
    };
    if let Err(e) = v.apply_merge() {
        panic!("{what}: YAML merge: {e}");
    }
    match serde_json::to_value(&v) {
        Ok(j) => j,
        Err(e) => panic!("{what}: not JSON: {e}"),
    }
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn props(schema: &Value, pointer: &str) -> BTreeSet<String> {
    match schema.pointer(pointer).and_then(Value::as_object) {
        Some(p) => p.keys().cloned().collect(),
        None => panic!("no properties at {pointer}"),
    }
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

#[test]
fn the_schema_has_exactly_the_loaders_keys() {
    let s = schema::schema();
    assert_eq!(
        s["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "draft 2020-12"
    );
    assert_eq!(props(&s, "/properties"), set(keys::<schema::File>()));
    let sections: [(&str, &[&str]); 9] = [
        ("Host", keys::<schema::Host>()),
        ("Http", keys::<schema::Http>()),
        ("Logging", keys::<schema::Logging>()),
        ("Defaults", keys::<schema::Defaults>()),
        ("Retry", keys::<schema::Retry>()),
        ("Limits", keys::<schema::Limits>()),
        ("Worker", keys::<schema::Worker>()),
        ("Observer", keys::<schema::Observer>()),
        ("Schedule", keys::<schema::Schedule>()),
    ];
    for (def, table) in sections {
        let at = format!("/$defs/{def}/properties");
        assert_eq!(props(&s, &at), set(table), "{def}");
        assert_eq!(
            s.pointer(&format!("/$defs/{def}/additionalProperties")),
            Some(&Value::Bool(false)),
            "{def} refuses unknown keys"
        );
    }
    // Defaults are a subset of a worker's own keys: what a worker inherits it can also set.
    let worker = set(keys::<schema::Worker>());
    assert!(set(keys::<schema::Defaults>()).is_subset(&worker));
    // task_manager: `type` and every adapter's keys; each `type`'s own part types exactly its keys.
    let tm = &s["properties"]["task_manager"];
    let mut all = set(&["type"]);
    for kind in KINDS {
        let Some(k) = TaskManagerSettings::keys(kind) else {
            panic!("no keys for {kind}")
        };
        all.extend(set(k));
    }
    assert_eq!(props(tm, "/properties"), all);
    let cases = tm["allOf"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    assert_eq!(cases.len(), KINDS.len());
    for (kind, case) in KINDS.iter().zip(cases) {
        let Some(k) = TaskManagerSettings::keys(kind) else {
            panic!("no keys for {kind}")
        };
        assert_eq!(props(case, "/then/properties"), set(k), "{kind}");
    }
    // The events and modes the loader accepts are the schema's.
    let events: BTreeSet<String> = s
        .pointer("/$defs/EventKind/anyOf/0/enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(String::from))
        .collect();
    let kinds: Vec<&str> = crate::observers::EventKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        events,
        set(&kinds),
        "every event the host emits, task_cancelled too"
    );
}

/// The config files of the repository: every YAML file whose top level is a config (a mapping of the
/// config's own top-level keys, with `workers` or `task_manager`), and every ```yaml block of the docs
/// that is such a mapping (a part of a config is a config: every top-level key is optional).
fn repository_configs() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let top = set(keys::<schema::File>());
    let is_config = |v: &Value, needs_body: bool| {
        v.as_object().is_some_and(|o| {
            !o.is_empty()
                && o.keys().all(|k| top.contains(k) || k.starts_with("x-"))
                && (!needs_body || o.contains_key("workers") || o.contains_key("task_manager"))
        })
    };
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                if !name.starts_with('.') && !matches!(name.as_str(), "target" | "venv" | ".venv") {
                    stack.push(p);
                }
            } else if name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".md") {
                files.push(p);
            }
        }
    }
    files.sort();
    let rel = |p: &PathBuf| {
        p.strip_prefix(root)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let mut out = Vec::new();
    for p in &files {
        let Ok(text) = std::fs::read_to_string(p) else {
            continue;
        };
        if p.extension().is_some_and(|e| e == "md") {
            for (i, block) in yaml_blocks(&text).into_iter().enumerate() {
                if serde_yaml::from_str::<serde_json::Value>(&block)
                    .is_ok_and(|v| is_config(&v, false))
                {
                    out.push((format!("{} (yaml block {})", rel(p), i + 1), block));
                }
            }
        } else {
            // A multi-document file (kubernetes.yaml) is no config.
            if serde_yaml::from_str::<serde_json::Value>(&text).is_ok_and(|v| is_config(&v, true)) {
                out.push((rel(p), text));
            }
        }
    }
    out
}

fn yaml_blocks(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in md.lines() {
        match &mut cur {
            None if line.trim_start() == "```yaml" => cur = Some(String::new()),
            Some(b) if line.trim_start() == "```" => {
                out.push(std::mem::take(b));
                cur = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn every_example_config_validates() {
    let v = validator();
    let configs = repository_configs();
    let names: Vec<&str> = configs.iter().map(|(n, _)| n.as_str()).collect();
    for must in [
        "workerhost_config.yaml",
        "examples/deploy/workerhost_config.yaml",
        "docs/configuration.md (yaml block 1)",
    ] {
        assert!(names.contains(&must), "{must} not found among {names:?}");
    }
    let mut bad = Vec::new();
    for (name, text) in &configs {
        let errs = errors(&v, &to_json(text, name));
        if !errs.is_empty() {
            bad.push(format!("{name}:\n  {}", errs.join("\n  ")));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // The files an editor opens name the schema on their first line: the committed schema file.
    for (f, path) in [
        ("workerhost_config.yaml", "./workerhost.schema.json"),
        (
            "examples/deploy/workerhost_config.yaml",
            "../../workerhost.schema.json",
        ),
    ] {
        let text = configs
            .iter()
            .find(|(n, _)| n == f)
            .map(|(_, t)| t.as_str())
            .unwrap_or_default();
        let line = format!("# yaml-language-server: $schema={path}\n");
        assert!(text.starts_with(&line), "{f} does not start with `{line}`");
    }
}

/// Documents the schema and the loader must agree on: `true` when both take it.
const CASES: &[(bool, &str)] = &[
    (true, ""),
    (true, "version: \"1.0\""),
    (true, "version: 1"),
    (false, "version: \"2\""),
    (false, "hots: {}"),
    (true, "x-common: &c { timeout: 3 }\ndefaults: *c"),
    (
        true,
        "host: { concurrency: 4, shutdown_grace_seconds: 0, id: 42 }",
    ),
    (false, "host: { concurrency: four }"),
    (false, "host: { concurrency: 0 }"),
    (true, "host: { concurrency: \"${N}\" }"),
    (false, "host: { concurrency: 2.5 }"),
    (
        false,
        "host: { http: { listen: \"127.0.0.1:8080\", tokn: x } }",
    ),
    (true, "host: { logging: { format: json } }"),
    (false, "host: { logging: { format: xml } }"),
    (true, "host: { logging: { format: \"${FMT}\" } }"),
    (
        true,
        "task_manager: { type: redis, stream: 5, block_ms: 200 }",
    ),
    (false, "task_manager: { type: redis, block_ms: soon }"),
    (true, "task_manager: { type: redis, block_ms: \"${N}\" }"),
    (false, "task_manager: { type: sqlite, bogus: 1 }"),
    (false, "task_manager: { type: mysql }"),
    (true, "task_manager: { path: ./q.db, url: \"redis://x\" }"),
    (false, "task_manager: { lease_seconds: 0 }"),
    (true, "task_manager: { lease_seconds: 2.5 }"),
    (false, "task_manager: { type: amqp, queue_type: fast }"),
    (
        true,
        "task_manager: { type: amqp, queue_type: quorum, declare: false }",
    ),
    (false, "task_manager: { type: amqp, declare: maybe }"),
    (true, "task_manager: { type: postgres, max_connections: 4 }"),
    (
        false,
        "task_manager: { type: postgres, max_connections: 0 }",
    ),
    (
        true,
        "defaults: { retry: { jitter: true, base_delay_seconds: 0 }, limits: { memory_mb: 64 } }",
    ),
    (false, "defaults: { retry: { jitter: sometimes } }"),
    (false, "defaults: { limits: { memory_mb: 0 } }"),
    (false, "defaults: { mode: pool }"),
    (false, "defaults: { timeout: 0 }"),
    (true, "defaults: { env: { A: x, B: 2, C: true } }"),
    (
        true,
        "workers: [{ name: a, command: [./a], task_types: [t] }]",
    ),
    (
        true,
        "workers: [{ name: a, url: \"http://127.0.0.1:9/\", task_types: [t] }]",
    ),
    (
        true,
        "workers: [{ name: a, venv_python: ./py, module: m, task_types: [t], mode: pool, pool_size: 2 }]",
    ),
    (
        false,
        "workers: [{ name: a, command: [./a], task_types: [t], timout: 3 }]",
    ),
    (
        false,
        "workers: [{ name: a, command: [./a], url: \"http://x/\", task_types: [t] }]",
    ),
    (false, "workers: [{ name: a, task_types: [t] }]"),
    (false, "workers: [{ name: a, command: [./a] }]"),
    (
        false,
        "workers: [{ name: a, command: [./a], task_types: [t], mode: fork }]",
    ),
    (
        false,
        "workers: [{ name: a, command: [./a], task_types: [t], timeout: ten }]",
    ),
    (
        true,
        "workers: [{ name: a, command: [./a], task_types: [t], timeout: \"${T:-10}\" }]",
    ),
    (false, "workers: [{ name: a, module: m, task_types: [t] }]"),
    (
        true,
        "observers: [{ type: webhook, url: \"http://127.0.0.1:9/\", events: [task_failed] }]",
    ),
    (
        true,
        "observers: [{ type: webhook, url: \"http://127.0.0.1:9/\", events: [task_cancelled] }]",
    ),
    (
        false,
        "observers: [{ type: webhook, events: [task_failed] }]",
    ),
    (
        false,
        "observers: [{ type: command, command: [./x], events: [task_exploded] }]",
    ),
    (false, "observers: [{ type: carrier_pigeon }]"),
    (
        true,
        "schedules: [{ name: n, cron: \"0 3 * * *\", type: t, params: { a: 1 } }]",
    ),
    (
        false,
        "schedules: [{ name: n, cron: \"0 3 * * *\", type: t, every: 3 }]",
    ),
    (false, "schedules: [{ name: n, cron: \"0 3 * * *\" }]"),
];

#[test]
fn the_schema_and_the_loader_agree_on_right_and_wrong() {
    let v = validator();
    let path = std::env::var("PATH").unwrap_or_default();
    let pairs = [
        ("N", "4"),
        ("T", "10"),
        ("FMT", "json"),
        ("PATH", path.as_str()),
    ];
    let env = env_of(&pairs);
    let mut disagree = Vec::new();
    for (ok, text) in CASES {
        let doc = to_json(text, text);
        let errs = errors(&v, &doc);
        let loaded = super::super::load_str(text, Path::new("/tmp/x/workerhost_config.yaml"), &env);
        if errs.is_empty() != *ok {
            disagree.push(format!(
                "schema {}: {text}: {errs:?}",
                if *ok { "refuses" } else { "takes" }
            ));
        }
        if loaded.is_ok() != *ok {
            let what = match &loaded {
                Ok(_) => "takes".to_string(),
                Err(e) => format!("refuses ({e})"),
            };
            disagree.push(format!("loader {what}: {text}"));
        }
    }
    assert!(disagree.is_empty(), "{}", disagree.join("\n"));
}

/// `workerhost.schema.json` (what the example configs' `$schema=` lines name) is `workerhost schema`'s
/// output, regenerated, never edited.
#[test]
fn the_committed_schema_file_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = root.join("workerhost.schema.json");
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    let mut current = serde_json::to_string_pretty(&schema::schema()).unwrap_or_default();
    current.push('\n');
    assert!(
        committed == current,
        "{} is stale: run `cargo run -- schema > workerhost.schema.json`",
        file.display()
    );
    assert!(current.contains("\"title\": \"workerhost config\""));
    // The descriptions an editor shows come from the doc comments.
    assert!(current.contains("Unique among the workers."));
}
