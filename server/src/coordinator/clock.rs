//! Cluster time: the clock client leases are measured in.
//!
//! Cluster time is the coordinator's wall clock in milliseconds since the Unix epoch, made
//! monotonic within one coordinator process (it never moves backwards, even if the wall clock
//! is stepped back). Masters only ever learn it from the coordinator (heartbeat replies, the
//! `timestamp` of client leases, `CheckClientLeases` replies), so their view of it trails the
//! coordinator's. A standby coordinator that takes over continues from its own wall clock: the
//! coordinators' clocks must agree to well within half a client-lease term (NTP-synchronised
//! hosts; see `docs/operations.md`, "Leases").

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A monotonic millisecond clock.
#[derive(Debug, Default)]
pub struct ClusterClock {
    last: AtomicU64,
}

impl ClusterClock {
    /// The cluster time now (ms): never less than an earlier answer.
    pub fn now_ms(&self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let prev = self.last.fetch_max(wall, Ordering::AcqRel);
        prev.max(wall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_moves_backwards() {
        let c = ClusterClock::default();
        let a = c.now_ms();
        assert!(a > 1_600_000_000_000, "milliseconds since the epoch");
        c.last.store(a + 60_000, Ordering::Relaxed);
        assert_eq!(
            c.now_ms(),
            a + 60_000,
            "a wall clock stepped back is not followed"
        );
    }
}
