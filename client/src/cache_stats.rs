//! A master's counters for its backed tables, as `GetServerInfo` reports them (owned).

use faascache_protocol::msg::faas::CacheInfo;

/// Backed-table counters of one master ([`crate::ServerStats::cache`]); `faascache status`
/// prints them.
///
/// ```
/// let c = faascache_client::CacheStats::default();
/// assert_eq!(c.dirty_objects, 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Objects not yet in their store (write-back queue).
    pub dirty_objects: u64,
    /// Their bytes.
    pub dirty_bytes: u64,
    /// Age of the oldest queued upload, ms (0: none).
    pub oldest_dirty_ms: u64,
    /// The dirty-bytes limit beyond which writes get `WRITE_BACK_FULL`.
    pub dirty_limit_bytes: u64,
    /// Uploads that succeeded.
    pub uploads: u64,
    /// Uploads that failed (and will be retried).
    pub upload_errors: u64,
    /// Hits on backed tables.
    pub hits: u64,
    /// Misses read through from the store.
    pub misses: u64,
    /// Misses answered from the negative cache.
    pub negative_hits: u64,
    /// Store reads (GET, conditional GET, HEAD).
    pub store_reads: u64,
    /// Store reads that failed.
    pub store_read_errors: u64,
    /// Objects passed through without being cached (above the admission limit).
    pub not_admitted: u64,
    /// Clean objects dropped by invalidation or revalidation.
    pub invalidated: u64,
    /// Clean objects of backed tables evicted by the cleaner.
    pub evicted: u64,
    /// The store's last error (empty: none since the server started).
    pub last_error: String,
}

impl From<&CacheInfo<'_>> for CacheStats {
    fn from(c: &CacheInfo<'_>) -> Self {
        CacheStats {
            dirty_objects: c.dirty_objects,
            dirty_bytes: c.dirty_bytes,
            oldest_dirty_ms: c.oldest_dirty_ms,
            dirty_limit_bytes: c.dirty_limit_bytes,
            uploads: c.uploads,
            upload_errors: c.upload_errors,
            hits: c.hits,
            misses: c.misses,
            negative_hits: c.negative_hits,
            store_reads: c.store_reads,
            store_read_errors: c.store_read_errors,
            not_admitted: c.not_admitted,
            invalidated: c.invalidated,
            evicted: c.evicted,
            last_error: c.last_error.to_string(),
        }
    }
}
