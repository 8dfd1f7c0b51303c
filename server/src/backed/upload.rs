//! The write-back worker of one master: a few threads taking keys from the [`Queue`] and
//! uploading them ([`upload_one`]: read the current envelope, PUT or DELETE, then
//! `replace_clean` at the version read), answering flushes when their keys are clean and
//! when they time out.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use faascache_objstore::{ObjectStore, PutMeta};
use faascache_protocol::msg::common::RejectRules;
use faascache_storage::{Engine, StorageError, TableId};
use parking_lot::{Condvar, Mutex};

use super::envelope::{self, Kind};
use super::writeback::{Done, Flushed, Gauges, Key, Queue};
use super::Counters;

/// Uploads running at once on one master.
pub const PARALLEL: usize = 4;
/// Milliseconds a written key waits before its upload may start ([`Queue::with_settle`]): long
/// enough for the write's acknowledgement to leave first (about 1 ms for 1 MB here), short
/// beside a store PUT (10 ms and more); `faascache flush` and write-through do not wait it.
pub const WRITE_BACK_SETTLE_MS: u64 = 5;

/// How a flush ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlushEnd {
    /// Every object it named is in the store.
    Done(Flushed),
    /// Its time ran out: this many objects are still dirty.
    TimedOut(u64),
    /// Not started: too many flushes wait already (answer `RETRY`).
    Busy,
    /// A fail-fast flush ([`WriteBack::flush_through`]): the upload of one of its objects
    /// failed with an error a retry cannot fix (credentials, bucket, key). The object stays
    /// dirty and queued.
    Rejected,
}

/// Called once when a flush ends (on a worker thread).
pub type FlushReply = Box<dyn FnOnce(FlushEnd) + Send>;

/// Uploads one key (the I/O half of the worker): `None` once there is nothing left to upload
/// for (the master is gone), and the threads stop.
pub trait Uploader: Send + Sync + 'static {
    /// Upload the current value of `key`.
    fn upload(&self, key: &Key) -> Option<Done>;
}

struct State {
    queue: Queue,
    flushes: HashMap<u64, (u64, FlushReply)>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    origin: Instant,
}

impl Shared {
    fn now(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }
}

/// The queue, its flush waiters and (once started) its threads.
pub struct WriteBack {
    shared: Arc<Shared>,
    started: OnceLock<()>,
}

impl std::fmt::Debug for WriteBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBack")
            .field("gauges", &self.gauges())
            .finish()
    }
}

impl Drop for WriteBack {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.cv.notify_all();
    }
}

