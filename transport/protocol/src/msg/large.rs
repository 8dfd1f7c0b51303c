//! Large objects of backed tables written in chunks (`docs/faas.md`, "Large objects"):
//! `WriteObjectChunk` stores one chunk, invisible to readers; `CommitObject` makes a write's
//! chunks the object at once. The rest of the FaaS layer's messages are in [`super::faas`].

use super::common::{ExactlyOnce, RejectRules};
use super::faas::ObjectMeta;
use super::master::VersionResponse;
use super::{decode_all, read_key, Message, MsgError, Request};
use crate::wire::codec::Writer;
use crate::wire::Opcode;

/// Bytes of object data a [`WriteObjectChunkRequest`] carries at most: one value less room
/// for the chunk's envelope (clients use this chunk length; see `docs/faas.md`, "Large
/// objects").
pub const MAX_CHUNK_DATA: u32 = (super::MAX_VALUE_LEN - 4096) as u32;
/// Most chunks of one object written through the native clients (with [`MAX_CHUNK_DATA`]
/// chunks: about 4 GiB).
pub const MAX_CHUNKS: u32 = 4096;

/// `WriteObjectChunk` (master): table `u64`, key (`u16` len), object id `u64`, index `u32`,
/// data (`u32` len, ≤ [`MAX_CHUNK_DATA`]). Reply [`VersionResponse`] (the chunk's version).
/// Chunk `index` of a large object being written to a backed table, stored dirty at
/// `chunk_key(key, object_id, index)` (same tablet as `key`) and invisible to readers until a
/// [`CommitObjectRequest`] names it. Idempotent (a retry writes the same bytes again), so not
/// tracked for exactly-once. Chunks no commit names are removed after the master's
/// `--orphan-chunk-age`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteObjectChunkRequest<'a> {
    /// Table id.
    pub table: u64,
    /// The object's key.
    pub key: &'a [u8],
    /// Names this write (the client picks it at random; a commit names it).
    pub object_id: u64,
    /// Which chunk (0-based, < [`MAX_CHUNKS`]).
    pub index: u32,
    /// Its bytes (every chunk but the last has the commit's `chunk_len` bytes).
    pub data: &'a [u8],
}

impl<'a> Message<'a> for WriteObjectChunkRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.table)
            .bytes_u16(self.key)
            .u64(self.object_id)
            .u32(self.index)
            .bytes_u32(self.data);
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let req = WriteObjectChunkRequest {
                table: r.u64()?,
                key: read_key(r)?,
                object_id: r.u64()?,
                index: r.u32()?,
                data: r.bytes_u32_max(MAX_CHUNK_DATA as usize)?,
            };
            if req.index >= MAX_CHUNKS {
                return Err(MsgError::BadField {
                    field: "index (at most MAX_CHUNKS - 1 = 4095)",
                    value: req.index as u64,
                });
            }
            Ok(req)
        })
    }
}
impl<'a> Request<'a> for WriteObjectChunkRequest<'a> {
    const OPCODE: Opcode = Opcode::WriteObjectChunk;
    type Response<'b> = VersionResponse;
}

/// `CommitObject` (master): table `u64`, exactly-once header (40), reject rules (9), key
/// (`u16` len), metadata ([`ObjectMeta`]), total length `u64`, chunk length `u32`, chunk count
/// `u32`, object id `u64`. Reply [`VersionResponse`]. Makes the chunks written with
/// `object_id` the object at `key`, at once for readers, as `WriteObject` would (write-through
/// wait, exactly-once and reject rules; the write-back limit was applied to the chunks);
/// the chunks of the version it replaces are removed. Every chunk must be present with its
/// length (`chunk_len`, the last one the rest), else `REQUEST_FORMAT_ERROR` naming the first
/// one missing and nothing changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitObjectRequest<'a> {
    /// Table id.
    pub table: u64,
    /// Exactly-once header.
    pub rpc: ExactlyOnce,
    /// Conditions.
    pub rules: RejectRules,
    /// Key.
    pub key: &'a [u8],
    /// The object's metadata.
    pub meta: ObjectMeta,
    /// Length of the whole object.
    pub total_len: u64,
    /// Length of every chunk but the last.
    pub chunk_len: u32,
    /// Number of chunks (`total_len / chunk_len` rounded up).
    pub chunks: u32,
    /// The chunks' object id.
    pub object_id: u64,
}

