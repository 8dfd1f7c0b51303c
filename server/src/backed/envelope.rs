//! The value of every object of a backed table, as the engine stores it: a small header with
//! the store's metadata, then the object's bytes (or, for a large object, a manifest naming its
//! chunks). The log keeps it like any value, so the metadata is replicated, recovered and
//! migrated with the bytes, and a hit is one engine read.
//!
//! Layout (little-endian):
//!
//! ```text
//! magic 0xFC | format 1 | kind u8 | flags u8 (0) | stamp_ms u64 | ObjectMeta | payload
//! ```
//!
//! * `stamp_ms`: wall-clock ms since the epoch when this copy was last known to match the
//!   store (a fill or a successful revalidation or upload), or when a client wrote it.
//! * `ObjectMeta`: `faascache_protocol::msg::faas::ObjectMeta`'s encoding (ETag, content type,
//!   last-modified, user metadata). An ETag is empty until the store has this version.
//! * payload by kind: [`Kind::Whole`] the bytes; [`Kind::Manifest`] total length `u64`, chunk
//!   length `u32`, chunk count `u32`, object id `u64` (chunk `i` is at
//!   `chunk_key(key, object_id, i)`); [`Kind::Chunk`] the bytes of one chunk (metadata empty);
//!   [`Kind::Deleted`] nothing: a removal not yet applied to the store (write-back), read as
//!   "no such object".
//!
//! Decoding checks every length against the bytes present and never panics: the value may be
//! anything a client wrote before the table had a backing, so a value without the magic byte
//! is read as a whole object with no metadata ([`decode`] says so with `legacy`).

use faascache_protocol::msg::faas::ObjectMeta;
use faascache_protocol::wire::codec::{Reader, Writer};

const MAGIC: u8 = 0xFC;
const FORMAT: u8 = 1;

/// Bytes of the fixed header (before the metadata).
pub const FIXED: usize = 12;

/// What an envelope holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole object.
    Whole,
    /// A large object's manifest.
    Manifest(Manifest),
    /// One chunk of a large object.
    Chunk,
    /// A removal not yet applied to the store.
    Deleted,
}

/// Where a large object's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manifest {
    /// Length of the whole object.
    pub total_len: u64,
    /// Length of every chunk but the last.
    pub chunk_len: u32,
    /// Number of chunks.
    pub chunks: u32,
    /// Names this version's chunks (`chunk_key(key, object_id, i)`).
    pub object_id: u64,
}

impl Manifest {
    const LEN: usize = 8 + 4 + 4 + 8;

    /// The chunk holding byte `offset`, and the offset within it.
    pub fn locate(&self, offset: u64) -> Option<(u32, u32)> {
        if offset >= self.total_len || self.chunk_len == 0 {
            return None;
        }
        let i = offset / self.chunk_len as u64;
        Some((i as u32, (offset % self.chunk_len as u64) as u32))
    }
}

/// A decoded envelope (borrowing the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// What it holds.
    pub kind: Kind,
    /// When this copy last matched the store (or was written), ms since the epoch.
    pub stamp_ms: u64,
    /// The store's metadata.
    pub meta: ObjectMeta,
    /// The bytes (whole object or chunk; empty for a manifest or a removal).
    pub data: &'a [u8],
    /// The value had no envelope (written before the table had a backing).
    pub legacy: bool,
}

/// A value that is not a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Shorter than its fields say.
    #[error("backed-table value is truncated ({0})")]
    Truncated(&'static str),
    /// An unknown format or kind.
    #[error("backed-table value has unknown {field} {value}: written by a newer FaaSCache?")]
    Unknown {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u8,
    },
}

fn kind_byte(k: &Kind) -> u8 {
    match k {
        Kind::Whole => 0,
        Kind::Manifest(_) => 1,
        Kind::Chunk => 2,
        Kind::Deleted => 3,
    }
}

/// Whether a value starting with `prefix` (at least its first 3 bytes) is a manifest's
/// envelope: a look at the kind byte, so a caller need not copy a whole value to find out.
pub fn is_manifest(prefix: &[u8]) -> bool {
    // 1: `kind_byte` of a manifest.
    prefix.len() >= 3 && prefix[0] == MAGIC && prefix[2] == 1
}

