//! Dirty objects of backed tables that arrive without a client's write — replayed by a
//! recovery, or received by a migration — queued for upload again; a large write's dirty
//! chunks are tracked again instead (`super::chunked::recovered`).

use faascache_protocol::msg::faas::WritePolicy;
use faascache_storage::StorageError;

use super::envelope::{self, Kind};
use super::registry::BackedTable;
use super::write::{backed, written};
use crate::master::tablets::Range;
use crate::master::Master;

/// A dirty object of `t` arriving by migration: queued for upload like a write (a manifest
/// counts its whole object's bytes), except a large write's chunk, which is tracked
/// (`chunked::recovered`) to be uploaded with its manifest.
pub fn migrated(master: &Master, t: &BackedTable, key: &[u8], value: &[u8]) {
    let kind = envelope::decode(value).ok().map(|e| e.kind);
    if kind == Some(Kind::Chunk) && super::chunked::recovered(master, t.id, key, value.len()) {
        return;
    }
    let bytes = match kind {
        Some(Kind::Manifest(mf)) => mf.total_len as usize,
        _ => value.len(),
    };
    written(master, t, key, bytes);
}

/// Queue every dirty object of a write-back or write-through table in `r` (after recovery
/// or a migration in); returns how many. Dirty chunks of large writes are not queued but
/// tracked again (`chunked::recovered`).
pub fn requeue(master: &Master, r: Range) -> Result<u64, StorageError> {
    let Some(t) = backed(master, r.table) else {
        return Ok(0);
    };
    // An ephemeral table's objects are never uploaded; only its large writes' chunks are
    // tracked again (to remove those no commit names).
    let ephemeral = t.backing.policy == WritePolicy::Ephemeral;
    let (mut cursor, mut n) = (None, 0);
    loop {
        let en = master
            .engine
            .enumerate(r.table, r.start..=r.end, cursor, 1 << 20)?;
        for o in en.objects {
            if master.engine.is_dirty(r.table, &o.key)? != Some(true) {
                continue;
            }
            let kind = envelope::decode(&o.value).ok().map(|e| e.kind);
            // A large write's chunk is uploaded with its manifest, or removed if none names it.
            if kind == Some(Kind::Chunk)
                && super::chunked::recovered(master, r.table, &o.key, o.value.len())
            {
                continue;
            }
            if ephemeral {
                continue;
            }
            let bytes = match kind {
                Some(Kind::Manifest(mf)) => mf.total_len,
                _ => o.value.len() as u64,
            };
            master.writeback.dirty((r.table, o.key), bytes);
            n += 1;
        }
        match en.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(n),
        }
    }
}
