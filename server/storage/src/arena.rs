//! The seglet arena: the memory every log segment is carved from.
//!
//! At start the arena reserves `max_memory_bytes` of address space with one anonymous
//! `MAP_NORESERVE` mapping and divides it into fixed-size *seglets* (64 KiB by default).
//! A *budget* says how many seglets may be in use at once; [`Arena::set_budget`] changes it at
//! run time (vertical elasticity). Seglets are handed out from a free list; a freed seglet whose
//! memory is above the budget is returned to the kernel with `MADV_DONTNEED`, so resident memory
//! follows the budget.
//!
//! A byte's *address* in the log is its offset from the start of the arena (a [`LogRef`]
//! holds one). Seglets never move, so an address stays valid until its seglet is freed; the
//! object table guarantees nobody reads a freed seglet (see `engine.rs`).
//!
//! Threads: any thread may allocate or free (a mutex guards the free list). Reads and writes of
//! seglet bytes go through [`Arena::read`], [`Arena::write`] and [`Arena::with_slice`], which
//! are `unsafe fn`: the arena checks bounds, but only the caller can know that it owns the bytes
//! it writes (the log head's unpublished tail, or a fresh survivor segment) and that the bytes it
//! reads were published before and stay allocated (it holds the hash-table stripe of the key, or
//! owns the segment). Their one caller is `segment.rs`, which argues that contract at each call.
//!
//! `unsafe` of the storage engine lives in this file (mapping, advice, unmapping and the raw
//! copies) and at the call sites of the three accessors in `segment.rs`.

use parking_lot::Mutex;
use rustix::mm::{self, Advice, MapFlags, ProtFlags};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::error::ConfigError;

/// Populated per step of the warm-up loop (it checks for shutdown between steps).
const WARM_STEP_BYTES: usize = 4 << 20;
/// The warm-up loop's pause when there is nothing to populate.
const WARM_IDLE: std::time::Duration = std::time::Duration::from_millis(10);

/// Memory of the log, reserved once, handed out as seglets.
#[derive(Debug)]
pub struct Arena {
    base: NonNull<u8>,
    reserved_bytes: usize,
    seglet_bytes: usize,
    seglet_shift: u32,
    total_seglets: usize,
    state: Mutex<FreeList>,
    in_use: AtomicUsize,
    budget: AtomicUsize,
}

#[derive(Debug)]
struct FreeList {
    /// Free seglets that were touched before (likely resident), most recently freed last.
    warm: Vec<u32>,
    /// Seglets never touched or given back to the kernel, lowest index last.
    cold: Vec<u32>,
}

// SAFETY: the arena hands out disjoint seglets; all access to their bytes goes through
// `read`/`write`, whose contracts (above) make concurrent use data-race free. The raw base
// pointer is only an address.
unsafe impl Send for Arena {}
// SAFETY: as above.
unsafe impl Sync for Arena {}

