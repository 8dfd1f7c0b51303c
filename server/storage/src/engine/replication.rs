//! The engine's interface to replication and recovery: the log's segments as replication sees
//! them, ranged reads of their bytes, keeping the cleaner off segments not yet on every backup,
//! and the versioned removal and version floor that recovery replays with.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Engine, StorageError, TableId};
use crate::format;
use crate::segment::Segment;

/// A segment of the log as replication sees it (see [`Engine::log_segments`]).
#[derive(Debug, Clone)]
pub struct LogSegment {
    /// Segment id.
    pub id: u64,
    /// Whether it was the head when listed.
    pub head: bool,
    seg: Arc<Segment>,
}

impl LogSegment {
    /// Whether the segment takes no more appends.
    pub fn closed(&self) -> bool {
        self.seg.is_closed()
    }
    /// Length and checksum of what is appended now.
    pub fn certificate(&self) -> format::Certificate {
        self.seg.certificate()
    }
    /// For a head: the segments its digest names and the length just past the digest (once
    /// that prefix is on every replica, the digest is durable).
    pub fn digest(&self) -> Option<(&[u64], u32)> {
        self.seg.digest().map(|(v, end)| (v.as_slice(), *end))
    }
    /// Whether replication marked it complete on every backup.
    pub fn replicated(&self) -> bool {
        self.seg.replicated()
    }
    /// Marks it complete on every backup (the cleaner may then touch it), or not.
    pub fn set_replicated(&self, on: bool) {
        self.seg.set_replicated(on)
    }
    /// Identity of the in-memory copy (a compacted copy has another).
    pub fn identity(&self) -> u64 {
        Arc::as_ptr(&self.seg) as u64
    }
    /// Whether `other` is the same in-memory segment (not a compacted copy).
    pub fn same(&self, other: &LogSegment) -> bool {
        Arc::ptr_eq(&self.seg, &other.seg)
    }
}

impl Engine {
    /// The segments of the log, oldest id first, for replication.
    pub fn log_segments(&self) -> Vec<LogSegment> {
        let (segs, head) = self.inner.log.segments();
        segs.into_iter()
            .map(|seg| LogSegment {
                id: seg.id,
                head: Some(seg.id) == head,
                seg,
            })
            .collect()
    }

    /// Appends bytes `from..to` of a segment to `out`; `to` must not exceed the length of a
    /// certificate of that segment read before.
    pub fn read_segment(&self, s: &LogSegment, from: usize, to: usize, out: &mut Vec<u8>) {
        s.seg.read_range(&self.inner.log.arena, from, to, out);
    }

    /// Opens the first head (with its digest) if the log has none yet.
    pub fn open_head(&self) {
        let inner = &self.inner;
        let _ = inner.log.ensure_head(&**inner, inner.clock.now());
    }

    /// Replication on: the cleaner touches only segments marked replicated
    /// ([`LogSegment::set_replicated`]).
    pub fn require_replication(&self, on: bool) {
        self.inner.log.require_replicated(on);
    }

    /// Returns once no cleaning pass is running (one that started before may have chosen a
    /// segment that has since been marked not replicated).
    pub fn wait_cleaning(&self) {
        drop(self.inner.cleaning.lock());
    }

    /// Recovery: removes the object if its version is `version` or older (a tombstone of the
    /// crashed master's log), writing a tombstone here so the removal survives this master's
    /// own crash. Returns whether an object was removed.
    pub fn remove_versioned(
        &self,
        table: TableId,
        key: &[u8],
        version: u64,
    ) -> Result<bool, StorageError> {
        self.raise_version_floor(version)?;
        self.remove_if(table, key, |v| v <= version)
            .map(|r| r.is_some())
    }

    /// Versions handed out from now on are above `version` (recovery: the crashed master's
    /// safe version). A version at or above [`super::MAX_VERSION`] (corrupt or hostile replica
    /// data) is refused: the counter could wrap after it.
    pub fn raise_version_floor(&self, version: u64) -> Result<(), StorageError> {
        let next = super::checked_next_version(version)?;
        self.inner.next_version.fetch_max(next, Ordering::Relaxed);
        Ok(())
    }

    /// Contiguous images and certificates of every segment in memory, oldest first (for
    /// replication, recovery tests and verification).
    pub fn segment_images(&self) -> Vec<(u64, Vec<u8>, format::Certificate)> {
        let (segs, _) = self.inner.log.segments();
        segs.iter()
            .map(|s| {
                let (img, cert) = s.copy_out(&self.inner.log.arena);
                (s.id, img, cert)
            })
            .collect()
    }
}
