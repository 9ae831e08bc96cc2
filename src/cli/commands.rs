//! The one-shot subcommands: check, migrate, submit, exec, workers, status.

use super::{SubmitArgs, TaskArgs, Usage, load, parse_params};
use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use workerhost::config::{Mode, WorkerKind};
use workerhost::observers::{LogObserver, Observers};
use workerhost::probe;
use workerhost::proxy::Proxy;
use workerhost::registry::Registry;
use workerhost::settings::{default_host_name, unique_host_id};
#[cfg(feature = "postgres")]
use workerhost_adapters::postgres::{PostgresSource, migrations::SchemaState};
use workerhost_adapters::{AdapterError, Consumer, Envelope, Queue};

/// Logging for one-shot commands: warnings and worse, unless RUST_LOG says otherwise.
fn quiet_logging() {
    super::run::init_logging("warn", false);
}

pub async fn check(path: &Path) -> anyhow::Result<u8> {
    quiet_logging();
    let cfg = load(path)?;
    println!(
        "ok    config {} ({} workers)",
        cfg.path.display(),
        cfg.workers.len()
    );
    let mut failed = 0;
    for w in &cfg.workers {
        let mut checks = probe::static_checks(w);
        if checks.iter().all(|c| c.ok)
            && let Some(c) = probe::module_check(w).await
        {
            checks.push(c);
        }
        for c in checks {
            if !c.ok {
                failed += 1;
            }
            let mark = if c.ok { "ok  " } else { "FAIL" };
            println!("{mark}  worker {}: {}: {}", w.name, c.check, c.detail);
        }
    }
    if let Some(claim_timeout) = cfg.task_manager.claim_timeout() {
        let claim_timeout = claim_timeout.as_secs_f64();
        for w in &cfg.workers {
            let worst = worst_case(w).as_secs_f64();
            if worst > claim_timeout {
                println!(
                    "warn  worker {}: worst case {worst:.0} s (timeout x {} attempts + backoff) exceeds the TaskManager's claim timeout ({claim_timeout:.0} s, claim_timeout_seconds); the service has no heartbeat, so another worker may claim the task while it still runs",
                    w.name,
                    w.max_retries + 1
                );
            }
        }
    }
    // `check` never changes a postgres schema; it reports what `migrate` would do.
    match workerhost::source::open_with(&cfg, &unique_host_id("check"), false).await {
        Err(e) => {
            failed += 1;
            println!("FAIL  task manager {}: {e}", cfg.task_manager.kind());
        }
        Ok(source) => match source.ping().await {
            Ok(()) => {
                println!("ok    task manager {}: reachable", source.kind());
                #[cfg(feature = "postgres")]
                if let workerhost_adapters::Source::Postgres(pg) = &source
                    && !postgres_schema_ok(pg, path).await
                {
                    failed += 1;
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAIL  task manager {}: {e}", source.kind());
            }
        },
    }
    if failed > 0 {
        println!("{failed} check(s) failed");
        return Ok(1);
    }
    Ok(0)
}

/// Prints where the postgres schema stands; false when it is missing, older or newer than this build.
#[cfg(feature = "postgres")]
async fn postgres_schema_ok(pg: &PostgresSource, path: &Path) -> bool {
    let fix = format!("run `workerhost migrate --config {}`", path.display());
    let line = match pg.schema_state().await {
        Ok(SchemaState::Current { version }) => {
            println!(
                "ok    task manager postgres: schema {} at version {version}",
                pg.schema()
            );
            return true;
        }
        Ok(SchemaState::Missing) => format!(
            "schema {} is missing; {fix} (or start the host, which creates it)",
            pg.schema()
        ),
        Ok(SchemaState::Older { have, want }) => format!(
            "schema {} is at version {have}, this workerhost needs {want}; {fix}",
            pg.schema()
        ),
        Ok(SchemaState::Newer { have, want }) => format!(
            "schema {} is at version {have}, newer than this workerhost knows ({want}); upgrade workerhost",
            pg.schema()
        ),
        Err(e) => format!("cannot read schema {}: {e}", pg.schema()),
    };
    println!("FAIL  task manager postgres: {line}");
    false
}

/// `workerhost migrate`: creates or upgrades the postgres schema, and nothing else.
pub async fn migrate(path: &Path) -> anyhow::Result<u8> {
    quiet_logging();
    let cfg = load(path)?;
    if cfg.task_manager.kind() != "postgres" {
        return Err(Usage(format!(
            "`migrate` applies to the postgres task manager; this config's is {} (it creates its own storage)",
            cfg.task_manager.kind()
        ))
        .into());
    }
    let source = workerhost::source::open_with(&cfg, &unique_host_id("migrate"), false).await?;
    let code = match &source {
        #[cfg(feature = "postgres")]
        workerhost_adapters::Source::Postgres(pg) => migrate_schema(pg).await?,
        // Opening a type this build lacks failed above.
        #[allow(unreachable_patterns)]
        _ => 1,
    };
    source.close().await;
    Ok(code)
}

/// Applies the migrations `pg`'s schema lacks, saying what it did.
#[cfg(feature = "postgres")]
async fn migrate_schema(pg: &PostgresSource) -> anyhow::Result<u8> {
    let report = pg.migrate().await?;
    if report.applied.is_empty() {
        println!("schema {} is current (version {})", pg.schema(), report.to);
    }
    for (version, name) in &report.applied {
        println!("applied migration {version}: {name}");
    }
    if !report.applied.is_empty() {
        println!(
            "schema {} is now at version {} (was {})",
            pg.schema(),
            report.to,
            report.from
        );
    }
    Ok(0)
}

/// The longest one delivery can take: every attempt timing out, with the longest backoff between.
fn worst_case(w: &workerhost::config::WorkerConfig) -> std::time::Duration {
    let no_jitter = workerhost::config::RetryPolicy {
        jitter: false,
        ..w.retry.clone()
    };
    let backoff: std::time::Duration = (1..=w.max_retries)
        .map(|r| workerhost::proxy::retry_delay(&no_jitter, r))
        .sum();
    w.timeout * (w.max_retries + 1) + backoff
}

fn envelope(cfg_types: &[String], t: &TaskArgs, allow_unknown: bool) -> anyhow::Result<Envelope> {
    if !allow_unknown && !cfg_types.contains(&t.task_type) {
        let shown = workerhost_adapters::text::cap(&t.task_type, 256);
        return Err(Usage(format!(
            "no worker in this config handles type {shown:?} (known: {}); use --any-type to enqueue it anyway",
            cfg_types.join(", ")
        ))
        .into());
    }
    let id =
        t.id.clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if id.is_empty() {
        return Err(Usage("--id must not be empty".into()).into());
    }
    let mut env = Envelope::new(id, t.task_type.clone(), parse_params(t.params.as_deref())?);
    // What every task manager would dead-letter as malformed is refused here, for `exec` as for
    // `submit` (a 128 KiB id would otherwise reach the worker's command line and be blamed on it).
    env.check().map_err(|e| Usage(e.to_string()))?;
    if let Some(tp) = &t.traceparent {
        if !workerhost::telemetry::valid_traceparent(tp) {
            let msg = format!(
                "--traceparent {tp:?} is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>, lower case)"
            );
            return Err(Usage(msg).into());
        }
        env.traceparent = Some(tp.clone());
    }
    Ok(env)
}

pub async fn submit(path: &Path, s: SubmitArgs) -> anyhow::Result<u8> {
    quiet_logging();
    let cfg = load(path)?;
    if s.task.id.is_some() && cfg.task_manager.kind() == "http" {
        return Err(Usage(
            "--id is not supported by the http task manager: the TaskManager assigns its own ids (submit prints it)".into(),
        )
        .into());
    }
    let registry = Registry::build(&cfg.workers, 1, cfg.host.kill_grace, None)
        .map_err(|e| Usage(e.to_string()))?;
    let t = &s.task;
    let mut env = envelope(&registry.known_types(), t, t.any_type)?;
    super::when::apply(&s, cfg.task_manager.kind(), &mut env).map_err(Usage)?;
    let source = workerhost::source::open(&cfg, &unique_host_id("submit")).await?;
    match source.enqueue(&env).await {
        Ok(id) => {
            println!("{id}");
            Ok(0)
        }
        // The task itself is wrong (a duplicate id, params the task manager refuses): bad usage.
        Err(e @ (AdapterError::Duplicate { .. } | AdapterError::Invalid(_))) => {
            Err(Usage(e.to_string()).into())
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn exec(path: &Path, t: TaskArgs) -> anyhow::Result<u8> {
    let cfg = load(path)?;
    super::run::init_logging(
        &std::env::var("WORKERHOST_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
        false,
    );
    let registry = Registry::build(&cfg.workers, 1, cfg.host.kill_grace, None)
        .map_err(|e| Usage(e.to_string()))?;
    let env = envelope(&registry.known_types(), &t, false)?;
    let Some(worker) = registry.for_type(&env.task_type) else {
        return Err(Usage(format!("no worker handles type {}", env.task_type)).into());
    };
    let proxy = Proxy::new(
        unique_host_id(cfg.host.id.as_deref().unwrap_or(&default_host_name())),
        Observers::new(vec![Arc::new(LogObserver)]),
        workerhost::runner::ProgressSink::default(),
    );
    let kill = CancellationToken::new();
    let k = kill.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        k.cancel();
    });
    let judged = workerhost::host::exec_once(&proxy, worker, &env, &kill).await;
    match (judged.document(), &judged.last) {
        (Some(doc), Some(last)) => {
            println!("{}", serde_json::to_string(&doc)?);
            Ok(last.outcome.exit_code() as u8)
        }
        _ => {
            eprintln!("workerhost: interrupted");
            Ok(130)
        }
    }
}

pub fn workers(path: &Path, json: bool) -> anyhow::Result<u8> {
    let cfg = load(path)?;
    if json {
        let list: Vec<serde_json::Value> = cfg.workers.iter().map(worker_json).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(0);
    }
    println!(
        "{:<40} {:<8} {:<6} {:>8} {:>7}  TASK TYPES",
        "NAME", "KIND", "MODE", "TIMEOUT", "RETRIES"
    );
    for w in &cfg.workers {
        println!(
            "{:<40} {:<8} {:<6} {:>7}s {:>7}  {}",
            w.name,
            kind_name(w),
            mode_name(w),
            w.timeout.as_secs_f64(),
            w.max_retries,
            w.task_types.join(", ")
        );
        if let Some(d) = &w.description {
            println!("    {d}");
        }
        if let Some(l) = limits_line(w) {
            println!("    {l}");
        }
        if matches!(w.kind, WorkerKind::Python { .. }) {
            let d = workerhost::setup::dependencies(w);
            println!("    dependencies: {} ({})", d.state.as_str(), d.detail);
        }
    }
    Ok(0)
}

fn kind_name(w: &workerhost::config::WorkerConfig) -> &'static str {
    match w.kind {
        WorkerKind::Python { .. } => "python",
        WorkerKind::Command { .. } => "command",
        WorkerKind::Remote { .. } => "remote",
    }
}

fn mode_name(w: &workerhost::config::WorkerConfig) -> &'static str {
    match w.mode {
        Mode::Spawn => "spawn",
        Mode::Pool => "pool",
    }
}

/// `workers --json`: one worker as the config has it, with where its environment stands.
fn worker_json(w: &workerhost::config::WorkerConfig) -> serde_json::Value {
    let d = workerhost::setup::dependencies(w);
    serde_json::json!({
        "name": w.name,
        "kind": kind_name(w),
        "mode": mode_name(w),
        "task_types": w.task_types,
        "concurrency": w.concurrency,
        "timeout_seconds": w.timeout.as_secs_f64(),
        "max_retries": w.max_retries,
        "limits": w.limits,
        "retry_on_resource_limit": w.retry_on_resource_limit,
        "user": w.user.as_ref().map(|u| u.name.as_str()),
        "description": w.description,
        "metadata": w.metadata,
        "dependencies": d.state.as_str(),
        "dependencies_detail": d.detail,
        "environment": w.environment.as_ref().map(|e| serde_json::json!({
            "python": e.python,
            "requirements": e.requirements,
            "venv": e.venv,
        })),
    })
}

/// `limits: memory_mb=512 cpu_seconds=600 ...; user: x; retry_on_resource_limit` for `workers`, when
/// any is set.
fn limits_line(w: &workerhost::config::WorkerConfig) -> Option<String> {
    let l = &w.limits;
    let mut parts: Vec<String> = [
        ("memory_mb", l.memory_mb),
        ("cpu_seconds", l.cpu_seconds),
        ("open_files", l.open_files),
        ("processes", l.processes),
    ]
    .iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
    .collect();
    if !parts.is_empty() {
        parts = vec![format!("limits: {}", parts.join(" "))];
    }
    if let Some(u) = &w.user {
        parts.push(format!("user: {}", u.name));
    }
    if w.retry_on_resource_limit {
        parts.push("retry_on_resource_limit".into());
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

pub async fn status(path: &Path, id: &str) -> anyhow::Result<u8> {
    quiet_logging();
    let cfg = load(path)?;
    let source = workerhost::source::open(&cfg, &unique_host_id("status")).await?;
    match source.status(id).await? {
        Some(mut s) => {
            // A task manager that knows only the host (http): the worker is the one this config has for
            // the type.
            if let Some(r) = s.result.as_mut().filter(|r| r.worker.is_none()) {
                r.worker = cfg
                    .workers
                    .iter()
                    .find(|w| w.task_types.contains(&s.task_type))
                    .map(|w| w.name.clone());
            }
            println!("{}", serde_json::to_string_pretty(&s)?);
            Ok(0)
        }
        None => {
            eprintln!("workerhost: no task with id {id}");
            Ok(1)
        }
    }
}

/// `workerhost schedules`: each schedule with its next three ticks (UTC, and in the schedule's zone).
pub fn schedules(path: &Path) -> anyhow::Result<u8> {
    let cfg = load(path)?;
    if cfg.schedules.is_empty() {
        println!("no schedules in {}", cfg.path.display());
        return Ok(0);
    }
    let now = workerhost_adapters::now_ms();
    for s in &cfg.schedules {
        println!(
            "{}  cron {:?}  timezone {}  type {}",
            s.name, s.cron_text, s.timezone_name, s.task_type
        );
        for t in s.next_ticks(now, 3) {
            println!(
                "    {}  ({})  id {}",
                workerhost_adapters::rfc3339_secs(t),
                s.local(t),
                s.tick_id(t)
            );
        }
    }
    Ok(0)
}
