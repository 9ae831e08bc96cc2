//! What each task manager can keep of a task's time: a due time (`run_at`), a priority, and so whether a
//! retry can wait in the task manager instead of in the host (section 7). One table, read by `submit` (to
//! refuse a flag with the reason), by the host (where retries wait) and mirrored in the README.

/// One task manager's abilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Holds a task until its `run_at` (status `scheduled` meanwhile).
    pub run_at: bool,
    /// Hands out higher `priority` first.
    pub priority: bool,
}

/// The flag a capability is asked for with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFlag {
    Delay,
    At,
    Priority,
}

impl TimeFlag {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeFlag::Delay => "--delay",
            TimeFlag::At => "--at",
            TimeFlag::Priority => "--priority",
        }
    }
}

/// The abilities of the task manager named as in `task_manager.type`.
pub fn capabilities(kind: &str) -> Capabilities {
    match kind {
        "sqlite" | "postgres" => Capabilities {
            run_at: true,
            priority: true,
        },
        "redis" => Capabilities {
            run_at: true,
            priority: false,
        },
        _ => Capabilities {
            run_at: false,
            priority: false,
        },
    }
}

/// Why `flag` cannot be honoured by the task manager `kind`, or `None` when it can.
pub fn refusal(kind: &str, flag: TimeFlag) -> Option<String> {
    let caps = capabilities(kind);
    let supported = match flag {
        TimeFlag::Delay | TimeFlag::At => caps.run_at,
        TimeFlag::Priority => caps.priority,
    };
    if supported {
        return None;
    }
    let why = match (kind, flag) {
        ("amqp", TimeFlag::Priority) => {
            "the amqp task manager delivers in queue order and keeps no priority"
        }
        ("amqp", _) => {
            "the amqp task manager cannot hold a task until a due time (RabbitMQ 3.10 needs a plugin for that); retries wait in the host there"
        }
        ("redis", TimeFlag::Priority) => {
            "the redis task manager reads its stream in order and keeps no priority (run_at is supported)"
        }
        ("http", _) => {
            "the http task manager (PrismQ TaskManager API) has no due time or priority on create"
        }
        _ => "this task manager keeps no due time or priority",
    };
    Some(format!(
        "{} is not supported with task_manager type {kind}: {why}",
        flag.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_of_section_7() {
        for (kind, delay, prio) in [
            ("sqlite", true, true),
            ("postgres", true, true),
            ("redis", true, false),
            ("amqp", false, false),
            ("http", false, false),
        ] {
            assert_eq!(refusal(kind, TimeFlag::Delay).is_none(), delay, "{kind}");
            assert_eq!(refusal(kind, TimeFlag::At).is_none(), delay, "{kind}");
            assert_eq!(refusal(kind, TimeFlag::Priority).is_none(), prio, "{kind}");
        }
        let why = refusal("amqp", TimeFlag::Delay).expect("refused");
        assert!(why.contains("--delay") && why.contains("RabbitMQ"), "{why}");
    }
}
