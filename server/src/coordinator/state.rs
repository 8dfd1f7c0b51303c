//! The coordinator's state machine (sans-I/O): the server list, tables and the tablet map.
//! Messages and the current time come in as method arguments; what must happen outside — persist
//! the state, send a control RPC to a master — comes out as [`Action`]s that the RPC shell
//! (`coordinator::service`) carries out, persisting *before* sending or replying.
//!
//! Invariants (checked by [`CoordinatorState::check`], which tests run after every step):
//! * the tablets of a table are disjoint and cover `0..=u64::MAX` exactly;
//! * every tablet's owner is in the server list;
//! * table ids and names are unique; ids are never reused (`next_table_id` only grows);
//! * server ids are never reused: a slot's generation grows each time it is reused.

use std::collections::BTreeMap;
use std::time::Duration;

use faascache_protocol::msg::control::TabletRange;
use faascache_protocol::msg::coordinator::{ServerStatus, TabletState};
use faascache_protocol::msg::faas::TableBacking;
use faascache_protocol::msg::{ServerId, Services};
use faascache_transport::Status;

mod drain;
mod migration;
mod persist;
mod recovery;

pub use drain::{DrainStep, TabletMove};
pub use persist::{InvariantError, StateDecodeError};

/// A server in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRecord {
    /// Id.
    pub id: ServerId,
    /// Services.
    pub services: Services,
    /// Locator.
    pub locator: String,
    /// Status.
    pub status: ServerStatus,
    /// The replica epoch the master last recorded (`SetReplicaEpoch`): its recovery ignores
    /// open replicas below it. 0 until it loses an open replica.
    pub replica_epoch: u64,
}

/// A table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRecord {
    /// Id (≥ 1, < 2^32).
    pub id: u64,
    /// Name.
    pub name: String,
    /// The object store behind the table (`None`: a plain table); fixed at creation.
    pub backing: Option<TableBacking>,
}

/// A tablet of the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tablet {
    /// Table.
    pub table_id: u64,
    /// First hash.
    pub start: u64,
    /// Last hash (inclusive).
    pub end: u64,
    /// Owner.
    pub owner: ServerId,
    /// State.
    pub state: TabletState,
}

impl Tablet {
    /// The range as a control message.
    pub fn range(&self) -> TabletRange {
        TabletRange {
            table_id: self.table_id,
            start_hash: self.start,
            end_hash: self.end,
        }
    }
}

/// A control message to a master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// `TakeTabletOwnership`.
    Take(TabletRange),
    /// `DropTabletOwnership`.
    Drop(TabletRange),
}

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write the state to external storage (before anything else).
    Persist,
    /// Send a control RPC.
    Send {
        /// Target.
        to: ServerId,
        /// Its locator.
        locator: String,
        /// What.
        msg: Control,
    },
}

/// An operation the coordinator refuses; each has a status and a cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordError {
    /// No such table.
    #[error("table {0:?} does not exist")]
    NoSuchTable(String),
    /// No such table id.
    #[error("table id {0} does not exist")]
    NoSuchTableId(u64),
    /// No master is up.
    #[error("no master is up: start a server (faascache server --coordinator ...) first")]
    NoMasters,
    /// No tablet matches.
    #[error("table {table} has no tablet {start:#x}..={end:#x}: read the tablet map (split first to migrate part of a tablet)")]
    NoSuchTablet {
        /// Table.
        table: u64,
        /// Start.
        start: u64,
        /// End.
        end: u64,
    },
    /// Unknown or not-up server.
    #[error("server {0} is not an up master")]
    NoSuchServer(ServerId),
    /// The tablet is busy (migrating, recovering) or already there.
    #[error("{0}")]
    Conflict(String),
    /// Too many tables.
    #[error("table ids are exhausted (2^32 - 1 tables created)")]
    TooManyTables,
    /// The backing of a new table is not valid (the text says what to pass instead).
    #[error("{0}")]
    BadBacking(String),
    /// The table exists with another backing (a backing never changes).
    #[error("table {name:?} exists with {}: drop it first or use another name", describe_backing(.existing.as_ref()))]
    OtherBacking {
        /// Table.
        name: String,
        /// Its backing.
        existing: Option<TableBacking>,
    },
}

