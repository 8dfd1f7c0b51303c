//! The write-back queue of one master, sans I/O: which dirty objects of write-back tables
//! still have to reach the store, in what order, and who waits for them (`FlushObjects`).
//! The worker does the uploads; this module only decides.
//!
//! * **Coalescing.** A key is queued once however often it is overwritten: an upload reads
//!   the object's *current* value from the engine, so one upload covers every write before it.
//! * **Per-key order.** A key is handed to at most one uploader at a time; a write while it
//!   uploads makes it run again afterwards ([`Done::Clean`] of a key written meanwhile is
//!   requeued, and the engine's `replace_clean` refuses the older version anyway).
//! * **Back-off.** A failed upload is retried after 100 ms, doubling per failure up to 30 s;
//!   an error a retry cannot fix (credentials, missing bucket) starts at 5 s. Never dropped:
//!   dirty data leaves the queue only once it is clean (or gone from the engine).
//! * **Limit.** The dirty bytes queued here are counted; [`Queue::admits`] says whether a
//!   write of `n` more bytes stays under the limit (`WRITE_BACK_FULL` otherwise).
//! * **Flush waiters.** A flush names the keys queued when it arrives; it is answered when
//!   each of them has left the queue (bounded: [`MAX_WAITERS`]).

use std::collections::{BTreeSet, HashMap, HashSet};

use faascache_storage::TableId;

/// First retry delay after a retryable failure (ms).
pub const BACKOFF_MIN_MS: u64 = 100;
/// First retry delay after a failure a retry cannot fix (ms).
pub const BACKOFF_FATAL_MS: u64 = 5_000;
/// Longest retry delay (ms).
pub const BACKOFF_MAX_MS: u64 = 30_000;
/// Most flushes waiting at once on one master (more are answered `RETRY`).
pub const MAX_WAITERS: usize = 1024;

/// A queued object: table and key.
pub type Key = (TableId, Vec<u8>);

#[derive(Debug)]
struct Entry {
    /// Bytes of the newest dirty value (counted against the limit).
    bytes: u64,
    /// When the oldest write not yet uploaded was queued (ms, master clock).
    since_ms: u64,
    /// When it may be uploaded next (ms); `None` while an uploader has it.
    due: Option<u64>,
    /// Written again while uploading.
    again: bool,
    /// Failures in a row.
    failures: u32,
    /// The last upload failed with an error a retry cannot fix (cleared by a new write).
    refused: bool,
    /// Insertion order, to break ties between equal due times.
    seq: u64,
}

/// How an upload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// The store has the version read; the engine copy is clean (or was gone/clean already).
    Clean,
    /// The object changed during the upload: upload again now.
    Moved,
    /// The upload failed; `retryable` says whether a retry may fix it.
    Failed {
        /// `objstore::Error::is_retryable`.
        retryable: bool,
    },
}

/// A flush that was answered: its id, and what it waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// The id [`Queue::wait`] gave.
    pub id: u64,
    /// Objects it waited for.
    pub objects: u64,
    /// Their bytes when the flush arrived.
    pub bytes: u64,
}

#[derive(Debug)]
struct Waiter {
    remaining: HashSet<Key>,
    /// Ended by [`Queue::rejected`] when one of its keys fails for good (write-through).
    fail_fast: bool,
    objects: u64,
    bytes: u64,
}

/// The queue's gauges (for `status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Dirty objects queued.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Age of the oldest write not yet uploaded (ms; 0 if none).
    pub oldest_ms: u64,
    /// The dirty-bytes limit.
    pub limit: u64,
}

/// The queue (wrap in a mutex; every call is short).
#[derive(Debug)]
pub struct Queue {
    entries: HashMap<Key, Entry>,
    /// Keys waiting for an uploader, by (due, seq).
    ready: BTreeSet<(u64, u64, Key)>,
    uploading: usize,
    parallel: usize,
    bytes: u64,
    limit: u64,
    seq: u64,
    waiters: HashMap<u64, Waiter>,
    next_waiter: u64,
    /// Tables with keys backing off after a failed upload: the first success in one of them
    /// (its store is back) makes all of them due at once instead of each waiting out its own
    /// back-off (up to 30 s).
    failing: std::collections::HashSet<TableId>,
    /// Milliseconds a newly queued key waits before its upload may start (see
    /// [`Queue::with_settle`]).
    settle: u64,
}

