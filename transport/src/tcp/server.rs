//! TCP dispatch threads. Each owns a mio `Poll` (an epoll set) with its connections and a
//! `Waker` (eventfd); dispatch thread 0 also owns the listener and deals accepted connections
//! round-robin to all threads. Requests are run to completion on the thread that read them;
//! replies are queued per connection and flushed with vectored writes after each read batch.
//! Deferred replies arrive through the thread's inbox and its waker.
//!
//! Limits ([`ConnLimits`]): the acceptor counts open connections over all threads and closes
//! new ones beyond `max_connections`; every connection's reader draws its buffers from one
//! [`ByteBudget`] (a connection that cannot get bytes waits, unread, and is retried every
//! [`BUDGET_RETRY`]); each thread sweeps its connections every `sweep_interval` and closes those
//! silent since accept for `idle_timeout` or stalled in a partial request for `stall_timeout`,
//! and frees the read buffers of quiet ones.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;

use crate::conn_limits::{ByteBudget, ConnLimits, RefusalLog};
use crate::error::{Error, Result};
use crate::frame::{write_frame, FrameError, FrameReader, Payload, ReadStop};
use crate::limits::{DISPATCH_MAX_BLOCK, MAX_MESSAGE, STREAM_MAX_QUEUED_REPLY_BYTES};
use crate::locator::Locator;
use crate::server::{
    run_rpc, DispatchConfig, Handler, Outcome, ReplySink, Responder, Route, ServerHandle,
    ServerShared,
};
use crate::wire::{Header, Status, HEADER_LEN};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);

#[derive(Default)]
struct InboxData {
    conns: Vec<TcpStream>,
    replies: Vec<(u64, Header, Vec<u8>)>,
}

/// Per-dispatch-thread mailbox: new connections and deferred replies.
struct Inbox {
    data: Mutex<InboxData>,
    pending: AtomicBool,
    waker: Waker,
}

impl Inbox {
    fn wake(&self) {
        self.pending.store(true, Ordering::Release);
        if let Err(e) = self.waker.wake() {
            tracing::error!("dispatch waker failed: {e}");
        }
    }
}

impl ReplySink for Inbox {
    fn deliver(&self, route: Route, header: Header, payload: Vec<u8>) {
        let Route::Conn(id) = route else { return };
        self.data.lock().replies.push((id, header, payload));
        self.wake();
    }
}

/// What the dispatch threads of one server share to enforce its [`ConnLimits`].
struct Limits {
    cfg: ConnLimits,
    budget: Arc<ByteBudget>,
    /// Open connections (accepted and not yet closed), over all threads.
    open: AtomicUsize,
    refused: RefusalLog,
    closed_idle: RefusalLog,
    closed_stalled: RefusalLog,
    waiting: RefusalLog,
}

impl Limits {
    fn new(cfg: ConnLimits) -> Self {
        Limits {
            cfg,
            budget: Arc::new(ByteBudget::new(cfg.max_buffered_bytes)),
            open: AtomicUsize::new(0),
            refused: RefusalLog::new("refusing tcp connections"),
            closed_idle: RefusalLog::new("closing silent tcp connections"),
            closed_stalled: RefusalLog::new("closing stalled tcp connections"),
            waiting: RefusalLog::new("tcp request buffers full"),
        }
    }
}

/// How often a connection that waits for buffer budget tries again.
const BUDGET_RETRY: Duration = Duration::from_millis(10);

