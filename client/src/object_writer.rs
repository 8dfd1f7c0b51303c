//! Writing an object of a backed table whose bytes arrive in pieces, of any size up to
//! [`MAX_CHUNKS`] × [`MAX_CHUNK_DATA`] (about 4 GiB), holding one chunk in memory: what the
//! S3/Swift gateway does with a PUT body. Full chunks are sent as they fill
//! (`WriteObjectChunk`, untracked: a retry writes the same bytes again); the commit
//! (`CommitObject`, tracked) makes them the object at once. An object that ends within one
//! chunk is written whole (`WriteObject`) at the commit instead.

use faascache_protocol::msg::faas::ObjectMeta;
use faascache_protocol::msg::large::{
    CommitObjectRequest, WriteObjectChunkRequest, MAX_CHUNKS, MAX_CHUNK_DATA,
};
use faascache_protocol::msg::{self, Request};

use crate::client::{check_key, Client};
use crate::error::{Error, Result, TableId};
use crate::options::WriteOptions;

/// A large write in progress ([`Client::object_writer`]). Dropped without
/// [`ObjectWriter::commit`], nothing changes for readers; the chunks sent are removed by the
/// master after its `--orphan-chunk-age`.
#[derive(Debug)]
pub struct ObjectWriter<'c> {
    client: &'c Client,
    table: TableId,
    key: Vec<u8>,
    object_id: u64,
    buf: Vec<u8>,
    sent: u32,
    len: u64,
}

impl Client {
    /// Start writing an object of a backed table piece by piece (see [`ObjectWriter`]).
    ///
    /// ```no_run
    /// use faascache_client::{Client, ObjectMeta, WriteOptions};
    /// let c = Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("videos")?;
    /// let mut w = c.object_writer(t, b"clip.mp4")?;
    /// for piece in [&b"..."[..], b"..."] {
    ///     w.write(piece)?;
    /// }
    /// let version = w.commit(&ObjectMeta::default(), &WriteOptions::default())?;
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn object_writer(&self, table: TableId, key: &[u8]) -> Result<ObjectWriter<'_>> {
        check_key(key)?;
        Ok(ObjectWriter {
            client: self,
            table,
            key: key.to_vec(),
            object_id: new_object_id(),
            buf: Vec::new(),
            sent: 0,
            len: 0,
        })
    }
}

impl ObjectWriter<'_> {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append `data`; every chunk that fills is sent. [`Error::TooLarge`] past the largest
    /// object (nothing more is accepted).
    pub fn write(&mut self, mut data: &[u8]) -> Result<()> {
        let max = MAX_CHUNKS as u64 * MAX_CHUNK_DATA as u64;
        if self.len + data.len() as u64 > max {
            return Err(Error::TooLarge {
                what: "object",
                len: (self.len + data.len() as u64) as usize,
                max: max as usize,
            });
        }
        self.len += data.len() as u64;
        let chunk = MAX_CHUNK_DATA as usize;
        while !data.is_empty() {
            if self.buf.is_empty() && data.len() > chunk {
                // A whole chunk straight from the caller's bytes (no copy).
                self.send(&data[..chunk])?;
                data = &data[chunk..];
                continue;
            }
            let n = (chunk - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            // Send a full buffer only once more bytes follow: the last chunk waits for the
            // commit (an object of one chunk is then written whole).
            if self.buf.len() == chunk && !data.is_empty() {
                let full = std::mem::take(&mut self.buf);
                self.send(&full)?;
            }
        }
        Ok(())
    }

    /// Make the bytes written the object, with `meta`, under `opts`' reject rules; returns
    /// its version (as [`Client::write_object_with`]).
    pub fn commit(mut self, meta: &ObjectMeta, opts: &WriteOptions) -> Result<u64> {
        let (c, table) = (self.client, self.table);
        if self.sent == 0 {
            return c.write_object_with(table, &self.key, meta, &self.buf, opts);
        }
        if !self.buf.is_empty() {
            let last = std::mem::take(&mut self.buf);
            self.send(&last)?;
        }
        let guard = c.begin_rpc()?;
        let op = CommitObjectRequest::OPCODE;
        let (key, chunks, total_len) = (&self.key[..], self.sent, self.len);
        c.on_master_tracked(
            table,
            msg::key_hash(key),
            &guard,
            &mut c.backoff(),
            op,
            |s, left, rpc| {
                let req = CommitObjectRequest {
                    table,
                    rpc,
                    rules: opts.reject,
                    key,
                    meta: meta.clone(),
                    total_len,
                    chunk_len: MAX_CHUNK_DATA,
                    chunks,
                    object_id: self.object_id,
                };
                faascache_transport::call(s, &req, left, |r| r.version)
            },
        )
    }

    /// Send chunk `self.sent`.
    fn send(&mut self, data: &[u8]) -> Result<()> {
        let (c, table) = (self.client, self.table);
        let req = WriteObjectChunkRequest {
            table,
            key: &self.key,
            object_id: self.object_id,
            index: self.sent,
            data,
        };
        let op = WriteObjectChunkRequest::OPCODE;
        c.on_master(
            table,
            msg::key_hash(&self.key),
            &mut c.backoff(),
            |s, left| {
                let r = faascache_transport::call(s, &req, left, |r| r.version);
                c.classify(table, op, r)
            },
        )
        .map_err(|e| match e {
            // A plain table: the value is simply too large for it.
            Error::InvalidArgument(d) if d.contains("this table is plain") => Error::TooLarge {
                what: "value",
                len: self.len as usize,
                max: msg::MAX_VALUE_LEN,
            },
            e => e,
        })?;
        self.sent += 1;
        Ok(())
    }
}

/// A fresh object id for a large write: random (the standard library's per-process random
/// hash keys) and never repeated within the process (a counter).
fn new_object_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