impl Arena {
    /// Reserves `max_bytes` of address space and allows `budget_bytes` of it to be used.
    pub fn new(
        budget_bytes: usize,
        max_bytes: usize,
        seglet_bytes: usize,
        huge_pages: bool,
    ) -> Result<Arena, ConfigError> {
        assert!(seglet_bytes.is_power_of_two());
        let total_seglets = max_bytes / seglet_bytes;
        let reserved_bytes = total_seglets * seglet_bytes;
        if total_seglets == 0 {
            return Err(ConfigError(format!(
                "arena of {max_bytes} bytes holds no {seglet_bytes}-byte seglet"
            )));
        }
        // SAFETY: an anonymous private mapping at an address the kernel picks; no file, no
        // aliasing. MAP_NORESERVE: pages are allocated on first touch, within the budget.
        let ptr = unsafe {
            mm::mmap_anonymous(
                std::ptr::null_mut(),
                reserved_bytes,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }
        .map_err(|e| {
            ConfigError(format!(
                "could not reserve {reserved_bytes} bytes of address space for the log: {e}; \
                 lower --memory or the maximum memory"
            ))
        })?;
        if huge_pages {
            // SAFETY: advice on the mapping we just created; failure only means no huge pages.
            if let Err(e) = unsafe { mm::madvise(ptr, reserved_bytes, Advice::LinuxHugepage) } {
                tracing::warn!("transparent huge pages unavailable for the log arena: {e}");
            }
        }
        let base = NonNull::new(ptr.cast::<u8>()).expect("mmap returned null");
        let cold: Vec<u32> = (0..total_seglets as u32).rev().collect();
        let arena = Arena {
            base,
            reserved_bytes,
            seglet_bytes,
            seglet_shift: seglet_bytes.trailing_zeros(),
            total_seglets,
            state: Mutex::new(FreeList {
                warm: Vec::new(),
                cold,
            }),
            in_use: AtomicUsize::new(0),
            budget: AtomicUsize::new(0),
        };
        arena.set_budget_seglets((budget_bytes / seglet_bytes).min(total_seglets));
        Ok(arena)
    }

    /// Bytes in a seglet.
    pub fn seglet_bytes(&self) -> usize {
        self.seglet_bytes
    }

    /// Seglet holding the byte at arena offset `addr`.
    #[inline]
    pub fn seglet_of(&self, addr: u64) -> u32 {
        (addr >> self.seglet_shift) as u32
    }

    /// Arena offset of the first byte of `seglet`.
    #[inline]
    pub fn seglet_addr(&self, seglet: u32) -> u64 {
        (seglet as u64) << self.seglet_shift
    }

    /// Seglets the address space can ever hold.
    pub fn total_seglets(&self) -> usize {
        self.total_seglets
    }

    /// Seglets allocated now.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Seglets that may be allocated at once.
    pub fn budget(&self) -> usize {
        self.budget.load(Ordering::Relaxed)
    }

    /// Changes the budget. Seglets above it that are free go back to the kernel; seglets in use
    /// above it stay until freed (the engine cleans first so that does not happen).
    pub fn set_budget_seglets(&self, seglets: usize) {
        let seglets = seglets.min(self.total_seglets);
        let old = self.budget.swap(seglets, Ordering::Relaxed);
        if seglets < old {
            let mut st = self.state.lock();
            // Give every free warm seglet back: which of them count against the budget is a
            // matter of counting, and resident memory is what the operator watches.
            let warm = std::mem::take(&mut st.warm);
            for s in warm {
                self.release(s);
                st.cold.push(s);
            }
        }
    }

    /// Faults in, off the hot path, the free seglets that allocation hands out next, so that
    /// at least `target` free seglets are resident (within the budget): writes that open a
    /// fresh segment then copy into memory that is there instead of taking a page fault per
    /// page on a dispatch core. Populates at most `step` seglets per call; returns how many
    /// (`Some(0)`: nothing to do), or `None` if the kernel cannot (`MADV_POPULATE_WRITE` is
    /// Linux 5.14+).
    pub fn warm_up(&self, target: usize, step: usize) -> Option<usize> {
        // The next seglets `alloc` takes once the warm ones are used up: the top of the cold
        // stack. They stay in the free list while being populated (population never changes
        // contents, so it is harmless if one is allocated meanwhile).
        let next: Vec<u32> = {
            let st = self.state.lock();
            let used = self.in_use.load(Ordering::Relaxed);
            let room = self
                .budget
                .load(Ordering::Relaxed)
                .saturating_sub(used + st.warm.len());
            let want = target.saturating_sub(st.warm.len()).min(room).min(step);
            st.cold.iter().rev().take(want).copied().collect()
        };
        if self.seglet_bytes < page_size() {
            return None;
        }
        if next.is_empty() {
            return Some(0);
        }
        for &s in &next {
            // MADV_POPULATE_WRITE faults the pages in writable without touching their contents,
            // so a writer that got the seglet meanwhile is unaffected.
            if self.advise(s, Advice::LinuxPopulateWrite).is_err() {
                return None;
            }
        }
        let mut st = self.state.lock();
        let mut moved = 0;
        for &s in &next {
            if st.cold.last() != Some(&s) {
                break;
            }
            st.cold.pop();
            st.warm.push(s);
            moved += 1;
        }
        Some(moved)
    }

    /// The warm-up thread's loop: keeps `ahead` bytes of free seglets faulted in
    /// ([`Arena::warm_up`]), a few at a time, until `stop` is set (or the kernel cannot).
    pub fn warm_loop(&self, ahead: usize, stop: &AtomicBool) {
        let target = (ahead / self.seglet_bytes).max(1);
        let step = (WARM_STEP_BYTES / self.seglet_bytes).max(1);
        while !stop.load(Ordering::Relaxed) {
            match self.warm_up(target, step) {
                None => return,
                Some(0) => std::thread::sleep(WARM_IDLE),
                Some(_) => {}
            }
        }
    }

    /// Allocates up to `n` seglets, all or nothing, keeping `keep_free` seglets of the budget
    /// unallocated (the cleaner's reserve when the caller is not the cleaner).
    pub fn alloc(&self, n: usize, keep_free: usize) -> Option<Vec<u32>> {
        let mut st = self.state.lock();
        let used = self.in_use.load(Ordering::Relaxed);
        let budget = self.budget.load(Ordering::Relaxed);
        if used + n + keep_free > budget {
            return None;
        }
        if st.warm.len() + st.cold.len() < n {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let s = st
                .warm
                .pop()
                .or_else(|| st.cold.pop())
                .expect("counted above");
            out.push(s);
        }
        self.in_use.fetch_add(n, Ordering::Relaxed);
        Some(out)
    }

    /// Returns seglets to the free list. The caller guarantees nobody reads them any more.
    pub fn free(&self, seglets: &[u32]) {
        let mut st = self.state.lock();
        let over = self.in_use.load(Ordering::Relaxed) > self.budget.load(Ordering::Relaxed);
        for &s in seglets {
            assert!(
                (s as usize) < self.total_seglets,
                "freeing seglet {s} out of range"
            );
            if over {
                self.release(s);
                st.cold.push(s);
            } else {
                st.warm.push(s);
            }
        }
        let prev = self.in_use.fetch_sub(seglets.len(), Ordering::Relaxed);
        assert!(
            prev >= seglets.len(),
            "arena freed more seglets than it allocated"
        );
    }

    fn release(&self, seglet: u32) {
        // madvise works on whole pages: a seglet smaller than a page shares its page with
        // seglets that may be in use, so it cannot be given back on its own. (Only tiny test
        // configurations use such seglets.)
        if self.seglet_bytes < page_size() {
            return;
        }
        // Failure (which the kernel does not report for a valid range) only leaves the memory
        // resident. The seglet is free: nobody holds or reads it, and MADV_DONTNEED on private
        // anonymous memory zero-fills it on next touch.
        let _ = self.advise(seglet, Advice::LinuxDontNeed);
    }

    /// `madvise` on one whole seglet. Only advice that cannot break a reader or writer of the
    /// seglet is passed here: `LinuxDontNeed` on free seglets, `LinuxPopulateWrite` on any.
    fn advise(&self, seglet: u32, advice: Advice) -> rustix::io::Result<()> {
        let addr = self.seglet_addr(seglet) as usize;
        // SAFETY: the range is one whole seglet inside our mapping (seglet < total_seglets, as
        // every seglet number the arena hands out or takes back); the callers' advice keeps
        // its contents valid for whoever owns it (see above).
        unsafe {
            mm::madvise(
                self.base.as_ptr().add(addr).cast(),
                self.seglet_bytes,
                advice,
            )
        }
    }

    /// Copies `src` into the arena at `addr`.
    ///
    /// Panics if `addr..addr+src.len()` crosses a seglet boundary or leaves the arena.
    ///
    /// # Safety
    ///
    /// The seglet holding `addr` must be allocated to the caller (from [`Arena::alloc`], not
    /// freed since), and no other thread may read or write `addr..addr+src.len()` during the
    /// call: the bytes are the unpublished tail of a segment the caller is the single writer of
    /// (the log head under the append lock, or a survivor segment the cleaner is filling), i.e.
    /// beyond the length any reader has seen in the segment's certificate.
    #[inline]
    pub unsafe fn write(&self, addr: u64, src: &[u8]) {
        let start = addr as usize;
        assert!(
            (start & (self.seglet_bytes - 1)) + src.len() <= self.seglet_bytes,
            "arena write crosses a seglet boundary"
        );
        assert!(start + src.len() <= self.reserved_bytes);
        // SAFETY: the range is inside the mapping (checked above) and, by the caller's
        // contract, not read or written by anyone else until published.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.as_ptr().add(start), src.len());
        }
    }