impl WriteBack {
    /// A worker with a dirty-bytes limit (threads start with [`WriteBack::start`]).
    pub fn new(limit: u64) -> WriteBack {
        WriteBack {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: Queue::new(limit, PARALLEL).with_settle(WRITE_BACK_SETTLE_MS),
                    flushes: HashMap::new(),
                    stop: false,
                }),
                cv: Condvar::new(),
                origin: Instant::now(),
            }),
            started: OnceLock::new(),
        }
    }

    /// Start the upload threads (once; later calls do nothing).
    pub fn start(&self, uploader: impl FnOnce() -> Arc<dyn Uploader>) {
        self.started.get_or_init(|| {
            let up = uploader();
            for i in 0..PARALLEL {
                let (shared, up) = (self.shared.clone(), up.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("write-back-{i}"))
                    .spawn(move || run(&shared, &*up));
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start a write-back thread");
                }
            }
        });
    }

    /// Change the dirty-bytes limit ([`Queue::set_limit`](super::writeback::Queue::set_limit)).
    pub fn set_limit(&self, limit: u64) {
        self.shared.state.lock().queue.set_limit(limit);
    }

    /// Whether a write of `bytes` to `key` stays under the dirty-bytes limit.
    pub fn admits(&self, key: &Key, bytes: u64) -> bool {
        self.shared.state.lock().queue.admits(key, bytes)
    }

    /// Queue `key` (written dirty, `bytes` long) for upload.
    pub fn dirty(&self, key: Key, bytes: u64) {
        let now = self.shared.now();
        self.shared.state.lock().queue.dirty(key, bytes, now);
        self.shared.cv.notify_one();
    }

    /// Forget the queued keys of a table dropped here.
    pub fn drop_table(&self, table: TableId) {
        let done = {
            let mut st = self.shared.state.lock();
            let f = st.queue.drop_table(table);
            take(&mut st, f)
        };
        answer(done);
    }

    /// Call `reply` when every key `which` selects among those queued now is clean, or with
    /// [`FlushEnd::TimedOut`] after `timeout` ([`FlushEnd::Busy`] at once if too many flushes
    /// wait already).
    pub fn flush(&self, which: impl Fn(&Key) -> bool, timeout: Duration, reply: FlushReply) {
        self.flush_as(which, timeout, reply, false)
    }

    /// [`WriteBack::flush`], also ended with [`FlushEnd::Rejected`] as soon as an upload of
    /// one of its objects fails with an error a retry cannot fix (write-through writes).
    pub fn flush_through(
        &self,
        which: impl Fn(&Key) -> bool,
        timeout: Duration,
        reply: FlushReply,
    ) {
        self.flush_as(which, timeout, reply, true)
    }

    fn flush_as(
        &self,
        which: impl Fn(&Key) -> bool,
        timeout: Duration,
        reply: FlushReply,
        fail_fast: bool,
    ) {
        let mut st = self.shared.state.lock();
        let waited = if fail_fast {
            st.queue.wait_fail_fast(which)
        } else {
            st.queue.wait(which)
        };
        match waited {
            Err(()) => {
                drop(st);
                reply(FlushEnd::Busy);
            }
            Ok(None) => {
                drop(st);
                reply(FlushEnd::Done(Flushed {
                    id: 0,
                    objects: 0,
                    bytes: 0,
                }));
            }
            Ok(Some(id)) if fail_fast && st.queue.refused(id) => {
                drop(st);
                reply(FlushEnd::Rejected);
            }
            Ok(Some(id)) => {
                let deadline = self.shared.now() + timeout.as_millis() as u64;
                st.flushes.insert(id, (deadline, reply));
                drop(st);
                self.shared.cv.notify_all();
            }
        }
    }

    /// The queue's gauges now.
    pub fn gauges(&self) -> Gauges {
        let now = self.shared.now();
        self.shared.state.lock().queue.gauges(now)
    }
}

fn take(st: &mut State, flushed: Vec<Flushed>) -> Vec<(FlushReply, FlushEnd)> {
    flushed
        .into_iter()
        .filter_map(|f| {
            st.flushes
                .remove(&f.id)
                .map(|(_, r)| (r, FlushEnd::Done(f)))
        })
        .collect()
}

fn answer(done: Vec<(FlushReply, FlushEnd)>) {
    for (reply, end) in done {
        reply(end);
    }
}

/// Flushes whose time ran out, removed from the state.
fn expired(st: &mut State, now: u64) -> Vec<(FlushReply, FlushEnd)> {
    let ids: Vec<u64> = st
        .flushes
        .iter()
        .filter(|(_, (deadline, _))| *deadline <= now)
        .map(|(id, _)| *id)
        .collect();
    ids.into_iter()
        .filter_map(|id| {
            let left = st.queue.cancel(id).unwrap_or(0);
            st.flushes
                .remove(&id)
                .map(|(_, r)| (r, FlushEnd::TimedOut(left)))
        })
        .collect()
}

