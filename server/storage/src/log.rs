//! The log: the head segment that writes append to, and the registry of every segment in
//! memory.
//!
//! Invariants:
//! - Every segment starts with a `SegmentHeader` entry. A *head* segment (opened for writes)
//!   then holds a `LogDigest` naming every segment of the log at that moment (itself
//!   included), a `SafeVersion` and a `TableStats` entry. The newest digest therefore names a
//!   complete log; recovery (later) replays exactly the segments it names.
//! - A segment leaves the registry only after every live entry in it was relocated (by the
//!   cleaner) — and the next head's digest no longer names it.
//! - Segment ids increase; a compacted segment keeps its id (its replicas are unchanged).
//!
//! Threads: `state` (the head) is locked by writers for the duration of one append; the
//! registry lock is held only briefly. Lock order: hash-table stripe → log state → registry →
//! arena free list.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::arena::Arena;
use super::config::EngineConfig;
use super::format::{self, EntryHeader, EntryType, SegmentHeader, TableStat};
use super::segment::{self, SegletTable, Segment};

/// What a new head segment records besides the digest: supplied by the object layer.
pub trait HeadMetadata {
    /// Versions below this are never used again.
    fn safe_version(&self) -> u64;
    /// Live bytes and objects per table.
    fn table_stats(&self) -> Vec<TableStat>;
}

/// Why an append failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendError {
    /// No memory for a new head segment.
    NoSpace,
    /// The entry cannot fit even in an empty segment.
    TooLarge,
}

#[derive(Debug)]
struct LogState {
    head: Option<Arc<Segment>>,
    next_segment_id: u64,
}

/// The log of one engine.
#[derive(Debug)]
pub struct Log {
    /// Memory.
    pub arena: Arena,
    /// Per-seglet bookkeeping.
    pub seglets: SegletTable,
    /// Configuration.
    pub config: EngineConfig,
    state: Mutex<LogState>,
    registry: Mutex<BTreeMap<u64, Arc<Segment>>>,
    scratch: Mutex<Vec<u8>>,
    /// Counts level-2 removals: a tombstone can only die when this moves.
    removals: std::sync::atomic::AtomicU64,
    /// With replication on, the cleaner touches only segments marked replicated (complete on
    /// every backup): a segment's bytes must not change under the replicator.
    require_replicated: std::sync::atomic::AtomicBool,
}

