//! The coordinator's table RPCs: create (plain or backed by an object store), drop, id by name,
//! list, and a table's configuration (`GetTableConfig`, which masters ask when they take a
//! tablet of a table: a backed table's store and policy come from here, never credentials).

use faascache_protocol::msg::coordinator::*;
use faascache_protocol::msg::faas::{GetTableConfigRequest, TableConfigResponse};
use faascache_protocol::msg::Message;
use faascache_transport::server::IncomingRpc;
use faascache_transport::Status;

use super::super::state::describe_backing;
use super::{bad_request, fail_now, reply_fail, CoordinatorService};

impl CoordinatorService {
    pub(super) fn on_create_table(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, CreateTableRequest<'_>);
        let (name, span, backing) = (req.name.to_string(), req.server_span, req.backing);
        let c = self.c.clone();
        self.c.defer(call, move |r| {
            let shown = describe_backing(backing.as_ref());
            match c.transition(|st| st.create_table_with(&name, span, backing)) {
                Ok((id, sends)) => {
                    if !sends.is_empty() {
                        tracing::info!(table = %name, id, span, backing = %shown, "table created");
                    }
                    // Masters own their tablets before the client hears of the table.
                    if let Err(e) = c.send_all(sends) {
                        tracing::warn!(table = %name, error = %e, "a master did not take its tablet; clients will retry");
                    }
                    r.reply_vec(Status::OK, TableIdResponse { table_id: id }.to_vec());
                }
                Err(f) => reply_fail(r, f.into()),
            }
        });
    }

    pub(super) fn on_drop_table(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, DropTableRequest<'_>);
        let name = req.0.name.to_string();
        let c = self.c.clone();
        self.c.defer(call, move |r| match c.transition(|st| st.drop_table(&name).map(|a| ((), a))) {
            Ok(((), sends)) => {
                tracing::info!(table = %name, "table dropped");
                if let Err(e) = c.send_all(sends) {
                    tracing::warn!(table = %name, error = %e, "a master did not drop its tablet");
                }
                r.reply(Status::OK, &[]);
            }
            Err(f) => reply_fail(r, f.into()),
        });
    }

    pub(super) fn on_get_table_id(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, GetTableIdRequest<'_>);
        let r = self.c.state.lock().table_id(req.0.name);
        match r {
            Ok(id) => call.reply_with(Status::OK, |b| TableIdResponse { table_id: id }.encode(b)),
            Err(e) => fail_now(call, e.into()),
        }
    }

    pub(super) fn on_list_tables(&self, call: &mut IncomingRpc<'_>) {
        let _ = decode_or_reply!(call, ListTablesRequest);
        let st = self.c.state.lock();
        let resp = ListTablesResponse {
            tables: st
                .tables()
                .into_iter()
                .map(|(t, n)| TableEntry {
                    id: t.id,
                    name: &t.name,
                    tablets: n,
                })
                .collect(),
        };
        call.reply_with(Status::OK, |b| resp.encode(b));
    }

    pub(super) fn on_get_table_config(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, GetTableConfigRequest);
        let st = self.c.state.lock();
        match st.table_config(req.table_id) {
            Ok(t) => call.reply_with(Status::OK, |b| {
                TableConfigResponse {
                    name: &t.name,
                    backing: t.backing.clone(),
                }
                .encode(b)
            }),
            Err(e) => {
                drop(st);
                fail_now(call, e.into())
            }
        }
    }
}
