//! [`ZkSession`]: one ZooKeeper session, over one TCP connection at a time.
//!
//! Callers write a request under the write lock and wait on a per-xid channel; the reader
//! thread reads every packet, hands replies to their waiters, queues watch events and sends a
//! ping when nothing was sent for a third of the session timeout. When the connection breaks
//! (closed, reset, or the server silent for two thirds of the timeout) the reader fails the calls
//! in flight with [`ZkError::ConnectionLoss`] and resumes the session (same id and password) on
//! the ensemble's servers in turn until the session timeout has passed since the server was last
//! heard. A session that cannot be resumed, that the server says has expired, or whose server
//! sends bytes that do not decode is *lost*: every waiter gets [`ZkError::SessionLost`], later
//! calls fail the same way, and the owner opens a new session if it wants one.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::proto::{self, err, opcode, xid, Writer};
use super::{
    CreateMode, Op, OpResult, Stat, WatchEvent, ZkAddress, ZkError, CONNECT_TIMEOUT, MAX_DATA,
    MAX_PACKET,
};

/// Watch events kept for [`ZkSession::wait_event`]; older ones are dropped beyond this.
const MAX_QUEUED_EVENTS: usize = 1024;

type Reply = Result<(i32, Vec<u8>), ZkError>;

#[derive(Default)]
struct Pending {
    waiters: HashMap<i32, mpsc::Sender<Reply>>,
    /// Why the session is over (`None` while it lives).
    lost: Option<String>,
}

struct Shared {
    hosts: Vec<(String, u16)>,
    /// The server of the current connection (`host:port`).
    peer: Mutex<String>,
    session_id: i64,
    passwd: Vec<u8>,
    timeout: Duration,
    /// Highest transaction id seen (sent when resuming, so the server is not behind us).
    last_zxid: AtomicI64,
    write: Mutex<TcpStream>,
    /// False while the reader resumes the session on a new connection.
    connected: AtomicBool,
    last_send: Mutex<Instant>,
    pending: Mutex<Pending>,
    next_xid: AtomicI32,
    events: Mutex<VecDeque<WatchEvent>>,
    events_cv: Condvar,
    closing: AtomicBool,
}

impl Shared {
    fn peer(&self) -> String {
        self.peer.lock().clone()
    }

    /// The session is over: fail every waiter and every later call.
    fn fail(&self, reason: String) {
        let waiters = {
            let mut p = self.pending.lock();
            if p.lost.is_none() {
                if !self.closing.load(Ordering::Acquire) {
                    tracing::warn!(peer = %self.peer(), session = format_args!("{:#x}", self.session_id), %reason, "ZooKeeper session lost");
                }
                p.lost = Some(reason.clone());
            }
            std::mem::take(&mut p.waiters)
        };
        for (_, w) in waiters {
            let _ = w.send(Err(ZkError::SessionLost(reason.clone())));
        }
        self.connected.store(false, Ordering::Release);
        let _ = self.write.lock().shutdown(Shutdown::Both);
        self.events_cv.notify_all();
    }

    /// Write a packet. A failed write breaks the connection (the reader notices and resumes the
    /// session); the caller gets `ConnectionLoss`.
    fn send(&self, packet: &[u8]) -> Result<(), ZkError> {
        if !self.connected.load(Ordering::Acquire) {
            return Err(ZkError::ConnectionLoss("not connected".into()));
        }
        let mut w = self.write.lock();
        let r = w.write_all(packet);
        *self.last_send.lock() = Instant::now();
        r.map_err(|e| {
            let _ = w.shutdown(Shutdown::Both);
            ZkError::ConnectionLoss(format!("write to {}: {e}", self.peer()))
        })
    }
}

/// A live ZooKeeper session. Closing it (or dropping it) ends the session at once, which
/// deletes its ephemeral znodes.
pub struct ZkSession {
    shared: Arc<Shared>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for ZkSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkSession")
            .field("peer", &self.shared.peer())
            .field("session", &format_args!("{:#x}", self.shared.session_id))
            .finish()
    }
}

/// Accumulates bytes from the socket and cuts length-prefixed packets out of them.
struct Frames {
    buf: Vec<u8>,
}

