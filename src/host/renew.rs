//! Lease renewal: every in-flight claim renewed every third of the lease, in one call per round; what
//! a renewal says of a task still running here (lost, cancelled) is acted on.

use super::Host;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use workerhost_adapters::{Consumer, Lease, RevokeReason};

impl Host {
    /// Renews every in-flight lease every third of the lease.
    pub(super) fn renew_loop(
        &self,
        stop: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let source = self.source.clone();
        let claims = self.state.in_flight.clone();
        let every = (self.opts.lease / 3).max(Duration::from_millis(50));
        async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.cancelled() => return,
                }
                let held: Vec<Lease> = claims.leases();
                if held.is_empty() {
                    continue;
                }
                match source.renew(&held).await {
                    Ok(revoked) => {
                        // Only what concerns a task still running on that claim: one that settled
                        // while this renewal was on its way is simply no longer pending.
                        for r in revoked.into_iter().filter(|r| claims.runs_with(&r.lease)) {
                            match r.reason {
                                RevokeReason::Lost => {
                                    tracing::warn!(task_id = %r.lease.task_id, "lease lost while the task runs: another host may run it too; its outcome will not be recorded by this host")
                                }
                                RevokeReason::Cancelled => {
                                    tracing::info!(task_id = %r.lease.task_id, "task cancelled while it runs: stopping its process");
                                    claims.cancel(&r.lease.task_id);
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot renew leases"),
                }
            }
        }
    }
}
