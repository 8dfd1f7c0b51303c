//! The client lease's state (a leaf module: `Inner` in `client.rs` holds it, `lease.rs` drives
//! it). See `lease.rs` for the mechanism.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faascache_protocol::msg::coordinator::ReleaseClientLeaseRequest;
use faascache_protocol::msg::ClientLease;
use faascache_transport::Session;
use parking_lot::{Condvar, Mutex};

/// Longest a dropped client waits for the coordinator to acknowledge the release.
pub const RELEASE_TIMEOUT: Duration = Duration::from_millis(500);

/// A client's lease as last granted (see [`crate::Client::lease`]).
///
/// ```
/// let l = faascache_client::lease::LeaseInfo::default();
/// assert_eq!(l.client_id, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaseInfo {
    /// The client id (0: none yet, or untracked).
    pub client_id: u64,
    /// Expiration, cluster time (ms).
    pub expiration: u64,
    /// The coordinator's cluster time when it granted the lease (ms).
    pub timestamp: u64,
}

/// The lease a request is stamped with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct LeaseSnap {
    /// 0 = untracked.
    pub client_id: u64,
    pub lease: ClientLease,
}

#[derive(Debug, Default)]
pub(crate) struct LeaseState {
    pub(crate) snap: LeaseSnap,
    /// Renew from here on (None: never, e.g. a lease without expiry).
    pub(crate) renew_at: Option<Instant>,
    /// The lease is surely over by here (local clock).
    pub(crate) expires_at: Option<Instant>,
    /// The lease's length.
    pub(crate) term: Duration,
    /// The coordinator cannot grant leases (an older version): untracked for good.
    pub(crate) no_leases: bool,
}

/// Lease state of one client (inside its `Inner`).
#[derive(Debug, Default)]
pub(crate) struct Leases {
    pub(crate) state: Mutex<LeaseState>,
    /// Held while a lease RPC runs (one at a time).
    pub(crate) renewing: Mutex<()>,
    /// Stop flag and wake-up of the renewal thread.
    pub(crate) stop: Arc<(Mutex<bool>, Condvar)>,
    pub(crate) thread_started: AtomicBool,
}

impl Leases {
    /// Stops the renewal thread and releases the lease (from `Inner::drop`).
    pub(crate) fn shut_down(&self, coordinator: Option<&Session>, timeout: Duration) {
        {
            let (m, cv) = &*self.stop;
            *m.lock() = true;
            cv.notify_all();
        }
        let id = self.state.lock().snap.client_id;
        let Some(s) = coordinator.filter(|s| s.failure().is_none()) else {
            return;
        };
        if id != 0 {
            let req = ReleaseClientLeaseRequest { client_id: id };
            if let Err(e) = faascache_transport::call(s, &req, timeout.min(RELEASE_TIMEOUT), |_| ())
            {
                tracing::debug!(client_id = id, error = %e, "lease release not acknowledged; it expires within its term");
            }
        }
    }
}

/// `t + d`, `None` if it overflows.
pub(crate) fn add(t: Instant, d: Duration) -> Option<Instant> {
    t.checked_add(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_deadlines_do_not_overflow() {
        assert!(add(Instant::now(), Duration::MAX).is_none());
        let t = Instant::now();
        assert_eq!(
            add(t, Duration::from_secs(1)),
            Some(t + Duration::from_secs(1))
        );
    }
}
