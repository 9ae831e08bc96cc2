//! Integration tests: the built `workerhost` binary driven as a user would, with real Python venvs,
//! real processes, real signals and the embedded SQLite queue. Grouped into one test binary so that
//! 2 cores do not link many executables.

mod cli;
mod integration;
mod otel;
mod outcomes;
mod pool;
mod queue;
mod remote;
mod sdk;
mod shutdown;
#[path = "../support/mod.rs"]
mod support;
mod wheel;
