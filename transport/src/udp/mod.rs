//! The UDP transport: [`Session`]s and `serve` over the reliable datagram protocol
//! ([`crate::datagram::proto::Endpoint`]) on the kernel UDP driver. Each RPC is one request
//! message and one response message; a message is the same header + payload frame TCP uses, and
//! the RPC's request id is its datagram rpc id.
//!
//! Client: one socket and one endpoint per session; the waiting caller drives it (no background
//! thread). Server: each dispatch thread binds its own socket to the port (`SO_REUSEPORT`) with
//! its own endpoint, so a client's packets always reach the same thread.
//!
//! The session and dispatch code is generic over [`Device`] (a [`Driver`] plus how to wait on
//! it), so other datagram drivers reuse it: [`client_session`] and [`serve_devices`] are what the
//! DPDK transport (`crate::dpdk`) calls; `connect` / `serve` below are the UDP glue.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;

use crate::datagram::proto::{Endpoint, Event, FailReason, ProtoConfig};
use crate::datagram::udp::UdpDriver;
use crate::datagram::{Driver, RxPacket, TxPacket};
use crate::error::{Error, LinkError, Result};
use crate::limits::{DISPATCH_MAX_BLOCK, UDP_BURST, UDP_DEFAULT_MTU};
use crate::locator::Locator;
use crate::server::{
    run_rpc, DispatchConfig, Handler, Outcome, ReplySink, Responder, Route, ServerHandle,
    ServerShared,
};
use crate::session::{ClientChannel, ClientConfig, Delivery, Session};
use crate::wire::{DecodeError, Header, Status, HEADER_LEN};

fn mtu_of(loc: &Locator) -> Result<usize> {
    Ok(loc.get_parsed::<usize>("mtu")?.unwrap_or(UDP_DEFAULT_MTU))
}

fn proto_cfg(mtu: usize) -> ProtoConfig {
    ProtoConfig {
        mtu,
        ..ProtoConfig::default()
    }
}

/// Blocks the calling thread until a packet may be waiting or the timeout passes; callable
/// without holding the driver (a client session waits without its stack lock).
pub(crate) type RxWait = Box<dyn Fn(Duration) -> io::Result<()> + Send + Sync>;

/// Wakes a dispatch thread blocked in its [`Sleeper`] (a deferred reply is queued).
pub(crate) type Wake = Box<dyn Fn() + Send + Sync>;

/// How an idle dispatch thread blocks.
pub(crate) trait Sleeper: Send {
    /// Block until a packet may be waiting, the paired [`Wake`] is called, or `timeout` passes.
    fn sleep(&mut self, timeout: Duration) -> io::Result<()>;
}

/// What the RPC layer needs from a datagram device beyond [`Driver`]: how to wait on it.
pub(crate) trait Device: Driver<Addr: Sync> + Send + 'static {
    /// Whether a packet from `from` comes from a client session's server `peer` (it is then
    /// attributed to `peer`; anything else is dropped). Default: the same address.
    fn is_peer(peer: &Self::Addr, from: &Self::Addr) -> bool {
        peer == from
    }
    /// Called when `tx_burst` took nothing: wait a little for room in the device queue.
    fn wait_tx(&mut self) -> io::Result<()>;
    /// The client's blocking wait for this device.
    fn rx_waiter(&self) -> RxWait;
    /// A dispatch thread's sleeper and the matching waker.
    fn sleeper(&self) -> io::Result<(Box<dyn Sleeper>, Wake)>;
}

impl Device for UdpDriver {
    /// Packets from the server's port are attributed to the server address the session resolved,
    /// whatever source address the kernel gave them (a server bound to 0.0.0.0 answers from the
    /// address the route picks).
    fn is_peer(peer: &SocketAddr, from: &SocketAddr) -> bool {
        peer.port() == from.port()
    }

    fn wait_tx(&mut self) -> io::Result<()> {
        crate::sys::poll_fd(&*self, false, true, Some(Duration::from_millis(1))).map(|_| ())
    }

    fn rx_waiter(&self) -> RxWait {
        let sock = self.socket();
        Box::new(move |w| crate::sys::poll_fd(&*sock, true, false, Some(w)).map(|_| ()))
    }

