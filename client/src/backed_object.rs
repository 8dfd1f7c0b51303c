//! Objects of backed tables as an S3/Swift gateway uses them (`docs/faas.md`): a write that
//! carries the object's metadata (`WriteObject`), the metadata and length without the bytes
//! (`ReadObject` of 0 bytes), and a byte range streamed piece by piece (the pieces of
//! `backed.rs`'s `read_pieces` from an offset).

use std::io::Write;

use faascache_protocol::msg::faas::{ObjectMeta, WriteObjectRequest};
use faascache_protocol::msg::large::MAX_CHUNK_DATA;
use faascache_protocol::msg::{self, Request};

use crate::backed::ObjectInfo;
use crate::client::{check_key, check_value, Client};
use crate::error::{Error, Result, TableId};
use crate::options::{RejectRules, WriteOptions};

impl Client {
    /// Writes an object of a backed table with its metadata; returns its new version. Like
    /// [`Client::write`] (the same key checks, write-back limit — [`Error::WriteBackFull`] —,
    /// write-through wait, exactly-once retries), but the cached object carries `meta`: its
    /// content type and user metadata are uploaded with the bytes (names in lower case: ASCII
    /// letters, digits and `-`; values printable ASCII; else [`Error::StoreRejected`] and
    /// nothing is written), `read_object` and [`Client::head_object`] return them. A
    /// `last_modified_ms` of 0 is set to the write's wall-clock time; the ETag is kept as
    /// given (e.g. the body's MD5 in hex) until the upload replaces it with the store's.
    /// **Large objects**: a value above [`MAX_CHUNK_DATA`] (1 MiB − 4 KiB) is sent in chunks of
    /// that size, then committed: readers see the old object until the commit and the whole
    /// new one after it, never a part (up to 4,096 chunks, about 4 GiB; beyond,
    /// [`Error::TooLarge`]). A chunk is refused [`Error::WriteBackFull`] while other dirty
    /// data holds the master's write-back limit; a client that dies mid-write leaves chunks the
    /// master removes after its `--orphan-chunk-age`. Metadata over the protocol's limits
    /// (2048 bytes a field, 64 pairs): [`Error::InvalidArgument`]. A plain table:
    /// [`Error::InvalidArgument`].
    ///
    /// ```no_run
    /// use faascache_client::{Client, ObjectMeta};
    /// let c = Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("photos")?;
    /// let meta = ObjectMeta {
    ///     content_type: "image/jpeg".into(),
    ///     user: vec![("camera".into(), "x100".into())],
    ///     ..ObjectMeta::default()
    /// };
    /// let version = c.write_object(t, b"cat.jpg", &meta, b"...")?;
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn write_object(
        &self,
        table: TableId,
        key: &[u8],
        meta: &ObjectMeta,
        value: &[u8],
    ) -> Result<u64> {
        self.write_object_with(table, key, meta, value, &WriteOptions::default())
    }

    /// [`Client::write_object`] under reject rules (e.g. create-only with
    /// [`RejectRules::must_not_exist`], or only over a version read earlier).
    ///
    /// ```no_run
    /// use faascache_client::{Client, ObjectMeta, RejectRules, WriteOptions};
    /// let c = Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("photos")?;
    /// let create = WriteOptions::default().reject(RejectRules::must_not_exist());
    /// c.write_object_with(t, b"cat.jpg", &ObjectMeta::default(), b"...", &create)?;
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn write_object_with(
        &self,
        table: TableId,
        key: &[u8],
        meta: &ObjectMeta,
        value: &[u8],
        opts: &WriteOptions,
    ) -> Result<u64> {
        check_key(key)?;
        meta.check()
            .map_err(|e| Error::InvalidArgument(format!("object metadata: {e}")))?;
        if value.len() > MAX_CHUNK_DATA as usize {
            // A large object through an `ObjectWriter`: its chunks, then the commit.
            let mut w = self.object_writer(table, key)?;
            w.write(value)?;
            return w.commit(meta, opts);
        }
        check_value(value)?;
        let guard = self.begin_rpc()?;
        let op = WriteObjectRequest::OPCODE;
        let hash = msg::key_hash(key);
        self.on_master_tracked(
            table,
            hash,
            &guard,
            &mut self.backoff(),
            op,
            |s, left, rpc| {
                let req = WriteObjectRequest {
                    table,
                    rpc,
                    rules: opts.reject,
                    key,
                    meta: meta.clone(),
                    value,
                };
                faascache_transport::call(s, &req, left, |r| r.version)
            },
        )
    }

    /// The metadata, whole length and version of an object, without its bytes (one
    /// `ReadObject` of 0 bytes; a miss reads the object through from the store as a read
    /// does). [`Error::NoSuchObject`] if there is none. Version 0: a large object is being
    /// fetched from the store right now and is not stored yet (its ETag identifies it).
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("photos")?;
    /// let (meta, len, _version) = c.head_object(t, b"cat.jpg")?;
    /// println!("{len} bytes of {}", meta.content_type);
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn head_object(&self, table: TableId, key: &[u8]) -> Result<(ObjectMeta, u64, u64)> {
        check_key(key)?;
        let r = self.read_pieces(table, key, RejectRules::NONE, (0, Some(0)), |_, _| Ok(()))?;
        match r {
            Ok((meta, version, total_len)) => Ok((meta, total_len, version)),
            Err(current) => Err(Error::VersionMismatch { current }),
        }
    }

    /// Streams bytes `offset .. offset + len` of an object (to its end when `len` is `None`;
    /// clamped to its length) into `out`, one piece in memory at a time, pipelined like
    /// [`Client::read_object_to`]. Returns the metadata, version, the whole object's length
    /// (`total_len`) and the bytes written (`len`). An `offset` equal to the length writes
    /// nothing (an empty object read from 0 is not an error); an `offset` past the end is
    /// [`Error::InvalidArgument`] (HTTP 416 for a gateway, which also answers 416 for
    /// `offset == total_len > 0`). An object that changes mid-range is
    /// [`Error::VersionMismatch`] (the bytes written cannot be taken back).
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("photos")?;
    /// let mut part = Vec::new();
    /// let info = c.read_object_range_to(t, b"big.tar", 4 << 20, Some(1 << 20), &mut part)?;
    /// println!("{} of {} bytes", info.len, info.total_len);
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn read_object_range_to(
        &self,
        table: TableId,
        key: &[u8],
        offset: u64,
        len: Option<u64>,
        out: &mut impl Write,
    ) -> Result<ObjectInfo> {
        check_key(key)?;
        self.read_range_to(table, key, (offset, len), out)
    }
}
