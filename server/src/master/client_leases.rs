//! The lease checker: frees the exactly-once results of clients whose lease is dead.
//!
//! Every [`CHECK_INTERVAL`] it collects the clients whose lease looks expired at the cluster
//! time this master knows, or that have been idle for [`IDLE_CHECK_MS`] (a client that exits
//! releases its lease at the coordinator at once, but sends nothing more here), asks the
//! coordinator about them in batches (`CheckClientLeases`, authoritative: a lease it calls
//! dead is never renewed), and drops the dead clients' results
//! ([`UnackedResults::apply_lease_checks`](super::exactly_once::UnackedResults)). So under
//! client churn the table holds about (clients per second × ~3 s) records, not every client
//! ever seen.
//!
//! One thread per master, off the dispatch cores; a coordinator that cannot be reached only
//! delays freeing (results are kept, never dropped unconfirmed).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use faascache_protocol::msg::coordinator::{CheckClientLeasesRequest, MAX_LEASE_CHECKS};
use faascache_transport::{call, CallError, ClientConfig, CoordinatorLocator, Session};

use super::Master;

/// How often the checker runs.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A client this long without a request here has its lease checked.
pub const IDLE_CHECK_MS: u64 = 2_000;
/// Timeout of one `CheckClientLeases`.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Batches per round at most (a round then waits for the next interval).
const MAX_BATCHES: usize = 32;

/// Start the checker thread; it ends when `stop` turns true.
pub fn start(
    master: Arc<Master>,
    coordinator: CoordinatorLocator,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("faascache-leases".into())
        .spawn(move || {
            let mut session: Option<Session> = None;
            let mut died = master.results.died();
            while !stop.load(Ordering::Acquire) {
                sleep_unless_stopped(&stop, CHECK_INTERVAL);
                if session.as_ref().is_none_or(|s| s.failure().is_some()) {
                    session = coordinator.connect(ClientConfig::default()).ok();
                }
                if let Some(s) = &session {
                    if let Err(e) = round(&master, s) {
                        tracing::debug!(error = %e, "client lease check failed; retrying");
                        session = None;
                    }
                }
                master.results.prune_departed(master.cluster_time());
                let now_died = master.results.died();
                if now_died != died {
                    died = now_died;
                    master.engine.completions_changed();
                }
            }
        })
}

fn sleep_unless_stopped(stop: &AtomicBool, total: Duration) {
    let step = Duration::from_millis(100);
    let mut left = total;
    while !left.is_zero() && !stop.load(Ordering::Acquire) {
        let d = left.min(step);
        std::thread::sleep(d);
        left -= d;
    }
}

/// One round: check every candidate, in batches.
pub fn round(master: &Master, coordinator: &Session) -> Result<usize, CallError> {
    let mut dropped = 0;
    for _ in 0..MAX_BATCHES {
        let now = master.now_ms();
        let ids = master.results.lease_candidates(
            master.cluster_time(),
            now,
            IDLE_CHECK_MS,
            MAX_LEASE_CHECKS,
        );
        if ids.is_empty() {
            break;
        }
        let req = CheckClientLeasesRequest {
            client_ids: ids.clone(),
        };
        let (cluster_time, expirations) = call(coordinator, &req, CHECK_TIMEOUT, |r| {
            (r.cluster_time, r.expirations.clone())
        })?;
        if expirations.len() != ids.len() {
            tracing::warn!(
                asked = ids.len(),
                answered = expirations.len(),
                "the coordinator answered a lease check for the wrong number of clients; ignoring it"
            );
            break;
        }
        master.observe_cluster_time(cluster_time);
        let n = master
            .results
            .apply_lease_checks(&ids, &expirations, master.cluster_time(), now);
        if n > 0 {
            tracing::debug!(
                clients = ids.len(),
                results = n,
                "freed results of ended client leases"
            );
        }
        dropped += n;
        if ids.len() < MAX_LEASE_CHECKS {
            break;
        }
    }
    Ok(dropped)
}
