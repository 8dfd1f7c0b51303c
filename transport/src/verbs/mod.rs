//! InfiniBand / RoCE verbs transport (`infrc:host=H,port=P[,dev=D,gid=K,ib_port=N,pkey_index=N]`),
//! built with the `verbs` feature.
//!
//! Reliable Connected queue pairs, one per client session. Each server dispatch thread owns an
//! endpoint whose shared receive queue of MTU-sized buffers serves all its queue pairs; messages
//! (32-byte header + payload up to `MAX_PAYLOAD`) travel as MTU-sized SENDs and are reassembled
//! per queue pair (`reassembly.rs`). Small fragments go inline; others are copied into
//! registered send slots. Queue pairs are exchanged over a TCP side channel on the locator's
//! port, which then stays open as the liveness signal of the connection (`handshake.rs`).
//! Receiver-not-ready NAKs with infinite retry are the flow control: a receiver that runs out of
//! buffers makes senders wait a few microseconds, never drops.
//!
//! Files: `sys.rs` (all FFI, safe types; libibverbs is loaded at run time through
//! `rdma-mummy-sys`, so a binary with this feature starts without rdma-core and reports a clean
//! error), `handshake.rs` (device/GID selection, queue-pair exchange — the control path),
//! `datapath.rs` (buffers, slots, fragment posting), `reassembly.rs` (framing, sans-I/O),
//! `client.rs`, `server.rs`.

mod addr;
mod client;
mod datapath;
mod handshake;
mod reassembly;
mod server;
mod sys;

pub(crate) use client::connect;
pub(crate) use server::serve;
pub use sys::VerbsError;

/// Names of the RDMA devices present, or why there are none usable (libibverbs missing, no
/// device). For tests and diagnostics.
pub fn devices() -> Result<Vec<String>, VerbsError> {
    let names = sys::device_names()?;
    if names.is_empty() {
        return Err(VerbsError::Other("no RDMA device present (load a driver, or for Soft-RoCE: `rdma link add rxe0 type rxe netdev <iface>`)".into()));
    }
    Ok(names)
}

/// Fragments this process has sent zero-copy (straight from a registered payload of at least
/// `limits::VERBS_ZERO_COPY_MIN` bytes) since it started.
pub fn zero_copy_sends() -> u64 {
    datapath::ZERO_COPY_SENDS.load(std::sync::atomic::Ordering::Relaxed)
}
