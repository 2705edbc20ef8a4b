//! Whether each cluster is usable, as `/health/readiness` reports it.
//!
//! The judgement follows zdm-proxy's (consecutive failures against a threshold), fed by the
//! traffic itself instead of a separate control connection:
//!
//! ```text
//!  any answer from a cluster (even an ERROR: the node is alive) ─► failures = 0 ─► UP
//!  timeout, lost connection, failed connect ─► failures += 1 ─► DOWN at the threshold
//!                                                              │ (reconnect.failure_threshold)
//!  recover task ◄─ woken ──────────────────────────────────────┘
//!     OPTIONS on a fresh connection to each contact point, with reconnect backoff,
//!     until the cluster answers ─► failures = 0 ─► UP
//! ```
//!
//! Stream-id exhaustion is the proxy's own limit, not the cluster's health, and does not count.
//! Before both clusters answered the start-up probe, the status is STARTUP.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_cql::protocol::{Opcode, ProtocolVersion};
use tokio::sync::{Notify, watch};

use crate::config::BackoffConfig;
use crate::error::BackendError;
use crate::proxy::Contact;
use crate::settings::ClusterId;
use crate::tls::ClusterTls;

/// A cluster's (or the proxy's) readiness, spelled as zdm-proxy spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Up,
    Down,
    Startup,
}

impl Status {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Up => "UP",
            Self::Down => "DOWN",
            Self::Startup => "STARTUP",
        }
    }
}

/// One cluster's failure record.
#[derive(Debug, Default)]
struct ClusterHealth {
    /// Failures since the last answer; the request path resets it, so it is read before it is
    /// written (no shared cache-line write per request while healthy).
    consecutive: AtomicU32,
    /// Failures ever, for operators comparing two readings.
    total: AtomicU64,
    /// The newest failure, for the readiness body (bounded: one message).
    last: Mutex<Option<String>>,
}

/// What readiness shows for one cluster.
#[derive(Debug, Clone)]
pub(crate) struct ClusterView {
    pub status: Status,
    pub consecutive_failures: u32,
    pub total_failures: u64,
    pub threshold: u32,
    pub last_failure: Option<String>,
}

/// Both clusters' health.
#[derive(Debug)]
pub(crate) struct Health {
    clusters: [ClusterHealth; 2],
    threshold: u32,
    started: AtomicBool,
    /// Wakes the recover task when a cluster goes DOWN.
    went_down: Notify,
}

impl Health {
    pub(crate) fn new(threshold: u32) -> Self {
        Self {
            clusters: Default::default(),
            threshold: threshold.max(1),
            started: AtomicBool::new(false),
            went_down: Notify::new(),
        }
    }

    /// Both clusters answered the start-up probe.
    pub(crate) fn mark_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    /// `cluster` answered something.
    pub(crate) fn answered(&self, cluster: ClusterId) {
        let h = &self.clusters[cluster.index()];
        if h.consecutive.load(Ordering::Relaxed) != 0 {
            h.consecutive.store(0, Ordering::Relaxed);
        }
    }

    /// A request to the cluster failed; counts only failures that say something about it.
    pub(crate) fn failed(&self, e: &BackendError) {
        let counts = match e {
            BackendError::Timeout { .. }
            | BackendError::ConnectionLost { .. }
            | BackendError::Connect { .. }
            | BackendError::NoContactPoint { .. } => true,
            BackendError::StreamsExhausted { .. } => false,
        };
        if !counts {
            return;
        }
        let cluster = e.cluster();
        let h = &self.clusters[cluster.index()];
        h.total.fetch_add(1, Ordering::Relaxed);
        *h.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        let n = h
            .consecutive
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if n == self.threshold {
            tracing::warn!(%cluster, failures = n, error = %e, "cluster is DOWN");
            self.went_down.notify_one();
        }
    }

    pub(crate) fn status(&self, cluster: ClusterId) -> Status {
        if !self.started.load(Ordering::Acquire) {
            return Status::Startup;
        }
        if self.clusters[cluster.index()]
            .consecutive
            .load(Ordering::Relaxed)
            >= self.threshold
        {
            Status::Down
        } else {
            Status::Up
        }
    }

