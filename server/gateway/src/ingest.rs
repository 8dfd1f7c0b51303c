//! Receiving an object's body for a PUT (S3 PutObject, Swift object PUT): a body that fits one
//! cached value is read into memory and written like before ([`objects::put`]); a longer one
//! is streamed to the store as it arrives ([`faascache_objstore::PutStream`]), so a request
//! holds at most about two store parts and a batch in memory whatever the object's size.
//!
//! The streaming path: once the body outgrows [`objects::INLINE_MAX`], a blocking task writes
//! the batches the async side sends it through a channel of one; the async side reads the body
//! (idle timeout, declared length, MD5, checksums). The caller checks the digests, then
//! [`Received::commit`] finishes the write; dropping a [`Received`] instead abandons it
//! (nothing changes for readers). Where the task writes:
//!
//! * **into the cache** when the bucket is a backed table and the body declares a length up to
//!   the table's admission limit (`--admit-max`, 64 MiB by default): the object is written in
//!   chunks ([`faascache_client::ObjectWriter`]) and committed with the body's MD5 as its ETag,
//!   then follows the table's policy like a small PUT (write-back by default) — later reads
//!   hit DRAM;
//! * **to the store directly** otherwise (longer, or a chunked body of unknown length): it
//!   flushes any queued write of the key (so the store never ends with an older version),
//!   streams to the store's writer and drops the cached copy.

use std::sync::Arc;

use bytes::Bytes;
use faascache_objstore::{PutMeta, PART_SIZE};
use futures_util::{Stream, StreamExt};
use md5::{Digest, Md5};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use faascache_client::{ObjectMeta, WriteOptions};

use crate::body::{self, Grant, IDLE};
use crate::buckets::Bucket;
use crate::error::{GwError, GwResult};
use crate::objects::{self, NewMeta, Totals, FLUSH_WAIT, INLINE_MAX};
use crate::shared::Shared;

/// The largest object one PUT writes (S3's and Swift's default limit).
pub const MAX_OBJECT: u64 = 5 << 30;
/// Bytes sent to the store's writer at a time.
const BATCH: usize = 1 << 20;
/// What a streamed upload takes of the memory budget: two store parts (one filling, one
/// uploading) and three batches (one filling, one in the channel, one being written).
pub const STREAM_GRANT: u64 = 2 * PART_SIZE as u64 + 3 * BATCH as u64;

/// Where a PUT writes.
#[derive(Debug, Clone)]
pub struct Target {
    /// Bucket (container).
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Content type and user metadata.
    pub meta: NewMeta,
}

enum Msg {
    Data(Vec<Bytes>),
    /// The body is complete and its digests checked; its MD5 in hex.
    Commit(String),
}

enum Inner {
    Whole(Vec<Bytes>, Grant),
    Streaming {
        tx: mpsc::Sender<Msg>,
        task: JoinHandle<GwResult<String>>,
        _grant: Grant,
    },
}

/// A body received, not yet committed; see the module documentation.
pub struct Received {
    /// Length.
    pub len: u64,
    /// MD5 of the bytes.
    pub md5: [u8; 16],
    /// The same, lower-case hex.
    pub md5_hex: String,
    /// The `x-amz-checksum-*` values asked for.
    pub checksums: s3s::dto::Checksum,
    target: Target,
    inner: Inner,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("len", &self.len)
            .field("md5", &self.md5_hex)
            .finish_non_exhaustive()
    }
}

impl Received {
    /// Write the object (small: to the cluster, like before; streamed: finish the store's
    /// write and drop the cached copy); returns its ETag.
    pub async fn commit(self, gw: &Arc<Shared>) -> GwResult<String> {
        Totals::add(&gw.totals.bytes_in, self.len);
        match self.inner {
            Inner::Whole(chunks, grant) => {
                let (gw, t, md5) = (gw.clone(), self.target, self.md5_hex);
                join(tokio::task::spawn_blocking(move || {
                    let r = gw.buckets.with(&t.bucket, |b| {
                        objects::put(b, &t.key, &t.meta, chunks, &md5)
                    });
                    drop(grant);
                    r
                }))
                .await
            }
            Inner::Streaming { tx, task, _grant } => {
                // A send fails only when the writer ended already: its result says why.
                let _ = tx.send(Msg::Commit(self.md5_hex)).await;
                join(task).await
            }
        }
    }
}