    fn sleeper(&self) -> io::Result<(Box<dyn Sleeper>, Wake)> {
        let poll = Poll::new()?;
        let fd = self.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), SOCKET, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let sleeper = EpollSleeper {
            poll,
            events: Events::with_capacity(8),
        };
        Ok((
            Box::new(sleeper),
            Box::new(move || {
                let _ = waker.wake();
            }),
        ))
    }
}

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

/// epoll on the socket and a waker.
struct EpollSleeper {
    poll: Poll,
    events: Events,
}

impl Sleeper for EpollSleeper {
    fn sleep(&mut self, timeout: Duration) -> io::Result<()> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Driver + endpoint + scratch vectors: one "datagram stack".
struct Stack<D: Device> {
    /// Client stacks talk to one server: packets from it (by [`Device::is_peer`]) are attributed
    /// to the server address the session resolved; packets from anyone else are dropped.
    only_peer: Option<D::Addr>,
    drv: D,
    ep: Endpoint<D::Addr>,
    rx: Vec<RxPacket<D::Addr>>,
    tx: Vec<TxPacket<D::Addr>>,
    bufs: Vec<Vec<u8>>,
}

impl<D: Device> Stack<D> {
    fn new(drv: D) -> Stack<D> {
        let ep = Endpoint::new(proto_cfg(drv.mtu()));
        Stack {
            only_peer: None,
            drv,
            ep,
            rx: Vec::new(),
            tx: Vec::new(),
            bufs: Vec::new(),
        }
    }

    /// Receive everything waiting, run due timers. Returns whether any packet arrived.
    fn receive(&mut self, now: Instant) -> std::io::Result<bool> {
        let mut any = false;
        loop {
            let n = self.drv.rx_burst(&mut self.rx, UDP_BURST)?;
            for p in self.rx.drain(..) {
                match self.only_peer {
                    None => self.ep.handle(now, p.from, &p.data),
                    Some(peer) if D::is_peer(&peer, &p.from) => self.ep.handle(now, peer, &p.data),
                    Some(_) => {}
                }
                self.bufs.push(p.data);
            }
            self.drv.post_buffers(&mut self.bufs);
            if n == 0 {
                break;
            }
            any = true;
            if n < UDP_BURST {
                break; // a short burst drained the socket: skip the recvmmsg that says EAGAIN
            }
        }
        if self.ep.poll_timeout().is_some_and(|t| t <= now) {
            self.ep.handle_timeout(now);
        }
        Ok(any)
    }

