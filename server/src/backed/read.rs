//! The read path of backed tables: hits from the envelope, read-through on a miss with single
//! flight (one store GET per key at a time, every waiter answered from it), the negative cache,
//! revalidation of old hits (conditional GET), admission (objects above the table's limit are
//! passed through, not cached) and large objects (served from their chunks; see [`super::fill`]).
//!
//! A dispatch thread only reads the engine: a miss or a due revalidation defers the reply and
//! runs on the bounded `store-fetch` pool (full → `RETRY`).

use faascache_protocol::msg::common::chunk_key;
use faascache_protocol::msg::key_hash;
use faascache_storage::{RejectRules, RemoveClean, StorageError, TableId};
use faascache_transport::Status;

use super::envelope::{self, Kind};
use super::registry::BackedTable;
use crate::master::Master;

pub(crate) use super::cache::{Job, Waiter};
pub use super::cache::{Reads, Served, Want, NEGATIVE_MAX, WAITERS_MAX};

/// Wall-clock ms since the epoch (the envelopes' stamps).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn not_found() -> Served {
    Served::Fail(
        Status::OBJECT_DOESNT_EXIST,
        0,
        "no such object (in the cache or its store)".into(),
    )
}

/// A hit keeps a clean object cached: one in the older half of the log is appended again at
/// the head (`Engine::promote_if_old`; eviction takes the oldest segments first). Errors are
/// ignored: the read is served either way.
fn promote(m: &Master, t: &BackedTable, key: &[u8], version: u64) {
    let _ = m.engine.promote_if_old(t.id, key, version);
}

/// Serve `key` from the engine (no store access).
pub fn serve(m: &Master, t: &BackedTable, key: &[u8], rules: &RejectRules, want: Want) -> Served {
    serve_with(m, t, key, rules, want, true)
}

/// [`serve`], asking for a revalidation of an old hit only if `revalidate`.
fn serve_with(
    m: &Master,
    t: &BackedTable,
    key: &[u8],
    rules: &RejectRules,
    want: Want,
    revalidate: bool,
) -> Served {
    let mut buf = Vec::new();
    let version = match m.engine.read(t.id, key, rules, &mut buf) {
        Ok(v) => v,
        Err(StorageError::ObjectDoesntExist) => return Served::Miss,
        Err(e) => return Served::storage(&e),
    };
    let env = match envelope::decode(&buf) {
        Ok(e) => e,
        Err(e) => return Served::Fail(Status::INTERNAL_ERROR, version, e.to_string()),
    };
    if env.kind == Kind::Deleted {
        return Served::Fail(
            Status::OBJECT_DOESNT_EXIST,
            version,
            "the object was removed (the removal is not yet in the store)".into(),
        );
    }
    if super::ttl::expired(t, env.stamp_ms, wall_ms()) {
        return Served::Fail(
            Status::OBJECT_DOESNT_EXIST,
            version,
            "the object expired (the table's --ttl; it is being removed)".into(),
        );
    }
    let reval = t.backing.revalidate_ms as u64;
    if revalidate
        && reval > 0
        && !env.legacy
        && !env.meta.etag.is_empty()
        && matches!(env.kind, Kind::Whole | Kind::Manifest(_))
        && wall_ms().saturating_sub(env.stamp_ms) > reval
        && m.engine.is_dirty(t.id, key).ok().flatten() == Some(false)
    {
        return Served::Revalidate {
            version,
            etag: env.meta.etag.clone(),
        };
    }
    if matches!(want, Want::Read | Want::Piece { offset: 0, .. }) {
        promote(m, t, key, version);
    }
    match (env.kind, want) {
        (Kind::Manifest(mf), Want::Read) => Served::Fail(
            Status::OBJECT_TOO_LARGE,
            version,
            format!(
                "the object is {} bytes, larger than one reply: read it in pieces with ReadObject",
                mf.total_len
            ),
        ),
        (Kind::Manifest(mf), Want::Piece { offset, max_len }) => {
            let mut data = Vec::new();
            let end = mf.total_len.min(offset.saturating_add(max_len as u64));
            let mut at = offset;
            while at < end {
                let Some((i, within)) = mf.locate(at) else {
                    break;
                };
                let ck = chunk_key(key, mf.object_id, i);
                let mut cbuf = Vec::new();
                let chunk = match m.engine.read(t.id, &ck, &RejectRules::NONE, &mut cbuf) {
                    Ok(cv) => match envelope::decode(&cbuf) {
                        Ok(c) if c.kind == Kind::Chunk => {
                            // Chunks age like objects: keep the read ones (see promote).
                            promote(m, t, &ck, cv);
                            Some(c.data.len())
                        }
                        _ => None,
                    },
                    Err(_) => None,
                };
                let Some(clen) = chunk else {
                    // Evicted: the object is a miss (drop the manifest, read through again).
                    drop_object(m, t.id, key, Some(version));
                    return Served::Miss;
                };
                let hl = cbuf.len() - clen;
                let from = hl + within as usize;
                let n = ((end - at) as usize).min(cbuf.len().saturating_sub(from));
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&cbuf[from..from + n]);
                at += n as u64;
            }
            Served::Data {
                version,
                total_len: mf.total_len,
                meta: env.meta,
                data,
            }
        }
        (_, Want::Read) => {
            let data = env.data.to_vec();
            Served::Data {
                version,
                total_len: data.len() as u64,
                meta: env.meta,
                data,
            }
        }
        (_, Want::Piece { offset, max_len }) => {
            let len = env.data.len();
            let from = (offset.min(len as u64)) as usize;
            let to = from + (max_len as usize).min(len - from);
            Served::Data {
                version,
                total_len: len as u64,
                meta: env.meta,
                data: env.data[from..to].to_vec(),
            }
        }
    }
}

