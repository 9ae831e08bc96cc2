//! Wake-ups: one connection of its own LISTENs on `<schema>_tasks`, where the enqueue trigger NOTIFYs
//! at commit. An idle host waits for a notification or the fallback poll, whichever comes first.
//!
//! The connection is opened by the first wait (only hosts wait; `submit` and `status` never listen)
//! and opened again, with backoff, whenever it drops. Each (re)start of listening also wakes the host
//! once: tasks enqueued while nobody listened sent their notification to no one.

use super::Shared;
use super::tls::{self, Tls};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub struct Listener {
    s: Arc<Shared>,
    tls: Tls,
    /// `notify_one` keeps a permit when nobody waits: a notification that arrives during a claim
    /// ends the next wait at once.
    wake: Arc<Notify>,
    started: OnceLock<()>,
}

impl Listener {
    pub fn new(s: Arc<Shared>, tls: Tls) -> Listener {
        Listener {
            s,
            tls,
            wake: Arc::new(Notify::new()),
            started: OnceLock::new(),
        }
    }

    /// Returns on a notification or after `poll`.
    pub async fn wait(&self, poll: Duration) {
        if !self.s.cfg.notify {
            tokio::time::sleep(poll).await;
            return;
        }
        self.started.get_or_init(|| {
            tokio::spawn(listen(self.s.clone(), self.tls.clone(), self.wake.clone()));
        });
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Keeps one LISTEN connection up until the adapter closes.
async fn listen(s: Arc<Shared>, tls: Tls, wake: Arc<Notify>) {
    let channel = s.cfg.channel();
    let mut backoff = crate::backoff(BACKOFF_MIN, BACKOFF_MAX);
    while !s.stop.is_cancelled() {
        let w = wake.clone();
        let connected = tokio::select! {
            r = tls::connect(&s.cfg.pg, &tls, move || w.notify_one()) => r,
            _ = s.stop.cancelled() => return,
        };
        match connected {
            Ok((client, driver)) => {
                match s
                    .timed(client.batch_execute(&format!("LISTEN {channel}")))
                    .await
                {
                    Ok(()) => {
                        tracing::debug!(%channel, "postgres: listening for new tasks");
                        backoff = crate::backoff(BACKOFF_MIN, BACKOFF_MAX);
                        wake.notify_one();
                        let ended = tokio::select! {
                            r = driver => r,
                            _ = s.stop.cancelled() => return,
                        };
                        let why = match ended {
                            Ok(Some(e)) => s.cfg.scrub(&e.to_string()),
                            Ok(None) => "closed".to_string(),
                            Err(e) => e.to_string(),
                        };
                        tracing::warn!(%channel, error = %why, "postgres: the LISTEN connection dropped; polling until it is back");
                    }
                    Err(e) => {
                        tracing::warn!(%channel, error = %e, "postgres: cannot LISTEN; polling meanwhile")
                    }
                }
            }
            Err(e) => {
                let e = s.error(&e);
                tracing::warn!(%channel, error = %e, "postgres: cannot open the LISTEN connection; polling meanwhile");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next().unwrap_or(BACKOFF_MAX)) => {}
            _ = s.stop.cancelled() => return,
        }
    }
}
