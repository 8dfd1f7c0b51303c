//! Elastic memory (issue 18): `ResizeMemory` (`0x0408`), which changes a server's log memory
//! budget at run time. The node agent (`faascache agent`) and `faascache resize` send it.

use super::{decode_all, Message, MsgError, Request};
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
    }
}
