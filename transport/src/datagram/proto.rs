//! The reliable message protocol over an unreliable datagram [`Driver`](super::Driver), as a
//! sans-I/O state machine (after quinn-proto): packets come in through [`Endpoint::handle`],
//! the application's messages through [`Endpoint::send_request`] / [`Endpoint::send_response`],
//! time through `now` arguments and [`Endpoint::handle_timeout`]; packets go out through
//! [`Endpoint::poll_transmit`] and deliveries through [`Endpoint::poll_event`]. No I/O, no clock:
//! the same code runs over kernel UDP and over the seeded simulator in tests.
//!
//! Mechanism (RAMCloud BasicTransport / Homa, simplified):
//! * a message is cut into DATA fragments of at most `mtu - 40` bytes;
//! * the sender sends the first `grant_window` bytes unscheduled; the receiver GRANTs more as
//!   bytes arrive (received + window), so it controls how much is in flight towards it;
//! * the *waiting* side drives recovery: after `resend_interval` of silence the receiver of an
//!   incomplete message asks for the first gap (RESEND) and repeats its grant; a client with no
//!   response yet sends RESEND(0) — the server answers with data, a GRANT/RESEND of its own for a
//!   request it lacks, BUSY while the handler runs, or UNKNOWN if it never heard of the RPC (the
//!   client then restarts the request);
//! * after `abort_timeout` of silence an RPC fails ([`FailReason::Timeout`]);
//! * exactly once: a server delivers a request once (state leaves `Receiving` for good), keeps the
//!   finished RPC as a tombstone until the client's `ack_below` watermark (in every client packet:
//!   every id below it is finished at the client) passes it, and ignores packets below the
//!   watermark. Client RPC ids must increase per (client endpoint, server);
//! * sessions: every endpoint draws a random 32-bit session nonce; its requests carry it and the
//!   server's packets echo it. A server keys its state by (source address, session), so a
//!   restarted client (a new nonce) never meets the watermark of its predecessor on the same
//!   address — rpc ids start at 1, no clock involved — and a client ignores packets of another
//!   session;
//! * bounded server state: per-peer state ([`super::peers`]) is created only by a new RPC's DATA,
//!   holds at most `max_rpcs_per_peer` RPCs, expires `peer_idle` after the peer's last RPC
//!   ended, and the table holds at most `max_peers` (full: the least recently heard idle peer is
//!   evicted; a peer with an RPC in progress never is — with every peer busy, new ones are
//!   refused and their packets dropped).
//!
//! Invariants: a message buffer is allocated only after its length passed the packet decoder's
//! `MAX_MESSAGE` check and the endpoint's `max_rx_bytes` budget; `received <= len`; the
//! received-range set never overlaps.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::packet::{Kind, Packet, PKT_HEADER_LEN};
use super::peers::{Admit, PeerTable};
use super::ranges::Ranges;
use crate::limits;

/// Protocol parameters (defaults from [`crate::limits`]).
#[derive(Debug, Clone)]
pub struct ProtoConfig {
    /// Largest datagram (header included).
    pub mtu: usize,
    /// Unscheduled bytes and grant lead.
    pub grant_window: u32,
    /// Silence before asking for a resend.
    pub resend_interval: Duration,
    /// Silence before aborting an RPC.
    pub abort_timeout: Duration,
    /// Budget for partially received messages.
    pub max_rx_bytes: usize,
    /// Most client sessions a server endpoint keeps state for.
    pub max_peers: usize,
    /// Most RPCs (in progress or finished tombstones) a server keeps per client session.
    pub max_rpcs_per_peer: usize,
    /// A client session with no RPC in progress is forgotten after this long without a packet.
    pub peer_idle: Duration,
}