/// Appends the envelope of `data` (or of a manifest / removal: `data` empty) to `out`.
pub fn encode(out: &mut Vec<u8>, kind: Kind, stamp_ms: u64, meta: &ObjectMeta, data: &[u8]) {
    let mut w = Writer::new(out);
    w.u8(MAGIC)
        .u8(FORMAT)
        .u8(kind_byte(&kind))
        .u8(0)
        .u64(stamp_ms);
    meta.write(&mut w);
    if let Kind::Manifest(m) = kind {
        w.u64(m.total_len)
            .u32(m.chunk_len)
            .u32(m.chunks)
            .u64(m.object_id);
    }
    out.extend_from_slice(data);
}

/// The envelope of `data` as a new vector.
pub fn to_vec(kind: Kind, stamp_ms: u64, meta: &ObjectMeta, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(header_len(meta) + data.len());
    encode(&mut v, kind, stamp_ms, meta, data);
    v
}

/// Bytes of the header (fixed part + metadata) for `meta`, manifest excluded.
pub fn header_len(meta: &ObjectMeta) -> usize {
    FIXED
        + 2
        + meta.etag.len()
        + 2
        + meta.content_type.len()
        + 8
        + 4
        + meta
            .user
            .iter()
            .map(|(k, v)| 4 + k.len() + v.len())
            .sum::<usize>()
}

/// Decodes a stored value.
pub fn decode(value: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    if value.first() != Some(&MAGIC) {
        return Ok(Envelope {
            kind: Kind::Whole,
            stamp_ms: 0,
            meta: ObjectMeta::default(),
            data: value,
            legacy: true,
        });
    }
    let mut r = Reader::new(value);
    let fixed = |_| EnvelopeError::Truncated("header");
    let (_, format, kind, _flags) = (
        r.u8().map_err(fixed)?,
        r.u8().map_err(fixed)?,
        r.u8().map_err(fixed)?,
        r.u8().map_err(fixed)?,
    );
    if format != FORMAT {
        return Err(EnvelopeError::Unknown {
            field: "format",
            value: format,
        });
    }
    let stamp_ms = r.u64().map_err(fixed)?;
    let meta = ObjectMeta::read(&mut r).map_err(|_| EnvelopeError::Truncated("metadata"))?;
    let kind = match kind {
        0 => Kind::Whole,
        1 => {
            let m = |_| EnvelopeError::Truncated("manifest");
            Kind::Manifest(Manifest {
                total_len: r.u64().map_err(m)?,
                chunk_len: r.u32().map_err(m)?,
                chunks: r.u32().map_err(m)?,
                object_id: r.u64().map_err(m)?,
            })
        }
        2 => Kind::Chunk,
        3 => Kind::Deleted,
        value => {
            return Err(EnvelopeError::Unknown {
                field: "kind",
                value,
            })
        }
    };
    let data = r.rest();
    Ok(Envelope {
        kind,
        stamp_ms,
        meta,
        data,
        legacy: false,
    })
}

/// Where a whole object's bytes start in a stored value, without decoding (or allocating) the
/// metadata: `Some(offset)` for a `Whole` envelope (or a legacy value: 0), `None` for any other
/// kind or a value that does not decode (the caller takes the general path). The hit path of
/// `Read` uses it to answer straight from the engine's buffer.
pub fn whole_data_offset(value: &[u8]) -> Option<usize> {
    if value.first() != Some(&MAGIC) {
        return Some(0);
    }
    if value.len() < FIXED || value[1] != FORMAT || value[2] != 0 {
        return None;
    }
    let mut at = FIXED;
    let len16 = |at: usize| -> Option<usize> {
        Some(u16::from_le_bytes(value.get(at..at + 2)?.try_into().ok()?) as usize)
    };
    // ETag, content type: u16 length + bytes; last-modified u64; user metadata count u32 and
    // pairs of u16-length strings.
    for _ in 0..2 {
        at += 2 + len16(at)?;
    }
    at += 8;
    let n = u32::from_le_bytes(value.get(at..at + 4)?.try_into().ok()?) as usize;
    at += 4;
    if n > faascache_protocol::msg::faas::MAX_USER_META {
        return None;
    }
    for _ in 0..2 * n {
        at += 2 + len16(at)?;
    }
    (at <= value.len()).then_some(at)
}

