//! Streaming writes: [`PutStream`], an object written piece by piece with a bounded buffer
//! (what [`crate::ObjectStore::put_stream`] returns).
//!
//! * S3 ([`crate::S3Store`]): an object that ends within one part ([`PART_SIZE`]) is one plain
//!   PUT (its ETag the MD5 of its bytes, as before); a longer one becomes a multipart upload
//!   through `object_store`'s `MultipartUpload` — parts of [`PART_SIZE`] cut from
//!   [`PutStream::write`], or exactly the parts given to [`PutStream::write_part`] (so the
//!   store's `MD5-of-MD5s-N` ETag is the one of those boundaries), at most one part uploading
//!   while the next fills: at most two parts in memory.
//! * Swift ([`crate::SwiftStore`]): one PUT with a chunked body fed through a channel of two
//!   pieces; an aborted upload breaks the body off, and Swift stores nothing.
//! * Others: [`crate::Buffered`] collects the pieces and makes one `put` (the memory store).
//!
//! Every implementation is atomic like `put`: until [`PutStream::finish`] returns, readers see
//! the previous object (or none); dropping or aborting a stream stores nothing.

use bytes::Bytes;

use crate::error::Result;
use crate::types::{Payload, PutResult};

/// Bytes of one part of a streamed S3 upload (S3 needs ≥ 5 MiB for all but the last).
pub const PART_SIZE: usize = 8 << 20;
/// S3's least part size (all but the last part of a multipart upload).
pub const MIN_PART_SIZE: usize = 5 << 20;

/// An object being written; see the module documentation.
pub trait PutStream: Send {
    /// Append `data`; blocks while the store is behind (the buffer is bounded).
    fn write(&mut self, data: Bytes) -> Result<()>;

    /// Append `part` as one part of its own where the store has parts (S3): what `write`
    /// left pending is sent first as a part (it must be at least [`MIN_PART_SIZE`] unless
    /// nothing follows). Elsewhere the same as writing its pieces.
    fn write_part(&mut self, part: Payload) -> Result<()> {
        for c in part.into_chunks() {
            self.write(c)?;
        }
        Ok(())
    }

    /// Whether [`PutStream::write_part`] keeps part boundaries in the store (S3): a caller
    /// that does not need them can then write piece by piece instead of holding a part.
    fn keeps_parts(&self) -> bool {
        false
    }

    /// Commit the object; returns the store's answer (its ETag).
    fn finish(self: Box<Self>) -> Result<PutResult>;

    /// Give up: nothing is stored (best effort clean-up of what the store holds).
    fn abort(self: Box<Self>);
}