/// One upload thread.
fn run(shared: &Shared, up: &dyn Uploader) {
    loop {
        let (key, timed_out) = {
            let mut st = shared.state.lock();
            loop {
                if st.stop {
                    return;
                }
                let now = shared.now();
                let late = expired(&mut st, now);
                if !late.is_empty() {
                    break (None, late);
                }
                if let Some(k) = st.queue.next(now) {
                    break (Some(k), Vec::new());
                }
                let wake = [
                    st.queue.next_due(),
                    st.flushes.values().map(|(d, _)| *d).min(),
                ]
                .into_iter()
                .flatten()
                .min()
                .map_or(1000, |t| t.saturating_sub(now).clamp(1, 1000));
                shared.cv.wait_for(&mut st, Duration::from_millis(wake));
            }
        };
        answer(timed_out);
        let Some(key) = key else { continue };
        let Some(how) = up.upload(&key) else {
            shared.state.lock().stop = true;
            shared.cv.notify_all();
            return;
        };
        let done = {
            let mut st = shared.state.lock();
            let f = st.queue.done(&key, how, shared.now());
            let mut done = take(&mut st, f);
            if how == (Done::Failed { retryable: false }) {
                for id in st.queue.rejected(&key) {
                    if let Some((_, r)) = st.flushes.remove(&id) {
                        done.push((r, FlushEnd::Rejected));
                    }
                }
            }
            done
        };
        shared.cv.notify_all();
        answer(done);
    }
}

/// Wall-clock ms since the epoch (envelope stamps).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Upload the current value of `(table, key)` from `engine` to `store`, and mark it clean if
/// it did not change meanwhile. Store errors are counted and remembered in `counters`.
pub fn upload_one(
    engine: &Engine,
    store: &dyn ObjectStore,
    counters: &Counters,
    table: TableId,
    key: &[u8],
) -> Done {
    let mut value = Vec::new();
    let version = match engine.read(table, key, &RejectRules::NONE, &mut value) {
        Ok(v) => v,
        // Removed or the table dropped: nothing left to upload.
        Err(StorageError::ObjectDoesntExist | StorageError::UnknownTable(_)) => return Done::Clean,
        Err(e) => {
            tracing::warn!(table, error = %e, "write-back cannot read a queued object");
            return Done::Failed { retryable: true };
        }
    };
    if engine.is_dirty(table, key).ok().flatten() != Some(true) {
        return Done::Clean;
    }
    let Ok(env) = envelope::decode(&value) else {
        // Not an envelope we can upload (should not happen): keep it, say so.
        tracing::error!(
            table,
            "write-back: a dirty object's value is not a valid envelope; kept dirty"
        );
        return Done::Failed { retryable: false };
    };
    let Ok(name) = std::str::from_utf8(key) else {
        tracing::error!(table, "write-back: key is not UTF-8; kept dirty");
        return Done::Failed { retryable: false };
    };
    let fail = |e: faascache_objstore::Error| {
        Counters::bump(&counters.upload_errors);
        counters.set_last_error(&format!("{}: {e}", store.describe()));
        tracing::warn!(table, key = name, error = %e, "write-back upload failed; retrying later");
        Done::Failed {
            retryable: e.is_retryable(),
        }
    };
    match env.kind {
        Kind::Whole => {
            let meta = PutMeta {
                content_type: Some(env.meta.content_type.clone()).filter(|c| !c.is_empty()),
                user_meta: env.meta.user.iter().cloned().collect(),
            };
            let etag = match store.put(name, env.data.to_vec().into(), &meta) {
                Ok(r) => r.etag,
                Err(e) => return fail(e),
            };
            Counters::bump(&counters.uploads);
            let mut m = env.meta.clone();
            m.etag = etag.as_str().to_string();
            let clean = envelope::to_vec(Kind::Whole, wall_ms(), &m, env.data);
            match engine.replace_clean(table, key, &clean, version) {
                Ok(true) => Done::Clean,
                Ok(false) => Done::Moved,
                Err(_) => engine
                    .mark_clean(table, key, version)
                    .map_or(Done::Moved, |ok| if ok { Done::Clean } else { Done::Moved }),
            }
        }
        Kind::Deleted => {
            if let Err(e) = store.delete(name) {
                return fail(e);
            }
            Counters::bump(&counters.uploads);
            match engine.remove(table, key, &RejectRules::version_is(version)) {
                Ok(_) => Done::Clean,
                Err(StorageError::ObjectDoesntExist) => Done::Clean,
                Err(_) => Done::Moved,
            }
        }
        Kind::Manifest(mf) => {
            let meta = PutMeta {
                content_type: Some(env.meta.content_type.clone()).filter(|c| !c.is_empty()),
                user_meta: env.meta.user.iter().cloned().collect(),
            };
            let etag = match upload_chunks(engine, store, table, key, name, mf, &meta) {
                Ok(etag) => etag,
                Err(Some(e)) => return fail(e),
                // A chunk is gone: the object was replaced meanwhile (the retry uploads the
                // new value) — or lost, which the log says.
                Err(None) => return Done::Failed { retryable: true },
            };
            Counters::bump(&counters.uploads);
            let mut m = env.meta.clone();
            m.etag = etag;
            // The chunks are marked clean by `chunked::sweep` once the manifest is.
            let clean = envelope::to_vec(Kind::Manifest(mf), wall_ms(), &m, &[]);
            match engine.replace_clean(table, key, &clean, version) {
                Ok(true) => Done::Clean,
                _ => Done::Moved,
            }
        }
        // A large write's chunk is uploaded with its manifest: nothing to do on its own.
        Kind::Chunk => Done::Clean,
    }
}

