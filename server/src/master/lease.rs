//! The master lease: a master serves its tablets only while it holds a lease from the
//! coordinator, so that a master cut off from the cluster (frozen, partitioned, or outliving a
//! coordinator that declared it crashed) stops answering before its tablets are recovered
//! elsewhere — never a read of data that a recovery master has since overwritten.
//!
//! Rule (the coordinator's side is in `coordinator/service.rs` and `coordinator/recovery.rs`):
//! a heartbeat reply granting `lease_ms` makes the lease valid until *the instant the heartbeat
//! was sent* + `lease_ms`, on this process's monotonic clock. The coordinator records the
//! instant it granted the lease (after the send, so later in real time) and hands a crashed
//! master's tablets to recovery masters only after grant + lease + a margin for clock rate
//! differences. No synchronised clocks are needed, only monotonic clocks whose rates differ by
//! less than the margin (see `docs/operations.md`, "Leases").
//!
//! The check on the hot path ([`MasterLease::check`]) is one atomic load and one monotonic
//! clock read. A master built without a node (unit tests, tools) does not enforce a lease;
//! [`MasterLease::enforce`] turns it on before the server first enlists.
//!
//! Threading: `check` from any thread; `renew` and `revoke` from the heartbeat thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `until` value of a master that does not enforce a lease.
const UNENFORCED: u64 = u64::MAX;

/// Granularity of the "no contact for X ms" messages.
const MESSAGE_STEP_MS: u64 = 250;
/// Longest silence the messages name exactly; beyond it they say "more than".
const MESSAGE_MAX_MS: u64 = 30_000;

const NO_LEASE_YET: &str = "this master has no master lease yet (it has not heard from the \
     coordinator since it started) and does not serve: refresh the tablet map and retry";
const REVOKED: &str = "the coordinator declared this master crashed (its tablets are being \
     recovered on other masters) and it no longer serves: refresh the tablet map and retry";

/// A master's lease (see the module documentation).
#[derive(Debug)]
pub struct MasterLease {
    origin: Instant,
    /// Nanoseconds after `origin` until which the master may serve ([`UNENFORCED`]: always;
    /// 0: not before a grant).
    until: AtomicU64,
    /// Nanoseconds after `origin` at which the last answered heartbeat was sent.
    last_contact: AtomicU64,
    revoked: AtomicBool,
}

impl Default for MasterLease {
    fn default() -> Self {
        MasterLease {
            origin: Instant::now(),
            until: AtomicU64::new(UNENFORCED),
            last_contact: AtomicU64::new(0),
            revoked: AtomicBool::new(false),
        }
    }
}

