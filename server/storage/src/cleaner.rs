//! The log cleaner: reclaims the space of dead entries by moving live ones.
//!
//! Two levels, after RAMCloud (FAST'14):
//! - **Level 1, compaction.** One segment is rewritten in memory into fewer seglets; it keeps
//!   its id, and its replicas on backups are untouched (no backup I/O). It picks the segment
//!   with the most freeable seglets.
//! - **Level 2, combined cleaning.** Several segments are chosen by cost-benefit
//!   `(1 - u) · age / u` (u = live fraction of a full segment), their live entries are written
//!   sorted by age into new *survivor* segments (which will be replicated), and the cleaned
//!   segments leave the log: a new head is opened whose digest no longer names them. Level 2
//!   is what removes tombstones and shortens the log on backups.
//!
//! Under memory pressure, clean objects of evictable (cache) tables are dropped instead of
//! moved; eviction passes pick the oldest segments first.
//!
//! The cleaner knows nothing of objects: it sees entries through [`LogEntryHandlers`]
//! (timestamp; relocate-or-drop) and survivors through [`Relocator`]. One pass runs at a time
//! (the engine holds a mutex); writers run concurrently.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::format::{EntryHeader, EntryType};
use super::log::{HeadMetadata, Log};
use super::segment::Segment;

/// The log may occupy this many times the memory budget on backups (whole segments) before
/// level-2 cleaning must shorten it: compaction alone would let it grow without bound.
pub const BACKUP_EXPANSION: usize = 2;
/// Evict clean objects of cache tables when live data exceeds this fraction of memory:
/// above it cleaning costs grow fast (cost ∝ u / (1 - u)).
pub const EVICT_LIVE_FRACTION: f64 = 0.85;
/// An eviction pass chooses segments until they free about this fraction of the budget (at
/// least one segment's worth).
pub const EVICT_TARGET_FRACTION: f64 = 0.05;

/// How many entries ahead of relocation the cleaner prefetches: enough to cover a DRAM miss
/// with the work of relocating the entries in between.
const PREFETCH_AHEAD: usize = 8;

/// What the caller wants of a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Let the policy choose.
    Auto,
    /// Level 1 only.
    Compact,
    /// Level 2 only.
    Combined,
    /// A pass that drops clean objects of evictable tables, oldest segments first.
    Evict,
    /// Make room for a smaller memory budget: like `Auto`, evicting if tables allow it.
    Shrink,
}

/// What became of an entry the cleaner offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Not needed any more: dropped.
    Dead,
    /// Copied through the relocator; references now point at the copy.
    Relocated,
    /// A clean object of a cache table, dropped under pressure.
    Evicted,
    /// The relocator had no room; the entry stays where it is.
    Failed,
}

/// How the cleaner sees entries. Implemented by the object layer.
pub trait LogEntryHandlers {
    /// Age of the entry's data, or `None` for log metadata (dead once outside the head).
    fn timestamp(&self, ty: EntryType, body: &[u8]) -> Option<u32>;
    /// Called a few entries ahead of `relocate` so the handler can start loading what it will
    /// need (the object layer prefetches the entry's hash bucket). Optional.
    fn prefetch(&self, _ty: EntryType, _body: &[u8]) {}
    /// Whether an entry that is counted live is in fact no longer needed — for the object
    /// layer, a tombstone whose object's segment has left the log. Used to recount segments
    /// so compaction sees the space. Optional.
    fn is_obsolete(&self, _ty: EntryType, _body: &[u8]) -> bool {
        false
    }
    /// Whether an eviction pass would probably drop the entry at `addr` rather than relocate
    /// it (for the object layer: a clean object of an evictable table, or one no longer
    /// live). An estimate — the object may change before the pass reaches it; used to choose
    /// which segments to evict from. Optional: by default nothing is evictable.
    fn may_evict(&self, _ty: EntryType, _body: &[u8], _addr: u64) -> bool {
        false
    }
    /// Decides whether the entry at `old` is live; if so copies it with `to.append` and
    /// repoints references, atomically with respect to concurrent writers.
    fn relocate(
        &self,
        ty: EntryType,
        body: &[u8],
        old: u64,
        evict: bool,
        to: &mut Relocator<'_>,
    ) -> Fate;
}

/// Where relocated entries go: one compacted segment, or a series of survivor segments.
#[derive(Debug)]
pub struct Relocator<'a> {
    log: &'a Log,
    now: u32,
    current: Option<Arc<Segment>>,
    /// Compaction: the single target; survivors: opened as needed.
    compacting: bool,
    opened: Vec<Arc<Segment>>,
    bytes: usize,
}

