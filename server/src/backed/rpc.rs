//! The master's RPC handlers for backed tables' reads (`Read`, `ReadObject`, `MultiRead`
//! items) and `InvalidateObjects`, called from `master::service` once the registry says the
//! table is backed.

use std::sync::Arc;

use faascache_protocol::msg::faas::{CheckBackingRequest, InvalidateRequest, ReadObjectRequest};
use faascache_protocol::msg::master::ReadRequest;
use faascache_protocol::msg::{key_hash, ErrorReply, Message};
use faascache_storage::RejectRules;
use faascache_transport::server::IncomingRpc;
use faascache_transport::Status;

use super::counters::Counters;
use super::read::{Served, Want};
use super::registry::BackedTable;
use crate::master::{table_id, Master};

const NOT_OWNER: &str = "this master does not own the key's tablet: refresh the tablet map";

fn fail(call: &mut IncomingRpc<'_>, status: Status, detail: &str) {
    call.reply_with(status, |b| ErrorReply { version: 0, detail }.encode(b));
}

/// The backed table `wire` names, if any (no cost unless a backed table was ever served).
#[inline]
pub fn backed(m: &Master, wire: u64) -> Option<Arc<BackedTable>> {
    if !m.backed.any() {
        return None;
    }
    m.backed.get(table_id(wire)?)
}

fn reply(call: &mut IncomingRpc<'_>, s: Served, want: Want) {
    let (st, p) = s.encode(want);
    call.reply_with(st, |b| b.extend_from_slice(&p));
}

fn serve_call(
    m: &Arc<Master>,
    call: &mut IncomingRpc<'_>,
    t: &Arc<BackedTable>,
    key: &[u8],
    rules: RejectRules,
    want: Want,
) {
    if let Err(why) = m.check_serving() {
        return fail(call, Status::NOT_SERVING, why);
    }
    // Ownership is held across the engine read, as for every other table.
    let own = m.ownership.read();
    if let Err(s) = own.check_read(t.id, key_hash(key)) {
        drop(own);
        return fail(call, s, NOT_OWNER);
    }
    let answer = super::flight::read(m, t, key, rules, want, || call.defer().map(Some));
    drop(own);
    if let Some(s) = answer {
        reply(call, s, want);
    }
}

