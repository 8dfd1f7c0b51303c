//! `InvalidateObjects`: drop clean cached copies (and negative entries) of one key or of every
//! key with a prefix, so the next read fetches from the store. Dirty objects are kept (the
//! cache's write is newer than the store's copy) and counted.

use faascache_protocol::msg::common::chunk_parent;
use faascache_protocol::msg::faas::InvalidateResponse;
use faascache_storage::{RemoveClean, StorageError, TableId};

use super::read::drop_object;
use super::Counters;
use crate::master::Master;

/// Batch of one enumeration step of a prefix invalidation.
const BATCH_BYTES: usize = 256 * 1024;

fn count(m: &Master, r: RemoveClean, out: &mut InvalidateResponse) {
    match r {
        RemoveClean::Removed(_) => {
            out.invalidated += 1;
            Counters::bump(&m.counters.invalidated);
        }
        RemoveClean::Dirty => out.kept_dirty += 1,
        RemoveClean::Changed | RemoveClean::Absent => {}
    }
}

/// Invalidate one key (short: runs on the dispatch thread).
pub fn key(m: &Master, table: TableId, key: &[u8]) -> InvalidateResponse {
    let mut out = InvalidateResponse::default();
    m.reads.clear_negative(table, key, false);
    count(m, drop_object(m, table, key, None), &mut out);
    out
}

/// Invalidate every key of `table` on this master starting with `prefix` (enumerates the
/// table: run it on a pool thread).
pub fn prefix(
    m: &Master,
    table: TableId,
    prefix: &[u8],
) -> Result<InvalidateResponse, StorageError> {
    let mut out = InvalidateResponse::default();
    m.reads.clear_negative(table, prefix, true);
    let mut cursor = None;
    loop {
        let batch = m
            .engine
            .enumerate(table, 0..=u64::MAX, cursor, BATCH_BYTES)?;
        for o in &batch.objects {
            // Chunks go with their manifest.
            if !o.key.starts_with(prefix) || chunk_parent(&o.key).is_some() {
                continue;
            }
            count(m, drop_object(m, table, &o.key, Some(o.version)), &mut out);
        }
        match batch.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}
