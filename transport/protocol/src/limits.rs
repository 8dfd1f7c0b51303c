//! The limits that are part of the wire contract. They are also stated in `docs/protocol.md`;
//! changing one is a protocol change. The runtime's tunables live in the transport crate.

/// Largest RPC payload (request or response body, header excluded): 8 MiB + 64 KiB.
///
/// Why: the largest thing an RPC must carry is one whole 8 MiB log segment (backup replication and
/// recovery) plus up to 64 KiB of per-RPC metadata (segment certificate, ids, key). Anything larger
/// must be split by the caller. Every decoder checks a length against this *before* it allocates.
pub const MAX_PAYLOAD: usize = 8 * 1024 * 1024 + 64 * 1024;

/// Largest whole RPC message (header + payload) — what a datagram receiver may reassemble.
pub const MAX_MESSAGE: usize = HEADER_LEN + MAX_PAYLOAD;

/// Size of the RPC header in bytes (its layout: `wire::Header`). Here, beside the other sizes, so
/// the header's codec depends on the limits and not the other way round.
pub const HEADER_LEN: usize = 32;
