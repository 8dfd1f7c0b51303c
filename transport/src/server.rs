//! Server side, common to every transport: the [`Handler`] trait, the [`IncomingRpc`] a handler
//! sees, the [`Responder`] that completes a deferred RPC from another thread, and the
//! [`ServerHandle`] that `serve` returns.
//!
//! Dispatch threads run handlers to completion. A handler either replies at once
//! ([`IncomingRpc::reply`]) or defers ([`IncomingRpc::defer`]): the returned `Responder` is sent to
//! the thread that does the long work, and its `reply` wakes the dispatch thread (eventfd) which
//! then sends the response. `Ping` and `Echo` are answered by the transport itself; an opcode this
//! build does not know gets `UNIMPLEMENTED_REQUEST` without reaching the handler.
//!
//! A handler that panics aborts the process: nothing is caught and served on, since the
//! service's state may be half-changed. Only the transport's own per-request errors (a reply
//! over `MAX_PAYLOAD`, a forgotten `Responder`) become `INTERNAL_ERROR` replies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::conn_limits::ConnLimits;
use crate::locator::{Locator, TransportKind};
use crate::poll::PollMode;
use crate::wire::{Header, Opcode, Status};

/// Serves RPCs. Runs on a dispatch thread: keep it short, or [`IncomingRpc::defer`].
pub trait Handler: Send + Sync + 'static {
    /// Handle one RPC: reply, defer, or return (then the transport replies
    /// `UNIMPLEMENTED_REQUEST`).
    fn handle(&self, call: &mut IncomingRpc<'_>);
}

impl<F> Handler for F
where
    F: Fn(&mut IncomingRpc<'_>) + Send + Sync + 'static,
{
    fn handle(&self, call: &mut IncomingRpc<'_>) {
        self(call)
    }
}

/// A handler that serves nothing but the built-in `Ping` and `Echo`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHandler;

impl Handler for NoHandler {
    fn handle(&self, _call: &mut IncomingRpc<'_>) {}
}

/// Where a deferred reply goes: implemented by each transport's dispatch thread.
pub(crate) trait ReplySink: Send + Sync {
    /// Queue a response for `route` and wake the dispatch thread that owns it.
    fn deliver(&self, route: Route, header: Header, payload: Vec<u8>);
}

/// Which connection / peer a deferred reply belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Route {
    /// A stream connection, by its unique id on the owning dispatch thread.
    Conn(u64),
    /// The sink itself knows the destination (loopback; a datagram RPC's own sink).
    Direct,
}

/// Completes a deferred RPC from any thread. If dropped without replying, the client gets
/// `INTERNAL_ERROR` (so it never waits forever on a forgotten RPC).
pub struct Responder {
    sink: Arc<dyn ReplySink>,
    route: Route,
    opcode: u16,
    request_id: u64,
    done: bool,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("request_id", &self.request_id)
            .finish()
    }
}

impl Responder {
    pub(crate) fn new(
        sink: Arc<dyn ReplySink>,
        route: Route,
        opcode: u16,
        request_id: u64,
    ) -> Self {
        Responder {
            sink,
            route,
            opcode,
            request_id,
            done: false,
        }
    }

    /// Send the reply (copies `payload`).
    pub fn reply(self, status: Status, payload: &[u8]) {
        self.reply_vec(status, payload.to_vec())
    }

    /// Send the reply, taking ownership of the payload buffer.
    pub fn reply_vec(mut self, status: Status, payload: Vec<u8>) {
        self.send(status, payload);
    }

    fn send(&mut self, status: Status, mut payload: Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        if payload.len() > crate::limits::MAX_PAYLOAD {
            tracing::error!(
                len = payload.len(),
                "deferred reply exceeds MAX_PAYLOAD; sending INTERNAL_ERROR"
            );
            payload.clear();
            return self.sink.deliver(
                self.route,
                Header::response(self.opcode, self.request_id, Status::INTERNAL_ERROR.0, 0),
                payload,
            );
        }
        let h = Header::response(self.opcode, self.request_id, status.0, payload.len() as u32);
        self.sink.deliver(self.route, h, payload);
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.done {
            self.send(Status::INTERNAL_ERROR, Vec::new());
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyState {
    None,
    Replied(Status),
    Deferred,
}

/// One incoming RPC as a handler sees it.
pub struct IncomingRpc<'a> {
    opcode: Opcode,
    request_id: u64,
    payload: &'a [u8],
    out: &'a mut Vec<u8>,
    state: ReplyState,
    defer: &'a mut dyn FnMut() -> Responder,
}

impl std::fmt::Debug for IncomingRpc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingRpc")
            .field("opcode", &self.opcode)
            .field("request_id", &self.request_id)
            .field("len", &self.payload.len())
            .finish()
    }
}

