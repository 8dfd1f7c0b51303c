//! Coordinator RPCs (`0x0200`–`0x02FF`): membership (enlist, heartbeat, server list), tables,
//! the tablet map, split and migration, client ids.

use super::common::{ClientLease, ServerId, Services, MAX_LOCATOR_LEN, MAX_TABLE_NAME_LEN};
use super::faas::TableBacking;
use super::{decode_all, read_count, read_str, write_count, Empty, Message, MsgError, Request};
use crate::wire::codec::{Reader, Writer};
use crate::wire::Opcode;

/// `EnlistServer`: services `u32` mask, locator (`u16` len, UTF-8), previous id `u64`.
///
/// A fresh process sends previous id 0 and gets a new [`ServerId`]. A process that is already
/// enlisted (it re-registers after a coordinator restart, or after being marked crashed for
/// missed heartbeats) sends its id: if the coordinator lists that id with the same locator, the
/// id is kept (and the server keeps its tablets); otherwise a new id is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnlistServerRequest<'a> {
    /// Services this server runs.
    pub services: Services,
    /// Where clients and the coordinator reach it.
    pub locator: &'a str,
    /// The id it had, or [`ServerId::NONE`].
    pub previous_id: ServerId,
}

/// `EnlistServer` reply: server id `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnlistServerResponse {
    /// The server's id.
    pub server_id: ServerId,
}

impl<'a> Message<'a> for EnlistServerRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out)
            .u32(self.services.0)
            .bytes_u16(self.locator.as_bytes())
            .u64(self.previous_id.0);
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(EnlistServerRequest {
                services: Services::read(r)?,
                locator: read_str(r, "locator", MAX_LOCATOR_LEN)?,
                previous_id: ServerId(r.u64()?),
            })
        })
    }
}
impl<'a> Request<'a> for EnlistServerRequest<'a> {
    const OPCODE: Opcode = Opcode::EnlistServer;
    type Response<'b> = EnlistServerResponse;
}

impl Message<'_> for EnlistServerResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.server_id.0);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(EnlistServerResponse {
                server_id: ServerId(r.u64()?),
            })
        })
    }
}

/// `ServerHeartbeat`: server id `u64`, then (absent from older servers: 0) its log memory
/// budget `u64` now (the coordinator's view of every server's memory, issue 18). Reply: empty
/// `OK`, or `SERVER_DOESNT_EXIST` if the coordinator does not list the id as up (the server
/// then enlists again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatRequest {
    /// The sender.
    pub server_id: ServerId,
    /// Its log memory budget, bytes (0: not said).
    pub budget_bytes: u64,
}

impl Message<'_> for HeartbeatRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out)
            .u64(self.server_id.0)
            .u64(self.budget_bytes);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(HeartbeatRequest {
                server_id: ServerId(r.u64()?),
                budget_bytes: if r.remaining() == 0 { 0 } else { r.u64()? },
            })
        })
    }
}
impl Request<'_> for HeartbeatRequest {
    const OPCODE: Opcode = Opcode::ServerHeartbeat;
    type Response<'b> = HeartbeatResponse;
}

/// `ServerHeartbeat` reply: cluster time `u64` (ms), master lease `u32` (ms).
///
/// The reply renews the server's *master lease*: the server may serve its tablets until
/// `lease_ms` after the moment it **sent** this heartbeat (by its own monotonic clock), and the
/// coordinator does not hand its tablets to recovery until `lease_ms` (plus a margin) after it
/// **answered** it — so the two intervals never overlap as long as clocks run at about the
/// same rate (`docs/operations.md`, "Leases").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// The coordinator's cluster time (ms), for client-lease checks on masters.
    pub cluster_time: u64,
    /// The master lease this reply grants (ms from the heartbeat's sending).
    pub lease_ms: u32,
}

impl Message<'_> for HeartbeatResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.cluster_time).u32(self.lease_ms);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(HeartbeatResponse {
                cluster_time: r.u64()?,
                lease_ms: r.u32()?,
            })
        })
    }
}

/// Status of a server in the server list. Wire: `u8` (1 up, 2 crashed, 3 removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerStatus {
    /// Enlisted and answering heartbeats.
    Up,
    /// Missed its heartbeats, or was replaced by a restarted process.
    Crashed,
    /// Removed from the cluster.
    Removed,
}

