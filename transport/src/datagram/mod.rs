//! The datagram layer: a batch-shaped [`Driver`] interface (kernel UDP now; DPDK and verbs UD
//! later) under a reliable message protocol ([`proto::Endpoint`], a sans-I/O state machine after
//! RAMCloud's BasicTransport / Homa: fragmentation to the MTU, receiver-driven grants, resend on
//! gaps, BUSY, abort on silence).
//!
//! Layers: `packet` (wire codec of one datagram) → `proto` (state machine: packets and time in,
//! packets and events out) → drivers (`udp`, `sim` for seeded tests). The UDP *transport* that
//! plugs this into `connect` / `serve` lives in `crate::udp`.

pub mod packet;
mod peers;
pub mod proto;
mod ranges;
pub mod sim;
mod sys;
pub mod udp;

use std::fmt::Debug;
use std::hash::Hash;
use std::io;
use std::time::Duration;

/// A received datagram. `data` is a buffer the driver took from its posted pool; give it back
/// with [`Driver::post_buffers`] when done so the driver can receive into it again.
#[derive(Debug)]
pub struct RxPacket<A> {
    /// Sender.
    pub from: A,
    /// Datagram bytes (exactly the received length).
    pub data: Vec<u8>,
}

/// A datagram to send.
#[derive(Debug)]
pub struct TxPacket<A> {
    /// Destination.
    pub to: A,
    /// Datagram bytes (at most [`Driver::mtu`]).
    pub data: Vec<u8>,
}

/// A batch-shaped datagram driver (after eRPC's `Transport`: `tx_burst`, `rx_burst`,
/// `post_recvs`). Unreliable: packets may be lost, duplicated or reordered. Callers batch.
pub trait Driver {
    /// A peer address (socket address, MAC + queue, QP number...).
    type Addr: Copy + Eq + Hash + Debug + Send + 'static;

    /// Largest datagram, in bytes, that `tx_burst` accepts and `rx_burst` can deliver.
    fn mtu(&self) -> usize;

    /// This driver's own address, as peers should send to it.
    fn local_addr(&self) -> Self::Addr;

    /// Send packets from the front of `batch`, removing those handed to the device. Returns how
    /// many were sent; the rest stay in `batch` (device queue full) for a later call.
    fn tx_burst(&mut self, batch: &mut Vec<TxPacket<Self::Addr>>) -> io::Result<usize>;

    /// Receive up to `max` packets into `out`. Returns how many; 0 if none is waiting.
    fn rx_burst(&mut self, out: &mut Vec<RxPacket<Self::Addr>>, max: usize) -> io::Result<usize>;

    /// Return receive buffers (from [`RxPacket::data`]) to the driver's pool.
    fn post_buffers(&mut self, bufs: &mut Vec<Vec<u8>>);

    /// Block until a packet may be waiting or `timeout` passes (`None`: forever). Polling-only
    /// devices (DPDK) return at once; that is the default.
    fn wait_rx(&mut self, _timeout: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}
