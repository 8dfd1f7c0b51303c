//! One piece of an object (`ReadObject` at an offset), for callers that stream an object
//! themselves and need its metadata before its bytes (the S3/Swift gateway answers a GET's
//! headers from the first piece, then streams the rest).

use faascache_protocol::msg::faas::{ObjectMeta, ReadObjectRequest, MAX_READ_OBJECT_PIECE};
use faascache_protocol::msg::{self, Message, Request};
use faascache_transport::CallError;

use super::{decode_piece, Identity};
use crate::client::{check_key, Client};
use crate::error::{Result, TableId};
use crate::options::RejectRules;

/// Bytes of an object from some offset, with what identifies the object they belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPiece {
    /// The object's store metadata (ETag, content type, last modified, user metadata).
    pub meta: ObjectMeta,
    /// The object's whole length.
    pub total_len: u64,
    /// The object's version in the cache (0: served while the object is still being filled
    /// from the store; see [`ObjectPiece::continues`]).
    pub version: u64,
    /// The bytes from the requested offset (at most the requested length).
    pub data: Vec<u8>,
}

impl ObjectPiece {
    /// Whether this piece belongs to the same object (version) as `first`: the same version
    /// and length, or — when either was served during a fill — the same length and ETag.
    pub fn continues(&self, first: &ObjectPiece) -> bool {
        let mut id = Identity {
            version: first.version,
            total: first.total_len,
            etag: first.meta.etag.clone(),
        };
        id.accept(&super::Piece {
            version: self.version,
            total: self.total_len,
            meta: self.meta.clone(),
            data: 0..0,
        })
    }
}

impl Client {
    /// Reads at most `max_len` bytes (capped at 1 MiB) of an object of a backed table from
    /// `offset`, with its metadata, length and version; a miss reads through. An `offset` at
    /// or past the end returns no bytes (and the length, so the caller can tell).
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("photos")?;
    /// let p = c.read_object_piece(t, b"cat.jpg", 0, 64 << 10)?;
    /// println!("{} of {} bytes, etag {}", p.data.len(), p.total_len, p.meta.etag);
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn read_object_piece(
        &self,
        table: TableId,
        key: &[u8],
        offset: u64,
        max_len: u32,
    ) -> Result<ObjectPiece> {
        check_key(key)?;
        let req = ReadObjectRequest {
            table,
            rules: RejectRules::NONE,
            key,
            offset,
            max_len: max_len.min(MAX_READ_OBJECT_PIECE),
        };
        let payload = req.to_vec();
        let mut backoff = self.backoff();
        self.on_master(table, msg::key_hash(key), &mut backoff, |s, left| {
            let r = s
                .call(ReadObjectRequest::OPCODE, &payload, left)
                .map_err(CallError::Transport)
                .and_then(|(status, reply)| {
                    let p = decode_piece(status, &reply)?;
                    let piece = ObjectPiece {
                        data: reply[p.data.clone()].to_vec(),
                        meta: p.meta,
                        total_len: p.total,
                        version: p.version,
                    };
                    s.recycle(reply);
                    Ok(piece)
                });
            self.classify(table, ReadObjectRequest::OPCODE, r)
        })
    }
}
