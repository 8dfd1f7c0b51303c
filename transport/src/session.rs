//! Client-side RPC sessions, common to every transport.
//!
//! A [`Session`] is a cheap `Clone` handle (an `Arc` inside) to one server. Many RPCs may be
//! outstanding on it at once (pipelining); each is a [`PendingRpc`] that the caller waits on,
//! polls, or cancels.
//!
//! **Caller-driven progress.** There is no background I/O thread: a thread waiting for a reply
//! becomes the session's *poller* (if no other thread is), reads the transport itself and routes
//! every reply it finds to its slot by request id. Other waiters spin or sleep on a condition
//! variable until their slot fills or the poller steps down; the poller hands over by notifying
//! them. On this VM a cross-core wake-up costs ~70 µs, so the common case — one thread, one
//! outstanding RPC — never involves another thread at all.
//!
//! Invariants: a request id is used once per session; a slot is removed exactly once (when its
//! reply is taken, or on cancel/drop); after a session failure every waiter and every later call
//! gets [`Error::SessionFailed`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, LinkError, Result};
use crate::limits::{CLIENT_MAX_BLOCK, DEFAULT_CONNECT_TIMEOUT, MAX_PAYLOAD};
use crate::locator::{Locator, TransportKind};
use crate::poll::PollMode;
use crate::wire::{Header, Opcode, Status};

/// Client options.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// How a waiting caller polls for its reply (default: adaptive).
    pub poll: PollMode,
    /// Give up connecting after this long (stream transports).
    pub connect_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            poll: PollMode::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// A reply routed to the session: request id, status, payload.
pub(crate) type Delivery = (u64, Status, Vec<u8>);

/// What a transport implements for the client side. Implementations keep their own locks:
/// `send_request` may be called by several threads at once, `progress` by one at a time.
pub(crate) trait ClientChannel: Send + Sync + 'static {
    /// Send one request. If the transport must wait (full socket buffer), it calls `stalled`
    /// between attempts so that replies keep being read (avoids a write/write deadlock).
    fn send_request(
        &self,
        header: &Header,
        payload: &[u8],
        stalled: &mut dyn FnMut(),
    ) -> std::result::Result<(), LinkError>;
    /// Send several requests, as few syscalls as the transport allows (one `writev` on TCP, one
    /// `sendmmsg` burst on UDP). Default: one `send_request` each.
    fn send_requests(
        &self,
        reqs: &[(Header, &[u8])],
        stalled: &mut dyn FnMut(),
    ) -> std::result::Result<(), LinkError> {
        for (h, p) in reqs {
            self.send_request(h, p, stalled)?;
        }
        Ok(())
    }
    /// Read whatever has arrived and push replies into `out`. If nothing has arrived, wait up
    /// to `wait` (`None`: do not wait). Only one thread at a time calls this.
    /// `Err` = the session is broken, with the reason.
    fn progress(
        &self,
        wait: Option<Duration>,
        out: &mut Vec<Delivery>,
    ) -> std::result::Result<(), LinkError>;
    /// The caller gave up on `request_id` (datagram transports drop its state).
    fn cancel(&self, _request_id: u64) {}
    /// A reply's payload the caller is done with, to receive a later large reply into
    /// (stream transports keep one; default: dropped).
    fn recycle(&self, _buf: Vec<u8>) {}
    /// Close the underlying connection (last handle dropped).
    fn close(&self) {}
}

enum Slot {
    Waiting,
    Done(Status, Vec<u8>),
}

struct State {
    slots: HashMap<u64, Slot>,
    failed: Option<LinkError>,
    polling: bool,
    /// Waiters asleep on the condition variable (so pollers notify only when someone listens).
    sleepers: usize,
}

pub(crate) struct SessionInner {
    chan: Box<dyn ClientChannel>,
    state: Mutex<State>,
    cv: Condvar,
    next_id: AtomicU64,
    peer: Locator,
    poll: PollMode,
}

impl Drop for SessionInner {
    fn drop(&mut self) {
        self.chan.close();
    }
}

/// A session to one server. Clone it freely; it is `Send + Sync`.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.inner.peer.to_string())
            .field("poll", &self.inner.poll)
            .finish()
    }
}

impl Session {
    pub(crate) fn new(chan: Box<dyn ClientChannel>, peer: Locator, poll: PollMode) -> Session {
        Session {
            inner: Arc::new(SessionInner {
                chan,
                state: Mutex::new(State {
                    slots: HashMap::new(),
                    failed: None,
                    polling: false,
                    sleepers: 0,
                }),
                cv: Condvar::new(),
                next_id: AtomicU64::new(1),
                peer,
                poll,
            }),
        }
    }

    /// The locator this session is connected to (the alternative that was chosen).
    pub fn peer(&self) -> &Locator {
        &self.inner.peer
    }

    /// The transport in use.
    pub fn transport(&self) -> TransportKind {
        self.inner.peer.kind()
    }

    /// The client's polling mode.
    pub fn poll_mode(&self) -> PollMode {
        self.inner.poll
    }

    /// Number of RPCs sent and not yet taken or cancelled.
    pub fn outstanding(&self) -> usize {
        self.inner.state.lock().slots.len()
    }