impl Queue {
    /// A newly dirty key becomes due `ms` after its write, not at once: the write's
    /// acknowledgement (replication, reply) does not share the node's CPU with its own upload,
    /// and overwrites within the window coalesce. A flush or a write-through wait makes the
    /// keys it names due at once.
    pub fn with_settle(mut self, ms: u64) -> Queue {
        self.settle = ms;
        self
    }

    /// A queue of at most `limit` dirty bytes, with up to `parallel` uploads at once.
    pub fn new(limit: u64, parallel: usize) -> Queue {
        Queue {
            entries: HashMap::new(),
            ready: BTreeSet::new(),
            uploading: 0,
            parallel: parallel.max(1),
            bytes: 0,
            limit,
            seq: 0,
            waiters: HashMap::new(),
            next_waiter: 1,
            failing: Default::default(),
            settle: 0,
        }
    }

    /// Change the dirty-bytes limit (the master's memory was resized); bytes already dirty
    /// above it stay queued, new writes wait until the queue is under it again.
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Whether a write of `bytes` to `key` keeps the dirty bytes within the limit (an
    /// overwrite of a queued key counts only what it adds). An empty queue admits any one
    /// write, so a value larger than the limit is never refused forever.
    pub fn admits(&self, key: &Key, bytes: u64) -> bool {
        let old = self.entries.get(key).map_or(0, |e| e.bytes);
        self.bytes == 0 || self.bytes - old + bytes <= self.limit
    }

    /// Record that `key` was written (dirty, `bytes` long) at `now`: queue it, or — already
    /// queued — just count its new size (coalescing).
    pub fn dirty(&mut self, key: Key, bytes: u64, now: u64) {
        if let Some(e) = self.entries.get_mut(&key) {
            self.bytes = self.bytes - e.bytes + bytes;
            e.bytes = bytes;
            e.refused = false;
            if e.due.is_none() {
                e.again = true;
            }
            return;
        }
        self.seq += 1;
        self.bytes += bytes;
        let due = now.saturating_add(self.settle);
        self.ready.insert((due, self.seq, key.clone()));
        self.entries.insert(
            key,
            Entry {
                bytes,
                since_ms: now,
                due: Some(due),
                again: false,
                failures: 0,
                refused: false,
                seq: self.seq,
            },
        );
    }

    /// The next key to upload at `now`, if an uploader may start one; the caller must report
    /// it with [`Queue::done`].
    pub fn next(&mut self, now: u64) -> Option<Key> {
        if self.uploading >= self.parallel {
            return None;
        }
        let first = self.ready.first()?;
        if first.0 > now {
            return None;
        }
        let (_, _, key) = self.ready.pop_first()?;
        if let Some(e) = self.entries.get_mut(&key) {
            e.due = None;
            e.again = false;
        }
        self.uploading += 1;
        Some(key)
    }

    /// When the next key becomes due (ms), if any is waiting and an uploader is free.
    pub fn next_due(&self) -> Option<u64> {
        if self.uploading >= self.parallel {
            return None;
        }
        self.ready.first().map(|r| r.0)
    }

    /// Report how the upload of `key` (from [`Queue::next`]) ended at `now`; returns the
    /// flushes this answered.
    pub fn done(&mut self, key: &Key, how: Done, now: u64) -> Vec<Flushed> {
        self.uploading = self.uploading.saturating_sub(1);
        let table = key.0;
        if matches!(how, Done::Clean) && self.failing.remove(&table) {
            self.store_is_back(table, now);
        }
        let Some(e) = self.entries.get_mut(key) else {
            return Vec::new();
        };
        let due = match how {
            Done::Clean if e.again => now,
            Done::Clean => return self.forget(key),
            Done::Moved => now,
            Done::Failed { retryable } => {
                e.failures = e.failures.saturating_add(1);
                self.failing.insert(table);
                e.refused = !retryable;
                now + backoff(e.failures, retryable)
            }
        };
        e.again = false;
        e.due = Some(due);
        self.ready.insert((due, e.seq, key.clone()));
        Vec::new()
    }

    /// An upload to `table`'s store succeeded after failures: every key of the table waiting
    /// out a back-off is due now, with its failure count reset.
    fn store_is_back(&mut self, table: TableId, now: u64) {
        for (key, e) in self.entries.iter_mut() {
            if key.0 != table || e.failures == 0 {
                continue;
            }
            e.failures = 0;
            if let Some(due) = e.due.filter(|&d| d > now) {
                self.ready.remove(&(due, e.seq, key.clone()));
                e.due = Some(now);
                self.ready.insert((now, e.seq, key.clone()));
            }
        }
    }

    /// Drop `key` (its object is clean or gone) and answer the flushes it completes.
    fn forget(&mut self, key: &Key) -> Vec<Flushed> {
        if let Some(e) = self.entries.remove(key) {
            self.bytes -= e.bytes;
            if let Some(due) = e.due {
                self.ready.remove(&(due, e.seq, key.clone()));
            }
        }
        let mut out = Vec::new();
        self.waiters.retain(|&id, w| {
            w.remaining.remove(key);
            if w.remaining.is_empty() {
                out.push(Flushed {
                    id,
                    objects: w.objects,
                    bytes: w.bytes,
                });
                false
            } else {
                true
            }
        });
        out
    }

    /// Drop every queued key of `table` that is not being uploaded (the table was dropped
    /// here); returns the flushes this answered.
    pub fn drop_table(&mut self, table: TableId) -> Vec<Flushed> {
        let keys: Vec<Key> = self
            .entries
            .iter()
            .filter(|(k, e)| k.0 == table && e.due.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter().flat_map(|k| self.forget(k)).collect()
    }

    /// Wait for the keys now queued that `which` selects: `Ok(None)` if there are none (the
    /// flush is answered at once with 0 objects), `Ok(Some(id))` to be answered by
    /// [`Queue::done`], `Err(())` if [`MAX_WAITERS`] flushes wait already.
    #[allow(clippy::result_unit_err)]
    pub fn wait(&mut self, which: impl Fn(&Key) -> bool) -> Result<Option<u64>, ()> {
        self.wait_as(which, false)
    }

    /// [`Queue::wait`], but ended early by [`Queue::rejected`] when an upload of one of its
    /// keys fails with an error a retry cannot fix (a write-through write's wait).
    #[allow(clippy::result_unit_err)]
    pub fn wait_fail_fast(&mut self, which: impl Fn(&Key) -> bool) -> Result<Option<u64>, ()> {
        self.wait_as(which, true)
    }

    fn wait_as(
        &mut self,
        which: impl Fn(&Key) -> bool,
        fail_fast: bool,
    ) -> Result<Option<u64>, ()> {
        if self.waiters.len() >= MAX_WAITERS {
            return Err(());
        }
        let mut w = Waiter {
            fail_fast,
            remaining: HashSet::new(),
            objects: 0,
            bytes: 0,
        };
        for (k, e) in self.entries.iter_mut() {
            if which(k) {
                w.remaining.insert(k.clone());
                w.objects += 1;
                w.bytes += e.bytes;
                // Waited for: no settling (a back-off after a failure stays).
                if let Some(due) = e.due.filter(|_| e.failures == 0 && self.settle > 0) {
                    let early = due.saturating_sub(self.settle).max(e.since_ms);
                    self.ready.remove(&(due, e.seq, k.clone()));
                    self.ready.insert((early, e.seq, k.clone()));
                    e.due = Some(early);
                }
            }
        }
        if w.remaining.is_empty() {
            return Ok(None);
        }
        let id = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.insert(id, w);
        Ok(Some(id))
    }

    /// The upload of `key` failed with an error a retry cannot fix: end (and return) the
    /// fail-fast waits that name it. The key stays queued (retried with back-off).
    pub fn rejected(&mut self, key: &Key) -> Vec<u64> {
        let ids: Vec<u64> = self
            .waiters
            .iter()
            .filter(|(_, w)| w.fail_fast && w.remaining.contains(key))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.waiters.remove(id);
        }
        ids
    }

    /// End the fail-fast wait `id` if one of its keys' last upload (since its last write)
    /// failed for good already — before the wait began; returns whether it did.
    pub fn refused(&mut self, id: u64) -> bool {
        let Some(w) = self.waiters.get(&id) else {
            return false;
        };
        let refused = w.fail_fast
            && w.remaining
                .iter()
                .any(|k| self.entries.get(k).is_some_and(|e| e.refused));
        if refused {
            self.waiters.remove(&id);
        }
        refused
    }

    /// Give up waiting (timeout); returns how many of its objects are still dirty.
    pub fn cancel(&mut self, id: u64) -> Option<u64> {
        self.waiters.remove(&id).map(|w| w.remaining.len() as u64)
    }

    /// Whether `key` is queued.
    pub fn contains(&self, key: &Key) -> bool {
        self.entries.contains_key(key)
    }

    /// The gauges at `now`.
    pub fn gauges(&self, now: u64) -> Gauges {
        let oldest = self.entries.values().map(|e| e.since_ms).min();
        Gauges {
            objects: self.entries.len() as u64,
            bytes: self.bytes,
            oldest_ms: oldest.map_or(0, |t| now.saturating_sub(t)),
            limit: self.limit,
        }
    }
}

/// The retry delay after `failures` failures in a row (ms).
pub fn backoff(failures: u32, retryable: bool) -> u64 {
    let base = if retryable {
        BACKOFF_MIN_MS
    } else {
        BACKOFF_FATAL_MS
    };
    let shift = failures.saturating_sub(1).min(20);
    (base << shift).min(BACKOFF_MAX_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Key {
        (1, s.as_bytes().to_vec())
    }

    #[test]
    fn overwrites_coalesce_into_one_upload() {
        let mut q = Queue::new(1 << 20, 4);
        q.dirty(k("a"), 10, 0);
        q.dirty(k("a"), 30, 5);
        q.dirty(k("b"), 7, 6);
        let g = q.gauges(10);
        assert_eq!((g.objects, g.bytes, g.oldest_ms), (2, 37, 10));
        assert_eq!(q.next(10), Some(k("a")));
        assert_eq!(q.next(10), Some(k("b")));
        assert_eq!(q.next(10), None, "each key once");
        q.done(&k("a"), Done::Clean, 11);
        q.done(&k("b"), Done::Clean, 11);
        assert_eq!(
            q.gauges(12),
            Gauges {
                limit: 1 << 20,
                ..Gauges::default()
            }
        );
    }

    #[test]
    fn a_new_key_settles_unless_a_flush_waits_for_it() {
        let mut q = Queue::new(1 << 20, 4).with_settle(5);
        q.dirty(k("a"), 10, 100);
        q.dirty(k("b"), 10, 101);
        assert_eq!(q.next(104), None, "settling");
        assert_eq!(q.next_due(), Some(105));
        assert_eq!(q.next(105), Some(k("a")));
        // An overwrite while queued keeps its place; a flush of `b` makes it due at once.
        q.dirty(k("b"), 20, 102);
        assert_eq!(q.wait(|key| *key == k("b")), Ok(Some(1)));
        assert_eq!(q.next_due(), Some(101));
        assert_eq!(q.next(102), Some(k("b")));
        // A key backing off after a failure is not hurried by a flush.
        q.done(&k("b"), Done::Failed { retryable: true }, 103);
        let backing_off = q.next_due().unwrap();
        assert!(backing_off > 110, "{backing_off}");
        q.wait(|key| *key == k("b")).unwrap();
        assert_eq!(q.next_due(), Some(backing_off));
    }

    #[test]
    fn a_key_is_never_uploaded_twice_at_once() {
        let mut q = Queue::new(1 << 20, 4);
        q.dirty(k("a"), 1, 0);
        assert_eq!(q.next(0), Some(k("a")));
        q.dirty(k("a"), 2, 1); // written while uploading
        assert_eq!(q.next(1), None, "not while its upload runs");
        // The upload of the older version finished: the newer one goes next.
        assert!(q.done(&k("a"), Done::Clean, 2).is_empty());
        assert!(q.contains(&k("a")));
        assert_eq!(q.next(2), Some(k("a")));
        q.done(&k("a"), Done::Moved, 3);
        assert_eq!(q.next(3), Some(k("a")), "moved: again at once");
        q.done(&k("a"), Done::Clean, 4);
        assert!(!q.contains(&k("a")));
        assert_eq!(q.gauges(4).bytes, 0);
    }

    #[test]
    fn a_success_after_an_outage_makes_every_waiting_key_due() {
        let mut q = Queue::new(1 << 20, 1);
        let x: Key = (2, b"x".to_vec());
        q.dirty(k("a"), 1, 0);
        q.dirty(x.clone(), 1, 0);
        // The stores are down: both keys fail again and again and back off.
        let mut now = 0;
        for _ in 0..12 {
            now = now.max(q.next_due().unwrap());
            let key = q.next(now).unwrap();
            q.done(&key, Done::Failed { retryable: true }, now);
        }
        let a_due = q.ready.iter().find(|r| r.2 == k("a")).unwrap().0;
        let x_due = q.ready.iter().find(|r| r.2 == x).unwrap().0;
        assert!(a_due > now + 1000 && x_due > now + 1000, "backing off");
        // Table 1's store is back: a new key uploads fine...
        q.dirty(k("b"), 1, now);
        assert_eq!(q.next(now), Some(k("b")));
        q.done(&k("b"), Done::Clean, now);
        // ...so "a" is due at once, not after its back-off; table 2's key still waits.
        assert_eq!(q.next(now), Some(k("a")));
        q.done(&k("a"), Done::Clean, now);
        assert_eq!(q.next(now), None);
        assert_eq!(q.next_due(), Some(x_due));
    }

    #[test]
    fn parallel_uploads_are_bounded() {
        let mut q = Queue::new(1 << 20, 2);
        for s in ["a", "b", "c"] {
            q.dirty(k(s), 1, 0);
        }
        assert!(q.next(0).is_some() && q.next(0).is_some());
        assert_eq!(q.next(0), None);
        assert_eq!(q.next_due(), None, "no uploader free");
        q.done(&k("a"), Done::Clean, 1);
        assert_eq!(q.next_due(), Some(0));
        assert_eq!(q.next(1), Some(k("c")));
    }

    #[test]
    fn failures_back_off_and_never_drop() {
        let mut q = Queue::new(1 << 20, 1);
        q.dirty(k("a"), 5, 0);
        let mut now = 0;
        let mut delays = Vec::new();
        for _ in 0..12 {
            assert_eq!(q.next(now), Some(k("a")));
            q.done(&k("a"), Done::Failed { retryable: true }, now);
            let due = q.next_due().unwrap();
            assert_eq!(q.next(due - 1), None, "not before its time");
            delays.push(due - now);
            now = due;
        }
        assert_eq!(&delays[..4], &[100, 200, 400, 800]);
        assert_eq!(*delays.last().unwrap(), BACKOFF_MAX_MS);
        assert_eq!(q.gauges(now).objects, 1, "still queued");
        assert_eq!(backoff(1, false), BACKOFF_FATAL_MS);
        assert_eq!(backoff(9, false), BACKOFF_MAX_MS);
        // A success resets nothing but removes it.
        q.next(now).unwrap();
        q.done(&k("a"), Done::Clean, now);
        assert_eq!(q.gauges(now).objects, 0);
    }

    #[test]
    fn the_limit_counts_dirty_bytes() {
        let mut q = Queue::new(100, 1);
        assert!(q.admits(&k("a"), 500), "an empty queue admits one write");
        q.dirty(k("a"), 60, 0);
        assert!(q.admits(&k("b"), 40));
        assert!(!q.admits(&k("b"), 41));
        assert!(q.admits(&k("a"), 100), "an overwrite counts what it adds");
        q.dirty(k("b"), 40, 0);
        assert!(!q.admits(&k("c"), 1));
        q.next(0).unwrap();
        q.done(&k("a"), Done::Clean, 1);
        assert!(q.admits(&k("c"), 60));
        assert_eq!(q.gauges(1).limit, 100);
    }

    #[test]
    fn flushes_wait_for_the_keys_queued_when_they_arrive() {
        let mut q = Queue::new(1 << 20, 4);
        q.dirty(k("a"), 3, 0);
        q.dirty(k("b"), 4, 0);
        q.dirty((2, b"a".to_vec()), 5, 0);
        let all = q.wait(|key| key.0 == 1).unwrap().unwrap();
        let one = q.wait(|key| *key == k("b")).unwrap().unwrap();
        assert_eq!(q.wait(|key| key.0 == 9), Ok(None), "nothing to wait for");
        q.dirty(k("c"), 1, 1); // later: not waited for
        let a = q.next(1).unwrap();
        let b = q.next(1).unwrap();
        assert_eq!((a, b.clone()), (k("a"), k("b")));
        assert_eq!(
            q.done(&b, Done::Clean, 2),
            vec![Flushed {
                id: one,
                objects: 1,
                bytes: 4
            }]
        );
        assert!(q
            .done(&k("a"), Done::Failed { retryable: true }, 2)
            .is_empty());
        let late = q.wait(|key| *key == k("a")).unwrap().unwrap();
        assert_eq!(
            q.cancel(late),
            Some(1),
            "a timed-out flush names what remains"
        );
        let now = 200; // past the back-off of `a`
        assert_eq!(q.next(now), Some((2, b"a".to_vec())));
        assert_eq!(q.next(now), Some(k("c")));
        assert_eq!(q.next(now), Some(k("a")));
        assert_eq!(
            q.done(&k("a"), Done::Clean, now),
            vec![Flushed {
                id: all,
                objects: 2,
                bytes: 7
            }]
        );
    }

    #[test]
    fn a_failure_for_good_ends_only_fail_fast_waits() {
        let mut q = Queue::new(1 << 20, 1);
        q.dirty(k("a"), 1, 0);
        let plain = q.wait(|key| *key == k("a")).unwrap().unwrap();
        let fast = q.wait_fail_fast(|key| *key == k("a")).unwrap().unwrap();
        let other = q.wait_fail_fast(|key| key.0 == 9);
        assert_eq!(other, Ok(None));
        assert_eq!(q.next(0), Some(k("a")));
        q.done(&k("a"), Done::Failed { retryable: false }, 0);
        assert!(q.rejected(&k("b")).is_empty());
        assert_eq!(q.rejected(&k("a")), vec![fast]);
        assert!(q.rejected(&k("a")).is_empty(), "once");
        // A wait that begins after the failure ends at once; a new write clears it.
        let late = q.wait_fail_fast(|key| *key == k("a")).unwrap().unwrap();
        assert!(q.refused(late) && !q.refused(late));
        let plain_late = q.wait(|key| *key == k("a")).unwrap().unwrap();
        assert!(!q.refused(plain_late), "only fail-fast waits");
        q.cancel(plain_late);
        q.dirty(k("a"), 1, 0);
        let fresh = q.wait_fail_fast(|key| *key == k("a")).unwrap().unwrap();
        assert!(!q.refused(fresh), "written again: waits for its upload");
        q.cancel(fresh);
        assert!(q.contains(&k("a")), "still queued");
        let due = q.next_due().unwrap();
        q.next(due).unwrap();
        let done = q.done(&k("a"), Done::Clean, due);
        assert_eq!(done.iter().map(|f| f.id).collect::<Vec<_>>(), vec![plain]);
    }

    #[test]
    fn waiters_are_bounded_and_dropped_tables_answer_them() {
        let mut q = Queue::new(1 << 20, 1);
        q.dirty(k("a"), 1, 0);
        q.dirty(k("b"), 1, 0);
        assert_eq!(q.next(0), Some(k("a")));
        let mut ids = Vec::new();
        for _ in 0..MAX_WAITERS {
            ids.push(q.wait(|key| *key == k("b")).unwrap().unwrap());
        }
        assert_eq!(q.wait(|_| true), Err(()));
        assert_eq!(q.drop_table(1).len(), MAX_WAITERS);
        assert!(q.contains(&k("a")), "its upload is running: kept");
        assert!(!q.contains(&k("b")));
        q.done(&k("a"), Done::Clean, 1);
        assert_eq!(q.gauges(1).objects, 0);
    }
}
