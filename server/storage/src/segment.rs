//! In-memory segments: a segment is a logical byte range (8 MiB by default) made of seglets
//! that need not be contiguous in the arena. Entries are appended; an entry may straddle
//! seglets. Appended bytes never change (except an object's dirty bit, see `format.rs`) until
//! the whole segment is freed by the cleaner.
//!
//! Per-seglet metadata ([`SegletTable`]) maps any log address back to its segment, to the next
//! seglet of that segment (to read an entry that straddles seglets), and keeps the live-byte
//! count the cleaner uses to pick segments. Writers update live bytes with atomics, without
//! locking anything else.
//!
//! Threads: only one thread appends to a given segment at a time — the holder of the log lock
//! for the head, the cleaner for its survivor segments.
//!
//! # The one audited place for seglet bytes
//!
//! The arena's byte accessors ([`Arena::read`], [`Arena::write`], [`Arena::with_slice`]) are
//! `unsafe fn`; this file holds their only calls (in [`read_log`], [`with_entry`],
//! `Segment::write_at` and [`Segment::read_range`], the only items of the module allowed
//! `unsafe`). The contract each call relies on, and why it holds:
//!
//! - **Writes** go only to a segment's unpublished tail: [`Segment::append`] writes at the offset
//!   of the segment's certificate and publishes the new length with `Release` afterwards. A
//!   segment has one writer at a time (the log-head lock holder, or the cleaner for the
//!   survivor segments it allocated), so nobody else writes those bytes, and no reader reads
//!   them because readers only follow addresses at or below a published length.
//! - **Reads** follow addresses of published entries: an object-table reference, read under
//!   the hash-table stripe of its key (docs/ARCHITECTURE.md, "Invariants the engine keeps":
//!   every access to an object's bytes holds that stripe, and the cleaner frees a segment only
//!   after relocating each live entry under it), a segment walk below a certificate length read
//!   with `Acquire`, or a segment the cleaner or replication holds (it is in the log's registry
//!   until the caller is done; segments leave it only by the cleaner freeing them after
//!   relocation). Published bytes never change, so reads race with no writer, and their
//!   seglets stay allocated for the call.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::arena::Arena;
use super::format::{self, Certificate, EntryHeader, EntryType};

/// Per-seglet bookkeeping, indexed by seglet number.
#[derive(Debug)]
pub struct SegletTable {
    next: Box<[AtomicU32]>,
    segment: Box<[AtomicU64]>,
    live: Box<[AtomicI64]>,
}

/// Marks "no next seglet".
pub const NO_SEGLET: u32 = u32::MAX;

impl SegletTable {
    /// Bookkeeping for `n` seglets.
    pub fn new(n: usize) -> SegletTable {
        SegletTable {
            next: (0..n).map(|_| AtomicU32::new(NO_SEGLET)).collect(),
            segment: (0..n).map(|_| AtomicU64::new(u64::MAX)).collect(),
            live: (0..n).map(|_| AtomicI64::new(0)).collect(),
        }
    }

    /// Records that `seglets` (in order) make up segment `id`.
    pub fn assign(&self, id: u64, seglets: &[u32]) {
        for (i, &s) in seglets.iter().enumerate() {
            let next = seglets.get(i + 1).copied().unwrap_or(NO_SEGLET);
            self.next[s as usize].store(next, Ordering::Release);
            self.segment[s as usize].store(id, Ordering::Release);
            self.live[s as usize].store(0, Ordering::Relaxed);
        }
    }

    /// Seglet after `s` in its segment.
    #[inline]
    pub fn next(&self, s: u32) -> u32 {
        self.next[s as usize].load(Ordering::Acquire)
    }

    /// Segment id owning seglet `s`.
    #[inline]
    pub fn segment_of(&self, s: u32) -> u64 {
        self.segment[s as usize].load(Ordering::Acquire)
    }

    /// Adds `delta` live bytes to the entry that starts in seglet `s`.
    #[inline]
    pub fn add_live(&self, s: u32, delta: i64) {
        self.live[s as usize].fetch_add(delta, Ordering::Relaxed);
    }

    /// Live bytes of entries starting in `seglets`.
    pub fn live_of(&self, seglets: &[u32]) -> i64 {
        seglets
            .iter()
            .map(|&s| self.live[s as usize].load(Ordering::Relaxed))
            .sum()
    }
}

