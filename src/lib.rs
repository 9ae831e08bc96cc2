//! workerhost: a coordinator with no business logic. It pulls tasks from a task manager through an
//! adapter and runs each in an isolated per-worker process, wrapped in a retry/timeout proxy and reported
//! to observers.
//!
//! The pieces, in the order a task meets them: [`config`] → [`registry`] → [`host`] (claims; screening
//! in `host::screen`; leases and in-flight bookkeeping in `host::in_flight`) → [`proxy`] (retries) →
//! [`runner`] (one attempt in a process) → [`verdict`] (where the delivery ends, decided once) →
//! `host::settle` (recorded in the task manager) and [`observers`] (events).

pub mod config;
pub mod depth;
pub mod host;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod observers;
pub mod probe;
pub mod proxy;
pub mod registry;
pub mod runner;
pub mod schedule;
pub mod settings;
pub mod setup;
pub mod source;
pub mod stats;
pub mod telemetry;
pub mod tls;
pub mod verdict;