impl Default for ProtoConfig {
    fn default() -> Self {
        ProtoConfig {
            mtu: limits::UDP_DEFAULT_MTU,
            grant_window: limits::DGRAM_GRANT_WINDOW,
            resend_interval: limits::DGRAM_RESEND_INTERVAL,
            abort_timeout: limits::DGRAM_ABORT_TIMEOUT,
            max_rx_bytes: limits::DGRAM_MAX_RX_BYTES,
            max_peers: limits::DGRAM_MAX_PEERS,
            max_rpcs_per_peer: limits::DGRAM_MAX_RPCS_PER_PEER,
            peer_idle: limits::DGRAM_PEER_IDLE,
        }
    }
}

/// Why an RPC failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// The peer was silent for `abort_timeout`.
    Timeout,
    /// The server aborted it (shutting down).
    Aborted,
}

/// Something for the application.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<A> {
    /// A whole request arrived (server role). Answer with [`Endpoint::send_response`].
    Request {
        /// Client.
        peer: A,
        /// The client's session nonce (pass it back to [`Endpoint::send_response`]).
        session: u32,
        /// RPC id.
        id: u64,
        /// The message.
        msg: Vec<u8>,
    },
    /// A whole response arrived (client role).
    Response {
        /// Server.
        peer: A,
        /// RPC id.
        id: u64,
        /// The message.
        msg: Vec<u8>,
    },
    /// A client RPC failed.
    Failed {
        /// Server.
        peer: A,
        /// RPC id.
        id: u64,
        /// Why.
        reason: FailReason,
    },
}

/// Counters, for tests and diagnostics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams that failed to decode.
    pub bad_packets: u64,
    /// DATA packets sent (first transmissions and resends).
    pub data_sent: u64,
    /// DATA packets sent again on request.
    pub data_resent: u64,
    /// Data dropped for lack of receive budget.
    pub rx_budget_drops: u64,
    /// New client sessions refused because every known one had an RPC in progress.
    pub peers_refused: u64,
    /// Idle client sessions evicted to make room for new ones.
    pub peers_evicted: u64,
    /// Idle client sessions forgotten after `peer_idle`.
    pub peers_expired: u64,
    /// New RPCs dropped because their session held `max_rpcs_per_peer`.
    pub rpc_cap_drops: u64,
}

#[derive(Debug)]
struct InMsg {
    buf: Vec<u8>,
    ranges: Ranges,
    received: u32,
    granted: u32,
}

impl InMsg {
    fn len(&self) -> u32 {
        self.buf.len() as u32
    }
    fn complete(&self) -> bool {
        self.received == self.len()
    }
}

#[derive(Debug)]
struct OutMsg {
    data: Vec<u8>,
    sent: u32,
    granted: u32,
}

#[derive(Debug)]
struct ClientRpc {
    req: OutMsg,
    resp: Option<InMsg>,
    last_heard: Instant,
    last_nudge: Instant,
}

#[derive(Debug)]
enum ServerState {
    Receiving(InMsg),
    Executing,
    Responding(OutMsg),
    Done,
}

#[derive(Debug)]
struct ServerRpc {
    state: ServerState,
    last_heard: Instant,
    last_nudge: Instant,
}

#[derive(Debug)]
struct ClientPeer {
    active: BTreeSet<u64>,
    next: u64,
    last_used: Instant,
}

/// A client session as the server side knows it: source address and session nonce.
type PeerKey<A> = (A, u32);

/// A fresh random session nonce (never 0): the std hasher's per-process random keys, the clock
/// and a counter, so two endpoints of one process differ too.
fn random_session() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let x = h.finish();
    ((x >> 32) as u32 ^ x as u32).max(1)
}

/// One endpoint of the protocol; it can be client and server at once.
#[derive(Debug)]
pub struct Endpoint<A> {
    cfg: ProtoConfig,
    frag: u32,
    client: HashMap<(A, u64), ClientRpc>,
    client_peers: HashMap<A, ClientPeer>,
    server: HashMap<(PeerKey<A>, u64), ServerRpc>,
    peers: PeerTable<PeerKey<A>>,
    /// This endpoint's session nonce (client role).
    session: u32,
    rx_bytes: usize,
    transmit: VecDeque<(A, Vec<u8>)>,
    events: VecDeque<Event<A>>,
    stats: Stats,
    /// Hold ACKs of completed responses until the next packet to the server (see
    /// [`Endpoint::set_lazy_acks`]).
    lazy_acks: bool,
    held_acks: Vec<(A, u64, Vec<u8>)>,
}

