//! [`Client`]: the handle applications use.
//!
//! What it keeps (all behind one `Arc`, shared by clones and threads):
//! - one [`Session`] to the coordinator and one per master, created on first use and reused by
//!   every thread; a session that fails is dropped and reopened by the next call;
//! - the table-name → id cache and, per table, a [`TabletMap`] (key-hash ranges → master);
//!   a map is refreshed from the coordinator when a master answers `UNKNOWN_TABLET`, when a
//!   master's session fails, or when a hash falls in a hole of the map;
//! - the exactly-once state: the client id and its lease (`lease.rs`: granted by the
//!   coordinator on the first tracked mutation, renewed in the background, released on drop),
//!   the next rpc id and the set of rpc ids still in flight, from which the ack id follows.
//!
//! Every call runs until success, a final error, or its deadline (`ClientOptions::timeout`),
//! retrying retryable answers with [`Backoff`]. A retried mutation carries the same rpc id, so
//! the master executes it at most once and returns the saved result on a repeat.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faascache_protocol::msg::coordinator::{
    CreateTableRequest, DropTableRequest, GetServerListRequest, GetTableIdRequest,
    GetTabletMapRequest, ListTablesRequest, TableNameRequest,
};
use faascache_protocol::msg::faas::TableBacking;
use faascache_protocol::msg::{self, Failure, MsgError, Request, Services};
use faascache_transport::CallError;
use faascache_transport::CoordinatorLocator;
use faascache_transport::{ServiceLocator, Session, Status};
use parking_lot::{Mutex, RwLock};

use crate::cache_stats::CacheStats;
use crate::error::{disposition, Disposition, Error, Result, TableId};
use crate::lease_state::Leases;
use crate::options::ClientOptions;
use crate::retry::Backoff;
use crate::tablets::{Tablet, TabletMap};

/// An object as read: its value and version.
///
/// ```
/// let o = faascache_client::Object { value: b"v".to_vec(), version: 3 };
/// assert_eq!(o.value, b"v");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Object {
    /// The value.
    pub value: Vec<u8>,
    /// The object's version (grows with every write of the key).
    pub version: u64,
}

/// A table as listed by [`Client::list_tables`].
///
/// ```
/// let t = faascache_client::TableInfo { id: 1, name: "users".into(), tablets: 2 };
/// assert_eq!(t.name, "users");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// Table id.
    pub id: TableId,
    /// Name.
    pub name: String,
    /// Number of tablets.
    pub tablets: u32,
}

/// A server as listed by [`Client::servers`].
///
/// ```
/// let s = faascache_client::ServerInfo {
///     id: "1.0".into(), services: "master".into(), status: "up".into(),
///     locator: "tcp:host=127.0.0.1,port=12247".into(), budget_bytes: 1 << 30 };
/// assert_eq!(s.status, "up");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Server id (`index.generation`).
    pub id: String,
    /// Services it runs (`master`, `master+backup`).
    pub services: String,
    /// `up`, `crashed` or `removed`.
    pub status: String,
    /// Its service locator.
    pub locator: String,
    /// Its log memory budget as the coordinator last heard it (0: not known yet).
    pub budget_bytes: u64,
}

