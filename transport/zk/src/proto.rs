//! The ZooKeeper client wire protocol ("jute" records), sans I/O: encoders for the requests the
//! client sends and checked decoders for what the server sends back.
//!
//! Framing: every packet is a 4-byte big-endian length followed by that many bytes. Integers are
//! big-endian; a string or buffer is an `i32` length (−1 = null) and the bytes; a vector is an
//! `i32` count (−1 = null) and the elements. A request is `RequestHeader {xid: i32, type: i32}`
//! and its record; a reply is `ReplyHeader {xid: i32, zxid: i64, err: i32}` and, when `err` is
//! 0, its record. The session starts with `ConnectRequest` / `ConnectResponse`, which have no
//! header.
//!
//! Invariants: every decoder checks a length against the bytes that remain (and against
//! [`MAX_PACKET`](super::MAX_PACKET)) before it allocates; no decoder panics on any input.

use super::{CreateMode, Op, OpResult, Stat, WatchEvent, ZkError};

pub use crate::codes::{err, err_name, opcode, xid};

/// Length of an encoded `Stat`.
pub const STAT_LEN: usize = 68;

/// Builds one packet (length prefix patched in by [`Writer::finish`]).
#[derive(Debug)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    /// An empty packet.
    pub fn new() -> Writer {
        Writer {
            buf: vec![0, 0, 0, 0],
        }
    }
    /// Append an `i32`.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Append an `i64`.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Append a `bool` (one byte).
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(u8::from(v));
        self
    }
    /// Append a buffer (or string): length then bytes. Lengths are checked by the caller against
    /// [`super::MAX_DATA`]; a slice longer than `i32::MAX` cannot be encoded and is written as
    /// null (the server then rejects the request).
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        match i32::try_from(v.len()) {
            Ok(n) => {
                self.i32(n);
                self.buf.extend_from_slice(v);
            }
            Err(_) => {
                self.i32(-1);
            }
        }
        self
    }
    /// Append a string.
    pub fn string(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    /// The packet with its length prefix.
    pub fn finish(mut self) -> Vec<u8> {
        let n = u32::try_from(self.buf.len() - 4).unwrap_or(u32::MAX);
        self.buf[..4].copy_from_slice(&n.to_be_bytes());
        self.buf
    }
}

/// Reads records from one packet body; every read checks the remaining length.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn short(what: &str, need: usize, have: usize) -> ZkError {
    ZkError::Protocol(format!(
        "truncated {what}: needs {need} bytes, {have} remain"
    ))
}

impl<'a> Reader<'a> {
    /// Read from `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ZkError> {
        if self.remaining() < n {
            return Err(short(what, n, self.remaining()));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// An `i32`.
    pub fn i32(&mut self, what: &str) -> Result<i32, ZkError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// An `i64`.
    pub fn i64(&mut self, what: &str) -> Result<i64, ZkError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    /// A `bool`.
    pub fn bool(&mut self, what: &str) -> Result<bool, ZkError> {
        Ok(self.take(1, what)?[0] != 0)
    }
    /// A buffer; null reads as empty. The length is checked against the bytes that remain
    /// before anything is copied.
    pub fn bytes(&mut self, what: &str) -> Result<Vec<u8>, ZkError> {
        let n = self.i32(what)?;
        if n < 0 {
            return Ok(Vec::new());
        }
        Ok(self.take(n as usize, what)?.to_vec())
    }
    /// A UTF-8 string; null reads as empty.
    pub fn string(&mut self, what: &str) -> Result<String, ZkError> {
        let b = self.bytes(what)?;
        String::from_utf8(b).map_err(|_| ZkError::Protocol(format!("{what} is not UTF-8")))
    }
    /// A `Stat`.
    pub fn stat(&mut self) -> Result<Stat, ZkError> {
        if self.remaining() < STAT_LEN {
            return Err(short("stat", STAT_LEN, self.remaining()));
        }
        Ok(Stat {
            czxid: self.i64("stat")?,
            mzxid: self.i64("stat")?,
            ctime: self.i64("stat")?,
            mtime: self.i64("stat")?,
            version: self.i32("stat")?,
            cversion: self.i32("stat")?,
            aversion: self.i32("stat")?,
            ephemeral_owner: self.i64("stat")?,
            data_length: self.i32("stat")?,
            num_children: self.i32("stat")?,
            pzxid: self.i64("stat")?,
        })
    }
    /// A vector of strings. The count is checked against the bytes that remain (each element
    /// takes at least 4) before the vector is allocated.
    pub fn strings(&mut self, what: &str) -> Result<Vec<String>, ZkError> {
        let n = self.i32(what)?;
        if n < 0 {
            return Ok(Vec::new());
        }
        let n = n as usize;
        if n > self.remaining() / 4 {
            return Err(ZkError::Protocol(format!(
                "{what}: {n} elements cannot fit in {} bytes",
                self.remaining()
            )));
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.string(what)?);
        }
        Ok(v)
    }
}

