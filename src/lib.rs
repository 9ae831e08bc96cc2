//! workerhost: a coordinator with no business logic. It pulls tasks from a task manager through an
//! adapter and runs each in an isolated per-worker process, wrapped in a retry/timeout proxy and reported
//! to observers.
//!
//! The pieces, in the order a task meets them: [`config`] → [`registry`] → [`host`] (claims, leases,
//! settling) → [`proxy`] (retries) → [`runner`] (one attempt in a process) → [`observers`].

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
pub mod source;
pub mod stats;