    /// Copies bytes at `addr` into `dst`.
    ///
    /// Panics if `addr..addr+dst.len()` crosses a seglet boundary or leaves the arena.
    ///
    /// # Safety
    ///
    /// The bytes must have been written and published before (below a segment length read with
    /// `Acquire`, or reached through an object-table reference), so that no thread writes them
    /// during the call, and their seglet must stay allocated for the duration of the call: the
    /// caller holds the hash-table stripe of the key whose entry it reads, or owns the segment
    /// (its writer, the cleaner that selected it, or a holder of a segment reference that keeps
    /// it from being freed). See docs/ARCHITECTURE.md, "Invariants the engine keeps".
    #[inline]
    pub unsafe fn read(&self, addr: u64, dst: &mut [u8]) {
        let start = addr as usize;
        assert!(
            (start & (self.seglet_bytes - 1)) + dst.len() <= self.seglet_bytes,
            "arena read crosses a seglet boundary"
        );
        assert!(start + dst.len() <= self.reserved_bytes);
        // SAFETY: inside the mapping (checked); by the caller's contract the bytes are
        // published and immutable while it reads them, so no data race.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(start),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
    }

    /// Calls `f` with the published bytes at `addr..addr+len` (one seglet), without copying.
    ///
    /// Panics if the range crosses a seglet boundary or leaves the arena.
    ///
    /// # Safety
    ///
    /// As for [`Arena::read`], for the whole time `f` runs: the bytes are published (nobody
    /// writes them) and their seglet stays allocated until `f` returns (the caller holds the
    /// key's hash-table stripe or owns the segment across the call).
    #[inline]
    pub unsafe fn with_slice<R>(&self, addr: u64, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        let start = addr as usize;
        assert!(
            (start & (self.seglet_bytes - 1)) + len <= self.seglet_bytes,
            "arena slice crosses a seglet boundary"
        );
        assert!(start + len <= self.reserved_bytes);
        // SAFETY: inside the mapping (checked); by the caller's contract the bytes are
        // published, immutable and allocated until `f` returns; the slice does not escape `f`.
        let slice = unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(start), len) };
        f(slice)
    }
}