impl<'a> IncomingRpc<'a> {
    /// The RPC type.
    pub fn opcode(&self) -> Opcode {
        self.opcode
    }
    /// The client's request id.
    pub fn request_id(&self) -> u64 {
        self.request_id
    }
    /// The request body (it outlives the borrow of `self`, so a handler can read the request
    /// while it writes the reply).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
    /// Reply now (copies `payload` into the connection's response buffer). A second reply, or a
    /// reply after `defer`, is ignored.
    pub fn reply(&mut self, status: Status, payload: &[u8]) {
        self.reply_with(status, |buf| buf.extend_from_slice(payload));
    }
    /// Reply now, writing the body straight into the response buffer (which starts empty).
    pub fn reply_with(&mut self, status: Status, fill: impl FnOnce(&mut Vec<u8>)) {
        if self.state != ReplyState::None {
            return;
        }
        self.out.clear();
        fill(self.out);
        self.state = ReplyState::Replied(status);
    }
    /// Build a reply straight in the response buffer (which starts empty) and decide after:
    /// `build` returns the status to send it with, or `None` to leave the RPC unanswered (what
    /// it wrote is discarded) so that another path can answer. `false` if not sent.
    pub fn try_reply_with(&mut self, build: impl FnOnce(&mut Vec<u8>) -> Option<Status>) -> bool {
        if self.state != ReplyState::None {
            return false;
        }
        self.out.clear();
        match build(self.out) {
            Some(status) => {
                self.state = ReplyState::Replied(status);
                true
            }
            None => {
                self.out.clear();
                false
            }
        }
    }
    /// Take the RPC off the dispatch thread: complete it later, from any thread, with the
    /// returned [`Responder`]. At most once per RPC (and not after `reply`): returns `None` then.
    pub fn defer(&mut self) -> Option<Responder> {
        if self.state != ReplyState::None {
            return None;
        }
        self.state = ReplyState::Deferred;
        Some((self.defer)())
    }
    /// Has a reply been given (or deferred)?
    pub fn answered(&self) -> bool {
        self.state != ReplyState::None
    }
}

/// What a dispatch thread must send after running an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Send `status` with the body left in `out`.
    Reply(Status),
    /// Send `OK` with the request payload as the body (built-in Echo, zero copy).
    Echo,
    /// A `Responder` will deliver the reply later.
    Deferred,
}

/// Run one RPC: built-ins first, then the handler. `out` is a reusable response buffer.
pub(crate) fn run_rpc(
    handler: &dyn Handler,
    header: &Header,
    payload: &[u8],
    out: &mut Vec<u8>,
    defer: &mut dyn FnMut() -> Responder,
) -> Outcome {
    out.clear();
    let Some(opcode) = Opcode::from_u16(header.opcode) else {
        return Outcome::Reply(Status::UNIMPLEMENTED_REQUEST);
    };
    match opcode {
        Opcode::Ping => return Outcome::Reply(Status::OK),
        Opcode::Echo => return Outcome::Echo,
        _ => {}
    }
    let mut call = IncomingRpc {
        opcode,
        request_id: header.request_id,
        payload,
        out,
        state: ReplyState::None,
        defer,
    };
    // A handler that panics may have left the service's state half-changed (an engine between
    // its log append and its hash-table insert): serving on would serve that state. The process
    // ends instead; a dead master is what recovery handles.
    let guard = AbortOnUnwind::new("an RPC handler", opcode.name());
    handler.handle(&mut call);
    std::mem::forget(guard);
    match call.state {
        ReplyState::None => {
            out.clear();
            Outcome::Reply(Status::UNIMPLEMENTED_REQUEST)
        }
        ReplyState::Replied(s) => {
            if out.len() > crate::limits::MAX_PAYLOAD {
                tracing::error!(
                    len = out.len(),
                    ?opcode,
                    "reply exceeds MAX_PAYLOAD; sending INTERNAL_ERROR"
                );
                out.clear();
                return Outcome::Reply(Status::INTERNAL_ERROR);
            }
            Outcome::Reply(s)
        }
        ReplyState::Deferred => Outcome::Deferred,
    }
}