/// Copies `dst.len()` log bytes starting at `addr`, following seglet chains. `addr` must be a
/// published entry the caller may read (see the module's "one audited place").
#[allow(unsafe_code)]
pub fn read_log(arena: &Arena, seglets: &SegletTable, mut addr: u64, mut dst: &mut [u8]) {
    let sb = arena.seglet_bytes() as u64;
    while !dst.is_empty() {
        let in_seglet = (sb - (addr & (sb - 1))) as usize;
        let n = in_seglet.min(dst.len());
        let (head, tail) = dst.split_at_mut(n);
        // SAFETY: `addr..addr+n` stays in one seglet (n ≤ room in it) of a published entry the
        // caller may read (module docs: stripe held or segment owned), so no writer and no free
        // during the copy.
        unsafe { arena.read(addr, head) };
        dst = tail;
        if !dst.is_empty() {
            let next = seglets.next(arena.seglet_of(addr));
            assert!(next != NO_SEGLET, "log read ran off the end of a segment");
            addr = arena.seglet_addr(next);
        }
    }
}

/// The header of the entry at `addr` (a published entry the caller may read).
#[inline]
#[allow(unsafe_code)]
fn entry_header(arena: &Arena, seglets: &SegletTable, addr: u64) -> EntryHeader {
    let sb = arena.seglet_bytes();
    let room = sb - (addr as usize & (sb - 1));
    // Read exactly the header (its first byte gives its length): bytes past a short header
    // at the segment's tail may be unpublished, being written by the segment's writer.
    if room >= 5 {
        // SAFETY: the first byte of a published entry the caller may read (module docs), in
        // this seglet; then its whole header, at most 5 bytes, also in it (room ≥ 5). Both
        // borrows end inside the closures.
        unsafe {
            let hl = arena.with_slice(addr, 1, |b| format::entry_header_len(b[0]));
            arena.with_slice(addr, hl, |b| format::decode_entry_header(b, addr as usize))
        }
    } else {
        let mut hdr = [0u8; 5];
        read_log(arena, seglets, addr, &mut hdr[..1]);
        let hl = format::entry_header_len(hdr[0]);
        read_log(arena, seglets, addr, &mut hdr[..hl]);
        format::decode_entry_header(&hdr[..hl], addr as usize)
    }
    .expect("log entry header in memory is corrupt")
}

/// The log address `k` bytes after `addr` within one entry, following seglet chains (`k`
/// must be inside the entry, not at its end).
fn advance(arena: &Arena, seglets: &SegletTable, mut addr: u64, mut k: usize) -> u64 {
    let sb = arena.seglet_bytes() as u64;
    loop {
        let room = (sb - (addr & (sb - 1))) as usize;
        if k < room {
            return addr + k as u64;
        }
        k -= room;
        let next = seglets.next(arena.seglet_of(addr));
        assert!(next != NO_SEGLET, "log read ran off the end of a segment");
        addr = arena.seglet_addr(next);
    }
}

/// Calls `f(header, body)` for the entry at `addr`. The body is borrowed from the arena when
/// the entry lies in one seglet (the common case) and gathered into a buffer otherwise (use
/// [`with_entry_prefix`] and [`read_body`] to read part of a large entry without that copy).
/// `addr` must be a published entry the caller may read (see the module's "one audited place").
#[inline]
pub fn with_entry<R>(
    arena: &Arena,
    seglets: &SegletTable,
    addr: u64,
    f: impl FnOnce(EntryHeader, &[u8]) -> R,
) -> R {
    // The whole body is the longest prefix.
    with_entry_prefix(arena, seglets, addr, usize::MAX, f)
}

/// Calls `f(header, prefix)` with the first `min(prefix_len, body_len)` bytes of the body of
/// the entry at `addr`: borrowed when they lie in one seglet, else gathered (never more than
/// `prefix_len` bytes). With [`read_body`], a large entry is checked and read in part without
/// copying all of it. `addr` as for [`with_entry`].
#[inline]
#[allow(unsafe_code)]
pub fn with_entry_prefix<R>(
    arena: &Arena,
    seglets: &SegletTable,
    addr: u64,
    prefix_len: usize,
    f: impl FnOnce(EntryHeader, &[u8]) -> R,
) -> R {
    let sb = arena.seglet_bytes();
    let room = sb - (addr as usize & (sb - 1));
    let h = entry_header(arena, seglets, addr);
    let n = prefix_len.min(h.body_len);
    if h.header_len + n <= room {
        // SAFETY: these `n` body bytes lie in the entry's seglet (header + n ≤ room); they are
        // published and the caller's stripe or segment ownership outlives `f`.
        unsafe { arena.with_slice(addr + h.header_len as u64, n, |prefix| f(h, prefix)) }
    } else {
        let mut prefix = vec![0u8; h.header_len + n];
        read_log(arena, seglets, addr, &mut prefix);
        f(h, &prefix[h.header_len..])
    }
}

