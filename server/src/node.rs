//! A server process: a master on its own storage engine and (unless `--no-backup`) a backup
//! service for other masters' segments, enlisted with the coordinator and sending it
//! heartbeats. The master replicates its log to `replicas` backups on other servers
//! ([`crate::master::replicator`]). Heartbeats renew the master lease
//! ([`crate::master::lease`]): a server that has not heard from the coordinator within it stops
//! serving its tablets until a heartbeat gets through. A server the coordinator declared dead
//! is *fenced*: it stops serving and acknowledging writes and [`Node::fenced`] turns true (the
//! binary then exits). Threads: heartbeats (lease renewal, re-enlistment) and peer pings
//! (failure detection) run apart, so a slow ping never delays a renewal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use faascache_protocol::msg::backup::GetFencedMastersRequest;
use faascache_protocol::msg::coordinator::{EnlistServerRequest, HeartbeatRequest};
use faascache_protocol::msg::{ErrorReply, Message, ServerId, Services};
use faascache_transport::server::IncomingRpc;
use faascache_transport::CoordinatorLocator;
use faascache_transport::{call, CallError};
use faascache_transport::{
    ClientConfig, DispatchConfig, DispatchHandler, Handler, ServerHandle, ServiceLocator, Session,
    Status,
};

use crate::backup::{BackupConfig, BackupService};
use crate::master::{Master, MasterService};
use faascache_storage::{Engine, EngineConfig};

/// Longest time between two heartbeats (and the period of peer pings). With a master lease the
/// period is a quarter of the lease, at most this.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// Shortest period between two answered heartbeats.
pub const MIN_HEARTBEAT_PERIOD: Duration = Duration::from_millis(20);
/// Timeout of one heartbeat (and of connecting for it): shorter than the lease, so that a slow
/// reply leaves time for retries within it.
pub const HEARTBEAT_RPC_TIMEOUT: Duration = Duration::from_millis(300);
/// Delay before a failed heartbeat is retried.
pub const HEARTBEAT_RETRY: Duration = Duration::from_millis(50);
/// Timeout of one coordinator RPC from a server.
pub const COORDINATOR_RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of a server process.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The coordinator: its locator, or a `zk:` address where the leader publishes it.
    pub coordinator: CoordinatorLocator,
    /// Where to serve (port 0 picks a free port); with alternatives (`dpdk:...;tcp:...`) it
    /// serves on every one that starts ([`faascache_transport::serve_alternatives`]).
    pub listen: ServiceLocator,
    /// Refuse to start unless a kernel-bypass alternative (dpdk, infrc) of `listen` serves.
    pub require_bypass: bool,
    /// Log memory of the master, bytes.
    pub memory_bytes: usize,
    /// The most log memory a live resize may grow it to (address space reserved at start,
    /// not memory); `None` or less than `memory_bytes`: `memory_bytes` (no growth).
    pub max_memory_bytes: Option<usize>,
    /// Free log memory kept faulted in ahead of the log, bytes (`None`: the engine's default;
    /// see `EngineConfig::warm_ahead_bytes`).
    pub warm_ahead_bytes: Option<usize>,
    /// Dispatch cores and polling.
    pub dispatch: DispatchConfig,
    /// Give up enlisting after this long.
    pub enlist_timeout: Duration,
    /// Backup copies of every segment of this master's log (0 = memory only).
    pub replicas: usize,
    /// The backup service, or `None` (`--no-backup`).
    pub backup: Option<BackupConfig>,
    /// Credentials and endpoints of the object stores behind backed tables (`--store-config`,
    /// the environment; never from the coordinator).
    pub store_settings: faascache_objstore::Settings,
    /// Most dirty (not yet uploaded) bytes of write-back tables this master holds before it
    /// answers writes `WRITE_BACK_FULL`; `None`: a quarter of `memory_bytes`.
    pub write_back_limit: Option<u64>,
    /// How long chunks of a large write wait for their commit before they are removed
    /// (`--orphan-chunk-age`; `backed::chunked`).
    pub orphan_chunk_age: Duration,
}

