//! Tunables of the storage engine, in one place, each with its reason.
//!
//! Everything a deployment may want to change is a field of [`EngineConfig`]; the constants
//! below are limits of the format or the defaults behind those fields.

use super::error::ConfigError;

/// Largest key and value, in bytes: the protocol's limits (keys up to 65 535 bytes, as the log
/// stores key lengths in 16 bits; values up to 1 MiB, RAMCloud's limit — bigger things belong in
/// chunked objects). One definition, so the engine and the wire cannot disagree.
pub use faascache_protocol::{MAX_KEY_LEN, MAX_VALUE_LEN};
/// Default seglet size: small enough that a compacted segment returns memory in fine steps,
/// large enough that a seglet holds hundreds of 100 B objects (RAMCloud: 64 KiB).
pub const DEFAULT_SEGLET_BYTES: usize = 64 * 1024;
/// Default segment size: the unit of replication and of level-2 cleaning (RAMCloud: 8 MiB).
pub const DEFAULT_SEGMENT_BYTES: usize = 8 * 1024 * 1024;
/// Memory is "low" (level-2 cleaning or eviction needed) when utilisation reaches
/// max(LOW_MEMORY_MIN, (1 + live) / 2) — RAMCloud's rule from the FAST'14 paper.
pub const LOW_MEMORY_MIN: f64 = 0.90;
/// Number of lock stripes of the hash table. A power of two; enough that two dispatch cores
/// and the cleaner almost never meet on one stripe.
pub const HASH_LOCK_STRIPES: usize = 4096;

/// Configuration of one storage engine (one master's object store).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Bytes of log memory the engine may use now (rounded down to whole seglets).
    pub memory_bytes: usize,
    /// Upper bound for [`crate::Engine::resize`]: the address space reserved at start.
    /// Reserving costs no memory (it is mapped `MAP_NORESERVE`), only address space.
    pub max_memory_bytes: usize,
    /// Size of a seglet, a power of two.
    pub seglet_bytes: usize,
    /// Size of a segment, a multiple of `seglet_bytes`.
    pub segment_bytes: usize,
    /// Number of hash-table buckets (rounded up to a power of two); 8 entries of 8 bytes each.
    /// `None` sizes the table for one entry per 128 bytes of memory.
    pub hash_buckets: Option<usize>,
    /// Ask the kernel for transparent huge pages on the arena (`MADV_HUGEPAGE`): fewer TLB
    /// misses on random reads (measured: 229 → 184 ns per random load over 160 MiB here).
    pub huge_pages: bool,
    /// Id of the log (the master's server id); written in every segment header.
    pub log_id: u64,
    /// Run the cleaner in a background thread. Tests that want determinism turn it off and
    /// call [`crate::Engine::clean`] themselves.
    pub background_cleaner: bool,
    /// Seglets kept back for the cleaner's survivor segments so it can always make progress.
    /// `None` reserves two segments' worth.
    pub cleaner_reserve_seglets: Option<usize>,
    /// Free log memory a background thread keeps faulted in ahead of the log head (with the
    /// background cleaner only): writes opening fresh segments copy into resident pages instead
    /// of taking page faults on a dispatch core. `memory_bytes` or more faults the whole log
    /// in at start (resident memory is then the budget from the start); 0 turns it off.
    pub warm_ahead_bytes: usize,
}

/// Default of [`EngineConfig::warm_ahead_bytes`]: a few segments' worth.
pub const DEFAULT_WARM_AHEAD_BYTES: usize = 64 << 20;

impl EngineConfig {
    /// A configuration with `memory_bytes` of log memory and every other field at its default.
    pub fn with_memory(memory_bytes: usize) -> Self {
        EngineConfig {
            memory_bytes,
            max_memory_bytes: memory_bytes,
            seglet_bytes: DEFAULT_SEGLET_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            hash_buckets: None,
            huge_pages: true,
            log_id: 0,
            background_cleaner: true,
            cleaner_reserve_seglets: None,
            warm_ahead_bytes: DEFAULT_WARM_AHEAD_BYTES,
        }
    }

    /// Checks the configuration and returns the first rule it breaks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: String| Err(ConfigError(what));
        if !self.seglet_bytes.is_power_of_two() || self.seglet_bytes < 1024 {
            return bad(format!(
                "seglet size {} must be a power of two of at least 1 KiB",
                self.seglet_bytes
            ));
        }
        if !self.segment_bytes.is_multiple_of(self.seglet_bytes)
            || self.segment_bytes < self.seglet_bytes
        {
            return bad(format!(
                "segment size {} must be a non-zero multiple of the seglet size {}",
                self.segment_bytes, self.seglet_bytes
            ));
        }
        if self.segment_bytes > (1 << 30) {
            return bad(format!("segment size {} exceeds 1 GiB", self.segment_bytes));
        }
        // A segment must hold its header, a digest and some objects. Objects larger than a
        // segment's room are refused at write time with `ValueTooLarge` naming the limit
        // (the default 8 MiB segment holds the largest object, 1 MiB value + 64 KiB key).
        if self.segment_bytes < 16 * 1024 {
            return bad(format!(
                "segment size {} is below 16 KiB",
                self.segment_bytes
            ));
        }
        if self.max_memory_bytes < self.memory_bytes {
            return bad(format!(
                "max memory {} is below memory {}",
                self.max_memory_bytes, self.memory_bytes
            ));
        }
        let min_memory = self.segment_bytes * 2 + self.reserve_seglets() * self.seglet_bytes;
        if self.memory_bytes < min_memory {
            return bad(format!(
                "memory {} bytes is too small: the log needs at least {} bytes \
                 (two segments plus the cleaner's reserve)",
                self.memory_bytes, min_memory
            ));
        }
        if self.max_memory_bytes / self.seglet_bytes >= u32::MAX as usize {
            return bad("max memory holds more than 2^32 seglets".into());
        }
        if self.max_memory_bytes >= (1usize << 47) {
            return bad("max memory must stay below 128 TiB (47-bit log references)".into());
        }
        Ok(())
    }

    /// Largest object entry (key + value + object header) a segment can take: room left after
    /// the segment header and a log digest naming a few segments.
    pub fn max_object_entry_bytes(&self) -> usize {
        self.segment_bytes - 1024
    }

    /// Seglets per segment.
    pub fn seglets_per_segment(&self) -> usize {
        self.segment_bytes / self.seglet_bytes
    }

    /// Seglets reserved for the cleaner.
    pub fn reserve_seglets(&self) -> usize {
        self.cleaner_reserve_seglets
            .unwrap_or(2 * self.segment_bytes / self.seglet_bytes)
    }

    /// Number of hash-table buckets, a power of two.
    pub fn buckets(&self) -> usize {
        let wanted = self
            .hash_buckets
            .unwrap_or(self.memory_bytes / 128 / 8)
            .max(HASH_LOCK_STRIPES);
        wanted.next_power_of_two()
    }
}