/// What a server reports about itself ([`Client::server_stats`]; shown by `faascache status`).
///
/// ```
/// let s = faascache_client::ServerStats {
///     id: "1.0".into(), budget_bytes: 1 << 30, live_bytes: 0, objects: 0, tablets: 1,
///     transport: "tcp".into(), transport_choice: "first choice".into(), poll: "adaptive:200us".into(),
///     durability: "memory only: lost if this server crashes".into(),
///     eo_clients: 0, eo_results: 0, eo_bytes: 0,
///     replication: "memory only (--replicas 0)".into(), under_replicated: false,
///     cache: Default::default() };
/// assert_eq!(s.transport, "tcp");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStats {
    /// Server id (`index.generation`).
    pub id: String,
    /// Log memory budget, bytes.
    pub budget_bytes: u64,
    /// Live log bytes.
    pub live_bytes: u64,
    /// Live objects.
    pub objects: u64,
    /// Tablets it owns.
    pub tablets: u32,
    /// Transport serving clients (e.g. `tcp`).
    pub transport: String,
    /// Why that transport: `first choice`, or the preferred alternatives that failed and how.
    pub transport_choice: String,
    /// Poll mode of its dispatch cores.
    pub poll: String,
    /// What an acknowledged write survives.
    pub durability: String,
    /// Exactly-once state of the master: clients it keeps results for.
    pub eo_clients: u64,
    /// Exactly-once state: saved results.
    pub eo_results: u64,
    /// Exactly-once state: bytes it takes.
    pub eo_bytes: u64,
    /// How its log is replicated now, or why it is under-replicated.
    pub replication: String,
    /// Some segment of its log has fewer replicas than its `--replicas`.
    pub under_replicated: bool,
    /// Backed tables: write-back backlog, hits, misses, store errors (zeros from a server
    /// without backed tables or from before them).
    pub cache: CacheStats,
}

/// Exactly-once bookkeeping: rpc ids in flight and the ack id that follows from them. (The
/// client id and its lease are in `lease.rs`.)
#[derive(Debug, Default)]
pub(crate) struct RpcIds {
    next: u64,
    in_flight: BTreeSet<u64>,
}

impl RpcIds {
    /// A fresh rpc id, now in flight.
    pub(crate) fn begin(&mut self) -> u64 {
        self.next += 1;
        self.in_flight.insert(self.next);
        self.next
    }
    /// The rpc is done (reply received, or given up): it may be acknowledged.
    pub(crate) fn finish(&mut self, id: u64) {
        self.in_flight.remove(&id);
    }
    /// Every rpc id ≤ the ack id has completed.
    pub(crate) fn ack_id(&self) -> u64 {
        match self.in_flight.first() {
            Some(&first) => first - 1,
            None => self.next,
        }
    }
}

pub(crate) struct Inner {
    locator: CoordinatorLocator,
    locator_text: String,
    opts: ClientOptions,
    coordinator: Mutex<Option<Session>>,
    masters: RwLock<HashMap<String, Session>>,
    table_ids: RwLock<HashMap<String, TableId>>,
    table_names: RwLock<HashMap<TableId, String>>,
    tablets: RwLock<HashMap<TableId, Arc<TabletMap>>>,
    pub(crate) rpc: Mutex<RpcIds>,
    pub(crate) leases: Leases,
}

impl Drop for Inner {
    /// The last clone is gone: stop the renewal thread and release the lease (bounded wait).
    fn drop(&mut self) {
        let coordinator = self.coordinator.get_mut().take();
        self.leases
            .shut_down(coordinator.as_ref(), self.opts.timeout);
    }
}

/// A FaaSCache client: cheap to clone (`Arc` inside), `Send + Sync`; share one per process.
///
/// ```no_run
/// use faascache_client::Client;
/// let client = Client::connect("tcp:host=127.0.0.1,port=12246")?;
/// let t = client.create_table("users", 1)?;
/// let v1 = client.write(t, b"alice", b"42")?;
/// let obj = client.read(t, b"alice")?;
/// assert_eq!((obj.value.as_slice(), obj.version), (&b"42"[..], v1));
/// # Ok::<(), faascache_client::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("coordinator", &self.inner.locator_text)
            .field("masters", &self.inner.masters.read().len())
            .finish()
    }
}

/// What one attempt of a master call ran into, when it did not succeed.
pub(crate) enum Attempt {
    /// Retry after backing off (cause for the timeout message).
    Retry(String),
    /// Refresh the table's tablet map, then retry.
    Refresh(String),
    /// The master's session is broken: reopen it, refresh the map, retry.
    Reconnect(String),
    /// Final.
    Fail(Error),
}

