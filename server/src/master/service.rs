//! The master's RPC handlers: data operations, tablet control, migration target, server info.
//! Each handler decodes its request (`faascache_protocol::msg`), checks the table id and
//! ownership, runs the engine operation and replies; see `docs/protocol.md` for the statuses.

use std::sync::Arc;

use faascache_protocol::msg::common::ExactlyOnce;
use faascache_protocol::msg::control::{
    DropTabletOwnershipRequest, GetServerInfoResponse, MigrateTabletOutRequest,
    PrepareMigrationRequest, ReceiveMigrationDataRequest, RecoverTabletsRequest, TabletRange,
    TakeTabletOwnershipRequest,
};
use faascache_protocol::msg::master::*;
use faascache_protocol::msg::{key_hash, ErrorReply, Message, MsgError};
use faascache_transport::server::IncomingRpc;
use faascache_transport::{Dispatch, Status};

use super::exactly_once::{Attempt, Begin, Outcome, Tracked};
use super::tablets::Range;
use super::{storage_status, table_id, Master};
use crate::backed::read::Served;
use crate::backed::registry::ConfigError;
use faascache_storage::{RejectRules, Rpc, StorageError, TableId, WriteOp};

/// Most bytes of a multi-read reply: items beyond it are answered `RETRY` (the client asks
/// again), so a reply stays under the protocol's maximum payload (8 MiB + 64 KiB).
pub const MULTI_READ_BUDGET: usize = 8 * 1024 * 1024 - 64 * 1024;

/// Largest `max_bytes` an enumeration reply is built for (keeps replies far below the protocol
/// maximum even when the last hash bucket adds a few large objects).
pub const ENUMERATE_MAX_BYTES: usize = 2 * 1024 * 1024;

/// The master's [`Dispatch`] service (wrap in `DispatchHandler` to serve it).
#[derive(Debug, Clone)]
pub struct MasterService {
    /// The master.
    pub master: Arc<Master>,
}

/// Reply a non-OK status with an error body.
pub(crate) fn fail(call: &mut IncomingRpc<'_>, status: Status, version: u64, detail: &str) {
    call.reply_with(status, |b| ErrorReply { version, detail }.encode(b));
}

fn bad_request(call: &mut IncomingRpc<'_>, e: MsgError) {
    fail(
        call,
        e.status(),
        0,
        &format!("malformed {} request: {e}", call.opcode()),
    );
}

/// A reply to send: status, the version it states (multi-op items report it) and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedReply {
    /// Status.
    pub status: Status,
    /// The version the reply states.
    pub version: u64,
    /// Payload.
    pub payload: Vec<u8>,
}

/// How the reply of a tracked mutation is rebuilt from its [`Outcome`] (kept in completion
/// records, so the numbers are part of the log format's meaning).
pub mod kind {
    /// `VersionResponse` (write, remove).
    pub const VERSION: u8 = 1;
    /// `IncrementResponse` with an i64.
    pub const I64: u8 = 2;
    /// `IncrementResponse` with an f64.
    pub const F64: u8 = 3;
    /// An item of a multi-write or multi-remove (status and version only).
    pub const MULTI: u8 = 4;
}

/// The reply a finished tracked mutation's outcome stands for (its first reply, or a retry's).
fn reply_of(o: &Outcome) -> SavedReply {
    let version = o.version;
    let payload = if o.status != Status::OK {
        let detail = match o.status {
            Status::OBJECT_DOESNT_EXIST => StorageError::ObjectDoesntExist.to_string(),
            Status::OBJECT_EXISTS => StorageError::ObjectExists { version }.to_string(),
            Status::WRONG_VERSION => StorageError::WrongVersion { current: version }.to_string(),
            s => s.description().to_string(),
        };
        ErrorReply {
            version,
            detail: &detail,
        }
        .to_vec()
    } else {
        match o.kind {
            kind::I64 => IncrementResponse {
                version,
                value: Number::I64(i64::from_le_bytes(o.value)),
            }
            .to_vec(),
            kind::F64 => IncrementResponse {
                version,
                value: Number::F64(f64::from_le_bytes(o.value)),
            }
            .to_vec(),
            kind::MULTI => version.to_le_bytes().to_vec(),
            _ => VersionResponse { version }.to_vec(),
        }
    };
    SavedReply {
        status: o.status,
        version,
        payload,
    }
}

