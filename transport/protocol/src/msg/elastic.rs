//! Elastic memory (issue 18): `ResizeMemory` (`0x0408`), which changes a server's log memory
//! budget at run time (the node agent (`faascache agent`) and `faascache resize` send it);
//! `DrainServer` (`0x0212`, to the coordinator: move every tablet off a server and remove it)
//! and `RetireServer` (`0x0409`, coordinator → the drained server: stop and exit).

use super::common::ServerId;
use super::{decode_all, read_bool, Empty, Message, MsgError, Request};
use crate::wire::codec::Writer;
use crate::wire::Opcode;

/// `ResizeMemory`: the new log memory budget, bytes `u64`.
///
/// Growing takes effect at once (up to the memory reserved at start, `--max-memory`).
/// Shrinking cleans the log and evicts clean objects of backed tables until the data fits;
/// dirty objects (not yet in the store, and every object of an ephemeral table) and objects
/// of plain tables are never dropped. When they do not fit the reply is `RESIZE_REFUSED`
/// with the bytes still needed, and the budget is unchanged. One resize runs at a time per
/// server; another arriving meanwhile waits behind it (a few) or is answered `RETRY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResizeMemoryRequest {
    /// The budget asked for.
    pub bytes: u64,
}

impl Message<'_> for ResizeMemoryRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.bytes);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| Ok(ResizeMemoryRequest { bytes: r.u64()? }))
    }
}
impl Request<'_> for ResizeMemoryRequest {
    const OPCODE: Opcode = Opcode::ResizeMemory;
    type Response<'b> = ResizeMemoryResponse;
}

/// `ResizeMemory` reply: previous budget, new budget, the most it may grow to, live log
/// bytes after, objects evicted and bytes relocated by the shrink, and how long it took
/// (µs), each `u64`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResizeMemoryResponse {
    /// The budget before.
    pub previous_bytes: u64,
    /// The budget now (the request rounded down to whole seglets).
    pub budget_bytes: u64,
    /// The largest budget this server may take (the address space reserved at start).
    pub max_bytes: u64,
    /// Live log bytes after the resize.
    pub live_bytes: u64,
    /// Clean objects of backed tables evicted to make room.
    pub evicted_objects: u64,
    /// Live bytes the cleaner moved to make room.
    pub relocated_bytes: u64,
    /// Time the server spent on it, µs.
    pub elapsed_us: u64,
}

impl Message<'_> for ResizeMemoryResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out)
            .u64(self.previous_bytes)
            .u64(self.budget_bytes)
            .u64(self.max_bytes)
            .u64(self.live_bytes)
            .u64(self.evicted_objects)
            .u64(self.relocated_bytes)
            .u64(self.elapsed_us);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(ResizeMemoryResponse {
                previous_bytes: r.u64()?,
                budget_bytes: r.u64()?,
                max_bytes: r.u64()?,
                live_bytes: r.u64()?,
                evicted_objects: r.u64()?,
                relocated_bytes: r.u64()?,
                elapsed_us: r.u64()?,
            })
        })
    }
}

/// `DrainServer`: the server to drain, `u64`.
///
/// The coordinator stops placing tablets (new tables, recoveries) on the server, migrates
/// each of its tablets to the up master with the most memory budget per tablet (dirty objects
/// of backed tables move with their tablet and are written back by the new owner), then tells
/// the server to retire (`RetireServer`) and removes it from the server list: its backup
/// replicas are re-replicated by their masters. One drain runs at a time; the reply comes
/// when the server is removed, or with the error that stopped the drain (the tablets moved so
/// far stay moved; the server keeps the rest and is placed on again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainServerRequest {
    /// The server.
    pub server: ServerId,
}

impl Message<'_> for DrainServerRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.server.0);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(DrainServerRequest {
                server: ServerId(r.u64()?),
            })
        })
    }
}
impl Request<'_> for DrainServerRequest {
    const OPCODE: Opcode = Opcode::DrainServer;
    type Response<'b> = DrainServerResponse;
}

/// `DrainServer` reply: tablets moved `u32`, whether the server answered `RetireServer`
/// (`u8` 0/1: if not, it was removed anyway and, if still running, re-enlists as a new empty
/// server), and how long the drain took (µs, `u64`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainServerResponse {
    /// Tablets migrated off the server.
    pub tablets_moved: u32,
    /// The server acknowledged it is retiring.
    pub retired: bool,
    /// Time the coordinator spent, µs.
    pub elapsed_us: u64,
}

impl Message<'_> for DrainServerResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out)
            .u32(self.tablets_moved)
            .u8(self.retired as u8)
            .u64(self.elapsed_us);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(DrainServerResponse {
                tablets_moved: r.u32()?,
                retired: read_bool(r, "retired")?,
                elapsed_us: r.u64()?,
            })
        })
    }
}

/// `RetireServer` (coordinator → a drained server): the id the coordinator knows it by, `u64`.
/// The server stops heartbeating (so it does not re-enlist once removed), keeps serving its
/// backup replicas for a grace period while masters re-replicate them, then exits with
/// status 0. Refused (`SERVER_DOESNT_EXIST`) if the id is not this server's, or if it still
/// owns a tablet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetireServerRequest {
    /// The server's id.
    pub server: ServerId,
}

impl Message<'_> for RetireServerRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.server.0);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(RetireServerRequest {
                server: ServerId(r.u64()?),
            })
        })
    }
}
impl Request<'_> for RetireServerRequest {
    const OPCODE: Opcode = Opcode::RetireServer;
    type Response<'b> = Empty;
}

#[cfg(test)]
mod tests {
    use super::super::testutil::round_trip;
    use super::*;

    #[test]
    fn resize_messages_round_trip() {
        round_trip!(ResizeMemoryRequest { bytes: 256 << 20 });
        round_trip!(ResizeMemoryResponse {
            previous_bytes: 1 << 30,
            budget_bytes: 256 << 20,
            max_bytes: 4 << 30,
            live_bytes: 100 << 20,
            evicted_objects: 12,
            relocated_bytes: 3 << 20,
            elapsed_us: 1234,
        });
        round_trip!(DrainServerRequest {
            server: ServerId::new(3, 2)
        });
        round_trip!(DrainServerResponse {
            tablets_moved: 7,
            retired: true,
            elapsed_us: 99,
        });
        round_trip!(RetireServerRequest {
            server: ServerId::new(3, 2)
        });
        assert!(DrainServerResponse::decode(&[0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