impl ServerStatus {
    /// Wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            ServerStatus::Up => 1,
            ServerStatus::Crashed => 2,
            ServerStatus::Removed => 3,
        }
    }
    /// From the wire value.
    pub fn from_u8(v: u8) -> Option<ServerStatus> {
        match v {
            1 => Some(ServerStatus::Up),
            2 => Some(ServerStatus::Crashed),
            3 => Some(ServerStatus::Removed),
            _ => None,
        }
    }
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<ServerStatus, MsgError> {
        let v = r.u8()?;
        Self::from_u8(v).ok_or(MsgError::BadField {
            field: "server_status",
            value: v as u64,
        })
    }
}

impl std::fmt::Display for ServerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerStatus::Up => "up",
            ServerStatus::Crashed => "crashed",
            ServerStatus::Removed => "removed",
        })
    }
}

/// `GetServerList`: services filter `u32` (a server is listed if it runs all of them; 0 = all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetServerListRequest {
    /// Filter.
    pub services: Services,
}

impl Message<'_> for GetServerListRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u32(self.services.0);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(GetServerListRequest {
                services: Services::read(r)?,
            })
        })
    }
}
impl Request<'_> for GetServerListRequest {
    const OPCODE: Opcode = Opcode::GetServerList;
    type Response<'b> = GetServerListResponse<'b>;
}

/// An entry of the server list: id `u64`, services `u32`, status `u8`, locator (`u16` len).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerEntry<'a> {
    /// Id.
    pub id: ServerId,
    /// Services.
    pub services: Services,
    /// Status.
    pub status: ServerStatus,
    /// Service locator.
    pub locator: &'a str,
    /// Its log memory budget as its last heartbeat said (0: not known yet).
    pub budget_bytes: u64,
}

/// `GetServerList` reply: list version `u64` (grows with every change), count `u32`, entries,
/// then (absent from older coordinators: all 0) each entry's memory budget `u64`, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetServerListResponse<'a> {
    /// Version of the list.
    pub version: u64,
    /// Servers.
    pub servers: Vec<ServerEntry<'a>>,
}

impl<'a> Message<'a> for GetServerListResponse<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.version);
        write_count(&mut w, self.servers.len());
        for s in &self.servers {
            w.u64(s.id.0)
                .u32(s.services.0)
                .u8(s.status.as_u8())
                .bytes_u16(s.locator.as_bytes());
        }
        for s in &self.servers {
            w.u64(s.budget_bytes);
        }
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let version = r.u64()?;
            let n = read_count(r, "servers", 8 + 4 + 1 + 2, usize::MAX)?;
            let mut servers = Vec::with_capacity(n);
            for _ in 0..n {
                servers.push(ServerEntry {
                    id: ServerId(r.u64()?),
                    services: Services::read(r)?,
                    status: ServerStatus::read(r)?,
                    locator: read_str(r, "locator", MAX_LOCATOR_LEN)?,
                    budget_bytes: 0,
                });
            }
            if r.remaining() > 0 {
                for s in &mut servers {
                    s.budget_bytes = r.u64()?;
                }
            }
            Ok(GetServerListResponse { version, servers })
        })
    }
}

/// `CreateTable`: name (`u16` len, UTF-8, 1..=1024 bytes), server span `u32` (number of
/// tablets, spread over that many masters round-robin; 0 is taken as 1), then optionally a
/// backing (presence byte + [`TableBacking`]; absent bytes mean none). Creating a table that
/// exists with the same backing returns its id (`OK`), so a retried create is harmless; with
/// another backing it is refused (`OBJECT_EXISTS`, detail naming the existing backing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTableRequest<'a> {
    /// Table name.
    pub name: &'a str,
    /// Tablets / masters to spread over.
    pub server_span: u32,
    /// The table's object store and cache parameters (a backed table), if any.
    pub backing: Option<TableBacking>,
}

/// Reply carrying a table id `u64` (`CreateTable`, `GetTableId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableIdResponse {
    /// Table id (≥ 1, < 2^32).
    pub table_id: u64,
}

fn read_name<'a>(r: &mut Reader<'a>) -> Result<&'a str, MsgError> {
    let n = read_str(r, "table name", MAX_TABLE_NAME_LEN)?;
    if n.is_empty() {
        return Err(MsgError::BadField {
            field: "table name (empty)",
            value: 0,
        });
    }
    Ok(n)
}

impl<'a> Message<'a> for CreateTableRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.bytes_u16(self.name.as_bytes()).u32(self.server_span);
        if let Some(b) = &self.backing {
            TableBacking::write_opt(Some(b), &mut w);
        }
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let name = read_name(r)?;
            let server_span = r.u32()?;
            let backing = if r.remaining() == 0 {
                None
            } else {
                TableBacking::read_opt(r)?
            };
            Ok(CreateTableRequest {
                name,
                server_span,
                backing,
            })
        })
    }
}
impl<'a> Request<'a> for CreateTableRequest<'a> {
    const OPCODE: Opcode = Opcode::CreateTable;
    type Response<'b> = TableIdResponse;
}

