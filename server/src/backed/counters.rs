//! The backed tables' counters on one master, reported by `GetServerInfo` (`status`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use faascache_protocol::msg::faas::CacheInfo;

/// Counters (monotonic unless noted); every field is updated with relaxed atomics.
#[derive(Debug, Default)]
pub struct Counters {
    /// Hits on backed tables.
    pub hits: AtomicU64,
    /// Misses read through from the store.
    pub misses: AtomicU64,
    /// Misses answered from the negative cache.
    pub negative_hits: AtomicU64,
    /// Store reads (GET, conditional GET, HEAD).
    pub store_reads: AtomicU64,
    /// Store reads that failed.
    pub store_read_errors: AtomicU64,
    /// Objects passed through without being cached.
    pub not_admitted: AtomicU64,
    /// Clean objects dropped by invalidation or revalidation.
    pub invalidated: AtomicU64,
    /// Uploads (PUT or DELETE) that succeeded.
    pub uploads: AtomicU64,
    /// Uploads that failed (retried).
    pub upload_errors: AtomicU64,
    /// The store's last error.
    last_error: parking_lot::Mutex<String>,
}

impl Counters {
    /// Add one to a counter.
    #[inline]
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    /// Remember the store's last error (shown by `status`; at most 1 KiB of it).
    pub fn set_last_error(&self, e: &dyn std::fmt::Display) {
        let mut s = e.to_string();
        if s.len() > 1000 {
            let mut cut = 1000;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        *self.last_error.lock() = s;
    }

    /// The store's last error ("" if none).
    pub fn last_error(&self) -> String {
        self.last_error.lock().clone()
    }

    /// The counters as `GetServerInfo` carries them; the write-back queue's gauges
    /// (`dirty_*`, `oldest_dirty_ms`, `dirty_limit_bytes`) and `evicted` are the caller's.
    pub fn info<'a>(&self, last_error: &'a str) -> CacheInfo<'a> {
        CacheInfo {
            uploads: self.uploads.load(Relaxed),
            upload_errors: self.upload_errors.load(Relaxed),
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            negative_hits: self.negative_hits.load(Relaxed),
            store_reads: self.store_reads.load(Relaxed),
            store_read_errors: self.store_read_errors.load(Relaxed),
            not_admitted: self.not_admitted.load(Relaxed),
            invalidated: self.invalidated.load(Relaxed),
            last_error,
            ..CacheInfo::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_reports_counters_and_a_bounded_error() {
        let c = Counters::default();
        Counters::bump(&c.hits);
        Counters::bump(&c.hits);
        Counters::bump(&c.upload_errors);
        c.set_last_error(&"é".repeat(600));
        let e = c.last_error();
        assert!(e.len() <= 1000 && e.is_char_boundary(e.len()));
        let i = c.info(&e);
        assert_eq!((i.hits, i.upload_errors, i.misses), (2, 1, 0));
    }
}
