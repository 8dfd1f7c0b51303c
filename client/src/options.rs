//! Options: reject rules for conditional operations and the client's tunables.

use std::time::Duration;

/// Conditions under which the server refuses an operation (RAMCloud's `RejectRules`): the
/// wire type itself, so what you build is exactly what the master checks. The default refuses
/// nothing.
///
/// ```
/// use faascache_client::RejectRules;
/// // Compare-and-swap: only if the object is at version 7.
/// let cas = RejectRules::version_is(7);
/// assert!(cas.doesnt_exist && cas.version_ne_given && cas.given_version == 7);
/// // Create-only.
/// assert!(RejectRules::must_not_exist().exists);
/// ```
pub use faascache_protocol::msg::RejectRules;

/// Options of one write, remove or increment.
///
/// ```
/// use faascache_client::{RejectRules, WriteOptions};
/// let o = WriteOptions::default().reject(RejectRules::must_not_exist());
/// assert!(o.reject.exists);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteOptions {
    /// Conditions under which the server refuses the operation.
    pub reject: RejectRules,
}

impl WriteOptions {
    /// With these reject rules.
    ///
    /// ```
    /// let o = faascache_client::WriteOptions::default()
    ///     .reject(faascache_client::RejectRules::version_is(2));
    /// assert_eq!(o.reject.given_version, 2);
    /// ```
    pub fn reject(mut self, reject: RejectRules) -> Self {
        self.reject = reject;
        self
    }
}

/// Options of one read.
///
/// ```
/// use faascache_client::{ReadOptions, RejectRules};
/// let o = ReadOptions::default().reject(RejectRules { version_le_given: true, given_version: 4, ..RejectRules::NONE });
/// assert!(o.reject.version_le_given);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadOptions {
    /// Conditions under which the server refuses the read.
    pub reject: RejectRules,
}

impl ReadOptions {
    /// With these reject rules.
    ///
    /// ```
    /// let o = faascache_client::ReadOptions::default()
    ///     .reject(faascache_client::RejectRules::must_exist());
    /// assert!(o.reject.doesnt_exist);
    /// ```
    pub fn reject(mut self, reject: RejectRules) -> Self {
        self.reject = reject;
        self
    }
}

/// Tunables of a [`crate::Client`].
///
/// ```
/// use std::time::Duration;
/// let o = faascache_client::ClientOptions::default().timeout(Duration::from_secs(2));
/// assert_eq!(o.timeout, Duration::from_secs(2));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Give up on a call (all its retries included) after this long. Default 5 s.
    pub timeout: Duration,
    /// First back-off delay after a retryable answer; doubles up to `max_backoff`. Default 100 µs.
    pub min_backoff: Duration,
    /// Longest back-off delay. Default 100 ms.
    pub max_backoff: Duration,
    /// Objects per RPC in multi-operations (RAMCloud uses 20). Default 20.
    pub multi_batch: usize,
    /// Transport options of every session (polling mode, connect timeout).
    pub transport: faascache_transport::ClientConfig,
    /// Whether writes, removes and increments are *tracked* (exactly-once: the client holds a
    /// lease from the coordinator and a retry returns the first result). Default `true`.
    /// Untracked mutations carry client id 0: no lease, no saved results on the masters, and a
    /// retry after a lost reply runs again (at most once per send) — for idempotent writes.
    pub tracked: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(5),
            min_backoff: Duration::from_micros(100),
            max_backoff: Duration::from_millis(100),
            multi_batch: 20,
            transport: faascache_transport::ClientConfig::default(),
            tracked: true,
        }
    }
}

impl ClientOptions {
    /// With this per-call timeout.
    ///
    /// ```
    /// let o = faascache_client::ClientOptions::default().timeout(std::time::Duration::from_millis(500));
    /// assert_eq!(o.timeout.as_millis(), 500);
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// With this many objects per multi-operation RPC (at least 1).
    ///
    /// ```
    /// assert_eq!(faascache_client::ClientOptions::default().multi_batch(0).multi_batch, 1);
    /// ```
    pub fn multi_batch(mut self, n: usize) -> Self {
        self.multi_batch = n.max(1);
        self
    }

    /// With these transport options (e.g. busy polling).
    ///
    /// ```
    /// use faascache_transport::{ClientConfig, PollMode};
    /// let o = faascache_client::ClientOptions::default()
    ///     .transport(ClientConfig { poll: PollMode::Spin, ..ClientConfig::default() });
    /// assert_eq!(o.transport.poll, PollMode::Spin);
    /// ```
    pub fn transport(mut self, cfg: faascache_transport::ClientConfig) -> Self {
        self.transport = cfg;
        self
    }

    /// Tracked (exactly-once, the default) or untracked mutations; see
    /// [`ClientOptions::tracked`](ClientOptions#structfield.tracked).
    ///
    /// ```
    /// let o = faascache_client::ClientOptions::default().tracked(false);
    /// assert!(!o.tracked);
    /// ```
    pub fn tracked(mut self, tracked: bool) -> Self {
        self.tracked = tracked;
        self
    }
}
