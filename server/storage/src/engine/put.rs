//! Writing an object or a tombstone's completion into the log: the object body is built as a
//! small head (fixed fields and key) followed by the value's parts, appended without joining
//! them, together with the mutation's completion record when it is tracked.

use std::sync::atomic::Ordering;

use faascache_protocol::Status;

use super::rpc::Rpc;
use super::{checked_next_version, entry_len, Existing, Inner, TableInfo, SCRATCH};
use crate::error::StorageError;
use crate::format::{self, CompletionRecord, EntryType, ObjectView};
use crate::hashtable::StripeGuard;
use crate::TableId;

impl Inner {
    /// Appends `body` and, when the mutation is tracked, its completion record in the same
    /// append (one certificate covers both or neither); returns the address of `body`.
    pub(super) fn append_tracked(
        &self,
        ty: EntryType,
        body: &[&[u8]],
        now: u32,
        rec: Option<&CompletionRecord>,
    ) -> Result<u64, StorageError> {
        let len = body.iter().map(|p| p.len()).sum::<usize>();
        let Some(rec) = rec else {
            let r = self.log.append_parts(ty, body, Some(now), self, now);
            return self.append_result(r, len);
        };
        let mut rb = Vec::with_capacity(format::COMPLETION_BODY);
        format::encode_completion(&mut rb, rec);
        let r = self
            .log
            .append_pair((ty, body), (EntryType::Completion, &rb), now, self);
        let [a, r] = self.append_result(r, len + rb.len())?;
        self.log.add_live(r, entry_len(rb.len()) as i64);
        Ok(a)
    }

    /// Appends a completion record on its own (a tracked mutation that changed nothing).
    pub(super) fn append_completion(&self, rec: &CompletionRecord) -> Result<(), StorageError> {
        let mut rb = Vec::with_capacity(format::COMPLETION_BODY);
        format::encode_completion(&mut rb, rec);
        let addr = self.append(EntryType::Completion, &rb, rec.timestamp)?;
        self.log.add_live(addr, entry_len(rb.len()) as i64);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn put_locked(
        &self,
        g: &mut StripeGuard<'_>,
        info: &TableInfo,
        table: TableId,
        key: &[u8],
        value: &[u8],
        existing: Option<Existing>,
        clean: bool,
        version: Option<u64>,
        rpc: Option<&Rpc>,
    ) -> Result<u64, StorageError> {
        let parts = [value, &[][..]];
        self.put_parts(g, info, table, key, parts, existing, clean, version, rpc)
    }

    /// [`Inner::put_locked`] of the value `value[0]` followed by `value[1]`, written to the
    /// log without joining them first (no copy of a large value before the log's own).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn put_parts(
        &self,
        g: &mut StripeGuard<'_>,
        info: &TableInfo,
        table: TableId,
        key: &[u8],
        value: [&[u8]; 2],
        existing: Option<Existing>,
        clean: bool,
        version: Option<u64>,
        rpc: Option<&Rpc>,
    ) -> Result<u64, StorageError> {
        let now = self.clock.now();
        let version = match version {
            Some(v) => {
                // Keep the master-wide counter above every version stored here.
                let next = checked_next_version(v)?;
                self.next_version.fetch_max(next, Ordering::Relaxed);
                v
            }
            None => self.next_version.fetch_add(1, Ordering::Relaxed),
        };
        let o = ObjectView {
            table,
            version,
            timestamp: now,
            dirty: !clean,
            key,
            value: &[],
        };
        let value_len = value[0].len() + value[1].len();
        // A completion record keeps an 8-byte value (a counter's).
        let small = (value_len == 8).then(|| [value[0], value[1]].concat());
        let rec = rpc.map(|r| r.record(table, key, now, Status::OK, version, small.as_deref()));
        let (addr, len) = SCRATCH.with(|s| {
            let mut head = s.borrow_mut();
            format::encode_object_head(&mut head, &o, value);
            let body = [&head[..], value[0], value[1]];
            let addr = self.append_tracked(EntryType::Object, &body, now, rec.as_ref())?;
            Ok::<_, StorageError>((addr, entry_len(head.len() + value_len)))
        })?;
        self.log.add_live(addr, len as i64);
        match existing {
            Some(old) => {
                g.replace(old.found.slot, addr, clean);
                self.log.add_live(old.found.addr, -(old.entry_len as i64));
                info.bytes.fetch_add(
                    (key.len() + value_len) as i64 - old.kv_len as i64,
                    Ordering::Relaxed,
                );
            }
            None => {
                g.insert(addr, clean);
                info.objects.fetch_add(1, Ordering::Relaxed);
                info.bytes
                    .fetch_add((key.len() + value_len) as i64, Ordering::Relaxed);
            }
        }
        Ok(version)
    }
}