/// The master over `engine`, with its backed tables' registry and write-back worker (the
/// dirty-bytes limit: `--write-back-limit`, else a quarter of memory).
fn new_master(cfg: &NodeConfig, engine: Engine, transport: &str) -> Arc<Master> {
    let master = Arc::new(
        Master::new(engine, transport, &cfg.dispatch.poll.to_string())
            .with_replicas(cfg.replicas)
            .with_backed(crate::backed::BackedTables::new(
                cfg.store_settings.clone(),
                Some(Arc::new(crate::backed::registry::CoordinatorSource::new(
                    cfg.coordinator.clone(),
                ))),
            ))
            .with_write_back_limit(cfg.write_back_limit.unwrap_or(cfg.memory_bytes as u64 / 4)),
    );
    if cfg.write_back_limit.is_none() {
        master.write_back_follows_memory();
    }
    master.chunked.set_orphan_age(cfg.orphan_chunk_age);
    crate::backed::write::start(&master);
    master
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Bad storage configuration (e.g. too little memory).
    #[error(transparent)]
    Config(#[from] faascache_storage::ConfigError),
    /// Could not serve.
    #[error(transparent)]
    Transport(#[from] faascache_transport::Error),
    /// Could not enlist.
    #[error("cannot enlist with the coordinator at {coordinator}: {reason} (is it running? check --coordinator)")]
    Enlist {
        /// Coordinator locator.
        coordinator: String,
        /// Cause.
        reason: String,
    },
    /// Could not start a thread.
    #[error("cannot start the heartbeat thread: {0}")]
    Thread(std::io::Error),
    /// The backup service could not start.
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
}

/// A running server. Dropping it stops it.
#[derive(Debug)]
pub struct Node {
    /// One per `listen` alternative that serves, in its order.
    servers: Vec<ServerHandle>,
    master: Arc<Master>,
    backup: Option<Arc<BackupService>>,
    stop: Arc<AtomicBool>,
    declared_dead: Arc<AtomicBool>,
    heartbeat: Option<JoinHandle<()>>,
    peers: Option<JoinHandle<()>>,
    replication: Option<JoinHandle<()>>,
    leases: Option<JoinHandle<()>>,
}

impl Node {
    /// Where it serves: every alternative that started, in the order of `listen`.
    pub fn locator(&self) -> ServiceLocator {
        advertised(&self.servers)
            .parse()
            .expect("local locators parse")
    }
    /// The master.
    pub fn master(&self) -> &Arc<Master> {
        &self.master
    }
    /// The backup service, if this server runs one.
    pub fn backup(&self) -> Option<&Arc<BackupService>> {
        self.backup.as_ref()
    }
    /// Whether the coordinator declared this server dead (it must stop serving and exit).
    pub fn fenced(&self) -> bool {
        self.master.replication.fenced() || self.declared_dead.load(Ordering::Acquire)
    }
    /// Whether the coordinator drained and removed this server and its grace period is over
    /// (it should exit with success: see [`crate::master::elastic::RETIRE_GRACE`]).
    pub fn retired(&self) -> bool {
        self.master.retired()
    }
    /// Stop.
    pub fn shutdown(mut self) {
        self.stop_all();
    }
    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.master.replication.stop();
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        if let Some(h) = self.peers.take() {
            let _ = h.join();
        }
        if let Some(h) = self.replication.take() {
            let _ = h.join();
        }
        if let Some(h) = self.leases.take() {
            let _ = h.join();
        }
        for s in self.servers.drain(..) {
            s.shutdown();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The locator a server advertises: its alternatives that serve, in order.
fn advertised(servers: &[ServerHandle]) -> String {
    servers
        .iter()
        .map(|s| s.local_locator().to_string())
        .collect::<Vec<_>>()
        .join(";")
}

fn enlist(
    session: &Session,
    locator: &str,
    previous: ServerId,
    services: Services,
) -> Result<ServerId, CallError> {
    let req = EnlistServerRequest {
        services,
        locator,
        previous_id: previous,
    };
    call(session, &req, COORDINATOR_RPC_TIMEOUT, |r| r.server_id)
}

/// Connect to the coordinator (resolving the leader first when it is found through ZooKeeper).
fn connect(loc: &CoordinatorLocator) -> Result<Session, faascache_transport::Error> {
    loc.connect(ClientConfig::default())
}

/// Start a server: engine, master service, backup service, enlistment, replication,
/// heartbeats.
pub fn start(cfg: NodeConfig) -> Result<Node, NodeError> {
    let mut engine_cfg = EngineConfig::with_memory(cfg.memory_bytes);
    engine_cfg.max_memory_bytes = cfg.max_memory_bytes.unwrap_or(0).max(cfg.memory_bytes);
    if let Some(w) = cfg.warm_ahead_bytes {
        engine_cfg.warm_ahead_bytes = w;
    }
    if cfg.replicas > 0 && engine_cfg.segment_bytes > crate::backup::MAX_REPLICA_BYTES {
        return Err(NodeError::Config(faascache_storage::ConfigError(format!(
            "segments of {} bytes exceed the largest replica a backup takes ({} bytes)",
            engine_cfg.segment_bytes,
            crate::backup::MAX_REPLICA_BYTES
        ))));
    }
    let engine = Engine::new(engine_cfg)?;
    let transport = cfg.listen.first().kind().to_string();
    let master = new_master(&cfg, engine, &transport);
    let backup = cfg.backup.clone().map(BackupService::open).transpose()?;
    if let Some(b) = &backup {
        master.set_backup(b.clone());
    }
    let service = DispatchHandler(MasterService {
        master: master.clone(),
    });
    let backup2 = backup.clone();
    let handler = move |call: &mut IncomingRpc<'_>| {
        if (0x0300..=0x03FF).contains(&call.opcode().as_u16()) {
            match &backup2 {
                Some(b) => faascache_transport::dispatch(&**b, call),
                None => call.reply_with(Status::SERVICE_NOT_AVAILABLE, |out| {
                    ErrorReply {
                        version: 0,
                        detail: "this server runs without a backup service (--no-backup)",
                    }
                    .encode(out)
                }),
            }
        } else {
            service.handle(call)
        }
    };
    let (servers, choice) = faascache_transport::serve_alternatives(
        &cfg.listen,
        Arc::new(handler),
        cfg.dispatch.clone(),
        cfg.require_bypass,
    )?;
    master.set_transport(choice.kind.as_str(), &choice.reason);
    // Serve tablets only under a master lease from the coordinator.
    master.lease.enforce();
    let locator = advertised(&servers);
    if servers.iter().any(|s| {
        s.local_locator()
            .host()
            .is_some_and(|h| h == "0.0.0.0" || h == "::")
    }) {
        tracing::warn!(%locator, "listening on a wildcard address: clients get this locator and cannot use it; listen on a concrete address");
    }
    let mut services = Services::MASTER;
    if backup.is_some() {
        services = Services(services.0 | Services::BACKUP.0);
    }
    if cfg.replicas > 0 {
        services = Services(services.0 | Services::REPLICATED.0);
    }
    // Enlist, retrying while the coordinator is not up yet.
    let deadline = Instant::now() + cfg.enlist_timeout;
    let (session, id) = loop {
        let attempt = connect(&cfg.coordinator)
            .map_err(CallError::from)
            .and_then(|s| enlist(&s, &locator, ServerId::NONE, services).map(|id| (s, id)));
        match attempt {
            Ok(ok) => break ok,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "coordinator not reachable yet; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                return Err(NodeError::Enlist {
                    coordinator: cfg.coordinator.to_string(),
                    reason: e.to_string(),
                })
            }
        }
    };
    master.set_server_id(id);
    tracing::info!(server = %id, %locator, memory = cfg.memory_bytes, replicas = cfg.replicas, backup = backup.is_some(), "server enlisted");
    if let Some(b) = &backup {
        learn_fences(b, &session);
    }
    // The first lease before serving anything (the coordinator sends tablets only after the
    // enlistment); if it fails, the heartbeat thread retries at once.
    let mut session = Some(session);
    let next = match heartbeat_once(&master, &cfg.coordinator, &mut session) {
        Ok(period) => Instant::now() + period,
        Err(_) => Instant::now(),
    };
    let replication = crate::master::replicator::start(master.clone(), cfg.coordinator.clone())
        .map_err(NodeError::Thread)?;
    let stop = Arc::new(AtomicBool::new(false));
    let declared_dead = Arc::new(AtomicBool::new(false));
    let (m2, b2, stop2, dead2, coord, loc2) = (
        master.clone(),
        backup.clone(),
        stop.clone(),
        declared_dead.clone(),
        cfg.coordinator.clone(),
        locator.clone(),
    );
    let heartbeat = std::thread::Builder::new()
        .name("faascache-heartbeat".into())
        .spawn(move || {
            heartbeat_loop(
                &m2,
                b2.as_deref(),
                &stop2,
                &dead2,
                &coord,
                &loc2,
                services,
                session,
                next,
            )
        })
        .map_err(NodeError::Thread)?;
    let (m3, stop3, coord3) = (master.clone(), stop.clone(), cfg.coordinator.clone());
    let peers = std::thread::Builder::new()
        .name("faascache-peers".into())
        .spawn(move || peer_loop(&m3, &stop3, &coord3))
        .map_err(NodeError::Thread)?;
    let leases =
        crate::master::client_leases::start(master.clone(), cfg.coordinator.clone(), stop.clone())
            .map_err(NodeError::Thread)?;
    Ok(Node {
        servers,
        master,
        backup,
        stop,
        declared_dead,
        heartbeat: Some(heartbeat),
        peers: Some(peers),
        replication,
        leases: Some(leases),
    })
}

