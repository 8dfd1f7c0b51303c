//! The 32-byte RPC header that starts every request and response, on every transport.
//!
//! Layout (all little-endian; see `docs/protocol.md`):
//!
//! | offset | size | field        |
//! |--------|------|--------------|
//! | 0      | 4    | magic `"FaaS"` |
//! | 4      | 2    | version      |
//! | 6      | 2    | opcode       |
//! | 8      | 8    | request id   |
//! | 16     | 4    | payload length |
//! | 20     | 2    | flags        |
//! | 22     | 2    | status (0 in requests) |
//! | 24     | 4    | reserved, must be 0 |
//! | 28     | 4    | CRC32C of bytes 0..28 |

use crate::limits::MAX_PAYLOAD;

pub use crate::limits::HEADER_LEN;
/// First four bytes of every message: ASCII `FaaS`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"FaaS");
/// Protocol version this build speaks; a header with another version is rejected.
pub const PROTOCOL_VERSION: u16 = 1;

mod off {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    pub const OPCODE: usize = 6;
    pub const REQUEST_ID: usize = 8;
    pub const PAYLOAD_LEN: usize = 16;
    pub const FLAGS: usize = 20;
    pub const STATUS: usize = 22;
    pub const RESERVED: usize = 24;
    pub const CHECKSUM: usize = 28;
    pub const END: usize = 32;
}
const _: () = assert!(off::END == HEADER_LEN);
const _: () = assert!(off::CHECKSUM + 4 == HEADER_LEN);
// The payload length field is a u32: the limit must fit in it.
const _: () = assert!(MAX_PAYLOAD <= u32::MAX as usize);

/// Header flag bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderFlags(pub u16);

impl HeaderFlags {
    /// Set in responses, clear in requests.
    pub const RESPONSE: u16 = 1 << 0;
    /// All bits this version defines; others must be zero.
    pub const KNOWN: u16 = Self::RESPONSE;

    /// Is this a response?
    pub fn is_response(self) -> bool {
        self.0 & Self::RESPONSE != 0
    }
}

/// A decoded RPC header. `opcode` and `status` are kept raw (u16) so that an unknown opcode can
/// still be answered with `UNIMPLEMENTED_REQUEST` quoting the request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Raw opcode; see [`crate::wire::Opcode::from_u16`].
    pub opcode: u16,
    /// Chosen by the client, unique among its outstanding RPCs on one session; echoed in the reply.
    pub request_id: u64,
    /// Bytes of payload following the header.
    pub payload_len: u32,
    /// Flag bits.
    pub flags: HeaderFlags,
    /// Raw status; 0 in requests. See [`crate::wire::Status::from_u16`].
    pub status: u16,
}

/// Why a header (or a message) was rejected. The first broken rule is reported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the fixed header or the declared length.
    #[error("message too short: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes required.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The first four bytes are not `FaaS`: not a FaaSCache peer, or a desynchronised stream.
    #[error("bad magic {found:#010x} (expected {MAGIC:#010x}): peer is not speaking the FaaSCache protocol")]
    BadMagic {
        /// Magic found.
        found: u32,
    },
    /// Peer speaks another protocol version; upgrade one side.
    #[error("unsupported protocol version {found} (this build speaks {PROTOCOL_VERSION}): run the same FaaSCache version on both sides")]
    BadVersion {
        /// Version found.
        found: u16,
    },
    /// Header bytes corrupted (or the peer computed the checksum differently).
    #[error("header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadChecksum {
        /// Stored checksum.
        stored: u32,
        /// Computed checksum.
        computed: u32,
    },
    /// Declared payload larger than the protocol allows (checked before allocating).
    #[error("payload length {len} exceeds the maximum {max} bytes: split the request")]
    TooLarge {
        /// Declared length.
        len: u64,
        /// Limit.
        max: usize,
    },
    /// Reserved bytes or undefined flag bits set.
    #[error("reserved header field or flag bit set ({what}): peer uses a newer protocol")]
    Reserved {
        /// Which field.
        what: &'static str,
    },
}

#[inline]
fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
#[inline]
fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
#[inline]
fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

impl Header {
    /// A request header.
    pub fn request(opcode: u16, request_id: u64, payload_len: u32) -> Self {
        Header {
            opcode,
            request_id,
            payload_len,
            flags: HeaderFlags(0),
            status: 0,
        }
    }

    /// A response header answering `request` with `status`.
    pub fn response(opcode: u16, request_id: u64, status: u16, payload_len: u32) -> Self {
        Header {
            opcode,
            request_id,
            payload_len,
            flags: HeaderFlags(HeaderFlags::RESPONSE),
            status,
        }
    }

