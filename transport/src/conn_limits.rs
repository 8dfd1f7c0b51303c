//! Limits on what clients of a stream server may hold: connections, buffered request bytes,
//! silent and stalled connections ([`ConnLimits`], part of [`crate::DispatchConfig`]), and the
//! shared pieces that enforce them: the byte budget every connection's reader draws from and a
//! rate-limited log of refusals.
//!
//! Memory a stream server spends on requests is bounded by
//! `max_connections × STREAM_READ_BUFFER_INITIAL + max_buffered_bytes` (plus, per connection,
//! at most `STREAM_MAX_QUEUED_REPLY_BYTES` of replies the client has not read).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::limits;

/// Per-server connection limits. Defaults in [`crate::limits`]; `faascache server` and
/// `faascache coordinator` take each as a flag (see `docs/operations.md`, "Connection limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Most open connections; beyond it new ones are accepted and closed at once.
    pub max_connections: usize,
    /// Most request bytes buffered over all connections (read buffers beyond their first 4 KiB,
    /// large messages reserved whole at their header); a connection that needs more waits.
    pub max_buffered_bytes: usize,
    /// A connection that has sent no complete request this long after it was accepted, and
    /// holds no partial one, is closed.
    pub idle_timeout: Duration,
    /// A connection holding a partial request that sends no byte for this long is closed.
    pub stall_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: limits::DEFAULT_MAX_CONNECTIONS,
            max_buffered_bytes: limits::DEFAULT_MAX_BUFFERED_BYTES,
            idle_timeout: limits::DEFAULT_IDLE_TIMEOUT,
            stall_timeout: limits::DEFAULT_STALL_TIMEOUT,
        }
    }
}

impl ConnLimits {
    /// How often a dispatch thread checks its connections' timers: a quarter of the shorter
    /// timeout, between 10 ms and 1 s.
    pub(crate) fn sweep_interval(&self) -> Duration {
        (self.idle_timeout.min(self.stall_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

/// Bytes of request buffers one server may hold, shared by its dispatch threads.
#[derive(Debug)]
pub(crate) struct ByteBudget {
    used: AtomicUsize,
    limit: usize,
}

impl ByteBudget {
    pub(crate) fn new(limit: usize) -> Self {
        ByteBudget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Reserve `n` bytes if they fit under the limit.
    pub(crate) fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit)
            })
            .is_ok()
    }

    /// Reserve `n` bytes for a buffer kept for reuse, only while at most half the limit is
    /// used with it: kept buffers never crowd out the requests being received.
    pub(crate) fn try_take_spare(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit / 2)
            })
            .is_ok()
    }

    /// Return `n` bytes taken earlier.
    pub(crate) fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Bytes reserved now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// Logs refusals at most once per [`limits::REFUSAL_LOG_INTERVAL`], each line with the count
/// since the previous one (a flood of refusals must not become a flood of log lines).
#[derive(Debug)]
pub(crate) struct RefusalLog {
    state: Mutex<(Option<Instant>, u64)>,
    what: &'static str,
}

impl RefusalLog {
    pub(crate) fn new(what: &'static str) -> Self {
        RefusalLog {
            state: Mutex::new((None, 0)),
            what,
        }
    }

    /// Count one refusal; log if the interval has passed. `why` says what limit and what to do.
    pub(crate) fn refused(&self, why: &dyn std::fmt::Display) {
        let mut st = self.state.lock();
        st.1 += 1;
        let now = Instant::now();
        if st
            .0
            .is_none_or(|t| now.duration_since(t) >= limits::REFUSAL_LOG_INTERVAL)
        {
            tracing::warn!(
                refused = st.1,
                "{}: {why} ({} since the last such line)",
                self.what,
                st.1
            );
            *st = (Some(now), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refuses_beyond_its_limit_and_takes_returns() {
        let b = ByteBudget::new(100);
        assert!(b.try_take(60));
        assert!(!b.try_take(41));
        assert!(b.try_take(40));
        assert_eq!(b.used(), 100);
        b.give(60);
        assert!(b.try_take(60));
        assert!(!b.try_take(usize::MAX));
    }
}