/// The reply to a tracked mutation that was not run.
fn refusal(b: Begin) -> SavedReply {
    match b {
        Begin::InProgress => not_run(
            Status::RETRY,
            "the first attempt of this rpc is still running",
        ),
        Begin::ClientFull => not_run(
            Status::RETRY,
            "this client has the most unacknowledged exactly-once results a master keeps for one client (4096): its next requests must carry a higher ack id",
        ),
        Begin::Full => not_run(
            Status::RETRY,
            "this master keeps at most 262144 unacknowledged exactly-once results and is full; results of departed clients are freed once the coordinator confirms their leases ended: retry shortly",
        ),
        Begin::Stale => not_run(
            Status::REQUEST_FORMAT_ERROR,
            "stale rpc: its id is at or below the client's ack id",
        ),
        Begin::Expired => not_run(
            Status::EXPIRED_LEASE,
            "the client's lease has expired (or was released): the mutation did not run; get a new lease from the coordinator",
        ),
        Begin::Run | Begin::Done(_) => not_run(Status::INTERNAL_ERROR, "not a refusal"),
    }
}

fn storage_reply(e: &StorageError) -> SavedReply {
    let (status, version) = storage_status(e);
    SavedReply {
        status,
        version,
        payload: ErrorReply {
            version,
            detail: &e.to_string(),
        }
        .to_vec(),
    }
}

const NO_TABLE: &str = "table ids are below 2^32: no such table";
const NOT_OWNER: &str = "this master does not own the key's tablet: refresh the tablet map";

fn decode_reply(e: MsgError) -> SavedReply {
    not_run(e.status(), &format!("malformed request: {e}"))
}

macro_rules! decode_or_reply {
    ($call:expr, $ty:ty) => {
        match <$ty>::decode($call.payload()) {
            Ok(r) => r,
            Err(e) => return bad_request($call, e),
        }
    };
}

macro_rules! table_or_reply {
    ($call:expr, $wire:expr) => {
        match table_id($wire) {
            Some(t) => t,
            None => return fail($call, Status::TABLE_DOESNT_EXIST, 0, NO_TABLE),
        }
    };
}

/// Why a tracked mutation was not run.
pub(super) fn not_run(status: Status, detail: &str) -> SavedReply {
    SavedReply {
        status,
        version: 0,
        payload: ErrorReply { version: 0, detail }.to_vec(),
    }
}

impl MasterService {
    /// Run one mutation of `key` with ownership checks and exactly-once bookkeeping. `op` runs
    /// it — tracked (writing its completion record) when given an [`Rpc`] — and returns the
    /// version and, for an increment, the new value; `kind` says how to build the reply.
    /// Returns the reply to send (the caller holds no lock).
    pub(super) fn mutate(
        &self,
        table: TableId,
        key: &[u8],
        rpc: ExactlyOnce,
        kind: u8,
        op: impl FnOnce(
            &faascache_storage::Engine,
            Option<&Rpc>,
        ) -> Result<(u64, [u8; 8]), StorageError>,
    ) -> SavedReply {
        let m = &self.master;
        if let Err(why) = m.check_serving() {
            return not_run(Status::NOT_SERVING, why);
        }
        let own = m.ownership.read();
        let mig = match own.check_write(table, key_hash(key)) {
            Ok(mig) => mig,
            Err(Status::RETRY) => {
                return not_run(
                    Status::RETRY,
                    "the tablet is moving to another master: retry shortly",
                )
            }
            Err(s) => {
                return not_run(
                    s,
                    "this master does not own the key's tablet: refresh the tablet map",
                )
            }
        };
        let h = key_hash(key);
        let attempt = if rpc.client_id == 0 {
            Attempt::Ran(op(&m.engine, None).map(|(version, value)| Outcome {
                status: Status::OK,
                version,
                kind,
                value,
            }))
        } else {
            let t = Tracked {
                client: rpc.client_id,
                rpc_id: rpc.rpc_id,
                ack_id: rpc.ack_id,
                lease_expiration: rpc.lease.expiration,
            };
            m.results
                .run_tracked(t, kind, table, h, m.cluster_time(), m.now_ms(), |r| {
                    op(&m.engine, Some(r))
                })
        };
        if let Some(mig) = mig {
            mig.note(key);
        }
        match attempt {
            Attempt::Saved(o) | Attempt::Ran(Ok(o)) => reply_of(&o),
            Attempt::Ran(Err(e)) => storage_reply(&e),
            Attempt::Refused(b) => refusal(b),
        }
    }