impl Client {
    /// Connects to the coordinator at `locator` (`;` separates alternatives in order of
    /// preference) with default [`ClientOptions`]. `zk:HOST:PORT[,HOST:PORT...][/CHROOT]`
    /// finds the leading coordinator through ZooKeeper, and finds it again whenever the
    /// coordinator's session fails (standby coordinators taking over).
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn connect(locator: &str) -> Result<Client> {
        Self::connect_with(locator, ClientOptions::default())
    }

    /// Connects with explicit options. Fails if the locator does not parse or the coordinator
    /// cannot be reached.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use faascache_client::{Client, ClientOptions};
    /// let c = Client::connect_with("tcp:host=127.0.0.1,port=12246",
    ///                              ClientOptions::default().timeout(Duration::from_secs(1)))?;
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn connect_with(locator: &str, opts: ClientOptions) -> Result<Client> {
        let parsed: CoordinatorLocator = locator
            .trim()
            .parse()
            .map_err(|e: faascache_transport::LocatorError| Error::BadLocator(e.to_string()))?;
        let client = Client {
            inner: Arc::new(Inner {
                locator: parsed,
                locator_text: locator.trim().to_string(),
                opts,
                coordinator: Mutex::new(None),
                masters: RwLock::new(HashMap::new()),
                table_ids: RwLock::new(HashMap::new()),
                table_names: RwLock::new(HashMap::new()),
                tablets: RwLock::new(HashMap::new()),
                rpc: Mutex::new(RpcIds::default()),
                leases: Leases::default(),
            }),
        };
        client.coordinator_session()?;
        Ok(client)
    }

    /// The coordinator's locator, as given.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// assert!(c.coordinator().starts_with("tcp:"));
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn coordinator(&self) -> &str {
        &self.inner.locator_text
    }

    /// The options this client runs with.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// assert_eq!(c.options().multi_batch, 20);
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// The transport of the coordinator session (`tcp`, `udp`, ...), for `status` displays.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// assert_eq!(c.transport()?, "tcp");
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn transport(&self) -> Result<String> {
        Ok(self.coordinator_session()?.transport().to_string())
    }

    // ---- sessions --------------------------------------------------------------------------

    pub(crate) fn coordinator_session(&self) -> Result<Session> {
        let mut g = self.inner.coordinator.lock();
        if let Some(s) = g.as_ref() {
            if s.failure().is_none() {
                return Ok(s.clone());
            }
        }
        // A zk: locator is resolved to the current leader here, so a reconnect after the
        // coordinator failed finds its successor.
        let s = self
            .inner
            .locator
            .connect(self.inner.opts.transport.clone())
            .map_err(|e| {
                Error::from_transport(e, &format!("coordinator at {}", self.inner.locator_text))
            })?;
        *g = Some(s.clone());
        Ok(s)
    }

    fn forget_coordinator(&self) {
        *self.inner.coordinator.lock() = None;
    }

    /// The session to the master at `locator`, opened on first use.
    pub(crate) fn master_session(&self, locator: &str) -> Result<Session> {
        if let Some(s) = self.inner.masters.read().get(locator) {
            if s.failure().is_none() {
                return Ok(s.clone());
            }
        }
        let what = || format!("master at {locator}");
        let parsed: ServiceLocator =
            locator
                .parse()
                .map_err(|e: faascache_transport::LocatorError| {
                    Error::Protocol(format!(
                        "the coordinator gave a bad master locator {locator:?}: {e}"
                    ))
                })?;
        let s = faascache_transport::connect(&parsed, self.inner.opts.transport.clone())
            .map_err(|e| Error::from_transport(e, &what()))?;
        let mut g = self.inner.masters.write();
        match g.get(locator) {
            // Another thread connected meanwhile: use its session, drop ours.
            Some(existing) if existing.failure().is_none() => Ok(existing.clone()),
            _ => {
                g.insert(locator.to_string(), s.clone());
                Ok(s)
            }
        }
    }

