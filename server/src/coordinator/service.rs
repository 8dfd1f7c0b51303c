//! The coordinator's RPC shell around [`CoordinatorState`]: decodes requests, feeds them to the
//! state machine, persists the state to [`ExternalStorage`] before replying or sending (encoded
//! under the state mutex, written outside it in order by [`super::persister`]), and
//! carries out control RPCs to masters.
//!
//! Threads: queries (server list, table id, tables, tablet map, heartbeats) are answered on the
//! dispatch core under the state mutex. Operations that persist or talk to masters are deferred
//! to one worker thread, in arrival order; migration copies and crash-hint checks run on bounded
//! worker pools (`crate::pool`; a request beyond the bound gets `RETRY`). A ticker thread
//! checks heartbeats twice a second.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use faascache_protocol::msg::backup::{
    BackupGetReplicasRequest, BackupGetReplicasResponse, BackupRecoveryDoneRequest,
    GetFencedMastersRequest, GetFencedMastersResponse, SetReplicaEpochRequest, MAX_FENCED_MASTERS,
};
use faascache_protocol::msg::control::{
    DropTabletOwnershipRequest, RecoverTabletsRequest, RecoverTabletsResponse,
    TakeTabletOwnershipRequest,
};
use faascache_protocol::msg::coordinator::*;
use faascache_protocol::msg::{ErrorReply, Message, MsgError, Request, ServerId, Services};
use faascache_transport::server::IncomingRpc;
use faascache_transport::{call, CallError};
use faascache_transport::{
    ClientConfig, Dispatch, DispatchConfig, DispatchHandler, Locator, Opcode, Responder,
    ServerHandle, ServiceLocator, Session, Status,
};
use parking_lot::Mutex;

use crate::pool::WorkerPool;

use super::cluster_io::{ClusterIo, ControlSendError, TransitionError};
use super::external::{ExternalStorage, ExternalStorageError};
use super::leases::{LeaseTable, Renewal};
use super::state::{Action, Control, CoordError, CoordinatorState, StateDecodeError};

/// Threads checking crash hints (each check may take two 500 ms pings).
pub const HINT_THREADS: usize = 2;
/// Crash hints (of distinct servers) waiting for a check; beyond, `RETRY`.
pub const HINT_QUEUE: usize = 64;
/// Migrations copying at once.
pub const MIGRATION_THREADS: usize = 2;
/// Migrations waiting to copy; beyond, `RETRY`.
pub const MIGRATION_QUEUE: usize = 8;

/// Name of the state blob in external storage.
pub const STATE_BLOB: &str = "coordinator-state";
/// Timeout of `TakeTabletOwnership` / `PrepareMigration`.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of `DropTabletOwnership` (the master deletes the data first).
pub const DROP_TIMEOUT: Duration = Duration::from_secs(120);
/// Timeout of `MigrateTabletOut` (copies the whole tablet).
pub const MIGRATE_TIMEOUT: Duration = Duration::from_secs(600);
/// How often heartbeats are checked.
pub const TICK: Duration = Duration::from_millis(500);
/// The master lease every heartbeat reply grants: a master serves until the instant it sent
/// the heartbeat + this (`crate::master::lease`). One second: masters renew every 250 ms, so
/// three consecutive heartbeats can fail (each times out after 300 ms) before a healthy master
/// stops serving, and failure detection takes about as long (peer pings every 500 ms plus the
/// coordinator's own two pings), so waiting the lease out adds little to recovery time.
pub const MASTER_LEASE: Duration = Duration::from_millis(1000);
/// Added to [`MASTER_LEASE`] before a crashed master's tablets are handed over: covers clock
/// rate differences between the coordinator and the master of up to 4 % (1/20 of the lease).
pub const MASTER_LEASE_MARGIN: Duration = Duration::from_millis(50);

type Job = Box<dyn FnOnce() + Send>;

/// Client ids reserved per trip to the persisted counter (handed out without the state lock).
const ID_POOL: usize = 64;