impl CommitObjectRequest<'_> {
    /// Length of chunk `i` (`None` past the last).
    pub fn chunk_size(&self, i: u32) -> Option<u32> {
        let start = i as u64 * self.chunk_len as u64;
        (i < self.chunks && start < self.total_len)
            .then(|| (self.total_len - start).min(self.chunk_len as u64) as u32)
    }
}

impl<'a> Message<'a> for CommitObjectRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.table);
        self.rpc.write(&mut w);
        self.rules.write(&mut w);
        w.bytes_u16(self.key);
        self.meta.write(&mut w);
        w.u64(self.total_len)
            .u32(self.chunk_len)
            .u32(self.chunks)
            .u64(self.object_id);
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let req = CommitObjectRequest {
                table: r.u64()?,
                rpc: ExactlyOnce::read(r)?,
                rules: RejectRules::read(r)?,
                key: read_key(r)?,
                meta: ObjectMeta::read(r)?,
                total_len: r.u64()?,
                chunk_len: r.u32()?,
                chunks: r.u32()?,
                object_id: r.u64()?,
            };
            let bad = |field: &'static str, value: u64| Err(MsgError::BadField { field, value });
            if req.chunk_len == 0 || req.chunk_len > MAX_CHUNK_DATA {
                return bad("chunk_len (1 to MAX_CHUNK_DATA)", req.chunk_len as u64);
            }
            if req.chunks == 0 || req.chunks > MAX_CHUNKS {
                return bad("chunks (1 to MAX_CHUNKS = 4096)", req.chunks as u64);
            }
            if req.total_len.div_ceil(req.chunk_len as u64) != req.chunks as u64 {
                return bad(
                    "chunks (total_len / chunk_len rounded up)",
                    req.chunks as u64,
                );
            }
            Ok(req)
        })
    }
}
impl<'a> Request<'a> for CommitObjectRequest<'a> {
    const OPCODE: Opcode = Opcode::CommitObject;
    type Response<'b> = VersionResponse;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::testutil::*;

    #[test]
    fn chunked_writes_round_trip_and_check_their_shape() {
        round_trip!(WriteObjectChunkRequest {
            table: 2,
            key: b"big.bin",
            object_id: 0xDEAD_BEEF,
            index: 3,
            data: b"abc",
        });
        let commit = CommitObjectRequest {
            table: 2,
            rpc: ExactlyOnce::UNTRACKED,
            rules: RejectRules::NONE,
            key: b"big.bin",
            meta: ObjectMeta::default(),
            total_len: 10,
            chunk_len: 4,
            chunks: 3,
            object_id: 7,
        };
        round_trip!(commit.clone());
        assert_eq!(
            (0..4).map(|i| commit.chunk_size(i)).collect::<Vec<_>>(),
            [Some(4), Some(4), Some(2), None]
        );
        assert_eq!(WriteObjectChunkRequest::OPCODE.as_u16(), 0x0506);
        assert_eq!(CommitObjectRequest::OPCODE.as_u16(), 0x0507);
        for (chunk_len, chunks, total_len) in [
            (0, 1, 0),
            (MAX_CHUNK_DATA + 1, 1, 1),
            (4, 2, 10),
            (4, 4, 10),
            (1, MAX_CHUNKS + 1, MAX_CHUNKS as u64 + 1),
        ] {
            let b = CommitObjectRequest {
                chunk_len,
                chunks,
                total_len,
                ..commit.clone()
            }
            .to_vec();
            assert!(
                CommitObjectRequest::decode(&b).is_err(),
                "{chunk_len} {chunks} {total_len}"
            );
        }
        let b = WriteObjectChunkRequest {
            table: 2,
            key: b"k",
            object_id: 1,
            index: MAX_CHUNKS,
            data: b"",
        }
        .to_vec();
        assert!(WriteObjectChunkRequest::decode(&b).is_err());
        let mut b = Vec::new();
        Writer::new(&mut b)
            .u64(2)
            .bytes_u16(b"k")
            .u64(1)
            .u32(0)
            .u32(MAX_CHUNK_DATA + 1);
        b.resize(b.len() + MAX_CHUNK_DATA as usize + 1, 0);
        assert!(
            WriteObjectChunkRequest::decode(&b).is_err(),
            "too much data"
        );
    }
}
