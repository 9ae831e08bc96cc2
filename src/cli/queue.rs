//! `workerhost queue [--json]`.

use super::operate::{config_types, failure, open};
use std::path::Path;
use workerhost_adapters::Queue;
use workerhost_adapters::ops::{TypeDepth, with_known_types};

/// Per task type: queued, scheduled, running, dead, paused and the oldest due task's age.
pub async fn queue(path: &Path, json: bool) -> anyhow::Result<u8> {
    let (cfg, source) = open(path).await?;
    let depth = with_known_types(source.depth().await.map_err(failure)?, &config_types(&cfg));
    if json {
        println!("{}", serde_json::to_string_pretty(&depth)?);
    } else {
        print!("{}", table(&depth));
    }
    Ok(0)
}

fn table(depth: &[TypeDepth]) -> String {
    let width = depth
        .iter()
        .map(|d| d.task_type.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "{:<width$} {:>8} {:>9} {:>8} {:>8} {:>7} {:>9}\n",
        "TYPE", "QUEUED", "SCHEDULED", "RUNNING", "DEAD", "PAUSED", "OLDEST_S"
    );
    for d in depth {
        let oldest = d
            .oldest_seconds
            .map(|s| format!("{s:.1}"))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<width$} {:>8} {:>9} {:>8} {:>8} {:>7} {:>9}\n",
            d.task_type,
            d.queued,
            d.scheduled,
            d.running,
            d.dead,
            if d.paused { "yes" } else { "no" },
            oldest
        ));
    }
    out
}