impl<A: Copy + Eq + Hash + std::fmt::Debug> Endpoint<A> {
    /// A new endpoint. Panics if `cfg.mtu` leaves no room for data (a configuration bug).
    pub fn new(cfg: ProtoConfig) -> Self {
        assert!(
            cfg.mtu > PKT_HEADER_LEN + 8,
            "mtu {} too small for the datagram header",
            cfg.mtu
        );
        assert!(cfg.grant_window > 0);
        let frag = (cfg.mtu - PKT_HEADER_LEN) as u32;
        Endpoint {
            frag,
            client: HashMap::new(),
            client_peers: HashMap::new(),
            server: HashMap::new(),
            peers: PeerTable::new(cfg.max_peers),
            session: random_session(),
            cfg,
            rx_bytes: 0,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            lazy_acks: false,
            held_acks: Vec::new(),
        }
    }

    /// Client side: hold the ACK of a completed response instead of sending it at once. The next
    /// request to that server drops it if its `ack_below` watermark covers the RPC (the server
    /// frees everything below the watermark) and otherwise carries it in the same `sendmmsg`
    /// burst; a timer run or [`Endpoint::release_acks`] (before the client blocks) sends the rest.
    /// A ping-pong client then sends one datagram per RPC. A held ACK only frees server state
    /// early; the server drops an unacknowledged response after the abort timeout anyway.
    pub fn set_lazy_acks(&mut self, on: bool) {
        self.lazy_acks = on;
        if !on {
            self.release_acks();
        }
    }

