//! The `workerhost` binary: the command line, logging set-up and exit codes. The only place that uses
//! `anyhow`.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Before any worker starts: what a worker leaves behind is reparented to the host, not to init.
    workerhost::runner::escapees::become_subreaper();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("workerhost: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // OpenTelemetry export (when OTEL_EXPORTER_OTLP_ENDPOINT asks for it) for the commands that run
    // tasks; outside the runtime, as its HTTP client is a blocking one.
    let runs_tasks = matches!(
        args.command,
        None | Some(cli::Command::Run(_)) | Some(cli::Command::Exec(_))
    );
    let telemetry = match runs_tasks.then(workerhost::telemetry::init) {
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            eprintln!("workerhost: OpenTelemetry export is off: {e}");
            None
        }
        None => None,
    };
    let code = rt.block_on(cli::dispatch(args));
    // Do not wait for stray blocking tasks (a slow DB call) at exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    // The spans still queued are sent before the process ends.
    if let Some(t) = telemetry {
        t.shutdown();
    }
    ExitCode::from(code)
}