impl Message<'_> for TableIdResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.table_id);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| Ok(TableIdResponse { table_id: r.u64()? }))
    }
}

/// A request naming a table: name (`u16` len, UTF-8). Used by `DropTable` (reply empty;
/// `TABLE_DOESNT_EXIST` if there is no such table) and `GetTableId` (reply [`TableIdResponse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableNameRequest<'a> {
    /// Table name.
    pub name: &'a str,
}

impl<'a> Message<'a> for TableNameRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).bytes_u16(self.name.as_bytes());
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(TableNameRequest {
                name: read_name(r)?,
            })
        })
    }
}

/// `DropTable` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropTableRequest<'a>(pub TableNameRequest<'a>);
/// `GetTableId` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetTableIdRequest<'a>(pub TableNameRequest<'a>);

impl<'a> Message<'a> for DropTableRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out)
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        TableNameRequest::decode(buf).map(DropTableRequest)
    }
}
impl<'a> Request<'a> for DropTableRequest<'a> {
    const OPCODE: Opcode = Opcode::DropTable;
    type Response<'b> = Empty;
}
impl<'a> Message<'a> for GetTableIdRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out)
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        TableNameRequest::decode(buf).map(GetTableIdRequest)
    }
}
impl<'a> Request<'a> for GetTableIdRequest<'a> {
    const OPCODE: Opcode = Opcode::GetTableId;
    type Response<'b> = TableIdResponse;
}

/// `ListTables`: empty request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListTablesRequest;

impl Message<'_> for ListTablesRequest {
    fn encode(&self, _out: &mut Vec<u8>) {}
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        Empty::decode(buf).map(|_| ListTablesRequest)
    }
}
impl Request<'_> for ListTablesRequest {
    const OPCODE: Opcode = Opcode::ListTables;
    type Response<'b> = ListTablesResponse<'b>;
}

/// A table in `ListTables`: id `u64`, name (`u16` len), tablet count `u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableEntry<'a> {
    /// Id.
    pub id: u64,
    /// Name.
    pub name: &'a str,
    /// Number of tablets.
    pub tablets: u32,
}

/// `ListTables` reply: count `u32`, entries (sorted by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListTablesResponse<'a> {
    /// Tables.
    pub tables: Vec<TableEntry<'a>>,
}

impl<'a> Message<'a> for ListTablesResponse<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        write_count(&mut w, self.tables.len());
        for t in &self.tables {
            w.u64(t.id).bytes_u16(t.name.as_bytes()).u32(t.tablets);
        }
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let n = read_count(r, "tables", 8 + 2 + 1 + 4, usize::MAX)?;
            let mut tables = Vec::with_capacity(n);
            for _ in 0..n {
                tables.push(TableEntry {
                    id: r.u64()?,
                    name: read_name(r)?,
                    tablets: r.u32()?,
                });
            }
            Ok(ListTablesResponse { tables })
        })
    }
}

/// `GetTabletMap`: table id `u64` (0 = every table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetTabletMapRequest {
    /// Table, or 0 for all.
    pub table_id: u64,
}

impl Message<'_> for GetTabletMapRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.table_id);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| Ok(GetTabletMapRequest { table_id: r.u64()? }))
    }
}
impl Request<'_> for GetTabletMapRequest {
    const OPCODE: Opcode = Opcode::GetTabletMap;
    type Response<'b> = GetTabletMapResponse<'b>;
}

/// State of a tablet. Wire `u8`: 0 normal, 1 migrating (being moved; the owner answers, and
/// may answer `RETRY` briefly at the end), 2 recovering (its owner crashed; no recovery until
/// the durability issue: clients get errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TabletState {
    /// Served by its owner.
    Normal,
    /// Being migrated to another master.
    Migrating,
    /// Owner crashed.
    Recovering,
}

impl TabletState {
    /// Wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            TabletState::Normal => 0,
            TabletState::Migrating => 1,
            TabletState::Recovering => 2,
        }
    }
    /// From the wire value.
    pub fn from_u8(v: u8) -> Option<TabletState> {
        match v {
            0 => Some(TabletState::Normal),
            1 => Some(TabletState::Migrating),
            2 => Some(TabletState::Recovering),
            _ => None,
        }
    }
}

