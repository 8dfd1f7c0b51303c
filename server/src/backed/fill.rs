//! A fetch from the store on a `store-fetch` pool thread: read-through of a miss, revalidation
//! of an old hit, then the answers to every reader waiting for the key.
//!
//! A fetched object is inserted clean (`write_clean`, must-not-exist: a client's write made
//! meanwhile wins and is what the readers get). An object whose envelope exceeds the engine's
//! largest value is stored as chunks, streamed from the store one chunk at a time, chunks first
//! and the manifest last, so a reader never finds a manifest whose chunks were not written.
//! An object larger than the table's admission limit is not cached: the readers waiting for it
//! get their bytes (each its piece) from one pass over the store's stream.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use faascache_objstore::{ETag, GetStream, ObjectReader};
use faascache_protocol::msg::common::{chunk_key, CHUNK_SUFFIX_LEN};
use faascache_protocol::msg::faas::ObjectMeta;
use faascache_protocol::msg::key_hash;
use faascache_storage::{RejectRules, RemoveClean, StorageError};
use faascache_transport::Status;

use super::envelope::{self, Kind, Manifest};
use super::read::{self, answer_all, answer_from_engine, finish, Job, Served, Want};
use super::registry::{BackedTable, StoreFailure};
use super::Counters;
use crate::master::Master;