/// How errors and listings name a table's backing: `backing s3://b/p (write-back)` or `no backing`.
pub fn describe_backing(b: Option<&TableBacking>) -> String {
    match b {
        None => "no backing".to_string(),
        Some(b) if b.url.is_empty() => format!("no store ({})", b.policy),
        Some(b) => format!("backing {} ({})", b.url, b.policy),
    }
}

impl CoordError {
    /// The status a client gets.
    pub fn status(&self) -> Status {
        match self {
            CoordError::NoSuchTable(_) | CoordError::NoSuchTableId(_) => Status::TABLE_DOESNT_EXIST,
            CoordError::NoMasters => Status::SERVICE_NOT_AVAILABLE,
            CoordError::NoSuchTablet { .. } => Status::UNKNOWN_TABLET,
            CoordError::NoSuchServer(_) => Status::SERVER_DOESNT_EXIST,
            CoordError::Conflict(_) => Status::RETRY,
            CoordError::TooManyTables => Status::NO_TABLE_SPACE,
            CoordError::BadBacking(_) => Status::REQUEST_FORMAT_ERROR,
            CoordError::OtherBacking { .. } => Status::OBJECT_EXISTS,
        }
    }
}

/// A migration the shell must carry out (see `msg::control`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationPlan {
    /// The tablet.
    pub range: TabletRange,
    /// Current owner and its locator.
    pub source: (ServerId, String),
    /// New owner and its locator.
    pub target: (ServerId, String),
}

/// One recovery master's part of a crashed master's tablets: its id, locator and ranges.
pub type RecoveryPart = (ServerId, String, Vec<TabletRange>);

/// A tablet map: its version and the tablets with their owners' locators.
pub type TabletMap<'a> = (u64, Vec<(Tablet, &'a str)>);

/// Client ids are handed out from blocks of this size; only the block's end is persisted.
pub const CLIENT_ID_BLOCK: u64 = 1024;

/// The coordinator's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorState {
    /// Servers by slot index (one record per slot: the latest generation).
    servers: BTreeMap<u32, ServerRecord>,
    server_list_version: u64,
    tables: BTreeMap<String, TableRecord>,
    next_table_id: u64,
    /// Tablets sorted by (table, start).
    tablets: Vec<Tablet>,
    tablet_map_version: u64,
    /// Client ids below this may have been handed out (persisted).
    client_id_ceiling: u64,
    /// Volatile: next client id to hand out.
    next_client_id: u64,
    /// Volatile: when each up server was last heard from.
    last_heard: BTreeMap<u32, Duration>,
    /// Volatile: each server's log memory budget as its last heartbeat said (issue 18).
    budgets: BTreeMap<u32, u64>,
    /// Volatile: servers being drained (`DrainServer`): nothing new is placed on them. A
    /// restarted coordinator forgets a drain in progress (run `faascache drain` again).
    draining: std::collections::BTreeSet<u32>,
    /// Volatile: round-robin start for the next table.
    rr: usize,
    /// A server not heard from for this long is marked crashed.
    pub heartbeat_timeout: Duration,
}

impl Default for CoordinatorState {
    fn default() -> Self {
        CoordinatorState {
            servers: BTreeMap::new(),
            server_list_version: 0,
            tables: BTreeMap::new(),
            next_table_id: 1,
            tablets: Vec::new(),
            tablet_map_version: 0,
            client_id_ceiling: 1,
            next_client_id: 1,
            last_heard: BTreeMap::new(),
            budgets: BTreeMap::new(),
            draining: std::collections::BTreeSet::new(),
            rr: 0,
            heartbeat_timeout: Duration::from_secs(15),
        }
    }
}

impl CoordinatorState {
    // ---- queries -------------------------------------------------------------------------------

    /// Server list version and the records (all, or those running `filter`).
    pub fn server_list(&self, filter: Services) -> (u64, Vec<&ServerRecord>) {
        (
            self.server_list_version,
            self.servers
                .values()
                .filter(|s| s.services.has(filter))
                .collect(),
        )
    }

    /// A server's record.
    pub fn server(&self, id: ServerId) -> Option<&ServerRecord> {
        self.servers.get(&id.index()).filter(|s| s.id == id)
    }

    /// Table id by name.
    pub fn table_id(&self, name: &str) -> Result<u64, CoordError> {
        self.tables
            .get(name)
            .map(|t| t.id)
            .ok_or_else(|| CoordError::NoSuchTable(name.to_string()))
    }

