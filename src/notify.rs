//! The systemd readiness protocol (`sd_notify(3)`), for units with `Type=notify` and `WatchdogSec=`.
//!
//! Without `$NOTIFY_SOCKET` every call here is a no-op, so the host behaves the same outside systemd.
//! What the host says, and when:
//! - `READY=1` once the task manager answered (the adapter opened) and the HTTP server is bound, so that
//!   units ordered `After=` this one find `/health` up;
//! - `RELOADING=1` (with `MONOTONIC_USEC`, as `Type=notify-reload` wants) then `READY=1` around a SIGHUP
//!   reload;
//! - `STOPPING=1` when shutdown begins;
//! - `WATCHDOG=1` every half of `$WATCHDOG_USEC` (only when `$WATCHDOG_PID` is unset or names this
//!   process). The pings come from a task on the host's own runtime, so a wedged runtime stops them and
//!   systemd restarts the unit.
//!
//! The worker processes never see `NOTIFY_SOCKET`: their environment is built from scratch (section 2).

use sd_notify::NotifyState;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd through $NOTIFY_SOCKET");
    }
}

pub fn ready() {
    send(&[NotifyState::Ready]);
}

pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Starts the watchdog pings when systemd asked for them; they end with `stop`.
pub fn spawn_watchdog(stop: CancellationToken) {
    let Some(every) = sd_notify::watchdog_enabled().map(|d| d / 2) else {
        return;
    };
    let every = every.max(Duration::from_millis(10));
    tracing::debug!(
        every_ms = every.as_millis() as u64,
        "systemd watchdog pings"
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => send(&[NotifyState::Watchdog]),
                _ = stop.cancelled() => return,
            }
        }
    });
}