    /// Encode into exactly [`HEADER_LEN`] bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[off::MAGIC..off::MAGIC + 4].copy_from_slice(&MAGIC.to_le_bytes());
        b[off::VERSION..off::VERSION + 2].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        b[off::OPCODE..off::OPCODE + 2].copy_from_slice(&self.opcode.to_le_bytes());
        b[off::REQUEST_ID..off::REQUEST_ID + 8].copy_from_slice(&self.request_id.to_le_bytes());
        b[off::PAYLOAD_LEN..off::PAYLOAD_LEN + 4].copy_from_slice(&self.payload_len.to_le_bytes());
        b[off::FLAGS..off::FLAGS + 2].copy_from_slice(&self.flags.0.to_le_bytes());
        b[off::STATUS..off::STATUS + 2].copy_from_slice(&self.status.to_le_bytes());
        // RESERVED stays zero.
        let crc = crc32c::crc32c(&b[..off::CHECKSUM]);
        b[off::CHECKSUM..off::END].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decode and validate a header from the start of `buf` (which may hold more bytes).
    /// Checks, in order: length, magic, version, checksum, reserved bits, payload limit.
    pub fn decode(buf: &[u8]) -> Result<Header, DecodeError> {
        if buf.len() < HEADER_LEN {
            return Err(DecodeError::Truncated {
                need: HEADER_LEN,
                have: buf.len(),
            });
        }
        let magic = get_u32(buf, off::MAGIC);
        if magic != MAGIC {
            return Err(DecodeError::BadMagic { found: magic });
        }
        let version = get_u16(buf, off::VERSION);
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::BadVersion { found: version });
        }
        let stored = get_u32(buf, off::CHECKSUM);
        let computed = crc32c::crc32c(&buf[..off::CHECKSUM]);
        if stored != computed {
            return Err(DecodeError::BadChecksum { stored, computed });
        }
        if get_u32(buf, off::RESERVED) != 0 {
            return Err(DecodeError::Reserved {
                what: "bytes 24..28",
            });
        }
        let flags = HeaderFlags(get_u16(buf, off::FLAGS));
        if flags.0 & !HeaderFlags::KNOWN != 0 {
            return Err(DecodeError::Reserved { what: "flags" });
        }
        let payload_len = get_u32(buf, off::PAYLOAD_LEN);
        if payload_len as usize > MAX_PAYLOAD {
            return Err(DecodeError::TooLarge {
                len: payload_len.into(),
                max: MAX_PAYLOAD,
            });
        }
        Ok(Header {
            opcode: get_u16(buf, off::OPCODE),
            request_id: get_u64(buf, off::REQUEST_ID),
            payload_len,
            flags,
            status: get_u16(buf, off::STATUS),
        })
    }

    /// Decode a whole message (header + payload, nothing after it), as a datagram transport
    /// delivers it. Returns the header and the payload slice.
    pub fn decode_message(buf: &[u8]) -> Result<(Header, &[u8]), DecodeError> {
        let h = Header::decode(buf)?;
        let need = HEADER_LEN + h.payload_len as usize;
        if buf.len() < need {
            return Err(DecodeError::Truncated {
                need,
                have: buf.len(),
            });
        }
        if buf.len() > need {
            return Err(DecodeError::Reserved {
                what: "bytes after the declared payload",
            });
        }
        Ok((h, &buf[HEADER_LEN..need]))
    }

    /// Encode header + payload into one buffer (datagram transports, which send a message as one
    /// unit; stream transports write header and payload with one vectored write instead).
    pub fn encode_message(&self, payload: &[u8]) -> Vec<u8> {
        debug_assert_eq!(payload.len(), self.payload_len as usize);
        let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
        v.extend_from_slice(&self.encode());
        v.extend_from_slice(payload);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = Header::response(7, 0xdead_beef_0123_4567, 3, 1234);
        let b = h.encode();
        assert_eq!(&b[0..4], b"FaaS");
        assert_eq!(Header::decode(&b).unwrap(), h);
        let r = Header::request(2, 9, 0);
        assert_eq!(Header::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn layout_matches_docs_protocol_md() {
        let b = Header::response(0x0102, 0x1122_3344_5566_7788, 0x0A0B, 0x0C0D_0E0F).encode();
        assert_eq!(&b[0..4], b"FaaS");
        assert_eq!(&b[4..6], &[1, 0]); // version 1, little-endian
        assert_eq!(&b[6..8], &[0x02, 0x01]); // opcode
        assert_eq!(&b[8..16], &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]); // request id
        assert_eq!(&b[16..20], &[0x0F, 0x0E, 0x0D, 0x0C]); // payload length
        assert_eq!(&b[20..22], &[1, 0]); // flags: RESPONSE
        assert_eq!(&b[22..24], &[0x0B, 0x0A]); // status
        assert_eq!(&b[24..28], &[0, 0, 0, 0]); // reserved
        assert_eq!(&b[28..32], &crc32c::crc32c(&b[..28]).to_le_bytes());
    }

    #[test]
    fn rejects_in_order() {
        let h = Header::request(2, 1, 10).encode();
        assert!(matches!(
            Header::decode(&h[..31]),
            Err(DecodeError::Truncated { need: 32, have: 31 })
        ));
        let mut bad = h;
        bad[0] = b'X';
        assert!(matches!(
            Header::decode(&bad),
            Err(DecodeError::BadMagic { .. })
        ));
        let mut bad = h;
        bad[4] = 9;
        assert!(matches!(
            Header::decode(&bad),
            Err(DecodeError::BadVersion { found: 9 })
        ));
        let mut bad = h;
        bad[9] ^= 1;
        assert!(matches!(
            Header::decode(&bad),
            Err(DecodeError::BadChecksum { .. })
        ));
        let big = Header::request(2, 1, (MAX_PAYLOAD + 1) as u32).encode();
        assert!(matches!(
            Header::decode(&big),
            Err(DecodeError::TooLarge { .. })
        ));
        let ok = Header::request(2, 1, MAX_PAYLOAD as u32).encode();
        assert!(Header::decode(&ok).is_ok());
    }

    #[test]
    fn message_round_trip() {
        let h = Header::request(2, 5, 3);
        let m = h.encode_message(b"abc");
        let (h2, p) = Header::decode_message(&m).unwrap();
        assert_eq!((h2, p), (h, &b"abc"[..]));
        assert!(Header::decode_message(&m[..34]).is_err());
        let mut longer = m.clone();
        longer.push(0);
        assert!(Header::decode_message(&longer).is_err());
    }
}