thread_local! {
    static HIT_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The common hit — a whole object of a table without revalidation or TTL — answered from the engine's bytes
/// with one copy and no allocation. `false`: take the general path.
fn fast_hit(
    m: &Master,
    call: &mut IncomingRpc<'_>,
    t: &BackedTable,
    req: &ReadRequest<'_>,
) -> bool {
    // Tables with revalidation or a TTL check the envelope's stamp: the general path.
    if t.backing.revalidate_ms > 0 || super::ttl::applies(t) || m.check_serving().is_err() {
        return false;
    }
    HIT_BUF.with(|b| {
        let mut buf = b.borrow_mut();
        buf.clear();
        let own = m.ownership.read();
        if own.check_read(t.id, key_hash(req.key)).is_err() {
            return false;
        }
        let Ok(version) = m.engine.read(t.id, req.key, &req.rules, &mut buf) else {
            return false;
        };
        drop(own);
        let Some(at) = super::envelope::whole_data_offset(&buf) else {
            return false;
        };
        Counters::bump(&m.counters.hits);
        let _ = m.engine.promote_if_old(t.id, req.key, version);
        let data = &buf[at..];
        call.reply_with(Status::OK, |out| {
            faascache_protocol::msg::master::ReadResponse::encode_head(version, data.len(), out);
            out.extend_from_slice(data);
        });
        if buf.capacity() > 64 * 1024 {
            *buf = Vec::new();
        }
        true
    })
}

/// `Read` of a backed table: `false` if the table is not backed (the caller serves it).
pub fn read(m: &Arc<Master>, call: &mut IncomingRpc<'_>) -> bool {
    // Which table, from the borrowed payload: a read of a table that is not backed costs no
    // copy (the payload is copied only to answer a backed one, as replying borrows the call).
    let backed_table = match ReadRequest::decode(call.payload()) {
        Ok(r) => backed(m, r.table),
        Err(_) => None,
    };
    let Some(t) = backed_table else {
        return false;
    };
    let payload = call.payload().to_vec();
    let Ok(req) = ReadRequest::decode(&payload) else {
        return false;
    };
    if fast_hit(m, call, &t, &req) {
        return true;
    }
    serve_call(m, call, &t, req.key, req.rules, Want::Read);
    true
}

/// `ReadObject`: a piece of an object of a backed table (or of any table: a plain value is
/// served as an object without metadata).
pub fn read_object(m: &Arc<Master>, call: &mut IncomingRpc<'_>) {
    let req = match ReadObjectRequest::decode(call.payload()) {
        Ok(r) => r,
        Err(e) => {
            let detail = format!("malformed ReadObject request: {e}");
            return fail(call, e.status(), &detail);
        }
    };
    let want = Want::Piece {
        offset: req.offset,
        max_len: req.max_len,
    };
    let Some(table) = table_id(req.table) else {
        return fail(
            call,
            Status::TABLE_DOESNT_EXIST,
            "table ids are below 2^32: no such table",
        );
    };
    let (key, rules) = (req.key.to_vec(), req.rules);
    match m.backed.get(table) {
        Some(t) => {
            if !fast_piece(m, call, &t, &key, &rules, req.offset, req.max_len) {
                serve_call(m, call, &t, &key, rules, want)
            }
        }
        None => plain_piece(m, call, table, &key, &rules, want),
    }
}

/// How much of a value is read to decode its envelope's header (and a manifest).
const PEEK: usize = 16 * 1024;

/// The common `ReadObject` hit — a whole object or a manifest whose chunks are all present, no
/// rules, no revalidation due — answered with one copy of each byte from the engine (ranges of
/// the value or chunks, never whole 1 MiB values copied for a piece). `false`: take the
/// general path (misses, evicted chunks, everything else).
fn fast_piece(
    m: &Master,
    call: &mut IncomingRpc<'_>,
    t: &BackedTable,
    key: &[u8],
    rules: &RejectRules,
    offset: u64,
    max_len: u32,
) -> bool {
    use super::envelope::{decode, Kind};
    if t.backing.revalidate_ms > 0 || !rules.is_none() || m.check_serving().is_err() {
        return false;
    }
    let own = m.ownership.read();
    if own.check_read(t.id, key_hash(key)).is_err() {
        return false;
    }
    let mut peek = Vec::new();
    let Ok((version, value_len)) = m.engine.read_range(t.id, key, 0, PEEK, &mut peek) else {
        return false;
    };
    let Ok(env) = decode(&peek) else {
        return false;
    };
    // The reply is built in the call's response buffer (a reused one on a thread serving
    // large replies): the head, then the bytes read straight from the log (one copy).
    let (total, from) = match env.kind {
        Kind::Whole => {
            let at = peek.len() - env.data.len();
            ((value_len - at) as u64, at)
        }
        Kind::Manifest(mf) => (mf.total_len, 0),
        _ => return false,
    };
    let n = (max_len as u64).min(total.saturating_sub(offset)) as usize;
    let sent = call.try_reply_with(|out| {
        faascache_protocol::msg::faas::ReadObjectResponse::encode_head(
            version, total, &env.meta, n, out,
        );
        let head = out.len();
        out.reserve(n);
        let read = match env.kind {
            Kind::Whole => {
                let start = from + offset.min(total) as usize;
                matches!(m.engine.read_range(t.id, key, start, n, out), Ok((v, _)) if v == version)
            }
            Kind::Manifest(mf) => {
                super::read::chunk_range(m, t, key, mf, offset, offset + n as u64, out)
            }
            _ => false,
        };
        (read && out.len() == head + n).then_some(Status::OK)
    });
    if !sent {
        return false;
    }
    drop(own);
    Counters::bump(&m.counters.hits);
    if offset == 0 {
        let _ = m.engine.promote_if_old(t.id, key, version);
    }
    true
}

/// `ReadObject` of a table that is not backed: the value itself, as an object without
/// metadata.
fn plain_piece(
    m: &Master,
    call: &mut IncomingRpc<'_>,
    table: faascache_storage::TableId,
    key: &[u8],
    rules: &RejectRules,
    want: Want,
) {
    if let Err(why) = m.check_serving() {
        return fail(call, Status::NOT_SERVING, why);
    }
    let own = m.ownership.read();
    if let Err(s) = own.check_read(table, key_hash(key)) {
        return fail(call, s, NOT_OWNER);
    }
    let mut buf = Vec::new();
    let s = match m.engine.read(table, key, rules, &mut buf) {
        Ok(version) => {
            let Want::Piece { offset, max_len } = want else {
                return;
            };
            let from = offset.min(buf.len() as u64) as usize;
            let to = from + (max_len as usize).min(buf.len() - from);
            Served::Data {
                version,
                total_len: buf.len() as u64,
                meta: Default::default(),
                data: buf[from..to].to_vec(),
            }
        }
        Err(e) => Served::storage(&e),
    };
    drop(own);
    reply(call, s, want);
}

/// A `MultiRead` item of a backed table: the answer now, or `RETRY` while it is fetched.
pub fn multi_read_item(m: &Arc<Master>, t: &Arc<BackedTable>, key: &[u8]) -> Served {
    super::flight::read_item(m, t, key)
}

/// `InvalidateObjects`.
pub fn invalidate(m: &Arc<Master>, call: &mut IncomingRpc<'_>) {
    let req = match InvalidateRequest::decode(call.payload()) {
        Ok(r) => r,
        Err(e) => {
            let detail = format!("malformed InvalidateObjects request: {e}");
            return fail(call, e.status(), &detail);
        }
    };
    let Some(t) = table_id(req.table).and_then(|id| m.backed.get(id)) else {
        return fail(
            call,
            Status::REQUEST_FORMAT_ERROR,
            "the table is not backed by an object store here (nothing to invalidate)",
        );
    };
    if let Err(why) = m.check_serving() {
        return fail(call, Status::NOT_SERVING, why);
    }
    if !req.prefix {
        if let Err(s) = m.ownership.read().check_read(t.id, key_hash(req.key)) {
            return fail(call, s, NOT_OWNER);
        }
        let r = super::invalidate::key(m, t.id, req.key);
        return call.reply_with(Status::OK, |b| r.encode(b));
    }
    let place = match m.reads.pool().reserve() {
        Ok(p) => p,
        Err(busy) => return fail(call, Status::RETRY, &busy.to_string()),
    };
    let prefix = req.key.to_vec();
    let Some(responder) = call.defer() else {
        return;
    };
    let m = m.clone();
    place.submit(move || match super::invalidate::prefix(&m, t.id, &prefix) {
        Ok(r) => responder.reply_vec(Status::OK, r.to_vec()),
        Err(e) => {
            let (s, _) = e.status();
            let detail = e.to_string();
            responder.reply_vec(
                s,
                ErrorReply {
                    version: 0,
                    detail: &detail,
                }
                .to_vec(),
            )
        }
    });
}

/// `CheckBacking`: open the store of a backing URL with this server's credentials and check
/// them and its bucket, on the `store-fetch` pool (the reply is deferred).
pub fn check_backing(m: &Arc<Master>, call: &mut IncomingRpc<'_>) {
    let url = match CheckBackingRequest::decode(call.payload()) {
        Ok(r) => r.url.to_string(),
        Err(e) => {
            let detail = format!("malformed CheckBacking request: {e}");
            return fail(call, e.status(), &detail);
        }
    };
    let place = match m.reads.pool().reserve() {
        Ok(p) => p,
        Err(busy) => return fail(call, Status::RETRY, &busy.to_string()),
    };
    let Some(responder) = call.defer() else {
        return;
    };
    let m = m.clone();
    place.submit(move || match m.backed.check_url(&url) {
        Ok(()) => responder.reply(Status::OK, &[]),
        Err(f) => {
            let detail = format!("backing {url}: {}", f.detail);
            responder.reply(
                f.status,
                &ErrorReply {
                    version: 0,
                    detail: &detail,
                }
                .to_vec(),
            )
        }
    });
}
