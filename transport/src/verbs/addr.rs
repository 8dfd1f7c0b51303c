//! The plain data the verbs transport passes around its queue pairs: a QP's address as exchanged
//! with the peer, the local path it sends from, and a scatter/gather piece. No FFI here.

/// What one side tells the other about its queue pair (exchanged over TCP, `handshake.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QpAddress {
    pub(crate) qpn: u32,
    pub(crate) psn: u32,
    pub(crate) lid: u16,
    pub(crate) gid: [u8; 16],
    /// `ibv_mtu` enum of the sender's port.
    pub(crate) mtu: u32,
}

/// Where a local QP sends from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalPath {
    pub(crate) port: u8,
    pub(crate) gid_index: u8,
    pub(crate) pkey_index: u16,
    /// Use a global route header (RoCE always; InfiniBand across subnets).
    pub(crate) global: bool,
}

/// One scatter/gather piece of a send: `len` bytes at `addr`, in memory registered under
/// `lkey` (see `sys::Qp::post_send`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Piece {
    pub(crate) addr: u64,
    pub(crate) len: u32,
    pub(crate) lkey: u32,
}
