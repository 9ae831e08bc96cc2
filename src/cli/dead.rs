//! `workerhost dead list|retry|purge`.

use super::Usage;
use super::operate::{failure, open, parse_age};
use clap::Subcommand;
use std::path::Path;
use workerhost_adapters::Queue;
use workerhost_adapters::now_ms;
use workerhost_adapters::ops::{DeadFilter, DeadLetter, DeadSelection};

#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// Dead tasks, newest first: id, type, attempts, error, when.
    List {
        /// Only this task type.
        #[arg(long = "type", value_name = "TYPE")]
        task_type: Option<String>,
        /// At most this many.
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Put dead tasks back in the queue: same id and params, attempts reset. Prints how many.
    Retry {
        /// The task ids (or --all).
        #[arg(
            value_name = "ID",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        ids: Vec<String>,
        /// Every dead task (of --type).
        #[arg(long)]
        all: bool,
        /// With --all: only this task type.
        #[arg(long = "type", value_name = "TYPE", requires = "all")]
        task_type: Option<String>,
    },
    /// Remove dead tasks. Prints how many.
    Purge {
        /// Only those dead for longer than this (90s, 30m, 12h, 7d, 2w).
        #[arg(long, value_name = "AGE")]
        older_than: Option<String>,
        /// Only this task type.
        #[arg(long = "type", value_name = "TYPE")]
        task_type: Option<String>,
    },
}

pub async fn dead(path: &Path, cmd: DeadCommand) -> anyhow::Result<u8> {
    // Bad flags are refused before anything is opened, so nothing changes.
    let cutoff = match &cmd {
        DeadCommand::Purge {
            older_than: Some(age),
            ..
        } => Some(now_ms().saturating_sub(parse_age(age)?.as_millis() as i64)),
        _ => None,
    };
    if let DeadCommand::List { limit: 0, .. } = cmd {
        return Err(Usage("--limit must be at least 1".into()).into());
    }
    let (_, source) = open(path).await?;
    match cmd {
        DeadCommand::List {
            task_type,
            limit,
            json,
        } => {
            let filter = DeadFilter {
                task_type,
                limit: Some(limit),
                before_ms: None,
            };
            let list = source.dead_list(&filter).await.map_err(failure)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", table(&list));
            }
        }
        DeadCommand::Retry {
            ids,
            all,
            task_type,
        } => {
            let which = if all {
                DeadSelection::All(DeadFilter {
                    task_type,
                    ..DeadFilter::default()
                })
            } else {
                DeadSelection::Ids(ids)
            };
            let n = source.dead_retry(&which).await.map_err(failure)?;
            println!("retried {n}");
        }
        DeadCommand::Purge { task_type, .. } => {
            let filter = DeadFilter {
                task_type,
                limit: None,
                before_ms: cutoff,
            };
            let n = source.dead_purge(&filter).await.map_err(failure)?;
            println!("purged {n}");
        }
    }
    Ok(0)
}

fn table(list: &[DeadLetter]) -> String {
    if list.is_empty() {
        return "no dead tasks\n".into();
    }
    let mut out = String::from("AT                       ID  TYPE  ATTEMPTS  ERROR\n");
    for d in list {
        out.push_str(&format!(
            "{}  {}  {}  {}  {}\n",
            d.at.as_deref().unwrap_or("-"),
            d.id,
            d.task_type,
            d.attempts,
            d.error.as_deref().unwrap_or("-").replace('\n', " ")
        ));
    }
    out
}
