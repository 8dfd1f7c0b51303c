//! [`ZkSession`]: one ZooKeeper session over one TCP connection.
//!
//! Callers write a request under the write lock and wait on a per-xid channel; the reader
//! thread reads every packet, hands replies to their waiters, queues watch events and sends a
//! ping when nothing was sent for a third of the session timeout. When the connection breaks,
//! the server falls silent for two thirds of the timeout, or a packet does not decode, the
//! session is *lost*: every waiter gets [`ZkError::SessionLost`], later calls fail the same way,
//! and the owner opens a new session if it wants one.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
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
    peer: String,
    session_id: i64,
    timeout: Duration,
    write: Mutex<TcpStream>,
    last_send: Mutex<Instant>,
    pending: Mutex<Pending>,
    next_xid: AtomicI32,
    events: Mutex<VecDeque<WatchEvent>>,
    events_cv: Condvar,
    closing: AtomicBool,
}

impl Shared {
    fn fail(&self, reason: String) {
        let waiters = {
            let mut p = self.pending.lock();
            if p.lost.is_none() {
                if !self.closing.load(Ordering::Acquire) {
                    tracing::warn!(peer = %self.peer, session = format_args!("{:#x}", self.session_id), %reason, "ZooKeeper session lost");
                }
                p.lost = Some(reason.clone());
            }
            std::mem::take(&mut p.waiters)
        };
        for (_, w) in waiters {
            let _ = w.send(Err(ZkError::SessionLost(reason.clone())));
        }
        let _ = self.write.lock().shutdown(Shutdown::Both);
        self.events_cv.notify_all();
    }

    fn send(&self, packet: &[u8]) -> Result<(), ZkError> {
        let r = self.write.lock().write_all(packet);
        *self.last_send.lock() = Instant::now();
        r.map_err(|e| {
            let reason = format!("write to {}: {e}", self.peer);
            self.fail(reason.clone());
            ZkError::SessionLost(reason)
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
            .field("peer", &self.shared.peer)
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
fn read_packet(stream: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, String> {
    let mut frames = Frames { buf: Vec::new() };
    let mut chunk = [0u8; 512];
    loop {
        if let Some(p) = frames.next().map_err(|e| e.to_string())? {
            return Ok(p);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("no connect response in time".into());
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err("connection closed during the handshake".into()),
            Ok(n) => frames.buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn handshake(
    host: &(String, u16),
    timeout_ms: i32,
) -> Result<(TcpStream, proto::ConnectResponse), String> {
    let addrs: Vec<_> = (host.0.as_str(), host.1)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    let mut last = "no address".to_string();
    for a in addrs {
        let mut s = match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => s,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let _ = s.set_nodelay(true);
        s.write_all(&proto::connect_request(timeout_ms, 0, 0, &[0; 16]))
            .map_err(|e| e.to_string())?;
        let body = read_packet(&mut s, Instant::now() + CONNECT_TIMEOUT)?;
        let r = proto::connect_response(&body).map_err(|e| e.to_string())?;
        if r.timeout_ms <= 0 {
            return Err("the server refused the session (timeout 0)".into());
        }
        return Ok((s, r));
    }
    Err(last)
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
            match handshake(h, timeout_ms) {
                Ok((stream, resp)) => return Self::start(stream, h, resp),
                Err(e) => failures.push(format!("{}:{}: {e}", h.0, h.1)),
            }
        }
        Err(ZkError::Connect {
            hosts: addr.hosts_text(),
            reason: failures.join("; "),
        })
    }

    fn start(
        stream: TcpStream,
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
            peer: peer.clone(),
            session_id: resp.session_id,
            timeout,
            write: Mutex::new(stream),
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
        sh.send(&packet)?;
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

/// The reader thread: replies to waiters, events to the queue, pings when idle; ends (and fails
/// the session) on any error.
fn reader_loop(sh: &Shared, mut stream: TcpStream) {
    let ping_every = sh.timeout / 3;
    let silence_limit = sh.timeout * 2 / 3;
    let tick = (ping_every / 2).max(Duration::from_millis(10));
    if let Err(e) = stream.set_read_timeout(Some(tick)) {
        sh.fail(format!("cannot set a read timeout: {e}"));
        return;
    }
    let mut frames = Frames {
        buf: Vec::with_capacity(4096),
    };
    let mut chunk = vec![0u8; 64 * 1024];
    let mut last_recv = Instant::now();
    loop {
        if sh.pending.lock().lost.is_some() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return sh.fail(format!("{} closed the connection", sh.peer)),
            Ok(n) => {
                last_recv = Instant::now();
                frames.buf.extend_from_slice(&chunk[..n]);
                loop {
                    match frames.next() {
                        Ok(Some(p)) => {
                            if let Err(e) = deliver(sh, &p) {
                                return sh.fail(e.to_string());
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return sh.fail(e.to_string()),
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return sh.fail(format!("read from {}: {e}", sh.peer)),
        }
        if last_recv.elapsed() > silence_limit {
            return sh.fail(format!(
                "{} silent for {:?} (session timeout {:?})",
                sh.peer,
                last_recv.elapsed(),
                sh.timeout
            ));
        }
        let idle = sh.last_send.lock().elapsed();
        if idle >= ping_every
            && sh
                .send(&proto::request(xid::PING, opcode::PING, |_| {}))
                .is_err()
        {
            return;
        }
    }
}

/// Handle one packet from the server.
fn deliver(sh: &Shared, packet: &[u8]) -> Result<(), ZkError> {
    let (h, body) = proto::reply(packet)?;
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
