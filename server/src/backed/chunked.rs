//! Large objects written through the native clients (`docs/faas.md`, "Large objects"): an
//! object above one value's limit is written as chunks (`WriteObjectChunk`), each stored dirty
//! at `chunk_key(key, object_id, i)` — the same tablet as the key, so chunks replicate,
//! recover and migrate with it — and invisible until `CommitObject` writes the manifest that
//! names them, at once for every reader. Write-back then uploads the manifest's bytes from its
//! chunks (`upload::upload_one`), and the chunks become clean (evictable) once the manifest is.
//!
//! Each write's chunks are tracked in [`Pending`] until they are settled:
//!
//! * **Writing** (chunks arriving, no commit yet): after `--orphan-chunk-age` without a chunk
//!   or commit, the write is abandoned (a client that died mid-write) and its chunks removed.
//! * **Committed**: once the manifest naming them is clean (uploaded, or ephemeral never), the
//!   chunks are marked clean; once it names other chunks (overwritten, removed), they are
//!   removed.
//! * **Removing**: being removed; a commit that finds its write here is refused.
//!
//! The settling is done by [`sweep`], on the master's `ttl-sweep` thread, every 250 ms. After a
//! recovery or a migration in, `requeue::requeue` finds the dirty chunks it replayed and tracks
//! them again ([`recovered`]), so nothing dirty is left behind by a crash between the chunks and
//! the commit.

use std::time::Instant;

use faascache_protocol::msg::common::{chunk_key, chunk_parent, RejectRules, CHUNK_SUFFIX_LEN};
use faascache_protocol::msg::faas::{ObjectMeta, WritePolicy};
use faascache_protocol::msg::large::CommitObjectRequest;
use faascache_storage::{StorageError, TableId};
use faascache_transport::Status;

use super::envelope::{self, Kind, Manifest};
use super::pending::{Id, State};

/// Bytes of a value read to decode an envelope's header and manifest (metadata larger than
/// this is read whole).
const HEAD_BYTES: usize = 4096;
use super::checks::{self, Refusal};
use super::registry::BackedTable;
use super::upload::wall_ms;
use crate::master::Master;

/// The id of a write.
fn id(table: TableId, key: &[u8], object_id: u64) -> Id {
    (table, key.to_vec(), object_id)
}

/// Check a chunk of `len` bytes for `key` of `t` and note it; the envelope header to store
/// before its bytes.
pub fn chunk_head(
    m: &Master,
    t: &BackedTable,
    key: &[u8],
    object_id: u64,
    index: u32,
    len: usize,
) -> Result<Vec<u8>, Refusal> {
    checks::check_key(t, key)?;
    // The other writes' chunks not committed yet count against the write-back limit with the
    // queued objects; this write's own do not, so one write may exceed the limit, as one
    // object may, and the writes in flight hold at most the limit plus one write.
    let wid = id(t.id, key, object_id);
    if t.backing.policy != WritePolicy::Ephemeral {
        let (_, others) = m.chunked.writing_bytes(&wid);
        let g = m.writeback.gauges();
        let others = others + g.bytes;
        if others > 0 && others + len as u64 > g.limit {
            return Err(checks::full(m));
        }
    }
    m.chunked.note(wid, index, len as u64, false)?;
    let mut head = Vec::new();
    envelope::encode(
        &mut head,
        Kind::Chunk,
        wall_ms(),
        &ObjectMeta::default(),
        &[],
    );
    Ok(head)
}

/// Start the commit `req` of `t`: check it (key, metadata, every chunk present with its
/// length) and return the manifest's envelope. The
/// write is Committed until [`end_commit`] says whether the manifest was written.
pub fn begin_commit(
    m: &Master,
    t: &BackedTable,
    req: &CommitObjectRequest<'_>,
) -> Result<Vec<u8>, Refusal> {
    checks::check_key(t, req.key)?;
    let now = wall_ms();
    let meta = checks::object_meta(t, &req.meta, now)?;
    let wid = id(t.id, req.key, req.object_id);
    m.chunked.begin_commit(wid.clone(), req.chunks)?;
    // No write-back limit here: the chunks were admitted as they came, and the commit adds no
    // bytes (they move from the write in flight to the queue).
    if let Err(e) = check_chunks(m, t, req) {
        m.chunked.undo_commit(&wid);
        return Err(e);
    }
    let mf = Manifest {
        total_len: req.total_len,
        chunk_len: req.chunk_len,
        chunks: req.chunks,
        object_id: req.object_id,
    };
    Ok(envelope::to_vec(Kind::Manifest(mf), now, &meta, &[]))
}