impl MasterLease {
    /// A lease whose clock starts at `origin` (tests reach into the past with it).
    #[cfg(test)]
    fn starting_at(origin: Instant) -> MasterLease {
        MasterLease {
            origin,
            ..MasterLease::default()
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        // Saturates after 584 years of uptime.
        u64::try_from(t.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// From now on serve only under a lease (none is held until the first grant).
    pub fn enforce(&self) {
        let _ = self
            .until
            .compare_exchange(UNENFORCED, 0, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Whether a lease is enforced.
    pub fn enforced(&self) -> bool {
        self.until.load(Ordering::Acquire) != UNENFORCED
    }

    /// A heartbeat sent at `sent` was answered with a lease of `lease`: serve until
    /// `sent + lease` (a lease never shrinks; nothing after [`MasterLease::revoke`]).
    pub fn renew(&self, sent: Instant, lease: Duration) {
        let at = self.nanos(sent);
        self.last_contact.fetch_max(at, Ordering::AcqRel);
        if self.revoked.load(Ordering::Acquire) || !self.enforced() {
            return;
        }
        let until = at.saturating_add(u64::try_from(lease.as_nanos()).unwrap_or(u64::MAX - 1));
        self.until
            .fetch_max(until.min(UNENFORCED - 1), Ordering::AcqRel);
    }

    /// The coordinator declared this master dead: never serve again.
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
        self.until.store(0, Ordering::Release);
    }

    /// How long the lease still runs (`None`: not enforced; zero: expired).
    pub fn remaining(&self) -> Option<Duration> {
        let until = self.until.load(Ordering::Acquire);
        if until == UNENFORCED {
            return None;
        }
        Some(Duration::from_nanos(
            until.saturating_sub(self.nanos(Instant::now())),
        ))
    }

    /// `Ok` while the master may serve; else why not and what the client should do.
    #[inline]
    pub fn check(&self) -> Result<(), &'static str> {
        let until = self.until.load(Ordering::Acquire);
        if until == UNENFORCED {
            return Ok(());
        }
        let now = self.nanos(Instant::now());
        if now < until {
            return Ok(());
        }
        Err(self.why_not(now))
    }

    #[cold]
    fn why_not(&self, now: u64) -> &'static str {
        if self.revoked.load(Ordering::Acquire) {
            return REVOKED;
        }
        let last = self.last_contact.load(Ordering::Acquire);
        if last == 0 && self.until.load(Ordering::Acquire) == 0 {
            return NO_LEASE_YET;
        }
        silence_message(now.saturating_sub(last) / 1_000_000)
    }
}

/// "no contact with the coordinator for at least X ms", X rounded down to the step.
fn silence_message(ms: u64) -> &'static str {
    static TABLE: OnceLock<Vec<String>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut v: Vec<String> = (0..=MESSAGE_MAX_MS / MESSAGE_STEP_MS)
            .map(|i| {
                format!(
                    "this master has had no contact with the coordinator for at least {} ms, \
                     longer than its master lease, and stopped serving (its tablets may be \
                     recovered elsewhere): refresh the tablet map and retry",
                    i * MESSAGE_STEP_MS
                )
            })
            .collect();
        v.push(format!(
            "this master has had no contact with the coordinator for more than {MESSAGE_MAX_MS} \
             ms, longer than its master lease, and stopped serving (its tablets may be \
             recovered elsewhere): refresh the tablet map and retry"
        ));
        v
    });
    let i = usize::try_from(ms / MESSAGE_STEP_MS)
        .unwrap_or(usize::MAX)
        .min(table.len() - 1);
    &table[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unenforced_serves_enforced_needs_a_grant() {
        let l = MasterLease::default();
        assert!(l.check().is_ok());
        assert_eq!(l.remaining(), None);
        l.enforce();
        assert_eq!(l.check(), Err(NO_LEASE_YET));
        l.renew(Instant::now(), Duration::from_secs(60));
        assert!(l.check().is_ok());
        assert!(l.remaining().unwrap() > Duration::from_secs(59));
    }

    #[test]
    fn lease_runs_from_the_send_instant_and_expires() {
        let l = MasterLease::starting_at(Instant::now() - Duration::from_secs(10));
        l.enforce();
        // Sent 2 s ago with a 1 s lease: already over.
        let sent = Instant::now() - Duration::from_secs(2);
        l.renew(sent, Duration::from_secs(1));
        let why = l.check().unwrap_err();
        assert!(
            why.contains("no contact with the coordinator for at least 2000 ms")
                && why.contains("refresh the tablet map and retry"),
            "{why}"
        );
        assert_eq!(l.remaining(), Some(Duration::ZERO));
        // An older grant does not shorten a newer one.
        l.renew(Instant::now(), Duration::from_secs(30));
        l.renew(sent, Duration::from_secs(1));
        assert!(l.check().is_ok());
    }

    #[test]
    fn revoked_never_serves_again() {
        let l = MasterLease::default();
        l.enforce();
        l.renew(Instant::now(), Duration::from_secs(30));
        l.revoke();
        assert_eq!(l.check(), Err(REVOKED));
        l.renew(Instant::now(), Duration::from_secs(30));
        assert_eq!(l.check(), Err(REVOKED));
    }

    #[test]
    fn messages_are_bounded() {
        assert!(silence_message(u64::MAX).contains("more than 30000 ms"));
        assert!(silence_message(1_100).contains("at least 1000 ms"));
    }
}