    /// The proxy's readiness: UP only when both clusters are.
    pub(crate) fn overall(&self) -> Status {
        let statuses = ClusterId::BOTH.map(|c| self.status(c));
        if statuses.contains(&Status::Startup) {
            Status::Startup
        } else if statuses.contains(&Status::Down) {
            Status::Down
        } else {
            Status::Up
        }
    }

    pub(crate) fn view(&self, cluster: ClusterId) -> ClusterView {
        let h = &self.clusters[cluster.index()];
        ClusterView {
            status: self.status(cluster),
            consecutive_failures: h.consecutive.load(Ordering::Relaxed),
            total_failures: h.total.load(Ordering::Relaxed),
            threshold: self.threshold,
            last_failure: h.last.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

/// How to ask one cluster whether it is back.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub contacts: Vec<Contact>,
    /// The cluster's TLS, when it has it.
    pub tls: Option<Arc<ClusterTls>>,
    pub version: ProtocolVersion,
    pub timeout: Duration,
}

impl Probe {
    /// Whether any contact point answers OPTIONS.
    async fn answers(&self) -> bool {
        for contact in &self.contacts {
            let options = crate::proxy::options(contact, self.tls.as_deref(), self.version);
            let answer = tokio::time::timeout(self.timeout, options).await;
            if let Ok(Ok(Some(env))) = answer
                && env.header.opcode == Opcode::Supported
            {
                return true;
            }
        }
        false
    }
}

/// Re-probes DOWN clusters with the reconnect backoff until they answer; ends at shutdown.
pub(crate) async fn recover(
    health: Arc<Health>,
    probes: [Probe; 2],
    backoff: BackoffConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let down = |h: &Health| -> Vec<ClusterId> {
        ClusterId::BOTH
            .into_iter()
            .filter(|c| h.status(*c) == Status::Down)
            .collect()
    };
    loop {
        tokio::select! {
            () = health.went_down.notified() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let mut delay = backoff.min_delay;
        loop {
            let clusters = down(&health);
            if clusters.is_empty() {
                break;
            }
            for cluster in clusters {
                if probes[cluster.index()].answers().await {
                    tracing::info!(%cluster, "cluster answers again: UP");
                    health.answered(cluster);
                }
            }
            if down(&health).is_empty() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            delay = delay
                .mul_f64(backoff.factor.max(1.0))
                .min(backoff.max_delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn lost() -> BackendError {
        BackendError::ConnectionLost {
            cluster: ClusterId::Target,
            addr: SocketAddr::from(([127, 0, 0, 1], 9042)),
            reason: "reset by peer".into(),
        }
    }

    #[test]
    fn consecutive_failures_at_the_threshold_make_a_cluster_down() {
        let h = Health::new(2);
        assert_eq!(h.overall(), Status::Startup);
        h.mark_started();
        assert_eq!(h.overall(), Status::Up);
        h.failed(&lost());
        assert_eq!(h.status(ClusterId::Target), Status::Up, "1 of 2");
        h.failed(&lost());
        assert_eq!(h.status(ClusterId::Target), Status::Down);
        assert_eq!(h.status(ClusterId::Origin), Status::Up);
        assert_eq!(h.overall(), Status::Down);
        let v = h.view(ClusterId::Target);
        assert_eq!((v.consecutive_failures, v.total_failures), (2, 2));
        assert!(v.last_failure.unwrap().contains("reset by peer"));
        h.answered(ClusterId::Target);
        assert_eq!(h.overall(), Status::Up);
        assert_eq!(h.view(ClusterId::Target).total_failures, 2);
    }

    #[test]
    fn running_out_of_stream_ids_is_not_the_clusters_fault() {
        let h = Health::new(1);
        h.mark_started();
        h.failed(&BackendError::StreamsExhausted {
            cluster: ClusterId::Origin,
            addr: SocketAddr::from(([127, 0, 0, 1], 9042)),
            limit: 2048,
        });
        assert_eq!(h.status(ClusterId::Origin), Status::Up);
    }
}