/// `ConnectRequest`: a new session (`session_id` 0) asking for `timeout_ms`.
pub fn connect_request(timeout_ms: i32, last_zxid: i64, session_id: i64, passwd: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.i32(0) // protocol version
        .i64(last_zxid)
        .i32(timeout_ms)
        .i64(session_id)
        .bytes(passwd)
        .bool(false); // read-only: no
    w.finish()
}

/// A decoded `ConnectResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponse {
    /// Negotiated session timeout (ms); ≤ 0 means the session expired.
    pub timeout_ms: i32,
    /// Session id.
    pub session_id: i64,
    /// Session password (for reconnecting).
    pub passwd: Vec<u8>,
}

/// Decode a `ConnectResponse` body (the trailing read-only flag is optional).
pub fn connect_response(body: &[u8]) -> Result<ConnectResponse, ZkError> {
    let mut r = Reader::new(body);
    let _protocol = r.i32("connect response")?;
    let timeout_ms = r.i32("connect response")?;
    let session_id = r.i64("connect response")?;
    let passwd = r.bytes("connect response password")?;
    if passwd.len() > 64 {
        return Err(ZkError::Protocol(format!(
            "connect response: session password of {} bytes (ZooKeeper sends 16)",
            passwd.len()
        )));
    }
    Ok(ConnectResponse {
        timeout_ms,
        session_id,
        passwd,
    })
}

/// The header of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    /// The request's xid (or a reserved one, see [`xid`]).
    pub xid: i32,
    /// The transaction id the server has seen.
    pub zxid: i64,
    /// Error code (0 = OK).
    pub err: i32,
}

/// Split a reply into header and record.
pub fn reply(body: &[u8]) -> Result<(ReplyHeader, &[u8]), ZkError> {
    let mut r = Reader::new(body);
    let h = ReplyHeader {
        xid: r.i32("reply header")?,
        zxid: r.i64("reply header")?,
        err: r.i32("reply header")?,
    };
    Ok((h, &body[r.pos..]))
}

/// A request packet: header then record.
pub fn request(xid: i32, op: i32, record: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::new();
    w.i32(xid).i32(op);
    record(&mut w);
    w.finish()
}

/// ACL `world:anyone` with every permission (`OPEN_ACL_UNSAFE`): the cluster's znodes are
/// protected by network access to ZooKeeper, as is usual for a private ensemble.
fn open_acl(w: &mut Writer) {
    w.i32(1).i32(31).string("world").string("anyone");
}

/// Record of `create`.
pub fn create(w: &mut Writer, path: &str, data: &[u8], mode: CreateMode) {
    w.string(path).bytes(data);
    open_acl(w);
    w.i32(mode as i32);
}

/// Record of `delete`.
pub fn delete(w: &mut Writer, path: &str, version: i32) {
    w.string(path).i32(version);
}

/// Record of `exists`, `getData`, `getChildren`.
pub fn path_watch(w: &mut Writer, path: &str, watch: bool) {
    w.string(path).bool(watch);
}

/// Record of `setData`.
pub fn set_data(w: &mut Writer, path: &str, data: &[u8], version: i32) {
    w.string(path).bytes(data).i32(version);
}

/// Record of `multi`; paths are already absolute (chroot applied by the caller).
pub fn multi(w: &mut Writer, ops: &[Op<'_>]) {
    // Each op: MultiHeader {type, done = false, err = -1}, then its request record.
    let header = |w: &mut Writer, code: i32| {
        w.i32(code).bool(false).i32(-1);
    };
    for op in ops {
        match op {
            Op::Create { path, data, mode } => {
                header(w, opcode::CREATE);
                create(w, path, data, *mode);
            }
            Op::Delete { path, version } => {
                header(w, opcode::DELETE);
                delete(w, path, *version);
            }
            Op::SetData {
                path,
                data,
                version,
            } => {
                header(w, opcode::SET_DATA);
                set_data(w, path, data, *version);
            }
            Op::Check { path, version } => {
                header(w, opcode::CHECK);
                w.string(path).i32(*version);
            }
        }
    }
    w.i32(-1).bool(true).i32(-1);
}

/// Decode a multi response: one result per op, in order. `strip` removes the chroot from created
/// paths.
pub fn multi_response(
    body: &[u8],
    ops: usize,
    strip: impl Fn(String) -> String,
) -> Result<Vec<OpResult>, ZkError> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    loop {
        let ty = r.i32("multi header")?;
        let done = r.bool("multi header")?;
        let code = r.i32("multi header")?;
        if done {
            break;
        }
        if out.len() >= ops {
            return Err(ZkError::Protocol(format!(
                "multi response has more results than the {ops} ops sent"
            )));
        }
        out.push(match ty {
            opcode::CREATE => OpResult::Created(strip(r.string("multi create result")?)),
            opcode::SET_DATA => OpResult::Set(r.stat()?),
            opcode::DELETE => OpResult::Deleted,
            opcode::CHECK => OpResult::Checked,
            opcode::ERROR => OpResult::Error(r.i32("multi error result")?),
            other => {
                return Err(ZkError::Protocol(format!(
                    "multi response: result type {other} (header code {code}) is not one this client sent"
                )))
            }
        });
    }
    if out.len() != ops {
        return Err(ZkError::Protocol(format!(
            "multi response has {} results for {ops} ops",
            out.len()
        )));
    }
    Ok(out)
}