impl Frames {
    fn next(&mut self) -> Result<Option<Vec<u8>>, ZkError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let n = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if n > MAX_PACKET {
            return Err(ZkError::Protocol(format!(
                "packet of {n} bytes exceeds the client limit of {MAX_PACKET}"
            )));
        }
        if self.buf.len() < 4 + n {
            return Ok(None);
        }
        let body = self.buf[4..4 + n].to_vec();
        self.buf.drain(..4 + n);
        Ok(Some(body))
    }
}

/// Read one whole packet (the connect handshake), waiting at most until `deadline`.
fn read_packet(stream: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, HandshakeError> {
    let mut frames = Frames { buf: Vec::new() };
    let mut chunk = [0u8; 512];
    loop {
        if let Some(p) = frames.next().map_err(HandshakeError::Protocol)? {
            return Ok(p);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HandshakeError::NoResponse);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(HandshakeError::Io)?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(HandshakeError::Closed),
            Ok(n) => frames.buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(HandshakeError::Io(e)),
        }
    }
}

/// Why talking to one server of the ensemble failed during the handshake.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    /// Its name does not resolve.
    #[error("cannot resolve: {0}")]
    Resolve(std::io::Error),
    /// It resolves to no address.
    #[error("no address")]
    NoAddress,
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(std::io::Error),
    /// It sent bytes that do not decode.
    #[error("{0}")]
    Protocol(ZkError),
    /// No connect response before the deadline.
    #[error("no connect response in time")]
    NoResponse,
    /// It closed the connection.
    #[error("connection closed during the handshake")]
    Closed,
    /// It answered for another session than the one resumed.
    #[error("the server resumed session {asked:#x} as {got:#x}")]
    OtherSession {
        /// The session asked for.
        asked: i64,
        /// The session answered.
        got: i64,
    },
}

/// Why a lost connection's session could not be resumed.
#[derive(Debug, thiserror::Error)]
enum ResumeError {
    /// The new connection could not be shared with the writer.
    #[error("cannot clone the connection: {0}")]
    Clone(std::io::Error),
    /// The ensemble says the session expired.
    #[error("the session expired")]
    Expired,
    /// No server resumed it before the session timeout; each distinct failure.
    #[error("no server resumed it within the session timeout ({})", .0.join("; "))]
    TimedOut(Vec<String>),
}

/// Open a connection to `host` and start (`session_id` 0) or resume a session.
fn handshake(
    host: &(String, u16),
    timeout_ms: i32,
    last_zxid: i64,
    session_id: i64,
    passwd: &[u8],
) -> Result<(TcpStream, proto::ConnectResponse), Handshake> {
    let addrs: Vec<_> = (host.0.as_str(), host.1)
        .to_socket_addrs()
        .map_err(|e| Handshake::Failed(HandshakeError::Resolve(e)))?
        .collect();
    let mut last = HandshakeError::NoAddress;
    for a in addrs {
        let mut s = match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => s,
            Err(e) => {
                last = HandshakeError::Io(e);
                continue;
            }
        };
        let _ = s.set_nodelay(true);
        let hello = proto::connect_request(timeout_ms, last_zxid, session_id, passwd);
        s.write_all(&hello)
            .map_err(|e| Handshake::Failed(HandshakeError::Io(e)))?;
        let body =
            read_packet(&mut s, Instant::now() + CONNECT_TIMEOUT).map_err(Handshake::Failed)?;
        let r = proto::connect_response(&body)
            .map_err(|e| Handshake::Failed(HandshakeError::Protocol(e)))?;
        if r.timeout_ms <= 0 {
            return Err(Handshake::Expired);
        }
        if session_id != 0 && r.session_id != session_id {
            return Err(Handshake::Failed(HandshakeError::OtherSession {
                asked: session_id,
                got: r.session_id,
            }));
        }
        return Ok((s, r));
    }
    Err(Handshake::Failed(last))
}

/// Why a handshake failed.
enum Handshake {
    /// The server says the session expired (or refused it).
    Expired,
    /// Could not connect or talk to this server.
    Failed(HandshakeError),
}