    /// Queue every held ACK for transmission.
    pub fn release_acks(&mut self) {
        self.transmit
            .extend(self.held_acks.drain(..).map(|(a, _, p)| (a, p)));
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Client RPCs in flight.
    pub fn client_rpcs(&self) -> usize {
        self.client.len()
    }

    /// Bytes held in partially received messages (bounded by `max_rx_bytes`).
    pub fn rx_buffered(&self) -> usize {
        self.rx_bytes
    }

    /// Server RPCs held (including tombstones).
    pub fn server_rpcs(&self) -> usize {
        self.server.len()
    }

    /// Client sessions the server side keeps state for (at most `max_peers`).
    pub fn server_peers(&self) -> usize {
        self.peers.len()
    }

    /// Servers the client side keeps state for.
    pub fn client_peers(&self) -> usize {
        self.client_peers.len()
    }

    /// This endpoint's session nonce, carried by its requests.
    pub fn session(&self) -> u32 {
        self.session
    }

    /// Use `session` instead of the random nonce (tests that need a fixed one).
    pub fn with_session(mut self, session: u32) -> Self {
        self.session = session;
        self
    }

    /// Start a client RPC. `id` must be unique and increasing per server `peer`.
    pub fn send_request(&mut self, now: Instant, peer: A, id: u64, msg: Vec<u8>) {
        debug_assert!(!msg.is_empty() && msg.len() <= limits::MAX_MESSAGE);
        let cp = self.client_peers.entry(peer).or_insert(ClientPeer {
            active: BTreeSet::new(),
            next: 0,
            last_used: now,
        });
        cp.last_used = now;
        debug_assert!(
            id >= cp.next,
            "client rpc ids must increase per server (got {id} after {})",
            cp.next
        );
        cp.active.insert(id);
        cp.next = cp.next.max(id + 1);
        // Held ACKs below this request's `ack_below` watermark are redundant (the server frees
        // everything below it on receipt): drop them; send the others along with the request.
        if !self.held_acks.is_empty() {
            let wm = self.ack_below(peer);
            self.held_acks.retain(|(a, i, _)| *a != peer || *i >= wm);
            self.release_acks();
        }
        let granted = (msg.len() as u32).min(self.cfg.grant_window);
        let rpc = ClientRpc {
            req: OutMsg {
                data: msg,
                sent: 0,
                granted,
            },
            resp: None,
            last_heard: now,
            last_nudge: now,
        };
        self.client.insert((peer, id), rpc);
        self.pump_client(peer, id);
    }

    /// Give up on a client RPC (no event follows).
    pub fn cancel(&mut self, peer: A, id: u64) {
        self.finish_client(peer, id);
    }

    /// Answer a request delivered by [`Event::Request`]. Ignored if the RPC is gone (aborted).
    pub fn send_response(&mut self, now: Instant, peer: A, session: u32, id: u64, msg: Vec<u8>) {
        debug_assert!(!msg.is_empty() && msg.len() <= limits::MAX_MESSAGE);
        let window = self.cfg.grant_window;
        let Some(rpc) = self.server.get_mut(&((peer, session), id)) else {
            return;
        };
        if !matches!(rpc.state, ServerState::Executing) {
            return;
        }
        let granted = (msg.len() as u32).min(window);
        rpc.state = ServerState::Responding(OutMsg {
            data: msg,
            sent: 0,
            granted,
        });
        // The response phase starts now: a long-running handler must not make it look silent.
        rpc.last_heard = now;
        self.pump_server((peer, session), id);
    }

    /// Abort every server RPC not yet finished, telling the clients (server shutdown).
    pub fn abort_all(&mut self) {
        let keys: Vec<(PeerKey<A>, u64)> = self
            .server
            .iter()
            .filter(|(_, r)| !matches!(r.state, ServerState::Done))
            .map(|(k, _)| *k)
            .collect();
        let now = Instant::now();
        for ((peer, sess), id) in keys {
            self.control(peer, sess, Kind::Abort, false, id, 0, 0);
            self.drop_server_rpc(((peer, sess), id), now);
        }
    }

    /// Forget a server RPC: its receive budget, and its place in its peer's index.
    fn drop_server_rpc(&mut self, key: (PeerKey<A>, u64), now: Instant) {
        let Some(rpc) = self.server.remove(&key) else {
            return;
        };
        match rpc.state {
            ServerState::Done => self.peers.forget(key.0, key.1),
            ServerState::Receiving(m) => {
                self.rx_bytes -= m.buf.len();
                self.peers.ended(key.0, key.1, true, now);
            }
            _ => self.peers.ended(key.0, key.1, true, now),
        }
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(A, Vec<u8>)> {
        self.transmit.pop_front()
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<Event<A>> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] should next be called (`None`: nothing pending).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let c = self
            .client
            .values()
            .map(|r| r.last_heard.max(r.last_nudge) + self.cfg.resend_interval);
        let s = self.server.values().filter_map(|r| match r.state {
            ServerState::Receiving(_) => {
                Some(r.last_heard.max(r.last_nudge) + self.cfg.resend_interval)
            }
            // The handler owns an executing RPC; no timer runs for it.
            ServerState::Executing => None,
            ServerState::Responding(_) => Some(r.last_heard + self.cfg.abort_timeout),
            ServerState::Done => Some(r.last_heard + self.cfg.abort_timeout * 10),
        });
        // Idle peers expire (server side: exactly when the oldest is due; client side: servers
        // with no RPC in flight).
        let idle = self.cfg.peer_idle;
        let expiry = self.peers.next_expiry(idle);
        let client_expiry = self
            .client_peers
            .values()
            .filter(|cp| cp.active.is_empty())
            .map(|cp| cp.last_used + idle);
        c.chain(s).chain(expiry).chain(client_expiry).min()
    }

    /// A control packet to `peer`; `session` is the requester's (ours when `from_client`).
    #[allow(clippy::too_many_arguments)]
    fn control(
        &mut self,
        peer: A,
        session: u32,
        kind: Kind,
        from_client: bool,
        id: u64,
        offset: u32,
        length: u32,
    ) {
        let ack = if from_client { self.ack_below(peer) } else { 0 };
        let p = Packet::control(kind, from_client, session, id, offset, length, ack);
        self.transmit.push_back((peer, p.encode()));
    }

    fn ack_below(&self, peer: A) -> u64 {
        self.client_peers
            .get(&peer)
            .map_or(0, |cp| cp.active.first().copied().unwrap_or(cp.next))
    }

    #[allow(clippy::too_many_arguments)]
    fn data(
        &mut self,
        peer: A,
        session: u32,
        from_client: bool,
        id: u64,
        msg: &[u8],
        s: u32,
        e: u32,
    ) {
        let ack = if from_client { self.ack_below(peer) } else { 0 };
        let mut at = s;
        while at < e {
            let end = (at + self.frag).min(e);
            let p = Packet {
                kind: Kind::Data,
                from_client,
                rpc_id: id,
                session,
                msg_len: msg.len() as u32,
                offset: at,
                length: end - at,
                ack_below: ack,
                payload: &msg[at as usize..end as usize],
            };
            self.transmit.push_back((peer, p.encode()));
            self.stats.data_sent += 1;
            at = end;
        }
    }

    fn pump_client(&mut self, peer: A, id: u64) {
        let Some(rpc) = self.client.get_mut(&(peer, id)) else {
            return;
        };
        let (s, e) = (rpc.req.sent, rpc.req.granted.min(rpc.req.data.len() as u32));
        if s >= e {
            return;
        }
        rpc.req.sent = e;
        let msg = std::mem::take(&mut rpc.req.data);
        self.data(peer, self.session, true, id, &msg, s, e);
        self.client.get_mut(&(peer, id)).expect("present").req.data = msg;
    }

    fn pump_server(&mut self, pk: PeerKey<A>, id: u64) {
        let Some(rpc) = self.server.get_mut(&(pk, id)) else {
            return;
        };
        let ServerState::Responding(out) = &mut rpc.state else {
            return;
        };
        let (s, e) = (out.sent, out.granted.min(out.data.len() as u32));
        if s >= e {
            return;
        }
        out.sent = e;
        let msg = std::mem::take(&mut out.data);
        self.data(pk.0, pk.1, false, id, &msg, s, e);
        if let Some(ServerRpc {
            state: ServerState::Responding(out),
            ..
        }) = self.server.get_mut(&(pk, id))
        {
            out.data = msg;
        }
    }

    fn finish_client(&mut self, peer: A, id: u64) {
        if let Some(rpc) = self.client.remove(&(peer, id)) {
            if let Some(m) = &rpc.resp {
                self.rx_bytes -= m.buf.len();
            }
        }
        if let Some(cp) = self.client_peers.get_mut(&peer) {
            cp.active.remove(&id);
        }
    }

    /// Allocate an inbound message buffer if the budget allows (length already checked by the
    /// packet decoder against MAX_MESSAGE).
    fn new_in_msg(&mut self, len: u32) -> Option<InMsg> {
        if self.rx_bytes + len as usize > self.cfg.max_rx_bytes {
            self.stats.rx_budget_drops += 1;
            return None;
        }
        self.rx_bytes += len as usize;
        Some(InMsg {
            buf: vec![0u8; len as usize],
            ranges: Ranges::default(),
            received: 0,
            granted: len.min(self.cfg.grant_window),
        })
    }

    /// Store a fragment; returns Some(new grant) if a GRANT should be sent.
    fn store(window: u32, m: &mut InMsg, p: &Packet<'_>) -> Option<u32> {
        if p.msg_len != m.len() {
            return None; // inconsistent with the first fragment: ignore
        }
        let (s, e) = (p.offset, p.offset + p.length);
        let new = m.ranges.insert(s, e);
        if new > 0 {
            m.buf[s as usize..e as usize].copy_from_slice(p.payload);
            m.received += new;
        }
        let want = (m.received.saturating_add(window)).min(m.len());
        if want > m.granted && (want - m.granted >= window / 4 || want == m.len()) {
            m.granted = want;
            return Some(want);
        }
        None
    }

    /// Feed one received datagram.
    pub fn handle(&mut self, now: Instant, from: A, bytes: &[u8]) {
        let p = match Packet::decode(bytes) {
            Ok(p) => p,
            Err(e) => {
                self.stats.bad_packets += 1;
                tracing::trace!(?from, %e, "dropping bad datagram");
                return;
            }
        };
        if p.from_client {
            self.handle_as_server(now, from, &p);
        } else {
            self.handle_as_client(now, from, &p);
        }
    }

    /// Server side, before the RPC's state machine: the peer's state (created only by a new
    /// RPC's DATA, within the table's bounds), its watermark, the RPC's state. `false`: drop
    /// the packet (answered already, or no state to answer from).
    fn server_admit(&mut self, now: Instant, pk: PeerKey<A>, p: &Packet<'_>) -> bool {
        let (peer, sess) = pk;
        if self.peers.get(&pk).is_none() {
            match p.kind {
                Kind::Data => {}
                // A client waiting on a session we do not know: it restarts the request.
                Kind::Resend => {
                    self.control(peer, sess, Kind::Unknown, false, p.rpc_id, 0, 0);
                    return false;
                }
                _ => return false,
            }
            match self.peers.admit(pk, now) {
                Admit::Present => {}
                Admit::Evicted(old, tombstones) => {
                    self.stats.peers_evicted += 1;
                    for id in tombstones {
                        self.server.remove(&(old, id));
                    }
                }
                Admit::Refused => {
                    self.stats.peers_refused += 1;
                    return false;
                }
            }
        }
        self.peers.touch(pk, now);
        let st = self.peers.get_mut(&pk).expect("admitted");
        if p.ack_below > st.watermark {
            st.watermark = p.ack_below;
            // Only this peer's RPCs below the new watermark: a range of its index.
            let below: Vec<u64> = st.rpcs.range(..p.ack_below).copied().collect();
            for id in below {
                self.drop_server_rpc((pk, id), now);
            }
        }
        let st = self.peers.get(&pk).expect("admitted");
        if p.rpc_id < st.watermark {
            return false; // finished at the client: a stale duplicate
        }
        let key = (pk, p.rpc_id);
        if self.server.contains_key(&key) {
            return true;
        }
        match p.kind {
            Kind::Data => {
                if st.rpcs.len() >= self.cfg.max_rpcs_per_peer {
                    self.stats.rpc_cap_drops += 1;
                    return false; // the client resends once earlier RPCs are done
                }
                let Some(m) = self.new_in_msg(p.msg_len) else {
                    return false;
                };
                self.server.insert(
                    key,
                    ServerRpc {
                        state: ServerState::Receiving(m),
                        last_heard: now,
                        last_nudge: now,
                    },
                );
                self.peers.started(pk, p.rpc_id);
                true
            }
            Kind::Resend => {
                self.control(peer, sess, Kind::Unknown, false, p.rpc_id, 0, 0);
                false
            }
            _ => false,
        }
    }

    fn handle_as_server(&mut self, now: Instant, peer: A, p: &Packet<'_>) {
        let pk = (peer, p.session);
        let sess = p.session;
        if !self.server_admit(now, pk, p) {
            return;
        }
        let key = (pk, p.rpc_id);
        let window = self.cfg.grant_window;
        let rpc = self.server.get_mut(&key).expect("present");
        rpc.last_heard = now;
        match (&mut rpc.state, p.kind) {
            (ServerState::Receiving(m), Kind::Data) => {
                let grant = Self::store(window, m, p);
                if m.complete() {
                    let ServerState::Receiving(m) =
                        std::mem::replace(&mut rpc.state, ServerState::Executing)
                    else {
                        unreachable!()
                    };
                    self.rx_bytes -= m.buf.len();
                    self.events.push_back(Event::Request {
                        peer,
                        session: sess,
                        id: p.rpc_id,
                        msg: m.buf,
                    });
                } else if let Some(g) = grant {
                    self.control(peer, sess, Kind::Grant, false, p.rpc_id, g, 0);
                }
            }
            (ServerState::Receiving(m), Kind::Resend) => {
                // The client waits for a response but we lack request bytes: ask for them.
                let (granted, gap) = (m.granted, m.ranges.first_gap(m.granted));
                self.control(peer, sess, Kind::Grant, false, p.rpc_id, granted, 0);
                if let Some((s, e)) = gap {
                    self.control(peer, sess, Kind::Resend, false, p.rpc_id, s, e - s);
                }
            }
            (ServerState::Executing, Kind::Resend) => {
                self.control(peer, sess, Kind::Busy, false, p.rpc_id, 0, 0)
            }
            (ServerState::Responding(out), Kind::Resend) => {
                let len = out.data.len() as u32;
                let s = p.offset.min(len);
                let e = p
                    .offset
                    .saturating_add(p.length.max(1))
                    .min(len)
                    .min(out.sent.max(s));
                // Nothing sent yet in range: treat as a nudge and resend from the start of the gap.
                let e = if e <= s { (s + self.frag).min(len) } else { e };
                let msg = std::mem::take(&mut out.data);
                out.sent = out.sent.max(e);
                self.stats.data_resent += 1;
                self.data(peer, sess, false, p.rpc_id, &msg, s, e);
                if let Some(ServerRpc {
                    state: ServerState::Responding(out),
                    ..
                }) = self.server.get_mut(&key)
                {
                    out.data = msg;
                }
            }
            (ServerState::Responding(out), Kind::Grant) => {
                out.granted = out.granted.max(p.offset.min(out.data.len() as u32));
                self.pump_server(pk, p.rpc_id);
            }
            (ServerState::Responding(_), Kind::Ack) => {
                rpc.state = ServerState::Done;
                self.peers.ended(pk, p.rpc_id, false, now);
            }
            _ => {} // duplicates and stale packets
        }
    }

    fn handle_as_client(&mut self, now: Instant, peer: A, p: &Packet<'_>) {
        let key = (peer, p.rpc_id);
        let window = self.cfg.grant_window;
        if p.session != self.session || !self.client.contains_key(&key) {
            return; // finished or cancelled
        }
        if p.kind == Kind::Data && self.client[&key].resp.is_none() {
            let Some(m) = self.new_in_msg(p.msg_len) else {
                return;
            };
            let rpc = self.client.get_mut(&key).expect("present");
            rpc.resp = Some(m);
            // Response data means the whole request arrived.
            rpc.req.sent = rpc.req.data.len() as u32;
            rpc.req.granted = rpc.req.sent;
        }
        let rpc = self.client.get_mut(&key).expect("present");
        rpc.last_heard = now;
        match p.kind {
            Kind::Data => {
                let m = rpc.resp.as_mut().expect("created above");
                let grant = Self::store(window, m, p);
                if m.complete() {
                    let m = rpc.resp.take().expect("present");
                    self.rx_bytes -= m.buf.len();
                    self.finish_client(peer, p.rpc_id);
                    self.control(peer, self.session, Kind::Ack, true, p.rpc_id, 0, 0);
                    if self.lazy_acks {
                        let (a, ack) = self.transmit.pop_back().expect("just queued");
                        self.held_acks.push((a, p.rpc_id, ack));
                    }
                    self.events.push_back(Event::Response {
                        peer,
                        id: p.rpc_id,
                        msg: m.buf,
                    });
                } else if let Some(g) = grant {
                    self.control(peer, self.session, Kind::Grant, true, p.rpc_id, g, 0);
                }
            }
            Kind::Grant => {
                let len = rpc.req.data.len() as u32;
                rpc.req.granted = rpc.req.granted.max(p.offset.min(len));
                self.pump_client(peer, p.rpc_id);
            }
            Kind::Resend => {
                let len = rpc.req.data.len() as u32;
                let s = p.offset.min(len);
                let e = p.offset.saturating_add(p.length).min(len);
                if e > s {
                    rpc.req.sent = rpc.req.sent.max(e);
                    let msg = std::mem::take(&mut rpc.req.data);
                    self.stats.data_resent += 1;
                    self.data(peer, self.session, true, p.rpc_id, &msg, s, e);
                    self.client.get_mut(&key).expect("present").req.data = msg;
                }
            }
            Kind::Busy => {}
            Kind::Unknown => {
                // The server lost (or never saw) the request: start it over.
                if let Some(m) = rpc.resp.take() {
                    self.rx_bytes -= m.buf.len();
                }
                let rpc = self.client.get_mut(&key).expect("present");
                rpc.req.sent = 0;
                rpc.req.granted = (rpc.req.data.len() as u32).min(window);
                self.pump_client(peer, p.rpc_id);
            }
            Kind::Abort => {
                self.finish_client(peer, p.rpc_id);
                self.events.push_back(Event::Failed {
                    peer,
                    id: p.rpc_id,
                    reason: FailReason::Aborted,
                });
            }
            Kind::Ack => {}
        }
    }

    /// Run timers: resend requests, grants, aborts. Call at (or after) [`Endpoint::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.release_acks();
        let (ri, at) = (self.cfg.resend_interval, self.cfg.abort_timeout);
        // Client side.
        let mut fail = Vec::new();
        let mut nudge = Vec::new();
        for (&(peer, id), rpc) in &mut self.client {
            if now.duration_since(rpc.last_heard) >= at {
                fail.push((peer, id));
            } else if now.duration_since(rpc.last_heard.max(rpc.last_nudge)) >= ri {
                rpc.last_nudge = now;
                nudge.push((
                    peer,
                    id,
                    rpc.resp
                        .as_ref()
                        .map(|m| (m.granted, m.ranges.first_gap(m.granted))),
                ));
            }
        }
        for (peer, id) in fail {
            self.finish_client(peer, id);
            self.events.push_back(Event::Failed {
                peer,
                id,
                reason: FailReason::Timeout,
            });
        }
        for (peer, id, resp) in nudge {
            match resp {
                None => self.control(peer, self.session, Kind::Resend, true, id, 0, self.frag),
                Some((granted, gap)) => {
                    self.control(peer, self.session, Kind::Grant, true, id, granted, 0);
                    if let Some((s, e)) = gap {
                        self.control(peer, self.session, Kind::Resend, true, id, s, e - s);
                    }
                }
            }
        }
        // Server side.
        let mut drop_keys = Vec::new();
        let mut done = Vec::new();
        let mut nudge = Vec::new();
        for (&(pk, id), rpc) in &mut self.server {
            let silent = now.duration_since(rpc.last_heard);
            match &mut rpc.state {
                ServerState::Receiving(m) => {
                    if silent >= at {
                        drop_keys.push((pk, id));
                    } else if now.duration_since(rpc.last_heard.max(rpc.last_nudge)) >= ri {
                        rpc.last_nudge = now;
                        nudge.push((pk, id, m.granted, m.ranges.first_gap(m.granted)));
                    }
                }
                ServerState::Responding(_) if silent >= at => {
                    rpc.state = ServerState::Done;
                    done.push((pk, id));
                }
                ServerState::Done if silent >= at * 10 => drop_keys.push((pk, id)),
                _ => {}
            }
        }
        for (pk, id) in done {
            self.peers.ended(pk, id, false, now);
        }
        for k in drop_keys {
            self.drop_server_rpc(k, now);
        }
        for ((peer, sess), id, granted, gap) in nudge {
            self.control(peer, sess, Kind::Grant, false, id, granted, 0);
            if let Some((s, e)) = gap {
                self.control(peer, sess, Kind::Resend, false, id, s, e - s);
            }
        }
        self.expire_peers(now);
    }

    /// Forget peers idle for `peer_idle` (server side: with their tombstones; client side:
    /// servers with no RPC in flight).
    fn expire_peers(&mut self, now: Instant) {
        let idle = self.cfg.peer_idle;
        for (pk, tombstones) in self.peers.expire(now, idle) {
            self.stats.peers_expired += 1;
            for id in tombstones {
                self.server.remove(&(pk, id));
            }
        }
        self.client_peers.retain(|_, cp| {
            !cp.active.is_empty() || now.saturating_duration_since(cp.last_used) < idle
        });
    }
}

#[cfg(test)]
mod tests;
