//! Every tunable of the transport runtime, in one place, each with its reason.
//!
//! Change a value here and nowhere else. The limits that are part of the wire contract (the
//! maximum payload and message) live in the protocol crate (`faascache_protocol::limits`) and
//! are re-exported here.

use std::time::Duration;

pub use faascache_protocol::limits::{MAX_MESSAGE, MAX_PAYLOAD};

/// Largest size a stream connection's read buffer grows to. Frames that fit are parsed in place
/// (no copy); larger payloads get a buffer of their own once their length has been checked.
/// 64 KiB holds hundreds of small pipelined RPCs and is one typical socket read.
pub const STREAM_READ_BUFFER: usize = 64 * 1024;

/// Size a stream connection's read buffer starts at (allocated on its first read); it doubles,
/// up to [`STREAM_READ_BUFFER`], only when bytes fill it. An idle or silent connection costs
/// this much, not 64 KiB.
pub const STREAM_READ_BUFFER_INITIAL: usize = 4 * 1024;

/// A large message's own buffer grows by at least this much as its bytes arrive (doubling), so a
/// header that announces 8 MiB and stalls pins what arrived, not 8 MiB.
pub const STREAM_BIG_GROW_MIN: usize = 256 * 1024;

// --- stream server connection limits (defaults of `ConnLimits`; flags on the daemons) --------

/// Default cap on open connections per stream server (all dispatch threads together). Beyond
/// it a new connection is accepted and closed at once (with a rate-limited log line), so the
/// listener's backlog does not fill with connections nobody serves.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Default cap on bytes of requests buffered by one stream server (all connections together):
/// read buffers beyond their first 4 KiB and the buffers of messages larger than
/// [`STREAM_READ_BUFFER`], reserved whole when their header arrives. A connection that needs
/// more waits (its bytes stay in the kernel) until others finish or are closed. 256 MiB holds 32
/// maximum-size messages at once.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 256 * 1024 * 1024;

/// Default time a stream connection may stay silent after it was accepted (no complete request
/// yet, nothing in progress) before the server closes it. Connections that have sent requests
/// are kept while idle (sessions between servers are long-lived and idle legitimately); the
/// connection cap bounds them.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default time a stream connection may hold a partial request (part of a header or body)
/// without sending another byte before the server closes it. A live client sends a whole
/// message in far less; this frees the buffer a stalled one pins.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest gap between two log lines about refused connections (each says how many were
/// refused since the last one).
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Server-side cap on bytes of replies queued on one stream connection before the dispatcher stops
/// reading new requests from it (backpressure against a client that does not read its replies).
pub const STREAM_MAX_QUEUED_REPLY_BYTES: usize = 2 * MAX_MESSAGE;

/// Default time an `adaptive` poller spins before it blocks. A wake-up from a blocked poll costs
/// ~70 µs on the development VM; spinning 200 µs covers back-to-back RPCs of one client while
/// an idle server blocks (< 1 % of a core, measured by `examples/idle_cpu.rs`).
pub const DEFAULT_ADAPTIVE_SPIN: Duration = Duration::from_micros(200);

/// Longest a blocked dispatcher sleeps before it re-checks its shutdown flag even if no wake-up
/// arrives. Shutdown normally wakes it through its waker; this is only a safety net.
pub const DISPATCH_MAX_BLOCK: Duration = Duration::from_millis(250);

/// Longest a client waiter blocks in one `poll(2)` before re-checking its slot; bounds the delay
/// with which a waiter notices that another thread delivered its reply while it was not polling.
pub const CLIENT_MAX_BLOCK: Duration = Duration::from_millis(10);

/// Default connect timeout for stream transports.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Kernel socket buffer size requested for UDP sockets: room for a grant window of several
/// messages so that a burst is not dropped by the kernel before the dispatcher reads it.
pub const UDP_SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// Default datagram size for the kernel UDP driver: 1500-byte Ethernet MTU minus IPv4 (20) and
/// UDP (8) headers, so a packet is never IP-fragmented on a real network.
pub const UDP_DEFAULT_MTU: usize = 1472;

/// Largest datagram the UDP driver accepts as a configured MTU (the UDP/IPv4 maximum).
pub const UDP_MAX_MTU: usize = 65_507;

