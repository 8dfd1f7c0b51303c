//! The write path of backed tables (`docs/faas.md`, "Policies and guarantees"): a write is
//! wrapped in a `Whole` envelope and written dirty; write-back queues it (refusing with
//! `WRITE_BACK_FULL` above the limit), write-through queues it and answers once the worker
//! uploaded it, ephemeral never queues it. A write-back or write-through remove writes a dirty
//! `Deleted` marker, which the worker turns into a store DELETE and then a real removal.

use std::sync::{Arc, Weak};
use std::time::Duration;

use faascache_protocol::msg::faas::{ObjectMeta, WritePolicy};
use faascache_storage::TableId;
use faascache_transport::Status;

use super::envelope::{self, Kind};
use super::registry::BackedTable;
use super::upload::{upload_one, wall_ms, FlushEnd, Uploader};
use super::writeback::{Done, Key};
use super::Counters;
use crate::master::Master;

/// How long a write-through write waits for its upload (retried meanwhile) before it is
/// answered `STORE_UNAVAILABLE` (the object stays dirty and queued).
pub const WRITE_THROUGH_WAIT: Duration = Duration::from_secs(10);

/// Uploads for one master's worker, through the table's store from the registry.
struct MasterUploader(Weak<Master>);

impl Uploader for MasterUploader {
    fn upload(&self, key: &Key) -> Option<Done> {
        let m = self.0.upgrade()?;
        let Some(t) = m.backed.get(key.0) else {
            // Not (or no longer) a backed table here: keep the object unless it is gone.
            return Some(match m.engine.is_dirty(key.0, &key.1) {
                Ok(Some(true)) => Done::Failed { retryable: true },
                _ => Done::Clean,
            });
        };
        let store = match t.store() {
            Ok(s) => s.clone(),
            Err(f) => {
                Counters::bump(&m.counters.upload_errors);
                m.counters.set_last_error(&f.detail);
                return Some(Done::Failed { retryable: false });
            }
        };
        Some(upload_one(&m.engine, &*store, &m.counters, key.0, &key.1))
    }
}

/// Start `master`'s write-back threads and its TTL sweeper ([`super::ttl`]); once per master.
pub fn start(master: &Arc<Master>) {
    let weak = Arc::downgrade(master);
    master
        .writeback
        .start(|| Arc::new(MasterUploader(weak)) as Arc<dyn Uploader>);
    super::ttl::start(master);
}

/// The backed table of `table` on `master` (a cheap lookup; `None` for plain tables).
pub fn backed(master: &Master, table: TableId) -> Option<Arc<BackedTable>> {
    if master.backed.any() {
        master.backed.get(table)
    } else {
        None
    }
}

use super::checks::{admit, check_key, object_meta};
pub use super::checks::{written, Refusal};

/// The envelope header to write before a client's `value` (or a removal marker when `value`
/// is `None`; the stored value is the header followed by the client's bytes), after checking
/// the key and the write-back limit. `meta`: a `WriteObject`'s metadata (checked and
/// completed as [`object_meta`] says); `None` for a `Write` (empty metadata).
pub fn envelope_head_for(
    master: &Master,
    t: &BackedTable,
    key: &[u8],
    value: Option<&[u8]>,
    meta: Option<&ObjectMeta>,
) -> Result<Vec<u8>, Refusal> {
    check_key(t, key)?;
    let kind = if value.is_some() {
        Kind::Whole
    } else {
        Kind::Deleted
    };
    let now = wall_ms();
    let meta = match meta {
        Some(m) => object_meta(t, m, now)?,
        None => ObjectMeta::default(),
    };
    let mut head = Vec::new();
    envelope::encode(&mut head, kind, now, &meta, &[]);
    let len = head.len() + value.map_or(0, <[u8]>::len);
    admit(master, t, key, len as u64)?;
    Ok(head)
}

/// Whether a removal of a key of `t` writes a marker (write-back, write-through) or removes
/// at once (ephemeral).
pub fn remove_writes_marker(t: &BackedTable) -> bool {
    t.backing.policy != WritePolicy::Ephemeral
}

/// Wait until the worker uploaded `key` (write-through), then call `reply` with `Ok(())`, or
/// with the status and detail when the store failed (the object stays dirty and queued):
/// `STORE_REJECTED` at the first failure a retry cannot fix, `STORE_UNAVAILABLE` after
/// [`WRITE_THROUGH_WAIT`] of retryable ones.
pub fn await_upload(
    master: &Arc<Master>,
    table: TableId,
    key: &[u8],
    reply: impl FnOnce(Result<(), Refusal>) + Send + 'static,
) {
    let m = master.clone();
    let key = key.to_vec();
    let which = {
        let key = key.clone();
        move |k: &Key| k.0 == table && k.1 == key
    };
    master.writeback.flush_through(
        which,
        WRITE_THROUGH_WAIT,
        Box::new(move |end| match end {
            FlushEnd::Done(_) => reply(Ok(())),
            FlushEnd::Rejected => reply(Err((
                Status::STORE_REJECTED,
                format!(
                    "written to the cache (dirty, queued for upload) but the store refused it: {}; fix the store (credentials, bucket) — the upload is retried — or remove the object",
                    m.counters.last_error()
                ),
            ))),
            FlushEnd::TimedOut(_) | FlushEnd::Busy => {
                let last = m.counters.last_error();
                reply(Err((
                    Status::STORE_UNAVAILABLE,
                    format!(
                        "written to the cache (dirty, queued for upload) but the store did not take it within {} s: {}",
                        WRITE_THROUGH_WAIT.as_secs(),
                        if last.is_empty() { "too many uploads waiting" } else { &last }
                    ),
                )))
            }
        }),
    );
}