impl ZkSession {
    /// Open a session with the first server of the ensemble that answers, asking for
    /// `timeout` (the server clamps it to its `minSessionTimeout..maxSessionTimeout`).
    pub fn connect(addr: &ZkAddress, timeout: Duration) -> Result<ZkSession, ZkError> {
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let hosts = addr.hosts();
        let mut failures = Vec::new();
        // Spread processes over the ensemble: start at a per-process offset.
        let start = std::process::id() as usize % hosts.len().max(1);
        for i in 0..hosts.len() {
            let h = &hosts[(start + i) % hosts.len()];
            match handshake(h, timeout_ms, 0, 0, &[0; 16]) {
                Ok((stream, resp)) => return Self::start(stream, hosts, h, resp),
                Err(Handshake::Expired) => {
                    failures.push(format!("{}:{}: refused the session", h.0, h.1))
                }
                Err(Handshake::Failed(e)) => failures.push(format!("{}:{}: {e}", h.0, h.1)),
            }
        }
        Err(ZkError::Connect {
            hosts: addr.hosts_text(),
            reason: failures.join("; "),
        })
    }

    fn start(
        stream: TcpStream,
        hosts: &[(String, u16)],
        host: &(String, u16),
        resp: proto::ConnectResponse,
    ) -> Result<ZkSession, ZkError> {
        let peer = format!("{}:{}", host.0, host.1);
        let timeout = Duration::from_millis(resp.timeout_ms as u64);
        let read = stream.try_clone().map_err(|e| ZkError::Connect {
            hosts: peer.clone(),
            reason: e.to_string(),
        })?;
        let shared = Arc::new(Shared {
            hosts: hosts.to_vec(),
            peer: Mutex::new(peer.clone()),
            session_id: resp.session_id,
            passwd: resp.passwd,
            timeout,
            last_zxid: AtomicI64::new(0),
            write: Mutex::new(stream),
            connected: AtomicBool::new(true),
            last_send: Mutex::new(Instant::now()),
            pending: Mutex::new(Pending::default()),
            next_xid: AtomicI32::new(1),
            events: Mutex::new(VecDeque::new()),
            events_cv: Condvar::new(),
            closing: AtomicBool::new(false),
        });
        let sh = shared.clone();
        let reader = std::thread::Builder::new()
            .name("zk-session".into())
            .spawn(move || reader_loop(&sh, read))
            .map_err(|e| ZkError::Connect {
                hosts: peer.clone(),
                reason: format!("cannot start the session thread: {e}"),
            })?;
        tracing::debug!(%peer, session = format_args!("{:#x}", resp.session_id), ?timeout, "ZooKeeper session open");
        Ok(ZkSession {
            shared,
            reader: Mutex::new(Some(reader)),
        })
    }

    /// The session id (ephemeral znodes carry it as `ephemeral_owner`).
    pub fn session_id(&self) -> i64 {
        self.shared.session_id
    }

    /// The session timeout the server granted.
    pub fn timeout(&self) -> Duration {
        self.shared.timeout
    }

    /// `Ok` while the session lives; the reason once it is lost.
    pub fn alive(&self) -> Result<(), ZkError> {
        match &self.shared.pending.lock().lost {
            None => Ok(()),
            Some(r) => Err(ZkError::SessionLost(r.clone())),
        }
    }

    /// Send one request and wait for its reply: `(error code, record)`.
    fn call(
        &self,
        op_name: &'static str,
        op: i32,
        record: impl FnOnce(&mut Writer),
    ) -> Result<(i32, Vec<u8>), ZkError> {
        let sh = &self.shared;
        let (tx, rx) = mpsc::channel();
        let xid = {
            let mut p = sh.pending.lock();
            if let Some(r) = &p.lost {
                return Err(ZkError::SessionLost(r.clone()));
            }
            // Positive xids only (negative ones are reserved); wrap back to 1.
            let mut x = sh.next_xid.fetch_add(1, Ordering::Relaxed);
            if x <= 0 {
                sh.next_xid.store(2, Ordering::Relaxed);
                x = 1;
            }
            p.waiters.insert(x, tx);
            x
        };
        let packet = proto::request(xid, op, record);
        if packet.len() - 4 > MAX_DATA + 64 * 1024 {
            sh.pending.lock().waiters.remove(&xid);
            return Err(ZkError::TooLarge {
                len: packet.len() - 4,
                max: MAX_DATA,
            });
        }
        if let Err(e) = sh.send(&packet) {
            sh.pending.lock().waiters.remove(&xid);
            return Err(e);
        }
        let wait = sh.timeout.max(Duration::from_secs(1)) * 2;
        match rx.recv_timeout(wait) {
            Ok(r) => r,
            Err(_) => {
                sh.pending.lock().waiters.remove(&xid);
                Err(ZkError::Timeout {
                    op: op_name,
                    after: wait,
                })
            }
        }
    }

