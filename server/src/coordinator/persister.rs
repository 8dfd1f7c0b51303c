//! Persisting the coordinator's state outside its state mutex.
//!
//! A transition encodes the new state *under* the state lock and hands the blob to
//! [`Persister::submit`], which gives it the next sequence number (so sequence order is state
//! order). The caller then drops the lock and calls [`Persister::wait`] for its number: one
//! caller at a time writes, always the newest blob submitted (a write covers every earlier
//! number; intermediate states are skipped, never written after a later one). So a slow store
//! (`zk:` during a connection loss) delays only callers that need durability, never heartbeats,
//! server lists or tablet-map queries, which only take the state lock.
//!
//! Invariants: the sequence numbers written to storage strictly increase; `wait(n)` returns `Ok`
//! only once a write of a blob numbered ≥ n succeeded, and an error only if the write that
//! covered n failed (later writes may then succeed with the same state and more).

use parking_lot::{Condvar, Mutex};

use super::external::{ExternalStorage, ExternalStorageError};

#[derive(Debug, Default)]
struct Inner {
    /// The last number given out.
    submitted: u64,
    /// The newest blob not yet taken by a writer, with its number.
    pending: Option<(u64, Vec<u8>)>,
    /// A write is in progress.
    writing: bool,
    /// Every number ≤ this is durable.
    durable: u64,
    /// The newest failed write: its number and error (numbers in (durable, failed.0] failed).
    failed: Option<(u64, ExternalStorageError)>,
}

/// Orders and performs the coordinator's state writes (see the module's documentation).
#[derive(Debug, Default)]
pub struct Persister {
    inner: Mutex<Inner>,
    done: Condvar,
}

impl Persister {
    /// Number `blob` (call under the state lock, right after encoding it).
    pub fn submit(&self, blob: Vec<u8>) -> u64 {
        let mut g = self.inner.lock();
        g.submitted += 1;
        let seq = g.submitted;
        g.pending = Some((seq, blob));
        seq
    }

    /// Wait until the state numbered `seq` is durable (writing it, or a newer state, on this
    /// thread if no write is in progress). Call without the state lock.
    pub fn wait(
        &self,
        storage: &dyn ExternalStorage,
        epoch: u64,
        name: &str,
        seq: u64,
    ) -> Result<(), ExternalStorageError> {
        let mut g = self.inner.lock();
        loop {
            if g.durable >= seq {
                return Ok(());
            }
            if let Some((failed, e)) = &g.failed {
                if *failed >= seq {
                    return Err(duplicate(e));
                }
            }
            if !g.writing {
                if let Some((n, blob)) = g.pending.take() {
                    g.writing = true;
                    drop(g);
                    let r = storage.set(epoch, name, &blob, None);
                    g = self.inner.lock();
                    g.writing = false;
                    match r {
                        Ok(_) => g.durable = g.durable.max(n),
                        Err(e) => g.failed = Some((n, e)),
                    }
                    self.done.notify_all();
                    continue;
                }
            }
            self.done.wait(&mut g);
        }
    }
}

/// A copy of `e` for another caller whose state the same failed write covered.
fn duplicate(e: &ExternalStorageError) -> ExternalStorageError {
    use ExternalStorageError as E;
    match e {
        E::Io { op, path, source } => E::Io {
            op,
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        E::Corrupt { path, reason } => E::Corrupt {
            path: path.clone(),
            reason: reason.clone(),
        },
        E::NotLeader { ours, current } => E::NotLeader {
            ours: *ours,
            current: *current,
        },
        E::VersionMismatch {
            name,
            expected,
            found,
        } => E::VersionMismatch {
            name: name.clone(),
            expected: *expected,
            found: *found,
        },
        E::Locked { path } => E::Locked { path: path.clone() },
        E::BadName(n) => E::BadName(n.clone()),
        E::BadLocator(l) => E::BadLocator(l.clone()),
        E::TooLarge { name, len } => E::TooLarge {
            name: name.clone(),
            len: *len,
        },
        E::ZooKeeper { address, reason } => E::ZooKeeper {
            address: address.clone(),
            reason: reason.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::external::MemStorage;
    use std::sync::Arc;

    /// Concurrent submitters: storage only ever sees increasing numbers and ends with the last.
    #[test]
    fn writes_are_in_order_and_the_newest_wins() {
        let storage = Arc::new(MemStorage::default());
        let epoch = storage.acquire_leadership().unwrap();
        let p = Arc::new(Persister::default());
        let state = Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (storage, p, state) = (storage.clone(), p.clone(), state.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let seq = {
                            let mut s = state.lock();
                            *s += 1;
                            p.submit(s.to_le_bytes().to_vec())
                        };
                        p.wait(&*storage, epoch, "state", seq).unwrap();
                        let got = storage.get("state").unwrap().unwrap().data;
                        let got = u64::from_le_bytes(got.try_into().unwrap());
                        assert!(
                            got >= seq,
                            "state {seq} acknowledged but storage holds {got}"
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let last = storage.get("state").unwrap().unwrap();
        assert_eq!(u64::from_le_bytes(last.data.try_into().unwrap()), 200);
        // Coalesced: at most one write per submission.
        assert!(last.version <= 200);
    }

    #[test]
    fn a_failed_write_fails_its_waiters() {
        let storage = MemStorage::default();
        let epoch = storage.acquire_leadership().unwrap();
        storage.acquire_leadership().unwrap(); // someone else leads now
        let p = Persister::default();
        let seq = p.submit(vec![1]);
        let e = p.wait(&storage, epoch, "state", seq).unwrap_err();
        assert!(matches!(e, ExternalStorageError::NotLeader { .. }), "{e}");
        let e2 = p.wait(&storage, epoch, "state", seq).unwrap_err();
        assert_eq!(e.to_string(), e2.to_string());
    }
}