/// Decode a watch notification (`WatcherEvent`).
pub fn watch_event(body: &[u8]) -> Result<WatchEvent, ZkError> {
    let mut r = Reader::new(body);
    let kind = r.i32("watch event")?;
    let state = r.i32("watch event")?;
    let path = r.string("watch event path")?;
    Ok(WatchEvent { kind, state, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_frames_and_reader_round_trips() {
        let mut w = Writer::new();
        w.i32(-7).i64(1 << 40).bool(true).string("/a").bytes(b"xyz");
        let p = w.finish();
        assert_eq!(&p[..4], &((p.len() - 4) as u32).to_be_bytes());
        let mut r = Reader::new(&p[4..]);
        assert_eq!(r.i32("x").unwrap(), -7);
        assert_eq!(r.i64("x").unwrap(), 1 << 40);
        assert!(r.bool("x").unwrap());
        assert_eq!(r.string("x").unwrap(), "/a");
        assert_eq!(r.bytes("x").unwrap(), b"xyz");
        assert_eq!(r.remaining(), 0);
        assert!(r.i32("x").is_err());
    }

    #[test]
    fn hostile_lengths_are_errors_not_allocations() {
        // A buffer claiming 2 GiB with 3 bytes behind it.
        let mut b = i32::MAX.to_be_bytes().to_vec();
        b.extend_from_slice(b"abc");
        assert!(Reader::new(&b).bytes("x").is_err());
        // A vector claiming a billion strings.
        let mut v = 1_000_000_000i32.to_be_bytes().to_vec();
        v.extend_from_slice(&[0; 16]);
        assert!(Reader::new(&v).strings("x").is_err());
        // Truncated stat, connect response, reply header, multi response, event.
        assert!(Reader::new(&[0; STAT_LEN - 1]).stat().is_err());
        assert!(connect_response(&[0; 10]).is_err());
        assert!(reply(&[0; 15]).is_err());
        assert!(multi_response(&[0; 3], 1, |s| s).is_err());
        assert!(watch_event(&[0; 8]).is_err());
        // A multi response with more results than ops, or fewer.
        let mut w = Writer::new();
        w.i32(opcode::CHECK).bool(false).i32(0);
        w.i32(opcode::CHECK).bool(false).i32(0);
        w.i32(-1).bool(true).i32(-1);
        let p = w.finish();
        assert!(multi_response(&p[4..], 1, |s| s).is_err());
        assert!(multi_response(&p[4..], 3, |s| s).is_err());
        assert_eq!(multi_response(&p[4..], 2, |s| s).unwrap().len(), 2);
    }

    #[test]
    fn every_prefix_of_every_reply_decodes_or_errs() {
        let mut w = Writer::new();
        w.i32(opcode::CREATE).bool(false).i32(0).string("/x");
        w.i32(opcode::SET_DATA).bool(false).i32(0);
        w.buf.extend_from_slice(&[1; STAT_LEN]);
        w.i32(opcode::ERROR).bool(false).i32(-101).i32(-101);
        w.i32(-1).bool(true).i32(-1);
        let p = w.finish();
        for n in 0..p.len() - 4 {
            let _ = multi_response(&p[4..4 + n], 3, |s| s);
            let _ = connect_response(&p[4..4 + n]);
            let _ = watch_event(&p[4..4 + n]);
            let _ = Reader::new(&p[4..4 + n]).strings("x");
        }
        let r = multi_response(&p[4..], 3, |s| s).unwrap();
        assert_eq!(r[0], OpResult::Created("/x".into()));
        assert_eq!(r[2], OpResult::Error(-101));
    }
}
