//! The checks every write to a backed table passes before anything is written — the key as
//! the store will name it, the metadata as the store will take it, the write-back limit — and
//! the queueing after it succeeded. Shared by whole-object writes (`super::write`) and large
//! writes (`super::chunked`).

use faascache_protocol::msg::faas::{ObjectMeta, WritePolicy};
use faascache_transport::Status;

use super::registry::BackedTable;
use crate::master::Master;

/// Why a write to a backed table was refused before anything was written.
pub type Refusal = (Status, String);

/// Check `key` for the table's store, as it will be named there (with the backing's
/// `PREFIX/`); an ephemeral table without a store takes any key.
pub(crate) fn check_key(t: &BackedTable, key: &[u8]) -> Result<(), Refusal> {
    if t.backing.policy == WritePolicy::Ephemeral && t.store().is_err() {
        return Ok(());
    }
    let rejected = |why: String| (Status::STORE_REJECTED, why);
    let s = std::str::from_utf8(key).map_err(|_| {
        rejected("the key is not UTF-8: object stores take UTF-8 keys; nothing was written".into())
    })?;
    faascache_objstore::validate_key(s, t.prefix_len)
        .map_err(|e| rejected(format!("{e}; nothing was written")))
}

/// Check a `WriteObject`'s metadata for the table's store, as it will be uploaded (the
/// store's rules: `faascache_objstore::PutMeta::validate`; an ephemeral table without a store
/// takes any), and complete it: user-metadata names in lower case (as the stores hand them
/// back), a last-modified of 0 stamped `now`.
pub(crate) fn object_meta(
    t: &BackedTable,
    meta: &ObjectMeta,
    now: u64,
) -> Result<ObjectMeta, Refusal> {
    let mut m = meta.clone();
    for (k, _) in &mut m.user {
        k.make_ascii_lowercase();
    }
    if m.last_modified_ms == 0 {
        m.last_modified_ms = now;
    }
    if t.backing.has_store() {
        let put = faascache_objstore::PutMeta {
            content_type: Some(m.content_type.clone()).filter(|c| !c.is_empty()),
            user_meta: m.user.iter().cloned().collect(),
        };
        put.validate().map_err(|e| {
            let why = format!("{e}; nothing was written");
            (Status::STORE_REJECTED, why)
        })?;
    }
    Ok(m)
}

/// Whether the write-back queue takes `bytes` more for `key` of `t` (always for an ephemeral
/// table); else the `WRITE_BACK_FULL` refusal.
pub(crate) fn admit(
    master: &Master,
    t: &BackedTable,
    key: &[u8],
    bytes: u64,
) -> Result<(), Refusal> {
    if t.backing.policy == WritePolicy::Ephemeral
        || master.writeback.admits(&(t.id, key.to_vec()), bytes)
    {
        return Ok(());
    }
    Err(full(master))
}

/// The `WRITE_BACK_FULL` refusal, with the queue's state and the store's last error.
pub(crate) fn full(master: &Master) -> Refusal {
    let g = master.writeback.gauges();
    let last = master.counters.last_error();
    (
        Status::WRITE_BACK_FULL,
        format!(
            "this master holds {} dirty bytes of {} objects not yet in the store (limit {}, --write-back-limit); store: {}; retry when the queue drains (faascache flush, status)",
            g.bytes,
            g.objects,
            g.limit,
            if last.is_empty() { "no error" } else { &last }
        ),
    )
}

/// After a write or removal marker of `len` envelope bytes succeeded: queue it for upload
/// (not for an ephemeral table).
pub fn written(master: &Master, t: &BackedTable, key: &[u8], len: usize) {
    if t.backing.policy != WritePolicy::Ephemeral {
        master.writeback.dirty((t.id, key.to_vec()), len as u64);
    }
}
