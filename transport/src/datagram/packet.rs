//! Wire codec of one datagram of the reliable protocol. 40-byte header, little-endian, then
//! (DATA only) a fragment of the message. See `docs/protocol.md`, "Datagram packets".
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0 | 2 | magic `0xDA7A` |
//! | 2 | 1 | version (2) |
//! | 3 | 1 | kind |
//! | 4 | 1 | flags (bit 0: sent by the requester) |
//! | 5 | 3 | reserved, 0 |
//! | 8 | 8 | rpc id |
//! | 16 | 4 | message length (DATA) |
//! | 20 | 4 | offset (DATA: of the fragment; GRANT: granted up to; RESEND: start) |
//! | 24 | 4 | length (DATA: fragment bytes; RESEND: bytes asked for) |
//! | 28 | 4 | session: the requester's random session nonce (echoed by the server) |
//! | 32 | 8 | ack_below (requester packets: every rpc id below it is finished) |
//!
//! Version 2 added the session nonce (version 1 had 0 there and rpc ids from the wall clock);
//! the server keys its state by (source address, session), so a restarted client — a new nonce
//! — is a new peer whatever its rpc ids and its clock.

use crate::limits::MAX_MESSAGE;

/// Header length.
pub const PKT_HEADER_LEN: usize = 40;
/// Datagram magic.
pub const PKT_MAGIC: u16 = 0xDA7A;
/// Datagram protocol version.
pub const PKT_VERSION: u8 = 2;
/// `flags` bit: the packet was sent by the requester (client) of the RPC.
pub const FLAG_FROM_CLIENT: u8 = 1;

mod off {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 2;
    pub const KIND: usize = 3;
    pub const FLAGS: usize = 4;
    pub const RESERVED1: usize = 5;
    pub const RPC_ID: usize = 8;
    pub const MSG_LEN: usize = 16;
    pub const OFFSET: usize = 20;
    pub const LENGTH: usize = 24;
    pub const SESSION: usize = 28;
    pub const ACK_BELOW: usize = 32;
    pub const END: usize = 40;
}
const _: () = assert!(off::END == PKT_HEADER_LEN);
const _: () = assert!(MAX_MESSAGE <= u32::MAX as usize);

/// Packet kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A fragment of a message.
    Data = 1,
    /// Receiver → sender: you may send up to `offset`.
    Grant = 2,
    /// Receiver → sender: send `[offset, offset+length)` again. From the requester with no
    /// response yet it means "where is my response?" (answered by data, GRANT, BUSY or UNKNOWN).
    Resend = 3,
    /// Server → requester: still executing, keep waiting.
    Busy = 4,
    /// Requester → server: the whole response arrived; forget it.
    Ack = 5,
    /// Server → requester: no state for this RPC; send the request again from the start.
    Unknown = 6,
    /// Server → requester: the RPC was aborted (server shutting down).
    Abort = 7,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Data,
            2 => Kind::Grant,
            3 => Kind::Resend,
            4 => Kind::Busy,
            5 => Kind::Ack,
            6 => Kind::Unknown,
            7 => Kind::Abort,
            _ => return None,
        })
    }
}

/// A decoded packet header (plus the DATA fragment, borrowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Kind.
    pub kind: Kind,
    /// Sent by the requester?
    pub from_client: bool,
    /// RPC id.
    pub rpc_id: u64,
    /// The requester's session nonce.
    pub session: u32,
    /// Whole message length (DATA), else 0.
    pub msg_len: u32,
    /// See the table above.
    pub offset: u32,
    /// See the table above.
    pub length: u32,
    /// Requester's "all ids below are finished" watermark.
    pub ack_below: u64,
    /// DATA fragment.
    pub payload: &'a [u8],
}