    fn send(call: &mut IncomingRpc<'_>, r: SavedReply) {
        call.reply_with(r.status, |b| b.extend_from_slice(&r.payload));
    }

    /// Reply to a mutation once the log as it is now is on every replica (at once without
    /// replication). Retries answered from a saved result wait the same way, so no reply
    /// acknowledges a write before it is durable.
    pub(super) fn send_durable(
        &self,
        call: &mut IncomingRpc<'_>,
        status: Status,
        payload: Vec<u8>,
    ) {
        let rep = &self.master.replication;
        if rep.replicas() == 0 {
            return call.reply_with(status, |b| b.extend_from_slice(&payload));
        }
        if let Some(responder) = call.defer() {
            rep.reply_when_durable(responder, status, payload);
        }
    }

    fn range(&self, call: &mut IncomingRpc<'_>, r: &TabletRange) -> Option<Range> {
        match table_id(r.table_id) {
            Some(table) => Some(Range {
                table,
                start: r.start_hash,
                end: r.end_hash,
            }),
            None => {
                fail(call, Status::TABLE_DOESNT_EXIST, 0, NO_TABLE);
                None
            }
        }
    }

    fn do_read(&self, payload: &[u8], buf: &mut Vec<u8>) -> Result<u64, SavedReply> {
        let req = ReadRequest::decode(payload).map_err(decode_reply)?;
        let table =
            table_id(req.table).ok_or_else(|| not_run(Status::TABLE_DOESNT_EXIST, NO_TABLE))?;
        self.master
            .check_serving()
            .map_err(|why| not_run(Status::NOT_SERVING, why))?;
        let own = self.master.ownership.read();
        own.check_read(table, key_hash(req.key))
            .map_err(|s| not_run(s, NOT_OWNER))?;
        self.master
            .engine
            .read(table, req.key, &req.rules, buf)
            .map_err(|e| storage_reply(&e))
    }

    fn do_receive(&self, payload: &[u8]) -> SavedReply {
        let req = match ReceiveMigrationDataRequest::decode(payload) {
            Ok(r) => r,
            Err(e) => return decode_reply(e),
        };
        let Some(table) = table_id(req.range.table_id) else {
            return not_run(Status::TABLE_DOESNT_EXIST, NO_TABLE);
        };
        let m = &self.master;
        let own = m.ownership.read();
        if !own.is_incoming(table, req.range.start_hash, req.range.end_hash) {
            return not_run(
                Status::UNKNOWN_TABLET,
                "not prepared to receive this tablet",
            );
        }
        // Objects keep their source versions; a later item for the same key (re-sent because
        // it was written meanwhile) carries a larger one and replaces it.
        let backed = crate::backed::write::backed(m, table);
        for o in &req.objects {
            if let (Some(t), false, false) = (&backed, o.removed, o.clean) {
                // Queued before it is written: the worker uploads the current value anyway.
                crate::backed::requeue::migrated(m, t, o.key, o.value);
            }
            let res = if o.removed {
                m.engine
                    .remove(table, o.key, &RejectRules::NONE)
                    .map(|_| ())
            } else {
                m.engine
                    .write_versioned_as(table, o.key, o.value, o.version, o.clean)
                    .map(|_| ())
            };
            if let Err(e) = res {
                return storage_reply(&e);
            }
        }
        let now = m.now_ms();
        for c in &req.completions {
            let rec = faascache_storage::CompletionRecord {
                table,
                key_hash: c.key_hash,
                client_id: c.client_id,
                rpc_id: c.rpc_id,
                ack_id: c.ack_id,
                timestamp: 0,
                status: c.status,
                version: c.version,
                kind: c.kind,
                value: c.value,
            };
            if !(req.range.start_hash..=req.range.end_hash).contains(&c.key_hash) {
                continue;
            }
            // Written to this master's log too, so it survives this master's crash.
            if m.results.replay(&rec, now) {
                if let Err(e) = m.engine.record_completion(&rec) {
                    m.results.abandon(rec.client_id, rec.rpc_id);
                    return storage_reply(&e);
                }
            }
        }
        SavedReply {
            status: Status::OK,
            version: 0,
            payload: Vec::new(),
        }
    }