impl Relocator<'_> {
    /// Appends a live entry; returns its new address, or `None` if there is no room.
    pub fn append(&mut self, ty: EntryType, body: &[u8], timestamp: u32) -> Option<u64> {
        loop {
            if let Some(seg) = &self.current {
                if let Some(addr) = seg.append(&self.log.arena, ty, body, Some(timestamp)) {
                    let len = 1 + super::format::length_bytes(body.len()) + body.len();
                    self.log.add_live(addr, len as i64);
                    self.bytes += len;
                    return Some(addr);
                }
                if self.compacting {
                    return None;
                }
                seg.close();
                self.current = None;
            }
            let seg = self.log.open_side_segment(
                self.log.config.seglets_per_segment(),
                None,
                self.now,
            )?;
            self.opened.push(seg.clone());
            self.current = Some(seg);
        }
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanReport {
    /// 0: nothing done; 1: compaction; 2: combined cleaning.
    pub level: u8,
    /// Segments cleaned (compacted or removed).
    pub segments: usize,
    /// Live bytes copied.
    pub bytes_relocated: usize,
    /// Objects dropped from cache tables.
    pub evicted: usize,
    /// Net seglets returned to the arena.
    pub seglets_freed: usize,
}

/// Totals over all passes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanerCounters {
    /// Level-1 passes.
    pub compactions: u64,
    /// Level-2 passes.
    pub combined: u64,
    /// Live bytes copied.
    pub bytes_relocated: u64,
    /// Objects evicted.
    pub evicted: u64,
    /// Writes refused for lack of memory.
    pub no_space: u64,
}

/// Atomic form of [`CleanerCounters`].
#[derive(Debug, Default)]
pub struct AtomicCounters {
    compactions: AtomicU64,
    combined: AtomicU64,
    bytes_relocated: AtomicU64,
    evicted: AtomicU64,
    /// Writes refused for lack of memory.
    pub no_space: AtomicU64,
}