/// Remove the clean copy of `key` (and its chunks if it is a manifest), if still at
/// `version` when given.
pub fn drop_object(m: &Master, table: TableId, key: &[u8], version: Option<u64>) -> RemoveClean {
    let mut buf = Vec::new();
    let manifest = match m.engine.read(table, key, &RejectRules::NONE, &mut buf) {
        Ok(_) => match envelope::decode(&buf) {
            Ok(e) => match e.kind {
                Kind::Manifest(mf) => Some(mf),
                _ => None,
            },
            Err(_) => None,
        },
        Err(_) => None,
    };
    let r = m
        .engine
        .remove_clean(table, key, version)
        .unwrap_or(RemoveClean::Absent);
    if let (RemoveClean::Removed(_), Some(mf)) = (r, manifest) {
        for i in 0..mf.chunks {
            let _ = m
                .engine
                .remove_clean(table, &chunk_key(key, mf.object_id, i), None);
        }
    }
    r
}

/// Take the waiters of `key`'s fetch (it is over).
pub(crate) fn finish(m: &Master, table: TableId, key: &[u8]) -> Vec<Waiter> {
    m.reads
        .flights
        .lock()
        .remove(&(table, key.to_vec()))
        .unwrap_or_default()
}

/// Answer `waiters` from the engine (after a fill or revalidation).
pub(crate) fn answer_from_engine(m: &Master, t: &BackedTable, key: &[u8], waiters: Vec<Waiter>) {
    for w in waiters {
        let Some(r) = w.responder else { continue };
        let own = m.ownership.read();
        let s = if own.check_read(t.id, key_hash(key)).is_err() {
            Served::Fail(
                Status::UNKNOWN_TABLET,
                0,
                "this master no longer owns the key's tablet: refresh the tablet map".into(),
            )
        } else {
            match serve(m, t, key, &w.rules, w.want) {
                // Revalidated just now (a stale stamp from a slow clock): serve what is there.
                Served::Revalidate { .. } => serve_with(m, t, key, &w.rules, w.want, false),
                s => s,
            }
        };
        drop(own);
        let (st, p) = s.encode(w.want);
        r.reply_vec(st, p);
    }
}

/// Answer `waiters` with `s` (a failure or "not found").
pub(crate) fn answer_all(waiters: Vec<Waiter>, s: &Served) {
    for w in waiters {
        if let Some(r) = w.responder {
            let (st, p) = s.encode(w.want);
            r.reply_vec(st, p);
        }
    }
}

/// The "not found" answer.
pub(crate) fn missing() -> Served {
    not_found()
}

/// Bytes of a chunk's envelope header (no metadata).
pub(crate) const CHUNK_HEADER: usize = envelope::FIXED + 2 + 2 + 8 + 4;

/// Append bytes `at..end` of a chunked object (manifest `mf`) to `out`, chunk by chunk,
/// straight from the log; `false` if a chunk is missing or not what the manifest says.
pub(crate) fn chunk_range(
    m: &Master,
    t: &BackedTable,
    key: &[u8],
    mf: super::envelope::Manifest,
    mut at: u64,
    end: u64,
    out: &mut Vec<u8>,
) -> bool {
    let mut hv = Vec::with_capacity(CHUNK_HEADER);
    while at < end {
        let Some((i, within)) = mf.locate(at) else {
            return false;
        };
        let ck = faascache_protocol::msg::common::chunk_key(key, mf.object_id, i);
        hv.clear();
        let Ok((cv, clen)) = m.engine.read_range(t.id, &ck, 0, CHUNK_HEADER, &mut hv) else {
            return false;
        };
        match envelope::decode(&hv) {
            Ok(c) if c.kind == Kind::Chunk && hv.len() == CHUNK_HEADER => {}
            _ => return false,
        }
        let k = ((end - at) as usize).min(clen - CHUNK_HEADER - within as usize);
        if k == 0
            || m.engine
                .read_range(t.id, &ck, CHUNK_HEADER + within as usize, k, out)
                .is_err()
        {
            return false;
        }
        let _ = m.engine.promote_if_old(t.id, &ck, cv);
        at += k as u64;
    }
    true
}