/// Aborts the process if dropped while its thread unwinds from a panic. Armed around work whose
/// panic could leave shared state half-changed (an RPC handler, a worker pool's job), disarmed
/// with `std::mem::forget` when the work returns: serving on from such state would be worse
/// than the crash, which recovery handles.
#[derive(Debug)]
pub struct AbortOnUnwind {
    what: &'static str,
    name: &'static str,
}

impl AbortOnUnwind {
    /// A guard for `what` (e.g. "an RPC handler") named `name` (e.g. the opcode).
    pub fn new(what: &'static str, name: &'static str) -> AbortOnUnwind {
        AbortOnUnwind { what, name }
    }
}

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(
                what = self.what,
                name = self.name,
                "panicked: aborting the process (its state may be inconsistent)"
            );
            eprintln!(
                "faascache: {} ({}) panicked: aborting the process",
                self.what, self.name
            );
            std::process::abort();
        }
    }
}

/// Server options.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Number of dispatch threads (default 1).
    pub cores: usize,
    /// Pin dispatch thread *i* to core `first_core + i` with `core_affinity` (default true).
    pub pin: bool,
    /// First core to pin to.
    pub first_core: usize,
    /// How dispatch threads poll (default adaptive).
    pub poll: PollMode,
    /// Connection limits of stream servers (TCP; the verbs side channel): connections,
    /// buffered request bytes, silent and stalled connections.
    pub conn: ConnLimits,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            cores: 1,
            pin: true,
            first_core: 0,
            poll: PollMode::default(),
            conn: ConnLimits::default(),
        }
    }
}

/// State shared between a [`ServerHandle`] and its dispatch threads.
#[derive(Debug, Default)]
pub(crate) struct ServerShared {
    pub(crate) stop: AtomicBool,
}

impl ServerShared {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
    /// Called first thing on each dispatch thread: pin it and record its tid.
    pub(crate) fn enter_dispatch_thread(&self, cfg: &DispatchConfig, index: usize) {
        if cfg.pin {
            let core = cfg.first_core + index;
            let ids = core_affinity::get_core_ids().unwrap_or_default();
            match ids.iter().find(|c| c.id == core) {
                Some(&c) if core_affinity::set_for_current(c) => {
                    tracing::debug!(core, "dispatch thread pinned")
                }
                _ => tracing::warn!(core, "could not pin dispatch thread; running unpinned"),
            }
        }
    }
}

/// A running server. Dropping it shuts it down.
pub struct ServerHandle {
    pub(crate) local: Locator,
    pub(crate) shared: Arc<ServerShared>,
    pub(crate) threads: Vec<JoinHandle<()>>,
    pub(crate) wake: Box<dyn Fn() + Send + Sync>,
    pub(crate) poll: PollMode,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local", &self.local.to_string())
            .finish()
    }
}

impl ServerHandle {
    /// The locator clients should use (with the real port when the locator said `port=0`).
    pub fn local_locator(&self) -> &Locator {
        &self.local
    }
    /// The transport serving.
    pub fn transport(&self) -> TransportKind {
        self.local.kind()
    }
    /// The dispatch threads' polling mode.
    pub fn poll_mode(&self) -> PollMode {
        self.poll
    }
    /// CPU time (user + system) consumed so far by the dispatch threads, summed. For benchmarks:
    /// sample before and after a run.
    pub fn cpu_time(&self) -> Duration {
        use std::os::unix::thread::JoinHandleExt;
        self.threads
            .iter()
            .filter_map(|t| crate::sys::thread_cpu_time(t.as_pthread_t()))
            .sum()
    }
    /// Stop the dispatch threads and close every connection; waiting clients see their sessions
    /// fail. Returns when all dispatch threads have exited.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }
    fn stop_and_join(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        (self.wake)();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a dispatch thread panicked");
            }
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
