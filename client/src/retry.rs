//! The retry policy: exponential back-off with jitter, bounded by the call's deadline.
//!
//! A call starts a [`Backoff`] with the client's `min_backoff`, `max_backoff` and its deadline
//! (`now + timeout`). Each retryable answer asks [`Backoff::next_delay`] how long to sleep: the
//! delay doubles from `min` up to `max`, each sleep is drawn uniformly from `[d/2, d]` (so many
//! clients retrying together spread out), and no sleep runs past the deadline. `None` means the
//! deadline has passed: the call fails with [`crate::Error::Timeout`].

use std::time::{Duration, Instant};

/// Back-off state of one call.
///
/// ```
/// use std::time::{Duration, Instant};
/// use faascache_client::Backoff;
/// let mut b = Backoff::new(Duration::from_millis(1), Duration::from_millis(8),
///                          Instant::now() + Duration::from_secs(1));
/// let d = b.next_delay(Instant::now()).unwrap();
/// assert!(d <= Duration::from_millis(1));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    deadline: Instant,
    attempts: u32,
    rng: u64,
}

impl Backoff {
    /// A policy starting at `min`, doubling up to `max`, giving up at `deadline`.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let b = faascache_client::Backoff::new(Duration::from_micros(100), Duration::from_millis(100),
    ///                                        Instant::now());
    /// assert_eq!(b.attempts(), 0);
    /// ```
    pub fn new(min: Duration, max: Duration, deadline: Instant) -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ (&deadline as *const Instant as u64);
        Backoff {
            next: min.max(Duration::from_micros(1)),
            max: max.max(min),
            deadline,
            attempts: 0,
            rng: seed | 1,
        }
    }

    /// The deadline of the call.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let t = Instant::now();
    /// assert_eq!(faascache_client::Backoff::new(Duration::ZERO, Duration::ZERO, t).deadline(), t);
    /// ```
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Retries so far.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let mut b = faascache_client::Backoff::new(Duration::from_micros(1), Duration::from_micros(1),
    ///                                            Instant::now() + Duration::from_secs(1));
    /// b.next_delay(Instant::now());
    /// assert_eq!(b.attempts(), 1);
    /// ```
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time left before the deadline (zero once passed).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let b = faascache_client::Backoff::new(Duration::ZERO, Duration::ZERO, Instant::now());
    /// assert_eq!(b.remaining(Instant::now()), Duration::ZERO);
    /// ```
    pub fn remaining(&self, now: Instant) -> Duration {
        self.deadline.saturating_duration_since(now)
    }

    /// How long to sleep before the next attempt, or `None` if the deadline has passed.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let now = Instant::now();
    /// let mut b = faascache_client::Backoff::new(Duration::from_millis(1), Duration::from_millis(1), now);
    /// assert!(b.next_delay(now).is_none());
    /// ```
    pub fn next_delay(&mut self, now: Instant) -> Option<Duration> {
        let left = self.remaining(now);
        if left.is_zero() {
            return None;
        }
        self.attempts += 1;
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        // xorshift64: uniform jitter in [d/2, d].
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = d / 2;
        let span = (d - half).as_nanos() as u64;
        let jitter = if span == 0 { 0 } else { self.rng % (span + 1) };
        Some((half + Duration::from_nanos(jitter)).min(left))
    }

    /// Makes the next delays at least `floor` (still at most the maximum): for answers that
    /// mean "wait a little", such as a backed table's `RETRY` for an object being fetched from
    /// its store, where re-asking after 100 µs only adds load.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let now = Instant::now();
    /// let mut b = faascache_client::Backoff::new(Duration::from_micros(100), Duration::from_millis(50),
    ///                                            now + Duration::from_secs(1));
    /// b.at_least(Duration::from_millis(1));
    /// assert!(b.next_delay(now).unwrap() >= Duration::from_micros(500));
    /// ```
    pub fn at_least(&mut self, floor: Duration) {
        self.next = self.next.max(floor.min(self.max));
    }

    /// Sleeps for [`Backoff::next_delay`]; returns `false` (without sleeping) once the deadline
    /// has passed.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let mut b = faascache_client::Backoff::new(Duration::from_micros(10), Duration::from_micros(10),
    ///                                            Instant::now() + Duration::from_secs(1));
    /// assert!(b.sleep());
    /// ```
    pub fn sleep(&mut self) -> bool {
        match self.next_delay(Instant::now()) {
            Some(d) => {
                std::thread::sleep(d);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter() {
        let now = Instant::now();
        let min = Duration::from_micros(100);
        let max = Duration::from_millis(10);
        let mut b = Backoff::new(min, max, now + Duration::from_secs(100));
        let mut nominal = min;
        for i in 0..20 {
            let d = b.next_delay(now).unwrap();
            assert!(
                d >= nominal / 2 && d <= nominal,
                "attempt {i}: {d:?} not in [{:?}, {nominal:?}]",
                nominal / 2
            );
            nominal = (nominal * 2).min(max);
        }
        assert_eq!(b.attempts(), 20);
    }

    #[test]
    fn never_sleeps_past_the_deadline() {
        let now = Instant::now();
        let mut b = Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(1),
            now + Duration::from_millis(3),
        );
        assert!(b.next_delay(now).unwrap() <= Duration::from_millis(3));
        assert!(b.next_delay(now + Duration::from_millis(3)).is_none());
        assert!(b.next_delay(now + Duration::from_secs(9)).is_none());
    }

    #[test]
    fn a_floor_raises_the_delays_but_not_past_the_cap() {
        let now = Instant::now();
        let mut b = Backoff::new(
            Duration::from_micros(100),
            Duration::from_millis(50),
            now + Duration::from_secs(100),
        );
        b.at_least(Duration::from_millis(1));
        let mut nominal = Duration::from_millis(1);
        let mut total = Duration::ZERO;
        for _ in 0..12 {
            let d = b.next_delay(now).unwrap();
            assert!(d >= nominal / 2 && d <= nominal, "{d:?} vs {nominal:?}");
            total += d;
            nominal = (nominal * 2).min(Duration::from_millis(50));
            b.at_least(Duration::from_millis(1)); // asked every round: no effect once above
        }
        assert!(total <= Duration::from_millis(1 + 2 + 4 + 8 + 16 + 32 + 6 * 50));
        let mut low = Backoff::new(
            Duration::ZERO,
            Duration::from_micros(10),
            now + Duration::from_secs(1),
        );
        low.at_least(Duration::from_millis(1));
        assert!(low.next_delay(now).unwrap() <= Duration::from_micros(10));
    }

    #[test]
    fn degenerate_bounds_are_safe() {
        let now = Instant::now();
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO, now + Duration::from_secs(1));
        for _ in 0..100 {
            assert!(b.next_delay(now).unwrap() <= Duration::from_micros(1));
        }
    }
}