    /// Run a tablet-control step off the dispatch core, serialised with every other one by
    /// `Master::table_ops` (so a table's data is never dropped while another step creates or
    /// fills it), and reply `OK` when it is done (or the step's failure: the coordinator
    /// retries it).
    fn control(
        &self,
        call: &mut IncomingRpc<'_>,
        step: impl FnOnce() -> Result<(), ConfigError> + Send + 'static,
    ) {
        let place = match self.master.pools.control.reserve() {
            Ok(p) => p,
            Err(busy) => return fail(call, Status::RETRY, 0, &busy.to_string()),
        };
        let Some(responder) = call.defer() else {
            return;
        };
        let master = self.master.clone();
        place.submit(move || {
            let _serial = master.table_ops.lock();
            match step() {
                Ok(()) => responder.reply(Status::OK, &[]),
                Err(e) => {
                    tracing::warn!(error = %e, "tablet-control step failed");
                    let detail = e.to_string();
                    responder.reply_vec(
                        e.status(),
                        ErrorReply {
                            version: 0,
                            detail: &detail,
                        }
                        .to_vec(),
                    )
                }
            }
        });
    }
}

thread_local! {
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Dispatch for MasterService {
    fn read(&self, call: &mut IncomingRpc<'_>) {
        if self.master.backed.any() && crate::backed::rpc::read(&self.master, call) {
            return;
        }
        READ_BUF.with(|b| {
            let mut buf = b.borrow_mut();
            buf.clear();
            match self.do_read(call.payload(), &mut buf) {
                Ok(version) => call.reply_with(Status::OK, |out| {
                    ReadResponse::encode_head(version, buf.len(), out);
                    out.extend_from_slice(&buf);
                }),
                Err(r) => Self::send(call, r),
            }
            if buf.capacity() > 64 * 1024 {
                *buf = Vec::new();
            }
        });
    }

    fn write(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, WriteRequest<'_>);
        let table = table_or_reply!(call, req.table);
        if let Some(t) = crate::backed::write::backed(&self.master, table) {
            let value = Some(req.value);
            return self.backed_single(call, &t, req.key, value, None, &req.rules, req.rpc);
        }
        let r = self.mutate(table, req.key, req.rpc, kind::VERSION, |e, rpc| {
            let version = e.write_rpc(table, req.key, req.value, &req.rules, rpc)?;
            super::faults::after_write(req.key);
            Ok((version, [0; 8]))
        });
        self.send_durable(call, r.status, r.payload);
    }

    fn remove(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, RemoveRequest<'_>);
        let table = table_or_reply!(call, req.table);
        if let Some(t) = crate::backed::write::backed(&self.master, table) {
            return self.backed_single(call, &t, req.key, None, None, &req.rules, req.rpc);
        }
        let r = self.mutate(table, req.key, req.rpc, kind::VERSION, |e, rpc| {
            e.remove_rpc(table, req.key, &req.rules, rpc)
                .map(|v| (v.unwrap_or(0), [0; 8]))
        });
        self.send_durable(call, r.status, r.payload);
    }

    fn increment(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, IncrementRequest<'_>);
        let table = table_or_reply!(call, req.table);
        if crate::backed::write::backed(&self.master, table).is_some() {
            return Self::backed_increment(call);
        }
        let rr = req.rules;
        let r = match req.delta {
            Number::I64(d) => self.mutate(table, req.key, req.rpc, kind::I64, |e, rpc| {
                e.increment_i64_rpc(table, req.key, d, &rr, rpc)
                    .map(|(v, version)| (version, v.to_le_bytes()))
            }),
            Number::F64(d) => self.mutate(table, req.key, req.rpc, kind::F64, |e, rpc| {
                e.increment_f64_rpc(table, req.key, d, &rr, rpc)
                    .map(|(v, version)| (version, v.to_le_bytes()))
            }),
        };
        self.send_durable(call, r.status, r.payload);
    }

    fn multi_read(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, MultiReadRequest<'_>);
        let m = &self.master;
        if let Err(why) = m.check_serving() {
            return fail(call, Status::NOT_SERVING, 0, why);
        }
        let own = m.ownership.read();
        // Values go straight into the reply (no copy per item), up to a byte budget: items
        // past it are answered RETRY ("not read: the reply was full"), and the client asks
        // for them again — so no legal request can build a reply over the protocol maximum,
        // and a hostile one cannot make this core allocate more than the budget.
        call.reply_with(Status::OK, |out| {
            let base = out.len();
            out.extend_from_slice(&(req.items.len() as u32).to_le_bytes());
            let item = |out: &mut Vec<u8>, s: Status, version: u64| {
                out.extend_from_slice(&s.0.to_le_bytes());
                out.extend_from_slice(&version.to_le_bytes());
                out.extend_from_slice(&0u32.to_le_bytes());
            };
            // Prefetch hash buckets a few items ahead so their DRAM misses overlap.
            const AHEAD: usize = 8;
            for it in req.items.iter().take(AHEAD) {
                m.engine.prefetch(it.key);
            }
            let mut full = false;
            for (i, it) in req.items.iter().enumerate() {
                if let Some(ahead) = req.items.get(i + AHEAD) {
                    m.engine.prefetch(ahead.key);
                }
                if full {
                    item(out, Status::RETRY, 0);
                    continue;
                }
                let Some(table) = table_id(it.table) else {
                    item(out, Status::TABLE_DOESNT_EXIST, 0);
                    continue;
                };
                if let Err(s) = own.check_read(table, key_hash(it.key)) {
                    item(out, s, 0);
                    continue;
                }
                if let Some(t) = crate::backed::rpc::backed(m, it.table) {
                    match crate::backed::rpc::multi_read_item(m, &t, it.key) {
                        Served::Data { version, data, .. } => {
                            if out.len() - base + data.len() > MULTI_READ_BUDGET && i > 0 {
                                item(out, Status::RETRY, 0);
                                full = true;
                                continue;
                            }
                            out.extend_from_slice(&Status::OK.0.to_le_bytes());
                            out.extend_from_slice(&version.to_le_bytes());
                            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
                            out.extend_from_slice(&data);
                        }
                        Served::Fail(s, version, _) => item(out, s, version),
                        Served::Miss | Served::Revalidate { .. } => item(out, Status::RETRY, 0),
                    }
                    continue;
                }
                let at = out.len();
                item(out, Status::OK, 0);
                match m.engine.read(table, it.key, &RejectRules::NONE, out) {
                    Ok(version) => {
                        let len = out.len() - at - 14;
                        if out.len() - base > MULTI_READ_BUDGET && i > 0 {
                            // Over the budget: this one and the rest next time.
                            out.truncate(at);
                            item(out, Status::RETRY, 0);
                            full = true;
                            continue;
                        }
                        out[at + 2..at + 10].copy_from_slice(&version.to_le_bytes());
                        out[at + 10..at + 14].copy_from_slice(&(len as u32).to_le_bytes());
                    }
                    Err(e) => {
                        let (s, version) = storage_status(&e);
                        out.truncate(at);
                        item(out, s, version);
                    }
                }
            }
        });
        drop(own);
    }

    fn multi_write(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, MultiWriteRequest<'_>);
        let mut items = Vec::with_capacity(req.items.len());
        for it in &req.items {
            let Some(table) = table_id(it.table) else {
                items.push(MultiResult {
                    status: Status::TABLE_DOESNT_EXIST,
                    version: 0,
                });
                continue;
            };
            let op = WriteOp {
                table,
                key: it.key,
                value: it.value,
                rules: it.rules,
            };
            let rpc = ExactlyOnce {
                client_id: req.client_id,
                rpc_id: it.rpc_id,
                ack_id: req.ack_id,
                lease: req.lease,
            };
            if let Some(t) = crate::backed::write::backed(&self.master, table) {
                let r = self.backed_mutation(
                    &t,
                    it.key,
                    Some(it.value),
                    None,
                    &it.rules,
                    rpc,
                    kind::MULTI,
                );
                items.push(multi_result(&r));
                continue;
            }
            let r = self.mutate(table, it.key, rpc, kind::MULTI, |e, rpc| {
                e.write_rpc(op.table, op.key, op.value, &op.rules, rpc)
                    .map(|v| (v, [0; 8]))
            });
            items.push(multi_result(&r));
        }
        self.send_durable(call, Status::OK, MultiResponse { items }.to_vec());
    }

    fn multi_remove(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, MultiRemoveRequest<'_>);
        let mut items = Vec::with_capacity(req.items.len());
        for it in &req.items {
            let Some(table) = table_id(it.table) else {
                items.push(MultiResult {
                    status: Status::TABLE_DOESNT_EXIST,
                    version: 0,
                });
                continue;
            };
            let rpc = ExactlyOnce {
                client_id: req.client_id,
                rpc_id: it.rpc_id,
                ack_id: req.ack_id,
                lease: req.lease,
            };
            if let Some(t) = crate::backed::write::backed(&self.master, table) {
                let r = self.backed_mutation(&t, it.key, None, None, &it.rules, rpc, kind::MULTI);
                items.push(multi_result(&r));
                continue;
            }
            let r = self.mutate(table, it.key, rpc, kind::MULTI, |e, rpc| {
                e.remove_rpc(table, it.key, &it.rules, rpc)
                    .map(|v| (v.unwrap_or(0), [0; 8]))
            });
            items.push(multi_result(&r));
        }
        self.send_durable(call, Status::OK, MultiResponse { items }.to_vec());
    }

    fn enumerate(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, EnumerateRequest);
        let table = table_or_reply!(call, req.table);
        let m = &self.master;
        if let Err(why) = m.check_serving() {
            return fail(call, Status::NOT_SERVING, 0, why);
        }
        let own = m.ownership.read();
        if !own.covers(table, req.start_hash, req.end_hash) {
            drop(own);
            return fail(
                call,
                Status::UNKNOWN_TABLET,
                0,
                "this master does not own that tablet range: refresh the tablet map",
            );
        }
        let max = (req.max_bytes as usize).clamp(1, ENUMERATE_MAX_BYTES);
        let res = m
            .engine
            .enumerate(table, req.start_hash..=req.end_hash, req.cursor, max);
        drop(own);
        match res {
            Ok(en) => {
                let resp = EnumerateResponse {
                    next_cursor: en.next_cursor,
                    objects: en
                        .objects
                        .iter()
                        .map(|o| EnumeratedObject {
                            key: &o.key,
                            value: &o.value,
                            version: o.version,
                        })
                        .collect(),
                };
                call.reply_with(Status::OK, |b| resp.encode(b));
            }
            Err(e) => Self::send(call, storage_reply(&e)),
        }
    }

    fn take_tablet_ownership(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, TakeTabletOwnershipRequest);
        let Some(r) = self.range(call, &req.0) else {
            return;
        };
        let this = self.clone();
        self.control(call, move || {
            this.master.prepare_table(r.table)?;
            this.master.ownership.write().take(r);
            tracing::info!(
                table = r.table,
                start = r.start,
                end = r.end,
                "took tablet ownership"
            );
            Ok(())
        });
    }

    fn drop_tablet_ownership(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, DropTabletOwnershipRequest);
        let Some(r) = self.range(call, &req.0) else {
            return;
        };
        let master = self.master.clone();
        self.control(call, move || {
            let table_gone = master.ownership.write().drop_range(r);
            if table_gone {
                master.backed.forget(r.table);
                master.writeback.drop_table(r.table);
            }
            tracing::info!(
                table = r.table,
                start = r.start,
                end = r.end,
                table_gone,
                "dropped tablet ownership"
            );
            delete_range(&master, r, table_gone);
            Ok(())
        });
    }

    fn prepare_migration(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, PrepareMigrationRequest);
        let Some(r) = self.range(call, &req.range) else {
            return;
        };
        let (this, source) = (self.clone(), req.source);
        self.control(call, move || {
            this.master.prepare_table(r.table)?;
            this.master.ownership.write().prepare_incoming(r);
            tracing::info!(table = r.table, start = r.start, end = r.end, %source, "prepared to receive a tablet");
            Ok(())
        });
    }

    fn migrate_tablet_out(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, MigrateTabletOutRequest<'_>);
        let (range, locator) = (req.range, req.target_locator.to_string());
        let Some(r) = self.range(call, &range) else {
            return;
        };
        let place = match self.master.pools.migrate.reserve() {
            Ok(p) => p,
            Err(busy) => return fail(call, Status::RETRY, 0, &busy.to_string()),
        };
        let Some(responder) = call.defer() else {
            return;
        };
        let master = self.master.clone();
        place.submit(move || match super::migration::migrate_out(&master, r, &locator) {
            Ok(stats) => {
                tracing::info!(
                    table = r.table,
                    objects = stats.objects,
                    resent = stats.resent,
                    completions = stats.completions,
                    "tablet copied; range frozen until dropped"
                );
                responder.reply(Status::OK, &[]);
            }
            Err(e) => {
                tracing::warn!(table = r.table, error = %e, "migration failed; serving the range again");
                responder.reply_vec(
                    Status::INTERNAL_ERROR,
                    ErrorReply {
                        version: 0,
                        detail: &e.to_string(),
                    }
                    .to_vec(),
                );
            }
        });
    }

    fn receive_migration_data(&self, call: &mut IncomingRpc<'_>) {
        let r = self.do_receive(call.payload());
        self.send_durable(call, r.status, r.payload);
    }

    fn recover_tablets(&self, call: &mut IncomingRpc<'_>) {
        let payload = call.payload().to_vec();
        if let Err(e) = RecoverTabletsRequest::decode(&payload) {
            return bad_request(call, e);
        }
        let place = match self.master.pools.recovery.reserve() {
            Ok(p) => p,
            Err(busy) => return fail(call, Status::RETRY, 0, &busy.to_string()),
        };
        let Some(responder) = call.defer() else {
            return;
        };
        let master = self.master.clone();
        place.submit(move || {
            let Ok(req) = RecoverTabletsRequest::decode(&payload) else {
                return responder.reply(Status::REQUEST_FORMAT_ERROR, &[]);
            };
            match super::recovery::recover(&master, &req) {
                Ok(r) => responder.reply_vec(Status::OK, r.to_vec()),
                Err(e) => {
                    let (status, detail) = (e.status(), e.to_string());
                    tracing::error!(crashed = %req.crashed, %status, detail, "recovery failed");
                    responder.reply_vec(
                        status,
                        ErrorReply {
                            version: 0,
                            detail: &detail,
                        }
                        .to_vec(),
                    )
                }
            }
        });
    }

    fn resize_memory(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, faascache_protocol::msg::elastic::ResizeMemoryRequest);
        let place = match self.master.pools.resize.reserve() {
            Ok(p) => p,
            Err(busy) => return fail(call, Status::RETRY, 0, &busy.to_string()),
        };
        let Some(responder) = call.defer() else {
            return;
        };
        let master = self.master.clone();
        place.submit(move || match master.resize(req.bytes) {
            Ok(r) => responder.reply_vec(Status::OK, r.to_vec()),
            Err(e) => responder.reply_vec(
                Status::RESIZE_REFUSED,
                ErrorReply {
                    version: 0,
                    detail: &e.to_string(),
                }
                .to_vec(),
            ),
        });
    }

    fn retire_server(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, faascache_protocol::msg::elastic::RetireServerRequest);
        match self.master.retire(req.server) {
            Ok(()) => call.reply(Status::OK, &[]),
            Err(e) => fail(call, Status::SERVER_DOESNT_EXIST, 0, &e.to_string()),
        }
    }

    fn write_object(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, faascache_protocol::msg::faas::WriteObjectRequest<'_>);
        let table = table_or_reply!(call, req.table);
        let Some(t) = crate::backed::write::backed(&self.master, table) else {
            return Self::plain_write_object(call);
        };
        let (key, value, meta) = (req.key, Some(req.value), Some(&req.meta));
        self.backed_single(call, &t, key, value, meta, &req.rules, req.rpc);
    }

    fn write_object_chunk(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(
            call,
            faascache_protocol::msg::large::WriteObjectChunkRequest<'_>
        );
        let table = table_or_reply!(call, req.table);
        let Some(t) = crate::backed::write::backed(&self.master, table) else {
            return Self::plain_large_write(call);
        };
        self.backed_chunk(call, &t, &req);
    }

    fn commit_object(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(
            call,
            faascache_protocol::msg::large::CommitObjectRequest<'_>
        );
        let table = table_or_reply!(call, req.table);
        let Some(t) = crate::backed::write::backed(&self.master, table) else {
            return Self::plain_large_write(call);
        };
        self.backed_commit(call, &t, &req);
    }

    fn read_object(&self, call: &mut IncomingRpc<'_>) {
        crate::backed::rpc::read_object(&self.master, call)
    }

    fn invalidate_objects(&self, call: &mut IncomingRpc<'_>) {
        crate::backed::rpc::invalidate(&self.master, call)
    }

    fn check_backing(&self, call: &mut IncomingRpc<'_>) {
        crate::backed::rpc::check_backing(&self.master, call)
    }

    fn flush_objects(&self, call: &mut IncomingRpc<'_>) {
        crate::backed::flush::flush_objects(&self.master, call)
    }

    fn get_server_info(&self, call: &mut IncomingRpc<'_>) {
        let m = &self.master;
        let stats = m.engine.stats();
        let durability = m.durability();
        let replication = m.replication.describe();
        let (transport, transport_choice) = m.transport.lock().clone();
        let last_error = m.counters.last_error();
        let resp = GetServerInfoResponse {
            server_id: m.server_id(),
            budget_bytes: stats.budget_bytes as u64,
            live_bytes: stats.live_bytes as u64,
            objects: stats.objects,
            tablets: m.served_ranges() as u32,
            transport: &transport,
            poll: &m.poll,
            durability: &durability,
            transport_choice: &transport_choice,
            eo_clients: m.results.clients() as u64,
            eo_results: m.results.len() as u64,
            eo_bytes: m.results.bytes() as u64,
            replication: &replication,
            under_replicated: m.replication.under_replicated(),
            cache: crate::backed::flush::cache_info(m, &last_error),
        };
        call.reply_with(Status::OK, |b| resp.encode(b));
    }
}

