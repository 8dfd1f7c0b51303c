//! Tables backed by an object store (`docs/faas.md`): creating them, their configuration,
//! `flush` (wait until dirty objects are in the store), `invalidate` (drop clean copies after a
//! change made outside the cache) and `read_object` (an object of any size with its store
//! metadata, read piece by piece with `ReadObject`).
//!
//! Whole-table calls (`flush(table, None, ..)`, `invalidate_prefix`) go to every master that
//! owns a tablet of the table (from a fresh tablet map) and sum the answers; a master that
//! answers a retryable status, or whose session fails, is asked again after a back-off.

use std::collections::{BTreeSet, VecDeque};
use std::io::Write;
use std::time::{Duration, Instant};

use faascache_protocol::msg::faas::{
    CheckBackingRequest, FlushRequest, FlushResponse, GetTableConfigRequest, InvalidateRequest,
    InvalidateResponse, ObjectMeta, ReadObjectRequest, ReadObjectResponse, TableBacking,
    MAX_READ_OBJECT_PIECE,
};
use faascache_protocol::msg::{self, Message, Request};
use faascache_transport::{CallError, PendingRpc, Session, Status};

use crate::client::{check_key, Attempt, Client};
use crate::error::{Error, Result, TableId};
use crate::options::RejectRules;
use crate::retry::Backoff;

mod piece;
pub use piece::ObjectPiece;

/// How often [`Client::read_object`] starts over because the object changed between pieces
/// before it reports [`Error::VersionMismatch`].
pub const READ_OBJECT_RESTARTS: u32 = 8;
/// What `read_object` reserves up front at most (the rest grows as pieces arrive), so that a
/// damaged length cannot make the client allocate without bound.
const RESERVE_MAX: u64 = 64 << 20;
/// Extra time a flush's RPC may take beyond the flush's own timeout (the master's answer).
const FLUSH_MARGIN: Duration = Duration::from_secs(2);

/// An object read with [`Client::read_object_to`] or [`Client::read_object_range_to`]: its
/// store metadata, version and length, and how many bytes were written to the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// ETag, content type, last modified, user metadata.
    pub meta: ObjectMeta,
    /// The object's version in the cache.
    pub version: u64,
    /// Bytes written to the sink.
    pub len: u64,
    /// Length of the whole object (`len` for a whole read; a range may be shorter).
    pub total_len: u64,
}

/// `backing`, if it is one a coordinator accepts (else why not, as `InvalidArgument`).
fn checked(backing: &TableBacking) -> Result<&TableBacking> {
    backing
        .validate()
        .map_err(|e| Error::InvalidArgument(e.0))?;
    Ok(backing)
}

impl Client {
    /// Creates a table backed by an object store (or an ephemeral table without one), spread
    /// over `span` masters; returns its id. Creating it again with the same backing returns the
    /// same id; with another backing, [`Error::TableExists`] names the backing it has.
    ///
    /// ```no_run
    /// use faascache_client::{Client, TableBacking, WritePolicy};
    /// let c = Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let photos = c.create_backed_table("photos", 2,
    ///     &TableBacking::new("s3://bucket/photos", WritePolicy::WriteBack))?;
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn create_backed_table(
        &self,
        name: &str,
        span: u32,
        backing: &TableBacking,
    ) -> Result<TableId> {
        let backing = checked(backing)?;
        // A table of that name exists: the coordinator answers (same id, or which backing it
        // has); only a new table's store is checked.
        let exists = !matches!(self.table_config(name), Err(Error::NoSuchTable(_)));
        if backing.has_store() && !exists {
            self.check_backing(&backing.url)?;
        }
        self.create_backed_table_unchecked(name, span, backing)
    }

    /// [`Client::create_backed_table`] without asking a server to check the store first (the
    /// servers may get their credentials later; a wrong backing then shows at the first miss
    /// or upload, as `StoreRejected`).
    pub fn create_backed_table_unchecked(
        &self,
        name: &str,
        span: u32,
        backing: &TableBacking,
    ) -> Result<TableId> {
        self.create_table_with(name, span, Some(checked(backing)?.clone()))
    }

