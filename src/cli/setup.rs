//! `workerhost setup [--worker NAME] [--force]`: makes the managed workers' venvs (section 10), and the
//! same step for `run --setup`.

use super::{Usage, load};
use std::path::Path;
use workerhost::config::WorkerConfig;
use workerhost::setup::{Action, Outcome, setup_all};

#[derive(Debug, clap::Args, Clone)]
pub struct SetupArgs {
    /// Only this worker.
    #[arg(long, value_name = "NAME")]
    pub worker: Option<String>,
    /// Make the venv again even when it is in sync.
    #[arg(long)]
    pub force: bool,
}

pub async fn setup(path: &Path, args: SetupArgs) -> anyhow::Result<u8> {
    super::run::init_logging("warn", false);
    let cfg = load(path)?;
    let workers: Vec<WorkerConfig> = match &args.worker {
        None => cfg.workers.clone(),
        Some(name) => {
            let Some(w) = cfg.workers.iter().find(|w| &w.name == name) else {
                let known: Vec<&str> = cfg.workers.iter().map(|w| w.name.as_str()).collect();
                return Err(Usage(format!(
                    "no worker named {name:?} (known: {})",
                    known.join(", ")
                ))
                .into());
            };
            if w.environment.is_none() {
                return Err(Usage(format!(
                    "worker {name} has no `requirements` ({}): its environment is not managed",
                    w.config_path
                ))
                .into());
            }
            vec![w.clone()]
        }
    };
    if workers.iter().all(|w| w.environment.is_none()) {
        println!("no worker declares `requirements`: nothing to set up");
        return Ok(0);
    }
    let outcomes = setup_all(&workers, args.force).await;
    let failed = print(&outcomes, &mut std::io::stdout());
    Ok(u8::from(failed > 0))
}

/// One line per worker (a failure adds the installer's last lines); returns how many failed.
pub fn print(outcomes: &[Outcome], out: &mut impl std::io::Write) -> usize {
    let mut failed = 0;
    for o in outcomes {
        let secs = o.elapsed.as_secs_f64();
        let _ = match &o.result {
            Ok(r) => {
                let mark = match r.action {
                    Action::InSync => "in sync",
                    Action::Created => "created",
                    Action::Rebuilt => "rebuilt",
                };
                writeln!(out, "{mark:<8} {}: {} ({secs:.2} s)", o.worker, r.detail)
            }
            Err(e) => {
                failed += 1;
                let mut text = format!("FAIL     worker {}: {} ({secs:.2} s)", e.worker, e.message);
                for l in &e.tail {
                    text.push_str("\n    | ");
                    text.push_str(l);
                }
                writeln!(out, "{text}")
            }
        };
    }
    let ok = outcomes.len() - failed;
    let _ = writeln!(
        out,
        "{} worker{} set up, {failed} failed",
        ok,
        if ok == 1 { "" } else { "s" }
    );
    failed
}
