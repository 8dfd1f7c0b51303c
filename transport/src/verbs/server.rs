//! Verbs server: an acceptor thread for the TCP side channel (queue-pair exchange) and
//! `cores` dispatch threads, each with its own endpoint (CQs, one SRQ shared by all its queue
//! pairs, receive buffers, send slots).
//!
//! The acceptor reads a client's hello, creates the queue pair on the next dispatch thread's
//! endpoint (round-robin), brings it to RTS, hands it to that thread's inbox, and only then
//! answers with its own hello — so a dispatch thread always knows a queue pair before the first
//! fragment for it can arrive. Dispatch threads poll their receive CQ, reassemble, run requests
//! to completion, and queue replies per connection; a reply's fragments are posted as send slots
//! and queue entries free up. Deferred replies arrive through the inbox. Blocking (adaptive and
//! block modes) sleeps in `poll(2)` on the completion channel, a wake-up socket and the side
//! channels. A connection ends when its side channel closes or its queue pair fails: the queue
//! pair is moved to the error state so its posted sends complete (flushed) and their slots come
//! back, then it is destroyed.

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::addr::QpAddress;
use super::client::side_channel_closed;
use super::datapath::{zero_copy_id, Cursor, Endpoint, Link, Rx, Tx, ZeroCopy, ZC_WR};
use super::handshake::{random_psn, read_hello, select, write_hello, Hello, Options};
use super::reassembly::{FrameError, Piece, Reassembler};
use super::sys::{poll_readable, Pd, RegisteredVec, VerbsError};
use crate::error::{Error, Result};
use crate::limits::{
    DISPATCH_MAX_BLOCK, STREAM_MAX_QUEUED_REPLY_BYTES, VERBS_HANDSHAKE_TIMEOUT,
    VERBS_SERVER_RECV_BUFFERS, VERBS_SERVER_SEND_CQ, VERBS_SERVER_SEND_SLOTS, VERBS_ZERO_COPY_MIN,
};
use crate::locator::Locator;
use crate::server::{
    run_rpc, DispatchConfig, Handler, Outcome, ReplySink, Responder, Route, ServerHandle,
    ServerShared,
};
use crate::wire::{DecodeError, Header, Status, HEADER_LEN};

/// How often the acceptor re-checks the stop flag while no client connects.
const ACCEPT_POLL: Duration = Duration::from_millis(50);
/// How long a closing connection may wait for its flushed sends before it is dropped anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Most queue-pair exchanges in progress at once (each on its own short-lived thread).
const MAX_CONCURRENT_HANDSHAKES: usize = 64;
/// Check every connection's side channel at least this often while spinning.
const SIDE_CHANNEL_CHECK: Duration = Duration::from_millis(20);

struct NewConn {
    link: Link,
    tcp: TcpStream,
}

#[derive(Default)]
struct InboxData {
    conns: Vec<NewConn>,
    replies: Vec<(u64, Header, Vec<u8>)>,
}

/// Per-dispatch-thread mailbox: new connections and deferred replies.
struct Inbox {
    data: Mutex<InboxData>,
    pending: AtomicBool,
    wake_tx: UnixDatagram,
    wake_rx: UnixDatagram,
    /// Connections the dispatch thread holds (a gauge it publishes; the acceptor's cap).
    open: AtomicUsize,
}

impl Inbox {
    fn new() -> std::io::Result<Inbox> {
        let (a, b) = UnixDatagram::pair()?;
        a.set_nonblocking(true)?;
        b.set_nonblocking(true)?;
        Ok(Inbox {
            data: Mutex::new(InboxData::default()),
            pending: AtomicBool::new(false),
            wake_tx: a,
            wake_rx: b,
            open: AtomicUsize::new(0),
        })
    }
    fn wake(&self) {
        self.pending.store(true, Ordering::Release);
        // A full socket means a wake-up is already pending.
        let _ = self.wake_tx.send(&[1]);
    }
    fn clear_wakeups(&self) {
        let mut b = [0u8; 64];
        while self.wake_rx.recv(&mut b).is_ok() {}
    }
}

impl ReplySink for Inbox {
    fn deliver(&self, route: Route, header: Header, payload: Vec<u8>) {
        let Route::Conn(id) = route else { return };
        self.data.lock().replies.push((id, header, payload));
        self.wake();
    }
}