    /// Asks a master to open the store of `url` with its own credentials and check them and
    /// the bucket or container (one request to the store): a wrong backing is refused here,
    /// when it is given, instead of at the first miss. [`Error::StoreRejected`] (credentials,
    /// no such bucket) or [`Error::StoreUnavailable`] with the store's message. Masters that
    /// do not know the RPC (older versions) or no master up: `Ok` (nothing could check).
    pub fn check_backing(&self, url: &str) -> Result<()> {
        // The store's own timeout (30 s) bounds the master's check; wait a little longer.
        const CHECK_TIMEOUT: Duration = Duration::from_secs(40);
        let servers = self.servers()?;
        let mut last = None;
        for s in servers.iter().filter(|s| s.status == "up") {
            let Ok(session) = self.master_session(&s.locator) else {
                continue;
            };
            match faascache_transport::call(
                &session,
                &CheckBackingRequest { url },
                CHECK_TIMEOUT,
                |_| (),
            ) {
                Ok(()) => return Ok(()),
                Err(CallError::Failed(f)) if f.status == Status::UNIMPLEMENTED_REQUEST => {
                    return Ok(())
                }
                Err(CallError::Failed(f)) if f.status == Status::SERVICE_NOT_AVAILABLE => {}
                Err(CallError::Failed(f)) => {
                    return Err(crate::client::failure_error(&f, ""));
                }
                Err(CallError::Malformed(e)) => {
                    return Err(crate::client::malformed(CheckBackingRequest::OPCODE, e))
                }
                Err(CallError::Transport(e)) => {
                    self.forget_master(&s.locator);
                    last = Some(Error::from_transport(
                        e,
                        &format!("server at {}", s.locator),
                    ));
                }
            }
        }
        match last {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The backing of table `name` (`None`: a plain table).
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// if let Some(b) = c.table_config("photos")? {
    ///     println!("{} ({})", b.url, b.policy);
    /// }
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn table_config(&self, name: &str) -> Result<Option<TableBacking>> {
        let id = self.table_id(name)?;
        let r = self.coord_call(&GetTableConfigRequest { table_id: id }, name, |r| r.backing);
        if let Err(Error::NoSuchTable(_)) = &r {
            self.forget_table_name(name); // dropped (and maybe created again): ask afresh
        }
        r
    }

    /// Waits until the objects of `table` that are dirty now (or just `key`) are in the store,
    /// at most `timeout`; returns how many objects and bytes were uploaded meanwhile. Past the
    /// timeout: [`Error::Timeout`] with the master's "N objects still dirty; store: ..." text.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("photos")?;
    /// let done = c.flush(t, None, std::time::Duration::from_secs(30))?;
    /// println!("{} objects, {} bytes uploaded", done.objects, done.bytes);
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn flush(
        &self,
        table: TableId,
        key: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<FlushResponse> {
        let timeout_ms = timeout.as_millis().min(u32::MAX as u128) as u32;
        let mut backoff = self.backoff_until(timeout + FLUSH_MARGIN);
        let req = FlushRequest {
            table,
            key: key.unwrap_or_default(),
            timeout_ms,
        };
        let call = |s: &Session, left: Duration| {
            faascache_transport::call(s, &req, left, |r| r).map_err(|e| flush_timeout(e, timeout))
        };
        let parts = match key {
            Some(k) => {
                check_key(k)?;
                vec![self.on_master(
                    table,
                    msg::key_hash(k),
                    &mut backoff,
                    |s, left| match call(s, left) {
                        Err(Ok(e)) => Err(Attempt::Fail(e)),
                        Ok(v) => Ok(v),
                        Err(Err(e)) => self.classify(table, FlushRequest::OPCODE, Err(e)),
                    },
                )?]
            }
            None => self.on_every_master(table, FlushRequest::OPCODE, &mut backoff, call)?,
        };
        Ok(parts
            .iter()
            .fold(FlushResponse::default(), |a, p| FlushResponse {
                objects: a.objects + p.objects,
                bytes: a.bytes + p.bytes,
            }))
    }

    /// Drops the clean cached copy of `key` (after the object changed in the store outside the
    /// cache); a dirty copy is kept (it is newer than the store's) and counted as such.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("photos")?;
    /// let r = c.invalidate(t, b"cat.jpg")?;
    /// println!("{} dropped, {} dirty kept", r.invalidated, r.kept_dirty);
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn invalidate(&self, table: TableId, key: &[u8]) -> Result<InvalidateResponse> {
        check_key(key)?;
        let req = InvalidateRequest {
            table,
            prefix: false,
            key,
        };
        self.on_master(table, msg::key_hash(key), &mut self.backoff(), |s, left| {
            let r = faascache_transport::call(s, &req, left, |r| r);
            self.classify(table, InvalidateRequest::OPCODE, r)
        })
    }

    /// Drops the clean cached copies of every key of `table` starting with `prefix` (empty:
    /// the whole table) on every master; dirty copies are kept and counted.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("photos")?;
    /// let r = c.invalidate_prefix(t, b"2024/")?;
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn invalidate_prefix(&self, table: TableId, prefix: &[u8]) -> Result<InvalidateResponse> {
        if prefix.len() > msg::MAX_KEY_LEN {
            return Err(Error::TooLarge {
                what: "prefix",
                len: prefix.len(),
                max: msg::MAX_KEY_LEN,
            });
        }
        let req = InvalidateRequest {
            table,
            prefix: true,
            key: prefix,
        };
        let parts = self.on_every_master(
            table,
            InvalidateRequest::OPCODE,
            &mut self.backoff(),
            |s, left| faascache_transport::call(s, &req, left, |r| r).map_err(Err),
        )?;
        Ok(parts
            .iter()
            .fold(InvalidateResponse::default(), |a, p| InvalidateResponse {
                invalidated: a.invalidated + p.invalidated,
                kept_dirty: a.kept_dirty + p.kept_dirty,
            }))
    }

    /// Reads a whole object of a backed table, whatever its size, with its store metadata and
    /// version: piece by piece (`ReadObject`, 1 MiB each), starting over if the object changes
    /// between pieces (at most [`READ_OBJECT_RESTARTS`] times, then [`Error::VersionMismatch`]).
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("photos")?;
    /// let (meta, bytes, version) = c.read_object(t, b"big.tar")?;
    /// println!("{} bytes, etag {}", bytes.len(), meta.etag);
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn read_object(&self, table: TableId, key: &[u8]) -> Result<(ObjectMeta, Vec<u8>, u64)> {
        self.read_object_with(table, key, RejectRules::NONE)
    }

    /// [`Client::read_object`] under reject rules (checked by the master on every piece).
    pub(crate) fn read_object_with(
        &self,
        table: TableId,
        key: &[u8],
        rules: RejectRules,
    ) -> Result<(ObjectMeta, Vec<u8>, u64)> {
        check_key(key)?;
        let mut last = 0;
        for _ in 0..=READ_OBJECT_RESTARTS {
            let mut data = Vec::new();
            let r = self.read_pieces(table, key, rules, (0, None), |total, piece| {
                if let Some(total) = total {
                    data.reserve(total.min(RESERVE_MAX) as usize);
                }
                data.extend_from_slice(piece);
                Ok(())
            })?;
            match r {
                Ok((meta, version, _)) => return Ok((meta, data, version)),
                Err(changed_to) => last = changed_to,
            }
        }
        Err(Error::VersionMismatch { current: last })
    }

    /// Streams an object of any size into `out` (one piece in memory at a time). If the
    /// object changes after the first piece was written, the bytes written cannot be taken
    /// back: [`Error::VersionMismatch`] (read it again).
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("photos")?;
    /// let mut f = std::fs::File::create("/tmp/big.tar").unwrap();
    /// let info = c.read_object_to(t, b"big.tar", &mut f)?;
    /// println!("{} bytes at version {}", info.len, info.version);
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn read_object_to(
        &self,
        table: TableId,
        key: &[u8],
        out: &mut impl Write,
    ) -> Result<ObjectInfo> {
        check_key(key)?;
        self.read_range_to(table, key, (0, None), out)
    }

    /// Streams bytes `range.0 .. range.0 + range.1` (to the end when `None`) of an object into
    /// `out`, clamped to the object's length; `Err(InvalidArgument)` if the range starts past
    /// the end.
    pub(crate) fn read_range_to(
        &self,
        table: TableId,
        key: &[u8],
        range: (u64, Option<u64>),
        out: &mut impl Write,
    ) -> Result<ObjectInfo> {
        let mut len = 0u64;
        let r = self.read_pieces(table, key, RejectRules::NONE, range, |_, piece| {
            out.write_all(piece)
                .map_err(|e| Error::InvalidArgument(format!("writing the object failed: {e}")))?;
            len += piece.len() as u64;
            Ok(())
        })?;
        match r {
            Ok((meta, version, total_len)) => Ok(ObjectInfo {
                meta,
                version,
                len,
                total_len,
            }),
            Err(current) => Err(Error::VersionMismatch { current }),
        }
    }

    /// Reads the pieces of bytes `range.0 .. range.0 + range.1` (to the end when `None`) of an
    /// object, clamped to its length, in order into `sink` (`Some(total)` with the first);
    /// returns the metadata, version and the whole object's length. A range starting past the
    /// end is [`Error::InvalidArgument`] (at the end: no bytes). `Ok(Err(v))`: the object
    /// moved to version `v` after the first piece.
    ///
    /// The first piece goes through the retrying path (it learns the length and the master);
    /// the rest are pipelined on that master's session, [`PIECE_WINDOW`] in flight, so a large
    /// object streams instead of paying a round trip per MiB. Anything unexpected in the
    /// window (an error status, a lost session, a short piece) hands the rest back to the
    /// retrying path, which classifies it.
    pub(crate) fn read_pieces(
        &self,
        table: TableId,
        key: &[u8],
        rules: RejectRules,
        (from, len): (u64, Option<u64>),
        mut sink: impl FnMut(Option<u64>, &[u8]) -> Result<()>,
    ) -> Result<std::result::Result<(ObjectMeta, u64, u64), u64>> {
        let mut offset = from;
        let mut first: Option<(ObjectMeta, Identity)> = None;
        // Where the range ends: known (clamped to the object) once the first piece is in.
        let mut end = from.saturating_add(len.unwrap_or(u64::MAX));
        loop {
            let req = ReadObjectRequest {
                table,
                rules,
                key,
                offset,
                max_len: (end - offset).min(MAX_READ_OBJECT_PIECE as u64) as u32,
            };
            let payload = req.to_vec();
            let mut backoff = self.backoff();
            let (session, reply, piece) =
                self.on_master(table, msg::key_hash(key), &mut backoff, |s, left| {
                    let r = s
                        .call(ReadObjectRequest::OPCODE, &payload, left)
                        .map_err(CallError::Transport)
                        .and_then(|(status, reply)| {
                            let piece = decode_piece(status, &reply)?;
                            Ok((s.clone(), reply, piece))
                        });
                    self.classify(table, ReadObjectRequest::OPCODE, r)
                })?;
            let data = &reply[piece.data.clone()];
            let total = piece.total;
            if first.is_none() {
                if from > total {
                    return Err(Error::InvalidArgument(format!(
                        "the range starts at byte {from}, past the end of the object ({total} bytes)"
                    )));
                }
                end = end.min(total);
            }
            if offset + data.len() as u64 > end {
                return Err(Error::Protocol(format!(
                    "a ReadObject reply at offset {offset} carried {} bytes, past {end}",
                    data.len()
                )));
            }
            match &mut first {
                None => {
                    sink(Some(total), data)?;
                    first = Some((piece.meta.clone(), Identity::of(&piece)));
                }
                Some((_, id)) => {
                    if !id.accept(&piece) {
                        return Ok(Err(piece.version));
                    }
                    sink(None, data)?
                }
            }
            let got = data.len();
            offset += got as u64;
            session.recycle(reply);
            if offset < end && got == 0 {
                return Err(Error::Protocol(format!(
                    "a ReadObject reply carried no bytes at offset {offset} of {total}"
                )));
            }
            if offset < end {
                let id = &mut first.as_mut().expect("set by the first piece").1;
                match self.read_window(&session, &req, (offset, end), id, &mut sink)? {
                    Window::Reached(at) => offset = at,
                    Window::Changed(v) => return Ok(Err(v)),
                }
            }
            if offset >= end {
                let (meta, id) = first.expect("set by the first piece");
                return Ok(Ok((meta, id.version, total)));
            }
        }
    }

    /// Pipelines the pieces from `offset` to `end` (at most the end of the object `id`) on
    /// `session`, up to [`PIECE_WINDOW`] in flight, into `sink` in order. Stops at the first
    /// piece that is not a full piece of that object (or any failure) and says how far it
    /// got; the caller goes on from there with its retrying path.
    fn read_window(
        &self,
        session: &Session,
        base: &ReadObjectRequest<'_>,
        (mut offset, end): (u64, u64),
        id: &mut Identity,
        sink: &mut impl FnMut(Option<u64>, &[u8]) -> Result<()>,
    ) -> Result<Window> {
        let total = end.min(id.total);
        let piece = MAX_READ_OBJECT_PIECE as u64;
        let deadline = self.backoff();
        let mut inflight: VecDeque<PendingRpc> = VecDeque::with_capacity(PIECE_WINDOW);
        let mut next = offset;
        loop {
            while inflight.len() < PIECE_WINDOW && next < total {
                let req = ReadObjectRequest {
                    offset: next,
                    max_len: piece.min(total - next) as u32,
                    ..*base
                };
                match session.send(ReadObjectRequest::OPCODE, &req.to_vec()) {
                    Ok(p) => inflight.push_back(p),
                    Err(_) => break,
                }
                next += piece;
            }
            let Some(mut p) = inflight.pop_front() else {
                return Ok(Window::Reached(offset));
            };
            let Ok((status, reply)) = p.wait(deadline.remaining(Instant::now())) else {
                return Ok(Window::Reached(offset));
            };
            let Ok(got) = decode_piece(status, &reply) else {
                return Ok(Window::Reached(offset));
            };
            if !id.accept(&got) {
                return Ok(Window::Changed(got.version));
            }
            let want = piece.min(total - offset) as usize;
            if got.data.len() != want {
                return Ok(Window::Reached(offset));
            }
            sink(None, &reply[got.data])?;
            session.recycle(reply);
            offset += want as u64;
            if offset >= total {
                return Ok(Window::Reached(offset));
            }
        }
    }

    /// Runs `f` once on every master owning a tablet of `table` (fresh tablet map), asking
    /// again those that answer a retryable status until the back-off's deadline.
    /// `f` returns `Err(Ok(e))` for a final error of its own, `Err(Err(e))` to classify.
    fn on_every_master<T>(
        &self,
        table: TableId,
        opcode: faascache_transport::Opcode,
        backoff: &mut Backoff,
        mut f: impl FnMut(
            &Session,
            Duration,
        ) -> std::result::Result<T, std::result::Result<Error, CallError>>,
    ) -> Result<Vec<T>> {
        let mut done = BTreeSet::new();
        let mut out = Vec::new();
        loop {
            let masters: BTreeSet<String> = self
                .tablets(table)?
                .into_iter()
                .map(|t| t.master)
                .filter(|m| !done.contains(m))
                .collect();
            let mut cause = None;
            for m in masters {
                let s = match self.master_session(&m) {
                    Err(e) if e.is_transient() => {
                        cause = Some(e.to_string());
                        continue;
                    }
                    Err(e) => return Err(e),
                    Ok(s) => s,
                };
                let r = match f(&s, backoff.remaining(Instant::now())) {
                    Ok(v) => Ok(v),
                    Err(Ok(e)) => return Err(e),
                    Err(Err(e)) => self.classify(table, opcode, Err(e)),
                };
                match r {
                    Ok(v) => {
                        out.push(v);
                        done.insert(m);
                    }
                    Err(Attempt::Fail(e)) => return Err(e),
                    Err(Attempt::Retry(c) | Attempt::Refresh(c)) => cause = Some(c),
                    Err(Attempt::Reconnect(c)) => {
                        self.forget_master(&m);
                        cause = Some(c);
                    }
                }
            }
            let Some(cause) = cause else {
                return Ok(out);
            };
            tracing::debug!(%cause, table, "whole-table call: asking again");
            if !backoff.sleep() {
                return Err(self.timeout_error(cause));
            }
        }
    }

    fn backoff_until(&self, d: Duration) -> Backoff {
        let o = self.options();
        Backoff::new(o.min_backoff, o.max_backoff, Instant::now() + d)
    }
}

/// A flush that timed out on the master (`TIMEOUT` with "N objects still dirty; store: ...")
/// is final: [`Error::Timeout`] with the master's text. Other failures are classified.
/// Pieces of one object in flight at once after the first (bounds the replies buffered to
/// this many MiB).
const PIECE_WINDOW: usize = 4;

/// How far a pipelined window of pieces got.
enum Window {
    /// Every piece before this offset was handed to the sink.
    Reached(u64),
    /// The object changed to this version.
    Changed(u64),
}

/// What ties the pieces of one read together: the object's version and length — or, for a
/// piece served while the object is still being filled from the store (version 0, the master
/// answers it from the chunks already written), its length and the store's ETag.
#[derive(Debug, Clone)]
struct Identity {
    version: u64,
    total: u64,
    etag: String,
}

impl Identity {
    fn of(p: &Piece) -> Identity {
        Identity {
            version: p.version,
            total: p.total,
            etag: p.meta.etag.clone(),
        }
    }

    /// Whether `p` is a piece of this object (then a version it brings is adopted).
    fn accept(&mut self, p: &Piece) -> bool {
        if p.total != self.total {
            return false;
        }
        if p.version == self.version {
            return true;
        }
        let filling = p.version == 0 || self.version == 0;
        if filling && !self.etag.is_empty() && p.meta.etag == self.etag {
            self.version = self.version.max(p.version);
            return true;
        }
        false
    }
}

/// A decoded `ReadObject` reply whose data stays in the reply buffer (no copy).
struct Piece {
    version: u64,
    total: u64,
    meta: ObjectMeta,
    /// Where the data is in the reply.
    data: std::ops::Range<usize>,
}

fn decode_piece(status: Status, reply: &[u8]) -> std::result::Result<Piece, CallError> {
    match msg::decode_reply::<ReadObjectResponse<'_>>(status, reply) {
        Ok(r) => {
            let at = r.data.as_ptr() as usize - reply.as_ptr() as usize;
            Ok(Piece {
                version: r.version,
                total: r.total_len,
                meta: r.meta,
                data: at..at + r.data.len(),
            })
        }
        Err(Ok(f)) => Err(CallError::Failed(f)),
        Err(Err(e)) => Err(CallError::Malformed(e)),
    }
}

fn flush_timeout(e: CallError, timeout: Duration) -> std::result::Result<Error, CallError> {
    match e {
        CallError::Failed(f) if f.status == Status::TIMEOUT => Ok(Error::Timeout {
            timeout,
            cause: if f.detail.is_empty() {
                "objects are still dirty".into()
            } else {
                f.detail
            },
        }),
        e => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(version: u64, total: u64, etag: &str) -> Piece {
        Piece {
            version,
            total,
            meta: ObjectMeta {
                etag: etag.into(),
                ..ObjectMeta::default()
            },
            data: 0..0,
        }
    }

    #[test]
    fn pieces_of_an_object_being_filled_are_tied_by_length_and_etag() {
        // First piece answered during the fill (version 0), later ones from the cache.
        let mut id = Identity::of(&piece(0, 100, "\"e1\""));
        assert!(id.accept(&piece(0, 100, "\"e1\"")));
        assert!(id.accept(&piece(7, 100, "\"e1\"")));
        assert_eq!(id.version, 7, "the cached version is adopted");
        assert!(id.accept(&piece(7, 100, "\"e1\"")));
        assert!(
            !id.accept(&piece(8, 100, "\"e1\"")),
            "another cached version"
        );
        // Another object: other ETag, other length, or no ETag to compare.
        let mut id = Identity::of(&piece(0, 100, "\"e1\""));
        assert!(!id.accept(&piece(7, 100, "\"e2\"")));
        assert!(!id.accept(&piece(0, 101, "\"e1\"")));
        let mut id = Identity::of(&piece(0, 100, ""));
        assert!(!id.accept(&piece(7, 100, "")));
        // Cached first, a fill piece of the same store object after it.
        let mut id = Identity::of(&piece(5, 100, "\"e1\""));
        assert!(id.accept(&piece(0, 100, "\"e1\"")));
        assert_eq!(id.version, 5);
    }
    use faascache_protocol::msg::Failure;

    #[test]
    fn a_flush_timeout_keeps_the_masters_text() {
        let f = Failure {
            status: Status::TIMEOUT,
            version: 0,
            detail: "3 objects still dirty; store: connection refused".into(),
        };
        let e = flush_timeout(CallError::Failed(f), Duration::from_secs(4)).unwrap();
        assert!(e.to_string().contains("3 objects still dirty"), "{e}");
        assert!(matches!(e, Error::Timeout { timeout, .. } if timeout == Duration::from_secs(4)));
        let f = Failure {
            status: Status::RETRY,
            version: 0,
            detail: String::new(),
        };
        assert!(flush_timeout(CallError::Failed(f), Duration::ZERO).is_err());
    }

    #[test]
    fn store_failures_keep_their_details() {
        use crate::client::failure_error;
        for (status, detail) in [
            (Status::STORE_UNAVAILABLE, "GET s3://b/k: connection reset"),
            (Status::STORE_REJECTED, "bucket b does not exist"),
            (Status::WRITE_BACK_FULL, "64 MiB dirty, limit 64 MiB"),
            (Status::OBJECT_TOO_LARGE, "the object is 5000000 bytes"),
        ] {
            let f = Failure {
                status,
                version: 0,
                detail: detail.into(),
            };
            let e = failure_error(&f, "t");
            assert!(e.to_string().contains(detail), "{status}: {e}");
            let want = match status {
                Status::STORE_UNAVAILABLE => Error::StoreUnavailable(detail.into()),
                Status::STORE_REJECTED => Error::StoreRejected(detail.into()),
                Status::WRITE_BACK_FULL => Error::WriteBackFull(detail.into()),
                _ => Error::ObjectTooLarge(detail.into()),
            };
            assert_eq!(e, want);
        }
    }
}
