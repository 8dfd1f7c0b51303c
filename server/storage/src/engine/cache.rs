//! Hits that keep an object cached: promotion of clean objects of evictable tables.
//!
//! The cleaner evicts the oldest segments first (by the mean write time of their data), so on
//! its own eviction is FIFO by fill or write time: an object read a thousand times is dropped
//! as soon as one read once, filled at the same moment. [`Engine::promote_if_old`] gives hot
//! objects a second chance: a hit on a clean object written before the *horizon* — the median
//! data age of the log's segments — appends it again at the head (same version,
//! same bytes, still clean), so the next eviction passes skip it. Objects hit at least once per
//! half a log's lifetime stay; the rest age out in write order. The policy approximates LRU the
//! way segmented FIFO / CLOCK do (an object is moved at most once per half log age, not on
//! every hit), at the price of one copy of the object per promotion. Dirty objects are never
//! evicted and are not promoted.

use super::*;

/// How often (engine-clock seconds) the horizon is recomputed from the segments.
const HORIZON_REFRESH_SECS: u32 = 1;

impl Inner {
    /// The median data age of the log's segments: objects written before it are in the older
    /// half of the log, the half eviction takes first (recomputed at most once a second). A
    /// median, not the midpoint between the oldest data and now: segments of dirty objects
    /// that are never evicted keep their old timestamps and would pin the oldest forever.
    fn promotion_horizon(&self, now: u32) -> u32 {
        let p = &self.promotion;
        let at = p.computed_at.load(Ordering::Relaxed);
        if at != 0 && now.saturating_sub(at) < HORIZON_REFRESH_SECS {
            return p.horizon.load(Ordering::Relaxed);
        }
        let (segs, _) = self.log.segments();
        let mut ts: Vec<u32> = segs
            .iter()
            .filter(|s| self.log.live_bytes(s) > 0)
            .map(|s| s.timestamp().min(now))
            .collect();
        let horizon = if ts.is_empty() {
            now
        } else {
            let mid = ts.len() / 2;
            *ts.select_nth_unstable(mid).1
        };
        p.horizon.store(horizon, Ordering::Relaxed);
        p.computed_at.store(now.max(1), Ordering::Relaxed);
        horizon
    }
}

impl Engine {
    /// On a hit: if the object is a clean object of an evictable table, still at `version`,
    /// and was written before the promotion horizon (see the module documentation), append it
    /// again at the head so that eviction, which takes the oldest segments first, keeps it.
    /// Returns whether it was promoted. Costs a lookup when it does not promote and one copy
    /// of the object when it does; `NoSpace` is answered `Ok(false)` (a full log is the
    /// cleaner's to fix, and the object stays where it is).
    pub fn promote_if_old(
        &self,
        table: TableId,
        key: &[u8],
        version: u64,
    ) -> Result<bool, StorageError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let horizon = inner.promotion_horizon(now);
        let (info, mut g, existing) = inner.locate(table, key)?;
        if !info.evictable.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let Some(e) = existing else { return Ok(false) };
        if !e.found.clean || e.version != version {
            return Ok(false);
        }
        // A promotion happens at most once per object per half a log's age: a fresh buffer
        // is cheap enough, and `put_locked` uses the engine's scratch buffer itself.
        let addr = e.found.addr;
        let (h, old) = inner
            .log
            .with_entry_prefix(addr, format::OBJECT_FIXED, |h, fixed| {
                let ts = format::le32(fixed, 16) & !format::DIRTY_BIT;
                (h, ts < horizon && ts < now)
            });
        if !old {
            return Ok(false);
        }
        let mut value = Vec::new();
        let at = format::OBJECT_FIXED + key.len();
        inner
            .log
            .read_body(addr, &h, at, h.body_len - at, &mut value);
        let promoted = match inner.put_locked(
            &mut g,
            &info,
            table,
            key,
            &value,
            Some(e),
            true,
            Some(version),
            None,
        ) {
            Ok(_) => true,
            Err(StorageError::NoSpace) => false,
            Err(e) => return Err(e),
        };
        if promoted {
            inner.promotion.promoted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(promoted)
    }
}

impl Engine {
    /// Reads bytes `offset..offset + max_len` of an object's value (fewer at its end): appends
    /// them to `out` and returns the object's version and whole value length. Large objects
    /// are served a piece at a time without copying whole values.
    pub fn read_range(
        &self,
        table: TableId,
        key: &[u8],
        offset: usize,
        max_len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(u64, usize), StorageError> {
        check_key(key)?;
        let inner = &self.inner;
        inner.check_table(table)?;
        let fixed = format::OBJECT_FIXED + key.len();
        inner.with_object(table, key, |found| {
            let (addr, h, version) = found.ok_or(StorageError::ObjectDoesntExist)?;
            let value_len = h.body_len - fixed;
            let from = offset.min(value_len);
            let n = max_len.min(value_len - from);
            inner.log.read_body(addr, &h, fixed + from, n, out);
            Ok((version, value_len))
        })
    }
}