/// Coordinator options.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Dispatch options of its RPC server.
    pub dispatch: DispatchConfig,
    /// A server silent this long is marked crashed.
    pub heartbeat_timeout: Duration,
    /// Client lease term (`--client-lease-term`).
    pub client_lease_term: Duration,
    /// Most client leases held at once (beyond: `RETRY`).
    pub max_client_leases: usize,
    /// Move tablets between masters in the background so each holds a share proportional to
    /// its memory budget (`--rebalance`; see `state::drain`).
    pub rebalance: bool,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            dispatch: DispatchConfig::default(),
            heartbeat_timeout: Duration::from_secs(15),
            client_lease_term: Duration::from_millis(super::leases::DEFAULT_TERM_MS),
            max_client_leases: super::leases::DEFAULT_MAX_LEASES,
            rebalance: false,
        }
    }
}

/// Why the coordinator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// External storage failed (including a corrupt state blob).
    #[error(transparent)]
    Storage(#[from] ExternalStorageError),
    /// The state blob does not decode.
    #[error("{source} (in {storage} blob {STATE_BLOB})")]
    BadState {
        /// The storage (`file:DIR`, `zk:...`).
        storage: String,
        /// What is wrong with the blob.
        source: StateDecodeError,
    },
    /// Could not serve on the locator.
    #[error(transparent)]
    Transport(#[from] faascache_transport::Error),
    /// Could not start a thread.
    #[error("cannot start a coordinator thread: {0}")]
    Thread(std::io::Error),
}

/// The shared coordinator.
pub struct Coordinator {
    state: Mutex<CoordinatorState>,
    storage: Box<dyn ExternalStorage>,
    /// Crash-hint checks (one per server at a time: `hinted`).
    hints: WorkerPool,
    /// Servers whose crash hint is being checked (at most the pool's threads + queue).
    hinted: Mutex<HashSet<ServerId>>,
    /// Tablet migrations' copies.
    migrations: WorkerPool,
    /// Writes the state to `storage` outside the state lock, in order.
    persister: super::persister::Persister,
    epoch: u64,
    start: Instant,
    /// Cluster time, for leases.
    pub(crate) clock: super::clock::ClusterClock,
    /// Client leases (their own lock; never under the state mutex).
    leases: LeaseTable,
    /// Client ids reserved from the persisted counter, handed out on the dispatch thread.
    id_pool: Mutex<Vec<u64>>,
    sessions: Mutex<HashMap<String, Session>>,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// The instant of the last master lease granted to each server (pruned to listed
    /// servers). A server missing here was granted one by a previous coordinator, at most
    /// before `start_instant`.
    grants: Mutex<HashMap<ServerId, Instant>>,
    start_instant: Instant,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("storage", &self.storage.describe())
            .field("epoch", &self.epoch)
            .finish()
    }
}

