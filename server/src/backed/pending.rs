//! The large writes of one master whose chunks are not settled yet, and where each is
//! (`super::chunked` says what the states mean and who moves them). Bounded:
//! [`MAX_PENDING`] writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use faascache_storage::TableId;
use faascache_transport::Status;
use parking_lot::Mutex;

/// How long chunks of a write may wait for more chunks or the commit before they are removed
/// (`--orphan-chunk-age`).
pub const DEFAULT_ORPHAN_AGE: Duration = Duration::from_secs(600);
/// Large writes a master tracks at once (writes beyond are answered `RETRY`).
pub const MAX_PENDING: usize = 65_536;

/// One large write: (table, object key, object id).
pub type Id = (TableId, Vec<u8>, u64);

/// Where a large write is (see `super::chunked`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Chunks arriving, no commit yet; the last chunk's time.
    Writing(Instant),
    /// A manifest names its chunks (or a commit is under way).
    Committed,
    /// Its chunks are being removed.
    Removing,
}

/// A tracked large write.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Where it is.
    pub state: State,
    /// Highest chunk index seen + 1 (the chunks to remove if abandoned).
    pub chunks: u32,
    /// Bytes of the chunks written (a chunk written twice counts twice: an over-estimate).
    pub bytes: u64,
}

/// The large writes of one master whose chunks are not settled (see the module's doc).
#[derive(Debug)]
pub struct Pending {
    map: Mutex<HashMap<Id, Entry>>,
    orphan_age_ms: AtomicU64,
}

impl Default for Pending {
    fn default() -> Pending {
        Pending {
            map: Mutex::new(HashMap::new()),
            orphan_age_ms: AtomicU64::new(DEFAULT_ORPHAN_AGE.as_millis() as u64),
        }
    }
}

impl Pending {
    /// Set the age after which chunks of a write without a commit are removed.
    pub fn set_orphan_age(&self, age: Duration) {
        self.orphan_age_ms
            .store(age.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    /// The age after which chunks of a write without a commit are removed.
    pub fn orphan_age(&self) -> Duration {
        Duration::from_millis(self.orphan_age_ms.load(Ordering::Relaxed))
    }

    /// Large writes tracked now.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether none is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Note chunk `index` of a write (a chunk was written or replayed); `committed` when its
    /// manifest already names it. Refused when too many writes are tracked.
    pub fn note(
        &self,
        id: Id,
        index: u32,
        bytes: u64,
        committed: bool,
    ) -> Result<(), (Status, String)> {
        let mut map = self.map.lock();
        if map.len() >= MAX_PENDING && !map.contains_key(&id) {
            return Err((
                Status::RETRY,
                format!("this master tracks {MAX_PENDING} unfinished large writes: retry when some are committed"),
            ));
        }
        let e = map.entry(id).or_insert(Entry {
            state: State::Writing(Instant::now()),
            chunks: 0,
            bytes: 0,
        });
        e.chunks = e.chunks.max(index.saturating_add(1));
        e.bytes = e.bytes.saturating_add(bytes);
        e.state = match e.state {
            State::Removing => {
                return Err((
                    Status::RETRY,
                    "this large write was abandoned (no chunk or commit within --orphan-chunk-age) and its chunks are being removed: write it again with a new object id".into(),
                ))
            }
            _ if committed => State::Committed,
            State::Committed => State::Committed,
            State::Writing(_) => State::Writing(Instant::now()),
        };
        Ok(())
    }

    /// A commit starts: the write is Committed (so the sweep keeps its chunks) unless it is
    /// being removed.
    pub fn begin_commit(&self, id: Id, chunks: u32) -> Result<(), (Status, String)> {
        let mut map = self.map.lock();
        match map.get_mut(&id) {
            Some(Entry {
                state: State::Removing,
                ..
            }) => Err((
                Status::REQUEST_FORMAT_ERROR,
                "this large write was abandoned (no chunk or commit within --orphan-chunk-age) and its chunks removed: write it again; nothing was changed".into(),
            )),
            Some(e) => {
                e.state = State::Committed;
                e.chunks = e.chunks.max(chunks);
                Ok(())
            }
            None => {
                map.insert(
                    id,
                    Entry {
                        state: State::Committed,
                        chunks,
                        bytes: 0,
                    },
                );
                Ok(())
            }
        }
    }

    /// A commit did not happen: the write is Writing again (its chunks age from now).
    pub fn undo_commit(&self, id: &Id) {
        if let Some(e) = self.map.lock().get_mut(id) {
            if e.state == State::Committed {
                e.state = State::Writing(Instant::now());
            }
        }
    }

    /// Bytes of chunks of writes not committed yet (not in the write-back queue's count):
    /// `id`'s own, and the other writes'.
    pub fn writing_bytes(&self, id: &Id) -> (u64, u64) {
        let map = self.map.lock();
        let writing = |e: &&Entry| matches!(e.state, State::Writing(_));
        let own = map.get(id).filter(writing).map_or(0, |e| e.bytes);
        let all: u64 = map.values().filter(writing).map(|e| e.bytes).sum();
        (own, all - own)
    }

    /// Every tracked write, as it is now.
    pub fn snapshot(&self) -> Vec<(Id, Entry)> {
        self.map
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Whether `id` is tracked.
    pub fn contains(&self, id: &Id) -> bool {
        self.map.lock().contains_key(id)
    }

    /// Forget `id` (settled).
    pub fn forget(&self, id: &Id) {
        self.map.lock().remove(id);
    }

    /// Mark `id` Removing if it is still in `seen` (else it changed: `false`).
    pub fn start_removing(&self, id: &Id, seen: State) -> bool {
        match self.map.lock().get_mut(id) {
            Some(cur) if cur.state == seen => {
                cur.state = State::Removing;
                true
            }
            _ => false,
        }
    }
}