impl AtomicCounters {
    /// Adds a pass.
    pub fn add(&self, r: &CleanReport) {
        match r.level {
            1 => self.compactions.fetch_add(1, Ordering::Relaxed),
            2 => self.combined.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        self.bytes_relocated
            .fetch_add(r.bytes_relocated as u64, Ordering::Relaxed);
        self.evicted.fetch_add(r.evicted as u64, Ordering::Relaxed);
    }

    /// Current values.
    pub fn snapshot(&self) -> CleanerCounters {
        CleanerCounters {
            compactions: self.compactions.load(Ordering::Relaxed),
            combined: self.combined.load(Ordering::Relaxed),
            bytes_relocated: self.bytes_relocated.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            no_space: self.no_space.load(Ordering::Relaxed),
        }
    }
}

struct Candidate {
    seg: Arc<Segment>,
    live: usize,
}

/// Runs one pass. `log_too_long`: the log on backups has outgrown its allowance, so level 2
/// is due regardless of memory.
pub fn clean_pass(
    log: &Log,
    handlers: &dyn LogEntryHandlers,
    meta: &dyn HeadMetadata,
    now: u32,
    want: Want,
    evict: bool,
    log_too_long: bool,
) -> CleanReport {
    let (segs, head) = log.segments();
    recount_tombstones(log, handlers, &segs, head);
    let mut cands: Vec<Candidate> = segs
        .into_iter()
        .filter(|s| Some(s.id) != head && s.is_closed() && log.cleanable(s))
        .map(|s| Candidate {
            live: log.live_bytes(&s),
            seg: s,
        })
        .collect();
    if cands.is_empty() {
        return CleanReport::default();
    }
    let sb = log.config.seglet_bytes;
    // Seglets a compacted copy needs: live bytes plus a segment header. One more is
    // allocated as slack (live bytes may be overestimated, never under) and trimmed after.
    let needed = |live: usize| (live + 64).div_ceil(sb);
    let freeable = |c: &Candidate| c.seg.seglets().len().saturating_sub(needed(c.live));
    let level = match want {
        Want::Compact => 1,
        Want::Combined | Want::Evict => 2,
        Want::Auto | Want::Shrink => {
            // Tombstones die only when level 2 removes the segments they point into.
            let tombstones: usize = cands
                .iter()
                .map(|c| {
                    c.seg
                        .tombstone_bytes()
                        .saturating_sub(c.seg.dead_tombstones())
                })
                .sum();
            let budget = log.arena.budget() * sb;
            if log_too_long || evict || tombstones * 10 > budget {
                2
            } else {
                // Compaction costs no backup I/O, so it runs while some segment can give back
                // a seglet; only then is combined cleaning needed to consolidate free space.
                let best = cands.iter().map(freeable).max().unwrap_or(0);
                if best >= 1 {
                    1
                } else {
                    2
                }
            }
        }
    };
    if level == 1 {
        let Some(best) = cands.iter().max_by_key(|c| freeable(c)) else {
            return CleanReport::default();
        };
        if freeable(best) == 0 {
            return CleanReport::default();
        }
        compact(log, handlers, best, needed(best.live) + 1, now, evict)
    } else {
        let sort_key_age = want == Want::Evict || evict;
        combined(log, handlers, meta, &mut cands, now, evict, sort_key_age)
    }
}

/// Tombstones die when the segment of the object they killed leaves the log, but the live
/// bytes of the segment holding them only learn that when it is cleaned. After level-2
/// removals, walk the closed segments that hold tombstones and record how many tombstone
/// bytes are dead, so compaction sees that space (a delete-heavy workload would otherwise
/// fill memory with tombstones nobody needs).
fn recount_tombstones(
    log: &Log,
    handlers: &dyn LogEntryHandlers,
    segs: &[Arc<Segment>],
    head: Option<u64>,
) {
    let generation = log.removal_generation();
    for seg in segs {
        if Some(seg.id) == head
            || !seg.is_closed()
            || seg.tombstone_bytes() == 0
            || seg.recounted_at() == generation
        {
            continue;
        }
        let mut dead = 0;
        seg.for_each_entry(&log.arena, &log.seglets, |addr, h| {
            if matches!(h.ty, EntryType::Tombstone | EntryType::Completion)
                && log.with_entry(addr, |_, body| handlers.is_obsolete(h.ty, body))
            {
                dead += h.total_len();
            }
        });
        seg.set_dead_tombstones(dead, generation);
    }
}

/// Segments to evict from, oldest first: those whose survivors (what eviction would not drop,
/// estimated from the entries) fit in `room`, skipping segments that would give back almost
/// nothing (mostly dirty objects, which are never evicted and would otherwise hold the oldest
/// places forever), until the chosen ones free about [`EVICT_TARGET_FRACTION`] of the budget.
fn choose_for_eviction(
    log: &Log,
    handlers: &dyn LogEntryHandlers,
    cands: &[Candidate],
    room: usize,
) -> Vec<Arc<Segment>> {
    let sb = log.config.seglet_bytes;
    let target = (log.arena.budget() as f64 * EVICT_TARGET_FRACTION) as usize;
    let target = target.max(log.config.seglets_per_segment());
    let (mut chosen, mut total, mut freed) = (Vec::new(), 0usize, 0usize);
    for c in cands {
        let mut survive = 0usize;
        for (addr, _) in entries_of(log, &c.seg) {
            log.with_entry(addr, |h, body| {
                if handlers.timestamp(h.ty, body).is_some() && !handlers.may_evict(h.ty, body, addr)
                {
                    survive += body.len() + 16;
                }
            });
        }
        let survive = survive.min(c.live);
        if c.live > 0 && survive * 10 > c.live * 9 {
            continue;
        }
        if total + survive > room {
            continue;
        }
        total += survive;
        freed += c
            .seg
            .seglets()
            .len()
            .saturating_sub((survive + 64).div_ceil(sb));
        chosen.push(c.seg.clone());
        if freed >= target {
            break;
        }
    }
    chosen
}

fn entries_of(log: &Log, seg: &Segment) -> Vec<(u64, EntryHeader)> {
    let mut v = Vec::new();
    seg.for_each_entry(&log.arena, &log.seglets, |addr, h| v.push((addr, h)));
    v
}

fn compact(
    log: &Log,
    handlers: &dyn LogEntryHandlers,
    c: &Candidate,
    seglets: usize,
    now: u32,
    evict: bool,
) -> CleanReport {
    let Some(target) = log.open_side_segment(seglets, Some(c.seg.id), now) else {
        return CleanReport::default();
    };
    let mut to = Relocator {
        log,
        now,
        current: Some(target.clone()),
        compacting: true,
        opened: vec![],
        bytes: 0,
    };
    let mut evicted = 0;
    let entries = entries_of(log, &c.seg);
    for (i, &(addr, _)) in entries.iter().enumerate() {
        if let Some(&(ahead, _)) = entries.get(i + PREFETCH_AHEAD) {
            log.with_entry(ahead, |h, body| handlers.prefetch(h.ty, body));
        }
        let fate = log.with_entry(addr, |h, body| {
            if handlers.timestamp(h.ty, body).is_none() {
                return Fate::Dead;
            }
            handlers.relocate(h.ty, body, addr, evict, &mut to)
        });
        match fate {
            Fate::Evicted => evicted += 1,
            // The target was sized from the live bytes, which only shrink meanwhile.
            Fate::Failed => panic!("compaction of segment {} overflowed its target", c.seg.id),
            _ => {}
        }
    }
    let before = c.seg.seglets().len();
    let bytes_relocated = to.bytes;
    drop(to);
    log.replace_compacted(target.clone());
    let after = target.seglets().len();
    CleanReport {
        level: 1,
        segments: 1,
        bytes_relocated,
        evicted,
        seglets_freed: before.saturating_sub(after),
    }
}

fn combined(
    log: &Log,
    handlers: &dyn LogEntryHandlers,
    meta: &dyn HeadMetadata,
    cands: &mut [Candidate],
    now: u32,
    evict: bool,
    oldest_first: bool,
) -> CleanReport {
    let seg_bytes = log.config.segment_bytes;
    let score = |c: &Candidate| {
        let u = c.live as f64 / seg_bytes as f64;
        let age = now.saturating_sub(c.seg.timestamp()) as f64 + 1.0;
        if u <= 0.0 {
            f64::INFINITY
        } else {
            (1.0 - u) * age / u
        }
    };
    if oldest_first {
        cands.sort_by_key(|c| c.seg.timestamp());
    } else {
        cands.sort_by(|a, b| score(b).total_cmp(&score(a)));
    }
    // Survivors come from the cleaner's reserve; leave half a segment of slack for the room
    // lost at the end of each survivor.
    let room =
        (log.config.reserve_seglets() * log.config.seglet_bytes).saturating_sub(seg_bytes / 2);
    let chosen = if evict {
        choose_for_eviction(log, handlers, cands, room)
    } else {
        let mut chosen = Vec::new();
        let mut total = 0;
        for c in cands.iter() {
            if total + c.live > room {
                if c.live == 0 {
                    continue;
                }
                break;
            }
            // Cleaning a nearly full segment gains nothing unless we evict from it.
            if c.live * 10 > seg_bytes * 9 && !chosen.is_empty() {
                break;
            }
            total += c.live;
            chosen.push(c.seg.clone());
        }
        chosen
    };
    if chosen.is_empty() {
        return CleanReport::default();
    }
    // Collect every entry that may be live, then relocate them oldest first so survivors
    // hold data of similar age (which cleans better later).
    let mut live: Vec<(u32, u64, usize)> = Vec::new();
    for (i, seg) in chosen.iter().enumerate() {
        for (addr, _) in entries_of(log, seg) {
            if let Some(ts) = log.with_entry(addr, |h, body| handlers.timestamp(h.ty, body)) {
                live.push((ts, addr, i));
            }
        }
    }
    live.sort_unstable_by_key(|&(ts, addr, _)| (ts, addr));
    let mut to = Relocator {
        log,
        now,
        current: None,
        compacting: false,
        opened: vec![],
        bytes: 0,
    };
    let mut failed = vec![false; chosen.len()];
    let mut evicted = 0;
    for (n, &(_, addr, i)) in live.iter().enumerate() {
        if let Some(&(_, ahead, _)) = live.get(n + PREFETCH_AHEAD) {
            log.with_entry(ahead, |h, body| handlers.prefetch(h.ty, body));
        }
        let fate = log.with_entry(addr, |h, body| {
            handlers.relocate(h.ty, body, addr, evict, &mut to)
        });
        match fate {
            Fate::Evicted => evicted += 1,
            Fate::Failed => failed[i] = true,
            _ => {}
        }
    }
    if let Some(cur) = &to.current {
        cur.close();
    }
    for s in &to.opened {
        s.trim(&log.arena);
    }
    let done: Vec<u64> = chosen
        .iter()
        .zip(&failed)
        .filter(|(_, &f)| !f)
        .map(|(s, _)| s.id)
        .collect();
    if done.len() < chosen.len() {
        tracing::warn!(
            "level-2 cleaning ran out of survivor space; {} segment(s) stay for the next pass",
            chosen.len() - done.len()
        );
    }
    let freed: usize = chosen
        .iter()
        .filter(|s| done.contains(&s.id))
        .map(|s| s.seglets().len())
        .sum();
    let used: usize = to.opened.iter().map(|s| s.seglets().len()).sum();
    log.remove_cleaned(&done);
    // A new head whose digest no longer names the cleaned segments. If memory is too tight
    // for a new head right now, the next head a writer opens carries the digest instead.
    let _ = log.roll_head(meta, now, log.config.reserve_seglets());
    CleanReport {
        level: 2,
        segments: done.len(),
        bytes_relocated: to.bytes,
        evicted,
        seglets_freed: freed.saturating_sub(used),
    }
}