/// The heartbeat thread: renews the master lease (see [`crate::master::lease`]) and keeps the
/// server registered. Each heartbeat is timed from its send; an answered one renews the lease
/// to send + `lease_ms`; the next is due a quarter of the lease later, and a failed one is
/// retried after [`HEARTBEAT_RETRY`] (with a fresh connection), so that a healthy master never
/// lets its lease lapse while one lost packet or slow reply is absorbed.
#[allow(clippy::too_many_arguments)]
fn heartbeat_loop(
    master: &Master,
    backup: Option<&BackupService>,
    stop: &AtomicBool,
    declared_dead: &AtomicBool,
    coord: &CoordinatorLocator,
    locator: &str,
    services: Services,
    mut session: Option<Session>,
    mut next: Instant,
) {
    let mut down_since: Option<Instant> = None;
    let mut lapsed = false;
    while !stop.load(Ordering::Acquire) {
        if master.retiring_since().is_some() {
            // Drained and being removed: a heartbeat now would re-enlist us.
            return;
        }
        let now = Instant::now();
        if next > now {
            // Short slices: a stopping node does not wait out a whole period.
            std::thread::sleep((next - now).min(Duration::from_millis(100)));
            continue;
        }
        match heartbeat_once(master, coord, &mut session) {
            Ok(period) => {
                next = Instant::now() + period;
                if let Some(t) = down_since.take() {
                    tracing::info!(after = ?t.elapsed(), "coordinator reachable again");
                }
                if lapsed {
                    lapsed = false;
                    tracing::info!("master lease renewed: serving again");
                }
                continue;
            }
            Err(Beat::Dead) if master.replication.replicas() > 0 => {
                // Declared dead: our tablets are recovered from our replicas elsewhere. A
                // replicated master must not come back with its old data.
                let id = master.server_id();
                tracing::error!(server = %id, "the coordinator declared this server dead: stopping (restart it to rejoin as a new server)");
                master.lease.revoke();
                declared_dead.store(true, Ordering::Release);
                master.replication.stop();
                return;
            }
            Err(Beat::Dead) => {
                // The coordinator does not know us as up (it lost its state, or timed us out):
                // register again, offering our id.
                let id = master.server_id();
                if let Some(s) = &session {
                    match enlist(s, locator, id, services) {
                        Ok(new) => {
                            master.set_server_id(new);
                            tracing::warn!(old = %id, new = %new, "re-enlisted with the coordinator");
                            if let Some(b) = backup {
                                learn_fences(b, s);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "re-enlisting failed"),
                    }
                }
            }
            Err(Beat::Failed(e)) => {
                if down_since.is_none() {
                    tracing::warn!(error = %e, "heartbeat failed; retrying");
                    down_since = Some(Instant::now());
                }
                session = None;
            }
        }
        if !lapsed && master.lease.check().is_err() && master.lease.enforced() {
            lapsed = true;
            let silent = down_since.map(|t| t.elapsed()).unwrap_or_default();
            tracing::warn!(?silent, "master lease lapsed: no contact with the coordinator; not serving until a heartbeat gets through");
        }
        next = Instant::now() + HEARTBEAT_RETRY;
    }
}

/// Why a heartbeat did not renew the lease.
enum Beat {
    /// The coordinator does not know this server as up.
    Dead,
    /// No answer (the error).
    Failed(String),
}

/// One heartbeat: renews the lease; returns when the next one is due.
fn heartbeat_once(
    master: &Master,
    coord: &CoordinatorLocator,
    session: &mut Option<Session>,
) -> Result<Duration, Beat> {
    if session.as_ref().is_none_or(|s| s.failure().is_some()) {
        let cfg = ClientConfig {
            connect_timeout: HEARTBEAT_RPC_TIMEOUT,
            ..ClientConfig::default()
        };
        *session = Some(
            coord
                .connect(cfg)
                .map_err(|e| Beat::Failed(e.to_string()))?,
        );
    }
    let s = session.as_ref().ok_or(Beat::Failed("no session".into()))?;
    let sent = Instant::now();
    let req = HeartbeatRequest {
        server_id: master.server_id(),
        budget_bytes: master.engine.memory_bytes().0 as u64,
    };
    match call(s, &req, HEARTBEAT_RPC_TIMEOUT, |r| {
        (r.cluster_time, r.lease_ms)
    }) {
        Ok((cluster_time, lease_ms)) => {
            master.observe_cluster_time(cluster_time);
            let lease = Duration::from_millis(u64::from(lease_ms));
            master.lease.renew(sent, lease);
            Ok((lease / 4).clamp(MIN_HEARTBEAT_PERIOD, HEARTBEAT_INTERVAL))
        }
        Err(CallError::Failed(f)) if f.status == Status::SERVER_DOESNT_EXIST => Err(Beat::Dead),
        Err(e) => Err(Beat::Failed(e.to_string())),
    }
}

/// A backup that (re-)enlisted learns which crashed masters to fence from the coordinator
/// (those whose recovery is not complete); failures are logged (its persisted fences stay).
fn learn_fences(backup: &BackupService, coordinator: &Session) {
    let token = backup.fence_token();
    match call(
        coordinator,
        &GetFencedMastersRequest,
        COORDINATOR_RPC_TIMEOUT,
        |r| r.masters,
    ) {
        Ok(list) => backup.adopt_fences(&list, token),
        Err(e) => {
            tracing::warn!(error = %e, "cannot learn the crashed masters to fence from the coordinator; keeping this backup's own fences")
        }
    }
}

/// The peer-ping thread: failure detection of other servers, on a session of its own so that a
/// slow ping never delays a heartbeat (and the lease).
fn peer_loop(master: &Master, stop: &AtomicBool, coord: &CoordinatorLocator) {
    let mut peers = PeerPinger::default();
    let mut session: Option<Session> = None;
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(HEARTBEAT_INTERVAL);
        if session.as_ref().is_none_or(|s| s.failure().is_some()) {
            session = connect(coord).ok();
        }
        if let Some(s) = &session {
            peers.check_one(s, master.server_id());
        }
    }
}