/// Objects up to this size are uploaded with one PUT (held whole for it); larger ones are
/// streamed (S3 multipart, Swift chunked transfer), one chunk in memory at a time.
pub const STREAM_ABOVE: u64 = 16 << 20;

/// Upload the object of manifest `mf` at `key` from its chunks; its ETag. `Err(None)` when a
/// chunk is missing or not the length the manifest says.
fn upload_chunks(
    engine: &Engine,
    store: &dyn ObjectStore,
    table: TableId,
    key: &[u8],
    name: &str,
    mf: envelope::Manifest,
    meta: &PutMeta,
) -> Result<String, Option<faascache_objstore::Error>> {
    let mut buf = Vec::new();
    let mut chunk =
        |i: u32| -> Result<faascache_objstore::Bytes, Option<faascache_objstore::Error>> {
            let ck = faascache_protocol::msg::common::chunk_key(key, mf.object_id, i);
            buf.clear();
            let want = (mf.total_len - i as u64 * mf.chunk_len as u64).min(mf.chunk_len as u64);
            let ok = engine
                .read(table, &ck, &RejectRules::NONE, &mut buf)
                .is_ok();
            match envelope::decode(&buf) {
                Ok(c) if ok && c.kind == Kind::Chunk && c.data.len() as u64 == want => {
                    Ok(faascache_objstore::Bytes::copy_from_slice(c.data))
                }
                _ => {
                    tracing::warn!(
                        table,
                        key = name,
                        chunk = i,
                        "write-back: a chunk of a large object is missing; retrying later"
                    );
                    Err(None)
                }
            }
        };
    if mf.total_len <= STREAM_ABOVE {
        let parts = (0..mf.chunks)
            .map(&mut chunk)
            .collect::<Result<Vec<_>, _>>()?;
        return store
            .put(name, parts.into(), meta)
            .map(|r| r.etag.as_str().to_string())
            .map_err(Some);
    }
    let mut up = store.put_stream(name, meta).map_err(Some)?;
    for i in 0..mf.chunks {
        let sent = chunk(i).and_then(|c| up.write(c).map_err(Some));
        if let Err(e) = sent {
            up.abort();
            return Err(e);
        }
    }
    up.finish()
        .map(|r| r.etag.as_str().to_string())
        .map_err(Some)
}

#[cfg(test)]
#[path = "upload_tests.rs"]
mod tests;