    /// The session to the master that owns `key` of `table` now (shared with the client's own
    /// calls). For pipelining raw RPCs, e.g. echo benchmarks; ordinary operations need it not.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use faascache_client::{transport::Opcode, Client};
    /// let c = Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// let s = c.master_session_for(t, b"alice")?;
    /// let (status, reply) = s.call(Opcode::Echo, b"hi", Duration::from_secs(1)).unwrap();
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn master_session_for(&self, table: TableId, key: &[u8]) -> Result<Session> {
        let mut backoff = self.backoff();
        self.on_master(
            table,
            msg::key_hash(key),
            &mut backoff,
            |s, _| Ok(s.clone()),
        )
    }

    pub(crate) fn forget_master(&self, locator: &str) {
        let mut g = self.inner.masters.write();
        if g.get(locator).is_some_and(|s| s.failure().is_some()) {
            g.remove(locator);
        }
    }

    pub(crate) fn inner_opts(&self) -> &ClientOptions {
        &self.inner.opts
    }

    pub(crate) fn backoff(&self) -> Backoff {
        let o = &self.inner.opts;
        Backoff::new(o.min_backoff, o.max_backoff, Instant::now() + o.timeout)
    }

    pub(crate) fn timeout_error(&self, cause: String) -> Error {
        Error::Timeout {
            timeout: self.inner.opts.timeout,
            cause,
        }
    }

    // ---- coordinator calls -----------------------------------------------------------------