/// Failure detection among servers: each heartbeat, ping the next other server in the list;
/// one that does not answer is reported to the coordinator (`HintServerCrashed`), which checks
/// it itself before declaring it crashed.
#[derive(Default)]
struct PeerPinger {
    list: Vec<(ServerId, String)>,
    listed_at: Option<Instant>,
    next: usize,
}

/// Timeout of a peer ping.
const PEER_PING_TIMEOUT: Duration = Duration::from_millis(300);

impl PeerPinger {
    fn check_one(&mut self, coordinator: &Session, me: ServerId) {
        use faascache_protocol::msg::coordinator::{
            GetServerListRequest, HintServerCrashedRequest, ServerStatus,
        };
        if self
            .listed_at
            .is_none_or(|t| t.elapsed() > Duration::from_secs(5))
        {
            self.listed_at = Some(Instant::now());
            let req = GetServerListRequest {
                services: Services(0),
            };
            if let Ok(list) = call(coordinator, &req, COORDINATOR_RPC_TIMEOUT, |r| {
                r.servers
                    .iter()
                    .filter(|e| e.status == ServerStatus::Up && e.id != me)
                    .map(|e| (e.id, e.locator.to_string()))
                    .collect::<Vec<_>>()
            }) {
                self.list = list;
            }
        }
        if self.list.is_empty() {
            return;
        }
        self.next = (self.next + 1) % self.list.len();
        let (id, loc) = self.list[self.next].clone();
        let alive = loc
            .parse::<ServiceLocator>()
            .ok()
            .and_then(|l| faascache_transport::connect(&l, ClientConfig::default()).ok())
            .is_some_and(|s| {
                matches!(
                    s.call(faascache_transport::Opcode::Ping, &[], PEER_PING_TIMEOUT),
                    Ok((Status::OK, _))
                )
            });
        if !alive {
            tracing::warn!(server = %id, locator = %loc, "peer does not answer a ping: telling the coordinator");
            let _ = call(
                coordinator,
                &HintServerCrashedRequest { server: id },
                COORDINATOR_RPC_TIMEOUT,
                |_| (),
            );
            self.listed_at = None;
        }
    }
}