/// Hints the CPU to fetch the cache line at `addr` (any address: prefetching never faults).
/// Here because the intrinsic is `unsafe` to call (it is a `#[target_feature(enable = "sse")]`
/// function, although SSE is part of the x86_64 baseline).
#[inline]
pub fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is always present on x86_64; PREFETCHT0 has no architectural effect besides
    // caching, and invalid addresses are ignored by the hardware.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

fn page_size() -> usize {
    rustix::param::page_size()
}

impl Drop for Arena {
    fn drop(&mut self) {
        // Failure is impossible for the exact range `mmap` returned; nothing to do about it.
        // SAFETY: unmapping the region mapped in `new`; no references into it survive `self`.
        let _ = unsafe { mm::munmap(self.base.as_ptr().cast(), self.reserved_bytes) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_faults_in_the_next_seglets_within_the_budget() {
        let seg = 64 * 1024;
        let a = Arena::new(12 * seg, 64 * seg, seg, false).unwrap();
        let warm = |a: &Arena| a.state.lock().warm.len();
        // Four per step, up to the target of 8.
        assert_eq!(a.warm_up(8, 4), Some(4));
        assert_eq!(a.warm_up(8, 4), Some(4));
        assert_eq!(a.warm_up(8, 4), Some(0));
        assert_eq!(warm(&a), 8);
        // The warm ones are allocated first, and hold what is written to them.
        let s = a.alloc(10, 0).unwrap();
        assert_eq!(warm(&a), 0);
        // SAFETY: the seglet was just allocated to this test.
        unsafe { a.write(a.seglet_addr(s[0]), b"kept") };
        // Never beyond the budget: 10 in use + at most 2 warm.
        assert_eq!(a.warm_up(8, 4), Some(2));
        assert_eq!(a.warm_up(8, 4), Some(0));
        let mut got = [0u8; 4];
        // SAFETY: still allocated to this test, written above.
        unsafe { a.read(a.seglet_addr(s[0]), &mut got) };
        assert_eq!(&got, b"kept");
        a.free(&s);
    }

    #[test]
    fn alloc_free_respects_budget_and_reserve() {
        let a = Arena::new(64 * 1024, 128 * 1024, 4096, false).unwrap();
        assert_eq!(a.budget(), 16);
        assert!(a.alloc(17, 0).is_none());
        assert!(a.alloc(15, 2).is_none());
        let s = a.alloc(14, 2).unwrap();
        assert_eq!(a.in_use(), 14);
        a.free(&s);
        assert_eq!(a.in_use(), 0);
        a.set_budget_seglets(32);
        assert_eq!(a.alloc(32, 0).map(|v| v.len()), Some(32));
    }

    #[test]
    fn read_back_what_was_written() {
        let a = Arena::new(64 * 1024, 64 * 1024, 4096, false).unwrap();
        let s = a.alloc(2, 0).unwrap();
        let addr = a.seglet_addr(s[1]) + 100;
        // SAFETY: the test owns seglet s[1] (allocated above, never freed) and is the only
        // thread; the bytes read were written just before.
        unsafe {
            a.write(addr, b"hello");
            let mut out = [0u8; 5];
            a.read(addr, &mut out);
            assert_eq!(&out, b"hello");
            a.with_slice(addr, 5, |b| assert_eq!(b, b"hello"));
        }
    }

    #[test]
    #[should_panic(expected = "crosses a seglet boundary")]
    fn writes_across_seglets_are_refused() {
        let a = Arena::new(64 * 1024, 64 * 1024, 4096, false).unwrap();
        let _owned = a.alloc(16, 0).unwrap();
        // SAFETY: the test owns every seglet and is the only thread; the bounds check panics
        // before any byte is written.
        unsafe { a.write(4090, b"0123456789") };
    }

    #[test]
    fn impossible_reservation_is_a_clear_error() {
        let e = Arena::new(0, 0, 4096, false).unwrap_err();
        assert!(e.to_string().contains("holds no"), "{e}");
    }
}