    /// Runs a coordinator RPC with retries (reconnecting if the session fails).
    pub(crate) fn coord_call<'r, R, T>(
        &self,
        req: &R,
        table: &str,
        mut f: impl for<'b> FnMut(R::Response<'b>) -> T,
    ) -> Result<T>
    where
        R: Request<'r>,
    {
        let mut backoff = self.backoff();
        let mut last: Option<String> = None;
        loop {
            if let Some(cause) = &last {
                if backoff.remaining(Instant::now()).is_zero() {
                    return Err(self.timeout_error(cause.clone()));
                }
            }
            let cause = match self.coordinator_session() {
                Err(e) if e.is_transient() => e.to_string(),
                Err(e) => return Err(e),
                Ok(s) => {
                    let left = backoff.remaining(Instant::now());
                    match faascache_transport::call(&s, req, left, &mut f) {
                        Ok(v) => return Ok(v),
                        Err(CallError::Failed(fail)) => match disposition(fail.status) {
                            Disposition::Retry | Disposition::RefreshTablets => fail.to_string(),
                            _ if fail.status == Status::OBJECT_EXISTS
                                && R::OPCODE == CreateTableRequest::OPCODE =>
                            {
                                return Err(Error::TableExists(fail.detail));
                            }
                            _ => return Err(failure_error(&fail, table)),
                        },
                        Err(CallError::Malformed(e)) => return Err(malformed(R::OPCODE, e)),
                        Err(CallError::Transport(faascache_transport::Error::Timeout(_))) => {
                            return Err(self.timeout_error("the coordinator did not answer".into()))
                        }
                        Err(CallError::Transport(e)) => {
                            self.forget_coordinator();
                            Error::from_transport(
                                e,
                                &format!("coordinator at {}", self.inner.locator_text),
                            )
                            .to_string()
                        }
                    }
                }
            };
            tracing::debug!(%cause, "coordinator call: retrying");
            if !backoff.sleep() {
                return Err(self.timeout_error(cause));
            }
            last = Some(cause);
        }
    }

    /// Creates a table spread over `span` masters (tablets), or returns the id of the existing
    /// table of that name.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let id = c.create_table("users", 2)?;
    /// assert_eq!(c.table_id("users")?, id);
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn create_table(&self, name: &str, span: u32) -> Result<TableId> {
        self.create_table_with(name, span, None)
    }

    /// [`Client::create_table`] with an optional backing (see `create_backed_table`).
    pub(crate) fn create_table_with(
        &self,
        name: &str,
        span: u32,
        backing: Option<TableBacking>,
    ) -> Result<TableId> {
        check_table_name(name)?;
        let req = CreateTableRequest {
            name,
            server_span: span.max(1),
            backing,
        };
        let id = self.coord_call(&req, name, |r| r.table_id)?;
        self.remember_table(name, id);
        Ok(id)
    }

    /// Drops the table and all its objects. [`Error::NoSuchTable`] if it does not exist.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// c.drop_table("users")?;
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn drop_table(&self, name: &str) -> Result<()> {
        check_table_name(name)?;
        let r = self.coord_call(&DropTableRequest(TableNameRequest { name }), name, |_| ());
        self.forget_table_name(name);
        r
    }

    /// The id of the table `name` (cached after the first call).
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn table_id(&self, name: &str) -> Result<TableId> {
        if let Some(&id) = self.inner.table_ids.read().get(name) {
            return Ok(id);
        }
        check_table_name(name)?;
        let id = self.coord_call(&GetTableIdRequest(TableNameRequest { name }), name, |r| {
            r.table_id
        })?;
        self.remember_table(name, id);
        Ok(id)
    }

    fn remember_table(&self, name: &str, id: TableId) {
        self.inner.table_ids.write().insert(name.to_string(), id);
        self.inner.table_names.write().insert(id, name.to_string());
    }

    pub(crate) fn forget_table_name(&self, name: &str) {
        if let Some(id) = self.inner.table_ids.write().remove(name) {
            self.inner.table_names.write().remove(&id);
            self.inner.tablets.write().remove(&id);
        }
    }

    fn forget_table_id(&self, id: TableId) {
        if let Some(name) = self.inner.table_names.write().remove(&id) {
            self.inner.table_ids.write().remove(&name);
        }
        self.inner.tablets.write().remove(&id);
    }

    /// The name of a table id for messages (`table 7` if unknown).
    pub(crate) fn table_label(&self, id: TableId) -> String {
        match self.inner.table_names.read().get(&id) {
            Some(n) => n.clone(),
            None => format!("table {id}"),
        }
    }

    /// Every table, sorted by name.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// for t in c.list_tables()? {
    ///     println!("{} {} {}", t.id, t.name, t.tablets);
    /// }
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn list_tables(&self) -> Result<Vec<TableInfo>> {
        self.coord_call(&ListTablesRequest, "", |r| {
            r.tables
                .iter()
                .map(|t| TableInfo {
                    id: t.id,
                    name: t.name.to_string(),
                    tablets: t.tablets,
                })
                .collect()
        })
    }

    /// The coordinator's server list (every server, whatever its state).
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let up = c.servers()?.iter().filter(|s| s.status == "up").count();
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn servers(&self) -> Result<Vec<ServerInfo>> {
        let req = GetServerListRequest {
            services: Services(0),
        };
        self.coord_call(&req, "", |r| {
            r.servers
                .iter()
                .map(|s| ServerInfo {
                    id: s.id.to_string(),
                    services: s.services.to_string(),
                    status: s.status.to_string(),
                    locator: s.locator.to_string(),
                    budget_bytes: s.budget_bytes,
                })
                .collect()
        })
    }

    /// Asks the server at `locator` (a master, as listed by [`Client::servers`]) about itself:
    /// memory, objects, tablets, transport, polling and durability. One attempt.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// for s in c.servers()?.iter().filter(|s| s.status == "up") {
    ///     let st = c.server_stats(&s.locator)?;
    ///     println!("{} {} objects, writes survive: {}", s.locator, st.objects, st.durability);
    /// }
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn server_stats(&self, locator: &str) -> Result<ServerStats> {
        use faascache_protocol::msg::control::GetServerInfoRequest;
        let s = self.master_session(locator)?;
        let r =
            faascache_transport::call(&s, &GetServerInfoRequest, self.inner.opts.timeout, |r| {
                ServerStats {
                    id: r.server_id.to_string(),
                    budget_bytes: r.budget_bytes,
                    live_bytes: r.live_bytes,
                    objects: r.objects,
                    tablets: r.tablets,
                    transport: r.transport.to_string(),
                    transport_choice: r.transport_choice.to_string(),
                    poll: r.poll.to_string(),
                    durability: r.durability.to_string(),
                    eo_clients: r.eo_clients,
                    eo_results: r.eo_results,
                    eo_bytes: r.eo_bytes,
                    replication: r.replication.to_string(),
                    under_replicated: r.under_replicated,
                    cache: CacheStats::from(&r.cache),
                }
            });
        match r {
            Ok(v) => Ok(v),
            Err(CallError::Failed(f)) => Err(failure_error(&f, "")),
            Err(CallError::Malformed(e)) => Err(malformed(GetServerInfoRequest::OPCODE, e)),
            Err(CallError::Transport(e)) => {
                self.forget_master(locator);
                Err(Error::from_transport(e, &format!("server at {locator}")))
            }
        }
    }

    /// The tablets of `table`, fresh from the coordinator (also refreshes the cache).
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// for tablet in c.tablets(t)? {
    ///     println!("{:#018x}..={:#018x} on {}", tablet.start, tablet.end, tablet.master);
    /// }
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn tablets(&self, table: TableId) -> Result<Vec<Tablet>> {
        Ok(self.fetch_tablet_map(table)?.tablets().to_vec())
    }

    fn fetch_tablet_map(&self, table: TableId) -> Result<Arc<TabletMap>> {
        let label = self.table_label(table);
        let r = self.coord_call(&GetTabletMapRequest { table_id: table }, &label, |r| {
            r.tablets
                .iter()
                .filter(|t| t.table_id == table)
                .map(|t| Tablet {
                    start: t.start_hash,
                    end: t.end_hash,
                    master: t.locator.to_string(),
                    server_id: t.owner.0,
                })
                .collect::<Vec<_>>()
        });
        let tablets = match r {
            Err(e @ Error::NoSuchTable(_)) => {
                self.forget_table_id(table);
                return Err(e);
            }
            r => r?,
        };
        let map =
            Arc::new(TabletMap::new(table, tablets).map_err(|e| Error::Protocol(e.to_string()))?);
        self.inner.tablets.write().insert(table, map.clone());
        Ok(map)
    }

    /// The cached tablet map of `table`, fetched if absent.
    pub(crate) fn tablet_map(&self, table: TableId) -> Result<Arc<TabletMap>> {
        if let Some(m) = self.inner.tablets.read().get(&table) {
            return Ok(m.clone());
        }
        self.fetch_tablet_map(table)
    }

    /// Drops the cached map of `table` if it is still `stale` (another thread may have
    /// refreshed it already).
    pub(crate) fn invalidate_map(&self, table: TableId) {
        self.inner.tablets.write().remove(&table);
    }

    /// Cached tablet maps (for grouping multi-ops).
    pub(crate) fn cached_maps(&self) -> HashMap<TableId, Arc<TabletMap>> {
        self.inner.tablets.read().clone()
    }

    // ---- exactly-once -----------------------------------------------------------------------

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    pub(crate) fn inner_arc(&self) -> &Arc<Inner> {
        &self.inner
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Client {
        Client { inner }
    }

    pub(crate) fn ack_id(&self) -> u64 {
        self.inner.rpc.lock().ack_id()
    }

    // ---- master calls -------------------------------------------------------------------------

    /// Runs `f` against the master owning `hash` of `table` until it succeeds, fails for good
    /// or the deadline passes. `f` gets the session and the time left.
    pub(crate) fn on_master<T>(
        &self,
        table: TableId,
        hash: u64,
        backoff: &mut Backoff,
        mut f: impl FnMut(&Session, Duration) -> std::result::Result<T, Attempt>,
    ) -> Result<T> {
        let mut last: Option<String> = None;
        loop {
            // The back-off may have slept up to the deadline: report why we were waiting
            // rather than starting an attempt with no time left.
            if let Some(cause) = &last {
                if backoff.remaining(Instant::now()).is_zero() {
                    return Err(self.timeout_error(cause.clone()));
                }
            }
            let cause = match self.tablet_map(table) {
                Err(e) if e.is_transient() => e.to_string(),
                Err(e) => return Err(e),
                Ok(map) => match map.lookup(hash) {
                    None => {
                        self.invalidate_map(table);
                        format!(
                            "no master owns key hash {hash:#018x} of {} yet",
                            self.table_label(table)
                        )
                    }
                    Some(tablet) => match self.master_session(&tablet.master) {
                        Err(e) if e.is_transient() => {
                            self.invalidate_map(table);
                            e.to_string()
                        }
                        Err(e) => return Err(e),
                        Ok(s) => match f(&s, backoff.remaining(Instant::now())) {
                            Ok(v) => return Ok(v),
                            Err(Attempt::Fail(e)) => return Err(e),
                            Err(Attempt::Retry(c)) => c,
                            Err(Attempt::Refresh(c)) => {
                                self.invalidate_map(table);
                                c
                            }
                            Err(Attempt::Reconnect(c)) => {
                                self.forget_master(&tablet.master);
                                self.invalidate_map(table);
                                c
                            }
                        },
                    },
                },
            };
            tracing::debug!(%cause, table, "master call: retrying");
            if !backoff.sleep() {
                return Err(self.timeout_error(cause));
            }
            last = Some(cause);
        }
    }

    /// Classifies the outcome of one master RPC.
    pub(crate) fn classify<T>(
        &self,
        table: TableId,
        opcode: faascache_transport::Opcode,
        r: std::result::Result<T, CallError>,
    ) -> std::result::Result<T, Attempt> {
        match r {
            Ok(v) => Ok(v),
            Err(CallError::Failed(fail)) => match disposition(fail.status) {
                Disposition::Ok => unreachable!("OK is not a failure"),
                Disposition::Retry => Err(Attempt::Retry(fail.to_string())),
                Disposition::RefreshTablets => Err(Attempt::Refresh(fail.to_string())),
                Disposition::Fail => {
                    if fail.status == Status::TABLE_DOESNT_EXIST {
                        let label = self.table_label(table);
                        self.forget_table_id(table);
                        return Err(Attempt::Fail(Error::NoSuchTable(label)));
                    }
                    Err(Attempt::Fail(failure_error(
                        &fail,
                        &self.table_label(table),
                    )))
                }
            },
            Err(CallError::Malformed(e)) => Err(Attempt::Fail(malformed(opcode, e))),
            Err(CallError::Transport(faascache_transport::Error::Timeout(_))) => {
                Err(Attempt::Fail(self.timeout_error(format!(
                    "the master did not answer a {opcode} RPC"
                ))))
            }
            Err(CallError::Transport(e @ faascache_transport::Error::TooLarge { .. })) => {
                Err(Attempt::Fail(Error::from_transport(e, "master")))
            }
            Err(CallError::Transport(e)) => Err(Attempt::Reconnect(e.to_string())),
        }
    }
}