/// Bytes of a manifest's payload.
pub const MANIFEST_LEN: usize = Manifest::LEN;

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ObjectMeta {
        ObjectMeta {
            etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
            content_type: "image/jpeg".into(),
            last_modified_ms: 1_765_000_000_000,
            user: vec![("owner".into(), "fn-resize".into())],
        }
    }

    #[test]
    fn the_kind_byte_alone_tells_a_manifest() {
        let mf = Manifest {
            total_len: 3 << 20,
            chunk_len: 1 << 20,
            chunks: 3,
            object_id: 9,
        };
        let v = to_vec(Kind::Manifest(mf), 1, &meta(), &[]);
        assert!(is_manifest(&v[..FIXED]) && is_manifest(&v));
        assert!(!is_manifest(
            &to_vec(Kind::Whole, 1, &meta(), b"x")[..FIXED]
        ));
        assert!(!is_manifest(&to_vec(Kind::Chunk, 1, &meta(), b"x")));
        assert!(
            !is_manifest(b"\x01\x01\x01 a legacy value"),
            "no magic byte"
        );
        assert!(!is_manifest(&v[..2]), "too short to tell");
    }

    #[test]
    fn round_trips_every_kind() {
        let m = Manifest {
            total_len: 64 << 20,
            chunk_len: 1 << 20,
            chunks: 64,
            object_id: 9,
        };
        for (kind, data) in [
            (Kind::Whole, &b"hello"[..]),
            (Kind::Whole, &b""[..]),
            (Kind::Manifest(m), &b""[..]),
            (Kind::Chunk, &b"chunk bytes"[..]),
            (Kind::Deleted, &b""[..]),
        ] {
            let v = to_vec(kind, 42, &meta(), data);
            let extra = if matches!(kind, Kind::Manifest(_)) {
                MANIFEST_LEN
            } else {
                0
            };
            assert_eq!(v.len(), header_len(&meta()) + extra + data.len());
            let e = decode(&v).unwrap();
            assert_eq!(
                (e.kind, e.stamp_ms, &e.meta, e.data, e.legacy),
                (kind, 42, &meta(), data, false)
            );
        }
    }

    #[test]
    fn hostile_values_are_errors_not_panics() {
        let v = to_vec(Kind::Whole, 1, &meta(), b"x");
        for cut in 1..header_len(&meta()) {
            assert!(decode(&v[..cut]).is_err(), "prefix of {cut} decoded");
        }
        let mut bad = v.clone();
        bad[1] = 7;
        assert!(matches!(
            decode(&bad),
            Err(EnvelopeError::Unknown {
                field: "format",
                ..
            })
        ));
        let mut bad = v;
        bad[2] = 9;
        assert!(decode(&bad).unwrap_err().to_string().contains("kind 9"));
        // A value without the magic byte is a legacy whole object.
        let e = decode(b"plain").unwrap();
        assert!(e.legacy && e.data == b"plain" && e.kind == Kind::Whole);
    }

    #[test]
    fn whole_data_offset_agrees_with_decode() {
        for (kind, data) in [(Kind::Whole, &b"hello"[..]), (Kind::Whole, &b""[..])] {
            let v = to_vec(kind, 3, &meta(), data);
            let at = whole_data_offset(&v).unwrap();
            assert_eq!(&v[at..], decode(&v).unwrap().data);
        }
        let m = Manifest {
            total_len: 5,
            chunk_len: 4,
            chunks: 2,
            object_id: 1,
        };
        assert_eq!(
            whole_data_offset(&to_vec(Kind::Manifest(m), 0, &meta(), b"")),
            None
        );
        assert_eq!(
            whole_data_offset(&to_vec(Kind::Deleted, 0, &meta(), b"")),
            None
        );
        assert_eq!(whole_data_offset(b"legacy"), Some(0));
        let v = to_vec(Kind::Whole, 1, &meta(), b"x");
        for cut in 1..header_len(&meta()) {
            assert_eq!(whole_data_offset(&v[..cut]), None, "{cut}");
        }
    }

    #[test]
    fn manifest_locates_offsets() {
        let m = Manifest {
            total_len: 2_500_000,
            chunk_len: 1 << 20,
            chunks: 3,
            object_id: 1,
        };
        assert_eq!(m.locate(0), Some((0, 0)));
        assert_eq!(m.locate((1 << 20) + 5), Some((1, 5)));
        assert_eq!(m.locate(2_499_999), Some((2, 2_499_999 - (2 << 20))));
        assert_eq!(m.locate(2_500_000), None);
    }
}
