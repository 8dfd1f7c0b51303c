//! The master's mutations of backed tables (`crate::backed::write`): a write or removal
//! marker wrapped in an envelope, run through the same ownership and exactly-once path as any
//! mutation, then queued for upload; a write-through write's reply waits for its upload.
//! `WriteObject` is the same write with the object's metadata in its envelope;
//! `WriteObjectChunk` and `CommitObject` write a large object (`crate::backed::chunked`).

use faascache_protocol::msg::common::{ExactlyOnce, RejectRules};
use faascache_protocol::msg::faas::ObjectMeta;
use faascache_protocol::msg::{ErrorReply, Message};
use faascache_transport::server::IncomingRpc;
use faascache_transport::Status;

use super::service::{fail, kind, not_run, MasterService, SavedReply};
use crate::backed::registry::BackedTable;
use crate::backed::{chunked, write};
use faascache_protocol::msg::common::chunk_key;
use faascache_protocol::msg::faas::WritePolicy;
use faascache_protocol::msg::large::{CommitObjectRequest, WriteObjectChunkRequest};

impl MasterService {
    /// Write `value` (or, for `None`, remove) `key` of the backed table `t`, with `meta` in
    /// the envelope when given (`WriteObject`); the reply to send (the object is queued for
    /// upload when the policy says so).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backed_mutation(
        &self,
        t: &BackedTable,
        key: &[u8],
        value: Option<&[u8]>,
        meta: Option<&ObjectMeta>,
        rules: &RejectRules,
        rpc: ExactlyOnce,
        kind: u8,
    ) -> SavedReply {
        let table = t.id;
        if value.is_none() && !write::remove_writes_marker(t) {
            return self.mutate(table, key, rpc, kind, |e, rpc| {
                e.remove_rpc(table, key, rules, rpc)
                    .map(|v| (v.unwrap_or(0), [0; 8]))
            });
        }
        let head = match write::envelope_head_for(&self.master, t, key, value, meta) {
            Ok(head) => head,
            Err((status, detail)) => return not_run(status, &detail),
        };
        let data = value.unwrap_or_default();
        let room = self.master.engine.max_value_len(key.len());
        if head.len() + data.len() > room {
            let detail = format!(
                "a value of {} bytes does not fit one value of this table with its envelope ({room} bytes): write it in chunks (WriteObjectChunk, then CommitObject; the clients do this for values above one chunk); nothing was written",
                data.len()
            );
            return not_run(Status::OBJECT_TOO_LARGE, &detail);
        }
        let old = chunked::previous(&self.master, table, key);
        let r = self.mutate(table, key, rpc, kind, |e, rpc| {
            e.write_rpc_parts(table, key, [&head, data], rules, rpc)
                .map(|v| (v, [0; 8]))
        });
        if r.status == Status::OK {
            write::written(&self.master, t, key, head.len() + data.len());
            chunked::replaced(&self.master, t, key, old, None);
        }
        r
    }

    /// `WriteObjectChunk`: store a chunk of a large write dirty, untracked (idempotent),
    /// replied once durable.
    pub(super) fn backed_chunk(
        &self,
        call: &mut IncomingRpc<'_>,
        t: &BackedTable,
        req: &WriteObjectChunkRequest<'_>,
    ) {
        let (table, key) = (t.id, req.key);
        let head = match chunked::chunk_head(
            &self.master,
            t,
            key,
            req.object_id,
            req.index,
            req.data.len(),
        ) {
            Ok(head) => head,
            Err((status, detail)) => return fail(call, status, 0, &detail),
        };
        let ck = chunk_key(key, req.object_id, req.index);
        // Ownership is checked on the object's key; the chunk key hashes like it.
        let r = self.mutate(
            table,
            &ck,
            ExactlyOnce::UNTRACKED,
            kind::VERSION,
            |e, rpc| {
                e.write_rpc_parts(table, &ck, [&head, req.data], &RejectRules::NONE, rpc)
                    .map(|v| (v, [0; 8]))
            },
        );
        self.send_durable(call, r.status, r.payload)
    }

    /// `CommitObject`: make a large write's chunks the object (as `WriteObject` would: tracked,
    /// reject rules, write-back queue, write-through wait).
    pub(super) fn backed_commit(
        &self,
        call: &mut IncomingRpc<'_>,
        t: &BackedTable,
        req: &CommitObjectRequest<'_>,
    ) {
        let m = &self.master;
        let (table, key) = (t.id, req.key);
        let env = match chunked::begin_commit(m, t, req) {
            Ok(env) => env,
            Err((status, detail)) => return fail(call, status, 0, &detail),
        };
        let old = chunked::previous(m, table, key);
        let r = self.mutate(table, key, req.rpc, kind::VERSION, |e, rpc| {
            e.write_rpc_parts(table, key, [&env, &[]], &req.rules, rpc)
                .map(|v| (v, [0; 8]))
        });
        chunked::end_commit(m, t, req, r.status == Status::OK, old);
        self.reply_backed(call, t, key, r)
    }

    /// A `Write`, `WriteObject` (with `meta`) or `Remove` of a backed table, replied
    /// (write-through: once uploaded).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backed_single(
        &self,
        call: &mut IncomingRpc<'_>,
        t: &BackedTable,
        key: &[u8],
        value: Option<&[u8]>,
        meta: Option<&ObjectMeta>,
        rules: &RejectRules,
        rpc: ExactlyOnce,
    ) {
        let r = self.backed_mutation(t, key, value, meta, rules, rpc, kind::VERSION);
        self.reply_backed(call, t, key, r)
    }

    /// Reply to a mutation of `key` of `t` (write-through: once uploaded).
    fn reply_backed(
        &self,
        call: &mut IncomingRpc<'_>,
        t: &BackedTable,
        key: &[u8],
        r: super::service::SavedReply,
    ) {
        if r.status != Status::OK || t.backing.policy != WritePolicy::WriteThrough {
            return self.send_durable(call, r.status, r.payload);
        }
        let Some(responder) = call.defer() else {
            return;
        };
        let m = self.master.clone();
        write::await_upload(&self.master, t.id, key, move |res| match res {
            Ok(()) => m
                .replication
                .reply_when_durable(responder, r.status, r.payload),
            Err((status, detail)) => responder.reply_vec(
                status,
                ErrorReply {
                    version: r.version,
                    detail: &detail,
                }
                .to_vec(),
            ),
        });
    }

    /// `WriteObject` of a table that is not backed: refused (its values are not objects with
    /// metadata).
    pub(super) fn plain_write_object(call: &mut IncomingRpc<'_>) {
        fail(
            call,
            Status::REQUEST_FORMAT_ERROR,
            0,
            "WriteObject needs a table backed by an object store (or an ephemeral table): this table is plain, use Write; nothing was written",
        )
    }

    /// `WriteObjectChunk` or `CommitObject` of a table that is not backed: refused.
    pub(super) fn plain_large_write(call: &mut IncomingRpc<'_>) {
        fail(
            call,
            Status::REQUEST_FORMAT_ERROR,
            0,
            "values above 1 MiB are written in chunks, which needs a table backed by an object store (or an ephemeral table): this table is plain; nothing was written",
        )
    }

    /// `Increment` of a backed table: refused.
    pub(super) fn backed_increment(call: &mut IncomingRpc<'_>) {
        fail(
            call,
            Status::REQUEST_FORMAT_ERROR,
            0,
            "increment is not supported on backed tables (their values are objects of the store): read, compute and write instead",
        )
    }
}