    /// Has the session failed? (`Some(reason)`)
    pub fn failure(&self) -> Option<String> {
        self.inner
            .state
            .lock()
            .failed
            .as_ref()
            .map(|e| e.to_string())
    }

    /// Send an RPC and wait for its reply (up to `timeout`; on timeout the RPC is cancelled).
    pub fn call(&self, op: Opcode, payload: &[u8], timeout: Duration) -> Result<(Status, Vec<u8>)> {
        let mut p = self.send(op, payload)?;
        p.wait(timeout)
    }

    /// Give back a reply's payload once done with it: a stream session receives its next large
    /// reply into it (no fresh allocation, no page faults). Optional; other buffers are dropped.
    pub fn recycle(&self, buf: Vec<u8>) {
        self.inner.chan.recycle(buf);
    }

    /// Send an RPC without waiting (pipelining). Wait for it with [`PendingRpc::wait`].
    pub fn send(&self, op: Opcode, payload: &[u8]) -> Result<PendingRpc> {
        self.send_raw(op.as_u16(), payload)
    }

    /// Send an RPC with a raw opcode number (protocol probes and tests: an opcode this build does
    /// not know is answered `UNIMPLEMENTED_REQUEST` by the server).
    pub fn send_raw(&self, opcode: u16, payload: &[u8]) -> Result<PendingRpc> {
        if payload.len() > MAX_PAYLOAD {
            return Err(Error::TooLarge {
                len: payload.len(),
                max: MAX_PAYLOAD,
            });
        }
        let inner = &self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = inner.state.lock();
            if let Some(r) = &st.failed {
                return Err(inner.failed_err(r));
            }
            st.slots.insert(id, Slot::Waiting);
        }
        let header = Header::request(opcode, id, payload.len() as u32);
        let mut stalled = || {
            inner.progress_once(Some(Duration::ZERO));
        };
        if let Err(reason) = inner.chan.send_request(&header, payload, &mut stalled) {
            inner.fail(reason.clone());
            inner.state.lock().slots.remove(&id);
            return Err(inner.failed_err(&reason));
        }
        Ok(PendingRpc {
            session: self.clone(),
            id,
            taken: false,
        })
    }
}

impl Session {
    /// Send several RPCs at once (pipelining): on TCP they leave in one `writev`, on UDP in one
    /// `sendmmsg` burst, and the server reads and answers them in batches. Returns one
    /// [`PendingRpc`] per request, in order.
    pub fn send_batch(&self, reqs: &[(Opcode, &[u8])]) -> Result<Vec<PendingRpc>> {
        let mut out = Vec::with_capacity(reqs.len());
        self.send_batch_into(reqs, &mut out)?;
        Ok(out)
    }

    /// [`Session::send_batch`], appending to `out` (reuse its allocation across batches).
    pub fn send_batch_into(
        &self,
        reqs: &[(Opcode, &[u8])],
        out: &mut impl Extend<PendingRpc>,
    ) -> Result<()> {
        if let Some((_, p)) = reqs.iter().find(|(_, p)| p.len() > MAX_PAYLOAD) {
            return Err(Error::TooLarge {
                len: p.len(),
                max: MAX_PAYLOAD,
            });
        }
        let inner = &self.inner;
        let first = inner
            .next_id
            .fetch_add(reqs.len() as u64, Ordering::Relaxed);
        {
            let mut st = inner.state.lock();
            if let Some(r) = &st.failed {
                return Err(inner.failed_err(r));
            }
            for i in 0..reqs.len() as u64 {
                st.slots.insert(first + i, Slot::Waiting);
            }
        }
        let frames: Vec<(Header, &[u8])> = reqs
            .iter()
            .zip(first..)
            .map(|((op, p), id)| (Header::request(op.as_u16(), id, p.len() as u32), *p))
            .collect();
        let mut stalled = || {
            inner.progress_once(Some(Duration::ZERO));
        };
        if let Err(reason) = inner.chan.send_requests(&frames, &mut stalled) {
            inner.fail(reason.clone());
            let mut st = inner.state.lock();
            for i in 0..reqs.len() as u64 {
                st.slots.remove(&(first + i));
            }
            return Err(inner.failed_err(&reason));
        }
        out.extend((0..reqs.len() as u64).map(|i| PendingRpc {
            session: self.clone(),
            id: first + i,
            taken: false,
        }));
        Ok(())
    }
}

impl SessionInner {
    fn failed_err(&self, reason: &LinkError) -> Error {
        Error::SessionFailed {
            peer: self.peer.to_string(),
            reason: reason.to_string(),
        }
    }

    fn fail(&self, reason: LinkError) {
        let mut st = self.state.lock();
        if st.failed.is_none() {
            tracing::debug!(peer = %self.peer, %reason, "session failed");
            st.failed = Some(reason);
        }
        drop(st);
        self.cv.notify_all();
    }