    fn api(op: &'static str, path: &str, code: i32) -> ZkError {
        ZkError::Api {
            op,
            path: path.to_string(),
            code,
        }
    }

    /// Create a znode; returns its path (with the sequence number for sequential modes).
    pub fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<String, ZkError> {
        check_data(data)?;
        let (code, body) = self.call("create", opcode::CREATE, |w| {
            proto::create(w, path, data, mode)
        })?;
        if code != err::OK {
            return Err(Self::api("create", path, code));
        }
        proto::Reader::new(&body).string("create response")
    }

    /// Create `path` and its missing parents as empty persistent znodes (existing ones are
    /// fine).
    pub fn create_all(&self, path: &str) -> Result<(), ZkError> {
        let mut at = String::new();
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            at.push('/');
            at.push_str(seg);
            match self.create(&at, &[], CreateMode::Persistent) {
                Ok(_) => {}
                Err(e) if e.code() == Some(err::NODE_EXISTS) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Delete a znode at `version` (−1: any version).
    pub fn delete(&self, path: &str, version: i32) -> Result<(), ZkError> {
        let (code, _) = self.call("delete", opcode::DELETE, |w| {
            proto::delete(w, path, version)
        })?;
        if code != err::OK {
            return Err(Self::api("delete", path, code));
        }
        Ok(())
    }

    /// The stat of a znode, `None` if absent; `watch` sets a watch that fires on its creation,
    /// deletion or change.
    pub fn exists(&self, path: &str, watch: bool) -> Result<Option<Stat>, ZkError> {
        let (code, body) = self.call("exists", opcode::EXISTS, |w| {
            proto::path_watch(w, path, watch)
        })?;
        match code {
            err::OK => Ok(Some(proto::Reader::new(&body).stat()?)),
            err::NO_NODE => Ok(None),
            c => Err(Self::api("exists", path, c)),
        }
    }

    /// Data and stat of a znode, `None` if absent.
    pub fn get_data(&self, path: &str, watch: bool) -> Result<Option<(Vec<u8>, Stat)>, ZkError> {
        let (code, body) = self.call("getData", opcode::GET_DATA, |w| {
            proto::path_watch(w, path, watch)
        })?;
        match code {
            err::OK => {
                let mut r = proto::Reader::new(&body);
                let data = r.bytes("getData response")?;
                let stat = r.stat()?;
                Ok(Some((data, stat)))
            }
            err::NO_NODE => Ok(None),
            c => Err(Self::api("getData", path, c)),
        }
    }

    /// Replace a znode's data if it is at `version` (−1: any); returns the new stat.
    pub fn set_data(&self, path: &str, data: &[u8], version: i32) -> Result<Stat, ZkError> {
        check_data(data)?;
        let (code, body) = self.call("setData", opcode::SET_DATA, |w| {
            proto::set_data(w, path, data, version)
        })?;
        if code != err::OK {
            return Err(Self::api("setData", path, code));
        }
        proto::Reader::new(&body).stat()
    }

    /// Names of a znode's children (unsorted).
    pub fn get_children(&self, path: &str, watch: bool) -> Result<Vec<String>, ZkError> {
        let (code, body) = self.call("getChildren", opcode::GET_CHILDREN, |w| {
            proto::path_watch(w, path, watch)
        })?;
        if code != err::OK {
            return Err(Self::api("getChildren", path, code));
        }
        proto::Reader::new(&body).strings("getChildren response")
    }

    /// Apply `ops` atomically: all or none. A failed op is [`ZkError::Multi`] with its index.
    pub fn multi(&self, ops: &[Op<'_>]) -> Result<Vec<OpResult>, ZkError> {
        for op in ops {
            if let Op::Create { data, .. } | Op::SetData { data, .. } = op {
                check_data(data)?;
            }
        }
        let (code, body) = self.call("multi", opcode::MULTI, |w| proto::multi(w, ops))?;
        let results = match proto::multi_response(&body, ops.len(), |s| s) {
            Ok(r) => r,
            // A failure reported in the header without results.
            Err(_) if code != err::OK => return Err(ZkError::Multi { index: 0, code }),
            Err(e) => return Err(e),
        };
        let failed = results.iter().enumerate().find_map(|(i, r)| match r {
            OpResult::Error(c) if *c != err::OK && *c != err::RUNTIME_INCONSISTENCY => {
                Some((i, *c))
            }
            _ => None,
        });
        match failed {
            Some((index, code)) => Err(ZkError::Multi { index, code }),
            None if code != err::OK => Err(ZkError::Multi { index: 0, code }),
            None => Ok(results),
        }
    }

    /// The next watch event, waiting up to `timeout`; `None` on timeout or when the session is
    /// lost.
    pub fn wait_event(&self, timeout: Duration) -> Option<WatchEvent> {
        let deadline = Instant::now() + timeout;
        let mut q = self.shared.events.lock();
        loop {
            if let Some(e) = q.pop_front() {
                return Some(e);
            }
            if self.alive().is_err() {
                return None;
            }
            if self
                .shared
                .events_cv
                .wait_until(&mut q, deadline)
                .timed_out()
            {
                return q.pop_front();
            }
        }
    }

    /// End the session now (its ephemeral znodes go at once) and stop its thread.
    pub fn close(&self) {
        let sh = &self.shared;
        if self.alive().is_ok() {
            sh.closing.store(true, Ordering::Release);
            // Best effort: wait briefly for the server's acknowledgement.
            let (tx, rx) = mpsc::channel();
            let x = {
                let mut p = sh.pending.lock();
                let x = sh.next_xid.fetch_add(1, Ordering::Relaxed).max(1);
                p.waiters.insert(x, tx);
                x
            };
            if sh
                .send(&proto::request(x, opcode::CLOSE_SESSION, |_| {}))
                .is_ok()
            {
                let _ = rx.recv_timeout(Duration::from_secs(2));
            }
        }
        sh.closing.store(true, Ordering::Release);
        sh.fail("closed by this process".into());
        if let Some(h) = self.reader.lock().take() {
            let _ = h.join();
        }
    }
}

impl Drop for ZkSession {
    fn drop(&mut self) {
        self.close();
    }
}

fn check_data(data: &[u8]) -> Result<(), ZkError> {
    if data.len() > MAX_DATA {
        return Err(ZkError::TooLarge {
            len: data.len(),
            max: MAX_DATA,
        });
    }
    Ok(())
}

/// How one connection ended.
enum Ended {
    /// The session is over (closing, expired, protocol violation): the reason.
    Fatal(String),
    /// The connection broke (the reason); the session may be resumed until `last_recv + timeout`.
    Broken(String, Instant),
}

/// The reader thread: serves a connection; when it breaks, resumes the session on a new one.
fn reader_loop(sh: &Shared, mut stream: TcpStream) {
    loop {
        let (reason, last_recv) = match serve_connection(sh, &mut stream) {
            Ended::Fatal(r) => return sh.fail(r),
            Ended::Broken(r, t) => (r, t),
        };
        if sh.closing.load(Ordering::Acquire) || sh.pending.lock().lost.is_some() {
            return sh.fail(reason);
        }
        sh.connected.store(false, Ordering::Release);
        // Calls in flight: their outcome is unknown to us.
        let waiters = std::mem::take(&mut sh.pending.lock().waiters);
        for (_, w) in waiters {
            let _ = w.send(Err(ZkError::ConnectionLoss(reason.clone())));
        }
        tracing::warn!(peer = %sh.peer(), session = format_args!("{:#x}", sh.session_id), %reason, "ZooKeeper connection lost; resuming the session");
        match resume(sh, last_recv + sh.timeout) {
            Ok(s) => stream = s,
            Err(e) => return sh.fail(format!("{reason}; the session could not be resumed: {e}")),
        }
    }
}

/// Resume the session on the ensemble's servers in turn (starting after the current one) until
/// `deadline`.
fn resume(sh: &Shared, deadline: Instant) -> Result<TcpStream, ResumeError> {
    let timeout_ms = i32::try_from(sh.timeout.as_millis()).unwrap_or(i32::MAX);
    let n = sh.hosts.len().max(1);
    let current = sh.peer();
    let first = sh
        .hosts
        .iter()
        .position(|(h, p)| format!("{h}:{p}") == current)
        .map_or(0, |i| i + 1);
    let mut failures = Vec::new();
    for attempt in 0.. {
        if Instant::now() >= deadline || sh.closing.load(Ordering::Acquire) {
            break;
        }
        let h = &sh.hosts[(first + attempt) % n];
        let zxid = sh.last_zxid.load(Ordering::Acquire);
        match handshake(h, timeout_ms, zxid, sh.session_id, &sh.passwd) {
            Ok((s, _)) => {
                let w = s.try_clone().map_err(ResumeError::Clone)?;
                *sh.write.lock() = w;
                *sh.peer.lock() = format!("{}:{}", h.0, h.1);
                *sh.last_send.lock() = Instant::now();
                sh.connected.store(true, Ordering::Release);
                tracing::info!(peer = %sh.peer(), session = format_args!("{:#x}", sh.session_id), "ZooKeeper session resumed");
                return Ok(s);
            }
            Err(Handshake::Expired) => return Err(ResumeError::Expired),
            Err(Handshake::Failed(e)) => failures.push(format!("{}:{}: {e}", h.0, h.1)),
        }
        if (attempt + 1) % n == 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    failures.dedup();
    Err(ResumeError::TimedOut(failures))
}

/// Serve one connection: replies to waiters, events to the queue, pings when idle.
fn serve_connection(sh: &Shared, stream: &mut TcpStream) -> Ended {
    let ping_every = sh.timeout / 3;
    let silence_limit = sh.timeout * 2 / 3;
    let tick = (ping_every / 2).max(Duration::from_millis(10));
    let mut last_recv = Instant::now();
    if let Err(e) = stream.set_read_timeout(Some(tick)) {
        return Ended::Broken(format!("cannot set a read timeout: {e}"), last_recv);
    }
    let mut frames = Frames {
        buf: Vec::with_capacity(4096),
    };
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(r) = &sh.pending.lock().lost {
            return Ended::Fatal(r.clone());
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Ended::Broken(format!("{} closed the connection", sh.peer()), last_recv)
            }
            Ok(n) => {
                last_recv = Instant::now();
                frames.buf.extend_from_slice(&chunk[..n]);
                loop {
                    match frames.next() {
                        Ok(Some(p)) => {
                            if let Err(e) = deliver(sh, &p) {
                                return Ended::Fatal(e.to_string());
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return Ended::Fatal(e.to_string()),
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Ended::Broken(format!("read from {}: {e}", sh.peer()), last_recv),
        }
        if last_recv.elapsed() > silence_limit {
            return Ended::Broken(
                format!(
                    "{} silent for {:?} (session timeout {:?})",
                    sh.peer(),
                    last_recv.elapsed(),
                    sh.timeout
                ),
                last_recv,
            );
        }
        let idle = sh.last_send.lock().elapsed();
        if idle >= ping_every {
            if let Err(e) = sh.send(&proto::request(xid::PING, opcode::PING, |_| {})) {
                return Ended::Broken(e.to_string(), last_recv);
            }
        }
    }
}

/// Handle one packet from the server.
fn deliver(sh: &Shared, packet: &[u8]) -> Result<(), ZkError> {
    let (h, body) = proto::reply(packet)?;
    if h.zxid > 0 {
        sh.last_zxid.fetch_max(h.zxid, Ordering::AcqRel);
    }
    match h.xid {
        xid::PING | xid::AUTH | xid::SET_WATCHES => Ok(()),
        xid::NOTIFICATION => {
            let ev = proto::watch_event(body)?;
            let mut q = sh.events.lock();
            if q.len() >= MAX_QUEUED_EVENTS {
                q.pop_front();
            }
            q.push_back(ev);
            sh.events_cv.notify_all();
            Ok(())
        }
        x => {
            if h.err == err::SESSION_EXPIRED {
                return Err(ZkError::SessionLost(
                    "the server says the session expired".into(),
                ));
            }
            let waiter = sh.pending.lock().waiters.remove(&x);
            match waiter {
                Some(w) => {
                    let _ = w.send(Ok((h.err, body.to_vec())));
                }
                None => tracing::debug!(xid = x, "ZooKeeper reply nobody waits for (timed out)"),
            }
            Ok(())
        }
    }
}
