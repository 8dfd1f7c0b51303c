//! Memory management of the engine: live resize, explicit cleaning, the background cleaner's
//! loop and policy, and the callbacks the log and the cleaner use (head metadata, liveness and
//! relocation of entries).

use super::*;

impl Engine {
    /// Changes the memory the log may use. Growing takes effect at once (up to the space
    /// reserved at start). Shrinking cleans — and evicts clean objects of cache tables — until
    /// the data fits; if it cannot, nothing changes and the error says how much is needed.
    pub fn resize(&self, bytes: usize) -> Result<(), ResizeError> {
        let inner = &self.inner;
        let cfg = &inner.log.config;
        let arena = &inner.log.arena;
        let max = arena.total_seglets() * cfg.seglet_bytes;
        if bytes > max {
            return Err(ResizeError::AboveReservation {
                requested: bytes,
                max,
            });
        }
        let min = cfg.segment_bytes * 2 + cfg.reserve_seglets() * cfg.seglet_bytes;
        if bytes < min {
            return Err(ResizeError::BelowMinimum {
                requested: bytes,
                min,
            });
        }
        let target = bytes / cfg.seglet_bytes;
        if target >= arena.budget() {
            arena.set_budget_seglets(target);
            return Ok(());
        }
        // Shrink: clean until the allocated seglets fit the new budget, keeping one head
        // segment and the cleaner's reserve available for writes to continue.
        inner.shrink_target.store(target as u64, Ordering::Relaxed);
        let goal = target.saturating_sub(cfg.reserve_seglets());
        // Each pass either frees seglets or is a stall; give up after a few stalls in a row,
        // or when the passes stop making headway overall.
        let max_passes = 8 + 4 * inner.log.segments().0.len();
        let mut stalled = 0;
        let mut passes = 0;
        while arena.in_use() > goal && stalled < 3 && passes < max_passes {
            let before = arena.in_use();
            let _g = inner.cleaning.lock();
            inner.clean_pass(Want::Shrink);
            passes += 1;
            if arena.in_use() >= before {
                stalled += 1;
            } else {
                stalled = 0;
            }
        }
        inner.shrink_target.store(u64::MAX, Ordering::Relaxed);
        if arena.in_use() > goal {
            let needed = (arena.in_use() + cfg.reserve_seglets()) * cfg.seglet_bytes;
            return Err(ResizeError::LiveDataTooLarge {
                requested: bytes,
                needed,
            });
        }
        arena.set_budget_seglets(target);
        Ok(())
    }

    /// Runs one cleaning pass now (level 1 or 2 as the policy chooses) and reports it.
    pub fn clean(&self) -> CleanReport {
        let _g = self.inner.cleaning.lock();
        self.inner.clean_pass(Want::Auto)
    }

    /// Runs one pass of the given kind now (tests and benchmarks).
    pub fn clean_with(&self, want: Want) -> CleanReport {
        let _g = self.inner.cleaning.lock();
        self.inner.clean_pass(want)
    }
}

impl Inner {
    /// Free seglets (beyond the reserve) below which the background cleaner works.
    pub(super) fn low_water(&self) -> usize {
        let cfg = &self.log.config;
        cfg.reserve_seglets() + cfg.seglets_per_segment().max(self.log.arena.budget() / 10)
    }

    pub(crate) fn poke_cleaner(&self) {
        let mut w = self.wake_lock.lock();
        *w = true;
        self.wake.notify_one();
    }

    pub(super) fn cleaner_loop(&self) {
        while !self.stop.load(Ordering::Relaxed) {
            {
                let mut w = self.wake_lock.lock();
                if !*w {
                    self.wake.wait_for(&mut w, Duration::from_millis(50));
                }
                *w = false;
            }
            // Clean while memory is low; stop when a pass frees nothing (all data is live).
            loop {
                if self.stop.load(Ordering::Relaxed) || !self.needs_cleaning() {
                    break;
                }
                let r = {
                    let _g = self.cleaning.lock();
                    self.clean_pass(Want::Auto)
                };
                if r.seglets_freed == 0 {
                    break;
                }
            }
        }
    }

    fn needs_cleaning(&self) -> bool {
        let a = &self.log.arena;
        a.in_use() + self.low_water() > a.budget() || self.log_too_long()
    }

    /// Whether the log's size on backups (whole segments, compacted or not) has outgrown the
    /// space we allow for it, so level-2 cleaning must shorten it.
    pub(crate) fn log_too_long(&self) -> bool {
        let (segs, _) = self.log.segments();
        let cfg = &self.log.config;
        segs.len() * cfg.segment_bytes
            > cleaner::BACKUP_EXPANSION * self.log.arena.budget() * cfg.seglet_bytes
    }

    fn clean_pass(&self, want: Want) -> CleanReport {
        let evict = self.should_evict(want);
        let now = self.clock.now();
        let r = cleaner::clean_pass(&self.log, self, self, now, want, evict, self.log_too_long());
        self.counters.add(&r);
        // Live bytes under the eviction threshold, yet the pass left no room for a new head
        // segment (the slack at the end of each segment counts as used): a cache that evicted
        // nothing now would answer every write NoSpace. Evict instead.
        let cfg = &self.log.config;
        let a = &self.log.arena;
        let short = a.in_use() + cfg.reserve_seglets() + cfg.seglets_per_segment() > a.budget();
        if short && !evict && want == Want::Auto && self.any_evictable() {
            let r = cleaner::clean_pass(&self.log, self, self, now, want, true, false);
            self.counters.add(&r);
            return r;
        }
        r
    }

