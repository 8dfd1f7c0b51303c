//! `FlushObjects` (wait until dirty objects are in the store) and the write-back gauges of
//! `GetServerInfo`.

use std::time::Duration;

use faascache_protocol::msg::faas::{CacheInfo, FlushRequest, FlushResponse};
use faascache_protocol::msg::{ErrorReply, Message};
use faascache_transport::server::IncomingRpc;
use faascache_transport::Status;

use super::upload::FlushEnd;
use crate::master::Master;

/// Longest a flush may wait (a longer `timeout_ms` is cut to it).
pub const MAX_FLUSH_WAIT: Duration = Duration::from_secs(600);

fn error(detail: &str) -> Vec<u8> {
    ErrorReply { version: 0, detail }.to_vec()
}

/// Handle `FlushObjects`: the reply is deferred until every object of the table (or the one
/// key) queued on this master when the request arrived is in the store, or `TIMEOUT` naming
/// what remains and the store's last error.
pub fn flush_objects(master: &std::sync::Arc<Master>, call: &mut IncomingRpc<'_>) {
    let req = match FlushRequest::decode(call.payload()) {
        Ok(r) => r,
        Err(e) => {
            let detail = format!("malformed FlushObjects request: {e}");
            return call.reply(e.status(), &error(&detail));
        }
    };
    let Some(table) = crate::master::table_id(req.table) else {
        return call.reply(
            Status::TABLE_DOESNT_EXIST,
            &error("table ids are below 2^32: no such table"),
        );
    };
    if let Err(why) = master.check_serving() {
        return call.reply(Status::NOT_SERVING, &error(why));
    }
    let key = req.key.to_vec();
    let timeout = Duration::from_millis(req.timeout_ms as u64).min(MAX_FLUSH_WAIT);
    let Some(responder) = call.defer() else {
        return;
    };
    let m = master.clone();
    let reply = Box::new(move |end: FlushEnd| match end {
        FlushEnd::Done(f) => responder.reply_vec(
            Status::OK,
            FlushResponse {
                objects: f.objects,
                bytes: f.bytes,
            }
            .to_vec(),
        ),
        FlushEnd::TimedOut(left) => {
            let last = m.counters.last_error();
            let store = if last.is_empty() {
                "no error".to_string()
            } else {
                last
            };
            let detail = format!(
                "{left} objects still dirty after {} ms; store: {store}",
                timeout.as_millis()
            );
            responder.reply_vec(Status::TIMEOUT, error(&detail))
        }
        FlushEnd::Rejected => {
            let detail = format!(
                "the store refused an upload: {}; fix the store (credentials, bucket) or remove the object",
                m.counters.last_error()
            );
            responder.reply_vec(Status::STORE_REJECTED, error(&detail))
        }
        FlushEnd::Busy => responder.reply_vec(
            Status::RETRY,
            error("this master has the most flushes waiting it keeps (1024): retry shortly"),
        ),
    });
    let which = move |k: &(u32, Vec<u8>)| k.0 == table && (key.is_empty() || k.1 == key);
    master.writeback.flush(which, timeout, reply);
}

/// The cache counters of `GetServerInfo`: the backed tables' counters, the write-back
/// queue's gauges and the cleaner's evictions.
pub fn cache_info<'a>(master: &Master, last_error: &'a str) -> CacheInfo<'a> {
    let g = master.writeback.gauges();
    CacheInfo {
        dirty_objects: g.objects,
        dirty_bytes: g.bytes,
        oldest_dirty_ms: g.oldest_ms,
        dirty_limit_bytes: g.limit,
        evicted: master.engine.stats().cleaner.evicted,
        ..master.counters.info(last_error)
    }
}