/// A running coordinator. Dropping it shuts it down.
#[derive(Debug)]
pub struct CoordinatorHandle {
    server: Option<ServerHandle>,
    coordinator: Arc<Coordinator>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl CoordinatorHandle {
    /// Where it serves (with the real port if the locator said port 0).
    pub fn locator(&self) -> Locator {
        self.server
            .as_ref()
            .expect("running")
            .local_locator()
            .clone()
    }
    /// The coordinator.
    pub fn coordinator(&self) -> &Arc<Coordinator> {
        &self.coordinator
    }
    /// Where it keeps its state (e.g. to ask [`ExternalStorage::check_leadership`]).
    pub fn storage(&self) -> &dyn ExternalStorage {
        self.coordinator.storage.as_ref()
    }
    /// Stop serving and join the threads.
    pub fn shutdown(mut self) {
        self.stop_all();
    }
    fn stop_all(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
        self.stop.store(true, Ordering::Release);
        self.coordinator.jobs.lock().take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for CoordinatorHandle {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Start a coordinator: become leader of `storage`, recover the state it holds, serve on
/// `listen`.
pub fn start(
    listen: &ServiceLocator,
    storage: Box<dyn ExternalStorage>,
    cfg: CoordinatorConfig,
) -> Result<CoordinatorHandle, StartError> {
    let epoch = storage.acquire_leadership()?;
    let mut state = match storage.get(STATE_BLOB)? {
        Some(blob) => {
            CoordinatorState::decode(&blob.data).map_err(|source| StartError::BadState {
                storage: storage.describe(),
                source,
            })?
        }
        None => CoordinatorState::default(),
    };
    state.heartbeat_timeout = cfg.heartbeat_timeout;
    let start = Instant::now();
    state.restarted(Duration::ZERO);
    let (tables, servers) = (state.tables().len(), state.server_list(Services(0)).1.len());
    tracing::info!(storage = %storage.describe(), epoch, tables, servers, "coordinator state recovered");
    let (tx, rx) = mpsc::channel::<Job>();
    let clock = super::clock::ClusterClock::default();
    let leases = LeaseTable::new(
        u64::try_from(cfg.client_lease_term.as_millis()).unwrap_or(u64::MAX),
        cfg.max_client_leases,
        state.client_id_ceiling(),
        clock.now_ms(),
    );
    let coordinator = Arc::new(Coordinator {
        state: Mutex::new(state),
        storage,
        persister: super::persister::Persister::default(),
        hints: WorkerPool::new("coord-hint", HINT_THREADS, HINT_QUEUE),
        hinted: Mutex::new(HashSet::new()),
        migrations: WorkerPool::new("coord-migrate", MIGRATION_THREADS, MIGRATION_QUEUE),
        epoch,
        start,
        clock,
        leases,
        id_pool: Mutex::new(Vec::new()),
        sessions: Mutex::new(HashMap::new()),
        jobs: Mutex::new(Some(tx)),
        grants: Mutex::new(HashMap::new()),
        start_instant: Instant::now(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    threads.push(
        std::thread::Builder::new()
            .name("coord-worker".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })
            .map_err(StartError::Thread)?,
    );
    let (c2, stop2) = (coordinator.clone(), stop.clone());
    threads.push(
        std::thread::Builder::new()
            .name("coord-ticker".into())
            .spawn(move || {
                while !stop2.load(Ordering::Acquire) {
                    std::thread::sleep(TICK);
                    let mut st = c2.state.lock();
                    let actions = st.tick(c2.now());
                    if actions.contains(&Action::Persist) {
                        let seq = c2.persister.submit(st.encode());
                        drop(st);
                        if let Err(e) = c2.persist(seq) {
                            tracing::error!(error = %e, "cannot persist the coordinator state");
                        }
                    }
                }
            })
            .map_err(StartError::Thread)?,
    );
    let (c3, stop3) = (coordinator.clone(), stop.clone());
    threads.push(
        std::thread::Builder::new()
            .name("coord-recovery".into())
            .spawn(move || super::recovery::recovery_loop(&*c3, &stop3))
            .map_err(StartError::Thread)?,
    );
    if cfg.rebalance {
        let (c4, stop4) = (coordinator.clone(), stop.clone());
        threads.push(
            std::thread::Builder::new()
                .name("coord-rebalance".into())
                .spawn(move || c4.rebalance_loop(&stop4))
                .map_err(StartError::Thread)?,
        );
    }
    let service = CoordinatorService {
        c: coordinator.clone(),
    };
    let server =
        faascache_transport::serve(listen, Arc::new(DispatchHandler(service)), cfg.dispatch)?;
    tracing::info!(locator = %server.local_locator(), transport = %server.transport(), "coordinator serving");
    // Servers and clients that find the coordinator through external storage (zk:) look here.
    coordinator
        .storage
        .advertise(epoch, &server.local_locator().to_string())?;
    Ok(CoordinatorHandle {
        server: Some(server),
        coordinator,
        stop,
        threads,
    })
}

/// A failed operation: status and detail for the error body.
struct Fail(Status, String);

impl From<CoordError> for Fail {
    fn from(e: CoordError) -> Self {
        Fail(e.status(), e.to_string())
    }
}

impl From<TransitionError> for Fail {
    fn from(e: TransitionError) -> Self {
        Fail(e.status(), e.to_string())
    }
}

/// Why a migration's copy failed (the source keeps the tablet).
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// `PrepareMigration` to the target failed.
    #[error("preparing the target failed: {0}")]
    Prepare(CallError),
    /// `MigrateTabletOut` to the source failed.
    #[error("copying from the source failed: {0}")]
    Copy(CallError),
}

impl Coordinator {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// A lease was granted to `server` now (called under the state lock `st`).
    fn record_grant(&self, st: &CoordinatorState, server: ServerId) {
        let mut grants = self.grants.lock();
        grants.insert(server, Instant::now());
        // Keep only servers still listed (up, or crashed and awaiting recovery).
        if grants.len() > 64 && grants.len() > 2 * st.server_list(Services(0)).1.len() {
            grants.retain(|id, _| {
                st.server(*id)
                    .is_some_and(|s| s.id == *id && s.status != ServerStatus::Removed)
            });
        }
    }

    /// How long until the master lease of `server` is surely over (see [`MASTER_LEASE`]).
    fn lease_wait(&self, server: ServerId) -> Duration {
        let granted = self
            .grants
            .lock()
            .get(&server)
            .copied()
            .unwrap_or(self.start_instant);
        (granted + MASTER_LEASE + MASTER_LEASE_MARGIN).saturating_duration_since(Instant::now())
    }

    /// Wait until the state numbered `seq` by [`Persister::submit`] is in external storage
    /// (without the state lock: see [`super::persister`]).
    fn persist(&self, seq: u64) -> Result<(), ExternalStorageError> {
        self.persister
            .wait(self.storage.as_ref(), self.epoch, STATE_BLOB, seq)
    }

    /// Run a state transition; persist if asked (encoded under the state lock, written after
    /// it is released, in order: see [`super::persister`]); return its value and the sends to
    /// carry out, once the new state is durable.
    fn transition<T>(
        &self,
        f: impl FnOnce(&mut CoordinatorState) -> Result<(T, Vec<Action>), CoordError>,
    ) -> Result<(T, Vec<Action>), TransitionError> {
        let mut st = self.state.lock();
        let (v, actions) = f(&mut st)?;
        debug_assert!(st.check().is_ok(), "{:?}", st.check());
        if actions.contains(&Action::Persist) {
            let seq = self.persister.submit(st.encode());
            drop(st);
            if let Err(e) = self.persist(seq) {
                tracing::error!(error = %e, "cannot persist the coordinator state");
                return Err(TransitionError::Persist(e));
            }
        }
        Ok((
            v,
            actions
                .into_iter()
                .filter(|a| *a != Action::Persist)
                .collect(),
        ))
    }

    /// Run `f` on the state (a query).
    fn with_state<T>(&self, f: impl FnOnce(&CoordinatorState) -> T) -> T {
        f(&self.state.lock())
    }

    /// Whether the server at `locator` answers a ping within `timeout` (a fresh connection).
    fn answers_ping(&self, locator: &str, timeout: Duration) -> bool {
        let Ok(loc) = locator.parse::<ServiceLocator>() else {
            return false;
        };
        let Ok(s) = faascache_transport::connect(&loc, ClientConfig::default()) else {
            return false;
        };
        matches!(s.call(Opcode::Ping, &[], timeout), Ok((Status::OK, _)))
    }

    fn session(&self, locator: &str) -> Result<Session, faascache_transport::Error> {
        if let Some(s) = self.sessions.lock().get(locator) {
            if s.failure().is_none() {
                return Ok(s.clone());
            }
        }
        let loc: ServiceLocator = locator.parse()?;
        let s = faascache_transport::connect(&loc, ClientConfig::default())?;
        self.sessions.lock().insert(locator.to_string(), s.clone());
        Ok(s)
    }

    /// One RPC on the cached session to `locator` (dropped if the transport failed).
    fn rpc<'a, R: Request<'a>, T>(
        &self,
        locator: &str,
        req: &R,
        timeout: Duration,
        f: impl for<'b> FnOnce(R::Response<'b>) -> T,
    ) -> Result<T, CallError> {
        let s = self.session(locator)?;
        let r = call(&s, req, timeout, f);
        if let Err(CallError::Transport(_)) = &r {
            self.sessions.lock().remove(locator);
        }
        r
    }

    /// Carry out sends; failures are logged (a master that missed a message is told again when
    /// it re-registers) and the first is returned.
    fn send_all(&self, actions: Vec<Action>) -> Result<(), ControlSendError> {
        let mut first = Ok(());
        for a in actions {
            let Action::Send { to, locator, msg } = a else {
                continue;
            };
            let r = match &msg {
                Control::Take(r) => self.rpc(
                    &locator,
                    &TakeTabletOwnershipRequest(*r),
                    CONTROL_TIMEOUT,
                    |_| (),
                ),
                Control::Drop(r) => self.rpc(
                    &locator,
                    &DropTabletOwnershipRequest(*r),
                    DROP_TIMEOUT,
                    |_| (),
                ),
            };
            if let Err(e) = r {
                tracing::warn!(server = %to, ?msg, error = %e, "control RPC to a master failed");
                if first.is_ok() {
                    first = Err(ControlSendError { to, source: e });
                }
            }
        }
        first
    }

    /// A lease for the new id `id`, as a reply.
    fn grant(&self, id: u64) -> Result<ClientLeaseResponse, Fail> {
        let now = self.clock.now_ms();
        match self.leases.grant(id, now) {
            Ok(expiration) => Ok(self.lease_response(id, expiration, now)),
            Err(e) => Err(Fail(Status::RETRY, e.to_string())),
        }
    }

    fn lease_response(&self, id: u64, expiration: u64, now: u64) -> ClientLeaseResponse {
        ClientLeaseResponse {
            client_id: id,
            lease: faascache_protocol::msg::ClientLease {
                expiration,
                timestamp: now,
            },
            term_ms: self.leases.term_ms(),
        }
    }

    /// A new client id from the persisted counter; reserves [`ID_POOL`] more for the dispatch
    /// thread's fast path in the same transition (one persist per block of the counter, not
    /// per client).
    fn reserve_client_id(&self) -> Result<u64, Fail> {
        if let Some(id) = self.id_pool.lock().pop() {
            return Ok(id);
        }
        let (ids, _) = self.transition(|st| {
            let mut ids = Vec::with_capacity(ID_POOL + 1);
            let mut actions = Vec::new();
            for _ in 0..=ID_POOL {
                let (id, a) = st.allocate_client_id();
                ids.push(id);
                for x in a {
                    if !actions.contains(&x) {
                        actions.push(x);
                    }
                }
            }
            Ok((ids, actions))
        })?;
        let first = ids[0];
        let mut pool = self.id_pool.lock();
        // Lowest ids first out (pop takes from the end).
        pool.extend(ids[1..].iter().rev());
        Ok(first)
    }

    fn defer(&self, call: &mut IncomingRpc<'_>, job: impl FnOnce(Responder) + Send + 'static) {
        let Some(responder) = call.defer() else {
            return;
        };
        let jobs = self.jobs.lock();
        match jobs.as_ref() {
            Some(tx) => {
                if let Err(mpsc::SendError(job)) = tx.send(Box::new(move || job(responder))) {
                    drop(job); // the responder inside replies INTERNAL_ERROR
                }
            }
            None => responder.reply_vec(
                Status::SHUTTING_DOWN,
                ErrorReply {
                    version: 0,
                    detail: "the coordinator is shutting down",
                }
                .to_vec(),
            ),
        }
    }
}

/// Recovery's view of the coordinator: the state under its lock, persistence, and RPCs on the
/// coordinator's cached sessions.
impl ClusterIo for Coordinator {
    fn master_lease_wait(&self, server: ServerId) -> Duration {
        self.lease_wait(server)
    }

    fn read<T>(&self, f: impl FnOnce(&CoordinatorState) -> T) -> T {
        self.with_state(f)
    }

    fn transition<T>(
        &self,
        f: impl FnOnce(&mut CoordinatorState) -> Result<(T, Vec<Action>), CoordError>,
    ) -> Result<(T, Vec<Action>), TransitionError> {
        Coordinator::transition(self, f)
    }

    fn send(&self, actions: Vec<Action>) -> Result<(), ControlSendError> {
        self.send_all(actions)
    }

    fn get_replicas(
        &self,
        locators: &[&str],
        req: &BackupGetReplicasRequest,
        timeout: Duration,
    ) -> Vec<Result<BackupGetReplicasResponse, CallError>> {
        let sessions = locators
            .iter()
            .map(|l| self.session(l).map_err(CallError::from));
        let answers = super::cluster_io::fan_out(sessions.collect(), req, timeout, |r| r);
        for (l, a) in locators.iter().zip(&answers) {
            if let Err(CallError::Transport(_)) = a {
                self.sessions.lock().remove(*l);
            }
        }
        answers
    }

    fn recover_tablets(
        &self,
        locator: &str,
        req: &RecoverTabletsRequest<'_>,
        timeout: Duration,
    ) -> Result<RecoverTabletsResponse, CallError> {
        self.rpc(locator, req, timeout, |r| r)
    }

    fn recovery_done(
        &self,
        locator: &str,
        req: &BackupRecoveryDoneRequest,
        timeout: Duration,
    ) -> Result<(), CallError> {
        self.rpc(locator, req, timeout, |_| ())
    }
}

fn reply_fail(r: Responder, f: Fail) {
    r.reply_vec(
        f.0,
        ErrorReply {
            version: 0,
            detail: &f.1,
        }
        .to_vec(),
    );
}

fn fail_now(call: &mut IncomingRpc<'_>, f: Fail) {
    call.reply_with(f.0, |b| {
        ErrorReply {
            version: 0,
            detail: &f.1,
        }
        .encode(b)
    });
}

fn bad_request(call: &mut IncomingRpc<'_>, e: MsgError) {
    let op = call.opcode();
    fail_now(
        call,
        Fail(e.status(), format!("malformed {op} request: {e}")),
    );
}

macro_rules! decode_or_reply {
    ($call:expr, $ty:ty) => {
        match <$ty>::decode($call.payload()) {
            Ok(r) => r,
            Err(e) => return bad_request($call, e),
        }
    };
}

mod drain;
mod tables;

/// The coordinator's [`Dispatch`] service.
#[derive(Debug, Clone)]
pub struct CoordinatorService {
    c: Arc<Coordinator>,
}

impl Dispatch for CoordinatorService {
    fn enlist_server(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, EnlistServerRequest<'_>);
        if let Err(e) = req.locator.parse::<ServiceLocator>() {
            return fail_now(
                call,
                Fail(
                    Status::REQUEST_FORMAT_ERROR,
                    format!("bad locator {:?}: {e}", req.locator),
                ),
            );
        }
        let (services, locator, previous) =
            (req.services, req.locator.to_string(), req.previous_id);
        let c = self.c.clone();
        self.c.defer(call, move |r| {
            let now = c.now();
            match c.transition(|st| Ok(st.enlist(services, &locator, previous, now))) {
                Ok((id, sends)) => {
                    tracing::info!(server = %id, %locator, %services, reregistered = (id == previous), "server enlisted");
                    r.reply_vec(Status::OK, EnlistServerResponse { server_id: id }.to_vec());
                    let _ = c.send_all(sends);
                }
                Err(f) => reply_fail(r, f.into()),
            }
        });
    }

    fn server_heartbeat(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, HeartbeatRequest);
        let now = self.c.now();
        let r = {
            let mut st = self.c.state.lock();
            let r = st.heartbeat(req.server_id, now);
            if r.is_ok() {
                st.record_budget(req.server_id, req.budget_bytes);
                // Recorded under the state lock: a crash marked later sees this grant.
                self.c.record_grant(&st, req.server_id);
            }
            r
        };
        match r {
            Ok(()) => call.reply_with(Status::OK, |b| {
                HeartbeatResponse {
                    cluster_time: self.c.clock.now_ms(),
                    lease_ms: MASTER_LEASE.as_millis() as u32,
                }
                .encode(b)
            }),
            Err(e) => fail_now(call, e.into()),
        }
    }

    /// Records a master's replica epoch; answers once it is persisted (a master acknowledges
    /// nothing more until then).
    fn set_replica_epoch(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, SetReplicaEpochRequest);
        let c = self.c.clone();
        // Deferred like the other persisting transitions (they wait for external storage).
        self.c.defer(call, move |r| {
            match c.transition(|st| Ok(((), st.set_replica_epoch(req.server, req.epoch)?))) {
                Ok(_) => {
                    tracing::info!(server = %req.server, epoch = req.epoch, "replica epoch recorded: recovery ignores older open replicas of this master");
                    r.reply_vec(Status::OK, Vec::new());
                }
                Err(f) => reply_fail(r, f.into()),
            }
        });
    }

    fn get_fenced_masters(&self, call: &mut IncomingRpc<'_>) {
        let _ = decode_or_reply!(call, GetFencedMastersRequest);
        let masters = self.c.with_state(|st| {
            st.server_list(Services(0))
                .1
                .iter()
                .filter(|s| s.status == ServerStatus::Crashed)
                .map(|s| s.id)
                .take(MAX_FENCED_MASTERS)
                .collect()
        });
        call.reply_with(Status::OK, |b| {
            GetFencedMastersResponse { masters }.encode(b)
        });
    }

    fn get_server_list(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, GetServerListRequest);
        let st = self.c.state.lock();
        let (version, list) = st.server_list(req.services);
        let resp = GetServerListResponse {
            version,
            servers: list
                .iter()
                .map(|s| ServerEntry {
                    id: s.id,
                    services: s.services,
                    status: s.status,
                    locator: &s.locator,
                    budget_bytes: st.budget(s.id),
                })
                .collect(),
        };
        call.reply_with(Status::OK, |b| resp.encode(b));
    }

    fn create_table(&self, call: &mut IncomingRpc<'_>) {
        self.on_create_table(call)
    }

    fn drop_table(&self, call: &mut IncomingRpc<'_>) {
        self.on_drop_table(call)
    }

    fn get_table_id(&self, call: &mut IncomingRpc<'_>) {
        self.on_get_table_id(call)
    }

    fn list_tables(&self, call: &mut IncomingRpc<'_>) {
        self.on_list_tables(call)
    }

    fn get_table_config(&self, call: &mut IncomingRpc<'_>) {
        self.on_get_table_config(call)
    }

    fn get_tablet_map(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, GetTabletMapRequest);
        let st = self.c.state.lock();
        match st.tablet_map(req.table_id) {
            Ok((version, tablets)) => {
                let resp = GetTabletMapResponse {
                    version,
                    tablets: tablets
                        .iter()
                        .map(|(t, loc)| TabletEntry {
                            table_id: t.table_id,
                            start_hash: t.start,
                            end_hash: t.end,
                            owner: t.owner,
                            locator: loc,
                            state: t.state,
                        })
                        .collect(),
                };
                call.reply_with(Status::OK, |b| resp.encode(b));
            }
            Err(e) => {
                drop(st);
                fail_now(call, e.into())
            }
        }
    }