pub(crate) fn serve(
    loc: &Locator,
    handler: Arc<dyn Handler>,
    cfg: &DispatchConfig,
) -> Result<ServerHandle> {
    let fail = |reason: String| Error::Bind {
        locator: loc.to_string(),
        reason,
    };
    let device = |reason: VerbsError| Error::Device {
        locator: loc.to_string(),
        reason: reason.to_string(),
    };
    let opts = Options::from_locator(loc).map_err(device)?;
    let addr: SocketAddr = *crate::tcp::resolve(loc)?
        .first()
        .expect("resolve returns at least one");
    let cores = cfg.cores.max(1);
    let mut endpoints = Vec::new();
    let mut dispatchers = Vec::new();
    let mut inboxes = Vec::new();
    let mut chosen = None;
    for i in 0..cores {
        let sel = select(&opts).map_err(device)?;
        if i == 0 {
            chosen = Some((sel.ctx.name().to_string(), sel.path.gid_index));
        }
        let ep = Arc::new(
            Endpoint::new(sel, VERBS_SERVER_RECV_BUFFERS, VERBS_SERVER_SEND_CQ).map_err(device)?,
        );
        let rx = Rx::new(&ep, VERBS_SERVER_RECV_BUFFERS).map_err(device)?;
        let tx = Tx::new(&ep, VERBS_SERVER_SEND_SLOTS, VERBS_SERVER_SEND_CQ).map_err(device)?;
        let inbox = Arc::new(Inbox::new().map_err(|e| fail(e.to_string()))?);
        dispatchers.push(Dispatcher {
            conns: HashMap::new(),
            by_qpn: HashMap::new(),
            next_id: 0,
            dirty: Vec::new(),
            handler: handler.clone(),
            out: Vec::new(),
            inbox: inbox.clone(),
            zc: ZcTable {
                pd: ep.pd.clone(),
                regs: HashMap::new(),
                next: 0,
            },
            rx,
            tx,
            ep: ep.clone(),
            ready: Vec::new(),
            fds: Vec::new(),
            fd_conns: Vec::new(),
        });
        endpoints.push(ep);
        inboxes.push(inbox);
    }
    let listener = TcpListener::bind(addr).map_err(|e| fail(e.to_string()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| fail(e.to_string()))?;
    let local_addr = listener.local_addr().map_err(|e| fail(e.to_string()))?;
    let (dev, gid) = chosen.expect("at least one endpoint");
    let local = loc
        .clone()
        .with("host", &local_addr.ip().to_string())
        .with("port", &local_addr.port().to_string())
        .with("dev", &dev)
        .with("gid", &gid.to_string());

    let shared = Arc::new(ServerShared::default());
    let mut threads = Vec::new();
    for (i, mut d) in dispatchers.into_iter().enumerate() {
        let (shared, cfg) = (shared.clone(), cfg.clone());
        let t = std::thread::Builder::new()
            .name(format!("verbs-dispatch-{i}"))
            .spawn(move || {
                shared.enter_dispatch_thread(&cfg, i);
                if let Err(e) = d.run(&shared, cfg.poll.spin_budget()) {
                    tracing::error!("verbs dispatch thread {i} failed: {e}");
                }
            })
            .map_err(|e| fail(e.to_string()))?;
        threads.push(t);
    }
    let max_conns = cfg.conn.max_connections;
    {
        let (shared, inboxes) = (shared.clone(), inboxes.clone());
        let t = std::thread::Builder::new()
            .name("verbs-accept".into())
            .spawn(move || accept_loop(listener, endpoints, inboxes, &shared, max_conns))
            .map_err(|e| fail(e.to_string()))?;
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

fn accept_loop(
    listener: TcpListener,
    endpoints: Vec<Arc<Endpoint>>,
    inboxes: Vec<Arc<Inbox>>,
    shared: &ServerShared,
    max_conns: usize,
) {
    let refused = crate::conn_limits::RefusalLog::new("refusing verbs connections");
    let mut rr = 0usize;
    // Handshakes run on short-lived threads so that a client that connects and stays silent
    // delays nobody; their number is capped.
    let active = Arc::new(AtomicUsize::new(0));
    while !shared.stopping() {
        match listener.accept() {
            Ok((s, peer)) => {
                if active.load(Ordering::Acquire) >= MAX_CONCURRENT_HANDSHAKES {
                    refused.refused(&format!("{MAX_CONCURRENT_HANDSHAKES} handshakes in progress; closed one from {peer}"));
                    continue;
                }
                let open: usize = inboxes.iter().map(|i| i.open.load(Ordering::Acquire)).sum();
                if open + active.load(Ordering::Acquire) >= max_conns {
                    refused.refused(&format!("{max_conns} connections are open (--max-connections); closed one from {peer}"));
                    continue;
                }
                let i = rr % endpoints.len();
                rr += 1;
                let (ep, inbox, mine) = (endpoints[i].clone(), inboxes[i].clone(), active.clone());
                active.fetch_add(1, Ordering::AcqRel);
                let spawned = std::thread::Builder::new()
                    .name("verbs-handshake".into())
                    .spawn(move || {
                        if let Err(e) = handshake(s, &ep, &inbox) {
                            tracing::warn!(%peer, "verbs connection refused: {e}");
                        }
                        mine.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(e) = spawned {
                    tracing::warn!(%peer, "cannot start a handshake thread: {e}");
                    active.fetch_sub(1, Ordering::AcqRel);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let _ = crate::sys::poll_fd(&listener, true, false, Some(ACCEPT_POLL));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("verbs side channel accept failed: {e}");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

fn handshake(mut s: TcpStream, ep: &Endpoint, inbox: &Inbox) -> Result<(), VerbsError> {
    let io = |e: std::io::Error| VerbsError::Os {
        call: "the side-channel handshake".into(),
        source: Arc::new(e),
        hint: "",
    };
    s.set_nonblocking(false).map_err(io)?;
    s.set_nodelay(true).map_err(io)?;
    s.set_read_timeout(Some(VERBS_HANDSHAKE_TIMEOUT))
        .map_err(io)?;
    s.set_write_timeout(Some(VERBS_HANDSHAKE_TIMEOUT))
        .map_err(io)?;
    let peer = read_hello(&mut s)?;
    let qp = ep.new_qp()?;
    let psn = random_psn();
    let mtu = ep.sel.port.active_mtu.min(peer.qp.mtu);
    qp.connect(&ep.sel.path, psn, mtu, &peer.qp)?;
    let ours = Hello {
        qp: QpAddress {
            qpn: qp.qpn(),
            psn,
            lid: ep.sel.port.lid,
            gid: ep.sel.gid,
            mtu: ep.sel.port.active_mtu,
        },
        recv_buf: ep.buf_size as u32,
    };
    let frag = ep.buf_size.min(peer.recv_buf as usize);
    let mut reply = s.try_clone().map_err(io)?;
    // Register the queue pair with its dispatch thread before the client can use it.
    inbox.data.lock().conns.push(NewConn {
        link: Link::new(qp, frag),
        tcp: s,
    });
    inbox.wake();
    // If this fails, the client's handshake fails and it closes the side channel, which
    // removes the connection.
    write_hello(&mut reply, &ours).map_err(io)
}

/// A reply (or error reply) waiting for send resources.
struct OutMsg {
    hdr: [u8; HEADER_LEN],
    body: Body,
    cur: Cursor,
}

enum Body {
    /// Sent through send slots (or inline).
    Plain(Vec<u8>),
    /// Registered for zero-copy sends: an entry of the `ZcTable`.
    Zc(u64),
}

/// Large reply payloads registered for zero-copy sends, until their last send completes.
struct ZcTable {
    pd: Arc<Pd>,
    regs: HashMap<u64, ZcEntry>,
    next: u64,
}

struct ZcEntry {
    reg: RegisteredVec,
    /// Sends posted from it and not completed.
    pending: usize,
    /// No more sends will be posted from it (message fully posted, or abandoned).
    finished: bool,
}

impl ZcTable {
    fn completed(&mut self, id: u64) {
        if let Some(e) = self.regs.get_mut(&id) {
            e.pending = e.pending.saturating_sub(1);
            if e.pending == 0 && e.finished {
                self.regs.remove(&id);
            }
        }
    }
    fn finish(&mut self, id: u64) {
        if let Some(e) = self.regs.get_mut(&id) {
            e.finished = true;
            if e.pending == 0 {
                self.regs.remove(&id);
            }
        }
    }
}

struct Conn {
    link: Link,
    reasm: Reassembler,
    tcp: TcpStream,
    backlog: VecDeque<OutMsg>,
    /// Payload bytes in `backlog` (a client that stops reading its replies is disconnected
    /// when this passes `STREAM_MAX_QUEUED_REPLY_BYTES`: memory is bounded).
    queued: usize,
    /// Set when the connection is ending: close once the backlog is sent (`Some(false)`) or
    /// now (`Some(true)`: the queue pair is in the error state, waiting for flushed sends).
    closing: Option<(bool, Instant)>,
    qpn: u32,
}

struct Dispatcher {
    // Dropped first: queue pairs go before the buffers they used.
    conns: HashMap<u64, Conn>,
    by_qpn: HashMap<u32, u64>,
    next_id: u64,
    /// Connections with a backlog or a pending close.
    dirty: Vec<u64>,
    handler: Arc<dyn Handler>,
    out: Vec<u8>,
    inbox: Arc<Inbox>,
    zc: ZcTable,
    rx: Rx,
    tx: Tx,
    ep: Arc<Endpoint>,
    ready: Vec<bool>,
    fds: Vec<RawFd>,
    fd_conns: Vec<u64>,
}

impl Dispatcher {
    fn run(&mut self, shared: &ServerShared, spin: Option<Duration>) -> Result<(), VerbsError> {
        let mut last_work = Instant::now();
        let mut last_check = Instant::now();
        loop {
            if shared.stopping() {
                return Ok(());
            }
            let mut worked = self.poll_once()?;
            if self.inbox.pending.swap(false, Ordering::AcqRel) {
                worked = true;
                self.drain_inbox();
            }
            self.flush_dirty();
            if worked {
                last_work = Instant::now();
            }
            if last_check.elapsed() >= SIDE_CHANNEL_CHECK {
                last_check = Instant::now();
                self.check_side_channels();
                self.inbox.open.store(self.conns.len(), Ordering::Release);
            }
            let spinning = match spin {
                None => true,
                Some(s) => last_work.elapsed() < s,
            };
            if worked || spinning {
                continue;
            }
            // Block: arm both CQs, look once more, then sleep on the completion channel, the
            // wake-up socket and every side channel.
            self.ep.recv_cq.arm()?;
            self.ep.send_cq.arm()?;
            if self.poll_once()? || self.inbox.pending.load(Ordering::Acquire) {
                last_work = Instant::now();
                continue;
            }
            self.fds.clear();
            self.fd_conns.clear();
            self.fds.push(self.ep.channel.fd());
            self.fds.push(self.inbox.wake_rx.as_raw_fd());
            for (&id, c) in self.conns.iter().filter(|(_, c)| c.closing.is_none()) {
                self.fds.push(c.tcp.as_raw_fd());
                self.fd_conns.push(id);
            }
            // Connections still draining flushed sends are re-checked soon.
            let timeout = if self.dirty.is_empty() {
                DISPATCH_MAX_BLOCK
            } else {
                Duration::from_millis(1)
            };
            poll_readable(&self.fds, timeout, &mut self.ready)
                .map_err(|e| VerbsError::Other(format!("poll failed: {e}")))?;
            if self.ready.first() == Some(&true) {
                self.ep.channel.drain_events();
            }
            if self.ready.get(1) == Some(&true) {
                self.inbox.clear_wakeups();
            }
            let closed: Vec<u64> = self.ready[2..]
                .iter()
                .zip(&self.fd_conns)
                .filter(|(r, _)| **r)
                .map(|(_, id)| *id)
                .collect();
            for id in closed {
                if let Some(c) = self.conns.get(&id) {
                    if side_channel_closed(&c.tcp) {
                        self.close(id, "side channel closed by the client");
                    }
                }
            }
        }
    }

    /// Poll both CQs once. Returns whether anything completed.
    fn poll_once(&mut self) -> Result<bool, VerbsError> {
        let n = self.poll_recv()?;
        let m = self.poll_send()?;
        Ok(n + m > 0)
    }

    fn poll_recv(&mut self) -> Result<usize, VerbsError> {
        let Dispatcher {
            conns,
            by_qpn,
            next_id,
            handler,
            out,
            inbox,
            zc,
            rx,
            tx,
            ep,
            dirty,
            ..
        } = self;
        let mut unknown = 0usize;
        let n = rx.poll(ep, &mut |wc, frag| {
            let id = match by_qpn.get(&wc.qp_num) {
                Some(&id) => id,
                None => {
                    // Registered by the acceptor but not adopted yet (its wake-up is pending).
                    adopt(inbox, conns, by_qpn, next_id);
                    match by_qpn.get(&wc.qp_num) {
                        Some(&id) => id,
                        None => {
                            unknown += 1;
                            return;
                        }
                    }
                }
            };
            let Some(c) = conns.get_mut(&id) else { return };
            if c.closing.is_some() {
                return;
            }
            if !wc.ok() {
                tracing::debug!(conn = id, status = %wc.status_str(), "receive failed");
                c.closing = Some((true, Instant::now()));
                dirty.push(id);
                return;
            }
            let r = c.reasm.push(frag);
            let (h, payload): (Header, Payload<'_>) = match r {
                Ok(Piece::More) => return,
                Ok(Piece::Whole(h, p)) => (h, Payload::Borrowed(p)),
                Ok(Piece::Done(h, v)) => (h, Payload::Owned(v)),
                Err(e) => {
                    tracing::debug!(conn = id, "bad message from client: {e}");
                    if let FrameError::Header {
                        reply_to: Some((op, rid)),
                        err,
                    } = &e
                    {
                        let status = match err {
                            DecodeError::TooLarge { .. } => Status::REQUEST_TOO_LARGE,
                            DecodeError::BadVersion { .. } => Status::BAD_PROTOCOL_VERSION,
                            _ => Status::REQUEST_FORMAT_ERROR,
                        };
                        queue(c, Header::response(*op, *rid, status.0, 0), Vec::new());
                    }
                    c.closing = Some((false, Instant::now()));
                    dirty.push(id);
                    return;
                }
            };
            if h.flags.is_response() {
                tracing::debug!(conn = id, "client sent a response frame; closing");
                c.closing = Some((false, Instant::now()));
                dirty.push(id);
                return;
            }
            let mut defer = || {
                let sink: Arc<dyn ReplySink> = inbox.clone();
                Responder::new(sink, Route::Conn(id), h.opcode, h.request_id)
            };
            let (status, body) = match run_rpc(&**handler, &h, payload.as_slice(), out, &mut defer)
            {
                Outcome::Reply(s) => (s, std::mem::take(out)),
                Outcome::Echo => (Status::OK, payload.into_vec()),
                Outcome::Deferred => return,
            };
            let rh = Header::response(h.opcode, h.request_id, status.0, body.len() as u32);
            queue(c, rh, body);
            if let Err(e) = send_backlog(c, tx, zc) {
                tracing::debug!(conn = id, "send failed: {e}");
                c.closing = Some((true, Instant::now()));
            }
            if !c.backlog.is_empty() || c.closing.is_some() {
                dirty.push(id);
            }
        })?;
        if unknown > 0 {
            // Fragments for a queue pair not registered yet cannot happen (the acceptor
            // registers it before the client learns it); a stray one is dropped.
            tracing::warn!(count = unknown, "dropped fragments for unknown queue pairs");
        }
        Ok(n)
    }

    fn poll_send(&mut self) -> Result<usize, VerbsError> {
        let Dispatcher {
            conns,
            by_qpn,
            zc,
            tx,
            ep,
            dirty,
            ..
        } = self;
        tx.reap(ep, &mut |wc| {
            if let Some(id) = zero_copy_id(wc.wr_id) {
                zc.completed(id);
            }
            let Some(&id) = by_qpn.get(&wc.qp_num) else {
                return;
            };
            let Some(c) = conns.get_mut(&id) else { return };
            c.link.in_flight = c.link.in_flight.saturating_sub(1);
            if !wc.ok() && c.closing.is_none() {
                tracing::debug!(conn = id, status = %wc.status_str(), "send failed");
                c.closing = Some((true, Instant::now()));
            }
            if !c.backlog.is_empty() || c.closing.is_some() {
                dirty.push(id);
            }
        })
    }

    fn drain_inbox(&mut self) {
        self.inbox.clear_wakeups();
        adopt(
            &self.inbox,
            &mut self.conns,
            &mut self.by_qpn,
            &mut self.next_id,
        );
        let replies = std::mem::take(&mut self.inbox.data.lock().replies);
        for (id, h, p) in replies {
            if let Some(c) = self.conns.get_mut(&id) {
                if c.closing.is_none() {
                    queue(c, h, p);
                    self.dirty.push(id);
                }
            } // else: the connection closed meanwhile; drop the reply.
        }
    }

    /// Post what the dirty connections can send; finish closes.
    fn flush_dirty(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let mut ids = std::mem::take(&mut self.dirty);
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            if c.closing.is_none() || c.closing.is_some_and(|(now, _)| !now) {
                if let Err(e) = send_backlog(c, &mut self.tx, &mut self.zc) {
                    tracing::debug!(conn = id, "send failed: {e}");
                    c.closing = Some((true, Instant::now()));
                }
            }
            match c.closing {
                None if c.backlog.is_empty() => continue,
                None => {}
                Some((false, _)) if c.backlog.is_empty() && c.link.in_flight == 0 => {
                    self.close(id, "after an error reply");
                    continue;
                }
                Some((false, _)) => {}
                Some((true, since)) if c.link.in_flight == 0 || since.elapsed() > DRAIN_TIMEOUT => {
                    if c.link.in_flight > 0 {
                        tracing::warn!(conn = id, "queue pair did not flush its sends; dropping");
                    }
                    let qpn = c.qpn;
                    self.conns.remove(&id);
                    self.by_qpn.remove(&qpn);
                    continue;
                }
                Some((true, _)) => {}
            }
            self.dirty.push(id);
        }
    }

    fn check_side_channels(&mut self) {
        let closed: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.closing.is_none() && side_channel_closed(&c.tcp))
            .map(|(id, _)| *id)
            .collect();
        for id in closed {
            self.close(id, "side channel closed by the client");
        }
    }

    /// End a connection: error state (flushes its sends), destroyed once they have completed.
    fn close(&mut self, id: u64, why: &str) {
        if let Some(c) = self.conns.get_mut(&id) {
            if matches!(c.closing, Some((true, _))) {
                return;
            }
            tracing::debug!(conn = id, why, "closing verbs connection");
            if let Err(e) = c.link.qp.set_error() {
                tracing::debug!(conn = id, "{e}");
            }
            abandon_backlog(c, &mut self.zc);
            c.closing = Some((true, Instant::now()));
            self.dirty.push(id);
        }
    }
}

/// Take the new connections out of the inbox.
fn adopt(
    inbox: &Inbox,
    conns: &mut HashMap<u64, Conn>,
    by_qpn: &mut HashMap<u32, u64>,
    next_id: &mut u64,
) {
    let new = std::mem::take(&mut inbox.data.lock().conns);
    for nc in new {
        let id = *next_id;
        *next_id += 1;
        let qpn = nc.link.qp.qpn();
        let frag = nc.link.frag;
        by_qpn.insert(qpn, id);
        conns.insert(
            id,
            Conn {
                link: nc.link,
                reasm: Reassembler::new(frag),
                tcp: nc.tcp,
                backlog: VecDeque::new(),
                queued: 0,
                closing: None,
                qpn,
            },
        );
        tracing::debug!(conn = id, qpn, frag, "verbs connection added");
    }
}

fn queue(c: &mut Conn, h: Header, payload: Vec<u8>) {
    c.queued += payload.len();
    c.backlog.push_back(OutMsg {
        hdr: h.encode(),
        body: Body::Plain(payload),
        cur: Cursor::default(),
    });
}

/// Post the connection's queued replies, in order, as far as resources allow. A large payload
/// is registered when its message starts and sent from where it is.
fn send_backlog(c: &mut Conn, tx: &mut Tx, zt: &mut ZcTable) -> Result<(), VerbsError> {
    while let Some(m) = c.backlog.front_mut() {
        if let Body::Plain(p) = &mut m.body {
            if p.len() >= VERBS_ZERO_COPY_MIN && m.cur.sent == 0 {
                match RegisteredVec::new(&zt.pd, std::mem::take(p)) {
                    Ok(reg) => {
                        let id = zt.next;
                        zt.next += 1;
                        zt.regs.insert(
                            id,
                            ZcEntry {
                                reg,
                                pending: 0,
                                finished: false,
                            },
                        );
                        m.body = Body::Zc(id);
                    }
                    Err((e, data)) => {
                        tracing::debug!("zero-copy send not possible, copying: {e}");
                        *p = data;
                    }
                }
            }
        }
        let done = match &m.body {
            Body::Plain(p) => c.link.pump(tx, &m.hdr, p, &mut m.cur, None)?,
            Body::Zc(id) => {
                let id = *id;
                let Some(e) = zt.regs.get_mut(&id) else {
                    return Err(VerbsError::Other("zero-copy registration missing".into()));
                };
                let (done, posted) = {
                    let reg = &e.reg;
                    let piece = |off: usize, len: usize| reg.piece(off, len);
                    let mut z = ZeroCopy {
                        wr_id: ZC_WR | id,
                        piece: &piece,
                        posted: 0,
                    };
                    let r = c
                        .link
                        .pump(tx, &m.hdr, reg.data(), &mut m.cur, Some(&mut z));
                    (r, z.posted)
                };
                e.pending += posted;
                let done = done?;
                if done {
                    zt.finish(id);
                }
                done
            }
        };
        if !done {
            if c.queued > STREAM_MAX_QUEUED_REPLY_BYTES {
                return Err(VerbsError::Other(format!(
                    "{} bytes of replies wait for a client that does not read them",
                    c.queued
                )));
            }
            return Ok(());
        }
        if let Some(m) = c.backlog.pop_front() {
            c.queued -= match m.body {
                Body::Plain(p) => p.len(),
                Body::Zc(_) => m.cur.sent - HEADER_LEN,
            };
        }
    }
    Ok(())
}

/// Drop a connection's unsent replies (their registrations end once their posted sends are
/// flushed).
fn abandon_backlog(c: &mut Conn, zt: &mut ZcTable) {
    for m in c.backlog.drain(..) {
        if let Body::Zc(id) = m.body {
            zt.finish(id);
        }
    }
    c.queued = 0;
}

/// A request payload: in place in the receive buffer, or reassembled.
enum Payload<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl Payload<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Borrowed(b) => b,
            Payload::Owned(v) => v,
        }
    }
    fn into_vec(self) -> Vec<u8> {
        match self {
            Payload::Borrowed(b) => b.to_vec(),
            Payload::Owned(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Needs an RDMA device (Soft-RoCE in the guest of `scripts/rxe-guest.sh`); prints SKIP
    //! elsewhere.
    use std::io::Read;

    use super::*;
    use crate::limits::MAX_PAYLOAD;
    use crate::{ClientConfig, NoHandler, Opcode};

    const LIVE: Duration = Duration::from_secs(30);

    /// A read on a side channel shows it closed: end of stream or reset (not a timeout, not data).
    fn closed(r: std::io::Result<usize>) -> bool {
        match r {
            Ok(n) => n == 0,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }

    /// A raw client that speaks the handshake and posts whatever bytes it likes.
    struct RawClient {
        ep: Endpoint,
        rx: Rx,
        tx: Tx,
        link: Link,
        tcp: TcpStream,
    }

    fn raw_client(server: &Locator) -> RawClient {
        let sel = select(&Options::from_env().unwrap()).unwrap();
        let ep = Endpoint::new(sel, 64, 64).unwrap();
        let rx = Rx::new(&ep, 64).unwrap();
        let tx = Tx::new(&ep, 16, 64).unwrap();
        let qp = ep.new_qp().unwrap();
        let mut tcp = TcpStream::connect((server.host().unwrap(), server.port().unwrap())).unwrap();
        tcp.set_read_timeout(Some(LIVE)).unwrap();
        let psn = random_psn();
        let ours = Hello {
            qp: QpAddress {
                qpn: qp.qpn(),
                psn,
                lid: ep.sel.port.lid,
                gid: ep.sel.gid,
                mtu: ep.sel.port.active_mtu,
            },
            recv_buf: ep.buf_size as u32,
        };
        write_hello(&mut tcp, &ours).unwrap();
        let peer = read_hello(&mut tcp).unwrap();
        let mtu = ep.sel.port.active_mtu.min(peer.qp.mtu);
        qp.connect(&ep.sel.path, psn, mtu, &peer.qp).unwrap();
        let frag = ep.buf_size.min(peer.recv_buf as usize);
        RawClient {
            rx,
            tx,
            link: Link::new(qp, frag),
            tcp,
            ep,
        }
    }

    /// A header claiming a payload above the limit gets `REQUEST_TOO_LARGE` and the connection
    /// is closed (side channel ends); the server goes on serving others.
    #[test]
    fn hostile_fragments_close_the_connection() {
        if let Err(e) = super::super::devices() {
            println!("SKIP: {e} (run scripts/rxe-guest.sh to test on Soft-RoCE)");
            return;
        }
        let loc: crate::ServiceLocator = std::env::var("FAASCACHE_VERBS_TEST_SERVER")
            .unwrap_or_else(|_| "infrc:host=127.0.0.1,port=0".into())
            .parse()
            .unwrap();
        let server = crate::serve(
            &loc,
            Arc::new(NoHandler),
            DispatchConfig {
                pin: false,
                ..Default::default()
            },
        )
        .unwrap();
        let local = server.local_locator().clone();
        let mut c = raw_client(&local);
        let mut h = Header::request(Opcode::Echo.as_u16(), 77, 0).encode();
        h[16..20].copy_from_slice(&((MAX_PAYLOAD + 1) as u32).to_le_bytes());
        let crc = crc32c::crc32c(&h[..28]);
        h[28..32].copy_from_slice(&crc.to_le_bytes());
        let mut cur = Cursor::default();
        assert!(c.link.pump(&mut c.tx, &h, &[], &mut cur, None).unwrap());
        // The error reply arrives...
        let mut reply = None;
        let deadline = Instant::now() + LIVE;
        while reply.is_none() && Instant::now() < deadline {
            c.rx.poll(&c.ep, &mut |wc, frag| {
                assert!(wc.ok(), "receive failed: {}", wc.status_str());
                reply = Some(Header::decode(frag).unwrap());
            })
            .unwrap();
        }
        let reply = reply.expect("an error reply");
        assert!(reply.flags.is_response());
        assert_eq!(reply.request_id, 77);
        assert_eq!(reply.status, Status::REQUEST_TOO_LARGE.0);
        // ...then the server ends the connection.
        let mut b = [0u8; 1];
        assert!(closed(c.tcp.read(&mut b)), "the server kept the connection");
        // Others are served as before.
        let s = crate::connect(&local.into(), ClientConfig::default()).unwrap();
        assert_eq!(s.call(Opcode::Echo, b"still", LIVE).unwrap().1, b"still");
    }

    /// A first fragment shorter than the fragment size that does not hold its whole message
    /// breaks the framing: the connection is closed without a reply.
    #[test]
    fn short_fragment_closes_the_connection() {
        if let Err(e) = super::super::devices() {
            println!("SKIP: {e} (run scripts/rxe-guest.sh to test on Soft-RoCE)");
            return;
        }
        let loc: crate::ServiceLocator = std::env::var("FAASCACHE_VERBS_TEST_SERVER")
            .unwrap_or_else(|_| "infrc:host=127.0.0.1,port=0".into())
            .parse()
            .unwrap();
        let server = crate::serve(
            &loc,
            Arc::new(NoHandler),
            DispatchConfig {
                pin: false,
                ..Default::default()
            },
        )
        .unwrap();
        let local = server.local_locator().clone();
        let c = raw_client(&local);
        let mut m = Header::request(Opcode::Echo.as_u16(), 5, 10_000)
            .encode()
            .to_vec();
        m.extend_from_slice(&[1; 10]);
        c.link
            .qp
            .post_send_inline(super::super::datapath::INLINE_WR, &[&m])
            .unwrap();
        let mut b = [0u8; 1];
        let mut tcp = &c.tcp;
        assert!(closed(tcp.read(&mut b)), "the server kept the connection");
        let s = crate::connect(&local.into(), ClientConfig::default()).unwrap();
        assert_eq!(s.call(Opcode::Ping, &[], LIVE).unwrap().0, Status::OK);
    }
}
