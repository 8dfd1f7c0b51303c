//! Replica frames: the memory a backup stores open replicas in, allocated whole and faulted in
//! ahead of use.
//!
//! A replica that grew by reallocation as its master's writes arrived was copied at every
//! doubling and faulted its pages in on the dispatch thread that handled the write (on this
//! VM ≈ 1 ms per MiB: a megabyte write paid it on the backup's side of its critical path). A
//! replica whose segment header declares a full-size segment now starts in a frame of
//! [`MAX_REPLICA_BYTES`] that a background thread has already faulted in, and a freed
//! replica's frame goes back to the pool (up to its bound) instead of to the allocator — as
//! RAMCloud's backups keep a fixed set of segment frames. Smaller segments (tests, small
//! `--segment-size`) get an exact allocation.
//!
//! The warmer starts with the first full-size replica (a server nobody replicates to keeps
//! no frames). Bounded: at most `ready` frames wait in the pool (`BackupConfig::warm_bytes`); the frames
//! in use are bounded by the backup's capacity like any replica memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::MAX_REPLICA_BYTES;

/// Size of a pooled frame.
pub(crate) const FRAME_BYTES: usize = MAX_REPLICA_BYTES;
/// Page stride used to fault a frame in.
const PAGE: usize = 4096;

#[derive(Default)]
struct Pool {
    ready: Vec<Vec<u8>>,
    /// Frames handed out since the warmer last looked (wakes it).
    wanted: bool,
}

struct Inner {
    pool: Mutex<Pool>,
    wake: Condvar,
    /// How many frames the pool keeps ready.
    target: usize,
    /// Whether the warmer thread was started.
    started: AtomicBool,
}

/// The pool of ready frames of one backup.
pub(crate) struct Frames {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Frames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frames")
            .field("target", &self.inner.target)
            .finish_non_exhaustive()
    }
}

impl Frames {
    /// A pool that keeps `warm_bytes / FRAME_BYTES` frames faulted in (none and no thread for
    /// less than one frame).
    pub(crate) fn new(warm_bytes: usize) -> Frames {
        let inner = Arc::new(Inner {
            pool: Mutex::new(Pool::default()),
            wake: Condvar::new(),
            target: warm_bytes / FRAME_BYTES,
            started: AtomicBool::new(false),
        });
        Frames { inner }
    }

    /// Start the warmer on the first full-size replica: a server that no master uses as a
    /// backup (`--replicas 0` clusters, a lone server) never faults frames in.
    fn start_warmer(&self) {
        if self.inner.started.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("backup-frames".into())
            .spawn(move || warm_loop(&weak));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the backup's frame warmer; replicas allocate on first write");
        }
    }

    /// Memory for a new replica whose segment declares `declared` bytes (`None`: not known
    /// yet): a ready frame for a full-size segment, else an empty vector with that capacity.
    pub(crate) fn take(&self, declared: Option<usize>) -> Vec<u8> {
        let cap = declared.unwrap_or(0).min(MAX_REPLICA_BYTES);
        if cap > FRAME_BYTES / 2 && self.inner.target > 0 {
            self.start_warmer();
            let mut p = self.inner.pool.lock();
            let frame = p.ready.pop();
            p.wanted = true;
            drop(p);
            self.inner.wake.notify_one();
            if let Some(f) = frame {
                return f;
            }
        }
        Vec::with_capacity(cap)
    }

    /// A freed replica's memory: kept as a ready frame if it is one and the pool is short.
    pub(crate) fn give(&self, mut v: Vec<u8>) {
        if v.capacity() != FRAME_BYTES || self.inner.target == 0 {
            return;
        }
        let mut p = self.inner.pool.lock();
        if p.ready.len() < self.inner.target {
            v.clear();
            p.ready.push(v);
        }
    }

    /// Frames waiting in the pool.
    #[cfg(test)]
    pub(crate) fn ready(&self) -> usize {
        self.inner.pool.lock().ready.len()
    }
}

/// A frame with every page written once (faulted in), empty.
fn warm_frame() -> Vec<u8> {
    let mut v: Vec<u8> = Vec::with_capacity(FRAME_BYTES);
    for b in v.spare_capacity_mut().iter_mut().step_by(PAGE) {
        b.write(0);
    }
    v
}

/// Keep the pool at its target until the backup is gone.
fn warm_loop(inner: &Weak<Inner>) {
    loop {
        let Some(i) = inner.upgrade() else { return };
        let short = {
            let mut p = i.pool.lock();
            if p.ready.len() >= i.target && !p.wanted {
                // Wake up now and then to notice the backup is gone.
                i.wake.wait_for(&mut p, Duration::from_millis(500));
            }
            p.wanted = false;
            p.ready.len() < i.target
        };
        if short {
            let f = warm_frame();
            let mut p = i.pool.lock();
            if p.ready.len() < i.target {
                p.ready.push(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn until(what: &str, f: impl Fn() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(t.elapsed() < Duration::from_secs(20), "timed out: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn full_size_replicas_get_ready_frames_and_freed_frames_return() {
        let f = Frames::new(2 * FRAME_BYTES);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(f.ready(), 0, "no frame before the first full-size replica");
        let first = f.take(Some(FRAME_BYTES));
        assert_eq!(
            first.capacity(),
            FRAME_BYTES,
            "allocated while the pool warms"
        );
        until("two frames ready", || f.ready() == 2);
        let a = f.take(Some(FRAME_BYTES));
        assert_eq!(a.capacity(), FRAME_BYTES);
        assert!(a.is_empty(), "a frame is handed out empty");
        until("the warmer refills the pool", || f.ready() == 2);
        // Not full-size: an exact allocation, the pool untouched.
        let small = f.take(Some(64 * 1024));
        assert_eq!(small.capacity(), 64 * 1024);
        assert_eq!(f.take(None).capacity(), 0);
        assert_eq!(f.ready(), 2);
        // A freed frame is kept only while the pool is short.
        let mut b = f.take(Some(FRAME_BYTES));
        b.extend_from_slice(&[1; 100]);
        f.give(a);
        assert_eq!(
            f.ready(),
            2,
            "the pool was full (or refilled): the frame was dropped"
        );
        let _c = f.take(Some(FRAME_BYTES));
        let _d = f.take(Some(FRAME_BYTES));
        f.give(b);
        assert!(f.ready() >= 1);
        f.give(small);
        assert!(f.ready() <= 2, "never more than the target");
    }

    #[test]
    fn no_target_no_thread_and_plain_allocations() {
        let f = Frames::new(FRAME_BYTES - 1);
        let v = f.take(Some(FRAME_BYTES));
        assert_eq!(v.capacity(), FRAME_BYTES);
        f.give(v);
        assert_eq!(f.ready(), 0);
    }
}