    fn split_tablet(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, SplitTabletRequest);
        let c = self.c.clone();
        self.c.defer(call, move |r| {
            match c.transition(|st| {
                st.split_tablet(req.table_id, req.split_hash)
                    .map(|a| ((), a))
            }) {
                Ok(_) => {
                    tracing::info!(table = req.table_id, split = req.split_hash, "tablet split");
                    r.reply(Status::OK, &[])
                }
                Err(f) => reply_fail(r, f.into()),
            }
        });
    }

    fn migrate_tablet(&self, call: &mut IncomingRpc<'_>) {
        self.on_migrate_tablet(call)
    }

    fn drain_server(&self, call: &mut IncomingRpc<'_>) {
        self.on_drain_server(call)
    }

    /// The check runs on a hint worker (a ping of a dead server takes its timeout); one check
    /// per server at a time (a hint for a server being checked is answered at once).
    fn hint_server_crashed(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, HintServerCrashedRequest);
        if self.c.hinted.lock().contains(&req.server) {
            return call.reply(Status::OK, &[]);
        }
        let place = match self.c.hints.reserve() {
            Ok(p) => p,
            Err(busy) => return fail_now(call, Fail(Status::RETRY, busy.to_string())),
        };
        // At most one entry per reserved place: bounded by the pool.
        if !self.c.hinted.lock().insert(req.server) {
            return call.reply(Status::OK, &[]);
        }
        // The hint is taken: answered at once, checked on the worker.
        call.reply(Status::OK, &[]);
        let c = self.c.clone();
        place.submit(move || {
            let locator = c.with_state(|st| {
                st.server(req.server)
                    .filter(|s| s.status == faascache_protocol::msg::coordinator::ServerStatus::Up)
                    .map(|s| s.locator.clone())
            });
            if let Some(locator) = locator {
                // Two tries: one lost connection is not a crash.
                let alive = (0..2).any(|_| c.answers_ping(&locator, Duration::from_millis(500)));
                if !alive {
                    if let Err(e) = c.transition(|st| Ok(((), st.confirm_crashed(req.server)))) {
                        tracing::error!(error = %e, "cannot record a crash");
                    }
                }
            }
            c.hinted.lock().remove(&req.server);
        });
    }

    fn get_client_lease(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, GetClientLeaseRequest);
        let now = self.c.clock.now_ms();
        if req.client_id != 0 {
            match self.c.leases.renew(req.client_id, now) {
                Ok(Renewal::Renewed { expiration }) => {
                    let r = self.c.lease_response(req.client_id, expiration, now);
                    return call.reply_with(Status::OK, |b| r.encode(b));
                }
                Ok(Renewal::Dead) => {} // a new id, below
                Err(e) => return fail_now(call, Fail(Status::RETRY, e.to_string())),
            }
        }
        if let Err(e) = self.c.leases.has_room(now) {
            return fail_now(call, Fail(Status::RETRY, e.to_string()));
        }
        // Fast path: an id reserved earlier (the persisted counter is not touched).
        let pooled = self.c.id_pool.lock().pop();
        if let Some(id) = pooled {
            return match self.c.grant(id) {
                Ok(r) => call.reply_with(Status::OK, |b| r.encode(b)),
                Err(f) => fail_now(call, f),
            };
        }
        // Reserve more ids on the worker (it may persist a new block of the counter).
        let c = self.c.clone();
        self.c.defer(call, move |r| match c.reserve_client_id() {
            Ok(id) => match c.grant(id) {
                Ok(resp) => r.reply_vec(Status::OK, resp.to_vec()),
                Err(f) => reply_fail(r, f),
            },
            Err(f) => reply_fail(r, f),
        });
    }

    fn release_client_lease(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, ReleaseClientLeaseRequest);
        self.c.leases.release(req.client_id, self.c.clock.now_ms());
        call.reply(Status::OK, &[]);
    }

    fn check_client_leases(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, CheckClientLeasesRequest);
        let now = self.c.clock.now_ms();
        let resp = CheckClientLeasesResponse {
            cluster_time: now,
            expirations: self.c.leases.check(&req.client_ids, now),
        };
        call.reply_with(Status::OK, |b| resp.encode(b));
    }
}
