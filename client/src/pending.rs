//! Pipelined single-object operations: start many, then wait for each.
//!
//! `read_async` / `write_async` / `remove_async` look up the master, send the RPC on its
//! session and return at once; [`Pending::wait`] takes the reply. The fast path is one
//! `Session::send` and one `PendingRpc::wait`. If the reply is retryable (or the send or the
//! session failed), `wait` finishes the operation through the ordinary retrying path, with the
//! same rpc id for a mutation, so the semantics equal those of the blocking calls.

use std::time::Instant;

use faascache_protocol::msg::master::{
    ReadRequest, ReadResponse, RemoveRequest, VersionResponse, WriteRequest,
};
use faascache_protocol::msg::{self, Failure, Message, Request};
use faascache_transport::{Opcode, PendingRpc, Status};

use crate::client::{check_key, check_value, failure_error, Client, Object};
use crate::error::{disposition, Disposition, Error, Result, TableId};
use crate::lease::RpcGuard;
use crate::options::{ReadOptions, WriteOptions};

#[derive(Debug)]
enum Op {
    Read { key: Vec<u8> },
    Write { key: Vec<u8>, value: Vec<u8> },
    Remove { key: Vec<u8> },
}

/// An operation in flight; see [`Client::read_async`]. Dropping it abandons the operation (a
/// mutation may or may not happen).
///
/// ```no_run
/// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
/// let t = c.table_id("users")?;
/// let p: faascache_client::Pending<u64> = c.write_async(t, b"k", b"v")?;
/// let version = p.wait()?;
/// # Ok::<(), faascache_client::Error>(())
/// ```
#[derive(Debug)]
pub struct Pending<T> {
    client: Client,
    table: TableId,
    op: Op,
    guard: Option<RpcGuard>,
    rpc: Option<(PendingRpc, String)>,
    /// A reply taken by `is_ready`, kept for `wait`.
    ready: Option<faascache_transport::Result<(Status, Vec<u8>)>>,
    started: Instant,
    decode: fn(Status, &[u8]) -> std::result::Result<T, Failure>,
    from_outcome: fn(Outcome) -> Result<T>,
}

/// What the retrying path produced.
#[derive(Debug)]
enum Outcome {
    Object(Object),
    Version(u64),
    Removed(Option<u64>),
}

fn wrong_outcome<T>(o: Outcome) -> Result<T> {
    Err(Error::Protocol(format!(
        "internal: unexpected outcome {o:?}"
    )))
}

fn outcome_object(o: Outcome) -> Result<Object> {
    match o {
        Outcome::Object(v) => Ok(v),
        o => wrong_outcome(o),
    }
}

fn outcome_version(o: Outcome) -> Result<u64> {
    match o {
        Outcome::Version(v) => Ok(v),
        o => wrong_outcome(o),
    }
}

fn outcome_removed(o: Outcome) -> Result<Option<u64>> {
    match o {
        Outcome::Removed(v) => Ok(v),
        o => wrong_outcome(o),
    }
}

fn decode_read(status: Status, p: &[u8]) -> std::result::Result<Object, Failure> {
    match msg::decode_reply::<ReadResponse<'_>>(status, p) {
        Ok(r) => Ok(Object {
            value: r.value.to_vec(),
            version: r.version,
        }),
        Err(Ok(f)) => Err(f),
        Err(Err(e)) => Err(malformed(status, e)),
    }
}

fn decode_version(status: Status, p: &[u8]) -> std::result::Result<u64, Failure> {
    match msg::decode_reply::<VersionResponse>(status, p) {
        Ok(r) => Ok(r.version),
        Err(Ok(f)) => Err(f),
        Err(Err(e)) => Err(malformed(status, e)),
    }
}

fn decode_removed(status: Status, p: &[u8]) -> std::result::Result<Option<u64>, Failure> {
    decode_version(status, p).map(|v| (v != 0).then_some(v))
}

/// A reply that does not decode, carried as a failure with a status that is final.
fn malformed(_status: Status, e: msg::MsgError) -> Failure {
    Failure {
        status: Status::RESPONSE_FORMAT_ERROR,
        version: 0,
        detail: e.to_string(),
    }
}

impl Client {
    /// Sends `payload` to the master owning `key` of `table` (from the cached map); `None` if
    /// that is not possible right now (the retrying path will handle it in `wait`).
    fn send_to_owner(
        &self,
        table: TableId,
        key: &[u8],
        op: Opcode,
        payload: &[u8],
    ) -> Option<(PendingRpc, String)> {
        let map = self.tablet_map(table).ok()?;
        let master = map.lookup(msg::key_hash(key))?.master.clone();
        let session = self.master_session(&master).ok()?;
        match session.send(op, payload) {
            Ok(p) => Some((p, master)),
            Err(_) => {
                self.forget_master(&master);
                None
            }
        }
    }

    /// Starts a read; [`Pending::wait`] returns what [`Client::read`] would.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// let pending: Vec<_> = [&b"a"[..], b"b", b"c"].iter()
    ///     .map(|k| c.read_async(t, k))
    ///     .collect::<Result<_, _>>()?;
    /// for p in pending {
    ///     let _ = p.wait();
    /// }
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn read_async(&self, table: TableId, key: &[u8]) -> Result<Pending<Object>> {
        check_key(key)?;
        let req = ReadRequest {
            table,
            rules: msg::RejectRules::NONE,
            key,
        };
        let rpc = self.send_to_owner(table, key, ReadRequest::OPCODE, &req.to_vec());
        Ok(Pending {
            client: self.clone(),
            table,
            op: Op::Read { key: key.to_vec() },
            guard: None,
            rpc,
            ready: None,
            started: Instant::now(),
            decode: decode_read,
            from_outcome: outcome_object,
        })
    }

