//! The wire protocol: the RPC header, the table of RPC types and the status codes.
//!
//! Every byte is described in `docs/protocol.md`. Codecs are explicit little-endian with named
//! offsets; lengths are checked against [`crate::limits`] before anything is allocated.

pub mod codec;
mod header;
mod opcode;
mod status;

pub use header::{DecodeError, Header, HeaderFlags, HEADER_LEN, MAGIC, PROTOCOL_VERSION};
pub use opcode::{Opcode, OpcodeRange, OPCODE_RANGES};
pub use status::Status;