/// Every chunk of `req` present, with its length.
fn check_chunks(m: &Master, t: &BackedTable, req: &CommitObjectRequest<'_>) -> Result<(), Refusal> {
    let head = envelope::header_len(&ObjectMeta::default());
    for i in 0..req.chunks {
        let want = req.chunk_size(i).unwrap_or(0) as usize;
        let ck = chunk_key(req.key, req.object_id, i);
        let have = m
            .engine
            .stat(t.id, &ck)
            .map_err(|e| (Status::INTERNAL_ERROR, e.to_string()))?
            .map(|s| s.value_len);
        if have != Some(head + want) {
            let found = match have {
                None => "missing".to_string(),
                Some(n) => format!("{} bytes long", n.saturating_sub(head)),
            };
            return Err((
                Status::REQUEST_FORMAT_ERROR,
                format!(
                    "chunk {i} of {} (object id {:#x}) is {found}, expected {want} bytes: write every chunk (WriteObjectChunk) before the commit; nothing was changed",
                    req.chunks, req.object_id
                ),
            ));
        }
    }
    Ok(())
}

/// The manifest stored at `key` now, if it is one (and its version and cleanliness).
fn manifest_at(m: &Master, table: TableId, key: &[u8]) -> Option<(Manifest, u64)> {
    // The kind byte first: a write over any object asks this, and most are not manifests.
    let mut buf = Vec::new();
    m.engine
        .read_range(table, key, 0, envelope::FIXED, &mut buf)
        .ok()?;
    if !envelope::is_manifest(&buf) {
        return None;
    }
    buf.clear();
    let (version, len) = m
        .engine
        .read_range(table, key, 0, HEAD_BYTES, &mut buf)
        .ok()?;
    let decoded = match envelope::decode(&buf) {
        Ok(e) => Some(e.kind),
        Err(_) if len > buf.len() => {
            buf.clear();
            m.engine
                .read(table, key, &RejectRules::NONE, &mut buf)
                .ok()?;
            envelope::decode(&buf).ok().map(|e| e.kind)
        }
        Err(_) => None,
    };
    match decoded? {
        Kind::Manifest(mf) => Some((mf, version)),
        _ => None,
    }
}

/// The manifest at `key` before a commit (to drop its chunks once replaced).
pub fn previous(m: &Master, table: TableId, key: &[u8]) -> Option<Manifest> {
    manifest_at(m, table, key).map(|(mf, _)| mf)
}

/// The commit of `req` ended (`written`: the manifest is stored). Queue it for upload, and
/// remove the chunks of a manifest it replaced that came from the store (those of a client's
/// write are settled by the sweep).
pub fn end_commit(
    m: &Master,
    t: &BackedTable,
    req: &CommitObjectRequest<'_>,
    written: bool,
    old: Option<Manifest>,
) {
    let wid = id(t.id, req.key, req.object_id);
    if !written {
        m.chunked.undo_commit(&wid);
        return;
    }
    checks::written(m, t, req.key, req.total_len as usize);
    replaced(m, t, req.key, old, Some(req.object_id));
}

/// `key` of `t` was written or removed over `old` (a manifest, read before), now naming the
/// chunks of write `now` (`None`: not a manifest any more): remove `old`'s chunks unless a
/// tracked write's (the sweep settles those: an upload may be reading them) — chunks
/// filled from the store (clean), or an ephemeral table's.
pub fn replaced(m: &Master, t: &BackedTable, key: &[u8], old: Option<Manifest>, now: Option<u64>) {
    let Some(old) = old.filter(|o| Some(o.object_id) != now) else {
        return;
    };
    if m.chunked.contains(&id(t.id, key, old.object_id)) {
        return;
    }
    let ephemeral = t.backing.policy == WritePolicy::Ephemeral;
    for i in 0..old.chunks {
        let ck = chunk_key(key, old.object_id, i);
        let _ = if ephemeral {
            m.engine.remove(t.id, &ck, &RejectRules::NONE).map(|_| ())
        } else {
            m.engine.remove_clean(t.id, &ck, None).map(|_| ())
        };
    }
}