async fn join(task: JoinHandle<GwResult<String>>) -> GwResult<String> {
    task.await
        .map_err(|e| GwError::Internal(format!("gateway task failed: {e}")))?
}

/// Read `body` (announcing `declared` bytes, if it did) for `target`; see the module
/// documentation.
pub async fn receive<S, E>(
    gw: &Arc<Shared>,
    target: Target,
    mut body: S,
    declared: Option<u64>,
    mut sums: s3s::checksum::ChecksumHasher,
) -> GwResult<Received>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    if declared.is_some_and(|d| d > MAX_OBJECT) {
        return Err(GwError::EntityTooLarge(format!(
            "Your proposed upload exceeds the maximum allowed object size ({MAX_OBJECT} bytes)"
        )));
    }
    let small = declared.is_some_and(|d| d <= INLINE_MAX as u64);
    let grant = gw.budget.take(if small {
        declared.unwrap_or(0)
    } else {
        STREAM_GRANT
    })?;
    let mut h = Md5::new();
    let (mut len, mut batch, mut batch_len) = (0u64, Vec::new(), 0usize);
    let mut writer: Option<(mpsc::Sender<Msg>, JoinHandle<GwResult<String>>)> = None;
    while let Some(chunk) = next(&mut body).await? {
        len += chunk.len() as u64;
        if let Some(d) = declared {
            if len > d {
                return Err(GwError::InvalidArgument(format!(
                    "the body is longer than its Content-Length ({d})"
                )));
            }
        }
        if len > MAX_OBJECT {
            return Err(GwError::EntityTooLarge(format!(
                "Your proposed upload exceeds the maximum allowed object size ({MAX_OBJECT} bytes)"
            )));
        }
        h.update(&chunk);
        sums.update(&chunk);
        batch_len += chunk.len();
        batch.push(chunk);
        if writer.is_none() && len > INLINE_MAX as u64 {
            if small {
                // Declared small yet longer: caught above; never streamed.
                return Err(GwError::Internal("a small body grew".into()));
            }
            writer = Some(start_writer(gw, &target, declared)?);
        }
        if let Some((tx, _)) = &writer {
            if batch_len >= BATCH {
                let data = std::mem::take(&mut batch);
                batch_len = 0;
                if tx.send(Msg::Data(data)).await.is_err() {
                    let (_, task) = writer.take().expect("writer present");
                    return Err(join(task).await.err().unwrap_or_else(|| {
                        GwError::Internal("the store writer ended early".into())
                    }));
                }
            }
        }
    }
    if let Some(d) = declared {
        if len < d {
            return Err(GwError::InvalidArgument(format!(
                "the body ended after {len} of its {d} bytes (IncompleteBody)"
            )));
        }
    }
    let md5: [u8; 16] = h.finalize().into();
    let inner = match writer {
        None => Inner::Whole(batch, grant),
        Some((tx, task)) => {
            if !batch.is_empty() && tx.send(Msg::Data(batch)).await.is_err() {
                return Err(join(task)
                    .await
                    .err()
                    .unwrap_or_else(|| GwError::Internal("the store writer ended early".into())));
            }
            Inner::Streaming {
                tx,
                task,
                _grant: grant,
            }
        }
    };
    Ok(Received {
        len,
        md5,
        md5_hex: body::hex(&md5),
        checksums: sums.finalize(),
        target,
        inner,
    })
}