    /// A table's name and backing by id.
    pub fn table_config(&self, id: u64) -> Result<&TableRecord, CoordError> {
        self.tables
            .values()
            .find(|t| t.id == id)
            .ok_or(CoordError::NoSuchTableId(id))
    }

    /// Tables with their tablet counts, by name.
    pub fn tables(&self) -> Vec<(&TableRecord, u32)> {
        self.tables
            .values()
            .map(|t| {
                (
                    t,
                    self.tablets.iter().filter(|x| x.table_id == t.id).count() as u32,
                )
            })
            .collect()
    }

    /// Tablet map version and the tablets of `table` (0 = all) with their owners' locators.
    pub fn tablet_map(&self, table: u64) -> Result<TabletMap<'_>, CoordError> {
        if table != 0 && !self.tables.values().any(|t| t.id == table) {
            return Err(CoordError::NoSuchTableId(table));
        }
        let v = self
            .tablets
            .iter()
            .filter(|t| table == 0 || t.table_id == table)
            .map(|t| (*t, self.server(t.owner).map_or("", |s| s.locator.as_str())))
            .collect();
        Ok((self.tablet_map_version, v))
    }

    /// The up masters that new tablets may go to (not being drained).
    fn up_masters(&self) -> Vec<&ServerRecord> {
        self.servers
            .values()
            .filter(|s| s.status == ServerStatus::Up && s.services.has(Services::MASTER))
            .filter(|s| !self.draining.contains(&s.id.index()))
            .collect()
    }

    fn send(&self, to: ServerId, msg: Control) -> Option<Action> {
        let s = self.server(to)?;
        (s.status == ServerStatus::Up).then(|| Action::Send {
            to,
            locator: s.locator.clone(),
            msg,
        })
    }

    // ---- membership ----------------------------------------------------------------------------

    /// A server enlists (or re-registers with `previous`). Returns its id.
    pub fn enlist(
        &mut self,
        services: Services,
        locator: &str,
        previous: ServerId,
        now: Duration,
    ) -> (ServerId, Vec<Action>) {
        let mut actions = vec![Action::Persist];
        if let Some(s) = self.server(previous) {
            if s.status == ServerStatus::Up && s.locator == locator && s.services == services {
                // Re-registration (e.g. after a coordinator restart): same id; re-send its
                // ownerships so the master and the map agree.
                self.last_heard.insert(previous.index(), now);
                for t in self
                    .tablets
                    .iter()
                    .filter(|t| t.owner == previous && t.state == TabletState::Normal)
                {
                    actions.extend(self.send(previous, Control::Take(t.range())));
                }
                return (previous, actions);
            }
        }
        // The same process, marked crashed while it was only slow or cut off (it still holds
        // its data: only a live process knows its id): bring it and its tablets back.
        // (Not a replicated master: its tablets may already be recovered elsewhere.)
        if let Some(s) = self.servers.get_mut(&previous.index()) {
            if s.id == previous
                && !s.services.has(Services::REPLICATED)
                && s.status == ServerStatus::Crashed
                && s.locator == locator
                && s.services == services
            {
                s.status = ServerStatus::Up;
                self.server_list_version += 1;
                self.last_heard.insert(previous.index(), now);
                for t in self.tablets.iter_mut().filter(|t| t.owner == previous) {
                    if t.state == TabletState::Recovering {
                        t.state = TabletState::Normal;
                    }
                }
                self.tablet_map_version += 1;
                for t in self.tablets.iter().filter(|t| t.owner == previous) {
                    actions.extend(self.send(previous, Control::Take(t.range())));
                }
                return (previous, actions);
            }
        }
        // A new process. Any up server at the same locator (or with the previous id) is a dead
        // predecessor: mark it crashed.
        let dead: Vec<ServerId> = self
            .servers
            .values()
            .filter(|s| s.status == ServerStatus::Up && (s.locator == locator || s.id == previous))
            .map(|s| s.id)
            .collect();
        for d in dead {
            self.mark_crashed(d);
        }
        // Reuse a removed slot (next generation), else a new slot.
        let reuse = self
            .servers
            .values()
            .find(|s| s.status == ServerStatus::Removed && s.id.generation() < u32::MAX)
            .map(|s| s.id);
        // (Slot indexes below u32::MAX are checked when a persisted state is decoded.)
        let id = match reuse {
            Some(old) => ServerId::new(old.index(), old.generation() + 1),
            None => ServerId::new(
                self.servers
                    .keys()
                    .next_back()
                    .map_or(1, |i| i.saturating_add(1)),
                1,
            ),
        };
        self.servers.insert(
            id.index(),
            ServerRecord {
                id,
                services,
                locator: locator.to_string(),
                status: ServerStatus::Up,
                replica_epoch: 0,
            },
        );
        self.last_heard.insert(id.index(), now);
        self.server_list_version += 1;
        (id, actions)
    }

    /// A heartbeat. `Err` if the id is not an up server (it should enlist again).
    pub fn heartbeat(&mut self, id: ServerId, now: Duration) -> Result<(), CoordError> {
        match self.server(id) {
            Some(s) if s.status == ServerStatus::Up => {
                self.last_heard.insert(id.index(), now);
                Ok(())
            }
            _ => Err(CoordError::NoSuchServer(id)),
        }
    }

    /// Record an up server's memory budget from its heartbeat (0: not said, kept as it was).
    pub fn record_budget(&mut self, id: ServerId, bytes: u64) {
        if bytes > 0 && self.server(id).is_some() {
            self.budgets.insert(id.index(), bytes);
        }
    }

    /// A server's memory budget as last heard (0: not known).
    pub fn budget(&self, id: ServerId) -> u64 {
        match self.server(id) {
            Some(_) => self.budgets.get(&id.index()).copied().unwrap_or(0),
            None => 0,
        }
    }

    /// A master records its replica epoch (kept if higher; persisted). `Err` if `id` is not an
    /// up server: a master declared crashed must not acknowledge writes any more.
    pub fn set_replica_epoch(
        &mut self,
        id: ServerId,
        epoch: u64,
    ) -> Result<Vec<Action>, CoordError> {
        match self.servers.get_mut(&id.index()) {
            Some(s) if s.id == id && s.status == ServerStatus::Up => {
                if epoch > s.replica_epoch {
                    s.replica_epoch = epoch;
                    Ok(vec![Action::Persist])
                } else {
                    Ok(Vec::new())
                }
            }
            _ => Err(CoordError::NoSuchServer(id)),
        }
    }

    fn mark_crashed(&mut self, id: ServerId) {
        let Some(s) = self.servers.get_mut(&id.index()) else {
            return;
        };
        if s.id != id || s.status != ServerStatus::Up {
            return;
        }
        s.status = ServerStatus::Crashed;
        self.last_heard.remove(&id.index());
        self.server_list_version += 1;
        let mut changed = false;
        for t in self.tablets.iter_mut().filter(|t| t.owner == id) {
            t.state = TabletState::Recovering;
            changed = true;
        }
        // A crashed server that owns nothing can give its slot to a new process.
        if !changed {
            s.status = ServerStatus::Removed;
        } else {
            self.tablet_map_version += 1;
        }
    }

    /// Time passes: servers silent for longer than the timeout are marked crashed.
    pub fn tick(&mut self, now: Duration) -> Vec<Action> {
        let late: Vec<ServerId> = self
            .servers
            .values()
            .filter(|s| s.status == ServerStatus::Up)
            .filter(|s| {
                self.last_heard
                    .get(&s.id.index())
                    .is_none_or(|&t| now.saturating_sub(t) > self.heartbeat_timeout)
            })
            .map(|s| s.id)
            .collect();
        if late.is_empty() {
            return Vec::new();
        }
        for id in late {
            tracing::warn!(server = %id, "no heartbeat: marking the server crashed (its tablets are recovered from its replicas)");
            self.mark_crashed(id);
        }
        vec![Action::Persist]
    }

    /// After loading persisted state: every up server counts as heard from `now`.
    pub fn restarted(&mut self, now: Duration) {
        let ups: Vec<u32> = self
            .servers
            .values()
            .filter(|s| s.status == ServerStatus::Up)
            .map(|s| s.id.index())
            .collect();
        for i in ups {
            self.last_heard.insert(i, now);
        }
        self.next_client_id = self.client_id_ceiling;
    }

    // ---- tables --------------------------------------------------------------------------------

    /// Create a plain table of `span` tablets over up masters (an existing name returns its id).
    pub fn create_table(
        &mut self,
        name: &str,
        span: u32,
    ) -> Result<(u64, Vec<Action>), CoordError> {
        self.create_table_with(name, span, None)
    }

    /// Create a table, backed by an object store if `backing` is given (validated first). An
    /// existing name returns its id if its backing is the same, else [`CoordError::OtherBacking`].
    pub fn create_table_with(
        &mut self,
        name: &str,
        span: u32,
        backing: Option<TableBacking>,
    ) -> Result<(u64, Vec<Action>), CoordError> {
        if let Some(b) = &backing {
            b.validate()
                .map_err(|e| CoordError::BadBacking(e.to_string()))?;
        }
        if let Some(t) = self.tables.get(name) {
            if t.backing != backing {
                return Err(CoordError::OtherBacking {
                    name: name.to_string(),
                    existing: t.backing.clone(),
                });
            }
            return Ok((t.id, Vec::new()));
        }
        let masters: Vec<ServerId> = self.up_masters().iter().map(|s| s.id).collect();
        if masters.is_empty() {
            return Err(CoordError::NoMasters);
        }
        if self.next_table_id > u32::MAX as u64 {
            return Err(CoordError::TooManyTables);
        }
        let id = self.next_table_id;
        self.next_table_id += 1;
        self.tables.insert(
            name.to_string(),
            TableRecord {
                id,
                name: name.to_string(),
                backing,
            },
        );
        let span = span.max(1) as u64;
        // Tablet i starts at ceil(i * 2^64 / span).
        let bound = |i: u64| {
            ((i as u128) << 64)
                .div_ceil(span as u128)
                .min(u64::MAX as u128 + 1)
        };
        let mut actions = vec![Action::Persist];
        for i in 0..span {
            let start = bound(i) as u64;
            let end = if i + 1 == span {
                u64::MAX
            } else {
                (bound(i + 1) - 1) as u64
            };
            let owner = masters[(self.rr + i as usize) % masters.len()];
            let t = Tablet {
                table_id: id,
                start,
                end,
                owner,
                state: TabletState::Normal,
            };
            actions.extend(self.send(owner, Control::Take(t.range())));
            self.tablets.push(t);
        }
        self.rr = self.rr.wrapping_add(1);
        self.sort_tablets();
        Ok((id, actions))
    }

    /// Drop a table: masters drop its tablets and data.
    pub fn drop_table(&mut self, name: &str) -> Result<Vec<Action>, CoordError> {
        let t = self
            .tables
            .remove(name)
            .ok_or_else(|| CoordError::NoSuchTable(name.to_string()))?;
        let mut actions = vec![Action::Persist];
        let (gone, keep): (Vec<Tablet>, Vec<Tablet>) =
            self.tablets.iter().partition(|x| x.table_id == t.id);
        self.tablets = keep;
        for x in gone {
            actions.extend(self.send(x.owner, Control::Drop(x.range())));
        }
        self.tablet_map_version += 1;
        Ok(actions)
    }

    // ---- client ids ----------------------------------------------------------------------------

    /// Client ids below this may have been handed out (the persisted ceiling).
    pub fn client_id_ceiling(&self) -> u64 {
        self.client_id_ceiling
    }

    /// A fresh client id; `Persist` when a new block is reserved.
    pub fn allocate_client_id(&mut self) -> (u64, Vec<Action>) {
        let id = self.next_client_id;
        self.next_client_id += 1;
        if self.next_client_id > self.client_id_ceiling {
            self.client_id_ceiling = id + CLIENT_ID_BLOCK;
            return (id, vec![Action::Persist]);
        }
        (id, Vec::new())
    }

    fn sort_tablets(&mut self) {
        self.tablets.sort_by_key(|t| (t.table_id, t.start));
        self.tablet_map_version += 1;
    }

    fn find_tablet(&self, r: &TabletRange) -> Option<usize> {
        self.tablets.iter().position(|t| {
            t.table_id == r.table_id && t.start == r.start_hash && t.end == r.end_hash
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn cluster(n: usize) -> (CoordinatorState, Vec<ServerId>) {
        let mut c = CoordinatorState::default();
        let ids = (0..n)
            .map(|i| {
                c.enlist(
                    Services::MASTER,
                    &format!("tcp:host=h,port={i}"),
                    ServerId::NONE,
                    S,
                )
                .0
            })
            .collect();
        (c, ids)
    }

    fn sends(a: &[Action]) -> Vec<(ServerId, Control)> {
        a.iter()
            .filter_map(|a| match a {
                Action::Send { to, msg, .. } => Some((*to, msg.clone())),
                Action::Persist => None,
            })
            .collect()
    }

    #[test]
    fn enlist_generations_and_reregistration() {
        let (mut c, ids) = cluster(2);
        assert_eq!(ids, vec![ServerId::new(1, 1), ServerId::new(2, 1)]);
        // Re-registration keeps the id.
        let (id, _) = c.enlist(Services::MASTER, "tcp:host=h,port=0", ids[0], S);
        assert_eq!(id, ids[0]);
        // A restarted process at the same locator: the old one crashed (owned nothing → removed),
        // the new one reuses the slot with the next generation.
        let (id, _) = c.enlist(Services::MASTER, "tcp:host=h,port=0", ServerId::NONE, S);
        assert_eq!(id, ServerId::new(1, 2));
        assert!(c.server(ids[0]).is_none());
        assert!(c.heartbeat(ids[0], S).is_err());
        assert!(c.heartbeat(id, S).is_ok());
        c.check().unwrap();
    }

    #[test]
    fn tables_tile_the_hash_space() {
        let (mut c, ids) = cluster(3);
        let (t, actions) = c.create_table("users", 3).unwrap();
        assert_eq!(t, 1);
        assert_eq!(actions[0], Action::Persist);
        let s = sends(&actions);
        assert_eq!(s.len(), 3);
        let owners: std::collections::HashSet<_> = s.iter().map(|x| x.0).collect();
        assert_eq!(owners.len(), 3);
        assert_eq!(c.create_table("users", 3).unwrap().0, 1);
        for span in [1, 2, 5, 7, 64] {
            c.create_table(&format!("t{span}"), span).unwrap();
            c.check().unwrap();
        }
        assert_eq!(c.table_id("t7").unwrap(), 5);
        assert_eq!(c.tables().len(), 6);
        let a = c.drop_table("users").unwrap();
        assert_eq!(sends(&a).len(), 3);
        assert!(matches!(sends(&a)[0].1, Control::Drop(_)));
        assert_eq!(
            c.drop_table("users"),
            Err(CoordError::NoSuchTable("users".into()))
        );
        assert_eq!(
            c.table_id("users").unwrap_err().status(),
            Status::TABLE_DOESNT_EXIST
        );
        // Ids are not reused.
        assert_eq!(c.create_table("users", 1).unwrap().0, 7);
        c.check().unwrap();
        let _ = ids;
    }

    #[test]
    fn no_masters_is_an_error() {
        let mut c = CoordinatorState::default();
        assert_eq!(c.create_table("x", 1).unwrap_err(), CoordError::NoMasters);
        assert_eq!(
            CoordError::NoMasters.status(),
            Status::SERVICE_NOT_AVAILABLE
        );
    }

    #[test]
    fn split_and_migrate() {
        let (mut c, ids) = cluster(2);
        let (t, _) = c.create_table("t", 1).unwrap();
        let owner = c.tablet_map(t).unwrap().1[0].0.owner;
        let other = *ids.iter().find(|&&i| i != owner).unwrap();
        c.split_tablet(t, 1 << 63).unwrap();
        assert!(c.split_tablet(t, 1 << 63).unwrap().is_empty());
        c.check().unwrap();
        let map = c.tablet_map(t).unwrap().1;
        assert_eq!(map.len(), 2);
        assert_eq!((map[1].0.start, map[1].0.end), (1 << 63, u64::MAX));
        // Migrate the upper half.
        assert!(c.begin_migration(t, 5, 6, other).is_err());
        assert_eq!(
            c.begin_migration(t, 1 << 63, u64::MAX, owner)
                .unwrap_err()
                .status(),
            Status::RETRY
        );
        let plan = c.begin_migration(t, 1 << 63, u64::MAX, other).unwrap();
        assert_eq!(plan.source.0, owner);
        assert!(c.begin_migration(t, 1 << 63, u64::MAX, other).is_err());
        assert!(c.split_tablet(t, (1 << 63) + 5).is_err());
        // A restart during the migration sees the tablet normal at the source.
        let back = CoordinatorState::decode(&c.encode()).unwrap();
        assert_eq!(
            back.tablet_map(t).unwrap().1[1].0.state,
            TabletState::Normal
        );
        let a = c.finish_migration(&plan);
        let s = sends(&a);
        assert_eq!(s[0], (other, Control::Take(plan.range)));
        assert_eq!(s[1], (owner, Control::Drop(plan.range)));
        assert_eq!(c.tablet_map(t).unwrap().1[1].0.owner, other);
        // An aborted migration leaves the owner.
        let plan = c.begin_migration(t, 0, (1 << 63) - 1, other).unwrap();
        let a = c.abort_migration(&plan);
        assert_eq!(sends(&a), vec![(other, Control::Drop(plan.range))]);
        assert_eq!(c.tablet_map(t).unwrap().1[0].0.owner, owner);
        c.check().unwrap();
    }

    #[test]
    fn heartbeat_timeout_marks_crashed() {
        let (mut c, ids) = cluster(2);
        let (t, _) = c.create_table("t", 2).unwrap();
        assert!(c.tick(S * 10).is_empty());
        c.heartbeat(ids[0], S * 14).unwrap();
        let a = c.tick(S * 20);
        assert_eq!(a, vec![Action::Persist]);
        assert_eq!(c.server(ids[1]).unwrap().status, ServerStatus::Crashed);
        assert_eq!(c.server(ids[0]).unwrap().status, ServerStatus::Up);
        let map = c.tablet_map(t).unwrap().1;
        assert!(map.iter().any(|x| x.0.state == TabletState::Recovering));
        // A new table avoids the crashed master.
        let (t2, a) = c.create_table("t2", 2).unwrap();
        assert!(sends(&a).iter().all(|x| x.0 == ids[0]));
        let _ = t2;
        c.check().unwrap();
        // The same process comes back (it offers its id): it keeps its id and tablets.
        let (back, a) = c.enlist(Services::MASTER, "tcp:host=h,port=1", ids[1], S * 21);
        assert_eq!(back, ids[1]);
        assert_eq!(sends(&a).len(), 1);
        assert!(c
            .tablet_map(t)
            .unwrap()
            .1
            .iter()
            .all(|x| x.0.state == TabletState::Normal));
        assert_eq!(c.server(ids[1]).unwrap().status, ServerStatus::Up);
        c.check().unwrap();
    }

    #[test]
    fn persistence_round_trip_and_corruption() {
        let (mut c, _) = cluster(3);
        c.create_table("a", 3).unwrap();
        c.create_table("b", 1).unwrap();
        c.split_tablet(2, 77).unwrap();
        let (id1, a) = c.allocate_client_id();
        assert_eq!(a, vec![Action::Persist]);
        let (id2, a) = c.allocate_client_id();
        assert!(a.is_empty() && id2 == id1 + 1);
        let bytes = c.encode();
        let mut back = CoordinatorState::decode(&bytes).unwrap();
        back.restarted(S);
        assert_eq!(back.tables().len(), 2);
        assert_eq!(back.tablet_map(0).unwrap().1.len(), 5);
        assert_eq!(back.server_list(Services(0)).1.len(), 3);
        // Client ids handed out before the restart are never handed out again.
        assert!(back.allocate_client_id().0 > id2);
        assert_eq!(
            back.encode()[..],
            CoordinatorState::decode(&back.encode()).unwrap().encode()[..]
        );
        for cut in 0..bytes.len() {
            assert!(CoordinatorState::decode(&bytes[..cut]).is_err());
        }
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(CoordinatorState::decode(&bad)
            .unwrap_err()
            .to_string()
            .contains("magic"));
    }

    /// Random operation sequences: the invariants hold after every step, and the persisted
    /// encoding always decodes to a state that encodes the same.
    #[test]
    fn random_operations_keep_invariants() {
        let mut x: u64 = 0x2545F4914F6CDD1D;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n.max(1)
        };
        let mut c = CoordinatorState::default();
        let mut plans: Vec<MigrationPlan> = Vec::new();
        let mut now = Duration::ZERO;
        for step in 0..3000 {
            now += Duration::from_millis(rnd(3000));
            let ids: Vec<ServerId> = c.servers.values().map(|s| s.id).collect();
            let tables: Vec<u64> = c.tables.values().map(|t| t.id).collect();
            let any_id = |r: u64| ids.get(r as usize).copied().unwrap_or(ServerId::NONE);
            match rnd(11) {
                0 => {
                    let prev = if rnd(2) == 0 {
                        ServerId::NONE
                    } else {
                        any_id(rnd(ids.len() as u64 + 1))
                    };
                    c.enlist(
                        Services::MASTER,
                        &format!("tcp:host=h,port={}", rnd(6)),
                        prev,
                        now,
                    );
                }
                1 | 2 => {
                    for id in &ids {
                        let _ = c.heartbeat(*id, now);
                    }
                }
                3 => {
                    c.tick(now);
                }
                4 => {
                    let _ = c.create_table(&format!("t{}", rnd(8)), rnd(5) as u32);
                }
                5 => {
                    let _ = c.drop_table(&format!("t{}", rnd(8)));
                }
                6 => {
                    if let Some(&t) = tables.get(rnd(tables.len() as u64) as usize) {
                        let _ = c.split_tablet(t, rnd(u64::MAX) << 1);
                    }
                }
                7 => {
                    let tablets: Vec<Tablet> = c.tablets.clone();
                    if let Some(t) = tablets.get(rnd(tablets.len() as u64) as usize) {
                        if let Ok(p) = c.begin_migration(
                            t.table_id,
                            t.start,
                            t.end,
                            any_id(rnd(ids.len() as u64)),
                        ) {
                            plans.push(p);
                        }
                    }
                }
                8 => {
                    if !plans.is_empty() {
                        let p = plans.swap_remove(rnd(plans.len() as u64) as usize);
                        if rnd(2) == 0 {
                            c.finish_migration(&p);
                        } else {
                            c.abort_migration(&p);
                        }
                    }
                }
                9 => {
                    c.allocate_client_id();
                }
                _ => {
                    let bytes = c.encode();
                    let back = CoordinatorState::decode(&bytes)
                        .unwrap_or_else(|e| panic!("step {step}: {e}"));
                    assert_eq!(back.encode(), bytes);
                }
            }
            c.check().unwrap_or_else(|e| panic!("step {step}: {e}"));
        }
        assert!(!c.tables.is_empty() || !c.servers.is_empty());
    }

    #[test]
    fn recovery_plan_splits_once_and_hands_over() {
        let mut st = CoordinatorState::default();
        let now = Duration::ZERO;
        let svc = Services(Services::MASTER.0 | Services::BACKUP.0 | Services::REPLICATED.0);
        let (a, _) = st.enlist(svc, "tcp:host=a,port=1", ServerId::NONE, now);
        let (b, _) = st.enlist(svc, "tcp:host=b,port=1", ServerId::NONE, now);
        let (c, _) = st.enlist(svc, "tcp:host=c,port=1", ServerId::NONE, now);
        st.create_table("t", 1).unwrap();
        let owner = st.tablets[0].owner;
        st.confirm_crashed(owner);
        assert_eq!(st.recoveries_pending().len(), 1);
        let (plan, _) = st.plan_recovery(owner, 8).unwrap();
        assert_eq!(plan.len(), 2, "{plan:?}");
        let n = st.tablets.len();
        // A retry (a part failed) plans the same ranges again without splitting further.
        let (again, _) = st.plan_recovery(owner, 8).unwrap();
        assert_eq!(st.tablets.len(), n);
        let mut r1: Vec<_> = plan.iter().flat_map(|p| p.2.clone()).collect();
        let mut r2: Vec<_> = again.iter().flat_map(|p| p.2.clone()).collect();
        r1.sort_by_key(|r| r.start_hash);
        r2.sort_by_key(|r| r.start_hash);
        assert_eq!(r1, r2);
        for (m, _, ranges) in &plan {
            assert!(*m != owner && [a, b, c].contains(m));
            st.finish_recovery(owner, *m, ranges);
        }
        st.check().unwrap();
        assert!(st
            .tablets
            .iter()
            .all(|t| t.owner != owner && t.state == TabletState::Normal));
        st.recovery_done(owner);
        assert_eq!(st.server(owner).unwrap().status, ServerStatus::Removed);
        assert!(st.recoveries_pending().is_empty());
    }
}