impl Log {
    /// An empty log (no head yet: the first append opens one).
    pub fn new(config: EngineConfig) -> Result<Log, super::error::ConfigError> {
        config.validate()?;
        let arena = Arena::new(
            config.memory_bytes,
            config.max_memory_bytes,
            config.seglet_bytes,
            config.huge_pages,
        )?;
        let seglets = SegletTable::new(arena.total_seglets());
        Ok(Log {
            arena,
            seglets,
            config,
            state: Mutex::new(LogState {
                head: None,
                next_segment_id: 1,
            }),
            registry: Mutex::new(BTreeMap::new()),
            scratch: Mutex::new(Vec::new()),
            removals: std::sync::atomic::AtomicU64::new(1),
            require_replicated: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Largest entry body that fits in a fresh head segment, leaving room for its metadata.
    pub fn max_entry_body(&self) -> usize {
        self.config.segment_bytes / 2
    }

    /// Appends an entry to the head, opening a new head when it is full. Writers keep the
    /// cleaner's reserve free; the cleaner passes `for_cleaner`.
    pub fn append(
        &self,
        ty: EntryType,
        body: &[u8],
        timestamp: Option<u32>,
        meta: &dyn HeadMetadata,
        now: u32,
    ) -> Result<u64, AppendError> {
        self.append_parts(ty, &[body], timestamp, meta, now)
    }

    /// [`Log::append`] of a body given in parts (an object's head and its value, written
    /// straight from the request).
    pub fn append_parts(
        &self,
        ty: EntryType,
        body: &[&[u8]],
        timestamp: Option<u32>,
        meta: &dyn HeadMetadata,
        now: u32,
    ) -> Result<u64, AppendError> {
        if parts_len(body) > self.max_entry_body() {
            return Err(AppendError::TooLarge);
        }
        let mut st = self.state.lock();
        if let Some(head) = &st.head {
            if let Some(addr) = head.append_parts(&self.arena, ty, body, timestamp) {
                return Ok(addr);
            }
        }
        self.roll_head_locked(&mut st, meta, now, self.config.reserve_seglets())?;
        let head = st.head.as_ref().expect("just opened");
        head.append_parts(&self.arena, ty, body, timestamp)
            .ok_or(AppendError::TooLarge)
    }

    /// Appends two entries to the head in one step (the second is small: a completion
    /// record): both land in the same segment, and its certificate covers both or neither.
    /// Both carry timestamp `now`. The first body is given in parts.
    pub fn append_pair(
        &self,
        first: (EntryType, &[&[u8]]),
        second: (EntryType, &[u8]),
        now: u32,
        meta: &dyn HeadMetadata,
    ) -> Result<[u64; 2], AppendError> {
        if parts_len(first.1) + second.1.len() > self.max_entry_body() {
            return Err(AppendError::TooLarge);
        }
        let second_body = [second.1];
        let (a, b) = (
            (first.0, first.1, Some(now)),
            (second.0, &second_body[..], Some(now)),
        );
        let mut st = self.state.lock();
        if let Some(head) = &st.head {
            if let Some(addrs) = head.append_pair(&self.arena, a, b) {
                return Ok(addrs);
            }
        }
        self.roll_head_locked(&mut st, meta, now, self.config.reserve_seglets())?;
        let head = st.head.as_ref().expect("just opened");
        head.append_pair(&self.arena, a, b)
            .ok_or(AppendError::TooLarge)
    }

    /// Opens a head if there is none yet (so the log has a digest before the first write).
    pub fn ensure_head(&self, meta: &dyn HeadMetadata, now: u32) -> Result<(), AppendError> {
        let mut st = self.state.lock();
        if st.head.is_some() {
            return Ok(());
        }
        self.roll_head_locked(&mut st, meta, now, self.config.reserve_seglets())
    }

    /// Closes the head and opens a new one whose digest names the log as it is now. The
    /// cleaner calls this after level-2 cleaning so that the cleaned segments leave the log.
    pub fn roll_head(
        &self,
        meta: &dyn HeadMetadata,
        now: u32,
        keep_free: usize,
    ) -> Result<(), AppendError> {
        let mut st = self.state.lock();
        self.roll_head_locked(&mut st, meta, now, keep_free)
    }

    fn roll_head_locked(
        &self,
        st: &mut LogState,
        meta: &dyn HeadMetadata,
        now: u32,
        keep_free: usize,
    ) -> Result<(), AppendError> {
        let seglets = self
            .arena
            .alloc(self.config.seglets_per_segment(), keep_free)
            .ok_or(AppendError::NoSpace)?;
        let id = st.next_segment_id;
        st.next_segment_id += 1;
        let seg = Arc::new(Segment::new(id, seglets, self.config.seglet_bytes, now));
        self.seglets.assign(id, seg.seglets());
        let ids: Vec<u64> = {
            let mut reg = self.registry.lock();
            reg.insert(id, seg.clone());
            reg.keys().copied().collect()
        };
        let mut body = self.scratch.lock();
        let h = SegmentHeader {
            log_id: self.config.log_id,
            segment_id: id,
            capacity: seg.capacity() as u32,
        };
        format::encode_segment_header(&mut body, &h);
        seg.append(&self.arena, EntryType::SegmentHeader, &body, None)
            .expect("header fits");
        format::encode_log_digest(&mut body, &ids);
        seg.append(&self.arena, EntryType::LogDigest, &body, None)
            .expect("digest fits");
        seg.set_digest(ids, seg.certificate().length);
        format::encode_safe_version(&mut body, meta.safe_version());
        seg.append(&self.arena, EntryType::SafeVersion, &body, None)
            .expect("fits");
        format::encode_table_stats(&mut body, &meta.table_stats());
        seg.append(&self.arena, EntryType::TableStats, &body, None)
            .expect("stats fit");
        if let Some(old) = st.head.replace(seg) {
            old.close();
            // A head closed early (level-2 cleaning rolls it) returns its unused seglets.
            old.trim(&self.arena);
        }
        Ok(())
    }

    /// Opens a segment that is not the head (a survivor of level-2 cleaning, or the compacted
    /// copy of `reuse_id`), with `seglets` seglets from the cleaner's reserve, and writes its
    /// header. A survivor joins the registry at once; a compacted copy replaces the original
    /// with [`Log::replace_compacted`].
    pub fn open_side_segment(
        &self,
        seglet_count: usize,
        reuse_id: Option<u64>,
        now: u32,
    ) -> Option<Arc<Segment>> {
        let seglets = self.arena.alloc(seglet_count, 0)?;
        let id = match reuse_id {
            Some(id) => id,
            None => {
                let mut st = self.state.lock();
                st.next_segment_id += 1;
                st.next_segment_id - 1
            }
        };
        let seg = Arc::new(Segment::new(id, seglets, self.config.seglet_bytes, now));
        let mut body = Vec::with_capacity(format::SEGMENT_HEADER_BODY);
        let h = SegmentHeader {
            log_id: self.config.log_id,
            segment_id: id,
            capacity: seg.capacity() as u32,
        };
        format::encode_segment_header(&mut body, &h);
        self.seglets.assign(id, seg.seglets());
        seg.append(&self.arena, EntryType::SegmentHeader, &body, None)
            .expect("header fits");
        if reuse_id.is_none() {
            self.registry.lock().insert(id, seg.clone());
        }
        Some(seg)
    }

    /// Swaps a compacted segment in for the original with the same id and frees the
    /// original's seglets. Every live entry of the original must have been relocated.
    pub fn replace_compacted(&self, compacted: Arc<Segment>) {
        compacted.close();
        compacted.trim(&self.arena);
        let old = self.registry.lock().insert(compacted.id, compacted.clone());
        let old = old.expect("compacted segment was in the registry");
        self.arena.free(old.seglets());
    }

    /// Removes cleaned segments from the registry and frees their memory. Every live entry of
    /// each must have been relocated. Call [`Log::roll_head`] afterwards so that the digest no
    /// longer names them.
    pub fn remove_cleaned(&self, ids: &[u64]) {
        let removed: Vec<Arc<Segment>> = {
            let mut reg = self.registry.lock();
            ids.iter().filter_map(|id| reg.remove(id)).collect()
        };
        if !removed.is_empty() {
            self.removals
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        for seg in removed {
            self.arena.free(seg.seglets());
        }
    }

    /// Frees a side segment that was never published (a compaction that was abandoned).
    pub fn discard_side_segment(&self, seg: Arc<Segment>) {
        self.arena.free(seg.seglets());
    }

    /// From the next cleaning pass on, clean only segments marked replicated.
    pub fn require_replicated(&self, on: bool) {
        self.require_replicated
            .store(on, std::sync::atomic::Ordering::Release);
    }

    /// Whether the cleaner may touch `seg`.
    pub fn cleanable(&self, seg: &Segment) -> bool {
        !self
            .require_replicated
            .load(std::sync::atomic::Ordering::Acquire)
            || seg.replicated()
    }

    /// Whether segment `id` is still part of the log.
    pub fn segment_exists(&self, id: u64) -> bool {
        self.registry.lock().contains_key(&id)
    }

    /// Snapshot of the segments in memory, oldest id first, with the current head's id.
    pub fn segments(&self) -> (Vec<Arc<Segment>>, Option<u64>) {
        let head = self.state.lock().head.as_ref().map(|h| h.id);
        (self.registry.lock().values().cloned().collect(), head)
    }

    /// Id of the segment holding log address `addr`.
    #[inline]
    pub fn segment_of(&self, addr: u64) -> u64 {
        self.seglets.segment_of(self.arena.seglet_of(addr))
    }

    /// Accounts `delta` live bytes to the entry at `addr`.
    #[inline]
    pub fn add_live(&self, addr: u64, delta: i64) {
        self.seglets.add_live(self.arena.seglet_of(addr), delta);
    }

    /// Live bytes in segment `seg`.
    /// (Dead tombstones found by the last recount are not counted.)
    pub fn live_bytes(&self, seg: &Segment) -> usize {
        (self.seglets.live_of(seg.seglets()).max(0) as usize).saturating_sub(seg.dead_tombstones())
    }

    /// Entries that are counted live died without a level-2 removal (completion records
    /// whose results were acknowledged): the next cleaning pass recounts.
    pub fn note_dead_entries(&self) {
        self.removals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Current level-2 removal generation.
    pub fn removal_generation(&self) -> u64 {
        self.removals.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Calls `f` with the entry at `addr` (see [`segment::with_entry`]).
    #[inline]
    pub fn with_entry<R>(&self, addr: u64, f: impl FnOnce(EntryHeader, &[u8]) -> R) -> R {
        segment::with_entry(&self.arena, &self.seglets, addr, f)
    }

    /// Calls `f` with the entry's header and the first `prefix_len` bytes of its body (see
    /// [`segment::with_entry_prefix`]).
    pub fn with_entry_prefix<R>(
        &self,
        addr: u64,
        prefix_len: usize,
        f: impl FnOnce(EntryHeader, &[u8]) -> R,
    ) -> R {
        segment::with_entry_prefix(&self.arena, &self.seglets, addr, prefix_len, f)
    }

    /// Appends body bytes `from..from + len` of the entry at `addr` to `out` (see
    /// [`segment::read_body`]).
    pub fn read_body(
        &self,
        addr: u64,
        h: &EntryHeader,
        from: usize,
        len: usize,
        out: &mut Vec<u8>,
    ) {
        segment::read_body(&self.arena, &self.seglets, addr, h, from, len, out)
    }
}

/// Bytes of a body given in parts.
fn parts_len(body: &[&[u8]]) -> usize {
    body.iter().map(|p| p.len()).sum()
}