impl std::fmt::Display for TabletState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TabletState::Normal => "normal",
            TabletState::Migrating => "migrating",
            TabletState::Recovering => "recovering",
        })
    }
}

/// A tablet: table id `u64`, start hash `u64`, end hash `u64` (inclusive), owner id `u64`,
/// owner locator (`u16` len), state `u8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TabletEntry<'a> {
    /// Table.
    pub table_id: u64,
    /// First key hash.
    pub start_hash: u64,
    /// Last key hash (inclusive).
    pub end_hash: u64,
    /// Owning master.
    pub owner: ServerId,
    /// Owner's locator.
    pub locator: &'a str,
    /// State.
    pub state: TabletState,
}

/// `GetTabletMap` reply: map version `u64` (grows with every change), count `u32`, tablets
/// (sorted by table, then start hash). `TABLE_DOESNT_EXIST` if a named table does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetTabletMapResponse<'a> {
    /// Map version.
    pub version: u64,
    /// Tablets.
    pub tablets: Vec<TabletEntry<'a>>,
}

impl<'a> Message<'a> for GetTabletMapResponse<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.version);
        write_count(&mut w, self.tablets.len());
        for t in &self.tablets {
            w.u64(t.table_id)
                .u64(t.start_hash)
                .u64(t.end_hash)
                .u64(t.owner.0);
            w.bytes_u16(t.locator.as_bytes()).u8(t.state.as_u8());
        }
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let version = r.u64()?;
            let n = read_count(r, "tablets", 32 + 2 + 1, usize::MAX)?;
            let mut tablets = Vec::with_capacity(n);
            for _ in 0..n {
                let table_id = r.u64()?;
                let start_hash = r.u64()?;
                let end_hash = r.u64()?;
                let owner = ServerId(r.u64()?);
                let locator = read_str(r, "locator", MAX_LOCATOR_LEN)?;
                let s = r.u8()?;
                let state = TabletState::from_u8(s).ok_or(MsgError::BadField {
                    field: "tablet_state",
                    value: s as u64,
                })?;
                if start_hash > end_hash {
                    return Err(MsgError::BadField {
                        field: "end_hash",
                        value: end_hash,
                    });
                }
                tablets.push(TabletEntry {
                    table_id,
                    start_hash,
                    end_hash,
                    owner,
                    locator,
                    state,
                });
            }
            Ok(GetTabletMapResponse { version, tablets })
        })
    }
}

/// `SplitTablet`: table id `u64`, split hash `u64`. The tablet containing the hash is split into
/// `[start, split-1]` and `[split, end]` (same owner). Splitting at a tablet's start is a no-op
/// (`OK`). Reply empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitTabletRequest {
    /// Table.
    pub table_id: u64,
    /// First hash of the new upper tablet.
    pub split_hash: u64,
}

impl Message<'_> for SplitTabletRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.table_id).u64(self.split_hash);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(SplitTabletRequest {
                table_id: r.u64()?,
                split_hash: r.u64()?,
            })
        })
    }
}
impl Request<'_> for SplitTabletRequest {
    const OPCODE: Opcode = Opcode::SplitTablet;
    type Response<'b> = Empty;
}

/// `MigrateTablet`: table id `u64`, start hash `u64`, end hash `u64` (must be exactly one
/// tablet; split first), target server id `u64`. Replies `OK` when the target owns the tablet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrateTabletRequest {
    /// Table.
    pub table_id: u64,
    /// Tablet start.
    pub start_hash: u64,
    /// Tablet end (inclusive).
    pub end_hash: u64,
    /// New owner.
    pub target: ServerId,
}

impl Message<'_> for MigrateTabletRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out)
            .u64(self.table_id)
            .u64(self.start_hash)
            .u64(self.end_hash)
            .u64(self.target.0);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(MigrateTabletRequest {
                table_id: r.u64()?,
                start_hash: r.u64()?,
                end_hash: r.u64()?,
                target: ServerId(r.u64()?),
            })
        })
    }
}
impl Request<'_> for MigrateTabletRequest {
    const OPCODE: Opcode = Opcode::MigrateTablet;
    type Response<'b> = Empty;
}

/// `GetClientLease`: client id `u64` (0 = a new client). Reply [`ClientLeaseResponse`].
///
/// With 0 the coordinator allocates a client id (unique for the life of the cluster, never 0)
/// and grants it a lease of `term` milliseconds. With an id whose lease is still valid it
/// renews that lease. With an id whose lease has expired (or was released) it grants a *new*
/// id: a client must compare the id it gets back with the one it asked to renew, and treat the
/// outcome of every RPC it sent under the old id as unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GetClientLeaseRequest {
    /// The id to renew, or 0 for a new one.
    pub client_id: u64,
}