    /// Send every queued packet (waits briefly if the socket buffer is full).
    fn flush(&mut self) -> std::io::Result<()> {
        while let Some((to, data)) = self.ep.poll_transmit() {
            self.tx.push(TxPacket { to, data });
        }
        while !self.tx.is_empty() {
            if self.drv.tx_burst(&mut self.tx)? == 0 {
                self.drv.wait_tx()?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

struct DgramClient<D: Device> {
    /// The stack, plus the map from datagram rpc ids (allocated in order under this lock, as the
    /// protocol's `ack_below` watermark requires) to session request ids (allocated before it).
    stack: Mutex<(Stack<D>, IdMap)>,
    wait: RxWait,
    server: D::Addr,
}

pub(crate) fn connect(loc: &Locator, cfg: &ClientConfig) -> Result<Session> {
    let err = |reason: String| Error::Connect {
        locator: loc.to_string(),
        reason,
    };
    let server = *crate::tcp::resolve(loc)?.first().expect("non-empty");
    if server.port() == 0 {
        return Err(err("port 0 is not a server address".into()));
    }
    let any: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("valid");
    let drv = UdpDriver::bind(any, mtu_of(loc)?, false).map_err(|e| err(e.to_string()))?;
    Ok(client_session(drv, server, loc, cfg))
}

/// A client session over `drv` to the server at `server` (the session's locator is `loc`).
pub(crate) fn client_session<D: Device>(
    drv: D,
    server: D::Addr,
    loc: &Locator,
    cfg: &ClientConfig,
) -> Session {
    let wait = drv.rx_waiter();
    let mut stack = Stack::new(drv);
    stack.only_peer = Some(server);
    stack.ep.set_lazy_acks(true);
    let chan = DgramClient {
        stack: Mutex::new((stack, IdMap::new())),
        wait,
        server,
    };
    Session::new(Box::new(chan), loc.clone(), cfg.poll)
}

struct IdMap {
    next: u64,
    to_request: std::collections::HashMap<u64, u64>,
    to_rpc: std::collections::HashMap<u64, u64>,
}

impl IdMap {
    /// Datagram rpc ids start at 1 in every session. The server keys its state (the watermark
    /// below which it ignores packets) by client address *and* the endpoint's random session
    /// nonce, so a new session on an address an earlier one used (a reused UDP port, a DPDK
    /// endpoint after a restart) is a new peer: no clock involved.
    fn new() -> IdMap {
        IdMap {
            next: 0,
            to_request: std::collections::HashMap::new(),
            to_rpc: std::collections::HashMap::new(),
        }
    }
}

impl<D: Device> DgramClient<D> {
    fn run(&self, out: &mut Vec<Delivery>) -> std::result::Result<Option<Instant>, LinkError> {
        let mut guard = self.stack.lock();
        let (st, ids) = &mut *guard;
        let now = Instant::now();
        st.receive(now).map_err(|e| LinkError::io("receive", e))?;
        let mut failure = None;
        while let Some(ev) = st.ep.poll_event() {
            match ev {
                Event::Response { id, mut msg, .. } => match Header::decode_message(&msg) {
                    Ok((h, _))
                        if h.flags.is_response()
                            && ids.to_request.get(&id) == Some(&h.request_id) =>
                    {
                        ids.to_request.remove(&id);
                        ids.to_rpc.remove(&h.request_id);
                        msg.drain(..HEADER_LEN);
                        out.push((h.request_id, Status(h.status), msg));
                    }
                    Ok(_) => failure = Some(LinkError::BadResponseHeader(id)),
                    Err(e) => failure = Some(LinkError::Protocol(e)),
                },
                Event::Failed { id, reason, .. } => {
                    failure = Some(match reason {
                        FailReason::Timeout => LinkError::ServerSilent(id),
                        FailReason::Aborted => LinkError::Aborted(id),
                    })
                }
                Event::Request { .. } => {} // a client endpoint serves nothing
            }
        }
        st.flush().map_err(|e| LinkError::io("send", e))?;
        match failure {
            Some(f) => Err(f),
            None => Ok(st.ep.poll_timeout()),
        }
    }
}

impl<D: Device> ClientChannel for DgramClient<D> {
    fn send_request(
        &self,
        header: &Header,
        payload: &[u8],
        _stalled: &mut dyn FnMut(),
    ) -> std::result::Result<(), LinkError> {
        let msg = header.encode_message(payload);
        let mut guard = self.stack.lock();
        let (st, ids) = &mut *guard;
        ids.next += 1;
        let rpc = ids.next;
        ids.to_request.insert(rpc, header.request_id);
        ids.to_rpc.insert(header.request_id, rpc);
        st.ep.send_request(Instant::now(), self.server, rpc, msg);
        st.flush().map_err(|e| LinkError::io("send", e))
    }

    fn send_requests(
        &self,
        reqs: &[(Header, &[u8])],
        _stalled: &mut dyn FnMut(),
    ) -> std::result::Result<(), LinkError> {
        let mut guard = self.stack.lock();
        let (st, ids) = &mut *guard;
        let now = Instant::now();
        for (header, payload) in reqs {
            ids.next += 1;
            let rpc = ids.next;
            ids.to_request.insert(rpc, header.request_id);
            ids.to_rpc.insert(header.request_id, rpc);
            st.ep
                .send_request(now, self.server, rpc, header.encode_message(payload));
        }
        st.flush().map_err(|e| LinkError::io("send", e))
    }

    fn progress(
        &self,
        wait: Option<Duration>,
        out: &mut Vec<Delivery>,
    ) -> std::result::Result<(), LinkError> {
        let next_timer = self.run(out)?;
        if out.is_empty() {
            if let Some(mut w) = wait.filter(|w| !w.is_zero()) {
                // About to sleep: send held ACKs now rather than after the sleep.
                {
                    let mut guard = self.stack.lock();
                    guard.0.ep.release_acks();
                    guard.0.flush().map_err(|e| LinkError::io("send", e))?;
                }
                if let Some(t) = next_timer {
                    w = w.min(t.saturating_duration_since(Instant::now()));
                }
                // Block without holding the stack lock, so other threads can keep sending.
                (self.wait)(w).map_err(|e| LinkError::io("poll", e))?;
                self.run(out)?;
            }
        }
        Ok(())
    }

    fn cancel(&self, request_id: u64) {
        let mut guard = self.stack.lock();
        let (st, ids) = &mut *guard;
        if let Some(rpc) = ids.to_rpc.remove(&request_id) {
            ids.to_request.remove(&rpc);
            st.ep.cancel(self.server, rpc);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// A deferred reply: client address and session, datagram rpc id, response header, payload.
type DeferredReply<A> = ((A, u32), u64, Header, Vec<u8>);

struct Inbox<A> {
    replies: Mutex<Vec<DeferredReply<A>>>,
    pending: AtomicBool,
    waker: Wake,
}

impl<A> Inbox<A> {
    fn wake(&self) {
        self.pending.store(true, Ordering::Release);
        (self.waker)();
    }
}

/// The reply sink of one deferred RPC: it knows its peer and datagram rpc id (so the route is
/// [`Route::Direct`] whatever the device's address type).
struct DeferredSink<A> {
    inbox: Arc<Inbox<A>>,
    peer: (A, u32),
    rpc: u64,
}

impl<A: Copy + Send + Sync> ReplySink for DeferredSink<A> {
    fn deliver(&self, _route: Route, header: Header, payload: Vec<u8>) {
        self.inbox
            .replies
            .lock()
            .push((self.peer, self.rpc, header, payload));
        self.inbox.wake();
    }
}

pub(crate) fn serve(
    loc: &Locator,
    handler: Arc<dyn Handler>,
    cfg: &DispatchConfig,
) -> Result<ServerHandle> {
    let bind_err = |e: std::io::Error| Error::Bind {
        locator: loc.to_string(),
        reason: e.to_string(),
    };
    let mtu = mtu_of(loc)?;
    let mut addr = *crate::tcp::resolve(loc)?.first().expect("non-empty");
    let cores = cfg.cores.max(1);
    let mut drivers = Vec::new();
    for _ in 0..cores {
        let d = UdpDriver::bind(addr, mtu, true).map_err(bind_err)?;
        addr = d.local_addr(); // later sockets bind the port the first one got
        drivers.push(d);
    }
    let local = loc
        .clone()
        .with("host", &addr.ip().to_string())
        .with("port", &addr.port().to_string());
    serve_devices(local, drivers, handler, cfg, "udp").map_err(bind_err)
}

/// Serve RPCs with one dispatch thread per device in `drivers` (thread `i` owns `drivers[i]`);
/// `local` is the locator clients should use, `name` prefixes the thread names.
pub(crate) fn serve_devices<D: Device>(
    local: Locator,
    drivers: Vec<D>,
    handler: Arc<dyn Handler>,
    cfg: &DispatchConfig,
    name: &str,
) -> io::Result<ServerHandle> {
    let shared = Arc::new(ServerShared::default());
    let mut inboxes = Vec::new();
    let mut threads = Vec::new();
    for (i, drv) in drivers.into_iter().enumerate() {
        let (sleeper, waker) = drv.sleeper()?;
        let inbox = Arc::new(Inbox {
            replies: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            waker,
        });
        inboxes.push(inbox.clone());
        let (shared, cfg, handler) = (shared.clone(), cfg.clone(), handler.clone());
        let label = format!("{name}-dispatch-{i}");
        let t = std::thread::Builder::new()
            .name(label.clone())
            .spawn(move || {
                shared.enter_dispatch_thread(&cfg, i);
                let mut d = Dispatcher {
                    stack: Stack::new(drv),
                    sleeper,
                    inbox,
                    handler,
                    out: Vec::new(),
                };
                if let Err(e) = d.run(&shared, cfg.poll.spin_budget()) {
                    tracing::error!("{label} failed: {e}");
                }
            })?;
        threads.push(t);
    }
    let wake = move || {
        for ib in &inboxes {
            ib.wake();
        }
    };
    Ok(ServerHandle {
        local,
        shared,
        threads,
        wake: Box::new(wake),
        poll: cfg.poll,
    })
}

struct Dispatcher<D: Device> {
    stack: Stack<D>,
    sleeper: Box<dyn Sleeper>,
    inbox: Arc<Inbox<D::Addr>>,
    handler: Arc<dyn Handler>,
    out: Vec<u8>,
}

impl<D: Device> Dispatcher<D> {
    fn run(&mut self, shared: &ServerShared, spin: Option<Duration>) -> std::io::Result<()> {
        let mut last_work = Instant::now();
        loop {
            if shared.stopping() {
                self.stack.ep.abort_all();
                return self.stack.flush();
            }
            let spinning = match spin {
                None => true,
                Some(s) => last_work.elapsed() < s,
            };
            let timeout = if spinning {
                Duration::ZERO
            } else {
                let t = self
                    .stack
                    .ep
                    .poll_timeout()
                    .map(|t| t.saturating_duration_since(Instant::now()));
                t.unwrap_or(DISPATCH_MAX_BLOCK).min(DISPATCH_MAX_BLOCK)
            };
            // Spinning: the socket is read directly below and the inbox flag is an atomic, so
            // epoll has nothing to add (one `recvmmsg` per turn instead of `epoll_wait` + it).
            if !spinning {
                self.sleeper.sleep(timeout)?;
            }
            let now = Instant::now();
            let mut worked = self.stack.receive(now)?;
            if self.inbox.pending.swap(false, Ordering::AcqRel) {
                worked = true;
                let replies = std::mem::take(&mut *self.inbox.replies.lock());
                for ((peer, session), rpc, h, p) in replies {
                    self.stack
                        .ep
                        .send_response(now, peer, session, rpc, h.encode_message(&p));
                }
            }
            while let Some(ev) = self.stack.ep.poll_event() {
                if let Event::Request {
                    peer,
                    session,
                    id,
                    msg,
                } = ev
                {
                    worked = true;
                    self.serve_one(now, (peer, session), id, &msg);
                }
            }
            self.stack.flush()?;
            if worked {
                last_work = Instant::now();
            }
        }
    }

    fn serve_one(&mut self, now: Instant, client: (D::Addr, u32), id: u64, msg: &[u8]) {
        let (peer, session) = client;
        let (h, payload) = match Header::decode_message(msg) {
            Ok((h, _)) if h.flags.is_response() => {
                let rh =
                    Header::response(h.opcode, h.request_id, Status::REQUEST_FORMAT_ERROR.0, 0);
                return self
                    .stack
                    .ep
                    .send_response(now, peer, session, id, rh.encode_message(&[]));
            }
            Ok(x) => x,
            Err(e) => {
                let status = match e {
                    DecodeError::TooLarge { .. } => Status::REQUEST_TOO_LARGE,
                    DecodeError::BadVersion { .. } => Status::BAD_PROTOCOL_VERSION,
                    _ => Status::REQUEST_FORMAT_ERROR,
                };
                // Address the error reply with the header's own fields when they are there.
                let op = if msg.len() >= 8 {
                    u16::from_le_bytes([msg[6], msg[7]])
                } else {
                    0
                };
                let rid = msg
                    .get(8..16)
                    .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
                let rh = Header::response(op, rid, status.0, 0);
                return self
                    .stack
                    .ep
                    .send_response(now, peer, session, id, rh.encode_message(&[]));
            }
        };
        let inbox = &self.inbox;
        let mut defer = || {
            let sink: Arc<dyn ReplySink> = Arc::new(DeferredSink {
                inbox: inbox.clone(),
                peer: client,
                rpc: id,
            });
            Responder::new(sink, Route::Direct, h.opcode, h.request_id)
        };
        let (status, body): (Status, &[u8]) =
            match run_rpc(&*self.handler, &h, payload, &mut self.out, &mut defer) {
                Outcome::Reply(s) => (s, &self.out),
                Outcome::Echo => (Status::OK, payload),
                Outcome::Deferred => return,
            };
        let rh = Header::response(h.opcode, h.request_id, status.0, body.len() as u32);
        let m = rh.encode_message(body);
        self.stack.ep.send_response(now, peer, session, id, m);
    }
}