/// The next piece of the body, waiting at most [`IDLE`].
async fn next<S, E>(body: &mut S) -> GwResult<Option<Bytes>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    match tokio::time::timeout(IDLE, body.next()).await {
        Err(_) => Err(GwError::InvalidArgument(format!(
            "no bytes of the body arrived for {} s (RequestTimeout)",
            IDLE.as_secs()
        ))),
        Ok(None) => Ok(None),
        Ok(Some(Ok(c))) => Ok(Some(c)),
        Ok(Some(Err(e))) => Err(body::body_error(&e.to_string())),
    }
}

/// Start the blocking task that writes the body (into the cache, or to the store: see the
/// module documentation).
fn start_writer(
    gw: &Arc<Shared>,
    target: &Target,
    declared: Option<u64>,
) -> GwResult<(mpsc::Sender<Msg>, JoinHandle<GwResult<String>>)> {
    target.meta.validate()?;
    let (tx, mut rx) = mpsc::channel::<Msg>(1);
    let (gw, t) = (gw.clone(), target.clone());
    let task = tokio::task::spawn_blocking(move || {
        gw.buckets.with(&t.bucket, |b| {
            if t.key.is_empty() {
                return Err(GwError::InvalidKey("the key is empty".into()));
            }
            let cached = b
                .backing
                .as_ref()
                .is_some_and(|bk| declared.is_some_and(|d| d <= bk.admit_max()));
            if cached {
                write_cached(b, &t, &mut rx)
            } else {
                write_direct(&gw, b, &t, &mut rx)
            }
        })
    });
    Ok((tx, task))
}

/// Write the body into the cache in chunks, then commit it with its MD5 as the ETag.
fn write_cached(b: &Bucket, t: &Target, rx: &mut mpsc::Receiver<Msg>) -> GwResult<String> {
    let mut w = b.client().object_writer(b.table, t.key.as_bytes())?;
    let md5 = loop {
        match rx.blocking_recv() {
            Some(Msg::Data(chunks)) => {
                for c in chunks {
                    w.write(&c)?;
                }
            }
            Some(Msg::Commit(md5)) => break md5,
            // The request failed: the chunks sent are never committed (the master removes
            // them after its --orphan-chunk-age).
            None => return Err(GwError::InvalidArgument("the upload was abandoned".into())),
        }
    };
    let meta = ObjectMeta {
        etag: md5.clone(),
        content_type: t.meta.content_type.clone().unwrap_or_default(),
        last_modified_ms: 0,
        user: t.meta.user.clone(),
    };
    w.commit(&meta, &WriteOptions::default())?;
    Ok(md5)
}

/// Stream the body to the store, then drop the cached copy.
fn write_direct(
    gw: &Shared,
    b: &Bucket,
    t: &Target,
    rx: &mut mpsc::Receiver<Msg>,
) -> GwResult<String> {
    let Some(store) = &b.store else {
        return Err(GwError::EntityTooLarge(format!(
            "bucket {} has no object store behind it, and objects larger than {INLINE_MAX} bytes are written to the store",
            b.name
        )));
    };
    let k = t.key.as_bytes();
    // A queued (older) write of the key must reach the store before this one does.
    b.client().flush(b.table, Some(k), FLUSH_WAIT)?;
    let pm = PutMeta {
        content_type: t.meta.content_type.clone(),
        user_meta: t.meta.user.iter().cloned().collect(),
    };
    let mut w = store.put_stream(&t.key, &pm)?;
    loop {
        match rx.blocking_recv() {
            Some(Msg::Data(chunks)) => {
                for c in chunks {
                    w.write(c)?;
                }
            }
            Some(Msg::Commit(_)) => break,
            // The request failed (a bad digest, a broken body): nothing is stored.
            None => {
                w.abort();
                return Err(GwError::InvalidArgument("the upload was abandoned".into()));
            }
        }
    }
    let r = w.finish()?;
    Totals::add(&gw.totals.direct_puts, 1);
    b.client().invalidate(b.table, k)?;
    Ok(r.etag.as_str().to_string())
}