/// A dirty chunk found after a recovery or migration in: track its write again (Committed if
/// the manifest at its key names it). `false` if `key` is not a chunk key.
pub fn recovered(m: &Master, table: TableId, key: &[u8], len: usize) -> bool {
    let Some(parent) = chunk_parent(key) else {
        return false;
    };
    let suffix = &key[key.len() - CHUNK_SUFFIX_LEN..];
    let (Ok(oid), Ok(index)) = (suffix[2..10].try_into(), suffix[10..14].try_into()) else {
        return false;
    };
    let (oid, index) = (u64::from_be_bytes(oid), u32::from_be_bytes(index));
    let committed = manifest_at(m, table, parent).is_some_and(|(mf, _)| mf.object_id == oid);
    if let Err((_, why)) = m
        .chunked
        .note(id(table, parent, oid), index, len as u64, committed)
    {
        tracing::warn!(
            table,
            why,
            "a recovered chunk is not tracked; it stays dirty"
        );
    }
    true
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Writes whose chunks were marked clean (their manifest is clean).
    pub cleaned: usize,
    /// Writes whose chunks were removed (abandoned, or replaced).
    pub removed: usize,
}

/// Settle the tracked writes that can be (see the module's doc).
pub fn sweep(m: &Master) -> Settled {
    let age = m.chunked.orphan_age();
    let now = Instant::now();
    let snapshot = m.chunked.snapshot();
    let mut out = Settled::default();
    for ((table, key, oid), e) in snapshot {
        let remove = match e.state {
            State::Removing => continue,
            State::Writing(last) => {
                if now.duration_since(last) < age {
                    continue;
                }
                // A manifest may name it already (its chunks arrived by migration before it).
                if manifest_at(m, table, &key).is_some_and(|(mf, _)| mf.object_id == oid) {
                    let _ = m.chunked.note((table, key, oid), 0, 0, true);
                    continue;
                }
                true
            }
            State::Committed => match manifest_at(m, table, &key) {
                Some((mf, version)) if mf.object_id == oid => {
                    let clean = m
                        .engine
                        .stat(table, &key)
                        .ok()
                        .flatten()
                        .is_some_and(|s| s.clean && s.version == version);
                    let ephemeral = m
                        .backed
                        .get(table)
                        .is_some_and(|t| t.backing.policy == WritePolicy::Ephemeral);
                    if clean {
                        mark_clean(m, table, &key, oid, mf.chunks);
                        out.cleaned += 1;
                        m.chunked.forget(&(table, key, oid));
                    } else if ephemeral {
                        // Never uploaded: the manifest and its chunks stay dirty with it.
                        m.chunked.forget(&(table, key, oid));
                    }
                    continue;
                }
                _ => true,
            },
        };
        if !remove {
            continue;
        }
        let wid = (table, key, oid);
        // Changed meanwhile (a chunk or a commit arrived): look again next time.
        if !m.chunked.start_removing(&wid, e.state) {
            continue;
        }
        let n = remove_chunks(m, table, &wid.1, oid, e.chunks);
        m.chunked.forget(&wid);
        tracing::debug!(
            table,
            chunks = n,
            "removed the chunks of an abandoned or replaced large write"
        );
        out.removed += 1;
    }
    out
}

/// Mark chunks `0..n` of write `oid` of `key` clean.
fn mark_clean(m: &Master, table: TableId, key: &[u8], oid: u64, n: u32) {
    for i in 0..n {
        let ck = chunk_key(key, oid, i);
        if let Ok(Some(s)) = m.engine.stat(table, &ck) {
            if !s.clean {
                let _ = m.engine.mark_clean(table, &ck, s.version);
            }
        }
    }
}

/// Remove chunks `0..n` of write `oid` of `key` (dirty or clean) where this master still
/// serves the key; returns how many were there.
fn remove_chunks(m: &Master, table: TableId, key: &[u8], oid: u64, n: u32) -> u32 {
    let own = m.ownership.read();
    if own
        .check_read(table, faascache_protocol::msg::key_hash(key))
        .is_err()
    {
        // Moved away (its new owner tracks it) or dropped with its tablet.
        return 0;
    }
    let mut removed = 0;
    for i in 0..n {
        match m
            .engine
            .remove(table, &chunk_key(key, oid, i), &RejectRules::NONE)
        {
            Ok(Some(_)) => removed += 1,
            Ok(None) | Err(StorageError::UnknownTable(_)) => {}
            Err(e) => tracing::warn!(table, error = %e, "cannot remove a chunk of a large write"),
        }
    }
    removed
}