/// `GetClientLease` reply: client id `u64`, lease ([`ClientLease`], 16), term `u64` (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLeaseResponse {
    /// The id for [`super::ExactlyOnce::client_id`] (differs from the request's when that
    /// lease had expired).
    pub client_id: u64,
    /// The lease, in cluster time.
    pub lease: ClientLease,
    /// The lease term (ms): renew well before `lease.expiration` (at half the term).
    pub term_ms: u64,
}

impl Message<'_> for GetClientLeaseRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.client_id);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(GetClientLeaseRequest {
                client_id: r.u64()?,
            })
        })
    }
}
impl Request<'_> for GetClientLeaseRequest {
    const OPCODE: Opcode = Opcode::GetClientLease;
    type Response<'b> = ClientLeaseResponse;
}
impl Message<'_> for ClientLeaseResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.client_id);
        self.lease.write(&mut w);
        w.u64(self.term_ms);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(ClientLeaseResponse {
                client_id: r.u64()?,
                lease: ClientLease::read(r)?,
                term_ms: r.u64()?,
            })
        })
    }
}

/// `ReleaseClientLease`: client id `u64`. Reply: empty `OK` (also for an unknown or expired
/// id). The lease ends now: masters may free the client's saved results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReleaseClientLeaseRequest {
    /// The id whose lease ends.
    pub client_id: u64,
}

impl Message<'_> for ReleaseClientLeaseRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.client_id);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(ReleaseClientLeaseRequest {
                client_id: r.u64()?,
            })
        })
    }
}
impl Request<'_> for ReleaseClientLeaseRequest {
    const OPCODE: Opcode = Opcode::ReleaseClientLease;
    type Response<'b> = Empty;
}

/// Most client ids one `CheckClientLeases` asks about.
pub const MAX_LEASE_CHECKS: usize = 8192;

/// `CheckClientLeases`: count `u32` (≤ [`MAX_LEASE_CHECKS`]), client ids `u64`. Reply
/// [`CheckClientLeasesResponse`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckClientLeasesRequest {
    /// The ids to check.
    pub client_ids: Vec<u64>,
}

/// `CheckClientLeases` reply: cluster time `u64` (ms), count `u32`, one expiration `u64` per
/// requested id in order (0 = expired, released or never granted: the id will never be valid
/// again).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckClientLeasesResponse {
    /// The coordinator's cluster time (ms).
    pub cluster_time: u64,
    /// Per id: the lease's expiration in cluster time, or 0 if it is dead.
    pub expirations: Vec<u64>,
}

impl Message<'_> for CheckClientLeasesRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        write_count(&mut w, self.client_ids.len());
        for id in &self.client_ids {
            w.u64(*id);
        }
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let n = read_count(r, "client ids", 8, MAX_LEASE_CHECKS)?;
            let mut client_ids = Vec::with_capacity(n);
            for _ in 0..n {
                client_ids.push(r.u64()?);
            }
            Ok(CheckClientLeasesRequest { client_ids })
        })
    }
}
impl Request<'_> for CheckClientLeasesRequest {
    const OPCODE: Opcode = Opcode::CheckClientLeases;
    type Response<'b> = CheckClientLeasesResponse;
}
impl Message<'_> for CheckClientLeasesResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.cluster_time);
        write_count(&mut w, self.expirations.len());
        for e in &self.expirations {
            w.u64(*e);
        }
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let cluster_time = r.u64()?;
            let n = read_count(r, "lease expirations", 8, MAX_LEASE_CHECKS)?;
            let mut expirations = Vec::with_capacity(n);
            for _ in 0..n {
                expirations.push(r.u64()?);
            }
            Ok(CheckClientLeasesResponse {
                cluster_time,
                expirations,
            })
        })
    }
}

/// `HintServerCrashed` (server → coordinator): the sender could not reach server `u64`. The
/// coordinator pings it itself and marks it crashed (starting recovery) only if it does not
/// answer. Reply empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintServerCrashedRequest {
    /// The suspect.
    pub server: ServerId,
}

impl Message<'_> for HintServerCrashedRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.server.0);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(HintServerCrashedRequest {
                server: ServerId(r.u64()?),
            })
        })
    }
}
impl Request<'_> for HintServerCrashedRequest {
    const OPCODE: Opcode = Opcode::HintServerCrashed;
    type Response<'b> = Empty;
}

#[cfg(test)]
mod tests;