/// The store's metadata as the envelope keeps it.
pub fn meta_of(m: &faascache_objstore::ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        etag: m.etag.as_str().to_string(),
        content_type: m.content_type.clone().unwrap_or_default(),
        last_modified_ms: m
            .last_modified
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        user: m
            .user_meta
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// How a fetch ended.
enum Outcome {
    /// The engine has the answer (filled, revalidated, or written by a client meanwhile).
    Engine,
    /// One answer for everyone.
    All(Served),
    /// Already answered (passed through).
    Done,
}

/// Run `job` for `key` and answer its waiters.
pub(crate) fn run(m: &Arc<Master>, t: &Arc<BackedTable>, key: &[u8], job: Job) {
    let outcome = match fetch(m, t, key, job) {
        Ok(o) => o,
        Err(f) => {
            Counters::bump(&m.counters.store_read_errors);
            m.counters.set_last_error(&f.detail);
            tracing::debug!(table = t.name, error = %f.detail, "store read failed");
            Outcome::All(Served::store(&f))
        }
    };
    match outcome {
        Outcome::Engine => answer_from_engine(m, t, key, finish(m, t.id, key)),
        Outcome::All(s) => answer_all(finish(m, t.id, key), &s),
        Outcome::Done => {}
    }
}

fn store_key(key: &[u8]) -> Result<&str, StoreFailure> {
    std::str::from_utf8(key).map_err(|_| {
        StoreFailure::rejected(
            "the key is not valid UTF-8: object-store keys are UTF-8 strings (this key can only be written, as an ephemeral object)",
        )
    })
}

fn fetch(m: &Master, t: &BackedTable, key: &[u8], job: Job) -> Result<Outcome, StoreFailure> {
    let store = t.store()?.clone();
    let skey = store_key(key)?;
    Counters::bump(&m.counters.store_reads);
    match job {
        Job::Miss => {
            Counters::bump(&m.counters.misses);
            match store
                .get_stream(skey, None)
                .map_err(|e| StoreFailure::of(&e))?
            {
                GetStream::Found(r) => fill(m, t, key, r),
                GetStream::NotFound | GetStream::NotModified => Ok(not_found(m, t, key)),
            }
        }
        Job::Revalidate { version, etag } => {
            let got = match store.get_stream(skey, Some(&ETag::new(&etag))) {
                Ok(g) => g,
                Err(e) => {
                    // The cached copy is served (stale) while the store cannot be asked.
                    Counters::bump(&m.counters.store_read_errors);
                    m.counters.set_last_error(&e);
                    tracing::debug!(table = t.name, error = %e, "revalidation failed; serving the cached copy");
                    return Ok(Outcome::Engine);
                }
            };
            match got {
                GetStream::NotModified => {
                    restamp(m, t, key, version);
                    Ok(Outcome::Engine)
                }
                GetStream::NotFound => match read::drop_object(m, t.id, key, Some(version)) {
                    RemoveClean::Removed(_) | RemoveClean::Absent => {
                        Counters::bump(&m.counters.invalidated);
                        Ok(not_found(m, t, key))
                    }
                    RemoveClean::Dirty | RemoveClean::Changed => Ok(Outcome::Engine),
                },
                GetStream::Found(r) => match read::drop_object(m, t.id, key, Some(version)) {
                    RemoveClean::Removed(_) | RemoveClean::Absent => {
                        Counters::bump(&m.counters.invalidated);
                        fill(m, t, key, r)
                    }
                    RemoveClean::Dirty | RemoveClean::Changed => Ok(Outcome::Engine),
                },
            }
        }
    }
}

fn not_found(m: &Master, t: &BackedTable, key: &[u8]) -> Outcome {
    let ttl = t.backing.negative_ttl_ms as u64;
    if ttl > 0 {
        let now = m.now_ms();
        m.reads.set_negative(t.id, key, now, now + ttl);
    }
    Outcome::All(read::missing())
}

/// A 304: the copy at `version` is still the store's; stamp it now.
fn restamp(m: &Master, t: &BackedTable, key: &[u8], version: u64) {
    let mut buf = Vec::new();
    if m.engine
        .read(t.id, key, &RejectRules::version_is(version), &mut buf)
        .is_err()
    {
        return;
    }
    let Ok(env) = envelope::decode(&buf) else {
        return;
    };
    let fresh = envelope::to_vec(env.kind, read::wall_ms(), &env.meta, env.data);
    if let Err(e) = m.engine.replace_clean(t.id, key, &fresh, version) {
        tracing::debug!(table = t.name, error = %e, "cannot restamp a revalidated object");
    }
}

fn body_error(e: std::io::Error) -> StoreFailure {
    StoreFailure {
        status: Status::STORE_UNAVAILABLE,
        detail: format!("reading the object from the store failed: {e} (retry)"),
    }
}

/// Insert a fetched object (or pass it through) and say how to answer.
fn fill(
    m: &Master,
    t: &BackedTable,
    key: &[u8],
    mut r: ObjectReader,
) -> Result<Outcome, StoreFailure> {
    let meta = meta_of(r.meta());
    let len = r.meta().len;
    if len > t.backing.admit_max() {
        Counters::bump(&m.counters.not_admitted);
        pass_through(m, t, key, r, meta, len)?;
        return Ok(Outcome::Done);
    }
    let stamp = read::wall_ms();
    let hl = envelope::header_len(&meta);
    if (hl as u64) + len <= m.engine.max_value_len(key.len()) as u64 {
        let mut env = Vec::with_capacity(hl + len as usize);
        envelope::encode(&mut env, Kind::Whole, stamp, &meta, &[]);
        read_exact_len(&mut r, &mut env, len)?;
        return Ok(insert(m, t, key, &env));
    }
    fill_chunked(m, t, key, r, meta, len, stamp)
}

/// Append exactly `len` bytes of the body to `out` (the store's length must match).
fn read_exact_len(r: &mut impl Read, out: &mut Vec<u8>, len: u64) -> Result<(), StoreFailure> {
    let before = out.len();
    // Exact room up front (len is at most a value here): no regrowth while the body streams.
    out.reserve_exact(len.min(faascache_protocol::msg::MAX_VALUE_LEN as u64) as usize);
    r.take(len).read_to_end(out).map_err(body_error)?;
    let got = (out.len() - before) as u64;
    if got != len {
        return Err(StoreFailure {
            status: Status::STORE_UNAVAILABLE,
            detail: format!("the store sent {got} bytes of an object of {len} bytes (retry)"),
        });
    }
    Ok(())
}

/// Write a clean copy unless a client wrote the key meanwhile.
fn insert(m: &Master, t: &BackedTable, key: &[u8], env: &[u8]) -> Outcome {
    match write_owned(m, t, key, env) {
        Ok(_) | Err(StorageError::ObjectExists { .. }) => Outcome::Engine,
        Err(e) => {
            tracing::debug!(table = t.name, error = %e, "cannot cache a fetched object");
            Outcome::All(storage_retry(&e))
        }
    }
}

/// `write_clean` (must not exist) while this master still owns the key's tablet: a fill that
/// ends after the range moved away leaves nothing behind (a chunk key hashes like its object).
fn write_owned(m: &Master, t: &BackedTable, key: &[u8], env: &[u8]) -> Result<u64, StorageError> {
    let own = m.ownership.read();
    if own.check_read(t.id, key_hash(key)).is_err() {
        // Answered UNKNOWN_TABLET: the reader refreshes its tablet map.
        return Err(StorageError::UnknownTable(t.id));
    }
    m.engine
        .write_clean(t.id, key, env, &RejectRules::must_not_exist())
}

fn storage_retry(e: &StorageError) -> Served {
    match e {
        StorageError::NoSpace => Served::Fail(
            Status::RETRY,
            0,
            "no room for the fetched object yet (the cleaner is freeing memory): retry".into(),
        ),
        e => Served::storage(e),
    }
}

static OBJECT_IDS: AtomicU64 = AtomicU64::new(0);

fn object_id() -> u64 {
    let seed = read::wall_ms().wrapping_mul(0x9E37_79B9_7F4A_7C15);
    seed ^ OBJECT_IDS.fetch_add(1, Ordering::Relaxed)
}

/// Bytes of every chunk but the last for `key`.
pub fn chunk_len(m: &Master, key: &[u8]) -> u32 {
    let room = m.engine.max_value_len(key.len() + CHUNK_SUFFIX_LEN);
    (room.saturating_sub(envelope::header_len(&ObjectMeta::default()))).max(1) as u32
}

/// Stream a large object into chunks (clean), then write its manifest.
fn fill_chunked(
    m: &Master,
    t: &BackedTable,
    key: &[u8],
    mut r: ObjectReader,
    meta: ObjectMeta,
    len: u64,
    stamp: u64,
) -> Result<Outcome, StoreFailure> {
    let clen = chunk_len(m, key);
    let chunks = len.div_ceil(clen as u64);
    let Ok(chunks) = u32::try_from(chunks) else {
        return Ok(Outcome::All(Served::Fail(
            Status::OBJECT_TOO_LARGE,
            0,
            format!("an object of {len} bytes has too many chunks to be cached"),
        )));
    };
    let mf = Manifest {
        total_len: len,
        chunk_len: clen,
        chunks,
        object_id: object_id(),
    };
    let no_meta = ObjectMeta::default();
    let mut buf = Vec::new();
    let undo = |written: u32| {
        for i in 0..written {
            let _ = m
                .engine
                .remove_clean(t.id, &chunk_key(key, mf.object_id, i), None);
        }
    };
    for i in 0..chunks {
        let n = (len - i as u64 * clen as u64).min(clen as u64);
        buf.clear();
        envelope::encode(&mut buf, Kind::Chunk, stamp, &no_meta, &[]);
        if let Err(e) = read_exact_len(&mut r, &mut buf, n) {
            undo(i);
            return Err(e);
        }
        let ck = chunk_key(key, mf.object_id, i);
        if let Err(e) = write_owned(m, t, &ck, &buf) {
            undo(i);
            return Ok(Outcome::All(storage_retry(&e)));
        }
        answer_early(m, t, key, mf, &meta, i as u64 * clen as u64 + n);
    }
    let env = envelope::to_vec(Kind::Manifest(mf), stamp, &meta, &[]);
    let out = insert(m, t, key, &env);
    // A client's write won (or no room): the chunks are not needed.
    let mut check = Vec::new();
    let ours = m
        .engine
        .read(t.id, key, &RejectRules::NONE, &mut check)
        .ok()
        .and_then(|_| envelope::decode(&check).ok().map(|e| e.kind))
        == Some(Kind::Manifest(mf));
    if !ours {
        undo(chunks);
    }
    Ok(out)
}

/// Answer the readers waiting for pieces that lie in the first `written` bytes of an object
/// being filled, from its chunks already written, without waiting for the rest of the store's
/// stream: a large miss streams to its reader. Such a piece has version 0 (the object is not
/// stored yet); the client ties it to the later pieces by length and ETag.
fn answer_early(
    m: &Master,
    t: &BackedTable,
    key: &[u8],
    mf: Manifest,
    meta: &ObjectMeta,
    written: u64,
) {
    let piece_end = |w: &read::Waiter| match w.want {
        Want::Piece { offset, max_len } if offset < mf.total_len => {
            Some(offset + (max_len as u64).min(mf.total_len - offset))
        }
        _ => None,
    };
    let ready: Vec<read::Waiter> = {
        let mut flights = m.reads.flights.lock();
        let Some(ws) = flights.get_mut(&(t.id, key.to_vec())) else {
            return;
        };
        let (ready, wait) = std::mem::take(ws).into_iter().partition(|w| {
            w.responder.is_some() && w.rules.is_none() && piece_end(w).is_some_and(|e| e <= written)
        });
        *ws = wait;
        ready
    };
    for w in ready {
        let (Want::Piece { offset, .. }, Some(end), Some(r)) = (w.want, piece_end(&w), w.responder)
        else {
            continue;
        };
        let own = m.ownership.read();
        let mut data = Vec::with_capacity((end - offset) as usize);
        let s = if own.check_read(t.id, key_hash(key)).is_err() {
            Served::Fail(
                Status::UNKNOWN_TABLET,
                0,
                "this master no longer owns the key's tablet: refresh the tablet map".into(),
            )
        } else if read::chunk_range(m, t, key, mf, offset, end, &mut data) {
            Served::Data {
                version: 0,
                total_len: mf.total_len,
                meta: meta.clone(),
                data,
            }
        } else {
            Served::Fail(
                Status::RETRY,
                0,
                "the object is being fetched from the store: ask again".into(),
            )
        };
        drop(own);
        let (st, p) = s.encode(w.want);
        r.reply_vec(st, p);
    }
}

/// Give each waiter its piece of an object that is not cached, in one pass over the stream.
fn pass_through(
    m: &Master,
    t: &BackedTable,
    key: &[u8],
    mut r: ObjectReader,
    meta: ObjectMeta,
    len: u64,
) -> Result<(), StoreFailure> {
    let single = m.engine.max_value_len(key.len()) as u64;
    let mut wants = Vec::new();
    for w in finish(m, t.id, key) {
        let Some(resp) = w.responder else { continue };
        let (from, to) = match w.want {
            Want::Read if len > single => {
                let s = Served::Fail(
                    Status::OBJECT_TOO_LARGE,
                    0,
                    format!("the object is {len} bytes, larger than one reply: read it in pieces with ReadObject"),
                );
                let (st, p) = s.encode(w.want);
                resp.reply_vec(st, p);
                continue;
            }
            Want::Read => (0, len),
            Want::Piece { offset, max_len } => {
                let from = offset.min(len);
                (from, (from + max_len as u64).min(len))
            }
        };
        wants.push((
            resp,
            w.want,
            from,
            to,
            Vec::with_capacity((to - from) as usize),
        ));
    }
    let end = wants.iter().map(|w| w.3).max().unwrap_or(0);
    let mut at = 0u64;
    let mut piece = vec![0u8; 64 * 1024];
    while at < end {
        let n = match r.read(&mut piece) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let f = body_error(e);
                for (resp, want, ..) in wants {
                    let (st, p) = Served::store(&f).encode(want);
                    resp.reply_vec(st, p);
                }
                return Ok(());
            }
        };
        let (lo, hi) = (at, at + n as u64);
        for (_, _, from, to, out) in wants.iter_mut() {
            let (a, b) = ((*from).max(lo), (*to).min(hi));
            if a < b {
                out.extend_from_slice(&piece[(a - lo) as usize..(b - lo) as usize]);
            }
        }
        at = hi;
    }
    if at < end {
        let f = StoreFailure {
            status: Status::STORE_UNAVAILABLE,
            detail: format!("the store sent {at} bytes of an object of {len} bytes (retry)"),
        };
        for (resp, want, ..) in wants {
            let (st, p) = Served::store(&f).encode(want);
            resp.reply_vec(st, p);
        }
        return Ok(());
    }
    for (resp, want, _, _, data) in wants {
        let s = Served::Data {
            version: 0,
            total_len: len,
            meta: meta.clone(),
            data,
        };
        let (st, p) = s.encode(want);
        resp.reply_vec(st, p);
    }
    Ok(())
}