/// Packets per `rx_burst` / `tx_burst` of the kernel UDP driver (one `recvmmsg` batch).
pub const UDP_BURST: usize = 32;

/// Reliable datagram protocol: bytes a sender may send before the first grant ("unscheduled"
/// bytes) and the window a receiver keeps granted ahead of what it has received. About one
/// bandwidth-delay product of a 10 Gb/s LAN (~10 µs × 10 Gb/s = 12.5 KB) times a safety factor;
/// small enough that a few concurrent messages do not overflow a socket buffer.
pub const DGRAM_GRANT_WINDOW: u32 = 64 * 1024;

/// Reliable datagram protocol: silence after which the waiting side asks for a resend.
pub const DGRAM_RESEND_INTERVAL: Duration = Duration::from_millis(10);

/// Reliable datagram protocol: silence after which an RPC is aborted (peer presumed dead).
pub const DGRAM_ABORT_TIMEOUT: Duration = Duration::from_millis(1500);

/// Reliable datagram protocol: cap on bytes of partially received messages one endpoint buffers;
/// data for new messages beyond it is dropped (the sender resends later). Bounds memory a flood
/// of message starts can pin.
pub const DGRAM_MAX_RX_BYTES: usize = 64 * 1024 * 1024;

/// Reliable datagram protocol: most client sessions (source address + session nonce) one server
/// endpoint (one per dispatch thread) keeps state for. Full: the least recently heard session
/// with no RPC in progress is evicted; if every one has an RPC in progress, new sessions are
/// refused (their packets dropped; they resend). A session's state is ~200 bytes plus its RPCs.
pub const DGRAM_MAX_PEERS: usize = 4096;

/// Reliable datagram protocol: most RPCs (in progress or finished tombstones) a server keeps for
/// one client session; a new RPC beyond it is dropped and its client resends. Above any
/// pipeline depth the client uses.
pub const DGRAM_MAX_RPCS_PER_PEER: usize = 4096;

/// Reliable datagram protocol: a client session with no RPC in progress is forgotten after
/// this long without a packet; as long as finished RPCs' tombstones are kept
/// (10 × [`DGRAM_ABORT_TIMEOUT`]), so no duplicate it could still send finds it forgotten.
pub const DGRAM_PEER_IDLE: Duration = Duration::from_secs(15);

// --- verbs transport (`--features verbs`) ---------------------------------------------------------

/// Receive buffers (each one port MTU, ≤ 4 KiB) in the shared receive queue of one server
/// dispatch thread. All its queue pairs draw from it; when it runs dry, senders get
/// receiver-not-ready NAKs and retry after 10 µs, so this bounds memory, not correctness.
/// 1024 × 4 KiB = 4 MiB registered per dispatch thread: half a maximum-size message in flight.
pub const VERBS_SERVER_RECV_BUFFERS: usize = 1024;

/// Receive buffers of one client session (its own shared receive queue): 512 × 4 KiB = 2 MiB.
pub const VERBS_CLIENT_RECV_BUFFERS: usize = 512;

/// Registered send slots (one fragment each) of a server dispatch thread; a fragment that is
/// not sent inline is copied into a slot and the slot is reused at its send completion.
pub const VERBS_SERVER_SEND_SLOTS: usize = 512;

/// Registered send slots of a client session.
pub const VERBS_CLIENT_SEND_SLOTS: usize = 256;

/// Send queue depth of each queue pair (sends posted and not yet completed).
pub const VERBS_SQ_DEPTH: usize = 128;

/// Send completion queue of a server dispatch thread: the most sends in flight over all its
/// queue pairs together (one completion each).
pub const VERBS_SERVER_SEND_CQ: usize = 4096;

/// Inline data asked of each queue pair: a fragment this small is copied by the provider at post
/// time (no send slot, no DMA read of the buffer): the header plus a small key or value.
pub const VERBS_MAX_INLINE: usize = 128;

/// Payloads at least this large are sent zero-copy: registered where they are (`ibv_reg_mr`,
/// which pins their pages) instead of copied fragment by fragment into send slots. Below it a
/// copy is cheaper than registering and deregistering. A guess to tune on real hardware; if
/// registration fails (memlock limit) the payload is copied instead.
pub const VERBS_ZERO_COPY_MIN: usize = 256 * 1024;

/// Time allowed for the queue-pair exchange over the TCP side channel.
pub const VERBS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