/// A multi-op item's result: the mutation's status and version, as recorded (no re-parse).
fn multi_result(r: &SavedReply) -> MultiResult {
    MultiResult {
        status: r.status,
        version: r.version,
    }
}

/// Delete the objects of a dropped range (the whole table if nothing of it is left here).
fn delete_range(master: &Master, r: Range, table_gone: bool) {
    let e = &master.engine;
    if table_gone {
        match e.drop_table(r.table) {
            Ok(n) => tracing::info!(table = r.table, objects = n, "dropped table data"),
            Err(StorageError::UnknownTable(_)) => {}
            Err(err) => tracing::warn!(table = r.table, error = %err, "cannot drop table data"),
        }
        return;
    }
    let mut cursor = None;
    let mut removed = 0u64;
    loop {
        let batch = match e.enumerate(r.table, r.start..=r.end, cursor, 256 * 1024) {
            Ok(b) => b,
            Err(_) => return,
        };
        for o in &batch.objects {
            // Only if it still is the version we saw (a later owner's write is kept).
            if e.remove(r.table, &o.key, &RejectRules::version_is(o.version))
                .is_ok()
            {
                removed += 1;
            }
        }
        match batch.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    tracing::info!(
        table = r.table,
        start = r.start,
        end = r.end,
        removed,
        "deleted a dropped range's objects"
    );
}