    fn any_evictable(&self) -> bool {
        self.tables
            .read()
            .values()
            .any(|t| t.evictable.load(Ordering::Relaxed))
    }

    fn should_evict(&self, want: Want) -> bool {
        if !self.any_evictable() {
            return false;
        }
        if want == Want::Shrink || want == Want::Evict {
            return true;
        }
        let cfg = &self.log.config;
        let (segs, _) = self.log.segments();
        let live: usize = segs.iter().map(|s| self.log.live_bytes(s)).sum();
        // Memory writers can fill: the budget less the cleaner's reserve and one head segment.
        let usable = self
            .log
            .arena
            .budget()
            .saturating_sub(cfg.reserve_seglets() + cfg.seglets_per_segment())
            * cfg.seglet_bytes;
        let budget = usable;
        live as f64 > cleaner::EVICT_LIVE_FRACTION * budget as f64
    }
}

impl HeadMetadata for Inner {
    fn safe_version(&self) -> u64 {
        self.next_version.load(Ordering::Relaxed)
    }

    fn table_stats(&self) -> Vec<TableStat> {
        let mut v: Vec<TableStat> = self
            .tables
            .read()
            .iter()
            .map(|(&table, t)| TableStat {
                table,
                bytes: t.bytes.load(Ordering::Relaxed).max(0) as u64,
                objects: t.objects.load(Ordering::Relaxed).max(0) as u64,
            })
            .collect();
        v.sort_unstable_by_key(|s| s.table);
        v
    }
}

impl LogEntryHandlers for Inner {
    fn is_obsolete(&self, ty: EntryType, body: &[u8]) -> bool {
        match ty {
            EntryType::Tombstone => body.len() >= 16 && !self.log.segment_exists(le64(body, 8)),
            EntryType::Completion => !self.completion_live(body),
            _ => false,
        }
    }

    fn prefetch(&self, ty: EntryType, body: &[u8]) {
        if ty == EntryType::Object && body.len() >= format::OBJECT_FIXED {
            let kl = le16(body, 20) as usize;
            if let Some(key) = body.get(format::OBJECT_FIXED..format::OBJECT_FIXED + kl) {
                self.ht.prefetch(key_hash(key));
            }
        }
    }

    fn timestamp(&self, ty: EntryType, body: &[u8]) -> Option<u32> {
        match ty {
            EntryType::Object => Some(le32(body, 16) & !format::DIRTY_BIT),
            EntryType::Tombstone => Some(le32(body, 24)),
            EntryType::Completion if body.len() >= 44 => Some(le32(body, 40)),
            // Headers, digests, safe versions and table stats are rewritten in every head.
            _ => None,
        }
    }

    fn may_evict(&self, ty: EntryType, body: &[u8], addr: u64) -> bool {
        if ty != EntryType::Object || body.len() < format::OBJECT_FIXED {
            return false;
        }
        let table = le32(body, 4);
        let evictable = self
            .tables
            .read()
            .get(&table)
            .is_some_and(|t| t.evictable.load(Ordering::Relaxed));
        if !evictable {
            return false;
        }
        if le32(body, 16) & format::DIRTY_BIT == 0 {
            return true;
        }
        // Written dirty (a write-back or write-through write): the log's bit never changes,
        // so ask the hash table whether it was uploaded since (clean now) or is gone.
        let kl = le16(body, 20) as usize;
        let Some(key) = body.get(format::OBJECT_FIXED..format::OBJECT_FIXED + kl) else {
            return false;
        };
        let h = key_hash(key);
        let g = self.ht.lock(h, tag(h, table));
        g.find_addr(addr).is_none_or(|found| found.clean)
    }

    fn relocate(
        &self,
        ty: EntryType,
        body: &[u8],
        old: u64,
        evict: bool,
        to: &mut Relocator<'_>,
    ) -> Fate {
        match ty {
            EntryType::Object => {
                let table = le32(body, 4);
                let kl = le16(body, 20) as usize;
                let key = &body[format::OBJECT_FIXED..format::OBJECT_FIXED + kl];
                let h = key_hash(key);
                let mut g = self.ht.lock(h, tag(h, table));
                let Some(found) = g.find_addr(old) else {
                    return Fate::Dead;
                };
                if evict && found.clean {
                    if let Some(info) = self.tables.read().get(&table) {
                        if info.evictable.load(Ordering::Relaxed) {
                            g.remove(found.slot);
                            info.objects.fetch_sub(1, Ordering::Relaxed);
                            info.bytes.fetch_sub(
                                (body.len() - format::OBJECT_FIXED) as i64,
                                Ordering::Relaxed,
                            );
                            return Fate::Evicted;
                        }
                    }
                }
                let ts = le32(body, 16) & !format::DIRTY_BIT;
                match to.append(ty, body, ts) {
                    Some(new) => {
                        g.relocate(found.slot, new);
                        Fate::Relocated
                    }
                    None => Fate::Failed,
                }
            }
            EntryType::Tombstone => {
                let Ok(t) = format::decode_tombstone(body, 0) else {
                    panic!("tombstone in memory is corrupt at {old}");
                };
                if !self.log.segment_exists(t.segment_id) {
                    return Fate::Dead;
                }
                match to.append(ty, body, t.timestamp) {
                    Some(_) => Fate::Relocated,
                    None => Fate::Failed,
                }
            }
            EntryType::Completion => {
                if !self.completion_live(body) {
                    return Fate::Dead;
                }
                match to.append(ty, body, le32(body, 40)) {
                    Some(_) => Fate::Relocated,
                    None => Fate::Failed,
                }
            }
            _ => Fate::Dead,
        }
    }
}
