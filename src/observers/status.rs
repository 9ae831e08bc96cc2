//! The status observer behind the status page: keeps the last few `task_failed` events and tells the
//! host's in-flight list which attempt each running task is on.

use super::{Event, EventKind, Observer};
use crate::host::HostState;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

pub struct StatusBoard {
    keep: usize,
    failures: Mutex<VecDeque<Event>>,
    state: OnceLock<Arc<HostState>>,
}

impl StatusBoard {
    /// Keeps the last `keep` failures.
    pub fn new(keep: usize) -> StatusBoard {
        StatusBoard {
            keep,
            failures: Mutex::new(VecDeque::with_capacity(keep)),
            state: OnceLock::new(),
        }
    }

    /// Connects the board to the host's state (the host is built after its observers).
    pub fn attach(&self, state: Arc<HostState>) {
        let _ = self.state.set(state);
    }

    /// The last failures, newest first.
    pub fn recent_failures(&self) -> Vec<Event> {
        match self.failures.lock() {
            Ok(f) => f.iter().rev().cloned().collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Observer for StatusBoard {
    fn notify(&self, e: &Event) {
        match e.event {
            EventKind::TaskStarted => {
                if let (Some(state), Some(id), Some(a)) = (self.state.get(), &e.task_id, e.attempt)
                {
                    state.in_flight.set_attempt(id, a);
                }
            }
            EventKind::TaskFailed => {
                if let Ok(mut f) = self.failures.lock() {
                    if f.len() >= self.keep {
                        f.pop_front();
                    }
                    f.push_back(e.clone());
                }
            }
            _ => {}
        }
    }
}
