//! The master's mutations of backed tables (`crate::backed::write`): a write or removal
//! marker wrapped in an envelope, run through the same ownership and exactly-once path as any
//! mutation, then queued for upload; a write-through write's reply waits for its upload.
//! `WriteObject` is the same write with the object's metadata in its envelope.

use faascache_protocol::msg::common::{ExactlyOnce, RejectRules};
use faascache_protocol::msg::faas::ObjectMeta;
use faascache_protocol::msg::{ErrorReply, Message};
use faascache_transport::server::IncomingRpc;
use faascache_transport::Status;

use super::service::{fail, kind, not_run, MasterService, SavedReply};
use crate::backed::registry::BackedTable;
use crate::backed::write;
use faascache_protocol::msg::faas::WritePolicy;

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
        let r = self.mutate(table, key, rpc, kind, |e, rpc| {
            e.write_rpc_parts(table, key, [&head, data], rules, rpc)
                .map(|v| (v, [0; 8]))
        });
        if r.status == Status::OK {
            write::written(&self.master, t, key, head.len() + data.len());
        }
        r
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