/// A server's refusal as a typed error; the server's detail is kept where it helps.
pub(crate) fn failure_error(f: &Failure, table: &str) -> Error {
    if f.status == Status::REQUEST_FORMAT_ERROR && !f.detail.is_empty() {
        // The master refused the arguments (value too large for its segments, increment of a
        // value that is not a number, ...) and said why.
        let d = f.detail.to_ascii_lowercase();
        if d.contains("not an 8-byte number") || d.contains("overflows") {
            return Error::NotANumber;
        }
        return Error::InvalidArgument(f.detail.clone());
    }
    if !f.detail.is_empty() {
        let d = f.detail.clone();
        match f.status {
            Status::STORE_UNAVAILABLE => return Error::StoreUnavailable(d),
            Status::STORE_REJECTED => return Error::StoreRejected(d),
            Status::WRITE_BACK_FULL => return Error::WriteBackFull(d),
            Status::OBJECT_TOO_LARGE => return Error::ObjectTooLarge(d),
            Status::RESIZE_REFUSED => return Error::ResizeRefused(d),
            _ => {}
        }
    }
    let with_detail = |m: String| {
        if f.detail.is_empty() {
            m
        } else {
            format!("{m} ({})", f.detail)
        }
    };
    match Error::from_status(f.status, table, f.version) {
        Error::Server(m) => Error::Server(with_detail(m)),
        Error::Protocol(m) => Error::Protocol(with_detail(m)),
        other => other,
    }
}

