//! Section 9, isolation and limits: no worker outlives its host, nothing a task started outlives the
//! task, resource limits and their outcome, and what each attempt used.

#[path = "../support/mod.rs"]
mod support;

mod escapees;
mod findings;
mod limits;
mod parent_death;
mod report;