    /// If no one is polling, poll once (waiting up to `wait`) and deliver. Returns whether this
    /// thread was the poller.
    fn progress_once(&self, wait: Option<Duration>) -> bool {
        {
            let mut st = self.state.lock();
            if st.polling || st.failed.is_some() {
                return false;
            }
            st.polling = true;
        }
        let mut out = Vec::new();
        let r = self.chan.progress(wait, &mut out);
        let mut st = self.state.lock();
        st.polling = false;
        let delivered = !out.is_empty();
        for (id, status, data) in out {
            if let Some(slot) = st.slots.get_mut(&id) {
                if matches!(slot, Slot::Waiting) {
                    *slot = Slot::Done(status, data);
                }
            } // else: cancelled or unknown id — drop the late reply.
        }
        if let Err(reason) = r {
            if st.failed.is_none() {
                tracing::debug!(peer = %self.peer, %reason, "session failed");
                st.failed = Some(reason);
            }
        }
        // Wake sleepers only if there is news for them: a reply may be theirs, or the session
        // failed. (A sleeper also re-checks on its own at least every CLIENT_MAX_BLOCK.)
        let notify = st.sleepers > 0 && (delivered || st.failed.is_some());
        drop(st);
        if notify {
            self.cv.notify_all();
        }
        true
    }
}

/// An RPC in flight. Dropping it without taking the reply cancels it.
pub struct PendingRpc {
    session: Session,
    id: u64,
    taken: bool,
}

impl std::fmt::Debug for PendingRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRpc")
            .field("id", &self.id)
            .field("taken", &self.taken)
            .finish()
    }
}

impl PendingRpc {
    /// The request id (unique within the session).
    pub fn request_id(&self) -> u64 {
        self.id
    }

    /// Take the reply if it has arrived (or the error if the session failed).
    fn check(&mut self) -> Option<Result<(Status, Vec<u8>)>> {
        if self.taken {
            return Some(Err(Error::AlreadyTaken));
        }
        let inner = &self.session.inner;
        let mut st = inner.state.lock();
        if let Some(Slot::Done(..)) = st.slots.get(&self.id) {
            let Some(Slot::Done(s, d)) = st.slots.remove(&self.id) else {
                unreachable!()
            };
            self.taken = true;
            // Leaving: hand the poller role to a sleeping waiter, if any.
            let hand_over = st.sleepers > 0;
            drop(st);
            if hand_over {
                inner.cv.notify_one();
            }
            return Some(Ok((s, d)));
        }
        if let Some(r) = &st.failed {
            let e = inner.failed_err(r);
            st.slots.remove(&self.id);
            self.taken = true;
            return Some(Err(e));
        }
        None
    }

    /// Make one non-blocking attempt at progress; return the reply if it is there.
    pub fn try_poll(&mut self) -> Option<Result<(Status, Vec<u8>)>> {
        if let Some(r) = self.check() {
            return Some(r);
        }
        self.session.inner.progress_once(Some(Duration::ZERO));
        self.check()
    }

    /// Wait up to `timeout` for the reply (a reply already received is returned even with a
    /// zero timeout). On [`Error::Timeout`] the RPC stays outstanding: wait again, or cancel it.
    pub fn wait(&mut self, timeout: Duration) -> Result<(Status, Vec<u8>)> {
        let inner = self.session.inner.clone();
        let start = Instant::now();
        let deadline = start.checked_add(timeout);
        let spin_until = inner.poll.spin_budget().map(|s| start + s);
        loop {
            if let Some(r) = self.check() {
                return r;
            }
            let now = Instant::now();
            let left = match deadline {
                Some(d) if now >= d => {
                    // Out of time: one non-blocking attempt at progress first, so that a reply
                    // already received is returned (a zero timeout polls; callers sharing one
                    // deadline among several RPCs depend on it).
                    inner.progress_once(Some(Duration::ZERO));
                    return self.check().unwrap_or(Err(Error::Timeout(timeout)));
                }
                Some(d) => d - now,
                None => CLIENT_MAX_BLOCK,
            };
            let spinning = match spin_until {
                None => true,
                Some(t) => now < t,
            };
            let wait = if spinning {
                Duration::ZERO
            } else {
                left.min(CLIENT_MAX_BLOCK)
            };
            if inner.progress_once(Some(wait)) {
                continue;
            }
            // Another thread polls (or the session failed: `check` reports it).
            if spinning {
                std::hint::spin_loop();
                continue;
            }
            let mut st = inner.state.lock();
            let ready = !matches!(st.slots.get(&self.id), Some(Slot::Waiting));
            if st.polling && !ready && st.failed.is_none() {
                st.sleepers += 1;
                inner.cv.wait_for(&mut st, left.min(CLIENT_MAX_BLOCK));
                st.sleepers -= 1;
            }
        }
    }

    /// Give up on the RPC. A reply that arrives later is dropped.
    pub fn cancel(mut self) {
        self.cancel_inner();
    }

    fn cancel_inner(&mut self) {
        if !self.taken {
            self.taken = true;
            let inner = &self.session.inner;
            inner.state.lock().slots.remove(&self.id);
            inner.chan.cancel(self.id);
        }
    }
}

impl Drop for PendingRpc {
    fn drop(&mut self) {
        self.cancel_inner();
    }
}