/// Why a datagram was rejected (the first broken rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the header.
    #[error("datagram of {0} bytes is shorter than the 40-byte header")]
    Truncated(usize),
    /// Not ours.
    #[error("bad datagram magic {0:#06x}")]
    BadMagic(u16),
    /// Other protocol version.
    #[error("unsupported datagram protocol version {0}")]
    BadVersion(u8),
    /// Unknown kind.
    #[error("unknown datagram kind {0}")]
    BadKind(u8),
    /// Reserved bits set.
    #[error("reserved datagram field set ({0})")]
    Reserved(&'static str),
    /// A length or offset is inconsistent or beyond the limit.
    #[error("bad datagram lengths: {0}")]
    BadLength(&'static str),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

impl<'a> Packet<'a> {
    /// A control packet (no payload).
    #[allow(clippy::too_many_arguments)]
    pub fn control(
        kind: Kind,
        from_client: bool,
        session: u32,
        rpc_id: u64,
        offset: u32,
        length: u32,
        ack_below: u64,
    ) -> Packet<'static> {
        Packet {
            kind,
            from_client,
            rpc_id,
            session,
            msg_len: 0,
            offset,
            length,
            ack_below,
            payload: &[],
        }
    }

    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        PKT_HEADER_LEN + self.payload.len()
    }

    /// Encode into a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.encoded_len()];
        b[off::MAGIC..off::MAGIC + 2].copy_from_slice(&PKT_MAGIC.to_le_bytes());
        b[off::VERSION] = PKT_VERSION;
        b[off::KIND] = self.kind as u8;
        b[off::FLAGS] = if self.from_client {
            FLAG_FROM_CLIENT
        } else {
            0
        };
        b[off::RPC_ID..off::RPC_ID + 8].copy_from_slice(&self.rpc_id.to_le_bytes());
        b[off::MSG_LEN..off::MSG_LEN + 4].copy_from_slice(&self.msg_len.to_le_bytes());
        b[off::OFFSET..off::OFFSET + 4].copy_from_slice(&self.offset.to_le_bytes());
        b[off::LENGTH..off::LENGTH + 4].copy_from_slice(&self.length.to_le_bytes());
        b[off::SESSION..off::SESSION + 4].copy_from_slice(&self.session.to_le_bytes());
        b[off::ACK_BELOW..off::ACK_BELOW + 8].copy_from_slice(&self.ack_below.to_le_bytes());
        b[PKT_HEADER_LEN..].copy_from_slice(self.payload);
        b
    }

    /// Decode and validate one datagram.
    pub fn decode(b: &'a [u8]) -> Result<Packet<'a>, PacketError> {
        if b.len() < PKT_HEADER_LEN {
            return Err(PacketError::Truncated(b.len()));
        }
        let magic = u16::from_le_bytes([b[0], b[1]]);
        if magic != PKT_MAGIC {
            return Err(PacketError::BadMagic(magic));
        }
        if b[off::VERSION] != PKT_VERSION {
            return Err(PacketError::BadVersion(b[off::VERSION]));
        }
        let kind = Kind::from_u8(b[off::KIND]).ok_or(PacketError::BadKind(b[off::KIND]))?;
        let flags = b[off::FLAGS];
        if flags & !FLAG_FROM_CLIENT != 0 {
            return Err(PacketError::Reserved("flags"));
        }
        if b[off::RESERVED1..off::RPC_ID].iter().any(|&x| x != 0) {
            return Err(PacketError::Reserved("reserved bytes"));
        }
        let p = Packet {
            kind,
            from_client: flags & FLAG_FROM_CLIENT != 0,
            rpc_id: u64_at(b, off::RPC_ID),
            session: u32_at(b, off::SESSION),
            msg_len: u32_at(b, off::MSG_LEN),
            offset: u32_at(b, off::OFFSET),
            length: u32_at(b, off::LENGTH),
            ack_below: u64_at(b, off::ACK_BELOW),
            payload: &b[PKT_HEADER_LEN..],
        };
        if kind == Kind::Data {
            if p.msg_len == 0 || p.msg_len as usize > MAX_MESSAGE {
                return Err(PacketError::BadLength(
                    "message length 0 or above the maximum",
                ));
            }
            if p.length as usize != p.payload.len() || p.length == 0 {
                return Err(PacketError::BadLength(
                    "fragment length differs from the bytes present",
                ));
            }
            if u64::from(p.offset) + u64::from(p.length) > u64::from(p.msg_len) {
                return Err(PacketError::BadLength("fragment runs past the message end"));
            }
        } else {
            if !p.payload.is_empty() {
                return Err(PacketError::BadLength("control packet with payload"));
            }
            if p.msg_len != 0 {
                return Err(PacketError::BadLength(
                    "message length set in a control packet",
                ));
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip() {
        let d = Packet {
            kind: Kind::Data,
            from_client: true,
            rpc_id: 9,
            session: 0xDEAD_BEEF,
            msg_len: 10,
            offset: 4,
            length: 3,
            ack_below: 2,
            payload: b"abc",
        };
        let e = d.encode();
        assert_eq!(Packet::decode(&e).unwrap(), d);
        let c = Packet::control(Kind::Grant, false, 77, 1, 100, 0, 0);
        assert_eq!(Packet::decode(&c.encode()).unwrap(), c);
        let mut bad = e.clone();
        bad[16] = 5; // msg_len 5 < offset + length
        assert!(Packet::decode(&bad).is_err());
        assert!(Packet::decode(&e[..39]).is_err());
    }
}