pub(crate) fn serve(
    loc: &Locator,
    handler: Arc<dyn Handler>,
    cfg: &DispatchConfig,
) -> Result<ServerHandle> {
    let bind_err = |e: io::Error| Error::Bind {
        locator: loc.to_string(),
        reason: e.to_string(),
    };
    let addr: SocketAddr = *super::resolve(loc)?
        .first()
        .expect("resolve returns at least one");
    let std_listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
    std_listener.set_nonblocking(true).map_err(bind_err)?;
    let local_addr = std_listener.local_addr().map_err(bind_err)?;
    let mut listener = Some(TcpListener::from_std(std_listener));
    let local = loc
        .clone()
        .with("host", &local_addr.ip().to_string())
        .with("port", &local_addr.port().to_string());

    let cores = cfg.cores.max(1);
    let shared = Arc::new(ServerShared::default());
    let limits = Arc::new(Limits::new(cfg.conn));
    let mut polls = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..cores {
        let poll = Poll::new().map_err(bind_err)?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(bind_err)?;
        inboxes.push(Arc::new(Inbox {
            data: Mutex::new(InboxData::default()),
            pending: AtomicBool::new(false),
            waker,
        }));
        polls.push(poll);
    }
    let mut threads = Vec::new();
    for (i, poll) in polls.into_iter().enumerate() {
        let mut d = Dispatcher {
            index: i,
            poll,
            listener: if i == 0 { listener.take() } else { None },
            inboxes: inboxes.clone(),
            conns: HashMap::new(),
            next_id: 0,
            rr: 0,
            handler: handler.clone(),
            out: Vec::new(),
            pool: Buffers::default(),
            hot: None,
            limits: limits.clone(),
            last_sweep: Instant::now(),
            last_retry: Instant::now(),
            waiting: 0,
        };
        let (shared, cfg) = (shared.clone(), cfg.clone());
        let t = std::thread::Builder::new()
            .name(format!("tcp-dispatch-{i}"))
            .spawn(move || {
                shared.enter_dispatch_thread(&cfg, i);
                if let Err(e) = d.run(&shared, cfg.poll.spin_budget()) {
                    tracing::error!("tcp dispatch thread {i} failed: {e}");
                }
            })
            .map_err(bind_err)?;
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

struct OutFrame {
    hdr: [u8; HEADER_LEN],
    payload: Vec<u8>,
    pos: usize,
}

struct Conn {
    stream: TcpStream,
    reader: FrameReader,
    outq: VecDeque<OutFrame>,
    queued: usize,
    read_paused: bool,
    /// Close once the output queue is flushed (after an error reply).
    closing: bool,
    /// The reader could not get buffer budget; retried every [`BUDGET_RETRY`].
    no_budget: bool,
    accepted: Instant,
    /// Last time bytes arrived (or a wait for budget was retried).
    last_rx: Instant,
    /// A complete request has arrived.
    served: bool,
}

struct Dispatcher {
    index: usize,
    poll: Poll,
    listener: Option<TcpListener>,
    inboxes: Vec<Arc<Inbox>>,
    conns: HashMap<u64, Conn>,
    next_id: u64,
    rr: usize,
    handler: Arc<dyn Handler>,
    out: Vec<u8>,
    /// Reply buffers handed back after their frame was written (no allocation per reply).
    pool: Buffers,
    /// The connection that last delivered requests. While spinning, it is read directly before
    /// asking epoll (one syscall instead of `epoll_wait` + `read` for a single busy client).
    hot: Option<u64>,
    limits: Arc<Limits>,
    last_sweep: Instant,
    last_retry: Instant,
    /// Connections of this thread waiting for buffer budget.
    waiting: usize,
}

/// Most reply buffers a dispatcher keeps for reuse, and the largest it keeps among them.
const POOL_MAX: usize = 1024;
const POOL_MAX_BUF: usize = 64 * 1024;
/// Large reply buffers (up to a message) a dispatcher keeps: a thread serving 1 MiB replies
/// reuses them instead of allocating (and faulting in) a fresh megabyte per reply.
const POOL_BIG_MAX: usize = 2;

/// A dispatcher's spare reply buffers: many small ones, a few large ones.
#[derive(Default)]
struct Buffers {
    small: Vec<Vec<u8>>,
    big: Vec<Vec<u8>>,
}

impl Buffers {
    /// Keep `v` if there is room for it.
    fn recycle(&mut self, mut v: Vec<u8>) {
        let cap = v.capacity();
        let list = match cap {
            0 => return,
            c if c <= POOL_MAX_BUF && self.small.len() < POOL_MAX => &mut self.small,
            c if c > POOL_MAX_BUF && c <= MAX_MESSAGE && self.big.len() < POOL_BIG_MAX => {
                &mut self.big
            }
            _ => return,
        };
        v.clear();
        list.push(v);
    }

    /// A buffer for the next reply: a large one after a large reply (replies of one thread
    /// tend to come in runs of one size), else a small one.
    fn next(&mut self, after_big: bool) -> Vec<u8> {
        let big = if after_big { self.big.pop() } else { None };
        big.or_else(|| self.small.pop()).unwrap_or_default()
    }
}

impl Dispatcher {
    fn run(&mut self, shared: &ServerShared, spin: Option<Duration>) -> io::Result<()> {
        if let Some(l) = &mut self.listener {
            self.poll
                .registry()
                .register(l, LISTENER, Interest::READABLE)?;
        }
        let mut events = Events::with_capacity(256);
        let mut last_work = Instant::now();
        let mut tick = 0u32;
        loop {
            if shared.stopping() {
                return Ok(());
            }
            let spinning = match spin {
                None => true,
                Some(s) => last_work.elapsed() < s,
            };
            // Spinning with one hot connection: read it directly, and ask epoll only every
            // HOT_TRIES_PER_EPOLL-th turn (new connections, other clients, writability) or when
            // the inbox has news (deferred replies).
            tick = tick.wrapping_add(1);
            if spinning
                && !tick.is_multiple_of(HOT_TRIES_PER_EPOLL)
                && !self.inboxes[self.index].pending.load(Ordering::Relaxed)
            {
                if let Some(id) = self.hot {
                    if self.on_readable(id) {
                        last_work = Instant::now();
                    }
                    continue;
                }
            }
            let timeout = if spinning {
                Duration::ZERO
            } else if self.waiting > 0 {
                BUDGET_RETRY
            } else {
                DISPATCH_MAX_BLOCK.min(self.limits.cfg.sweep_interval())
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let mut worked = !events.is_empty();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(t) => {
                        let id = t as u64;
                        if (ev.is_readable() || ev.is_read_closed() || ev.is_error())
                            && self.on_readable(id)
                        {
                            self.hot = Some(id);
                        }
                        if ev.is_writable() {
                            self.flush(id);
                        }
                    }
                }
            }
            if self.inboxes[self.index]
                .pending
                .swap(false, Ordering::AcqRel)
            {
                worked = true;
                self.drain_inbox();
            }
            if worked {
                last_work = Instant::now();
            }
            self.timers();
        }
    }

    /// Retry connections waiting for budget; sweep the connections' timers when due.
    fn timers(&mut self) {
        let now = Instant::now();
        let sweep = now.duration_since(self.last_sweep) >= self.limits.cfg.sweep_interval();
        let retry = self.waiting > 0 && now.duration_since(self.last_retry) >= BUDGET_RETRY;
        if !sweep && !retry {
            return;
        }
        self.last_retry = now;
        if sweep {
            self.last_sweep = now;
        }
        let cfg = self.limits.cfg;
        let mut close = Vec::new();
        let mut again = Vec::new();
        for (&id, c) in &mut self.conns {
            if c.no_budget {
                again.push(id);
                continue;
            }
            if !sweep || c.closing {
                continue;
            }
            let partial = c.reader.has_partial();
            if partial && now.duration_since(c.last_rx) >= cfg.stall_timeout {
                close.push((id, true));
            } else if !partial
                && !c.served
                && c.outq.is_empty()
                && now.duration_since(c.accepted) >= cfg.idle_timeout
            {
                close.push((id, false));
            } else if !partial && now.duration_since(c.last_rx) >= cfg.sweep_interval() {
                c.reader.release_idle_buffer();
            }
        }
        for (id, stalled) in close {
            if stalled {
                let why = format!(
                    "a partial request got no byte for {:?} (--stall-timeout)",
                    cfg.stall_timeout
                );
                self.limits.closed_stalled.refused(&why);
                self.close(id, "stalled in a partial request");
            } else {
                let why = format!(
                    "no request within {:?} of connecting (--idle-timeout)",
                    cfg.idle_timeout
                );
                self.limits.closed_idle.refused(&why);
                self.close(id, "silent since it was accepted");
            }
        }
        for id in again {
            if let Some(c) = self.conns.get_mut(&id) {
                c.no_budget = false;
                c.last_rx = now;
                self.waiting -= 1;
            }
            self.on_readable(id);
        }
    }

    fn accept(&mut self) {
        loop {
            let Some(l) = &self.listener else { return };
            match l.accept() {
                Ok((s, peer)) => {
                    let max = self.limits.cfg.max_connections;
                    if self.limits.open.load(Ordering::Acquire) >= max {
                        drop(s);
                        let why = format!(
                            "{max} connections are open (--max-connections); closed one from {peer}"
                        );
                        self.limits.refused.refused(&why);
                        continue;
                    }
                    self.limits.open.fetch_add(1, Ordering::AcqRel);
                    let _ = s.set_nodelay(true);
                    let target = self.rr % self.inboxes.len();
                    self.rr += 1;
                    tracing::debug!(%peer, dispatch = target, "accepted tcp connection");
                    if target == self.index {
                        self.add_conn(s);
                    } else {
                        self.inboxes[target].data.lock().conns.push(s);
                        self.inboxes[target].wake();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn add_conn(&mut self, mut s: TcpStream) {
        let id = self.next_id;
        self.next_id += 1;
        if let Err(e) = self.poll.registry().register(
            &mut s,
            Token(id as usize),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!("register failed: {e}");
            self.limits.open.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let now = Instant::now();
        self.conns.insert(
            id,
            Conn {
                stream: s,
                reader: FrameReader::with_budget(self.limits.budget.clone()),
                outq: VecDeque::new(),
                queued: 0,
                read_paused: false,
                closing: false,
                no_budget: false,
                accepted: now,
                last_rx: now,
                served: false,
            },
        );
        // Data may already be waiting (edge-triggered registration after the fact).
        self.on_readable(id);
    }

    fn drain_inbox(&mut self) {
        let InboxData { conns, replies } =
            std::mem::take(&mut *self.inboxes[self.index].data.lock());
        for s in conns {
            self.add_conn(s);
        }
        let mut touched = Vec::new();
        for (id, h, p) in replies {
            if let Some(c) = self.conns.get_mut(&id) {
                c.queued += p.len() + HEADER_LEN;
                c.outq.push_back(OutFrame {
                    hdr: h.encode(),
                    payload: p,
                    pos: 0,
                });
                touched.push(id);
            } // else: the connection closed meanwhile; drop the reply.
        }
        touched.dedup();
        for id in touched {
            self.flush(id);
        }
    }

    fn close(&mut self, id: u64, why: &str) {
        if self.hot == Some(id) {
            self.hot = None;
        }
        if let Some(mut c) = self.conns.remove(&id) {
            self.limits.open.fetch_sub(1, Ordering::AcqRel);
            if c.no_budget {
                self.waiting -= 1;
            }
            tracing::debug!(conn = id, why, "closing tcp connection");
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    /// Read and run every request waiting on `id`, then flush its replies. Returns whether any
    /// request (or end of stream) was found.
    fn on_readable(&mut self, id: u64) -> bool {
        let index = self.index;
        let Some(c) = self.conns.get_mut(&id) else {
            return false;
        };
        if c.read_paused || c.closing || c.no_budget {
            return false;
        }
        let read_before = c.reader.bytes_read();
        let handler = &*self.handler;
        let out = &mut self.out;
        let pool = &mut self.pool;
        let mut got = false;
        let inbox = &self.inboxes[index];
        let outq = &mut c.outq;
        let queued = &mut c.queued;
        let mut bad_frame = false;
        let spare = &mut None;
        let r = c
            .reader
            .read_frames(&mut c.stream, &mut |h: Header, p: Payload<'_>| {
                got = true;
                if h.flags.is_response() {
                    bad_frame = true;
                    return false;
                }
                let mut defer = || {
                    let sink: Arc<dyn ReplySink> = inbox.clone();
                    Responder::new(sink, Route::Conn(id), h.opcode, h.request_id)
                };
                let outcome = run_rpc(handler, &h, p.as_slice(), out, &mut defer);
                let (status, body) = match outcome {
                    // Hand the filled buffer to the queue, keep a pooled one for the next reply;
                    // a large request's buffer receives the next large request (no allocation).
                    Outcome::Reply(s) => {
                        if let Payload::Owned(v) = p {
                            *spare = Some(v);
                        }
                        let after_big = out.len() > POOL_MAX_BUF;
                        (s, std::mem::replace(out, pool.next(after_big)))
                    }
                    Outcome::Echo => match p {
                        Payload::Owned(v) => (Status::OK, v),
                        Payload::Borrowed(b) => {
                            let mut v = pool.next(false);
                            v.extend_from_slice(b);
                            (Status::OK, v)
                        }
                    },
                    Outcome::Deferred => {
                        if let Payload::Owned(v) = p {
                            *spare = Some(v);
                        }
                        return true;
                    }
                };
                let rh = Header::response(h.opcode, h.request_id, status.0, body.len() as u32);
                *queued += HEADER_LEN + body.len();
                outq.push_back(OutFrame {
                    hdr: rh.encode(),
                    payload: body,
                    pos: 0,
                });
                // Stop reading when too many reply bytes wait (client not reading): backpressure.
                *queued < STREAM_MAX_QUEUED_REPLY_BYTES
            });
        if let Some(v) = spare.take() {
            c.reader.give_spare(v);
        }
        if c.reader.bytes_read() != read_before {
            c.last_rx = Instant::now();
        }
        if got {
            c.served = true;
        }
        match r {
            Ok(ReadStop::WouldBlock) => {}
            Ok(ReadStop::NoBudget) => {
                c.no_budget = true;
                self.waiting += 1;
                let why = format!(
                    "{} of {} bytes are buffered (--max-buffered); a connection waits for room",
                    self.limits.budget.used(),
                    self.limits.cfg.max_buffered_bytes
                );
                self.limits.waiting.refused(&why);
            }
            Ok(ReadStop::Stopped) if bad_frame => {
                got = true;
                c.closing = true;
                tracing::debug!(conn = id, "client sent a response frame; closing");
            }
            Ok(ReadStop::Stopped) => c.read_paused = true,
            Ok(ReadStop::Eof) => {
                got = true;
                c.closing = true;
            }
            Err(FrameError::Io(e)) => {
                self.close(id, &e.to_string());
                return true;
            }
            Err(FrameError::Decode { err, reply_to }) => {
                got = true;
                tracing::debug!(conn = id, %err, "bad frame from client");
                c.closing = true;
                if let Some((op, rid)) = reply_to {
                    let status = match err {
                        crate::wire::DecodeError::TooLarge { .. } => Status::REQUEST_TOO_LARGE,
                        crate::wire::DecodeError::BadVersion { .. } => Status::BAD_PROTOCOL_VERSION,
                        _ => Status::REQUEST_FORMAT_ERROR,
                    };
                    let rh = Header::response(op, rid, status.0, 0);
                    c.queued += HEADER_LEN;
                    c.outq.push_back(OutFrame {
                        hdr: rh.encode(),
                        payload: Vec::new(),
                        pos: 0,
                    });
                }
            }
        }
        if got {
            self.flush(id);
        }
        got
    }

    fn flush(&mut self, id: u64) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        while !c.outq.is_empty() {
            // Batch whole frames into one vectored write.
            if c.outq.len() > 1 && c.outq[0].pos == 0 {
                match write_batch(&mut c.stream, &mut c.outq, &mut c.queued, &mut self.pool) {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => return self.close(id, &e.to_string()),
                }
            }
            let Some(f) = c.outq.front_mut() else { break };
            match write_frame(&mut c.stream, &f.hdr, &f.payload, f.pos) {
                Ok(pos) if pos == HEADER_LEN + f.payload.len() => {
                    c.queued -= pos;
                    if let Some(f) = c.outq.pop_front() {
                        self.pool.recycle(f.payload);
                    }
                }
                Ok(pos) => {
                    f.pos = pos;
                    break;
                }
                Err(e) => return self.close(id, &e.to_string()),
            }
        }
        if c.outq.is_empty() && c.closing {
            return self.close(id, "closed by peer or after an error reply");
        }
        if c.read_paused && c.queued < STREAM_MAX_QUEUED_REPLY_BYTES / 2 {
            c.read_paused = false;
            self.on_readable(id);
        }
    }
}

/// Frames per `writev` (two slices each; the kernel's limit is 1024 slices).
const WRITE_BATCH_FRAMES: usize = 256;

/// Spinning: direct reads of the hot connection per `epoll_wait`.
const HOT_TRIES_PER_EPOLL: u32 = 16;

/// Write up to [`WRITE_BATCH_FRAMES`] whole queued frames with one `writev`. Returns Ok(true) if every frame in the
/// batch went out (caller continues), Ok(false) on a partial write (positions updated).
fn write_batch(
    s: &mut TcpStream,
    q: &mut VecDeque<OutFrame>,
    queued: &mut usize,
    pool: &mut Buffers,
) -> io::Result<bool> {
    use std::io::{IoSlice, Write};
    // UIO_MAXIOV is 1024: up to 512 frames (header + payload) per writev, slices on the stack.
    let mut iov = [IoSlice::new(&[]); 2 * WRITE_BATCH_FRAMES];
    let mut k = 0;
    let mut n = 0;
    for f in q.iter().take(WRITE_BATCH_FRAMES) {
        iov[k] = IoSlice::new(&f.hdr);
        k += 1;
        if !f.payload.is_empty() {
            iov[k] = IoSlice::new(&f.payload);
            k += 1;
        }
        n += 1;
    }
    let mut written = loop {
        match s.write_vectored(&iov[..k]) {
            Ok(w) => break w,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    for _ in 0..n {
        let f = q.front_mut().expect("n <= len");
        let len = HEADER_LEN + f.payload.len();
        if written >= len {
            written -= len;
            *queued -= len;
            if let Some(f) = q.pop_front() {
                pool.recycle(f.payload);
            }
        } else {
            f.pos = written;
            return Ok(false);
        }
    }
    Ok(true)
}