/// Appends body bytes `from..from + len` of the entry at `addr` (whose header is `h`) to
/// `out`, copied straight from its seglets. The range must lie in the body. `addr` as for
/// [`with_entry`].
pub fn read_body(
    arena: &Arena,
    seglets: &SegletTable,
    addr: u64,
    h: &EntryHeader,
    from: usize,
    len: usize,
    out: &mut Vec<u8>,
) {
    assert!(
        from.checked_add(len).is_some_and(|end| end <= h.body_len),
        "read_body: range {from}+{len} outside a body of {} bytes",
        h.body_len
    );
    if len == 0 {
        return;
    }
    let start = advance(arena, seglets, addr, h.header_len + from);
    let old = out.len();
    out.resize(old + len, 0);
    read_log(arena, seglets, start, &mut out[old..]);
}

/// An entry to append: its type, its body in parts, its timestamp (objects, tombstones).
pub type Part<'a> = (EntryType, &'a [&'a [u8]], Option<u32>);

/// One segment in memory.
#[derive(Debug)]
pub struct Segment {
    /// Id, unique in this log.
    pub id: u64,
    /// Seglets in order; only the first `active` still belong to the segment.
    seglets: Box<[u32]>,
    active: AtomicUsize,
    seglet_bytes: usize,
    /// (length << 32) | running checksum: the certificate of the published prefix.
    cert: AtomicU64,
    /// Seconds on the engine clock when opened.
    pub created: u32,
    closed: AtomicBool,
    /// Sum and count of the timestamps of objects and tombstones appended: their mean is the
    /// segment's age for cost-benefit cleaning (survivor segments hold old data).
    ts_sum: AtomicU64,
    ts_count: AtomicU64,
    /// Bytes of tombstone entries appended.
    tombstone_bytes: AtomicUsize,
    /// Bytes of those tombstones known to be no longer needed (their object's segment left
    /// the log), found by the cleaner's recount; subtracted from the live bytes.
    dead_tombstones: AtomicUsize,
    /// Log removal generation at the last recount.
    recounted_at: AtomicU64,
    /// A head's digest (the segments of the log when it opened) and the segment length just
    /// past it; unset for segments that are not heads.
    digest: std::sync::OnceLock<(Vec<u64>, u32)>,
    /// Complete on every backup (set by replication; the cleaner needs it when replication
    /// is on).
    replicated: AtomicBool,
}

impl Segment {
    /// A new empty segment over `seglets`.
    pub fn new(id: u64, seglets: Vec<u32>, seglet_bytes: usize, created: u32) -> Segment {
        Segment {
            id,
            active: AtomicUsize::new(seglets.len()),
            seglets: seglets.into_boxed_slice(),
            seglet_bytes,
            cert: AtomicU64::new(0),
            created,
            closed: AtomicBool::new(false),
            ts_sum: AtomicU64::new(0),
            ts_count: AtomicU64::new(0),
            tombstone_bytes: AtomicUsize::new(0),
            dead_tombstones: AtomicUsize::new(0),
            recounted_at: AtomicU64::new(0),
            digest: std::sync::OnceLock::new(),
            replicated: AtomicBool::new(false),
        }
    }

    /// Records the head's digest and the length up to its end.
    pub fn set_digest(&self, segments: Vec<u64>, end: u32) {
        let _ = self.digest.set((segments, end));
    }

    /// Whether replication marked the segment complete on every backup.
    pub fn replicated(&self) -> bool {
        self.replicated.load(Ordering::Acquire)
    }

    /// Marks the segment complete (or not) on every backup.
    pub fn set_replicated(&self, on: bool) {
        self.replicated.store(on, Ordering::Release);
    }

    /// A head's digest and the segment length just past it.
    pub fn digest(&self) -> Option<&(Vec<u64>, u32)> {
        self.digest.get()
    }

    /// Bytes of tombstones appended to this segment.
    pub fn tombstone_bytes(&self) -> usize {
        self.tombstone_bytes.load(Ordering::Relaxed)
    }

    /// Bytes of tombstones known dead (see [`Segment::set_dead_tombstones`]).
    pub fn dead_tombstones(&self) -> usize {
        self.dead_tombstones.load(Ordering::Relaxed)
    }

    /// Records the result of a recount made at removal generation `generation`.
    pub fn set_dead_tombstones(&self, bytes: usize, generation: u64) {
        self.dead_tombstones.store(bytes, Ordering::Relaxed);
        self.recounted_at.store(generation, Ordering::Relaxed);
    }

    /// Removal generation at the last recount.
    pub fn recounted_at(&self) -> u64 {
        self.recounted_at.load(Ordering::Relaxed)
    }

    /// Bytes this segment can hold.
    pub fn capacity(&self) -> usize {
        self.seglets().len() * self.seglet_bytes
    }

    /// The seglets the segment owns, in order.
    pub fn seglets(&self) -> &[u32] {
        &self.seglets[..self.active.load(Ordering::Acquire)]
    }

    /// Gives the seglets past the last appended byte back to the arena; returns how many.
    /// Only for a closed segment (nothing will be appended again), by its owner.
    pub fn trim(&self, arena: &Arena) -> usize {
        assert!(self.is_closed(), "trimming open segment {}", self.id);
        let used = self.len().div_ceil(self.seglet_bytes).max(1);
        let active = self.active.load(Ordering::Acquire);
        if used >= active {
            return 0;
        }
        self.active.store(used, Ordering::Release);
        arena.free(&self.seglets[used..active]);
        active - used
    }

    /// Bytes appended so far.
    pub fn len(&self) -> usize {
        (self.cert.load(Ordering::Acquire) >> 32) as usize
    }

    /// Whether nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Certificate of everything appended so far.
    pub fn certificate(&self) -> Certificate {
        let c = self.cert.load(Ordering::Acquire);
        Certificate {
            length: (c >> 32) as u32,
            checksum: c as u32,
        }
    }

    /// Whether the segment takes no more appends.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Stops appends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Log address of byte `offset` of the segment.
    pub fn addr_of(&self, arena: &Arena, offset: usize) -> u64 {
        arena.seglet_addr(self.seglets[offset / self.seglet_bytes])
            + (offset % self.seglet_bytes) as u64
    }

    /// Whether an entry with a body of `body_len` bytes fits.
    pub fn fits(&self, body_len: usize) -> bool {
        let total = 1 + format::length_bytes(body_len) + body_len;
        self.len() + total <= self.capacity()
    }

    /// Mean timestamp of the data in the segment (its creation time if it holds none).
    pub fn timestamp(&self) -> u32 {
        let n = self.ts_count.load(Ordering::Relaxed);
        self.ts_sum
            .load(Ordering::Relaxed)
            .checked_div(n)
            .map_or(self.created, |t| t as u32)
    }

    /// Appends an entry and returns its log address, or `None` if it does not fit. Only the
    /// segment's single writer may call this. `timestamp` is the data's age, for objects and
    /// tombstones.
    pub fn append(
        &self,
        arena: &Arena,
        ty: EntryType,
        body: &[u8],
        timestamp: Option<u32>,
    ) -> Option<u64> {
        self.append_entries(arena, &[(ty, &[body], timestamp)])
            .map(|[a, _]| a)
    }

    /// [`Segment::append`] of a body given in parts (written one after the other).
    pub fn append_parts(
        &self,
        arena: &Arena,
        ty: EntryType,
        body: &[&[u8]],
        timestamp: Option<u32>,
    ) -> Option<u64> {
        self.append_entries(arena, &[(ty, body, timestamp)])
            .map(|[a, _]| a)
    }

    /// Appends two entries at once (bodies in parts): the certificate is published once, after
    /// both, so a replica or a reader of the certificate sees both or neither. Returns their
    /// addresses.
    pub fn append_pair(
        &self,
        arena: &Arena,
        first: Part<'_>,
        second: Part<'_>,
    ) -> Option<[u64; 2]> {
        self.append_entries(arena, &[first, second])
    }

    /// Appends one or two entries and publishes the certificate once; the addresses of the
    /// first two (the second is 0 when there is one entry).
    fn append_entries(&self, arena: &Arena, entries: &[Part<'_>]) -> Option<[u64; 2]> {
        assert!(!self.is_closed(), "append to closed segment {}", self.id);
        let body_len = |b: &[&[u8]]| b.iter().map(|p| p.len()).sum::<usize>();
        let total: usize = entries
            .iter()
            .map(|(_, b, _)| {
                let n = body_len(b);
                1 + format::length_bytes(n) + n
            })
            .sum();
        if self.len() + total > self.capacity() {
            return None;
        }
        let c = self.cert.load(Ordering::Relaxed);
        let (mut at, mut crc) = ((c >> 32) as usize, c as u32);
        let mut addrs = [0u64; 2];
        for (i, &(ty, body, timestamp)) in entries.iter().enumerate() {
            let n = body_len(body);
            let mut hdr = [0u8; 5];
            let hn = format::encode_entry_header(ty, n, &mut hdr);
            self.write_at(arena, at, &hdr[..hn]);
            let mut off = at + hn;
            for part in body {
                self.write_at(arena, off, part);
                off += part.len();
            }
            crc = crc32c::crc32c_append(crc, &hdr[..hn]);
            if let Some(slot) = addrs.get_mut(i) {
                *slot = self.addr_of(arena, at);
            }
            if matches!(ty, EntryType::Tombstone | EntryType::Completion) {
                self.tombstone_bytes.fetch_add(hn + n, Ordering::Relaxed);
            }
            if let Some(ts) = timestamp {
                self.ts_sum.fetch_add(ts as u64, Ordering::Relaxed);
                self.ts_count.fetch_add(1, Ordering::Relaxed);
            }
            at += hn + n;
        }
        self.cert
            .store(((at as u64) << 32) | crc as u64, Ordering::Release);
        Some(addrs)
    }

    /// Writes `src` at `offset`, at or beyond the published length (called by `append` only).
    #[allow(unsafe_code)]
    fn write_at(&self, arena: &Arena, mut offset: usize, mut src: &[u8]) {
        while !src.is_empty() {
            let in_seglet = self.seglet_bytes - offset % self.seglet_bytes;
            let n = in_seglet.min(src.len());
            // SAFETY: one seglet of this segment (allocated to it until the segment is freed),
            // beyond the published certificate length: only `append`, from the segment's single
            // writer, writes here, and no reader follows an address past the published length.
            unsafe { arena.write(self.addr_of(arena, offset), &src[..n]) };
            src = &src[n..];
            offset += n;
        }
    }

    /// Copies the appended bytes out as one contiguous image (for replication, recovery and
    /// verification with [`format::SegmentIterator`]).
    pub fn copy_out(&self, arena: &Arena) -> (Vec<u8>, Certificate) {
        let cert = self.certificate();
        let mut out = Vec::new();
        self.read_range(arena, 0, cert.length as usize, &mut out);
        (out, cert)
    }

    /// Appends bytes `from..to` of the segment to `out`. `to` must not exceed the length of a
    /// certificate read earlier (bytes below it never change). The caller holds the segment
    /// (module docs), so its seglets stay allocated.
    #[allow(unsafe_code)]
    pub fn read_range(&self, arena: &Arena, from: usize, to: usize, out: &mut Vec<u8>) {
        assert!(
            from <= to && to <= self.capacity(),
            "bad range {from}..{to}"
        );
        let base = out.len();
        out.resize(base + (to - from), 0);
        let mut off = from;
        while off < to {
            let n = (self.seglet_bytes - off % self.seglet_bytes).min(to - off);
            let at = base + off - from;
            // SAFETY: one seglet of this segment, below a published length (bytes there never
            // change); the caller holds the segment so it is not freed during the copy.
            unsafe { arena.read(self.addr_of(arena, off), &mut out[at..at + n]) };
            off += n;
        }
    }

    /// Calls `f(addr, header)` for every entry appended, in order, by walking entry headers.
    pub fn for_each_entry(
        &self,
        arena: &Arena,
        seglets: &SegletTable,
        mut f: impl FnMut(u64, EntryHeader),
    ) {
        let end = self.len();
        let mut off = 0;
        while off < end {
            let addr = self.addr_of(arena, off);
            let mut hdr = [0u8; 5];
            let n = 5.min(end - off);
            read_log(arena, seglets, addr, &mut hdr[..n]);
            let h = format::decode_entry_header(&hdr[..n], off)
                .expect("segment in memory has a corrupt entry header");
            f(addr, h);
            off += h.total_len();
        }
        assert_eq!(off, end, "segment {} entries overrun its length", self.id);
    }
}