pub(crate) fn malformed(op: faascache_transport::Opcode, e: MsgError) -> Error {
    Error::Protocol(format!("malformed {op} reply: {e}"))
}

pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    msg::check_key(key).map_err(|e| match e {
        MsgError::EmptyKey => Error::InvalidArgument("empty key: keys are 1 to 65535 bytes".into()),
        _ => Error::TooLarge {
            what: "key",
            len: key.len(),
            max: msg::MAX_KEY_LEN,
        },
    })
}

pub(crate) fn check_value(value: &[u8]) -> Result<()> {
    msg::check_value(value).map_err(|_| Error::TooLarge {
        what: "value",
        len: value.len(),
        max: msg::MAX_VALUE_LEN,
    })
}

fn check_table_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument("empty table name".into()));
    }
    if name.len() > msg::MAX_TABLE_NAME_LEN {
        return Err(Error::TooLarge {
            what: "table name",
            len: name.len(),
            max: msg::MAX_TABLE_NAME_LEN,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_id_trails_the_oldest_rpc_in_flight() {
        let mut ids = RpcIds::default();
        assert_eq!(ids.ack_id(), 0);
        let a = ids.begin();
        let b = ids.begin();
        let c = ids.begin();
        assert_eq!((a, b, c), (1, 2, 3));
        assert_eq!(ids.ack_id(), 0);
        ids.finish(b);
        assert_eq!(ids.ack_id(), 0, "1 is still in flight");
        ids.finish(a);
        assert_eq!(ids.ack_id(), 2);
        ids.finish(c);
        assert_eq!(ids.ack_id(), 3);
        assert_eq!(ids.begin(), 4);
        assert_eq!(ids.ack_id(), 3);
    }

    #[test]
    fn failures_map_with_details() {
        let f = Failure {
            status: Status::WRONG_VERSION,
            version: 12,
            detail: "version 12 ≠ 3".into(),
        };
        assert_eq!(
            failure_error(&f, "t"),
            Error::VersionMismatch { current: 12 }
        );
        let f = Failure {
            status: Status::INTERNAL_ERROR,
            version: 0,
            detail: "boom".into(),
        };
        assert!(matches!(failure_error(&f, "t"), Error::Server(m) if m.contains("boom")));
        let f = Failure {
            status: Status::REQUEST_FORMAT_ERROR,
            version: 0,
            detail: "value is 3 bytes, not an 8-byte number; increment needs an 8-byte value"
                .into(),
        };
        assert_eq!(failure_error(&f, "t"), Error::NotANumber);
        let f = Failure {
            status: Status::REQUEST_FORMAT_ERROR,
            version: 0,
            detail: "increment overflows the stored number".into(),
        };
        assert_eq!(failure_error(&f, "t"), Error::NotANumber);
        let f = Failure {
            status: Status::REQUEST_FORMAT_ERROR,
            version: 0,
            detail: "value of 9999999 bytes is too large; the limit is 1048576 bytes".into(),
        };
        assert!(
            matches!(failure_error(&f, "t"), Error::InvalidArgument(m) if m.contains("too large"))
        );
        let f = Failure {
            status: Status::REQUEST_FORMAT_ERROR,
            version: 0,
            detail: String::new(),
        };
        assert!(matches!(failure_error(&f, "t"), Error::Protocol(_)));
    }

    #[test]
    fn keys_and_values_are_checked_before_sending() {
        assert!(matches!(check_key(b""), Err(Error::InvalidArgument(_))));
        assert!(matches!(
            check_key(&vec![0; msg::MAX_KEY_LEN + 1]),
            Err(Error::TooLarge { what: "key", .. })
        ));
        assert!(check_key(b"k").is_ok());
        assert!(matches!(
            check_value(&vec![0; msg::MAX_VALUE_LEN + 1]),
            Err(Error::TooLarge { what: "value", .. })
        ));
        assert!(check_table_name("").is_err());
        assert!(check_table_name("users").is_ok());
    }
}