    /// Starts a write; [`Pending::wait`] returns the new version, as [`Client::write`] would.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// let a = c.write_async(t, b"a", b"1")?;
    /// let b = c.write_async(t, b"b", b"2")?;
    /// let (va, vb) = (a.wait()?, b.wait()?);
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn write_async(&self, table: TableId, key: &[u8], value: &[u8]) -> Result<Pending<u64>> {
        check_key(key)?;
        check_value(value)?;
        let guard = self.begin_rpc()?;
        let req = WriteRequest {
            table,
            rpc: self.stamp(&guard)?.0,
            rules: msg::RejectRules::NONE,
            key,
            value,
        };
        let rpc = self.send_to_owner(table, key, WriteRequest::OPCODE, &req.to_vec());
        Ok(Pending {
            client: self.clone(),
            table,
            op: Op::Write {
                key: key.to_vec(),
                value: value.to_vec(),
            },
            guard: Some(guard),
            rpc,
            ready: None,
            started: Instant::now(),
            decode: decode_version,
            from_outcome: outcome_version,
        })
    }

    /// Starts a remove; [`Pending::wait`] returns what [`Client::remove`] would.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// let removed = c.remove_async(t, b"a")?.wait()?;
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn remove_async(&self, table: TableId, key: &[u8]) -> Result<Pending<Option<u64>>> {
        check_key(key)?;
        let guard = self.begin_rpc()?;
        let req = RemoveRequest {
            table,
            rpc: self.stamp(&guard)?.0,
            rules: msg::RejectRules::NONE,
            key,
        };
        let rpc = self.send_to_owner(table, key, RemoveRequest::OPCODE, &req.to_vec());
        Ok(Pending {
            client: self.clone(),
            table,
            op: Op::Remove { key: key.to_vec() },
            guard: Some(guard),
            rpc,
            ready: None,
            started: Instant::now(),
            decode: decode_removed,
            from_outcome: outcome_removed,
        })
    }
}

impl<T> Pending<T> {
    /// Whether the first reply has arrived (or the send failed and `wait` will take the
    /// retrying path). Makes progress on the session without blocking.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// let mut p = c.read_async(t, b"a")?;
    /// while !p.is_ready() { /* do other work */ }
    /// let r = p.wait();
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn is_ready(&mut self) -> bool {
        if self.ready.is_some() {
            return true;
        }
        match &mut self.rpc {
            None => true,
            Some((p, _)) => match p.try_poll() {
                None => false,
                Some(r) => {
                    self.ready = Some(r);
                    true
                }
            },
        }
    }

    /// Waits for the result (up to the client's timeout, counted from the start of the
    /// operation), retrying as the blocking call would.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// let v = c.write_async(t, b"k", b"v")?.wait()?;
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn wait(mut self) -> Result<T> {
        let timeout = self.client.options().timeout;
        let deadline = self.started + timeout;
        let first = match self.ready.take() {
            Some(r) => Some(r),
            None => self
                .rpc
                .as_mut()
                .map(|(p, _)| p.wait(deadline.saturating_duration_since(Instant::now()))),
        };
        let master = self.rpc.take().map(|(_, m)| m);
        match first {
            Some(Ok((status, payload))) => match (self.decode)(status, &payload) {
                Ok(v) => return Ok(v),
                Err(f) => match disposition(f.status) {
                    Disposition::Retry => {}
                    Disposition::RefreshTablets => self.client.invalidate_map(self.table),
                    _ => {
                        if f.status == Status::TABLE_DOESNT_EXIST {
                            return Err(Error::NoSuchTable(self.client.table_label(self.table)));
                        }
                        return Err(failure_error(&f, &self.client.table_label(self.table)));
                    }
                },
            },
            Some(Err(faascache_transport::Error::Timeout(_))) => {
                return Err(self
                    .client
                    .timeout_error("the master did not answer".into()))
            }
            Some(Err(_)) => {
                if let Some(g) = &self.guard {
                    g.mark_maybe_ran(); // sent, no answer
                }
                if let Some(m) = &master {
                    self.client.forget_master(m);
                }
                self.client.invalidate_map(self.table);
            }
            None => {}
        }
        // The retrying path, same rpc id, same deadline.
        let o = &self.client.inner_opts();
        let mut backoff = crate::retry::Backoff::new(o.min_backoff, o.max_backoff, deadline);
        let c = &self.client;
        let out = match &self.op {
            Op::Read { key } => c
                .read_tracked(self.table, key, &ReadOptions::default(), &mut backoff)
                .map(Outcome::Object),
            Op::Write { key, value } => c
                .write_tracked(
                    self.table,
                    key,
                    value,
                    &WriteOptions::default(),
                    self.guard.as_ref().expect("a write has an rpc id"),
                    &mut backoff,
                )
                .map(Outcome::Version),
            Op::Remove { key } => c
                .remove_tracked(
                    self.table,
                    key,
                    &WriteOptions::default(),
                    self.guard.as_ref().expect("a remove has an rpc id"),
                    &mut backoff,
                )
                .map(Outcome::Removed),
        }?;
        (self.from_outcome)(out)
    }
}
